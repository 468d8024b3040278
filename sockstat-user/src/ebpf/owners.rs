//! Socket owners from the `iter/task_file` program: the kernel walks every process's file
//! table and hands back (pid, fd, inode, comm) for sockets only, instead of one readlink per
//! file descriptor from user space.
use std::{collections::HashMap, io::Read};

use aya::{Btf, EbpfLoader, programs::Iter};
use sockstat_common::OwnerRecord;

use super::{
    loader::{LoadError, PROGRAMS},
    offsets::KernelBtf,
};
use crate::procs::{OwnerMap, ProcRef};

const PROG: &str = "socket_owners";

/// Runs the iterator once and returns every socket's owners, ordered by pid then fd.
pub fn socket_owners() -> Result<OwnerMap, LoadError> {
    let offsets = KernelBtf::load()?.owner_offsets()?;
    let btf = Btf::from_sys_fs().map_err(|e| LoadError::Load(e.into()))?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        // The event ring is not used here: keep it at its minimum size.
        .map_max_entries("EVENTS", 4096)
        .override_global("OWNER_OFFSETS", &offsets, true)
        .load(PROGRAMS)?;
    let prog: &mut Iter = ebpf
        .program_mut(PROG)
        .ok_or(LoadError::Program {
            program: PROG,
            source: aya::programs::ProgramError::NotLoaded,
        })?
        .try_into()
        .map_err(|source| LoadError::Program {
            program: PROG,
            source,
        })?;
    let program_err = |source| LoadError::Program {
        program: PROG,
        source,
    };
    prog.load("task_file", &btf).map_err(program_err)?;
    let link_id = prog.attach().map_err(program_err)?;
    let link = prog.take_link(link_id).map_err(program_err)?;
    let mut file = link.into_file().map_err(LoadError::Link)?;
    let mut bytes = Vec::with_capacity(1 << 20);
    file.read_to_end(&mut bytes).map_err(LoadError::Read)?;
    Ok(decode(&bytes))
}

fn decode(bytes: &[u8]) -> OwnerMap {
    let size = std::mem::size_of::<OwnerRecord>();
    let mut comms: HashMap<u32, String> = HashMap::new();
    let mut map = OwnerMap::new();
    for chunk in bytes.chunks_exact(size) {
        // SAFETY: exact-size chunk of a Pod type; read_unaligned makes no alignment claim.
        let rec: OwnerRecord = unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
        let comm = comms
            .entry(rec.tgid)
            .or_insert_with(|| {
                let n = rec.comm.iter().position(|&b| b == 0).unwrap_or(16);
                String::from_utf8_lossy(&rec.comm[..n]).into_owned()
            })
            .clone();
        // Socket inodes are 32-bit in sock_diag.
        map.entry(rec.inode as u32).or_default().push(ProcRef {
            pid: rec.tgid,
            fd: rec.fd,
            comm,
        });
    }
    for refs in map.values_mut() {
        refs.sort();
    }
    map
}
