//! Analysis over sockets: what `sockstat report` flags (and the lab demonstrates).
pub mod analysis;
pub mod leaks;
pub mod ports;
pub mod recorded;
