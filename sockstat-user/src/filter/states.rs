//! State names and groups of ss's `state`/`exclude` (misc/ss.c `scan_state`), as bitmasks
//! over kernel state numbers.
use crate::tcp::TcpState;

const fn bit(s: TcpState) -> u32 {
    1 << (s as u32 + 1)
}

// TcpState's discriminants are kernel numbers minus one (Established = 0 => kernel 1).
pub const ESTABLISHED: u32 = 1 << 1;
pub const SYN_SENT: u32 = 1 << 2;
pub const SYN_RECV: u32 = 1 << 3;
pub const FIN_WAIT1: u32 = 1 << 4;
pub const FIN_WAIT2: u32 = 1 << 5;
pub const TIME_WAIT: u32 = 1 << 6;
pub const CLOSE: u32 = 1 << 7;
pub const CLOSE_WAIT: u32 = 1 << 8;
pub const LAST_ACK: u32 = 1 << 9;
pub const LISTEN: u32 = 1 << 10;
pub const CLOSING: u32 = 1 << 11;

/// Every state ss knows (bits 0..=11; bit 0 is "unknown").
pub const ALL: u32 = 0xfff;
/// ss's default for connection-oriented tables.
pub const CONNECTED_DEFAULT: u32 = ALL & !(LISTEN | CLOSE | TIME_WAIT | SYN_RECV);

const _: () = assert!(bit(TcpState::Established) == ESTABLISHED);
const _: () = assert!(bit(TcpState::Closing) == CLOSING);

/// The mask for a name after `state`/`exclude` (case-insensitive): one state by any of its
/// names (`TcpState::from_name`), or one of ss's groups.
pub fn mask(name: &str) -> Option<u32> {
    if let Some(s) = TcpState::from_name(name).filter(|s| bit(*s) & ALL != 0) {
        return Some(bit(s));
    }
    Some(match name.to_ascii_lowercase().as_str() {
        "all" => ALL,
        "connected" => ALL & !(CLOSE | LISTEN),
        "synchronized" => ALL & !(CLOSE | LISTEN | SYN_SENT),
        "bucket" => SYN_RECV | TIME_WAIT,
        "big" => ALL & !(SYN_RECV | TIME_WAIT),
        "unknown" => 1,
        _ => return None,
    })
}

/// True when kernel state `state` is in `mask`.
pub fn contains(mask: u32, state: u8) -> bool {
    state < 32 && mask & (1 << state) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_match_ss() {
        assert_eq!(mask("connected"), Some(0xb7f));
        assert_eq!(mask("synchronized"), Some(0xb7b));
        assert_eq!(mask("bucket"), Some(0x48));
        assert_eq!(mask("big"), Some(0xfb7));
        assert_eq!(CONNECTED_DEFAULT, 0xb37);
        assert_eq!(mask("TIME-WAIT"), Some(TIME_WAIT));
        assert_eq!(mask("bogus"), None);
        assert!(contains(ALL, 10));
        assert!(!contains(CONNECTED_DEFAULT, 10));
    }
}
