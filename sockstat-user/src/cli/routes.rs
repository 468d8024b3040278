//! `sockstat routes`: the main routing table of both families, like `netstat -r`.
use std::{
    io::{self},
    process::ExitCode,
};

use anyhow::Context as _;

use super::{NetnsChoice, args::RoutesArgs};
use crate::{render::routes::write_table, rtnl};

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
        crate::render::json_line(&mut out, &routes)?;
        return Ok(ExitCode::SUCCESS);
    }
    write_table(&mut out, &routes)?;
    Ok(ExitCode::SUCCESS)
}
