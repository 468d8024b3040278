//! Any filter text: parse, compile to bytecode, match against a socket. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockstat::{
    diag::record::{Netid, SocketRecord},
    filter::{Filter, ParseContext, bytecode, matcher},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = Filter::parse_str(text, &ParseContext::default()) else {
        return;
    };
    if let Some(expr) = &filter.expr {
        if let Some(code) = bytecode::compile(expr) {
            // Every program must be a whole number of 4-byte ops.
            assert_eq!(code.len() % 4, 0);
        }
        let r = SocketRecord::inet(
            Netid::Tcp,
            1,
            "127.0.0.1:40000".parse().unwrap(),
            "[::1]:80".parse().unwrap(),
        );
        let _ = matcher::matches(expr, &r);
    }
});
