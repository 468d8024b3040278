//! sockstat's kernel programs. Everything real sits under `cfg(target_arch = "bpf")` so the
//! host can still `cargo check`/`clippy` the workspace.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Map keys and values go by reference: the 512-byte BPF stack then holds one copy of each.
#![allow(clippy::needless_borrows_for_generic_args)]

#[cfg(target_arch = "bpf")]
#[macro_use]
mod maps;
#[cfg(target_arch = "bpf")]
mod drops;
#[cfg(target_arch = "bpf")]
mod owners;
#[cfg(target_arch = "bpf")]
mod rtt;
#[cfg(target_arch = "bpf")]
mod sock;
#[cfg(target_arch = "bpf")]
mod state_change;
#[cfg(target_arch = "bpf")]
mod tcp_events;
#[cfg(target_arch = "bpf")]
mod timewait;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any reachable loop, so a panic path must be unreachable in practice;
    // this only satisfies the compiler.
    loop {}
}

/// bpf_probe_read_kernel and the socket helpers are GPL-only.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
