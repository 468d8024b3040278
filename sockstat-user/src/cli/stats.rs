//! `sockstat stats`: protocol counters like `netstat -s`, or their per-second changes.
use std::{
    io::{self, Write},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use serde_json::{Map, Value};

use super::{NetnsChoice, UsageError, args::StatsArgs};
use crate::stats::snmp::{self, Counters};

pub fn run(args: &StatsArgs) -> anyhow::Result<ExitCode> {
    let args = &args.repeat;
    if args.interval == Some(0) {
        return Err(UsageError("--interval must be at least 1 second".into()).into());
    }
    let netns = NetnsChoice::open(args.netns.as_deref())?;
    let read = || -> anyhow::Result<Counters> {
        netns
            .run(|| snmp::read(&netns.proc_net()))?
            .context("reading the protocol counters")
    };
    let mut out = io::stdout().lock();
    let Some(secs) = args.interval else {
        let c = read()?;
        if args.json {
            serde_json::to_writer(&mut out, &to_json(&c, None))?;
            writeln!(out)?;
        } else {
            write_text(&mut out, &c)?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut before = read()?;
    let mut printed = 0;
    while args.count.is_none_or(|n| printed < n) {
        std::thread::sleep(Duration::from_secs(secs));
        let now = read()?;
        if args.json {
            serde_json::to_writer(&mut out, &to_json(&now, Some((&before, secs))))?;
            writeln!(out)?;
        } else {
            write_deltas(&mut out, &before, &now, secs)?;
        }
        out.flush()?;
        before = now;
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// Ext groups hold hundreds of mostly-zero counters; like netstat, zeros are left out there.
fn shown(group: &str, value: i64) -> bool {
    value != 0 || !group.ends_with("Ext")
}

fn write_text(out: &mut impl Write, c: &Counters) -> io::Result<()> {
    for (group, counters) in &c.groups {
        writeln!(out, "{group}:")?;
        for (name, value) in counters.iter().filter(|(_, v)| shown(group, *v)) {
            if snmp::is_gauge(group, name) {
                writeln!(out, "    {}: {value}", snmp::describe(group, name))?;
            } else {
                writeln!(out, "    {value} {}", snmp::describe(group, name))?;
            }
        }
    }
    Ok(())
}

fn write_deltas(
    out: &mut impl Write,
    before: &Counters,
    now: &Counters,
    secs: u64,
) -> io::Result<()> {
    writeln!(out, "--- per second over the last {secs} s ---")?;
    for (group, counters) in &now.groups {
        let changed: Vec<(&String, i64)> = counters
            .iter()
            .filter(|(n, _)| !snmp::is_gauge(group, n))
            .filter_map(|(n, v)| {
                let d = v - before.get(group, n).unwrap_or(*v);
                (d != 0).then_some((n, d))
            })
            .collect();
        if changed.is_empty() {
            continue;
        }
        writeln!(out, "{group}:")?;
        for (name, d) in changed {
            let rate = d as f64 / secs as f64;
            writeln!(out, "    {rate:.1}/s {}", snmp::describe(group, name))?;
        }
    }
    Ok(())
}

/// {group: {name: value}}; with `before`, per-second changes (gauges as they are).
fn to_json(c: &Counters, before: Option<(&Counters, u64)>) -> Value {
    let mut groups = Map::new();
    for (group, counters) in &c.groups {
        let mut m = Map::new();
        for (name, v) in counters {
            let value = match before {
                Some((b, secs)) if !snmp::is_gauge(group, name) => {
                    let d = v - b.get(group, name).unwrap_or(*v);
                    Value::from(d as f64 / secs as f64)
                }
                _ => Value::from(*v),
            };
            m.insert(name.clone(), value);
        }
        groups.insert(group.clone(), Value::Object(m));
    }
    match before {
        Some((_, secs)) => serde_json::json!({"interval_s": secs, "per_second": groups}),
        None => Value::Object(groups),
    }
}
