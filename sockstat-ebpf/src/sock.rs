//! Reading `struct sock` at offsets that user space resolved from the running kernel's BTF.
use core::ffi::c_void;

use aya_ebpf::helpers::bpf_probe_read_kernel;
use sockstat_common::SockOffsets;

#[inline(always)]
pub unsafe fn read<T>(base: *const u8, offset: u32) -> Result<T, i32> {
    unsafe { bpf_probe_read_kernel(base.add(offset as usize).cast::<T>()) }
}

/// Network-namespace inode of `sk`: `sk->__sk_common.skc_net.net->ns.inum`.
#[inline(always)]
pub unsafe fn netns_inum(sk: *const u8, off: &SockOffsets) -> Result<u32, i32> {
    let net: *const c_void = unsafe { read(sk, off.skc_net)? };
    if net.is_null() {
        return Ok(0);
    }
    unsafe { read(net.cast::<u8>(), off.net_ns_inum) }
}
