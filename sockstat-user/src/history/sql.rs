//! ss's filter language compiled to a WHERE clause over the store's columns, so `history`
//! selects with the same words as the listing and trace, in SQLite or ClickHouse. Addresses
//! are stored as 16 bytes (IPv4 v4-mapped) that sort as numbers: a prefix is a range.
//! Literals are written into the SQL (numbers and hex only, never text from the command
//! line).
//!
//! What a closed connection no longer has (its state, device, mark, cgroup; unix and packet
//! sockets) cannot be asked of the store, and says so.
use std::{fmt::Write as _, net::IpAddr};

use crate::filter::{
    Filter,
    ast::{Cond, Expr, HostCond, Prefix, Side},
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the store cannot answer this filter: {0}")]
pub struct Unsupported(pub String);

/// The SQL the clause is written in: the two differ only in how bytes and substrings are
/// written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    ClickHouse,
}

impl Dialect {
    /// Whether `haystack` (a column) holds the text of parameter `needle`.
    pub fn contains(self, haystack: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({haystack}, {needle}) > 0"),
            Dialect::ClickHouse => format!("position({haystack}, {needle}) > 0"),
        }
    }

    fn bytes(self, bytes: &[u8]) -> String {
        let mut digits = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(digits, "{b:02x}");
        }
        match self {
            Dialect::Sqlite => format!("X'{digits}'"),
            Dialect::ClickHouse => format!("unhex('{digits}')"),
        }
    }
}

/// The WHERE clause for `filter` ("1" when it selects everything).
pub fn condition(filter: &Filter, dialect: Dialect) -> Result<String, Unsupported> {
    if filter
        .states
        .is_some_and(|s| s != crate::filter::states::ALL)
    {
        return Err(Unsupported(
            "a state (the store keeps closed connections: each went through its states; select \
             them by address, port or time)"
                .to_string(),
        ));
    }
    let mut sql = String::new();
    match &filter.expr {
        None => sql.push('1'),
        Some(e) => expr(e, dialect, &mut sql)?,
    }
    if let Some(f) = family_clause(filter)? {
        sql = format!("({sql}) AND {f}");
    }
    Ok(sql)
}

fn family_clause(filter: &Filter) -> Result<Option<String>, Unsupported> {
    use crate::filter::FamilyRestriction as F;
    Ok(match filter.family {
        None => None,
        Some(F::Inet) => Some("family = 4".to_string()),
        Some(F::Inet6) => Some("family = 6".to_string()),
        Some(other) => {
            return Err(Unsupported(format!(
                "{other:?} sockets (the store keeps TCP connections)"
            )));
        }
    })
}

fn expr(e: &Expr, dialect: Dialect, sql: &mut String) -> Result<(), Unsupported> {
    match e {
        Expr::And(xs) | Expr::Or(xs) => {
            let op = if matches!(e, Expr::And(_)) {
                " AND "
            } else {
                " OR "
            };
            sql.push('(');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    sql.push_str(op);
                }
                expr(x, dialect, sql)?;
            }
            sql.push(')');
        }
        Expr::Not(x) => {
            sql.push_str("NOT (");
            expr(x, dialect, sql)?;
            sql.push(')');
        }
        Expr::Cond(c) => cond(c, dialect, sql)?,
    }
    Ok(())
}

fn columns(side: Side) -> (&'static str, &'static str) {
    match side {
        Side::Local => ("local_addr", "local_port"),
        Side::Peer => ("remote_addr", "remote_port"),
    }
}

fn cond(c: &Cond, dialect: Dialect, sql: &mut String) -> Result<(), Unsupported> {
    match c {
        Cond::Host { side, host } => {
            let (addr, port_col) = columns(*side);
            let HostCond::Inet { prefixes, port } = host else {
                return Err(Unsupported(
                    "a unix or packet address (the store keeps TCP connections)".to_string(),
                ));
            };
            let port = port.map(|p| format!("{port_col} = {p}"));
            let addresses = (!prefixes.is_empty()).then(|| {
                let mut any = String::from("(");
                for (i, p) in prefixes.iter().enumerate() {
                    if i > 0 {
                        any.push_str(" OR ");
                    }
                    prefix(p, addr, dialect, &mut any);
                }
                any.push(')');
                any
            });
            match (addresses, port) {
                (Some(a), Some(p)) => {
                    let _ = write!(sql, "({a} AND {p})");
                }
                (Some(one), None) | (None, Some(one)) => sql.push_str(&one),
                (None, None) => sql.push('1'),
            }
        }
        Cond::PortGe { side, port } => {
            let _ = write!(sql, "{} >= {port}", columns(*side).1);
        }
        Cond::PortLe { side, port } => {
            let _ = write!(sql, "{} <= {port}", columns(*side).1);
        }
        Cond::Dev(_) => return Err(Unsupported("dev (not recorded)".to_string())),
        Cond::Mark { .. } => return Err(Unsupported("fwmark (not recorded)".to_string())),
        Cond::Cgroup(_) => {
            return Err(Unsupported(
                "cgroup (not recorded: use --pod or --container)".to_string(),
            ));
        }
        Cond::Autobound => return Err(Unsupported("autobound (not recorded)".to_string())),
    }
    Ok(())
}

/// `col BETWEEN first AND last` of the prefix; an IPv6 prefix only over IPv6 rows (an IPv4
/// prefix also matches v4-mapped IPv6 addresses, as the live matcher does).
fn prefix(p: &Prefix, col: &str, dialect: Dialect, sql: &mut String) {
    let (bytes, len, v6_only) = match p.addr {
        IpAddr::V4(a) => (
            a.to_ipv6_mapped().octets(),
            96 + u32::from(p.len.min(32)),
            false,
        ),
        IpAddr::V6(a) => (a.octets(), u32::from(p.len.min(128)), true),
    };
    let (mut first, mut last) = (bytes, bytes);
    for bit in len..128 {
        let (byte, mask) = ((bit / 8) as usize, 0x80u8 >> (bit % 8));
        first[byte] &= !mask;
        last[byte] |= mask;
    }
    if v6_only {
        sql.push_str("(family = 6 AND ");
    } else {
        sql.push('(');
    }
    let _ = write!(
        sql,
        "{col} BETWEEN {} AND {})",
        dialect.bytes(&first),
        dialect.bytes(&last)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::ParseContext;

    fn sql(text: &str) -> Result<String, Unsupported> {
        let f = Filter::parse_str(text, &ParseContext::default()).unwrap();
        condition(&f, Dialect::Sqlite)
    }

    #[test]
    fn addresses_become_ranges_and_ports_comparisons() {
        assert_eq!(sql("").unwrap(), "1");
        assert_eq!(
            sql("dst 10.0.3.0/24").unwrap(),
            "((remote_addr BETWEEN X'00000000000000000000ffff0a000300' AND X'00000000000000000000ffff0a0003ff'))"
        );
        assert_eq!(
            sql("dport = :5432 and not sport < :1024").unwrap(),
            "(remote_port = 5432 AND NOT (NOT (local_port >= 1024)))"
        );
        let v6 = sql("dst 2001:db8::/32").unwrap();
        assert!(
            v6.contains("family = 6 AND remote_addr BETWEEN X'20010db8"),
            "{v6}"
        );
    }

    #[test]
    fn clickhouse_writes_bytes_with_unhex() {
        let f = Filter::parse_str("src 10.0.0.1", &ParseContext::default()).unwrap();
        assert_eq!(
            condition(&f, Dialect::ClickHouse).unwrap(),
            "((local_addr BETWEEN unhex('00000000000000000000ffff0a000001') AND unhex('00000000000000000000ffff0a000001')))"
        );
        assert_eq!(
            Dialect::ClickHouse.contains("comm", "'psql'"),
            "position(comm, 'psql') > 0"
        );
    }

    #[test]
    fn what_is_not_recorded_is_refused() {
        for f in ["state established", "dev = lo", "fwmark = 1", "autobound"] {
            assert!(sql(f).is_err(), "{f}");
        }
        assert!(sql("state all").is_ok());
    }
}
