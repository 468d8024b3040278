//! Kernel statistics from /proc: socket counts now; SNMP counters, links and routes later.
pub mod snmp;
pub mod sockstat;
