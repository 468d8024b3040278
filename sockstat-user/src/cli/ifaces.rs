//! `sockstat ifaces`: interfaces like `netstat -i`, from rtnetlink's IFLA_STATS64.
use std::process::ExitCode;

use anyhow::Context as _;

use super::{NetnsChoice, args::IfacesArgs};
use crate::{
    render::ifaces::write_table,
    rtnl::{self, Link},
};

pub fn run(args: &IfacesArgs) -> anyhow::Result<ExitCode> {
    let netns = NetnsChoice::open(&args.repeat.ns)?;
    let read = || -> anyhow::Result<Vec<Link>> {
        netns
            .run(rtnl::links)?
            .context("reading interfaces (rtnetlink)")
    };
    let json = args.repeat.json;
    super::repeat(&args.repeat, read, |out, before, now| {
        let rates: Vec<Link>;
        let (links, per) = match before {
            None => (now, None),
            Some((before, secs)) => {
                rates = now.iter().map(|l| per_second(l, before, secs)).collect();
                (&rates, Some(secs))
            }
        };
        if json {
            crate::render::json_line(out, &links)
        } else {
            write_table(out, links, per)
        }
    })
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
