//! A probe's journey as data: branches with exact probabilities, outcomes,
//! every rule that took effect on every node, the packet the destination
//! saw and the reply the sender got. Serialises to the `natpath.trace/1`
//! JSON contract (docs/output.md, schemas/natpath.trace.v1.json).

use crate::packet::Hook;
use crate::ruleset::{Proto, TableName};
use num_bigint::BigUint;
use num_rational::Ratio;
use std::net::Ipv4Addr;

/// Exact probabilities (products of `p31 / 2^31` factors).
pub type Prob = Ratio<BigUint>;

/// The JSON schema name of a trace.
pub const SCHEMA: &str = "natpath.trace/1";

/// What to send: from a host, pod or node of the snapshot to an address and port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Probe {
    /// The sender's name (a `[[host]]`, `[[pod]]` or node).
    pub from: String,
    /// `IP:PORT` as given.
    pub to: String,
    /// The destination address.
    #[serde(skip)]
    pub dst: Ipv4Addr,
    /// The destination port.
    #[serde(skip)]
    pub dport: u16,
    /// The protocol.
    #[serde(serialize_with = "ser_proto")]
    pub proto: Proto,
    /// The sender's source port.
    pub sport: u16,
    /// The node a host hands the packet to, whatever its routes say: a load
    /// balancer's or a router's choice (`trace --via NODE`), for a packet to
    /// an external or load-balancer IP that no machine of the snapshot owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

fn ser_proto<S: serde::Serializer>(p: &Proto, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::packet::proto_name(*p))
}

/// How a branch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The destination got the packet (and, for the forward walk, its reply is in `reply`).
    Delivered,
    /// Dropped silently.
    Dropped,
    /// Refused with an ICMP error or a TCP reset.
    Rejected,
    /// The destination answered but the answer did not reach the sender as it expects.
    ReplyLost,
    /// The packet went round more hops than the limit.
    Loop,
    /// natpath cannot tell (an unmodelled rule, a packet leaving the snapshot).
    Unknown,
}

/// Which packet a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PacketKind {
    /// The connection's first packet.
    Forward,
    /// Its tunnel encapsulation.
    ForwardOuter,
    /// The destination's answer.
    Reply,
    /// The answer's tunnel encapsulation.
    ReplyOuter,
    /// A node's own answer to a packet a REJECT rule or a failed route
    /// refused (an ICMP error or a TCP reset), a packet of its own.
    Refusal,
    /// Its tunnel encapsulation.
    RefusalOuter,
    /// A node's ICMP redirect to the sender of a packet it forwards out of
    /// the interface it came in by (the packet itself goes on).
    Redirect,
}

/// One rule (or chain policy) that took effect on a node, or one hop
/// across a `[[router]]` of cluster.toml (`router` set; no hook, no table).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// The node (for a router hop, the router).
    pub node: String,
    /// Which packet.
    pub packet: PacketKind,
    /// The hook (`None` for a router hop).
    pub hook: Option<Hook>,
    /// The table (`None` for a router hop).
    pub table: Option<TableName>,
    /// The chain (`(conntrack)` for a rewrite by an existing binding).
    pub chain: String,
    /// 1-based rule number in dump order; `null` for a policy or conntrack.
    pub rule: Option<usize>,
    /// The canonical rule text.
    pub text: String,
    /// What the step did.
    pub effect: String,
    /// The packet after the step, where it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_after: Option<String>,
    /// A hop across a router: which, by which route, to whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterHop>,
}

/// A router's forwarding of a packet (a [`Step`] of its own).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouterHop {
    /// The router's name.
    pub name: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// The route it used: `CIDR via NAME` from cluster.toml, or its own
    /// segment (`CIDR dev segment`), delivered directly.
    pub route: String,
    /// Who it hands the packet to: a node's or a host's name.
    pub to: String,
}

/// Who got the packet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivered {
    /// `pod`, `host` or `node`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The node it is on (for pods and nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The address that received.
    pub address: Ipv4Addr,
}

/// A packet as an end sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Seen {
    /// `ip:port` source.
    pub src: String,
    /// `ip:port` destination.
    pub dst: String,
}

/// The answer's journey.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reply {
    /// For a refusal, what the refusing node sent: `rst`, or `icmp
    /// TYPE/CODE` (the kernel referee's names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// What the sender saw arrive (when something arrived).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_by_client: Option<Seen>,
    /// Why it ended so, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One way the probe can go (one draw of every random rule).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Branch {
    /// Exact probability as a fraction (`1/2`, `1`).
    pub probability: String,
    /// The same, as a number.
    #[serde(skip)]
    pub prob: Prob,
    /// How it ended (the reply's fate included: a delivered probe whose
    /// reply does not come back is `reply-lost`).
    pub outcome: Outcome,
    /// Why, in words, for anything but a clean delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who got the forward packet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<Delivered>,
    /// The forward packet as the destination saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_by_destination: Option<Seen>,
    /// True where MASQUERADE/SNAT `--random-fully` made the source port arbitrary.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sport_random: bool,
    /// The reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
    /// The kernel's own answer to a refused packet, walked back to the
    /// sender; it does not change the outcome. To a TCP packet its
    /// receiver refuses because nothing listens: a reset, whose steps are
    /// `reply` packets (it is the connection's reply direction). To a
    /// packet a REJECT rule refused: the rule's ICMP error or reset; to a
    /// received packet a node cannot route: the ICMP error of the failed
    /// route; both with steps of `refusal` packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Reply>,
    /// Every rule that took effect, in order.
    pub steps: Vec<Step>,
}

/// A whole trace.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Trace {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The probe.
    pub probe: Probe,
    /// Every branch, most likely first.
    pub branches: Vec<Branch>,
    /// Defaults and assumptions the trace relied on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}
