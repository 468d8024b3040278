//! `sockstat serve`: the live table and kernel counters as Prometheus/OpenMetrics metrics,
//! over a deliberately small HTTP endpoint. Scrapes read counters; they never dump netlink.
pub mod conns;
pub mod http;
pub mod metrics;
pub mod web_config;
