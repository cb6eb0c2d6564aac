//! Differential tests against the real kernel: the seed's cases A and B
//! rebuilt in network namespaces and probed with the blog's request
//! (`client:10.0.0.51:32220/tcp`), asserting what the kernel did; plus the
//! harness's own contract: the root namespace is unchanged after a run,
//! everything is removed after a failed setup and after SIGINT.
//!
//! Contract: each test prints `SKIPPED: <reason>` and returns when this
//! machine cannot run the harness (not root, no `ip netns`, a tool
//! missing): never a silent pass. Tests take a process-wide lock so they
//! run one at a time (each lab still has its own `np-<pid>-<n>-` prefix),
//! and each takes a few seconds at most.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod common;
use common::copy_dir;
use natpath_verify::kernel::{self, KernelError, Options, Probe, ProbeResult};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(name)
}

fn opts() -> Options {
    Options { helper: Some(PathBuf::from(env!("CARGO_BIN_EXE_natpath"))), ..Options::default() }
}

/// Run, or `None` (after printing SKIPPED) when this machine cannot.
#[track_caller]
fn run(snapshot: &Path, probes: &[&str]) -> Option<kernel::Run> {
    let probes: Vec<Probe> = probes.iter().map(|p| Probe::parse(p).unwrap()).collect();
    match kernel::run_with(snapshot, &probes, &opts()) {
        Ok(r) => Some(r),
        Err(KernelError::CannotRun(why)) => {
            println!("SKIPPED: {why}");
            eprintln!("SKIPPED: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// What `cmd` prints; empty when it cannot start (a tool is missing: the
/// run itself then says SKIPPED with the reason).
fn sh(cmd: &[&str]) -> String {
    match Command::new(cmd[0]).args(&cmd[1..]).output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(_) => String::new(),
    }
}

/// The root namespace's network state, without counters and timestamps.
fn root_state() -> Vec<(String, String)> {
    let ipt: String = sh(&["iptables-save"])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let l = if l.starts_with('[') { l.split_once(' ').map(|x| x.1).unwrap_or(l) } else { l };
            let l = match (l.starts_with(':'), l.rfind(" [")) {
                (true, Some(i)) => &l[..i],
                _ => l,
            };
            format!("{l}\n")
        })
        .collect();
    vec![
        ("ip addr".into(), sh(&["ip", "addr"])),
        ("ip route".into(), sh(&["ip", "route", "show", "table", "all"])),
        ("ip rule".into(), sh(&["ip", "rule"])),
        ("iptables-save".into(), ipt),
        // Only the referee's names: other tools on this machine may create
        // their own namespaces while these tests run.
        (
            "ip netns list (np-*)".into(),
            sh(&["ip", "netns", "list"]).lines().filter(|l| l.starts_with("np-")).collect(),
        ),
    ]
}

#[track_caller]
fn assert_root_unchanged(before: &[(String, String)]) {
    for ((what, b), (_, a)) in before.iter().zip(root_state()) {
        assert_eq!(b, &a, "the root namespace's `{what}` changed");
    }
}

fn rules(r: &ProbeResult, node: &str, table: &str, chain: &str) -> Vec<(Option<usize>, u64)> {
    r.counters
        .iter()
        .filter(|d| d.node == node && d.table == table && d.chain == chain)
        .map(|d| (d.rule, d.packets))
        .collect()
}

fn show(run: &kernel::Run) {
    println!("setup {:.1} ms, teardown {:.1} ms", run.setup_ms, run.teardown_ms);
    for r in &run.results {
        print!("{}", kernel::result_text(r));
    }
    for n in &run.notes {
        println!("note: {n}");
    }
}

/// Case A: the pod is on the node the client asked.
#[test]
fn case_a_local_pod() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let t = Instant::now();
    let Some(run) = run(&seed("seed-ipip-local"), &["client:10.0.0.51:32220/tcp"]) else { return };
    println!("whole run {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    show(&run);
    let r = &run.results[0];
    let pod = r.pod().expect("a pod received the SYN");
    assert_eq!(pod.pod, "default/nginx-6799fc88d8-wfztd");
    assert_eq!(pod.dst.to_string(), "192.168.231.70:80");
    // MASQUERADE out of a cali veth (no IPv4 address): the first global
    // address in device order, ens192's.
    assert_eq!(pod.src.ip().to_string(), "10.0.0.51");
    let reply = r.reply.as_ref().expect("the SYN-ACK reached the client");
    assert_eq!(
        (reply.kind.as_str(), reply.src.as_str(), reply.dst.as_str()),
        ("syn-ack", "10.0.0.51:32220", "10.0.0.53:40000")
    );
    // kube-proxy's MASQUERADE (KUBE-POSTROUTING #3) did the SNAT, once.
    assert_eq!(rules(r, "node1", "nat", "KUBE-POSTROUTING"), vec![(Some(2), 1), (Some(3), 1)]);
    assert!(rules(r, "node2", "nat", "PREROUTING").is_empty(), "node2 saw nothing");
    assert_root_unchanged(&before);
}

/// Case B: the pod is on the other node, behind tunl0 (IPIP).
#[test]
fn case_b_remote_pod() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let t = Instant::now();
    let Some(run) = run(&seed("seed-ipip-remote"), &["client:10.0.0.51:32220/tcp"]) else { return };
    println!("whole run {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    show(&run);
    let r = &run.results[0];
    let pod = r.pod().expect("a pod received the SYN");
    assert_eq!((pod.pod.as_str(), pod.node.as_str()), ("default/nginx-854f5d4bbd-x7k2p", "node2"));
    assert_eq!(pod.dst.to_string(), "192.168.233.136:80");
    // tunl0's address: the route leaves by tunl0.
    assert_eq!(pod.src.ip().to_string(), "192.168.231.64");
    let reply = r.reply.as_ref().expect("the SYN-ACK reached the client");
    assert_eq!(
        (reply.kind.as_str(), reply.src.as_str(), reply.dst.as_str()),
        ("syn-ack", "10.0.0.51:32220", "10.0.0.53:40000")
    );
    // The blog's question: which rule did the SNAT on node 1? The kernel:
    // kube-proxy's MASQUERADE (KUBE-POSTROUTING #3, after #2 cleared the
    // mark bit), not Calico's `cali-POSTROUTING -o tunl0 ... --src-type
    // LOCAL` (#3 there), whose first addrtype match fails for 10.0.0.53.
    assert_eq!(rules(r, "node1", "nat", "KUBE-POSTROUTING"), vec![(Some(2), 1), (Some(3), 1)]);
    assert!(!rules(r, "node1", "nat", "cali-POSTROUTING").contains(&(Some(3), 1)));
    // Node 2: the mark did not cross the tunnel, so KUBE-POSTROUTING returns at #1.
    assert_eq!(rules(r, "node2", "nat", "KUBE-POSTROUTING"), vec![(Some(1), 1)]);
    assert!(r.tunnel.iter().any(|t| t.node == "node1" && t.event.starts_with("encap")));
    assert_root_unchanged(&before);
}

/// Case B over Calico VXLAN: the kernel's own vxlan device, with the
/// snapshot's fdb and neighbour entries.
#[test]
fn vxlan_remote_pod() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = seed("calico-vxlan");
    if !dir.join("cluster.toml").is_file() {
        println!("SKIPPED: no corpus/calico-vxlan in this checkout");
        return;
    }
    let before = root_state();
    let Some(run) = run(&dir, &["client:10.0.0.51:32220/tcp"]) else { return };
    show(&run);
    let r = &run.results[0];
    let pod = r.pod().expect("a pod received the SYN");
    assert_eq!((pod.pod.as_str(), pod.node.as_str()), ("default/nginx-854f5d4bbd-x7k2p", "node2"));
    // vxlan.calico's address, chosen by MASQUERADE for the route's device.
    assert_eq!(pod.src.ip().to_string(), "192.168.231.64");
    let reply = r.reply.as_ref().expect("the SYN-ACK reached the client");
    assert_eq!((reply.kind.as_str(), reply.src.as_str()), ("syn-ack", "10.0.0.51:32220"));
    // #3 masquerades the inner SYN; #1 is the outer VXLAN packet's own
    // first pass (its UDP source port hashes the inner flow, so every new
    // connection has new, NEW carrier flows: nat sees them).
    assert_eq!(rules(r, "node1", "nat", "KUBE-POSTROUTING"), vec![(Some(1), 1), (Some(2), 1), (Some(3), 1)]);
    let node1 = &r.conntrack.iter().find(|c| c.node == "node1").unwrap().entries;
    assert!(node1.iter().any(|e| e.proto == "udp" && e.orig.dport == Some(4789)), "a carrier entry");
    assert!(r.tunnel.is_empty(), "no user-space relay for VXLAN");
    assert_root_unchanged(&before);
}

/// Probes from a node (through the relay, no NAT), TCP and UDP in one
/// lab: conntrack is flushed between them so each first packet is NEW.
#[test]
fn node_to_pod_tcp_and_udp() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let probes = ["node1:192.168.233.136:80/tcp", "node1:192.168.233.136:80/udp", "client:10.0.0.51:32220/udp"];
    let Some(run) = run(&seed("seed-ipip-remote"), &probes) else { return };
    show(&run);
    let [tcp, udp, nodeport_udp] = &run.results[..] else { panic!("three results") };
    // tunl0's address is the source the node picks for a route via tunl0.
    assert_eq!(tcp.sent.src, "192.168.231.64:40000");
    let pod = tcp.pod().expect("the pod got the SYN");
    assert_eq!(pod.src.to_string(), "192.168.231.64:40000");
    let reply = tcp.reply.as_ref().expect("SYN-ACK");
    assert_eq!((reply.kind.as_str(), reply.src.as_str()), ("syn-ack", "192.168.233.136:80"));
    // The pod listens on tcp/80 only: the datagram is refused by the pod.
    assert!(udp.pod().is_some());
    let reply = udp.reply.as_ref().expect("an ICMP error");
    assert_eq!((reply.kind.as_str(), reply.src.as_str()), ("icmp 3/3", "192.168.233.136"));
    // No UDP NodePort: node1 itself refuses.
    assert!(nodeport_udp.pod().is_none());
    let reply = nodeport_udp.reply.as_ref().expect("an ICMP error");
    assert_eq!((reply.kind.as_str(), reply.src.as_str()), ("icmp 3/3", "10.0.0.51"));
    assert_root_unchanged(&before);
}

/// A setup that fails half-way leaves nothing behind.
#[test]
fn failed_setup_removes_everything() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let dir = std::env::temp_dir().join(format!("natpath-kernel-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&seed("seed-ipip-local"), &dir);
    let route = dir.join("nodes/node2/ip-route");
    let mut text = std::fs::read_to_string(&route).unwrap();
    text.push_str("10.9.0.0/16 via 10.77.0.1 dev ens192 proto static\n");
    let line = text.lines().count();
    std::fs::write(&route, text).unwrap();
    let probes = [Probe::parse("client:10.0.0.51:32220/tcp").unwrap()];
    let r = kernel::run_with(&dir, &probes, &opts());
    let _ = std::fs::remove_dir_all(&dir);
    match r {
        Err(KernelError::CannotRun(why)) => {
            println!("SKIPPED: {why}");
            return;
        }
        Err(KernelError::Setup(m)) => assert!(m.contains(&format!("nodes/node2/ip-route:{line}")), "{m}"),
        other => panic!("expected a setup error, got {other:?}"),
    }
    assert_root_unchanged(&before);
}

/// The helper processes `sigint_removes_everything`'s child started: those
/// that inherited its `NATPATH_SIGINT_CHILD`, not a helper of an earlier
/// test still exiting, nor one of another run on the machine.
fn helper_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let cmd = std::fs::read(dir.join("cmdline")).ok()?;
            let env = std::fs::read(dir.join("environ")).ok()?;
            Some((cmd, env))
        })
        .filter(|(cmd, env)| {
            String::from_utf8_lossy(cmd).contains("\0kernel-helper\0")
                && env.split(|b| *b == 0).any(|v| v == b"NATPATH_SIGINT_CHILD=1")
        })
        .count()
}

/// The child half of `sigint_removes_everything`: a run whose probe waits
/// for an answer that never comes.
#[test]
#[ignore = "run by sigint_removes_everything in a child process"]
fn sigint_child() {
    if std::env::var_os("NATPATH_SIGINT_CHILD").is_none() {
        println!("SKIPPED: only meaningful as sigint_removes_everything's child");
        return;
    }
    let probes = [Probe::parse("client:10.0.0.99:9/udp").unwrap()];
    let o = Options { reply_timeout: Duration::from_secs(10), ..opts() };
    let _ = kernel::run_with(&seed("seed-ipip-remote"), &probes, &o);
}

/// SIGINT during a run: relays and namespaces are gone, exit code 130.
#[test]
fn sigint_removes_everything() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigint_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("NATPATH_SIGINT_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("np-{}-", child.id());
    let start = Instant::now();
    let mut seen = false;
    while start.elapsed() < Duration::from_secs(8) {
        if let Some(st) = child.try_wait().unwrap() {
            println!("SKIPPED: the child run ended before it could be interrupted ({st}): cannot run here?");
            return;
        }
        // The probe is running once the client has its probe-control table.
        if sh(&["ip", "netns", "list"]).contains(&prefix) && helper_processes() >= 2 {
            seen = true;
            std::thread::sleep(Duration::from_millis(700));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen, "the child never built its namespaces");
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the child did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert!(!sh(&["ip", "netns", "list"]).contains(&prefix), "namespaces left behind");
    let t = Instant::now();
    while helper_processes() > 0 && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(helper_processes(), 0, "helper processes left behind");
    assert_root_unchanged(&before);
}

/// The differential test proper: for every corpus snapshot with a
/// `probes` file, the model's trace of each of its probes and of every
/// sender's (tests/common `sender_probes`: hosts, pods and nodes to every
/// NodePort, cluster IP and pod port) must agree with the kernel on
/// everything `compare` checks (pod, source seen, reply, refusal, and the
/// multiset of rule counters on every node).
#[test]
fn corpus_kernel_agrees_with_model() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&corpus).map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect()).unwrap_or_default();
    dirs.retain(|d| d.join("cluster.toml").is_file() && d.join("probes").is_file());
    // NATPATH_CORPUS=NAME runs one snapshot (for a developer chasing a difference).
    if let Ok(only) = std::env::var("NATPATH_CORPUS") {
        dirs.retain(|d| d.file_name().is_some_and(|n| n.to_string_lossy() == only));
    }
    dirs.sort();
    if dirs.is_empty() {
        dirs = vec![seed("seed-ipip-local"), seed("seed-ipip-remote")];
    }
    let before = root_state();
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let snap = natpath_model::snapshot::load(dir).unwrap_or_else(|e| panic!("the model cannot read {name}: {e}"));
        // The snapshot's own probes, and every sender's whose fate the model
        // decides: a packet to what the snapshot does not describe (an API
        // server off it, a LAN gateway) is unknown to the model, and the
        // kernel's late answer to it (an ARP failure's ICMP error, seconds
        // later) would land in the next probe's counters.
        let own = std::fs::read_to_string(dir.join("probes")).unwrap_or_default();
        let decided = |from: &str, ip: std::net::Ipv4Addr, port: u16, proto| {
            let Ok(mp) = natpath_model::walk::probe(&snap, from, &format!("{ip}:{port}"), proto, 40000) else {
                return false;
            };
            natpath_model::walk::trace(&snap, &mp, &natpath_model::walk::TraceOptions::default())
                .is_ok_and(|t| t.branches.iter().all(|b| b.outcome != natpath_model::trace::Outcome::Unknown))
        };
        let texts: Vec<String> = common::sender_probes(&snap, dir)
            .into_iter()
            .filter_map(|(from, ip, port, proto)| {
                let text = format!("{from}:{ip}:{port}/{}", natpath_model::packet::proto_name(proto));
                let listed = own.lines().any(|l| l.split('#').next().unwrap_or("").trim() == text);
                (listed || decided(&from, ip, port, proto)).then_some(text)
            })
            .collect();
        let probes: Vec<Probe> = texts.iter().map(|p| Probe::parse(p).unwrap()).collect();
        let o = Options { reply_timeout: Duration::from_millis(1000), ..opts() };
        let run = match kernel::run_with(dir, &probes, &o) {
            Ok(r) => r,
            Err(KernelError::CannotRun(why)) => {
                println!("SKIPPED: {why}");
                return;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        for r in &run.results {
            let p = &r.probe;
            let proto = p.proto.proto();
            let mp = natpath_model::walk::probe(&snap, &p.from, &p.to.to_string(), proto, p.sport).unwrap();
            let trace = natpath_model::walk::trace(&snap, &mp, &natpath_model::walk::TraceOptions::default()).unwrap();
            let json = serde_json::to_value(&trace).unwrap();
            let differences = kernel::compare(r, &json);
            // The comparison is not vacuous: moving one counted step to the
            // next rule must show up.
            let mut moved = json.clone();
            for b in moved["branches"].as_array_mut().unwrap() {
                if let Some(st) = b["steps"].as_array_mut().unwrap().iter_mut().find(|s| s["rule"].is_u64()) {
                    st["rule"] = serde_json::json!(st["rule"].as_u64().unwrap() + 1);
                }
            }
            assert!(!kernel::compare(r, &moved).is_empty(), "{name} {p}: a moved step went unnoticed");
            let pod = r.pod().map(|x| format!("{} saw {}", x.pod, x.src)).unwrap_or_else(|| "no pod".into());
            println!("{name} {p}: {pod}; {} difference(s)", differences.len());
            for d in &differences {
                println!("  {d}");
                failures.push(format!("{name} {p}: {d}"));
            }
        }
    }
    assert!(failures.is_empty(), "kernel and model disagree:\n{}", failures.join("\n"));
    assert_root_unchanged(&before);
}

/// Assert that the model's trace of `r`'s probe on `dir` agrees with the
/// kernel's result; `what` names the case.
#[track_caller]
fn assert_agrees(dir: &Path, r: &ProbeResult, what: &str) {
    let d: Vec<String> = model_differences(dir, r).iter().map(|d| d.to_string()).collect();
    assert!(d.is_empty(), "{what}: kernel and model disagree:\n{}", d.join("\n"));
}

/// The model's trace of `probe` on `dir` against the kernel's result.
fn model_differences(dir: &Path, r: &ProbeResult) -> Vec<kernel::Difference> {
    let snap = natpath_model::snapshot::load(dir).unwrap();
    let p = &r.probe;
    let mp = natpath_model::walk::probe(&snap, &p.from, &p.to.to_string(), p.proto.proto(), p.sport).unwrap();
    let trace = natpath_model::walk::trace(&snap, &mp, &natpath_model::walk::TraceOptions::default()).unwrap();
    kernel::compare(r, &serde_json::to_value(&trace).unwrap())
}

/// Failed routes (issue 13): node1 (or node2, for the remote case) cannot
/// route the NodePort's DNATed SYN; the kernel answers with the ICMP error
/// `ip_error` chooses (or nothing for a blackhole), from node1's LAN
/// address, and the model agrees on the outcome, the answer and every
/// counter, the error's own OUTPUT/POSTROUTING passage included.
#[test]
fn failed_routes_answer_like_the_kernel() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let mut failures = Vec::new();
    for (tag, edit, want) in common::route_cases() {
        let s = common::Scratch::of("seed-ipip-remote", &format!("kernel-route-{tag}"));
        edit(&s);
        let Some(run) = run(&s.0, &["client:10.0.0.51:32220/tcp"]) else { return };
        let r = &run.results[0];
        assert!(r.pod().is_none(), "{tag}: no pod gets the SYN");
        match (want, r.reply.as_ref()) {
            (Some(kind), Some(reply)) => {
                assert_eq!((reply.kind.as_str(), reply.src.as_str()), (kind, "10.0.0.51"), "{tag}");
            }
            (None, None) => {}
            (w, got) => panic!("{tag}: expected {w:?}, the kernel answered {got:?}"),
        }
        let d = model_differences(&s.0, r);
        println!("{tag}: {} difference(s)", d.len());
        failures.extend(d.iter().map(|d| format!("{tag}: {d}")));
    }
    assert!(failures.is_empty(), "kernel and model disagree:\n{}", failures.join("\n"));
    assert_root_unchanged(&before);
}

/// An ICMP redirect (issue 13): node1 forwards the DNATed SYN back out of
/// ens192; the kernel's redirect to the client counts in node1's raw and
/// mangle OUTPUT and is dropped by nat there. The model agrees on every
/// counter; without the redirect it would miss raw OUTPUT's.
#[test]
fn a_redirect_counts_like_the_kernel() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let s = common::Scratch::of("seed-ipip-remote", "kernel-redirect");
    common::redirect_case(&s);
    let Some(run) = run(&s.0, &["client:10.0.0.51:32220/tcp"]) else { return };
    show(&run);
    let r = &run.results[0];
    assert!(r.pod().is_some(), "the SYN still reaches the pod");
    // The redirect is node1's only packet of its own.
    assert_eq!(rules(r, "node1", "raw", "OUTPUT"), vec![(None, 1), (Some(1), 1)]);
    assert!(rules(r, "node1", "filter", "OUTPUT").is_empty(), "nat dropped it before filter");
    assert_agrees(&s.0, r, "redirect");
    assert_root_unchanged(&before);
}

/// An ICMP redirect from a node without a nat table (issue 13): the client
/// sends to the pod's own address through the router `gw`, which hands it
/// to node1; node1 has no nat table and routes node2's pod block over
/// ens192, the device the SYN came in by. Nothing drops the redirect now:
/// it crosses node1's filter OUTPUT and POSTROUTING and reaches the client,
/// and the SYN goes on to the pod. The model agrees on every counter.
#[test]
fn a_redirect_from_a_node_without_nat_reaches_the_sender_like_the_kernel() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let s = common::Scratch::of("seed-ipip-remote", "kernel-redirect-no-nat");
    common::redirect_case(&s);
    s.edit("node1", "iptables-save", |t| {
        let mut out = String::new();
        let mut in_nat = false;
        for l in t.lines() {
            if l == "*nat" {
                in_nat = true;
            }
            if !in_nat {
                out.push_str(l);
                out.push('\n');
            } else if l == "COMMIT" {
                in_nat = false;
            }
        }
        out
    });
    s.append_toml("\n[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"192.168.0.0/16 via node1\"]\n");
    let Some(run) = run(&s.0, &["client:192.168.233.136:80/tcp"]) else { return };
    show(&run);
    let r = &run.results[0];
    assert!(r.pod().is_some(), "the SYN still reaches the pod");
    let counted = |table: &str, chain: &str| rules(r, "node1", table, chain).iter().map(|(_, p)| *p).sum::<u64>();
    assert!(counted("filter", "OUTPUT") >= 1, "the redirect crosses filter OUTPUT");
    assert!(counted("mangle", "POSTROUTING") >= 1, "and POSTROUTING");
    assert_agrees(&s.0, r, "redirect without nat");
    assert_root_unchanged(&before);
}

/// Per-device forwarding (issue 13): node2 with `conf.tunl0.forwarding` 0
/// (and `ip_forward` 1) drops node1's DNATed SYN that comes through the
/// tunnel, but forwards the SYN to its own NodePort, which comes in by
/// ens192, to the pod: the kernel reads the input device's `forwarding`
/// (`IN_DEV_FORWARD` in `ip_route_input_slow`), and the model agrees on both,
/// counters included.
#[test]
fn per_device_forwarding_like_the_kernel() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let s = common::Scratch::of("seed-ipip-remote", "kernel-fwd-dev");
    s.edit("node2", "sysctl", |t| format!("{t}net.ipv4.conf.tunl0.forwarding = 0\n"));
    let Some(run) = run(&s.0, &["client:10.0.0.51:32220/tcp", "client:10.0.0.52:32220/tcp"]) else { return };
    show(&run);
    let (via_tunnel, direct) = (&run.results[0], &run.results[1]);
    assert!(via_tunnel.pod().is_none() && via_tunnel.reply.is_none(), "tunl0 does not forward");
    assert!(rules(via_tunnel, "node2", "nat", "KUBE-POSTROUTING").is_empty(), "node2 forwarded nothing");
    assert!(!rules(via_tunnel, "node2", "raw", "PREROUTING").is_empty(), "node2 received it");
    let pod = direct.pod().expect("ens192 forwards");
    assert_eq!(pod.node, "node2");
    assert!(direct.reply.is_some(), "the SYN-ACK reached the client");
    let mut failures = Vec::new();
    for r in &run.results {
        failures.extend(model_differences(&s.0, r).iter().map(|d| format!("{}: {d}", r.probe)));
    }
    assert!(failures.is_empty(), "kernel and model disagree:\n{}", failures.join("\n"));
    assert_root_unchanged(&before);
}

/// A TCP reset is 40 bytes (issue 13): node1's reset for a closed port
/// (`client:10.0.0.51:2222`) and its REJECT `--reject-with tcp-reset`
/// (`:2223`) are counted, once each and 40 bytes, by a raw OUTPUT rule
/// matching `-m length --length 40`, and not by the one for longer
/// packets; the model agrees on every counter (before, it kept the SYN's
/// length for the closed port's reset, and counted the other rule).
#[test]
fn a_tcp_reset_is_40_bytes_like_the_kernel() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let s = common::Scratch::of("node-listeners", "kernel-reset-len");
    common::reset_length_case(&s);
    let Some(run) = run(&s.0, &["client:10.0.0.51:2222/tcp", "client:10.0.0.51:2223/tcp"]) else { return };
    show(&run);
    let mut failures = Vec::new();
    for r in &run.results {
        let reply = r.reply.as_ref().expect("the client got an answer");
        assert_eq!(reply.kind, "rst", "{}", r.probe);
        let raw: Vec<(Option<usize>, u64, u64)> = r
            .counters
            .iter()
            .filter(|d| d.node == "node1" && d.table == "raw" && d.chain == "OUTPUT" && d.rule.is_some_and(|n| n <= 2))
            .map(|d| (d.rule, d.packets, d.bytes))
            .collect();
        assert_eq!(raw, vec![(Some(1), 1, 40)], "{}", r.probe);
        failures.extend(model_differences(&s.0, r).iter().map(|d| format!("{}: {d}", r.probe)));
    }
    assert!(failures.is_empty(), "kernel and model disagree:\n{}", failures.join("\n"));
    assert_root_unchanged(&before);
}

/// The route back of a forwarded packet (issue 13, tests/common
/// `back_iif_case`): the kernel looks it up with input device the
/// forwarding route's (tunl0 for the client's NodePort SYN that node1
/// forwards to node2's pod), so a rule `iif tunl0` sending the client back
/// by tunl0 makes rp_filter 1 on ens192 drop the SYN, and a rule `iif
/// ens192` does not apply. The model agrees on both, counters included.
#[test]
fn the_route_back_is_looked_up_like_the_kernel() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let mut failures = Vec::new();
    for (dev, reaches) in [("tunl0", false), ("ens192", true)] {
        let s = common::Scratch::of("seed-ipip-remote", &format!("kernel-back-iif-{dev}"));
        common::back_iif_case(&s, dev);
        let Some(run) = run(&s.0, &["client:10.0.0.51:32220/tcp"]) else { return };
        let r = &run.results[0];
        assert_eq!(r.pod().is_some(), reaches, "iif {dev}: the pod gets the SYN: {reaches}");
        assert!(!rules(r, "node1", "raw", "PREROUTING").is_empty(), "iif {dev}: node1 received it");
        let d = model_differences(&s.0, r);
        println!("iif {dev}: {} difference(s)", d.len());
        failures.extend(d.iter().map(|d| format!("iif {dev}: {d}")));
    }
    assert!(failures.is_empty(), "kernel and model disagree:\n{}", failures.join("\n"));
    assert_root_unchanged(&before);
}

/// The TTL a forwarding node takes off (issue 13): the client's NodePort
/// SYN leaves it with TTL 64, node1 forwards it to node2 through the tunnel
/// and node2 to the pod; the SYN-ACK crosses the same forwards the other
/// way. Counting rules per TTL in mangle FORWARD and POSTROUTING
/// (tests/common `ttl_counting_case`) never see 64; the model counts the
/// same.
#[test]
fn a_forwarded_packet_loses_one_ttl_per_node_like_the_kernel() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let s = common::Scratch::of("seed-ipip-remote", "kernel-ttl");
    common::ttl_counting_case(&s);
    let Some(run) = run(&s.0, &["client:10.0.0.51:32220/tcp"]) else { return };
    let r = &run.results[0];
    show(&run);
    assert!(r.pod().is_some(), "the pod gets the SYN");
    // Rules 1-3 of each chain count TTL 64, 63 and 62.
    let counts = |node: &str, chain: &str| -> Vec<u64> {
        (1..=3)
            .map(|n| rules(r, node, "mangle", chain).iter().filter(|(i, _)| *i == Some(n)).map(|(_, p)| *p).sum())
            .collect()
    };
    // The SYN-ACK leaves the pod with 64 too and crosses the same two
    // forwards the other way.
    assert_eq!(counts("node1", "FORWARD"), vec![0, 1, 1], "node1: the SYN with 63, the SYN-ACK with 62");
    assert_eq!(counts("node2", "FORWARD"), vec![0, 1, 1], "node2: the SYN-ACK with 63, the SYN with 62");
    assert_agrees(&s.0, r, "ttl");
    assert_root_unchanged(&before);
}

/// A router of cluster.toml in the lab (issue 13): `gw` (10.0.0.1, the
/// client's gateway) sends the Service CIDR to node1. The client's SYN to
/// a cluster IP crosses the router, which takes one off its TTL (counting
/// rules first in node1's mangle PREROUTING see 63, never 64), node1
/// DNATs it to the pod on node2, and the reply comes back. Without the
/// router's namespace nothing would answer for 10.0.0.1 and the pod would
/// see nothing; the model agrees on every counter.
#[test]
fn a_router_forwards_in_the_lab_as_in_the_model() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let s = common::Scratch::of("seed-ipip-remote", "kernel-router");
    s.append_toml("\n[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.0/12 via node1\"]\n");
    let counting: Vec<String> =
        [64, 63].iter().map(|t| format!("-A PREROUTING -s 10.0.0.53/32 -p tcp -m ttl --ttl-eq {t}")).collect();
    common::rules_first(&s, "node1", "mangle", &counting);
    let Some(run) = run(&s.0, &["client:10.101.14.7:8080/tcp"]) else { return };
    let r = &run.results[0];
    show(&run);
    assert!(r.pod().is_some(), "the pod gets the SYN through the router");
    assert!(r.reply.is_some(), "the client gets the answer");
    assert!(!run.notes.iter().any(|n| n.contains("router")), "{:?}", run.notes);
    let counts: Vec<u64> = (1..=2)
        .map(|n| rules(r, "node1", "mangle", "PREROUTING").iter().filter(|(i, _)| *i == Some(n)).map(|(_, p)| *p).sum())
        .collect();
    assert_eq!(counts, vec![0, 1], "node1 gets the client's SYN with TTL 63");
    assert_agrees(&s.0, r, "router");
    assert_root_unchanged(&before);
}

/// A route looked up again (tests/common `fwmark_reroute_case`): node2
/// marks what it sends to node1's NodePort, and the mark routes to a
/// blackhole. Set in mangle OUTPUT, the kernel routes the packet again
/// right there and refuses to send it (nothing of nat or filter OUTPUT
/// counts it); set in filter OUTPUT, it keeps the socket's route and the
/// pod gets the SYN. The model agrees on every counter in both.
#[test]
fn a_mark_routes_again_after_mangle_not_filter_like_the_kernel() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    for (table, delivered) in [("mangle", false), ("filter", true)] {
        let s = common::Scratch::of("seed-ipip-remote", &format!("kernel-reroute-{table}"));
        common::fwmark_reroute_case(&s, table);
        let Some(run) = run(&s.0, &[common::REROUTE_PROBE]) else { return };
        let r = &run.results[0];
        show(&run);
        assert_eq!(r.pod().is_some(), delivered, "{table}: the pod gets the SYN");
        let marked: u64 =
            rules(r, "node2", table, "OUTPUT").iter().filter(|(n, _)| *n == Some(1)).map(|(_, p)| *p).sum();
        assert_eq!(marked, 1, "{table}: the MARK rule counts the SYN once");
        assert_agrees(&s.0, r, table);
    }
    assert_root_unchanged(&before);
}

/// Source validation with rp_filter 0 (issue 13, tests/common
/// `rpf_cases`): the pod on node2 sends a SYN to node1's tunl0 address; it
/// crosses the tunnel and arrives on node1's tunl0, where node1 has
/// rp_filter 0. The kernel's `fib_validate_source` drops it when its source
/// is one of node1's own addresses (here also on node1's `lo`) unless
/// `accept_local`, and drops it for a blackhole route back only when node1
/// has a rule or a `local` route of its own (the full check). Each drop is
/// in the routing decision: counted by the raw PREROUTING rule for the
/// pod's packet on tunl0, never by the DROP at the top of filter INPUT,
/// which counts it when it passes. The model agrees on every counter.
#[test]
fn source_validation_with_rp_filter_0_like_the_kernel() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = root_state();
    let probe = format!("{}:{}/tcp", common::RPF_POD, common::RPF_TO);
    let mut failures = Vec::new();
    for (tag, case, passes) in common::rpf_cases() {
        let s = common::Scratch::of("seed-ipip-remote", &format!("kernel-rpf-{tag}"));
        common::rpf_case(&s, &case);
        let Some(run) = run(&s.0, &[probe.as_str()]) else { return };
        let r = &run.results[0];
        let first = |table: &str, chain: &str| {
            rules(r, "node1", table, chain).iter().filter(|(n, _)| *n == Some(1)).map(|(_, p)| *p).sum::<u64>()
        };
        let (pre, input) = (first("raw", "PREROUTING"), first("filter", "INPUT"));
        println!("{tag}: node1 raw PREROUTING #1 {pre}, filter INPUT #1 {input}");
        for n in &run.notes {
            println!("  note: {n}");
        }
        assert_eq!(pre, 1, "{tag}: node1 receives the SYN on tunl0 once");
        assert_eq!(input, u64::from(passes), "{tag}: routing lets it through: {passes}");
        assert!(r.reply.is_none(), "{tag}: nothing answers");
        let d = model_differences(&s.0, r);
        println!("{tag}: {} difference(s)", d.len());
        failures.extend(d.iter().map(|d| format!("{tag}: {d}")));
    }
    assert!(failures.is_empty(), "kernel and model disagree:\n{}", failures.join("\n"));
    assert_root_unchanged(&before);
}
