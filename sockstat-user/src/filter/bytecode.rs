//! Compiling a filter to INET_DIAG_REQ_BYTECODE, so the kernel drops what we would not
//! print before it crosses netlink. Layouts and semantics: include/uapi/linux/inet_diag.h and
//! net/ipv4/inet_diag.c (`inet_diag_bc_run`).
//!
//! Each op is `{code: u8, yes: u8, no: u16}`: on true the program advances `yes` bytes, on
//! false `no` bytes. Running off the end exactly accepts; landing 4 bytes past it rejects.
//! Every op emitted here has `yes` = its own length, and "fail" = remaining length + 4.
use std::net::IpAddr;

use super::ast::{Cond, Expr, HostCond, Side};

pub const BC_NOP: u8 = 0;
pub const BC_JMP: u8 = 1;
pub const BC_S_GE: u8 = 2;
pub const BC_S_LE: u8 = 3;
pub const BC_D_GE: u8 = 4;
pub const BC_D_LE: u8 = 5;
pub const BC_AUTO: u8 = 6;
pub const BC_S_COND: u8 = 7;
pub const BC_D_COND: u8 = 8;
pub const BC_DEV_COND: u8 = 9;
pub const BC_MARK_COND: u8 = 10;
pub const BC_CGROUP_COND: u8 = 13;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The most bytecode one request can carry: netlink attribute lengths are u16 and include
/// the 4-byte attribute header.
pub const MAX_LEN: usize = u16::MAX as usize - 4;

/// Why a filter runs in user space only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCompiled {
    #[error("the filter has conditions the kernel cannot evaluate (unix or packet addresses)")]
    Unsupported,
    #[error(
        "the filter compiles to {0} bytes or more of bytecode; the kernel takes at most {MAX_LEN}"
    )]
    TooLong(usize),
}

/// Compiles `expr` for the kernel. When it cannot run there whole, everything is matched in
/// user space (the matcher re-checks every row either way): never a truncated program.
pub fn compile(expr: &Expr) -> Result<Vec<u8>, NotCompiled> {
    let mut out = Vec::new();
    emit(expr, &mut out)?;
    if out.len() > MAX_LEN {
        return Err(NotCompiled::TooLong(out.len()));
    }
    Ok(out)
}

/// A jump of `n` bytes; one that does not fit in u16 means the program is too long.
fn jump(n: usize) -> Result<u16, NotCompiled> {
    u16::try_from(n).map_err(|_| NotCompiled::TooLong(n))
}

fn op(out: &mut Vec<u8>, code: u8, yes: u8, no: u16) {
    out.push(code);
    out.push(yes);
    out.extend_from_slice(&no.to_ne_bytes());
}

fn emit(expr: &Expr, out: &mut Vec<u8>) -> Result<(), NotCompiled> {
    match expr {
        Expr::Cond(c) => emit_cond(c, out),
        Expr::And(xs) => {
            let parts = xs
                .iter()
                .map(|x| {
                    let mut code = Vec::new();
                    emit(x, &mut code).map(|()| code)
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Each part's "fail" exits skip every part after it as well.
            let mut after: usize = parts.iter().map(Vec::len).sum();
            for mut code in parts {
                after -= code.len();
                patch_fail(&mut code, after)?;
                out.extend_from_slice(&code);
            }
            Ok(())
        }
        Expr::Or(xs) => {
            for (i, x) in xs.iter().enumerate() {
                let mut code = Vec::new();
                emit(x, &mut code)?;
                if i > 0 {
                    // Everything before succeeded: jump over this part to the end.
                    op(out, BC_JMP, 4, jump(code.len() + 4)?);
                }
                out.extend_from_slice(&code);
            }
            Ok(())
        }
        Expr::Not(a) => {
            emit(a, out)?;
            // A succeeded: jump to end + 4 (reject). A failed: its old "end + 4" is now the end.
            op(out, BC_JMP, 4, 8);
            Ok(())
        }
    }
}

/// Makes every "fail" exit of `code` (a jump to its end + 4) skip `extra` more bytes, so it
/// also skips the code that follows (the right side of an AND).
fn patch_fail(code: &mut [u8], extra: usize) -> Result<(), NotCompiled> {
    let len = code.len();
    let mut pc = 0;
    while pc < len {
        let yes = code[pc + 1] as usize;
        let no = u16::from_ne_bytes([code[pc + 2], code[pc + 3]]) as usize;
        if code[pc] != BC_NOP && no == len - pc + 4 {
            let patched = jump(no + extra)?;
            code[pc + 2..pc + 4].copy_from_slice(&patched.to_ne_bytes());
        }
        // Every op emitted here advances; a zero would loop (never produced, but never trusted).
        if yes == 0 {
            return Err(NotCompiled::Unsupported);
        }
        pc += yes;
    }
    Ok(())
}

fn emit_cond(cond: &Cond, out: &mut Vec<u8>) -> Result<(), NotCompiled> {
    match cond {
        Cond::Autobound => op(out, BC_AUTO, 4, 8),
        Cond::PortGe { side, port } | Cond::PortLe { side, port } => {
            let ge = matches!(cond, Cond::PortGe { .. });
            let code = match (side, ge) {
                (Side::Local, true) => BC_S_GE,
                (Side::Local, false) => BC_S_LE,
                (Side::Peer, true) => BC_D_GE,
                (Side::Peer, false) => BC_D_LE,
            };
            op(out, code, 8, 12);
            // The operand: a second op-sized word whose `no` carries the port.
            op(out, BC_NOP, 0, *port);
        }
        Cond::Dev(ifindex) => {
            op(out, BC_DEV_COND, 8, 12);
            out.extend_from_slice(&ifindex.to_ne_bytes());
        }
        Cond::Mark { value, mask } => {
            op(out, BC_MARK_COND, 12, 16);
            out.extend_from_slice(&value.to_ne_bytes());
            out.extend_from_slice(&mask.to_ne_bytes());
        }
        Cond::Cgroup(id) => {
            op(out, BC_CGROUP_COND, 12, 16);
            out.extend_from_slice(&id.to_ne_bytes());
        }
        Cond::Host { side, host } => {
            let HostCond::Inet { prefixes, port } = host else {
                return Err(NotCompiled::Unsupported);
            };
            let code = match side {
                Side::Local => BC_S_COND,
                Side::Peer => BC_D_COND,
            };
            let port: i32 = port.map_or(-1, i32::from);
            // One hostcond per address; between them, a match jumps to the end (accept).
            let conds: Vec<Vec<u8>> = if prefixes.is_empty() {
                vec![hostcond(code, 0, 0, port, &[0; 4])]
            } else {
                prefixes
                    .iter()
                    .map(|p| match p.addr {
                        IpAddr::V4(a) => hostcond(code, AF_INET, p.len, port, &a.octets()),
                        IpAddr::V6(a) => hostcond(code, AF_INET6, p.len, port, &a.octets()),
                    })
                    .collect()
            };
            let total: usize = conds.iter().map(Vec::len).sum::<usize>() + 4 * (conds.len() - 1);
            let start = out.len();
            for (i, c) in conds.iter().enumerate() {
                out.extend_from_slice(c);
                if i + 1 < conds.len() {
                    let here = out.len() - start;
                    op(out, BC_JMP, 4, jump(total - here)?);
                }
            }
        }
    }
    Ok(())
}

/// `{code, len, len+4}` + `inet_diag_hostcond {family, prefix_len, pad[2], port: i32}` + addr.
fn hostcond(code: u8, family: u8, prefix_len: u8, port: i32, addr: &[u8]) -> Vec<u8> {
    let len = 4 + 8 + addr.len();
    let mut v = Vec::with_capacity(len);
    op(&mut v, code, len as u8, (len + 4) as u16);
    v.push(family);
    v.push(prefix_len);
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&port.to_ne_bytes());
    v.extend_from_slice(addr);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Filter, ParseContext};

    fn bc(filter: &str) -> String {
        let f = Filter::parse_str(filter, &ParseContext::default()).unwrap();
        let code = compile(f.expr.as_ref().unwrap()).unwrap();
        code.chunks(4)
            .map(|w| w.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    }

    // Expected bytes are what ss 6.1 sends for the same filter (captured with strace).
    #[test]
    fn matches_ss_bytecode() {
        assert_eq!(bc("sport = :22"), "07101400 00000000 16000000 00000000");
        assert_eq!(bc("dport > :1000"), "05080c00 0000e803 01040800");
        assert_eq!(bc("dport < :100"), "04080c00 00006400 01040800");
        assert_eq!(
            bc("sport = :22 or dport > :1000"),
            "07101400 00000000 16000000 00000000 01041000 05080c00 0000e803 01040800"
        );
        assert_eq!(bc("dst 10.0.0.0/8"), "08101400 02080000 ffffffff 0a000000");
        assert_eq!(
            bc("not src 127.0.0.1"),
            "07101400 02200000 ffffffff 7f000001 01040800"
        );
        assert_eq!(
            bc("dst 192.168.0.0/16 and dport != :443"),
            "08102800 02100000 ffffffff c0a80000 08101400 00000000 bb010000 00000000 01040800"
        );
        assert_eq!(
            bc("( sport = :22 or sport = :80 ) and not dst 10.0.0.1"),
            "07101400 00000000 16000000 00000000 01041400 07102800 00000000 50000000 00000000 08101400 02200000 ffffffff 0a000001 01040800"
        );
        assert_eq!(
            bc("not ( sport = :1 or dport = :2 ) and autobound"),
            "07101400 00000000 01000000 00000000 01041400 08101400 00000000 02000000 00000000 01040c00 06040800"
        );
        assert_eq!(
            bc("sport >= :1024 sport <= :2048"),
            "02081400 00000004 03080c00 00000008"
        );
        assert_eq!(bc("not not autobound"), "06040800 01040800 01040800");
        assert_eq!(bc("fwmark 0x10/0xff"), "0a0c1000 10000000 ff000000");
        assert_eq!(
            bc("src [2001:db8::1]:8080"),
            "071c2000 0a800000 901f0000 20010db8 00000000 00000000 00000001"
        );
        assert_eq!(
            bc("sport = :22 or sport = :80 or sport = :443"),
            "07101400 00000000 16000000 00000000 01041400 07101400 00000000 50000000 00000000 01041400 07101400 00000000 bb010000 00000000"
        );
    }

    #[test]
    fn unix_addresses_stay_in_user_space() {
        let f = Filter::parse_str("src unix:/tmp/*", &ParseContext::default()).unwrap();
        assert_eq!(
            compile(f.expr.as_ref().unwrap()),
            Err(NotCompiled::Unsupported)
        );
    }

    /// Sizes around the attribute limit: below it the program is whole, at or over it the
    /// filter stays in user space (never a truncated program).
    #[test]
    fn programs_over_the_attribute_limit_are_not_sent() {
        // Each `sport = :N` compiles to 16 bytes, each `or` adds a 4-byte jump.
        let program = |n: usize| {
            let text: Vec<String> = (0..n).map(|i| format!("sport = :{}", 1000 + i)).collect();
            let f = Filter::parse_str(&text.join(" or "), &ParseContext::default()).unwrap();
            compile(f.expr.as_ref().unwrap())
        };
        let fits = MAX_LEN / 20;
        let code = program(fits).unwrap();
        assert!(code.len() <= MAX_LEN);
        assert_eq!(code.len(), fits * 20 - 4);
        for n in [fits + 1, fits + 2, 4000, 10_000] {
            assert!(
                matches!(program(n), Err(NotCompiled::TooLong(_))),
                "{n} conditions"
            );
        }
    }
}
