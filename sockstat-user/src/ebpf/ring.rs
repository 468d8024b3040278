//! The event ring buffer: a reader of our own, drained through tokio's `AsyncFd` (wait until
//! readable, drain everything, clear readiness).
//!
//! Why not aya's `RingBuf`: it maps the data area twice in a row, so that a record which
//! wraps around the end reads as one slice. The kernel fills every page of the mapping at
//! mmap time, so both copies count in RSS: 8 MB for the default 4 MiB ring, more than half
//! of an idle agent. This maps the data once and copies the rare record that wraps.
use std::{
    io,
    os::fd::{AsFd, AsRawFd, RawFd},
    ptr::NonNull,
    sync::atomic::{self, AtomicU32, AtomicUsize, Ordering},
};

use aya::maps::MapData;
use tokio::io::{Interest, unix::AsyncFd};

use super::events::{DecodeError, KernelEvent, decode};

/// The kernel's record header: its length with these two flags, then the page offset.
const HEADER_BYTES: usize = 8;
const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;

/// One shared mapping of the ring's fd, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize, prot: libc::c_int, offset: usize) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of a BPF map fd; the kernel checks size and offset.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self { ptr, len })
    }

    /// The word at `offset`, shared with the kernel.
    fn atomic<T>(&self, offset: usize) -> &T {
        debug_assert!(
            offset + size_of::<T>() <= self.len && offset.is_multiple_of(align_of::<T>())
        );
        // SAFETY: in bounds and aligned (page-aligned base, offsets of the kernel's layout);
        // the atomics are how the kernel and we share these words.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() }
    }

    fn bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        debug_assert!(range.end <= self.len);
        // SAFETY: within the mapping; the kernel does not write a committed record's bytes
        // until we move the consumer position past them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(range.start), range.len()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped, once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A BPF ring buffer's reader: the map (whose fd `AsyncFd` polls) and its mappings.
pub struct RingReader {
    ring: Ring,
    map: MapData,
}

impl RingReader {
    /// Maps ring buffer `map` of `data_bytes` (a power-of-two multiple of the page size).
    pub fn new(map: MapData, data_bytes: u32) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let data = data_bytes as usize;
        if !data.is_power_of_two() || data < page {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a ring buffer of {data} bytes"),
            ));
        }
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd, page + data, libc::PROT_READ, page)?;
        Ok(Self {
            ring: Ring::new(consumer, producer, page, data),
            map,
        })
    }

    /// Hands every committed record to `f`, in order, and frees its space.
    pub fn drain(&mut self, f: impl FnMut(&[u8])) {
        self.ring.drain(f);
    }
}

/// The kernel's layout: the consumer position page (ours to write), and the producer
/// position page followed by the data, mapped once.
struct Ring {
    consumer: Mapping,
    producer: Mapping,
    page: usize,
    /// Data size minus one (a power of two).
    mask: usize,
    pos: usize,
    /// A record that wraps around the data's end, put back together.
    scratch: Vec<u8>,
}

// SAFETY: the mappings are owned by this value alone; the raw pointers are only used through
// `&self`/`&mut self`.
unsafe impl Send for Ring {}

impl Ring {
    fn new(consumer: Mapping, producer: Mapping, page: usize, data: usize) -> Self {
        let pos = consumer.atomic::<AtomicUsize>(0).load(Ordering::Acquire);
        Self {
            consumer,
            producer,
            page,
            mask: data - 1,
            pos,
            scratch: Vec::new(),
        }
    }

    /// Hands every committed record to `f`, in order, and frees its space. Stops at a record
    /// still being written (its writer's commit wakes us or the next poll finds it).
    fn drain(&mut self, mut f: impl FnMut(&[u8])) {
        loop {
            let producer = self
                .producer
                .atomic::<AtomicUsize>(0)
                .load(Ordering::Acquire);
            if self.pos == producer {
                return;
            }
            while self.pos < producer {
                let offset = self.pos & self.mask;
                let header = self
                    .producer
                    .atomic::<AtomicU32>(self.page + offset)
                    .load(Ordering::Acquire);
                if header & BUSY_BIT != 0 {
                    return;
                }
                let len = (header & !(BUSY_BIT | DISCARD_BIT)) as usize;
                if header & DISCARD_BIT == 0 {
                    f(self.record(offset + HEADER_BYTES, len));
                }
                self.pos += (HEADER_BYTES + len).next_multiple_of(8);
                self.consumer
                    .atomic::<AtomicUsize>(0)
                    .store(self.pos, Ordering::Release);
            }
            // Pairs with the kernel's check of the consumer position when it decides
            // whether to wake us.
            atomic::fence(Ordering::SeqCst);
        }
    }

    /// `len` bytes of data from `start` (an offset into the data, which may run past its
    /// end and wrap to its start).
    fn record(&mut self, start: usize, len: usize) -> &[u8] {
        let size = self.mask + 1;
        let start = start & self.mask;
        let base = self.page;
        if start + len <= size {
            return self.producer.bytes(base + start..base + start + len);
        }
        let first = size - start;
        self.scratch.clear();
        self.scratch
            .extend_from_slice(self.producer.bytes(base + start..base + size));
        self.scratch
            .extend_from_slice(self.producer.bytes(base..base + len - first));
        &self.scratch
    }
}

impl AsRawFd for RingReader {
    fn as_raw_fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }
}

/// Records user space took from the ring.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingCounts {
    pub decoded: u64,
    pub undecodable: u64,
}

pub struct EventStream {
    fd: AsyncFd<RingReader>,
}

impl EventStream {
    pub fn new(ring: RingReader) -> io::Result<Self> {
        // SAFETY: the reader owns its map's fd, which stays open and unchanged for as long as
        // the reader (owned by the AsyncFd) lives.
        let fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }?;
        Ok(Self { fd })
    }

    /// Waits until the ring buffer has data, then appends every available record to `batch`.
    pub async fn next_batch(
        &mut self,
        batch: &mut Vec<Result<KernelEvent, DecodeError>>,
    ) -> io::Result<()> {
        let mut guard = self.fd.readable_mut().await?;
        guard.get_inner_mut().drain(|r| batch.push(decode(r)));
        guard.clear_ready();
        Ok(())
    }

    /// Drains whatever is there without waiting (used once more at shutdown).
    pub fn drain_now(&mut self, batch: &mut Vec<Result<KernelEvent, DecodeError>>) {
        self.fd.get_mut().drain(|r| batch.push(decode(r)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    fn anonymous(len: usize) -> Mapping {
        // SAFETY: a fresh private anonymous mapping.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Mapping {
            ptr: NonNull::new(ptr.cast()).unwrap(),
            len,
        }
    }

    /// Writes records as the kernel does: header (length and flags), then the data, which
    /// wraps at the end of the data area; returns the next position.
    fn produce(producer: &Mapping, pos: usize, data: &[u8], flags: u32) -> usize {
        let mask = PAGE - 1;
        let header = (data.len() as u32) | flags;
        let at = PAGE + (pos & mask);
        // SAFETY: test memory we own; offsets within the mapping.
        unsafe {
            producer.ptr.as_ptr().add(at).cast::<u32>().write(header);
            for (i, b) in data.iter().enumerate() {
                let off = PAGE + ((pos + HEADER_BYTES + i) & mask);
                producer.ptr.as_ptr().add(off).write(*b);
            }
        }
        pos + (HEADER_BYTES + data.len()).next_multiple_of(8)
    }

    /// A one-page ring over the two mappings, and what a first drain took from it.
    fn drained(consumer: Mapping, producer: Mapping) -> (Ring, Vec<Vec<u8>>) {
        let mut ring = Ring::new(consumer, producer, PAGE, PAGE);
        let mut got = Vec::new();
        ring.drain(|r| got.push(r.to_vec()));
        (ring, got)
    }

    #[test]
    fn records_come_out_in_order_with_the_wrapped_one_whole_and_discards_skipped() {
        let (consumer, producer) = (anonymous(PAGE), anonymous(2 * PAGE));
        // Start near the end so the third record wraps around the one-page data area.
        let start = 3 * PAGE - 200;
        consumer
            .atomic::<AtomicUsize>(0)
            .store(start, Ordering::Relaxed);
        let records: [(Vec<u8>, u32); 4] = [
            (vec![1; 100], 0),
            (vec![9; 16], DISCARD_BIT),
            ((0..152).map(|i| i as u8).collect(), 0),
            (vec![3; 40], 0),
        ];
        let mut pos = start;
        for (data, flags) in &records {
            pos = produce(&producer, pos, data, *flags);
        }
        producer
            .atomic::<AtomicUsize>(0)
            .store(pos, Ordering::Release);
        let (ring, got) = drained(consumer, producer);
        let want: Vec<Vec<u8>> = records
            .iter()
            .filter(|(_, flags)| flags & DISCARD_BIT == 0)
            .map(|(d, _)| d.clone())
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            ring.consumer
                .atomic::<AtomicUsize>(0)
                .load(Ordering::Relaxed),
            pos
        );
    }

    #[test]
    fn a_record_still_being_written_stops_the_drain_until_committed() {
        let (consumer, producer) = (anonymous(PAGE), anonymous(2 * PAGE));
        let mut pos = produce(&producer, 0, &[7; 24], 0);
        let busy_at = pos;
        pos = produce(&producer, pos, &[8; 24], BUSY_BIT);
        producer
            .atomic::<AtomicUsize>(0)
            .store(pos, Ordering::Release);
        let (mut ring, mut got) = drained(consumer, producer);
        assert_eq!(got, vec![vec![7; 24]]);
        // The writer commits: the header loses its busy bit.
        produce(&ring.producer, busy_at, &[8; 24], 0);
        ring.drain(|r| got.push(r.to_vec()));
        assert_eq!(got, vec![vec![7; 24], vec![8; 24]]);
    }
}
