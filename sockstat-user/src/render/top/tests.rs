//! Golden screens: fixed snapshots drawn on ratatui's TestBackend and compared cell by cell
//! with files under `golden/`. `UPDATE_GOLDEN=1 cargo test` rewrites them after a deliberate
//! change (review the diff). A second file per screen marks the lit (green) cells with `#`,
//! so the state-machine highlighting is part of the golden too.
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer, style::Color};

use super::*;
use crate::{
    alert::AlertStatus,
    live::dashboard::{
        ClosedPortRow, DropRow, EdgeRow, EventRow, Rates, RetransmitRow, SortBy, StateRow,
    },
    report::ports::PortHeadroom,
};

fn edge(from: &str, to: &str, key: (u8, u8), count: u64, last: u64) -> EdgeRow {
    EdgeRow {
        from: from.into(),
        to: to.into(),
        count,
        rate: last as f64,
        lit: last > 0,
        key,
    }
}

fn top(key: &str, connections: u64, churn: f64) -> TopRow {
    TopRow {
        key: key.into(),
        connections,
        churn,
    }
}

fn closed(port: &str, count: u64, rate: f64) -> ClosedPortRow {
    ClosedPortRow {
        port: port.into(),
        count,
        rate,
    }
}

fn fixture() -> Snapshot {
    let history = |base: u64| {
        (0..60)
            .map(|i| base + (i % 7) * base / 6)
            .collect::<Vec<u64>>()
    };
    let states = [
        ("ESTAB", 1204),
        ("SYN-SENT", 37),
        ("SYN-RECV", 3),
        ("FIN-WAIT-1", 2),
        ("FIN-WAIT-2", 9),
        ("TIME-WAIT", 5812),
        ("CLOSE-WAIT", 14),
        ("LAST-ACK", 1),
        ("LISTEN", 12),
        ("CLOSING", 0),
    ]
    .into_iter()
    .map(|(state, count)| StateRow {
        state,
        count,
        history: history(count),
    })
    .collect();
    Snapshot {
        source: DataSource::Ebpf {
            hook: "tp_btf".into(),
            missing_hooks: Vec::new(),
        },
        filter: "dport = :443".into(),
        workload: None,
        interval_s: 1.0,
        paused: false,
        total: 7094,
        states,
        rates: Rates {
            transitions: Some(1830.0),
            syn_sent: Some(312.0),
            time_wait: Some(298.0),
            connect_errors: Some(4.0),
            refused: Some(4.0),
            resets_in: Some(6.0),
            resets_out: Some(3.0),
            closed_port_resets: Some(3.0),
            retransmits: Some(2.0),
            drops: Some(1.0),
        },
        edges: vec![
            edge("ESTAB", "FIN-WAIT-1", (1, 4), 20_511, 298),
            edge("ESTAB", "CLOSE-WAIT", (1, 8), 140, 0),
            edge("ESTAB", "CLOSE", (1, 7), 12, 2),
            edge("SYN-SENT", "ESTAB", (2, 1), 20_700, 308),
            edge("SYN-SENT", "CLOSE", (2, 7), 61, 4),
            edge("SYN-RECV", "ESTAB", (3, 1), 9, 0),
            edge("FIN-WAIT-1", "FIN-WAIT-2", (4, 5), 20_502, 298),
            edge("FIN-WAIT-2", "TIME-WAIT", (5, 6), 20_493, 298),
            edge("TIME-WAIT", "CLOSE", (6, 7), 14_700, 301),
            edge("CLOSE", "SYN-SENT", (7, 2), 20_798, 312),
            edge("CLOSE-WAIT", "LAST-ACK", (8, 9), 126, 0),
            edge("LAST-ACK", "CLOSE", (9, 7), 125, 0),
            edge("LISTEN", "SYN-RECV", (10, 3), 9, 0),
        ],
        sort: SortBy::Connections,
        top_remote: vec![
            top("93.184.216.34", 3104, 151.0),
            top("10.1.0.7", 812, 2.5),
            top("2001:db8::5", 40, 0.0),
        ],
        top_local_ports: vec![top("443", 4012, 300.0), top("22", 3, 0.0)],
        top_processes: vec![top("nginx[812]", 3950, 290.0), top("sshd[77]", 3, 0.0)],
        top_pods: vec![top("shop/web-7d9f8c6b5-x2x4q", 3950, 290.0)],
        closed_ports: vec![
            closed("*:23", 40, 1.0),
            closed("10.1.0.7:443", 4, 4.0),
            closed("*:8080", 2, 2.0),
        ],
        retransmitting: vec![RetransmitRow {
            local: "10.0.0.1:51234".into(),
            remote: "93.184.216.34:443".into(),
            process: "curl[901]".into(),
            count: 7,
        }],
        drops: vec![DropRow {
            reason: "tcp-csum".into(),
            count: 3,
            rate: 1.0,
        }],
        ports: vec![PortHeadroom {
            netns: "4026531840".into(),
            source: "10.0.0.1".parse().unwrap(),
            destination: "93.184.216.34:443".parse().unwrap(),
            in_use: 27_000,
            time_wait: 26_000,
            reusable: 0,
            capacity: 28_232,
            available: 1232,
            connects_per_s: Some(300.0),
            exhaustion_s: Some(4.1),
        }],
        events: vec![
            EventRow {
                t: 12.345,
                from: "FIN-WAIT-2".into(),
                to: "TIME-WAIT".into(),
                local: "10.0.0.1:51234".into(),
                remote: "93.184.216.34:443".into(),
                process: "curl[901]".into(),
                cause: String::new(),
                synthesized: true,
            },
            EventRow {
                t: 12.301,
                from: "SYN-SENT".into(),
                to: "CLOSE".into(),
                local: "10.0.0.1:51200".into(),
                remote: "10.1.0.7:443".into(),
                process: "curl[902]".into(),
                cause: "ECONNREFUSED".into(),
                synthesized: false,
            },
        ],
        lost_events: Some(0),
        missed_runs: Some(0),
        skipped_netns: Vec::new(),
        reconcile_repairs: 2,
        synthesized: 14_700,
        alerts: vec![AlertStatus {
            alert: "time-wait > 5000".into(),
            value: 5812.0,
            firing: true,
        }],
    }
}

fn render(width: u16, height: u16, snap: &Snapshot, ui: &UiState) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| draw(f, snap, ui)).unwrap();
    terminal.backend().buffer().clone()
}

fn text_of(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buf.cell((x, y)).map_or(" ", |c| c.symbol()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn lit_of(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            let green = buf.cell((x, y)).is_some_and(|c| c.fg == Color::Green);
            line.push(if green { '#' } else { '.' });
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn check_golden(name: &str, actual: &str) {
    crate::render::golden::check(&format!("top/golden/{name}"), actual);
}

#[test]
fn golden_80x24() {
    let buf = render(80, 24, &fixture(), &UiState::default());
    check_golden("top_80x24.txt", &text_of(&buf));
    check_golden("top_80x24.lit", &lit_of(&buf));
}

/// The header names the workload selection next to the ss filter: `f` edits only the
/// filter, and counts narrowed to a pod must not look like the whole machine's.
#[test]
fn header_shows_the_workload_selection() {
    let header = |filter: &str, pod: Option<&str>| {
        let snap = Snapshot {
            filter: filter.into(),
            workload: crate::procs::workload::WorkloadFilter::new(pod, Some("shop"), None),
            ..fixture()
        };
        let text = text_of(&render(160, 40, &snap, &UiState::default()));
        text.lines()
            .find_map(|l| {
                l.split_once("│ filter: ")
                    .map(|(_, f)| f.trim().to_string())
            })
            .unwrap()
    };
    assert_eq!(
        header("dport = :443", Some("web-1")),
        "dport = :443 --k8s-namespace shop --pod web-1"
    );
    assert_eq!(header("", None), "--k8s-namespace shop");
    let json = serde_json::to_value(Snapshot {
        workload: crate::procs::workload::WorkloadFilter::new(Some("web-1"), None, None),
        ..fixture()
    })
    .unwrap();
    assert_eq!(
        json["workload"],
        serde_json::json!({"pod": "web-1", "namespace": null, "container": null})
    );
    assert_eq!(
        serde_json::to_value(fixture()).unwrap()["workload"],
        serde_json::Value::Null
    );
}

#[test]
fn golden_120x40() {
    let ui = UiState {
        focus: Panel::Machine,
        ..UiState::default()
    };
    let buf = render(120, 40, &fixture(), &ui);
    check_golden("top_120x40.txt", &text_of(&buf));
    check_golden("top_120x40.lit", &lit_of(&buf));
}

#[test]
fn golden_polling_80x24() {
    let mut snap = fixture();
    snap.source = DataSource::Polling {
        reason: "no BPF privilege".into(),
    };
    snap.rates = Rates::default();
    snap.edges.clear();
    snap.events.clear();
    snap.alerts.clear();
    let ui = UiState {
        bottom: Panel::Events,
        ..UiState::default()
    };
    let buf = render(80, 24, &snap, &ui);
    check_golden("top_polling_80x24.txt", &text_of(&buf));
}

#[test]
fn the_lit_edges_are_the_ones_that_fired() {
    let buf = render(120, 40, &fixture(), &UiState::default());
    let text = text_of(&buf);
    let lit = lit_of(&buf);
    // "↘20k 312/s" (CLOSE -> SYN-SENT fired) is green; "↓140" (ESTAB -> CLOSE-WAIT, idle)
    // is not.
    let find = |needle: &str| {
        text.lines()
            .enumerate()
            .find_map(|(y, l)| l.find(needle).map(|byte| (y, l[..byte].chars().count())))
            .unwrap_or_else(|| panic!("{needle} not on screen:\n{text}"))
    };
    let lit_at = |(y, x): (usize, usize)| lit.lines().nth(y).unwrap().as_bytes()[x] == b'#';
    assert!(lit_at(find("↘20k 312/s")));
    assert!(!lit_at(find("↘140")));
}

#[test]
fn tiny_terminals_say_too_small_and_do_not_panic() {
    for (w, h) in [(1, 1), (10, 3), (79, 24), (80, 23), (0, 0)] {
        let buf = render(w, h, &fixture(), &UiState::default());
        if w >= 20 && h >= 3 {
            assert!(text_of(&buf).contains("too small"), "{w}x{h}");
        }
    }
}

#[test]
fn help_and_filter_editing_render() {
    let ui = UiState {
        help: true,
        editing: Some("dport = :44".into()),
        filter_error: Some("bad filter: \"=\" at position 7".into()),
        ..UiState::default()
    };
    let text = text_of(&render(80, 24, &fixture(), &ui));
    assert!(text.contains("help (any key closes)"));
    assert!(text.contains("filter> dport = :44"));
    assert!(text.contains("bad filter"));
}

#[test]
fn compact_numbers() {
    assert_eq!(count(999), "999");
    assert_eq!(count(1234), "1.2k");
    assert_eq!(count(20_511), "20k");
    assert_eq!(count(999_999), "999k");
    assert_eq!(count(1_500_000), "1.5M");
    assert_eq!(rate(0.0), "0");
    assert_eq!(rate(0.26), "0.3");
    assert_eq!(rate(12.4), "12");
    assert_eq!(rate(1830.0), "1.8k");
    assert_eq!(sparkline(&[0, 1, 2, 4, 8], 4), "▂▃▅█");
    assert_eq!(sparkline(&[0, 0, 3], 8), "  █");
}
