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
