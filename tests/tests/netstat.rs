//! Root-only tests of `stats`, `ifaces`, `routes`, `report` and `--all-netns`, each in
//! throw-away named network namespaces (idle, so counters mostly hold still between the
//! tools compared; where they cannot, readings are bracketed): against /proc, netstat, ip.
//!
//! Without root every test here is reported as ignored ("needs root"), never as passed.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    net::{TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use libtest_mimic::{Arguments, Failed};
use serde_json::Value;
use sockstat_tests::{
    NamedNetns, TestResult, Tracer, cgroup2_root, fail, root_or_say_skipped, root_trial,
    sockstat_bin,
};

fn main() {
    let args = Arguments::from_args();
    let root = root_or_say_skipped("netstat-parity");
    let trials = vec![
        root_trial("stats_agrees_with_proc_and_netstat", root, stats),
        root_trial("ifaces_agrees_with_proc_net_dev", root, ifaces),
        root_trial("routes_agree_with_ip_route", root, routes),
        root_trial("report_finds_planted_cases", root, report),
        root_trial("all_netns_labels_each_namespace", root, all_netns),
        root_trial(
            "trace_all_netns_sees_other_namespaces",
            root,
            trace_all_netns,
        ),
        root_trial(
            "all_netns_skips_an_unenterable_namespace_everywhere_and_says_so",
            root,
            unenterable_namespace,
        ),
        root_trial(
            "every_command_takes_each_namespace_form",
            root,
            namespace_forms,
        ),
        root_trial(
            "a_docker_container_name_selects_its_namespace",
            root,
            docker_container,
        ),
        root_trial(
            "trace_names_a_pod_from_the_kubelet_layout",
            root,
            kubelet_layout,
        ),
        root_trial(
            "the_image_serves_under_docker_with_only_the_daemonsets_capabilities",
            root,
            image_under_docker,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// The shared named namespace, plus running sockstat inside it.
struct Netns(NamedNetns);

impl std::ops::Deref for Netns {
    type Target = NamedNetns;
    fn deref(&self) -> &NamedNetns {
        &self.0
    }
}

impl Netns {
    fn new(tag: &str) -> Result<Netns, Failed> {
        NamedNetns::new(tag).map(Netns).map_err(fail)
    }

    fn ip(&self, args: &[&str]) -> Result<String, Failed> {
        self.0.ip(args).map_err(fail)
    }

    fn exec(&self, cmd: &str, args: &[&str]) -> Result<String, Failed> {
        self.0.exec(cmd, args).map_err(fail)
    }

    fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, Failed> {
        self.0.within(f).map_err(fail)
    }

    fn sockstat(&self, args: &[&str]) -> Result<(Option<i32>, String), Failed> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(sockstat_bin())
            .args(args)
            .output()
            .map_err(|e| fail(e.to_string()))?;
        if out.status.code() == Some(2) {
            return Err(fail(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<String, Failed> {
    sockstat_tests::run(cmd, args).map_err(fail)
}

fn json(text: &str) -> Result<Value, Failed> {
    serde_json::from_str(text.trim()).map_err(|e| fail(format!("{e}: {text}")))
}

/// Some loopback TCP traffic inside the namespace, so the counters are not all zero.
fn traffic(ns: &Netns) -> TestResult {
    ns.within(|| -> std::io::Result<()> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let at = l.local_addr()?;
        for _ in 0..3 {
            let c = TcpStream::connect(at)?;
            let (mut s, _) = l.accept()?;
            drop(c);
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
        }
        Ok(())
    })?
    .map_err(|e| fail(e.to_string()))
}

/// "    12 active connection openings" lines of one `netstat -s` section.
fn netstat_section(text: &str, section: &str) -> Vec<(u64, String)> {
    text.lines()
        .skip_while(|l| l.trim_end() != format!("{section}:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| {
            let l = l.trim();
            let (n, rest) = l.split_once(' ')?;
            Some((n.parse().ok()?, rest.to_string()))
        })
        .collect()
}

fn stats() -> TestResult {
    let ns = Netns::new("stats")?;
    traffic(&ns)?;
    std::thread::sleep(Duration::from_millis(200));
    let (_, out) = ns.sockstat(&["stats", "--json"])?;
    let ours = json(&out)?;
    // -N NAME reads the same namespace from outside it.
    let from_outside = json(&run(
        &sockstat_bin().display().to_string(),
        &["stats", "--json", "-N", &ns.name],
    )?)?;
    let snmp = ns.exec("cat", &["/proc/net/snmp"])?;
    let netstat = ns.exec("netstat", &["-s"])?;
    // Every Tcp/Udp/Ip counter equals /proc/net/snmp.
    let lines: Vec<&str> = snmp.lines().collect();
    let mut compared = 0;
    for pair in lines.chunks(2) {
        let [head, values] = pair else { continue };
        let (group, names) = head.split_once(':').unwrap_or(("", ""));
        let values: Vec<&str> = values.split_whitespace().skip(1).collect();
        for (name, value) in names.split_whitespace().zip(values) {
            let want: i64 = value.parse().map_err(|_| fail(format!("{group} {name}")))?;
            for (what, doc) in [("-N", &from_outside), ("inside", &ours)] {
                if doc[group][name].as_i64() != Some(want) {
                    return Err(fail(format!(
                        "{what}: {group} {name}: {} vs /proc {want}",
                        doc[group][name]
                    )));
                }
            }
            compared += 1;
        }
    }
    if compared < 50 {
        return Err(fail(format!("only {compared} counters compared")));
    }
    // And the counters netstat -s prints agree, by its own wording.
    let tcp = netstat_section(&netstat, "Tcp");
    for (phrase, name) in [
        ("active connection openings", "ActiveOpens"),
        ("passive connection openings", "PassiveOpens"),
        ("segments received", "InSegs"),
        ("segments sent out", "OutSegs"),
    ] {
        let theirs = tcp.iter().find(|(_, p)| p == phrase).map(|(n, _)| *n);
        let mine = ours["Tcp"][name].as_u64();
        if theirs.is_none() || theirs != mine {
            return Err(fail(format!(
                "{phrase}: netstat {theirs:?}, sockstat {mine:?}"
            )));
        }
    }
    if ours["Tcp"]["ActiveOpens"].as_u64() != Some(3) {
        return Err(fail(format!("3 connections were opened: {}", ours["Tcp"])));
    }
    Ok(())
}

/// /proc/net/dev inside `ns`: each interface's 16 counters.
fn proc_net_dev(ns: &Netns) -> Result<BTreeMap<String, Vec<u64>>, Failed> {
    let dev = ns.exec("cat", &["/proc/net/dev"])?;
    let mut out = BTreeMap::new();
    for line in dev.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() < 16 {
            return Err(fail(format!("/proc/net/dev line: {line}")));
        }
        out.insert(name.trim().to_string(), f);
    }
    Ok(out)
}

fn ifaces() -> TestResult {
    let ns = Netns::new("ifaces")?;
    ns.ip(&[
        "link", "add", "sst-a", "type", "veth", "peer", "name", "sst-b",
    ])?;
    ns.ip(&["link", "set", "sst-a", "up"])?;
    ns.ip(&["link", "set", "sst-b", "up"])?;
    traffic(&ns)?;
    // Counters keep moving (IPv6 autoconfiguration sends on the veths at random times, more
    // so on a slow machine): sockstat's reading must lie between one taken before it and one
    // taken after it.
    let before = proc_net_dev(&ns)?;
    let (_, out) = ns.sockstat(&["ifaces", "--json"])?;
    let after = proc_net_dev(&ns)?;
    let ours = json(&out)?;
    let mut seen = BTreeSet::new();
    for (name, low) in &before {
        let high = after
            .get(name)
            .ok_or_else(|| fail(format!("{name} vanished from /proc/net/dev")))?;
        let link = ours
            .as_array()
            .and_then(|a| a.iter().find(|l| l["name"] == name.as_str()))
            .ok_or_else(|| fail(format!("{name} missing: {ours}")))?;
        // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs drop fifo
        for (key, field) in [
            ("rx_packets", 1),
            ("rx_errors", 2),
            ("rx_dropped", 3),
            ("rx_overruns", 4),
            ("tx_packets", 9),
            ("tx_errors", 10),
            ("tx_dropped", 11),
            ("tx_overruns", 12),
            ("rx_bytes", 0),
            ("tx_bytes", 8),
        ] {
            let got = link[key].as_u64().unwrap_or(u64::MAX);
            if got < low[field] || got > high[field] {
                return Err(fail(format!(
                    "{name} {key}: {got}, but /proc/net/dev had {} before and {} after",
                    low[field], high[field]
                )));
            }
        }
        seen.insert(name.to_string());
    }
    let want: BTreeSet<String> = ["lo", "sst-a", "sst-b"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if seen != want {
        return Err(fail(format!("interfaces: {seen:?}")));
    }
    let lo = ours
        .as_array()
        .and_then(|a| a.iter().find(|l| l["name"] == "lo"))
        .cloned()
        .unwrap_or_default();
    if lo["mtu"] != 65536 || lo["rx_packets"].as_u64().unwrap_or(0) == 0 || lo["flags"] != "LRU" {
        return Err(fail(format!("lo: {lo}")));
    }
    // The text table has netstat -i's columns.
    let (_, text) = ns.sockstat(&["ifaces"])?;
    if !text.contains("Iface")
        || !text.contains("RX-OVR")
        || !text.lines().any(|l| l.starts_with("sst-a"))
    {
        return Err(fail(format!("table:\n{text}")));
    }
    Ok(())
}

/// (destination, gateway, device) from `ip route` / `ip -6 route` lines.
fn ip_routes(text: &str) -> BTreeSet<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let dest = (*w.first()?).to_string();
            let after = |k: &str| {
                w.iter()
                    .position(|x| *x == k)
                    .and_then(|i| w.get(i + 1))
                    .map(|s| s.to_string())
            };
            Some((
                dest,
                after("via").unwrap_or_default(),
                after("dev").unwrap_or_default(),
            ))
        })
        .collect()
}

fn routes() -> TestResult {
    let ns = Netns::new("routes")?;
    ns.ip(&[
        "link", "add", "sst-r0", "type", "veth", "peer", "name", "sst-r1",
    ])?;
    ns.ip(&["link", "set", "sst-r0", "up"])?;
    ns.ip(&["link", "set", "sst-r1", "up"])?;
    ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "sst-r0"])?;
    ns.ip(&["-6", "addr", "add", "fd99::1/64", "dev", "sst-r0", "nodad"])?;
    ns.ip(&["route", "add", "10.98.0.0/16", "via", "10.99.0.2"])?;
    ns.ip(&["route", "add", "default", "via", "10.99.0.254"])?;
    ns.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "dev",
        "sst-r1",
        "metric",
        "50",
    ])?;
    ns.ip(&["-6", "route", "add", "fd98::/48", "via", "fd99::2"])?;
    let (_, out) = ns.sockstat(&["routes", "--json"])?;
    let ours = json(&out)?;
    let mut mine = BTreeSet::new();
    for r in ours.as_array().into_iter().flatten() {
        mine.insert((
            r["destination"].as_str().unwrap_or("").to_string(),
            r["gateway"].as_str().unwrap_or("").to_string(),
            r["device"].as_str().unwrap_or("").to_string(),
        ));
    }
    let mut theirs = ip_routes(&ns.ip(&["route"])?);
    theirs.extend(ip_routes(&ns.ip(&["-6", "route"])?));
    // ip prints a host's /32 or /128 without the length; ours always has one.
    let normalise = |s: &BTreeSet<(String, String, String)>| -> BTreeSet<(String, String, String)> {
        s.iter()
            .map(|(d, g, v)| {
                let d = if d == "default" || d.contains('/') {
                    d.clone()
                } else if d.contains(':') {
                    format!("{d}/128")
                } else {
                    format!("{d}/32")
                };
                (d, g.clone(), v.clone())
            })
            .collect()
    };
    if normalise(&mine) != normalise(&theirs) {
        return Err(fail(format!(
            "sockstat routes: {mine:?}\nip route: {theirs:?}"
        )));
    }
    for want in ["10.98.0.0/16", "fd98::/48", "203.0.113.0/24", "default"] {
        if !mine.iter().any(|(d, _, _)| d == want) {
            return Err(fail(format!("{want} missing: {mine:?}")));
        }
    }
    let (_, text) = ns.sockstat(&["routes", "-n"])?;
    if !text.contains("0.0.0.0/0") || !text.contains("10.99.0.254") {
        return Err(fail(format!("routes -n:\n{text}")));
    }
    Ok(())
}

fn report() -> TestResult {
    // Host a (198.51.100.1, a public test address) and host b (198.51.100.2) on a veth.
    let a = Netns::new("ra")?;
    let b = Netns::new("rb")?;
    a.ip(&[
        "link", "add", "sst-va", "type", "veth", "peer", "name", "sst-vb", "netns", &b.name,
    ])?;
    a.ip(&["addr", "add", "198.51.100.1/24", "dev", "sst-va"])?;
    b.ip(&["addr", "add", "198.51.100.2/24", "dev", "sst-vb"])?;
    a.ip(&["link", "set", "sst-va", "up"])?;
    b.ip(&["link", "set", "sst-vb", "up"])?;
    // In a: an unusual listener (4444), an allowed one (22), an external peer, a CLOSE-WAIT leak.
    let (odd, ssh, leak_server, leak_client) = a
        .within(|| -> std::io::Result<_> {
            let odd = TcpListener::bind("0.0.0.0:4444")?;
            let ssh = TcpListener::bind("0.0.0.0:22")?;
            let l = TcpListener::bind("127.0.0.1:8080")?;
            let c = TcpStream::connect("127.0.0.1:8080")?;
            let (s, _) = l.accept()?;
            Ok((odd, ssh, s, c))
        })?
        .map_err(|e| fail(e.to_string()))?;
    let client = b
        .within(|| TcpStream::connect("198.51.100.1:4444"))?
        .map_err(|e| fail(e.to_string()))?;
    let (served, _) = odd.accept().map_err(|e| fail(e.to_string()))?;
    drop(leak_client);
    std::thread::sleep(Duration::from_millis(300));
    let bin = sockstat_bin().display().to_string();
    let out = Command::new(&bin)
        .args([
            "report",
            "--json",
            "-N",
            &a.name,
            "--alert",
            "close-wait >= 1",
            "--alert",
            "external > 5",
        ])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let r = json(&String::from_utf8_lossy(&out.stdout))?;
    if out.status.code() != Some(1) {
        return Err(fail(format!(
            "a firing alert must exit 1: {:?} {r}",
            out.status.code()
        )));
    }
    let unusual: Vec<u64> = r["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["allowed"] == false)
        .filter_map(|l| l["port"].as_u64())
        .collect();
    if !unusual.contains(&4444) || unusual.contains(&22) {
        return Err(fail(format!("unusual listeners {unusual:?}: {r}")));
    }
    let me = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let owner = r["listeners"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["port"] == 4444))
        .map(|l| l["process"].clone())
        .unwrap_or_default();
    if !owner.as_str().is_some_and(|p| p.starts_with(me.trim())) {
        return Err(fail(format!(
            "listener owner {owner}, expected {}",
            me.trim()
        )));
    }
    let external: Vec<&str> = r["external"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["peer"].as_str())
        .collect();
    if external.len() != 1 || !external[0].starts_with("198.51.100.2:") {
        return Err(fail(format!("external peers {external:?}")));
    }
    if r["leaks"]["close_wait"] != 1 || r["leaks"]["close_wait_oldest_s"].as_f64().is_none() {
        return Err(fail(format!("CLOSE-WAIT leak: {}", r["leaks"])));
    }
    if r["alerts"][0]["firing"] != true || r["alerts"][1]["firing"] != false {
        return Err(fail(format!("alerts: {}", r["alerts"])));
    }
    // The text report says the same.
    let text = run(&bin, &["report", "-N", &a.name]).unwrap_or_default();
    for needle in [
        "! [",
        "0.0.0.0:4444",
        "198.51.100.2",
        "CLOSE-WAIT: 1",
        "CLOSE-WAIT",
    ] {
        if !text.contains(needle) {
            return Err(fail(format!("{needle} missing from:\n{text}")));
        }
    }
    drop((ssh, leak_server, client, served));
    Ok(())
}

fn all_netns() -> TestResult {
    let one = Netns::new("n1")?;
    let two = Netns::new("n2")?;
    let l1 = one
        .within(|| TcpListener::bind("127.0.0.1:7101"))?
        .map_err(|e| fail(e.to_string()))?;
    let l2 = two
        .within(|| TcpListener::bind("127.0.0.1:7102"))?
        .map_err(|e| fail(e.to_string()))?;
    let bin = sockstat_bin().display().to_string();
    let v = json(&run(&bin, &["--all-netns", "-tln", "--json"])?)?;
    let label_of = |port: &str| {
        v.as_array()
            .into_iter()
            .flatten()
            .find(|s| s["local"].as_str().is_some_and(|l| l.ends_with(port)))
            .map(|s| s["netns"].as_str().unwrap_or("").to_string())
    };
    if label_of(":7101").as_deref() != Some(one.name.as_str())
        || label_of(":7102").as_deref() != Some(two.name.as_str())
    {
        return Err(fail(format!(
            "labels: {:?} {:?}: {v}",
            label_of(":7101"),
            label_of(":7102")
        )));
    }
    // Without --all-netns neither is listed (like ss); -N lists just one.
    let here = run(&bin, &["-tln"])?;
    if here.contains(":7101") || here.contains(":7102") {
        return Err(fail(format!(
            "other namespaces leaked into the default listing:\n{here}"
        )));
    }
    let text = run(&bin, &["--all-netns", "-tln"])?;
    let row = text.lines().find(|l| l.contains(":7102")).unwrap_or("");
    if !row.starts_with(&two.name) || !text.starts_with("Netns") {
        return Err(fail(format!("text:\n{text}")));
    }
    // -N lists just that namespace.
    let only_one = run(&bin, &["-N", &one.name, "-tln"])?;
    if !only_one.contains(":7101") || only_one.contains(":7102") {
        return Err(fail(format!("-N {}:\n{only_one}", one.name)));
    }
    // top --once --all-netns counts both listeners; plain top counts neither.
    let filter = "( sport = :7101 or sport = :7102 )";
    let top_all = json(&run(
        &bin,
        &[
            "top",
            "--once",
            "--json",
            "--interval",
            "0.3",
            "--all-netns",
            filter,
        ],
    )?)?;
    let top_here = json(&run(
        &bin,
        &["top", "--once", "--json", "--interval", "0.3", filter],
    )?)?;
    let listening = |v: &Value| {
        v["states"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["state"] == "LISTEN"))
            .and_then(|r| r["count"].as_u64())
    };
    if listening(&top_all) != Some(2) || listening(&top_here) != Some(0) {
        return Err(fail(format!(
            "top LISTEN counts: --all-netns {:?}, own namespace {:?}",
            listening(&top_all),
            listening(&top_here)
        )));
    }
    // serve --all-netns labels the sockets gauge with each namespace's inode.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| fail(e.to_string()))?
        .port();
    let mut serve = Command::new(&bin)
        .args([
            "serve",
            "--all-netns",
            "--interval",
            "0.2",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let inode = |ns: &Netns| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", ns.name)).map(|m| m.ino())
    };
    let (i1, i2) = (
        inode(&one).map_err(|e| fail(e.to_string()))?,
        inode(&two).map_err(|e| fail(e.to_string()))?,
    );
    let mut scraped = String::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        scraped =
            run("curl", &["-s", &format!("http://127.0.0.1:{port}/metrics")]).unwrap_or_default();
        if scraped.contains(&format!("netns=\"{i1}\""))
            && scraped.contains(&format!("netns=\"{i2}\""))
        {
            break;
        }
    }
    let _ = serve.kill();
    let _ = serve.wait();
    for i in [i1, i2] {
        let series = format!("sockstat_sockets{{state=\"LISTEN\",netns=\"{i}\"}} 1");
        if !scraped.contains(&series) {
            return Err(fail(format!("{series} missing from:\n{scraped}")));
        }
    }
    // report --all-netns covers both too.
    let r = json(&run(
        &bin,
        &["report", "--json", "--all-netns", "--allow-ports", "22"],
    )?)?;
    let ns: Vec<String> = r["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    if !ns.contains(&one.name) || !ns.contains(&two.name) {
        return Err(fail(format!("report namespaces: {ns:?}")));
    }
    drop((l1, l2));
    Ok(())
}

fn trace_all_netns() -> TestResult {
    use std::os::unix::fs::MetadataExt;
    let ns = Netns::new("tr")?;
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.name))
        .map_err(|e| fail(e.to_string()))?
        .ino();
    let everywhere = Tracer::start(&["--json", "--all-netns"]).map_err(fail)?;
    let here_only = Tracer::start(&["--json"]).map_err(fail)?;
    ns.within(|| -> std::io::Result<()> {
        let l = TcpListener::bind("127.0.0.1:7200")?;
        let c = TcpStream::connect("127.0.0.1:7200")?;
        let (s, _) = l.accept()?;
        drop((c, s));
        Ok(())
    })?
    .map_err(|e| fail(e.to_string()))?;
    let on_7200 = |l: &str| l.contains("127.0.0.1:7200");
    let seen = everywhere
        .wait_line(on_7200, Duration::from_secs(5))
        .ok_or_else(|| fail("trace --all-netns did not see the other namespace"))?;
    let v: Value = serde_json::from_str(&seen.1).map_err(|e| fail(e.to_string()))?;
    if v["netns"].as_u64() != Some(inode) || v["netns_name"] != ns.name.as_str() {
        return Err(fail(format!(
            "netns {} / {} instead of {inode} / {}",
            v["netns"], v["netns_name"], ns.name
        )));
    }
    if here_only
        .wait_line(on_7200, Duration::from_millis(500))
        .is_some()
    {
        return Err(fail(
            "trace without --all-netns saw another namespace (ss does not)",
        ));
    }
    everywhere.stop().map_err(fail)?;
    here_only.stop().map_err(fail)?;
    Ok(())
}

/// A stale file in /run/netns (what a crashed `ip netns add` leaves) cannot be entered.
/// Every command with --all-netns treats it alike: it goes on with the others, names the
/// skipped one on stderr, and top's JSON and serve's metrics count it.
fn unenterable_namespace() -> TestResult {
    struct Stale(std::path::PathBuf);
    impl Drop for Stale {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let name = format!("sst-stale-{}", std::process::id());
    let _ = std::fs::create_dir_all("/run/netns");
    let stale = Stale(std::path::PathBuf::from("/run/netns").join(&name));
    std::fs::write(&stale.0, b"").map_err(|e| fail(e.to_string()))?;
    let warned = |stderr: &str| {
        stderr
            .lines()
            .any(|l| l.contains("skipped network namespace") && l.contains(&name))
    };
    for args in [
        &["-tan", "--all-netns"][..],
        &["report", "--all-netns", "--json"],
    ] {
        let out = Command::new(sockstat_bin())
            .args(args)
            .output()
            .map_err(|e| fail(e.to_string()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(0) || !warned(&stderr) || out.stdout.is_empty() {
            return Err(fail(format!(
                "{args:?}: exit {:?}, stderr {stderr:?}",
                out.status.code()
            )));
        }
    }
    let out = Command::new(sockstat_bin())
        .args([
            "top",
            "--once",
            "--json",
            "--all-netns",
            "--interval",
            "0.2",
        ])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let snap = json(&String::from_utf8_lossy(&out.stdout))?;
    let listed = snap["skipped_netns"].as_array().is_some_and(|a| {
        a.iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains(&name)))
    });
    if out.status.code() != Some(0) || !listed {
        return Err(fail(format!(
            "top --once --json: skipped_netns {}",
            snap["skipped_netns"]
        )));
    }
    let tracer = Tracer::start(&["--all-netns"]).map_err(fail)?;
    let (_, stderr, _) = tracer.stop().map_err(fail)?;
    if !stderr.iter().any(|l| warned(l)) {
        return Err(fail(format!("trace --all-netns said nothing: {stderr:?}")));
    }
    // serve: the gauge, scraped.
    let port = sockstat_tests::free_port(std::net::Ipv4Addr::LOCALHOST.into()).map_err(fail)?;
    let mut serve = Command::new(sockstat_bin())
        .args(["serve", "--all-netns", "--interval", "0.2", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    let seen = loop {
        last = run("curl", &["-s", "--max-time", "5", &url]).unwrap_or(last);
        let gauge = last
            .lines()
            .find_map(|l| l.strip_prefix("sockstat_netns_skipped "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if gauge.is_some_and(|g| g >= 1.0) || std::time::Instant::now() > deadline {
            break gauge;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = serve.kill();
    let _ = serve.wait();
    if !seen.is_some_and(|g| g >= 1.0) {
        return Err(fail(format!("sockstat_netns_skipped: {seen:?}")));
    }
    Ok(())
}

/// `-N` means one thing in every command, in each of its forms: an `ip netns` name, a path
/// under /run/netns, /proc/PID/ns/net, a pid and an nsfs inode all select the same
/// namespace, and each command sees what is in it (and only that). The namespace has one
/// name wherever it is shown.
fn namespace_forms() -> TestResult {
    use std::os::unix::fs::MetadataExt;
    let ns = Netns::new("forms")?;
    let listener = ns
        .within(|| TcpListener::bind("127.0.0.1:7301"))?
        .map_err(|e| fail(e.to_string()))?;
    // A process living in the namespace, for the pid forms.
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "300"])
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let pid = holder.id();
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.name))
        .map_err(|e| fail(e.to_string()))?
        .ino();
    sockstat_tests::wait_until("the holder to enter the namespace", || {
        std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == inode)
    })
    .map_err(fail)?;
    let result = check_forms(&ns, pid, inode);
    let _ = holder.kill();
    let _ = holder.wait();
    drop(listener);
    result
}

fn check_forms(ns: &Netns, pid: u32, inode: u64) -> TestResult {
    let bin = sockstat_bin().display().to_string();
    let forms = [
        ns.name.clone(),
        format!("/run/netns/{}", ns.name),
        format!("/proc/{pid}/ns/net"),
        pid.to_string(),
        inode.to_string(),
    ];
    for form in &forms {
        let f = form.as_str();
        let with = |args: &[&str]| -> Result<String, Failed> {
            let mut all = args.to_vec();
            all.extend(["-N", f]);
            sockstat_tests::run(&bin, &all).map_err(|e| fail(format!("-N {f}: {e}")))
        };
        let listing = with(&["-tln"])?;
        if !listing.contains("127.0.0.1:7301") {
            return Err(fail(format!("-N {f} -tln:\n{listing}")));
        }
        let report = json(&with(&["report", "--json"])?)?;
        let names = report["namespaces"].as_array().cloned().unwrap_or_default();
        let planted = report["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["local"] == "127.0.0.1:7301");
        if names != [Value::from(ns.name.as_str())] || !planted {
            return Err(fail(format!(
                "-N {f} report: {names:?}, listener {planted}"
            )));
        }
        json(&with(&["stats", "--json"])?)?;
        let ifaces = json(&with(&["ifaces", "--json"])?)?;
        let names: Vec<&str> = ifaces
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["name"].as_str())
            .collect();
        // Its own loopback, and none of the host's devices.
        if !names.contains(&"lo") || names.contains(&"eth0") {
            return Err(fail(format!("-N {f} ifaces: {ifaces}")));
        }
        // A new namespace has no routes in its main table.
        let routes = json(&with(&["routes", "--json"])?)?;
        if routes.as_array().is_none_or(|r| !r.is_empty()) {
            return Err(fail(format!("-N {f} routes: {routes}")));
        }
        let top = json(&with(&[
            "top",
            "--once",
            "--json",
            "--interval",
            "0.3",
            "sport = :7301",
        ])?)?;
        let listening = top["states"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["state"] == "LISTEN"))
            .and_then(|r| r["count"].as_u64());
        if listening != Some(1) {
            return Err(fail(format!("-N {f} top: LISTEN {listening:?}")));
        }
        // trace sees a connection made in there, and nothing made here.
        let tracer = Tracer::start(&["--json", "-N", f]).map_err(fail)?;
        ns.within(|| -> std::io::Result<()> {
            let l = TcpListener::bind("127.0.0.1:7302")?;
            let c = TcpStream::connect("127.0.0.1:7302")?;
            let (s, _) = l.accept()?;
            drop((c, s));
            Ok(())
        })?
        .map_err(|e| fail(e.to_string()))?;
        let seen = tracer.wait_line(|l| l.contains(":7302"), Duration::from_secs(10));
        tracer.stop().map_err(fail)?;
        let (_, line) = seen.ok_or_else(|| fail(format!("-N {f} trace saw nothing")))?;
        let v = json(&line)?;
        if v["netns"].as_u64() != Some(inode) {
            return Err(fail(format!("-N {f} trace: {line}")));
        }
        // serve exports the namespace's sockets under its inode.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| fail(e.to_string()))?
            .port();
        let mut serve = Command::new(&bin)
            .args(["serve", "-N", f, "--interval", "0.2", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let series = format!("sockstat_sockets{{state=\"LISTEN\",netns=\"{inode}\"}} 1");
        let mut scraped = String::new();
        for _ in 0..150 {
            std::thread::sleep(Duration::from_millis(200));
            scraped = run("curl", &["-s", &format!("http://127.0.0.1:{port}/metrics")])
                .unwrap_or_default();
            if scraped.contains(&series) {
                break;
            }
        }
        let _ = serve.kill();
        let _ = serve.wait();
        if !scraped.contains(&series) {
            return Err(fail(format!(
                "-N {f} serve: {series} missing from\n{scraped}"
            )));
        }
    }
    // The host's namespace is `host` wherever a name is shown.
    let report = json(&run(&bin, &["report", "--json"])?)?;
    if report["namespaces"] != Value::from(vec!["host"]) {
        return Err(fail(format!("own namespace: {}", report["namespaces"])));
    }
    let everywhere = json(&run(&bin, &["--all-netns", "-tan", "--json"])?)?;
    let labels: BTreeSet<&str> = everywhere
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["netns"].as_str())
        .collect();
    if !labels.contains(ns.name.as_str()) || labels.iter().any(|l| l.contains(' ')) {
        return Err(fail(format!("--all-netns labels: {labels:?}")));
    }
    Ok(())
}

/// A Docker daemon of the test's own (its socket, data and state in a temp dir; no
/// networking of its own), stopped with its containers on drop.
struct Dockerd {
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Dockerd {
    fn start() -> Result<Dockerd, Failed> {
        // One directory (socket, data) per daemon: tests in this binary run at once.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sst-docker-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
        let child = Command::new("dockerd")
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                // Works on any kernel and file system (no overlay module needed).
                "--storage-driver=vfs",
            ])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("dockerd.log")).map_err(|e| fail(e.to_string()))?,
            )
            .spawn()
            .map_err(|e| fail(format!("dockerd (package docker.io): {e}")))?;
        let d = Dockerd { dir, child };
        for _ in 0..600 {
            if d.docker(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
            {
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default();
        Err(fail(format!("dockerd did not come up within 60 s:\n{log}")))
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn docker(&self, args: &[&str]) -> Result<String, Failed> {
        let out = Command::new("docker")
            .env("DOCKER_HOST", self.host())
            .args(args)
            .output()
            .map_err(|e| fail(format!("docker: {e}")))?;
        if !out.status.success() {
            return Err(fail(format!(
                "docker {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A one-file image: the static busybox (package busybox-static).
    fn busybox_image(&self, tag: &str) -> TestResult {
        let rootfs = self.dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).map_err(|e| fail(e.to_string()))?;
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .map_err(|e| fail(format!("/bin/busybox (package busybox-static): {e}")))?;
        let tar = self.dir.join("rootfs.tar");
        run(
            "tar",
            &[
                "-C",
                &rootfs.display().to_string(),
                "-cf",
                &tar.display().to_string(),
                ".",
            ],
        )?;
        self.docker(&["import", &tar.display().to_string(), tag])?;
        Ok(())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            for id in ids.split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        // SAFETY: kill(2) on our own child; SIGTERM lets dockerd stop containerd too.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `-N NAME` with a Docker container's name (asked of the engine, as $DOCKER_HOST says)
/// and `-N ID` with a prefix of its id (found in the cgroup paths, no engine needed) select
/// its network namespace; `--all-netns` labels its sockets with the container.
fn docker_container() -> TestResult {
    let dockerd = Dockerd::start()?;
    let image = format!("sst-busybox:{}", std::process::id());
    dockerd.busybox_image(&image)?;
    let name = format!("sst-web-{}", std::process::id());
    let id = dockerd.docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        &image,
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "127.0.0.1:7381",
    ])?;
    let bin = sockstat_bin().display().to_string();
    let in_container = |spec: &str, docker_host: Option<&str>| -> Result<String, Failed> {
        let mut cmd = Command::new(&bin);
        cmd.args(["-tln", "-N", spec]).env_remove("DOCKER_HOST");
        if let Some(h) = docker_host {
            cmd.env("DOCKER_HOST", h);
        }
        let out = cmd.output().map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            return Err(fail(format!(
                "-N {spec}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // httpd may take a moment to listen.
    let mut by_name = String::new();
    for _ in 0..100 {
        by_name = in_container(&name, Some(&dockerd.host()))?;
        if by_name.contains("127.0.0.1:7381") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !by_name.contains("127.0.0.1:7381") {
        return Err(fail(format!("-N {name}:\n{by_name}")));
    }
    let short = id
        .get(..12)
        .ok_or_else(|| fail(format!("container id {id}")))?;
    let by_id = in_container(short, None)?;
    if !by_id.contains("127.0.0.1:7381") {
        return Err(fail(format!("-N {short} (no engine asked):\n{by_id}")));
    }
    let here = run(&bin, &["-tln"])?;
    if here.contains(":7381") {
        return Err(fail(format!(
            "the container's listener leaked out:\n{here}"
        )));
    }
    let everywhere = json(&run(&bin, &["--all-netns", "-tln", "--json"])?)?;
    let label = everywhere
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["local"] == "127.0.0.1:7381")
        .and_then(|s| s["netns"].as_str().map(str::to_string))
        .unwrap_or_default();
    if !label.ends_with(&format!("/docker:{short}")) {
        return Err(fail(format!("--all-netns label {label:?}")));
    }
    // With the engine to ask, the listing names the container: JSON keys and a column.
    let named = |args: &[&str]| -> Result<String, Failed> {
        let out = Command::new(&bin)
            .args(args)
            .env("DOCKER_HOST", dockerd.host())
            .output()
            .map_err(|e| fail(e.to_string()))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let everywhere = json(&named(&["--all-netns", "-tln", "--json"])?)?;
    let listener = everywhere
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["local"] == "127.0.0.1:7381")
        .cloned()
        .unwrap_or_default();
    if listener["container"] != name.as_str() || listener["image"] != image.as_str() {
        return Err(fail(format!(
            "--all-netns --json names the listener {listener}"
        )));
    }
    let table = named(&["--all-netns", "-tln"])?;
    let header = table.lines().next().unwrap_or_default();
    let row = table
        .lines()
        .find(|l| l.contains("127.0.0.1:7381"))
        .unwrap_or_default();
    if !header.starts_with("Netns")
        || header.split_whitespace().nth(1) != Some("Container")
        || row.split_whitespace().nth(1) != Some(name.as_str())
    {
        return Err(fail(format!("--all-netns table:\n{header}\n{row}")));
    }
    // A second container with the labels the kubelet sets: named as a pod, in the listing
    // and in top's grouping (while one of its connections is open).
    let (pod, pod_ns) = ("api-5c9d7b-q8x2l", "shop");
    let pod_container = format!("sst-api-{}", std::process::id());
    dockerd.docker(&[
        "run",
        "--detach",
        "--network",
        "none",
        "--name",
        &pod_container,
        "--label",
        &format!("io.kubernetes.pod.name={pod}"),
        "--label",
        &format!("io.kubernetes.pod.namespace={pod_ns}"),
        "--label",
        "io.kubernetes.container.name=api",
        &image,
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "127.0.0.1:7382",
    ])?;
    dockerd.docker(&[
        "exec",
        "--detach",
        &pod_container,
        "/bin/busybox",
        "sh",
        "-c",
        "sleep 1; sleep 30 | /bin/busybox nc 127.0.0.1 7382",
    ])?;
    let mut pod_listener = Value::Null;
    let mut grouped = Value::Null;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let all = json(&named(&["--all-netns", "-tan", "--json"])?)?;
        pod_listener = all
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["local"] == "127.0.0.1:7382" && s["state"] == "LISTEN")
            .cloned()
            .unwrap_or_default();
        let established = all
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["peer"] == "127.0.0.1:7382" && s["state"] == "ESTAB");
        if established {
            grouped = json(&named(&[
                "top",
                "--once",
                "--json",
                "--interval",
                "1",
                "--all-netns",
            ])?)?;
            break;
        }
    }
    if pod_listener["pod"] != pod
        || pod_listener["namespace"] != pod_ns
        || pod_listener["container"] != "api"
    {
        return Err(fail(format!(
            "the labelled container's listener: {pod_listener}"
        )));
    }
    let pod_row = grouped["top_pods"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["key"] == format!("{pod_ns}/{pod}").as_str())
        .cloned()
        .unwrap_or_default();
    // Its client and the server's accepted socket (LISTEN is not a connection).
    if pod_row["connections"] != 2 {
        return Err(fail(format!("top's pods: {}", grouped["top_pods"])));
    }
    // serve counts the labelled container's sockets under its pod (as root it may ask the
    // engine).
    let want =
        format!("sockstat_pod_sockets{{namespace=\"{pod_ns}\",pod=\"{pod}\",state=\"ESTAB\"}} 2");
    serve_until(
        &["--all-netns"],
        ("DOCKER_HOST", &dockerd.host()),
        19_800,
        &want,
    )?;
    // report's findings per pod: each container's listener under its name.
    let report = json(&named(&["report", "--all-netns", "--json"])?)?;
    let findings = |key: &str| {
        report["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["pod"] == key)
            .cloned()
            .unwrap_or_default()
    };
    let (api, web) = (findings(&format!("{pod_ns}/{pod}")), findings(&name));
    if api["listeners"] != 1 || api["sockets"].as_u64().unwrap_or(0) < 3 || web["listeners"] != 1 {
        return Err(fail(format!("report's pods: {}", report["pods"])));
    }
    dockerd.docker(&["rm", "--force", &pod_container])?;
    // top and report select the container by name (and look in every namespace for it).
    let top_of = |who: &str| -> Result<Value, Failed> {
        json(&named(&[
            "top",
            "--once",
            "--json",
            "--interval",
            "1",
            "--container",
            who,
        ])?)
    };
    let listening = |snap: &Value| {
        snap["states"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["state"] == "LISTEN")
            .and_then(|s| s["count"].as_u64())
            .unwrap_or(0)
    };
    let mine = top_of(&name)?;
    let nobody = top_of("sst-no-such-container")?;
    if listening(&mine) != 1 || mine["total"] != 1 || nobody["total"] != 0 {
        return Err(fail(format!(
            "top --container {name}: LISTEN {} of {} (another name: {})",
            listening(&mine),
            mine["total"],
            nobody["total"]
        )));
    }
    let report = json(&named(&["report", "--json", "--container", &name])?)?;
    let namespaces = report["namespaces"].as_array().cloned().unwrap_or_default();
    if namespaces.len() != 1 || namespaces[0] != label.as_str() {
        return Err(fail(format!(
            "report --container {name} covers {namespaces:?}, not [{label}]"
        )));
    }
    // trace names the container a connection's owner runs in, from the engine.
    let host = dockerd.host();
    let tracer = Tracer::start_with_env(
        &["--json", "--all-netns"],
        &[("DOCKER_HOST", host.as_str())],
    )
    .map_err(fail)?;
    let text_tracer = Tracer::start_with_env(&["--all-netns"], &[("DOCKER_HOST", host.as_str())])
        .map_err(fail)?;
    dockerd
        .docker(&[
            "exec",
            &name,
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            "http://127.0.0.1:7381/",
        ])
        .or_else(|e| {
            // httpd answers 404 for a missing index: wget's exit, not a failed connection.
            if e.message().is_some_and(|m| m.contains("404")) {
                Ok(String::new())
            } else {
                Err(e)
            }
        })?;
    let connect = tracer
        .wait_line(
            |l| l.contains("\"remote\":\"127.0.0.1:7381\"") && l.contains("\"new\":\"SYN-SENT\""),
            Duration::from_secs(10),
        )
        .ok_or_else(|| fail("trace --all-netns did not see the container's connect"))?;
    tracer.stop().map_err(fail)?;
    // In text, the WORKLOAD column ends the line.
    let text = text_tracer
        .wait_line(
            |l| l.contains("127.0.0.1:7381") && l.contains("CLOSE -> SYN-SENT"),
            Duration::from_secs(10),
        )
        .ok_or_else(|| fail("trace --all-netns (text) did not see the container's connect"))?;
    text_tracer.stop().map_err(fail)?;
    if text.1.split_whitespace().last() != Some(name.as_str()) {
        return Err(fail(format!(
            "text line without the container {name}: {}",
            text.1
        )));
    }
    let v: Value = serde_json::from_str(&connect.1).map_err(|e| fail(e.to_string()))?;
    if v["container"] != name.as_str() || v["image"] != image.as_str() || v.get("pod").is_some() {
        return Err(fail(format!(
            "the connect inside {name} ({image}) is named {:?} / {:?} / pod {:?}",
            v["container"], v["image"], v["pod"]
        )));
    }
    Ok(())
}

/// With no engine to ask (containerd, CRI-O), the kubelet's on-disk layout names a pod's
/// containers: a process placed in a cgroup named as containerd names a pod's container,
/// and a log tree with the kubelet's exact naming. trace --json gives the connection its
/// pod, namespace and container.
fn kubelet_layout() -> TestResult {
    let tag = std::process::id();
    let id = format!("{:064x}", u64::from(tag) * 0x9e37_79b9 + 0xabc);
    let uid = format!("0a1b2c3d-4e5f-6789-abcd-{:012x}", tag);
    let (pod, namespace, container) = ("web-7d9f8c6b5-x2x4q", "shop", "nginx");
    let logs = std::env::temp_dir().join(format!("sst-kubelet-{tag}"));
    let _ = std::fs::remove_dir_all(&logs);
    let pod_dir = logs.join(format!("pods/{namespace}_{pod}_{uid}/{container}"));
    std::fs::create_dir_all(&pod_dir).map_err(|e| fail(e.to_string()))?;
    std::fs::write(pod_dir.join("0.log"), "").map_err(|e| fail(e.to_string()))?;
    std::fs::create_dir_all(logs.join("containers")).map_err(|e| fail(e.to_string()))?;
    std::os::unix::fs::symlink(
        pod_dir.join("0.log"),
        logs.join(format!("containers/{pod}_{namespace}_{container}-{id}.log")),
    )
    .map_err(|e| fail(e.to_string()))?;

    // cgroup v2, as the kubelet's systemd driver lays it out, under a parent of the test's,
    // wherever cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid
    // host); mounted here where it is not.
    let (root, _mounted) = cgroup2_root(tag).map_err(fail)?;
    let top = root.join(format!("sst-{tag}.slice"));
    let leaf = top.join(format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{id}.scope",
        uid.replace('-', "_")
    ));
    std::fs::create_dir_all(&leaf).map_err(|e| fail(format!("{}: {e}", leaf.display())))?;
    struct Cleanup(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            // Deepest first: cgroup directories go with rmdir only.
            let mut dir = Some(self.1.as_path());
            while let Some(d) = dir {
                let _ = std::fs::remove_dir(d);
                if d == self.0 {
                    break;
                }
                dir = d.parent();
            }
            let _ = std::fs::remove_dir_all(&self.2);
        }
    }
    let _cleanup = Cleanup(top.clone(), leaf.clone(), logs.clone());

    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| fail(e.to_string()))?;
    let port = listener
        .local_addr()
        .map_err(|e| fail(e.to_string()))?
        .port();
    let logs_env = logs.display().to_string();
    let env = [("SOCKSTAT_KUBELET_LOGS", logs_env.as_str())];
    let tracer = Tracer::start_with_env(&["--json"], &env).map_err(fail)?;
    // The same pod selected by name, and a pod that is not there.
    let by_pod = Tracer::start_with_env(
        &["--json", "--pod", pod, "--k8s-namespace", namespace],
        &env,
    )
    .map_err(fail)?;
    let other_pod =
        Tracer::start_with_env(&["--json", "--pod", "web-7d9f8c6b5-zzzzz"], &env).map_err(fail)?;
    // The shell moves itself into the container's cgroup, then connects (bash's /dev/tcp).
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec 3<>/dev/tcp/127.0.0.1/{port} && sleep 0.3",
        leaf.display()
    );
    let mut client = Command::new("bash")
        .args(["-c", &script])
        .spawn()
        .map_err(|e| fail(format!("bash: {e}")))?;
    let pid = client.id();
    let (accepted, _) = listener.accept().map_err(|e| fail(e.to_string()))?;
    let status = client.wait().map_err(|e| fail(e.to_string()))?;
    drop(accepted);
    if !status.success() {
        return Err(fail(format!("the client in the pod's cgroup: {status}")));
    }
    let remote = format!("\"remote\":\"127.0.0.1:{port}\"");
    let connect = tracer
        .wait_line(
            |l| l.contains(&remote) && l.contains("\"new\":\"SYN-SENT\""),
            Duration::from_secs(10),
        )
        .ok_or_else(|| fail("trace did not see the pod's connect"))?;
    tracer.stop().map_err(fail)?;
    // A connection of the test's own, outside the pod, to the same port.
    let host_client = TcpStream::connect(("127.0.0.1", port)).map_err(|e| fail(e.to_string()))?;
    let host_port = host_client
        .local_addr()
        .map_err(|e| fail(e.to_string()))?
        .port();
    let _ = listener.accept().map_err(|e| fail(e.to_string()))?;
    drop(host_client);
    let selected = by_pod.stop_json().map_err(fail)?;
    let to_port = |e: &&Value| {
        e["remote"]
            .as_str()
            .is_some_and(|r| r.ends_with(&format!(":{port}")))
    };
    if !selected
        .iter()
        .filter(to_port)
        .any(|e| e["new"] == "SYN-SENT" && e["pid"].as_u64() == Some(u64::from(pid)))
        || selected.iter().any(|e| e["pod"] != pod)
        || selected.iter().any(|e| {
            e["local"]
                .as_str()
                .is_some_and(|l| l.ends_with(&format!(":{host_port}")))
        })
    {
        return Err(fail(format!(
            "trace --pod {pod} --k8s-namespace {namespace} printed {selected:?}"
        )));
    }
    // The pod's cgroup was there before that trace started, so it was judged at once and the
    // kernel left its sockets out: none of their events reached user space.
    let (others, notes, code) = other_pod.stop().map_err(fail)?;
    let gated = notes
        .iter()
        .find(|l| l.contains("cgroups out in the kernel"))
        .cloned()
        .unwrap_or_default();
    let left_in_kernel: u64 = gated
        .split_whitespace()
        .skip_while(|w| *w != "left")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if code != 0
        || others.contains(&remote)
        || left_in_kernel == 0
        || !gated.ends_with("and 0 events here")
    {
        return Err(fail(format!(
            "trace --pod of another pod (exit {code}) printed {others:?}; said {notes:?}"
        )));
    }
    // serve counts the pod's sockets under its names while the connection is open.
    let holder_script = format!(
        "echo $$ > {}/cgroup.procs && exec 3<>/dev/tcp/127.0.0.1/{port} && sleep 20",
        leaf.display()
    );
    let mut holder = Command::new("bash")
        .args(["-c", &holder_script])
        .spawn()
        .map_err(|e| fail(format!("bash: {e}")))?;
    let (held, _) = listener.accept().map_err(|e| fail(e.to_string()))?;
    let want = format!(
        "sockstat_pod_sockets{{namespace=\"{namespace}\",pod=\"{pod}\",state=\"ESTAB\"}} 1"
    );
    let counted = serve_until(&[], ("SOCKSTAT_KUBELET_LOGS", &logs_env), 19_900, &want);
    let _ = holder.kill();
    let _ = holder.wait();
    drop(held);
    counted?;
    let v: Value = serde_json::from_str(&connect.1).map_err(|e| fail(e.to_string()))?;
    if v["pid"].as_u64() != Some(u64::from(pid))
        || v["pod"] != pod
        || v["namespace"] != namespace
        || v["container"] != container
    {
        return Err(fail(format!(
            "pid {pid} in {pod} ({namespace}), container {container}: trace said {v}"
        )));
    }
    Ok(())
}

/// The repository's deploy/ directory.
fn deploy_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The capabilities the DaemonSet adds (its one `add:` list).
fn daemonset_capabilities() -> Result<Vec<String>, Failed> {
    let manifest = std::fs::read_to_string(deploy_dir().join("kubernetes/sockstat.yaml"))
        .map_err(|e| fail(format!("deploy/kubernetes/sockstat.yaml: {e}")))?;
    let caps: Vec<String> = manifest
        .lines()
        .skip_while(|l| l.trim() != "add:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(|c| c.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    if caps.is_empty() {
        return Err(fail(
            "no capabilities added in deploy/kubernetes/sockstat.yaml",
        ));
    }
    Ok(caps)
}

/// The image `cargo xtask image` builds (deploy/image/Dockerfile over the static binary),
/// run as the DaemonSet runs it: the host's network and pids, a read-only root, every
/// capability dropped but the DaemonSet's, no_new_privs. It loads, runs on as 65534 with
/// only what it keeps, counts connections made on the host, and its scrape passes promtool
/// and has every metric the dashboard and the recording rules use.
fn image_under_docker() -> TestResult {
    let dockerd = Dockerd::start()?;
    let tag = format!("sst-sockstat:{}", std::process::id());
    let context = dockerd.dir.join("image");
    std::fs::create_dir_all(&context).map_err(|e| fail(e.to_string()))?;
    std::fs::copy(
        deploy_dir().join("image/Dockerfile"),
        context.join("Dockerfile"),
    )
    .map_err(|e| fail(format!("deploy/image/Dockerfile: {e}")))?;
    std::fs::copy(sockstat_bin(), context.join("sockstat")).map_err(|e| fail(e.to_string()))?;
    let built = Command::new("docker")
        .env("DOCKER_HOST", dockerd.host())
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--quiet", "--tag", &tag])
        .arg(&context)
        .output()
        .map_err(|e| fail(format!("docker build: {e}")))?;
    if !built.status.success() {
        return Err(fail(format!(
            "docker build: {}",
            String::from_utf8_lossy(&built.stderr)
        )));
    }
    // FROM scratch: the binary is all there is.
    let layers = dockerd.docker(&["history", "--quiet", "--no-trunc", &tag])?;
    let size: u64 = dockerd
        .docker(&["image", "inspect", "--format", "{{.Size}}", &tag])?
        .parse()
        .map_err(|e| fail(format!("image size: {e}")))?;
    let binary = std::fs::metadata(sockstat_bin())
        .map_err(|e| fail(e.to_string()))?
        .len();
    if size > binary {
        return Err(fail(format!(
            "the image holds {size} bytes, more than the binary's {binary}: not the binary alone ({layers})"
        )));
    }

    let port = 19_400 + (std::process::id() % 500) as u16;
    let listen = format!("127.0.0.1:{port}");
    let mut caps = daemonset_capabilities()?;
    let run = |caps: &[String]| {
        let mut args: Vec<String> = [
            "run",
            "--detach",
            "--name",
            "sst-agent",
            "--network",
            "host",
            "--pid",
            "host",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--volume",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        ]
        .map(String::from)
        .to_vec();
        for c in caps {
            args.push("--cap-add".into());
            args.push(c.clone());
        }
        args.push(tag.clone());
        args.extend(serve_in_image(&listen));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dockerd.docker(&args)
    };
    if let Err(e) = run(&caps) {
        // Engines built before Linux 5.8's capabilities (Debian 12's docker.io 20.10) cannot
        // name CAP_BPF or CAP_PERFMON; the kernel still grants what they gate to
        // CAP_SYS_ADMIN, which the DaemonSet already adds.
        let refused = e
            .message()
            .is_some_and(|m| m.contains("unknown capability"));
        if !refused || !caps.iter().any(|c| c == "SYS_ADMIN") {
            return Err(e);
        }
        let _ = dockerd.docker(&["rm", "--force", "sst-agent"]);
        eprintln!(
            "this engine cannot name CAP_BPF and CAP_PERFMON: CAP_SYS_ADMIN stands for them here, and containerd runs the image with the exact set below"
        );
        caps.retain(|c| c != "BPF" && c != "PERFMON");
        run(&caps)?;
    }
    // The DaemonSet's exact capability set, CAP_BPF and CAP_PERFMON named, through the
    // containerd this dockerd runs (its ctr names every capability the kernel has).
    under_containerd(&dockerd, &tag, &daemonset_capabilities()?)?;
    let logs = || dockerd.docker(&["logs", "sst-agent"]).unwrap_or_default();
    let scrape = |path: &str| {
        Command::new("curl")
            .args(["-sf", "--max-time", "5", &format!("http://{listen}{path}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while scrape("/healthz").is_none() {
        if std::time::Instant::now() > deadline {
            return Err(fail(format!(
                "the agent never answered /healthz: {}",
                logs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // It runs on as 65534 with only what it keeps (CAP_BPF too where the kernel asks for it
    // to read maps).
    let pid = dockerd.docker(&["inspect", "--format", "{{.State.Pid}}", "sst-agent"])?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| fail(format!("/proc/{pid}/status: {e}")))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let cap_eff = u64::from_str_radix(&field("CapEff:"), 16).map_err(|e| fail(e.to_string()))?;
    const DAC_READ_SEARCH: u64 = 1 << 2;
    const SYS_PTRACE: u64 = 1 << 19;
    const SYS_ADMIN: u64 = 1 << 21;
    const BPF: u64 = 1 << 39;
    let kept = DAC_READ_SEARCH | SYS_PTRACE | SYS_ADMIN;
    if !field("Uid:").starts_with("65534") || cap_eff & !(kept | BPF) != 0 || cap_eff & kept != kept
    {
        return Err(fail(format!(
            "the agent runs as uid {:?} with CapEff {cap_eff:#x} (want 65534, {kept:#x})",
            field("Uid:")
        )));
    }

    // Connections on the host are counted.
    let before = transitions_close_to_syn_sent(&scrape("/metrics").unwrap_or_default());
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| fail(e.to_string()))?;
    let target = listener.local_addr().map_err(|e| fail(e.to_string()))?;
    for _ in 0..20 {
        let c = TcpStream::connect(target).map_err(|e| fail(e.to_string()))?;
        let _ = listener.accept();
        drop(c);
    }
    let mut metrics = String::new();
    let mut after = before;
    for _ in 0..50 {
        metrics = scrape("/metrics").unwrap_or_default();
        after = transitions_close_to_syn_sent(&metrics);
        if after >= before + 20.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if after < before + 20.0 {
        return Err(fail(format!(
            "20 connects moved CLOSE -> SYN-SENT from {before} to {after}: {}",
            logs()
        )));
    }

    // promtool takes the scrape, and every metric the dashboard and the rules query is in it.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(metrics.as_bytes())
        .map_err(|e| fail(format!("promtool (package prometheus): {e}")))?;
    if !promtool.status.success() {
        promtool.stdout.extend_from_slice(&promtool.stderr);
        return Err(fail(format!(
            "promtool check metrics: {}",
            String::from_utf8_lossy(&promtool.stdout)
        )));
    }
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for file in [
        "grafana/sockstat-dashboard.json",
        "prometheus/sockstat-rules.yml",
    ] {
        let text =
            std::fs::read_to_string(deploy_dir().join(file)).map_err(|e| fail(e.to_string()))?;
        let used: BTreeSet<&str> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|t| t.starts_with("sockstat_"))
            .collect();
        let missing: Vec<&&str> = used.iter().filter(|m| !exported.contains(**m)).collect();
        if used.is_empty() || !missing.is_empty() {
            return Err(fail(format!(
                "deploy/{file} queries metrics serve does not export: {missing:?}"
            )));
        }
    }
    Ok(())
}

/// What the image runs in both engines: serve on every namespace, as nobody once loaded.
fn serve_in_image(listen: &str) -> Vec<String> {
    [
        "serve",
        "--listen",
        listen,
        "--all-netns",
        "--user",
        "65534",
    ]
    .map(String::from)
    .to_vec()
}

/// The image's `sockstat serve` under containerd (the one `dockerd` started) with exactly
/// `caps` as its bounding set: ctr's defaults dropped one by one (it takes no `ALL`), the
/// DaemonSet's added. It answers, runs on as 65534 with no more than it keeps, and counts the
/// host's connections. Host network as the DaemonSet; not its host pid namespace, which
/// runc cannot join from ctr here (not needed for what is checked).
fn under_containerd(dockerd: &Dockerd, tag: &str, caps: &[String]) -> TestResult {
    let socket = dockerd.dir.join("exec/containerd/containerd.sock");
    let ctr = |args: &[&str]| -> Result<String, Failed> {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&socket)
            .args(["-n", "sst"])
            .args(args)
            .output()
            .map_err(|e| fail(format!("ctr (package containerd): {e}")))?;
        if !out.status.success() {
            return Err(fail(format!(
                "ctr {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let tar = dockerd.dir.join("image.tar");
    dockerd.docker(&["save", "--output", &tar.display().to_string(), tag])?;
    // The native snapshotter works on any file system (the guests' too).
    ctr(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        &tar.display().to_string(),
    ])?;
    let image = format!("docker.io/library/{tag}");
    // ctr's default set (containerd's oci.defaultUnixCaps).
    const CTR_DEFAULTS: [&str; 14] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    ];
    let port = 19_400 + (std::process::id() % 500) as u16 + 500;
    let listen = format!("127.0.0.1:{port}");
    let cgroup_mount = "type=bind,src=/sys/fs/cgroup,dst=/sys/fs/cgroup,options=rbind:ro";
    let mut args: Vec<String> = [
        "run",
        "--detach",
        "--snapshotter",
        "native",
        "--net-host",
        "--read-only",
        "--mount",
        cgroup_mount,
    ]
    .map(String::from)
    .to_vec();
    for c in CTR_DEFAULTS
        .iter()
        .filter(|c| !caps.iter().any(|k| k == *c))
    {
        args.extend(["--cap-drop".to_string(), format!("CAP_{c}")]);
    }
    for c in caps {
        args.extend(["--cap-add".to_string(), format!("CAP_{c}")]);
    }
    args.extend([
        image.clone(),
        "sst-exact".to_string(),
        "/sockstat".to_string(),
    ]);
    args.extend(serve_in_image(&listen));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ctr(&args)?;
    struct Gone<'a>(&'a dyn Fn(&[&str]) -> Result<String, Failed>);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["task", "kill", "--signal", "SIGKILL", "sst-exact"]);
            std::thread::sleep(Duration::from_millis(300));
            let _ = (self.0)(&["task", "delete", "--force", "sst-exact"]);
            let _ = (self.0)(&["containers", "delete", "sst-exact"]);
        }
    }
    let _gone = Gone(&ctr);
    // The container's bounding set is the DaemonSet's, no more, no less.
    let info: Value = serde_json::from_str(&ctr(&["containers", "info", "sst-exact"])?)
        .map_err(|e| fail(format!("ctr containers info: {e}")))?;
    let mut bounding: Vec<String> = info["Spec"]["process"]["capabilities"]["bounding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str()?.strip_prefix("CAP_").map(str::to_string))
        .collect();
    let mut want = caps.to_vec();
    bounding.sort();
    want.sort();
    if bounding != want {
        return Err(fail(format!(
            "containerd's bounding set {bounding:?}, the DaemonSet's {want:?}"
        )));
    }
    let healthz = || {
        Command::new("curl")
            .args([
                "-sf",
                "--max-time",
                "5",
                &format!("http://{listen}/healthz"),
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !healthz() {
        if std::time::Instant::now() > deadline {
            return Err(fail(format!(
                "serve under containerd with {want:?} never answered /healthz"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let tasks = ctr(&["task", "list"])?;
    let pid = tasks
        .lines()
        .find(|l| l.starts_with("sst-exact"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| fail(format!("/proc/{pid}/status ({tasks}): {e}")))?;
    let uid_ok = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534"));
    if !uid_ok {
        return Err(fail(format!("serve under containerd: {status}")));
    }
    Ok(())
}

/// `sockstat_transitions_total{from="CLOSE",to="SYN-SENT"}` in a scrape (0 when absent).
fn transitions_close_to_syn_sent(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("sockstat_transitions_total{")
                && l.contains("from=\"CLOSE\"")
                && l.contains("to=\"SYN-SENT\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `Command::output` with `input` on the child's stdin.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::io::Result<std::process::Output>;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::io::Result<std::process::Output> {
        use std::io::Write as _;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input)?;
        }
        child.wait_with_output()
    }
}

/// Runs `sockstat serve ARGS` on loopback (port `base` + a share of the pid) with `env`,
/// until a scrape has the line `want`; fails with the pod series it had instead.
fn serve_until(args: &[&str], env: (&str, &str), base: u16, want: &str) -> TestResult {
    let listen = format!("127.0.0.1:{}", base + (std::process::id() % 90) as u16);
    let mut serve = Command::new(sockstat_bin())
        .arg("serve")
        .args(args)
        .args(["--listen", &listen])
        .env(env.0, env.1)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("serve: {e}")))?;
    let mut metrics = String::new();
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(250));
        metrics = run("curl", &["-sf", &format!("http://{listen}/metrics")]).unwrap_or_default();
        if metrics.lines().any(|l| l == want) {
            break;
        }
    }
    let _ = serve.kill();
    let _ = serve.wait();
    if metrics.lines().any(|l| l == want) {
        return Ok(());
    }
    let pods: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("pod_sockets"))
        .collect();
    Err(fail(format!("serve's scrape has no {want}: {pods:?}")))
}
