//! Names for numbers: interface indexes (if_indextoname) and addresses (reverse DNS through
//! getnameinfo, so /etc/hosts and nsswitch apply as for ss -r). Each looked up once.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

/// Interface and host names, looked up once each.
#[derive(Default)]
pub struct Names {
    ifaces: HashMap<u32, String>,
    hosts: HashMap<IpAddr, String>,
}

impl Names {
    pub fn iface(&mut self, index: u32) -> &str {
        self.ifaces
            .entry(index)
            .or_insert_with(|| iface_name(index))
    }

    pub fn host(&mut self, ip: IpAddr) -> &str {
        self.hosts
            .entry(ip)
            .or_insert_with(|| dns_lookup_addr(ip).unwrap_or_else(|| ip.to_string()))
    }
}

pub fn iface_name(index: u32) -> String {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return format!("if{index}");
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

fn dns_lookup_addr(ip: IpAddr) -> Option<String> {
    let sa = SocketAddr::new(ip, 0);
    let (storage, len) = sockaddr(&sa);
    let mut host = [0u8; 1025];
    // SAFETY: storage holds a valid sockaddr of `len` bytes; host is writable.
    let rc = unsafe {
        libc::getnameinfo(
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
            host.as_mut_ptr().cast(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    let n = host.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&host[..n]).into_owned())
}

fn sockaddr(sa: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match sa {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
