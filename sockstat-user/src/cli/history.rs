//! `sockstat history`: recorded connections that were open during a time range, selected by
//! an ss filter (as SQL), owner and container, printed as `trace --lifetimes` prints them.
use std::{
    io::{self, BufWriter, Write},
    process::ExitCode,
};

use rusqlite::types::Value;

use super::{UsageError, args::HistoryArgs};
use crate::{
    filter::{Filter, ParseContext},
    history::{lifetime_of, now_ns, sql, store::Store},
    live::clock::WallClock,
    render::trace::{TraceFormat, TracePrinter},
};

pub fn run(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter::parse(&args.filter, &ParseContext::default())
        .map_err(|e| UsageError(e.to_string()))?;
    let (condition, params) = query(args, &filter, now_ns())?;
    let store = Store::open(&args.store).map_err(|e| UsageError(e.to_string()))?;
    let rows = store
        .query(&condition, &params)
        .map_err(|e| UsageError(e.to_string()))?;
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
        if !args.no_header && !args.json {
            printer.write_header(&mut out, true)?;
        }
        for row in &rows {
            if let Some((lifetime, names)) = lifetime_of(row) {
                printer.write_lifetime_named(&mut out, &lifetime, Some(&names))?;
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

/// The WHERE clause and its parameters: open at some time in [since, until), the filter,
/// and the owner's and container's names.
fn query(
    args: &HistoryArgs,
    filter: &Filter,
    now_ns: i64,
) -> Result<(String, Vec<Value>), UsageError> {
    let since = args.since.ns(now_ns);
    let until = args.until.map_or(now_ns, |u| u.ns(now_ns));
    if until <= since {
        return Err(UsageError(format!(
            "--until is not after --since: nothing can be open between them ({since} >= {until} ns)"
        )));
    }
    let selected = sql::condition(filter).map_err(|e| UsageError(e.to_string()))?;
    // end_ns first: the indexes end with it. A connection open before recording began has
    // no start and counts from its end.
    let mut condition =
        format!("end_ns >= ?1 AND coalesce(start_ns, end_ns) < ?2 AND ({selected})");
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
            &|n| format!("instr(comm, ?{n}) > 0"),
            Value::Text(comm.clone()),
        );
    }
    let w = &args.workload;
    for (column, value) in [
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
        let (sql, params) = query(&a, &filter, 10_000_000_000_000).unwrap();
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
        assert!(query(&backwards, &Filter::default(), 10_000_000_000_000).is_err());
    }
}
