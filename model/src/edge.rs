//! The edge of the snapshot: what becomes of a packet a node hands, on its
//! LAN, to a next hop that is neither a node nor a `[[host]]` (a default
//! gateway, a cloud router).
//!
//! Semantics: the machines beyond the snapshot are not described, so in
//! general such a packet's fate is unknown. One thing is known about them
//! when the cluster runs an overlay (the sending node has an IPIP or VXLAN
//! device): the underlay does not carry the overlay's pod addresses, which
//! is why the tunnel exists. A packet whose destination lies in the pod
//! address space ([`pod_space`]: Calico's IP pools and kube-proxy's cluster
//! CIDR, read from the dumps) is therefore lost there, a definite fate. The
//! model's walk and the SMT encoding's walk both ask this module, so they
//! draw the line at the same place.
//!
//! A next hop that is a `[[router]]` of cluster.toml is described: the walk
//! asks the router ([`crate::router`]) where it forwards the packet, and
//! only what no route of the router covers reaches this edge (lost or
//! unknown as above).
//!
//! Contract: never panics; [`Edge`] reads the pod address space once, and
//! only when a walk first reaches the edge.

use crate::intent::Intent;
use crate::router::Router;
use crate::snapshot::{Node, Snapshot, Tunnel};
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::OnceLock;

/// The pod address space of the snapshot: every node's Calico IP pools
/// (`cali40all-ipam-pools`) and kube-proxy cluster CIDR (read by the
/// intent from every layout kube-proxy writes it in), each once, in node
/// order.
pub fn pod_space(snap: &Snapshot) -> Vec<Ipv4Net> {
    let intents: Vec<Intent> = snap.nodes.iter().map(|n| Intent::read(&n.ruleset, &n.ipsets, &n.interfaces)).collect();
    pod_space_of(&intents)
}

/// [`pod_space`] from the nodes' intents, for a caller that has read them.
pub fn pod_space_of(intents: &[Intent]) -> Vec<Ipv4Net> {
    let mut v: Vec<Ipv4Net> = Vec::new();
    for i in intents {
        for n in i.ip_pools.iter().chain(&i.cluster_cidrs) {
            if !v.contains(n) {
                v.push(*n);
            }
        }
    }
    v
}

/// Whether `node` runs an overlay: it has an IPIP or a VXLAN device.
pub fn has_overlay(node: &Node) -> bool {
    node.tunnel_dev(Tunnel::Ipip).is_some() || node.tunnel_dev(Tunnel::Vxlan).is_some()
}

/// Why a packet to `dst` in pod network `net`, handed by `node` out of
/// `dev` to `gateway` (its destination itself when `None`), is lost.
pub fn lost_reason(node: &str, dev: &str, gateway: Option<Ipv4Addr>, net: &Ipv4Net) -> String {
    let to = match gateway {
        Some(g) => format!("to {g}"),
        None => "to its destination directly".to_string(),
    };
    format!(
        "lost: {node} hands it out of `{dev}` {to}, beyond the snapshot, and the underlay does not carry pod addresses (the destination is in the overlay's pod network {net})"
    )
}

/// Why a packet to `dst` in pod network `net`, handed by `node` out of
/// `dev` to `router`, which has no route for it, is lost.
pub fn lost_at_router_reason(node: &str, dev: &str, router: &Router, net: &Ipv4Net) -> String {
    format!(
        "lost: {node} hands it out of `{dev}` to {}, which has no route for it, and the underlay does not carry pod addresses (the destination is in the overlay's pod network {net})",
        router.label()
    )
}

/// What a walk knows about the edge of one snapshot.
pub struct Edge<'s> {
    snap: &'s Snapshot,
    pods: OnceLock<Vec<Ipv4Net>>,
    routers: Vec<Router>,
    /// Who is where, indexed on first use: a walk asks at every hop, and
    /// a 300-node cluster has 300 LANs and 33,000 pods to search.
    owners: OnceLock<Owners>,
}

/// The first node with each LAN address, the first node with each address
/// on each device, and the first pod behind each node's device.
#[derive(Debug, Default)]
struct Owners {
    lan: HashMap<Ipv4Addr, usize>,
    /// By device name, then address (looked up without a copy of the name).
    on_dev: HashMap<String, HashMap<Ipv4Addr, usize>>,
    /// By node name, then device name.
    pods: HashMap<String, HashMap<String, usize>>,
}

impl std::fmt::Debug for Edge<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").field("pods", &self.pods.get()).field("routers", &self.routers).finish_non_exhaustive()
    }
}

impl<'s> Edge<'s> {
    /// The edge of `snap` (nothing is read yet).
    pub fn new(snap: &'s Snapshot) -> Edge<'s> {
        Edge { snap, pods: OnceLock::new(), routers: crate::router::routers(snap), owners: OnceLock::new() }
    }

    fn owners(&self) -> &Owners {
        self.owners.get_or_init(|| {
            let mut o = Owners::default();
            for (i, n) in self.snap.nodes.iter().enumerate() {
                for a in n.lan_addrs() {
                    o.lan.entry(a).or_insert(i);
                }
                for d in &n.interfaces {
                    for a in &d.addrs {
                        o.on_dev.entry(d.name.clone()).or_default().entry(a.addr.addr()).or_insert(i);
                    }
                }
            }
            for (i, p) in self.snap.cluster.pods.iter().enumerate() {
                o.pods.entry(p.node.clone()).or_default().entry(p.iface.clone()).or_insert(i);
            }
            o
        })
    }

    /// [`Snapshot::lan_owner`], indexed.
    pub fn lan_owner(&self, addr: Ipv4Addr) -> Option<usize> {
        self.owners().lan.get(&addr).copied()
    }

    /// [`Snapshot::vtep_owner`], indexed.
    pub fn vtep_owner(&self, dev: &str, addr: Ipv4Addr) -> Option<usize> {
        self.owners().on_dev.get(dev).and_then(|m| m.get(&addr)).copied()
    }

    /// The first pod of cluster.toml on node `node` behind its device `dev`.
    pub fn pod_behind(&self, node: &str, dev: &str) -> Option<usize> {
        self.owners().pods.get(node).and_then(|m| m.get(dev)).copied()
    }

    /// The routers of cluster.toml, resolved.
    pub fn routers(&self) -> &[Router] {
        &self.routers
    }

    /// The router whose address is `addr`.
    pub fn router_at(&self, addr: Ipv4Addr) -> Option<&Router> {
        self.routers.iter().find(|r| r.address.addr() == addr)
    }

    /// The pod address space ([`pod_space`]), read on first use.
    pub fn pod_space(&self) -> &[Ipv4Net] {
        self.pods.get_or_init(|| pod_space(self.snap))
    }

    /// The pod networks a packet that `node` hands to an undescribed next
    /// hop on its LAN is lost for: the pod address space when the node runs
    /// an overlay, none otherwise.
    pub fn lost_nets(&self, node: &Node) -> &[Ipv4Net] {
        if has_overlay(node) {
            self.pod_space()
        } else {
            &[]
        }
    }

    /// The pod network that makes a packet to `dst`, handed by `node` to an
    /// undescribed next hop on its LAN, lost; `None` when its fate there is
    /// unknown.
    pub fn lost_in(&self, node: &Node, dst: Ipv4Addr) -> Option<Ipv4Net> {
        self.lost_nets(node).iter().find(|n| n.contains(&dst)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_node_device_next_hop_and_net() {
        let net: Ipv4Net = "192.168.0.0/16".parse().unwrap_or_default();
        let r = lost_reason("node1", "ens192", Some(Ipv4Addr::new(10, 0, 0, 1)), &net);
        assert!(r.contains("node1") && r.contains("`ens192`") && r.contains("10.0.0.1"), "{r}");
        assert!(r.contains("the underlay does not carry pod addresses") && r.contains("192.168.0.0/16"), "{r}");
        assert!(lost_reason("n", "eth0", None, &net).contains("to its destination directly"));
    }
}
