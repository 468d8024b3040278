//! `sockstat [OPTIONS] [FILTER]`: list sockets like ss.
use std::{
    io::{self, BufWriter, IsTerminal, Write},
    process::ExitCode,
};

use anyhow::Context as _;

use super::{UsageError, args::ListArgs};
use crate::{
    diag::{self, DiagError, Extensions, Query, SocketRecord, UnixTypes},
    ebpf::owners::{OwnerScan, OwnersError},
    filter::{self, FamilyRestriction, Filter, ParseContext, states},
    procs::Owners,
    render::{
        list::{self, ListStyle, Names},
        summary,
    },
    stats,
};

/// The socket tables ss knows, as selection bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tables {
    tcp: bool,
    udp: bool,
    raw: bool,
    u_str: bool,
    u_dgr: bool,
    u_seq: bool,
    p_raw: bool,
    p_dgr: bool,
}

impl Tables {
    const ALL: Tables = Tables {
        tcp: true,
        udp: true,
        raw: true,
        u_str: true,
        u_dgr: true,
        u_seq: true,
        p_raw: true,
        p_dgr: true,
    };

    fn count(&self) -> usize {
        [
            self.tcp, self.udp, self.raw, self.u_str, self.u_dgr, self.u_seq, self.p_raw,
            self.p_dgr,
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }

    fn inet(&self) -> bool {
        self.tcp || self.udp || self.raw
    }

    fn packet(&self) -> bool {
        self.p_raw || self.p_dgr
    }

    /// ss's default states for the selected tables (`default_dbs[].states`).
    fn default_states(&self) -> u32 {
        let mut s = 0;
        if self.tcp || self.u_str || self.u_seq {
            s |= states::CONNECTED_DEFAULT;
        }
        if self.udp || self.raw {
            s |= states::ESTABLISHED;
        }
        if self.u_dgr || self.packet() {
            s |= states::CLOSE;
        }
        s
    }

    /// Applies one `-A` name.
    fn apply_query(&mut self, name: &str, on: bool) -> bool {
        match name {
            "all" => *self = if on { Tables::ALL } else { Tables::default() },
            "inet" => {
                self.tcp = on;
                self.udp = on;
                self.raw = on;
            }
            "tcp" => self.tcp = on,
            "udp" => self.udp = on,
            "raw" => self.raw = on,
            "unix" => {
                self.u_str = on;
                self.u_dgr = on;
                self.u_seq = on;
            }
            "unix_stream" | "u_str" => self.u_str = on,
            "unix_dgram" | "u_dgr" => self.u_dgr = on,
            "unix_seqpacket" | "u_seq" => self.u_seq = on,
            "packet" => {
                self.p_raw = on;
                self.p_dgr = on;
            }
            "packet_raw" | "p_raw" => self.p_raw = on,
            "packet_dgram" | "p_dgr" => self.p_dgr = on,
            _ => return false,
        }
        true
    }
}

/// What the options select, resolved once.
struct Selection {
    tables: Tables,
    v4: bool,
    v6: bool,
    states: u32,
}

fn select(args: &ListArgs, filter: &Filter) -> Result<Selection, UsageError> {
    let mut tables = Tables {
        tcp: args.tcp,
        udp: args.udp,
        raw: args.raw,
        ..Tables::default()
    };
    // Families: -4 -6 -x -0 -f; the last of -4/-6 wins as in ss.
    let (mut fam_inet, mut fam_inet6, mut fam_unix, mut fam_packet) =
        (args.ip.ipv4, args.ip.ipv6, args.unix, args.packet);
    for f in args.family.iter().flat_map(|f| f.split(',')) {
        match f {
            "inet" => fam_inet = true,
            "inet6" => fam_inet6 = true,
            "unix" | "local" => fam_unix = true,
            "link" | "packet" => fam_packet = true,
            other => {
                return Err(UsageError(format!(
                    "-f {other}: unknown family (inet, inet6, link, unix)"
                )));
            }
        }
    }
    for q in args.query.iter().flat_map(|q| q.split(',')) {
        let (on, name) = match q.strip_prefix('!') {
            Some(n) => (false, n),
            None => (true, q),
        };
        if !tables.apply_query(name, on) {
            return Err(UsageError(format!(
                "-A {name}: unknown socket table (all, inet, tcp, udp, raw, unix, unix_stream, unix_dgram, unix_seqpacket, packet, packet_raw, packet_dgram)"
            )));
        }
    }
    match filter.family {
        Some(FamilyRestriction::Unix) => fam_unix = true,
        Some(FamilyRestriction::Packet) => fam_packet = true,
        Some(FamilyRestriction::Inet) => fam_inet = true,
        Some(FamilyRestriction::Inet6) => fam_inet6 = true,
        None => {}
    }
    let any_family = fam_inet || fam_inet6 || fam_unix || fam_packet;
    let default_mode = tables.count() == 0 && !any_family;
    if default_mode {
        tables = Tables::ALL;
    } else {
        if fam_unix {
            tables.u_str |= true;
            tables.u_dgr |= true;
            tables.u_seq |= true;
        }
        if fam_packet {
            tables.p_raw = true;
            tables.p_dgr = true;
        }
        if (fam_inet || fam_inet6) && !tables.inet() {
            tables.tcp = true;
            tables.udp = true;
            tables.raw = true;
        }
        // A family option restricts the tables to that family.
        if any_family {
            if !(fam_inet || fam_inet6) {
                tables.tcp = false;
                tables.udp = false;
                tables.raw = false;
            }
            if !fam_unix && (fam_inet || fam_inet6 || fam_packet) && !args.unix {
                tables.u_str = false;
                tables.u_dgr = false;
                tables.u_seq = false;
            }
            if !fam_packet && (fam_inet || fam_inet6 || fam_unix) && !args.packet {
                tables.p_raw = false;
                tables.p_dgr = false;
            }
        }
    }
    // -4 -6 together: ss keeps the last one given; both is the friendlier reading.
    let (v4, v6) = match (fam_inet, fam_inet6) {
        (true, false) => (true, false),
        (false, true) => (false, true),
        _ => (true, true),
    };
    let mut st = if default_mode {
        states::CONNECTED_DEFAULT
    } else {
        tables.default_states()
    };
    if args.all {
        st = states::ALL;
    }
    if args.listening {
        st = states::LISTEN | states::CLOSE;
    }
    if let Some(mask) = filter.states.filter(|&m| m != 0) {
        st = mask;
    }
    Ok(Selection {
        tables,
        v4,
        v6,
        states: st,
    })
}

/// Unix sockets alone are asked for (`-x`, `-f unix`), which makes unix the family of
/// `src`/`dst` values, as ss's preferred family does.
fn only_unix(args: &ListArgs) -> bool {
    let families: Vec<&str> = args.family.iter().flat_map(|f| f.split(',')).collect();
    let other = args.tcp
        || args.udp
        || args.raw
        || args.packet
        || args.ip.ipv4
        || args.ip.ipv6
        || families.iter().any(|f| !matches!(*f, "unix" | "local"));
    (args.unix || !families.is_empty()) && !other
}

pub fn run(args: &ListArgs) -> anyhow::Result<ExitCode> {
    if args.continuous {
        return continuous(args);
    }
    run_once(args)
}

/// `-c`: the listing again every interval under a stamped line, until interrupted or the
/// reader leaves. On a terminal the screen is cleared first, so it redraws in place.
fn continuous(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let every = std::time::Duration::from_secs_f64(args.interval.unwrap_or(1.0));
    let redraw = io::stdout().is_terminal();
    loop {
        let started = std::time::Instant::now();
        {
            let mut out = io::stdout().lock();
            if redraw {
                // Home, then clear the screen.
                out.write_all(b"\x1b[H\x1b[2J")?;
            }
            crate::render::list::write_stamp(&mut out, chrono::Local::now(), every)?;
            out.flush()?;
        }
        let code = run_once(args)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
}

fn run_once(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let ctx = ParseContext {
        tcp: args.tcp || (!args.udp && !args.raw),
        udp: args.udp || (!args.tcp && !args.raw),
        only_v4: args.ip.only() == Some(crate::ebpf::Family::Inet),
        only_v6: args.ip.only() == Some(crate::ebpf::Family::Inet6),
        only_unix: only_unix(args),
    };
    let filter = Filter::parse(&args.filter, &ctx).map_err(|e| UsageError(e.to_string()))?;
    let sel = select(args, &filter)?;

    let netns = super::NetnsChoice::open(&args.ns.one)?;

    let stdout = io::stdout();
    let tty_width = crate::render::terminal_width();
    // Not locked: a -N listing writes from the namespace worker thread.
    let mut out = BufWriter::with_capacity(64 * 1024, stdout);

    if args.summary {
        let summary = netns
            .run(|| stats::sockstat::read(&netns.proc_net()))?
            .context("reading /proc/net/sockstat")?;
        if args.json {
            summary::write_json(&mut out, &summary)?;
        } else {
            summary::write_text(&mut out, &summary)?;
        }
        let selective = args.tcp
            || args.udp
            || args.unix
            || args.raw
            || args.packet
            || !args.query.is_empty()
            || !args.filter.is_empty();
        if !selective || args.json {
            out.flush()?;
            return Ok(ExitCode::SUCCESS);
        }
    }

    let query = Query {
        tcp: sel.tables.tcp,
        udp: sel.tables.udp,
        raw: sel.tables.raw,
        unix: UnixTypes {
            stream: sel.tables.u_str,
            dgram: sel.tables.u_dgr,
            seqpacket: sel.tables.u_seq,
        },
        packet_raw: sel.tables.p_raw,
        packet_dgram: sel.tables.p_dgr,
        v4: sel.v4,
        v6: sel.v6,
        states: sel.states,
        ext: Extensions {
            info: args.info,
            memory: args.memory,
        },
        bytecode: filter.expr.as_ref().and_then(kernel_bytecode),
    };

    let style = ListStyle {
        show_netid: sel.tables.count() > 1,
        show_state: sel.states.count_ones() > 1,
        header: !args.no_header,
        numeric: args.numeric,
        resolve: args.resolve,
        processes: args.processes,
        timers: args.timers,
        extended: args.extended,
        memory: args.memory,
        info: args.info,
        oneline: args.oneline,
    };
    if args.ns.all_netns {
        return list_all_netns(args, &query, &filter, sel.states, &style, tty_width, out);
    }
    let owners = OwnerLookup::new(args.processes);
    let mut sink = ListSink {
        out: &mut out,
        expr: filter.expr.as_ref(),
        states: sel.states,
        owners,
        row_inodes: Vec::new(),
        style: &style,
        tty_width,
        names: Names::default(),
        output: if args.json {
            Sheet::Json(list::JsonArray::new())
        } else {
            Sheet::Text({
                let mut t = list::new_table(&style);
                t.reserve(BATCH_BYTES + 4096, BATCH_BYTES / 8);
                t
            })
        },
        mark: None,
    };
    netns.run(|| dump(&query, &netns.proc_net(), &mut sink))??;
    sink.finish()?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

enum Sheet {
    Text(crate::render::table::Table),
    Json(list::JsonArray),
}

/// Socket owners for -p: not wanted, still being scanned, or known.
enum OwnerLookup {
    None,
    /// The kernel's owner iterator being loaded (BTF lookups and the verifier, a few ms) on
    /// a helper thread while the dumps start.
    Loading(crate::procs::Background<Result<OwnerScan, OwnersError>>),
    /// The loaded iterator, read a slice at a time while the parser waits for the next
    /// netlink batch. Text output only needs owners when rows are written, so the scan and
    /// the dump overlap on two threads rather than three (the scheduler kept a third on
    /// the reader's CPU).
    Stepping(OwnerScan),
    /// The /proc scan (no BPF), on threads of its own.
    Pending(crate::procs::Background<Owners>),
    Ready(Owners),
}

impl OwnerLookup {
    fn new(processes: bool) -> Self {
        if !processes {
            OwnerLookup::None
        } else if crate::ebpf::privilege::can_trace() {
            OwnerLookup::Loading(crate::procs::Background::start(OwnerScan::start))
        } else {
            OwnerLookup::Pending(crate::procs::Background::start(|| {
                crate::procs::socket_owners(None)
            }))
        }
    }

    /// Runs one slice of the kernel scan if it is loaded. Returns false when there is
    /// nothing to do now; `wait` blocks for the loader instead.
    fn step(&mut self, wait: bool) -> bool {
        if let OwnerLookup::Loading(h) = self {
            if !wait && !h.is_finished() {
                return false;
            }
            let OwnerLookup::Loading(h) = std::mem::replace(self, OwnerLookup::None) else {
                return false;
            };
            *self = match h.join() {
                Some(Ok(scan)) => OwnerLookup::Stepping(scan),
                // The iterator could not be loaded: /proc is slower but just as exact.
                _ => OwnerLookup::Ready(crate::procs::socket_owners(None)),
            };
            return true;
        }
        let OwnerLookup::Stepping(scan) = self else {
            return false;
        };
        match scan.step() {
            Ok(true) => true,
            Ok(false) => {
                let OwnerLookup::Stepping(done) = std::mem::replace(self, OwnerLookup::None) else {
                    return false;
                };
                *self = OwnerLookup::Ready(done.finish());
                false
            }
            Err(_) => {
                *self = OwnerLookup::Ready(crate::procs::socket_owners(None));
                false
            }
        }
    }

    fn is_pending(&self) -> bool {
        match self {
            OwnerLookup::Loading(_) | OwnerLookup::Stepping(_) => true,
            OwnerLookup::Pending(h) => !h.is_finished(),
            OwnerLookup::None | OwnerLookup::Ready(_) => false,
        }
    }

    /// Finishes the scan if it is still running.
    fn get(&mut self) -> Option<&Owners> {
        while self.step(true) {}
        if let OwnerLookup::Pending(_) = self
            && let OwnerLookup::Pending(h) = std::mem::replace(self, OwnerLookup::None)
        {
            *self = OwnerLookup::Ready(h.join().unwrap_or_default());
        }
        match self {
            OwnerLookup::Ready(o) => Some(o),
            _ => None,
        }
    }
}

/// Receives sockets as the kernel sends them: filters, formats, and writes them out in
/// batches, so memory stays flat however many sockets there are.
struct ListSink<'a, W: Write> {
    out: &'a mut W,
    expr: Option<&'a filter::Expr>,
    states: u32,
    owners: OwnerLookup,
    /// With -p, the inode of each buffered row: its users are added when the batch is
    /// written, once the owner scan has finished.
    row_inodes: Vec<u32>,
    style: &'a ListStyle,
    tty_width: Option<usize>,
    names: Names,
    output: Sheet,
    mark: Option<crate::render::table::Mark>,
}

/// Text is written out in batches of this many bytes (ss uses 5 MiB of tokens); column
/// widths carry over between batches.
const BATCH_BYTES: usize = 128 << 10;
/// The bound while the -p owner scan is still running.
const PENDING_BATCH_BYTES: usize = 16 << 20;

impl<W: Write> ListSink<'_, W> {
    fn flush(&mut self) -> io::Result<()> {
        let Sheet::Text(t) = &mut self.output else {
            return Ok(());
        };
        match self.owners.get() {
            Some(owners) => {
                let inodes = &self.row_inodes;
                let mut users = String::new();
                t.flush_rows_with(self.out, self.tty_width, &mut |row, line| {
                    users.clear();
                    if let Some(&inode) = inodes.get(row) {
                        list::users(&mut users, owners, inode);
                    }
                    line.extend_from_slice(users.as_bytes());
                })?;
            }
            None => t.flush_rows(self.out, self.tty_width)?,
        }
        self.row_inodes.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        if let Sheet::Json(j) = self.output {
            j.finish(self.out)?;
        }
        Ok(())
    }
}

impl<W: Write> diag::Sink<SocketRecord> for ListSink<'_, W> {
    fn begin(&mut self) {
        self.mark = match &self.output {
            Sheet::Text(t) => Some(t.mark()),
            Sheet::Json(_) => None,
        };
    }

    fn item(&mut self, r: SocketRecord) -> Result<(), DiagError> {
        // unix and packet dumps are filtered by state in the kernel too; raw (from /proc)
        // was filtered by the collector.
        if !states::contains(self.states, r.state) && r.netid.is_inet() {
            return Ok(());
        }
        if let Some(expr) = self.expr
            && !filter::matcher::matches(expr, &r)
        {
            return Ok(());
        }
        match &mut self.output {
            Sheet::Text(t) => {
                // Users are added at write time (see `flush`).
                list::push_row(t, &r, None, self.style, &mut self.names);
                if self.style.processes {
                    self.row_inodes.push(r.inode);
                }
                // While the owner scan still runs, keep buffering (up to a bound) rather than
                // wait for it: the two then overlap fully.
                let limit = if self.owners.is_pending() {
                    PENDING_BATCH_BYTES
                } else {
                    BATCH_BYTES
                };
                if t.buffered_bytes() >= limit {
                    self.flush().map_err(DiagError::Output)?;
                }
            }
            Sheet::Json(j) => {
                // Objects are written as they come, so the first one waits for the owner
                // scan; the reader keeps filling batches meanwhile.
                j.push(self.out, &r, self.owners.get(), self.style)
                    .map_err(DiagError::Output)?;
            }
        }
        Ok(())
    }

    fn idle(&mut self) -> bool {
        self.owners.step(false)
    }

    fn has_idle_work(&self) -> bool {
        matches!(
            self.owners,
            OwnerLookup::Loading(_) | OwnerLookup::Stepping(_)
        )
    }

    fn restart(&mut self) -> bool {
        match (&mut self.output, self.mark) {
            (Sheet::Text(t), Some(mark)) => {
                let rows_before = self.row_inodes.len();
                let ok = t.truncate(mark);
                if ok {
                    self.row_inodes.truncate(rows_before.min(t.rows()));
                }
                ok
            }
            _ => false,
        }
    }
}

/// The filter for the kernel, or `None` to match in user space only (said with `-v`).
fn kernel_bytecode(expr: &filter::ast::Expr) -> Option<Vec<u8>> {
    match filter::bytecode::compile(expr) {
        Ok(code) => {
            log::debug!("filter: {} bytes of bytecode run in the kernel", code.len());
            Some(code)
        }
        Err(why) => {
            log::info!("filter: {why}; filtering in user space only");
            None
        }
    }
}

/// Dumps, retrying without bytecode if the kernel refuses it (e.g. fwmark needs
/// CAP_NET_ADMIN); the user-space matcher then does all the filtering, as ss does. The
/// kernel refuses a bad program before sending any socket, so nothing is printed twice.
fn dump(
    q: &Query,
    proc_net: &std::path::Path,
    sink: &mut dyn diag::Sink<SocketRecord>,
) -> Result<(), DiagError> {
    match diag::collect_into(q, proc_net, sink) {
        Err(DiagError::Kernel { err, .. })
            if q.bytecode.is_some()
                && matches!(err.raw_os_error(), Some(libc::EINVAL | libc::EPERM)) =>
        {
            log::info!(
                "filter: the kernel refused its bytecode ({err}); filtering in user space only"
            );
            let mut plain = q.clone();
            plain.bytecode = None;
            diag::collect_into(&plain, proc_net, sink)
        }
        other => other,
    }
}

/// `--all-netns`: every namespace's sockets, labelled, in one table (or one JSON array).
fn list_all_netns(
    args: &ListArgs,
    query: &Query,
    filter: &Filter,
    states_mask: u32,
    style: &ListStyle,
    tty_width: Option<usize>,
    mut out: impl Write,
) -> anyhow::Result<ExitCode> {
    let owners = args
        .processes
        .then(|| crate::procs::Background::start(crate::ebpf::owners::socket_owners_any));
    let mut rows: Vec<(std::rc::Rc<list::NetnsLabel>, SocketRecord)> = Vec::new();
    let mut workloads = crate::procs::workload::WorkloadNames::new();
    let scan = crate::procs::netns::all();
    let (dumps, skipped) = scan.run_each(|_| {
        let mut sink = diag::VecSink::default();
        dump(
            query,
            std::path::Path::new("/proc/thread-self/net"),
            &mut sink,
        )
        .map(|()| sink)
    });
    for (ns, sink) in dumps {
        let label = std::rc::Rc::new(list::NetnsLabel {
            name: ns.label(),
            workload: ns.container.as_ref().and_then(|c| workloads.of(c)),
        });
        let sink = sink.with_context(|| format!("listing namespace {}", ns.name))?;
        rows.extend(
            sink.items
                .into_iter()
                .filter(|r| !r.netid.is_inet() || states::contains(states_mask, r.state))
                .filter(|r| {
                    filter
                        .expr
                        .as_ref()
                        .is_none_or(|e| filter::matcher::matches(e, r))
                })
                .map(|r| (label.clone(), r)),
        );
    }
    crate::procs::netns::warn_skipped(&skipped);
    let owners = owners.map(|h| h.join().unwrap_or_default());
    if args.json {
        let all: Vec<_> = rows
            .iter()
            .map(|(l, r)| list::record_json_in(r, l, owners.as_ref(), style))
            .collect();
        crate::render::json_line(&mut out, &all)?;
    } else {
        let mut names = Names::default();
        let mut t = list::table_with_netns(&rows, owners.as_ref(), style, &mut names);
        t.flush_rows(&mut out, tty_width)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::args::Cli;

    /// The selection `sockstat ARGS` resolves to.
    fn plan(line: &str) -> Result<Selection, UsageError> {
        let cli = Cli::try_parse_from(std::iter::once("sockstat").chain(line.split_whitespace()))
            .map_err(|e| UsageError(e.to_string()))?;
        let args = cli.list;
        let ctx = ParseContext {
            tcp: true,
            udp: true,
            only_unix: only_unix(&args),
            ..ParseContext::default()
        };
        let filter = Filter::parse(&args.filter, &ctx).map_err(|e| UsageError(e.to_string()))?;
        select(&args, &filter)
    }

    const INET: Tables = Tables {
        tcp: true,
        udp: true,
        raw: true,
        ..NONE
    };
    const UNIX: Tables = Tables {
        u_str: true,
        u_dgr: true,
        u_seq: true,
        ..NONE
    };
    const NONE: Tables = Tables {
        tcp: false,
        udp: false,
        raw: false,
        u_str: false,
        u_dgr: false,
        u_seq: false,
        p_raw: false,
        p_dgr: false,
    };

    #[test]
    fn no_options_is_every_table_with_ss_default_states() {
        let s = plan("").unwrap();
        assert_eq!(s.tables, Tables::ALL);
        assert_eq!(s.states, states::CONNECTED_DEFAULT);
        assert!(s.v4 && s.v6);
    }

    #[test]
    fn protocol_options_choose_tables_and_their_default_states() {
        let s = plan("-t").unwrap();
        assert_eq!(s.tables, Tables { tcp: true, ..NONE });
        assert_eq!(s.states, states::CONNECTED_DEFAULT);
        let s = plan("-u").unwrap();
        assert_eq!(s.tables, Tables { udp: true, ..NONE });
        assert_eq!(s.states, states::ESTABLISHED);
        let s = plan("-tu").unwrap();
        assert_eq!(s.states, states::CONNECTED_DEFAULT | states::ESTABLISHED);
        assert_eq!(plan("-x").unwrap().tables, UNIX);
    }

    #[test]
    fn all_and_listening_replace_the_states() {
        assert_eq!(plan("-ta").unwrap().states, states::ALL);
        assert_eq!(plan("-tl").unwrap().states, states::LISTEN | states::CLOSE);
        // A state filter wins over both.
        let s = plan("-ta state time-wait").unwrap();
        assert_eq!(s.states, states::TIME_WAIT);
    }

    #[test]
    fn families_restrict_tables_and_addresses() {
        let s = plan("-4").unwrap();
        assert_eq!(s.tables, INET);
        assert!(s.v4 && !s.v6);
        let s = plan("-6t").unwrap();
        assert_eq!(s.tables, Tables { tcp: true, ..NONE });
        assert!(!s.v4 && s.v6);
        // Both, as ss's -4 -6 add families.
        let s = plan("-4 -6").unwrap();
        assert!(s.v4 && s.v6);
        assert_eq!(plan("-f unix").unwrap().tables, UNIX);
        assert_eq!(
            plan("-f link").unwrap().tables,
            Tables {
                p_raw: true,
                p_dgr: true,
                ..NONE
            }
        );
    }

    #[test]
    fn query_names_add_and_remove_tables() {
        assert_eq!(plan("-A inet").unwrap().tables, INET);
        assert_eq!(plan("-A all,!unix,!packet").unwrap().tables, INET);
        assert_eq!(
            plan("-A tcp,udp,!udp").unwrap().tables,
            Tables { tcp: true, ..NONE }
        );
    }

    #[test]
    fn only_unix_listings_take_bare_paths() {
        assert_eq!(plan("-xa src /run/*").unwrap().tables, UNIX);
        assert_eq!(plan("-f unix src /run/*").unwrap().tables, UNIX);
        // With other families listed too, a path needs its unix: prefix.
        assert!(plan("-xt src /run/*").is_err());
    }

    #[test]
    fn unknown_names_are_usage_errors() {
        let e = plan("-f bogus").err().unwrap();
        assert!(e.to_string().contains("-f bogus"), "{e}");
        let e = plan("-A nope").err().unwrap();
        assert!(e.to_string().contains("-A nope"), "{e}");
    }
}
