//! The filter language's syntax tree, shared by the bytecode compiler and the matcher.
use std::net::IpAddr;

/// And/or chains are flat lists, so a filter of thousands of conditions is a wide tree, not a
/// deep one: only parentheses and `not` nest, and the parser bounds that
/// ([`MAX_NESTING`]). Every walk over the tree recurses at most that deep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// Two or more, all of which must hold.
    And(Vec<Expr>),
    /// Two or more, one of which must hold.
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cond(Cond),
}

/// How deep parentheses and `not` may nest: far beyond any real filter, and shallow enough
/// for every recursive walk to fit a 256 KiB stack.
pub const MAX_NESTING: usize = 100;

/// Which end of the socket a condition looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `src`, `sport`: the local end.
    Local,
    /// `dst`, `dport`: the peer.
    Peer,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `src X`, `dst X`, `sport = X`, `dport = X`.
    Host { side: Side, host: HostCond },
    /// `sport >= N` (and `<`, via Not).
    PortGe { side: Side, port: u16 },
    /// `sport <= N` (and `>`, via Not).
    PortLe { side: Side, port: u16 },
    /// `dev NAME`: bound interface index.
    Dev(u32),
    /// `fwmark VALUE[/MASK]`.
    Mark { value: u32, mask: u32 },
    /// `cgroup PATH`: cgroup v2 id.
    Cgroup(u64),
    /// `autobound`: the local port was picked by the kernel.
    Autobound,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCond {
    /// Any of `prefixes` (none: any address), and `port` if given.
    Inet {
        prefixes: Vec<Prefix>,
        port: Option<u16>,
    },
    /// `unix:GLOB` (case-insensitive, `*` crosses `/`, as ss's fnmatch).
    Unix(String),
    /// `link:PROTO:IFACE`.
    Packet {
        protocol: Option<u16>,
        ifindex: Option<u32>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Expr {
    /// `a and b`; a left side that is already an `and` chain grows (both operators are
    /// associative, so the chain means what the nested form would).
    pub fn and(a: Expr, b: Expr) -> Expr {
        match a {
            Expr::And(mut xs) => {
                xs.push(b);
                Expr::And(xs)
            }
            a => Expr::And(vec![a, b]),
        }
    }
    pub fn or(a: Expr, b: Expr) -> Expr {
        match a {
            Expr::Or(mut xs) => {
                xs.push(b);
                Expr::Or(xs)
            }
            a => Expr::Or(vec![a, b]),
        }
    }
    #[allow(clippy::should_implement_trait)]
    pub fn not(a: Expr) -> Expr {
        Expr::Not(Box::new(a))
    }

    /// Visits every condition.
    pub fn any_cond(&self, f: &mut impl FnMut(&Cond) -> bool) -> bool {
        match self {
            Expr::And(xs) | Expr::Or(xs) => xs.iter().any(|x| x.any_cond(f)),
            Expr::Not(a) => a.any_cond(f),
            Expr::Cond(c) => f(c),
        }
    }
}
