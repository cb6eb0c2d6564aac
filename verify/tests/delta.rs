//! The structural difference ([`natpath_verify::delta`]) that lets a diff
//! and a gate skip what a change cannot touch: it finds nothing where the
//! corpus pairs only rename, comment or reorder; it narrows a one-Service
//! change to that Service; and skipping never hides a change the full
//! encoding finds (a proptest of random one-line edits compares the diff
//! with and without it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod common;

use common::{copy_dir, corpus};
use natpath_model::ruleset::Proto;
use natpath_model::snapshot::{self, Snapshot};
use natpath_verify::delta::{Delta, Ports, Touch};
use natpath_verify::diff::{self, Diff, DiffOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

fn load(p: &Path) -> Snapshot {
    snapshot::load(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn pair(name: &str) -> (Snapshot, Snapshot) {
    let dir = corpus().join("pairs").join(name);
    let text = std::fs::read_to_string(dir.join("pair.toml")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    let side = |k: &str| dir.join(v.get(k).and_then(|x| x.as_str()).unwrap());
    (load(&side("before")), load(&side("after")))
}

fn run(before: &Snapshot, after: &Snapshot, structural: bool) -> Diff {
    run_with(before, after, structural, false)
}

/// With `pods`, pods and nodes are senders too: their entries are skipped
/// by the same argument (the nodes' replies by the one about untracked
/// packets).
fn run_with(before: &Snapshot, after: &Snapshot, structural: bool, pods: bool) -> Diff {
    let o = DiffOptions { structural, pods, ..DiffOptions::default() };
    diff::diff_with(before, after, ("before", "after"), &o, &|_, _, _| {}).unwrap()
}

/// What a diff found, in a form two runs can be compared by.
fn found(d: &Diff) -> Vec<String> {
    let mut v: Vec<String> = d.changes.iter().map(|c| format!("{} {:?} {:?}", c.label(), c.nodes, c.sources)).collect();
    v.extend(d.unknown.iter().map(|u| format!("unknown {}", u.entry)));
    v.sort();
    v
}

#[test]
fn renames_comments_counters_and_reordering_are_no_difference() {
    for name in ["renamed-chains", "comments-counters", "reordered-rules", "reordered-rules-local"] {
        let (b, a) = pair(name);
        let d = Delta::new(&b, &a);
        assert!(d.is_empty(), "{name}: {:?}", d.summary());
    }
    // A snapshot against itself.
    let s = load(&corpus().join("seed-ipip-remote"));
    assert!(Delta::new(&s, &s).is_empty());
}

#[test]
fn a_removed_mark_jump_is_a_difference_of_its_nodeport_only() {
    let (b, a) = pair("no-mark-masq");
    let d = Delta::new(&b, &a);
    assert!(!d.is_empty());
    // The jump to KUBE-MARK-MASQ went from the NodePort's own chain: only
    // packets to that port can meet the difference.
    let client = Ipv4Addr::new(10, 0, 0, 10);
    let lans = b.node("node1").unwrap().lan_addrs();
    assert!(d.touches_walk(client, Some(&lans), Some(Proto::TCP), &Ports::one(32220), true), "{:?}", d.summary());
    for port in [80u16, 30001] {
        assert!(
            !d.touches_walk(client, Some(&lans), Some(Proto::TCP), &Ports::one(port), true),
            "port {port}: {:?}",
            d.summary()
        );
    }
}

/// A route to a prefix no node, host or gateway holds is met only by the
/// packets to (or from) that prefix.
#[test]
fn another_route_touches_what_goes_to_its_prefix() {
    let base = corpus().join("seed-ipip-remote");
    let dir = std::env::temp_dir().join(format!("natpath-delta-route-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&base, &dir);
    let routes = dir.join("nodes/node1/ip-route");
    let text = std::fs::read_to_string(&routes).unwrap();
    std::fs::write(&routes, text + "blackhole 203.0.113.0/24\n").unwrap();
    let (b, a) = (load(&base), load(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
    let d = Delta::new(&b, &a);
    assert!(d.touches_node("node1", None, None, &Ports::one(9)));
    assert!(d.touches_node("node1", Some(&[Ipv4Addr::new(203, 0, 113, 7)]), None, &Ports::one(9)));
    // From any source: one of the prefix arriving by the LAN passed the
    // reverse-path filter and no longer does.
    let lan_dev = b.nodes[0].lan.clone();
    assert_eq!(
        d.touch_node("node1", Some(&[Ipv4Addr::new(198, 51, 100, 7)]), None, &Ports::one(9)),
        Touch::Arrivals([lan_dev].into()),
        "{:?}",
        d.summary()
    );
    assert!(!d.touches_walk(
        Ipv4Addr::new(10, 0, 0, 10),
        Some(&[Ipv4Addr::new(198, 51, 100, 7)]),
        None,
        &Ports::one(9),
        false
    ));
    assert!(!d.touches_node("node2", None, None, &Ports::one(9)), "{:?}", d.summary());
    assert!(d.touches_walk(Ipv4Addr::new(10, 0, 0, 10), None, None, &Ports::one(9), false));
    // A route to a node's own address is not narrowed.
    let dir2 = std::env::temp_dir().join(format!("natpath-delta-route2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir2);
    copy_dir(&base, &dir2);
    let lan = b.nodes[1].lan_addrs()[0];
    let routes = dir2.join("nodes/node1/ip-route");
    let text = std::fs::read_to_string(&routes).unwrap();
    std::fs::write(&routes, text + &format!("blackhole {lan}/32\n")).unwrap();
    let a2 = load(&dir2);
    std::fs::remove_dir_all(&dir2).unwrap();
    let d2 = Delta::new(&b, &a2);
    assert!(
        d2.touches_node("node1", Some(&[Ipv4Addr::new(198, 51, 100, 7)]), None, &Ports::one(9)),
        "{:?}",
        d2.summary()
    );
}

#[test]
fn a_one_service_change_touches_that_service_only() {
    use natpath_corpus::{generate, one_service_changed, write_snapshot, Spec};
    let gen = generate(&Spec::with_services(60));
    let (port, changed) = one_service_changed(&gen).unwrap();
    let root = std::env::temp_dir().join(format!("natpath-delta-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    write_snapshot(&gen, &root.join("before")).unwrap();
    write_snapshot(&changed, &root.join("after")).unwrap();
    let (b, a) = (load(&root.join("before")), load(&root.join("after")));
    std::fs::remove_dir_all(&root).unwrap();
    let d = Delta::new(&b, &a);
    let client = b.cluster.hosts.first().unwrap().address.addr();
    let lans = b.nodes[0].lan_addrs();
    let lans = Some(lans.as_slice());
    assert!(d.touches_walk(client, lans, Some(Proto::TCP), &Ports::one(port), true));
    // Every other NodePort is untouched, and so are the other ports.
    let others: Vec<u16> = natpath_model::intent::Intent::read(&b.nodes[0].ruleset, &[], &[])
        .services
        .iter()
        .filter_map(|s| s.node_port)
        .filter(|p| *p != port)
        .collect();
    assert!(others.len() > 20);
    for p in &others {
        assert!(
            !d.touches_walk(client, lans, Some(Proto::TCP), &Ports::one(*p), true),
            "NodePort {p}: {:?}",
            d.summary()
        );
    }
    let all_but = Ports::AllBut(others.iter().copied().chain([port]).collect());
    assert!(!d.touches_walk(client, lans, Some(Proto::TCP), &all_but, true));
    // A query to any address may meet the Service's cluster IP.
    assert!(d.touches_walk(client, None, Some(Proto::TCP), &all_but, true));
    // The diff encodes the Service's entries only, and finds what the full
    // encoding finds.
    let (fast, full) = (run(&b, &a, true), run(&b, &a, false));
    assert_eq!(found(&fast), found(&full));
    assert_eq!(fast.changes.len(), 1);
    assert_eq!(fast.changes[0].port, Some(port));
    // Its NodePort on each of the 3 nodes, and each of its external and
    // load-balancer IPs handed to each node (here one, with source ranges
    // the client is outside of: dropped on both sides, no change).
    let ext = natpath_model::intent::Intent::read(&b.nodes[0].ruleset, &[], &[])
        .services
        .iter()
        .find(|s| s.node_port == Some(port))
        .map_or(0, |s| s.external_ips.len());
    assert_eq!(fast.scope.unchanged + 3 * (1 + ext), fast.scope.entries, "{:?}", fast.scope);
    // The gate checks the invariants on the touched slices only, and
    // reaches the verdicts of the whole check where the change is.
    let g = natpath_verify::gate::gate(&b, &a, ("b", "a"), None, &Default::default(), &|_, _, _| {}).unwrap();
    let strict = natpath_verify::gate::GateOptions { strict: true, ..Default::default() };
    let w = natpath_verify::gate::gate(&b, &a, ("b", "a"), None, &strict, &|_, _, _| {}).unwrap();
    for (x, y) in g.invariants.iter().zip(&w.invariants) {
        assert_eq!((x.invariant, x.after), (y.invariant, y.after), "touched vs whole");
        assert_eq!(x.scope, "touched");
        assert_eq!(y.scope, "whole");
    }
    assert!(g.invariants.iter().map(|i| i.same).sum::<usize>() > 100);
}

/// A generated 60-Service cluster written to `ROOT/before` and copied to
/// `ROOT/after` for a test to edit; with ROOT, BEFORE loaded, and its TCP
/// NodePort Services.
fn generated_pair(tag: &str) -> (PathBuf, Snapshot, Vec<natpath_model::intent::Service>) {
    use natpath_corpus::{generate, write_snapshot, Spec};
    let gen = generate(&Spec::with_services(60));
    let root = std::env::temp_dir().join(format!("natpath-delta-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    write_snapshot(&gen, &root.join("before")).unwrap();
    copy_dir(&root.join("before"), &root.join("after"));
    let b = load(&root.join("before"));
    let node_ports = natpath_model::intent::Intent::read(&b.nodes[0].ruleset, &[], &[])
        .services
        .into_iter()
        .filter(|s| s.node_port.is_some() && s.proto == Proto::TCP)
        .collect();
    (root, b, node_ports)
}

/// A generated 60-Service cluster and a copy in which one pod of node-2
/// that is an endpoint of a TCP NodePort has `rule(chain, port)` first in
/// its chain `prefix` + its veth (`cali-tw-`: traffic to the pod,
/// `cali-fw-`: from it), `port` the endpoint's; with the pod, the port
/// and the TCP NodePort Services.
fn pod_chain_edited(
    prefix: &str,
    rule: impl Fn(&str, u16) -> String,
) -> (Snapshot, Snapshot, natpath_model::cluster::PodDecl, u16, Vec<natpath_model::intent::Service>) {
    let (root, b, node_ports) = generated_pair(&format!("pod-{prefix}"));
    let (pod, port) = node_ports
        .iter()
        .flat_map(|s| &s.endpoints)
        .find_map(|e| {
            let pod = b.cluster.pods.iter().find(|p| p.node == "node-2" && p.address == e.address)?;
            Some((pod.clone(), e.port))
        })
        .expect("a pod of node-2 behind a NodePort");
    let dump = root.join("after/nodes/node-2/iptables-save");
    let text = std::fs::read_to_string(&dump).unwrap();
    let chain = format!("{prefix}{}", pod.iface);
    let first = format!("-A {chain} ");
    let mut out: Vec<String> = Vec::new();
    let mut done = false;
    for l in text.lines() {
        if !done && l.starts_with(&first) {
            out.push(rule(&chain, port));
            done = true;
        }
        out.push(l.to_string());
    }
    assert!(done, "no chain {chain}");
    std::fs::write(&dump, out.join("\n") + "\n").unwrap();
    let a = load(&root.join("after"));
    std::fs::remove_dir_all(&root).unwrap();
    (b, a, pod, port, node_ports)
}

/// The diff that skips what the delta leaves untouched finds what the
/// full encoding finds, at least one change, while skipping most entries;
/// the gate's verdicts where the change reaches are the whole check's.
fn skipping_agrees(b: &Snapshot, a: &Snapshot) {
    let (fast, full) = (run(b, a, true), run(b, a, false));
    assert_eq!(found(&fast), found(&full));
    assert!(!fast.changes.is_empty(), "the pod's Services change");
    assert!(fast.scope.unchanged * 2 > fast.scope.entries, "{:?}", fast.scope);
    let g = natpath_verify::gate::gate(b, a, ("b", "a"), None, &Default::default(), &|_, _, _| {}).unwrap();
    let strict = natpath_verify::gate::GateOptions { strict: true, ..Default::default() };
    let w = natpath_verify::gate::gate(b, a, ("b", "a"), None, &strict, &|_, _, _| {}).unwrap();
    for (x, y) in g.invariants.iter().zip(&w.invariants) {
        assert_eq!((x.invariant, x.after), (y.invariant, y.after), "touched vs whole");
    }
}

/// Each TCP NodePort's walk from the first host through the first node,
/// replies followed, is touched exactly when `expected` says; at least one
/// is, and more than 20 are not.
fn walks_touched_as(
    b: &Snapshot,
    d: &Delta,
    node_ports: &[natpath_model::intent::Service],
    expected: impl Fn(&natpath_model::intent::Service) -> bool,
) {
    let client = b.cluster.hosts.first().unwrap().address.addr();
    let lans = b.nodes[0].lan_addrs();
    let mut touched = 0;
    for s in node_ports {
        let np = s.node_port.unwrap();
        let hit = d.touches_walk(client, Some(&lans), Some(Proto::TCP), &Ports::one(np), true);
        assert_eq!(hit, expected(s), "NodePort {np} ({}): {:?}", s.name, d.summary());
        touched += usize::from(hit);
    }
    assert!(touched >= 1 && node_ports.len() - touched > 20, "{touched} of {}", node_ports.len());
}

/// A Calico policy change for one pod's ingress (a rule in the pod's
/// `cali-tw-` chain, reached only by `-o` its veth) touches the Services
/// that send to that pod and port, not every Service whose endpoints use
/// the same target port.
#[test]
fn an_ingress_policy_change_for_one_pod_touches_its_services_only() {
    let (b, a, pod, port, node_ports) =
        pod_chain_edited("cali-tw-", |chain, port| format!("-A {chain} -p tcp -m tcp --dport {port} -j DROP"));
    // The same target port behind other pods, or the test shows nothing.
    let same_port_elsewhere =
        node_ports.iter().flat_map(|s| &s.endpoints).filter(|e| e.port == port && e.address != pod.address).count();
    assert!(same_port_elsewhere > 5, "target port {port} is used by {same_port_elsewhere} other endpoints");
    let d = Delta::new(&b, &a);
    walks_touched_as(&b, &d, &node_ports, |s| s.endpoints.iter().any(|e| e.address == pod.address && e.port == port));
    skipping_agrees(&b, &a);
}

/// A Calico policy change for one pod's egress (first in its `cali-fw-`
/// chain, reached only by `-i` its veth, before the rule that accepts
/// established traffic) reaches the answers the pod sends: the walks to
/// the Services it backs, with their replies, and nothing an outside
/// client sends.
#[test]
fn an_egress_policy_change_for_one_pod_reaches_its_answers_only() {
    let (b, a, pod, _, node_ports) =
        pod_chain_edited("cali-fw-", |chain, _| format!("-A {chain} -p tcp -m tcp --dport 5432 -j DROP"));
    let d = Delta::new(&b, &a);
    walks_touched_as(&b, &d, &node_ports, |s| s.endpoints.iter().any(|e| e.address == pod.address));
    // The requests alone never arrive by the pod's device.
    let client = b.cluster.hosts.first().unwrap().address.addr();
    let lans = b.nodes[0].lan_addrs();
    for np in node_ports.iter().filter_map(|s| s.node_port) {
        assert!(!d.touches_walk(client, Some(&lans), Some(Proto::TCP), &Ports::one(np), false), "NodePort {np}");
    }
    // The summary names the pod whose packets meet it.
    let said = format!("{:?}", d.summary());
    assert!(said.contains(&format!("met only by what {} sends", pod.name)), "{said}");
    // The pod itself as a sender meets it.
    let all = Ports::Any;
    assert!(d.touches_walk(pod.address, None, Some(Proto::TCP), &all, false));
    skipping_agrees(&b, &a);
}

/// A generated 60-Service cluster, and a copy with one more pod on
/// node-2, as Calico and kubelet leave it: its /32 route by a new veth,
/// the veth (no address) and its sysctls, the pod's `cali-tw-`/`cali-fw-`
/// chains (a clone of node-2's first pod's) and their dispatch rules, and
/// its `[[pod]]` entry. With `endpoint`, the pod also becomes the second
/// endpoint of a TCP NodePort Service that had one (kube-proxy's rules on
/// every node: a `KUBE-SEP-` chain and a 50 % jump first in the
/// `KUBE-SVC-` chain). Returns both sides, the new pod, its veth, and the
/// TCP NodePort Services of BEFORE with the one that gained it.
///
/// With `selected`, every node also reads a set by source
/// (`cali-FORWARD`: accept what its members send), and the pod joins it
/// on every node, as Calico adds a pod to the sets of the selectors its
/// labels match.
fn pod_added(
    endpoint: bool,
    selected: bool,
) -> (Snapshot, Snapshot, natpath_model::cluster::PodDecl, Vec<natpath_model::intent::Service>, Option<String>) {
    let (root, b, node_ports) = generated_pair(&format!("newpod-{endpoint}-{selected}"));
    let node = root.join("after/nodes/node-2");
    let old = b.cluster.pods.iter().find(|p| p.node == "node-2" && p.name.starts_with("ns-")).unwrap().clone();
    // The first free address of node-2's blocks.
    let used: Vec<Ipv4Addr> = b.cluster.pods.iter().map(|p| p.address).collect();
    let addr = b.nodes[1]
        .routes
        .iter()
        .filter(|r| r.kind == natpath_model::netstate::RouteType::Blackhole)
        .flat_map(|r| r.dst.hosts().filter(move |a| *a != r.dst.network()))
        .find(|a| !used.contains(a))
        .unwrap();
    let veth = format!("{}0ddba11f0", &old.iface[..5]);
    let edit = |file: &str, f: &dyn Fn(&str) -> String| {
        let path = node.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, f(&text)).unwrap();
    };
    edit("ip-route", &|t| format!("{t}{addr} dev {veth} scope link \n"));
    edit("ip-addr", &|t| {
        let mut out = t.to_string();
        let head = t.lines().position(|l| l.contains(&format!(": {}@", old.iface))).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        out.push_str(&format!("999: {}\n", lines[head].split_once(": ").unwrap().1.replace(&old.iface, &veth)));
        out.push_str(&format!("{}\n", lines[head + 1]));
        out
    });
    edit("sysctl", &|t| {
        let mine: Vec<String> = t
            .lines()
            .filter(|l| l.contains(&format!(".{}.", old.iface)))
            .map(|l| l.replace(&old.iface, &veth))
            .collect();
        assert!(!mine.is_empty());
        format!("{t}{}\n", mine.join("\n"))
    });
    edit("iptables-save", &|t| {
        let mut out: Vec<String> = Vec::new();
        let sub = &veth[4..5];
        for l in t.lines() {
            for dir in ["from", "to"] {
                let (opt, chain) = if dir == "from" { ("-i", "fw") } else { ("-o", "tw") };
                if l.starts_with(&format!("-A cali-{dir}-wl-dispatch-{sub} ")) && l.contains("Unknown interface") {
                    out.push(format!("-A cali-{dir}-wl-dispatch-{sub} {opt} {veth} -g cali-{chain}-{veth}"));
                }
            }
            out.push(l.to_string());
            for chain in ["fw", "tw"] {
                if l == format!(":cali-{chain}-{} - [0:0]", old.iface) {
                    out.push(format!(":cali-{chain}-{veth} - [0:0]"));
                }
            }
        }
        for chain in ["fw", "tw"] {
            let body = format!("-A cali-{chain}-{} ", old.iface);
            let at = out.iter().rposition(|l| l.starts_with(&body)).unwrap();
            let clone: Vec<String> =
                out.iter().filter(|l| l.starts_with(&body)).map(|l| l.replace(&old.iface, &veth)).collect();
            for (i, l) in clone.into_iter().enumerate() {
                out.insert(at + 1 + i, l);
            }
        }
        out.join("\n") + "\n"
    });
    let name = "ns-1/added-pod".to_string();
    let toml = root.join("after/cluster.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let listen = if endpoint { "[\"tcp/8080\"]" } else { "[]" };
    std::fs::write(
        &toml,
        format!("{text}\n[[pod]]\nname = \"{name}\"\nnode = \"node-2\"\naddress = \"{addr}\"\niface = \"{veth}\"\nlisten = {listen}\n"),
    )
    .unwrap();
    if selected {
        for side in ["before", "after"] {
            for n in &b.nodes {
                let dir = root.join(side).join("nodes").join(&n.name);
                let sets = std::fs::read_to_string(dir.join("ipset-save")).unwrap();
                let mut add = "create cali40s:from hash:ip family inet hashsize 1024 maxelem 1048576\n".to_string();
                if side == "after" {
                    add.push_str(&format!("add cali40s:from {addr}\n"));
                }
                std::fs::write(dir.join("ipset-save"), sets + &add).unwrap();
                let rules = std::fs::read_to_string(dir.join("iptables-save")).unwrap();
                let at = rules.find("-A cali-FORWARD ").unwrap();
                let rule = "-A cali-FORWARD -m set --match-set cali40s:from src -j ACCEPT\n";
                std::fs::write(dir.join("iptables-save"), format!("{}{rule}{}", &rules[..at], &rules[at..])).unwrap();
            }
        }
    }
    let mut gained = None;
    if endpoint {
        // A Cluster-policy TCP NodePort Service with one endpoint, on another node.
        let s = node_ports
            .iter()
            .find(|s| {
                s.endpoints.len() == 1
                    && s.svl_chain.is_none()
                    && !s.affinity
                    && b.cluster.pods.iter().any(|p| p.address == s.endpoints[0].address && p.node != "node-2")
            })
            .unwrap();
        let svc = s.svc_chain.clone().unwrap();
        let ep = s.endpoints[0].clone();
        let new_sep = "KUBE-SEP-ADDEDPOD0000001";
        for n in &b.nodes {
            let path = root.join("after/nodes").join(&n.name).join("iptables-save");
            let text = std::fs::read_to_string(&path).unwrap();
            let jump = format!("-A {svc} ");
            let old_sep = text
                .lines()
                .find(|l| l.starts_with(&jump) && l.contains("-j KUBE-SEP-"))
                .and_then(|l| l.rsplit_once("-j ").map(|x| x.1.to_string()))
                .unwrap();
            let mut out: Vec<String> = Vec::new();
            for l in text.lines() {
                if l.starts_with(&jump) && l.ends_with(&format!("-j {old_sep}")) {
                    out.push(format!("-A {svc} -m statistic --mode random --probability 0.50000000000 -j {new_sep}"));
                }
                if l == format!(":{old_sep} - [0:0]") {
                    out.push(format!(":{new_sep} - [0:0]"));
                }
                out.push(l.to_string());
                if l.starts_with(&format!("-A {old_sep} ")) {
                    out.push(l.replace(&old_sep, new_sep).replace(&ep.address.to_string(), &addr.to_string()));
                }
            }
            std::fs::write(&path, out.join("\n") + "\n").unwrap();
        }
        gained = Some(s.name.clone());
    }
    // BEFORE again: `selected` edits it too.
    let (b, a) = (load(&root.join("before")), load(&root.join("after")));
    std::fs::remove_dir_all(&root).unwrap();
    let pod = a.cluster.pods.iter().find(|p| p.name == name).unwrap().clone();
    (b, a, pod, node_ports, gained)
}

/// A new pod that no Service sends to (a Job, a pod not yet ready) changes
/// its node's routes, devices, sysctls, rules and pods, and touches only
/// what that pod sends and receives: no NodePort walk from outside, no
/// query of another node, and of its own node only what arrives by its
/// veth.
#[test]
fn a_new_pod_touches_only_what_it_sends_and_receives() {
    let (b, a, pod, node_ports, _) = pod_added(false, false);
    let d = Delta::new(&b, &a);
    let said = format!("{:?}", d.summary());
    assert!(said.contains(&format!("routes to {}", pod.address)) && !said.contains("differ"), "{said}");
    let client = b.cluster.hosts.first().unwrap().address.addr();
    for i in 0..b.nodes.len() {
        let lans = b.nodes[i].lan_addrs();
        for np in node_ports.iter().filter_map(|s| s.node_port) {
            assert!(!d.touches_walk(client, Some(&lans), Some(Proto::TCP), &Ports::one(np), true), "{np}: {said}");
        }
    }
    assert!(d.touches_walk(pod.address, None, Some(Proto::TCP), &Ports::Any, false), "its own packets");
    let own = |i: usize| b.nodes[i].lan_addrs();
    for np in node_ports.iter().filter_map(|s| s.node_port) {
        let ports = Ports::one(np);
        assert_eq!(d.touch_node("node-1", Some(&own(0)), Some(Proto::TCP), &ports), Touch::No, "{np}");
        assert_eq!(
            d.touch_node("node-2", Some(&own(1)), Some(Proto::TCP), &ports),
            Touch::Arrivals([pod.iface.clone()].into()),
            "{np}"
        );
    }
    // A packet to the pod's address meets its route.
    assert!(d.touches_node("node-2", Some(&[pod.address]), Some(Proto::TCP), &Ports::Any));
    let (fast, full) = (run(&b, &a, true), run(&b, &a, false));
    assert_eq!(found(&fast), found(&full));
    assert_eq!(fast.scope.unchanged, fast.scope.entries, "{:?}", fast.scope);
    let g = natpath_verify::gate::gate(&b, &a, ("b", "a"), None, &Default::default(), &|_, _, _| {}).unwrap();
    let strict = natpath_verify::gate::GateOptions { strict: true, ..Default::default() };
    let w = natpath_verify::gate::gate(&b, &a, ("b", "a"), None, &strict, &|_, _, _| {}).unwrap();
    for (x, y) in g.invariants.iter().zip(&w.invariants) {
        assert_eq!((x.invariant, x.after), (y.invariant, y.after), "touched vs whole");
    }
}

/// The same pod selected by a set that every node reads by source: still
/// no walk from outside is touched, but every node's queries over every
/// arrival device are (a rule before routing sees a packet from the pod's
/// address by any device), and skipping finds what the full encoding does.
#[test]
fn a_new_pod_in_a_source_set_touches_what_it_sends() {
    let (b, a, pod, node_ports, _) = pod_added(false, true);
    let d = Delta::new(&b, &a);
    let said = format!("{:?}", d.summary());
    assert!(said.contains("members of ipsets cali40s:from"), "{said}");
    let client = b.cluster.hosts.first().unwrap().address.addr();
    for (i, n) in b.nodes.iter().enumerate() {
        let lans = b.nodes[i].lan_addrs();
        for np in node_ports.iter().filter_map(|s| s.node_port) {
            assert!(!d.touches_walk(client, Some(&lans), Some(Proto::TCP), &Ports::one(np), true), "{np}: {said}");
            assert_eq!(d.touch_node(&n.name, Some(&lans), Some(Proto::TCP), &Ports::one(np)), Touch::All, "{np}");
        }
    }
    assert!(d.touches_walk(pod.address, None, Some(Proto::TCP), &Ports::Any, false), "its own packets");
    let (fast, full) = (run(&b, &a, true), run(&b, &a, false));
    assert_eq!(found(&fast), found(&full));
    assert_eq!(fast.scope.unchanged, fast.scope.entries, "{:?}", fast.scope);
}

/// The same pod made the second endpoint of a Service: the walks to that
/// Service's NodePort are touched and change (half of the connections go
/// to the new pod), and no other.
#[test]
fn a_new_endpoint_touches_its_service_only() {
    let (b, a, pod, node_ports, gained) = pod_added(true, false);
    let gained = gained.unwrap();
    let d = Delta::new(&b, &a);
    walks_touched_as(&b, &d, &node_ports, |s| s.name == gained);
    let (fast, full) = (run(&b, &a, true), run(&b, &a, false));
    assert_eq!(found(&fast), found(&full));
    assert!(!fast.changes.is_empty() && fast.changes.iter().all(|c| c.label().contains(&gained)), "{:?}", found(&fast));
    assert!(fast.scope.unchanged * 2 > fast.scope.entries, "{:?}", fast.scope);
    let _ = pod;
}

/// Calico adds a pod's address to the ipsets of the selectors it
/// matches, on every node. A set that a rule reads by destination gains an
/// endpoint of a NodePort Service: the walks to the Services that pod
/// backs are touched (and change: the rule drops them), no other.
#[test]
fn an_ipset_member_touches_what_goes_to_it() {
    let (root, b, node_ports) = generated_pair("ipset");
    let pod = node_ports
        .iter()
        .flat_map(|s| &s.endpoints)
        .find_map(|e| b.cluster.pods.iter().find(|p| p.address == e.address))
        .unwrap()
        .clone();
    let other = b.cluster.pods.iter().find(|p| p.address != pod.address && p.name.starts_with("ns-")).unwrap();
    for side in ["before", "after"] {
        for n in &b.nodes {
            let dir = root.join(side).join("nodes").join(&n.name);
            let sets = std::fs::read_to_string(dir.join("ipset-save")).unwrap();
            let mut add = format!(
                "create cali40s:test hash:ip family inet hashsize 1024 maxelem 1048576\nadd cali40s:test {}\n",
                other.address
            );
            if side == "after" {
                add.push_str(&format!("add cali40s:test {}\n", pod.address));
            }
            std::fs::write(dir.join("ipset-save"), sets + &add).unwrap();
            let rules = std::fs::read_to_string(dir.join("iptables-save")).unwrap();
            let at = rules.find("-A cali-FORWARD ").unwrap();
            let rule = "-A cali-FORWARD -m set --match-set cali40s:test dst -j DROP\n";
            std::fs::write(dir.join("iptables-save"), format!("{}{rule}{}", &rules[..at], &rules[at..])).unwrap();
        }
    }
    let (b, a) = (load(&root.join("before")), load(&root.join("after")));
    std::fs::remove_dir_all(&root).unwrap();
    let d = Delta::new(&b, &a);
    assert!(format!("{:?}", d.summary()).contains("members of ipsets cali40s:test"), "{:?}", d.summary());
    walks_touched_as(&b, &d, &node_ports, |s| s.endpoints.iter().any(|e| e.address == pod.address));
    skipping_agrees(&b, &a);
}

mod edits {
    use super::*;
    use proptest::prelude::*;

    /// A copy of `snap` with line `line` of `node`'s dump edited by `how`:
    /// removed, doubled, or with its last number one higher.
    fn edited(snap: &Path, node: &str, file: &str, line: usize, how: u8, tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("natpath-delta-prop-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(snap, &dir);
        let p = dir.join("nodes").join(node).join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        let mut out: Vec<String> = Vec::new();
        for (i, l) in text.lines().enumerate() {
            if i != line {
                out.push(l.to_string());
                continue;
            }
            match how {
                0 => {}
                1 => {
                    out.push(l.to_string());
                    out.push(l.to_string());
                }
                _ => {
                    // The last run of digits, plus one.
                    let end = l.rfind(|c: char| c.is_ascii_digit()).map_or(0, |e| e + 1);
                    let start = l.get(..end).unwrap_or("").rfind(|c: char| !c.is_ascii_digit()).map_or(0, |s| s + 1);
                    match l.get(start..end).and_then(|d| d.parse::<u32>().ok()) {
                        Some(n) => out.push(format!("{}{}{}", &l[..start], n + 1, &l[end..])),
                        None => out.push(l.to_string()),
                    }
                }
            }
        }
        std::fs::write(&p, out.join("\n") + "\n").unwrap();
        dir
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

        /// Edit one random rule of one node: the diff that skips what the
        /// delta says is untouched finds exactly what the full encoding
        /// finds.
        #[test]
        fn skipping_hides_no_change(seed in 0usize..3, node in 0usize..2, pick in any::<proptest::sample::Index>(), how in 0u8..3) {
            let base = corpus().join(["seed-ipip-remote", "seed-ipip-local", "multi-endpoint"][seed]);
            let name = ["node1", "node2"][node];
            let text = std::fs::read_to_string(base.join("nodes").join(name).join("iptables-save")).unwrap();
            let lines: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.starts_with("-A ")).map(|(i, _)| i).collect();
            let line = lines[pick.index(lines.len())];
            let dir = edited(&base, name, "iptables-save", line, how, &format!("{seed}-{node}-{line}-{how}"));
            let loaded = snapshot::load(&dir);
            std::fs::remove_dir_all(&dir).unwrap();
            let Ok(after) = loaded else { return Ok(()) };
            let before = load(&base);
            let (fast, full) = (run_with(&before, &after, true, true), run_with(&before, &after, false, true));
            prop_assert_eq!(found(&fast), found(&full), "edit {} of line {} of {}", how, line + 1, name);
        }

        /// Edit one random route or sysctl of one node (a pod's route
        /// removed, doubled or renumbered, a device's setting changed): the
        /// same.
        #[test]
        fn skipping_hides_no_route_change(seed in 0usize..3, node in 0usize..2, sysctl in any::<bool>(), pick in any::<proptest::sample::Index>(), how in 0u8..3) {
            let base = corpus().join(["multi-endpoint", "calico-vxlan", "seed-ipip-local"][seed]);
            let name = ["node1", "node2"][node];
            let file = if sysctl { "sysctl" } else { "ip-route" };
            let Ok(text) = std::fs::read_to_string(base.join("nodes").join(name).join(file)) else { return Ok(()) };
            let lines: Vec<usize> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, _)| i).collect();
            let line = lines[pick.index(lines.len())];
            let dir = edited(&base, name, file, line, how, &format!("r{seed}-{node}-{file}-{line}-{how}"));
            let loaded = snapshot::load(&dir);
            std::fs::remove_dir_all(&dir).unwrap();
            let Ok(after) = loaded else { return Ok(()) };
            let before = load(&base);
            let (fast, full) = (run_with(&before, &after, true, true), run_with(&before, &after, false, true));
            prop_assert_eq!(found(&fast), found(&full), "edit {} of line {} of {}'s {}", how, line + 1, name, file);
        }
    }
}

/// Pods as senders (`--pods`) are skipped like outside clients where the
/// change cannot reach them, and found where it does: a Service added by
/// kube-proxy is one new cluster IP.
#[test]
fn pod_entries_are_skipped_where_the_change_cannot_reach() {
    let b = load(&corpus().join("kube-proxy-1.28"));
    let a = load(&corpus().join("pairs/kp-service-added/after"));
    let o = |structural| DiffOptions { structural, pods: true, ..DiffOptions::default() };
    let fast = diff::diff_with(&b, &a, ("b", "a"), &o(true), &|_, _, _| {}).unwrap();
    let full = diff::diff_with(&b, &a, ("b", "a"), &o(false), &|_, _, _| {}).unwrap();
    assert_eq!(found(&fast), found(&full));
    assert!(fast.scope.sources.iter().any(|s| s.starts_with("pod ")), "{:?}", fast.scope.sources);
    // The old Services' cluster IPs from the pod: untouched.
    assert!(fast.scope.unchanged >= 5, "{:?}", fast.scope);
    // On the command line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(["diff", "--pods", "--format", "json"])
        .arg(corpus().join("kube-proxy-1.28"))
        .arg(corpus().join("pairs/kp-service-added/after"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["scope"]["sources"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().starts_with("pod ")));
}

/// `natpath diff FILE FILE`: two dumps of one node, compared rule by rule.
/// Sameness is proved (exit 0); what differs is unknown (exit 3) with the
/// Service ports it concerns, since no walk can be encoded without the
/// node's addresses and routes; a file and a directory, or a gate of files,
/// is bad input.
#[test]
fn two_dump_files_are_compared_rule_by_rule() {
    let natpath = |args: &[&Path]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_natpath")).args(args).output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let c = corpus();
    let seed = c.join("seed-ipip-remote/nodes/node1/iptables-save");
    let renamed = c.join("pairs/renamed-chains/after/nodes/node1/iptables-save");
    let (code, out, _) = natpath(&[Path::new("diff"), &seed, &renamed]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("every packet meets the same rules"), "{out}");
    // kube-proxy's own Local switch: the NodePort's rules, and nothing else
    // (kube-proxy also reordered the Services: no difference).
    let kp = c.join("kube-proxy-1.28/nodes/node1/iptables-save");
    let local = c.join("pairs/kp-etp-local/after/nodes/node1/iptables-save");
    let (code, out, _) = natpath(&[Path::new("diff"), &kp, &local, Path::new("--format"), Path::new("json")]);
    assert_eq!(code, Some(3), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let unknown: Vec<&str> = v["unknown"].as_array().unwrap().iter().map(|u| u["entry"].as_str().unwrap()).collect();
    assert_eq!(unknown, ["tcp packets to port 32220 (default/nginx:8080-80)"]);
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/natpath.diff.v1.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(jsonschema::validator_for(&schema).unwrap().is_valid(&v), "{out}");
    // A file and a directory; a gate of files.
    let (code, out, err) = natpath(&[Path::new("diff"), &seed, &c.join("seed-ipip-remote")]);
    assert_eq!((code, out.as_str()), (Some(2), ""));
    assert!(err.contains("expected two snapshot directories or two iptables-save files"), "{err}");
    let (code, _, err) = natpath(&[Path::new("gate"), &seed, &renamed]);
    assert_eq!(code, Some(2));
    assert!(err.contains("the gate needs snapshot directories"), "{err}");
    // Not a dump.
    let addr = c.join("seed-ipip-remote/nodes/node1/ip-addr");
    let (code, _, err) = natpath(&[Path::new("diff"), &addr, &addr]);
    assert_eq!(code, Some(2));
    assert!(err.contains("expected an iptables-save dump"), "{err}");
}
