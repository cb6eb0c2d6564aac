//! The edge of the snapshot (issue 13): a packet a node hands, on its LAN,
//! to a next hop the snapshot does not describe (the default gateway) has
//! the same fate in `trace` and in `check`. Into the overlay's pod
//! addresses it is lost (the underlay does not carry them): `trace` ends
//! it dropped, `check` shows the violation with the same reason. Any other
//! destination's fate there is unknown: `trace` and `check` both exit 3.
//!
//! Each case is a copy of a corpus snapshot with a route edited, in a
//! directory of its own under the system's temporary directory; the real
//! binary is run on it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::{verdict_line, Scratch};

/// The client's packet to node1's NodePort, traced in `c`.
fn trace(c: &Scratch) -> (i32, String, String) {
    c.trace("client", "10.0.0.51:32220")
}

fn rp_filter_off(c: &Scratch, node: &str) {
    c.edit(node, "sysctl", |t| t.replace("rp_filter = 1", "rp_filter = 0"));
}

#[test]
fn a_pod_bound_packet_handed_to_the_lan_gateway_is_lost_over_ipip() {
    // node1 no longer routes node2's pod block into the tunnel: the packet
    // DNATed to the pod falls to the default route via 10.0.0.1.
    let c = Scratch::of("seed-ipip-remote", "ipip-fwd");
    c.drop_line("node1", "ip-route", "192.168.233.128/26 via 10.0.0.52 dev tunl0");
    let lost = "lost: node1 hands it out of `ens192` to 10.0.0.1, beyond the snapshot, and the underlay does not carry pod addresses (the destination is in the overlay's pod network 192.168.0.0/16)";
    let (code, out, err) = trace(&c);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): dropped\n"), "{out}");
    assert!(out.contains(&format!("\n  {lost}\n")), "{out}");
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 1, "{out}{err}");
    assert!(verdict_line(&out, "nodeport-reachable").contains("violated"), "{out}");
    assert!(
        out.contains(&format!("the packet does not reach an endpoint (endpoints 192.168.233.136:80): {lost}\n")),
        "{out}"
    );
    assert!(out.contains(&format!("replay (model): Dropped (probability 1): {lost}\n")), "{out}");
}

#[test]
fn a_pod_bound_packet_handed_to_the_lan_gateway_is_lost_over_vxlan() {
    let c = Scratch::of("calico-vxlan", "vxlan-fwd");
    c.drop_line("node1", "ip-route", "192.168.233.128/26 via 192.168.233.128 dev vxlan.calico");
    let lost = "lost: node1 hands it out of `ens192` to 10.0.0.1, beyond the snapshot, and the underlay does not carry pod addresses";
    let (code, out, err) = trace(&c);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): dropped\n") && out.contains(lost), "{out}");
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("replay (model): Dropped (probability 1): ") && out.contains(lost), "{out}");
}

#[test]
fn a_pod_bound_reply_handed_to_the_lan_gateway_is_lost() {
    // node2 no longer routes node1's block (the masqueraded client's
    // address 192.168.231.64 is in it) into the tunnel, and takes the
    // packet from the tunnel anyway (rp_filter 0): the pod's answer falls
    // to the default route.
    let c = Scratch::of("seed-ipip-remote", "ipip-reply");
    c.drop_line("node2", "ip-route", "192.168.231.64/26 via 10.0.0.51 dev tunl0");
    rp_filter_off(&c, "node2");
    let lost = "lost: node2 hands it out of `ens192` to 10.0.0.1, beyond the snapshot, and the underlay does not carry pod addresses (the destination is in the overlay's pod network 192.168.0.0/16)";
    let (code, out, err) = trace(&c);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): reply-lost\n"), "{out}");
    assert!(out.contains(&format!("  reply: dropped\n    {lost}\n")), "{out}");
    let (code, out, err) = c.check("reply-finds-origin");
    assert_eq!(code, 1, "{out}{err}");
    assert!(verdict_line(&out, "reply-finds-origin").contains("violated"), "{out}");
    assert!(out.contains(&format!("but its reply does not reach client as tcp:32220: {lost}\n")), "{out}");
    assert!(out.contains(&format!("reply Dropped ({lost})")), "{out}");
    // The forward packet is delivered: that invariant holds.
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_reply_to_an_outside_address_handed_to_the_lan_gateway_is_unknown() {
    // Without the masquerade mark and with rp_filter 0 on node2, the pod
    // answers the client's own address; node2 routes it via the gateway.
    let c = Scratch::of("broken-no-mark-masq", "outside-reply");
    rp_filter_off(&c, "node2");
    c.edit("node2", "ip-route", |t| t.replacen('\n', "\n10.0.0.53 via 10.0.0.1 dev ens192\n", 1));
    let (code, out, err) = trace(&c);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): unknown\n"), "{out}");
    assert!(
        out.contains(
            "  reply: unknown\n    node2 sends it out of `ens192` to 10.0.0.1, which the snapshot does not describe\n"
        ),
        "{out}"
    );
    let (code, out, err) = c.check("reply-finds-origin");
    assert_eq!(code, 3, "{out}{err}");
    assert!(verdict_line(&out, "reply-finds-origin").contains("unknown"), "{out}");
    assert!(
        out.contains("node1 NodePort tcp/32220 (default/nginx:8080-80): the reply: node2 sends it out of `ens192` to 10.0.0.1, which the snapshot does not describe\n"),
        "{out}"
    );
    assert!(!out.contains("violated"), "{out}");
}

#[test]
fn a_packet_to_an_outside_address_handed_to_the_lan_gateway_is_unknown() {
    // node1 sends the DNATed packet's destination (here: a Service whose
    // endpoint is outside the pod networks) to the gateway: nobody can
    // tell where it goes, and neither command pretends to.
    let c = Scratch::of("seed-ipip-remote", "outside-fwd");
    let ep = "192.168.233.136";
    let outside = "172.16.5.9";
    c.edit("node1", "iptables-save", |t| t.replace(ep, outside));
    c.edit("node2", "iptables-save", |t| t.replace(ep, outside));
    let (code, out, err) = trace(&c);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): unknown\n"), "{out}");
    assert!(out.contains("node1 sends it out of `ens192` to 10.0.0.1, which the snapshot does not describe"), "{out}");
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 3, "{out}{err}");
    assert!(verdict_line(&out, "nodeport-reachable").contains("unknown"), "{out}");
    assert!(
        out.contains(
            "node1 NodePort tcp/32220 (default/nginx:8080-80): node1 sends it out of `ens192` to 10.0.0.1, which the snapshot does not describe"
        ),
        "{out}"
    );
    assert!(!out.contains("violated"), "{out}");
}

#[test]
fn without_an_overlay_a_pod_bound_packet_to_the_gateway_stays_unknown() {
    // The same missing route on a node without tunnel device: nothing says
    // the underlay does not route pod addresses (a cloud route table may).
    let c = Scratch::of("seed-ipip-remote", "no-overlay");
    c.drop_line("node1", "ip-route", "192.168.233.128/26 via 10.0.0.52 dev tunl0");
    c.edit("node1", "ip-addr", |t| t.replace("tunl0", "dummy0").replace("link/ipip", "link/ether"));
    c.edit("node1", "ip-route", |t| t.replace("dev tunl0", "dev dummy0"));
    let (code, out, err) = trace(&c);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("node1 sends it out of `ens192` to 10.0.0.1, which the snapshot does not describe"), "{out}");
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 3, "{out}{err}");
    assert!(!out.contains("violated"), "{out}");
}

#[test]
fn a_packet_out_of_a_veth_no_pod_stands_behind_is_unknown() {
    // cluster.toml without its [[pod]]: the endpoint's veth leads nowhere
    // the snapshot describes; trace cannot say who answers, nor can check.
    let c = Scratch::of("seed-ipip-local", "no-pod");
    let toml = c.file("cluster.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let cut = text.find("[[pod]]").unwrap();
    std::fs::write(&toml, &text[..cut]).unwrap();
    let (code, out, err) = trace(&c);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("node1 sends it out of `cali583c2cee4e2` to 192.168.231.70, which the snapshot does not describe"),
        "{out}"
    );
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 3, "{out}{err}");
    assert!(verdict_line(&out, "nodeport-reachable").contains("unknown"), "{out}");
    assert!(out.contains("node1 sends it out of `cali583c2cee4e2`, which the snapshot does not describe"), "{out}");
}

#[test]
fn a_tunnel_carrier_handed_to_the_lan_gateway_is_unknown_in_both() {
    // node1 reaches node2's LAN address through the gateway: the IPIP
    // carrier (outer destination 10.0.0.52, not a pod address) leaves the
    // snapshot, so the inner packet's fate is unknown in trace, and check
    // must not call the carrier lost.
    let c = Scratch::of("seed-ipip-remote", "carrier-gw");
    c.edit("node1", "ip-route", |t| t.replacen('\n', "\n10.0.0.52 via 10.0.0.1 dev ens192\n", 1));
    let (code, out, err) = trace(&c);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): unknown\n"), "{out}");
    assert!(out.contains("node1 sends it out of `ens192` to 10.0.0.1, which the snapshot does not describe"), "{out}");
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 3, "{out}{err}");
    assert!(verdict_line(&out, "nodeport-reachable").contains("unknown"), "{out}");
    assert!(out.contains("the IPIP carrier from node1 to node2 cannot be followed: "), "{out}");
    assert!(!out.contains("violated") && !out.contains("is lost"), "{out}");
}
