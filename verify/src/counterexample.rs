//! Counterexamples: the concrete packet (and the draws of every free choice)
//! read from a solver's model, and its replay through the executable model.
//!
//! Contract: a counterexample is shown only with its replay. The replay runs
//! the model (`NodeModel::receive` for one node, `walk::trace` for a walk)
//! on the same packet, with the model's random draws, `recent` lists and
//! `nth` counters set to what the solver chose; each invariant supplies the
//! predicate that says whether the model shows the same violation. A replay
//! that does not show it is a natpath bug (the encoding and the model
//! disagree), which the caller reports as unknown (exit 3), never a pass.

use crate::encode::packet::{DevTerm, SymPacket};
use crate::encode::{ChoiceKind, Hit, NodeEnc, Trail};
use crate::solver::Witness;
use natpath_model::loc::Loc;
use natpath_model::node::{NodeEnd, NodeModel, NodeOptions, Passage};
use natpath_model::packet::{Hook, Packet};
use natpath_model::ruleset::{Match, Proto, StatisticMode, TableName};
use natpath_model::snapshot::Snapshot;
use natpath_model::trace::{Probe, Trace};
use natpath_model::traverse::Chooser;
use natpath_model::walk::{self, TraceOptions};
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

/// One free choice the solver made on the violating path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Draw {
    /// What kind of choice (`statistic`, `recent`, `nth`, `limit`, `connlimit`, `device`).
    pub kind: String,
    /// The rule, as `file:line (table chain rule N)`.
    pub rule: String,
    /// The value taken (for `statistic`: the draw succeeded).
    pub value: bool,
    /// Which node passage of the walk made it.
    pub passage: usize,
    #[serde(skip)]
    loc: Option<(String, u32)>,
    #[serde(skip)]
    detail: ChoiceKind,
    #[serde(skip)]
    node: usize,
    #[serde(skip)]
    table: Option<TableName>,
    #[serde(skip)]
    chain: String,
    #[serde(skip)]
    rule_no: usize,
}

/// What the model did with the counterexample.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Replay {
    /// The model shows the same violation.
    pub confirmed: bool,
    /// The model's outcome, in words.
    pub outcome: String,
    /// The model's steps: `node hook table chain rule: text (effect)`.
    pub steps: Vec<String>,
}

/// A packet that breaks an invariant, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Counterexample {
    /// The invariant's catalog name.
    pub invariant: &'static str,
    /// What breaks, in words.
    pub summary: String,
    /// The node the packet arrives at.
    pub node: String,
    /// The device it arrives by.
    pub iface: String,
    /// The sender, for walks from a host or pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The packet as it arrives (`proto src:port -> dst:port`).
    pub packet: String,
    /// The free choices on the violating path.
    pub draws: Vec<Draw>,
    /// The rules the encoding says took effect on the violating path.
    pub rules: Vec<String>,
    /// The replay through the model.
    pub replay: Replay,
    #[serde(skip)]
    pub(crate) pkt: PacketValue,
}

/// The arriving packet's fields (the model's `Packet` is not `Eq`-free of
/// its inner packet; this is the flat copy a counterexample keeps).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PacketValue {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub icmp: (u8, u8),
    pub len: u16,
    pub ttl: u8,
}

impl PacketValue {
    /// The model's packet (mark 0: it arrives from a wire).
    pub fn packet(&self) -> Packet {
        Packet {
            src: Ipv4Addr::from(self.src),
            dst: Ipv4Addr::from(self.dst),
            proto: Proto(self.proto),
            sport: self.sport,
            dport: self.dport,
            tcp_flags: self.tcp_flags,
            icmp: self.icmp,
            len: self.len,
            ttl: self.ttl,
            mark: 0,
            inner: None,
        }
    }
}

fn narrow<T: TryFrom<u64> + Default>(v: Option<u64>) -> T {
    v.and_then(|v| T::try_from(v).ok()).unwrap_or_default()
}

/// Read the packet's fields from a witness.
pub(crate) fn packet_of(w: &Witness, p: &SymPacket) -> PacketValue {
    PacketValue {
        src: narrow(w.u64(&p.src)),
        dst: narrow(w.u64(&p.dst)),
        sport: narrow(w.u64(&p.sport)),
        dport: narrow(w.u64(&p.dport)),
        proto: narrow(w.u64(&p.proto)),
        tcp_flags: narrow(w.u64(&p.tcp_flags)),
        icmp: (narrow(w.u64(&p.icmp_type)), narrow(w.u64(&p.icmp_code))),
        len: narrow(w.u64(&p.len)),
        ttl: narrow(w.u64(&p.ttl)),
    }
}

/// The device a witness chose for a device term.
pub(crate) fn dev_of(w: &Witness, node: &NodeEnc<'_>, d: &DevTerm) -> String {
    let v: u16 = match d.known {
        Some(k) => k,
        None => narrow(w.u64(&d.bv)),
    };
    node.dev_name(v).map(str::to_string).unwrap_or_else(|| "(unlisted device)".into())
}

/// The choices made on the witness's path, in the order the kernel meets them.
pub(crate) fn draws_of(w: &Witness, trail: &Trail) -> Vec<Draw> {
    trail
        .choices
        .iter()
        .filter(|c| w.bool(&c.reached) == Some(true))
        .map(|c| Draw {
            kind: match c.kind {
                ChoiceKind::Random { .. } => "statistic",
                ChoiceKind::Nth => "nth",
                ChoiceKind::Recent { .. } => "recent",
                ChoiceKind::RateOk => "limit",
                ChoiceKind::Connlimit => "connlimit",
                ChoiceKind::OtherDevice => "device",
            }
            .to_string(),
            rule: c.rule.to_string(),
            value: w.bool(&c.var).unwrap_or(false),
            passage: c.passage,
            loc: Some((c.rule.loc.file.to_string(), c.rule.loc.line)),
            detail: c.kind.clone(),
            node: c.rule.node,
            table: Some(c.rule.table),
            chain: c.rule.chain.clone(),
            rule_no: c.rule.rule,
        })
        .collect()
}

/// The rules that took effect on the witness's path.
/// Calls and plain continues are left out: what remains are the rules that
/// decided (accept, drop, reject, return, NAT, mark writes).
pub(crate) fn rules_of(w: &Witness, hits: &[Hit]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for h in hits {
        if matches!(h.effect, "jump" | "goto" | "continue") || w.bool(&h.cond) != Some(true) {
            continue;
        }
        let line = format!("{} {}", h.rule, h.effect);
        if !v.contains(&line) {
            v.push(line);
        }
    }
    v
}

/// Draws `statistic` the way the solver did; any other draw takes the side
/// that succeeds when the probability is not 0 (the model's own default).
#[derive(Debug, Default)]
pub struct ReplayChooser {
    queues: HashMap<(String, u32), VecDeque<bool>>,
}

impl ReplayChooser {
    /// A chooser that replays `draws`.
    pub fn new(draws: &[Draw]) -> Self {
        let mut queues: HashMap<(String, u32), VecDeque<bool>> = HashMap::new();
        for d in draws {
            if let (ChoiceKind::Random { .. }, Some(loc)) = (&d.detail, &d.loc) {
                queues.entry(loc.clone()).or_default().push_back(d.value);
            }
        }
        ReplayChooser { queues }
    }
}

impl Chooser for ReplayChooser {
    fn choose(&mut self, p31: u32, loc: &Loc) -> bool {
        match self.queues.get_mut(&(loc.file.to_string(), loc.line)).and_then(|q| q.pop_front()) {
            Some(v) => v,
            None => p31 > 0,
        }
    }
}

/// Set the model's `recent` lists and `nth` counters of node `n` so that it
/// makes the draws the solver made.
fn seed_state(model: &mut NodeModel<'_>, snap: &Snapshot, n: usize, draws: &[Draw], pkt: &Packet) {
    for d in draws.iter().filter(|d| d.node == n) {
        match &d.detail {
            ChoiceKind::Recent { name, rsource, mask, hitcount } if d.value => {
                let a = if *rsource { pkt.src } else { pkt.dst };
                let a = Ipv4Addr::from(u32::from(a) & mask);
                model.state.recent.entry(name.clone()).or_default().insert(a, (*hitcount).max(1));
            }
            ChoiceKind::Nth => {
                let every = snap
                    .nodes
                    .get(n)
                    .and_then(|node| d.table.and_then(|t| node.ruleset.table(t)))
                    .and_then(|t| t.chain(&d.chain))
                    .and_then(|c| c.rules.get(d.rule_no.wrapping_sub(1)))
                    .and_then(|r| {
                        r.matches.iter().find_map(|m| match m {
                            Match::Statistic { mode: StatisticMode::Nth { every, .. }, .. } => Some(*every),
                            _ => None,
                        })
                    });
                if let (Some(every), Some(loc)) = (every, &d.loc) {
                    model.state.nth.insert(loc.clone(), if d.value { every } else { every.wrapping_add(1) });
                }
            }
            _ => {}
        }
    }
}

/// Run the arriving packet of `cx` through node `n` of the model.
pub(crate) fn replay_node<'s>(
    snap: &'s Snapshot,
    tracer: &walk::Tracer<'s>,
    n: usize,
    iface: &str,
    pkt: &PacketValue,
    draws: &[Draw],
) -> Option<Passage<'s>> {
    let mut model = NodeModel::shared(std::sync::Arc::clone(tracer.tables(n)?), NodeOptions::default());
    let p = pkt.packet();
    seed_state(&mut model, snap, n, draws, &p);
    let mut chooser = ReplayChooser::new(draws);
    Some(model.receive(p, iface, false, &mut chooser))
}

/// The model's passage as a replay record.
pub(crate) fn describe_passage(node: &str, p: &Passage<'_>) -> (String, Vec<String>) {
    let outcome = match &p.end {
        NodeEnd::Local(pkt) => format!("delivered to {node} itself as {pkt}"),
        NodeEnd::Out { packet, dev, nexthop } => format!("leaves {node} by {dev} towards {nexthop} as {packet}"),
        NodeEnd::Dropped(w) => w.clone(),
        NodeEnd::Rejected(w) => w.clone(),
        NodeEnd::Unknown(w) => format!("unknown: {w}"),
    };
    let mut extra = Vec::new();
    if let Some(m) = p.mark_after_nat_prerouting {
        extra.push(format!("mark after nat PREROUTING {m:#x}"));
    }
    if let Some(m) = p.mark_at_nat_postrouting {
        extra.push(format!("mark entering nat POSTROUTING {m:#x}"));
    }
    if let Some((a, b)) = &p.dnat {
        extra.push(format!("DNAT {a} -> {b}"));
    }
    if let Some((a, b, m)) = &p.snat {
        extra.push(format!("{} {a} -> {b}", if *m { "MASQUERADE" } else { "SNAT" }));
    }
    let hooks: Vec<String> = p.hooks.iter().map(Hook::to_string).collect();
    extra.push(format!("hooks {}", hooks.join(" ")));
    let outcome = format!("{outcome} ({})", extra.join(", "));
    let steps = p
        .steps
        .iter()
        .map(|s| {
            let rule = s.hit.rule.map(|r| format!("rule {r}")).unwrap_or_else(|| "policy".into());
            let text = match s.hit.ir {
                Some(_) => format!(": {}", s.text()),
                None => String::new(),
            };
            format!("{node} {} {} {} {rule}{text} ({})", s.hook, s.hit.table.as_str(), s.hit.chain, s.hit.effect)
        })
        .collect();
    (outcome, steps)
}

/// Trace a probe from a host through the model's cluster walk.
pub(crate) fn replay_walk<'s>(
    snap: &'s Snapshot,
    tracer: &walk::Tracer<'s>,
    from: &str,
    pkt: &PacketValue,
) -> Result<Trace, String> {
    let dst = Ipv4Addr::from(pkt.dst);
    let probe = Probe {
        from: from.to_string(),
        to: format!("{dst}:{}", pkt.dport),
        dst,
        dport: pkt.dport,
        proto: Proto(pkt.proto),
        sport: pkt.sport,
        via: None,
    };
    walk::trace_with(snap, tracer, &probe, &TraceOptions::default()).map_err(|e| e.0)
}

/// One branch of a trace as replay steps.
pub(crate) fn describe_branch(b: &natpath_model::trace::Branch) -> (String, Vec<String>) {
    let mut outcome = format!("{:?} (probability {})", b.outcome, b.probability);
    if let Some(d) = &b.delivered_to {
        outcome.push_str(&format!(", delivered to {} {} ({})", d.kind, d.name, d.address));
    }
    if let Some(s) = &b.seen_by_destination {
        outcome.push_str(&format!(", seen as {} -> {}", s.src, s.dst));
    }
    if let Some(r) = &b.reply {
        outcome.push_str(&format!(", reply {:?}", r.outcome));
        if let Some(s) = &r.seen_by_client {
            outcome.push_str(&format!(" seen by the client as {} -> {}", s.src, s.dst));
        }
        if let Some(w) = &r.reason {
            outcome.push_str(&format!(" ({w})"));
        }
    }
    if let Some(w) = &b.reason {
        outcome.push_str(&format!(": {w}"));
    }
    let steps = b
        .steps
        .iter()
        .map(|s| {
            let rule = s.rule.map(|r| format!("rule {r}")).unwrap_or_else(|| "policy".into());
            let text = if s.text.is_empty() { String::new() } else { format!(": {}", s.text) };
            match (s.hook, s.table) {
                (Some(hook), Some(table)) => {
                    format!(
                        "{} {:?} {hook} {} {} {rule}{text} ({})",
                        s.node,
                        s.packet,
                        table.as_str(),
                        s.chain,
                        s.effect
                    )
                }
                _ => format!("router {} {:?} route {} ({})", s.node, s.packet, s.text, s.effect),
            }
        })
        .collect();
    (outcome, steps)
}

/// Enumerate every draw sequence of one node passage and add up the exact
/// probability of each destination translation (`None`: not translated).
pub(crate) fn dnat_shares(
    snap: &Snapshot,
    n: usize,
    iface: &str,
    pkt: &Packet,
) -> Vec<(Option<String>, num_rational::Ratio<num_bigint::BigUint>)> {
    use num_bigint::BigUint;
    use num_rational::Ratio;
    struct Tree {
        prefix: Vec<bool>,
        made: Vec<(bool, u32)>,
    }
    impl Chooser for Tree {
        fn choose(&mut self, p31: u32, _loc: &Loc) -> bool {
            let d = self.prefix.get(self.made.len()).copied().unwrap_or(p31 > 0);
            self.made.push((d, p31));
            d
        }
    }
    const TWO31: u64 = 1 << 31;
    let mut out: Vec<(Option<String>, Ratio<BigUint>)> = Vec::new();
    let Some(node) = snap.nodes.get(n) else { return out };
    let mut todo: Vec<Vec<bool>> = vec![Vec::new()];
    let mut budget = 4096usize;
    while let Some(prefix) = todo.pop() {
        budget = budget.saturating_sub(1);
        if budget == 0 {
            break;
        }
        let mut t = Tree { prefix, made: Vec::new() };
        let mut model = NodeModel::new(node, NodeOptions::default());
        let p = model.receive(pkt.clone(), iface, false, &mut t);
        let mut num = BigUint::from(1u32);
        let mut den = BigUint::from(1u32);
        for &(d, p31) in &t.made {
            let q = u64::from(p31).min(TWO31);
            num *= BigUint::from(if d { q } else { TWO31 - q });
            den *= BigUint::from(TWO31);
        }
        for k in t.prefix.len()..t.made.len() {
            let Some(&(d, p31)) = t.made.get(k) else { continue };
            let q = u64::from(p31).min(TWO31);
            let alt_p = if d { TWO31 - q } else { q };
            if alt_p == 0 {
                continue;
            }
            let mut alt: Vec<bool> = t.made.iter().take(k).map(|&(d, _)| d).collect();
            alt.push(!d);
            todo.push(alt);
        }
        let key = p.dnat.map(|(_, b)| b.to_string());
        let share = Ratio::new(num, den);
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, s)) => *s = s.clone() + share,
            None => out.push((key, share)),
        }
    }
    out
}
