//! Views of collected records. Printers write to any `io::Write`; the format is chosen once.
#[cfg(test)]
mod golden;
pub mod ifaces;
pub mod lab;
pub mod list;
pub mod list_json;
pub mod numfmt;
pub mod report;
pub mod routes;
pub mod stats;
pub mod summary;
pub mod table;
pub mod top;
pub mod trace;

/// One JSON value on one line: the `--json` output of every command that prints one
/// object (or one per interval).
pub fn json_line(
    out: &mut (impl std::io::Write + ?Sized),
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}
