//! Socket owners from the `iter/task_file` program: the kernel walks every process's file
//! table and hands back (pid, fd, inode, comm) for sockets only, instead of one readlink per
//! file descriptor from user space.
use std::{collections::HashMap, io::Read};

use sockstat_common::OwnerRecord;

use super::{
    loader::PROGRAMS,
    object::{self, KernelObject, Maps, ObjectError, ProgramKind},
    offsets::{KernelBtf, OffsetError},
};
use crate::procs::{Holder, Owners};

const PROG: &str = "socket_owners";
const ITER: &str = "task_file";

#[derive(Debug, thiserror::Error)]
pub enum OwnersError {
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    #[error(transparent)]
    Iter(#[from] ObjectError),
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
    let mut scan = OwnerScan::start()?;
    while scan.step()? {}
    Ok(scan.finish())
}

/// The owner iterator, read a chunk at a time, so that a thread with other work (the
/// listing's parser, between netlink batches) can run it in its idle moments instead of
/// a third thread competing for the CPUs.
pub struct OwnerScan {
    file: std::fs::File,
    buf: Vec<u8>,
    filled: usize,
    comms: HashMap<u32, String>,
    entries: Vec<Holder>,
    last_tgid: Option<u32>,
}

/// Bytes read per step: ~2000 records, a fraction of a millisecond of kernel work.
const STEP_BYTES: usize = 64 * 1024;

impl OwnerScan {
    /// Loads the program and opens the iterator; no task is visited yet.
    pub fn start() -> Result<Self, OwnersError> {
        let kernel = KernelBtf::load()?;
        let offsets = kernel.owner_offsets()?;
        let target_id = kernel.func_id(&format!("bpf_iter_{ITER}"))?;
        drop(kernel);
        let globals = [("OWNER_OFFSETS", object::pod_bytes(&offsets))];
        let file = {
            let object = KernelObject::load(PROGRAMS, &globals, &[], Maps::DataOnly)?;
            let program = object.load_program(PROG, ProgramKind::Iterator { btf_id: target_id })?;
            // The program holds its own references to the maps from here on.
            drop(object);
            object::open_iterator(&program)?
        };
        Ok(OwnerScan {
            file,
            buf: vec![0u8; STEP_BYTES],
            filled: 0,
            comms: HashMap::new(),
            entries: Vec::new(),
            last_tgid: None,
        })
    }

    /// Reads and decodes the next chunk. Returns false once the iterator is exhausted.
    /// Records come grouped by task, so a process's name is looked up once per run of its
    /// records, not per socket.
    pub fn step(&mut self) -> std::io::Result<bool> {
        let size = std::mem::size_of::<OwnerRecord>();
        let n = loop {
            match self.file.read(&mut self.buf[self.filled..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.filled += n;
        let whole = self.filled - self.filled % size;
        for chunk in self.buf[..whole].chunks_exact(size) {
            let owner = decode_one(chunk, &mut self.comms, &mut self.last_tgid);
            self.entries.push(owner);
        }
        self.buf.copy_within(whole..self.filled, 0);
        self.filled -= whole;
        Ok(n != 0)
    }

    pub fn finish(self) -> Owners {
        Owners::new(self.entries, self.comms)
    }
}

fn decode_one(
    chunk: &[u8],
    comms: &mut HashMap<u32, String>,
    last_tgid: &mut Option<u32>,
) -> Holder {
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
    Holder {
        inode: rec.inode as u32,
        pid: rec.tgid,
        fd: rec.fd,
    }
}
