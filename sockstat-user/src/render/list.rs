//! The socket listing: ss's columns and spellings (text), or one JSON array.
use std::{fmt::Write as _, net::IpAddr};

use sockstat_common::tcp_state;

pub use crate::names::{Names, iface_name};

use super::{
    numfmt::{bandwidth, g, ms_timer, push_ipv4, push_uint, push_uint_padded},
    table::{Align, Column, Table},
};
use crate::{
    diag::{
        record::{Endpoint, Netid, SocketRecord},
        tcp_info::{self, TcpInfo},
    },
    procs::{Owners, workload::Workload},
    services::{self, Proto, Services},
};

/// How the listing looks; decided once from the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListStyle {
    pub show_netid: bool,
    pub show_state: bool,
    pub header: bool,
    /// `-n`: no service names.
    pub numeric: bool,
    /// `-r`: host names.
    pub resolve: bool,
    pub processes: bool,
    pub timers: bool,
    pub extended: bool,
    pub memory: bool,
    pub info: bool,
    pub oneline: bool,
}

/// ss's State column for a kernel state number (`sstate_name`): the shared names, except
/// that the listing calls CLOSE "UNCONN", as ss does.
pub fn state_name(state: u8) -> &'static str {
    match state {
        tcp_state::CLOSE => "UNCONN",
        n => tcp_state::name(n).unwrap_or("UNKNOWN"),
    }
}

fn columns() -> Vec<Column> {
    let c = |header, delim, align| Column {
        header,
        delim,
        align,
    };
    vec![
        c("Netid", "", Align::Left),
        c("State", " ", Align::Left),
        c("Recv-Q", " ", Align::Left),
        c("Send-Q", " ", Align::Left),
        c("Local Address:", " ", Align::Right),
        c("Port", "", Align::Left),
        c("Peer Address:", " ", Align::Right),
        c("Port", "", Align::Left),
        c("Process", "", Align::Left),
    ]
}

/// `-c`: the line above each listing, with the time it was taken.
pub fn write_stamp(
    out: &mut impl std::io::Write,
    now: chrono::DateTime<chrono::Local>,
    every: std::time::Duration,
) -> std::io::Result<()> {
    writeln!(
        out,
        "--- {} (every {} s; Ctrl-C stops) ---",
        now.format("%Y-%m-%d %H:%M:%S"),
        every.as_secs_f64()
    )
}

/// An empty ss table with the columns `style` shows.
pub fn new_table(style: &ListStyle) -> Table {
    let mut cols = columns();
    let mut index = 0;
    cols.retain(|_| {
        let keep = match index {
            0 => style.show_netid,
            1 => style.show_state,
            _ => true,
        };
        index += 1;
        keep
    });
    // The first visible column has no delimiter.
    if let Some(first) = cols.first_mut() {
        first.delim = "";
    }
    Table::new(cols, style.header)
}

/// Appends one socket as a row.
pub fn push_row(
    t: &mut Table,
    r: &SocketRecord,
    owners: Option<&Owners>,
    style: &ListStyle,
    names: &mut Names,
) {
    let services = Services::system();
    if style.show_netid {
        t.push(r.netid.name());
    }
    if style.show_state {
        let state = if matches!(r.netid, Netid::PacketRaw | Netid::PacketDgram) {
            "UNCONN"
        } else {
            state_name(r.state)
        };
        t.push(state);
    }
    push_uint_padded(t.cell(), r.recv_q, 6);
    t.end_cell();
    push_uint_padded(t.cell(), r.send_q, 6);
    t.end_cell();
    endpoint(t, r, &r.local, true, style, services, names);
    endpoint(t, r, &r.peer, false, style, services, names);
    ext(t.cell(), r, owners, style);
    t.end_cell();
}

/// ss's table with a leading Netns column (`--all-netns`): each row is (label, socket).
pub fn table_with_netns(
    rows: &[(std::rc::Rc<NetnsLabel>, SocketRecord)],
    owners: Option<&Owners>,
    style: &ListStyle,
    names: &mut Names,
) -> Table {
    let mut cols = new_table(style).into_columns();
    if let Some(first) = cols.first_mut() {
        first.delim = " ";
    }
    for (at, header, delim) in [(0, "Netns", ""), (1, "Container", " ")] {
        cols.insert(
            at,
            Column {
                header,
                delim,
                align: Align::Left,
            },
        );
    }
    let mut t = Table::new(cols, style.header);
    for (label, r) in rows {
        t.push(&label.name);
        match label.workload.as_deref().and_then(Workload::label) {
            Some(w) => t.push(&w),
            None => t.push("-"),
        }
        push_row(&mut t, r, owners, style, names);
    }
    t
}

/// A namespace as `--all-netns` shows it: its one name, and the names of the container
/// it belongs to (Docker's, or a pod's).
#[derive(Debug, Default)]
pub struct NetnsLabel {
    pub name: String,
    pub workload: Option<std::sync::Arc<Workload>>,
}

/// Builds the whole ss table at once.
#[cfg(test)]
pub fn table(
    records: &[SocketRecord],
    owners: Option<&Owners>,
    style: &ListStyle,
    names: &mut Names,
) -> Table {
    let mut t = new_table(style);
    for r in records {
        push_row(&mut t, r, owners, style, names);
    }
    t
}

fn endpoint(
    t: &mut Table,
    r: &SocketRecord,
    e: &Endpoint,
    local: bool,
    style: &ListStyle,
    services: &Services,
    names: &mut Names,
) {
    match e {
        Endpoint::Inet(sa) => {
            let ip = sa.ip();
            let cell = t.cell();
            match ip {
                IpAddr::V4(a) if style.resolve && !a.is_unspecified() => {
                    cell.push_str(names.host(ip))
                }
                IpAddr::V4(a) => push_ipv4(cell, a.octets()),
                IpAddr::V6(a) if a.is_unspecified() && r.v6only != Some(true) => cell.push('*'),
                IpAddr::V6(a) => {
                    if style.resolve && !a.is_unspecified() {
                        let h = names.host(ip).to_string();
                        let cell = t.cell();
                        if h.contains(':') {
                            write!(cell, "[{h}]").ok();
                        } else {
                            cell.push_str(&h);
                        }
                    } else {
                        write!(t.cell(), "[{a}]").ok();
                    }
                }
            }
            if local && r.ifindex != 0 {
                let name = names.iface(r.ifindex).to_string();
                write!(t.cell(), "%{name}").ok();
            }
            t.cell().push(':');
            t.end_cell();
            port(t.cell(), r.netid, sa.port(), style, services);
            t.end_cell();
        }
        Endpoint::Unix { name, inode } => {
            let cell = t.cell();
            cell.push_str(name.as_deref().unwrap_or("*"));
            cell.push(' ');
            t.end_cell();
            let shown = if local { *inode } else { r.unix_peer };
            push_uint(t.cell(), shown);
            t.end_cell();
        }
        Endpoint::Packet { protocol, ifindex } => {
            let cell = t.cell();
            if *protocol == 3 {
                cell.push('*');
            } else {
                cell.push_str(&ethertype_name(*protocol, style.numeric));
            }
            cell.push(':');
            t.end_cell();
            if *ifindex == 0 {
                t.cell().push('*');
            } else {
                let name = names.iface(*ifindex).to_string();
                t.cell().push_str(&name);
            }
            t.end_cell();
        }
        Endpoint::None => {
            t.cell().push('*');
            t.end_cell();
            t.end_cell();
        }
    }
}

fn port(cell: &mut String, netid: Netid, port: u16, style: &ListStyle, services: &Services) {
    // No port (a raw socket's peer included) is "*", as in ss.
    if port == 0 {
        cell.push('*');
        return;
    }
    if netid == Netid::Raw {
        // The "port" of a raw socket is its IP protocol.
        if style.numeric {
            write!(cell, "{port}").ok();
        } else {
            cell.push_str(&ip_protocol_name(port));
        }
        return;
    }
    if !style.numeric {
        let (lo, hi) = services::ephemeral_range();
        let proto = if netid == Netid::Udp {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        if !(lo..=hi).contains(&port)
            && let Some(name) = services.name(port, proto)
        {
            cell.push_str(name);
            return;
        }
    }
    push_uint(cell, port);
}

fn ip_protocol_name(p: u16) -> String {
    match p {
        1 => "icmp".into(),
        2 => "igmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        n => format!("ipproto-{n}"),
    }
}

pub(super) fn ethertype_name(p: u16, numeric: bool) -> String {
    if !numeric {
        let name = match p {
            0x0800 => Some("ip"),
            0x0806 => Some("arp"),
            0x86dd => Some("ipv6"),
            0x8100 => Some("802.1Q"),
            0x88cc => Some("LLDP"),
            _ => None,
        };
        if let Some(n) = name {
            return n.into();
        }
    }
    format!("[{p}]")
}

/// ` users:(("comm",pid=N,fd=N),...)` for one socket; nothing when nobody holds it.
pub fn users(cell: &mut String, owners: &Owners, inode: u32) {
    let holders = owners.of(inode);
    if holders.is_empty() {
        return;
    }
    cell.push_str(" users:(");
    for (i, o) in holders.iter().enumerate() {
        if i > 0 {
            cell.push(',');
        }
        // `("comm",pid=N,fd=N)`, without core::fmt: one per socket with -p.
        cell.push_str("(\"");
        cell.push_str(owners.comm(o.pid));
        cell.push_str("\",pid=");
        push_uint(cell, o.pid);
        cell.push_str(",fd=");
        push_uint(cell, o.fd);
        cell.push(')');
    }
    cell.push(')');
}

/// Everything after the peer port: processes, timers, details, memory, TCP info.
fn ext(cell: &mut String, r: &SocketRecord, owners: Option<&Owners>, style: &ListStyle) {
    if let Some(owners) = owners {
        users(cell, owners, r.inode);
    }
    let sep = if style.oneline { " " } else { "\n\t" };
    if r.netid.is_inet() {
        if (style.timers || style.extended)
            && let Some(tm) = r.timer
        {
            write!(cell, " {}", timer_text(&tm)).ok();
        }
        if style.extended {
            if r.uid != 0 {
                write!(cell, " uid:{}", r.uid).ok();
            }
            write!(cell, " ino:{} sk:{:x}", r.inode, r.cookie).ok();
            if let Some(m) = r.mark.filter(|&m| m != 0) {
                write!(cell, " fwmark:0x{m:x}").ok();
            }
            if let Some(v6) = r.v6only {
                write!(cell, " v6only:{}", u8::from(v6)).ok();
            }
            if let Some(sd) = r.shutdown {
                shutdown_arrows(cell, sd);
            }
        }
        let show_info = style.info && r.netid != Netid::Udp;
        if style.memory || show_info {
            cell.push_str(if style.oneline { "" } else { sep });
            if style.memory
                && let Some(m) = &r.skmem
            {
                skmem(cell, m);
            }
            if show_info && let Some(info) = &r.tcp_info {
                tcp_info_text(cell, info, r, style);
            }
        }
    } else if r.netid.is_unix() {
        if style.extended {
            if let Some(sd) = r.shutdown {
                shutdown_arrows(cell, sd);
            }
            if let Some((dev, ino)) = r.unix_vfs {
                write!(cell, " ino:{ino} dev:{}/{}", dev >> 20, dev & 0xfffff).ok();
            }
            if r.state == 10 {
                cell.push_str(" peers:");
                for p in &r.unix_pending {
                    write!(cell, " {p}").ok();
                }
            }
        }
        if style.memory
            && let Some(m) = &r.skmem
        {
            skmem(cell, m);
        }
    } else if style.extended {
        if r.uid != 0 {
            write!(cell, " uid:{}", r.uid).ok();
        }
        write!(cell, " ino:{} sk:{:x}", r.inode, r.cookie).ok();
        if let Some(pi) = r.packet_info {
            write!(
                cell,
                "{sep}ver:{} cpy_thresh:{} flags(",
                pi.version, pi.copy_thresh
            )
            .ok();
            let names = ["running", "auxdata", "origdev", "vnethdr", "loss"];
            if pi.flags == 0 {
                cell.push_str(" 0");
            }
            for (i, n) in names.iter().enumerate() {
                if pi.flags & (1 << i) != 0 {
                    write!(cell, " {n}").ok();
                }
            }
            cell.push_str(" )");
        }
    }
}

fn shutdown_arrows(cell: &mut String, sd: u8) {
    let rx = if sd & 1 != 0 { '-' } else { '<' };
    let tx = if sd & 2 != 0 { '-' } else { '>' };
    write!(cell, " {rx}-{tx}").ok();
}

/// A socket's timer as `-o` shows it: `timer:(persist,1.2sec,0)`.
pub fn timer_text(tm: &crate::diag::Timer) -> String {
    format!(
        "timer:({},{},{})",
        timer_name(tm.kind),
        ms_timer(tm.expires_ms),
        tm.retrans
    )
}

pub(super) fn timer_name(kind: u8) -> &'static str {
    match kind {
        1 => "on",
        2 => "keepalive",
        3 => "timewait",
        4 => "persist",
        5 => "delack",
        _ => "unknown",
    }
}

fn skmem(cell: &mut String, m: &[u32]) {
    let v = |i: usize| m.get(i).copied().unwrap_or(0);
    write!(
        cell,
        " skmem:(r{},rb{},t{},tb{},f{},w{},o{}",
        v(0),
        v(1),
        v(2),
        v(3),
        v(4),
        v(5),
        v(6)
    )
    .ok();
    if m.len() >= 8 {
        write!(cell, ",bl{}", v(7)).ok();
    }
    if m.len() >= 9 {
        write!(cell, ",d{}", v(8)).ok();
    }
    cell.push(')');
}

/// ss's `tcp_stats_print`, in its order and with its conditions.
/// How one tcp_info item prints in `ss -i`.
enum InfoItem {
    /// ` name:value`, unless the value is 0.
    Count(&'static str, fn(&TcpInfo) -> u64),
    /// ` name:ms`, microseconds shown as milliseconds, unless the value is one of `hidden`.
    Millis(&'static str, fn(&TcpInfo) -> u32, &'static [u32]),
    /// Anything with its own shape.
    Custom(fn(&mut String, &TcpInfo, &SocketRecord, &ListStyle)),
}

use InfoItem::{Count, Custom, Millis};

/// `ss -i`'s items, in ss's order (misc/ss.c `tcp_show_info`).
const TCP_INFO_ITEMS: &[InfoItem] = &[
    Custom(info_options),
    Custom(|cell, _, r, _| {
        if let Some(cong) = &r.congestion {
            write!(cell, " {cong}").ok();
        }
    }),
    Custom(|cell, i, _, _| {
        if i.options & tcp_info::TCPI_OPT_WSCALE != 0 {
            write!(cell, " wscale:{},{}", i.snd_wscale, i.rcv_wscale).ok();
        }
    }),
    // 3 s is the kernel's initial RTO: ss leaves it out.
    Millis("rto", |i| i.rto, &[0, 3_000_000]),
    Count("backoff", |i| u64::from(i.backoff)),
    Custom(|cell, i, _, _| {
        if i.rtt != 0 {
            write!(cell, " rtt:{}/{}", info_ms(i.rtt), info_ms(i.rttvar)).ok();
        }
    }),
    Millis("ato", |i| i.ato, &[0]),
    Count("mss", |i| u64::from(i.snd_mss)),
    Count("pmtu", |i| u64::from(i.pmtu)),
    Count("rcvmss", |i| u64::from(i.rcv_mss)),
    Count("advmss", |i| u64::from(i.advmss)),
    Count("cwnd", |i| u64::from(i.snd_cwnd)),
    Custom(|cell, i, _, _| {
        // At or above 0xffff the threshold is "infinite": ss leaves it out.
        if i.snd_ssthresh != 0 && i.snd_ssthresh < 0xffff {
            write!(cell, " ssthresh:{}", i.snd_ssthresh).ok();
        }
    }),
    Count("bytes_sent", |i| i.bytes_sent),
    Count("bytes_retrans", |i| i.bytes_retrans),
    Count("bytes_acked", |i| i.bytes_acked),
    Count("bytes_received", |i| i.bytes_received),
    Count("segs_out", |i| u64::from(i.segs_out)),
    Count("segs_in", |i| u64::from(i.segs_in)),
    Count("data_segs_out", |i| u64::from(i.data_segs_out)),
    Count("data_segs_in", |i| u64::from(i.data_segs_in)),
    Custom(|cell, i, _, style| {
        if i.rtt > 0 && i.snd_mss > 0 && i.snd_cwnd > 0 {
            let send = f64::from(i.snd_cwnd) * f64::from(i.snd_mss) * 8.0 * 1e6 / f64::from(i.rtt);
            write!(cell, " send {}bps", bandwidth(send, style.numeric)).ok();
        }
    }),
    Count("lastsnd", |i| u64::from(i.last_data_sent)),
    Count("lastrcv", |i| u64::from(i.last_data_recv)),
    Count("lastack", |i| u64::from(i.last_ack_recv)),
    Custom(info_pacing),
    Custom(|cell, i, _, style| {
        if i.delivery_rate != 0 {
            let rate = bandwidth(i.delivery_rate as f64 * 8.0, style.numeric);
            write!(cell, " delivery_rate {rate}bps").ok();
        }
    }),
    Count("delivered", |i| u64::from(i.delivered)),
    Count("delivered_ce", |i| u64::from(i.delivered_ce)),
    Custom(|cell, i, _, _| {
        if i.delivery_rate_app_limited {
            cell.push_str(" app_limited");
        }
    }),
    Custom(info_busy),
    Count("unacked", |i| u64::from(i.unacked)),
    Custom(|cell, i, _, _| {
        if i.retrans != 0 || i.total_retrans != 0 {
            write!(cell, " retrans:{}/{}", i.retrans, i.total_retrans).ok();
        }
    }),
    Count("lost", |i| u64::from(i.lost)),
    Custom(|cell, i, r, _| {
        // A listener's sacked field is its backlog (ss leaves it out).
        if i.sacked != 0 && r.state != tcp_state::LISTEN {
            write!(cell, " sacked:{}", i.sacked).ok();
        }
    }),
    Count("dsack_dups", |i| u64::from(i.dsack_dups)),
    Count("fackets", |i| u64::from(i.fackets)),
    Custom(|cell, i, _, _| {
        // 3 is the default reordering: ss leaves it out.
        if i.reordering != 3 {
            write!(cell, " reordering:{}", i.reordering).ok();
        }
    }),
    Count("reord_seen", |i| u64::from(i.reord_seen)),
    Millis("rcv_rtt", |i| i.rcv_rtt, &[0]),
    Count("rcv_space", |i| u64::from(i.rcv_space)),
    Count("rcv_ssthresh", |i| u64::from(i.rcv_ssthresh)),
    Count("notsent", |i| u64::from(i.notsent_bytes)),
    Millis("minrtt", |i| i.min_rtt, &[0, u32::MAX]),
    Count("rcv_ooopack", |i| u64::from(i.rcv_ooopack)),
    Count("snd_wnd", |i| u64::from(i.snd_wnd)),
    Count("rcv_wnd", |i| u64::from(i.rcv_wnd)),
];

/// Microseconds as ss prints milliseconds.
fn info_ms(us: u32) -> String {
    g(f64::from(us) / 1000.0, 6)
}

fn info_options(cell: &mut String, i: &TcpInfo, _: &SocketRecord, style: &ListStyle) {
    if !(style.timers || style.extended) {
        return;
    }
    for (bit, name) in [
        (tcp_info::TCPI_OPT_TIMESTAMPS, "ts"),
        (tcp_info::TCPI_OPT_SACK, "sack"),
        (tcp_info::TCPI_OPT_ECN, "ecn"),
        (tcp_info::TCPI_OPT_ECN_SEEN, "ecnseen"),
        (tcp_info::TCPI_OPT_SYN_DATA, "fastopen"),
    ] {
        if i.options & bit != 0 {
            write!(cell, " {name}").ok();
        }
    }
}

fn info_pacing(cell: &mut String, i: &TcpInfo, _: &SocketRecord, style: &ListStyle) {
    // u64::MAX: no pacing limit set.
    if i.pacing_rate == 0 || i.pacing_rate == u64::MAX {
        return;
    }
    let rate = |bytes: u64| bandwidth(bytes as f64 * 8.0, style.numeric);
    write!(cell, " pacing_rate {}bps", rate(i.pacing_rate)).ok();
    if i.max_pacing_rate != 0 && i.max_pacing_rate != u64::MAX {
        write!(cell, "/{}bps", rate(i.max_pacing_rate)).ok();
    }
}

fn info_busy(cell: &mut String, i: &TcpInfo, _: &SocketRecord, _: &ListStyle) {
    if i.busy_time == 0 {
        return;
    }
    write!(cell, " busy:{}ms", i.busy_time / 1000).ok();
    let pct = |x: u64| x as f64 * 100.0 / i.busy_time as f64;
    for (v, name) in [
        (i.rwnd_limited, "rwnd_limited"),
        (i.sndbuf_limited, "sndbuf_limited"),
    ] {
        if v != 0 {
            write!(cell, " {name}:{}ms({:.1}%)", v / 1000, pct(v)).ok();
        }
    }
}

fn tcp_info_text(cell: &mut String, i: &TcpInfo, r: &SocketRecord, style: &ListStyle) {
    for item in TCP_INFO_ITEMS {
        match item {
            Count(name, get) => {
                let v = get(i);
                if v != 0 {
                    write!(cell, " {name}:{v}").ok();
                }
            }
            Millis(name, get, hidden) => {
                let v = get(i);
                if !hidden.contains(&v) {
                    write!(cell, " {name}:{}", info_ms(v)).ok();
                }
            }
            Custom(show) => show(cell, i, r, style),
        }
    }
}

pub use super::list_json::{JsonArray, record_json_in};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::record::Timer;
    use crate::render::list_json::record_json;
    use serde_json::json;

    fn style() -> ListStyle {
        ListStyle {
            show_netid: true,
            show_state: true,
            header: true,
            numeric: true,
            ..ListStyle::default()
        }
    }

    fn sample() -> Vec<SocketRecord> {
        let mut listen = SocketRecord::inet(
            Netid::Tcp,
            10,
            "127.0.0.1:8080".parse().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
        );
        listen.send_q = 128;
        listen.inode = 1234;
        listen.cookie = 0x2a;
        let mut estab = SocketRecord::inet(
            Netid::Tcp,
            1,
            "[::1]:40000".parse().unwrap(),
            "[::1]:8080".parse().unwrap(),
        );
        estab.timer = Some(Timer {
            kind: 2,
            expires_ms: 7_140_000,
            retrans: 0,
        });
        estab.inode = 99;
        let mut any6 = SocketRecord::inet(
            Netid::Udp,
            7,
            "[::]:53".parse().unwrap(),
            "[::]:0".parse().unwrap(),
        );
        any6.v6only = Some(false);
        vec![listen, estab, any6]
    }

    fn render(records: &[SocketRecord], style: &ListStyle, owners: Option<&Owners>) -> String {
        let t = table(records, owners, style, &mut Names::default());
        let mut out = Vec::new();
        t.write(&mut out, None).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn golden_ss_columns() {
        // Byte for byte what ss prints for these sockets, including its quirk of gluing
        // "Process" to a 4-wide "Port" header.
        let expected = "\
Netid State  Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess
tcp   LISTEN 0      128        127.0.0.1:8080       0.0.0.0:*
tcp   ESTAB  0      0              [::1]:40000        [::1]:8080
udp   UNCONN 0      0                  *:53               *:*
";
        assert_eq!(render(&sample(), &style(), None), expected);
    }

    #[test]
    fn golden_processes_timers_and_details() {
        let owners = Owners::new(
            vec![crate::procs::Holder {
                inode: 1234,
                pid: 42,
                fd: 3,
            }],
            [(42, "nginx".to_string())].into(),
        );
        let s = ListStyle {
            processes: true,
            extended: true,
            show_netid: false,
            ..style()
        };
        let expected = "\
State  Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess
LISTEN 0      128        127.0.0.1:8080       0.0.0.0:*    users:((\"nginx\",pid=42,fd=3)) ino:1234 sk:2a
ESTAB  0      0              [::1]:40000        [::1]:8080 timer:(keepalive,119min,0) ino:99 sk:0
UNCONN 0      0                  *:53               *:*    ino:0 sk:0 v6only:0
";
        assert_eq!(render(&sample(), &s, Some(&owners)), expected);
    }

    #[test]
    fn raw_sockets_show_their_protocol_and_a_portless_peer_as_star() {
        let icmp = SocketRecord::inet(
            Netid::Raw,
            7,
            "0.0.0.0:1".parse().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
        );
        let names = ListStyle {
            numeric: false,
            ..style()
        };
        let out = render(&[icmp], &names, None);
        let row = out.lines().nth(1).unwrap();
        assert!(row.contains("0.0.0.0:icmp"), "{row}");
        assert!(row.trim_end().ends_with("0.0.0.0:*"), "{row}");
    }

    /// Records with every JSON section filled in, for the byte-exact golden below.
    fn full_sample() -> (Vec<SocketRecord>, Owners) {
        let mut recs = sample();
        let estab = &mut recs[1];
        estab.recv_q = 5;
        estab.uid = 1000;
        estab.cookie = 77;
        estab.shutdown = Some(1);
        estab.mark = Some(0x10);
        estab.cgroup_id = Some(4242);
        estab.v6only = Some(true);
        estab.skmem = Some(vec![1, 2, 3, 4, 5, 6, 7, 8]);
        estab.congestion = Some("cubic".into());
        estab.tcp_info = Some(Box::new(TcpInfo {
            rto: 204_000,
            rtt: 1_250,
            rttvar: 625,
            snd_mss: 1448,
            snd_cwnd: 10,
            bytes_acked: 12,
            delivery_rate: 1000,
            pacing_rate: u64::MAX,
            busy_time: 3_000,
            ..TcpInfo::default()
        }));
        estab.ifindex = 1;
        let mut unix = SocketRecord::inet(
            Netid::UnixStream,
            1,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:1".parse().unwrap(),
        );
        unix.local = Endpoint::Unix {
            name: Some("/run/a \"b\".sock".into()),
            inode: 50,
        };
        unix.peer = Endpoint::Unix {
            name: None,
            inode: 0,
        };
        unix.inode = 50;
        unix.unix_peer = 51;
        let mut packet = SocketRecord::inet(
            Netid::PacketRaw,
            7,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:1".parse().unwrap(),
        );
        packet.local = Endpoint::Packet {
            protocol: 0x0800,
            ifindex: 0,
        };
        packet.peer = Endpoint::None;
        recs.push(unix);
        recs.push(packet);
        let o = |inode, pid, fd| crate::procs::Holder { inode, pid, fd };
        let owners = Owners::new(
            vec![o(99, 7, 4), o(99, 6, 9), o(1234, 42, 3)],
            [(42, "nginx".to_string()), (7, "a\"b".to_string())].into(),
        );
        (recs, owners)
    }

    #[test]
    fn json_golden_every_section() {
        let (recs, owners) = full_sample();
        let all = ListStyle {
            processes: true,
            extended: true,
            timers: true,
            memory: true,
            info: true,
            ..style()
        };
        let mut out = Vec::new();
        let mut arr = JsonArray::new();
        for r in &recs {
            arr.push(&mut out, r, Some(&owners), &all).unwrap();
        }
        arr.finish(&mut out).unwrap();
        let netns = serde_json::to_string(&record_json_in(
            &recs[0],
            &NetnsLabel {
                name: "blue".into(),
                workload: Some(std::sync::Arc::new(Workload {
                    container: Some("web".into()),
                    image: Some("nginx:1.27".into()),
                    ..Workload::default()
                })),
            },
            None,
            &all,
        ))
        .unwrap();
        let got = String::from_utf8(out).unwrap() + &netns + "\n";
        crate::render::golden::check("golden/list.json", &got);
    }

    #[test]
    fn json_keys() {
        let v = serde_json::to_value(record_json(
            &sample()[0],
            None,
            &ListStyle {
                processes: true,
                ..style()
            },
        ))
        .unwrap();
        assert_eq!(
            v,
            json!({"netid": "tcp", "state": "LISTEN", "recv_q": 0, "send_q": 128,
                   "local": "127.0.0.1:8080", "peer": "0.0.0.0:0", "process": []})
        );
    }

    #[test]
    fn tcp_info_text_golden() {
        let (recs, _) = full_sample();
        let base = &recs[0];
        let mut lines = String::new();
        // Every item on (distinct values), every item at its hidden value, and a listener.
        let mut all = TcpInfo {
            options: 0xff,
            snd_wscale: 7,
            rcv_wscale: 9,
            rto: 204_000,
            backoff: 2,
            rtt: 1_234,
            rttvar: 567,
            ato: 40_000,
            snd_mss: 1448,
            pmtu: 1500,
            rcv_mss: 536,
            advmss: 1460,
            snd_cwnd: 10,
            snd_ssthresh: 7,
            bytes_sent: 11,
            bytes_retrans: 12,
            bytes_acked: 13,
            bytes_received: 14,
            segs_out: 15,
            segs_in: 16,
            data_segs_out: 17,
            data_segs_in: 18,
            last_data_sent: 19,
            last_data_recv: 20,
            last_ack_recv: 21,
            pacing_rate: 1_000_000,
            max_pacing_rate: 2_000_000,
            delivery_rate: 300_000,
            delivered: 22,
            delivered_ce: 23,
            delivery_rate_app_limited: true,
            busy_time: 10_000,
            rwnd_limited: 2_000,
            sndbuf_limited: 1_000,
            unacked: 24,
            retrans: 1,
            total_retrans: 25,
            lost: 26,
            sacked: 27,
            dsack_dups: 28,
            fackets: 29,
            reordering: 30,
            reord_seen: 31,
            rcv_rtt: 32_500,
            rcv_space: 33,
            rcv_ssthresh: 34,
            notsent_bytes: 35,
            min_rtt: 36,
            rcv_ooopack: 37,
            snd_wnd: 38,
            rcv_wnd: 39,
            ..TcpInfo::default()
        };
        let mut r = base.clone();
        r.state = 1;
        r.congestion = Some("cubic".into());
        for (i, style) in [
            (
                all.clone(),
                ListStyle {
                    timers: true,
                    ..style()
                },
            ),
            (all.clone(), style()),
        ] {
            let mut cell = String::new();
            tcp_info_text(&mut cell, &i, &r, &style);
            lines.push_str(&cell);
            lines.push('\n');
        }
        all = TcpInfo {
            rto: 3_000_000,
            snd_ssthresh: 0xffff,
            reordering: 3,
            min_rtt: u32::MAX,
            pacing_rate: u64::MAX,
            ..TcpInfo::default()
        };
        let mut cell = String::new();
        tcp_info_text(&mut cell, &all, base, &style());
        lines.push_str(&cell);
        lines.push('\n');
        let mut listener = base.clone();
        listener.state = 10;
        let mut cell = String::new();
        tcp_info_text(
            &mut cell,
            &TcpInfo {
                sacked: 128,
                reordering: 3,
                ..TcpInfo::default()
            },
            &listener,
            &style(),
        );
        lines.push_str(&cell);
        lines.push('\n');
        crate::render::golden::check("golden/tcp_info.txt", &lines);
    }
}
