//! `iter/task_file`: walks every open file of every process in the kernel and writes one
//! `OwnerRecord` per socket to the iterator's seq_file. This is how `sockstat -p` finds
//! owners without a readlink per file descriptor.
//!
//! Context layout (kernel/bpf/task_iter.c, DEFINE_BPF_ITER_FUNC(task_file, ...)):
//! `struct bpf_iter__task_file { struct bpf_iter_meta *meta; struct task_struct *task;
//! u32 fd; struct file *file; }`, each pointer member 8 bytes; `struct bpf_iter_meta` starts
//! with `struct seq_file *seq`. Kernel struct fields are read at BTF-resolved offsets.
use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_seq_write;
use sockstat_common::OwnerRecord;

use crate::maps::owner_offsets;

const CTX_META: usize = 0;
const CTX_TASK: usize = 8;
const CTX_FD: usize = 16;
const CTX_FILE: usize = 24;
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

#[inline(always)]
unsafe fn load<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
    unsafe { core::ptr::read_volatile(base.add(offset as usize).cast::<T>()) }
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn socket_owners(ctx: *mut c_void) -> i32 {
    // SAFETY: `ctx` is the iterator context the kernel passes (layout in the module doc).
    let _ = unsafe { try_socket_owners(ctx.cast::<u8>()) };
    0
}

unsafe fn try_socket_owners(ctx: *const u8) -> Result<(), i32> {
    // Direct loads keep the verifier's BTF types (seq_file, task, file), which
    // bpf_seq_write needs; kernel struct fields are then read with probe_read.
    // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
    let meta = unsafe { core::ptr::read_volatile(ctx.add(CTX_META).cast::<*const u8>()) };
    // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
    let task = unsafe { core::ptr::read_volatile(ctx.add(CTX_TASK).cast::<*const u8>()) };
    // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
    let file = unsafe { core::ptr::read_volatile(ctx.add(CTX_FILE).cast::<*const u8>()) };
    if meta.is_null() || task.is_null() || file.is_null() {
        return Ok(());
    }
    // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
    let fd = unsafe { core::ptr::read_volatile(ctx.add(CTX_FD).cast::<u32>()) };
    let off = owner_offsets();
    if off.valid == 0 {
        return Err(-1);
    }
    // `file` and `task` are BTF-typed pointers, and the offsets come from frozen read-only
    // data the verifier treats as constants: plain loads (checked against BTF, faults
    // handled) instead of a bpf_probe_read_kernel call per field, the iterator's main cost.
    // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
    let inode = unsafe { load::<*const u8>(file, off.file_f_inode) };
    if inode.is_null() {
        return Ok(());
    }
    // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
    let mode = unsafe { load::<u16>(inode, off.inode_i_mode) };
    if mode & S_IFMT != S_IFSOCK {
        return Ok(());
    }
    let rec = OwnerRecord {
        // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
        tgid: unsafe { load::<i32>(task, off.task_tgid) } as u32,
        fd,
        // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
        inode: unsafe { load::<u64>(inode, off.inode_i_ino) },
        // Two plain 8-byte loads, like the fields above, instead of a helper call per socket.
        // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
        comm: unsafe {
            let lo = load::<u64>(task, off.task_comm).to_ne_bytes();
            let hi = load::<u64>(task, off.task_comm + 8).to_ne_bytes();
            let mut c = [0u8; 16];
            c[..8].copy_from_slice(&lo);
            c[8..].copy_from_slice(&hi);
            c
        },
    };
    // SAFETY: iterator context or BTF-typed pointer, frozen offset (verifier-checked).
    let seq = unsafe { core::ptr::read_volatile(meta.cast::<*mut c_void>()) };
    // SAFETY: `seq` is the iterator's seq_file and `rec` outlives the call.
    unsafe {
        bpf_seq_write(
            seq.cast(),
            (&rec as *const OwnerRecord).cast(),
            core::mem::size_of::<OwnerRecord>() as u32,
        )
    };
    Ok(())
}
