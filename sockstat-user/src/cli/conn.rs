//! `sockstat conn`: one connection's timeline, asked of a running `sockstat serve`, which
//! keeps the timelines of the connections it follows and of those that closed lately.
//! One GET over a plain TCP connection, or over TLS (rustls, already here for serve) with
//! basic auth where serve has a --web-config: a client library would be most of the
//! binary's HTTP code for a request this small.
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
    let access = Access::from_args(args)?;
    let (status, body) = get(&args.agent, &format!("/conn?{query}{format}"), &access)?;
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
        401 => Err(UsageError(format!(
            "the agent at {} wants a password: give --auth-file FILE (USER:PASSWORD)",
            args.agent
        ))
        .into()),
        _ => Err(UsageError(format!(
            "the agent at {} answered {status}: {}",
            args.agent,
            body.trim()
        ))
        .into()),
    }
}

/// How to reach an agent with a --web-config: its CA, and the Authorization header.
struct Access {
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    authorization: Option<String>,
}

impl Access {
    fn from_args(args: &ConnArgs) -> Result<Access, UsageError> {
        use base64::Engine as _;
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        let tls = match &args.ca {
            None => None,
            Some(path) => {
                let bad = |e: String| UsageError(format!("--ca {}: {e}", path.display()));
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                    roots
                        .add(cert.map_err(|e| bad(e.to_string()))?)
                        .map_err(|e| bad(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(bad("no certificate in it".into()));
                }
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| bad(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(std::sync::Arc::new(config))
            }
        };
        let authorization = match &args.auth_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| UsageError(format!("--auth-file {}: {e}", path.display())))?;
                let line = text.lines().next().unwrap_or_default();
                if !line.contains(':') {
                    return Err(UsageError(format!(
                        "--auth-file {}: expected USER:PASSWORD on its first line",
                        path.display()
                    )));
                }
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(line)
                ))
            }
        };
        Ok(Access { tls, authorization })
    }
}

/// GET `path` from the agent at `agent`: the status code and the body.
fn get(agent: &str, path: &str, access: &Access) -> Result<(u16, String), UsageError> {
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
    let authorization = access
        .authorization
        .as_ref()
        .map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {agent}\r\n{authorization}\r\n");
    let mut response = Vec::new();
    match &access.tls {
        None => {
            stream.write_all(request.as_bytes()).map_err(unreachable)?;
            stream.read_to_end(&mut response).map_err(unreachable)?;
        }
        Some(config) => {
            // The certificate must name what --agent names: its host, or its IP address.
            let host = agent.rsplit_once(':').map_or(agent, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| UsageError(format!("--agent {agent}: {e}")))?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| UsageError(format!("TLS to {agent}: {e}")))?;
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let failed = |e: io::Error| {
                UsageError(format!(
                    "TLS to {agent}: {e} (is it serving TLS, and does --ca sign its certificate?)"
                ))
            };
            tls.write_all(request.as_bytes()).map_err(failed)?;
            // serve closes after the body; a peer that drops without close_notify has
            // still sent everything an HTTP/1.0 body is.
            match tls.read_to_end(&mut response) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
                Err(e) => return Err(failed(e)),
            }
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| UsageError(format!("{agent} did not answer like sockstat serve")))?;
    Ok((status, body.to_string()))
}
