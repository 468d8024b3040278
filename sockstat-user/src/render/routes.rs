//! `sockstat routes`: the routing table as netstat -r prints it.
use std::io::{self, Write};

use crate::rtnl::Route;

pub fn write_table(out: &mut impl Write, routes: &[Route]) -> io::Result<()> {
    writeln!(out, "Kernel IP routing table")?;
    let width = routes
        .iter()
        .map(|r| r.destination.len())
        .chain(
            routes
                .iter()
                .filter_map(|r| r.gateway.map(|g| g.to_string().len())),
        )
        .max()
        .unwrap_or(0)
        .max(15);
    writeln!(
        out,
        "{:<width$} {:<width$} {:<10} {:>6} {:<7} {:<7} Type",
        "Destination", "Gateway", "Iface", "Metric", "Proto", "Scope"
    )?;
    for r in routes {
        let gw = r.gateway.map_or("*".to_string(), |g| g.to_string());
        writeln!(
            out,
            "{:<width$} {:<width$} {:<10} {:>6} {:<7} {:<7} {}",
            r.destination, gw, r.device, r.metric, r.protocol, r.scope, r.kind
        )?;
    }
    Ok(())
}
