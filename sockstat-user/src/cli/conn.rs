//! `sockstat conn`: one connection's timeline, asked of a running `sockstat serve`, which
//! keeps the timelines of the connections it follows and of those that closed lately.
//! One GET over a plain TCP connection: a client library would be most of the binary's
//! HTTP code for a request this small.
use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    process::ExitCode,
    time::Duration,
};

use super::{UsageError, args::ConnArgs};
use crate::exporter::conns::parse_cookie;

/// How long the agent has to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(args: &ConnArgs) -> anyhow::Result<ExitCode> {
    let query = match args.target.as_slice() {
        [cookie] => format!("cookie={}", parse_cookie(cookie).map_err(UsageError)?),
        [local, remote] => {
            for (what, a) in [("local", local), ("remote", remote)] {
                a.parse::<SocketAddr>().map_err(|_| {
                    UsageError(format!(
                        "{what} end {a:?}: expected ADDR:PORT ([V6]:PORT for IPv6)"
                    ))
                })?;
            }
            format!("local={local}&remote={remote}")
        }
        _ => return Err(UsageError("give a cookie, or LOCAL REMOTE".into()).into()),
    };
    let format = if args.json { "&format=json" } else { "" };
    let (status, body) = get(&args.agent, &format!("/conn?{query}{format}"))?;
    match status {
        200 => {
            let mut out = io::stdout().lock();
            out.write_all(body.as_bytes())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        404 => {
            eprintln!("sockstat conn: {}", body.trim());
            Ok(ExitCode::from(1))
        }
        _ => Err(UsageError(format!(
            "the agent at {} answered {status}: {}",
            args.agent,
            body.trim()
        ))
        .into()),
    }
}

/// GET `path` from the agent at `agent`: the status code and the body.
fn get(agent: &str, path: &str) -> Result<(u16, String), UsageError> {
    let unreachable = |e: io::Error| {
        UsageError(format!(
            "no sockstat serve at {agent} ({e}): start one (it keeps the timelines) or give --agent ADDR:PORT"
        ))
    };
    let addr = agent
        .to_socket_addrs()
        .map_err(|_| UsageError(format!("--agent {agent}: expected ADDR:PORT")))?
        .next()
        .ok_or_else(|| UsageError(format!("--agent {agent}: no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {agent}\r\n\r\n").map_err(unreachable)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(unreachable)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| UsageError(format!("{agent} did not answer like sockstat serve")))?;
    Ok((status, body.to_string()))
}
