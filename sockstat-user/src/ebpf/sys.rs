//! The few bpf(2) calls sockstat makes itself (aya 0.14 does not expose them), on the
//! kernel's own types from aya-obj's bindings.
use std::os::fd::{AsRawFd, BorrowedFd};

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};

/// bpf(2) with a command and its attribute union; the kernel reads only the arm `cmd`
/// selects.
pub fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid bpf_attr of the size passed, zero-initialised by the caller
    // except for the arm `cmd` selects.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret)
}

pub fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is plain data; all-zero is its documented "unset" value.
    unsafe { std::mem::zeroed() }
}

/// The kernel's `bpf_prog_info` of a loaded program (BPF_OBJ_GET_INFO_BY_FD). Fields a
/// kernel does not know stay zero.
pub fn prog_info(prog: BorrowedFd<'_>) -> std::io::Result<bpf_prog_info> {
    // SAFETY: bpf_prog_info is plain data; the kernel fills what it knows.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = zeroed_attr();
    // The BPF_OBJ_GET_INFO_BY_FD arm; `info` outlives the call.
    attr.info.bpf_fd = prog.as_raw_fd() as u32;
    attr.info.info_len = std::mem::size_of::<bpf_prog_info>() as u32;
    attr.info.info = (&mut info as *mut bpf_prog_info) as u64;
    bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}
