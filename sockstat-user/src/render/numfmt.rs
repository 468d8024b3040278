//! C printf's `%g` and ss's rate and timer formats, which Rust's formatter has no
//! equivalent for.

/// `%.{precision}g`: shortest of fixed or exponent form, trailing zeros removed.
pub fn g(x: f64, precision: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return format!("{x}");
    }
    let p = precision.max(1);
    let sci = format!("{:.*e}", p - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        let m = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{x:.decimals$}")).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// ss's `sprint_bw`: bits per second with a k/M/G/T suffix (`%.3g`), or a plain integer
/// with `-n`. The caller appends "bps".
pub fn bandwidth(bps: f64, numeric: bool) -> String {
    if numeric {
        return format!("{bps:.0}");
    }
    for (scale, unit) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if bps >= scale {
            return format!("{}{unit}", g(bps / scale, 3));
        }
    }
    g(bps, 6)
}

/// ss's `print_ms_timer` (with the iproute2 7.x fix: `1.500sec`, not `1.500ms`).
pub fn ms_timer(ms: u32) -> String {
    let mut secs = ms / 1000;
    let minutes = secs / 60;
    secs %= 60;
    let mut msecs = ms % 1000;
    let mut out = String::new();
    if minutes > 0 {
        msecs = 0;
        out.push_str(&format!("{minutes}min"));
        if minutes > 9 {
            secs = 0;
        }
    }
    if secs > 0 {
        if secs > 9 {
            msecs = 0;
        }
        out.push_str(&format!("{secs}{}", if msecs > 0 { "." } else { "sec" }));
    }
    if msecs > 0 {
        out.push_str(&format!(
            "{msecs:03}{}",
            if secs > 0 { "sec" } else { "ms" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_g() {
        assert_eq!(g(0.04, 6), "0.04");
        assert_eq!(g(204.0, 6), "204");
        assert_eq!(g(5.648, 6), "5.648");
        assert_eq!(g(19.04, 3), "19");
        assert_eq!(g(25.41, 3), "25.4");
        assert_eq!(g(145.6, 3), "146");
        assert_eq!(g(1234567.0, 6), "1.23457e+06");
        assert_eq!(g(0.00001, 6), "1e-05");
        assert_eq!(g(2.88671875, 6), "2.88672");
    }

    #[test]
    fn rates_and_timers() {
        assert_eq!(bandwidth(944_000_000.0, false), "944M");
        assert_eq!(bandwidth(19_040_000_000.0, false), "19G");
        assert_eq!(bandwidth(25_410_000.0, false), "25.4M");
        assert_eq!(bandwidth(512.0, false), "512");
        assert_eq!(bandwidth(145635555556.0, true), "145635555556");
        assert_eq!(ms_timer(384), "384ms");
        assert_eq!(ms_timer(5), "005ms");
        assert_eq!(ms_timer(1500), "1.500sec");
        assert_eq!(ms_timer(12345), "12sec");
        assert_eq!(ms_timer(61000), "1min1sec");
        assert_eq!(ms_timer(7_140_000), "119min");
        assert_eq!(ms_timer(0), "");
    }
}
