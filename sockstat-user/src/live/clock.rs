//! Kernel timestamps are CLOCK_MONOTONIC (`bpf_ktime_get_ns`); users read wall-clock time.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Converts monotonic nanoseconds to wall-clock time with an offset taken once at start-up
/// (a later `settimeofday` shifts printed times, not event order).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// realtime - monotonic, in ns.
    offset_ns: i128,
}

impl WallClock {
    pub fn now() -> Self {
        let mono = read(libc::CLOCK_MONOTONIC);
        let real = read(libc::CLOCK_REALTIME);
        Self {
            offset_ns: real - mono,
        }
    }

    /// A clock with a fixed offset: tests and golden output, and `history`, whose times are
    /// already on the wall clock (offset 0).
    pub fn fixed(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    pub fn to_system_time(self, monotonic_ns: u64) -> SystemTime {
        let ns = (monotonic_ns as i128 + self.offset_ns).max(0);
        let secs = (ns / 1_000_000_000) as u64;
        let sub = (ns % 1_000_000_000) as u32;
        UNIX_EPOCH + Duration::new(secs, sub)
    }
}

/// Current monotonic time in ns, on the same clock as kernel event timestamps.
pub fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC).max(0) as u64
}

fn read(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_with_the_offset() {
        let c = WallClock::fixed(1_700_000_000_000_000_000);
        let t = c.to_system_time(1_500);
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::new(1_700_000_000, 1_500)
        );
        let now = WallClock::now().to_system_time(monotonic_ns());
        let drift = SystemTime::now().duration_since(now).unwrap_or_default();
        assert!(drift < Duration::from_secs(1));
    }
}
