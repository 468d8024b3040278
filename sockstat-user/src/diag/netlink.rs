//! The NETLINK_SOCK_DIAG socket and the multi-part dump loop.
//!
//! netlink-sys provides the socket. Requests and replies are built and read by hand, in
//! recycled 256 KiB batches (a large dump is received on a second thread while the caller's
//! thread parses): netlink-packet-sock-diag 0.5 has no packet diag, drops TIME-WAIT
//! expiry, hides unix VFS data and allocates several times per socket, which matters at 100k
//! sockets. Attributes are walked with netlink-packet-core's zero-copy `NlasIterator`.
use std::{io, sync::mpsc};

use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};

pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLMSG_HDRLEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    #[error("cannot open a sock_diag netlink socket: {0}")]
    Open(io::Error),
    #[error("sock_diag request failed: {0}")]
    Io(io::Error),
    #[error(
        "the kernel dropped part of the socket dump (ENOBUFS: receive buffer overrun); run again"
    )]
    NoBuffers,
    #[error("the kernel rejected the {what} request: {err}")]
    Kernel { what: &'static str, err: io::Error },
    #[error("the socket dump kept changing under us (NLM_F_DUMP_INTR {0} times); run again")]
    Interrupted(u32),
    #[error("malformed sock_diag reply: {0}")]
    Malformed(String),
    #[error("writing output: {0}")]
    Output(#[source] io::Error),
    #[error(
        "cannot start the netlink reader thread: {0} (a memory or thread limit is too low: ulimit -v, ulimit -u)"
    )]
    Thread(io::Error),
}

impl DiagError {
    /// The kernel does not support this kind of dump (protocol module missing).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, DiagError::Kernel { err, .. }
            if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::EOPNOTSUPP | libc::EPROTONOSUPPORT)))
    }
}

/// Where dumped items go: a Vec, or a printer that streams them out.
pub trait Sink<T> {
    /// A dump starts: remember the position to return to on a restart.
    fn begin(&mut self) {}
    fn item(&mut self, item: T) -> Result<(), DiagError>;
    /// The dump restarts from scratch; drop what it delivered since `begin`. Returns false
    /// when that is no longer possible (already written out).
    fn restart(&mut self) -> bool;
    /// Called while the kernel prepares the next batch of a large dump: a chance to do a
    /// short slice of other work on this thread. Returns false when there is none to do
    /// now (the caller then sleeps until the next batch).
    fn idle(&mut self) -> bool {
        false
    }
    /// Whether `idle` has work queued: the reader may then run further ahead, since the
    /// parser will fall behind while it does that work.
    fn has_idle_work(&self) -> bool {
        false
    }
}

/// Collects into a Vec (tests, the live table).
pub struct VecSink<T> {
    pub items: Vec<T>,
    mark: usize,
}

impl<T> Default for VecSink<T> {
    fn default() -> Self {
        VecSink {
            items: Vec::new(),
            mark: 0,
        }
    }
}

impl<T> Sink<T> for VecSink<T> {
    fn begin(&mut self) {
        self.mark = self.items.len();
    }
    fn item(&mut self, item: T) -> Result<(), DiagError> {
        self.items.push(item);
        Ok(())
    }
    fn restart(&mut self) -> bool {
        self.items.truncate(self.mark);
        true
    }
}

pub struct DiagSocket {
    sock: Socket,
    buf: Vec<u8>,
    seq: u32,
    /// Replies carry the request's type less this (sock_diag 0; rtnetlink 2: a RTM_GET*
    /// dump answers with RTM_NEW*).
    reply_offset: u16,
}

/// Builds `nlmsghdr` + `body`, with flags REQUEST|DUMP.
pub fn request(kind: u16, body: &[u8], seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// Appends one request attribute (e.g. INET_DIAG_REQ_BYTECODE) to `body`.
pub fn push_attr(body: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    body.extend_from_slice(&(len as u16).to_ne_bytes());
    body.extend_from_slice(&kind.to_ne_bytes());
    body.extend_from_slice(value);
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
}

impl DiagSocket {
    pub fn open() -> Result<Self, DiagError> {
        Self::open_protocol(NETLINK_SOCK_DIAG, 0)
    }

    /// A NETLINK_ROUTE socket for link and route dumps (same dump loop and checks).
    pub fn open_route() -> Result<Self, DiagError> {
        Self::open_protocol(netlink_sys::protocols::NETLINK_ROUTE, 2)
    }

    fn open_protocol(protocol: isize, reply_offset: u16) -> Result<Self, DiagError> {
        let mut sock = Socket::new(protocol).map_err(DiagError::Open)?;
        sock.bind_auto().map_err(DiagError::Open)?;
        // A larger receive buffer lets the kernel queue ahead of us; never fatal.
        if let Err(e) = sock.set_rx_buf_sz(4 * 1024 * 1024i32) {
            log::debug!("sock_diag receive buffer left at its default: {e}");
        }
        // Errors without the echoed request: a refused 64 KiB filter would not fit in a
        // datagram buffer. Old kernels without it echo, which the dump loop also handles.
        if let Err(e) = sock.set_cap_ack(true) {
            log::debug!("NETLINK_CAP_ACK refused, the kernel echoes requests in errors: {e}");
        }
        Ok(DiagSocket {
            sock,
            buf: Vec::new(),
            seq: 0,
            reply_offset,
        })
    }

    /// Sends a dump request and hands `parse(payload)` of every reply to `sink`, skipping
    /// `None`s. An interrupted dump (NLM_F_DUMP_INTR) is retried up to three times if the sink
    /// can still take back what it received; otherwise it is reported, never hidden.
    pub fn dump<T>(
        &mut self,
        what: &'static str,
        kind: u16,
        body: &[u8],
        sink: &mut dyn Sink<T>,
        mut parse: impl FnMut(&[u8]) -> Result<Option<T>, DiagError>,
    ) -> Result<(), DiagError> {
        const ATTEMPTS: u32 = 3;
        sink.begin();
        for attempt in 1..=ATTEMPTS {
            match self.dump_once(what, kind, body, sink, &mut parse) {
                Err(DiagError::Interrupted(_)) if attempt < ATTEMPTS && sink.restart() => {
                    continue;
                }
                Err(DiagError::Interrupted(_)) => return Err(DiagError::Interrupted(attempt)),
                other => return other,
            }
        }
        Ok(())
    }

    fn dump_once<T>(
        &mut self,
        what: &'static str,
        request_kind: u16,
        body: &[u8],
        sink: &mut dyn Sink<T>,
        parse: &mut impl FnMut(&[u8]) -> Result<Option<T>, DiagError>,
    ) -> Result<(), DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = request(request_kind, body, seq);
        self.sock.send(&req, 0).map_err(DiagError::Io)?;
        let mut walk = DumpWalk {
            seq,
            reply_kind: request_kind.wrapping_sub(self.reply_offset),
            what,
            interrupted: false,
        };
        let mut buf = batch_buffer(std::mem::take(&mut self.buf));
        let (filled, outcome) = fill_batch(&self.sock, seq, &mut buf);
        if !matches!(outcome, Ok(false)) {
            // The dump fit one batch (UDP, unix, routes) or failed: no second thread.
            let done = walk.batch(&buf[..filled], sink, parse);
            self.buf = buf;
            return match (done, outcome) {
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                (Ok(true), _) => Ok(()),
                (Ok(false), Ok(_)) => Err(DiagError::Malformed(
                    "the dump ended without NLMSG_DONE".into(),
                )),
            };
        }
        // The kernel builds each datagram inside recv(), and for a large dump that is half
        // the work: a reader thread keeps receiving while this one parses and prints, so
        // the two halves run on two cores. It starts before the first batch is parsed,
        // which may wait (JSON waits for the owner scan at its first object).
        let ahead = if sink.has_idle_work() {
            READ_AHEAD_BUSY
        } else {
            READ_AHEAD
        };
        let (full_tx, full_rx) = mpsc::sync_channel(ahead);
        let (free_tx, free_rx) = mpsc::channel();
        let sock = &self.sock;
        let (result, spare) = std::thread::scope(|scope| {
            let reader = std::thread::Builder::new()
                .name("netlink-reader".into())
                .spawn_scoped(scope, move || {
                    read_batches(sock, seq, &full_tx, &free_rx);
                });
            if let Err(e) = reader {
                return (Err(DiagError::Thread(e)), buf);
            }
            match walk.batch(&buf[..filled], sink, parse) {
                Err(e) => return (Err(e), buf),
                Ok(true) => return (Ok(()), buf),
                Ok(false) => {}
            }
            let _ = free_tx.send(buf);
            // Returns (and drops `full_rx`, which stops the reader) before the scope joins.
            parse_batches(full_rx, &free_tx, &mut walk, sink, parse)
        });
        self.buf = spare;
        result
    }
}

/// Batches the reader may fill ahead of the parser: few, as each one is peak memory.
const READ_AHEAD: usize = 2;
/// ... and while the parser has idle work to do (5 MiB): JSON output stops at its first
/// object until the owner scan is done, ~30 ms of dump at 100k sockets.
const READ_AHEAD_BUSY: usize = 40;
/// sock_diag datagrams are at most ~32 KiB; 64 KiB of room also fits rtnetlink's larger
/// first messages, and MSG_TRUNC catches anything bigger.
const DATAGRAM_ROOM: usize = 64 * 1024;
/// Consecutive datagrams (whole netlink messages each) are packed into one buffer of this
/// size, so the parser is woken once per three datagrams rather than for each.
const BATCH: usize = 128 * 1024;

/// Receives datagrams of dump `seq` into `buf` until it is nearly full or the dump ends.
/// Returns the bytes filled and whether the dump ended, or why receiving failed (the
/// bytes before the failure are still to be parsed: they may hold the kernel's error).
fn fill_batch(sock: &Socket, seq: u32, buf: &mut [u8]) -> (usize, Result<bool, DiagError>) {
    let mut filled = 0;
    while buf.len() - filled >= DATAGRAM_ROOM {
        let room = buf.len() - filled;
        match recv(sock, &mut buf[filled..]) {
            Ok(n) if n > room => {
                let err = DiagError::Malformed(format!(
                    "datagram of {n} bytes exceeds the {room} bytes of room"
                ));
                return (filled, Err(err));
            }
            Ok(n) => {
                let last = ends_dump(&buf[filled..filled + n], seq);
                filled += n;
                if last {
                    return (filled, Ok(true));
                }
            }
            Err(e) => return (filled, Err(e)),
        }
    }
    (filled, Ok(false))
}

/// `recycled` if it is a batch buffer, else a new one. New buffers come zeroed from the
/// allocator (fresh pages), so only the bytes a dump actually fills become resident.
fn batch_buffer(recycled: Vec<u8>) -> Vec<u8> {
    if recycled.len() == BATCH {
        recycled
    } else {
        vec![0u8; BATCH]
    }
}

fn recv(sock: &Socket, buf: &mut [u8]) -> Result<usize, DiagError> {
    loop {
        match sock.recv(&mut &mut buf[..], libc::MSG_TRUNC) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Err(DiagError::NoBuffers),
            Err(e) => return Err(DiagError::Io(e)),
        }
    }
}

/// A batch of received messages (the buffer and its filled length), or why receiving
/// stopped.
type Received = Result<(Vec<u8>, usize), DiagError>;

/// The reader thread: fills recycled buffers until the batch that ends the dump, an
/// error, or the parser hanging up.
fn read_batches(
    sock: &Socket,
    seq: u32,
    full: &mpsc::SyncSender<Received>,
    free: &mpsc::Receiver<Vec<u8>>,
) {
    loop {
        let mut buf = batch_buffer(free.try_recv().unwrap_or_default());
        let (filled, outcome) = fill_batch(sock, seq, &mut buf);
        match outcome {
            Ok(last) => {
                if full.send(Ok((buf, filled))).is_err() || last {
                    return;
                }
            }
            Err(e) => {
                if filled > 0 {
                    let _ = full.send(Ok((buf, filled)));
                }
                let _ = full.send(Err(e));
                return;
            }
        }
    }
}

/// Walks the batches of one dump, remembering NLM_F_DUMP_INTR across them.
struct DumpWalk {
    seq: u32,
    reply_kind: u16,
    what: &'static str,
    interrupted: bool,
}

impl DumpWalk {
    /// Hands every reply in `bytes` to `sink`, through `parse`. Ok(true) once the dump is
    /// complete.
    fn batch<T>(
        &mut self,
        bytes: &[u8],
        sink: &mut dyn Sink<T>,
        parse: &mut impl FnMut(&[u8]) -> Result<Option<T>, DiagError>,
    ) -> Result<bool, DiagError> {
        let mut on_reply = |payload: &[u8]| -> Result<(), DiagError> {
            if let Some(item) = parse(payload)? {
                sink.item(item)?;
            }
            Ok(())
        };
        match walk_datagram(bytes, self.seq, self.reply_kind, self.what, &mut on_reply)? {
            Walk::More { interrupted } => {
                self.interrupted |= interrupted;
                Ok(false)
            }
            Walk::Done { interrupted } if self.interrupted || interrupted => {
                Err(DiagError::Interrupted(1))
            }
            Walk::Done { .. } => Ok(true),
        }
    }
}

/// The parser side: walks each batch the reader hands over and recycles its buffer; while
/// none is ready, lets the sink do its idle work. Returns a buffer for the next dump.
fn parse_batches<T>(
    full: mpsc::Receiver<Received>,
    free: &mpsc::Sender<Vec<u8>>,
    walk: &mut DumpWalk,
    sink: &mut dyn Sink<T>,
    parse: &mut impl FnMut(&[u8]) -> Result<Option<T>, DiagError>,
) -> (Result<(), DiagError>, Vec<u8>) {
    let mut spare = Vec::new();
    loop {
        let received = match full.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) => {
                if sink.idle() {
                    continue;
                }
                match full.recv() {
                    Ok(r) => r,
                    Err(mpsc::RecvError) => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        let (buf, n) = match received {
            Ok(r) => r,
            Err(e) => return (Err(e), spare),
        };
        match walk.batch(&buf[..n], sink, parse) {
            Err(e) => return (Err(e), buf),
            Ok(true) => return (Ok(()), buf),
            Ok(false) => {}
        }
        // The reader may already have exited after the last batch.
        if let Err(mpsc::SendError(buf)) = free.send(buf) {
            spare = buf;
        }
    }
    let err = DiagError::Malformed("the dump ended without NLMSG_DONE".into());
    (Err(err), spare)
}

/// Whether this datagram ends dump `seq`: it holds its NLMSG_DONE or a failing
/// NLMSG_ERROR, or framing the parser will reject. Reads message headers only.
fn ends_dump(buf: &[u8], seq: u32) -> bool {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let h = &buf[off..];
        let len = u32_at(h, 0) as usize;
        if len < NLMSG_HDRLEN || len > h.len() {
            return true;
        }
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        if u32_at(h, 8) == seq {
            match kind {
                NLMSG_DONE => return true,
                NLMSG_ERROR if len < NLMSG_HDRLEN + 4 || u32_at(h, NLMSG_HDRLEN) != 0 => {
                    return true;
                }
                _ => {}
            }
        }
        off += (len + 3) & !3;
    }
    false
}

/// What one datagram of a dump said.
#[derive(Debug, PartialEq, Eq)]
pub enum Walk {
    /// More datagrams follow.
    More { interrupted: bool },
    /// NLMSG_DONE was seen.
    Done { interrupted: bool },
}

/// Walks the netlink messages of one received datagram: replies of type `reply_kind`
/// go to `on_reply`; NLMSG_DONE ends the dump; NLMSG_ERROR and malformed framing are
/// errors. Pure, so it can be fuzzed.
pub fn walk_datagram(
    buf: &[u8],
    seq: u32,
    reply_kind: u16,
    what: &'static str,
    on_reply: &mut impl FnMut(&[u8]) -> Result<(), DiagError>,
) -> Result<Walk, DiagError> {
    let n = buf.len();
    let mut interrupted = false;
    let mut off = 0;
    while off + NLMSG_HDRLEN <= n {
        let h = &buf[off..n];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let flags = u16::from_ne_bytes([h[6], h[7]]);
        let msg_seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        if len < NLMSG_HDRLEN || len > h.len() {
            return Err(DiagError::Malformed(format!(
                "message length {len} with {} bytes left",
                h.len()
            )));
        }
        let payload = &h[NLMSG_HDRLEN..len];
        off += (len + 3) & !3;
        if msg_seq != seq {
            // Left over from an earlier, abandoned dump.
            continue;
        }
        if flags & NLM_F_DUMP_INTR != 0 {
            interrupted = true;
        }
        match kind {
            NLMSG_DONE => {
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                if code < 0 {
                    return Err(DiagError::Kernel {
                        what,
                        err: io::Error::from_raw_os_error(code.saturating_neg()),
                    });
                }
                return Ok(Walk::Done { interrupted });
            }
            NLMSG_ERROR => {
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(|| DiagError::Malformed("short NLMSG_ERROR".into()))?;
                if code == 0 {
                    continue;
                }
                return Err(DiagError::Kernel {
                    what,
                    err: io::Error::from_raw_os_error(code.saturating_neg()),
                });
            }
            k if k == reply_kind => on_reply(payload)?,
            _ => {}
        }
    }
    Ok(Walk::More { interrupted })
}

/// Reads a native-endian u32 at `off`; the caller checked the length.
pub fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

pub fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(x)
}

/// Iterates `(kind, value)` over the attributes in `b`.
pub fn attrs(b: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), DiagError>> {
    netlink_packet_core::NlasIterator::new(b).map(|r| {
        r.map(|nla| {
            let kind = nla.kind() & 0x3fff;
            let len = usize::from(nla.length());
            // new_checked guaranteed 4 <= len <= the remaining bytes.
            (kind, &nla.into_inner()[4..len])
        })
        .map_err(|e| DiagError::Malformed(format!("attribute: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let mut body = vec![2u8, 6, 0, 0];
        push_attr(&mut body, 1, &[6, 4, 8, 0]);
        let m = request(SOCK_DIAG_BY_FAMILY, &body, 7);
        assert_eq!(m.len(), 16 + 4 + 8);
        assert_eq!(u32_at(&m, 0), 28);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 20);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x301);
        assert_eq!(u32_at(&m, 8), 7);
        assert_eq!(&m[20..24], &[8, 0, 1, 0]);
    }

    fn msg(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn walks_replies_done_errors_and_stale_messages() {
        let mut buf = msg(20, 2, 5, &[1, 2, 3, 4]);
        buf.extend(msg(20, 2, 4, &[9])); // stale sequence number: ignored
        buf.extend(msg(20, 2 | NLM_F_DUMP_INTR, 5, &[5]));
        let mut got = Vec::new();
        let mut sink = |p: &[u8]| {
            got.push(p.to_vec());
            Ok(())
        };
        assert_eq!(
            walk_datagram(&buf, 5, 20, "t", &mut sink).unwrap(),
            Walk::More { interrupted: true }
        );
        assert_eq!(got, vec![vec![1, 2, 3, 4], vec![5]]);

        let done = msg(NLMSG_DONE, 2, 5, &0i32.to_ne_bytes());
        assert_eq!(
            walk_datagram(&done, 5, 20, "t", &mut |_| Ok(())).unwrap(),
            Walk::Done { interrupted: false }
        );
        let failed = msg(NLMSG_ERROR, 0, 5, &(-22i32).to_ne_bytes());
        let err = walk_datagram(&failed, 5, 20, "TCP", &mut |_| Ok(())).unwrap_err();
        assert!(
            err.to_string().contains("rejected the TCP request"),
            "{err}"
        );
        let mut truncated = msg(20, 2, 5, &[0; 8]);
        truncated[0] = 200;
        assert!(matches!(
            walk_datagram(&truncated, 5, 20, "t", &mut |_| Ok(())),
            Err(DiagError::Malformed(_))
        ));
    }

    #[test]
    fn the_reader_stops_at_the_datagram_that_ends_the_dump() {
        let reply = msg(20, 2, 5, &[1, 2, 3, 4]);
        assert!(!ends_dump(&reply, 5));
        let mut done = reply.clone();
        done.extend(msg(NLMSG_DONE, 2, 5, &0i32.to_ne_bytes()));
        assert!(ends_dump(&done, 5));
        // Another dump's DONE (a stale sequence number) does not end this one.
        assert!(!ends_dump(&msg(NLMSG_DONE, 2, 4, &0i32.to_ne_bytes()), 5));
        // An ACK (error 0) does not end it; a real error or broken framing does.
        assert!(!ends_dump(&msg(NLMSG_ERROR, 0, 5, &0i32.to_ne_bytes()), 5));
        assert!(ends_dump(
            &msg(NLMSG_ERROR, 0, 5, &(-16i32).to_ne_bytes()),
            5
        ));
        assert!(ends_dump(&msg(NLMSG_ERROR, 0, 5, &[]), 5));
        let mut broken = reply;
        broken[0] = 200;
        assert!(ends_dump(&broken, 5));
    }

    #[test]
    fn attributes_and_malformed_attributes() {
        let mut b = Vec::new();
        push_attr(&mut b, 8, &[3]);
        push_attr(&mut b, 15, &7u32.to_ne_bytes());
        let got: Vec<_> = attrs(&b).map(|r| r.unwrap()).collect();
        assert_eq!(got, vec![(8, &[3u8][..]), (15, &7u32.to_ne_bytes()[..])]);
        // An attribute claiming more bytes than there are is an error, not a panic.
        let bad = [200u8, 0, 1, 0, 0, 0];
        assert!(attrs(&bad).any(|r| r.is_err()));
    }
}
