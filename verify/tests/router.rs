//! Routers of the underlay (issue 13, `[[router]]` in cluster.toml): a
//! packet a host or a node hands to a router's address goes where the
//! router's routes say, in `trace` and in `check` alike; what no route
//! covers stays unknown; bad declarations are refused with their place.
//!
//! Each case is a copy of a corpus snapshot, edited, in a directory of its
//! own under the system's temporary directory; the real binary is run on
//! it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::{natpath, verdict_line, Scratch};

/// A router `gw` at 10.0.0.1/24 (every corpus client's gateway) with these routes.
fn gw(routes: &[&str]) -> String {
    let routes: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
    format!("\n[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [{}]\n", routes.join(", "))
}

const NGINX: &str = "delivered to pod default/nginx-854f5d4bbd-x7k2p on node2 (192.168.233.136)";

#[test]
fn a_cluster_ip_from_outside_goes_through_the_router_to_a_pod() {
    // The client's gateway 10.0.0.1: without a router the cluster IP is
    // beyond the snapshot.
    let c = Scratch::of("seed-ipip-remote", "cluster-ip");
    let (code, out, err) = c.trace("client", "10.101.14.7:8080");
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("host client sends it to 10.0.0.1, which the snapshot does not describe"), "{out}");
    // The router sends the Service CIDR to node1, which DNATs it to the
    // pod on node2 (IPIP) and masquerades it: the answer comes back.
    c.append_toml(&gw(&["10.96.0.0/12 via node1"]));
    let (code, out, err) = natpath(&["parse", c.path()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\nrouter gw 10.0.0.1/24: 10.96.0.0/12 via node1\n"), "{out}");
    let (code, out, err) = natpath(&["parse", c.path(), "--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"routers\": [\n    \"gw 10.0.0.1/24: 10.96.0.0/12 via node1\"\n  ]"), "{out}");
    let (code, out, err) = c.trace("client", "10.101.14.7:8080");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): delivered\n"), "{out}");
    assert!(out.contains(NGINX), "{out}");
    assert!(out.contains("  reply: delivered: the sender sees 10.101.14.7:8080 -> 10.0.0.53:40000\n"), "{out}");
    assert!(out.contains("on node1 (first packet):"), "{out}");
    // The router's hop is a step of its own, before node1's passage.
    assert!(
        out.contains("  at router gw (10.0.0.1) (first packet):\n    route 10.96.0.0/12 via node1: forwards it to node1\n  on node1 (first packet):\n"),
        "{out}"
    );
}

#[test]
fn a_router_hop_is_a_step_of_its_own_in_json() {
    let c = Scratch::of("seed-ipip-remote", "hop-json");
    c.append_toml(&gw(&["10.96.0.0/12 via node1"]));
    let (code, out, err) =
        natpath(&["trace", c.path(), "--from", "client", "--to", "10.101.14.7:8080", "--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    let steps = t["branches"][0]["steps"].as_array().unwrap();
    let hops: Vec<&serde_json::Value> = steps.iter().filter(|s| s.get("router").is_some()).collect();
    assert_eq!(hops.len(), 1, "{out}");
    assert_eq!(
        *hops[0],
        serde_json::json!({"node": "gw", "packet": "forward", "hook": null, "table": null, "chain": "", "rule": null,
            "text": "10.96.0.0/12 via node1", "effect": "forwards it to node1",
            "router": {"name": "gw", "address": "10.0.0.1", "route": "10.96.0.0/12 via node1", "to": "node1"}})
    );
    // First of the branch's steps: the client hands it to the router.
    assert_eq!(steps[0], *hops[0]);
    // It matches the trace schema.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/natpath.trace.v1.json");
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&t).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // DOT draws it as a diamond.
    let (code, dot, err) =
        natpath(&["trace", c.path(), "--from", "client", "--to", "10.101.14.7:8080", "--format", "dot"]);
    assert_eq!(code, 0, "{dot}{err}");
    assert!(
        dot.contains("[shape=diamond, label=\"router gw\\n10.96.0.0/12 via node1\\nforwards it to node1\"]"),
        "{dot}"
    );
}

#[test]
fn a_route_via_an_address_names_the_node_that_has_it() {
    // `via 10.0.0.52` is node2's LAN address: node2 serves the cluster IP
    // itself, the endpoint is local.
    let c = Scratch::of("seed-ipip-remote", "via-address");
    c.append_toml(&gw(&["10.96.0.0/12 via 10.0.0.52"]));
    let (code, out, err) = c.trace("client", "10.101.14.7:8080");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(NGINX), "{out}");
    assert!(!out.contains("on node1"), "node1 is not on the way: {out}");
}

#[test]
fn the_longest_prefix_wins() {
    // A /32 for the Service beats the /12: node2, not node1.
    let c = Scratch::of("seed-ipip-remote", "lpm");
    c.append_toml(&gw(&["10.96.0.0/12 via node1", "10.101.14.7/32 via node2"]));
    let (code, out, err) = c.trace("client", "10.101.14.7:8080");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(NGINX) && !out.contains("on node1"), "{out}");
}

#[test]
fn a_destination_no_route_covers_stays_unknown() {
    let c = Scratch::of("seed-ipip-remote", "no-route");
    c.append_toml(&gw(&["10.200.0.0/16 via node1"]));
    let (code, out, err) = c.trace("client", "10.101.14.7:8080");
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): unknown\n"), "{out}");
    assert!(
        out.contains("  host client hands it to router gw (10.0.0.1); it has no route for it: beyond the snapshot; 10.101.14.7 is an address of default/nginx:8080-80, served by node1, node2: --via NODE hands the packet to one of them\n"),
        "{out}"
    );
}

#[test]
fn a_load_balancer_ip_routed_to_a_node_reaches_the_pod() {
    // The load-balancer IP moved off the LAN (203.0.113.10, as a cloud
    // load balancer's would be): the client sends it to its gateway.
    let c = Scratch::of("kube-proxy-1.28-lb", "lb");
    for n in ["node1", "node2"] {
        c.edit(n, "iptables-save", |t| t.replace("10.0.0.240", "203.0.113.10"));
    }
    let (code, out, err) = c.trace("client", "203.0.113.10:8080");
    assert_eq!(code, 3, "{out}{err}");
    c.append_toml(&gw(&["203.0.113.10/32 via node1"]));
    let (code, out, err) = c.trace("client", "203.0.113.10:8080");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): delivered\n") && out.contains(NGINX), "{out}");
    assert!(out.contains("  reply: delivered: the sender sees 203.0.113.10:8080 -> 10.0.0.53:40000\n"), "{out}");
}

#[test]
fn a_route_to_a_node_that_does_not_serve_the_address_is_a_routing_loop() {
    // node2 lost its rules for the cluster IP 10.96.0.20: it sends the
    // packet back to its default gateway, the router, which hands it to
    // node2 again.
    let c = Scratch::of("kube-proxy-cidr", "not-served");
    c.drop_line("node2", "iptables-save", "-d 10.96.0.20/32");
    c.append_toml(&gw(&["10.96.0.0/12 via node2"]));
    let (code, out, err) = c.trace("client", "10.96.0.20:80");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): loop\n"), "{out}");
    assert!(
        out.contains("  routing loop: router gw (10.0.0.1) forwards the same packet to node2 a second time\n"),
        "{out}"
    );
}

#[test]
fn a_cloud_route_table_carries_the_pod_addresses() {
    // kube-proxy alone, node1 without its route to node2's pods: the
    // packet a NodePort DNATs to web-2 falls to the default route.
    let c = Scratch::of("kube-proxy-cidr", "route-table");
    c.drop_line("node1", "ip-route", "10.244.2.0/24 via 10.0.0.52");
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("node1 NodePort tcp/30080 (default/web:http): node1 sends it out of `eth0` to 10.0.0.1, which the snapshot does not describe"),
        "{out}"
    );
    let (code, out, err) = c.trace("client", "10.0.0.51:30080");
    assert_eq!(code, 3, "{out}{err}");
    // The underlay's route table sends node2's pod range to node2: both
    // commands now follow it to the pod and back.
    c.append_toml(&gw(&["10.244.2.0/24 via node2", "10.244.1.0/24 via node1"]));
    let (code, out, err) = c.trace("client", "10.0.0.51:30080");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("delivered to pod default/web-2 on node2 (10.244.2.10)"), "{out}");
    assert!(!out.contains("unknown"), "{out}");
    assert_eq!(out.matches("reply: delivered: the sender sees 10.0.0.51:30080 -> 10.0.0.53:40000").count(), 2, "{out}");
    for inv in ["nodeport-reachable", "reply-finds-origin"] {
        let (code, out, err) = c.check(inv);
        assert_eq!(code, 0, "{inv}: {out}{err}");
        assert!(verdict_line(&out, inv).contains("holds"), "{out}");
    }
}

#[test]
fn a_pod_range_routed_back_to_its_sender_is_a_martian_in_trace_and_in_check() {
    // The route table sends node2's pods to node1, which has no route for
    // them but the default one. node1 masqueraded the packet, so it comes
    // back with node1's own address as source: fib_validate_source drops it
    // as a martian even with rp_filter 0 (issue 13: kube-proxy-cidr has no
    // custom rules and no accept_local), before it could go round again.
    let c = Scratch::of("kube-proxy-cidr", "back");
    c.drop_line("node1", "ip-route", "10.244.2.0/24 via 10.0.0.52");
    c.append_toml(&gw(&["10.244.2.0/24 via node1"]));
    let (code, out, err) = c.trace("client", "10.0.0.51:30080");
    assert_eq!(code, 0, "{out}{err}");
    let martian =
        "dropped on node1 by routing: martian source 10.0.0.51: it is an address of this node (rp_filter 0 and accept_local 0 on `eth0`)";
    assert!(out.contains("branch 2/2 (probability 1/2): dropped\n"), "{out}");
    assert!(out.contains(&format!("\n  {martian}\n")), "{out}");
    assert!(!out.contains("routing loop"), "{out}");
    // The router's hop back to node1 is on the way.
    assert!(
        out.contains("  at router gw (10.0.0.1) (first packet):\n    route 10.244.2.0/24 via node1: forwards it to node1\n  on node1 (first packet):\n"),
        "{out}"
    );
    // check follows node1 a second time as trace does, to the same drop:
    // the NodePort is not reachable.
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 1, "{out}{err}");
    assert!(verdict_line(&out, "nodeport-reachable").contains("violated"), "{out}");
    assert!(
        out.contains("node1 NodePort tcp/30080 (default/web:http): the packet does not reach an endpoint (endpoints 10.244.1.10:8080, 10.244.2.10:8080): dropped on node1 by routing: reverse path filter\n"),
        "{out}"
    );
    assert!(out.contains(&format!("  replay (model): Dropped (probability 1/2): {martian}\n")), "{out}");
    assert!(out.contains("    router gw Forward route 10.244.2.0/24 via node1 (forwards it to node1)\n"), "{out}");
    assert!(!out.contains("possible routing loop"), "{out}");
    // With accept_local node1 takes it and sends it round again: a loop,
    // which check follows as trace does (issue 13: it said unknown while
    // the encoding followed each node once per walk).
    c.replace_line("node1", "sysctl", "net.ipv4.conf.all.accept_local", Some("net.ipv4.conf.all.accept_local = 1"));
    let (code, out, err) = c.trace("client", "10.0.0.51:30080");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("branch 2/2 (probability 1/2): loop\n"), "{out}");
    let looped = "routing loop: router gw (10.0.0.1) forwards the same packet to node1 a second time";
    assert!(out.contains(looped), "{out}");
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("node1 NodePort tcp/30080 (default/web:http): the packet does not reach an endpoint (endpoints 10.244.1.10:8080, 10.244.2.10:8080): {looped}\n")),
        "{out}"
    );
    assert!(out.contains(&format!("  replay (model): Loop (probability 1/2): {looped}\n")), "{out}");
    assert!(!out.contains("possible routing loop"), "{out}");
}

#[test]
fn without_a_route_a_pod_bound_packet_from_an_overlay_node_is_lost_at_the_router() {
    // As at an undescribed gateway: the underlay does not carry the
    // overlay's pod addresses, unless a route of the router says so.
    let c = Scratch::of("seed-ipip-remote", "lost");
    c.drop_line("node1", "ip-route", "192.168.233.128/26 via 10.0.0.52 dev tunl0");
    c.append_toml(&gw(&["10.96.0.0/12 via node1"]));
    let lost = "lost: node1 hands it out of `ens192` to router gw (10.0.0.1), which has no route for it, and the underlay does not carry pod addresses (the destination is in the overlay's pod network 192.168.0.0/16)";
    let (code, out, err) = c.trace("client", "10.0.0.51:32220");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): dropped\n"), "{out}");
    assert!(out.contains(&format!("\n  {lost}\n")), "{out}");
    let (code, out, err) = c.check("nodeport-reachable");
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("replay (model): Dropped (probability 1): {lost}\n")), "{out}");
}

#[test]
fn a_reply_the_router_delivers_on_its_segment_reaches_the_client() {
    // Without the masquerade mark the pod answers the client's own
    // address; node2 sends it to the router (a host route via 10.0.0.1),
    // which delivers it on its segment: the client gets it from the pod's
    // address, and both commands see the reply lost (before the router:
    // unknown in both, verify/tests/edge.rs).
    let c = Scratch::of("broken-no-mark-masq", "reply-segment");
    c.edit("node2", "sysctl", |t| t.replace("rp_filter = 1", "rp_filter = 0"));
    c.edit("node2", "ip-route", |t| t.replacen('\n', "\n10.0.0.53 via 10.0.0.1 dev ens192\n", 1));
    c.append_toml(&gw(&[]));
    let (code, out, err) = c.trace("client", "10.0.0.51:32220");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("branch 1/1 (probability 1): reply-lost\n"), "{out}");
    assert!(out.contains("  reply: reply-lost: the sender sees 192.168.233.136:80 -> 10.0.0.53:40000\n"), "{out}");
    let (code, out, err) = c.check("reply-finds-origin");
    assert_eq!(code, 1, "{out}{err}");
    assert!(verdict_line(&out, "reply-finds-origin").contains("violated"), "{out}");
    assert!(out.contains("but its reply does not reach client as tcp:32220: delivered to host client\n"), "{out}");
}

#[test]
fn a_reply_beyond_the_segment_needs_a_route_of_the_router() {
    // A client on another network, handed to node1 (`--via`): node1's
    // answer goes to its default gateway, the router.
    let c = Scratch::of("seed-ipip-remote", "reply-beyond");
    c.append_toml("\n[[host]]\nname = \"remote\"\naddress = \"198.51.100.7/24\"\n");
    let run = || natpath(&["trace", c.path(), "--from", "remote", "--via", "node1", "--to", "10.0.0.51:32220"]);
    let (code, out, err) = run();
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("node1 sends it out of `ens192` to 10.0.0.1, which the snapshot does not describe"), "{out}");
    let p = c.file("cluster.toml");
    let base = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{base}{}", gw(&[]))).unwrap();
    let (code, out, err) = run();
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("  reply: unknown\n    node1 hands it to router gw (10.0.0.1); it has no route for it: beyond the snapshot\n"),
        "{out}"
    );
    // A host named by `via` may be off the router's segment.
    std::fs::write(&p, format!("{base}{}", gw(&["198.51.100.0/24 via remote"]))).unwrap();
    let (code, out, err) = run();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  reply: delivered: the sender sees 10.0.0.51:32220 -> 198.51.100.7:40000\n"), "{out}");
}

/// Each row: what is appended to seed-ipip-remote's cluster.toml, and the
/// errors (`LINE:COL: message`, line counted from the appended text's
/// first line; `@N` in a message is the appended text's line N) `parse`
/// must print.
/// An expected error: line (of the appended text), column, message.
type Want = (usize, usize, &'static str);

#[test]
fn bad_router_declarations_are_refused_with_their_place() {
    let rows: &[(&str, &[Want])] = &[
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.0/12 node1\"]\n",
            &[(4, 11, "expected `CIDR via NAME-OR-ADDRESS` in router `gw`'s `routes`, found `10.96.0.0/12 node1`: expected three words")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.0/12 over node1\"]\n",
            &[(4, 11, "expected `CIDR via NAME-OR-ADDRESS` in router `gw`'s `routes`, found `10.96.0.0/12 over node1`: expected `via` after the destination, found `over`")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.1/12 via node1\"]\n",
            &[(4, 11, "expected `CIDR via NAME-OR-ADDRESS` in router `gw`'s `routes`, found `10.96.0.1/12 via node1`: `10.96.0.1/12` has host bits set (the network is 10.96.0.0/12)")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.10 via node1\"]\n",
            &[(4, 11, "expected `CIDR via NAME-OR-ADDRESS` in router `gw`'s `routes`, found `10.96.0.10 via node1`: expected a network with its prefix length, such as `10.96.0.10/32`")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.0/12 via node9\"]\n",
            &[(4, 11, "router `gw`'s route 10.96.0.0/12 goes via `node9`, which names no node or host (nodes: node1, node2; hosts: client)")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.0/12 via 10.0.0.99\"]\n",
            &[(4, 11, "router `gw`'s route 10.96.0.0/12 goes via 10.0.0.99, which no node's LAN interface and no host has (LAN addresses: node1 10.0.0.51/24, node2 10.0.0.52/24)")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.0/12 via 10.1.0.5\"]\n",
            &[(4, 11, "router `gw`'s route 10.96.0.0/12 goes via 10.1.0.5: expected the address of a node or host on its segment 10.0.0.0/24, other than its own")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.0/12 via node1\",\n  \"10.96.0.0/12 via node2\"]\n",
            &[(5, 3, "duplicate route 10.96.0.0/12 in router `gw` (first at line @4, column 11): a destination has one next hop")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.0.0.0/24 via node1\"]\n",
            &[(4, 11, "route 10.0.0.0/24 of router `gw` is its own segment, which it reaches directly: expected a route to another network")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.1.0.1/24\"\n",
            &[(3, 11, "expected router `gw`'s address on a node's LAN segment (LAN addresses: node1 10.0.0.51/24, node2 10.0.0.52/24), found 10.1.0.1/24")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.51/24\"\n",
            &[(3, 11, "router `gw` has the address 10.0.0.51 of node `node1`: expected an address of its own")],
        ),
        (
            "[[router]]\nname = \"node1\"\naddress = \"10.0.0.1/24\"\n",
            &[(2, 8, "router `node1` has the name of a node: routers, hosts, pods and nodes need names of their own")],
        ),
        (
            "[[router]]\nname = \"client\"\naddress = \"10.0.0.1/24\"\n",
            &[(2, 8, "router `client` has the name of a host: routers, hosts, pods and nodes need names of their own")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\n\n[[router]]\nname = \"gw\"\naddress = \"10.0.0.2/24\"\n",
            &[(6, 8, "duplicate router `gw` (first declared at line @2)")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroute = [\"10.96.0.0/12 via node1\"]\n",
            &[(4, 1, "unknown field `route`, expected one of `name`, `address`, `routes`")],
        ),
        (
            "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1\"\n",
            &[(3, 11, "invalid IP address syntax")],
        ),
    ];
    for (i, (text, want)) in rows.iter().enumerate() {
        let c = Scratch::of("seed-ipip-remote", &format!("bad-{i}"));
        let first = c.append_toml(text);
        let (code, out, err) = natpath(&["parse", c.path()]);
        assert_eq!(code, 2, "row {i}: {out}{err}");
        let file = format!("{}/cluster.toml", c.path());
        let got: Vec<String> =
            err.lines().map(|l| l.strip_prefix("natpath: ").unwrap_or(l).replace(&file, "F")).collect();
        let want: Vec<String> = want
            .iter()
            .map(|(l, col, m)| {
                format!("F:{}:{col}: {m}", l + first - 1)
                    .replace("@4", &(first + 3).to_string())
                    .replace("@2", &(first + 1).to_string())
            })
            .collect();
        assert_eq!(got, want, "row {i}: {text}");
    }
}

#[test]
fn too_many_routes_are_refused() {
    let c = Scratch::of("seed-ipip-remote", "many");
    let routes: Vec<String> =
        (0..4097u32).map(|i| format!("10.{}.{}.0/24 via node1", 100 + i / 256, i % 256)).collect();
    let refs: Vec<&str> = routes.iter().map(String::as_str).collect();
    let first = c.append_toml(&gw(&refs));
    let (code, out, err) = natpath(&["parse", c.path()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "cluster.toml:{}:10: expected at most 4096 routes in router `gw`, found 4097",
            first + 4
        )),
        "{err}"
    );
}

/// A router takes one off the TTL, as a node's forward does: the client's
/// SYN (64) reaches node1 through `gw` with 63, which counting rules first
/// in node1's raw PREROUTING show; check and trace agree on the Service.
#[test]
fn a_router_takes_one_off_the_ttl() {
    let c = Scratch::of("seed-ipip-remote", "router-ttl");
    c.append_toml(&gw(&["10.96.0.0/12 via node1"]));
    let counting =
        ["-A PREROUTING -p tcp -m ttl --ttl-eq 64".to_string(), "-A PREROUTING -p tcp -m ttl --ttl-eq 63".to_string()];
    common::rules_first(&c, "node1", "raw", &counting);
    let (code, out, err) =
        natpath(&["trace", c.path(), "--from", "client", "--to", "10.101.14.7:8080", "--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b = &t["branches"][0];
    assert_eq!(b["outcome"], "delivered", "{out}");
    let hit = |ttl: u8| {
        b["steps"].as_array().unwrap().iter().any(|s| {
            s["node"] == "node1"
                && s["packet"] == "forward"
                && s["table"] == "raw"
                && s["text"].as_str().is_some_and(|x| x.ends_with(&format!("--ttl-eq {ttl}")))
        })
    };
    assert!(hit(63) && !hit(64), "{out}");
    let (code, out, err) = natpath(&["check", c.path(), "-q"]);
    assert_eq!(code, 0, "{out}{err}");
}
