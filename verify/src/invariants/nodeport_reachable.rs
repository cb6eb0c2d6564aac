//! `nodeport-reachable`: every NodePort on every node address reaches an
//! endpoint of its service, or, when the service has no endpoint, is
//! rejected (an ICMP error or a reset), never silently dropped.
//!
//! Quantifies over: every node; every NodePort any node declares (a
//! NodePort is cluster-wide: a node whose rules lost it must still serve
//! it), except a Local
//! service's on a node without a local endpoint (meant to drop); every host
//! of cluster.toml on the node's LAN segment as the client; every first
//! packet of that protocol from that host, from any source port, to that
//! port on any of the node's LAN addresses, with every random outcome; the
//! whole walk: the node, the tunnel or wire to the endpoint's node, that
//! node, and the pod's veth. "Reaches" means delivered to a pod (or node)
//! with the address and port of one of the service's endpoints, on a port
//! the pod listens on (cluster.toml `listen`, when given). A packet that
//! leaves what the snapshot describes (a device no pod stands behind, a
//! LAN next hop that is no node and no host) has a fate natpath cannot
//! tell: unknown, as in `trace`; a packet into the overlay's pod addresses
//! handed to such a LAN next hop is lost (the walk ends it dropped).
//!
//! Why operators care: this is the service contract itself. A missing
//! tunnel route, a Calico policy that drops forwarded traffic, a DNAT to a
//! stale endpoint or an rp_filter that drops the hairpin all show up as a
//! NodePort that times out on some node, for some endpoints only.

use super::{ep_str, is_endpoint, listens, Checker, Outcome, WalkQuery};
use crate::encode::walk::{EndKind, Reached};
use crate::encode::{and2, any, not};
use natpath_model::intent::{Endpoint, Service};
use natpath_model::trace::Outcome as TOutcome;
use z3::ast::Bool;

/// The catalog name.
pub const NAME: &str = "nodeport-reachable";

/// What [`judge`] needs of the NodePort it judges.
pub(crate) struct Port<'a> {
    /// The NodePort's label in reports.
    pub label: &'a str,
    /// Its endpoints, the node's own local ones included.
    pub eps: &'a [Endpoint],
}

/// Whether `nodeport-reachable` checks NodePort `s` on node `n` (noted on
/// `c` when it does not: a Local service without a local endpoint is meant
/// to drop), with its endpoints.
pub(crate) fn scope(c: &mut Checker<'_>, node_name: &str, s: &Service) -> Option<Vec<Endpoint>> {
    if s.external_local && s.local_endpoints.is_empty() {
        c.notes.push(format!("{node_name}: {} is Local with no local endpoint: meant to drop, not checked", s.name));
        return None;
    }
    let mut eps = s.endpoints.clone();
    for e in &s.local_endpoints {
        if !eps.contains(e) {
            eps.push(e.clone());
        }
    }
    Some(eps)
}

/// Judge one walk to a NodePort of node `n` ([`Checker::walk_query`],
/// with or without the answers' walks): `Some` with the outcome when a
/// packet of it does not reach an endpoint and the model's replay agrees.
/// Checked with `reply-finds-origin` on the same walks
/// (`reply_finds_origin::check_with_reachable`).
pub(crate) fn judge(c: &mut Checker<'_>, q: &WalkQuery, n: usize, port: &Port<'_>) -> Option<Outcome> {
    let (label, eps) = (port.label, port.eps);
    let snap = c.snap;
    let mut bad: Vec<(Bool, String)> = Vec::new();
    for e in &q.fwd.ends {
        let reached = is_endpoint(&e.state.pkt.dst, &e.state.pkt.dport, eps);
        let ok = match &e.kind {
            // Beyond the snapshot: unknown, below.
            EndKind::Unknown | EndKind::Elsewhere { .. } => continue,
            _ if eps.is_empty() => Bool::from_bool(e.kind == EndKind::Rejected),
            EndKind::Reached(Reached::Pod(pi)) => {
                // A pod that does not listen on the port refuses it.
                let l = snap
                    .cluster
                    .pods
                    .get(*pi)
                    .map(|pod| listens(pod, &e.state.pkt))
                    .unwrap_or_else(|| Bool::from_bool(false));
                and2(&reached, &l)
            }
            EndKind::Reached(Reached::Node(_)) => reached,
            _ => Bool::from_bool(false),
        };
        bad.push((and2(&e.cond, &not(&ok)), e.reason.clone()));
    }
    let violation = any(&bad.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>());
    let unknown: Vec<_> = q
        .fwd
        .ends
        .iter()
        .filter(|e| matches!(e.kind, EndKind::Unknown | EndKind::Elsewhere { .. }))
        .map(|e| crate::encode::Ending { cond: e.cond.clone(), reason: e.reason.clone() })
        .collect();
    let w = c.ask_or_note(label, &q.scope, &violation, &unknown)?;
    let w = c.prefer(&q.scope, &violation, &unknown, super::ephemeral(&q.pkt), w);
    let why = bad.iter().find(|(b, _)| w.bool(b) == Some(true)).map(|(_, r)| r.clone()).unwrap_or_default();
    let want = if eps.is_empty() {
        "the service has no endpoint, so it must be rejected".to_string()
    } else {
        format!("endpoints {}", eps.iter().map(ep_str).collect::<Vec<_>>().join(", "))
    };
    let summary = format!("{label}: the packet does not reach an endpoint ({want}): {why}");
    let eps2: Vec<String> = eps.iter().map(ep_str).collect();
    let no_eps = eps.is_empty();
    let shows = move |b: &natpath_model::trace::Branch| {
        if no_eps {
            return b.outcome != TOutcome::Rejected && b.outcome != TOutcome::Unknown;
        }
        let at_ep = b.delivered_to.as_ref().is_some_and(|d| d.kind == "pod" || d.kind == "node")
            && b.seen_by_destination.as_ref().is_some_and(|s| eps2.contains(&s.dst))
            && b.outcome != TOutcome::Rejected;
        !at_ep && b.outcome != TOutcome::Unknown
    };
    c.walk_cx(NAME, q, n, &w, summary, shows)
}
