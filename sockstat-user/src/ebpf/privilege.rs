//! Does this process have what loading BPF tracing programs needs?
use std::fs;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// True when the effective capability set allows loading and attaching tracing programs:
/// CAP_SYS_ADMIN, or CAP_BPF together with CAP_PERFMON.
pub fn can_trace() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(caps_allow_tracing)
}

pub fn caps_allow_tracing(eff: u64) -> bool {
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets() {
        assert!(caps_allow_tracing(u64::MAX));
        assert!(caps_allow_tracing(1 << CAP_SYS_ADMIN));
        assert!(caps_allow_tracing((1 << CAP_BPF) | (1 << CAP_PERFMON)));
        assert!(!caps_allow_tracing(1 << CAP_BPF));
        assert!(!caps_allow_tracing(0));
    }
}
