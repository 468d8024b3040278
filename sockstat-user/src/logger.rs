//! `-v`: a small stderr logger for the `log` facade. Written here because the well-kept
//! loggers (env_logger and friends) bring regex/time formatting we would not use: one
//! prefix and one level is all sockstat needs.
use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

static LOGGER: Stderr = Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
            // Libraries' chatter (aya's loader) only from -vvv.
            && (metadata.target().starts_with("sockstat") || log::max_level() >= LevelFilter::Trace)
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                Level::Error => "error: ",
                Level::Warn => "warning: ",
                _ => "",
            };
            eprintln!("sockstat: {level}{}", record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger: warnings always, `-v` adds what sockstat decided and why, `-vv`
/// details, `-vvv` everything including libraries.
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    // A second init (tests) keeps the first logger; the level still applies.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
