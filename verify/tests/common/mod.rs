//! Helpers shared by the integration tests of natpath-verify.

#![allow(dead_code, clippy::unwrap_used, reason = "each test binary uses some; a test fails by panicking")]

use std::path::{Path, PathBuf};

/// The repository's corpus/ directory.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

/// Copy the directory `src` (a snapshot) to `dst`, recursively.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

/// Run the natpath binary; returns (exit code, stdout, stderr).
#[track_caller]
pub fn natpath(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(args)
        .env_remove("COLUMNS")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of a corpus snapshot in a directory of its own under the
/// system's temporary directory, without its golden outputs; removed when
/// dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Copy corpus snapshot `name`; `tag` makes the directory unique.
    pub fn of(name: &str, tag: &str) -> Scratch {
        let dst = std::env::temp_dir().join(format!("natpath-scratch-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dst);
        copy_dir(&corpus().join(name), &dst);
        let _ = std::fs::remove_dir_all(dst.join("expected"));
        Scratch(dst)
    }

    /// A file of the copy, by its path relative to the snapshot.
    pub fn file(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// The copy's directory as a string.
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// Edit node `node`'s file `file` with `f`, which must change it.
    pub fn edit(&self, node: &str, file: &str, f: impl Fn(&str) -> String) -> &Self {
        let p: PathBuf = self.0.join("nodes").join(node).join(file);
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let new = f(&text);
        assert_ne!(text, new, "the edit of {node}/{file} changed nothing");
        std::fs::write(&p, new).unwrap();
        self
    }

    /// Remove every line of node `node`'s file `file` that contains
    /// `containing`.
    pub fn drop_line(&self, node: &str, file: &str, containing: &str) -> &Self {
        self.edit(node, file, |t| t.lines().filter(|l| !l.contains(containing)).map(|l| format!("{l}\n")).collect())
    }

    /// Replace the line of node `node`'s file `file` that starts with
    /// `start` by `with` (nothing: the line is removed).
    pub fn replace_line(&self, node: &str, file: &str, start: &str, with: Option<&str>) -> &Self {
        self.edit(node, file, |t| {
            t.lines()
                .filter_map(|l| if l.starts_with(start) { with.map(str::to_string) } else { Some(l.to_string()) })
                .map(|l| format!("{l}\n"))
                .collect()
        })
    }
}

impl Scratch {
    /// Append `text` to the copy's cluster.toml; returns the line number
    /// its first line gets.
    pub fn append_toml(&self, text: &str) -> usize {
        let p = self.file("cluster.toml");
        let mut old = std::fs::read_to_string(&p).unwrap();
        if !old.ends_with('\n') {
            old.push('\n');
        }
        let first = old.lines().count() + 1;
        std::fs::write(&p, format!("{old}{text}")).unwrap();
        first
    }

    /// `natpath trace` of the copy, from `from` to `to`.
    pub fn trace(&self, from: &str, to: &str) -> (i32, String, String) {
        natpath(&["trace", self.path(), "--from", from, "--to", to])
    }

    /// `natpath check` of the copy, one invariant.
    pub fn check(&self, invariant: &str) -> (i32, String, String) {
        natpath(&["check", self.path(), "--invariant", invariant])
    }
}

/// The verdict line of `invariant` in `check`'s text output.
#[track_caller]
pub fn verdict_line<'a>(out: &'a str, invariant: &str) -> &'a str {
    out.lines().find(|l| l.trim_start().starts_with(invariant)).unwrap_or_else(|| panic!("no {invariant} in {out}"))
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The edited copies of `seed-ipip-remote` whose routing refuses the
/// NodePort's DNATed packet (`client:10.0.0.51:32220/tcp`), with what the
/// client gets back: (tag, the edit, `Some(kind)` of the ICMP error from
/// 10.0.0.51, or `None` when the packet is dropped silently).
pub type RouteCase = (&'static str, fn(&Scratch), Option<&'static str>);

/// The rules file of node1 with one policy rule before main's.
fn rule_before_main(s: &Scratch, rule: &str) {
    let text = format!(
        "0:\tfrom all lookup local\n100:\tfrom all to 192.168.233.128/26 {rule}\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n"
    );
    s.edit("node1", "ip-rule", |_| text.clone());
}

/// The route cases: node1's route to node2's pod block replaced or removed,
/// or a policy rule in front of it; node2's route to the pod made
/// unreachable (the error crosses the tunnel back and node1's conntrack).
pub fn route_cases() -> Vec<RouteCase> {
    const POD_BLOCK: &str = "192.168.233.128/26 via 10.0.0.52 dev tunl0";
    vec![
        (
            "unreachable",
            |s| {
                s.replace_line("node1", "ip-route", POD_BLOCK, Some("unreachable 192.168.233.128/26 proto bird"));
            },
            Some("icmp 3/1"),
        ),
        (
            "prohibit",
            |s| {
                s.replace_line("node1", "ip-route", POD_BLOCK, Some("prohibit 192.168.233.128/26 proto bird"));
            },
            Some("icmp 3/13"),
        ),
        (
            "no-route",
            |s| {
                s.replace_line("node1", "ip-route", POD_BLOCK, None).replace_line(
                    "node1",
                    "ip-route",
                    "default via",
                    None,
                );
            },
            Some("icmp 3/0"),
        ),
        (
            "blackhole",
            |s| {
                s.replace_line("node1", "ip-route", POD_BLOCK, Some("blackhole 192.168.233.128/26 proto bird"));
            },
            None,
        ),
        ("rule-unreachable", |s| rule_before_main(s, "unreachable"), Some("icmp 3/0")),
        ("rule-prohibit", |s| rule_before_main(s, "prohibit"), Some("icmp 3/13")),
        ("rule-blackhole", |s| rule_before_main(s, "blackhole"), None),
        (
            "remote-unreachable",
            |s| {
                s.replace_line(
                    "node2",
                    "ip-route",
                    "192.168.233.136 dev calib992f6c0b80",
                    Some("unreachable 192.168.233.136"),
                );
            },
            Some("icmp 3/1"),
        ),
    ]
}

/// node1 routes node2's pod block over the LAN instead of the tunnel: the
/// NodePort's DNATed SYN from the client leaves ens192, the device it came
/// in by, to a gateway on the client's link, so node1 sends the client an
/// ICMP redirect (and forwards the SYN).
pub fn redirect_case(s: &Scratch) {
    s.replace_line(
        "node1",
        "ip-route",
        "192.168.233.128/26 via 10.0.0.52 dev tunl0",
        Some("192.168.233.128/26 via 10.0.0.52 dev ens192 proto bird"),
    );
}

/// node1 of `seed-ipip-remote` with a rule `iif DEV lookup 100` whose
/// table routes the client (10.0.0.53) back by tunl0 (issue 13): the
/// client's NodePort SYN comes in by ens192 (rp_filter 1) and is forwarded
/// out of tunl0 to the pod on node2. The kernel looks the route back up
/// with input device tunl0, the forwarding route's: with `iif tunl0` it
/// finds table 100's route by tunl0 and drops the SYN (strict: not
/// ens192); with `iif ens192` the rule does not apply and the SYN goes on.
pub fn back_iif_case(s: &Scratch, dev: &str) {
    s.edit("node1", "ip-route", |t| format!("{t}10.0.0.53 via 10.0.0.52 dev tunl0 table 100 proto static onlink\n"));
    s.edit("node1", "ip-rule", |t| t.replace("32766:", &format!("100:\tfrom all iif {dev} lookup 100\n32766:")));
}

/// `rules` put before the first rule of `table` in `node`'s dump, so that
/// each comes first in its chain.
pub fn rules_first(s: &Scratch, node: &str, table: &str, rules: &[String]) {
    s.edit(node, "iptables-save", |t| {
        let mut out = String::new();
        let mut here = false;
        let mut done = false;
        for l in t.lines() {
            if let Some(name) = l.strip_prefix('*') {
                here = name == table;
            }
            if here && !done && (l.starts_with("-A") || l == "COMMIT") {
                for r in rules {
                    out.push_str(r);
                    out.push('\n');
                }
                done = true;
            }
            out.push_str(l);
            out.push('\n');
        }
        assert!(done, "{node} has a {table} table");
        out
    });
}

/// Counting rules (no target), first in mangle FORWARD and POSTROUTING of
/// both nodes, one per TTL a forwarded TCP packet can have there (64, 63,
/// 62): the kernel takes one off a packet it forwards before FORWARD, so
/// the client's SYN (64) is 63 in node1's FORWARD and 62 in node2's.
pub fn ttl_counting_case(s: &Scratch) {
    let mut rules = Vec::new();
    for chain in ["FORWARD", "POSTROUTING"] {
        for ttl in [64, 63, 62] {
            rules.push(format!("-A {chain} -p tcp -m ttl --ttl-eq {ttl}"));
        }
    }
    for node in ["node1", "node2"] {
        rules_first(s, node, "mangle", &rules);
    }
}

/// Counting rules (no target) at the top of node1's raw OUTPUT that tell a
/// TCP reset of 40 bytes (#1) from a longer one (#2), and a filter INPUT
/// REJECT with tcp-reset for port 2223: on `node-listeners`, the reset of
/// `client:10.0.0.51:2222/tcp` (nothing listens) and of `:2223` (the
/// REJECT) are node1's own packets, counted by one of the two.
pub fn reset_length_case(s: &Scratch) {
    s.edit("node1", "iptables-save", |t| {
        let mut out = String::new();
        let mut table = "";
        for l in t.lines() {
            if let Some(name) = l.strip_prefix('*') {
                table = if name == "raw" {
                    "raw"
                } else if name == "filter" {
                    "filter"
                } else {
                    ""
                };
            }
            if table == "raw" && l.starts_with("-A OUTPUT") {
                out.push_str("-A OUTPUT -p tcp -m tcp --tcp-flags RST RST -m length --length 40\n");
                out.push_str("-A OUTPUT -p tcp -m tcp --tcp-flags RST RST -m length --length 41:65535\n");
                table = "";
            }
            if table == "filter" && l.starts_with("-A INPUT") {
                out.push_str("-A INPUT -p tcp -m tcp --dport 2223 -j REJECT --reject-with tcp-reset\n");
                table = "";
            }
            out.push_str(l);
            out.push('\n');
        }
        out
    });
}

/// The pod of `seed-ipip-remote` (on node2) and what it sends for the
/// source validation cases: a SYN to node1's tunl0 address, which node2
/// routes through the tunnel, so it arrives on node1's tunl0 (no ARP on
/// the way, whatever node1 thinks of the pod's address).
pub const RPF_POD: &str = "default/nginx-854f5d4bbd-x7k2p";
/// The pod's address.
pub const RPF_POD_ADDR: &str = "192.168.233.136";
/// The probe's destination.
pub const RPF_TO: &str = "192.168.231.64:8080";

/// How node1 of `seed-ipip-remote` is edited for a source validation case
/// (issue 13): rp_filter 0 everywhere on node1, a counting rule for the
/// pod's packet at the top of raw PREROUTING (`-i tunl0 -s POD`), and a
/// DROP for it at the top of filter INPUT (counted there when routing lets
/// it through; dropped, so nothing answers it).
#[derive(Debug, Clone, Copy)]
pub struct RpfCase {
    /// The pod's address is also on node1's `lo` (one of node1's own).
    pub own: bool,
    /// `net.ipv4.conf.tunl0.accept_local = 1` on node1.
    pub accept_local: bool,
    /// A policy rule of node1's own (`fib4_has_custom_rules`).
    pub custom_rule: bool,
    /// A `local` route added by hand on node1 (`fib_has_custom_local_routes`).
    pub custom_local: bool,
    /// node1's route back to the pod is a blackhole.
    pub blackhole_back: bool,
    /// node1's route back to the pod is a `local` route added by hand
    /// (which is custom too), the pod's address on no interface.
    pub local_back: bool,
    /// `net.ipv4.conf.tunl0.rp_filter` on node1 (`all` and `default` are 0).
    pub rp_filter: u8,
    /// node1's main table routes the pod back by ens192 (through node2's
    /// LAN address), and table 100, by tunl0, is chosen by a rule
    /// `iif DEV lookup 100`: which device does the route back come in by?
    pub iif_rule: Option<&'static str>,
}

/// Edit `s` (a copy of `seed-ipip-remote`) for `c`.
pub fn rpf_case(s: &Scratch, c: &RpfCase) {
    let pod = RPF_POD_ADDR;
    s.edit("node1", "sysctl", |t| {
        let mut t = t.replace("rp_filter = 1", "rp_filter = 0");
        if c.rp_filter != 0 {
            t = t.replace(
                "net.ipv4.conf.tunl0.rp_filter = 0",
                &format!("net.ipv4.conf.tunl0.rp_filter = {}", c.rp_filter),
            );
        }
        if c.accept_local {
            t.push_str("net.ipv4.conf.tunl0.accept_local = 1\n");
        }
        t
    });
    s.edit("node1", "iptables-save", |t| {
        let mut out = String::new();
        let mut table = "";
        for l in t.lines() {
            if let Some(name) = l.strip_prefix('*') {
                table = match name {
                    "raw" => "raw",
                    "filter" => "filter",
                    _ => "",
                };
            }
            if table == "raw" && l.starts_with("-A PREROUTING") {
                out.push_str(&format!("-A PREROUTING -s {pod}/32 -i tunl0\n"));
                table = "";
            }
            if table == "filter" && l.starts_with("-A INPUT") {
                out.push_str(&format!("-A INPUT -s {pod}/32 -j DROP\n"));
                table = "";
            }
            out.push_str(l);
            out.push('\n');
        }
        out
    });
    if c.own {
        s.edit("node1", "ip-addr", |t| {
            t.replacen(
                "    inet 127.0.0.1/8 scope host lo\n",
                &format!("    inet 127.0.0.1/8 scope host lo\n       valid_lft forever preferred_lft forever\n    inet {pod}/32 scope global lo\n"),
                1,
            )
        });
    }
    let mut routes = String::new();
    if c.own {
        routes.push_str(&format!("local {pod} dev lo table local proto kernel scope host src {pod}\n"));
    }
    if c.custom_local {
        routes.push_str("local 10.77.0.1 dev lo table local proto static scope host\n");
    }
    if c.blackhole_back {
        routes.push_str(&format!("blackhole {pod} proto static\n"));
    }
    if c.local_back {
        routes.push_str(&format!("local {pod} dev lo table local proto static scope host\n"));
    }
    if c.iif_rule.is_some() {
        routes.push_str(&format!("{pod} via 10.0.0.52 dev ens192 proto static\n"));
        routes.push_str(&format!("{pod} via 10.0.0.52 dev tunl0 table 100 proto static onlink\n"));
    }
    if !routes.is_empty() {
        s.edit("node1", "ip-route", |t| format!("{t}{routes}"));
    }
    if c.custom_rule {
        s.edit("node1", "ip-rule", |t| t.replace("32766:", "100:\tfrom all fwmark 0x1 lookup main\n32766:"));
    }
    if let Some(dev) = c.iif_rule {
        s.edit("node1", "ip-rule", |t| t.replace("32766:", &format!("100:\tfrom all iif {dev} lookup 100\n32766:")));
    }
}

/// The source validation cases: (tag, the case, whether node1's routing
/// lets the pod's SYN through to filter INPUT). Measured on the kernel
/// (tests/kernel.rs); a blackhole route back is no route back to
/// `fib_validate_source` (`fib_lookup` fails), so it passes with rp_filter
/// 0 even in the full check.
pub fn rpf_cases() -> Vec<(&'static str, RpfCase, bool)> {
    let base = RpfCase {
        own: false,
        accept_local: false,
        custom_rule: false,
        custom_local: false,
        blackhole_back: false,
        local_back: false,
        rp_filter: 0,
        iif_rule: None,
    };
    vec![
        ("own", RpfCase { own: true, ..base }, false),
        ("own-accept-local", RpfCase { own: true, accept_local: true, ..base }, true),
        ("own-custom-rule", RpfCase { own: true, custom_rule: true, ..base }, false),
        ("own-custom-rule-accept-local", RpfCase { own: true, custom_rule: true, accept_local: true, ..base }, true),
        ("local-back", RpfCase { local_back: true, ..base }, false),
        ("local-back-accept-local", RpfCase { local_back: true, accept_local: true, ..base }, true),
        ("blackhole-back", RpfCase { blackhole_back: true, ..base }, true),
        ("blackhole-back-custom-rule", RpfCase { blackhole_back: true, custom_rule: true, ..base }, true),
        ("blackhole-back-custom-local", RpfCase { blackhole_back: true, custom_local: true, ..base }, true),
        ("blackhole-back-rpf-2", RpfCase { blackhole_back: true, rp_filter: 2, ..base }, false),
        ("own-rpf-1-accept-local", RpfCase { own: true, rp_filter: 1, accept_local: true, ..base }, false),
        ("own-rpf-2", RpfCase { own: true, rp_filter: 2, ..base }, false),
        ("own-rpf-2-accept-local", RpfCase { own: true, rp_filter: 2, accept_local: true, ..base }, true),
        // The route back is looked up with input device `lo`: a rule for
        // the arrival device does not apply to it, one for `lo` does.
        ("iif-rule-arrival-dev", RpfCase { rp_filter: 1, iif_rule: Some("tunl0"), ..base }, false),
        ("iif-rule-lo", RpfCase { rp_filter: 1, iif_rule: Some("lo"), ..base }, true),
    ]
}

/// The node whose packets [`fwmark_reroute_case`] marks, and its probe:
/// node2 to node1's NodePort (DNATed to the pod on node2, so the SYN
/// crosses node2 a second time).
pub const REROUTE_PROBE: &str = "node2:10.0.0.51:32220/tcp";

/// On a copy of `seed-ipip-remote`: node2 routes packets with mark 0x8 by
/// table 100, which has only a blackhole, and a rule first in `table`'s
/// OUTPUT (`mangle` or `filter`) sets that mark on what node2 sends to
/// port 32220. The kernel looks the route up again after mangle OUTPUT
/// when the mark changed (the blackhole: sending fails with EINVAL), never
/// after filter OUTPUT (the socket's route stands: delivered).
pub fn fwmark_reroute_case(s: &Scratch, table: &str) {
    s.edit("node2", "ip-rule", |t| t.replace("32766:", "100:\tfrom all fwmark 0x8/0x8 lookup 100\n32766:"));
    s.edit("node2", "ip-route", |t| format!("{t}blackhole default table 100 \n"));
    rules_first(s, "node2", table, &["-A OUTPUT -p tcp -m tcp --dport 32220 -j MARK --set-xmark 0x8/0x8".to_string()]);
    std::fs::write(s.file("probes"), format!("{REROUTE_PROBE}\n")).unwrap();
}

/// The probes a snapshot's referee and differential tests send: its
/// `probes` file; each host and each pod to every NodePort of every node
/// (a pod whose node hosts the endpoint crosses its own node twice); each
/// node to every other node's NodePorts; each pod and each node to every
/// cluster IP (nat OUTPUT's DNAT, then routed again, for a node); each pod
/// and each node to every port a pod listens on; a host whose gateway is a
/// router to every cluster IP. Sorted, without repeats.
pub fn sender_probes(
    snap: &natpath_model::snapshot::Snapshot,
    dir: &Path,
) -> Vec<(String, std::net::Ipv4Addr, u16, natpath_model::ruleset::Proto)> {
    use natpath_model::ruleset::Proto;
    let proto_of = |p: &str| match p {
        "udp" => Proto::UDP,
        "sctp" => Proto::SCTP,
        _ => Proto::TCP,
    };
    let mut probes = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("probes")) {
        for l in text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()) {
            let (from, rest) = l.split_once(':').unwrap();
            let (to, proto) = rest.split_once('/').unwrap_or((rest, "tcp"));
            let (ip, port) = to.rsplit_once(':').unwrap();
            probes.push((from.to_string(), ip.parse().unwrap(), port.parse().unwrap(), proto_of(proto)));
        }
    }
    let edge = natpath_model::edge::Edge::new(snap);
    let pods = &snap.cluster.pods;
    let hosts = &snap.cluster.hosts;
    let routed: Vec<&String> =
        hosts.iter().filter(|h| h.gateway.is_some_and(|g| edge.router_at(g).is_some())).map(|h| &h.name).collect();
    for n in &snap.nodes {
        let intent = natpath_model::intent::Intent::read(&n.ruleset, &n.ipsets, &n.interfaces);
        let lan =
            n.interfaces.iter().filter(|i| i.name == n.lan).flat_map(|i| i.addrs.iter().map(|a| a.addr.addr())).next();
        for s in &intent.services {
            if let (Some(p), Some(a)) = (s.node_port, lan) {
                let others = snap.nodes.iter().filter(|m| m.name != n.name).map(|m| &m.name);
                for from in hosts.iter().map(|h| &h.name).chain(pods.iter().map(|p| &p.name)).chain(others) {
                    probes.push((from.clone(), a, p, s.proto));
                }
            }
            if let Some((ip, port)) = s.cluster_ip {
                let senders = pods.iter().map(|p| &p.name).chain(snap.nodes.iter().map(|m| &m.name));
                for from in senders.chain(routed.iter().copied()) {
                    probes.push((from.clone(), ip, port, s.proto));
                }
            }
        }
    }
    for to in pods {
        for l in &to.listen {
            let Some((proto, port)) = l.split_once('/') else { continue };
            let Ok(port) = port.parse() else { continue };
            let senders =
                pods.iter().filter(|p| p.name != to.name).map(|p| &p.name).chain(snap.nodes.iter().map(|m| &m.name));
            for from in senders {
                probes.push((from.clone(), to.address, port, proto_of(proto)));
            }
        }
    }
    probes.sort_by(|a, b| (a.0.as_str(), a.1, a.2, a.3).cmp(&(b.0.as_str(), b.1, b.2, b.3)));
    probes.dedup();
    probes
}
