//! Socket owners from the `iter/task_file` program: the kernel walks every process's file
//! table and hands back (pid, fd, inode, comm) for sockets only, instead of one readlink per
//! file descriptor from user space.
use std::{collections::HashMap, io::Read};

use sockstat_common::OwnerRecord;

use super::{
    iter_loader::{self, IterError},
    loader::PROGRAMS,
    offsets::{KernelBtf, OffsetError},
};
use crate::procs::{Owner, Owners};

const PROG: &str = "socket_owners";
const ITER: &str = "task_file";

#[derive(Debug, thiserror::Error)]
pub enum OwnersError {
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    #[error(transparent)]
    Iter(#[from] IterError),
    #[error("reading the owner iterator: {0}")]
    Read(#[from] std::io::Error),
}

/// Socket owners: from the kernel's task_file iterator when we may load BPF programs (one
/// pass in the kernel), else from /proc (one readlink per file descriptor). Both are exact.
pub fn socket_owners_any() -> Owners {
    if super::privilege::can_trace()
        && let Ok(owners) = socket_owners()
    {
        return owners;
    }
    crate::procs::socket_owners(None)
}

/// Runs the iterator once and returns every socket's owners, ordered by pid then fd.
pub fn socket_owners() -> Result<Owners, OwnersError> {
    let kernel = KernelBtf::load()?;
    let offsets = kernel.owner_offsets()?;
    let target_id = kernel.func_id(&format!("bpf_iter_{ITER}"))?;
    drop(kernel);
    // SAFETY: OwnerOffsets is #[repr(C)] plain data with explicit padding (sockstat-common).
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&offsets as *const sockstat_common::OwnerOffsets).cast::<u8>(),
            std::mem::size_of_val(&offsets),
        )
    };
    let file = iter_loader::open_iterator(PROGRAMS, PROG, target_id, &[("OWNER_OFFSETS", bytes)])?;
    Ok(read_records(file)?)
}

/// Decodes the iterator's output as it is read, 256 KiB at a time. Records come grouped
/// by task, so a process's name is looked up once per run of its records, not per socket.
fn read_records(mut file: std::fs::File) -> std::io::Result<Owners> {
    let size = std::mem::size_of::<OwnerRecord>();
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let mut comms: HashMap<u32, String> = HashMap::new();
    let mut entries = Vec::new();
    let mut last_tgid = None;
    loop {
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        filled += n;
        let whole = filled - filled % size;
        for chunk in buf[..whole].chunks_exact(size) {
            entries.push(decode_one(chunk, &mut comms, &mut last_tgid));
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
        if n == 0 {
            break;
        }
    }
    Ok(Owners::new(entries, comms))
}

fn decode_one(
    chunk: &[u8],
    comms: &mut HashMap<u32, String>,
    last_tgid: &mut Option<u32>,
) -> Owner {
    // SAFETY: an exact-size chunk of a Pod type; read_unaligned makes no alignment claim.
    let rec: OwnerRecord = unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
    if *last_tgid != Some(rec.tgid) {
        *last_tgid = Some(rec.tgid);
        comms.entry(rec.tgid).or_insert_with(|| {
            let n = rec.comm.iter().position(|&b| b == 0).unwrap_or(16);
            String::from_utf8_lossy(&rec.comm[..n]).into_owned()
        });
    }
    // sock_diag reports 32-bit inode numbers.
    Owner {
        inode: rec.inode as u32,
        pid: rec.tgid,
        fd: rec.fd,
    }
}
