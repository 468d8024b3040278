//! sockstat's loader for its kernel object: aya-obj parses the ELF and performs the
//! relocations, aya creates the maps and wraps them (`MapData`, `PerCpuArray`, `Array`) and
//! probes the kernel's features, and this file makes the remaining bpf(2) calls: loading the
//! object's BTF and the programs, and attaching them.
//!
//! Why not aya's `EbpfLoader`: in aya 0.14, `EbpfLoader::new()` parses all of vmlinux's BTF
//! (~16 MB of RSS, ~30 ms) for CO-RE relocations these programs do not have (they read kernel
//! structs at offsets passed in `.rodata`), and `BtfTracePoint::load` wants that parse again
//! to find one type id. Those parses were most of the agents' and of `-p`'s peak RSS. The
//! few type ids needed come from btf-rs over the mapped BTF file instead (`offsets.rs`).
use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use aya::maps::{MapData, MapError};
use aya_obj::{
    EbpfSectionKind, Object,
    generated::{
        bpf_attach_type, bpf_attr, bpf_cmd, bpf_map_type, bpf_prog_type, perf_event_attr,
        perf_type_id,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("parsing the kernel object: {0}")]
    Parse(#[from] aya_obj::ParseError),
    #[error("relocating the kernel object: {0}")]
    Relocate(#[from] aya_obj::relocation::EbpfRelocationError),
    #[error("the kernel object's BTF: {0}")]
    Btf(#[from] aya_obj::btf::BtfError),
    #[error("program {0} missing from the kernel object")]
    MissingProgram(String),
    #[error("map {0} missing from the kernel object")]
    MissingMap(String),
    #[error("map {name}: {source}")]
    Map {
        name: String,
        #[source]
        source: MapError,
    },
    #[error("{call}: {source}")]
    Syscall {
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The verifier's refusal: `log` is the tail of its log (the statistics it ends with
    /// included).
    #[error("{source}")]
    Verifier {
        program: String,
        #[source]
        source: std::io::Error,
        log: String,
    },
}

/// Which of the object's maps to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Maps {
    /// Every map: the agent's programs.
    All,
    /// Only the data sections (`.rodata` and the like): a program that uses no other map (the
    /// owner iterator). The others' references get a placeholder fd nothing ever loads.
    DataOnly,
}

/// How a program is loaded and attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    /// `tp_btf`: the raw tracepoint whose `btf_trace_<name>` typedef has this BTF id.
    BtfTracepoint { btf_id: u32 },
    /// A classic (perf) tracepoint.
    Tracepoint,
    /// `iter/<target>`: the iterator whose `bpf_iter_<target>` function has this BTF id.
    Iterator { btf_id: u32 },
}

/// The parsed, relocated object with its maps created; programs are loaded on demand.
pub struct KernelObject {
    obj: Object,
    maps: HashMap<String, MapData>,
    /// The object's BTF in the kernel: the programs' function and line info, and the key and
    /// value types a socket-storage map must have.
    btf: Option<OwnedFd>,
}

/// A value's bytes, for the object's globals.
pub fn pod_bytes<T: aya::Pod>(value: &T) -> &[u8] {
    // SAFETY: Pod types are plain data without padding holes the kernel could misread
    // (sockstat-common pads explicitly and asserts sizes); the slice borrows `value`.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

impl KernelObject {
    /// Parses `bytes`, patches `globals` into the data sections, sizes the ring buffers named
    /// in `ring_bytes`, creates `which` maps and relocates the programs against them.
    pub fn load(
        bytes: &[u8],
        globals: &[(&str, &[u8])],
        ring_bytes: &[(&str, u32)],
        which: Maps,
    ) -> Result<Self, ObjectError> {
        let mut obj = Object::parse(bytes)?;
        obj.patch_map_data(
            globals
                .iter()
                .map(|&(name, data)| (name, (data, true)))
                .collect(),
        )?;
        let btf = match (which, aya::features().btf()) {
            (Maps::All, Some(features)) => match obj.fixup_and_sanitize_btf(features)? {
                Some(btf) => Some(load_btf(&btf.to_bytes())?),
                None => None,
            },
            _ => None,
        };
        let mut maps = HashMap::new();
        let mut layouts = Vec::new();
        for (name, map) in &mut obj.maps {
            let data = matches!(
                map.section_kind(),
                EbpfSectionKind::Data | EbpfSectionKind::Rodata | EbpfSectionKind::Bss
            );
            if which == Maps::DataOnly && !data {
                layouts.push((name.clone(), -1, map.clone()));
                continue;
            }
            if map.map_type() == bpf_map_type::BPF_MAP_TYPE_RINGBUF as u32 {
                if let Some(&(_, size)) = ring_bytes.iter().find(|(ring, _)| ring == name) {
                    map.set_max_entries(size);
                }
                // The kernel wants 0 for a ring buffer's key and value sizes.
                map.set_value_size(0);
            }
            let created = MapData::create(map.clone(), name, btf.as_ref().map(|fd| fd.as_fd()))
                .map_err(|source| ObjectError::Map {
                    name: name.clone(),
                    source,
                })?;
            if data {
                fill_data_section(
                    created.fd().as_fd(),
                    map.data(),
                    map.section_kind() == EbpfSectionKind::Rodata,
                )?;
            }
            layouts.push((name.clone(), created.fd().as_fd().as_raw_fd(), map.clone()));
            maps.insert(name.clone(), created);
        }
        let text_sections: HashSet<usize> =
            obj.functions.keys().map(|(section, _)| *section).collect();
        obj.relocate_maps(
            layouts
                .iter()
                .map(|(name, fd, map)| (name.as_str(), *fd, map)),
            &text_sections,
        )?;
        drop(layouts);
        obj.relocate_calls(&text_sections)?;
        obj.sanitize_functions(aya::features());
        Ok(Self { obj, maps, btf })
    }

    /// Loads program `name` as `kind`; the verifier's refusal comes with its log's tail.
    pub fn load_program(&self, name: &str, kind: ProgramKind) -> Result<OwnedFd, ObjectError> {
        let missing = || ObjectError::MissingProgram(name.to_string());
        let program = self.obj.programs.get(name).ok_or_else(missing)?;
        let function = self
            .obj
            .functions
            .get(&program.function_key())
            .ok_or_else(missing)?;
        let (prog_type, attach_type, btf_id) = match kind {
            ProgramKind::BtfTracepoint { btf_id } => (
                bpf_prog_type::BPF_PROG_TYPE_TRACING,
                bpf_attach_type::BPF_TRACE_RAW_TP as u32,
                btf_id,
            ),
            ProgramKind::Iterator { btf_id } => (
                bpf_prog_type::BPF_PROG_TYPE_TRACING,
                bpf_attach_type::BPF_TRACE_ITER as u32,
                btf_id,
            ),
            ProgramKind::Tracepoint => (bpf_prog_type::BPF_PROG_TYPE_TRACEPOINT, 0, 0),
        };
        let prog_name = object_name(name);
        let btf_fd = self.btf.as_ref().map(|fd| fd.as_raw_fd());
        let load = |log: Option<&mut Vec<u8>>| {
            let mut attr = super::sys::zeroed_attr();
            // SAFETY: union access: the BPF_PROG_LOAD arm of a zeroed attr; the instructions,
            // license, function and line info and log all outlive the call.
            unsafe {
                let p = &mut attr.__bindgen_anon_3;
                p.prog_type = prog_type as u32;
                p.expected_attach_type = attach_type;
                p.attach_btf_id = btf_id;
                p.insns = function.instructions.as_ptr() as u64;
                p.insn_cnt = function.instructions.len() as u32;
                p.license = program.license.as_ptr() as u64;
                p.kern_version = program.kernel_version.unwrap_or(0);
                if aya::features().bpf_name() {
                    p.prog_name = prog_name;
                }
                if let Some(fd) = btf_fd {
                    p.prog_btf_fd = fd as u32;
                    let func_info = &function.func_info.func_info;
                    if !func_info.is_empty() {
                        p.func_info_rec_size = function.func_info_rec_size as u32;
                        p.func_info = func_info.as_ptr() as u64;
                        p.func_info_cnt = func_info.len() as u32;
                    }
                    let line_info = &function.line_info.line_info;
                    if !line_info.is_empty() {
                        p.line_info_rec_size = function.line_info_rec_size as u32;
                        p.line_info = line_info.as_ptr() as u64;
                        p.line_info_cnt = line_info.len() as u32;
                    }
                }
                if let Some(log) = log {
                    p.log_level = 1;
                    p.log_buf = log.as_mut_ptr() as u64;
                    p.log_size = log.len() as u32;
                }
            }
            bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr, "bpf_prog_load")
        };
        explained(load, name, 1024 * 1024, 40)
    }

    /// Takes map `name` out of the object (each can be taken once).
    pub fn take_map(&mut self, name: &str) -> Result<MapData, ObjectError> {
        self.maps
            .remove(name)
            .ok_or_else(|| ObjectError::MissingMap(name.to_string()))
    }
}

/// The last `lines` lines of a NUL-terminated verifier log.
fn log_tail(log: &[u8], lines: usize) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let mut tail: Vec<&str> = text.lines().rev().take(lines).collect();
    tail.reverse();
    tail.join("\n")
}

/// bpf(2), naming the call in the error.
fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr, call: &'static str) -> Result<libc::c_long, ObjectError> {
    super::sys::bpf(cmd, attr).map_err(|source| ObjectError::Syscall { call, source })
}

/// bpf(2) for the commands that create an object and return its fd.
fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr, call: &'static str) -> Result<OwnedFd, ObjectError> {
    let fd = bpf(cmd, attr, call)?;
    // SAFETY: a non-negative return of these commands is a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A kernel object name: at most 15 bytes and a NUL, without a section's leading dot.
fn object_name(name: &str) -> [libc::c_char; 16] {
    let mut out = [0 as libc::c_char; 16];
    let clean = name.trim_start_matches('.');
    for (slot, byte) in out.iter_mut().zip(clean.bytes().take(15)) {
        *slot = byte as libc::c_char;
    }
    out
}

/// BPF_BTF_LOAD; a refusal comes with the kernel's BTF log.
fn load_btf(raw: &[u8]) -> Result<OwnedFd, ObjectError> {
    let load = |log: Option<&mut Vec<u8>>| {
        let mut attr = super::sys::zeroed_attr();
        // SAFETY: union access: the BPF_BTF_LOAD arm of a zeroed attr; `raw` and the log
        // outlive the call.
        unsafe {
            let b = &mut attr.__bindgen_anon_7;
            b.btf = raw.as_ptr() as u64;
            b.btf_size = raw.len() as u32;
            if let Some(log) = log {
                b.btf_log_level = 1;
                b.btf_log_buf = log.as_mut_ptr() as u64;
                b.btf_log_size = log.len() as u32;
            }
        }
        bpf_fd(bpf_cmd::BPF_BTF_LOAD, &mut attr, "bpf_btf_load")
    };
    explained(load, "the object's BTF", 64 * 1024, 10)
}

/// Runs `load` without a log; when the kernel refuses, runs it again with a log of
/// `log_bytes` and returns the refusal with the log's last `lines` lines. A log only on the
/// failure path: the verifier is slower with one.
fn explained(
    load: impl Fn(Option<&mut Vec<u8>>) -> Result<OwnedFd, ObjectError>,
    what: &str,
    log_bytes: usize,
    lines: usize,
) -> Result<OwnedFd, ObjectError> {
    load(None).map_err(|e| match e {
        ObjectError::Syscall { source, .. } => {
            let mut log = vec![0u8; log_bytes];
            let _ = load(Some(&mut log));
            ObjectError::Verifier {
                program: what.to_string(),
                source,
                log: log_tail(&log, lines),
            }
        }
        other => other,
    })
}

/// Writes a data section's initial contents into its one-element array, and freezes
/// `.rodata` so the verifier may treat it (our BTF-resolved offsets) as constants.
fn fill_data_section(map: BorrowedFd<'_>, data: &[u8], freeze: bool) -> Result<(), ObjectError> {
    let key = 0u32;
    let mut attr = super::sys::zeroed_attr();
    // SAFETY: union access: the BPF_MAP_UPDATE_ELEM arm; key and value outlive the call.
    unsafe {
        let update = &mut attr.__bindgen_anon_2;
        update.map_fd = map.as_raw_fd() as u32;
        update.key = (&key as *const u32) as u64;
        update.__bindgen_anon_1.value = data.as_ptr() as u64;
    }
    bpf(
        bpf_cmd::BPF_MAP_UPDATE_ELEM,
        &mut attr,
        "bpf_map_update_elem",
    )?;
    if freeze {
        let mut attr = super::sys::zeroed_attr();
        // BPF_MAP_FREEZE reads map_fd only.
        attr.__bindgen_anon_2.map_fd = map.as_raw_fd() as u32;
        bpf(bpf_cmd::BPF_MAP_FREEZE, &mut attr, "bpf_map_freeze")?;
    }
    Ok(())
}

/// Attaches a `tp_btf` program; it stays attached while the returned fd is open.
pub fn attach_raw_tracepoint(program: &OwnedFd) -> Result<OwnedFd, ObjectError> {
    let mut attr = super::sys::zeroed_attr();
    // The BPF_RAW_TRACEPOINT_OPEN arm: no name, since the program carries its target.
    attr.raw_tracepoint.prog_fd = program.as_raw_fd() as u32;
    bpf_fd(
        bpf_cmd::BPF_RAW_TRACEPOINT_OPEN,
        &mut attr,
        "bpf_raw_tracepoint_open",
    )
}

/// Attaches a classic tracepoint program to tracepoint `id` (tracefs `events/.../id`): a
/// perf event carrying the program, which the tracepoint runs on every CPU. It stays
/// attached while the returned fd is open.
pub fn attach_perf_tracepoint(program: &OwnedFd, id: u64) -> Result<OwnedFd, ObjectError> {
    // SAFETY: perf_event_attr is plain data; all-zero is its "unset" value.
    let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = perf_type_id::PERF_TYPE_TRACEPOINT as u32;
    attr.size = size_of::<perf_event_attr>() as u32;
    attr.config = id;
    attr.__bindgen_anon_1.sample_period = 1;
    attr.__bindgen_anon_2.wakeup_events = 1;
    let syscall_err = |call| ObjectError::Syscall {
        call,
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it states; pid -1 with cpu 0
    // is how a tracepoint's program is attached for every task and CPU.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const perf_event_attr,
            -1,
            0,
            -1,
            aya_obj::generated::PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(syscall_err("perf_event_open"));
    }
    // SAFETY: a non-negative perf_event_open return is a new fd that we now own.
    let event = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: ioctls on the perf event fd we own; SET_BPF takes a program fd by value.
    unsafe {
        if libc::ioctl(
            event.as_raw_fd(),
            aya_obj::generated::PERF_EVENT_IOC_SET_BPF as _,
            program.as_raw_fd(),
        ) < 0
        {
            return Err(syscall_err("PERF_EVENT_IOC_SET_BPF"));
        }
        if libc::ioctl(
            event.as_raw_fd(),
            aya_obj::generated::PERF_EVENT_IOC_ENABLE as _,
            0,
        ) < 0
        {
            return Err(syscall_err("PERF_EVENT_IOC_ENABLE"));
        }
    }
    Ok(event)
}

/// Attaches an iterator program and opens the iterator, whose reads run it.
pub fn open_iterator(program: &OwnedFd) -> Result<File, ObjectError> {
    let mut attr = super::sys::zeroed_attr();
    // SAFETY: union access: the BPF_LINK_CREATE arm; task_file takes no iterator info.
    unsafe {
        let link = &mut attr.link_create;
        link.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
        link.attach_type = bpf_attach_type::BPF_TRACE_ITER as u32;
    }
    let link = bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut attr, "bpf_link_create")?;
    let mut attr = super::sys::zeroed_attr();
    // The BPF_ITER_CREATE arm.
    attr.iter_create.link_fd = link.as_raw_fd() as u32;
    let iter = bpf_fd(bpf_cmd::BPF_ITER_CREATE, &mut attr, "bpf_iter_create")?;
    Ok(File::from(iter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: [libc::c_char; 16]) -> String {
        name.iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8 as char)
            .collect()
    }

    #[test]
    fn object_names_drop_the_dot_and_fit_the_kernel_field() {
        assert_eq!(text(object_name(".rodata")), "rodata");
        let long = object_name("a_very_long_map_name_indeed");
        assert_eq!(long[15], 0);
        assert_eq!(text(long), "a_very_long_map");
    }

    #[test]
    fn the_verifier_log_keeps_its_tail() {
        let log = b"a\nb\nc\nd\0garbage";
        assert_eq!(log_tail(log, 2), "c\nd");
        assert_eq!(log_tail(b"only\0", 5), "only");
    }
}
