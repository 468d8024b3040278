//! A text line built as bytes. The trace stream's columns are left-aligned ASCII, and
//! core::fmt's padding machinery (a call per fill character, `Formatter::pad`, the
//! addresses' Display) was half of a busy `trace`'s CPU in a profile. No crate does this
//! small job (itoa does the numbers), so it is written here.
use std::{io::Write as _, net::SocketAddr};

use crate::{live::Cause, tcp::ReportedState};

#[derive(Default)]
pub struct Line(Vec<u8>);

impl Line {
    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn text(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// `value` as one line of JSON, newline included.
    pub fn json(&mut self, value: &impl serde::Serialize) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.0, value)?;
        self.0.push(b'\n');
        Ok(())
    }

    pub fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    /// `s` left-aligned in `width` characters, as `{:<width$}` pads it.
    pub fn padded(&mut self, s: &str, width: usize) {
        self.text(s);
        let chars = if s.is_ascii() {
            s.len()
        } else {
            s.chars().count()
        };
        self.spaces(width.saturating_sub(chars));
    }

    /// Spaces up to `width` bytes written since `start` (ASCII content only).
    pub fn pad_from(&mut self, start: usize, width: usize) {
        let written = self.0.len() - start;
        self.spaces(width.saturating_sub(written));
    }

    fn spaces(&mut self, n: usize) {
        self.0.resize(self.0.len() + n, b' ');
    }

    pub fn number(&mut self, n: impl itoa::Integer) {
        self.text(itoa::Buffer::new().format(n));
    }

    /// A byte's decimal digits, pushed one by one: an IPv4 address is four of them, and
    /// a copy call per octet showed in the profile.
    fn octet(&mut self, n: u8) {
        if n >= 100 {
            self.0.push(b'0' + n / 100);
        }
        if n >= 10 {
            self.0.push(b'0' + n / 10 % 10);
        }
        self.0.push(b'0' + n % 10);
    }

    pub fn padded_number(&mut self, n: impl itoa::Integer, width: usize) {
        let start = self.len();
        self.number(n);
        self.pad_from(start, width);
    }

    /// `n` (below 10^digits) with leading zeros, as `{:0digits$}`.
    pub fn zero_padded(&mut self, n: u32, digits: usize) {
        let mut buf = itoa::Buffer::new();
        let s = buf.format(n);
        self.0
            .resize(self.0.len() + digits.saturating_sub(s.len()), b'0');
        self.text(s);
    }

    /// `addr` as its Display shows it, left-aligned in `width`.
    pub fn padded_addr(&mut self, addr: SocketAddr, width: usize) {
        let start = self.len();
        match addr {
            SocketAddr::V4(v4) => {
                let [a, b, c, d] = v4.ip().octets();
                self.octet(a);
                for octet in [b, c, d] {
                    self.0.push(b'.');
                    self.octet(octet);
                }
                self.0.push(b':');
                self.number(v4.port());
            }
            // Rare on the hot path, and its Display has the most cases (zero runs, mapped
            // IPv4, scope ids): std formats it. Writing to a Vec cannot fail.
            SocketAddr::V6(_) => {
                let _ = write!(self.0, "{addr}");
            }
        }
        self.pad_from(start, width);
    }

    /// A state as ss names it.
    pub fn state(&mut self, state: ReportedState) {
        match state {
            ReportedState::Known(s) => self.text(s.ss_name()),
            ReportedState::Unknown(n) => {
                self.text("UNKNOWN(");
                self.number(n);
                self.text(")");
            }
        }
    }

    /// A cause's name, or "-".
    pub fn cause(&mut self, cause: Option<Cause>) {
        match cause {
            None => self.text("-"),
            Some(c) => match c.static_name() {
                Some(name) => self.text(name),
                None => self.text(&c.name()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    fn built(f: impl FnOnce(&mut Line)) -> String {
        let mut line = Line::default();
        f(&mut line);
        String::from_utf8(line.bytes().to_vec()).unwrap()
    }

    #[test]
    fn pads_like_format() {
        for s in [
            "",
            "-",
            "curl",
            "sixteen-chars-xx",
            "longer-than-the-width",
            "café-ü",
        ] {
            assert_eq!(built(|l| l.padded(s, 16)), format!("{s:<16}"));
        }
        for n in [0u32, 7, 1234567, 12345678, u32::MAX] {
            assert_eq!(built(|l| l.padded_number(n, 7)), format!("{n:<7}"));
        }
        for n in [0u32, 5, 42, 999] {
            assert_eq!(built(|l| l.zero_padded(n, 3)), format!("{n:03}"));
        }
    }

    #[test]
    fn addresses_like_display() {
        let addrs: Vec<SocketAddr> = vec![
            (Ipv4Addr::new(0, 0, 0, 0), 0).into(),
            (Ipv4Addr::new(127, 0, 0, 1), 8080).into(),
            (Ipv4Addr::new(255, 255, 255, 255), 65535).into(),
            (Ipv4Addr::new(10, 200, 3, 45), 443).into(),
            (Ipv6Addr::LOCALHOST, 22).into(),
            (Ipv6Addr::UNSPECIFIED, 0).into(),
            ("::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap(), 80).into(),
            ("2001:db8:0:0:1:0:0:1".parse::<Ipv6Addr>().unwrap(), 5432).into(),
            SocketAddrV6::new("fe80::1".parse().unwrap(), 80, 0, 3).into(),
        ];
        for a in addrs {
            assert_eq!(built(|l| l.padded_addr(a, 24)), format!("{a:<24}"));
        }
    }

    #[test]
    fn states_and_causes_like_display() {
        for n in 0..=14u8 {
            let s = ReportedState::from_kernel(n);
            assert_eq!(built(|l| l.state(s)), s.to_string());
        }
        for c in [
            Cause::Fin,
            Cause::Errno(libc::ECONNREFUSED),
            Cause::Errno(4242),
            Cause::Killed,
        ] {
            assert_eq!(built(|l| l.cause(Some(c))), c.name());
        }
        assert_eq!(built(|l| l.cause(None)), "-");
    }
}
