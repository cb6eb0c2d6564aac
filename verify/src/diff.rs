//! Semantic diff of two snapshots: the packets whose fate differs between
//! BEFORE and AFTER, for every packet in scope, by SMT.
//!
//! Over one symbolic packet, the cluster walk of BEFORE and the walk of
//! AFTER are encoded side by side (each with its own rules, routes and
//! topology) and Z3 is asked for a packet whose fate differs: how the walk
//! ends (delivered to whom, dropped, rejected, left the snapshot, a loop),
//! the address and port the receiver sees as destination, the address it
//! sees as source, and for a pod that answers, how the answer ends and the
//! address and port the client sees it from. Random draws (`statistic`,
//! `recent`) that both sides make at the same place are the same draw
//! ([`crate::encode::SharedChoices`]: places are named by chain content, so
//! kube-proxy's renamed `KUBE-SVC-*` chains are the same place). Every
//! difference the solver finds is replayed with the model on both sides,
//! and is reported only when the model's distributions of fates differ
//! too; a mismatch is a natpath bug and makes the entry unknown.
//!
//! Scope (this version): every first packet (TCP SYN, UDP or SCTP
//! datagram, any source port) from every `[[host]]` present on both sides
//! to every LAN address of every node, one entry per NodePort that either
//! side declares and one for all other destination ports of each protocol;
//! and from the first pod of each node (declared alike on both sides) to
//! the cluster IP and port of every Service either side has. Traffic from
//! nodes and other pods, and to external and load-balancer IPs, is not yet
//! in scope, and the report says so.
//!
//! Contract: "no difference" for an entry is a proof for every packet of
//! it (the solver's unsat), "changed" comes with a packet the model
//! replays, and anything else (a rule natpath cannot express on a path, a
//! solver timeout, a replay that disagrees) is `unknown`, never "no
//! difference". The source port a receiver sees is not compared: with
//! `--random-fully` it is arbitrary on both sides.

use crate::delta::Ports;
use crate::encode::conntrack::CtCtx;
use crate::encode::packet::{Flow, FoldEq, State, SymPacket};
use crate::encode::walk::{self, EndKind, Reached, WalkEnd};
use crate::encode::{and2, any, is_false, not, Ending, SharedChoices, Trail};
use crate::invariants::{first_packet, listens, one_of, CheckOptions, Checker, Pins, Prepared, QAnswer};
use crate::solver::Witness;
use natpath_model::ruleset::Proto;
use natpath_model::snapshot::Snapshot;
use natpath_model::trace::{Branch, Trace};
use natpath_model::walk::TraceOptions;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use z3::ast::{Bool, BV};

/// The schema name of `natpath diff --format json`.
pub const SCHEMA: &str = "natpath.diff/1";

/// The protocols whose ports the diff covers.
const PROTOS: [Proto; 3] = [Proto::TCP, Proto::UDP, Proto::SCTP];

/// Why two snapshots cannot be compared: exit 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffError(pub String);

impl std::fmt::Display for DiffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The difference between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The BEFORE snapshot, as given.
    pub before: String,
    /// The AFTER snapshot, as given.
    pub after: String,
    /// What was compared.
    pub scope: Scope,
    /// The changes, one per Service port (or other ports) whose packets
    /// meet another fate, in the order entries were checked.
    pub changes: Vec<Change>,
    /// Entries natpath could not decide, each with why.
    pub unknown: Vec<Unknown>,
    /// What the comparison assumed or left out.
    pub notes: Vec<String>,
    /// Why a side has nothing in scope (no node's rules define a Service),
    /// when one has: then no difference proves nothing
    /// ([`crate::invariants::empty_scope_of_pair`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nothing_in_scope: Option<String>,
    /// `--allow-empty`: nothing in scope does not make the exit code 3.
    #[serde(skip)]
    pub allow_empty: bool,
}

/// What a diff compared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scope {
    /// The nodes (the same on both sides).
    pub nodes: Vec<String>,
    /// The senders, as source classes (`outside client `client``).
    pub sources: Vec<String>,
    /// Entries compared (node, sender, protocol and port or other ports).
    pub entries: usize,
    /// Entries whose nodes are the same on both sides up to names and
    /// comments, settled without the solver.
    pub unchanged: usize,
    /// Queries that reached Z3.
    pub queries: usize,
    /// Queries the encoding settled by itself.
    pub settled_while_encoding: usize,
}

/// Packets of one Service port (or of the other ports) that meet another fate.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The Service port (`namespace/name:port`), when the entry is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The destination pod (`namespace/name`), for `pod-to-pod`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// `nodeport`; `other-port` for node ports no Service declares;
    /// `cluster-ip` for a Service's cluster IP, from pods; `external-ip`
    /// and `load-balancer-ip` for a Service's external and load-balancer
    /// IPs, from outside clients that hand the packet to the node;
    /// `pod-to-pod` for a pod's own address, from pods.
    pub entry: &'static str,
    /// The Service address, for `cluster-ip`, `external-ip` and
    /// `load-balancer-ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `tcp`, `udp` or `sctp`.
    pub proto: String,
    /// The port, for a NodePort or a cluster IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The nodes where some packet changed.
    pub nodes: Vec<String>,
    /// The source classes of those packets.
    pub sources: Vec<String>,
    /// One replayed packet per node.
    pub examples: Vec<Example>,
}

/// One packet whose fate differs, as the solver found it and as the model
/// replays it on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// The node the packet is sent to.
    pub node: String,
    /// Who sends it.
    pub source: String,
    /// `PROTO SRC:PORT -> DST:PORT`.
    pub packet: String,
    /// Its fate on BEFORE, as the encoding says (one draw of the dice).
    pub before: String,
    /// Its fate on AFTER.
    pub after: String,
    /// Every fate the model gives it on BEFORE, with its probability.
    pub before_fates: Vec<String>,
    /// The same on AFTER.
    pub after_fates: Vec<String>,
    /// The steps of the most likely branches that differ: `- ` taken on
    /// BEFORE only, `+ ` on AFTER only (`node: HOOK table chain: rule`),
    /// in walk order; the steps both take alike are left out.
    pub steps: Vec<String>,
    /// How many steps both sides take alike.
    pub same_steps: usize,
    /// Where the rules of the differing steps are written: the dump file
    /// and line of each, on its side (SARIF annotates these).
    pub rules: Vec<RuleAt>,
}

/// A rule of a differing step, where it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleAt {
    /// `before` or `after`.
    pub side: &'static str,
    /// The dump file.
    pub file: String,
    /// Its line.
    pub line: u32,
    /// The rule.
    pub text: String,
}

/// An entry natpath could not decide.
#[derive(Debug, Clone, Serialize)]
pub struct Unknown {
    /// The entry (`node1 NodePort tcp/32220 (default/nginx:8080-80) from client`).
    pub entry: String,
    /// Why.
    pub reason: String,
}

impl Change {
    /// How reports name the change: `NodePort tcp/32220 (ns/svc:port)`,
    /// `cluster IP tcp/10.96.0.10:53 (ns/svc:port)` (likewise `external
    /// IP` and `load-balancer IP`) or `other tcp ports`.
    pub fn label(&self) -> String {
        let kind = match self.entry {
            "external-ip" => "external IP",
            "load-balancer-ip" => "load-balancer IP",
            _ => "cluster IP",
        };
        if let (Some(pod), Some(a)) = (&self.pod, &self.address) {
            return match self.port {
                Some(p) => format!("pod {}/{a}:{p} ({pod})", self.proto),
                None => format!("pod {}/{a} every port ({pod})", self.proto),
            };
        }
        match (&self.service, self.port, &self.address) {
            (Some(s), Some(p), Some(a)) => format!("{kind} {}/{a}:{p} ({s})", self.proto),
            (Some(s), Some(p), None) => format!("NodePort {}/{p} ({s})", self.proto),
            _ => format!("other {} ports (no Service)", self.proto),
        }
    }
}

impl Diff {
    /// No packet in scope changed and nothing was unknown.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.unknown.is_empty()
    }

    /// 0 no difference, 1 differences, 3 unknown entries and no
    /// difference, or nothing in scope (unless allowed) and no difference.
    pub fn exit_code(&self) -> i32 {
        let exit = if !self.changes.is_empty() {
            1
        } else if !self.unknown.is_empty() {
            3
        } else {
            0
        };
        crate::invariants::scope_exit(exit, self.nothing_in_scope.as_deref(), self.allow_empty)
    }
}

/// A NodePort entry: protocol, port and the Service it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Port {
    proto: u8,
    port: u16,
    service: String,
}

/// What one query compares: packets from `host` to `node`'s LAN addresses,
/// of `proto`, to the NodePort `port` or (`None`) to any port but `others`;
/// or packets to a Service address and `port` ([`To`]) from the outside
/// host `host` handed to `node`, from the pod `host` on `node`, or from
/// `node` itself ([`Sender`]).
struct Entry {
    node: String,
    host: String,
    proto: Proto,
    port: Option<Port>,
    others: Vec<Port>,
    to: To,
    from: Sender,
}

/// Who sends an entry's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// An outside host of cluster.toml (`host`).
    Host,
    /// A pod on the node (`host`).
    Pod,
    /// The node itself (`host` is its name): the packet leaves by OUTPUT,
    /// its source address chosen by the node's routes.
    Node,
}

/// Where an entry's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    /// The node's LAN addresses, from an outside client: a NodePort, or
    /// the ports no Service declares.
    Lan,
    /// A Service's cluster IP, from a pod on the node.
    ClusterIp(Ipv4Addr),
    /// A Service's external IP, from an outside client that hands the
    /// packet to the node (a router's route to the address).
    ExternalIp(Ipv4Addr),
    /// A Service's load-balancer IP, likewise (the load balancer's choice
    /// of node, or the node that announces the address).
    LoadBalancerIp(Ipv4Addr),
    /// A pod's own address, from a pod on the node (the destination pod's
    /// name is the entry port's `service`).
    Pod(Ipv4Addr),
}

impl Entry {
    /// The one address the packets go to: a Service's or a pod's (none
    /// for a node's LAN).
    fn target_ip(&self) -> Option<Ipv4Addr> {
        match self.to {
            To::Lan => None,
            To::ClusterIp(ip) | To::ExternalIp(ip) | To::LoadBalancerIp(ip) | To::Pod(ip) => Some(ip),
        }
    }

    /// The sender as a source class.
    fn source(&self) -> String {
        match self.from {
            Sender::Pod => format!("pod `{}` on {}", self.host, self.node),
            Sender::Host => format!("outside client `{}`", self.host),
            Sender::Node => format!("node `{}` itself", self.node),
        }
    }
}

/// How one side's walk of a packet can end, with its observables.
struct Fate {
    cond: Bool,
    /// The constant part: how it ends, who receives, how the answer ends.
    what: String,
    /// Why, in words, for a report (not compared: a drop's reason names
    /// the side's dump file).
    why: String,
    /// Receiver's destination address and port, source address; the
    /// client's view of the answer (address and port) when there is one.
    terms: Vec<BV>,
}

/// One side of the comparison.
struct Side<'s> {
    c: Checker<'s>,
    snap: &'s Snapshot,
}

/// What a diff compares besides its defaults.
#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    /// Solver options.
    pub check: CheckOptions,
    /// Nodes equal up to chain names, comments and counters need no query
    /// (off in tests that prove the shortcut and the encoding agree).
    pub structural: bool,
    /// Also compare the first pod of each node, and each node itself,
    /// reaching every Service's cluster IP: one entry per sender and Service
    /// port, each a walk to the endpoints and back (`--pods`). Entries the change cannot reach are
    /// skipped as any other ([`crate::delta`]); a change that reaches every
    /// packet makes it slow (about two minutes at 100 Services, with some
    /// entries timing out).
    pub pods: bool,
    /// Above this many pairs of BEFORE and AFTER fates, an entry compares
    /// one term per side instead of pair by pair ([`MAX_PAIRS`]; the tests
    /// set 0 to prove both ways agree).
    pub max_pairs: usize,
    /// Accept a comparison with nothing in scope on a side
    /// ([`Diff::nothing_in_scope`]) as its entries say (`--allow-empty`).
    pub allow_empty: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            check: CheckOptions::default(),
            structural: true,
            pods: false,
            max_pairs: MAX_PAIRS,
            allow_empty: false,
        }
    }
}

/// Compare two `iptables-save` dumps of one node, rule by rule: the
/// one-node use of `natpath diff FILE FILE`. Without the node's addresses
/// and routes no walk can be encoded, so this only proves sameness: every
/// packet meets the same rules (names, comments, counters and the order of
/// independent rules aside), or each kind of packet that can meet a rule
/// that differs is an unknown entry (exit 3), with the Service ports
/// kube-proxy's rules give it.
pub fn diff_dumps(
    before: &natpath_model::ruleset::Ruleset,
    after: &natpath_model::ruleset::Ruleset,
    (before_name, after_name): (&str, &str),
) -> Diff {
    let lines = crate::delta::ruleset_differences(before, after);
    let reason = "its rules differ; two dump files have no addresses or routes, so natpath cannot tell \
                  whether a packet's fate changes (compare snapshot directories for that)";
    Diff {
        schema: SCHEMA,
        before: before_name.to_string(),
        after: after_name.to_string(),
        scope: Scope { entries: lines.len().max(1), unchanged: usize::from(lines.is_empty()), ..Scope::default() },
        changes: Vec::new(),
        unknown: lines.iter().map(|l| Unknown { entry: l.clone(), reason: reason.into() }).collect(),
        notes: vec![if lines.is_empty() {
            "two dump files of one node: every packet meets the same rules on both sides (names, comments, \
             counters and the order of independent rules aside), so none meets another fate"
                .into()
        } else {
            "two dump files of one node, compared rule by rule: what differs is listed as unknown".into()
        }],
        nothing_in_scope: None,
        allow_empty: false,
    }
}

/// Compare BEFORE and AFTER with the default scope. Fails when they cannot
/// be compared (another node set).
pub fn diff(
    before: &Snapshot,
    after: &Snapshot,
    before_name: &str,
    after_name: &str,
    opts: &CheckOptions,
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<Diff, DiffError> {
    let o = DiffOptions { check: *opts, ..DiffOptions::default() };
    diff_with(before, after, (before_name, after_name), &o, progress)
}

/// [`diff`] with [`DiffOptions`].
pub fn diff_with(
    before: &Snapshot,
    after: &Snapshot,
    names: (&str, &str),
    dopts: &DiffOptions,
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<Diff, DiffError> {
    diff_using(before, after, names, dopts, None, None, progress)
}

/// [`diff_with`], with the structural difference already found (the gate
/// shares it with its invariant checks).
pub(crate) fn diff_using<'s>(
    before: &'s Snapshot,
    after: &'s Snapshot,
    (before_name, after_name): (&str, &str),
    dopts: &DiffOptions,
    known: Option<&crate::delta::Delta>,
    ready: Option<(&Prepared<'s>, &Prepared<'s>)>,
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<Diff, DiffError> {
    let (opts, structural) = (&dopts.check, dopts.structural);
    let names = |s: &Snapshot| s.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
    let (mut nb, mut na) = (names(before), names(after));
    nb.sort();
    na.sort();
    if nb != na {
        return Err(DiffError(format!(
            "{after_name}: the snapshots disagree on their nodes: {before_name} has {}, {after_name} has {}",
            nb.join(", "),
            na.join(", ")
        )));
    }
    // Each side is read once and shared by the threads; the structural
    // difference is found meanwhile.
    let (own_b, own_a, delta) = std::thread::scope(|sc| {
        let pb = sc.spawn(|| ready.is_none().then(|| Prepared::new(before, opts)));
        let delta = match known {
            Some(d) => structural.then_some(std::borrow::Cow::Borrowed(d)),
            None => structural.then(|| std::borrow::Cow::Owned(crate::delta::Delta::new(before, after))),
        };
        let pa = ready.is_none().then(|| Prepared::new(after, opts));
        (pb.join(), pa, delta)
    });
    let Ok(own_b) = own_b else {
        return Err(DiffError("BUG: reading BEFORE failed".into()));
    };
    let (prep_b, prep_a) = match (ready, &own_b, &own_a) {
        (Some(r), _, _) => r,
        (None, Some(b), Some(a)) => (b, a),
        _ => return Err(DiffError("BUG: a side was not read".into())),
    };
    let b = Side { c: Checker::with(before, opts, prep_b), snap: before };
    let a = Side { c: Checker::with(after, opts, prep_a), snap: after };
    let mut out = Diff {
        schema: SCHEMA,
        before: before_name.to_string(),
        after: after_name.to_string(),
        scope: Scope { nodes: na.clone(), ..Scope::default() },
        changes: Vec::new(),
        unknown: Vec::new(),
        notes: vec![if dopts.pods {
            "scope: first packets from the outside hosts of cluster.toml to every node's LAN addresses, \
             every port of every protocol, and to every Service's external and load-balancer IPs handed \
             to each node; from the first pod of each node (declared alike on both sides) and from each \
             node itself to every Service's cluster IP; and from those pods to every other pod's address \
             at the ports it declares; traffic from other pods is not compared yet"
        } else {
            "scope: first packets from the outside hosts of cluster.toml to every node's LAN addresses, \
             every port of every protocol, and to every Service's external and load-balancer IPs handed \
             to each node; traffic from pods and nodes, and to cluster IPs, is not compared yet"
        }
        .into()],
        nothing_in_scope: crate::invariants::empty_scope_of_pair(before, after),
        allow_empty: dopts.allow_empty,
    };
    let hosts: Vec<String> = after
        .cluster
        .hosts
        .iter()
        .filter(|h| before.cluster.hosts.iter().any(|x| x.name == h.name && x.address == h.address))
        .map(|h| h.name.clone())
        .collect();
    for h in &after.cluster.hosts {
        if !hosts.contains(&h.name) {
            out.notes.push(format!("host `{}` is not the same on both sides: not compared", h.name));
        }
    }
    // The entries: every (node, host near it on both sides, port entry).
    let mut entries: Vec<Entry> = Vec::new();
    let mut near_hosts: Vec<(String, Vec<String>)> = Vec::new();
    for node in &na {
        let (Some(ni_b), Some(ni_a)) = (index(before, node), index(after, node)) else { continue };
        let near_b: Vec<String> = b.c.hosts_near(ni_b).iter().filter_map(|&h| host_name(before, h)).collect();
        let near: Vec<String> =
            a.c.hosts_near(ni_a)
                .iter()
                .filter_map(|&h| host_name(after, h))
                .filter(|h| near_b.contains(h) && hosts.contains(h))
                .collect();
        let mut ports: Vec<Port> = Vec::new();
        for side in [&b, &a] {
            let ni = if std::ptr::eq(side.snap, before) { ni_b } else { ni_a };
            for s in side.c.node_ports(ni).iter() {
                if let Some(port) = s.node_port {
                    if !ports.iter().any(|p| p.proto == s.proto.0 && p.port == port) {
                        ports.push(Port { proto: s.proto.0, port, service: s.name.clone() });
                    }
                }
            }
        }
        ports.sort();
        for h in &near {
            for proto in PROTOS {
                let same: Vec<Port> = ports.iter().filter(|p| p.proto == proto.0).cloned().collect();
                for p in &same {
                    entries.push(Entry {
                        node: node.clone(),
                        host: h.clone(),
                        proto,
                        port: Some(p.clone()),
                        others: Vec::new(),
                        to: To::Lan,
                        from: Sender::Host,
                    });
                }
                entries.push(Entry {
                    node: node.clone(),
                    host: h.clone(),
                    proto,
                    port: None,
                    others: same,
                    to: To::Lan,
                    from: Sender::Host,
                });
            }
        }
        if near.is_empty() {
            out.notes.push(format!("{node}: no host of both sides is on its LAN segment: not compared"));
        }
        near_hosts.push((node.clone(), near));
    }
    out.scope.sources = hosts.iter().map(|h| format!("outside client `{h}`")).collect();
    // External and load-balancer IPs of either side, from every host near
    // a node, handed to that node.
    let mut external: Vec<(To, Port)> = Vec::new();
    for side in [&b, &a] {
        for intent in side.c.intents.iter() {
            for svc in &intent.services {
                for &(ip, port) in &svc.external_ips {
                    let to = if svc.lb_ips.contains(&ip) { To::LoadBalancerIp(ip) } else { To::ExternalIp(ip) };
                    if !external.iter().any(|(t, p)| *t == to && p.port == port && p.proto == svc.proto.0) {
                        external.push((to, Port { proto: svc.proto.0, port, service: svc.name.clone() }));
                    }
                }
            }
        }
    }
    external.sort_by(|x, y| (&x.1.service, x.1.port).cmp(&(&y.1.service, y.1.port)));
    for (node, near) in &near_hosts {
        for h in near {
            for (to, p) in &external {
                entries.push(Entry {
                    node: node.clone(),
                    host: h.clone(),
                    proto: Proto(p.proto),
                    port: Some(p.clone()),
                    others: Vec::new(),
                    to: *to,
                    from: Sender::Host,
                });
            }
        }
    }
    // Pods as senders (with `pods`): the first pod of each node that both
    // sides declare alike, to the cluster IP of every Service port either
    // side has.
    let mut cluster: Vec<(Ipv4Addr, Port)> = Vec::new();
    for side in [&b, &a].into_iter().filter(|_| dopts.pods) {
        for intent in side.c.intents.iter() {
            for svc in &intent.services {
                if let Some((ip, port)) = svc.cluster_ip {
                    if !cluster.iter().any(|(i, p)| *i == ip && p.port == port && p.proto == svc.proto.0) {
                        cluster.push((ip, Port { proto: svc.proto.0, port, service: svc.name.clone() }));
                    }
                }
            }
        }
    }
    cluster.sort_by(|x, y| (&x.1.service, x.1.port).cmp(&(&y.1.service, y.1.port)));
    let mut senders: Vec<(String, &natpath_model::cluster::PodDecl)> = Vec::new();
    for node in na.iter().filter(|_| dopts.pods) {
        let alike = |p: &natpath_model::cluster::PodDecl| {
            before
                .cluster
                .pods
                .iter()
                .any(|q| q.name == p.name && q.node == p.node && q.address == p.address && q.iface == p.iface)
        };
        let Some(pod) = after.cluster.pods.iter().find(|p| p.node == *node && alike(p)) else { continue };
        out.scope.sources.push(format!("pod `{}` on {node}", pod.name));
        senders.push((node.clone(), pod));
        for (ip, p) in &cluster {
            entries.push(Entry {
                node: node.clone(),
                host: pod.name.clone(),
                proto: Proto(p.proto),
                port: Some(p.clone()),
                others: Vec::new(),
                to: To::ClusterIp(*ip),
                from: Sender::Pod,
            });
        }
    }
    // Pod to pod (with `pods`): each sender pod to every other pod declared
    // alike on both sides, at each port it declares it listens on (every
    // port of each protocol when it declares none).
    let alike = |p: &natpath_model::cluster::PodDecl| {
        before.cluster.pods.iter().any(|q| q.name == p.name && q.node == p.node && q.address == p.address)
    };
    for (node, from) in &senders {
        for to in after.cluster.pods.iter().filter(|p| p.name != from.name && alike(p)) {
            // (protocol, port), or every port of a protocol (`None`).
            let ports: Vec<(Proto, Option<u16>)> = if to.listen.is_empty() {
                PROTOS.iter().map(|&p| (p, None)).collect()
            } else {
                to.listen
                    .iter()
                    .filter_map(|l| crate::invariants::listen_port(l))
                    .map(|(p, n)| (Proto(p), Some(n)))
                    .collect()
            };
            for (proto, port) in ports {
                entries.push(Entry {
                    node: node.clone(),
                    host: from.name.clone(),
                    proto,
                    port: port.map(|port| Port { proto: proto.0, port, service: to.name.clone() }),
                    others: Vec::new(),
                    to: To::Pod(to.address),
                    from: Sender::Pod,
                });
            }
        }
    }
    // The nodes themselves as senders (with `pods`), to every cluster IP.
    for node in na.iter().filter(|_| dopts.pods) {
        out.scope.sources.push(format!("node `{node}` itself"));
        for (ip, p) in &cluster {
            entries.push(Entry {
                node: node.clone(),
                host: node.clone(),
                proto: Proto(p.proto),
                port: Some(p.clone()),
                others: Vec::new(),
                to: To::ClusterIp(*ip),
                from: Sender::Node,
            });
        }
    }
    out.scope.entries = entries.len();
    // Entries whose packets can meet no difference on any node, replies
    // included, are the same on both sides: no query (see `delta`).
    if let Some(delta) = &delta {
        if delta.is_empty() {
            out.notes.push("every node is the same on both sides up to chain names, comments, counters and the order of independent rules".into());
        } else {
            out.notes.extend(delta.summary().into_iter().map(|s| format!("differs: {s}")));
        }
        // The sender's address: a host's, or (pods as senders) a pod's,
        // declared alike on both sides; for a node, one of its own
        // addresses, which tells the delta that the answers come back to a
        // local address (see `Delta::touches_walk`).
        let address = |e: &Entry| match e.from {
            Sender::Host => after.cluster.hosts.iter().find(|x| x.name == e.host).map(|x| x.address.addr()),
            Sender::Pod => after.cluster.pods.iter().find(|x| x.name == e.host).map(|x| x.address),
            Sender::Node => after.node(&e.node).and_then(|n| n.lan_addrs().first().copied()),
        };
        entries.retain(|e| {
            let ports = match &e.port {
                Some(p) => Ports::one(p.port),
                None => Ports::AllBut(e.others.iter().map(|p| p.port).collect()),
            };
            let dsts = match e.target_ip() {
                Some(ip) => vec![ip],
                None => after.node(&e.node).map(|n| n.lan_addrs()).unwrap_or_default(),
            };
            let touched = address(e).is_none_or(|h| delta.touches_walk(h, Some(&dsts), Some(e.proto), &ports, true));
            if !touched {
                out.scope.unchanged += 1;
            }
            touched
        });
    }
    // The checkers above only listed the entries; each thread has its own.
    drop((b, a));
    if entries.is_empty() {
        return Ok(out);
    }
    let total = entries.len();
    // The entries are independent. They are cut into batches of
    // consecutive entries, the same on any machine; each core takes the
    // next batch and compares it in a Z3 context of its own with a pair of
    // checkers of its own, so that the examples printed do not depend on
    // the threads. The results are reported in entry order.
    let batches: Vec<(usize, &[Entry])> = entries.chunks(BATCH).enumerate().map(|(i, c)| (i * BATCH, c)).collect();
    let threads = natpath_model::snapshot::threads().min(batches.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Option<Example>, String>>> = (0..total).map(|_| None).collect();
    let mut counts = (0usize, 0usize);
    let compare_batch = |first: usize, batch: &[Entry]| {
        crate::encode::in_own_context(|| {
            let mut b = Side { c: Checker::with(before, opts, prep_b), snap: before };
            let mut a = Side { c: Checker::with(after, opts, prep_a), snap: after };
            let mut mine = Vec::new();
            for (k, e) in batch.iter().enumerate() {
                mine.push((first + k, compare_entry(&mut b, &mut a, e, dopts.max_pairs)));
                let n = finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(n, total, &entry_label(e));
            }
            (mine, b.c.queries + a.c.queries, b.c.folded + a.c.folded)
        })
    };
    std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| {
                    let mut mine = Vec::new();
                    let (mut q, mut f) = (0, 0);
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(first, batch)) = batches.get(k) else { break };
                        let (m, bq, bf) = compare_batch(first, batch);
                        mine.extend(m);
                        q += bq;
                        f += bf;
                    }
                    (mine, q, f)
                })
            })
            .collect();
        for w in workers {
            // A worker that panicked loses its entries: they are reported
            // unknown below, never as unchanged.
            if let Ok((mine, q, f)) = w.join() {
                counts.0 += q;
                counts.1 += f;
                for (k, r) in mine {
                    if let Some(slot) = results.get_mut(k) {
                        *slot = Some(r);
                    }
                }
            }
        }
    });
    for (e, r) in entries.iter().zip(results) {
        let label = entry_label(e);
        match r {
            Some(Ok(None)) => {}
            Some(Ok(Some(ex))) => add_change(&mut out.changes, e, ex),
            Some(Err(reason)) => out.unknown.push(Unknown { entry: label, reason }),
            None => out.unknown.push(Unknown { entry: label, reason: "BUG: a checking thread failed".into() }),
        }
    }
    out.scope.queries = counts.0;
    out.scope.settled_while_encoding = counts.1;
    Ok(out)
}

/// Entries compared in one Z3 context: enough that the checkers' work on
/// a node's chains is shared, few enough that every core has batches.
const BATCH: usize = 16;

fn index(s: &Snapshot, node: &str) -> Option<usize> {
    s.nodes.iter().position(|n| n.name == node)
}

fn host_name(s: &Snapshot, h: usize) -> Option<String> {
    s.cluster.hosts.get(h).map(|x| x.name.clone())
}

fn proto_name(p: Proto) -> String {
    natpath_model::packet::proto_name(p)
}

fn entry_label(e: &Entry) -> String {
    let (node, host, proto) = (&e.node, &e.host, e.proto);
    match (&e.port, e.to) {
        (Some(p), To::ClusterIp(ip)) if e.from == Sender::Node => {
            format!("cluster IP {}/{ip}:{} ({}) from node {node} itself", proto_name(proto), p.port, p.service)
        }
        (Some(p), To::ClusterIp(ip)) => {
            format!("cluster IP {}/{ip}:{} ({}) from pod {host} on {node}", proto_name(proto), p.port, p.service)
        }
        (Some(p), To::ExternalIp(ip)) => {
            format!("external IP {}/{ip}:{} ({}) from {host} via {node}", proto_name(proto), p.port, p.service)
        }
        (Some(p), To::LoadBalancerIp(ip)) => {
            format!("load-balancer IP {}/{ip}:{} ({}) from {host} via {node}", proto_name(proto), p.port, p.service)
        }
        (Some(p), To::Pod(ip)) => {
            format!("pod {}/{ip}:{} ({}) from pod {host} on {node}", proto_name(proto), p.port, p.service)
        }
        (None, To::Pod(ip)) => format!("pod {}/{ip} every port from pod {host} on {node}", proto_name(proto)),
        (Some(p), To::Lan) => format!("{node} NodePort {}/{} ({}) from {host}", proto_name(proto), p.port, p.service),
        (None, _) => format!("{node} other {} ports from {host}", proto_name(proto)),
    }
}

/// How `e` ends, in words (the constant part of a fate).
fn end_words(snap: &Snapshot, e: &WalkEnd) -> String {
    match &e.kind {
        EndKind::Reached(Reached::Pod(i)) => {
            let p = snap.cluster.pods.get(*i);
            format!(
                "delivered to pod {} on {}",
                p.map(|p| p.name.as_str()).unwrap_or("?"),
                p.map(|p| p.node.as_str()).unwrap_or("?")
            )
        }
        EndKind::Reached(Reached::Host(i)) => {
            format!("delivered to host {}", snap.cluster.hosts.get(*i).map(|h| h.name.as_str()).unwrap_or("?"))
        }
        EndKind::Reached(Reached::Node(i)) => {
            format!("delivered to node {}", snap.nodes.get(*i).map(|n| n.name.as_str()).unwrap_or("?"))
        }
        EndKind::Dropped => "dropped".into(),
        EndKind::Rejected => "rejected".into(),
        EndKind::Unknown => "unknown".into(),
        EndKind::Elsewhere { node, dev } => format!(
            "left {} by {dev}, beyond the snapshot",
            snap.nodes.get(*node).map(|n| n.name.as_str()).unwrap_or("?")
        ),
        EndKind::Loop => "a loop".into(),
    }
}

/// The walk ended without a receiver: dropped, rejected or a loop.
fn unseen(e: &WalkEnd) -> bool {
    matches!(e.kind, EndKind::Dropped | EndKind::Rejected | EndKind::Loop)
}

/// Why an end without a receiver ended so (shown, never compared).
fn why_of(e: &WalkEnd) -> String {
    if unseen(e) {
        e.reason.clone()
    } else {
        String::new()
    }
}

/// One side's walk of `pkt` arriving at node `n` by device `dev` (its LAN
/// device when `None`), or sent by node `n` itself when `send`, and each
/// pod's answer: the fates, the unknown endings and the trail's
/// definitions.
fn side_fates(
    side: &Side<'_>,
    n: usize,
    dev: Option<&str>,
    send: bool,
    pkt: &SymPacket,
    prefix: &str,
) -> Option<(Vec<Fate>, Vec<Ending>, Vec<Bool>)> {
    let snap = side.snap;
    let node = snap.nodes.get(n)?;
    let ne = side.c.enc.node(n)?;
    let lan = ne.dev_value(dev.unwrap_or(&node.lan));
    let mut trail = Trail { record_hits: false, shared: Some(SharedChoices::new(prefix)), ..Trail::default() };
    let flow = Flow { cond: Bool::from_bool(true), state: State::arriving(pkt.clone()) };
    let start =
        if send { walk::Start::Send { node: n, flow } } else { walk::Start::Arrive { node: n, dev: lan, flow } };
    let fwd = walk::walk(&side.c.enc, &mut trail, start, &|_| CtCtx::Fresh, false);
    let mut fates = Vec::new();
    let mut unknown = Vec::new();
    for e in &fwd.ends {
        if e.kind == EndKind::Unknown {
            unknown.push(Ending { cond: e.cond.clone(), reason: e.reason.clone() });
            continue;
        }
        let words = end_words(snap, e);
        let seen = vec![e.state.pkt.dst.clone(), e.state.pkt.dport.clone(), e.state.pkt.src.clone()];
        let pod = match e.kind {
            EndKind::Reached(Reached::Pod(pi)) => snap.cluster.pods.get(pi),
            _ => None,
        };
        let Some(pod) = pod else {
            // What a dropped, rejected or looping packet looked like when it
            // ended is seen by nobody: only how it ended is compared. A
            // packet that leaves the snapshot is seen as it leaves.
            let terms = if unseen(e) { Vec::new() } else { seen };
            fates.push(Fate { cond: e.cond.clone(), what: words, why: why_of(e), terms });
            continue;
        };
        // The pod answers when it listens; the answer walks back through
        // the bindings this path left.
        let l = listens(pod, &e.state.pkt);
        fates.push(Fate {
            cond: and2(&e.cond, &not(&l)),
            what: format!("{words}, which does not listen on the port"),
            why: String::new(),
            terms: seen.clone(),
        });
        let Some(pn) = snap.nodes.iter().position(|x| x.name == pod.node) else { continue };
        let Some(pe) = side.c.enc.node(pn) else { continue };
        let dev = pe.dev_value(&pod.iface);
        let flow = Flow { cond: and2(&e.cond, &l), state: State::arriving(walk::answer(&e.state.pkt)) };
        if is_false(&flow.cond) {
            continue;
        }
        let back = walk::walk(
            &side.c.enc,
            &mut trail,
            walk::Start::Arrive { node: pn, dev, flow },
            &|m| e.replies_on(m),
            true,
        );
        for r in &back.ends {
            if r.kind == EndKind::Unknown {
                unknown.push(Ending { cond: r.cond.clone(), reason: format!("the answer: {}", r.reason) });
                continue;
            }
            let mut terms = seen.clone();
            terms.push(r.state.pkt.src.clone());
            terms.push(r.state.pkt.sport.clone());
            let why = why_of(r);
            fates.push(Fate {
                cond: r.cond.clone(),
                what: format!("{words}; its answer {}", end_words(snap, r)),
                why,
                terms,
            });
        }
    }
    Some((fates, unknown, trail.defs))
}

/// Compare one entry; `Ok(None)` when no packet of it changes.
fn compare_entry(b: &mut Side<'_>, a: &mut Side<'_>, e: &Entry, max_pairs: usize) -> Result<Option<Example>, String> {
    let (node, host, proto, port, others) = (e.node.as_str(), e.host.as_str(), e.proto, e.port.as_ref(), &e.others);
    let (Some(nb), Some(na)) = (index(b.snap, node), index(a.snap, node)) else {
        return Err("BUG: a node of the scope is missing".into());
    };
    // The sender's address, the destinations and the device the packet
    // arrives by (a node's LAN for a host, the pod's veth for a pod).
    let (src, lans, dev): (Ipv4Addr, Vec<Ipv4Addr>, Option<String>) = match e.to {
        // The node's own packet: no source yet (its routes pick one).
        To::ClusterIp(ip) if e.from == Sender::Node => (Ipv4Addr::UNSPECIFIED, vec![ip], None),
        To::ClusterIp(ip) | To::Pod(ip) => {
            let Some(p) = a.snap.cluster.pods.iter().find(|x| x.name == host) else {
                return Err("BUG: a pod of the scope is missing".into());
            };
            (p.address, vec![ip], Some(p.iface.clone()))
        }
        To::ExternalIp(ip) | To::LoadBalancerIp(ip) => {
            let Some(h) = a.snap.cluster.hosts.iter().find(|x| x.name == host) else {
                return Err("BUG: a host of the scope is missing".into());
            };
            (h.address.addr(), vec![ip], None)
        }
        To::Lan => {
            let Some(h) = a.snap.cluster.hosts.iter().find(|x| x.name == host) else {
                return Err("BUG: a host of the scope is missing".into());
            };
            let mut lans: Vec<Ipv4Addr> = a.snap.nodes.get(na).map(|n| n.lan_addrs()).unwrap_or_default();
            for x in b.snap.nodes.get(nb).map(|n| n.lan_addrs()).unwrap_or_default() {
                if !lans.contains(&x) {
                    lans.push(x);
                }
            }
            (h.address.addr(), lans, None)
        }
    };
    let pins = Pins {
        src: Some(src),
        dst: if lans.len() == 1 { lans.first().copied() } else { None },
        proto: Some(proto),
        dport: port.map(|p| p.port),
        dnat_to: None,
        dst_own: false,
    };
    let pkt = a.c.fresh_packet("diff", &pins);
    let prefix = format!(
        "d.{node}.{host}.{}.{}.{}",
        proto.0,
        port.map(|p| p.port).unwrap_or(0),
        e.target_ip().map(|i| i.to_string()).unwrap_or_default()
    );
    let mut scope = first_packet(&pkt);
    scope.push(pkt.src.feq(crate::encode::packet::addr(src)));
    scope.push(one_of(&pkt.dst, &lans));
    for o in others {
        scope.push(not(&pkt.dport.feq(crate::encode::packet::bv16(o.port))));
    }
    // Tell the builders (after the constraints are built, or they would
    // fold to true): the NodePort rules of other entries then cost nothing.
    if !others.is_empty() {
        let not_values = others.iter().map(|o| u64::from(o.port)).collect();
        crate::encode::packet::assume_addr(
            &pkt.dport,
            crate::encode::packet::AddrFacts { not_values, ..Default::default() },
        );
    }
    let send = e.from == Sender::Node;
    let (fb, ub, db) = side_fates(b, nb, dev.as_deref(), send, &pkt, &prefix).ok_or("BUG: cannot encode BEFORE")?;
    let (fa, ua, da) = side_fates(a, na, dev.as_deref(), send, &pkt, &prefix).ok_or("BUG: cannot encode AFTER")?;
    scope.extend(db);
    scope.extend(da);
    let mut unknown = ub;
    unknown.extend(ua.into_iter().map(|e| Ending { cond: e.cond, reason: format!("AFTER: {}", e.reason) }));
    let (violation, pairs) = if fb.len().saturating_mul(fa.len()) <= max_pairs {
        pairwise(&fb, &fa)
    } else {
        // Too many pairs to build one term each (a pod's walk to a Service
        // of many endpoints, answers included): compare each side's fate
        // as one term, which is exact only when a side's fates exclude each
        // other, so that is proven first.
        for (side, fates) in [("BEFORE", &fb), ("AFTER", &fa)] {
            match a.c.ask(&scope, &two_at_once(fates), &[]) {
                QAnswer::Holds => {}
                QAnswer::Unknown(why) => return Err(why),
                QAnswer::Violated(_) => return Err(format!("BUG: two fates of {side}'s walk hold for one packet")),
            }
        }
        (as_terms(&fb, &fa), Vec::new())
    };
    match a.c.ask(&scope, &violation, &unknown) {
        QAnswer::Holds => Ok(None),
        QAnswer::Unknown(why) => Err(why),
        QAnswer::Violated(w) => {
            // The packet a client would send: from an ephemeral port.
            let w = a.c.prefer(&scope, &violation, &unknown, crate::invariants::ephemeral(&pkt), w);
            let taken = |fates: &[Fate]| fates.iter().position(|f| w.bool(&f.cond) == Some(true));
            let (i, j) = match pairs.iter().find(|(d, _, _)| w.bool(d) == Some(true)) {
                Some((_, i, j)) => (Some(*i), Some(*j)),
                None => (taken(&fb), taken(&fa)),
            };
            let (Some(x), Some(y)) = (i.and_then(|i| fb.get(i)), j.and_then(|j| fa.get(j))) else {
                return Err("BUG: the solver's packet takes no fate on one side".into());
            };
            example(b, a, e, src, &pkt, &w, x, y)
        }
    }
}

/// Above this many pairs of BEFORE and AFTER fates, an entry compares the
/// fates as one term per side ([`as_terms`]) instead of pair by pair.
pub const MAX_PAIRS: usize = 1024;

/// The difference, pair by pair: each pair of fates whose conditions can
/// hold together and that differ. Pairs of the same fate with the same
/// terms fold away while they are built.
fn pairwise(fb: &[Fate], fa: &[Fate]) -> (Bool, Vec<(Bool, usize, usize)>) {
    let mut pairs: Vec<(Bool, usize, usize)> = Vec::new();
    for (i, x) in fb.iter().enumerate() {
        for (j, y) in fa.iter().enumerate() {
            let both = and2(&x.cond, &y.cond);
            if is_false(&both) {
                continue;
            }
            let differs = if x.what != y.what || x.terms.len() != y.terms.len() {
                Bool::from_bool(true)
            } else {
                any(&x.terms.iter().zip(&y.terms).map(|(p, q)| not(&p.feq(q))).collect::<Vec<_>>())
            };
            let d = and2(&both, &differs);
            if !is_false(&d) {
                pairs.push((d, i, j));
            }
        }
    }
    (any(&pairs.iter().map(|(d, _, _)| d.clone()).collect::<Vec<_>>()), pairs)
}

/// Some packet takes two fates of `fates` at once (linear in their number:
/// a fate's condition together with "an earlier one holds").
fn two_at_once(fates: &[Fate]) -> Bool {
    let mut earlier = Bool::from_bool(false);
    let mut both = Vec::new();
    for f in fates {
        both.push(and2(&earlier, &f.cond));
        earlier = crate::encode::or2(&earlier, &f.cond);
    }
    any(&both)
}

/// The widths of a fate's terms: destination address and port, source
/// address, then the answer's source address and port as the sender sees it.
const TERM_BITS: [u32; 5] = [32, 16, 32, 32, 16];

/// The difference with each side's fate as one term: a code for its words
/// and its five terms, each an if-then-else over the side's fates (which
/// exclude each other), 0 where none holds or a fate has no such term.
fn as_terms(fb: &[Fate], fa: &[Fate]) -> Bool {
    let mut codes: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for f in fb.iter().chain(fa) {
        let n = codes.len() as u64 + 1;
        codes.entry(f.what.as_str()).or_insert(n);
    }
    let side = |fates: &[Fate]| -> (BV, Vec<BV>) {
        let mut code = crate::encode::packet::bv32(0);
        let mut terms: Vec<BV> = TERM_BITS.iter().map(|w| crate::encode::packet::numeral(0, *w)).collect();
        for f in fates.iter().rev() {
            let c = codes.get(f.what.as_str()).copied().unwrap_or(0);
            code = crate::encode::packet::ite_bv(&f.cond, &crate::encode::packet::numeral(c, 32), &code);
            for (k, t) in terms.iter_mut().enumerate() {
                let width = TERM_BITS.get(k).copied().unwrap_or(32);
                let v = f.terms.get(k).cloned().unwrap_or_else(|| crate::encode::packet::numeral(0, width));
                *t = crate::encode::packet::ite_bv(&f.cond, &v, t);
            }
        }
        (code, terms)
    };
    let ((cb, tb), (ca, ta)) = (side(fb), side(fa));
    let mut differs = vec![not(&cb.feq(&ca))];
    differs.extend(tb.iter().zip(&ta).map(|(x, y)| not(&x.feq(y))));
    any(&differs)
}

/// A fate's words with its values under `w`.
fn fate_text(w: &Witness, f: &Fate) -> String {
    let v = |i: usize| f.terms.get(i).and_then(|t| w.u64(t));
    let addr = |x: Option<u64>| x.map(|x| Ipv4Addr::from(x as u32).to_string()).unwrap_or_else(|| "?".into());
    if !f.what.starts_with("delivered") {
        return if f.why.is_empty() { f.what.clone() } else { format!("{} ({})", f.what, f.why) };
    }
    let mut s = format!(
        "{}: it sees {} -> {}:{}",
        f.what,
        addr(v(2)),
        addr(v(0)),
        v(1).map(|p| p.to_string()).unwrap_or("?".into())
    );
    if f.terms.len() > 3 {
        s.push_str(&format!(
            "; the sender sees the answer from {}:{}",
            addr(v(3)),
            v(4).map(|p| p.to_string()).unwrap_or("?".into())
        ));
    }
    s
}

/// The model's fates of a trace: `(fate, probability)` summed by fate.
fn model_fates(t: &Trace) -> BTreeMap<String, num_rational::Ratio<num_bigint::BigUint>> {
    let mut m: BTreeMap<String, num_rational::Ratio<num_bigint::BigUint>> = BTreeMap::new();
    for br in &t.branches {
        let e = m.entry(branch_fate(br)).or_insert_with(|| num_rational::Ratio::from_integer(0u32.into()));
        *e += br.prob.clone();
    }
    m
}

/// A branch's fate in words: what the diff compares (not the source port a
/// receiver sees, which `--random-fully` makes arbitrary).
fn branch_fate(b: &Branch) -> String {
    // A receiver that refuses the packet (it does not listen) is who refused it.
    let prep = if b.outcome == natpath_model::trace::Outcome::Rejected { "by" } else { "to" };
    let who = b.delivered_to.as_ref().map(|d| format!(" {prep} {} {}", d.kind, d.name)).unwrap_or_default();
    let seen = b
        .seen_by_destination
        .as_ref()
        .map(|s| format!(", sees {} -> {}", s.src.rsplit_once(':').map(|x| x.0).unwrap_or(&s.src), s.dst))
        .unwrap_or_default();
    // A packet that leaves the snapshot is seen as it leaves: its last
    // rewrite on the walk (`PROTO SRC:SPORT -> DST:DPORT ...`), source
    // port aside.
    let leaves = if b.outcome == natpath_model::trace::Outcome::Unknown && b.delivered_to.is_none() {
        b.steps
            .iter()
            .rev()
            .find_map(|s| s.packet_after.as_deref())
            .and_then(|p| {
                let mut w = p.split_whitespace();
                let (src, _, dst) = (w.nth(1)?, w.next()?, w.next()?);
                Some(format!(", leaves as {} -> {dst}", src.rsplit_once(':').map(|x| x.0).unwrap_or(src)))
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    let reply = b
        .reply
        .as_ref()
        .map(|r| {
            format!(
                "; answer {}{}",
                outcome_word(r.outcome),
                r.seen_by_client.as_ref().map(|s| format!(" from {}", s.src)).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let reset = b
        .refusal
        .as_ref()
        .map(|r| {
            // What the refusing node sent: a TCP reset, or an ICMP error
            // (`icmp T/C` in the trace).
            let what = match r.kind.as_deref() {
                Some(k) if k.starts_with("icmp") => format!("ICMP error ({})", k.trim_start_matches("icmp").trim()),
                _ => "reset".to_string(),
            };
            format!(
                "; {what} {}{}",
                outcome_word(r.outcome),
                r.seen_by_client.as_ref().map(|s| format!(" from {}", s.src)).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    format!("{}{who}{seen}{leaves}{reply}{reset}", outcome_word(b.outcome))
}

fn outcome_word(o: natpath_model::trace::Outcome) -> &'static str {
    crate::report::text::outcome_name(o)
}

/// Replay the solver's packet on both sides and build the example; an
/// error when the model does not show a difference.
#[allow(clippy::too_many_arguments)]
fn example(
    b: &Side<'_>,
    a: &Side<'_>,
    e: &Entry,
    src: Ipv4Addr,
    pkt: &SymPacket,
    w: &Witness,
    x: &Fate,
    y: &Fate,
) -> Result<Option<Example>, String> {
    let (node, host, proto) = (e.node.as_str(), e.host.as_str(), e.proto);
    let dst = w.u64(&pkt.dst).map(|d| Ipv4Addr::from(d as u32)).ok_or("BUG: no destination in the witness")?;
    let dport = w.u64(&pkt.dport).and_then(|p| u16::try_from(p).ok()).ok_or("BUG: no port in the witness")?;
    let sport = w.u64(&pkt.sport).and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0).unwrap_or(40000);
    let to = format!("{dst}:{dport}");
    // A node's own packet gets its source from the node's routes.
    let packet = match e.from {
        Sender::Node => format!("{} {node}:{sport} -> {to}", proto_name(proto)),
        _ => format!("{} {src}:{sport} -> {to}", proto_name(proto)),
    };
    // A packet to an external or load-balancer IP is handed to the node.
    let via = matches!(e.to, To::ExternalIp(_) | To::LoadBalancerIp(_)).then(|| node.to_string());
    let replay = |side: &Side<'_>| -> Result<Trace, String> {
        let s = side.snap;
        let p = natpath_model::walk::probe_anywhere(s, host, &to, proto, sport).map_err(|e| e.0)?;
        let p = natpath_model::trace::Probe { via: via.clone(), ..p };
        natpath_model::walk::trace_with(s, side.c.tracer(), &p, &TraceOptions::default()).map_err(|e| e.0)
    };
    let (tb, ta) = (replay(b), replay(a));
    let (tb, ta) = match (tb, ta) {
        (Ok(tb), Ok(ta)) => (tb, ta),
        (Err(e), _) | (_, Err(e)) => return Err(format!("the model cannot replay {packet}: {e}")),
    };
    let (mb, ma) = (model_fates(&tb), model_fates(&ta));
    if mb == ma {
        return Err(format!(
            "BUG: the solver says {packet} meets another fate ({} / {}), but the model gives it the same fates on both sides; the encoding and the model disagree",
            fate_text(w, x),
            fate_text(w, y)
        ));
    }
    let show = |m: &BTreeMap<String, num_rational::Ratio<num_bigint::BigUint>>| {
        m.iter().map(|(f, p)| format!("{f} (probability {p})")).collect::<Vec<_>>()
    };
    let (same_steps, steps, rules) = divergence(&tb, &ta, b.snap, a.snap);
    Ok(Some(Example {
        node: node.to_string(),
        source: e.source(),
        packet,
        before: fate_text(w, x),
        after: fate_text(w, y),
        before_fates: show(&mb),
        after_fates: show(&ma),
        steps,
        same_steps,
        rules,
    }))
}

/// The steps of the most likely branch of each side that the other side
/// does not take alike (a longest-common-subsequence diff of the canonical
/// step lines, `- ` BEFORE only, `+ ` AFTER only, in walk order), at most
/// [`DIFF_STEPS`] lines, and how many steps both take alike.
/// A trace step's rule: node, table, chain and 1-based position.
type StepRule = (String, natpath_model::ruleset::TableName, String, usize);

fn divergence(tb: &Trace, ta: &Trace, sb: &Snapshot, sa: &Snapshot) -> (usize, Vec<String>, Vec<RuleAt>) {
    let lines = |t: &Trace| -> Vec<(String, Option<StepRule>)> {
        t.branches
            .first()
            .map(|b| {
                b.steps
                    .iter()
                    .map(|s| {
                        let what = if s.text.is_empty() { s.effect.clone() } else { strip_names(&s.text) };
                        let line = match (s.hook, s.table) {
                            (Some(hook), Some(table)) => {
                                format!("{}: {hook} {} {}: {what}", s.node, table.as_str(), canon_chain(&s.chain))
                            }
                            // A router hop: its route and whom it hands the packet to.
                            _ => format!("router {}: {what} ({})", s.node, s.effect),
                        };
                        let rule = s.rule.zip(s.table).map(|(r, table)| (s.node.clone(), table, s.chain.clone(), r));
                        (line, rule)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (xr, yr) = (lines(tb), lines(ta));
    let x: Vec<String> = xr.iter().map(|l| l.0.clone()).collect();
    let y: Vec<String> = yr.iter().map(|l| l.0.clone()).collect();
    let mut rules: Vec<RuleAt> = Vec::new();
    let mut locate = |side: &'static str,
                      snap: &Snapshot,
                      r: &Option<(String, natpath_model::ruleset::TableName, String, usize)>| {
        let Some((node, table, chain, n)) = r else { return };
        let rule = snap
            .node(node)
            .and_then(|nd| nd.ruleset.table(*table))
            .and_then(|t| t.chain(chain))
            .and_then(|c| c.rules.get(n.saturating_sub(1)));
        if let Some(rule) = rule {
            let at = RuleAt {
                side,
                file: rule.loc.file.to_string(),
                line: rule.loc.line,
                text: natpath_model::print::rule_text(chain, rule),
            };
            if !rules.contains(&at) && rules.len() < DIFF_STEPS {
                rules.push(at);
            }
        }
    };
    // lcs[i][j]: the longest common subsequence of x[i..] and y[j..].
    let (n, m) = (x.len(), y.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let v = if x.get(i) == y.get(j) {
                lcs.get(i + 1).and_then(|r| r.get(j + 1)).copied().unwrap_or(0) + 1
            } else {
                let down = lcs.get(i + 1).and_then(|r| r.get(j)).copied().unwrap_or(0);
                let right = lcs.get(i).and_then(|r| r.get(j + 1)).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(cell) = lcs.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = v;
            }
        }
    }
    let at = |i: usize, j: usize| lcs.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
    let (mut i, mut j, mut same) = (0, 0, 0);
    let mut out: Vec<String> = Vec::new();
    while i < n || j < m {
        match (x.get(i), y.get(j)) {
            (Some(a), Some(b)) if a == b => {
                same += 1;
                i += 1;
                j += 1;
            }
            (Some(a), _) if j >= m || at(i + 1, j) >= at(i, j + 1) => {
                out.push(format!("- {a}"));
                if let Some(r) = xr.get(i) {
                    locate("before", sb, &r.1);
                }
                i += 1;
            }
            (_, Some(b)) => {
                out.push(format!("+ {b}"));
                if let Some(r) = yr.get(j) {
                    locate("after", sa, &r.1);
                }
                j += 1;
            }
            _ => break,
        }
    }
    if out.len() > DIFF_STEPS {
        let rest = out.len() - DIFF_STEPS;
        out.truncate(DIFF_STEPS);
        out.push(format!("... and {rest} more steps that differ"));
    }
    (same, out, rules)
}

/// How many differing steps an example shows.
const DIFF_STEPS: usize = 16;

/// kube-proxy's hashed chain names (`KUBE-SVC-…`, `KUBE-SEP-…`,
/// `KUBE-EXT-…`, `KUBE-SVL-…`, `KUBE-FW-…`, `KUBE-XLB-…`) without their
/// hash, so that a renamed chain's rules compare equal.
fn canon_chain(chain: &str) -> String {
    for p in ["KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-", "KUBE-FW-", "KUBE-XLB-"] {
        if chain.starts_with(p) && chain.len() == p.len() + 16 {
            return format!("{p}*");
        }
    }
    chain.to_string()
}

/// A rule's text with hashed chain names replaced and comments kept.
fn strip_names(text: &str) -> String {
    text.split(' ').map(canon_chain).collect::<Vec<_>>().join(" ")
}

/// Add an example to its group.
fn add_change(changes: &mut Vec<Change>, e: &Entry, ex: Example) {
    let (service, pod) = match e.to {
        To::Pod(ip) => (None, e.port.as_ref().map(|p| p.service.clone()).or_else(|| Some(ip.to_string()))),
        _ => (e.port.as_ref().map(|p| p.service.clone()), None),
    };
    let pname = proto_name(e.proto);
    let pnum = e.port.as_ref().map(|p| p.port);
    let address = e.target_ip().map(|i| i.to_string());
    let entry = match (e.to, pnum) {
        (To::ClusterIp(_), _) => "cluster-ip",
        (To::ExternalIp(_), _) => "external-ip",
        (To::LoadBalancerIp(_), _) => "load-balancer-ip",
        (To::Pod(_), _) => "pod-to-pod",
        (To::Lan, Some(_)) => "nodeport",
        (To::Lan, None) => "other-port",
    };
    let source = e.source();
    let idx = changes
        .iter()
        .position(|c| c.service == service && c.pod == pod && c.proto == pname && c.port == pnum && c.entry == entry);
    let c = match idx.and_then(|i| changes.get_mut(i)) {
        Some(c) => c,
        None => {
            changes.push(Change {
                service,
                pod,
                entry,
                address,
                proto: pname,
                port: pnum,
                nodes: Vec::new(),
                sources: Vec::new(),
                examples: Vec::new(),
            });
            match changes.last_mut() {
                Some(c) => c,
                None => return,
            }
        }
    };
    if !c.nodes.contains(&e.node) {
        c.nodes.push(e.node.clone());
        c.examples.push(ex);
    }
    if !c.sources.contains(&source) {
        c.sources.push(source);
    }
}
