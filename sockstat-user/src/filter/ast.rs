//! The filter language's syntax tree, shared by the bytecode compiler and the matcher.
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cond(Cond),
}

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
    pub fn and(a: Expr, b: Expr) -> Expr {
        Expr::And(Box::new(a), Box::new(b))
    }
    pub fn or(a: Expr, b: Expr) -> Expr {
        Expr::Or(Box::new(a), Box::new(b))
    }
    #[allow(clippy::should_implement_trait)]
    pub fn not(a: Expr) -> Expr {
        Expr::Not(Box::new(a))
    }

    /// Visits every condition.
    pub fn any_cond(&self, f: &mut impl FnMut(&Cond) -> bool) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.any_cond(f) || b.any_cond(f),
            Expr::Not(a) => a.any_cond(f),
            Expr::Cond(c) => f(c),
        }
    }
}
