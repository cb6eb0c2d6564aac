//! `masq-iff-mark`: every NodePort packet that gets DNAT on a node is
//! masqueraded on that node exactly when kube-proxy's masquerade bit (0x4000,
//! or whatever `KUBE-MARK-MASQ` sets) is on as it enters nat POSTROUTING.
//!
//! Quantifies over: every node; every NodePort any node declares (they are
//! cluster-wide);
//! every first packet of that protocol to that port and to any of the node's
//! own addresses, from any source, arriving by any of the node's devices
//! (`lo` aside), with every outcome of every random rule; restricted to the
//! paths where nat PREROUTING translated the destination and the packet
//! leaves the node.
//!
//! Why operators care: kube-proxy's whole SNAT contract is this one bit.
//! Masquerading without it (a stray MASQUERADE) hides client addresses that
//! policies and Local services rely on; the bit without masquerade (a typo in
//! the mark, a reordered RETURN in KUBE-POSTROUTING) lets replies of remote
//! endpoints bypass the node that holds the DNAT binding, and connections
//! hang. Each NodePort is its own small query over all of the node's own
//! addresses at once (the encoding is sliced by port; the destination is
//! one of a few addresses the builders know, so that the dispatch chains
//! and address types fold as for a constant), and the violation
//! is stated flow by flow, so that the mark test folds wherever the rules
//! set or kept the bit on every path of a flow.

use super::{arrival_devs, node_port_label, Checker, Outcome, Pins};
use crate::encode::packet::masked_eq;
use crate::encode::{all, any, xor2};
use natpath_model::node::NodeEnd;

/// The catalog name.
pub const NAME: &str = "masq-iff-mark";

/// Check `masq-iff-mark` on the checker's snapshot.
pub fn check_masq_iff_mark(c: &mut Checker<'_>) -> Outcome {
    let mut ports = 0usize;
    for n in c.nodes() {
        let bit = c.masq_bit(n);
        let services = c.node_ports(n);
        let Some(ne) = c.enc.node(n) else { continue };
        let devs = arrival_devs(ne);
        // Every own address at once (`Pins::dst_own`); none to check on a
        // node whose local table lists no address but loopback.
        let no_dst = c.own_dsts(n).is_some_and(|v| v.is_empty());
        let node_name = ne.node.name.clone();
        for s in services.iter() {
            let Some(port) = s.node_port else { continue };
            ports += 1;
            let label = node_port_label(&node_name, s, port);
            if !no_dst {
                let pins = Pins { dst_own: true, ..Pins::port(s.proto, port) };
                // Each way out on its own: its mark entering nat POSTROUTING and
                // its masquerade are one flow's, so the bit test folds when the
                // rules before set or kept the bit on every path of that flow.
                let violation = |q: &super::NodeQuery| {
                    let pass = &q.passage;
                    let mut violations = Vec::new();
                    for o in &pass.outs {
                        let marked = masked_eq(&o.post.pkt.mark, bit, bit);
                        violations.push(all(&[
                            o.flow.cond.clone(),
                            o.flow.state.dnat_rule.clone(),
                            xor2(&marked, &o.flow.state.snat_rule),
                        ]));
                    }
                    any(&violations)
                };
                let Some((q, answer)) = c.node_ask(
                    n,
                    &devs,
                    pins,
                    false,
                    |_, ne, p| vec![crate::encode::route::is_local(ne, &p.dst)],
                    violation,
                ) else {
                    continue;
                };
                let pass = &q.passage;
                let Some((w, o)) = c.node_witness(&label, answer, &pass.outs, |o| &o.flow.cond, "takes no way out")
                else {
                    continue;
                };
                let m = w.u64(&o.post.pkt.mark).unwrap_or(0);
                let masq = w.bool(&o.flow.state.snat_rule) == Some(true);
                let summary = if masq {
                    format!("{label}: DNATed and masqueraded on {node_name}, but the mark entering nat POSTROUTING is {m:#x}, without the masquerade bit {bit:#x}")
                } else {
                    format!("{label}: DNATed on {node_name} and the mark entering nat POSTROUTING is {m:#x}, with the masquerade bit {bit:#x}, but it is not masqueraded")
                };
                let shows = |p: &natpath_model::node::Passage, _: &natpath_model::packet::Packet| {
                    p.dnat.is_some()
                        && matches!(p.end, NodeEnd::Out { .. })
                        && p.mark_at_nat_postrouting.is_some_and(|m| (m & bit == bit) != p.snat.is_some())
                };
                if let Some(o) = c.node_cx(NAME, &q, &w, summary, shows) {
                    return o;
                }
            }
        }
    }
    if ports == 0 {
        c.nothing_to_check("no NodePort in the snapshot: nothing to check");
    }
    c.finish()
}
