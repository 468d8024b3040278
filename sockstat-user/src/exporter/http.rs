//! The scrape endpoint: GET /metrics, GET /healthz and GET /conn (a connection's
//! timeline, for `sockstat conn`) over HTTP/1.x, one request per connection, in the clear
//! or over TLS, with basic auth when `--web-config` asks (`web_config.rs`). Written here
//! rather than taken from hyper: an exporter needs two paths and hard limits (header size,
//! read time, concurrent connections), and hyper's server would need hyper-util plus the
//! same guards around it for a tenth of its features.
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

use super::web_config::{Credentials, WebConfig};

/// The request head must fit in this; a bigger one gets 431 and the connection closes.
pub const MAX_HEAD: usize = 16 * 1024;
/// A client that has not finished its TLS handshake and sent its whole request head this
/// long after accept is dropped.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once. At the cap, a new client takes the slot of the oldest one
/// still waiting for its request head: idle or slow clients cannot starve a scrape.
pub const MAX_CONNECTIONS: usize = 64;

/// What the server needs from the exporter for each scrape.
pub trait Source: Send + Sync + 'static {
    /// The exposition: OpenMetrics when `openmetrics`, else the classic text format.
    fn metrics(&self, openmetrics: bool) -> String;
    fn healthy(&self) -> bool;
    /// `GET /conn?QUERY`: status, content type and body.
    fn connection(&self, query: &str) -> (&'static str, &'static str, Vec<u8>);
}

/// One open connection: a way to evict it, and whether it is still reading its head.
struct Slot {
    evict: oneshot::Sender<()>,
    reading: Arc<AtomicBool>,
}

/// Open connections by accept order (the smallest id is the oldest).
#[derive(Default)]
struct Slots(Mutex<BTreeMap<u64, Slot>>);

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for one more: at the cap, evicts the oldest connection still reading its
    /// head. False when every slot is busy answering (the newcomer is then closed).
    fn make_room(&self) -> bool {
        let mut open = self.lock();
        if open.len() < MAX_CONNECTIONS {
            return true;
        }
        let oldest_idle = open
            .iter()
            .find(|(_, slot)| slot.reading.load(Ordering::Relaxed))
            .map(|(&id, _)| id);
        match oldest_idle.and_then(|id| open.remove(&id)) {
            Some(slot) => {
                let _ = slot.evict.send(());
                true
            }
            None => false,
        }
    }
}

pub async fn serve(listener: TcpListener, source: Arc<dyn Source>, web: Arc<WebConfig>) {
    let slots = Arc::new(Slots::default());
    for id in 0u64.. {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and the like: back off a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if !slots.make_room() {
            drop(stream);
            continue;
        }
        // Registered before the task exists, so its own removal can never come first.
        let (evict, evicted) = oneshot::channel();
        let reading = Arc::new(AtomicBool::new(true));
        slots.lock().insert(
            id,
            Slot {
                evict,
                reading: reading.clone(),
            },
        );
        let (source, slots, web) = (source.clone(), slots.clone(), web.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = serve_one(stream, source.as_ref(), &web, &reading) => {}
                // Evicted (or the server is going away): dropping the stream closes it.
                _ = evicted => {}
            }
            slots.lock().remove(&id);
        });
    }
}

/// One accepted connection: the TLS handshake first when configured, then the request.
async fn serve_one(
    stream: TcpStream,
    source: &dyn Source,
    web: &Arc<WebConfig>,
    reading: &AtomicBool,
) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    match &web.tls {
        None => handle(stream, source, web, reading, deadline).await,
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            // A failed handshake (a plain-HTTP client, an unknown client CA) is the
            // client's to see; nothing is answered in the clear.
            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => handle(tls_stream, source, web, reading, deadline).await,
                Ok(Err(_)) | Err(_) => Ok(()),
            }
        }
    }
}

/// Reads up to the end of the request head (a blank line); `None` when the head is larger
/// than [`MAX_HEAD`], which is checked as the bytes arrive, not after.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // Search from a little before the new bytes: a terminator may straddle reads.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head_end(&head[from..]).map(|e| from + e) {
            if end > MAX_HEAD {
                return Ok(None);
            }
            head.truncate(end);
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

/// The length of the head up to and including its blank line ("\r\n\r\n" or "\n\n").
fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        if bytes[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if bytes[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// Writes the response; for HEAD (`with_body` false) the same headers, Content-Length
/// included, without the body.
async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

/// The response to a request head: status, content type, body.
pub fn route(head: &str, source: &dyn Source) -> (&'static str, &'static str, Vec<u8>) {
    let request_line = head.lines().next().unwrap_or("");
    // Prometheus asks for OpenMetrics in its Accept header; everyone else gets 0.0.4 text.
    let openmetrics = head.lines().skip(1).any(|h| {
        h.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("accept") && value.contains("application/openmetrics-text")
        })
    });
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return ("400 Bad Request", "text/plain", b"bad request\n".to_vec());
    };
    let path = target.split('?').next().unwrap_or(target);
    if method != "GET" && method != "HEAD" {
        return (
            "405 Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n".to_vec(),
        );
    }
    match path {
        "/metrics" if openmetrics => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            source.metrics(true).into_bytes(),
        ),
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            source.metrics(false).into_bytes(),
        ),
        "/conn" => source.connection(target.split_once('?').map_or("", |(_, q)| q)),
        "/healthz" if source.healthy() => ("200 OK", "text/plain", b"ok\n".to_vec()),
        "/healthz" => (
            "503 Service Unavailable",
            "text/plain",
            b"unhealthy\n".to_vec(),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            b"not found: try /metrics\n".to_vec(),
        ),
    }
}

/// The value of header `name` in a request head, if present.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|h| {
        let (n, value) = h.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    source: &dyn Source,
    web: &Arc<WebConfig>,
    reading: &AtomicBool,
    deadline: tokio::time::Instant,
) -> std::io::Result<()> {
    let extra: Vec<(&str, &str)> = web
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let head = match tokio::time::timeout_at(deadline, read_head(&mut stream)).await {
        Err(_) => return Ok(()),
        Ok(Err(_)) => return Ok(()),
        Ok(Ok(None)) => {
            reading.store(false, Ordering::Relaxed);
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                &extra,
                b"request head too large\n",
                true,
            )
            .await;
        }
        Ok(Ok(Some(head))) => head,
    };
    reading.store(false, Ordering::Relaxed);
    let text = String::from_utf8_lossy(&head);
    let with_body = !text.starts_with("HEAD ");
    let allowed = match web.auth.check(header(&text, "authorization")) {
        Credentials::Accepted => true,
        Credentials::Rejected => false,
        // bcrypt takes tens of milliseconds: off the event loop.
        Credentials::Verify {
            user,
            password,
            hash,
        } => {
            let web = web.clone();
            tokio::task::spawn_blocking(move || web.auth.verify(&user, &password, &hash))
                .await
                .unwrap_or(false)
        }
    };
    if !allowed {
        let mut headers = extra.clone();
        headers.push((
            "WWW-Authenticate",
            "Basic realm=\"sockstat\", charset=\"UTF-8\"",
        ));
        return respond(
            &mut stream,
            "401 Unauthorized",
            "text/plain",
            &headers,
            b"unauthorized\n",
            with_body,
        )
        .await;
    }
    let (status, content_type, body) = route(&text, source);
    respond(&mut stream, status, content_type, &extra, &body, with_body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Source for Fixed {
        fn metrics(&self, openmetrics: bool) -> String {
            if openmetrics {
                "# EOF\n".into()
            } else {
                String::new()
            }
        }
        fn healthy(&self) -> bool {
            true
        }
        fn connection(&self, query: &str) -> (&'static str, &'static str, Vec<u8>) {
            ("200 OK", "text/plain", query.as_bytes().to_vec())
        }
    }

    #[test]
    fn head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[test]
    fn routes_two_paths_and_refuses_the_rest() {
        assert_eq!(route("GET /metrics HTTP/1.1", &Fixed).0, "200 OK");
        assert_eq!(route("GET /metrics?x=1 HTTP/1.1", &Fixed).0, "200 OK");
        assert_eq!(route("GET /healthz HTTP/1.0", &Fixed).2, b"ok\n");
        assert_eq!(route("GET / HTTP/1.1", &Fixed).0, "404 Not Found");
        assert_eq!(route("GET /conn?cookie=7 HTTP/1.0", &Fixed).2, b"cookie=7");
        assert_eq!(route("GET /metricsx HTTP/1.1", &Fixed).0, "404 Not Found");
        assert_eq!(
            route("POST /metrics HTTP/1.1", &Fixed).0,
            "405 Method Not Allowed"
        );
        assert_eq!(route("", &Fixed).0, "400 Bad Request");
        let om = route(
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n",
            &Fixed,
        );
        assert!(om.1.starts_with("application/openmetrics-text"));
        assert!(
            route("GET /metrics HTTP/1.1\r\n", &Fixed)
                .1
                .starts_with("text/plain; version=0.0.4")
        );
    }
}
