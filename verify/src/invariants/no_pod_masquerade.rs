//! `no-pod-masquerade`: traffic from a pod to another pod, inside the IP
//! pools, is never masqueraded (or SNATed) on any node it crosses.
//!
//! Quantifies over: every node; every first packet of any protocol and port
//! whose source and destination are pod addresses (inside Calico's IP pools
//! or kube-proxy's cluster CIDR, wherever its rules name it, and not one of
//! a node's own addresses, such as tunl0's) and differ, arriving by any device (`lo` aside: a pod's veth,
//! a tunnel from another node, the LAN), with every random outcome;
//! restricted to the paths on which the packet leaves the node.
//!
//! Why operators care: network policies and the pods themselves see peers
//! by address; a masquerade inside the cluster (a `cali-nat-outgoing` whose
//! set lost the pool, a KUBE-MARK-MASQ without the cluster-CIDR exception)
//! makes every pod look like a node, and policy by pod selector silently
//! stops matching.
//!
//! Without any pod network the invariant holds with a note, unless
//! kube-proxy tells pods by device (`-i cni0`, `! -i azv+`): then pods exist
//! but their addresses are not in the snapshot, and the verdict is unknown.

use super::{arrival_devs, Checker, Outcome, Pins};
use crate::encode::packet::FoldEq;
use crate::encode::{and2, any, not};
use natpath_model::node::NodeEnd;

/// The catalog name.
pub const NAME: &str = "no-pod-masquerade";

/// Check `no-pod-masquerade` on the checker's snapshot.
pub fn check_no_pod_masquerade(c: &mut Checker<'_>) -> Outcome {
    if c.pod_nets().is_empty() {
        // kube-proxy may tell pods by the device they arrive on: then the
        // cluster has pods, but no rule says which addresses are theirs,
        // and "nothing to check" would be a holds that proves nothing.
        let by_device: Vec<String> = c
            .snap
            .nodes
            .iter()
            .zip(c.intents.iter())
            .filter(|(_, i)| !i.local_ifaces.is_empty())
            .map(|(n, i)| format!("{} (`{}`)", n.name, i.local_ifaces.join("`, `")))
            .collect();
        if !by_device.is_empty() {
            c.unknown(
                "pod-to-pod",
                format!(
                    "kube-proxy tells pod traffic by device, not by address, on {}, and no IP pool or cluster CIDR says which addresses are pods'",
                    by_device.join(", ")
                ),
            );
            return c.finish();
        }
        c.notes.push("no IP pool or cluster CIDR in the snapshot: no pod traffic to check".into());
        return c.finish();
    }
    for n in c.nodes() {
        let Some(ne) = c.enc.node(n) else { continue };
        let devs = arrival_devs(ne);
        let node_name = ne.node.name.clone();
        let label = format!("{node_name} pod-to-pod");
        let violation = |q: &super::NodeQuery| {
            any(&q.passage.outs.iter().map(|o| and2(&o.flow.cond, &o.flow.state.snat_rule)).collect::<Vec<_>>())
        };
        let Some((q, answer)) = c.node_ask(
            n,
            &devs,
            Pins::default(),
            false,
            |c, _, p| vec![c.assume_pod_addr(&p.src), c.assume_pod_addr(&p.dst), not(&p.src.feq(&p.dst))],
            violation,
        ) else {
            continue;
        };
        let pass = &q.passage;
        let Some((w, out)) = c.node_witness(&label, answer, &pass.outs, |o| &o.flow.cond, "takes no way out") else {
            continue;
        };
        let src = w.u64(&out.flow.state.pkt.src).and_then(|a| u32::try_from(a).ok()).map(std::net::Ipv4Addr::from);
        let summary = format!(
            "{label}: {node_name} rewrites the source of pod traffic to {}",
            src.map(|a| a.to_string()).unwrap_or_default()
        );
        let shows = |p: &natpath_model::node::Passage, _: &natpath_model::packet::Packet| {
            matches!(p.end, NodeEnd::Out { .. }) && p.snat.is_some()
        };
        if let Some(o) = c.node_cx(NAME, &q, &w, summary, shows) {
            return o;
        }
    }
    c.finish()
}
