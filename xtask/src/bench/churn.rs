//! A loopback churn generator: `count` connections, each accepted and closed by the server
//! first (so the TIME-WAIT sockets sit on the server side and the client's ephemeral ports
//! stay free), then closed by the client after it reads EOF.
use std::{
    io::Read,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    thread,
    time::Instant,
};

use anyhow::{Context as _, Result};

/// Runs the churn; returns connections per second.
pub fn run(port: u16, count: usize) -> Result<f64> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    let server = thread::spawn(move || {
        for _ in 0..count {
            match listener.accept() {
                Ok((s, _)) => drop(s),
                Err(_) => break,
            }
        }
    });
    let start = Instant::now();
    let mut buf = [0u8; 16];
    for _ in 0..count {
        let mut c = TcpStream::connect(addr).context("connect")?;
        // EOF once the server has closed.
        while c.read(&mut buf).unwrap_or(0) > 0 {}
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = server.join();
    Ok(count as f64 / secs)
}

/// `run` on a thread inside network namespace `netns` (an `ip netns` name).
pub fn run_in(netns: &str, port: u16, count: usize) -> Result<f64> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(format!("/run/netns/{netns}"))
        .with_context(|| format!("namespace {netns}"))?;
    thread::spawn(move || -> Result<f64> {
        // SAFETY: setns on a valid nsfs fd; it moves this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            anyhow::bail!("setns: {}", std::io::Error::last_os_error());
        }
        run(port, count)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the churn thread panicked"))?
}
