//! What sockstat asks a container engine: which process runs container NAME (or ID), so
//! `-N NAME` can enter its network namespace, and what a container id is called (its name,
//! image and labels, for `procs::workload`). Docker and Podman answer both on their Engine
//! API (`GET /containers/NAME/json`) over a unix socket.
//!
//! Written by hand: one GET over a unix socket with a JSON reply. The Docker clients on
//! crates.io (bollard and others) bring an async HTTP stack and hundreds of API types for it.
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    time::Duration,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("{socket}: {reason}")]
    Api { socket: String, reason: String },
}

/// The engine sockets to ask, in order: `$DOCKER_HOST` (unix:// only), Docker's, rootful
/// Podman's.
fn sockets() -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(host) = std::env::var("DOCKER_HOST")
        && let Some(path) = host.strip_prefix("unix://")
    {
        found.push(PathBuf::from(path));
    }
    found.push(PathBuf::from("/var/run/docker.sock"));
    found.push(PathBuf::from("/run/podman/podman.sock"));
    found
}

/// Names and ids as the engines allow them; anything else cannot be one (and must not
/// reach the request line).
fn plausible(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The pid of container `name` (a name, an id or an id prefix), from the first engine that
/// knows it; `Ok(None)` when no engine is reachable or none knows it.
pub fn pid_of(name: &str) -> Result<Option<u32>, EngineError> {
    let Some((socket, json)) = inspect_any(name) else {
        return Ok(None);
    };
    match json["State"]["Pid"].as_u64() {
        Some(pid) if pid > 0 => u32::try_from(pid).map(Some).map_err(|_| EngineError::Api {
            socket: socket.display().to_string(),
            reason: format!("pid {pid}"),
        }),
        _ => Err(EngineError::NotRunning(name.to_string())),
    }
}

/// `GET /containers/NAME/json` from the first engine that knows `name`, and which one.
pub fn inspect_any(name: &str) -> Option<(PathBuf, serde_json::Value)> {
    if !plausible(name) {
        return None;
    }
    for socket in sockets() {
        if !socket.exists() {
            continue;
        }
        match inspect(&socket, name) {
            Ok(Some(json)) => return Some((socket, json)),
            Ok(None) => continue,
            Err(e) => {
                log::debug!("container engine at {}: {e}", socket.display());
                continue;
            }
        }
    }
    None
}

/// `GET /containers/NAME/json` on one engine: the reply, `None` for a 404.
fn inspect(socket: &std::path::Path, name: &str) -> Result<Option<serde_json::Value>, EngineError> {
    let api = |reason: String| EngineError::Api {
        socket: socket.display().to_string(),
        reason,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| api(e.to_string()))?;
    let timeout = Some(Duration::from_secs(5));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| api(e.to_string()))?;
    // HTTP/1.0: the engine closes the connection after the reply, so it reads to the end.
    // One write: a request in pieces could meet a server that answered the first.
    let request = format!("GET /containers/{name}/json HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| api(e.to_string()))?;
    let mut reply = Vec::new();
    stream
        .take(4 << 20)
        .read_to_end(&mut reply)
        .map_err(|e| api(e.to_string()))?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| api("a reply without a header end".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| api(format!("a bad status line: {head:.40}")))?;
    match status {
        200 => {}
        404 => return Ok(None),
        other => return Err(api(format!("HTTP {other}"))),
    }
    serde_json::from_str(body)
        .map(Some)
        .map_err(|e| api(format!("bad JSON: {e}")))
}

/// The pid in an inspect reply (a stopped container has 0).
#[cfg(test)]
fn pid_in(json: &serde_json::Value) -> Option<u64> {
    json["State"]["Pid"].as_u64().filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_engine_names_reach_the_request_line() {
        for ok in ["web", "sst-web_1.a", "3f2a9c1b7d4e"] {
            assert!(plausible(ok), "{ok}");
        }
        for bad in ["", "a b", "x/../y", "a\r\nHost: evil", "é"] {
            assert!(!plausible(bad), "{bad:?}");
        }
    }

    /// A fake engine on a unix socket: the request line it gets, and the pid from its reply.
    #[test]
    fn reads_the_pid_from_an_inspect_reply() {
        let dir = std::env::temp_dir().join(format!("sockstat-docker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("engine.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for reply in [
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"State\":{\"Pid\":4242}}",
                "HTTP/1.0 404 Not Found\r\n\r\n{\"message\":\"No such container\"}",
                "HTTP/1.0 200 OK\r\n\r\n{\"State\":{\"Pid\":0}}",
            ] {
                let (mut s, _) = listener.accept().unwrap();
                // The whole request head, however it arrives.
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "the request ended early");
                    head.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                lines.push(text.lines().next().unwrap_or("").to_string());
                s.write_all(reply.as_bytes()).unwrap();
            }
            lines
        });
        let pid = |name| inspect(&path, name).map(|j| j.as_ref().and_then(pid_in));
        assert_eq!(pid("web"), Ok(Some(4242)));
        assert_eq!(inspect(&path, "gone"), Ok(None));
        assert_eq!(pid("stopped"), Ok(None));
        let lines = server.join().unwrap();
        assert_eq!(lines[0], "GET /containers/web/json HTTP/1.0");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
