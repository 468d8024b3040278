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
