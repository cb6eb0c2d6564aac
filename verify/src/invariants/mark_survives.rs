//! `mark-survives`: the masquerade bit (0x4000) that nat PREROUTING set is
//! still set when the packet enters nat POSTROUTING on the same node: no
//! mark write in between (mangle or filter FORWARD, mangle POSTROUTING,
//! Calico's policy chains) clears it.
//!
//! Quantifies over: every node; every first packet from any source to any
//! destination, of any protocol and port, arriving by any of the node's
//! devices (`lo` aside), with every outcome of every random rule. The
//! packet space is cut into disjoint slices, each its own query: every
//! service entry (cluster IP, external IP, each NodePort at each own
//! address) with destination, protocol and port pinned; for each entry port
//! the other destinations; the other ports of each protocol; the other
//! protocols. The slices' exclusions are told to the builders, so each
//! query only carries the rules that can match it. (A node whose own
//! addresses cannot be listed is sliced by port instead.)
//!
//! Before any slice, the node's tables are summarized
//! ([`crate::encode::effects::Effects`]): when no rule that can run between
//! nat PREROUTING and nat POSTROUTING (mangle, filter and security FORWARD,
//! mangle POSTROUTING) writes the bit, it holds on that node for every
//! packet, with a note saying so, and the slices are asked only on nodes
//! where some rule can.
//!
//! Why operators care: Calico and kube-proxy share the 32-bit mark; a
//! policy chain that resets bits with a too-wide mask silently disables
//! kube-proxy's SNAT for every service, and the failure shows up as hanging
//! NodePort connections with remote endpoints (the blog author's "otherwise
//! it crashes").

use super::{arrival_devs, local_dsts, Checker, Outcome, Pins};
use crate::encode::packet::FoldEq;
use crate::encode::packet::{bv16, bv8, masked_eq};
use crate::encode::{all, and2, any, not};
use natpath_model::packet::Hook;
use natpath_model::ruleset::{Proto, TableName};

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

/// What one slice of a node's packets is: its pinned fields and the sets
/// its symbolic fields avoid or keep to.
#[derive(Default)]
struct Cut {
    label: String,
    pins: Pins,
    /// The destination is none of these.
    dst_not: Vec<u32>,
    /// The destination port is none of these.
    dport_not: Vec<u16>,
    /// The destination port is one of these (when not empty).
    dport_in: Vec<u16>,
    /// The protocol is none of these.
    proto_not: Vec<u8>,
    /// The (protocol, destination port) pair is none of these.
    pairs_not: Vec<(Proto, u16)>,
}

/// The slices of node `n`'s packets, exact and disjoint, each small:
/// every service entry `(protocol, address, port)` (cluster IPs, external
/// IPs, and each NodePort at each own address) pinned; for each entry port,
/// the other destinations; every other port, per protocol; every other
/// protocol. `None` when the node's own addresses cannot be listed.
fn cuts(c: &Checker<'_>, n: usize, node_name: &str) -> Option<Vec<Cut>> {
    use std::collections::{BTreeMap, BTreeSet};
    let ne = c.enc.node(n)?;
    let own: Vec<std::net::Ipv4Addr> = local_dsts(ne).into_iter().collect::<Option<Vec<_>>>()?;
    let own_set: BTreeSet<u32> = own.iter().map(|a| u32::from(*a)).collect();
    let mut entries: BTreeSet<(u8, u32, u16)> = BTreeSet::new();
    for s in c.intents.get(n).map(|i| i.services.as_slice()).unwrap_or_default() {
        for (ip, port) in s.cluster_ip.iter().chain(s.external_ips.iter()) {
            entries.insert((s.proto.0, u32::from(*ip), *port));
        }
    }
    for s in c.node_ports(n).iter() {
        if let Some(port) = s.node_port {
            for a in &own_set {
                entries.insert((s.proto.0, *a, port));
            }
        }
    }
    let mut by_port: BTreeMap<(u8, u16), BTreeSet<u32>> = BTreeMap::new();
    for &(p, a, port) in &entries {
        by_port.entry((p, port)).or_default().insert(a);
    }
    let name = |p: u8| natpath_model::packet::proto_name(Proto(p));
    let mut v = Vec::new();
    for &(p, a, port) in &entries {
        let addr = std::net::Ipv4Addr::from(a);
        v.push(Cut {
            label: format!("{node_name} {}/{addr}:{port}", name(p)),
            pins: Pins { dst: Some(addr), ..Pins::port(Proto(p), port) },
            ..Cut::default()
        });
    }
    // Ports that only NodePorts use share one slice per protocol: there no
    // destination is an entry but the node's own addresses.
    let mut node_port_only: BTreeMap<u8, Vec<u16>> = BTreeMap::new();
    for (&(p, port), addrs) in &by_port {
        if *addrs == own_set {
            node_port_only.entry(p).or_default().push(port);
        } else {
            v.push(Cut {
                label: format!("{node_name} {}/{port} to other destinations", name(p)),
                pins: Pins::port(Proto(p), port),
                dst_not: addrs.iter().copied().collect(),
                ..Cut::default()
            });
        }
    }
    for (p, ports) in node_port_only {
        v.push(Cut {
            label: format!("{node_name} {} NodePorts to other destinations", name(p)),
            pins: Pins { proto: Some(Proto(p)), ..Pins::default() },
            dst_not: own_set.iter().copied().collect(),
            dport_in: ports,
            ..Cut::default()
        });
    }
    let mut protos: BTreeMap<u8, Vec<u16>> = BTreeMap::new();
    for &(p, port) in by_port.keys() {
        protos.entry(p).or_default().push(port);
    }
    for (&p, ports) in &protos {
        v.push(Cut {
            label: format!("{node_name} {} other ports", name(p)),
            pins: Pins { proto: Some(Proto(p)), ..Pins::default() },
            dport_not: ports.clone(),
            ..Cut::default()
        });
    }
    v.push(Cut {
        label: format!("{node_name} other protocols"),
        proto_not: protos.keys().copied().collect(),
        ..Cut::default()
    });
    Some(v)
}

/// The old slicing, for a node whose own addresses cannot be listed: few
/// services, one query per node; many, one slice per service port and one
/// for every other port.
fn port_cuts(c: &Checker<'_>, n: usize, node_name: &str) -> Vec<Cut> {
    let sl = slices(c, n);
    let sl = if sl.len() <= SLICE_ABOVE { Vec::new() } else { sl };
    let mut v: Vec<Cut> = sl
        .iter()
        .map(|&(p, port)| Cut {
            label: format!("{node_name} {}/{port}", natpath_model::packet::proto_name(p)),
            pins: Pins::port(p, port),
            ..Cut::default()
        })
        .collect();
    v.push(Cut {
        label: if sl.is_empty() { node_name.to_string() } else { format!("{node_name} other ports") },
        pairs_not: sl,
        ..Cut::default()
    });
    v
}

/// The scope constraints of a cut, then its facts told to the builders
/// (after: a constraint built with its own facts known would fold away).
fn cut_scope(cut: &Cut, p: &crate::encode::packet::SymPacket) -> Vec<z3::ast::Bool> {
    use crate::encode::packet::{addr, assume_addr, AddrFacts};
    let mut v = Vec::new();
    for (proto, port) in &cut.pairs_not {
        v.push(not(&and2(&p.proto.feq(bv8(proto.0)), &p.dport.feq(bv16(*port)))));
    }
    if !cut.dst_not.is_empty() {
        v.push(not(&any(&cut.dst_not.iter().map(|a| p.dst.feq(addr((*a).into()))).collect::<Vec<_>>())));
    }
    if !cut.dport_not.is_empty() {
        v.push(not(&any(&cut.dport_not.iter().map(|x| p.dport.feq(bv16(*x))).collect::<Vec<_>>())));
    }
    if !cut.dport_in.is_empty() {
        v.push(any(&cut.dport_in.iter().map(|x| p.dport.feq(bv16(*x))).collect::<Vec<_>>()));
    }
    if !cut.proto_not.is_empty() {
        v.push(not(&any(&cut.proto_not.iter().map(|x| p.proto.feq(bv8(*x))).collect::<Vec<_>>())));
    }
    // node_query's scope already keeps 0/8 and 127/8 out of the destination.
    let martians = super::martian_destinations();
    if !cut.dst_not.is_empty() || cut.pins.dst.is_none() {
        assume_addr(
            &p.dst,
            AddrFacts { outside: martians, outside_addrs: cut.dst_not.iter().copied().collect(), ..Default::default() },
        );
    }
    if !cut.dport_not.is_empty() || !cut.dport_in.is_empty() {
        let within = (!cut.dport_in.is_empty()).then(|| cut.dport_in.iter().map(|x| u64::from(*x)).collect());
        let not_values = cut.dport_not.iter().map(|x| u64::from(*x)).collect();
        assume_addr(&p.dport, AddrFacts { not_values, within_values: within, ..Default::default() });
    }
    if !cut.proto_not.is_empty() {
        let not_values = cut.proto_not.iter().map(|x| u64::from(*x)).collect();
        assume_addr(&p.proto, AddrFacts { not_values, ..Default::default() });
    }
    v
}

/// Check `mark-survives` on the checker's snapshot.
pub fn check_mark_survives(c: &mut Checker<'_>) -> Outcome {
    for n in c.nodes() {
        let bit = c.masq_bit(n);
        let Some(ne) = c.enc.node(n) else { continue };
        let devs = arrival_devs(ne);
        let node_name = ne.node.name.clone();
        // Between nat PREROUTING and nat POSTROUTING a received packet
        // meets only these tables (routing and conntrack leave the mark
        // alone): when none of their rules reachable from the hook can
        // write the bit, it survives on every path, whatever the packet.
        let between = [
            (TableName::Mangle, Hook::Forward),
            (TableName::Filter, Hook::Forward),
            (TableName::Security, Hook::Forward),
            (TableName::Mangle, Hook::Postrouting),
        ];
        let written = between.iter().try_fold(0u32, |acc, &(t, h)| ne.effects(t, h).map(|e| acc | e.mark));
        if written.is_some_and(|w| w & bit == 0) {
            c.notes.push(format!(
                "{node_name}: no rule of mangle, filter or security FORWARD or mangle POSTROUTING can write {bit:#x}: it survives on every path, no slice asked"
            ));
            continue;
        }
        let cuts = cuts(c, n, &node_name).unwrap_or_else(|| port_cuts(c, n, &node_name));
        for cut in cuts {
            let label = cut.label.clone();
            // Flow by flow: the mark one flow left nat PREROUTING with against
            // the mark the same flow enters nat POSTROUTING with.
            let violation = |q: &super::NodeQuery| {
                let pass = &q.passage;
                let set = |m: &z3::ast::BV| masked_eq(m, bit, bit);
                let violations: Vec<_> = pass
                    .posts
                    .iter()
                    .map(|f| {
                        // A mark whose bit was copied through (rules rewrote
                        // only other bits) cannot have lost it.
                        if crate::encode::packet::same_bits(&f.state.pre_mark, &f.state.pkt.mark, u64::from(bit)) {
                            return z3::ast::Bool::from_bool(false);
                        }
                        all(&[f.cond.clone(), set(&f.state.pre_mark), not(&set(&f.state.pkt.mark))])
                    })
                    .collect();
                any(&violations)
            };
            let Some((q, answer)) = c.node_ask(n, &devs, cut.pins, false, |_, _, p| cut_scope(&cut, p), violation)
            else {
                continue;
            };
            let pass = &q.passage;
            let Some((w, f)) = c.node_witness(&label, answer, &pass.posts, |f| &f.cond, "enters no nat POSTROUTING")
            else {
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
    c.finish()
}
