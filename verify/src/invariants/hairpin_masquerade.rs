//! `hairpin-masquerade`: a pod that reaches its own service and is sent
//! back to itself is masqueraded, so that its answer returns through the
//! node (and the DNAT binding) instead of short-circuiting to itself.
//!
//! Quantifies over: every node; every pod of cluster.toml on it that is an
//! endpoint of a service with a cluster IP (its `KUBE-SVC-` chain's, or the
//! node's `KUBE-SVL-` chain's for an internalTrafficPolicy Local service); every first packet from that pod
//! (its address, any source port), arriving by its veth, to the service's
//! cluster IP and port, with every random outcome; restricted to the paths
//! on which the destination is translated back to the pod itself and the
//! packet leaves the node.
//!
//! Why operators care: without the masquerade the pod receives a packet
//! from its own address, answers itself locally, and the connection never
//! completes: a client library that happens to pick its own replica hangs
//! (kube-proxy's `-s POD -j KUBE-MARK-MASQ` in each KUBE-SEP chain is the
//! rule that prevents it).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::{Checker, Outcome, Pins, QAnswer};
use crate::encode::packet::addr;
use crate::encode::packet::FoldEq;
use crate::encode::{all, any, not};
use natpath_model::node::NodeEnd;

/// The catalog name.
pub const NAME: &str = "hairpin-masquerade";

/// Check `hairpin-masquerade` on the checker's snapshot.
pub fn check_hairpin_masquerade(c: &mut Checker<'_>) -> Outcome {
    let snap = c.snap;
    let mut checked = 0usize;
    let intents = std::sync::Arc::clone(&c.intents);
    for n in c.nodes() {
        let services = intents.get(n).map(|i| i.services.as_slice()).unwrap_or_default();
        let Some(node) = snap.nodes.get(n) else { continue };
        // The Services with a cluster IP that each address is an endpoint
        // of (for an internalTrafficPolicy Local Service, the node's own
        // endpoints, which only its `KUBE-SVL-` chain names), in the
        // Services' order: a node's few pods need not each look through
        // ten thousand Services.
        let mut by_endpoint: HashMap<Ipv4Addr, Vec<usize>> = HashMap::new();
        for (i, s) in services.iter().enumerate().filter(|(_, s)| s.cluster_ip.is_some()) {
            for e in s.endpoints.iter().chain(&s.local_endpoints) {
                let of = by_endpoint.entry(e.address).or_default();
                if of.last() != Some(&i) {
                    of.push(i);
                }
            }
        }
        for pod in snap.cluster.pods.iter().filter(|p| p.node == node.name) {
            let hits = by_endpoint.get(&pod.address).map(Vec::as_slice).unwrap_or_default();
            for s in hits.iter().filter_map(|&i| services.get(i)) {
                let Some((cip, cport)) = s.cluster_ip else { continue };
                checked += 1;
                let Some(ne) = c.enc.node(n) else { continue };
                let dev = ne.dev_value(&pod.iface);
                let label = format!("{} pod {} to {} {cip}:{cport}", node.name, pod.name, s.name);
                let pa = pod.address;
                // Only the flows DNAT sends back to the pod itself can break
                // the invariant: a Service's other endpoints are not encoded.
                let pins = Pins { src: Some(pa), dst: Some(cip), dnat_to: Some(pa), ..Pins::port(s.proto, cport) };
                // Flow by flow: the one endpoint a flow reaches, and whether
                // that flow was masqueraded.
                let violation = |q: &super::NodeQuery| {
                    let violations: Vec<_> = q
                        .passage
                        .outs
                        .iter()
                        .map(|o| {
                            all(&[
                                o.flow.cond.clone(),
                                o.flow.state.pkt.dst.feq(addr(pa)),
                                not(&o.flow.state.snat_rule),
                            ])
                        })
                        .collect();
                    any(&violations)
                };
                let Some((q, answer)) = c.node_ask(n, &[dev], pins, false, |_, _, _| Vec::new(), violation) else {
                    continue;
                };
                match answer {
                    QAnswer::Holds => {}
                    QAnswer::Unknown(why) => c.unknown(&label, why),
                    QAnswer::Violated(w) => {
                        let summary = format!("{label}: the packet is sent back to the pod itself without masquerade");
                        let shows = move |p: &natpath_model::node::Passage, _: &natpath_model::packet::Packet| {
                            matches!(&p.end, NodeEnd::Out { packet, .. } if packet.dst == pa) && p.snat.is_none()
                        };
                        if let Some(o) = c.node_cx(NAME, &q, &w, summary, shows) {
                            return o;
                        }
                    }
                }
            }
        }
    }
    if checked == 0 {
        c.nothing_to_check("no pod of cluster.toml is an endpoint of a service with a cluster IP: nothing to check");
    }
    c.finish()
}
