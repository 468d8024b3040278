//! `sockstat ifaces`: the interface table as netstat -i prints it.
use std::io::{self, Write};

use crate::rtnl::Link;

/// Totals, or per-second changes over `per_second` seconds.
pub fn write_table(out: &mut dyn Write, links: &[Link], per_second: Option<u64>) -> io::Result<()> {
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
