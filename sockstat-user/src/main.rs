use std::{io, process::ExitCode};

use sockstat::{
    LoadError,
    cli::{self, UsageError},
};

/// The system allocator, except that running out of memory is one line and exit 2 instead
/// of the standard handler's abort (with a backtrace when RUST_BACKTRACE is set). Written
/// here because the standard hook (`set_alloc_error_hook`) is not stable.
struct OneLineOnOom;

// SAFETY: every method forwards to `System` with the same arguments; only a failed
// allocation takes another path, and that path never returns.
unsafe impl std::alloc::GlobalAlloc for OneLineOnOom {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        checked(unsafe { std::alloc::System.alloc(layout) }, layout.size())
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        checked(
            unsafe { std::alloc::System.alloc_zeroed(layout) },
            layout.size(),
        )
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        checked(
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) },
            new_size,
        )
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded as is.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: OneLineOnOom = OneLineOnOom;

/// `ptr`, or (when the allocation failed) one line on stderr and exit 2, without allocating.
fn checked(ptr: *mut u8, size: usize) -> *mut u8 {
    if !ptr.is_null() {
        return ptr;
    }
    let mut line = [0u8; 192];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(line.len() - len);
        line[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    put(b"sockstat: out of memory allocating ");
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = size;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put(&digits[at..]);
    put(b" bytes: a memory limit (ulimit -v, or the memory cgroup) is too low (README: Memory)\n");
    // SAFETY: writing a buffer we own to fd 2, then ending the process without unwinding.
    unsafe {
        libc::write(2, line.as_ptr().cast(), len);
        libc::_exit(2)
    }
}

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // The loader names no flags; the flag that helps is named here.
            let hint = match e.downcast_ref::<LoadError>() {
                Some(LoadError::NoBtf | LoadError::BtfHookRefused(_)) => ": try --hook tracepoint",
                _ => "",
            };
            eprintln!("sockstat: {}{hint}", one_line(&e));
            // Bad input, and an environment sockstat cannot work in (privileges, limits).
            if e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<LoadError>().is_some()
                || e.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<sockstat::diag::DiagError>(),
                        Some(sockstat::diag::DiagError::Thread(_))
                    )
                })
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Help and version go to stdout with status 0; a usage error is one line on stderr, exit 2.
fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let rendered = e.render().to_string();
            let mut lines = rendered.lines();
            let mut first = lines
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            // "the following required arguments were not provided:" lists them below.
            if first.ends_with(':') {
                let listed: Vec<&str> = lines
                    .take_while(|l| l.starts_with("  "))
                    .map(str::trim)
                    .collect();
                first.push(' ');
                first.push_str(&listed.join(", "));
            }
            // clap's own suggestion ("tip: a similar argument exists: '--continuous'").
            if let Some(tip) = rendered
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("tip:"))
            {
                first.push_str("; ");
                first.push_str(tip);
            }
            // Habits from `watch ss` and `netstat -c`: point to the continuous listing.
            if let Some(clap::error::ContextValue::String(arg)) =
                e.get(clap::error::ContextKind::InvalidArg)
                && ["watch", "repeat", "loop", "follow", "continu"]
                    .iter()
                    .any(|w| arg.contains(w))
            {
                first.push_str("; to list again every few seconds, use -c [--interval S]");
            }
            eprintln!("sockstat: {first} (see 'sockstat --help')");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            // serde_json keeps the writer's error inside its own.
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
    })
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
