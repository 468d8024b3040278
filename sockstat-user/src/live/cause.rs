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
}

impl Cause {
    pub fn name(self) -> String {
        match self {
            Cause::Fin => "fin".into(),
            Cause::RstIn => "rst-in".into(),
            Cause::RstOut => "rst-out".into(),
            Cause::Timeout => "timeout".into(),
            Cause::Errno(e) => errno_name(e).map_or_else(|| format!("errno-{e}"), str::to_string),
            Cause::TwOverflow => "tw-overflow".into(),
            Cause::Reused => "reused".into(),
            Cause::Killed => "killed".into(),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Names of the errnos a TCP connect or connection can end with.
pub fn errno_name(e: i32) -> Option<&'static str> {
    Some(match e {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EPIPE => "EPIPE",
        libc::EPROTO => "EPROTO",
        libc::ENETDOWN => "ENETDOWN",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Cause::Errno(libc::ECONNREFUSED).name(), "ECONNREFUSED");
        assert_eq!(Cause::Errno(4242).name(), "errno-4242");
        assert_eq!(Cause::RstIn.to_string(), "rst-in");
    }
}
