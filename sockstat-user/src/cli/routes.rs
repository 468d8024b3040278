//! `sockstat routes`: the main routing table of both families, like `netstat -r`.
use std::{
    io::{self, Write},
    process::ExitCode,
};

use anyhow::Context as _;

use super::{NetnsChoice, args::RoutesArgs};
use crate::rtnl::{self, Route};

pub fn run(args: &RoutesArgs) -> anyhow::Result<ExitCode> {
    let netns = NetnsChoice::open(&args.ns)?;
    let mut routes = netns
        .run(rtnl::routes)?
        .context("reading routes (rtnetlink)")?;
    routes
        .retain(|r| (r.family == "inet" && args.ip.v4()) || (r.family == "inet6" && args.ip.v6()));
    if args.numeric {
        for r in &mut routes {
            if r.destination == "default" {
                r.destination = if r.family == "inet" {
                    "0.0.0.0/0"
                } else {
                    "::/0"
                }
                .into();
            }
        }
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &routes)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    write_table(&mut out, &routes)?;
    Ok(ExitCode::SUCCESS)
}

fn write_table(out: &mut impl Write, routes: &[Route]) -> io::Result<()> {
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
