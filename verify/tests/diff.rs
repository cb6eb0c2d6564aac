//! The semantic diff and the gate on the corpus pairs (`corpus/pairs/*`):
//! every harmless rewrite (renamed chains, comments and counters,
//! kube-proxy's KUBE-EXT layout, reordered rules) is proven to change no
//! packet, with and without the structural shortcut; every real change is
//! found in the right Service port on the right nodes, with a packet the
//! model replays; the text report is pinned in each pair's `expected/`.
//! Then the gate: invariants newly failing, `--strict`, `[[allow]]`,
//! `[[expect]]` contracts, bad contracts with file:line; and a proptest of
//! random single-rule deletions in which every packet whose model fate
//! differs lies inside a reported change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::copy_dir;
use natpath_model::ruleset::Proto;
use natpath_model::snapshot::{self, Snapshot};
use natpath_verify::diff::{self, Diff};
use natpath_verify::gate::{self, Contracts, GateOptions};
use natpath_verify::invariants;
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

#[derive(Debug)]
struct Pair {
    name: String,
    dir: PathBuf,
    before: PathBuf,
    after: PathBuf,
    expect: String,
    changed: Vec<String>,
    /// The nodes where the diff finds the change (both by default).
    nodes: Vec<String>,
    /// The invariant the gate must find newly failing, for the pairs that
    /// break one (`inv-*`).
    invariant: Option<String>,
    /// The entries where the change shows (`nodeport` by default).
    entries: Vec<String>,
}

fn pairs() -> Vec<Pair> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(corpus().join("pairs")).unwrap() {
        let dir = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("pair.toml")) else { continue };
        let t: toml::Table = toml::from_str(&text).unwrap();
        let s = |k: &str| t[k].as_str().unwrap().to_string();
        v.push(Pair {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            before: dir.join(s("before")),
            after: dir.join(s("after")),
            expect: s("expect"),
            changed: t["changed"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            nodes: t.get("nodes").map_or_else(
                || vec!["node1".to_string(), "node2".to_string()],
                |n| n.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            ),
            invariant: t.get("invariant").map(|x| x.as_str().unwrap().to_string()),
            entries: t.get("entries").map_or_else(
                || vec!["nodeport".to_string()],
                |n| n.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            ),
            dir,
        });
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn load(p: &Path) -> Snapshot {
    snapshot::load(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn run_diff(p: &Pair, structural: bool) -> Diff {
    run_diff_with(p, structural, true)
}

fn run_diff_with(p: &Pair, structural: bool, pods: bool) -> Diff {
    diff::diff_with(
        &load(&p.before),
        &load(&p.after),
        (&format!("pairs/{}/before", p.name), &format!("pairs/{}/after", p.name)),
        &diff::DiffOptions { structural, pods, ..diff::DiffOptions::default() },
        &|_, _, _| {},
    )
    .unwrap()
}

#[track_caller]
fn golden(path: &Path, actual: &str) {
    if std::env::var_os("NATPATH_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("missing golden file {} (run with NATPATH_BLESS=1)", path.display()));
    assert_eq!(expected, actual, "{} differs; review and rewrite with NATPATH_BLESS=1", path.display());
}

#[test]
fn the_corpus_has_harmless_and_breaking_pairs() {
    let ps = pairs();
    let same = ps.iter().filter(|p| p.expect == "same").count();
    let changed = ps.iter().filter(|p| p.expect == "changed").count();
    assert!(same >= 4 && changed >= 3, "{ps:#?}");
}

#[test]
fn harmless_rewrites_change_no_packet_even_without_the_shortcut() {
    for p in pairs().iter().filter(|p| p.expect == "same" && p.invariant.is_none()) {
        for structural in [true, false] {
            let d = run_diff(p, structural);
            assert!(d.is_empty(), "{} (structural {structural}): {:#?}", p.name, d.changes);
            assert_eq!(d.exit_code(), 0);
            assert!(d.scope.entries >= 8, "{}: only {} entries", p.name, d.scope.entries);
            if !structural {
                assert_eq!(d.scope.unchanged, 0);
                assert!(d.scope.queries + d.scope.settled_while_encoding > 0, "{}: nothing was asked", p.name);
            }
        }
    }
}

#[test]
fn real_changes_are_found_in_their_service_on_every_node_with_a_replayed_packet() {
    for p in pairs().iter().filter(|p| p.expect == "changed") {
        let d = run_diff(p, true);
        assert_eq!(d.exit_code(), 1, "{}", p.name);
        assert!(d.unknown.is_empty(), "{}: {:#?}", p.name, d.unknown);
        let services: Vec<&str> = d
            .changes
            .iter()
            .filter(|c| p.entries.iter().any(|e| e == c.entry))
            .filter_map(|c| c.service.as_deref())
            .collect();
        assert_eq!(services, p.changed, "{}", p.name);
        for c in &d.changes {
            if p.entries.iter().any(|e| e == c.entry) {
                assert_eq!(c.nodes, p.nodes, "{}", p.name);
            }
            for e in &c.examples {
                assert_ne!(e.before_fates, e.after_fates, "{}: the model shows no difference", p.name);
                assert_ne!(e.before, e.after, "{}", p.name);
                assert!(!e.steps.is_empty() && !e.rules.is_empty(), "{}: no differing step", p.name);
            }
        }
        // The same answer from the solver alone.
        let exact = run_diff(p, false);
        assert_eq!(exact.changes.len(), d.changes.len(), "{}", p.name);
    }
}

#[test]
fn one_term_per_side_gives_the_same_answers_as_pair_by_pair() {
    for p in pairs() {
        let pairwise = run_diff(&p, false);
        let one_term = diff::diff_with(
            &load(&p.before),
            &load(&p.after),
            ("b", "a"),
            &diff::DiffOptions { structural: false, pods: true, max_pairs: 0, ..diff::DiffOptions::default() },
            &|_, _, _| {},
        )
        .unwrap();
        assert!(one_term.unknown.is_empty(), "{}: {:#?}", p.name, one_term.unknown);
        let key = |d: &Diff| -> Vec<String> {
            d.changes.iter().map(|c| format!("{} on {}", c.label(), c.nodes.join(","))).collect()
        };
        assert_eq!(key(&pairwise), key(&one_term), "{}", p.name);
    }
}

#[test]
fn a_removed_masquerade_jump_is_shown_at_its_dump_line() {
    let p = pairs().into_iter().find(|p| p.name == "no-mark-masq").unwrap();
    let d = run_diff(&p, true);
    let ex = &d.changes[0].examples[0];
    assert_eq!(ex.node, "node1");
    assert!(ex.after.starts_with("dropped (dropped on node2 by routing: reverse path filter)"), "{}", ex.after);
    assert_eq!(ex.before_fates.len(), 1);
    assert!(ex.before_fates[0].contains("sees 192.168.231.64 -> 192.168.233.136:80"), "{:?}", ex.before_fates);
    let first = &ex.rules[0];
    assert_eq!((first.side, first.line), ("before", 163));
    assert!(first.file.ends_with("seed-ipip-remote/nodes/node1/iptables-save"), "{}", first.file);
    assert!(first.text.ends_with("--dport 32220 -j KUBE-MARK-MASQ"), "{}", first.text);
    // node2's NodePort still delivers, but the pod sees the client itself.
    let ex2 = &d.changes[0].examples[1];
    assert!(ex2.after.contains("it sees 10.0.0.53 -> 192.168.233.136:80"), "{}", ex2.after);
}

#[test]
fn pods_reaching_a_cluster_ip_are_compared_with_pods() {
    let p = pairs().into_iter().find(|p| p.name == "second-endpoint").unwrap();
    let without = run_diff_with(&p, true, false);
    assert!(without.changes.iter().all(|c| c.entry != "cluster-ip"));
    assert!(without.notes[0].contains("traffic from pods and nodes"), "{:?}", without.notes);
    assert!(run_diff(&p, true).notes[0].contains("and from each node itself"));
    let d = run_diff(&p, true);
    assert!(d.scope.sources.contains(&"pod `default/nginx-854f5d4bbd-x7k2p` on node2".to_string()), "{:?}", d.scope);
    let c = d.changes.iter().find(|c| c.entry == "cluster-ip").unwrap();
    assert_eq!(c.label(), "cluster IP tcp/10.101.14.7:8080 (default/nginx:8080-80)");
    // The pod on node2, then each node's own packets (half now go to the
    // new pod on node1).
    assert_eq!(c.nodes, ["node2", "node1"]);
    assert_eq!(
        c.sources,
        ["pod `default/nginx-854f5d4bbd-x7k2p` on node2", "node `node1` itself", "node `node2` itself"]
    );
    let ex = &c.examples[0];
    assert!(ex.packet.starts_with("tcp 192.168.233.136:"), "{}", ex.packet);
    // The pod reaching its own Service is masqueraded (hairpin) before; after,
    // half of its packets go to the new pod on node1.
    assert!(ex.before_fates[0].contains("sees 10.0.0.52 -> 192.168.233.136:80"), "{:?}", ex.before_fates);
    assert_eq!(ex.after_fates.len(), 2, "{:?}", ex.after_fates);
}

/// With `--pods` each node sends to every cluster IP too: kube-proxy's
/// new target port reaches node1's own packet (its routes pick the
/// `tunl0` address, which the pod sees), replayed from the node.
#[test]
fn nodes_reaching_a_cluster_ip_are_compared_with_pods() {
    let p = pairs().into_iter().find(|p| p.name == "kp-target-port").unwrap();
    let d = run_diff(&p, true);
    assert!(d.unknown.is_empty(), "{:#?}", d.unknown);
    for n in ["node1", "node2"] {
        assert!(d.scope.sources.contains(&format!("node `{n}` itself")), "{:?}", d.scope);
    }
    let c = d.changes.iter().find(|c| c.entry == "cluster-ip").unwrap();
    assert!(c.sources.contains(&"node `node1` itself".to_string()), "{:?}", c.sources);
    let ex = c.examples.iter().find(|e| e.source == "node `node1` itself").unwrap();
    assert!(ex.packet.starts_with("tcp node1:"), "{}", ex.packet);
    assert!(ex.before.contains("its answer delivered to node node1"), "{}", ex.before);
    assert!(ex.before.contains("it sees 192.168.231.64 -> 192.168.233.136:80"), "{}", ex.before);
    assert!(ex.after.contains("does not listen"), "{}", ex.after);
    assert_ne!(ex.before_fates, ex.after_fates);
    // A change no node's own packet can meet leaves them out.
    let lb = pairs().into_iter().find(|p| p.name == "kp-lb-source-ranges").unwrap();
    let d = run_diff(&lb, true);
    assert!(d.changes.iter().all(|c| c.sources.iter().all(|s| !s.starts_with("node "))), "{:?}", d.changes);
}

/// With `--pods` each pod also sends to every other pod at the ports it
/// declares: a Calico policy on node1's pod (`calico-policy-deny`) drops
/// node2's pod, whose packets keep their pod address across the tunnel.
#[test]
fn pods_reaching_pods_are_compared_with_pods() {
    let p = pairs().into_iter().find(|p| p.name == "calico-policy-deny").unwrap();
    let without = run_diff_with(&p, true, false);
    assert!(without.changes.iter().all(|c| c.entry != "pod-to-pod"), "{:?}", without.changes);
    let d = run_diff(&p, true);
    assert!(d.unknown.is_empty(), "{:#?}", d.unknown);
    let pods: Vec<&diff::Change> = d.changes.iter().filter(|c| c.entry == "pod-to-pod").collect();
    assert_eq!(pods.len(), 1, "{:?}", d.changes.iter().map(|c| c.label()).collect::<Vec<_>>());
    let c = pods[0];
    assert_eq!(c.label(), "pod tcp/192.168.231.70:80 (default/nginx-6799fc88d8-wfztd)");
    assert_eq!((c.service.as_deref(), c.pod.as_deref()), (None, Some("default/nginx-6799fc88d8-wfztd")));
    assert_eq!(c.sources, ["pod `default/nginx-854f5d4bbd-x7k2p` on node2"]);
    let ex = &c.examples[0];
    assert!(ex.packet.starts_with("tcp 192.168.233.136:"), "{}", ex.packet);
    assert!(ex.before.starts_with("delivered to pod default/nginx-6799fc88d8-wfztd"), "{}", ex.before);
    assert!(ex.after.starts_with("dropped") && ex.after.contains("cali-tw-cali583c2cee4e2"), "{}", ex.after);
    // The other direction: node1's pod reaching node2's is the same.
    assert!(d.changes.iter().all(|c| c.pod.as_deref() != Some("default/nginx-854f5d4bbd-x7k2p")));
}

#[test]
fn a_second_endpoint_is_a_change_of_shares() {
    let p = pairs().into_iter().find(|p| p.name == "second-endpoint").unwrap();
    let d = run_diff(&p, true);
    let ex = &d.changes[0].examples[0];
    assert_eq!(ex.after_fates.len(), 2, "{:?}", ex.after_fates);
    assert!(ex.after_fates.iter().all(|f| f.ends_with("(probability 1/2)")), "{:?}", ex.after_fates);
}

/// What natpath prints does not depend on the threads it runs on: the
/// gate of every breaking pair, on all of both snapshots (counterexamples
/// and replayed packets included), with the diff of pods too, is the same
/// byte for byte on 1, 2 and 5 threads. (Z3's model for a query depends
/// on what its context saw before: a CI machine with more cores than the
/// one that wrote a golden file once printed another counterexample.)
#[test]
fn answers_do_not_depend_on_the_threads() {
    for p in pairs().into_iter().filter(|p| p.expect != "same" || p.invariant.is_some()) {
        let (b, a) = (rel(&p.before), rel(&p.after));
        let runs: Vec<(String, Option<i32>)> = ["1", "2", "5"]
            .iter()
            .map(|t| {
                let out = Command::new(env!("CARGO_BIN_EXE_natpath"))
                    .current_dir(corpus())
                    .env("NATPATH_THREADS", t)
                    .args(["gate", &b, &a, "--whole", "--pods", "--format", "json", "--quiet"])
                    .output()
                    .unwrap();
                (String::from_utf8(out.stdout).unwrap(), out.status.code())
            })
            .collect();
        assert!(runs[0].0.contains("\"invariants\""), "{}: {:?}", p.name, runs[0]);
        for r in &runs[1..] {
            let first = r.0.lines().zip(runs[0].0.lines()).find(|(x, y)| x != y);
            assert!(r == &runs[0], "{}: 1 thread and more differ: {first:?}", p.name);
        }
    }
}

/// The diff and the gate of every pair, in every format, as the command
/// line writes them from corpus/: `expected/diff.{txt,json,md}` and
/// `expected/gate.{txt,json,xml,sarif,md}`.
#[test]
fn reports_of_every_pair_are_pinned() {
    for p in pairs() {
        let (b, a) = (rel(&p.before), rel(&p.after));
        let run = |args: &[&str], file: &str| -> i32 {
            let out = Command::new(env!("CARGO_BIN_EXE_natpath")).current_dir(corpus()).args(args).output().unwrap();
            golden(&p.dir.join("expected").join(file), &String::from_utf8(out.stdout).unwrap());
            out.status.code().unwrap()
        };
        let want = if p.expect == "same" { 0 } else { 1 };
        for (format, file) in [("text", "diff.txt"), ("json", "diff.json"), ("markdown", "diff.md")] {
            assert_eq!(run(&["diff", &b, &a, "--format", format], file), want, "{} diff {format}", p.name);
        }
        for (format, file) in [
            ("text", "gate.txt"),
            ("json", "gate.json"),
            ("junit", "gate.xml"),
            ("sarif", "gate.sarif"),
            ("markdown", "gate.md"),
        ] {
            let code = run(&["gate", &b, &a, "--format", format], file);
            assert!(code == 0 || code == 1, "{} gate {format}: exit {code}", p.name);
            assert!(p.expect == "same" || code == 1, "{} gate {format}: a change with no [[allow]] passed", p.name);
        }
    }
}

/// A contracts file that allows every one of `services` to change.
fn allow_all(services: &[String]) -> String {
    services.iter().map(|s| format!("[[allow]]\nservice = \"{s}\"\nreason = \"meant\"\n")).collect()
}

/// A path relative to corpus/, as the reports print it.
fn rel(p: &Path) -> String {
    let c = corpus().canonicalize().unwrap();
    p.canonicalize().unwrap().strip_prefix(&c).unwrap().to_string_lossy().into_owned()
}

#[test]
fn snapshots_of_other_nodes_cannot_be_compared() {
    let out = Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(["diff", corpus().join("seed-ipip-remote").to_str().unwrap(), "/nonexistent/natpath"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A generated cluster has node-1..3, the seed node1 and node2.
    let dir = std::env::temp_dir().join(format!("natpath-diff-nodes-{}", std::process::id()));
    let g = Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(["generate", dir.to_str().unwrap(), "--services", "3"])
        .output()
        .unwrap();
    assert!(g.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(["gate", corpus().join("seed-ipip-remote").to_str().unwrap(), dir.to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the snapshots disagree on their nodes"), "{err}");
}

// ---------------------------------------------------------------------------
// The gate.

fn gate_of(before: &str, after: &str, contracts: Option<&str>, opts: GateOptions) -> gate::Gate {
    let c = contracts.map(|t| Contracts::parse(t, "contracts.toml").unwrap());
    gate::gate(
        &load(&corpus().join(before)),
        &load(&corpus().join(after)),
        (before, after),
        c.as_ref(),
        &opts,
        &|_, _, _| {},
    )
    .unwrap()
}

/// The changes kube-proxy's own rule writer made (corpus/kube-proxy-1.28):
/// each kind the gate must judge has a pair; the gate fails the ones that
/// change a packet's fate unless an `[[allow]]` names the Service, and
/// passes the ones that do not.
#[test]
fn changes_rendered_by_kube_proxy_are_judged_by_the_gate() {
    let kinds = [
        "endpoint-removed",
        "etp-local",
        "target-port",
        "session-affinity",
        "service-added",
        "service-deleted",
        "masquerade-all",
        "external-ip",
        "lb-added",
        "lb-source-ranges",
    ];
    let all = pairs();
    for k in kinds {
        let name = format!("kp-{k}");
        let p = all.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no pair {name}"));
        let after = format!("pairs/{name}/after");
        let before = rel(&p.before);
        let g = gate_of(&before, &after, None, GateOptions::default());
        if p.expect == "same" {
            assert_eq!((g.verdict, g.exit), ("pass", 0), "{name}");
            continue;
        }
        assert_eq!((g.verdict, g.exit), ("fail", 1), "{name}");
        let g = gate_of(&before, &after, Some(&allow_all(&p.changed)), GateOptions::default());
        let failing: Vec<&str> = g.invariants.iter().filter(|i| i.gate == "fail").map(|i| i.invariant).collect();
        if k == "target-port" {
            // The pod does not listen on the new port: allowed as a change,
            // but the NodePort no longer reaches a listening endpoint.
            assert_eq!(failing, ["nodeport-reachable"], "{name}");
            assert_eq!((g.verdict, g.exit), ("fail", 1), "{name}");
        } else {
            assert!(failing.is_empty(), "{name}: {failing:?}");
            assert_eq!((g.verdict, g.exit), ("pass", 0), "{name} with its [[allow]]");
        }
    }
}

/// One breaking pair per invariant of the catalog (`inv-*`, plus
/// `no-mark-masq` for the two it breaks): the gate finds exactly that
/// invariant newly failing, with a replayed counterexample's rules, even
/// with an `[[allow]]` for every Service port the diff finds changed.
#[test]
fn every_invariant_has_a_breaking_pair_the_gate_fails() {
    let all = pairs();
    let mut covered: Vec<String> = vec!["nodeport-reachable".into(), "reply-finds-origin".into()];
    for p in all.iter().filter(|p| p.invariant.is_some()) {
        let inv = p.invariant.clone().unwrap();
        let g = gate_of(&rel(&p.before), &rel(&p.after), Some(&allow_all(&p.changed)), GateOptions::default());
        let failing: Vec<&str> = g.invariants.iter().filter(|i| i.gate == "fail").map(|i| i.invariant).collect();
        assert!(failing.contains(&inv.as_str()), "{}: {failing:?}", p.name);
        assert_eq!((g.verdict, g.exit), ("fail", 1), "{}", p.name);
        let r = g.invariants.iter().find(|i| i.invariant == inv).unwrap();
        assert_eq!((r.before, r.after), ("holds", "violated"), "{}", p.name);
        assert!(r.detail.is_some(), "{}", p.name);
        covered.push(inv);
    }
    covered.sort();
    covered.dedup();
    let mut names: Vec<String> = invariants::NAMES.iter().map(|n| n.to_string()).collect();
    names.sort();
    assert_eq!(covered, names);
}

#[test]
fn the_gate_fails_a_newly_failing_invariant_and_an_unallowed_change() {
    let g = gate_of("seed-ipip-remote", "broken-no-mark-masq", None, GateOptions::default());
    assert_eq!((g.verdict, g.exit), ("fail", 1));
    let np = g.invariants.iter().find(|i| i.invariant == "nodeport-reachable").unwrap();
    assert_eq!((np.before, np.after, np.gate), ("holds", "violated", "fail"));
    assert!(!np.rules.is_empty());
    assert_eq!(g.changes.len(), 1);
    assert_eq!(g.changes[0].gate, "fail");
}

#[test]
fn an_allowed_change_passes_but_a_broken_invariant_still_fails() {
    let allow = "[[allow]]\nservice = \"default/nginx:8080-80\"\nreason = \"moving nginx\"\n";
    let g = gate_of("seed-ipip-local", "seed-ipip-remote", Some(allow), GateOptions::default());
    assert_eq!((g.verdict, g.exit), ("pass", 0), "{:#?}", g.invariants);
    assert_eq!(g.changes[0].allowed_by, Some(1));
    let g = gate_of("seed-ipip-remote", "broken-no-mark-masq", Some(allow), GateOptions::default());
    assert_eq!(g.verdict, "fail", "the invariant still fails");
    assert_eq!(g.changes[0].gate, "pass");
    let g = gate_of(
        "seed-ipip-local",
        "seed-ipip-remote",
        None,
        GateOptions { allow_changes: true, ..GateOptions::default() },
    );
    assert_eq!(g.verdict, "pass");
}

#[test]
fn a_failure_that_was_there_before_fails_only_with_strict() {
    // Where the change reaches (nowhere): nothing to fail.
    let g = gate_of("broken-no-mark-masq", "broken-no-mark-masq", None, GateOptions::default());
    assert_eq!(g.verdict, "pass");
    let np = g.invariants.iter().find(|i| i.invariant == "nodeport-reachable").unwrap();
    assert_eq!((np.before, np.after, np.gate, np.scope), ("holds", "holds", "pass", "touched"));
    assert!(np.same > 0);
    // The whole snapshots: reported, and still a pass.
    let g = gate_of(
        "broken-no-mark-masq",
        "broken-no-mark-masq",
        None,
        GateOptions { whole: true, ..GateOptions::default() },
    );
    assert_eq!(g.verdict, "pass");
    let np = g.invariants.iter().find(|i| i.invariant == "nodeport-reachable").unwrap();
    assert_eq!((np.before, np.after, np.gate, np.scope), ("violated", "violated", "pass", "whole"));
    let g = gate_of(
        "broken-no-mark-masq",
        "broken-no-mark-masq",
        None,
        GateOptions { strict: true, ..GateOptions::default() },
    );
    assert_eq!((g.verdict, g.exit), ("fail", 1));
}

#[test]
fn expect_contracts_are_checked_for_every_packet() {
    let delivered = "[[expect]]\nname = \"nginx from outside\"\nfrom = \"client\"\nservice = \"default/nginx:8080-80\"\nfate = \"delivered\"\nsource = \"masqueraded\"\n";
    let g = gate_of("seed-ipip-remote", "pairs/renamed-chains/after", Some(delivered), GateOptions::default());
    assert_eq!(g.contracts[0].verdict, "holds", "{:?}", g.contracts[0].detail);
    assert_eq!(g.verdict, "pass");
    // Without the masquerade jump node1's packets are dropped on node2.
    let g = gate_of("seed-ipip-remote", "broken-no-mark-masq", Some(delivered), GateOptions::default());
    assert_eq!(g.contracts[0].verdict, "violated");
    let d = g.contracts[0].detail.as_deref().unwrap();
    assert!(d.starts_with("node1: tcp client:") && d.contains("-> 10.0.0.51:32220 is dropped"), "{d}");
    // On node2 alone the packet is delivered, but the source is kept.
    let node2 = delivered.replace("fate =", "nodes = [\"node2\"]\nfate =");
    let g = gate_of("seed-ipip-remote", "broken-no-mark-masq", Some(&node2), GateOptions::default());
    assert_eq!(g.contracts[0].verdict, "violated", "{:?}", g.contracts[0].detail);
    let preserved = node2.replace("masqueraded", "preserved");
    let g = gate_of("seed-ipip-remote", "broken-no-mark-masq", Some(&preserved), GateOptions::default());
    assert_eq!(g.contracts[0].verdict, "holds", "{:?}", g.contracts[0].detail);
    let dropped =
        "[[expect]]\nfrom = \"client\"\nservice = \"default/nginx:8080-80\"\nnodes = [\"node1\"]\nfate = \"dropped\"\n";
    let g = gate_of("seed-ipip-remote", "broken-no-mark-masq", Some(dropped), GateOptions::default());
    assert_eq!(g.contracts[0].verdict, "holds", "{:?}", g.contracts[0].detail);
    assert_eq!(g.contracts[0].name, "expect #1");
}

/// `[[shares]]`: the exact spread of new connections over a Service's
/// endpoints on AFTER.
#[test]
fn shares_contracts_hold_the_exact_spread() {
    let equal = "[[shares]]\nname = \"nginx spreads evenly\"\nservice = \"default/nginx:8080-80\"\nsplit = \"equal\"\n";
    let g = gate_of(
        "seed-ipip-remote",
        "multi-endpoint",
        Some(equal),
        GateOptions { allow_changes: true, ..GateOptions::default() },
    );
    assert_eq!(g.contracts.len(), 1);
    assert_eq!((g.contracts[0].verdict, g.verdict), ("holds", "pass"), "{:?}", g.contracts);
    let halves = "[[shares]]\nservice = \"default/nginx:8080-80\"\nnodes = [\"node1\"]\nsplit = { \"192.168.233.136:80\" = \"1/2\", \"192.168.231.70:80\" = \"0.5\" }\n";
    let g = gate_of(
        "seed-ipip-remote",
        "multi-endpoint",
        Some(halves),
        GateOptions { allow_changes: true, ..GateOptions::default() },
    );
    assert_eq!(g.contracts[0].verdict, "holds", "{:?}", g.contracts);
    // Before the second endpoint, the one pod takes everything: a contract
    // that still says so fails on AFTER, naming what AFTER does.
    let one = "[[shares]]\nservice = \"default/nginx:8080-80\"\nsplit = { \"192.168.233.136:80\" = \"1\" }\n";
    let g = gate_of("seed-ipip-remote", "seed-ipip-remote", Some(one), GateOptions::default());
    assert_eq!(g.contracts[0].verdict, "holds");
    let g = gate_of(
        "seed-ipip-remote",
        "multi-endpoint",
        Some(one),
        GateOptions { allow_changes: true, ..GateOptions::default() },
    );
    assert_eq!((g.contracts[0].verdict, g.verdict, g.exit), ("violated", "fail", 1));
    let why = g.contracts[0].detail.as_deref().unwrap();
    assert!(why.contains("192.168.231.70:80 1/2") && why.contains("192.168.233.136:80 1/2"), "{why}");
    // kube-proxy's own rendering: one endpoint removed leaves none.
    let g = gate_of(
        "kube-proxy-1.28",
        "pairs/kp-endpoint-removed/after",
        Some(equal),
        GateOptions { allow_changes: true, ..GateOptions::default() },
    );
    assert_eq!(g.contracts[0].verdict, "violated", "{:?}", g.contracts);
}

#[test]
fn bad_contracts_name_their_file_and_line() {
    let cases = [
        ("[[allow]]\nservice = \"x\"\nwhy = \"typo\"\n", "contracts.toml:3: unknown field `why`, expected `service` or `reason`"),
        ("[[expect]]\nfrom = \"client\"\nservice = \"default/nginx:8080-80\"\nfate = \"open\"\n", "contracts.toml:1: expected `delivered`, `dropped` or `rejected` for `fate`, found `open`"),
        ("[[expect]]\nfrom = \"client\"\nservice = \"default/nginx:8080-80\"\nfate = \"dropped\"\nsource = \"preserved\"\n", "contracts.toml:1: `source` goes with `fate = \"delivered\"` only"),
        ("\n[[shares]]\nservice = \"default/nginx:8080-80\"\nsplit = \"fair\"\n", "contracts.toml:2: expected `split = \"equal\"` or a table of `\"ADDRESS:PORT\" = \"FRACTION\"` (`1/3`, `0.25`) for `split`"),
        ("[[shares]]\nservice = \"default/nginx:8080-80\"\nsplit = { \"192.168.233.136:80\" = \"1/2\", \"192.168.231.70:80\" = \"0.4\" }\n", "contracts.toml:1: the shares of `split` add up to 9/10, not 1"),
    ];
    for (text, want) in cases {
        let e = Contracts::parse(text, "contracts.toml").unwrap_err();
        assert_eq!(e.0, want);
    }
    // Names the snapshots lack.
    let before = load(&corpus().join("seed-ipip-remote"));
    for (text, want) in [
        ("\n[[allow]]\nservice = \"default/nginz:8080-80\"\n", "contracts.toml:2: no Service port `default/nginz:8080-80` in either snapshot"),
        ("[[expect]]\nfrom = \"laptop\"\nservice = \"default/nginx:8080-80\"\nfate = \"dropped\"\n", "contracts.toml:1: no [[host]] `laptop` in the AFTER snapshot"),
        ("[[expect]]\nfrom = \"client\"\nservice = \"default/nginx:8080-80\"\nnodes = [\"node3\"]\nfate = \"dropped\"\n", "contracts.toml:1: no node `node3` in the AFTER snapshot"),
    ] {
        let c = Contracts::parse(text, "contracts.toml").unwrap();
        let e = gate::gate(&before, &before, ("a", "b"), Some(&c), &GateOptions::default(), &|_, _, _| {}).unwrap_err();
        assert!(e.0.starts_with(want), "{}", e.0);
    }
    // On the command line: exit 2 and nothing on stdout.
    let dir = std::env::temp_dir().join(format!("natpath-contracts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("c.toml");
    std::fs::write(&f, "[[allow]]\nservice = \"default/nginx:8080-80\"\nreasons = \"x\"\n").unwrap();
    let snap = corpus().join("seed-ipip-remote");
    let out = Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(["gate", snap.to_str().unwrap(), snap.to_str().unwrap(), "--contracts", f.to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("c.toml:3: unknown field `reasons`"), "{err}");
}

// ---------------------------------------------------------------------------
// The diff against the model, on random single-rule deletions.

/// Every `-A` line of node `node`'s dump in `snap`, by line number.
fn rule_lines(snap: &Path, node: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(snap.join("nodes").join(node).join("iptables-save")).unwrap();
    text.lines().enumerate().filter(|(_, l)| l.starts_with("-A ")).map(|(i, _)| i).collect()
}

/// A copy of `snap` with line `line` of `node`'s dump removed.
fn without_line(snap: &Path, node: &str, line: usize, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("natpath-diff-prop-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(snap, &dir);
    let p = dir.join("nodes").join(node).join("iptables-save");
    let text = std::fs::read_to_string(&p).unwrap();
    let kept: Vec<&str> = text.lines().enumerate().filter(|(i, _)| *i != line).map(|(_, l)| l).collect();
    std::fs::write(&p, kept.join("\n") + "\n").unwrap();
    dir
}

/// The model's fates of one packet, as a comparable string.
fn model_fates(s: &Snapshot, from: &str, to: &str, proto: Proto, sport: u16) -> Option<String> {
    let p = natpath_model::walk::probe(s, from, to, proto, sport).ok()?;
    let t = natpath_model::walk::trace(s, &p, &Default::default()).ok()?;
    // The distribution of fates: branches that end alike add up (two
    // draws that both drop are one fate of probability 1).
    let mut m: std::collections::BTreeMap<String, natpath_model::trace::Prob> = std::collections::BTreeMap::new();
    for b in &t.branches {
        let fate = format!(
            "{:?} {:?} {:?} {:?}",
            b.outcome,
            b.delivered_to.as_ref().map(|d| &d.name),
            b.seen_by_destination.as_ref().map(|x| (x.src.rsplit_once(':').map(|y| y.0.to_string()), &x.dst)),
            b.reply.as_ref().map(|r| (r.outcome, r.seen_by_client.as_ref().map(|x| &x.src))),
        );
        *m.entry(fate).or_insert_with(|| natpath_model::trace::Prob::from_integer(0u32.into())) += b.prob.clone();
    }
    Some(m.iter().map(|(f, p)| format!("{f} {p}")).collect::<Vec<_>>().join(" | "))
}

/// A regression of the proptest below: deleting line 223 of node2 (the
/// `statistic` rule that splits kube-dns's two endpoints) leaves the pod's
/// DNS packet dropped either way; two branches that both drop are one fate
/// of probability 1, as the diff sees it, not a change.
#[test]
fn branches_that_end_alike_are_one_fate() {
    let base = corpus().join("seed-ipip-remote");
    let after_dir = without_line(&base, "node2", 222, "regression-223");
    let (before, after) = (load(&base), load(&after_dir));
    std::fs::remove_dir_all(&after_dir).unwrap();
    let pod = "default/nginx-854f5d4bbd-x7k2p";
    assert_eq!(
        model_fates(&before, pod, "10.96.0.10:53", Proto::UDP, 1024),
        model_fates(&after, pod, "10.96.0.10:53", Proto::UDP, 1024)
    );
}

mod deletions {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

        /// Remove one random rule of one node: every change the diff reports
        /// is confirmed by the model (it says so itself, or reports a BUG
        /// unknown), and every sampled packet whose model fate differs lies
        /// in a reported change of its node and port.
        #[test]
        fn deletions_agree_with_the_model(node in 0usize..2, pick in any::<proptest::sample::Index>(), sport in 1024u16..65535, other in 1u16..1024) {
            let base = corpus().join("seed-ipip-remote");
            let name = ["node1", "node2"][node];
            let lines = rule_lines(&base, name);
            let line = lines[pick.index(lines.len())];
            let after_dir = without_line(&base, name, line, &format!("{node}-{line}"));
            let before = load(&base);
            let loaded = snapshot::load(&after_dir);
            let Ok(after) = loaded else {
                // A deletion that leaves a chain undeclared use is bad input, not a diff.
                std::fs::remove_dir_all(&after_dir).unwrap();
                return Ok(());
            };
            let o = diff::DiffOptions { pods: true, ..diff::DiffOptions::default() };
            let d = diff::diff_with(&before, &after, ("before", "after"), &o, &|_, _, _| {}).unwrap();
            std::fs::remove_dir_all(&after_dir).unwrap();
            for u in &d.unknown {
                prop_assert!(!u.reason.contains("BUG"), "line {line} of {name}: {}: {}", u.entry, u.reason);
            }
            for (addr, n) in [("10.0.0.51", "node1"), ("10.0.0.52", "node2")] {
                for (proto, port) in [(Proto::TCP, 32220u16), (Proto::TCP, other), (Proto::UDP, other)] {
                    let to = format!("{addr}:{port}");
                    let (fb, fa) =
                        (model_fates(&before, "client", &to, proto, sport), model_fates(&after, "client", &to, proto, sport));
                    if fb == fa {
                        continue;
                    }
                    let pname = natpath_model::packet::proto_name(proto);
                    let covered = d.changes.iter().any(|c| {
                        c.entry != "cluster-ip"
                            && c.proto == pname
                            && c.nodes.iter().any(|x| x == n)
                            && (c.port == Some(port) || (c.port.is_none() && port != 32220))
                    }) || d.unknown.iter().any(|u| u.entry.starts_with(n));
                    prop_assert!(covered, "deleting line {} of {name}: {pname} to {to} changes in the model ({fb:?} -> {fa:?}) but the diff reports {:#?}", line + 1, d.changes);
                }
            }
            // The pod on node2 to each cluster IP of the seed.
            let pod = "default/nginx-854f5d4bbd-x7k2p";
            for (ip, port, proto) in [("10.101.14.7", 8080u16, Proto::TCP), ("10.96.0.10", 53, Proto::UDP), ("10.96.0.1", 443, Proto::TCP)] {
                let to = format!("{ip}:{port}");
                let (fb, fa) = (model_fates(&before, pod, &to, proto, sport), model_fates(&after, pod, &to, proto, sport));
                if fb == fa {
                    continue;
                }
                let covered = d.changes.iter().any(|c| {
                    c.entry == "cluster-ip" && c.address.as_deref() == Some(ip) && c.port == Some(port)
                }) || d.unknown.iter().any(|u| u.entry.contains(&to));
                prop_assert!(covered, "deleting line {} of {name}: {pod} to {to} changes in the model ({fb:?} -> {fa:?}) but the diff reports {:#?}", line + 1, d.changes);
            }
        }
    }
}

/// A node's `ss-listen` changes the fate of packets to its own ports: the
/// diff from a snapshot without it (every port answers) finds the ports
/// nothing listens on now, on both nodes, for TCP and UDP, each with a
/// packet the model replays as refused, and leaves the NodePort alone.
#[test]
fn what_a_node_listens_on_is_part_of_a_packets_fate() {
    let before = load(&corpus().join("seed-ipip-remote"));
    let after = load(&corpus().join("node-listeners"));
    let d =
        diff::diff_with(&before, &after, ("before", "after"), &diff::DiffOptions::default(), &|_, _, _| {}).unwrap();
    assert_eq!(d.exit_code(), 1);
    assert!(d.unknown.is_empty(), "{:#?}", d.unknown);
    let changed: Vec<(&str, &str)> = d.changes.iter().map(|c| (c.entry, c.proto.as_str())).collect();
    assert!(changed.contains(&("other-port", "tcp")) && changed.contains(&("other-port", "udp")), "{changed:?}");
    assert!(d.changes.iter().all(|c| c.entry != "nodeport"), "the NodePort is untouched: {changed:?}");
    for c in d.changes.iter().filter(|c| c.entry == "other-port") {
        assert_eq!(c.nodes, ["node1", "node2"]);
        for e in &c.examples {
            assert!(e.after.contains("does not listen on the port"), "{}", e.after);
            assert!(e.after_fates.iter().all(|f| f.starts_with("rejected")), "{:?}", e.after_fates);
        }
    }
}
