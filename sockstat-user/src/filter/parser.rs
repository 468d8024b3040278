//! ss's filter grammar (misc/ssfilter.y), as ss really parses it:
//!
//! ```text
//! filter   := (state NAME | exclude NAME)* exprlist?
//! exprlist := expr ((and | or)? expr)*      -- and/or: same precedence, left to right;
//!                                              juxtaposition means and
//! expr     := ( exprlist ) | not expr | cond
//! cond     := src|dst [=] HOST | sport|dport CMP PORT | dev [=|!=] DEV
//!           | fwmark [=|!=] MARK | cgroup [=|!=] PATH | autobound
//! ```
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use super::{
    FilterError,
    ast::{Cond, Expr, HostCond, MAX_NESTING, Prefix, Side},
    lexer::{Cmp, Kw, Spanned, Tok},
    states,
};
use crate::services::{Proto, Services};

/// What the rest of the command line tells the parser.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParseContext {
    /// Which tables service names are looked up for (`:ssh`).
    pub tcp: bool,
    pub udp: bool,
    /// `-4` / `-6`: addresses of the other family are rejected.
    pub only_v4: bool,
    pub only_v6: bool,
    /// Only unix sockets are listed (`-x`, `-f unix`): `src`/`dst` values are socket paths
    /// without the `unix:` prefix, as ss's preferred family makes them.
    pub only_unix: bool,
}

/// Where a `unix:` / `link:` / `inet:` / `inet6:` prefix restricts the listing to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyRestriction {
    Inet,
    Inet6,
    Unix,
    Packet,
}

pub struct Parsed {
    /// Set by leading `state`/`exclude` words; `None` when there were none.
    pub states: Option<u32>,
    pub expr: Option<Expr>,
    pub family: Option<FamilyRestriction>,
}

pub fn parse(tokens: Vec<Spanned>, ctx: &ParseContext, end: usize) -> Result<Parsed, FilterError> {
    let mut p = Parser {
        toks: tokens,
        at: 0,
        ctx: *ctx,
        end,
        family: None,
        depth: 0,
    };
    let states = p.state_prefix()?;
    let expr = if p.peek().is_some() {
        let e = p.exprlist()?;
        if let Some(t) = p.peek() {
            return Err(p.error_at(t, "unexpected token (unbalanced parenthesis?)"));
        }
        Some(e)
    } else {
        None
    };
    Ok(Parsed {
        states,
        expr,
        family: p.family,
    })
}

struct Parser {
    toks: Vec<Spanned>,
    at: usize,
    ctx: ParseContext,
    /// Position just past the end, for "missing ..." errors.
    end: usize,
    family: Option<FamilyRestriction>,
    /// Open parentheses and `not`s around the current position.
    depth: usize,
}

impl Parser {
    /// Goes one level deeper (a parenthesis or `not` at `t`), within [`MAX_NESTING`].
    fn enter(&mut self, t: &Spanned) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error_at(
                t,
                format!(
                    "parentheses and 'not' nest more than {MAX_NESTING} deep; simplify the filter"
                ),
            ));
        }
        Ok(())
    }

    fn peek(&self) -> Option<&Spanned> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Spanned> {
        let t = self.toks.get(self.at).cloned();
        if t.is_some() {
            self.at += 1;
        }
        t
    }

    fn error_at(&self, t: &Spanned, msg: impl Into<String>) -> FilterError {
        FilterError {
            token: t.text.clone(),
            position: t.pos,
            message: msg.into(),
        }
    }

    fn error_end(&self, msg: impl Into<String>) -> FilterError {
        FilterError {
            token: String::new(),
            position: self.end,
            message: msg.into(),
        }
    }

    fn expect_word(&mut self, what: &str) -> Result<Spanned, FilterError> {
        match self.next() {
            Some(t) if matches!(t.tok, Tok::Word(_)) => Ok(t),
            // Keywords are fine as values after a condition keyword (e.g. a device named "dev").
            Some(t) if matches!(t.tok, Tok::Kw(_)) => Ok(t),
            Some(t) => Err(self.error_at(&t, format!("expected {what}"))),
            None => Err(self.error_end(format!("expected {what} at the end of the filter"))),
        }
    }

    fn state_prefix(&mut self) -> Result<Option<u32>, FilterError> {
        let mut mask: Option<u32> = None;
        while let Some(t) = self.peek() {
            let exclude = match t.tok {
                Tok::Kw(Kw::State) => false,
                Tok::Kw(Kw::Exclude) => true,
                _ => break,
            };
            self.next();
            let name = self.expect_word("a state name")?;
            let bits = states::mask(&name.text).ok_or_else(|| {
                self.error_at(&name, "unknown state name (try established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, closed, close-wait, last-ack, listening, closing, all, connected, synchronized, bucket, big)")
            })?;
            mask = Some(if exclude {
                mask.unwrap_or(states::ALL) & !bits
            } else {
                mask.unwrap_or(0) | bits
            });
        }
        Ok(mask)
    }

    fn exprlist(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.expr()?;
        loop {
            match self.peek().map(|t| &t.tok) {
                None | Some(Tok::RParen) => return Ok(left),
                Some(Tok::Or) => {
                    self.next();
                    left = Expr::or(left, self.expr()?);
                }
                Some(Tok::And) => {
                    self.next();
                    left = Expr::and(left, self.expr()?);
                }
                Some(_) => left = Expr::and(left, self.expr()?),
            }
        }
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        let Some(t) = self.next() else {
            return Err(self.error_end("expected a condition at the end of the filter"));
        };
        match &t.tok {
            Tok::LParen => {
                if matches!(self.peek().map(|t| &t.tok), Some(Tok::RParen)) {
                    return Err(self.error_at(&t, "empty parentheses"));
                }
                self.enter(&t)?;
                let e = self.exprlist()?;
                self.depth -= 1;
                match self.next() {
                    Some(c) if c.tok == Tok::RParen => Ok(e),
                    _ => Err(self.error_at(&t, "this parenthesis is never closed")),
                }
            }
            Tok::Not => {
                self.enter(&t)?;
                let e = self.expr()?;
                self.depth -= 1;
                Ok(Expr::not(e))
            }
            Tok::Kw(kw) => self.cond(*kw, &t),
            _ => Err(self.error_at(
                &t,
                "expected a condition: src, dst, sport, dport, dev, fwmark, cgroup, autobound, not or (",
            )),
        }
    }

    fn optional_cmp(&mut self) -> Option<(Cmp, Spanned)> {
        match self.peek() {
            Some(t) => match t.tok {
                Tok::Cmp(c) => {
                    let t = t.clone();
                    self.next();
                    Some((c, t))
                }
                _ => None,
            },
            None => None,
        }
    }

    fn cond(&mut self, kw: Kw, kw_tok: &Spanned) -> Result<Expr, FilterError> {
        match kw {
            Kw::State | Kw::Exclude => Err(self.error_at(
                kw_tok,
                "state and exclude must come before the other conditions",
            )),
            Kw::Autobound => Ok(Expr::Cond(Cond::Autobound)),
            Kw::Src | Kw::Dst => {
                let side = if kw == Kw::Src {
                    Side::Local
                } else {
                    Side::Peer
                };
                let negate = match self.optional_cmp() {
                    None | Some((Cmp::Eq, _)) => false,
                    Some((Cmp::Ne, _)) => true,
                    Some((_, t)) => {
                        return Err(self.error_at(&t, "src and dst take = or != only"));
                    }
                };
                let word = self.expect_word("an address")?;
                let host = self.host(&word)?;
                let e = Expr::Cond(Cond::Host { side, host });
                Ok(if negate { Expr::not(e) } else { e })
            }
            Kw::Sport | Kw::Dport => {
                let side = if kw == Kw::Sport {
                    Side::Local
                } else {
                    Side::Peer
                };
                let cmp = self.optional_cmp().map_or(Cmp::Eq, |(c, _)| c);
                let word = self.expect_word("a port")?;
                let port = self.port_word(&word)?;
                let host = |port| {
                    Expr::Cond(Cond::Host {
                        side,
                        host: HostCond::Inet {
                            prefixes: Vec::new(),
                            port,
                        },
                    })
                };
                let Some(n) = port else {
                    // `sport = *`: any port.
                    return Ok(match cmp {
                        Cmp::Ne => Expr::not(host(None)),
                        _ => host(None),
                    });
                };
                Ok(match cmp {
                    Cmp::Eq => host(Some(n)),
                    Cmp::Ne => Expr::not(host(Some(n))),
                    Cmp::Ge => Expr::Cond(Cond::PortGe { side, port: n }),
                    Cmp::Le => Expr::Cond(Cond::PortLe { side, port: n }),
                    Cmp::Gt => Expr::not(Expr::Cond(Cond::PortLe { side, port: n })),
                    Cmp::Lt => Expr::not(Expr::Cond(Cond::PortGe { side, port: n })),
                })
            }
            Kw::Dev | Kw::Fwmark | Kw::Cgroup => {
                let negate = match self.optional_cmp() {
                    None | Some((Cmp::Eq, _)) => false,
                    Some((Cmp::Ne, _)) => true,
                    Some((_, t)) => return Err(self.error_at(&t, "expected = or !=")),
                };
                let word = self.expect_word("a value")?;
                let cond = match kw {
                    Kw::Dev => Cond::Dev(
                        parse_dev(&word.text)
                            .ok_or_else(|| self.error_at(&word, "no such network device"))?,
                    ),
                    Kw::Fwmark => {
                        let (value, mask) = parse_mark(&word.text)
                            .ok_or_else(|| self.error_at(&word, "expected MARK or MARK/MASK"))?;
                        Cond::Mark { value, mask }
                    }
                    _ => Cond::Cgroup(
                        cgroup_id(&word.text)
                            .ok_or_else(|| self.error_at(&word, "no such cgroup (v2) directory"))?,
                    ),
                };
                let e = Expr::Cond(cond);
                Ok(if negate { Expr::not(e) } else { e })
            }
        }
    }

    /// `sport`/`dport` values: `:22`, `22`, `0x16`, `:ssh`, `*` (any).
    fn port_word(&self, t: &Spanned) -> Result<Option<u16>, FilterError> {
        let text = t.text.strip_prefix("*").unwrap_or(&t.text);
        let text = text.strip_prefix(':').unwrap_or(text);
        if text.is_empty() || text == "*" {
            return Ok(None);
        }
        self.port_value(t, text).map(Some)
    }

    fn port_value(&self, t: &Spanned, text: &str) -> Result<u16, FilterError> {
        if let Some(n) = parse_number(text) {
            return u16::try_from(n).map_err(|_| self.error_at(t, "port out of range"));
        }
        let services = Services::system();
        let (tcp, udp) = if self.ctx.tcp || self.ctx.udp {
            (self.ctx.tcp, self.ctx.udp)
        } else {
            (true, true)
        };
        let by_tcp = tcp.then(|| services.port(text, Proto::Tcp)).flatten();
        let by_udp = udp.then(|| services.port(text, Proto::Udp)).flatten();
        match (by_tcp, by_udp) {
            (Some(a), Some(b)) if a != b => Err(self.error_at(t, "ambiguous service name")),
            (Some(p), _) | (None, Some(p)) => Ok(p),
            (None, None) => Err(self.error_at(t, "does not look like a port or service name")),
        }
    }

    /// `src`/`dst` values (ss's parse_hostcond).
    fn host(&mut self, t: &Spanned) -> Result<HostCond, FilterError> {
        let text = t.text.as_str();
        for (prefix, fam) in [
            ("unix:", FamilyRestriction::Unix),
            ("link:", FamilyRestriction::Packet),
            ("inet6:", FamilyRestriction::Inet6),
            ("inet:", FamilyRestriction::Inet),
        ] {
            if let Some(rest) = text.strip_prefix(prefix) {
                if let Some(prev) = self.family
                    && prev != fam
                {
                    return Err(self.error_at(t, "mixes address families in one filter"));
                }
                self.family = Some(fam);
                return match fam {
                    FamilyRestriction::Unix => Ok(HostCond::Unix(rest.to_string())),
                    FamilyRestriction::Packet => self.packet_host(t, rest),
                    FamilyRestriction::Inet => self.inet_host(t, rest, Some(false)),
                    FamilyRestriction::Inet6 => self.inet_host(t, rest, Some(true)),
                };
            }
        }
        if self.family == Some(FamilyRestriction::Unix) || self.ctx.only_unix {
            return Ok(HostCond::Unix(text.to_string()));
        }
        let v6 = if self.ctx.only_v4 {
            Some(false)
        } else if self.ctx.only_v6 {
            Some(true)
        } else {
            None
        };
        self.inet_host(t, text, v6)
    }

    fn packet_host(&self, t: &Spanned, text: &str) -> Result<HostCond, FilterError> {
        let (proto, iface) = text.split_once(':').unwrap_or((text, ""));
        let protocol = match proto {
            "" | "*" => None,
            p => Some(
                packet_protocol(p)
                    .ok_or_else(|| self.error_at(t, "unknown link-layer protocol"))?,
            ),
        };
        let ifindex = match iface {
            "" | "*" => None,
            i => Some(parse_dev(i).ok_or_else(|| self.error_at(t, "no such network device"))?),
        };
        Ok(HostCond::Packet { protocol, ifindex })
    }

    /// `1.2.3.4`, `10.0.0.0/8`, `[::1]`, `[::1]:22`, `::1/128`, `*:22`, `:22`, `*`,
    /// `localhost:http`. `want_v6`: family forced by a prefix or -4/-6.
    fn inet_host(
        &self,
        t: &Spanned,
        text: &str,
        want_v6: Option<bool>,
    ) -> Result<HostCond, FilterError> {
        let (addr, port) =
            split_host_port(text).ok_or_else(|| self.error_at(t, "unterminated [ in address"))?;
        let port = match port {
            None | Some("") | Some("*") => None,
            Some(p) => Some(self.port_value(t, p)?),
        };
        let prefixes = match addr {
            "" | "*" | "any" | "all" | "default" => Vec::new(),
            a => self.prefixes(t, a, want_v6)?,
        };
        Ok(HostCond::Inet { prefixes, port })
    }

    fn prefixes(
        &self,
        t: &Spanned,
        text: &str,
        want_v6: Option<bool>,
    ) -> Result<Vec<Prefix>, FilterError> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let ip = if addr.contains(':') {
            addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            parse_ipv4_short(addr).map(IpAddr::V4)
        };
        let Some(ip) = ip else {
            if len.is_some() {
                return Err(self.error_at(t, "an inet prefix is expected"));
            }
            // A host name: every address it resolves to.
            let resolved: Vec<Prefix> = (addr, 0)
                .to_socket_addrs()
                .map(|it| {
                    it.map(|sa| Prefix {
                        addr: sa.ip(),
                        len: if sa.is_ipv4() { 32 } else { 128 },
                    })
                    .filter(|p| want_v6.is_none_or(|v6| p.addr.is_ipv6() == v6))
                    .collect()
                })
                .unwrap_or_default();
            if resolved.is_empty() {
                return Err(self.error_at(t, "an inet prefix or a host name is expected"));
            }
            return Ok(resolved);
        };
        if want_v6.is_some_and(|v6| ip.is_ipv6() != v6) {
            return Err(self.error_at(t, "address family does not match -4/-6 or the prefix"));
        }
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match parse_number(l) {
                Some(n) if n <= u64::from(max) => n as u8,
                Some(_) => return Err(self.error_at(t, "prefix length too long")),
                None => match l.parse::<Ipv4Addr>() {
                    Ok(mask) if ip.is_ipv4() && contiguous(u32::from(mask)) => {
                        u32::from(mask).count_ones() as u8
                    }
                    _ => return Err(self.error_at(t, "bad prefix length")),
                },
            },
        };
        Ok(vec![Prefix { addr: ip, len }])
    }
}

/// Splits `addr[:port]` the way ss does, but also accepts a bare IPv6 address.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let close = rest.find(']')?;
        let addr = &rest[..close];
        let after = &rest[close + 1..];
        let port = after.strip_prefix(':').unwrap_or(after);
        return Some((addr, (!after.is_empty()).then_some(port)));
    }
    if let Some(rest) = text.strip_prefix('*') {
        return Some((
            "*",
            rest.strip_prefix(':')
                .or((!rest.is_empty()).then_some(rest)),
        ));
    }
    // A bare IPv6 address (two or more colons, no prefix): no port.
    if !text.contains('/') && text.matches(':').count() >= 2 && text.parse::<Ipv6Addr>().is_ok() {
        return Some((text, None));
    }
    // Otherwise the port follows the last ':' (after any '/').
    let search_from = text.find('/').unwrap_or(0);
    match text[search_from..].rfind(':') {
        Some(i) => {
            let i = search_from + i;
            Some((&text[..i], Some(&text[i + 1..])))
        }
        None => Some((text, None)),
    }
}

/// Decimal, 0x hex or 0 octal, as strtoul with base 0.
fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    if s.len() > 1 && s.starts_with('0') {
        return u64::from_str_radix(&s[1..], 8).ok();
    }
    s.parse().ok()
}

/// ss's IPv4 forms: 1 to 4 dotted parts, missing trailing parts are 0 (`10` = 10.0.0.0).
fn parse_ipv4_short(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        let n = parse_number(p)?;
        octets[i] = u8::try_from(n).ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

fn contiguous(mask: u32) -> bool {
    mask.leading_ones() + mask.trailing_zeros() == 32
}

fn parse_mark(s: &str) -> Option<(u32, u32)> {
    let num = |t: &str| parse_number(t).and_then(|n| u32::try_from(n).ok());
    match s.split_once('/') {
        Some((v, m)) => Some((num(v)?, num(m)?)),
        None => Some((num(s)?, u32::MAX)),
    }
}

/// Interface index by name, or a number.
pub fn parse_dev(name: &str) -> Option<u32> {
    let idx = std::ffi::CString::new(name)
        .ok()
        // SAFETY: a valid NUL-terminated string.
        .map(|c| unsafe { libc::if_nametoindex(c.as_ptr()) })
        .unwrap_or(0);
    if idx != 0 {
        return Some(idx);
    }
    parse_number(name).and_then(|n| u32::try_from(n).ok())
}

/// cgroup v2 id of a path (absolute, or relative to the cgroup2 mount): the directory's
/// inode number, which is what the kernel uses as the cgroup id.
fn cgroup_id(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let direct = std::fs::metadata(path).ok().filter(|m| m.is_dir());
    let meta = direct.or_else(|| {
        let root = crate::procs::cgroup2_mount()?;
        std::fs::metadata(root.join(path.trim_start_matches('/')))
            .ok()
            .filter(|m| m.is_dir())
    })?;
    Some(meta.ino())
}

/// Ethertypes by the names ss prints (`ll_proto_n2a`).
pub fn packet_protocol(name: &str) -> Option<u16> {
    if let Some(n) = parse_number(name) {
        return u16::try_from(n).ok();
    }
    Some(match name {
        "ip" => 0x0800,
        "arp" => 0x0806,
        "ipv6" => 0x86dd,
        "802.1Q" => 0x8100,
        "all" => 0x0003,
        "LLDP" | "lldp" => 0x88cc,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::filter::{Filter, FilterError, states};

    fn parse(text: &str) -> Result<Filter, FilterError> {
        Filter::parse_str(text, &ParseContext::default())
    }

    fn expr(text: &str) -> Expr {
        parse(text).unwrap().expr.unwrap()
    }

    fn port(side: Side, port: Option<u16>) -> Expr {
        Expr::Cond(Cond::Host {
            side,
            host: HostCond::Inet {
                prefixes: Vec::new(),
                port,
            },
        })
    }

    fn prefix(side: Side, addr: &str, len: u8, port: Option<u16>) -> Expr {
        Expr::Cond(Cond::Host {
            side,
            host: HostCond::Inet {
                prefixes: vec![Prefix {
                    addr: addr.parse::<IpAddr>().unwrap(),
                    len,
                }],
                port,
            },
        })
    }

    #[test]
    fn ports_and_comparisons() {
        use Side::*;
        assert_eq!(expr("sport = :22"), port(Local, Some(22)));
        assert_eq!(expr("dport == 22"), port(Peer, Some(22)));
        assert_eq!(expr("dport eq 0x16"), port(Peer, Some(22)));
        assert_eq!(expr("dport != :80"), Expr::not(port(Peer, Some(80))));
        assert_eq!(expr("sport = *"), port(Local, None));
        assert_eq!(
            expr("sport >= :1024"),
            Expr::Cond(Cond::PortGe {
                side: Local,
                port: 1024
            })
        );
        // ss has no strict comparisons in bytecode: > is not <=, < is not >=.
        assert_eq!(
            expr("dport gt :1000"),
            Expr::not(Expr::Cond(Cond::PortLe {
                side: Peer,
                port: 1000
            }))
        );
        assert_eq!(
            expr("dport < :1000"),
            Expr::not(Expr::Cond(Cond::PortGe {
                side: Peer,
                port: 1000
            }))
        );
    }

    #[test]
    fn addresses_prefixes_and_ports() {
        use Side::*;
        assert_eq!(expr("src 10.0.0.0/8"), prefix(Local, "10.0.0.0", 8, None));
        assert_eq!(expr("src 10/8"), prefix(Local, "10.0.0.0", 8, None));
        assert_eq!(
            expr("src 10.0.0.0/255.255.0.0"),
            prefix(Local, "10.0.0.0", 16, None)
        );
        assert_eq!(
            expr("dst 1.2.3.4:80"),
            prefix(Peer, "1.2.3.4", 32, Some(80))
        );
        assert_eq!(expr("dst [::1]:22"), prefix(Peer, "::1", 128, Some(22)));
        assert_eq!(expr("dst ::1/128"), prefix(Peer, "::1", 128, None));
        assert_eq!(expr("src *:22"), port(Local, Some(22)));
        assert_eq!(
            expr("src != 1.2.3.4"),
            Expr::not(prefix(Local, "1.2.3.4", 32, None))
        );
        assert_eq!(expr("autobound"), Expr::Cond(Cond::Autobound));
        assert_eq!(
            expr("fwmark 0x10/0xff"),
            Expr::Cond(Cond::Mark {
                value: 0x10,
                mask: 0xff
            })
        );
    }

    #[test]
    fn and_or_have_one_precedence_and_chains_are_flat() {
        let (a, b, c) = (
            port(Side::Local, Some(1)),
            port(Side::Local, Some(2)),
            port(Side::Local, Some(3)),
        );
        // Left to right, as ss: (a or b) and c.
        assert_eq!(
            expr("sport = :1 or sport = :2 and sport = :3"),
            Expr::And(vec![Expr::Or(vec![a.clone(), b.clone()]), c.clone()])
        );
        assert_eq!(
            expr("sport = :1 || sport = :2 || sport = :3"),
            Expr::Or(vec![a.clone(), b.clone(), c.clone()])
        );
        // Juxtaposition is and.
        assert_eq!(
            expr("sport = :1 sport = :2 && sport = :3"),
            Expr::And(vec![a.clone(), b.clone(), c.clone()])
        );
        // Parentheses group without adding a node; not nests.
        assert_eq!(
            expr("sport = :1 or ( sport = :2 and sport = :3 )"),
            Expr::Or(vec![a.clone(), Expr::And(vec![b.clone(), c.clone()])])
        );
        assert_eq!(expr("( ( sport = :1 ) )"), a.clone());
        assert_eq!(expr("not ! sport = :1"), Expr::not(Expr::not(a)));
    }

    #[test]
    fn state_words_come_first() {
        let f = parse("state established state time-wait sport = :22").unwrap();
        assert_eq!(
            f.states,
            Some(states::mask("established").unwrap() | states::mask("time-wait").unwrap())
        );
        assert!(f.expr.is_some());
        let f = parse("exclude listening").unwrap();
        assert_eq!(
            f.states,
            Some(states::ALL & !states::mask("listening").unwrap())
        );
        assert!(f.expr.is_none());
        assert_eq!(parse("").unwrap().states, None);
    }

    #[test]
    fn errors_name_the_token_and_position() {
        let err = |text: &str| parse(text).unwrap_err();
        let e = err("sport = :99999");
        assert_eq!((e.position, e.message.as_str()), (9, "port out of range"));
        let e = err("src 1.2.3.4/33");
        assert_eq!((e.token.as_str(), e.position), ("1.2.3.4/33", 5));
        assert!(e.message.contains("prefix length"));
        assert!(err("sport = :1 )").message.contains("unexpected token"));
        assert!(err(") sport = :1").message.contains("expected a condition"));
        assert!(err("( )").message.contains("empty parentheses"));
        assert!(err("( sport = :1").message.contains("never closed"));
        assert!(err("sport").message.contains("expected a port"));
        assert!(err("state bogus").message.contains("unknown state name"));
        assert!(
            err("sport = :1 state established")
                .message
                .contains("must come before")
        );
        assert!(err("src >= 1.2.3.4").message.contains("= or != only"));
        let v4 = ParseContext {
            only_v4: true,
            ..ParseContext::default()
        };
        assert!(
            Filter::parse_str("src ::1", &v4)
                .unwrap_err()
                .message
                .contains("does not match -4/-6")
        );
    }

    #[test]
    fn paths_are_unix_addresses_when_only_unix_sockets_are_listed() {
        let unix = ParseContext {
            only_unix: true,
            ..ParseContext::default()
        };
        let f = Filter::parse_str("src /run/*", &unix).unwrap();
        assert!(
            matches!(
                f.expr,
                Some(Expr::Cond(Cond::Host {
                    host: HostCond::Unix(ref g),
                    ..
                })) if g == "/run/*"
            ),
            "{:?}",
            f.expr
        );
        assert!(Filter::parse_str("src /run/*", &ParseContext::default()).is_err());
    }
}
