//! `sockstat stats`: protocol counters as netstat -s prints them, their per-second changes,
//! or JSON.
use std::io::{self, Write};

use serde_json::{Map, Value};

use crate::stats::snmp::{self, Counters};

/// Ext groups hold hundreds of mostly-zero counters; like netstat, zeros are left out there
/// unless `zeros` asks for them.
fn shown(group: &str, value: i64, zeros: bool) -> bool {
    zeros || value != 0 || !group.ends_with("Ext")
}

/// netstat -s's lines, each ending with the kernel's own name for the counter in brackets,
/// so `grep TCPSynRetrans` finds it as in /proc/net/netstat.
pub fn write_text(out: &mut dyn Write, c: &Counters, zeros: bool) -> io::Result<()> {
    for (group, counters) in &c.groups {
        writeln!(out, "{group}:")?;
        for (name, value) in counters.iter().filter(|(_, v)| shown(group, *v, zeros)) {
            let what = snmp::describe(group, name);
            if snmp::is_gauge(group, name) {
                writeln!(out, "    {what}: {value} [{name}]")?;
            } else {
                writeln!(out, "    {value} {what} [{name}]")?;
            }
        }
    }
    Ok(())
}

pub fn write_deltas(
    out: &mut dyn Write,
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
            writeln!(
                out,
                "    {rate:.1}/s {} [{name}]",
                snmp::describe(group, name)
            )?;
        }
    }
    Ok(())
}

/// {group: {name: value}}; with `before`, per-second changes (gauges as they are).
pub fn to_json(c: &Counters, before: Option<(&Counters, u64)>) -> Value {
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
