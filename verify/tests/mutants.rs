#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Mutation tests of the invariant catalog: single-rule mutations of the
//! seed snapshots that break an invariant the way the kernel would show are
//! each caught by the right invariant, with a counterexample the model
//! replays; harmless mutations (a comment, a counter) are not flagged; and a
//! family of generated mutations reports its detection rate.

use natpath_model::netstate::RouteType;
use natpath_model::ruleset::{Chain, Match, Rule, StatisticMode, TableName, Target};
use natpath_model::snapshot::{self, Snapshot};
use natpath_verify::invariants::{self, CheckOptions, Outcome, Verdict};
use std::path::Path;

#[track_caller]
fn seed(name: &str) -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(name);
    match snapshot::load(&dir) {
        Ok(s) => s,
        Err(e) => panic!("{name} does not load: {e}"),
    }
}

fn node_mut<'a>(s: &'a mut Snapshot, node: &str) -> &'a mut natpath_model::snapshot::Node {
    s.nodes.iter_mut().find(|n| n.name == node).expect("node")
}

fn chain_mut<'a>(s: &'a mut Snapshot, node: &str, table: TableName, chain: &str) -> &'a mut Chain {
    let n = node_mut(s, node);
    let t = n.ruleset.tables.iter_mut().find(|t| t.name == table).expect("table");
    t.chains.iter_mut().find(|c| c.name == chain).expect("chain")
}

/// A mutation: what it does, and the invariants allowed to catch it
/// (empty: harmless, nothing may be flagged).
struct Mutant {
    name: String,
    snap: Snapshot,
    expect: Vec<&'static str>,
}

fn verdicts(s: &Snapshot) -> Vec<Verdict> {
    invariants::check_all(s, &CheckOptions::default())
}

fn describe(vs: &[Verdict]) -> String {
    vs.iter()
        .map(|v| match &v.outcome {
            Outcome::Holds => format!("{} holds", v.name),
            Outcome::Violated(cx) => format!("{} VIOLATED: {} [replay: {}]", v.name, cx.summary, cx.replay.outcome),
            Outcome::Unknown(w) => format!("{} UNKNOWN: {w}", v.name),
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

fn named_mutants() -> Vec<Mutant> {
    let mut v = Vec::new();
    for (base, far) in [("seed-ipip-local", "node2"), ("seed-ipip-remote", "node1")] {
        // 1. Drop the KUBE-MARK-MASQ jump of the NodePort on the node that
        // forwards to a remote endpoint (where the kernel shows it).
        let mut s = seed(base);
        chain_mut(&mut s, far, TableName::Nat, "KUBE-NODEPORTS")
            .rules
            .retain(|r| r.target != Some(Target::Jump("KUBE-MARK-MASQ".into())));
        v.push(Mutant {
            name: format!("{base}: drop the KUBE-MARK-MASQ jump in KUBE-NODEPORTS on {far}"),
            snap: s,
            expect: vec!["nodeport-reachable", "reply-finds-origin"],
        });
        // 2. 0x4000 -> 0x400 in KUBE-MARK-MASQ.
        let mut s = seed(base);
        for r in &mut chain_mut(&mut s, "node1", TableName::Nat, "KUBE-MARK-MASQ").rules {
            r.target = Some(Target::Mark { value: 0x400, mask: 0x400 });
        }
        v.push(Mutant {
            name: format!("{base}: KUBE-MARK-MASQ sets 0x400 on node1"),
            snap: s,
            expect: vec!["masq-iff-mark"],
        });
        // 2b. 0x4000 -> 0x400 in KUBE-POSTROUTING's test.
        let mut s = seed(base);
        for r in &mut chain_mut(&mut s, "node1", TableName::Nat, "KUBE-POSTROUTING").rules {
            for m in &mut r.matches {
                if let Match::Mark(n) = m {
                    n.value.value = 0x400;
                    n.value.mask = 0x400;
                }
            }
        }
        v.push(Mutant {
            name: format!("{base}: KUBE-POSTROUTING tests 0x400 on node1"),
            snap: s,
            expect: vec!["masq-iff-mark"],
        });
        // 3. Reorder the RETURN in KUBE-POSTROUTING (after the xor).
        let mut s = seed(base);
        let c = chain_mut(&mut s, "node1", TableName::Nat, "KUBE-POSTROUTING");
        c.rules.swap(0, 1);
        v.push(Mutant {
            name: format!("{base}: KUBE-POSTROUTING's RETURN after the mark xor on node1"),
            snap: s,
            expect: vec!["masq-iff-mark"],
        });
        // 5. Clear the mark in a Calico chain: cali-FORWARD's reset takes 0x4000 too.
        let mut s = seed(base);
        for r in &mut chain_mut(&mut s, "node1", TableName::Filter, "cali-FORWARD").rules {
            if let Some(Target::Mark { value, mask }) = &r.target {
                if *value == 0 {
                    r.target = Some(Target::Mark { value: 0, mask: mask | 0x4000 });
                }
            }
        }
        v.push(Mutant {
            name: format!("{base}: cali-FORWARD clears 0x4000 on node1"),
            snap: s,
            expect: vec!["mark-survives"],
        });
        // Harmless: a comment, a counter.
        let mut s = seed(base);
        let c = chain_mut(&mut s, "node1", TableName::Nat, "KUBE-NODEPORTS");
        if let Some(r) = c.rules.first_mut() {
            r.matches.push(Match::Comment("added by a mutant".into()));
        }
        v.push(Mutant { name: format!("{base}: a comment on a KUBE-NODEPORTS rule"), snap: s, expect: vec![] });
        let mut s = seed(base);
        for c in &mut node_mut(&mut s, "node1").ruleset.tables.iter_mut().flat_map(|t| t.chains.iter_mut()) {
            for r in &mut c.rules {
                r.counters = Some(Box::new(natpath_model::ruleset::Counters { packets: 42, bytes: 4242 }));
            }
        }
        v.push(Mutant { name: format!("{base}: counters on every rule of node1"), snap: s, expect: vec![] });
    }
    // 4. Delete the tunnel route towards the endpoint's node.
    let mut s = seed("seed-ipip-remote");
    node_mut(&mut s, "node1")
        .routes
        .retain(|r| !(r.kind == RouteType::Unicast && r.nexthops.iter().any(|h| h.dev.as_deref() == Some("tunl0"))));
    v.push(Mutant {
        name: "seed-ipip-remote: delete node1's tunnel route to node2's block".into(),
        snap: s,
        expect: vec!["nodeport-reachable"],
    });
    let mut s = seed("seed-ipip-local");
    node_mut(&mut s, "node2")
        .routes
        .retain(|r| !(r.kind == RouteType::Unicast && r.nexthops.iter().any(|h| h.dev.as_deref() == Some("tunl0"))));
    v.push(Mutant {
        name: "seed-ipip-local: delete node2's tunnel route to node1's block".into(),
        snap: s,
        expect: vec!["nodeport-reachable"],
    });
    v
}

#[test]
fn named_mutants_are_caught_by_the_right_invariant() {
    let mut failures = Vec::new();
    for m in named_mutants() {
        let vs = verdicts(&m.snap);
        let violated: Vec<&str> =
            vs.iter().filter(|v| matches!(v.outcome, Outcome::Violated(_))).map(|v| v.name).collect();
        let unknown: Vec<&str> =
            vs.iter().filter(|v| matches!(v.outcome, Outcome::Unknown(_))).map(|v| v.name).collect();
        println!("{}\n  {}", m.name, describe(&vs));
        let ok = if m.expect.is_empty() {
            violated.is_empty() && unknown.is_empty()
        } else {
            unknown.is_empty() && violated.iter().any(|n| m.expect.contains(n))
        };
        if !ok {
            failures
                .push(format!("{}: expected {:?}, got violated {violated:?} unknown {unknown:?}", m.name, m.expect));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Generated mutations of seed case B (the cross-node case): delete each
/// rule of the chains on the NodePort's path, widen each Calico mark reset
/// to take kube-proxy's bit, flip each mark test, move each DNAT to another
/// port and skew each random draw.
fn generated() -> Vec<(String, Snapshot)> {
    let base = seed("seed-ipip-remote");
    let mut v = Vec::new();
    let chains: &[(TableName, &str)] = &[
        (TableName::Nat, "PREROUTING"),
        (TableName::Nat, "POSTROUTING"),
        (TableName::Nat, "KUBE-NODEPORTS"),
        (TableName::Nat, "KUBE-SVC-DR2DYVPMBY3GPZ5L"),
        (TableName::Nat, "KUBE-POSTROUTING"),
        (TableName::Nat, "KUBE-MARK-MASQ"),
        (TableName::Nat, "cali-POSTROUTING"),
        (TableName::Nat, "cali-nat-outgoing"),
        (TableName::Filter, "FORWARD"),
        (TableName::Filter, "KUBE-FORWARD"),
        (TableName::Filter, "cali-FORWARD"),
        (TableName::Filter, "cali-INPUT"),
        (TableName::Mangle, "cali-PREROUTING"),
        (TableName::Raw, "cali-PREROUTING"),
    ];
    for node in ["node1", "node2"] {
        let n = base.nodes.iter().find(|n| n.name == node).expect("node");
        let seps: Vec<String> = n
            .ruleset
            .table(TableName::Nat)
            .map(|t| {
                t.chains
                    .iter()
                    .filter(|c| c.rules.iter().any(|r| r.comments().any(|c| c.starts_with("default/nginx"))))
                    .map(|c| c.name.clone())
                    .filter(|c| c.starts_with("KUBE-SEP-"))
                    .collect()
            })
            .unwrap_or_default();
        let mut names: Vec<(TableName, String)> = chains.iter().map(|(t, c)| (*t, c.to_string())).collect();
        names.extend(seps.into_iter().map(|c| (TableName::Nat, c)));
        for (t, c) in names {
            let Some(len) = n.ruleset.table(t).and_then(|x| x.chain(&c)).map(|x| x.rules.len()) else { continue };
            for i in 0..len {
                let mut s = base.clone();
                chain_mut(&mut s, node, t, &c).rules.remove(i);
                v.push((format!("{node}: delete {} {c} rule {}", t.as_str(), i + 1), s));
            }
        }
        // Mark resets and tests.
        for t in [TableName::Filter, TableName::Mangle, TableName::Raw] {
            let Some(table) = n.ruleset.table(t) else { continue };
            for c in &table.chains {
                for (i, r) in c.rules.iter().enumerate() {
                    if let Some(Target::Mark { value, mask }) = r.target {
                        if mask & 0x4000 == 0 && value & 0x4000 == 0 {
                            let mut s = base.clone();
                            chain_mut(&mut s, node, t, &c.name).rules[i].target =
                                Some(Target::Mark { value, mask: mask | 0x4000 });
                            v.push((format!("{node}: {} {} rule {} also clears 0x4000", t.as_str(), c.name, i + 1), s));
                        }
                    }
                }
            }
        }
        // Mark tests flipped in nat.
        if let Some(table) = n.ruleset.table(TableName::Nat) {
            for c in &table.chains {
                for (i, r) in c.rules.iter().enumerate() {
                    if r.matches.iter().any(|m| matches!(m, Match::Mark(_))) {
                        let mut s = base.clone();
                        for m in &mut chain_mut(&mut s, node, TableName::Nat, &c.name).rules[i].matches {
                            if let Match::Mark(x) = m {
                                x.neg = !x.neg;
                            }
                        }
                        v.push((format!("{node}: nat {} rule {} tests the mark the other way", c.name, i + 1), s));
                    }
                    if let Some(Target::Dnat { to, random, persistent }) = &r.target {
                        if r.comments().any(|c| c.starts_with("default/nginx")) {
                            let mut to = to.clone();
                            for x in &mut to {
                                x.ports = Some(natpath_model::ruleset::PortRange::single(8081));
                            }
                            let mut s = base.clone();
                            chain_mut(&mut s, node, TableName::Nat, &c.name).rules[i].target =
                                Some(Target::Dnat { to, random: *random, persistent: *persistent });
                            v.push((format!("{node}: nat {} rule {} DNATs to port 8081", c.name, i + 1), s));
                        }
                    }
                    for (k, m) in r.matches.iter().enumerate() {
                        if let Match::Statistic { neg, mode: StatisticMode::Random { p31 } } = m {
                            let mut s = base.clone();
                            chain_mut(&mut s, node, TableName::Nat, &c.name).rules[i].matches[k] =
                                Match::Statistic { neg: *neg, mode: StatisticMode::Random { p31: p31 / 2 } };
                            v.push((
                                format!("{node}: nat {} rule {} draws with half the probability", c.name, i + 1),
                                s,
                            ));
                        }
                    }
                }
            }
        }
    }
    v
}

/// Harmless mutations: a comment or a counter on each rule of the path.
fn harmless() -> Vec<(String, Snapshot)> {
    let base = seed("seed-ipip-remote");
    let mut v = Vec::new();
    for node in ["node1", "node2"] {
        for (t, c) in [
            (TableName::Nat, "KUBE-NODEPORTS"),
            (TableName::Nat, "KUBE-POSTROUTING"),
            (TableName::Filter, "cali-FORWARD"),
        ] {
            let len = base
                .node(node)
                .and_then(|n| n.ruleset.table(t))
                .and_then(|x| x.chain(c))
                .map(|x| x.rules.len())
                .unwrap_or(0);
            for i in 0..len {
                let mut s = base.clone();
                let r: &mut Rule = &mut chain_mut(&mut s, node, t, c).rules[i];
                r.matches.insert(0, Match::Comment("harmless".into()));
                r.counters = Some(Box::new(natpath_model::ruleset::Counters { packets: 7, bytes: 700 }));
                v.push((format!("{node}: comment and counters on {} {c} rule {}", t.as_str(), i + 1), s));
            }
        }
    }
    v
}

fn run_generated(part: usize, parts: usize) -> (usize, usize, Vec<String>) {
    let all = generated();
    let mut caught = 0;
    let mut total = 0;
    let mut problems = Vec::new();
    for (i, (name, s)) in all.into_iter().enumerate() {
        if i % parts != part {
            continue;
        }
        total += 1;
        let vs = verdicts(&s);
        let violated: Vec<&str> =
            vs.iter().filter(|v| matches!(v.outcome, Outcome::Violated(_))).map(|v| v.name).collect();
        for v in &vs {
            if let Outcome::Unknown(w) = &v.outcome {
                problems.push(format!("{name}: {} unknown: {w}", v.name));
            }
            if let Outcome::Violated(cx) = &v.outcome {
                assert!(cx.replay.confirmed, "{name}: {} reported without a replay", v.name);
            }
        }
        if violated.is_empty() {
            println!("not caught: {name}");
        } else {
            caught += 1;
            println!("caught: {name} by {}", violated.join(", "));
        }
    }
    (caught, total, problems)
}

macro_rules! generated_part {
    ($name:ident, $part:expr) => {
        #[test]
        fn $name() {
            let (caught, total, problems) = run_generated($part, 3);
            println!("detection rate (part {} of 3): {caught}/{total}", $part + 1);
            assert!(problems.is_empty(), "{}", problems.join("\n"));
        }
    };
}

generated_part!(generated_mutants_part_1, 0);
generated_part!(generated_mutants_part_2, 1);
generated_part!(generated_mutants_part_3, 2);

#[test]
fn harmless_mutants_are_not_flagged() {
    let mut flagged = Vec::new();
    for (name, s) in harmless() {
        for v in verdicts(&s) {
            if !matches!(v.outcome, Outcome::Holds) {
                flagged.push(format!("{name}: {} is {}", v.name, v.outcome.word()));
            }
        }
    }
    assert!(flagged.is_empty(), "{}", flagged.join("\n"));
}

/// The gate checks invariants only where a change reaches (`delta.rs`).
/// Held against the whole check on every mutant above: the invariants that
/// newly fail where the change reaches are exactly those that newly fail
/// on the whole snapshots, so skipping never hides a broken invariant.
fn gate_failures(before: &Snapshot, after: &Snapshot, whole: bool) -> Vec<&'static str> {
    use natpath_verify::gate::{gate, GateOptions};
    let o = GateOptions { whole, allow_changes: true, ..GateOptions::default() };
    let g = gate(before, after, ("seed", "mutant"), None, &o, &|_, _, _| {}).expect("comparable");
    g.invariants.iter().filter(|i| i.gate != "pass").map(|i| i.invariant).collect()
}

fn gate_agrees(part: usize, parts: usize) {
    let mut all: Vec<(String, Snapshot, Snapshot)> = Vec::new();
    for m in named_mutants() {
        let base = if m.name.starts_with("seed-ipip-local") { "seed-ipip-local" } else { "seed-ipip-remote" };
        all.push((m.name, seed(base), m.snap));
    }
    let remote = seed("seed-ipip-remote");
    all.extend(generated().into_iter().map(|(n, s)| (n, remote.clone(), s)));
    let mut disagree = Vec::new();
    let mut failing = 0;
    for (i, (name, b, a)) in all.iter().enumerate() {
        if i % parts != part {
            continue;
        }
        let (touched, whole) = (gate_failures(b, a, false), gate_failures(b, a, true));
        failing += usize::from(!whole.is_empty());
        if touched != whole {
            disagree.push(format!("{name}: where the change reaches {touched:?}, whole {whole:?}"));
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
    assert!(failing > 0, "no mutant of this part breaks an invariant");
}

#[test]
fn the_gate_where_the_change_reaches_agrees_with_the_whole_check_part_1() {
    gate_agrees(0, 2);
}

#[test]
fn the_gate_where_the_change_reaches_agrees_with_the_whole_check_part_2() {
    gate_agrees(1, 2);
}
