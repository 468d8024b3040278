//! The ss filter language: lexer, parser, syntax tree, kernel bytecode compiler and the
//! user-space matcher. Pure: no I/O beyond name lookups (services, interfaces, host names).
pub mod ast;
pub mod bytecode;
pub mod lexer;
pub mod matcher;
pub mod parser;
pub mod states;

#[cfg(test)]
mod fuzz;

pub use ast::Expr;
pub use parser::{FamilyRestriction, ParseContext};

/// A filter the user wrote, ready to compile and to match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// From leading `state`/`exclude` words.
    pub states: Option<u32>,
    pub expr: Option<Expr>,
    /// A `unix:`, `link:`, `inet:` or `inet6:` prefix limits which tables are listed.
    pub family: Option<FamilyRestriction>,
}

/// A bad filter: which token, where, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad filter: {}: {message}", if token.is_empty() { format!("at position {position}") } else { format!("\"{token}\" at position {position}") })]
pub struct FilterError {
    pub token: String,
    /// 1-based character position in the filter text (the words joined by spaces).
    pub position: usize,
    pub message: String,
}

impl Filter {
    /// Parses the filter words of a command line.
    pub fn parse(words: &[String], ctx: &ParseContext) -> Result<Filter, FilterError> {
        let text = words.join(" ");
        Self::parse_str(&text, ctx)
    }

    pub fn parse_str(text: &str, ctx: &ParseContext) -> Result<Filter, FilterError> {
        let tokens = lexer::lex(text);
        let end = text.chars().count() + 1;
        let parsed = parser::parse(tokens, ctx, end)?;
        Ok(Filter {
            states: parsed.states,
            expr: parsed.expr,
            family: parsed.family,
        })
    }

    /// Whether a dumped socket passes: its state (inet sockets only, as ss applies states)
    /// and the expression, both checked in user space.
    pub fn matches_record(&self, r: &crate::diag::SocketRecord) -> bool {
        let states = self.states.unwrap_or(states::ALL);
        (!r.netid.is_inet() || states::contains(states, r.state))
            && self.expr.as_ref().is_none_or(|e| matcher::matches(e, r))
    }

    /// Whether a TCP socket in kernel state `state` between `local` and `remote` passes,
    /// for views fed from the live table (trace, top) rather than from a dump.
    pub fn matches_tcp(
        &self,
        state: u8,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
    ) -> bool {
        self.matches_tcp_states(&[state], local, remote)
    }

    /// The same for a socket that went through `states` (a transition's old and new; the
    /// last is its current state): one of them must be wanted, and the expression must
    /// hold for the current one.
    pub fn matches_tcp_states(
        &self,
        states: &[u8],
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
    ) -> bool {
        if let Some(mask) = self.states
            && !states.iter().any(|&s| states::contains(mask, s))
        {
            return false;
        }
        match &self.expr {
            Some(expr) => {
                let current = states.last().copied().unwrap_or(0);
                let record = crate::diag::SocketRecord::inet(
                    crate::diag::record::Netid::Tcp,
                    current,
                    local,
                    remote,
                );
                matcher::matches(expr, &record)
            }
            None => true,
        }
    }
}
