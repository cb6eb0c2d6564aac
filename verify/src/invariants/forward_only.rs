//! `forward-only`: NodePort traffic from outside the node crosses
//! PREROUTING, FORWARD and POSTROUTING, never INPUT (or OUTPUT): after DNAT
//! the routing decision must send it on, not deliver it to the node itself.
//! For tunnels this is about the inner packet: the IPIP or VXLAN carrier is
//! meant for the node and is not NodePort traffic.
//!
//! Quantifies over: every node; every NodePort any node declares (they are
//! cluster-wide), except a Local
//! service's on a node without a local endpoint (meant to drop, and older
//! kube-proxy layouts leave it un-DNATed for INPUT to refuse) and a
//! service's without any endpoint (left un-DNATed for filter INPUT's
//! `KUBE-EXTERNAL-SERVICES` to reject); every first
//! packet of that protocol to that port and to any of the node's own
//! addresses, from any address that is not the node's, arriving by any device
//! (`lo` aside), with every random outcome. A packet DNATed to an endpoint
//! that is the node's own address (a hostNetwork endpoint) is meant for INPUT
//! and is not a violation. A packet that receives no OUTPUT hook by
//! construction (it arrived from a wire), so only INPUT is asked about.
//!
//! Why operators care: a NodePort that lands in INPUT meets the host
//! firewall instead of the service, and kube-proxy's DNAT did not happen
//! (a missing or shadowed KUBE-NODEPORTS rule): the service is unreachable on
//! that node, with an RST or a silent drop depending on INPUT's policy.

use super::{arrival_devs, is_endpoint, node_port_label, own_addrs, Checker, Outcome, Pins};
use crate::encode::{and2, any, not};
use natpath_model::node::NodeEnd;
use natpath_model::packet::Hook;

/// The catalog name.
pub const NAME: &str = "forward-only";

/// Check `forward-only` on the checker's snapshot.
pub fn check_forward_only(c: &mut Checker<'_>) -> Outcome {
    for n in c.nodes() {
        let services = c.node_ports(n);
        let Some(ne) = c.enc.node(n) else { continue };
        let devs = arrival_devs(ne);
        let node_name = ne.node.name.clone();
        let addrs = own_addrs(ne.node);
        // One query for every own address when the local table lists
        // exactly the interfaces' addresses (`Pins::dst_own`: the builders
        // know the destination is one of them, so address types and the
        // dispatch chains fold as for a constant), else one per address.
        let mut listed = c.own_dsts(n).unwrap_or_default();
        let mut wanted = addrs.clone();
        listed.sort_unstable();
        wanted.sort_unstable();
        wanted.dedup();
        let dsts: Vec<Option<std::net::Ipv4Addr>> =
            if !wanted.is_empty() && listed == wanted { vec![None] } else { addrs.iter().copied().map(Some).collect() };
        for s in services.iter() {
            let Some(port) = s.node_port else { continue };
            if s.external_local && s.local_endpoints.is_empty() {
                c.notes.push(format!(
                    "{node_name}: {} is Local with no local endpoint: meant to drop, not checked",
                    s.name
                ));
                continue;
            }
            if s.endpoints.is_empty() && s.local_endpoints.is_empty() {
                // kube-proxy leaves it un-DNATed for filter INPUT's
                // KUBE-EXTERNAL-SERVICES to reject (`has no endpoints`).
                c.notes.push(format!("{node_name}: {} has no endpoint: meant to be rejected, not checked", s.name));
                continue;
            }
            let label = node_port_label(&node_name, s, port);
            for &a in &dsts {
                let pins = Pins { dst: a, dst_own: a.is_none(), ..Pins::port(s.proto, port) };
                let mut eps = s.endpoints.clone();
                eps.extend(s.local_endpoints.iter().cloned());
                let violation = |q: &super::NodeQuery| {
                    let violations: Vec<_> = q
                        .passage
                        .inputs
                        .iter()
                        .map(|f| and2(&f.cond, &not(&is_endpoint(&f.state.pkt.dst, &f.state.pkt.dport, &eps))))
                        .collect();
                    any(&violations)
                };
                // Only what enters INPUT matters: the forward path is left out.
                let Some((q, answer)) = c.node_ask(
                    n,
                    &devs,
                    pins,
                    true,
                    |_, ne, p| vec![not(&crate::encode::route::is_local(ne, &p.src))],
                    violation,
                ) else {
                    continue;
                };
                let pass = &q.passage;
                let Some((w, input)) = c.node_witness(&label, answer, &pass.inputs, |f| &f.cond, "enters no INPUT")
                else {
                    continue;
                };
                let dst = w
                    .u64(&input.state.pkt.dst)
                    .map(|a| std::net::Ipv4Addr::from(a as u32).to_string())
                    .unwrap_or_default();
                let dport = w.u64(&input.state.pkt.dport).unwrap_or(0);
                let summary = format!("{label}: the packet enters INPUT on {node_name} addressed to {dst}:{dport}, which is not an endpoint of the service");
                let eps2 = eps.clone();
                let shows = move |p: &natpath_model::node::Passage, _: &natpath_model::packet::Packet| {
                    p.hooks.contains(&Hook::Input)
                        && !matches!(&p.end, NodeEnd::Local(pk) if eps2.iter().any(|e| e.address == pk.dst && e.port == pk.dport))
                };
                if let Some(o) = c.node_cx(NAME, &q, &w, summary, shows) {
                    return o;
                }
            }
        }
    }
    c.finish()
}
