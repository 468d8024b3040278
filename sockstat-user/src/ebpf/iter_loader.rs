//! A minimal loader for the one-shot `iter/task_file` program behind `sockstat -p`.
//!
//! Why not aya: aya 0.14's `EbpfLoader::new()` parses all of vmlinux's BTF into its own
//! tables (~19 MB, ~30 ms) before anything can be configured, which alone made `-p` use more
//! memory than `ss -p`. The iterator needs none of it: it has no CO-RE relocations, uses one
//! map (its read-only globals) and attaches by one BTF id we read from the mapped vmlinux
//! BTF. So this file does the four bpf(2) calls itself; aya-obj still parses the ELF and
//! performs the map/call relocations, so no object-file logic is duplicated here.
use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use aya_obj::{
    EbpfSectionKind, Object,
    generated::{
        bpf_attach_type::BPF_TRACE_ITER, bpf_attr, bpf_cmd, bpf_insn,
        bpf_prog_type::BPF_PROG_TYPE_TRACING,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum IterError {
    #[error("parsing the kernel object: {0}")]
    Parse(#[from] aya_obj::ParseError),
    #[error("relocating the kernel object: {0}")]
    Relocate(#[from] aya_obj::relocation::EbpfRelocationError),
    #[error("program {0} missing from the kernel object")]
    MissingProgram(&'static str),
    #[error("{call}: {source}")]
    Syscall {
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel refused program {program}: {source}\n{log}")]
    Verifier {
        program: &'static str,
        #[source]
        source: std::io::Error,
        log: String,
    },
}

/// Loads `program` (an `iter/<target>` program in `object`) with the given globals patched
/// into its read-only data, attaches it to the kernel iterator whose `bpf_iter_<target>`
/// function has BTF id `target_btf_id`, and returns the iterator's readable file.
pub fn open_iterator(
    object: &[u8],
    program: &'static str,
    target_btf_id: u32,
    globals: &[(&str, &[u8])],
) -> Result<File, IterError> {
    let mut obj = Object::parse(object)?;
    obj.patch_map_data(
        globals
            .iter()
            .map(|&(name, data)| (name, (data, true)))
            .collect(),
    )?;
    // Create only the read-only data maps; every other map is referenced by programs that
    // are never loaded here, so their instructions get a placeholder fd that nothing uses.
    let mut data_maps: HashMap<String, OwnedFd> = HashMap::new();
    for (name, map) in &obj.maps {
        if map.section_kind() == EbpfSectionKind::Rodata {
            data_maps.insert(name.clone(), create_frozen_array(name, map)?);
        }
    }
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    let maps: Vec<(String, RawFd, aya_obj::Map)> = obj
        .maps
        .iter()
        .map(|(name, map)| {
            let fd = data_maps.get(name).map_or(-1, |fd| fd.as_raw_fd());
            (name.clone(), fd, map.clone())
        })
        .collect();
    obj.relocate_maps(
        maps.iter().map(|(name, fd, map)| (name.as_str(), *fd, map)),
        &text_sections,
    )?;
    drop(maps);
    obj.relocate_calls(&text_sections)?;
    let key = obj
        .programs
        .get(program)
        .ok_or(IterError::MissingProgram(program))?
        .function_key();
    let insns = &obj
        .functions
        .get(&key)
        .ok_or(IterError::MissingProgram(program))?
        .instructions;
    let prog = load_iter_program(program, insns, target_btf_id)?;
    // The program holds its own references to the maps from here on.
    drop(data_maps);
    drop(obj);
    let link = create_iter_link(&prog)?;
    let iter = create_iter(&link)?;
    Ok(File::from(iter))
}

/// bpf(2) for the loader's calls, naming the call in the error.
fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr, call: &'static str) -> Result<libc::c_long, IterError> {
    super::sys::bpf(cmd, attr).map_err(|source| IterError::Syscall { call, source })
}

/// bpf(2) for the commands that create an object and return its fd.
fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr, call: &'static str) -> Result<OwnedFd, IterError> {
    let fd = bpf(cmd, attr, call)?;
    // SAFETY: a non-negative return of these commands is a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn object_name(name: &str) -> [libc::c_char; 16] {
    let mut out = [0 as libc::c_char; 16];
    let clean = name.trim_start_matches('.');
    for (slot, byte) in out.iter_mut().zip(clean.bytes().take(15)) {
        *slot = byte as libc::c_char;
    }
    out
}

/// A one-element array holding a data section, frozen so the verifier may treat its
/// contents (our BTF-resolved offsets) as constants.
fn create_frozen_array(name: &str, map: &aya_obj::Map) -> Result<OwnedFd, IterError> {
    let mut attr = super::sys::zeroed_attr();
    // SAFETY: union access: writing the BPF_MAP_CREATE arm of a zeroed attr.
    unsafe {
        let create = &mut attr.__bindgen_anon_1;
        create.map_type = map.map_type();
        create.key_size = map.key_size();
        create.value_size = map.value_size();
        create.max_entries = map.max_entries();
        create.map_flags = map.map_flags();
        create.map_name = object_name(name);
    }
    let fd = bpf_fd(bpf_cmd::BPF_MAP_CREATE, &mut attr, "bpf_map_create")?;
    let key = 0u32;
    let value = map.data();
    let mut attr = super::sys::zeroed_attr();
    // SAFETY: union access: the BPF_MAP_UPDATE_ELEM arm; key and value outlive the call.
    unsafe {
        let update = &mut attr.__bindgen_anon_2;
        update.map_fd = fd.as_raw_fd() as u32;
        update.key = (&key as *const u32) as u64;
        update.__bindgen_anon_1.value = value.as_ptr() as u64;
    }
    bpf(
        bpf_cmd::BPF_MAP_UPDATE_ELEM,
        &mut attr,
        "bpf_map_update_elem",
    )?;
    let mut attr = super::sys::zeroed_attr();
    // BPF_MAP_FREEZE reads map_fd only.
    attr.__bindgen_anon_2.map_fd = fd.as_raw_fd() as u32;
    bpf(bpf_cmd::BPF_MAP_FREEZE, &mut attr, "bpf_map_freeze")?;
    Ok(fd)
}

fn load_iter_program(
    name: &'static str,
    insns: &[bpf_insn],
    target_btf_id: u32,
) -> Result<OwnedFd, IterError> {
    // Our programs are dual MIT/GPL; the kernel only checks for a GPL-compatible string.
    let license = CString::from(c"Dual MIT/GPL");
    let load = |log: Option<&mut Vec<u8>>| {
        let mut attr = super::sys::zeroed_attr();
        // SAFETY: union access: the BPF_PROG_LOAD arm; insns, license and log outlive it.
        unsafe {
            let p = &mut attr.__bindgen_anon_3;
            p.prog_type = BPF_PROG_TYPE_TRACING as u32;
            p.expected_attach_type = BPF_TRACE_ITER as u32;
            p.attach_btf_id = target_btf_id;
            p.insns = insns.as_ptr() as u64;
            p.insn_cnt = insns.len() as u32;
            p.license = license.as_ptr() as u64;
            p.prog_name = object_name(name);
            if let Some(log) = log {
                p.log_level = 1;
                p.log_buf = log.as_mut_ptr() as u64;
                p.log_size = log.len() as u32;
            }
        }
        bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr, "bpf_prog_load")
    };
    match load(None) {
        Ok(fd) => Ok(fd),
        Err(IterError::Syscall { source, .. }) => {
            // Load again with the verifier log, only to explain the refusal.
            let mut log = vec![0u8; 256 * 1024];
            let _ = load(Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            Err(IterError::Verifier {
                program: name,
                source,
                log,
            })
        }
        Err(other) => Err(other),
    }
}

fn create_iter_link(prog: &OwnedFd) -> Result<OwnedFd, IterError> {
    let mut attr = super::sys::zeroed_attr();
    // SAFETY: union access: the BPF_LINK_CREATE arm; task_file takes no iterator info.
    unsafe {
        let link = &mut attr.link_create;
        link.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
        link.attach_type = BPF_TRACE_ITER as u32;
    }
    bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut attr, "bpf_link_create")
}

fn create_iter(link: &OwnedFd) -> Result<OwnedFd, IterError> {
    let mut attr = super::sys::zeroed_attr();
    // The BPF_ITER_CREATE arm.
    attr.iter_create.link_fd = link.as_raw_fd() as u32;
    bpf_fd(bpf_cmd::BPF_ITER_CREATE, &mut attr, "bpf_iter_create")
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
}
