//! Kernel symbol addresses from /proc/kallsyms. The timewait hooks recognise a timewait
//! socket's timer by its callback, `tw_timer_handler`, which has no BTF-visible address.
use std::{
    fs::File,
    io::{BufRead, BufReader},
};

pub const KALLSYMS: &str = "/proc/kallsyms";

/// Why a symbol's address is not known.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SymbolError {
    #[error("cannot read {KALLSYMS}: {0}")]
    Read(String),
    #[error("{0} is not in {KALLSYMS}")]
    Missing(&'static str),
    #[error("{KALLSYMS} hides addresses (kernel.kptr_restrict)")]
    Hidden,
}

/// The address of kernel text symbol `name`.
pub fn address_of(name: &'static str) -> Result<u64, SymbolError> {
    let file = File::open(KALLSYMS).map_err(|e| SymbolError::Read(e.to_string()))?;
    find(BufReader::new(file), name)
}

fn find(reader: impl BufRead, name: &'static str) -> Result<u64, SymbolError> {
    for line in reader.lines() {
        let line = line.map_err(|e| SymbolError::Read(e.to_string()))?;
        // "ffffffff82006870 t tw_timer_handler", with "\t[module]" after module symbols.
        let mut words = line.split_whitespace();
        let (Some(addr), Some(kind), Some(sym)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if sym != name || !matches!(kind, "t" | "T") {
            continue;
        }
        return match u64::from_str_radix(addr, 16) {
            Ok(0) => Err(SymbolError::Hidden),
            Ok(a) => Ok(a),
            Err(_) => Err(SymbolError::Read(format!("malformed line: {line}"))),
        };
    }
    Err(SymbolError::Missing(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_text_symbols_and_reports_hidden_ones() {
        let table = "ffffffff82006800 t tw_timer_handler_x\n\
                     ffffffff82006870 t tw_timer_handler\n\
                     ffffffffc0000000 t other\t[veth]\n";
        assert_eq!(
            find(table.as_bytes(), "tw_timer_handler"),
            Ok(0xffffffff82006870)
        );
        assert_eq!(
            find(
                "0000000000000000 t tw_timer_handler\n".as_bytes(),
                "tw_timer_handler"
            ),
            Err(SymbolError::Hidden)
        );
        assert_eq!(
            find(table.as_bytes(), "nope"),
            Err(SymbolError::Missing("nope"))
        );
    }
}
