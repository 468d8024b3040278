//! Randomized and adversarial filters through the whole pipeline (parse, compile, match), on
//! a 256 KiB stack: nothing panics, nesting beyond [`MAX_NESTING`] is one clear error, and a
//! chain of any length neither recurses nor overflows.
use std::net::SocketAddr;

use super::{
    Filter, ParseContext,
    ast::{Expr, MAX_NESTING},
    bytecode, matcher,
};
use crate::diag::{SocketRecord, record::Netid};

/// Token soup. `src`/`dst` are always followed by an address (a host name would be looked
/// up in DNS, which a test must not wait for).
const WORDS: &[&str] = &[
    "(",
    ")",
    "not",
    "!",
    "and",
    "or",
    "&&",
    "||",
    "sport",
    "dport",
    "=",
    "==",
    "!=",
    ">",
    "<=",
    "ge",
    ":22",
    ":443",
    ":http",
    "src",
    "dst",
    "10.0.0.0/8",
    "[::1]",
    "127.0.0.1:80",
    "*:22",
    "state",
    "established",
    "exclude",
    "listening",
    "autobound",
    "dev",
    "lo",
    "fwmark",
    "0x1/0xff",
    "/",
    "unix:/run/*",
    "]]",
    "::::",
    "",
    "(((",
    "sport=:1",
];
const ADDRESSES: &[&str] = &[
    "10.0.0.0/8",
    "[::1]",
    "127.0.0.1:80",
    "*:22",
    "::1/128",
    "10/8",
    "[::ffff:1.2.3.4]:5",
    "unix:/run/*",
    "1.2.3.4/33",
    "[::1",
    "*",
];
const CONDS: &[&str] = &[
    "sport = :22",
    "dport != :443",
    "sport > :1000",
    "dport le :80",
    "src 10.0.0.0/8",
    "dst [::1]:5",
    "src *:40000",
    "autobound",
    "dst 192.168.1.9:443",
    "sport = :http",
];

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn depth(e: &Expr) -> usize {
    match e {
        Expr::And(xs) | Expr::Or(xs) => 1 + xs.iter().map(depth).max().unwrap_or(0),
        Expr::Not(a) => 1 + depth(a),
        Expr::Cond(_) => 0,
    }
}

fn records() -> Vec<SocketRecord> {
    let pairs = [
        ("10.1.2.3:40000", "192.168.1.9:443"),
        ("[::1]:22", "[::1]:5"),
    ];
    pairs
        .iter()
        .map(|(l, r)| {
            let l: SocketAddr = l.parse().unwrap();
            let r: SocketAddr = r.parse().unwrap();
            SocketRecord::inet(Netid::Tcp, 1, l, r)
        })
        .collect()
}

/// Parses, and for a valid filter compiles and matches; returns whether it parsed.
fn exercise(text: &str, recs: &[SocketRecord]) -> bool {
    match Filter::parse_str(text, &ParseContext::default()) {
        Ok(f) => {
            if let Some(e) = &f.expr {
                // Each level of nesting adds at most one and/or level around it.
                assert!(depth(e) <= 2 * MAX_NESTING + 2, "{text:.80}");
                let _ = bytecode::compile(e);
                for r in recs {
                    let _ = matcher::matches(e, r);
                }
            }
            true
        }
        Err(e) => {
            assert!(!e.to_string().contains('\n'));
            false
        }
    }
}

fn soup(rng: &mut Rng) -> String {
    let mut words = Vec::new();
    for _ in 0..1 + rng.below(40) {
        let w = WORDS[rng.below(WORDS.len())];
        words.push(w);
        if w == "src" || w == "dst" {
            words.push(ADDRESSES[rng.below(ADDRESSES.len())]);
        }
    }
    words.join(" ")
}

/// A well-formed expression of at most `depth` levels.
fn grammar(rng: &mut Rng, depth: usize, out: &mut String) {
    let choice = if depth == 0 { 0 } else { rng.below(4) };
    match choice {
        0 => out.push_str(CONDS[rng.below(CONDS.len())]),
        1 => {
            out.push_str("not ");
            grammar(rng, depth - 1, out);
        }
        2 => {
            out.push_str("( ");
            grammar(rng, depth - 1, out);
            out.push_str(" )");
        }
        _ => {
            for i in 0..2 + rng.below(4) {
                if i > 0 {
                    out.push_str([" or ", " and ", " ", " || ", " && "][rng.below(5)]);
                }
                grammar(rng, depth - 1, out);
            }
        }
    }
}

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn random_filters_never_panic() {
    on_small_stack(|| {
        let recs = records();
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut parsed = 0;
        for round in 0..20_000 {
            let text = if round % 2 == 0 {
                soup(&mut rng)
            } else {
                let mut out = String::new();
                grammar(&mut rng, 6, &mut out);
                out
            };
            parsed += usize::from(exercise(&text, &recs));
        }
        assert!(parsed > 10_000, "the grammar half should parse: {parsed}");
    });
}

#[test]
fn nesting_is_bounded_and_chains_are_flat() {
    on_small_stack(|| {
        let recs = records();
        let cond = "sport = :22";
        for n in [1, MAX_NESTING - 1, MAX_NESTING] {
            let parens = format!("{}{cond}{}", "( ".repeat(n), " )".repeat(n));
            assert!(exercise(&parens, &recs), "{n} parentheses");
            assert!(exercise(&format!("{}{cond}", "not ".repeat(n)), &recs));
            let mixed = format!("{}{cond}{}", "not ( ".repeat(n / 2), " )".repeat(n / 2));
            assert!(exercise(&mixed, &recs), "{n} mixed");
        }
        for n in [MAX_NESTING + 1, 12_000, 200_000] {
            let parens = format!("{}{cond}{}", "( ".repeat(n), " )".repeat(n));
            let err = Filter::parse_str(&parens, &ParseContext::default()).unwrap_err();
            assert!(err.message.contains("nest more than"), "{err}");
            assert!(!exercise(&format!("{}{cond}", "! ".repeat(n)), &recs));
            assert!(!exercise(&"( ".repeat(n), &recs));
        }
        // Long chains of every operator: wide, not deep.
        for op in ["or", "and", "||", "&&", ""] {
            let chain = vec![cond; 50_000].join(&format!(" {op} "));
            assert!(exercise(&chain, &recs), "{op}");
        }
    });
}

/// The cargo-fuzz seeds (fuzz/seeds/filter_parser), on the same small stack: CI runs what
/// the fuzzer starts from, deep nesting included.
#[test]
fn fuzz_seeds_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/filter_parser");
    let seeds: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(seeds.len() >= 8, "seeds in {}", dir.display());
    on_small_stack(move || {
        let recs = records();
        for seed in &seeds {
            exercise(seed, &recs);
        }
    });
}
