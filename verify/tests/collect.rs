//! `natpath collect` on real parts: every corpus snapshot rebuilt in
//! network namespaces (as `kernel-check` does), collected back through the
//! `exec` transport with the real `iptables-save`, `ip`, `ipset` and
//! `sysctl`, its cluster.toml written from the API objects saved beside it
//! (`corpus/<snapshot>/api/objects.json`, real kube-apiserver output); the
//! collected snapshot must give the same `check` verdicts and the same
//! trace of every probe as the original. One snapshot is loaded into
//! iptables-legacy, the rest into iptables-nft, so both back-end choices
//! are exercised.
//!
//! Contract: SKIPPED (with the reason) when this machine cannot build
//! namespaces; never a silent pass. One test at a time (a lock).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod common;
use common::corpus;
use natpath_verify::kernel::{self, KernelError, Options};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

const NATPATH: &str = env!("CARGO_BIN_EXE_natpath");

/// Every top-level corpus snapshot: those with a `cluster.toml`.
const SNAPSHOTS: &[&str] = &[
    "seed-ipip-remote",
    "seed-ipip-local",
    "broken-no-mark-masq",
    "calico-vxlan",
    "etp-local-no-endpoint",
    "etp-local-with-endpoint",
    "multi-endpoint",
    "session-affinity",
    "kube-proxy-1.28",
    "kube-proxy-1.28-lb",
    "node-listeners",
];

/// The one snapshot whose node namespaces use iptables-legacy.
const LEGACY: &str = "seed-ipip-local";

fn natpath(args: &[&str]) -> Output {
    Command::new(NATPATH).args(args).output().unwrap()
}

/// A scratch directory `out` of one test, inside a directory of its own
/// that also holds what the test writes beside `out`
/// (`out.with_extension(..)`): all of it is deleted when dropped, also
/// when the test fails, unless `NATPATH_KEEP` is set.
struct Scratch {
    base: PathBuf,
    out: PathBuf,
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.out
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.out
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("NATPATH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

fn tmp(tag: &str) -> Scratch {
    let base = std::env::temp_dir().join(format!("natpath-collect-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let out = base.join("out");
    std::fs::create_dir_all(&out).unwrap();
    Scratch { base, out }
}

/// `invariant → verdict` of `natpath check DIR --format json`.
fn verdicts(dir: &Path) -> Vec<(String, String)> {
    let o = natpath(&["check", dir.to_str().unwrap(), "--format", "json", "--quiet"]);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check {}: {e}\n{}", dir.display(), String::from_utf8_lossy(&o.stderr)));
    v["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["invariant"].as_str().unwrap().to_string(), x["verdict"].as_str().unwrap().to_string()))
        .collect()
}

/// The trace JSON of one probe, without the snapshot's path.
fn trace(dir: &Path, from: &str, to: &str, proto: &str) -> Value {
    let o =
        natpath(&["trace", dir.to_str().unwrap(), "--from", from, "--to", to, "--proto", proto, "--format", "json"]);
    // A refusal names its rule's dump by the path it was read from.
    let text = String::from_utf8_lossy(&o.stdout).replace(&format!("{}/", dir.display()), "SNAPSHOT/");
    let mut v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("trace {}: {e}\n{}", dir.display(), String::from_utf8_lossy(&o.stderr)));
    if let Some(m) = v.as_object_mut() {
        m.remove("snapshot");
    }
    v
}

/// The probes of a snapshot: (from, ip:port, proto).
fn probes(dir: &Path) -> Vec<(String, String, String)> {
    let Ok(text) = std::fs::read_to_string(dir.join("probes")) else { return Vec::new() };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (from, rest) = l.split_once(':').unwrap();
            let (to, proto) = rest.rsplit_once('/').unwrap();
            (from.to_string(), to.to_string(), proto.to_string())
        })
        .collect()
}

/// `--client` flags for the original's `[[host]]`s.
fn clients(dir: &Path) -> Vec<String> {
    let c: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("cluster.toml")).unwrap()).unwrap();
    c.get("host")
        .and_then(|h| h.as_array())
        .into_iter()
        .flatten()
        .map(|h| {
            let mut s = format!("{}={}", h["name"].as_str().unwrap(), h["address"].as_str().unwrap());
            if let Some(g) = h.get("gateway").and_then(|g| g.as_str()) {
                s = format!("{s},{g}");
            }
            s
        })
        .collect()
}

/// The users' kind of `--exec` template: a script of theirs that finds the
/// node's namespace and runs natpath's script there, as one argument.
fn namespace_template(out: &Path, nodes: &[(String, String)]) -> String {
    let map = out.with_extension("map.sh");
    let mut case = String::from("case \"$1\" in\n");
    for (node, ns) in nodes {
        case.push_str(&format!("  {node}) ns={ns} ;;\n"));
    }
    case.push_str("  *) echo \"unknown node $1\" >&2; exit 9 ;;\nesac\nexec ip netns exec \"$ns\" sh -c \"$2\"\n");
    std::fs::write(&map, case).unwrap();
    format!("sh {} {{node}} {{cmd}}", map.display())
}

/// `--client` flags for the original's `[[host]]`s.
fn client_args(src: &Path) -> Vec<String> {
    clients(src).into_iter().flat_map(|c| ["--client".to_string(), c]).collect()
}

/// The lab runs a node's servers only where its `ss-listen` says so: for a
/// node without one, the collected file says (truly, of the lab) that
/// nothing listens, where the original means "every port answers". Those
/// files are set aside; the nodes that keep theirs are returned.
fn set_aside_lab_listeners(src: &Path, out: &Path) -> Vec<PathBuf> {
    let mut kept = Vec::new();
    for n in std::fs::read_dir(out.join("nodes")).unwrap() {
        let n = n.unwrap().path();
        if src.join("nodes").join(n.file_name().unwrap()).join("ss-listen").exists() {
            kept.push(n);
        } else {
            std::fs::remove_file(n.join("ss-listen")).unwrap();
        }
    }
    kept
}

/// Collect `snap` back from its namespaces; `None` when this machine cannot build them.
fn round_trip(snap: &str, out: &Path) -> Option<Output> {
    let src = corpus().join(snap);
    let opts = Options { helper: Some(PathBuf::from(NATPATH)), legacy: snap == LEGACY, ..Options::default() };
    let r = kernel::with_cluster(&src, &opts, |nodes| {
        let template = namespace_template(out, nodes);
        let objects = src.join("api/objects.json");
        let mut args = vec![
            "collect".to_string(),
            out.display().to_string(),
            "--via".into(),
            "exec".into(),
            "--exec".into(),
            template,
            "--objects".into(),
            objects.display().to_string(),
        ];
        args.extend(client_args(&src));
        let all = Command::new(NATPATH).args(&args).output().unwrap();
        // The by-hand form on the first snapshot: `collect node` run inside
        // each node's namespace, then `collect cluster`.
        if snap == SNAPSHOTS[0] {
            let by_hand = out.with_extension("by-hand");
            for (node, ns) in nodes {
                let o = Command::new("ip")
                    .args(["netns", "exec", ns, NATPATH, "collect", "node", by_hand.to_str().unwrap(), "--name", node])
                    .output()
                    .unwrap();
                assert_eq!(o.status.code(), Some(0), "collect node {node}: {}", String::from_utf8_lossy(&o.stdout));
            }
            let mut args = vec!["collect".to_string(), "cluster".into(), by_hand.display().to_string()];
            args.extend(["--objects".to_string(), objects.display().to_string()]);
            args.extend(client_args(&src));
            let o = Command::new(NATPATH).args(&args).output().unwrap();
            assert_eq!(o.status.code(), Some(0), "collect cluster: {}", String::from_utf8_lossy(&o.stdout));
            assert_eq!(verdicts(&by_hand), verdicts(&src), "collected by hand");
            for f in ["iptables-save", "ip-route", "ip-addr", "ipset-save"] {
                let a = std::fs::read_to_string(by_hand.join("nodes/node1").join(f)).unwrap();
                let b = std::fs::read_to_string(out.join("nodes/node1").join(f)).unwrap();
                // Comments (dates) and counters aside.
                let strip = |t: &str| {
                    t.lines()
                        .filter(|l| !l.starts_with('#'))
                        .map(|l| if l.starts_with('[') { l.split_once("] ").map_or(l, |x| x.1) } else { l })
                        .map(|l| l.rsplit_once(" [").filter(|x| x.1.ends_with(']')).map_or(l, |x| x.0).to_string())
                        .collect::<Vec<_>>()
                };
                assert_eq!(strip(&a), strip(&b), "{f}: by hand and through --via exec differ");
            }
            let _ = std::fs::remove_dir_all(&by_hand);
        }
        all
    });
    match r {
        Ok(o) => Some(o),
        Err(KernelError::CannotRun(why)) => {
            println!("SKIPPED: {why}");
            eprintln!("SKIPPED: {why}");
            None
        }
        Err(e) => panic!("{snap}: {e}"),
    }
}

#[test]
fn every_corpus_snapshot_collected_back_from_the_kernel_gives_the_same_answers() {
    let _g = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = tmp("rt");
    for snap in SNAPSHOTS {
        let src = corpus().join(snap);
        let out = base.join(snap);
        let Some(o) = round_trip(snap, &out) else { return };
        let report = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{snap}: collect failed:\n{report}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        for n in set_aside_lab_listeners(&src, &out) {
            let collected = std::fs::read_to_string(n.join("ss-listen")).unwrap();
            assert!(collected.contains("0.0.0.0:22 "), "{snap}: the lab's stand-in for sshd is listed:\n{collected}");
        }
        // The rules come back as they went in, up to counters and the
        // order the kernel lists chains and tables in.
        for n in std::fs::read_dir(src.join("nodes")).unwrap() {
            let n = n.unwrap().file_name();
            // In natpath's canonical form: some corpus dumps are kube-proxy's
            // restore input, which iptables-save prints back in its own words.
            let rules = |p: &Path| {
                let text = std::fs::read_to_string(p).unwrap();
                let rs = natpath_model::parse::iptables::parse(&text, "x", &Default::default()).unwrap();
                let mut v: Vec<String> = natpath_model::print::iptables_save(&rs)
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .map(|l| if l.starts_with('[') { l.split_once("] ").map_or(l, |x| x.1) } else { l })
                    .map(|l| l.rsplit_once(" [").filter(|x| x.1.ends_with(']')).map_or(l, |x| x.0).to_string())
                    .collect();
                v.sort();
                v
            };
            assert_eq!(
                rules(&out.join("nodes").join(&n).join("iptables-save")),
                rules(&src.join("nodes").join(&n).join("iptables-save")),
                "{snap}: {}'s rules came back different",
                n.to_string_lossy()
            );
        }
        let want_backend = if *snap == LEGACY { "legacy" } else { "nft" };
        assert!(
            report
                .lines()
                .filter(|l| l.starts_with("node "))
                .all(|l| l.contains(&format!("(iptables backend {want_backend})"))),
            "{snap}: expected the {want_backend} backend:\n{report}"
        );
        if std::env::var_os("NATPATH_KEEP").is_some() {
            std::fs::write(out.join("report.txt"), report.as_bytes()).unwrap();
        }
        assert_eq!(verdicts(&out), verdicts(&src), "{snap}: check verdicts differ\n{report}");
        for (from, to, proto) in probes(&src) {
            assert_eq!(
                trace(&out, &from, &to, &proto),
                trace(&src, &from, &to, &proto),
                "{snap}: trace {from} -> {to}/{proto} differs"
            );
        }
    }
}

/// A copy of `snap`'s `nodes/` (what `collect node` would have written) in a fresh directory.
fn nodes_only(snap: &str, tag: &str) -> Scratch {
    let out = tmp(tag);
    common::copy_dir(&corpus().join(snap).join("nodes"), &out.join("nodes"));
    out
}

/// The `[[node]]`, `[[host]]` and `[[pod]]` tables of a cluster.toml, comments aside.
fn tables(path: &Path) -> toml::Value {
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn cluster_toml_from_the_saved_api_objects_is_the_hand_written_one() {
    for snap in SNAPSHOTS {
        let out = nodes_only(snap, &format!("cl-{snap}"));
        let objects = corpus().join(snap).join("api/objects.json");
        let mut args = vec!["collect", "cluster", out.to_str().unwrap(), "--objects", objects.to_str().unwrap()];
        let cl = client_args(&corpus().join(snap));
        args.extend(cl.iter().map(String::as_str));
        let o = natpath(&args);
        let report = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{snap}: {report}{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(tables(&out.join("cluster.toml")), tables(&corpus().join(snap).join("cluster.toml")), "{snap}");
        // The API's pods the dumps know nothing of are findings, not silence.
        assert!(report.contains("has no route to it through a device"), "{snap}: {report}");
        assert!(report.contains("pod kube-system/kube-proxy-") && report.contains("host network"), "{report}");
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn without_client_flags_a_free_address_on_the_lan_is_the_outside_client() {
    let out = nodes_only("seed-ipip-remote", "default-client");
    let objects = corpus().join("seed-ipip-remote/api/objects.json");
    let o = natpath(&["collect", "cluster", out.to_str().unwrap(), "--objects", objects.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    let t = tables(&out.join("cluster.toml"));
    let host = &t["host"][0];
    // The top of 10.0.0.0/24 that no node, route or neighbour uses, and the nodes' gateway.
    assert_eq!(host["address"].as_str(), Some("10.0.0.254/24"));
    assert_eq!(host["gateway"].as_str(), Some("10.0.0.1"));
    // The snapshot it makes checks like the original.
    assert_eq!(verdicts(&out), verdicts(&corpus().join("seed-ipip-remote")));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn redacted_public_addresses_leave_every_verdict_unchanged() {
    // The seed's LAN moved to a public /24, nodes, client, gateway, API and all.
    let src = tmp("public");
    common::copy_dir(&corpus().join("seed-ipip-remote"), &src);
    let mut files = vec![src.join("cluster.toml"), src.join("api/objects.json")];
    for n in ["node1", "node2"] {
        for f in std::fs::read_dir(src.join("nodes").join(n)).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    for f in &files {
        let t = std::fs::read_to_string(f).unwrap().replace("10.0.0.", "52.14.3.");
        std::fs::write(f, t).unwrap();
    }
    let before = verdicts(&src);
    assert_eq!(before, verdicts(&corpus().join("seed-ipip-remote")), "the move itself changes nothing");
    let out = tmp("redacted");
    common::copy_dir(&src.join("nodes"), &out.join("nodes"));
    let objects = src.join("api/objects.json");
    let o = natpath(&[
        "collect",
        "cluster",
        out.to_str().unwrap(),
        "--objects",
        objects.to_str().unwrap(),
        "--client",
        "client=52.14.3.53/24,52.14.3.1",
        "--redact",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    let mut all = String::new();
    for n in ["node1", "node2"] {
        for f in std::fs::read_dir(out.join("nodes").join(n)).unwrap() {
            all.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap());
        }
    }
    all.push_str(&std::fs::read_to_string(out.join("cluster.toml")).unwrap());
    assert!(!all.contains("52.14.3."), "a public address is left");
    assert!(all.contains("52."), "the first octet stays");
    assert_eq!(verdicts(&out), before);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&src);
}

#[test]
fn a_broken_kubeconfig_is_exit_3_with_kubectls_reason() {
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        println!("SKIPPED: kubectl is not installed");
        return;
    }
    let out = nodes_only("seed-ipip-remote", "bad-kubeconfig");
    // A server on loopback where nothing listens: kubectl itself fails.
    let kc = out.join("kubeconfig");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: x\n",
    )
    .unwrap();
    let o = natpath(&[
        "collect",
        "cluster",
        out.to_str().unwrap(),
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    let report = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{report}");
    assert!(report.contains("kubectl get nodes,pods,services,endpointslices` failed"), "{report}");
    assert!(!out.join("cluster.toml").exists());
    // The whole collection: no node list without the API, and it says how to give one.
    let o = natpath(&["collect", out.to_str().unwrap(), "--kubeconfig", kc.to_str().unwrap(), "--timeout", "20"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stdout).contains("give --nodes"), "{}", String::from_utf8_lossy(&o.stdout));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_node_that_fails_or_does_not_answer_is_named_and_the_others_are_kept() {
    let out = tmp("unreachable");
    let objects = corpus().join("seed-ipip-remote/api/objects.json");
    // node1 answers with this machine's own dumps (read-only); node2's
    // transport fails at once; node3 never answers.
    let wrap = out.with_extension("wrap.sh");
    std::fs::write(
        &wrap,
        "case \"$1\" in node1) exec sh -c \"$2\" ;; node2) echo 'ssh: connect to host node2 port 22: Connection refused' >&2; exit 255 ;; *) exec sleep 60 ;; esac\n",
    )
    .unwrap();
    let template = format!("sh {} {{node}} {{cmd}}", wrap.display());
    let o = natpath(&[
        "collect",
        out.to_str().unwrap(),
        "--via",
        "exec",
        "--exec",
        &template,
        "--nodes",
        "node1,node2,node3",
        "--objects",
        objects.to_str().unwrap(),
        "--timeout",
        "2",
    ]);
    let report = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{report}");
    assert!(report.contains("node node1: collected"), "{report}");
    assert!(
        report.contains("node node2: NOT collected: the transport failed (exit 255): ssh: connect to host node2"),
        "{report}"
    );
    assert!(report.contains("node node3: NOT collected: no answer within 2 s"), "{report}");
    assert!(out.join("nodes/node1/iptables-save").is_file());
    assert!(!out.join("nodes/node2").exists());
    assert!(std::fs::read_to_string(out.join("collect/node3.txt")).unwrap().contains("no answer"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_dump_that_does_not_parse_is_exit_2_at_its_file_and_line() {
    let out = tmp("garbled");
    let objects = corpus().join("seed-ipip-remote/api/objects.json");
    // node1's `ip route` prints a line no `ip` ever prints.
    let wrap = out.with_extension("wrap.sh");
    std::fs::write(&wrap, "sh -c \"$2\" | sed 's/^local 127.0.0.1 dev lo/local 127.0.0.1 frobnicate lo/'\n").unwrap();
    let template = format!("sh {} {{node}} {{cmd}}", wrap.display());
    let o = natpath(&[
        "collect",
        out.to_str().unwrap(),
        "--via",
        "exec",
        "--exec",
        &template,
        "--nodes",
        "node1",
        "--objects",
        objects.to_str().unwrap(),
    ]);
    let report = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{report}");
    assert!(report.contains("does not load"), "{report}");
    assert!(report.contains("nodes/node1/ip-route:"), "{report}");
    assert!(out.join("nodes/node1/ip-route").is_file(), "what was collected is kept");
    let _ = std::fs::remove_dir_all(&out);
}

/// A real API server to test `--via kubectl` against: the kubeconfig in
/// `NATPATH_TEST_KUBECONFIG`, holding seed-ipip-remote's objects
/// (`corpus/api/load.py`) and no kubelet, so debug pods never start. CI has
/// none (no kube-apiserver can be built there): SKIPPED.
fn test_kubeconfig() -> Option<String> {
    let Some(k) = std::env::var_os("NATPATH_TEST_KUBECONFIG") else {
        println!("SKIPPED: NATPATH_TEST_KUBECONFIG is not set (no API server to test kubectl against)");
        return None;
    };
    Some(k.to_string_lossy().into_owned())
}

fn debug_pods(kc: &str) -> Vec<(String, bool)> {
    let o = Command::new("kubectl").args(["--kubeconfig", kc, "get", "pods", "-o", "json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let name = p["metadata"]["name"].as_str()?;
            name.starts_with("node-debugger-")
                .then(|| (name.to_string(), p["metadata"]["deletionTimestamp"].is_string()))
        })
        .collect()
}

#[test]
fn with_a_real_api_server_the_cluster_half_and_debug_pod_cleanup_work() {
    let Some(kc) = test_kubeconfig() else { return };
    // The cluster half through kubectl equals the one from the saved objects.
    let a = nodes_only("seed-ipip-remote", "api-live");
    let b = nodes_only("seed-ipip-remote", "api-saved");
    let objects = corpus().join("seed-ipip-remote/api/objects.json");
    let o = natpath(&["collect", "cluster", a.to_str().unwrap(), "--kubeconfig", &kc]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    natpath(&["collect", "cluster", b.to_str().unwrap(), "--objects", objects.to_str().unwrap()]);
    assert_eq!(tables(&a.join("cluster.toml")), tables(&b.join("cluster.toml")));
    // A debug pod that cannot start: the deadline ends it and deletes the pod.
    let before: Vec<String> = debug_pods(&kc).into_iter().map(|p| p.0).collect();
    let out = tmp("api-debug");
    let o = natpath(&["collect", out.to_str().unwrap(), "--kubeconfig", &kc, "--nodes", "node1", "--timeout", "5"]);
    let report = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{report}");
    assert!(report.contains("node node1: NOT collected: no answer within 5 s"), "{report}");
    let notes = std::fs::read_to_string(out.join("collect/node1.txt")).unwrap();
    let created: Vec<(String, bool)> = debug_pods(&kc).into_iter().filter(|p| !before.contains(&p.0)).collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(created[0].1, "debug pod {} was not deleted", created[0].0);
    assert!(notes.contains(&format!("deleted debug pod {}", created[0].0)), "{notes}");
    // Ctrl-C: every debug pod in flight is deleted before natpath exits.
    let before: Vec<String> = debug_pods(&kc).into_iter().map(|p| p.0).collect();
    let mut child = Command::new(NATPATH)
        .args(["collect", out.to_str().unwrap(), "--kubeconfig", &kc, "--nodes", "node1,node2", "--timeout", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut created = Vec::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        created = debug_pods(&kc).into_iter().filter(|p| !before.contains(&p.0)).collect();
        if created.len() == 2 {
            break;
        }
    }
    assert_eq!(created.len(), 2, "{created:?}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let after: Vec<(String, bool)> = debug_pods(&kc).into_iter().filter(|p| !before.contains(&p.0)).collect();
    assert!(after.iter().all(|p| p.1), "left behind: {after:?}");
    for d in [a, b, out] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The node half on every before/after snapshot of `corpus/pairs` (they have
/// no API objects: their own cluster.toml is put beside the collected
/// nodes): rebuilt in namespaces, collected back through `--via exec`, the
/// same `check` verdicts.
#[test]
fn every_pair_side_collected_back_from_the_kernel_checks_the_same() {
    let _g = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = tmp("pairs");
    let mut sides: Vec<PathBuf> = Vec::new();
    for p in std::fs::read_dir(corpus().join("pairs")).unwrap() {
        for side in ["before", "after"] {
            let d = p.as_ref().unwrap().path().join(side);
            if d.join("cluster.toml").is_file() {
                sides.push(d);
            }
        }
    }
    sides.sort();
    // A side that names a top-level snapshot (`before = "../../seed-ipip-remote"`) is checked above.
    assert!(sides.len() >= 20, "{}", sides.len());
    for (i, src) in sides.iter().enumerate() {
        let out = base.join(i.to_string());
        let opts = Options { helper: Some(PathBuf::from(NATPATH)), ..Options::default() };
        let r = kernel::with_cluster(src, &opts, |nodes| {
            let template = namespace_template(&out, nodes);
            let names: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
            natpath(&[
                "collect",
                out.to_str().unwrap(),
                "--via",
                "exec",
                "--exec",
                &template,
                "--nodes",
                &names.join(","),
            ])
        });
        let o = match r {
            Ok(o) => o,
            Err(KernelError::CannotRun(why)) => {
                println!("SKIPPED: {why}");
                return;
            }
            Err(e) => panic!("{}: {e}", src.display()),
        };
        // Exit 3: no API to write cluster.toml from; every node collected.
        let report = String::from_utf8_lossy(&o.stdout);
        assert!(!report.contains("NOT collected"), "{}: {report}", src.display());
        std::fs::copy(src.join("cluster.toml"), out.join("cluster.toml")).unwrap();
        set_aside_lab_listeners(src, &out);
        assert_eq!(verdicts(&out), verdicts(src), "{}: check verdicts differ\n{report}", src.display());
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Bad usage is exit 2 before anything runs on a node, with what was expected.
#[test]
fn bad_usage_is_exit_2_before_any_node_is_read() {
    let out = tmp("usage");
    let objects = corpus().join("seed-ipip-remote/api/objects.json");
    let o = objects.to_str().unwrap();
    let d = out.join("snap");
    let d = d.to_str().unwrap();
    for (args, want) in [
        (vec!["collect", d, "--via", "exec", "--exec", "sh -c {cmd} {cmd}", "--nodes", "a"], "exactly once (found 2)"),
        (
            vec!["collect", d, "--via", "exec", "--exec", "sh -c {cmd}", "--nodes", "Bad_Name", "--objects", o],
            "expected a Kubernetes node name",
        ),
        (
            vec!["collect", d, "--via", "exec", "--exec", "sh -c {cmd}", "--nodes", "a", "--objects", "/dev/zero"],
            "expected a regular file",
        ),
        (vec!["collect", d, "--via", "exec", "--nodes", "a"], "needs --exec TEMPLATE"),
        (
            vec!["collect", d, "--via", "ssh", "--ssh-target", "root@host", "--nodes", "a", "--objects", o],
            "expected a destination with {node}",
        ),
        (vec!["collect", "cluster", d, "--client", "client=10.0.0.53"], "expected NAME=ADDRESS/LEN"),
    ] {
        let r = natpath(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!Path::new(d).join("nodes").exists(), "{args:?}: a node was read");
    }
    let _ = std::fs::remove_dir_all(&out);
}
