#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The invariant catalog on the corpus and on twins.
//!
//! - Every corpus snapshot with a cluster.toml has `expected/verdicts` (one
//!   `name verdict` per line); the catalog must give exactly those verdicts,
//!   and every violation must come with a counterexample the model replays.
//!   `NATPATH_BLESS=1` rewrites the files (review the diff like code).
//! - The seed snapshots: every invariant holds, each in under a second
//!   (release builds).
//! - For each invariant, three twins: it holds on a good ruleset, it is
//!   violated (with a replayed counterexample) when one rule is removed, and
//!   it is unknown, naming the rule, when a rule on the path has a match
//!   natpath does not model.

use natpath_model::loc::Loc;
use natpath_model::ruleset::{Chain, MarkMask, Match, Neg, Policy, Rule, TableName, Target};
use natpath_model::snapshot::{self, Snapshot};
use natpath_verify::invariants::{self, CheckOptions, Outcome, Verdict, NAMES};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

#[track_caller]
fn load(name: &str) -> Snapshot {
    snapshot::load(&corpus().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn check(s: &Snapshot, name: &str) -> Verdict {
    invariants::check(s, name, &CheckOptions::default()).expect("a catalog name")
}

// ---------------------------------------------------------------------------
// Corpus verdicts.

fn corpus_verdicts(name: &str) {
    let dir = corpus().join(name);
    let snap = load(name);
    let vs = invariants::check_all(&snap, &CheckOptions::default());
    for v in &vs {
        if let Outcome::Violated(cx) = &v.outcome {
            assert!(cx.replay.confirmed, "{name}: {} has a counterexample the model does not replay", v.name);
        }
    }
    let got: String = vs.iter().map(|v| format!("{} {}\n", v.name, v.outcome.word())).collect();
    let file = dir.join("expected").join("verdicts");
    if std::env::var_os("NATPATH_BLESS").is_some() {
        std::fs::create_dir_all(dir.join("expected")).unwrap();
        std::fs::write(&file, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&file)
        .unwrap_or_else(|_| panic!("{}: missing; run with NATPATH_BLESS=1 and review it", file.display()));
    let report = natpath_verify::report::check::text(name, &snap, &vs, None, Default::default());
    assert_eq!(got, want, "{name}: verdicts differ from {}\n{report}", file.display());
}

#[test]
fn every_corpus_snapshot_has_expected_verdicts() {
    let mut missing = Vec::new();
    for e in std::fs::read_dir(corpus()).unwrap() {
        let p = e.unwrap().path();
        if p.join("cluster.toml").is_file() && !p.join("expected/verdicts").is_file() {
            missing.push(p.display().to_string());
        }
    }
    assert!(missing.is_empty(), "snapshots without expected/verdicts: {missing:?}");
}

macro_rules! corpus_test {
    ($f:ident, $snap:expr) => {
        #[test]
        fn $f() {
            corpus_verdicts($snap);
        }
    };
}

corpus_test!(corpus_seed_ipip_local, "seed-ipip-local");
corpus_test!(corpus_seed_ipip_remote, "seed-ipip-remote");
corpus_test!(corpus_kube_proxy_1_28, "kube-proxy-1.28");
corpus_test!(corpus_kube_proxy_1_28_lb, "kube-proxy-1.28-lb");
corpus_test!(corpus_multi_endpoint, "multi-endpoint");
corpus_test!(corpus_etp_local_with_endpoint, "etp-local-with-endpoint");
corpus_test!(corpus_etp_local_no_endpoint, "etp-local-no-endpoint");
corpus_test!(corpus_session_affinity, "session-affinity");
corpus_test!(corpus_calico_vxlan, "calico-vxlan");
corpus_test!(corpus_broken_no_mark_masq, "broken-no-mark-masq");
corpus_test!(corpus_node_listeners, "node-listeners");
corpus_test!(corpus_kube_proxy_cidr, "kube-proxy-cidr");

#[test]
fn seeds_hold_each_invariant_under_a_second() {
    for seed in ["seed-ipip-local", "seed-ipip-remote"] {
        let snap = load(seed);
        for name in NAMES {
            let t0 = std::time::Instant::now();
            let v = check(&snap, name);
            let took = t0.elapsed();
            assert_eq!(v.outcome, Outcome::Holds, "{seed}: {name}: {:?}", v.outcome);
            if !cfg!(debug_assertions) {
                assert!(took < Duration::from_secs(1), "{seed}: {name} took {took:?}");
            }
        }
    }
}

/// A Local Service's endpoint marks its own hairpin traffic (`-s POD/32
/// -j KUBE-MARK-MASQ` in its `KUBE-SEP-*`), so the mark entering nat
/// POSTROUTING turns on the source, and masq-iff-mark's goal does not fold
/// as it is built: it is false by its Boolean structure (the masquerade is
/// the same bit's test), which the propositional refutation before the
/// solver shows (eight solver queries on this snapshot without it).
#[test]
fn masq_iff_mark_over_a_hairpin_mark_needs_no_solver() {
    let snap = load("etp-local-with-endpoint");
    let v = check(&snap, "masq-iff-mark");
    assert_eq!(v.outcome, Outcome::Holds);
    assert_eq!(v.queries, 0, "{v:?}");
    assert!(v.folded > 0, "{v:?}");
}

// ---------------------------------------------------------------------------
// Twins.

fn loc(line: u32) -> Loc {
    Loc::new(&Arc::from("twin-rules"), line, 1)
}

fn chain_mut<'a>(s: &'a mut Snapshot, node: &str, table: TableName, chain: &str) -> &'a mut Chain {
    let n = s.nodes.iter_mut().find(|n| n.name == node).expect("node");
    let t = n.ruleset.tables.iter_mut().find(|t| t.name == table).expect("table");
    t.chains.iter_mut().find(|c| c.name == chain).expect("chain")
}

/// Remove the rules of `chain` for which `pick` holds (exactly one must).
fn remove(mut s: Snapshot, node: &str, table: TableName, chain: &str, pick: impl Fn(&Rule) -> bool) -> Snapshot {
    let c = chain_mut(&mut s, node, table, chain);
    let before = c.rules.len();
    c.rules.retain(|r| !pick(r));
    assert_eq!(c.rules.len() + 1, before, "{chain}: the twin must remove exactly one rule");
    s
}

/// Give the rule of `chain` that `pick` selects a match natpath does not model.
fn unsupported(mut s: Snapshot, node: &str, table: TableName, chain: &str, pick: impl Fn(&Rule) -> bool) -> Snapshot {
    let c = chain_mut(&mut s, node, table, chain);
    let r = c.rules.iter_mut().find(|r| pick(r)).expect("rule to mark");
    r.matches.insert(0, Match::Unsupported { module: "u32".into(), args: vec!["--u32".into(), "0x0=0x0".into()] });
    r.loc = loc(99);
    s
}

fn jumps(t: &str) -> impl Fn(&Rule) -> bool + '_ {
    move |r: &Rule| r.target.as_ref().and_then(|x| x.chain()) == Some(t)
}

fn is_mark_test(r: &Rule) -> bool {
    r.matches.iter().any(|m| matches!(m, Match::Mark(_))) && r.target == Some(Target::Return)
}

fn is_masquerade(r: &Rule) -> bool {
    matches!(r.target, Some(Target::Masquerade { .. }))
}

fn first_svc(s: &Snapshot, node: &str) -> String {
    let n = s.node(node).unwrap();
    let np = n.ruleset.table(TableName::Nat).unwrap().chain("KUBE-NODEPORTS").unwrap();
    np.rules
        .iter()
        .filter_map(|r| r.target.as_ref().and_then(|t| t.chain()))
        .find(|t| t.starts_with("KUBE-SVC-") || t.starts_with("KUBE-EXT-"))
        .unwrap()
        .to_string()
}

/// The three twins of one invariant.
#[track_caller]
fn twins(name: &str, good: Snapshot, broken: Snapshot, odd: Snapshot) {
    let v = check(&good, name);
    assert_eq!(v.outcome, Outcome::Holds, "{name} on the good ruleset: {:?}", v.outcome);
    let v = check(&broken, name);
    match &v.outcome {
        Outcome::Violated(cx) => assert!(cx.replay.confirmed, "{name}: counterexample does not replay"),
        o => panic!("{name} with one rule removed: expected a violation, got {o:?}"),
    }
    let v = check(&odd, name);
    match &v.outcome {
        Outcome::Unknown(why) => assert!(why.contains("twin-rules:99") && why.contains("-m u32"), "{name}: {why}"),
        o => panic!("{name} with an unsupported match: expected unknown, got {o:?}"),
    }
}

#[test]
fn twins_masq_iff_mark() {
    let good = load("seed-ipip-remote");
    twins(
        invariants::masq_iff_mark::NAME,
        good.clone(),
        remove(good.clone(), "node1", TableName::Nat, "KUBE-POSTROUTING", is_masquerade),
        unsupported(good, "node1", TableName::Nat, "KUBE-POSTROUTING", is_mark_test),
    );
}

/// A counterexample is any packet that breaks the invariant; the one shown
/// is the packet an operator would send: to the node's LAN address (a query
/// over all of its own addresses, LAN and tunnel, may find any), from a
/// `[[host]]` on that LAN (the source is free), from an ephemeral port.
#[test]
fn a_counterexample_is_the_packet_an_operator_would_send() {
    let good = load("seed-ipip-remote");
    let lan = good.node("node1").unwrap().lan_addrs()[0];
    let host = good.cluster.hosts[0].address.addr();
    let broken = remove(good, "node1", TableName::Nat, "KUBE-POSTROUTING", is_masquerade);
    let v = check(&broken, invariants::masq_iff_mark::NAME);
    let Outcome::Violated(cx) = &v.outcome else { panic!("expected a violation, got {:?}", v.outcome) };
    assert_eq!(cx.node, "node1");
    assert!(cx.replay.confirmed);
    // `tcp SRC:SPORT -> DST:DPORT`
    let (from, to) = cx.packet.trim_start_matches("tcp ").split_once(" -> ").unwrap();
    assert!(to.starts_with(&format!("{lan}:")), "{}", cx.packet);
    let (src, sport) = from.split_once(':').unwrap();
    assert_eq!(src, host.to_string(), "{}", cx.packet);
    let sport: u16 = sport.parse().unwrap();
    assert!((32768..=60999).contains(&sport), "{}", cx.packet);
}

#[test]
fn twins_reply_finds_origin() {
    // node1's acceptance of IPIP carriers from Calico hosts: without it the
    // reply's carrier from node2 is dropped, while the request still goes.
    let good = load("seed-ipip-remote");
    let ipip_accept =
        |r: &Rule| r.target == Some(Target::Accept) && r.matches.iter().any(|m| matches!(m, Match::Set(_)));
    twins(
        invariants::reply_finds_origin::NAME,
        good.clone(),
        remove(good.clone(), "node1", TableName::Filter, "cali-INPUT", ipip_accept),
        unsupported(good, "node1", TableName::Filter, "cali-INPUT", ipip_accept),
    );
}

#[test]
fn twins_mark_survives() {
    // A mangle FORWARD chain that resets 0x4000 for everything it has not
    // accepted, guarded by an accept of marked packets.
    let mut good = load("seed-ipip-remote");
    {
        let c = chain_mut(&mut good, "node1", TableName::Mangle, "FORWARD");
        let mut guard = Rule::empty(loc(10));
        guard.matches.push(Match::Mark(Neg::pos(MarkMask { value: 0x4000, mask: 0x4000 })));
        guard.target = Some(Target::Accept);
        let mut reset = Rule::empty(loc(11));
        reset.target = Some(Target::Mark { value: 0, mask: 0xffff });
        c.rules.push(guard);
        c.rules.push(reset);
        assert_eq!(c.policy, Some(Policy::Accept));
    }
    let guard = |r: &Rule| r.target == Some(Target::Accept) && r.loc.line == 10;
    twins(
        invariants::mark_survives::NAME,
        good.clone(),
        remove(good.clone(), "node1", TableName::Mangle, "FORWARD", guard),
        unsupported(good, "node1", TableName::Mangle, "FORWARD", guard),
    );
}

#[test]
fn twins_forward_only() {
    let good = load("seed-ipip-remote");
    let svc = first_svc(&good, "node1");
    twins(
        invariants::forward_only::NAME,
        good.clone(),
        remove(good.clone(), "node1", TableName::Nat, "KUBE-NODEPORTS", jumps(&svc)),
        unsupported(good, "node1", TableName::Nat, "KUBE-NODEPORTS", jumps(&svc)),
    );
}

#[test]
fn twins_nodeport_reachable() {
    let good = load("seed-ipip-remote");
    twins(
        invariants::nodeport_reachable::NAME,
        good.clone(),
        remove(good.clone(), "node1", TableName::Nat, "KUBE-NODEPORTS", jumps("KUBE-MARK-MASQ")),
        unsupported(good, "node1", TableName::Nat, "KUBE-NODEPORTS", jumps("KUBE-MARK-MASQ")),
    );
}

#[test]
fn twins_local_preserves_source() {
    let good = load("etp-local-with-endpoint");
    let ext = first_svc(&good, "node1");
    let svl = |r: &Rule| r.target.as_ref().and_then(|t| t.chain()).is_some_and(|t| t.starts_with("KUBE-SVL-"));
    twins(
        invariants::local_preserves_source::NAME,
        good.clone(),
        remove(good.clone(), "node1", TableName::Nat, "KUBE-POSTROUTING", is_mark_test),
        unsupported(good, "node1", TableName::Nat, &ext, svl),
    );
}

#[test]
fn twins_fair_balancing() {
    // Two endpoints at 1/2 each; without the last rule the second endpoint
    // never gets a connection; a source condition on a balancing rule makes
    // the share depend on the packet.
    let good = load("multi-endpoint");
    let svc = first_svc(&good, "node1");
    let last = |r: &Rule| {
        r.target.as_ref().and_then(|t| t.chain()).is_some_and(|t| t.starts_with("KUBE-SEP-"))
            && !r.matches.iter().any(|m| matches!(m, Match::Statistic { .. }))
    };
    let first = |r: &Rule| r.matches.iter().any(|m| matches!(m, Match::Statistic { .. }));
    twins(
        invariants::fair_balancing::NAME,
        good.clone(),
        remove(good.clone(), "node1", TableName::Nat, &svc, last),
        unsupported(good, "node1", TableName::Nat, &svc, first),
    );
}

#[test]
fn twins_no_pod_masquerade() {
    let good = load("seed-ipip-remote");
    twins(
        invariants::no_pod_masquerade::NAME,
        good.clone(),
        remove(good.clone(), "node1", TableName::Nat, "KUBE-POSTROUTING", is_mark_test),
        unsupported(good, "node1", TableName::Nat, "KUBE-POSTROUTING", is_mark_test),
    );
}

#[test]
fn twins_hairpin_masquerade() {
    let good = load("seed-ipip-local");
    let n = good.node("node1").unwrap();
    let sep = n
        .ruleset
        .table(TableName::Nat)
        .unwrap()
        .chains
        .iter()
        .find(|c| {
            c.name.starts_with("KUBE-SEP-")
                && c.rules.iter().any(|r| r.comments().any(|x| x.starts_with("default/nginx")))
        })
        .unwrap()
        .name
        .clone();
    twins(
        invariants::hairpin_masquerade::NAME,
        good.clone(),
        remove(good.clone(), "node1", TableName::Nat, &sep, jumps("KUBE-MARK-MASQ")),
        unsupported(good, "node1", TableName::Nat, &sep, jumps("KUBE-MARK-MASQ")),
    );
}

/// The text report shows a few notes per invariant and says how many more
/// there are; the JSON report keeps every one.
#[test]
fn text_report_caps_notes_json_keeps_them() {
    let snap = load("seed-ipip-remote");
    let mut vs = invariants::check(&snap, invariants::fair_balancing::NAME, &CheckOptions::default())
        .into_iter()
        .collect::<Vec<_>>();
    let v = vs.first_mut().unwrap();
    v.notes = (0..12).map(|i| format!("synthetic note {i}")).collect();
    let text = natpath_verify::report::check::text("seed-ipip-remote", &snap, &vs, None, Default::default());
    assert!(text.contains("synthetic note 4"), "{text}");
    assert!(!text.contains("synthetic note 5"), "{text}");
    assert!(text.contains("and 7 more like these"), "{text}");
    let json = natpath_verify::report::check::json(
        "seed-ipip-remote",
        &snap,
        &vs,
        None,
        natpath_verify::invariants::exit_code(&vs),
    );
    assert!(json.contains("synthetic note 11"), "{json}");
}

// ---------------------------------------------------------------------------
// The over-approximated passage (tables but nat summarized by their effects).

/// `seed-ipip-remote` with a filter FORWARD rule on node1, first in the
/// chain, whose match natpath cannot express and whose target is `target`.
fn forward_rule(target: Target) -> Snapshot {
    let mut s = load("seed-ipip-remote");
    let c = chain_mut(&mut s, "node1", TableName::Filter, "FORWARD");
    let mut r = Rule::empty(loc(99));
    r.matches.push(Match::Unsupported { module: "u32".into(), args: vec!["--u32".into(), "0x0=0x0".into()] });
    r.target = Some(target);
    c.rules.insert(0, r);
    s
}

/// The invariants about the ways out that are asked over-approximated
/// first.
const OVER: [&str; 6] = [
    invariants::masq_iff_mark::NAME,
    invariants::mark_survives::NAME,
    invariants::forward_only::NAME,
    invariants::local_preserves_source::NAME,
    invariants::no_pod_masquerade::NAME,
    invariants::hairpin_masquerade::NAME,
];

#[test]
fn seeds_are_settled_by_the_over_approximation() {
    for seed in ["seed-ipip-local", "seed-ipip-remote"] {
        let snap = load(seed);
        for name in OVER {
            let v = check(&snap, name);
            assert_eq!(v.outcome, Outcome::Holds, "{seed}: {name}");
            assert_eq!(v.refined, 0, "{seed}: {name}: the over-approximation left queries to the exact encoding");
        }
    }
}

/// A FORWARD rule natpath cannot match that can only drop: whichever way
/// it goes, no way out changes, so the invariants about the ways out hold
/// (the exact encoding alone would say unknown); reachability, which the
/// drop decides, stays unknown and names the rule.
#[test]
fn an_unmodelled_drop_in_forward_leaves_the_ways_out_proved() {
    let snap = forward_rule(Target::Drop);
    for name in OVER {
        let v = check(&snap, name);
        assert_eq!(v.outcome, Outcome::Holds, "{name}: {:?}", v.outcome);
    }
    let v = check(&snap, invariants::nodeport_reachable::NAME);
    match &v.outcome {
        Outcome::Unknown(why) => assert!(why.contains("twin-rules:99"), "{why}"),
        o => panic!("nodeport-reachable with an unmodelled drop in FORWARD: expected unknown, got {o:?}"),
    }
}

/// The same rule clearing the masquerade bit: the over-approximation frees
/// the bit and cannot settle the query; the exact encoding then says
/// unknown (the rule may or may not match), never holds.
#[test]
fn an_unmodelled_mark_write_in_forward_is_asked_exactly() {
    let snap = forward_rule(Target::Mark { value: 0, mask: 0x4000 });
    for name in [invariants::masq_iff_mark::NAME, invariants::mark_survives::NAME] {
        let v = check(&snap, name);
        assert!(v.refined > 0, "{name}: nothing was asked again exactly");
        match &v.outcome {
            Outcome::Unknown(why) => assert!(why.contains("twin-rules:99"), "{name}: {why}"),
            o => panic!("{name}: expected unknown, got {o:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The catalog on several threads, the heavy invariants cut by node.

/// Merged from its per-node parts, each verdict is the one a single run
/// over every node gives: the same outcome (the same first violation, the
/// same unknown reasons) and, without a violation, the same queries and
/// notes.
#[test]
fn node_parts_merge_to_the_single_run() {
    let snaps = vec![
        ("seed-ipip-remote", load("seed-ipip-remote")),
        ("broken-no-mark-masq", load("broken-no-mark-masq")),
        ("etp-local-no-endpoint", load("etp-local-no-endpoint")),
        ("an unmodelled drop in FORWARD", forward_rule(Target::Drop)),
    ];
    for (what, snap) in snaps {
        let parts = invariants::check_many(&snap, &NAMES, &CheckOptions::default());
        assert_eq!(parts.len(), NAMES.len(), "{what}: a verdict is missing");
        for v in &parts {
            let whole = check(&snap, v.name);
            let show = |o: &Outcome| match o {
                Outcome::Violated(cx) => format!("violated: {}", cx.summary),
                Outcome::Unknown(why) => format!("unknown: {why}"),
                Outcome::Holds => "holds".to_string(),
            };
            assert_eq!(show(&v.outcome), show(&whole.outcome), "{what}: {}", v.name);
            // A single run stops at its violation; the other nodes' parts
            // ran all the same, so only a verdict without one counts alike.
            if matches!(v.outcome, Outcome::Violated(_)) {
                continue;
            }
            assert_eq!(
                (v.queries, v.folded, v.refined),
                (whole.queries, whole.folded, whole.refined),
                "{what}: {}",
                v.name
            );
            assert_eq!(v.notes, whole.notes, "{what}: {}", v.name);
        }
    }
}

// ---------------------------------------------------------------------------
// The invariants checked over shared walks.

/// What a verdict says, for comparing two runs: the outcome with its
/// counterexample, the counts and the notes.
fn said(v: &Verdict) -> String {
    let outcome = match &v.outcome {
        Outcome::Holds => "holds".to_string(),
        Outcome::Unknown(why) => format!("unknown: {why}"),
        Outcome::Violated(cx) => format!("violated: {} | {} on {} by {}", cx.summary, cx.packet, cx.node, cx.iface),
    };
    format!("{outcome} | {} {} {} {} | {:?}", v.queries, v.folded, v.refined, v.same, v.notes)
}

/// reply-finds-origin and nodeport-reachable are checked over the same
/// walks, node by node; each says exactly what it says when checked alone
/// (counterexample, counts and notes), on snapshots where each is violated
/// and where both hold.
#[test]
fn the_walk_pair_says_alone_what_it_says_together() {
    let good = load("seed-ipip-remote");
    // reply-finds-origin's twins: node1 no longer accepts the reply's IPIP
    // carrier (violated), or accepts it by a match natpath cannot model.
    let ipip_accept =
        |r: &Rule| r.target == Some(Target::Accept) && r.matches.iter().any(|m| matches!(m, Match::Set(_)));
    let cases = [
        ("seed-ipip-remote", good.clone()),
        ("calico-vxlan", load("calico-vxlan")),
        ("broken-no-mark-masq", load("broken-no-mark-masq")),
        ("no ipip accept", remove(good.clone(), "node1", TableName::Filter, "cali-INPUT", ipip_accept)),
        ("unmodelled ipip accept", unsupported(good, "node1", TableName::Filter, "cali-INPUT", ipip_accept)),
    ];
    let mut violated: Vec<&str> = Vec::new();
    for (dir, s) in &cases {
        let all = invariants::check_all(s, &CheckOptions::default());
        for name in ["reply-finds-origin", "nodeport-reachable"] {
            let together = all.iter().find(|v| v.name == name).expect("in the catalog");
            let alone = check(s, name);
            assert_eq!(said(&alone), said(together), "{dir}: {name}");
            if matches!(together.outcome, Outcome::Violated(_)) {
                violated.push(name);
            }
        }
    }
    for name in ["reply-finds-origin", "nodeport-reachable"] {
        assert!(violated.contains(&name), "{name} is violated on none of the snapshots: the test compares nothing");
    }
}
