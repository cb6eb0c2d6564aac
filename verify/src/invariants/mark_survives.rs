//! `mark-survives`: the masquerade bit (0x4000) that nat PREROUTING set is
//! still set when the packet enters nat POSTROUTING on the same node: no
//! mark write in between (mangle or filter FORWARD, mangle POSTROUTING,
//! Calico's policy chains) clears it.
//!
//! Quantifies over: every node; every first packet from any source to any
//! destination, of any protocol and port, arriving by any of the node's
//! devices (`lo` aside), with every outcome of every random rule. On a node
//! with many services the packet space is cut into one slice per (protocol,
//! port) that a service declares and one slice for everything else, so each
//! query only carries the rules that can match it.
//!
//! Why operators care: Calico and kube-proxy share the 32-bit mark; a
//! policy chain that resets bits with a too-wide mask silently disables
//! kube-proxy's SNAT for every service, and the failure shows up as hanging
//! NodePort connections with remote endpoints (the blog author's "otherwise
//! it crashes").

use super::{arrival_devs, Checker, Outcome, Pins, QAnswer};
use crate::encode::packet::FoldEq;
use crate::encode::packet::{bv16, bv8, masked_eq};
use crate::encode::{all, and2, any, not};
use natpath_model::ruleset::Proto;

/// The catalog name.
pub const NAME: &str = "mark-survives";

/// Above this many service ports, a node's packets are sliced by port.
const SLICE_ABOVE: usize = 32;

/// The (protocol, port) slices of node `n`: every port a service declares.
fn slices(c: &Checker<'_>, n: usize) -> Vec<(Proto, u16)> {
    let mut v: Vec<(Proto, u16)> = Vec::new();
    if let Some(i) = c.intents.get(n) {
        for s in &i.services {
            let mut ports: Vec<u16> = Vec::new();
            ports.extend(s.node_port);
            ports.extend(s.cluster_ip.map(|(_, p)| p));
            ports.extend(s.external_ips.iter().map(|(_, p)| *p));
            for p in ports {
                if !v.contains(&(s.proto, p)) {
                    v.push((s.proto, p));
                }
            }
        }
    }
    v
}

/// Check `mark-survives` on the checker's snapshot.
pub fn check_mark_survives(c: &mut Checker<'_>) -> Outcome {
    for n in 0..c.snap.nodes.len() {
        let bit = c.masq_bit(n);
        let Some(ne) = c.enc.node(n) else { continue };
        let devs = arrival_devs(ne);
        let node_name = ne.node.name.clone();
        // Few services: one query per node carries every rule. Many: one
        // slice per service port (each query only carries the rules that can
        // match it) and one for every other port.
        let sl = slices(c, n);
        let sl = if sl.len() <= SLICE_ABOVE { Vec::new() } else { sl };
        let mut cuts: Vec<(String, Option<(Proto, u16)>)> = sl
            .iter()
            .map(|&(p, port)| (format!("{node_name} {}/{port}", natpath_model::packet::proto_name(p)), Some((p, port))))
            .collect();
        cuts.push((if sl.is_empty() { node_name.clone() } else { format!("{node_name} other ports") }, None));
        for (label, cut) in cuts {
            let sl = sl.clone();
            let pins = cut.map(|(proto, port)| Pins::port(proto, port)).unwrap_or_default();
            let Some(q) = c.node_query(n, &devs, pins, |_, _, p| match cut {
                Some(_) => Vec::new(),
                None => sl
                    .iter()
                    .map(|(proto, port)| not(&and2(&p.proto.feq(bv8(proto.0)), &p.dport.feq(bv16(*port)))))
                    .collect(),
            }) else {
                continue;
            };
            let pass = &q.passage;
            // Flow by flow: the mark one flow left nat PREROUTING with against
            // the mark the same flow enters nat POSTROUTING with.
            let set = |m: &z3::ast::BV| masked_eq(m, bit, bit);
            let violations: Vec<_> = pass
                .posts
                .iter()
                .map(|f| all(&[f.cond.clone(), set(&f.state.pre_mark), not(&set(&f.state.pkt.mark))]))
                .collect();
            let violation = any(&violations);
            match c.ask(&q.scope, &violation, &pass.unknown) {
                QAnswer::Holds => {}
                QAnswer::Unknown(why) => c.unknown(&label, why),
                QAnswer::Violated(w) => {
                    let Some(f) = pass.posts.iter().find(|f| w.bool(&f.cond) == Some(true)) else {
                        c.unknown(&label, "BUG: the witness enters no nat POSTROUTING".into());
                        continue;
                    };
                    let m0 = w.u64(&f.state.pre_mark).unwrap_or(0);
                    let m1 = w.u64(&f.state.pkt.mark).unwrap_or(0);
                    let summary = format!(
                        "{label}: the mark is {m0:#x} after nat PREROUTING but {m1:#x} entering nat POSTROUTING on {node_name}: the bit {bit:#x} was cleared in between"
                    );
                    let shows = |p: &natpath_model::node::Passage, _: &natpath_model::packet::Packet| {
                        p.mark_after_nat_prerouting.is_some_and(|m| m & bit == bit)
                            && p.mark_at_nat_postrouting.is_some_and(|m| m & bit != bit)
                    };
                    if let Some(o) = c.node_cx(NAME, &q, &w, summary, shows) {
                        return o;
                    }
                }
            }
        }
    }
    c.finish()
}
