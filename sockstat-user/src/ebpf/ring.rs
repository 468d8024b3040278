//! Draining the event ring buffer through tokio's `AsyncFd`, as aya's own ring_buf tests do:
//! wait until readable, drain everything, clear readiness.
use std::io;

use aya::maps::{MapData, RingBuf};
use tokio::io::{Interest, unix::AsyncFd};

use super::events::{DecodeError, KernelEvent, decode};

/// Records user space took from the ring.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingCounts {
    pub decoded: u64,
    pub undecodable: u64,
}

pub struct EventStream {
    fd: AsyncFd<RingBuf<MapData>>,
}

impl EventStream {
    pub fn new(ring: RingBuf<MapData>) -> io::Result<Self> {
        // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as
        // long as the RingBuf (owned by the AsyncFd) lives.
        let fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Waits until the ring buffer has data, then appends every available record to `batch`.
    pub async fn next_batch(
        &mut self,
        batch: &mut Vec<Result<KernelEvent, DecodeError>>,
    ) -> io::Result<()> {
        let mut guard = self.fd.readable_mut().await?;
        drain(guard.get_inner_mut(), batch);
        guard.clear_ready();
        Ok(())
    }

    /// Drains whatever is there without waiting (used once more at shutdown).
    pub fn drain_now(&mut self, batch: &mut Vec<Result<KernelEvent, DecodeError>>) {
        drain(self.fd.get_mut(), batch);
    }
}

fn drain(ring: &mut RingBuf<MapData>, batch: &mut Vec<Result<KernelEvent, DecodeError>>) {
    while let Some(item) = ring.next() {
        batch.push(decode(&item));
    }
}
