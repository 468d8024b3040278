//! Views of collected records. Printers write to any `io::Write`; the format is chosen once.
pub mod trace;
