//! `sockstat ifaces`: interfaces like `netstat -i`, from rtnetlink's IFLA_STATS64.
use std::{
    io::{self, Write},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;

use super::{NetnsChoice, UsageError, args::IfacesArgs};
use crate::rtnl::{self, Link};

pub fn run(args: &IfacesArgs) -> anyhow::Result<ExitCode> {
    let args = &args.repeat;
    if args.interval == Some(0) {
        return Err(UsageError("--interval must be at least 1 second".into()).into());
    }
    let netns = NetnsChoice::open(args.netns.as_deref())?;
    let read = || -> anyhow::Result<Vec<Link>> {
        netns
            .run(rtnl::links)?
            .context("reading interfaces (rtnetlink)")
    };
    let mut out = io::stdout().lock();
    let Some(secs) = args.interval else {
        let links = read()?;
        if args.json {
            serde_json::to_writer(&mut out, &links)?;
            writeln!(out)?;
        } else {
            write_table(&mut out, &links, None)?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut before = read()?;
    let mut printed = 0;
    while args.count.is_none_or(|n| printed < n) {
        std::thread::sleep(Duration::from_secs(secs));
        let now = read()?;
        let rates: Vec<Link> = now.iter().map(|l| per_second(l, &before, secs)).collect();
        if args.json {
            serde_json::to_writer(&mut out, &rates)?;
            writeln!(out)?;
        } else {
            write_table(&mut out, &rates, Some(secs))?;
        }
        out.flush()?;
        before = now;
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// The link's counters as changes per second since `before` (a new link counts from 0).
fn per_second(l: &Link, before: &[Link], secs: u64) -> Link {
    let prev = before.iter().find(|b| b.index == l.index);
    let d = |now: u64, then: Option<u64>| now.saturating_sub(then.unwrap_or(0)) / secs.max(1);
    Link {
        rx_packets: d(l.rx_packets, prev.map(|p| p.rx_packets)),
        rx_errors: d(l.rx_errors, prev.map(|p| p.rx_errors)),
        rx_dropped: d(l.rx_dropped, prev.map(|p| p.rx_dropped)),
        rx_overruns: d(l.rx_overruns, prev.map(|p| p.rx_overruns)),
        tx_packets: d(l.tx_packets, prev.map(|p| p.tx_packets)),
        tx_errors: d(l.tx_errors, prev.map(|p| p.tx_errors)),
        tx_dropped: d(l.tx_dropped, prev.map(|p| p.tx_dropped)),
        tx_overruns: d(l.tx_overruns, prev.map(|p| p.tx_overruns)),
        rx_bytes: d(l.rx_bytes, prev.map(|p| p.rx_bytes)),
        tx_bytes: d(l.tx_bytes, prev.map(|p| p.tx_bytes)),
        ..l.clone()
    }
}

fn write_table(out: &mut impl Write, links: &[Link], per_second: Option<u64>) -> io::Result<()> {
    match per_second {
        None => writeln!(out, "Kernel Interface table")?,
        Some(s) => writeln!(out, "Per second over the last {s} s")?,
    }
    writeln!(
        out,
        "{:<15} {:>5} {:>8} {:>6} {:>6} {:<6} {:>8} {:>6} {:>6} {:>6} Flg",
        "Iface",
        "MTU",
        "RX-OK",
        "RX-ERR",
        "RX-DRP",
        "RX-OVR",
        "TX-OK",
        "TX-ERR",
        "TX-DRP",
        "TX-OVR"
    )?;
    for l in links {
        writeln!(
            out,
            "{:<15} {:>5} {:>8} {:>6} {:>6} {:<6} {:>8} {:>6} {:>6} {:>6} {}",
            l.name,
            l.mtu,
            l.rx_packets,
            l.rx_errors,
            l.rx_dropped,
            l.rx_overruns,
            l.tx_packets,
            l.tx_errors,
            l.tx_dropped,
            l.tx_overruns,
            l.flags
        )?;
    }
    Ok(())
}
