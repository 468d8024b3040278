//! `sockstat stats`: protocol counters like `netstat -s`, or their per-second changes.
use std::process::ExitCode;

use anyhow::Context as _;

use super::{NetnsChoice, args::StatsArgs};
use crate::{
    render::stats::{to_json, write_deltas, write_text},
    stats::snmp::{self, Counters},
};

pub fn run(args: &StatsArgs) -> anyhow::Result<ExitCode> {
    let netns = NetnsChoice::open(&args.repeat.ns)?;
    let read = || -> anyhow::Result<Counters> {
        netns
            .run(|| snmp::read(&netns.proc_net()))?
            .context("reading the protocol counters")
    };
    let json = args.repeat.json;
    super::repeat(&args.repeat, read, |out, before, now| {
        if json {
            crate::render::json_line(out, &to_json(now, before))
        } else {
            match before {
                None => write_text(out, now, args.zeros),
                Some((before, secs)) => write_deltas(out, before, now, secs),
            }
        }
    })
}
