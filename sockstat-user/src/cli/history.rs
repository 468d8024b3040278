//! `sockstat history`: recorded connections that were open during a time range, selected by
//! an ss filter (as SQL), owner and container, printed as `trace --lifetimes` prints them;
//! from the embedded store, or from a fleet's ClickHouse with each connection's host.
use std::{
    io::{self, BufWriter, Write},
    process::ExitCode,
};

use rusqlite::types::Value;

use super::{UsageError, args::HistoryArgs};
use crate::{
    filter::{Filter, ParseContext},
    history::{
        LifetimeRow, TransitionRow,
        clickhouse::{self, ClickHouse},
        lifetime_of, now_ns,
        sql::{self, Dialect},
        store::Store,
        transition_of,
    },
    live::clock::WallClock,
    render::trace::{TraceFormat, TracePrinter},
};

/// What a query answered, each row with its host (from ClickHouse).
pub(super) enum Answer {
    Lifetimes(Vec<(Option<String>, LifetimeRow)>),
    Transitions(Vec<(Option<String>, TransitionRow)>),
}

impl Answer {
    fn hosts(&self) -> Vec<&str> {
        match self {
            Answer::Lifetimes(rows) => rows.iter().filter_map(|(h, _)| h.as_deref()).collect(),
            Answer::Transitions(rows) => rows.iter().filter_map(|(h, _)| h.as_deref()).collect(),
        }
    }
}

/// What `args` select, from the store or ClickHouse (also `report --history`'s input).
pub(super) fn fetch(args: &HistoryArgs) -> Result<Answer, UsageError> {
    let filter = Filter::parse(&args.filter, &ParseContext::default())
        .map_err(|e| UsageError(e.to_string()))?;
    let bad = |e: &dyn std::fmt::Display| UsageError(e.to_string());
    Ok(match &args.from {
        None => {
            let (condition, params) = query(args, &filter, now_ns(), Dialect::Sqlite)?;
            let store = Store::open(&args.store).map_err(|e| bad(&e))?;
            if args.transitions {
                Answer::Transitions(
                    store
                        .query_transitions(&condition, &params)
                        .map_err(|e| bad(&e))?
                        .into_iter()
                        .map(|r| (None, r))
                        .collect(),
                )
            } else {
                Answer::Lifetimes(
                    store
                        .query(&condition, &params)
                        .map_err(|e| bad(&e))?
                        .into_iter()
                        .map(|r| (None, r))
                        .collect(),
                )
            }
        }
        Some(url) => {
            let (condition, params) = query(args, &filter, now_ns(), Dialect::ClickHouse)?;
            let condition = inline(&condition, &params);
            let clickhouse = ClickHouse::new(url.clone());
            if args.transitions {
                Answer::Transitions(
                    clickhouse
                        .query_transitions(&condition)
                        .map_err(|e| bad(&e))?
                        .into_iter()
                        .map(|(h, r)| (Some(h), r))
                        .collect(),
                )
            } else {
                Answer::Lifetimes(
                    clickhouse
                        .query(&condition)
                        .map_err(|e| bad(&e))?
                        .into_iter()
                        .map(|(h, r)| (Some(h), r))
                        .collect(),
                )
            }
        }
    })
}

pub fn run(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let answer = fetch(args)?;
    // Hosts in a column as wide as the longest (text only; JSON has a key).
    let host_width = answer
        .hosts()
        .iter()
        .map(|h| h.chars().count())
        .max()
        .map(|w| w.max("HOST".len()))
        .filter(|_| !args.json);
    // Times in the store are already on the wall clock.
    let mut printer = TracePrinter::new(
        if args.json {
            TraceFormat::Json
        } else {
            TraceFormat::Text
        },
        WallClock::fixed(0),
    );
    printer.set_width(None);
    let mut out = BufWriter::new(io::stdout().lock());
    let written = (|| -> io::Result<()> {
        // Text lines start with the host (from a fleet) and the local date: trace's TIME
        // column is the time of day, and a recording spans days.
        let lead = |out: &mut BufWriter<_>, host: Option<&str>, date: &str| {
            if args.json {
                return Ok(());
            }
            if let Some(w) = host_width {
                write!(out, "{:<w$} ", host.unwrap_or("-"))?;
            }
            write!(out, "{date:<10} ")
        };
        if !args.no_header && !args.json {
            lead(&mut out, Some("HOST"), "DATE")?;
            printer.write_header(&mut out, !args.transitions)?;
        }
        match &answer {
            Answer::Lifetimes(rows) => {
                for (host, row) in rows {
                    if let Some((lifetime, names)) = lifetime_of(row) {
                        lead(&mut out, host.as_deref(), &local_date(row.end_ns))?;
                        printer.write_lifetime_named(
                            &mut out,
                            &lifetime,
                            Some(&names),
                            host.as_deref(),
                        )?;
                    }
                }
            }
            Answer::Transitions(rows) => {
                for (host, row) in rows {
                    if let Some((transition, names)) = transition_of(row) {
                        lead(&mut out, host.as_deref(), &local_date(row.ts_ns))?;
                        printer.write_recorded(
                            &mut out,
                            &transition,
                            Some(&names),
                            host.as_deref(),
                        )?;
                    }
                }
            }
        }
        out.flush()
    })();
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `sockstat history | head`: the reader left.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::Error::new(e).context("writing output")),
    }
}

/// The local date of a wall-clock time, as the TIME column is local.
fn local_date(ns: i64) -> String {
    let local: chrono::DateTime<chrono::Local> = crate::history::system_time(ns).into();
    local.format("%Y-%m-%d").to_string()
}

/// The WHERE clause and its parameters: open at some time in [since, until), the filter,
/// and the owner's and container's names.
fn query(
    args: &HistoryArgs,
    filter: &Filter,
    now_ns: i64,
    dialect: Dialect,
) -> Result<(String, Vec<Value>), UsageError> {
    let since = args.since.ns(now_ns);
    let until = args.until.map_or(now_ns, |u| u.ns(now_ns));
    if until <= since {
        return Err(UsageError(format!(
            "--until is not after --since: nothing can be open between them ({since} >= {until} ns)"
        )));
    }
    let selected = sql::condition(filter, dialect).map_err(|e| UsageError(e.to_string()))?;
    let mut condition = if args.transitions {
        format!("ts_ns >= ?1 AND ts_ns < ?2 AND ({selected})")
    } else {
        // end_ns first: the indexes end with it. A connection open before recording began
        // has no start and counts from its end.
        format!("end_ns >= ?1 AND coalesce(start_ns, end_ns) < ?2 AND ({selected})")
    };
    let mut params = vec![Value::Integer(since), Value::Integer(until)];
    // Each clause is made with its parameter's number.
    let mut and = |clause: &dyn Fn(usize) -> String, value: Value| {
        params.push(value);
        condition.push_str(" AND ");
        condition.push_str(&clause(params.len()));
    };
    if let Some(pid) = args.pid {
        and(&|n| format!("pid = ?{n}"), Value::Integer(i64::from(pid)));
    }
    if let Some(comm) = &args.comm {
        and(
            &|n| dialect.contains("comm", &format!("?{n}")),
            Value::Text(comm.clone()),
        );
    }
    let w = &args.workload;
    for (column, value) in [
        ("host", &args.host),
        ("pod", &w.pod),
        ("namespace", &w.k8s_namespace),
        ("container", &w.container),
    ] {
        if let Some(v) = value {
            and(&|n| format!("{column} = ?{n}"), Value::Text(v.clone()));
        }
    }
    Ok((condition, params))
}

/// The clause with its parameters written in, for ClickHouse (whose HTTP interface in the
/// versions Debian ships takes no bound parameters): numbers as digits, text as escaped
/// literals. One pass, so a `?` inside a text written in is left alone.
fn inline(condition: &str, params: &[Value]) -> String {
    let mut sql = String::with_capacity(condition.len() + 64);
    let mut rest = condition;
    while let Some(at) = rest.find('?') {
        sql.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let value = after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|n| params.get(n.checked_sub(1)?));
        match value {
            Some(Value::Integer(n)) => sql.push_str(&n.to_string()),
            Some(Value::Text(t)) => sql.push_str(&clickhouse::literal(t)),
            // query() makes only numbers and text, each with its number.
            _ => sql.push_str("NULL"),
        }
        rest = &after[digits..];
    }
    sql.push_str(rest);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::PointInTime;
    use std::time::Duration;

    fn args(words: &[&str]) -> HistoryArgs {
        use clap::Parser as _;
        let cli =
            crate::cli::args::Cli::try_parse_from(["sockstat", "history"].iter().chain(words))
                .unwrap();
        match cli.command {
            Some(crate::cli::args::Command::History(a)) => a,
            _ => panic!("not history"),
        }
    }

    #[test]
    fn time_range_owner_and_names_become_parameters() {
        let a = args(&[
            "--since",
            "2h",
            "--comm",
            "psql",
            "--pod",
            "api",
            "dport = :5432",
        ]);
        assert_eq!(a.since, PointInTime::Ago(Duration::from_secs(7200)));
        let filter = Filter::parse(&a.filter, &ParseContext::default()).unwrap();
        let (sql, params) = query(&a, &filter, 10_000_000_000_000, Dialect::Sqlite).unwrap();
        assert_eq!(
            sql,
            "end_ns >= ?1 AND coalesce(start_ns, end_ns) < ?2 AND (remote_port = 5432) \
             AND instr(comm, ?3) > 0 AND pod = ?4"
        );
        assert_eq!(
            params,
            vec![
                Value::Integer(10_000_000_000_000 - 7_200_000_000_000),
                Value::Integer(10_000_000_000_000),
                Value::Text("psql".to_string()),
                Value::Text("api".to_string()),
            ]
        );
        let backwards = args(&["--since", "1h", "--until", "2h"]);
        assert!(
            query(
                &backwards,
                &Filter::default(),
                10_000_000_000_000,
                Dialect::Sqlite
            )
            .is_err()
        );
        let (ch, params) = query(&a, &filter, 10_000_000_000_000, Dialect::ClickHouse).unwrap();
        assert_eq!(
            inline(&ch, &params),
            "end_ns >= 2800000000000 AND coalesce(start_ns, end_ns) < 10000000000000 AND \
             (remote_port = 5432) AND position(comm, 'psql') > 0 AND pod = 'api'"
        );
    }
}
