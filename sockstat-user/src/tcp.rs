//! The TCP state machine as the kernel numbers it (`include/net/tcp_states.h`) and as ss spells
//! it (`misc/ss.c`, `sstate_name`). Depends on nothing else in the crate.
use std::fmt;

use sockstat_common::tcp_state as k;

/// A kernel TCP state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
}

impl TcpState {
    /// Every state, in kernel order.
    pub const ALL: [TcpState; 13] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
        TcpState::BoundInactive,
    ];

    /// The states a socket is seen in: CLOSE is only passed through, and NEW-SYN-RECV and
    /// BOUND-INACTIVE are not states of full TCP sockets that ss lists.
    pub const SHOWN: [TcpState; 10] = {
        let mut shown = [TcpState::Established; 10];
        let (mut i, mut n) = (0, 0);
        while i < Self::ALL.len() {
            let s = Self::ALL[i];
            if !matches!(
                s,
                TcpState::Close | TcpState::NewSynRecv | TcpState::BoundInactive
            ) {
                shown[n] = s;
                n += 1;
            }
            i += 1;
        }
        shown
    };

    /// Decodes the kernel's number; `None` for numbers this build does not know.
    pub fn from_kernel(n: u8) -> Option<Self> {
        Some(match n {
            k::ESTABLISHED => TcpState::Established,
            k::SYN_SENT => TcpState::SynSent,
            k::SYN_RECV => TcpState::SynRecv,
            k::FIN_WAIT1 => TcpState::FinWait1,
            k::FIN_WAIT2 => TcpState::FinWait2,
            k::TIME_WAIT => TcpState::TimeWait,
            k::CLOSE => TcpState::Close,
            k::CLOSE_WAIT => TcpState::CloseWait,
            k::LAST_ACK => TcpState::LastAck,
            k::LISTEN => TcpState::Listen,
            k::CLOSING => TcpState::Closing,
            k::NEW_SYN_RECV => TcpState::NewSynRecv,
            k::BOUND_INACTIVE => TcpState::BoundInactive,
            _ => return None,
        })
    }

    pub fn kernel_number(self) -> u8 {
        match self {
            TcpState::Established => k::ESTABLISHED,
            TcpState::SynSent => k::SYN_SENT,
            TcpState::SynRecv => k::SYN_RECV,
            TcpState::FinWait1 => k::FIN_WAIT1,
            TcpState::FinWait2 => k::FIN_WAIT2,
            TcpState::TimeWait => k::TIME_WAIT,
            TcpState::Close => k::CLOSE,
            TcpState::CloseWait => k::CLOSE_WAIT,
            TcpState::LastAck => k::LAST_ACK,
            TcpState::Listen => k::LISTEN,
            TcpState::Closing => k::CLOSING,
            TcpState::NewSynRecv => k::NEW_SYN_RECV,
            TcpState::BoundInactive => k::BOUND_INACTIVE,
        }
    }

    /// ss's spelling (`ss -t` State column).
    pub fn ss_name(self) -> &'static str {
        k::NAMES[usize::from(self.kernel_number())]
    }

    /// A state by any name ss accepts for it in `state NAME` (case-insensitive): its own
    /// (`estab`, `time-wait`) or an alias (`established`, `syn-rcv`, `listening`,
    /// `closed`, `unconnected`).
    pub fn from_name(name: &str) -> Option<TcpState> {
        let name = name.to_ascii_lowercase();
        if let Some(s) = Self::ALL.into_iter().find(|s| s.lower_name() == name) {
            return Some(s);
        }
        Some(match name.as_str() {
            "established" => TcpState::Established,
            "syn-rcv" => TcpState::SynRecv,
            "listening" => TcpState::Listen,
            "closed" | "unconnected" => TcpState::Close,
            _ => return None,
        })
    }

    /// The lower-case spelling filters and alert metrics use.
    pub fn lower_name(self) -> &'static str {
        k::LOWER_NAMES[usize::from(self.kernel_number())]
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.ss_name())
    }
}

/// A state the kernel reported that this build has no name for; printed as `UNKNOWN(n)`
/// rather than dropped, so nothing is lost silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportedState {
    Known(TcpState),
    Unknown(u8),
}

impl ReportedState {
    pub fn from_kernel(n: u8) -> Self {
        TcpState::from_kernel(n).map_or(ReportedState::Unknown(n), ReportedState::Known)
    }

    /// The kernel's number for the state, known or not.
    pub fn kernel_number(self) -> u8 {
        match self {
            ReportedState::Known(s) => s.kernel_number(),
            ReportedState::Unknown(n) => n,
        }
    }
}

impl fmt::Display for ReportedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportedState::Known(s) => s.fmt(f),
            ReportedState::Unknown(n) => f.pad(&format!("UNKNOWN({n})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_numbers_round_trip() {
        for s in TcpState::ALL {
            assert_eq!(TcpState::from_kernel(s.kernel_number()), Some(s));
        }
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::from_kernel(14), None);
    }

    #[test]
    fn ss_spellings() {
        // The table itself is in sockstat-common; here, that each state reads it right.
        for (state, name) in [
            (TcpState::Established, "ESTAB"),
            (TcpState::SynRecv, "SYN-RECV"),
            (TcpState::FinWait1, "FIN-WAIT-1"),
            (TcpState::TimeWait, "TIME-WAIT"),
            (TcpState::Close, "CLOSE"),
            (TcpState::Listen, "LISTEN"),
            (TcpState::BoundInactive, "BOUND-INACTIVE"),
        ] {
            assert_eq!(state.ss_name(), name);
            assert_eq!(state.lower_name(), name.to_ascii_lowercase());
            assert_eq!(TcpState::from_name(name), Some(state));
        }
        let names: std::collections::HashSet<_> =
            TcpState::ALL.iter().map(|s| s.ss_name()).collect();
        assert_eq!(names.len(), TcpState::ALL.len(), "names are distinct");
        assert_eq!(ReportedState::from_kernel(42).to_string(), "UNKNOWN(42)");
    }
}
