//! Any filter text: parse, compile to bytecode, match against a socket. Never panics, and
//! never overflows the stack (seeds in corpus/filter_parser nest far past the limit; run
//! with `-- -rss_limit_mb=512` and the default 8 MiB stack or less).
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
        if let Ok(code) = bytecode::compile(expr) {
            // Every program must be a whole number of 4-byte ops, and fit one attribute.
            assert_eq!(code.len() % 4, 0);
            assert!(code.len() <= bytecode::MAX_LEN);
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
