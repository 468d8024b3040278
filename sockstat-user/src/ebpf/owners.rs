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
use crate::procs::{Owner, Owners};

const PROG: &str = "socket_owners";
const ITER: &str = "task_file";

/// aya 0.14's `Iter::load` reads one thing from the `Btf` it is given: the type id of the
/// kernel function `bpf_iter_<type>`, which it passes to the kernel as the attach target.
/// Parsing all of vmlinux's BTF into aya for that costs ~20 MB and ~30 ms, more than the
/// whole listing. So the id comes from the mapped BTF (btf-rs), and aya gets a stand-in table
/// in which that function sits at the same id. The kernel resolves the id against its own BTF.
fn attach_target_btf(func: &str, id: u32) -> Btf {
    use aya_obj::btf::{BtfType, Func, FuncLinkage, Int, IntEncoding};
    let mut btf = Btf::new();
    let filler = BtfType::Int(Int::new(0, 4, IntEncoding::None, 0));
    // Type 0 is void and exists already; fill ids 1..id-1.
    for _ in 1..id {
        btf.add_type(filler.clone());
    }
    let name = btf.add_string(func);
    btf.add_type(BtfType::Func(Func::new(name, 0, FuncLinkage::Static)));
    btf
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
pub fn socket_owners() -> Result<Owners, LoadError> {
    let kernel = KernelBtf::load()?;
    let offsets = kernel.owner_offsets()?;
    let target = format!("bpf_iter_{ITER}");
    let target_id = kernel.func_id(&target)?;
    drop(kernel);
    // aya 0.14's `EbpfLoader::new` parses all of vmlinux's BTF (~20 MB) whatever `btf` is set
    // to afterwards; the loader is dropped before anything else is allocated, so that peak
    // is not stacked on ours. Our programs carry no CO-RE relocations: no kernel BTF needed.
    let mut ebpf = EbpfLoader::new()
        .btf(None)
        // The event ring is not used here: keep it at its minimum size.
        .map_max_entries("EVENTS", 4096)
        .override_global("OWNER_OFFSETS", &offsets, true)
        .load(PROGRAMS)?;
    let btf = attach_target_btf(&target, target_id);
    let program_err = |source| LoadError::Program {
        program: PROG,
        source,
    };
    let prog: &mut Iter = ebpf
        .program_mut(PROG)
        .ok_or(LoadError::Program {
            program: PROG,
            source: aya::programs::ProgramError::NotLoaded,
        })?
        .try_into()
        .map_err(program_err)?;
    prog.load(ITER, &btf).map_err(program_err)?;
    drop(btf);
    let link_id = prog.attach().map_err(program_err)?;
    let link = prog.take_link(link_id).map_err(program_err)?;
    let file = link.into_file().map_err(LoadError::Link)?;
    read_records(file).map_err(LoadError::Read)
}

/// Decodes the iterator's output as it is read, 64 KiB at a time.
fn read_records(file: std::fs::File) -> std::io::Result<Owners> {
    let size = std::mem::size_of::<OwnerRecord>();
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
    let mut comms: HashMap<u32, String> = HashMap::new();
    let mut entries = Vec::new();
    let mut rec = vec![0u8; size];
    loop {
        match reader.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        entries.push(decode_one(&rec, &mut comms));
    }
    Ok(Owners::new(entries, comms))
}

fn decode_one(chunk: &[u8], comms: &mut HashMap<u32, String>) -> Owner {
    // SAFETY: an exact-size chunk of a Pod type; read_unaligned makes no alignment claim.
    let rec: OwnerRecord = unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
    comms.entry(rec.tgid).or_insert_with(|| {
        let n = rec.comm.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&rec.comm[..n]).into_owned()
    });
    // sock_diag reports 32-bit inode numbers.
    Owner {
        inode: rec.inode as u32,
        pid: rec.tgid,
        fd: rec.fd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_btf_puts_the_target_at_its_id() {
        let btf = attach_target_btf("bpf_iter_task_file", 64261);
        assert_eq!(
            btf.id_by_type_name_kind("bpf_iter_task_file", aya_obj::btf::BtfKind::Func)
                .unwrap(),
            64261
        );
    }
}
