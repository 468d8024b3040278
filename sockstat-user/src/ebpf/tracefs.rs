//! The classic tracepoint fallback: tracefs mounting and the record layout of
//! `sock:inet_sock_set_state`, read from its `format` file rather than assumed.
use std::{fs, io, path::Path};

use sockstat_common::TracepointOffsets;

pub const TRACEFS: &str = "/sys/kernel/tracing";
const FORMAT: &str = "events/sock/inet_sock_set_state/format";
const ID: &str = "events/sock/inet_sock_set_state/id";

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error(
        "cannot mount tracefs on {TRACEFS}: {0} (mount it: mount -t tracefs tracefs {TRACEFS})"
    )]
    Mount(io::Error),
    #[error("this kernel has no sock:inet_sock_set_state tracepoint ({0})")]
    NoTracepoint(String),
    #[error("tracepoint format {path}: field {field} missing")]
    MissingField { path: String, field: &'static str },
}

/// Serializes sockstat processes' use of tracefs, so one never unmounts what another is
/// reading. Held only while loading and attaching (well under a second).
const LOCK: &str = "/run/sockstat-tracefs.lock";

/// tracefs for as long as this lives: unmounted again on drop if sockstat mounted it, so a
/// run leaves the machine's mounts as it found them. Attached tracepoints do not need it.
#[must_use]
pub struct Mounted {
    ours: bool,
    /// Released (closed) after the unmount.
    _lock: Option<fs::File>,
}

/// Takes the tracefs lock (blocking); `None` where it cannot be created, which only loses
/// the protection against a concurrent sockstat.
fn lock() -> Option<fs::File> {
    use std::os::fd::AsRawFd;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .ok()?;
    // SAFETY: flock on a descriptor we own.
    (unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0).then_some(file)
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.ours {
            // SAFETY: a valid NUL-terminated path; MNT_DETACH lets open files finish.
            let rc = unsafe { libc::umount2(c"/sys/kernel/tracing".as_ptr(), libc::MNT_DETACH) };
            if rc != 0 {
                log::warn!(
                    "could not unmount the tracefs sockstat mounted on {TRACEFS}: {}",
                    io::Error::last_os_error()
                );
            }
        }
    }
}

/// Mounts tracefs on its usual place if nothing is mounted there (a fresh machine has an
/// empty `/sys/kernel/tracing`).
pub fn ensure_mounted() -> Result<Mounted, TracefsError> {
    let lock = lock();
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(Mounted {
            ours: false,
            _lock: lock,
        });
    }
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: all pointers are valid NUL-terminated strings; data may be NULL.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(TracefsError::Mount(io::Error::last_os_error()));
    }
    log::debug!("mounted tracefs on {TRACEFS}; unmounted once the tracepoints are attached");
    Ok(Mounted {
        ours: true,
        _lock: lock,
    })
}

/// The tracepoint's perf id, which attaching a program to it names.
pub fn state_change_id() -> Result<u64, TracefsError> {
    let path = Path::new(TRACEFS).join(ID);
    let text = fs::read_to_string(&path)
        .map_err(|e| TracefsError::NoTracepoint(format!("{}: {e}", path.display())))?;
    text.trim()
        .parse()
        .map_err(|e| TracefsError::NoTracepoint(format!("{}: {e}", path.display())))
}

/// Reads the tracepoint's record layout.
pub fn state_change_offsets() -> Result<TracepointOffsets, TracefsError> {
    let path = Path::new(TRACEFS).join(FORMAT);
    let text = fs::read_to_string(&path)
        .map_err(|e| TracefsError::NoTracepoint(format!("{}: {e}", path.display())))?;
    parse_format(&text, &path.display().to_string())
}

/// Parses lines like `\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;`.
pub fn parse_format(text: &str, path: &str) -> Result<TracepointOffsets, TracefsError> {
    let field = |name: &'static str| -> Result<u32, TracefsError> {
        text.lines()
            .find_map(|line| {
                let decl = line.trim().strip_prefix("field:")?;
                let (decl, rest) = decl.split_once(';')?;
                // The name is the last word of the declaration, before any array suffix.
                let ident = decl.split_whitespace().last()?;
                let ident = ident.split('[').next()?;
                if ident != name {
                    return None;
                }
                let off = rest.split("offset:").nth(1)?.split(';').next()?;
                off.trim().parse().ok()
            })
            .ok_or_else(|| TracefsError::MissingField {
                path: path.to_string(),
                field: name,
            })
    };
    Ok(TracepointOffsets {
        skaddr: field("skaddr")?,
        oldstate: field("oldstate")?,
        newstate: field("newstate")?,
        sport: field("sport")?,
        dport: field("dport")?,
        family: field("family")?,
        protocol: field("protocol")?,
        saddr: field("saddr")?,
        daddr: field("daddr")?,
        saddr_v6: field("saddr_v6")?,
        daddr_v6: field("daddr_v6")?,
        valid: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Linux 6.x format file, verbatim.
    const FORMAT_6X: &str = "name: inet_sock_set_state
ID: 1374
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s\"
";

    #[test]
    fn parses_the_record_layout() {
        let off = parse_format(FORMAT_6X, "format").unwrap();
        assert_eq!(
            off,
            TracepointOffsets {
                skaddr: 8,
                oldstate: 16,
                newstate: 20,
                sport: 24,
                dport: 26,
                family: 28,
                protocol: 30,
                saddr: 32,
                daddr: 36,
                saddr_v6: 40,
                daddr_v6: 56,
                valid: 1,
            }
        );
    }

    #[test]
    fn names_the_missing_field() {
        let cut = FORMAT_6X.replace("saddr_v6", "other");
        let err = parse_format(&cut, "fmt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "tracepoint format fmt: field saddr_v6 missing"
        );
    }
}
