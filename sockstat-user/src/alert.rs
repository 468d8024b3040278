//! `--alert 'time-wait > 5000'`: threshold expressions over named numbers (state counts,
//! rates), shared by `top` and `report`. Each command says which names it knows, so a typo is
//! a usage error at start-up rather than an alert that can never fire.
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlertError {
    #[error("--alert '{expr}': expected METRIC OP NUMBER, e.g. 'time-wait > 5000'")]
    Shape { expr: String },
    #[error("--alert '{expr}': unknown metric '{metric}' (known: {known})")]
    UnknownMetric {
        expr: String,
        metric: String,
        known: String,
    },
    #[error("--alert '{expr}': '{number}' is not a number")]
    Number { expr: String, number: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub metric: String,
    pub op: Op,
    pub threshold: f64,
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op.symbol(), self.threshold)
    }
}

/// An alert and what it saw.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AlertStatus {
    pub alert: String,
    pub value: f64,
    pub firing: bool,
}

/// A metric's canonical name: a state named as the filter language names it
/// (`established`, `syn-rcv`, `listening`) becomes its metric (`estab`, `syn-recv`,
/// `listen`), alone or before `/s`.
fn canonical(metric: &str) -> String {
    let (name, rate) = match metric.strip_suffix("/s") {
        Some(name) => (name, "/s"),
        None => (metric, ""),
    };
    match crate::tcp::TcpState::from_name(name) {
        Some(state) => format!("{}{rate}", state.lower_name()),
        None => metric.to_string(),
    }
}

impl Alert {
    /// Parses `METRIC OP NUMBER`; `known` lists the metric names the caller can evaluate.
    pub fn parse(expr: &str, known: &[&str]) -> Result<Alert, AlertError> {
        let shape = || AlertError::Shape {
            expr: expr.to_string(),
        };
        let at = expr.find(['<', '>', '=', '!']).ok_or_else(shape)?;
        let metric = canonical(&expr[..at].trim().to_ascii_lowercase());
        let rest = &expr[at..];
        let (op, len) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ]
        .iter()
        .find(|(sym, _)| rest.starts_with(sym))
        .map(|(sym, op)| (*op, sym.len()))
        .ok_or_else(shape)?;
        let number = rest[len..].trim();
        if metric.is_empty() || number.is_empty() {
            return Err(shape());
        }
        if !known.contains(&metric.as_str()) {
            return Err(AlertError::UnknownMetric {
                expr: expr.to_string(),
                metric,
                known: known.join(", "),
            });
        }
        let threshold: f64 = number
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| AlertError::Number {
                expr: expr.to_string(),
                number: number.to_string(),
            })?;
        Ok(Alert {
            metric,
            op,
            threshold,
        })
    }

    /// Evaluates against `lookup` (a missing value counts as 0).
    pub fn check(&self, lookup: impl Fn(&str) -> Option<f64>) -> AlertStatus {
        let value = lookup(&self.metric).unwrap_or(0.0);
        AlertStatus {
            alert: self.to_string(),
            value,
            firing: self.op.holds(value, self.threshold),
        }
    }
}

/// Parses every `--alert` of a command line.
pub fn parse_all(exprs: &[String], known: &[&str]) -> Result<Vec<Alert>, AlertError> {
    exprs.iter().map(|e| Alert::parse(e, known)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["time-wait", "syn-sent/s", "close-wait"];

    #[test]
    fn parses_every_operator_with_or_without_spaces() {
        for (text, op) in [
            ("time-wait > 5000", Op::Gt),
            ("time-wait>=5000", Op::Ge),
            ("time-wait < 5000", Op::Lt),
            ("time-wait<=5000", Op::Le),
            ("time-wait == 5000", Op::Eq),
            ("time-wait = 5000", Op::Eq),
            ("time-wait != 5000", Op::Ne),
        ] {
            let a = Alert::parse(text, KNOWN).unwrap();
            assert_eq!(
                (a.metric.as_str(), a.op, a.threshold),
                ("time-wait", op, 5000.0)
            );
        }
        let a = Alert::parse("SYN-SENT/s > 1.5", KNOWN).unwrap();
        assert_eq!(a.metric, "syn-sent/s");
        assert_eq!(a.threshold, 1.5);
    }

    #[test]
    fn rejects_bad_shapes_unknown_metrics_and_numbers() {
        assert!(matches!(
            Alert::parse("time-wait", KNOWN),
            Err(AlertError::Shape { .. })
        ));
        assert!(matches!(
            Alert::parse("> 5", KNOWN),
            Err(AlertError::Shape { .. })
        ));
        assert!(matches!(
            Alert::parse("timewait > 5", KNOWN),
            Err(AlertError::UnknownMetric { .. })
        ));
        assert!(matches!(
            Alert::parse("time-wait > lots", KNOWN),
            Err(AlertError::Number { .. })
        ));
        assert!(matches!(
            Alert::parse("time-wait > inf", KNOWN),
            Err(AlertError::Number { .. })
        ));
    }

    #[test]
    fn fires_only_when_the_comparison_holds() {
        let a = Alert::parse("close-wait >= 3", KNOWN).unwrap();
        let status = a.check(|m| (m == "close-wait").then_some(3.0));
        assert!(status.firing);
        assert_eq!(status.value, 3.0);
        assert_eq!(status.alert, "close-wait >= 3");
        assert!(!a.check(|_| Some(2.0)).firing);
        assert!(!a.check(|_| None).firing);
    }

    #[test]
    fn states_may_be_named_as_the_filter_language_names_them() {
        let known = ["estab", "listen", "syn-recv", "syn-sent/s"];
        for (expr, metric) in [
            ("established > 0", "estab"),
            ("ESTAB > 0", "estab"),
            ("listening >= 1", "listen"),
            ("syn-rcv > 5", "syn-recv"),
            ("SYN-SENT/s > 100", "syn-sent/s"),
        ] {
            let a = Alert::parse(expr, &known).unwrap();
            assert_eq!(a.metric, metric, "{expr}");
        }
        assert!(Alert::parse("closed > 0", &known).is_err());
    }
}
