//! `local-preserves-source`: for a service with externalTrafficPolicy
//! Local, every packet from outside the cluster that a node delivers keeps
//! the client's source address, and only that node's own endpoints are
//! chosen.
//!
//! Quantifies over: every node; every Local service with a NodePort and at
//! least one local endpoint on that node (without one, the NodePort is meant
//! to drop); every first packet of that protocol to that port on any of the
//! node's LAN addresses, from any address outside the cluster (not a pod's,
//! not a node's, not loopback or multicast) and any source port, arriving by
//! the LAN device, with every random outcome; restricted to the paths on
//! which the packet leaves the node.
//!
//! Why operators care: Local is chosen precisely to keep client addresses
//! (for logs, rate limits, allow-lists) and to avoid the second hop; a rule
//! that masquerades it or sends it to a remote endpoint breaks both promises
//! while every probe still "works".

use super::{is_endpoint, node_port_label, one_of, Checker, Outcome, Pins};
use crate::encode::packet::FoldEq;
use crate::encode::{and2, any, not, or2};
use natpath_model::node::NodeEnd;

/// The catalog name.
pub const NAME: &str = "local-preserves-source";

/// Check `local-preserves-source` on the checker's snapshot.
pub fn check_local_preserves_source(c: &mut Checker<'_>) -> Outcome {
    let mut checked = 0usize;
    for n in c.nodes() {
        let services = c.node_ports(n);
        let Some(ne) = c.enc.node(n) else { continue };
        let lan = ne.dev_value(&ne.node.lan);
        let node_name = ne.node.name.clone();
        let addrs = ne.node.lan_addrs();
        for s in services.iter() {
            let Some(port) = s.node_port else { continue };
            if !s.external_local || s.local_endpoints.is_empty() {
                continue;
            }
            checked += 1;
            let label = node_port_label(&node_name, s, port);
            let addrs = addrs.clone();
            let mut pins = Pins::port(s.proto, port);
            if let [one] = addrs.as_slice() {
                pins.dst = Some(*one);
            }
            let eps = s.local_endpoints.clone();
            let violation = |q: &super::NodeQuery| {
                let violations: Vec<_> = q
                    .passage
                    .outs
                    .iter()
                    .map(|out| {
                        let o = &out.flow.state.pkt;
                        let local = is_endpoint(&o.dst, &o.dport, &eps);
                        and2(&out.flow.cond, &or2(&not(&o.src.feq(&q.pkt.src)), &not(&local)))
                    })
                    .collect();
                any(&violations)
            };
            let Some((q, answer)) = c.node_ask(
                n,
                &[lan],
                pins,
                false,
                |c, _, p| vec![one_of(&p.dst, &addrs), c.assume_external(&p.src)],
                violation,
            ) else {
                continue;
            };
            let pass = &q.passage;
            let Some((w, out)) = c.node_witness(&label, answer, &pass.outs, |o| &o.flow.cond, "takes no way out")
            else {
                continue;
            };
            let kept = w.bool(&out.flow.state.pkt.src.feq(&q.pkt.src)) == Some(true);
            let summary = if kept {
                format!("{label}: {node_name} sends the packet to an endpoint that is not local to it")
            } else {
                format!("{label}: {node_name} rewrites the client's source address")
            };
            let eps = s.local_endpoints.clone();
            let shows = move |p: &natpath_model::node::Passage, sent: &natpath_model::packet::Packet| match &p.end {
                NodeEnd::Out { packet, .. } => {
                    packet.src != sent.src || !eps.iter().any(|e| e.address == packet.dst && e.port == packet.dport)
                }
                _ => false,
            };
            if let Some(o) = c.node_cx(NAME, &q, &w, summary, shows) {
                return o;
            }
        }
    }
    if checked == 0 {
        c.nothing_to_check("no Local service with a local endpoint: nothing to check");
    }
    c.finish()
}
