//! Service names from /etc/services, for printing ports (ss without -n) and for `:http` in
//! filters. Read once, on first use; a missing file just means numeric ports.
use std::{collections::HashMap, fs, sync::OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

#[derive(Default)]
pub struct Services {
    by_port: HashMap<(u16, Proto), String>,
    by_name: HashMap<(String, Proto), u16>,
}

impl Services {
    pub fn parse(text: &str) -> Self {
        let mut s = Services::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(name), Some(port_proto)) = (words.next(), words.next()) else {
                continue;
            };
            let Some((port, proto)) = port_proto.split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            let proto = match proto {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                _ => continue,
            };
            // First entry wins, as getservbyport does.
            s.by_port
                .entry((port, proto))
                .or_insert_with(|| name.to_string());
            for alias in std::iter::once(name).chain(words) {
                s.by_name.entry((alias.to_string(), proto)).or_insert(port);
            }
        }
        s
    }

    /// The system's table.
    pub fn system() -> &'static Services {
        static SERVICES: OnceLock<Services> = OnceLock::new();
        SERVICES.get_or_init(|| {
            fs::read_to_string("/etc/services")
                .map(|t| Services::parse(&t))
                .unwrap_or_default()
        })
    }

    pub fn name(&self, port: u16, proto: Proto) -> Option<&str> {
        self.by_port.get(&(port, proto)).map(String::as_str)
    }

    pub fn port(&self, name: &str, proto: Proto) -> Option<u16> {
        self.by_name.get(&(name.to_string(), proto)).copied()
    }
}

/// The ephemeral port range (`net.ipv4.ip_local_port_range`); ss never names ports in it.
pub fn ephemeral_range() -> (u16, u16) {
    static RANGE: OnceLock<(u16, u16)> = OnceLock::new();
    *RANGE.get_or_init(|| {
        fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| {
                let mut it = t.split_whitespace().map(|w| w.parse::<u16>());
                Some((it.next()?.ok()?, it.next()?.ok()?))
            })
            .unwrap_or((1024, 4999))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        let s = Services::parse(
            "# comment\nssh\t\t22/tcp\t\t\t# SSH\nhttp\t80/tcp\twww # WorldWideWeb\ndomain 53/udp\nbogus x/tcp\n",
        );
        assert_eq!(s.name(22, Proto::Tcp), Some("ssh"));
        assert_eq!(s.name(22, Proto::Udp), None);
        assert_eq!(s.port("www", Proto::Tcp), Some(80));
        assert_eq!(s.port("domain", Proto::Udp), Some(53));
        assert_eq!(s.port("bogus", Proto::Tcp), None);
    }
}
