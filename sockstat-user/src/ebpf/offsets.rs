//! Kernel struct offsets, resolved from the running kernel's BTF (`/sys/kernel/btf/vmlinux`)
//! at load time. The kernel programs read sockets only at these offsets, so a kernel with a
//! different `struct sock` layout works without a rebuild.
use std::path::Path;

use btf_rs::{Btf, Type};
use sockstat_common::{OwnerOffsets, SockOffsets, TcpOffsets, TwOffsets};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error("cannot read kernel BTF {path}: {source}")]
    Load {
        path: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error("kernel BTF has no {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no field {field}")]
    NoField { strukt: String, field: String },
    #[error("kernel BTF: field {0} is a bitfield or not byte aligned")]
    Unaligned(String),
    #[error("kernel BTF: {0}")]
    Btf(#[from] btf_rs::Error),
}

/// The kernel's BTF copied into a memfd and mapped from there (btf-rs maps only files).
fn mapped_copy() -> Result<Btf, btf_rs::Error> {
    use std::os::fd::FromRawFd;
    // SAFETY: a valid NUL-terminated name; the flags are memfd_create's.
    let fd = unsafe { libc::memfd_create(c"sockstat-btf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: a new fd that we now own.
    let mut copy = unsafe { std::fs::File::from_raw_fd(fd) };
    std::io::copy(&mut std::fs::File::open(VMLINUX_BTF)?, &mut copy)?;
    // The mapping holds the memfd's pages after the fd is closed.
    Btf::from_file_with_backend(format!("/proc/self/fd/{fd}"), btf_rs::Backend::Mmap)
}

/// The running kernel's type information.
pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn available() -> bool {
        Path::new(VMLINUX_BTF).exists()
    }

    /// Maps the BTF file rather than parsing it up front: parsing all of vmlinux takes
    /// ~150 ms here and ~30 MB, mapping 2 ms and nothing, and we look up a dozen fields.
    /// Older kernels (6.1 and 6.12 among them) cannot map the sysfs file: there it is
    /// copied into a memfd (its ~5 MB, while this lives) and that is mapped.
    pub fn load() -> Result<Self, OffsetError> {
        let load_err = |source| OffsetError::Load {
            path: VMLINUX_BTF.to_string(),
            source,
        };
        let btf = Btf::from_file_with_backend(VMLINUX_BTF, btf_rs::Backend::Mmap)
            .or_else(|_| mapped_copy())
            .or_else(|e| {
                log::debug!("kernel BTF parsed whole: it could not be mapped ({e})");
                Btf::from_file(VMLINUX_BTF)
            })
            .map_err(load_err)?;
        Ok(Self { btf })
    }

    /// Byte offset of `path` (dot separated, anonymous unions and structs looked through)
    /// inside `struct strukt`.
    pub fn offset_of(&self, strukt: &str, path: &str) -> Result<u32, OffsetError> {
        self.offset_in(self.struct_named(strukt)?, strukt, path)
    }

    /// `offset_of` within an already resolved struct: each name lookup scans all of BTF.
    fn offset_in(&self, mut ty: Type, strukt: &str, path: &str) -> Result<u32, OffsetError> {
        let mut bits: u32 = 0;
        for field in path.split('.') {
            let (member_bits, member_ty) =
                self.find_member(&ty, field)?
                    .ok_or_else(|| OffsetError::NoField {
                        strukt: strukt.to_string(),
                        field: path.to_string(),
                    })?;
            bits += member_bits;
            ty = member_ty;
        }
        if !bits.is_multiple_of(8) {
            return Err(OffsetError::Unaligned(format!("{strukt}.{path}")));
        }
        Ok(bits / 8)
    }

    fn struct_named(&self, name: &str) -> Result<Type, OffsetError> {
        self.btf
            .resolve_types_by_name(name)
            .unwrap_or_default()
            .into_iter()
            .find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))
            .ok_or_else(|| OffsetError::NoStruct(format!("struct {name}")))
    }

    /// Finds `field` in a struct or union, descending into anonymous members. Returns the bit
    /// offset from the start of `ty` and the (typedef-resolved) type of the field.
    fn find_member(&self, ty: &Type, field: &str) -> Result<Option<(u32, Type)>, OffsetError> {
        let members = match ty {
            Type::Struct(s) | Type::Union(s) => &s.members,
            _ => return Ok(None),
        };
        for member in members {
            let name = self.btf.resolve_name(member).unwrap_or_default();
            if member.bitfield_size().is_some_and(|size| size != 0) && name == field {
                return Err(OffsetError::Unaligned(field.to_string()));
            }
            let member_ty = self.strip(self.btf.resolve_chained_type(member)?)?;
            if name == field {
                return Ok(Some((member.bit_offset(), member_ty)));
            }
            if name.is_empty()
                && let Some((inner, found)) = self.find_member(&member_ty, field)?
            {
                return Ok(Some((member.bit_offset() + inner, found)));
            }
        }
        Ok(None)
    }

    /// Looks through typedefs and qualifiers.
    fn strip(&self, mut ty: Type) -> Result<Type, OffsetError> {
        loop {
            ty = match &ty {
                Type::Typedef(t) => self.btf.resolve_chained_type(t)?,
                Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => {
                    self.btf.resolve_chained_type(t)?
                }
                Type::TypeTag(t) => self.btf.resolve_chained_type(t)?,
                _ => return Ok(ty),
            };
        }
    }

    /// Every `struct sock` offset the state-change program needs.
    pub fn sock_offsets(&self) -> Result<SockOffsets, OffsetError> {
        let sock = |path: &str| self.offset_of("sock", path);
        Ok(SockOffsets {
            skc_family: sock("__sk_common.skc_family")?,
            skc_daddr: sock("__sk_common.skc_daddr")?,
            skc_rcv_saddr: sock("__sk_common.skc_rcv_saddr")?,
            skc_dport: sock("__sk_common.skc_dport")?,
            inet_sport: self.offset_of("inet_sock", "inet_sport")?,
            skc_v6_daddr: sock("__sk_common.skc_v6_daddr")?,
            skc_v6_rcv_saddr: sock("__sk_common.skc_v6_rcv_saddr")?,
            skc_net: sock("__sk_common.skc_net")?,
            net_ns_inum: self.offset_of("net", "ns.inum")?,
            sk_protocol: sock("sk_protocol")?,
            sk_lock_owned: sock("sk_lock.owned")?,
            sk_bpf_storage: sock("sk_bpf_storage")?,
            sk_err: sock("sk_err")?,
            sk_flags: sock("__sk_common.skc_flags")?,
            tcp_bytes_acked: self.offset_of("tcp_sock", "bytes_acked")?,
            tcp_bytes_received: self.offset_of("tcp_sock", "bytes_received")?,
            tcp_total_retrans: self.offset_of("tcp_sock", "total_retrans")?,
            tcp_srtt_us: self.offset_of("tcp_sock", "srtt_us")?,
            icsk_pending: self.offset_of("inet_connection_sock", "icsk_pending")?,
            skb_cb: self.offset_of("sk_buff", "cb")?,
            sk_cgroup: 0,
            cgroup_kn: 0,
            kernfs_node_id: 0,
            valid: 1,
        })
    }

    /// The socket's cgroup (`sk_cgrp_data.cgroup->kn->id`) into `off`; an error where the
    /// kernel keeps no cgroup with its sockets (no CONFIG_SOCK_CGROUP_DATA).
    pub fn socket_cgroup_offsets(&self, off: &mut SockOffsets) -> Result<(), OffsetError> {
        off.sk_cgroup = self.offset_of("sock", "sk_cgrp_data.cgroup")?;
        off.cgroup_kn = self.offset_of("cgroup", "kn")?;
        off.kernfs_node_id = self.offset_of("kernfs_node", "id")?;
        Ok(())
    }
}

impl KernelBtf {
    /// `struct tcp_sock` offsets for `tcp_info`'s figures.
    pub fn tcp_offsets(&self) -> Result<TcpOffsets, OffsetError> {
        let tcp = |path: &str| self.offset_of("tcp_sock", path);
        Ok(TcpOffsets {
            // `struct minmax { struct minmax_sample s[3]; }`: the minimum is `s[0].v`.
            min_rtt: tcp("rtt_min.s")? + self.offset_of("minmax_sample", "v")?,
            snd_cwnd: tcp("snd_cwnd")?,
            mss_cache: tcp("mss_cache")?,
            rate_delivered: tcp("rate_delivered")?,
            rate_interval_us: tcp("rate_interval_us")?,
        })
    }

    /// Offsets for the timewait hooks (sockstat-ebpf/src/timewait.rs).
    pub fn tw_offsets(&self) -> Result<TwOffsets, OffsetError> {
        let tw = self.struct_named("inet_timewait_sock")?;
        let common = self.struct_named("sock_common")?;
        let skb = self.struct_named("sk_buff")?;
        Ok(TwOffsets {
            timer_function: self.offset_of("timer_list", "function")?,
            tw_timer: self.offset_in(tw.clone(), "inet_timewait_sock", "tw_timer")?,
            tw_substate: self.offset_in(tw, "inet_timewait_sock", "tw_substate")?,
            skc_cookie: self.offset_in(common.clone(), "sock_common", "skc_cookie")?,
            skc_num: self.offset_in(common.clone(), "sock_common", "skc_num")?,
            skc_state: self.offset_in(common, "sock_common", "skc_state")?,
            tcp_linger2: self.offset_of("tcp_sock", "linger2")?,
            skb_head: self.offset_in(skb.clone(), "sk_buff", "head")?,
            skb_network_header: self.offset_in(skb.clone(), "sk_buff", "network_header")?,
            skb_transport_header: self.offset_in(skb.clone(), "sk_buff", "transport_header")?,
            skb_dev: self.offset_in(skb.clone(), "sk_buff", "dev")?,
            skb_sk: self.offset_in(skb.clone(), "sk_buff", "sk")?,
            skb_refdst: self.offset_in(skb, "sk_buff", "_skb_refdst")?,
            dst_dev: self.offset_of("dst_entry", "dev")?,
            dev_nd_net: self.offset_of("net_device", "nd_net")?,
            valid: 1,
            _pad0: 0,
        })
    }

    /// The value of `member` in `enum name` (e.g. a drop reason: their numbers move between
    /// kernels as reasons are added).
    pub fn enum_value(&self, name: &str, member: &str) -> Result<u32, OffsetError> {
        self.enum_members(name)?
            .into_iter()
            .find(|(_, n)| n == member)
            .map(|(value, _)| value)
            .ok_or_else(|| OffsetError::NoField {
                strukt: format!("enum {name}"),
                field: member.to_string(),
            })
    }

    /// Every member of `enum name`: value and name.
    pub fn enum_members(&self, name: &str) -> Result<Vec<(u32, String)>, OffsetError> {
        let types = self.btf.resolve_types_by_name(name).unwrap_or_default();
        let Some(Type::Enum(e)) = types.into_iter().find(|t| matches!(t, Type::Enum(_))) else {
            return Err(OffsetError::NoStruct(format!("enum {name}")));
        };
        Ok(e.members
            .iter()
            .filter_map(|m| Some((m.val(), self.btf.resolve_name(m).ok()?)))
            .collect())
    }

    /// The type id of kernel function `name` (BTF_KIND_FUNC).
    pub fn func_id(&self, name: &str) -> Result<u32, OffsetError> {
        let ids = self.btf.resolve_ids_by_name(name).unwrap_or_default();
        ids.into_iter()
            .find(|&id| matches!(self.btf.resolve_type_by_id(id), Ok(Type::Func(_))))
            .ok_or_else(|| OffsetError::NoStruct(format!("function {name}")))
    }

    /// The type id of typedef `name` (BTF_KIND_TYPEDEF).
    pub fn typedef_id(&self, name: &str) -> Result<u32, OffsetError> {
        let ids = self.btf.resolve_ids_by_name(name).unwrap_or_default();
        ids.into_iter()
            .find(|&id| matches!(self.btf.resolve_type_by_id(id), Ok(Type::Typedef(_))))
            .ok_or_else(|| OffsetError::NoStruct(format!("typedef {name}")))
    }

    /// How many arguments tracepoint `name` passes a BTF program (its `btf_trace_<name>`
    /// prototype, less the leading context pointer).
    pub fn tracepoint_args(&self, name: &str) -> Result<usize, OffsetError> {
        let id = self.typedef_id(&format!("btf_trace_{name}"))?;
        let mut ty = self.strip(self.btf.resolve_type_by_id(id)?)?;
        if let Type::Ptr(p) = &ty {
            ty = self.btf.resolve_chained_type(p)?;
        }
        match ty {
            Type::FuncProto(proto) => Ok(proto.parameters.len().saturating_sub(1)),
            _ => Err(OffsetError::NoStruct(format!(
                "prototype of btf_trace_{name}"
            ))),
        }
    }

    /// Offsets for the `iter/task_file` owner program.
    pub fn owner_offsets(&self) -> Result<OwnerOffsets, OffsetError> {
        let inode = self.struct_named("inode")?;
        let task = self.struct_named("task_struct")?;
        Ok(OwnerOffsets {
            file_f_inode: self.offset_of("file", "f_inode")?,
            inode_i_mode: self.offset_in(inode.clone(), "inode", "i_mode")?,
            inode_i_ino: self.offset_in(inode, "inode", "i_ino")?,
            task_tgid: self.offset_in(task.clone(), "task_struct", "tgid")?,
            task_comm: self.offset_in(task, "task_struct", "comm")?,
            valid: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memfd copy (kernels that cannot map the sysfs file) finds what the file finds.
    #[test]
    fn a_mapped_copy_resolves_like_the_file() {
        if !KernelBtf::available() {
            eprintln!("SKIPPED: no {VMLINUX_BTF} on this kernel");
            return;
        }
        let copy = KernelBtf {
            btf: mapped_copy().unwrap(),
        };
        let file = KernelBtf::load().unwrap();
        assert_eq!(copy.sock_offsets().unwrap(), file.sock_offsets().unwrap());
        let tracepoint = "btf_trace_inet_sock_set_state";
        assert_eq!(
            copy.typedef_id(tracepoint).unwrap(),
            file.typedef_id(tracepoint).unwrap()
        );
    }

    /// Reads this machine's BTF; skipped (loudly) where the kernel has none.
    #[test]
    fn resolves_sock_common_layout() {
        if !KernelBtf::available() {
            eprintln!("SKIPPED: no {VMLINUX_BTF} on this kernel");
            return;
        }
        let btf = KernelBtf::load().unwrap();
        let off = btf.sock_offsets().unwrap();
        // struct sock_common starts with the address pair, then the port pair, then the
        // family: stable since 2.6 and a good check that anonymous unions are looked through.
        assert_eq!(off.skc_daddr, 0);
        assert_eq!(off.skc_rcv_saddr, 4);
        assert_eq!(off.skc_dport, 12);
        assert!(
            off.inet_sport > off.sk_protocol,
            "inet_sock embeds struct sock first"
        );
        assert_eq!(off.skc_family, 16);
        assert!(off.skc_v6_daddr > off.skc_family);
        assert_eq!(off.skc_v6_rcv_saddr, off.skc_v6_daddr + 16);
        assert!(off.sk_protocol > off.skc_v6_rcv_saddr);
        // The socket's cgroup: `struct cgroup *` first in sock_cgroup_data, and the
        // kernfs node's u64 id.
        let mut with_cgroup = off;
        btf.socket_cgroup_offsets(&mut with_cgroup).unwrap();
        assert_eq!(
            with_cgroup.sk_cgroup,
            btf.offset_of("sock", "sk_cgrp_data").unwrap()
        );
        assert!(with_cgroup.sk_cgroup > off.sk_protocol.min(off.skc_family));
        assert_ne!(with_cgroup.kernfs_node_id, 0);
        assert!(matches!(
            btf.offset_of("sock", "no_such_field"),
            Err(OffsetError::NoField { .. })
        ));
    }

    #[test]
    fn resolves_timewait_layout() {
        if !KernelBtf::available() {
            eprintln!("SKIPPED: no {VMLINUX_BTF} on this kernel");
            return;
        }
        let btf = KernelBtf::load().unwrap();
        let tw = btf.tw_offsets().unwrap();
        let sock = btf.sock_offsets().unwrap();
        // A timewait socket starts with the same struct sock_common as a socket.
        assert!(tw.skc_num < sock.skc_family && tw.skc_num > sock.skc_dport);
        assert!(tw.skc_state > sock.skc_family);
        assert!(tw.tw_timer > tw.tw_substate || tw.tw_substate > tw.skc_cookie);
        assert!(tw.skb_network_header != tw.skb_transport_header);
    }

    #[test]
    fn counts_tracepoint_arguments() {
        if !KernelBtf::available() {
            eprintln!("SKIPPED: no {VMLINUX_BTF} on this kernel");
            return;
        }
        let btf = KernelBtf::load().unwrap();
        // (sk, oldstate, newstate) and (sk) on every kernel since 5.x.
        assert_eq!(btf.tracepoint_args("inet_sock_set_state").unwrap(), 3);
        assert_eq!(btf.tracepoint_args("tcp_receive_reset").unwrap(), 1);
        // (sk, skb), and `err` from 6.17.
        assert!(matches!(
            btf.tracepoint_args("tcp_retransmit_skb").unwrap(),
            2 | 3
        ));
        assert!(btf.tracepoint_args("no_such_tracepoint").is_err());
    }

    #[test]
    fn resolves_drop_reasons_by_name() {
        if !KernelBtf::available() {
            eprintln!("SKIPPED: no {VMLINUX_BTF} on this kernel");
            return;
        }
        let btf = KernelBtf::load().unwrap();
        let no_socket = btf
            .enum_value("skb_drop_reason", "SKB_DROP_REASON_NO_SOCKET")
            .unwrap();
        let not_specified = btf
            .enum_value("skb_drop_reason", "SKB_DROP_REASON_NOT_SPECIFIED")
            .unwrap();
        // NO_SOCKET directly follows NOT_SPECIFIED in every kernel that has both.
        assert_eq!(no_socket, not_specified + 1);
        assert!(matches!(
            btf.enum_value("skb_drop_reason", "SKB_DROP_REASON_NO_SUCH_THING"),
            Err(OffsetError::NoField { .. })
        ));
    }
}
