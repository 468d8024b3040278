//! A socket farm for benchmarks: one process holding many established loopback connections
//! (both ends), and making TIME-WAIT sockets on request. Several farms together exceed the
//! per-process limit of 20000 open files.
use std::{
    io::{self, BufRead, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
};

use anyhow::{Context as _, Result};

/// Raises the soft open-file limit to the hard one (20000 here).
pub fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Holds `pairs` ESTAB connections to a listener on 127.0.0.1:`port` until stdin closes.
/// Commands on stdin: `tw N` makes N connections whose server side closes first, leaving N
/// TIME-WAIT sockets (and keeping the client's ephemeral ports free).
pub fn run(port: u16, pairs: usize) -> Result<()> {
    raise_nofile();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    let mut held = Vec::with_capacity(pairs * 2);
    for _ in 0..pairs {
        let client = TcpStream::connect(addr).context("connect")?;
        let (server, _) = listener.accept().context("accept")?;
        held.push(client);
        held.push(server);
    }
    // TIME-WAIT connections go to a second address: on the first one, the kernel's port
    // choice for new connects collides with the held pairs' tuples, and a SYN that meets a
    // TIME-WAIT socket recycles it (only ~45 % of them survived).
    let tw_addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), port));
    let tw_listener = TcpListener::bind(tw_addr).with_context(|| format!("bind {tw_addr}"))?;
    let mut out = io::stdout().lock();
    writeln!(out, "ready {}", held.len())?;
    out.flush()?;
    for line in io::stdin().lock().lines() {
        let line = line?;
        if let Some(n) = line.strip_prefix("tw ") {
            let n: usize = n.trim().parse().context("tw count")?;
            for _ in 0..n {
                let client = TcpStream::connect(tw_addr).context("connect")?;
                let (server, _) = tw_listener.accept().context("accept")?;
                drop(server);
                drop(client);
            }
            writeln!(out, "ok")?;
            out.flush()?;
        }
    }
    drop(held);
    Ok(())
}
