//! `reply-finds-origin`: the reply of every delivered connection passes
//! through the node(s) that hold its NAT bindings and reaches the original
//! client with source = the address and port the client asked for (and
//! destination = the client's own address and port).
//!
//! Quantifies over: every node; every NodePort any node declares (they are
//! cluster-wide); every host of
//! cluster.toml on the node's LAN segment as the client; every first packet
//! from that host and any source port to that port on any of the node's LAN
//! addresses, with every random outcome; for every path on which the packet
//! is delivered to a pod that listens on the port, the pod's answer, walked
//! back through the conntrack bindings the first packet left on each node
//! it crossed (un-SNAT at PREROUTING, un-DNAT at POSTROUTING).
//!
//! Why operators care: a NodePort whose endpoint is on another node only
//! works if the endpoint's node sends the answer back through the node that
//! did the DNAT; without kube-proxy's masquerade (a dropped KUBE-MARK-MASQ
//! jump, a cleared mark) the answer goes straight to the client from the
//! pod's address and the client's TCP stack resets it: connections hang
//! only for remote endpoints, which is the hardest kind of outage to read.

use super::{node_port_label, nodeport_reachable, Checker, Outcome, Pins, WalkQuery};
use crate::encode::packet::addr;
use crate::encode::packet::FoldEq;
use crate::encode::walk::{EndKind, Reached};
use crate::encode::{all, and2, any, not, Ending};
use natpath_model::intent::Service;
use natpath_model::trace::Outcome as TOutcome;
use std::time::{Duration, Instant};
use z3::ast::Bool;

/// The catalog name.
pub const NAME: &str = "reply-finds-origin";

/// Check `reply-finds-origin` on `c` and `nodeport-reachable` on `r`
/// (two checkers of one snapshot, in one Z3 context) over the same walks:
/// both ask about every first packet from each host on a node's LAN to
/// each NodePort of the node, and the walk to the endpoints was encoded
/// once for each, the larger half of nodeport-reachable's time. The walk
/// carries the answers' walks while reply-finds-origin still asks. Each
/// invariant keeps its own scope, notes, unknowns, counts and first
/// violation, as when it ran alone; both are always checked together, so
/// that each one's counterexample is the same whichever of the two a run
/// asks for. Returns the two outcomes and the time spent judging for `r`.
pub(crate) fn check_with_reachable(c: &mut Checker<'_>, r: &mut Checker<'_>) -> (Outcome, Outcome, Duration) {
    let mut done_c: Option<Outcome> = None;
    let mut done_r: Option<Outcome> = None;
    let mut r_time = Duration::ZERO;
    let no_host = "no [[host]] of cluster.toml is on the node's LAN segment to send from";
    for n in c.nodes() {
        if done_c.is_some() && done_r.is_some() {
            break;
        }
        let services = c.node_ports(n);
        let node_name = c.snap.nodes.get(n).map(|x| x.name.clone()).unwrap_or_default();
        let hosts = c.hosts_near(n);
        for s in services.iter() {
            let Some(port) = s.node_port else { continue };
            let label = node_port_label(&node_name, s, port);
            let t0 = Instant::now();
            let eps = match done_r {
                None => nodeport_reachable::scope(r, &node_name, s),
                Some(_) => None,
            };
            let eps = match eps {
                Some(_) if hosts.is_empty() => {
                    r.unknown(&label, no_host.into());
                    None
                }
                e => e,
            };
            r_time += t0.elapsed();
            let mut mine = done_c.is_none() && !(s.endpoints.is_empty() && s.local_endpoints.is_empty());
            if mine && hosts.is_empty() {
                c.unknown(&label, no_host.into());
                mine = false;
            }
            if !mine && eps.is_none() {
                continue;
            }
            for &h in &hosts {
                let pins = Pins::port(s.proto, port);
                let ask_c = mine && done_c.is_none() && c.walk_touched(n, h, true, pins);
                let ask_r = eps.is_some() && done_r.is_none() && r.walk_touched(n, h, false, pins);
                if !ask_c && !ask_r {
                    continue;
                }
                let Some(q) = c.walk_built(n, h, ask_c, pins, |_| Vec::new()) else { continue };
                if let (true, Some(eps)) = (ask_r, &eps) {
                    let t0 = Instant::now();
                    done_r = nodeport_reachable::judge(r, &q, n, &nodeport_reachable::Port { label: &label, eps });
                    r_time += t0.elapsed();
                }
                if ask_c {
                    done_c = judge(c, &q, n, s, port, &label);
                }
            }
        }
    }
    let oc = done_c.unwrap_or_else(|| c.finish());
    let or = done_r.unwrap_or_else(|| r.finish());
    (oc, or, r_time)
}

/// Judge one walk with its answers' walks from host `q.host` to NodePort
/// `port` of service `s` on node `n`: `Some` with the outcome when an
/// answer of a delivered connection does not reach the client as it
/// asked, and the model's replay agrees.
fn judge(c: &mut Checker<'_>, q: &WalkQuery, n: usize, s: &Service, port: u16, label: &str) -> Option<Outcome> {
    let h = q.host;
    let host = c.snap.cluster.hosts.get(h)?;
    let ha = host.address.addr();
    let p = &q.pkt;
    let mut bad: Vec<(Bool, String, usize)> = Vec::new();
    let mut unknown: Vec<Ending> = Vec::new();
    for e in q.fwd.ends.iter().filter(|e| e.kind == EndKind::Unknown) {
        unknown.push(Ending { cond: e.cond.clone(), reason: e.reason.clone() });
    }
    for (pi, back) in &q.replies {
        for r in &back.ends {
            // A reply beyond the snapshot goes where natpath cannot follow
            // (one into the overlay's pod addresses is lost: the walk ends
            // it dropped).
            if matches!(r.kind, EndKind::Unknown | EndKind::Elsewhere { .. }) {
                unknown.push(Ending { cond: r.cond.clone(), reason: format!("the reply: {}", r.reason) });
                continue;
            }
            let st = &r.state.pkt;
            let good = if r.kind == EndKind::Reached(Reached::Host(h)) {
                all(&[st.src.feq(&p.dst), st.sport.feq(&p.dport), st.dst.feq(addr(ha)), st.dport.feq(&p.sport)])
            } else {
                Bool::from_bool(false)
            };
            bad.push((and2(&r.cond, &not(&good)), r.reason.clone(), *pi));
        }
    }
    let violation = any(&bad.iter().map(|b| b.0.clone()).collect::<Vec<_>>());
    let w = c.ask_or_note(label, &q.scope, &violation, &unknown)?;
    let w = c.prefer(&q.scope, &violation, &unknown, super::ephemeral(&q.pkt), w);
    let found = bad.iter().find(|b| w.bool(&b.0) == Some(true));
    let (why, pi) = found.map(|b| (b.1.clone(), b.2)).unwrap_or_default();
    let pod = c.snap.cluster.pods.get(pi).map(|x| x.name.clone()).unwrap_or_default();
    let summary = format!(
        "{label}: the connection is delivered to pod {pod}, but its reply does not reach {} as {}:{}: {why}",
        host.name,
        natpath_model::packet::proto_name(s.proto),
        port
    );
    let pod2 = pod.clone();
    let shows = move |b: &natpath_model::trace::Branch| {
        let to_pod = b.delivered_to.as_ref().is_some_and(|d| d.kind == "pod" && d.name == pod2);
        let lost = b.reply.as_ref().is_some_and(|r| r.outcome != TOutcome::Delivered && r.outcome != TOutcome::Unknown);
        to_pod && lost
    };
    c.walk_cx(NAME, q, n, &w, summary, shows)
}
