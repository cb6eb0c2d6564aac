//! The invariant catalog (docs/invariants.md), checked for every packet with the SMT
//! encoding, and the `natpath check` command.
//!
//! Each invariant lives in its own file under its catalog name (a `NAME`
//! constant and a `check_<name>` function returning an [`Outcome`]); this
//! file holds what they share: the queries' scaffolding (the symbolic first
//! packet, the slicing by service, the three-way answer), the bookkeeping of
//! encoding and solver time, and the command line.
//!
//! Contract: an invariant *holds* only when every query of it is `unsat`
//! (no packet in scope breaks it) and no packet in scope reaches a rule the
//! encoding cannot express. A `sat` query yields a concrete packet that is
//! replayed through the executable model before it is reported; a replay
//! that does not show the violation, a solver timeout and an unexpressible
//! rule all make the verdict *unknown* (exit 3), naming why. Invariants judge
//! behaviour against the intent the dumps declare
//! ([`natpath_model::intent::Intent`]): a Local service's NodePort on a node
//! with no local endpoint is meant to drop, and is not checked for reach.

pub mod fair_balancing;
pub mod forward_only;
pub mod hairpin_masquerade;
pub mod local_preserves_source;
pub mod mark_survives;
pub mod masq_iff_mark;
pub mod no_pod_masquerade;
pub mod nodeport_reachable;
pub mod reply_finds_origin;

use crate::counterexample::{
    describe_branch, describe_passage, dev_of, draws_of, packet_of, replay_node, replay_walk, rules_of, Counterexample,
    Replay,
};
use crate::delta::Ports;
use crate::encode::conntrack::CtCtx;
use crate::encode::node::{Detail, Passage};
use crate::encode::packet::FoldEq;
use crate::encode::packet::{bv16, bv32, bv8, in_net, DevTerm, Flow, State, SymPacket};
use crate::encode::walk::{self, WalkOut};
use crate::encode::{and2, any, not, or2, EncodeOptions, Encoder, Ending, NodeEnc, Trail};
use crate::solver::{Answer, Session, Witness};
use ipnet::Ipv4Net;
use natpath_model::intent::{Endpoint, Intent, Service};
use natpath_model::packet::Packet;
use natpath_model::ruleset::Proto;
use natpath_model::snapshot::{Node, Snapshot};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use z3::ast::{Bool, BV};

/// The result of checking one invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No packet in scope breaks it.
    Holds,
    /// This packet breaks it, and the model's replay shows it.
    Violated(Box<Counterexample>),
    /// natpath cannot tell: why (an unexpressible rule with its `file:line`,
    /// a solver timeout, or a counterexample the model does not replay).
    Unknown(String),
}

impl Outcome {
    /// `holds`, `violated` or `unknown`.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Holds => "holds",
            Outcome::Violated(_) => "violated",
            Outcome::Unknown(_) => "unknown",
        }
    }
}

/// One invariant's verdict on one snapshot, with where the time went.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The catalog name.
    pub name: &'static str,
    /// The outcome.
    pub outcome: Outcome,
    /// Time spent building constraints.
    pub encode: Duration,
    /// Time spent in Z3.
    pub solve: Duration,
    /// Number of solver queries.
    pub queries: usize,
    /// Number of queries the encoding settled without the solver (the goal
    /// folded to false while it was built).
    pub folded: usize,
    /// Number of queries an over-approximation of the passage did not
    /// settle, asked again over the exact passage (each counts in `queries`
    /// or `folded` once per encoding).
    pub refined: usize,
    /// Queries not asked because a [`crate::delta::Delta`] showed that
    /// their packets meet the same rules on the other snapshot (only when
    /// the check was given one).
    pub same: usize,
    /// What the check assumed or skipped, one line each.
    pub notes: Vec<String>,
}

/// Options of a check.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Bound on each solver query.
    pub timeout: Option<Duration>,
    /// Encoding options.
    pub encode: EncodeOptions,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { timeout: Some(Duration::from_secs(30)), encode: EncodeOptions::default() }
    }
}

/// The catalog's names, in the order of docs/invariants.md.
pub const NAMES: [&str; 9] = [
    masq_iff_mark::NAME,
    reply_finds_origin::NAME,
    mark_survives::NAME,
    forward_only::NAME,
    nodeport_reachable::NAME,
    local_preserves_source::NAME,
    fair_balancing::NAME,
    no_pod_masquerade::NAME,
    hairpin_masquerade::NAME,
];

/// Check invariant `name` on `snap` (`None` for a name not in the catalog).
pub fn check(snap: &Snapshot, name: &str, opts: &CheckOptions) -> Option<Verdict> {
    let name = NAMES.iter().find(|n| **n == name)?;
    check_touched(snap, &[name], opts, None, &|_, _, _| {}).into_iter().next()
}

/// One invariant checked on one node (or on every node: `only` is `None`),
/// with its "nothing to check" note kept apart until the parts are merged.
struct Part {
    verdict: Verdict,
    nothing: Option<String>,
}

/// Run `f` in a Z3 context of its own ([`crate::encode::in_own_context`])
/// with `snap` prepared (`shared`, or read here).
fn in_part<'s, T: Send + Sync>(
    snap: &'s Snapshot,
    opts: &CheckOptions,
    shared: Option<&Prepared<'s>>,
    f: impl FnOnce(&Prepared<'s>) -> T + Send + Sync,
) -> T {
    crate::encode::in_own_context(|| match shared {
        Some(p) => f(p),
        None => f(&Prepared::new(snap, opts)),
    })
}

/// A checker for one part: node `only` (every node when `None`), asking
/// only what `delta` touches (everything when `None`).
fn part_checker<'s>(
    snap: &'s Snapshot,
    opts: &CheckOptions,
    p: &Prepared<'s>,
    only: Option<usize>,
    delta: Option<&'s crate::delta::Delta>,
) -> Checker<'s> {
    let mut c = Checker::with(snap, opts, p);
    c.only = only;
    c.delta = delta;
    c
}

/// The part an invariant's checker `c` found, `total` its time.
fn part_of(name: &str, outcome: Outcome, c: Checker<'_>, total: Duration) -> Part {
    let name = NAMES.iter().find(|n| **n == name).copied().unwrap_or("?");
    let verdict = Verdict {
        name,
        outcome,
        encode: total.saturating_sub(c.solve_time).saturating_sub(c.replay_time),
        solve: c.solve_time,
        queries: c.queries,
        folded: c.folded,
        refined: c.refined,
        same: c.same,
        notes: c.notes,
    };
    Part { verdict, nothing: c.nothing }
}

/// The two invariants checked over the same walks
/// ([`reply_finds_origin::check_with_reachable`]).
const WALK_PAIR: [&str; 2] = [reply_finds_origin::NAME, nodeport_reachable::NAME];

/// The parts one job finds, in a Z3 context of its own
/// ([`crate::encode::in_own_context`]), so that each verdict and
/// counterexample is the same whichever thread, machine or shard runs it:
/// `name`'s on node `only` (every node when `None`), and for either of
/// [`WALK_PAIR`] the other's too. `None` for a name not in the catalog.
fn check_job<'s>(
    snap: &'s Snapshot,
    name: &str,
    opts: &CheckOptions,
    only: Option<usize>,
    shared: Option<&Prepared<'s>>,
    delta: Option<&'s crate::delta::Delta>,
) -> Option<Vec<Part>> {
    in_part(snap, opts, shared, |p| {
        let mut c = part_checker(snap, opts, p, only, delta);
        let t0 = Instant::now();
        if WALK_PAIR.contains(&name) {
            let mut r = part_checker(snap, opts, p, only, delta);
            let (oc, or, r_time) = reply_finds_origin::check_with_reachable(&mut c, &mut r);
            let total = t0.elapsed();
            return Some(vec![
                part_of(reply_finds_origin::NAME, oc, c, total.saturating_sub(r_time)),
                part_of(nodeport_reachable::NAME, or, r, r_time),
            ]);
        }
        let outcome = match name {
            masq_iff_mark::NAME => masq_iff_mark::check_masq_iff_mark(&mut c),
            mark_survives::NAME => mark_survives::check_mark_survives(&mut c),
            forward_only::NAME => forward_only::check_forward_only(&mut c),
            local_preserves_source::NAME => local_preserves_source::check_local_preserves_source(&mut c),
            fair_balancing::NAME => fair_balancing::check_fair_balancing(&mut c),
            no_pod_masquerade::NAME => no_pod_masquerade::check_no_pod_masquerade(&mut c),
            hairpin_masquerade::NAME => hairpin_masquerade::check_hairpin_masquerade(&mut c),
            _ => return None,
        };
        Some(vec![part_of(name, outcome, c, t0.elapsed())])
    })
}

/// The verdict of an invariant from its parts, in node order, as one run
/// over every node gives it: the first violation; else every unknown
/// reason, each once; else holds. Times and counts add up (CPU time when
/// the parts ran side by side; a violation on one node does not stop the
/// other nodes' parts, whose queries and notes count too); notes follow
/// node order; the "nothing to check" note only when no part had anything
/// to check.
fn merge(parts: Vec<Part>) -> Verdict {
    let mut it = parts.into_iter();
    let Some(first) = it.next() else {
        return Verdict {
            name: "?",
            outcome: Outcome::Unknown("BUG: an invariant with no part".into()),
            encode: Duration::ZERO,
            solve: Duration::ZERO,
            queries: 0,
            folded: 0,
            refined: 0,
            same: 0,
            notes: Vec::new(),
        };
    };
    let mut v = first.verdict;
    let mut nothing = first.nothing;
    let mut unknowns: Vec<String> = Vec::new();
    let mut take_unknown = |o: &Outcome| {
        if let Outcome::Unknown(why) = o {
            for l in why.lines() {
                if !unknowns.iter().any(|u| u == l) {
                    unknowns.push(l.to_string());
                }
            }
        }
    };
    take_unknown(&v.outcome);
    for p in it {
        let w = p.verdict;
        take_unknown(&w.outcome);
        if !matches!(v.outcome, Outcome::Violated(_)) && matches!(w.outcome, Outcome::Violated(_)) {
            v.outcome = w.outcome;
        }
        v.encode += w.encode;
        v.solve += w.solve;
        v.queries += w.queries;
        v.folded += w.folded;
        v.refined += w.refined;
        v.same += w.same;
        v.notes.extend(w.notes);
        if p.nothing.is_none() {
            nothing = None;
        }
    }
    if !matches!(v.outcome, Outcome::Violated(_)) {
        v.outcome = if unknowns.is_empty() { Outcome::Holds } else { Outcome::Unknown(unknowns.join("\n")) };
    }
    v.notes.extend(nothing);
    v
}

/// Why nothing is in the catalog's scope, when nothing is: no node's
/// rules define a Kubernetes Service, so every invariant would hold
/// vacuously. That is what a dump from the wrong iptables backend looks
/// like (`# Warning: iptables-legacy tables present`), and it must never
/// read as a pass.
pub fn empty_scope(snap: &Snapshot) -> Option<String> {
    let any = snap.nodes.iter().any(|n| !Intent::read(&n.ruleset, &n.ipsets, &n.interfaces).services.is_empty());
    if any {
        return None;
    }
    let rules: usize = snap.nodes.iter().map(|n| n.ruleset.rule_count()).sum();
    Some(format!(
        "no node's rules define a Kubernetes Service ({rules} rules on {} nodes), so every invariant holds only \
         because nothing is checked; is each iptables-save from the backend its node uses (iptables-legacy-save \
         or iptables-nft-save)? see docs/snapshot-format.md",
        snap.nodes.len()
    ))
}

/// [`empty_scope`] of a comparison: either side with nothing in scope
/// makes it compare nothing there (a `diff` or `gate` of two dumps from
/// the wrong backend passes with no entry to compare), named by its side.
pub fn empty_scope_of_pair(before: &Snapshot, after: &Snapshot) -> Option<String> {
    match (empty_scope(before), empty_scope(after)) {
        (None, None) => None,
        (Some(b), None) => Some(format!("BEFORE: {b}")),
        (None, Some(a)) => Some(format!("AFTER: {a}")),
        (Some(b), Some(a)) if a == b => Some(format!("BEFORE and AFTER: {a}")),
        (Some(b), Some(a)) => Some(format!("BEFORE: {b}; AFTER: {a}")),
    }
}

/// The exit code of a run whose verdicts give `exit`, when `empty` says
/// why nothing was in scope: a pass (0) that checked nothing is unknown
/// (3), unless `allow_empty` (`--allow-empty`) accepts it. `check`,
/// `merge`, `diff` and `gate` all decide so.
pub fn scope_exit(exit: i32, empty: Option<&str>, allow_empty: bool) -> i32 {
    if exit == 0 && empty.is_some() && !allow_empty {
        3
    } else {
        exit
    }
}

/// Check the whole catalog.
pub fn check_all(snap: &Snapshot, opts: &CheckOptions) -> Vec<Verdict> {
    check_many(snap, &NAMES, opts)
}

/// The invariants checked node by node when several threads share the
/// catalog, heaviest first (by their cost at 10,000 Services in
/// BENCHMARKS.md), so that the parts spread evenly over the cores; the
/// others are cheap and run whole, after them.
const BY_NODE: [&str; 6] = [
    masq_iff_mark::NAME,
    hairpin_masquerade::NAME,
    reply_finds_origin::NAME,
    nodeport_reachable::NAME,
    forward_only::NAME,
    local_preserves_source::NAME,
];

/// Check the invariants `names` (names not in the catalog are skipped) on
/// as many threads as the machine has cores, each thread with its own Z3
/// context: the heavy invariants ([`BY_NODE`]) are cut into one part per
/// node, the parts and the other invariants are taken heaviest first by
/// whichever thread is free, and each invariant's parts are merged into
/// the verdict one run over every node gives. The verdicts come back in
/// the order of `names`.
pub fn check_many(snap: &Snapshot, names: &[&str], opts: &CheckOptions) -> Vec<Verdict> {
    check_many_with(snap, names, opts, &|_, _, _| {})
}

/// [`check_many`], telling `progress` after each part how many parts are
/// done, how many there are, and what was just checked (`invariant` or
/// `invariant on node`). It is called from the checking threads.
pub fn check_many_with(
    snap: &Snapshot,
    names: &[&str],
    opts: &CheckOptions,
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Vec<Verdict> {
    check_touched(snap, names, opts, None, progress)
}

/// [`check_many_with`], asking only the queries whose packets can meet a
/// difference of `delta` (every query when it is `None`): what a gate needs
/// to learn whether a change makes an invariant fail. The other queries'
/// answers are the same on both sides of the delta; [`Verdict::same`]
/// counts them.
pub fn check_touched<'s>(
    snap: &'s Snapshot,
    names: &[&str],
    opts: &CheckOptions,
    delta: Option<&'s crate::delta::Delta>,
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Vec<Verdict> {
    check_prepared(snap, names, opts, delta, None, progress)
}

/// [`check_touched`] with the snapshot already [`Prepared`].
pub(crate) fn check_prepared<'s>(
    snap: &'s Snapshot,
    names: &[&str],
    opts: &CheckOptions,
    delta: Option<&'s crate::delta::Delta>,
    ready: Option<&Prepared<'s>>,
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Vec<Verdict> {
    // The same parts on any number of threads: the answers then do not
    // depend on the machine.
    let jobs = jobs_of(snap.nodes.len(), names);
    let done = run_jobs(snap, names, opts, delta, ready, &jobs, progress);
    let mut parts: Vec<Vec<(Option<usize>, Part)>> = (0..names.len()).map(|_| Vec::new()).collect();
    let mut lost = vec![false; names.len()];
    for (&(i, only), d) in jobs.iter().zip(done) {
        match d {
            Some(Some(p)) => {
                if let Some(slot) = parts.get_mut(i) {
                    slot.push((only, p));
                }
            }
            Some(None) => {}
            None => {
                if let Some(l) = lost.get_mut(i) {
                    *l = true;
                }
            }
        }
    }
    let mut out = Vec::new();
    for (i, mut ps) in parts.into_iter().enumerate() {
        if ps.is_empty() || lost.get(i).copied().unwrap_or(true) {
            continue;
        }
        ps.sort_by_key(|(n, _)| *n);
        out.push(merge(ps.into_iter().map(|(_, p)| p).collect()));
    }
    out
}

/// The parts a check of `names` is cut into, heaviest first: (index in
/// `names`, the one node or every node). The heavy invariants ([`BY_NODE`])
/// get one part per node, the others one part. A pure function of the
/// snapshot's node count and `names`, so that every shard of a sharded
/// check ([`check_shard`]) cuts the same way.
fn jobs_of(nodes: usize, names: &[&str]) -> Vec<(usize, Option<usize>)> {
    let mut jobs: Vec<(usize, Option<usize>)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if nodes > 1 && BY_NODE.contains(name) {
            jobs.extend((0..nodes).map(|n| (i, Some(n))));
        } else {
            jobs.push((i, None));
        }
    }
    let rank = |i: usize| BY_NODE.iter().position(|b| names.get(i) == Some(b)).unwrap_or(BY_NODE.len());
    jobs.sort_by_key(|&(i, n)| (rank(i), i, n));
    jobs
}

/// One part of a sharded check: an invariant on one node (`node`, an
/// index in the snapshot's node order) or on every node (`None`).
#[derive(Debug, Clone)]
pub struct ShardPart {
    /// The invariant's catalog name.
    pub invariant: &'static str,
    /// The node, for the invariants checked node by node.
    pub node: Option<usize>,
    /// Its verdict on that part.
    pub verdict: Verdict,
    /// Why it had nothing to check, when it had nothing.
    pub nothing: Option<String>,
}

/// The parts of a check of `names` on `nodes` nodes, as (invariant, node),
/// in the order shards take them: heaviest first, part k going to shard
/// k mod N ([`check_shard`]).
pub fn shard_jobs(nodes: usize, names: &[&str]) -> Vec<(String, Option<usize>)> {
    jobs_of(nodes, names).into_iter().filter_map(|(i, n)| Some(((*names.get(i)?).to_string(), n))).collect()
}

/// Shard `index` of `count` (0-based) of the check of `names`: the parts k
/// of [`shard_jobs`] with k mod `count` = `index`, each with its own
/// verdict; merging every shard's parts gives what one run gives (see the
/// command line's `natpath merge`). Fails when a checking thread failed.
pub fn check_shard(
    snap: &Snapshot,
    names: &[&str],
    opts: &CheckOptions,
    (index, count): (usize, usize),
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<Vec<ShardPart>, String> {
    let mine: Vec<(usize, Option<usize>)> = jobs_of(snap.nodes.len(), names)
        .into_iter()
        .enumerate()
        .filter(|(k, _)| k % count.max(1) == index)
        .map(|(_, j)| j)
        .collect();
    let done = run_jobs(snap, names, opts, None, None, &mine, progress);
    let mut out = Vec::new();
    for (&(_, node), d) in mine.iter().zip(done) {
        match d {
            Some(Some(p)) => {
                out.push(ShardPart { invariant: p.verdict.name, node, verdict: p.verdict, nothing: p.nothing })
            }
            Some(None) => {}
            None => return Err("BUG: a checking thread failed".into()),
        }
    }
    Ok(out)
}

/// Run `jobs` on as many threads as the machine has cores; each slot is
/// `None` when its thread failed (never a verdict), else the part (`None`
/// for a name not in the catalog).
fn run_jobs<'s>(
    snap: &'s Snapshot,
    names: &[&str],
    opts: &CheckOptions,
    delta: Option<&'s crate::delta::Delta>,
    ready: Option<&Prepared<'s>>,
    jobs: &[(usize, Option<usize>)],
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Vec<Option<Option<Part>>> {
    let threads = natpath_model::snapshot::threads();
    let threads = threads.min(jobs.len()).max(1);
    // Read once for every part: the intents and the nodes' indexes (0.3 s
    // per check at 10k Services).
    let own;
    let prepared = match ready {
        Some(p) => p,
        None => {
            own = Prepared::new(snap, opts);
            &own
        }
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<Option<Option<Part>>> = (0..jobs.len()).map(|_| None).collect();
    std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(i, only)) = jobs.get(k) else { break };
                        let Some(name) = names.get(i) else { break };
                        // The pair checked together ([`WALK_PAIR`]): the
                        // job of the first finds the second's part too when
                        // both are asked on the same nodes; the second's own
                        // job then has nothing to do.
                        let partner = WALK_PAIR.iter().position(|w| w == name).and_then(|w| {
                            let other = *WALK_PAIR.get(1 - w)?;
                            let kk = jobs.iter().position(|&(j, o)| o == only && names.get(j) == Some(&other))?;
                            Some((w, kk, other))
                        });
                        // Each slot this job fills, with the invariant whose part goes there.
                        let slots: Vec<(usize, &str)> = match partner {
                            Some((1, _, _)) => Vec::new(),
                            Some((_, kk, other)) => vec![(k, *name), (kk, other)],
                            None => vec![(k, *name)],
                        };
                        if !slots.is_empty() {
                            let mut found =
                                check_job(snap, name, opts, only, Some(prepared), delta).unwrap_or_default();
                            for (slot, of) in slots {
                                let at = found.iter().position(|p| p.verdict.name == of);
                                mine.push((slot, at.map(|i| found.swap_remove(i))));
                            }
                        }
                        let n = finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        match only.and_then(|o| snap.nodes.get(o)) {
                            Some(node) => progress(n, jobs.len(), &format!("{name} on {}", node.name)),
                            None => progress(n, jobs.len(), name),
                        }
                    }
                    mine
                })
            })
            .collect();
        for w in workers {
            // A worker that panicked loses its parts: their invariants are
            // missing below, never reported as holding.
            if let Ok(mine) = w.join() {
                for (k, part) in mine {
                    if let Some(slot) = done.get_mut(k) {
                        *slot = Some(part);
                    }
                }
            }
        }
    });
    done
}

/// What every check of one snapshot reads the same way, read once and
/// shared by the threads: the nodes' intents, the pod networks, and the
/// nodes prepared for encoding (no Z3 term among them).
pub(crate) struct Prepared<'s> {
    intents: std::sync::Arc<Vec<Intent>>,
    pod_nets: Vec<Ipv4Net>,
    nodes: std::sync::Arc<Vec<NodeEnc<'s>>>,
    /// The snapshot indexed for the model's replays, when one is made.
    tracer: Shared<'s>,
    /// Each node's NodePorts ([`Checker::node_ports`]), found once.
    ports: PortsOnce,
    /// The first declaration of each NodePort in the cluster, as (node,
    /// service) indexes in node order.
    first_ports: std::sync::Arc<Vec<(usize, usize)>>,
}

impl Prepared<'_> {
    /// Each node's intent, in node order.
    pub(crate) fn intents(&self) -> &[Intent] {
        &self.intents
    }
}

/// Each node's NodePorts, found at the first question and shared.
type PortsOnce = std::sync::Arc<Vec<std::sync::OnceLock<std::sync::Arc<Vec<Service>>>>>;

/// The snapshot indexed for the model, built by the first replay and
/// shared by every thread and checker of one snapshot.
type Shared<'s> = std::sync::Arc<std::sync::OnceLock<natpath_model::walk::Tracer<'s>>>;

/// `shared`'s index of `snap`, built by the first caller.
fn indexed<'a, 's>(shared: &'a Shared<'s>, snap: &'s Snapshot) -> &'a natpath_model::walk::Tracer<'s> {
    shared.get_or_init(|| natpath_model::walk::Tracer::new(snap))
}

impl<'s> Prepared<'s> {
    pub(crate) fn new(snap: &'s Snapshot, opts: &CheckOptions) -> Prepared<'s> {
        let intents: Vec<Intent> =
            snap.nodes.iter().map(|n| Intent::read(&n.ruleset, &n.ipsets, &n.interfaces)).collect();
        let pod_nets = natpath_model::edge::pod_space_of(&intents);
        let nodes = Encoder::new(snap, opts.encode).nodes;
        let ports = std::sync::Arc::new(snap.nodes.iter().map(|_| std::sync::OnceLock::new()).collect());
        let mut seen: std::collections::HashSet<(Proto, Option<u16>)> = std::collections::HashSet::new();
        let mut first_ports = Vec::new();
        for (m, i) in intents.iter().enumerate() {
            for (k, s) in i.services.iter().enumerate().filter(|(_, s)| s.node_port.is_some()) {
                if seen.insert((s.proto, s.node_port)) {
                    first_ports.push((m, k));
                }
            }
        }
        Prepared {
            intents: std::sync::Arc::new(intents),
            pod_nets,
            nodes,
            tracer: Shared::default(),
            ports,
            first_ports: std::sync::Arc::new(first_ports),
        }
    }
}

/// Sources the kernel drops as martians before netfilter's routing
/// decision (ip_route_input_slow): 0/8, 127/8, multicast and class E.
pub(crate) fn martian_sources() -> Vec<Ipv4Net> {
    ["0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3"].iter().filter_map(|n| n.parse().ok()).collect()
}

/// Destinations the kernel drops as martians when they arrive by a device
/// other than `lo`: 0/8 and 127/8.
pub(crate) fn martian_destinations() -> Vec<Ipv4Net> {
    ["0.0.0.0/8", "127.0.0.0/8"].iter().filter_map(|n| n.parse().ok()).collect()
}

/// The preference ([`Checker::prefer`]) for a source port from Linux's
/// default ephemeral range (`net.ipv4.ip_local_port_range` = 32768 60999),
/// what a client's connection comes from, when `pkt`'s protocol is one with
/// ports (TCP, UDP, SCTP); none when it is another or not a constant.
pub(crate) fn ephemeral(pkt: &SymPacket) -> Vec<Bool> {
    use crate::encode::packet::Num;
    let with_ports = [Proto::TCP, Proto::UDP, Proto::SCTP].iter().any(|p| pkt.proto.num() == Some(u64::from(p.0)));
    if with_ports {
        vec![crate::encode::packet::in_range(&pkt.sport, 32768, 60999)]
    } else {
        Vec::new()
    }
}

/// A query's goal (see [`Checker::ask`]): `(definite, goal)`, the
/// violation on paths that reach no unexpressible rule, and that or a path
/// that reaches one.
fn goal_of(violation: &Bool, unknown: &[Ending]) -> (Bool, Bool) {
    let u = any(&unknown.iter().map(|e| e.cond.clone()).collect::<Vec<_>>());
    let definite = and2(violation, &not(&u));
    let goal = or2(&definite, &u);
    (definite, goal)
}

/// The answer of one query.
pub(crate) enum QAnswer {
    Holds,
    Violated(Witness),
    Unknown(String),
}

/// What every invariant's queries share: the snapshot prepared for
/// encoding, each node's declared intent, and the time and query counts.
pub struct Checker<'s> {
    /// The snapshot.
    pub snap: &'s Snapshot,
    /// Its encoding context.
    pub enc: Encoder<'s>,
    /// Each node's declared intent.
    pub intents: std::sync::Arc<Vec<Intent>>,
    /// Options.
    pub opts: CheckOptions,
    pub(crate) solve_time: Duration,
    pub(crate) replay_time: Duration,
    pub(crate) queries: usize,
    pub(crate) folded: usize,
    /// Queries an over-approximation did not settle, asked again exactly.
    pub(crate) refined: usize,
    pub(crate) notes: Vec<String>,
    seq: usize,
    unknowns: Vec<String>,
    /// The pod networks ([`Checker::pod_nets`]).
    pod_nets: Vec<Ipv4Net>,
    /// Checked on this node only (every node when `None`).
    pub(crate) only: Option<usize>,
    /// Why there was nothing to check, when there was not.
    pub(crate) nothing: Option<String>,
    /// Ask only what this difference touches ([`check_touched`]).
    pub(crate) delta: Option<&'s crate::delta::Delta>,
    /// Queries not asked because of `delta`.
    pub(crate) same: usize,
    /// `NATPATH_DEBUG_SMT_DUMP`, read once: where to write each query.
    dump: Option<String>,
    tracer: Shared<'s>,
    ports: PortsOnce,
    first_ports: std::sync::Arc<Vec<(usize, usize)>>,
}

/// A debugging aid: with `NATPATH_DEBUG_SMT_DUMP=PREFIX`, each query that
/// reaches Z3 is written as SMT-LIB to `PREFIX.N`, numbered across every
/// invariant and thread of the process, and its size goes to stderr.
fn dump_query(prefix: &str, scope: &[Bool], goal: &Bool) {
    static DUMPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = DUMPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let s = z3::Solver::new();
    for b in scope {
        s.assert(b);
    }
    s.assert(goal);
    let text = s.to_string();
    eprintln!("query {n}: {} scope asserts, {} chars", scope.len(), text.len());
    if let Err(e) = std::fs::write(format!("{prefix}.{n}"), text) {
        eprintln!("NATPATH_DEBUG_SMT_DUMP: cannot write {prefix}.{n}: {e}");
    }
}

impl<'s> Checker<'s> {
    /// Prepare `snap`.
    pub fn new(snap: &'s Snapshot, opts: &CheckOptions) -> Self {
        Checker::with(snap, opts, &Prepared::new(snap, opts))
    }

    /// Prepare `snap` with what [`Prepared`] already read.
    pub(crate) fn with(snap: &'s Snapshot, opts: &CheckOptions, p: &Prepared<'s>) -> Self {
        Checker {
            pod_nets: p.pod_nets.clone(),
            snap,
            enc: Encoder::with_nodes(snap, std::sync::Arc::clone(&p.nodes), opts.encode),
            intents: std::sync::Arc::clone(&p.intents),
            opts: *opts,
            solve_time: Duration::ZERO,
            replay_time: Duration::ZERO,
            queries: 0,
            folded: 0,
            refined: 0,
            notes: Vec::new(),
            seq: 0,
            unknowns: Vec::new(),
            only: None,
            nothing: None,
            delta: None,
            same: 0,
            dump: std::env::var("NATPATH_DEBUG_SMT_DUMP").ok(),
            tracer: std::sync::Arc::clone(&p.tracer),
            ports: std::sync::Arc::clone(&p.ports),
            first_ports: std::sync::Arc::clone(&p.first_ports),
        }
    }

    /// The snapshot indexed for the model's replays (built at the first).
    pub(crate) fn tracer(&self) -> &natpath_model::walk::Tracer<'s> {
        indexed(&self.tracer, self.snap)
    }

    /// A fresh symbolic packet, unique to one query, with the pinned
    /// fields as constants (so that rules about other ports, protocols and
    /// addresses fold away while the encoding is built).
    pub(crate) fn fresh_packet(&mut self, what: &str, pins: &Pins) -> SymPacket {
        self.seq += 1;
        // A new query: the known bits of the last one's terms are of no use.
        crate::encode::packet::forget_known();
        let mut p = SymPacket::named(&format!("q{}.{what}", self.seq));
        // Every query is about a connection's first packet, which arrives
        // without a mark (see `first_packet`).
        p.mark = bv32(0);
        if let Some(a) = pins.src {
            p.src = crate::encode::packet::addr(a);
        }
        if let Some(a) = pins.dst {
            p.dst = crate::encode::packet::addr(a);
        }
        if let Some(x) = pins.proto {
            p.proto = bv8(x.0);
            p.tcp_flags = bv8(if x == Proto::TCP { natpath_model::packet::tcp::SYN } else { 0 });
        }
        if let Some(x) = pins.dport {
            p.dport = bv16(x);
        }
        p
    }

    /// A fresh symbolic device term, which the query constrains to listed
    /// devices ([`dev_in`]).
    pub(crate) fn fresh_dev(&mut self) -> DevTerm {
        self.seq += 1;
        DevTerm::symbolic_closed(BV::new_const(format!("q{}.dev", self.seq), crate::encode::packet::DEV_BITS))
    }

    /// Ask whether some packet in `scope` breaks the invariant (`violation`
    /// on a path that does not reach an unexpressible rule), then whether
    /// some packet in scope reaches one.
    pub(crate) fn ask(&mut self, scope: &[Bool], violation: &Bool, unknown: &[Ending]) -> QAnswer {
        let (definite, goal) = goal_of(violation, unknown);
        let reasons = |w: &Witness| {
            let mut reasons: Vec<String> = Vec::new();
            for e in unknown {
                if w.bool(&e.cond) == Some(true) && !reasons.contains(&e.reason) {
                    reasons.push(e.reason.clone());
                }
            }
            if reasons.is_empty() {
                reasons.push("a packet in scope reaches a rule natpath cannot express".into());
            }
            reasons.join("; ")
        };
        // Each check is a fresh, non-incremental solver: Z3 then bit-blasts
        // the whole query, much faster than its incremental core. One check
        // settles the common case (nothing in scope breaks it or reaches an
        // unexpressible rule); a second separates a definite violation from
        // an unknown path.
        let timeout = self.opts.timeout;
        let run = |goal: &Bool| {
            let mut s = Session::new(timeout);
            for b in scope {
                s.assert(b);
            }
            s.assert(goal);
            let a = s.check();
            (a, s.spent)
        };
        // The encoding folds constants as it is built: a goal that is
        // already false (every path in scope keeps the invariant and none
        // reaches an unexpressible rule) needs no solver, nor does one its
        // Boolean structure alone refutes, names expanded (see
        // `encode::skeleton`).
        if crate::encode::is_false(&goal) || crate::encode::skeleton::refutes(scope, &goal) {
            self.folded += 1;
            return QAnswer::Holds;
        }
        self.queries += 1;
        if let Some(p) = &self.dump {
            dump_query(p, scope, &goal);
        }
        let (a, t) = run(&goal);
        self.solve_time += t;
        match a {
            Answer::Unsat => QAnswer::Holds,
            Answer::Unknown(why) => QAnswer::Unknown(format!("the solver gave up: {why}")),
            Answer::Sat(w) if w.bool(&definite) == Some(true) => QAnswer::Violated(w),
            Answer::Sat(w) => {
                self.queries += 1;
                let (a2, t2) = run(&definite);
                self.solve_time += t2;
                match a2 {
                    Answer::Sat(w2) => QAnswer::Violated(w2),
                    Answer::Unsat => QAnswer::Unknown(reasons(&w)),
                    Answer::Unknown(why) => QAnswer::Unknown(format!("the solver gave up: {why}")),
                }
            }
        }
    }

    /// [`Checker::ask`] for the check labelled `label`: the witness of a
    /// violation; an unknown answer is recorded under the label.
    pub(crate) fn ask_or_note(
        &mut self,
        label: &str,
        scope: &[Bool],
        violation: &Bool,
        unknown: &[Ending],
    ) -> Option<Witness> {
        let answer = self.ask(scope, violation, unknown);
        self.noted(label, answer)
    }

    /// The witness of a violating `answer`; an unknown one is recorded
    /// under `label`.
    fn noted(&mut self, label: &str, answer: QAnswer) -> Option<Witness> {
        match answer {
            QAnswer::Holds => None,
            QAnswer::Unknown(why) => {
                self.unknown(label, why);
                None
            }
            QAnswer::Violated(w) => Some(w),
        }
    }

    /// A node query's `answer` for the check labelled `label`: the witness
    /// of a violation and the first of `flows` (each with its condition
    /// `cond`) that it takes. An unknown answer is recorded under the label,
    /// and so is a witness that takes none of them (a natpath bug: it
    /// `misses` them, in words).
    pub(crate) fn node_witness<'q, F>(
        &mut self,
        label: &str,
        answer: QAnswer,
        flows: &'q [F],
        cond: impl Fn(&F) -> &Bool,
        misses: &str,
    ) -> Option<(Witness, &'q F)> {
        let w = self.noted(label, answer)?;
        match flows.iter().find(|f| w.bool(cond(f)) == Some(true)) {
            Some(f) => Some((w, f)),
            None => {
                self.unknown(label, format!("BUG: the witness {misses}"));
                None
            }
        }
    }

    /// The nodes this check covers, in order.
    pub(crate) fn nodes(&self) -> std::ops::Range<usize> {
        match self.only {
            Some(n) => n..(n + 1).min(self.snap.nodes.len()),
            None => 0..self.snap.nodes.len(),
        }
    }

    /// Note that the check found nothing to check (kept for the report only
    /// if no other node's part found anything either).
    pub(crate) fn nothing_to_check(&mut self, why: &str) {
        self.nothing = Some(why.to_string());
    }

    /// Record an unknown query; the invariant goes on (a later violation wins).
    pub(crate) fn unknown(&mut self, label: &str, why: String) {
        let r = format!("{label}: {why}");
        if !self.unknowns.contains(&r) {
            self.unknowns.push(r);
        }
    }

    /// Turn a counterexample into the outcome: violated when the model
    /// replays it, unknown (a natpath bug) when it does not.
    pub(crate) fn found(&mut self, cx: Counterexample) -> Option<Outcome> {
        if cx.replay.confirmed {
            return Some(Outcome::Violated(Box::new(cx)));
        }
        self.unknown(
            cx.invariant,
            format!(
                "BUG: the solver's counterexample ({} arriving at {} by {}: {}) does not replay in the model (model: {}); the encoding and the model disagree",
                cx.packet, cx.node, cx.iface, cx.summary, cx.replay.outcome
            ),
        );
        None
    }

    /// The final outcome when no violation was found.
    pub(crate) fn finish(&self) -> Outcome {
        if self.unknowns.is_empty() {
            Outcome::Holds
        } else {
            Outcome::Unknown(self.unknowns.join("\n"))
        }
    }

    /// Time a replay separately from encoding.
    pub(crate) fn timed<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let r = f();
        self.replay_time += t0.elapsed();
        r
    }

    /// The NodePorts node `n` must serve: a NodePort is cluster-wide, so
    /// every NodePort any node declares, with this node's own declaration
    /// when it has one and otherwise another node's (without its node-local
    /// endpoints, which are that node's).
    pub(crate) fn node_ports(&self, n: usize) -> std::sync::Arc<Vec<Service>> {
        match self.ports.get(n) {
            Some(once) => std::sync::Arc::clone(once.get_or_init(|| std::sync::Arc::new(self.find_node_ports(n)))),
            None => std::sync::Arc::new(self.find_node_ports(n)),
        }
    }

    fn find_node_ports(&self, n: usize) -> Vec<Service> {
        // Sets and maps, not searches: 10,000 Services on each of several
        // nodes made the searches quadratic (a fifth of a gate at 10k).
        let own: &[Service] = self.intents.get(n).map(|i| i.services.as_slice()).unwrap_or_default();
        let mut by_name: std::collections::HashMap<&str, &Service> = std::collections::HashMap::new();
        for s in own {
            by_name.entry(s.name.as_str()).or_insert(s);
        }
        let mut seen: std::collections::HashSet<(Proto, Option<u16>)> = std::collections::HashSet::new();
        let mut v: Vec<Service> = Vec::new();
        for s in own.iter().filter(|s| s.node_port.is_some()) {
            seen.insert((s.proto, s.node_port));
            v.push(s.clone());
        }
        // Another node's NodePort, at its first declaration in node order
        // (one this node declares is its own, above).
        for &(m, k) in self.first_ports.iter() {
            let Some(s) = self.intents.get(m).and_then(|i| i.services.get(k)) else { continue };
            if m == n || !seen.insert((s.proto, s.node_port)) {
                continue;
            }
            let mut s = s.clone();
            s.local_endpoints.clear();
            if let Some(mine) = by_name.get(s.name.as_str()) {
                s.endpoints = mine.endpoints.clone();
                s.local_endpoints = mine.local_endpoints.clone();
            }
            v.push(s);
        }
        v
    }

    /// Node `n`'s own unicast addresses, loopback aside, as its local
    /// table lists them (`None` when it does not list them one by one:
    /// a query then takes any destination the table calls local).
    pub(crate) fn own_dsts(&self, n: usize) -> Option<Vec<Ipv4Addr>> {
        self.enc.node(n).and_then(crate::encode::route::local_unicast)
    }

    /// The masquerade bit kube-proxy marks with on node `n` (0x4000 unless
    /// KUBE-MARK-MASQ says otherwise).
    pub(crate) fn masq_bit(&self, n: usize) -> u32 {
        self.intents.get(n).and_then(|i| i.masq_mark).unwrap_or(0x4000)
    }

    /// Addresses of the cluster's pods: Calico's IP pools and kube-proxy's
    /// cluster CIDR (its local-traffic detector, wherever its rules write it:
    /// see [`natpath_model::intent::Intent::cluster_cidrs`]), over every node.
    pub(crate) fn pod_nets(&self) -> &[Ipv4Net] {
        &self.pod_nets
    }

    /// Every node's own addresses (loopback aside).
    pub(crate) fn node_addrs(&self) -> Vec<Ipv4Addr> {
        let mut v = Vec::new();
        for n in &self.snap.nodes {
            v.extend(own_addrs(n));
        }
        v
    }

    /// `a` is an ordinary address of a machine outside the cluster: not a
    /// pod's, not a node's, not loopback, `0.0.0.0/8`, multicast or reserved.
    pub(crate) fn external(&self, a: &BV) -> Bool {
        let mut c = Vec::new();
        for n in self.pod_nets().iter().chain(&martian_sources()) {
            c.push(not(&in_net(a, n)));
        }
        for x in self.node_addrs() {
            c.push(not(&a.feq(crate::encode::packet::addr(x))));
        }
        crate::encode::all(&c)
    }

    /// [`Checker::external`], with what it says of `a` told to the builders
    /// (after the constraint is built, which would otherwise fold away):
    /// tests of `a` against pod networks, node addresses and address types
    /// the scope decides then fold while the query is built.
    pub(crate) fn assume_external(&self, a: &BV) -> Bool {
        let c = self.external(a);
        let mut outside = self.pod_nets().to_vec();
        outside.extend(martian_sources());
        let outside_addrs = self.node_addrs().into_iter().map(u32::from).collect();
        crate::encode::packet::assume_addr(
            a,
            crate::encode::packet::AddrFacts { outside, outside_addrs, ..Default::default() },
        );
        c
    }

    /// `a` is a pod's address: inside the pod networks, not a node's own.
    pub(crate) fn pod_addr(&self, a: &BV) -> Bool {
        let nets = self.pod_nets();
        let inside = any(&nets.iter().map(|n| in_net(a, n)).collect::<Vec<_>>());
        let mut c = vec![inside];
        for x in self.node_addrs() {
            c.push(not(&a.feq(crate::encode::packet::addr(x))));
        }
        crate::encode::all(&c)
    }

    /// [`Checker::pod_addr`] as a scope constraint of the current query:
    /// the builders are told (see [`crate::encode::packet::assume_addr`]),
    /// so that rules about addresses outside the pod networks (cluster IPs,
    /// node addresses) fold away. The caller must put the result in the
    /// query's scope.
    pub(crate) fn assume_pod_addr(&self, a: &BV) -> Bool {
        let within = self.pod_nets().to_vec();
        let outside = self.node_addrs().into_iter().filter_map(|x| Ipv4Net::new(x, 32).ok()).collect();
        let c = self.pod_addr(a);
        let facts = crate::encode::packet::AddrFacts { within, outside, ..Default::default() };
        crate::encode::packet::assume_addr(a, facts);
        c
    }

    /// Hosts on node `n`'s LAN segment (they reach its LAN address directly).
    pub(crate) fn hosts_near(&self, n: usize) -> Vec<usize> {
        let Some(node) = self.snap.nodes.get(n) else { return Vec::new() };
        let lan = node.lan_addrs();
        self.snap
            .cluster
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| lan.iter().any(|a| h.address.contains(a)))
            .map(|(i, _)| i)
            .collect()
    }
}

/// Fields of a query's packet that are constants.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pins {
    /// The source address.
    pub src: Option<Ipv4Addr>,
    /// The destination address.
    pub dst: Option<Ipv4Addr>,
    /// The protocol.
    pub proto: Option<Proto>,
    /// The destination port.
    pub dport: Option<u16>,
    /// Only the packets that nat PREROUTING sends to this address matter
    /// to the query ([`Detail::dnat_to`]).
    pub dnat_to: Option<Ipv4Addr>,
    /// The destination is one of the node's own unicast addresses (when
    /// the node's local table lists them; see [`Checker::own_dsts`]): one
    /// query for all of them, told to the builders, where a query per
    /// address encoded everything after the DNAT once per address.
    pub dst_own: bool,
}

impl Pins {
    /// A protocol and destination port.
    pub fn port(proto: Proto, dport: u16) -> Pins {
        Pins { proto: Some(proto), dport: Some(dport), ..Pins::default() }
    }
}

/// The shape of a connection's first packet: a TCP SYN (no other flag), a
/// UDP or SCTP datagram with non-zero ports, an IP header of at least 20
/// bytes.
pub(crate) fn first_packet(p: &SymPacket) -> Vec<Bool> {
    let tcp = p.proto.feq(bv8(6));
    let ported = p.has_ports();
    let scope = vec![
        tcp.implies(p.tcp_flags.feq(bv8(natpath_model::packet::tcp::SYN))),
        not(&tcp).implies(p.tcp_flags.feq(bv8(0))),
        ported.implies(and2(&p.sport.feq(bv16(0)).not(), &p.dport.feq(bv16(0)).not())),
        p.len.bvuge(bv16(20)),
        p.mark.feq(bv32(0)),
        p.ttl.bvuge(bv8(FIRST_TTL)),
    ];
    // Noted after the constraint is built (or it would fold to true): the
    // TTL tests of the forwards on the way then fold.
    crate::encode::packet::assume_addr(
        &p.ttl,
        crate::encode::packet::AddrFacts { at_least: Some(u64::from(FIRST_TTL)), ..Default::default() },
    );
    scope
}

/// The least TTL a first packet of a query arrives with. Every path the
/// encoding follows crosses fewer forwards than this ([`EncodeOptions`]'s
/// hop bound is 8 node passages), so no packet in scope runs out of TTL,
/// and a rule that tests the TTL is asked about every value from here up;
/// clients start at 64 (Linux) or 128 (Windows).
///
/// [`EncodeOptions`]: crate::encode::EncodeOptions
pub(crate) const FIRST_TTL: u8 = 32;

/// `(dst, dport)` is one of `eps`.
pub(crate) fn is_endpoint(dst: &BV, dport: &BV, eps: &[Endpoint]) -> Bool {
    any(&eps
        .iter()
        .map(|e| and2(&dst.feq(crate::encode::packet::addr(e.address)), &dport.feq(bv16(e.port))))
        .collect::<Vec<_>>())
}

/// `x` is one of `addrs`.
pub(crate) fn one_of(x: &BV, addrs: &[Ipv4Addr]) -> Bool {
    any(&addrs.iter().map(|a| x.feq(crate::encode::packet::addr(*a))).collect::<Vec<_>>())
}

/// The device term takes one of `vals`.
pub(crate) fn dev_in(d: &DevTerm, vals: &[u16]) -> Bool {
    // A node's devices are numbered in order, so the list is a few runs:
    // one range test each, not one equality per device (a node's veths).
    let mut sorted = vals.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    d.one_of(&sorted)
}

/// The devices a packet from elsewhere can arrive by: every listed device but `lo`.
pub(crate) fn arrival_devs(ne: &NodeEnc<'_>) -> Vec<u16> {
    ne.devs.iter().filter(|d| *d != "lo").map(|d| ne.dev_value(d)).collect()
}

/// A node's own addresses, loopback aside.
pub(crate) fn own_addrs(n: &Node) -> Vec<Ipv4Addr> {
    n.interfaces.iter().flat_map(|i| i.addrs.iter().map(|a| a.addr.addr())).filter(|a| !a.is_loopback()).collect()
}

/// One node passage of a symbolic first packet: the inputs, what the
/// encoding says the node does with it, and the scope constraints.
pub(crate) struct NodeQuery {
    /// The node.
    pub n: usize,
    /// The arriving packet.
    pub pkt: SymPacket,
    /// The device it arrives by.
    pub dev: DevTerm,
    /// The passage.
    pub passage: Passage,
    /// Choices and hits.
    pub trail: Trail,
    /// The scope.
    pub scope: Vec<Bool>,
}

/// A walk from a host to a node's address and, for each pod it reaches, the
/// pod's answer back.
pub(crate) struct WalkQuery {
    /// The host.
    pub host: usize,
    /// The probe as it leaves the host.
    pub pkt: SymPacket,
    /// The forward walk.
    pub fwd: WalkOut,
    /// The answers' walks, one per pod reached.
    pub replies: Vec<(usize, WalkOut)>,
    /// Choices and hits of every passage.
    pub trail: Trail,
    /// The scope.
    pub scope: Vec<Bool>,
}

impl<'s> Checker<'s> {
    /// Ask whether some first packet node `n` receives by one of `devs`,
    /// within `shape`, has a passage (up to INPUT's entry when `upto_input`)
    /// in which `violation` holds; first over
    /// the over-approximated passage ([`Detail::nat_only`]), which settles
    /// most queries at a fraction of the size, then, when that one does not
    /// hold, over the exact passage. The answer is always the exact one's
    /// when there is a witness or an unknown, and the query returned is the
    /// one it answers (the exact one then, for the counterexample).
    pub(crate) fn node_ask(
        &mut self,
        n: usize,
        devs: &[u16],
        pins: Pins,
        upto_input: bool,
        shape: impl Fn(&Checker<'s>, &NodeEnc<'_>, &SymPacket) -> Vec<Bool>,
        violation: impl Fn(&NodeQuery) -> Bool,
    ) -> Option<(NodeQuery, QAnswer)> {
        // The arrival devices a difference needs, when it needs some.
        let mut kept: Option<Vec<u16>> = None;
        if let (Some(d), Some(node)) = (self.delta, self.snap.nodes.get(n)) {
            let ports = pins.dport.map_or(Ports::Any, Ports::one);
            let dsts: Option<Vec<Ipv4Addr>> = match (pins.dst, pins.dst_own) {
                (Some(a), _) => Some(vec![a]),
                (None, true) => self.own_dsts(n),
                (None, false) => None,
            };
            match d.touch_node(&node.name, dsts.as_deref(), pins.proto, &ports) {
                crate::delta::Touch::No => {
                    self.same += 1;
                    return None;
                }
                crate::delta::Touch::All => {}
                // Only what arrives by these devices can meet a difference:
                // the query is asked over them alone.
                crate::delta::Touch::Arrivals(names) => {
                    let ne = self.enc.node(n)?;
                    let only: Vec<u16> =
                        names.iter().filter(|d| ne.devs.contains(d)).map(|d| ne.dev_value(d)).collect();
                    let k: Vec<u16> = devs.iter().copied().filter(|v| only.contains(v)).collect();
                    if k.is_empty() {
                        self.same += 1;
                        return None;
                    }
                    kept = Some(k);
                }
            }
        }
        let devs = kept.as_deref().unwrap_or(devs);
        let over = Detail { upto_input, nat_only: true, dnat_to: pins.dnat_to };
        let q = self.node_query_with(n, devs, pins, over, &shape)?;
        let v = violation(&q);
        if crate::encode::is_false(&goal_of(&v, &q.passage.unknown).1) {
            self.folded += 1;
            return Some((q, QAnswer::Holds));
        }
        // What does not fold over a free source usually turns on whether
        // the source is one of the node's own addresses (`--src-type
        // LOCAL`, Calico's masquerade on tunl0): asked apart, each of those
        // addresses pinned and then every other source, the parts fold
        // where one query would go to Z3. The parts cover the source space
        // exactly; any that does not hold sends the whole to the exact
        // passage below.
        let own = match (pins.src, self.enc.node(n).and_then(crate::encode::route::local_unicast)) {
            (None, Some(own)) => own,
            _ => Vec::new(),
        };
        let holds = if own.is_empty() {
            matches!(self.ask(&q.scope, &v, &q.passage.unknown), QAnswer::Holds)
        } else {
            self.source_parts_hold(n, devs, pins, over, &shape, &violation, &own)?
        };
        if holds {
            return Some((q, QAnswer::Holds));
        }
        drop(q);
        self.refined += 1;
        let q =
            self.node_query_with(n, devs, pins, Detail { upto_input, nat_only: false, dnat_to: pins.dnat_to }, &shape)?;
        let v = violation(&q);
        let a = self.ask(&q.scope, &v, &q.passage.unknown);
        let a = self.prefer_natural(&q, &v, pins, a);
        Some((q, a))
    }

    /// A node query's violation shown, where it can be, as the packet an
    /// operator would try first ([`Checker::prefer`]): to the node's first
    /// LAN address when the query is over all of its own addresses
    /// (`Pins::dst_own`; the solver may pick any, a tunnel's, a Service's),
    /// from a `[[host]]` on the node's LAN when the source is free, from an
    /// ephemeral port ([`ephemeral`]).
    fn prefer_natural(&mut self, q: &NodeQuery, v: &Bool, pins: Pins, a: QAnswer) -> QAnswer {
        let QAnswer::Violated(w) = a else { return a };
        let node = self.snap.nodes.get(q.n);
        let mut prefs = Vec::new();
        if pins.dst_own && pins.dst.is_none() {
            if let Some(lan) = node.and_then(|n| n.lan_addrs().first().copied()) {
                prefs.push(q.pkt.dst.feq(crate::encode::packet::addr(lan)));
            }
        }
        if pins.src.is_none() {
            let host = self.hosts_near(q.n).first().and_then(|&h| self.snap.cluster.hosts.get(h));
            if let Some(h) = host.map(|h| h.address.addr()) {
                prefs.push(q.pkt.src.feq(crate::encode::packet::addr(h)));
            }
        }
        prefs.extend(ephemeral(&q.pkt));
        QAnswer::Violated(self.prefer(&q.scope, v, &q.passage.unknown, prefs, w))
    }

    /// Ask again with each of `prefs` added to `scope` in turn, keeping
    /// each one under which a definite violation remains, and return the
    /// last such witness (`w` when none does). A counterexample is any
    /// packet that breaks the invariant; this picks the one a reader
    /// recognises and can replay by hand. One query per preference the
    /// current witness does not meet, asked only after a violation.
    pub(crate) fn prefer(
        &mut self,
        scope: &[Bool],
        v: &Bool,
        unknown: &[Ending],
        prefs: Vec<Bool>,
        w: Witness,
    ) -> Witness {
        let mut scope = scope.to_vec();
        let mut best = w;
        for p in prefs {
            let met = best.bool(&p) == Some(true);
            scope.push(p);
            if met {
                continue;
            }
            match self.ask(&scope, v, unknown) {
                QAnswer::Violated(w2) => best = w2,
                _ => {
                    scope.pop();
                }
            }
        }
        best
    }

    /// Whether [`Checker::node_ask`]'s over-approximated query holds on
    /// each part of the source space: each of the node's addresses `own`
    /// pinned, then every other source (told to the builders as a fact).
    #[allow(clippy::too_many_arguments)]
    fn source_parts_hold(
        &mut self,
        n: usize,
        devs: &[u16],
        pins: Pins,
        over: Detail,
        shape: &impl Fn(&Checker<'s>, &NodeEnc<'_>, &SymPacket) -> Vec<Bool>,
        violation: &impl Fn(&NodeQuery) -> Bool,
        own: &[Ipv4Addr],
    ) -> Option<bool> {
        for part in own.iter().copied().map(Some).chain([None]) {
            let q = match part {
                Some(a) => self.node_query_with(n, devs, Pins { src: Some(a), ..pins }, over, shape)?,
                None => self.node_query_with(n, devs, pins, over, |c, ne, p| {
                    let mut v = shape(c, ne, p);
                    v.push(not(&one_of(&p.src, own)));
                    let outside_addrs = own.iter().map(|a| u32::from(*a)).collect();
                    crate::encode::packet::assume_addr(
                        &p.src,
                        crate::encode::packet::AddrFacts {
                            outside: martian_sources(),
                            outside_addrs,
                            ..Default::default()
                        },
                    );
                    v
                })?,
            };
            let v = violation(&q);
            if !matches!(self.ask(&q.scope, &v, &q.passage.unknown), QAnswer::Holds) {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Encode node `n` receiving a symbolic first packet by one of `devs`,
    /// within the constraints `shape` puts on it, in the given [`Detail`].
    pub(crate) fn node_query_with(
        &mut self,
        n: usize,
        devs: &[u16],
        pins: Pins,
        detail: Detail,
        shape: impl FnOnce(&Checker<'s>, &NodeEnc<'_>, &SymPacket) -> Vec<Bool>,
    ) -> Option<NodeQuery> {
        let pkt = self.fresh_packet("pkt", &pins);
        let dev = match devs {
            [one] => DevTerm::konst(*one),
            _ => self.fresh_dev(),
        };
        let ne = self.enc.node(n)?;
        let mut scope = first_packet(&pkt);
        scope.push(dev_in(&dev, devs));
        // Connections are unicast: broadcast and multicast destinations
        // (which the kernel never forwards) are out of every scope.
        scope.push(not(&crate::encode::route::addr_type_in(
            ne,
            &pkt.dst,
            None,
            natpath_model::ruleset::AddrTypes::BROADCAST | natpath_model::ruleset::AddrTypes::MULTICAST,
        )));
        // Martians the kernel drops before netfilter's routing decision
        // (ip_route_input_slow): sources in 0/8, 127/8, multicast or class
        // E; destinations in 0/8 or 127/8 from a device other than `lo`.
        for net in martian_sources() {
            scope.push(not(&in_net(&pkt.src, &net)));
        }
        for net in martian_destinations() {
            scope.push(not(&in_net(&pkt.dst, &net)));
        }
        scope.extend(shape(self, ne, &pkt));
        if pins.dst.is_none() && pins.dst_own {
            if let Some(own) = crate::encode::route::local_unicast(ne) {
                scope.push(one_of(&pkt.dst, &own));
                let within = own.iter().filter_map(|a| Ipv4Net::new(*a, 32).ok()).collect();
                crate::encode::packet::assume_addr(
                    &pkt.dst,
                    crate::encode::packet::AddrFacts { within, ..Default::default() },
                );
            }
        }
        let mut trail = Trail { record_hits: true, ..Trail::default() };
        let flow = Flow { cond: Bool::from_bool(true), state: State::arriving(pkt.clone()) };
        let passage = crate::encode::node::receive_with(&self.enc, n, &mut trail, flow, &dev, &CtCtx::Fresh, detail);
        scope.extend(trail.defs.iter().cloned());
        Some(NodeQuery { n, pkt, dev, passage, trail, scope })
    }

    /// Report a witness of a node query as a counterexample, replayed on the
    /// model's node with `shows` deciding whether the model agrees.
    pub(crate) fn node_cx(
        &mut self,
        name: &'static str,
        q: &NodeQuery,
        w: &Witness,
        summary: String,
        shows: impl Fn(&natpath_model::node::Passage, &Packet) -> bool,
    ) -> Option<Outcome> {
        let ne = self.enc.node(q.n)?;
        let pkt = packet_of(w, &q.pkt);
        let iface = dev_of(w, ne, &q.dev);
        let draws = draws_of(w, &q.trail);
        let rules = rules_of(w, &q.trail.hits);
        let node = ne.node.name.clone();
        let snap = self.snap;
        let shared = std::sync::Arc::clone(&self.tracer);
        let tracer = indexed(&shared, snap);
        let replayed = self.timed(|| replay_node(snap, tracer, q.n, &iface, &pkt, &draws));
        let replay = match replayed {
            Some(p) => {
                let (outcome, steps) = describe_passage(&node, &p);
                Replay { confirmed: shows(&p, &pkt.packet()), outcome, steps }
            }
            None => Replay { confirmed: false, outcome: "the model has no such node".into(), steps: Vec::new() },
        };
        let cx = Counterexample {
            invariant: name,
            summary,
            node,
            iface,
            from: None,
            packet: pkt.packet().to_string(),
            draws,
            rules,
            replay,
            pkt,
        };
        self.found(cx)
    }

    /// Encode host `h` sending a symbolic first packet to one of node `n`'s
    /// LAN addresses (within `shape`), the walk, and every reached pod's
    /// answer back through the bindings.
    pub(crate) fn walk_query(
        &mut self,
        n: usize,
        h: usize,
        with_replies: bool,
        pins: Pins,
        shape: impl FnOnce(&SymPacket) -> Vec<Bool>,
    ) -> Option<WalkQuery> {
        if !self.walk_touched(n, h, with_replies, pins) {
            return None;
        }
        self.walk_built(n, h, with_replies, pins, shape)
    }

    /// Whether [`Checker::walk_query`]'s walk can meet the difference this
    /// check is limited to (always, without one); counted as the same on
    /// both sides when not.
    pub(crate) fn walk_touched(&mut self, n: usize, h: usize, with_replies: bool, pins: Pins) -> bool {
        let (Some(d), Some(host), Some(node)) = (self.delta, self.snap.cluster.hosts.get(h), self.snap.nodes.get(n))
        else {
            return true;
        };
        let ports = pins.dport.map_or(Ports::Any, Ports::one);
        let dst = match pins.dst {
            Some(a) => vec![a],
            None => node.lan_addrs(),
        };
        if d.touches_walk(host.address.addr(), Some(&dst), pins.proto, &ports, with_replies) {
            return true;
        }
        self.same += 1;
        false
    }

    /// [`Checker::walk_query`] without asking the difference.
    pub(crate) fn walk_built(
        &mut self,
        n: usize,
        h: usize,
        with_replies: bool,
        pins: Pins,
        shape: impl FnOnce(&SymPacket) -> Vec<Bool>,
    ) -> Option<WalkQuery> {
        let snap = self.snap;
        let host = snap.cluster.hosts.get(h)?;
        let node = snap.nodes.get(n)?;
        let lans = node.lan_addrs();
        let pins = Pins {
            src: Some(host.address.addr()),
            dst: if lans.len() == 1 { lans.first().copied() } else { pins.dst },
            ..pins
        };
        let pkt = self.fresh_packet("probe", &pins);
        let ne = self.enc.node(n)?;
        let lan = ne.dev_value(&node.lan);
        let mut scope = first_packet(&pkt);
        scope.push(pkt.src.feq(crate::encode::packet::addr(host.address.addr())));
        scope.push(one_of(&pkt.dst, &node.lan_addrs()));
        scope.extend(shape(&pkt));
        let mut trail = Trail { record_hits: true, ..Trail::default() };
        let flow = Flow { cond: Bool::from_bool(true), state: State::arriving(pkt.clone()) };
        let fwd = walk::walk(
            &self.enc,
            &mut trail,
            walk::Start::Arrive { node: n, dev: lan, flow },
            &|_| CtCtx::Fresh,
            false,
        );
        let mut replies = Vec::new();
        if with_replies {
            // The pods the walk reached, in cluster.toml's order (not every
            // pod of the cluster, searched for each query).
            let mut reached: Vec<usize> = fwd
                .ends
                .iter()
                .filter_map(|e| match e.kind {
                    walk::EndKind::Reached(walk::Reached::Pod(pi)) => Some(pi),
                    _ => None,
                })
                .collect();
            reached.sort_unstable();
            reached.dedup();
            for pi in reached {
                let Some(pod) = snap.cluster.pods.get(pi) else { continue };
                let ends: Vec<&walk::WalkEnd> = fwd.reached(walk::Reached::Pod(pi)).collect();
                let Some(pn) = snap.nodes.iter().position(|x| x.name == pod.node) else { continue };
                let Some(pe) = self.enc.node(pn) else { continue };
                let dev = pe.dev_value(&pod.iface);
                // One answer per forward path: each meets exactly the
                // bindings its own first packet left, so the walk back folds
                // to that path's addresses.
                for e in ends {
                    let listens = listens(pod, &e.state.pkt);
                    let flow =
                        Flow { cond: and2(&e.cond, &listens), state: State::arriving(walk::answer(&e.state.pkt)) };
                    if crate::encode::is_false(&flow.cond) {
                        continue;
                    }
                    let back = walk::walk(
                        &self.enc,
                        &mut trail,
                        walk::Start::Arrive { node: pn, dev, flow },
                        &|m| e.replies_on(m),
                        true,
                    );
                    replies.push((pi, back));
                }
            }
        }
        scope.extend(trail.defs.iter().cloned());
        Some(WalkQuery { host: h, pkt, fwd, replies, trail, scope })
    }

    /// Report a witness of a walk query, replayed with the model's cluster
    /// walk; `shows` decides on each branch whether the model agrees.
    pub(crate) fn walk_cx(
        &mut self,
        name: &'static str,
        q: &WalkQuery,
        n: usize,
        w: &Witness,
        summary: String,
        shows: impl Fn(&natpath_model::trace::Branch) -> bool,
    ) -> Option<Outcome> {
        let snap = self.snap;
        let host = snap.cluster.hosts.get(q.host)?;
        let node = snap.nodes.get(n)?;
        let pkt = packet_of(w, &q.pkt);
        let draws = draws_of(w, &q.trail);
        let rules = rules_of(w, &q.trail.hits);
        let from = host.name.clone();
        let shared = std::sync::Arc::clone(&self.tracer);
        let tracer = indexed(&shared, snap);
        let traced = self.timed(|| replay_walk(snap, tracer, &from, &pkt));
        let replay = match traced {
            Ok(t) => {
                let hit = t.branches.iter().find(|b| shows(b));
                match hit {
                    Some(b) => {
                        let (outcome, steps) = describe_branch(b);
                        Replay { confirmed: true, outcome, steps }
                    }
                    None => {
                        let outs: Vec<String> = t.branches.iter().map(|b| describe_branch(b).0).collect();
                        Replay { confirmed: false, outcome: outs.join(" | "), steps: Vec::new() }
                    }
                }
            }
            Err(e) => {
                Replay { confirmed: false, outcome: format!("the model cannot trace it: {e}"), steps: Vec::new() }
            }
        };
        let cx = Counterexample {
            invariant: name,
            summary,
            node: node.name.clone(),
            iface: node.lan.clone(),
            from: Some(from),
            packet: pkt.packet().to_string(),
            draws,
            rules,
            replay,
            pkt,
        };
        self.found(cx)
    }
}

/// The pod answers on the packet's protocol and port (cluster.toml
/// `listen`; empty means every port).
pub(crate) fn listens(pod: &natpath_model::cluster::PodDecl, p: &SymPacket) -> Bool {
    if pod.listen.is_empty() {
        return Bool::from_bool(true);
    }
    let alts: Vec<Bool> = pod
        .listen
        .iter()
        .filter_map(|l| listen_port(l))
        .map(|(proto, port)| and2(&p.proto.feq(bv8(proto)), &p.dport.feq(bv16(port))))
        .collect();
    any(&alts)
}

/// `tcp/80` of a pod's `listen` as (protocol number, port).
pub(crate) fn listen_port(l: &str) -> Option<(u8, u16)> {
    let (proto, port) = l.split_once('/')?;
    let proto = match proto {
        "tcp" => 6u8,
        "udp" => 17,
        "sctp" => 132,
        _ => return None,
    };
    Some((proto, port.parse().ok()?))
}

/// How a report names one NodePort of one node: `node-1 NodePort tcp/30080 (ns/svc)`.
pub(crate) fn node_port_label(node: &str, s: &Service, port: u16) -> String {
    format!("{node} NodePort {}/{port} ({})", natpath_model::packet::proto_name(s.proto), s.name)
}

/// A served endpoint address:port as the model's traces write it.
pub(crate) fn ep_str(e: &Endpoint) -> String {
    format!("{}:{}", e.address, e.port)
}

/// The exit code of a set of verdicts: 1 when one is violated, else 3 when
/// one is unknown, else 0.
pub fn exit_code(verdicts: &[Verdict]) -> i32 {
    if verdicts.iter().any(|v| matches!(v.outcome, Outcome::Violated(_))) {
        1
    } else if verdicts.iter().any(|v| matches!(v.outcome, Outcome::Unknown(_))) {
        3
    } else {
        0
    }
}

/// The destinations a query over "any of node's own addresses" splits
/// into: each own unicast address as a constant (so that every address
/// type and route lookup of the destination folds), or one symbolic
/// destination when the node's local addresses cannot be listed.
pub(crate) fn local_dsts(ne: &NodeEnc<'_>) -> Vec<Option<Ipv4Addr>> {
    match crate::encode::route::local_unicast(ne) {
        Some(v) => v.into_iter().map(Some).collect(),
        None => vec![None],
    }
}
