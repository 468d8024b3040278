//! Why a socket left a state.
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A FIN exchange (orderly close).
    Fin,
    /// An RST arrived.
    RstIn,
    /// This host sent an RST (abortive close, SO_LINGER 0, data left unread).
    RstOut,
    /// A timer ran out (TIME-WAIT expiry, retransmission or keepalive timeout).
    Timeout,
    /// A connect failed with this errno.
    Errno(i32),
    /// The kernel could not keep a timewait socket (`tcp_max_tw_buckets` reached): the
    /// connection closed without TIME-WAIT.
    TwOverflow,
    /// A new connection took over the timewait socket's 4-tuple (`tcp_tw_reuse`).
    Reused,
    /// Ended early without an RST or a reuse: `ss -K`, a namespace going away.
    Killed,
    /// connect() found no free local port and failed (EADDRNOTAVAIL): the socket left
    /// SYN-SENT without one.
    NoLocalPort,
}

impl Cause {
    pub fn name(self) -> String {
        match (self, self.static_name()) {
            (_, Some(name)) => name.to_string(),
            // Only an errno without a name has no fixed one.
            (cause, None) => format!("errno-{}", cause.errno().unwrap_or_default()),
        }
    }

    fn errno(self) -> Option<i32> {
        match self {
            Cause::Errno(e) => Some(e),
            _ => None,
        }
    }

    /// The cause `name` gives (a stored lifetime's): the inverse of [`Cause::name`].
    pub fn from_name(name: &str) -> Option<Cause> {
        const FIXED: [Cause; 8] = [
            Cause::Fin,
            Cause::RstIn,
            Cause::RstOut,
            Cause::Timeout,
            Cause::TwOverflow,
            Cause::Reused,
            Cause::Killed,
            Cause::NoLocalPort,
        ];
        if let Some(c) = FIXED.into_iter().find(|c| c.static_name() == Some(name)) {
            return Some(c);
        }
        if let Some(&(errno, _)) = ERRNO_NAMES.iter().find(|(_, n)| *n == name) {
            return Some(Cause::Errno(errno));
        }
        name.strip_prefix("errno-")?.parse().ok().map(Cause::Errno)
    }

    /// The name when it is a fixed one (every cause but an errno without a name), so hot
    /// printers need not allocate.
    pub fn static_name(self) -> Option<&'static str> {
        Some(match self {
            Cause::Fin => "fin",
            Cause::RstIn => "rst-in",
            Cause::RstOut => "rst-out",
            Cause::Timeout => "timeout",
            Cause::Errno(e) => return errno_name(e),
            Cause::TwOverflow => "tw-overflow",
            Cause::Reused => "reused",
            Cause::Killed => "killed",
            Cause::NoLocalPort => "no-local-port",
        })
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.static_name() {
            Some(name) => f.write_str(name),
            None => f.write_str(&self.name()),
        }
    }
}

/// Names of the errnos a TCP connect or connection can end with.
pub fn errno_name(e: i32) -> Option<&'static str> {
    ERRNO_NAMES
        .iter()
        .find_map(|&(n, name)| (n == e).then_some(name))
}

/// The errnos a connection can end with that have a name here (others print as errno-N).
pub const ERRNO_NAMES: [(i32, &str); 13] = [
    (libc::ECONNREFUSED, "ECONNREFUSED"),
    (libc::ETIMEDOUT, "ETIMEDOUT"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH"),
    (libc::ENETUNREACH, "ENETUNREACH"),
    (libc::ECONNRESET, "ECONNRESET"),
    (libc::ECONNABORTED, "ECONNABORTED"),
    (libc::EPIPE, "EPIPE"),
    (libc::EPROTO, "EPROTO"),
    (libc::ENETDOWN, "ENETDOWN"),
    (libc::EHOSTDOWN, "EHOSTDOWN"),
    (libc::EACCES, "EACCES"),
    (libc::EPERM, "EPERM"),
    (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Cause::Errno(libc::ECONNREFUSED).name(), "ECONNREFUSED");
        assert_eq!(Cause::Errno(4242).name(), "errno-4242");
        assert_eq!(Cause::RstIn.to_string(), "rst-in");
        for c in [
            Cause::Fin,
            Cause::NoLocalPort,
            Cause::Errno(libc::ECONNREFUSED),
            Cause::Errno(4242),
        ] {
            assert_eq!(Cause::from_name(&c.name()), Some(c));
        }
        assert_eq!(Cause::from_name("nonsense"), None);
    }
}
