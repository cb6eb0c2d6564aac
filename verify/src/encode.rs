//! The SMT encoding: the same netfilter, routing, conntrack and cluster-walk
//! semantics as the executable model, written as Z3 constraints over a
//! symbolic packet, so that one query speaks for every packet at once.
//!
//! The layout mirrors the model's files, so a rule's concrete and symbolic
//! meaning sit side by side: [`packet`] (the symbolic packet and conntrack
//! view), [`traverse`] (one table's chains: matches, targets, jump, goto,
//! return, policies), [`route`] (policy rules, longest prefix match, address
//! types, source selection, reverse path filtering), [`conntrack`] (what a
//! first packet, a tunnel carrier and a reply see), [`node`] (the hooks of one
//! node in the kernel's order) and [`walk`] (node to node, tunnels, reply).
//! The encoding shares the IR with the model and nothing that evaluates it.
//!
//! Contract: the encoding is *sound* for "holds": every behaviour the kernel
//! (as the model describes it) can show for a packet in scope is admitted.
//! Where the kernel depends on history or chance (`statistic`, `recent`,
//! `limit`, `hashlimit`, `connlimit`, `nth`, the address of a NAT range), the
//! encoding leaves a free [`Choice`], which over-approximates: a violation
//! found through a choice the model cannot make fails to replay and is
//! reported as unknown (exit 3), never as a pass. A match or target the
//! encoding cannot express ends the path as *unknown* naming the rule's
//! `file:line`; every verdict whose scope reaches such a path is unknown.
//!
//! Where the encoding follows the model rather than the kernel (each listed
//! where it is made; none occurs in the corpus): a NAT range takes its first
//! address and port; `--random-fully` keeps the source port (the bindings
//! restore whatever port the kernel picks, so no catalog invariant depends on
//! it); policy-routing `tos`, `ipproto`, port and `uidrange` selectors are
//! not read and `oif` never selects; multipath routes take their first next
//! hop; a packet of a walk's reply direction is looked up by the reply tuple
//! only; and, as everywhere in natpath, packets are not fragments and carry
//! TOS 0.
//!
//! Building blocks keep formulas small: concrete inputs are constants of the
//! symbolic packet, comparisons of numerals fold in Rust, every hook boundary
//! names the state with fresh constants (`Trail::defs`), and each NAT outcome
//! continues as its own flow.

pub mod conntrack;
pub mod effects;
pub mod node;
pub mod packet;
pub mod route;
pub mod skeleton;
pub mod traverse;
pub mod walk;

use crate::encode::packet::Num;
use natpath_model::loc::Loc;
use natpath_model::netstate::{IpRule, Route};
use natpath_model::packet::Hook;
use natpath_model::ruleset::{Chain, Table, TableName};
use natpath_model::snapshot::{Node, Snapshot};
use std::collections::HashMap;
use z3::ast::{Ast, Bool, BV};

/// Where a rule is, for reports, unknown reasons and the replay's draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// The node's index in the snapshot.
    pub node: usize,
    /// The table.
    pub table: TableName,
    /// The chain.
    pub chain: String,
    /// 1-based rule number in dump order.
    pub rule: usize,
    /// Where the rule was read.
    pub loc: Loc,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} ({} {} rule {})", self.loc.file, self.loc.line, self.table.as_str(), self.chain, self.rule)
    }
}

/// What a free choice stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChoiceKind {
    /// `-m statistic --mode random`: true when the draw succeeds (`p31 / 2^31`).
    Random {
        /// The probability scaled by 2^31.
        p31: u32,
    },
    /// `-m statistic --mode nth`: the packet counter is history.
    Nth,
    /// `-m recent --rcheck|--update|--remove`: whether the address is listed.
    Recent {
        /// The list's name.
        name: String,
        /// `--rsource` (the source address is looked up).
        rsource: bool,
        /// `--mask`.
        mask: u32,
        /// `--hitcount`.
        hitcount: u32,
    },
    /// `-m limit` / `-m hashlimit --hashlimit-upto`: a token is available.
    RateOk,
    /// `-m connlimit`: the count of connections already open (the value of
    /// the choice is "the limit condition holds").
    Connlimit,
    /// The name of a device the snapshot does not list matches this pattern.
    OtherDevice,
}

/// A free choice the encoding leaves to the solver, with the condition under
/// which the kernel actually makes it (the rule's earlier matches hold).
#[derive(Debug, Clone)]
pub struct Choice {
    /// The choice's value.
    pub var: Bool,
    /// True on the paths where the choice is made.
    pub reached: Bool,
    /// What it stands for.
    pub kind: ChoiceKind,
    /// The rule that makes it.
    pub rule: RuleRef,
    /// Which passage of a walk made it (0 for a single-node query).
    pub passage: usize,
}

/// A rule that took effect on some path: the condition and the rule.
#[derive(Debug, Clone)]
pub struct Hit {
    /// True on the paths where the rule took effect.
    pub cond: Bool,
    /// The rule.
    pub rule: RuleRef,
    /// What it did (`jump X`, `mark`, `dnat`...).
    pub effect: &'static str,
}

/// Everything an encoding records besides its constraints: free choices and
/// rule hits, in the order the kernel would meet them.
#[derive(Debug, Default)]
pub struct Trail {
    /// Free choices.
    pub choices: Vec<Choice>,
    /// Rules that took effect (targets other than a plain count).
    pub hits: Vec<Hit>,
    /// The passage being encoded (walks number their node passages).
    pub passage: usize,
    /// Record rule hits (reports need them; the differential tests do not).
    pub record_hits: bool,
    /// Definitions `fresh = term` that name intermediate states; every
    /// query over this trail's encoding must assert them.
    pub defs: Vec<Bool>,
    /// Name free choices by where they are made instead of freshly (see
    /// [`SharedChoices`]); `None` for every single-snapshot query.
    pub shared: Option<SharedChoices>,
}

/// Names for free choices that two encodings of the same packet share: a
/// semantic diff encodes BEFORE and AFTER over one symbolic packet, and a
/// random draw that both sides make at the same point of the walk must be
/// the same draw, or two identical Services would differ by their dice. A
/// choice is named by its node, the walk passage, its kind (a statistic
/// rule's probability included, so that draws of another probability are
/// other draws) and how many choices of that kind the passage made before:
/// kube-proxy's renamed chains, its KUBE-EXT layout and changes after the
/// draw keep the draws aligned; a change that adds or removes a draw before
/// another misaligns them, which the diff's replay in the model catches
/// (an unknown, never a wrong "no difference": with the draws tied, equal
/// fates for every draw mean equal distributions).
#[derive(Debug, Clone, Default)]
pub struct SharedChoices {
    /// A prefix unique to the query.
    pub prefix: String,
    seen: HashMap<String, u32>,
}

impl SharedChoices {
    /// Names for one query.
    pub fn new(prefix: &str) -> SharedChoices {
        SharedChoices { prefix: prefix.to_string(), seen: HashMap::new() }
    }

    /// The choice made at `place` (its next use on this walk).
    pub fn var(&mut self, place: &str) -> Bool {
        let n = self.seen.entry(place.to_string()).or_insert(0);
        *n += 1;
        Bool::new_const(format!("{}|{place}|{n}", self.prefix))
    }
}

thread_local! {
    /// The last fresh constant's number (per thread, as Z3's context is).
    static FRESH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Run `f` in a Z3 context of its own, with this thread's caches of terms
/// and its fresh-constant counter empty, as a process would run it alone.
///
/// Z3's answers to a query (which model, so which counterexample) depend
/// on every term the context made before it. A unit of work (an
/// invariant on a node, a batch of diff entries) therefore runs here, so
/// that what natpath prints does not depend on which thread took which
/// unit, on how many cores the machine has, or on how a check was
/// sharded. A new context costs about a millisecond.
pub fn in_own_context<R: Send + Sync>(f: impl FnOnce() -> R + Send + Sync) -> R {
    let fresh = FRESH.with(|c| c.replace(0));
    packet::clear_term_caches();
    let out = z3::with_z3_config(&z3::Config::new(), f);
    // The caches now hold the inner context's terms: drop them.
    packet::clear_term_caches();
    FRESH.with(|c| c.set(fresh));
    out
}

/// A new number for a fresh constant: Z3's `mk_fresh_const` formats a
/// string name for each (a tenth of the node invariants' encoding); an
/// integer symbol of a per-thread counter is as unique and much cheaper.
fn fresh_symbol() -> z3::Symbol {
    z3::Symbol::Int(FRESH.with(|c| {
        let v = c.get().wrapping_add(1);
        c.set(v);
        v
    }))
}

/// A fresh Boolean constant.
pub fn fresh_bool() -> Bool {
    Bool::new_const(fresh_symbol())
}

/// A fresh bit-vector constant of width `w`.
pub fn fresh_bv(w: u32) -> BV {
    BV::new_const(fresh_symbol(), w)
}

impl Trail {
    /// A name for `b`: itself when it is a constant or a plain symbol, else
    /// a fresh constant defined equal to it. Naming the state at hook
    /// boundaries keeps every later term (and every `simplify`) small.
    pub fn name_bool(&mut self, b: &Bool) -> Bool {
        if b.as_bool().is_some() || (b.is_const() && b.num_children() == 0) {
            return b.clone();
        }
        let v = fresh_bool();
        self.defs.push(v.eq(b));
        v
    }

    /// A name for `x` (see [`Trail::name_bool`]); numerals stay numerals so
    /// that slicing by constant ports and protocols keeps working.
    pub fn name_bv(&mut self, x: &BV) -> BV {
        if x.num().is_some() || (x.is_const() && x.num_children() == 0) {
            return x.clone();
        }
        // No `simplify` here: it flattens the nested conjunctions of a
        // first-match chain (routes, address types) into one quadratic term;
        // the builders fold numerals themselves.
        let v = fresh_bv(x.get_size());
        self.defs.push(v.eq(x));
        crate::encode::packet::note_named(&v, x);
        crate::encode::packet::note_named_least(&v, x);
        crate::encode::packet::with_known(v, crate::encode::packet::known_bits(x))
    }
}

/// Options of the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Tunnel carrier flows without an entry are ESTABLISHED, as on a live
    /// cluster (docs/kernel-semantics.md; the model's default).
    pub carrier_established: bool,
    /// Bound on the chain call depth.
    pub max_depth: usize,
    /// Node passages a walk may take before it is a loop.
    pub max_hops: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { carrier_established: true, max_depth: 64, max_hops: 8 }
    }
}

/// One node prepared for encoding: its device table and indexed chains.
#[derive(Debug)]
pub struct NodeEnc<'s> {
    /// The node's index in the snapshot.
    pub index: usize,
    /// The node's dumps.
    pub node: &'s Node,
    /// Device names: value `i + 1` of a device term is `devs[i]`; 0 is "no
    /// device" and `devs.len() + 1` a device the snapshot does not list.
    pub devs: Vec<String>,
    tables: Vec<(&'s Table, natpath_model::hash::FastMap<&'s str, &'s Chain>)>,
    /// The policy routing rules by priority (the kernel's defaults when the
    /// snapshot has none).
    pub ip_rules: Vec<IpRule>,
    /// What each table but nat can do at each hook (see
    /// [`effects::Effects::of`]; `None`: no summary).
    effects: HashMap<(TableName, Hook), Option<effects::Effects>>,
    /// The long chains' indexes ([`traverse::Dispatch`]).
    dispatch: HashMap<(TableName, &'s str), traverse::Dispatch>,
    /// Each routing table's routes in lookup order: longest prefix first,
    /// then the lowest metric, ties in dump order (sorted once: a node of
    /// a large cluster has a route per other node).
    routes: HashMap<u32, Vec<&'s Route>>,
    /// The snapshot's pods on this node, by the device they are behind
    /// (the first pod of a device, as the walks take it).
    pods: HashMap<&'s str, usize>,
    /// The addresses of its LAN interface ([`Node::lan_addrs`], read once:
    /// a node has a device per workload).
    pub lan_addrs: Vec<std::net::Ipv4Addr>,
    /// The device values whose packets are not forwarded (their own
    /// `forwarding` is 0), with the sysctl key that says so
    /// ([`route::not_forwarding`]; read once: a node has a device per
    /// workload, and every passage asks).
    pub not_forwarding: Vec<(u16, String)>,
    /// Per device value (0 to `other`): what `fib_validate_source` reads of
    /// the arrival device, and whether it has an IPv4 address (read once,
    /// as `not_forwarding`).
    pub rpf: Vec<DevRpf>,
    /// With rp_filter 0, `fib_validate_source` does the full route lookup
    /// (the node has custom ip rules or custom local routes:
    /// [`natpath_model::fib::has_custom_rules`],
    /// [`natpath_model::fib::has_custom_local_routes`]) rather than only
    /// look the source up among the node's addresses.
    pub rpf_full_check: bool,
    /// Every address configured on the node's interfaces
    /// ([`natpath_model::fib::own_addrs`]), sorted.
    pub own_addrs: Vec<std::net::Ipv4Addr>,
}

/// What reverse path filtering reads of one arrival device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevRpf {
    /// rp_filter, src_valid_mark, accept_local.
    pub conf: natpath_model::fib::RpfConf,
    /// The device has an IPv4 address (`no_addr` is false).
    pub has_addr: bool,
}

impl<'s> NodeEnc<'s> {
    /// Prepare node `index` of `snap`.
    pub fn new(snap: &'s Snapshot, index: usize, node: &'s Node, max_depth: usize) -> Self {
        let mut devs: Vec<String> = node.interfaces.iter().map(|i| i.name.clone()).collect();
        let mut seen: std::collections::HashSet<String> = devs.iter().cloned().collect();
        let mut add = |d: &str| {
            if seen.insert(d.to_string()) {
                devs.push(d.to_string());
            }
        };
        for r in &node.routes {
            for nh in &r.nexthops {
                if let Some(d) = &nh.dev {
                    add(d);
                }
            }
        }
        for p in &snap.cluster.pods {
            if p.node == node.name {
                add(&p.iface);
            }
        }
        add("lo");
        // In name order: the devices a wildcard (`cali+`) matches get
        // consecutive values.
        devs.sort();
        devs.dedup();
        let tables: Vec<(&'s Table, natpath_model::hash::FastMap<&'s str, &'s Chain>)> = node
            .ruleset
            .tables
            .iter()
            .map(|t| {
                let idx = t.chains.iter().map(|c| (c.name.as_str(), c)).collect();
                (t, idx)
            })
            .collect();
        let mut ip_rules =
            if node.ip_rules.is_empty() { natpath_model::fib::default_ip_rules() } else { node.ip_rules.clone() };
        ip_rules.sort_by_key(|r| r.priority);
        let mut effects = HashMap::new();
        for (t, idx) in &tables {
            if t.name == TableName::Nat {
                continue;
            }
            for hook in [Hook::Prerouting, Hook::Input, Hook::Forward, Hook::Output, Hook::Postrouting] {
                effects.insert((t.name, hook), effects::Effects::of(idx, hook, max_depth));
            }
        }
        let mut dispatch = HashMap::new();
        for (t, _) in &tables {
            for c in &t.chains {
                if let Some(d) = traverse::Dispatch::of(c) {
                    dispatch.insert((t.name, c.name.as_str()), d);
                }
            }
        }
        let mut routes: HashMap<u32, Vec<&'s Route>> = HashMap::new();
        for r in &node.routes {
            routes.entry(r.table).or_default().push(r);
        }
        for v in routes.values_mut() {
            v.sort_by_key(|r| (std::cmp::Reverse(r.dst.prefix_len()), r.metric));
        }
        let mut pods = HashMap::new();
        for (i, p) in snap.cluster.pods.iter().enumerate().filter(|(_, p)| p.node == node.name) {
            pods.entry(p.iface.as_str()).or_insert(i);
        }
        let lan_addrs = node.lan_addrs();
        let mut ne = NodeEnc {
            index,
            node,
            devs,
            tables,
            ip_rules,
            effects,
            dispatch,
            routes,
            pods,
            lan_addrs,
            not_forwarding: Vec::new(),
            rpf: Vec::new(),
            rpf_full_check: natpath_model::fib::has_custom_rules(&node.ip_rules)
                || natpath_model::fib::has_custom_local_routes(&node.routes),
            own_addrs: natpath_model::fib::own_addrs(&node.interfaces),
        };
        // Every device value, 0 ("no device") and `other` included.
        ne.not_forwarding = (0..=ne.other_dev())
            .filter_map(|v| node.sysctl.not_forwarding(ne.dev_name(v).unwrap_or("\u{0}other")).map(|key| (v, key)))
            .collect();
        ne.rpf = (0..=ne.other_dev())
            .map(|v| {
                let name = ne.dev_name(v).unwrap_or("\u{0}other");
                DevRpf {
                    conf: node.sysctl.rpf_conf(name),
                    has_addr: node.interfaces.iter().find(|i| i.name == name).is_some_and(|i| !i.addrs.is_empty()),
                }
            })
            .collect();
        ne
    }

    /// What reverse path filtering reads of device value `v`.
    pub fn dev_rpf(&self, v: u16) -> DevRpf {
        self.rpf.get(usize::from(v)).copied().unwrap_or(DevRpf {
            conf: natpath_model::fib::RpfConf { rp_filter: 0, src_valid_mark: false, accept_local: false },
            has_addr: false,
        })
    }

    /// Routing table `table`'s routes in lookup order.
    pub fn routes(&self, table: u32) -> &[&'s Route] {
        self.routes.get(&table).map_or(&[], Vec::as_slice)
    }

    /// The index in the snapshot of the pod behind device `dev` of this node.
    pub fn pod_behind(&self, dev: &str) -> Option<usize> {
        self.pods.get(dev).copied()
    }

    /// The index of chain `chain` of table `t`, when it is long enough.
    pub fn dispatch(&self, t: TableName, chain: &'s str) -> Option<&traverse::Dispatch> {
        if self.dispatch.is_empty() {
            return None;
        }
        self.dispatch.get(&(t, chain))
    }

    /// What table `t` can do at `hook` ([`effects::Effects::of`]): none for
    /// nat, or when the summary does not exist.
    pub fn effects(&self, t: TableName, hook: Hook) -> Option<effects::Effects> {
        if self.table(t).is_none() {
            return Some(effects::Effects::default());
        }
        self.effects.get(&(t, hook)).copied().flatten()
    }

    /// The table named `name`, with its chains by name.
    pub fn table(&self, name: TableName) -> Option<(&'s Table, &natpath_model::hash::FastMap<&'s str, &'s Chain>)> {
        self.tables.iter().find(|(t, _)| t.name == name).map(|(t, idx)| (*t, idx))
    }

    /// The value a device term takes for `name` (the "other" value when the
    /// snapshot does not list it).
    pub fn dev_value(&self, name: &str) -> u16 {
        match self.devs.binary_search_by(|d| d.as_str().cmp(name)) {
            Ok(i) => u16::try_from(i + 1).unwrap_or(u16::MAX),
            Err(_) => self.other_dev(),
        }
    }

    /// The value of "a device the snapshot does not list".
    pub fn other_dev(&self) -> u16 {
        u16::try_from(self.devs.len() + 1).unwrap_or(u16::MAX)
    }

    /// The name of device value `v` (`None` for "no device" and "other").
    pub fn dev_name(&self, v: u16) -> Option<&str> {
        if v == 0 {
            return None;
        }
        self.devs.get(usize::from(v) - 1).map(String::as_str)
    }
}

/// A tunnel carrier: sender, peer, IPIP (or VXLAN), reply direction, outer destination.
pub type CarrierKey = (usize, usize, bool, bool, u32);

/// A snapshot prepared for encoding.
#[derive(Debug)]
pub struct Encoder<'s> {
    /// The snapshot.
    pub snap: &'s Snapshot,
    /// Its nodes, in snapshot order (shared by the encoders of one check's
    /// threads: they hold no Z3 term).
    pub nodes: std::sync::Arc<Vec<NodeEnc<'s>>>,
    /// Options.
    pub opts: EncodeOptions,
    /// Fates of tunnel carriers already encoded (constant ones only).
    pub carriers: std::cell::RefCell<HashMap<CarrierKey, (bool, bool)>>,
    /// What is known beyond the snapshot (the overlay's pod address space,
    /// read when a walk first reaches the edge).
    pub edge: natpath_model::edge::Edge<'s>,
    /// The node that owns each LAN address (the first, as
    /// `Snapshot::lan_owner` takes it), indexed once: walks ask it at
    /// every hop, and a cluster has hundreds of nodes.
    lan_owners: HashMap<std::net::Ipv4Addr, usize>,
}

impl<'s> Encoder<'s> {
    /// Prepare every node of `snap`.
    pub fn new(snap: &'s Snapshot, opts: EncodeOptions) -> Self {
        let nodes = snap.nodes.iter().enumerate().map(|(i, n)| NodeEnc::new(snap, i, n, opts.max_depth)).collect();
        Encoder::with_nodes(snap, std::sync::Arc::new(nodes), opts)
    }

    /// An encoder over nodes already prepared (by [`Encoder::new`] of the
    /// same snapshot and options).
    pub fn with_nodes(snap: &'s Snapshot, nodes: std::sync::Arc<Vec<NodeEnc<'s>>>, opts: EncodeOptions) -> Self {
        let mut lan_owners = HashMap::new();
        for n in nodes.iter() {
            for a in &n.lan_addrs {
                lan_owners.entry(*a).or_insert(n.index);
            }
        }
        Encoder {
            snap,
            nodes,
            opts,
            carriers: std::cell::RefCell::new(HashMap::new()),
            edge: natpath_model::edge::Edge::new(snap),
            lan_owners,
        }
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> Option<&NodeEnc<'s>> {
        self.nodes.get(i)
    }

    /// The node whose LAN interface has `a` (`Snapshot::lan_owner`).
    pub fn lan_owner(&self, a: std::net::Ipv4Addr) -> Option<usize> {
        self.lan_owners.get(&a).copied()
    }
}

/// A condition with a reason, for the ways a path can end early.
#[derive(Debug, Clone)]
pub struct Ending {
    /// True on the paths that end so.
    pub cond: Bool,
    /// Why, in words (names the rule's `file:line` where there is one).
    pub reason: String,
}

/// The disjunction of a list of conditions (false when empty), folding
/// constants.
pub fn any(conds: &[Bool]) -> Bool {
    if conds.iter().any(is_true) {
        return Bool::from_bool(true);
    }
    let live: Vec<&Bool> = conds.iter().filter(|c| !is_false(c)).collect();
    match live.as_slice() {
        [] => Bool::from_bool(false),
        [one] => (*one).clone(),
        many => Bool::or(many),
    }
}

/// The conjunction of a list of conditions (true when empty), folding
/// constants.
pub fn all(conds: &[Bool]) -> Bool {
    if conds.iter().any(is_false) {
        return Bool::from_bool(false);
    }
    let live: Vec<&Bool> = conds.iter().filter(|c| !is_true(c)).collect();
    match live.as_slice() {
        [] => Bool::from_bool(true),
        [one] => (*one).clone(),
        many => Bool::and(many),
    }
}

/// Whether `b` simplifies to the constant false (a sliced-away path).
pub fn is_false(b: &Bool) -> bool {
    b.as_bool() == Some(false)
}

/// Whether `b` is the constant true.
pub fn is_true(b: &Bool) -> bool {
    b.as_bool() == Some(true)
}

/// `a ∧ b`, folding constants so that sliced paths stay small.
pub fn and2(a: &Bool, b: &Bool) -> Bool {
    match (a.as_bool(), b.as_bool()) {
        (Some(false), _) | (_, Some(false)) => Bool::from_bool(false),
        (Some(true), _) => b.clone(),
        (_, Some(true)) => a.clone(),
        _ => Bool::and(&[a, b]),
    }
}

/// `a ∨ b`, folding constants.
pub fn or2(a: &Bool, b: &Bool) -> Bool {
    match (a.as_bool(), b.as_bool()) {
        (Some(true), _) | (_, Some(true)) => Bool::from_bool(true),
        (Some(false), _) => b.clone(),
        (_, Some(false)) => a.clone(),
        _ => Bool::or(&[a, b]),
    }
}

/// `a ⊕ b` (exactly one holds), folding constants.
pub fn xor2(a: &Bool, b: &Bool) -> Bool {
    match (a.as_bool(), b.as_bool()) {
        (Some(x), Some(y)) => Bool::from_bool(x != y),
        (Some(x), None) => {
            if x {
                not(b)
            } else {
                b.clone()
            }
        }
        (None, Some(y)) => {
            if y {
                not(a)
            } else {
                a.clone()
            }
        }
        _ => a.xor(b),
    }
}

/// `¬a`, folding constants.
pub fn not(a: &Bool) -> Bool {
    match a.as_bool() {
        Some(v) => Bool::from_bool(!v),
        None => a.not(),
    }
}
