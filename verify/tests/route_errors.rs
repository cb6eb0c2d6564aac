//! ICMP errors of failed routes (issue 13): a received packet the routing
//! decision refuses is answered by the node with an ICMP destination
//! unreachable (`ip_error`): net unreachable (3/0) without a route or for an
//! `unreachable` policy rule, host unreachable (3/1) for an `unreachable`
//! route, administratively prohibited (3/13) for a `prohibit` route or
//! rule; a `blackhole` route or rule drops silently, and so does a node
//! that does not forward. The error is a packet of the node's own, walked
//! back to the sender as the branch's `refusal` (steps of kind `refusal`).
//! A node's own packet without a route gets a socket error, no packet.
//!
//! Each case is an edited copy of `seed-ipip-remote` (tests/common); the
//! kernel agrees with each (tests/kernel.rs `failed_routes_answer_like_the_kernel`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::Scratch;
use serde_json::Value;
use std::process::Command;

/// `natpath trace DIR --from FROM --to TO --format json`, parsed.
#[track_caller]
fn trace(dir: &Scratch, from: &str, to: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(["trace", dir.path(), "--from", from, "--to", to, "--format", "json"])
        .output()
        .expect("natpath runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The steps of one packet kind as `node hook table chain #rule`.
fn steps(b: &Value, kind: &str) -> Vec<String> {
    b["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["packet"] == kind)
        .map(|s| {
            format!(
                "{} {} {} {} #{}",
                s["node"].as_str().unwrap(),
                s["hook"].as_str().unwrap(),
                s["table"].as_str().unwrap(),
                s["chain"].as_str().unwrap(),
                s["rule"].as_u64().map(|r| r.to_string()).unwrap_or_else(|| "policy".into())
            )
        })
        .collect()
}

#[test]
fn every_failed_route_case_answers_as_ip_error_does() {
    for (tag, edit, want) in common::route_cases() {
        let s = Scratch::of("seed-ipip-remote", &format!("route-{tag}"));
        edit(&s);
        let t = trace(&s, "client", "10.0.0.51:32220");
        let branches = t["branches"].as_array().unwrap();
        assert_eq!(branches.len(), 1, "{tag}");
        let b = &branches[0];
        match want {
            Some(kind) => {
                assert_eq!(b["outcome"], "rejected", "{tag}: {b}");
                let r = &b["refusal"];
                assert_eq!(r["kind"], kind, "{tag}: {r}");
                assert_eq!(r["outcome"], "delivered", "{tag}: {r}");
                // Routing chose the error's source: node1's address on the
                // client's LAN (for node2's error: un-NATed by node1).
                assert_eq!(r["seen_by_client"]["src"], "10.0.0.51", "{tag}: {r}");
                assert_eq!(r["seen_by_client"]["dst"], "10.0.0.53", "{tag}: {r}");
                let refusal = steps(b, "refusal");
                assert!(!refusal.is_empty(), "{tag}: no refusal steps");
                // Every refusal step is in OUTPUT or POSTROUTING of the
                // refusing node, or on the way back.
                let refusing = if tag.starts_with("remote") { "node2" } else { "node1" };
                assert!(refusal[0].starts_with(&format!("{refusing} OUTPUT raw OUTPUT #1")), "{tag}: {refusal:?}");
                assert!(refusal.contains(&format!("{refusing} OUTPUT filter OUTPUT #3")), "{tag}: {refusal:?}");
                // nat does not run its table for the error (RELATED).
                assert!(
                    !refusal.iter().any(|s| s.contains(" nat ") && !s.contains("(conntrack)")),
                    "{tag}: {refusal:?}"
                );
            }
            None => {
                assert_eq!(b["outcome"], "dropped", "{tag}: {b}");
                assert!(b.get("refusal").is_none_or(Value::is_null), "{tag}: {b}");
                assert!(steps(b, "refusal").is_empty(), "{tag}");
            }
        }
    }
}

#[test]
fn an_unreachable_route_is_named_and_its_error_shown_in_text() {
    let s = Scratch::of("seed-ipip-remote", "route-text");
    s.replace_line(
        "node1",
        "ip-route",
        "192.168.233.128/26 via 10.0.0.52 dev tunl0",
        Some("unreachable 192.168.233.128/26 proto bird"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(["trace", s.path(), "--from", "client", "--to", "10.0.0.51:32220"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("branch 1/1 (probability 1): rejected\n"), "{text}");
    assert!(text.contains("  on node1 (refusal (the node's own answer)):\n"), "{text}");
    assert!(text.contains("  refused with an ICMP error (3/1): the sender sees 10.0.0.51 -> 10.0.0.53\n"), "{text}");
    assert!(
        text.contains(&format!(
            "  rejected on node1 by the Unreachable route 192.168.233.128/26 ({}/nodes/node1/ip-route:4) (ICMP host unreachable)\n",
            s.path()
        )),
        "{text}"
    );
}

#[test]
fn a_node_that_does_not_forward_sends_no_error() {
    let s = Scratch::of("seed-ipip-remote", "route-noforward");
    s.replace_line(
        "node1",
        "ip-route",
        "192.168.233.128/26 via 10.0.0.52 dev tunl0",
        Some("unreachable 192.168.233.128/26 proto bird"),
    );
    s.edit("node1", "sysctl", |t| t.replace("net.ipv4.ip_forward = 1", "net.ipv4.ip_forward = 0"));
    let t = trace(&s, "client", "10.0.0.51:32220");
    let b = &t["branches"][0];
    assert_eq!(b["outcome"], "dropped", "{b}");
    assert!(b["reason"].as_str().unwrap().contains("no ICMP error is sent"), "{b}");
    assert!(steps(b, "refusal").is_empty());
}

#[test]
fn a_nodes_own_packet_without_a_route_gets_no_packet_back() {
    let s = Scratch::of("seed-ipip-remote", "route-own");
    s.replace_line("node1", "ip-route", "192.168.233.128/26 via 10.0.0.52 dev tunl0", None).replace_line(
        "node1",
        "ip-route",
        "default via",
        None,
    );
    let t = trace(&s, "node1", "192.168.233.136:80");
    let b = &t["branches"][0];
    assert_eq!(b["outcome"], "rejected", "{b}");
    assert!(b.get("refusal").is_none_or(Value::is_null), "{b}");
    assert!(steps(b, "refusal").is_empty());
}

#[test]
fn an_icmp_error_is_never_answered_with_another() {
    use natpath_model::node::{Refused, RefusedBy};
    use natpath_model::packet::{Hook, Packet};
    use natpath_model::ruleset::{Proto, RejectWith};
    let syn = Packet::first("10.0.0.53".parse().unwrap(), 40000, "10.9.9.9".parse().unwrap(), 80, Proto::TCP);
    let refused = |packet: Packet| Refused {
        packet,
        hook: Hook::Prerouting,
        by: RefusedBy::Route(RejectWith::HostUnreachable),
        src: std::net::Ipv4Addr::UNSPECIFIED,
        conn: None,
    };
    let err = refused(syn).answer().expect("a SYN is answered");
    assert_eq!(err.icmp, (3, 1));
    assert!(refused(err).answer().is_none(), "an ICMP error about an ICMP error");
}

/// ICMP redirects: node1 forwards the DNATed SYN out of ens192, the
/// device it came in by, to a gateway on the client's link. The kernel sends
/// the client a redirect before the FORWARD hook (raw and mangle OUTPUT
/// count it) and nat drops it at OUTPUT (the connection's NAT is not done),
/// so filter OUTPUT and POSTROUTING never see it; the SYN goes on.
#[test]
fn a_packet_forwarded_back_out_its_device_makes_an_icmp_redirect() {
    let s = Scratch::of("seed-ipip-remote", "redirect");
    common::redirect_case(&s);
    let t = trace(&s, "client", "10.0.0.51:32220");
    let b = &t["branches"][0];
    assert_eq!(b["outcome"], "delivered", "{b}");
    let redirect = steps(b, "redirect");
    assert_eq!(
        redirect,
        vec![
            "node1 OUTPUT raw OUTPUT #1",
            "node1 OUTPUT raw cali-OUTPUT #1",
            "node1 OUTPUT raw cali-OUTPUT #2",
            "node1 OUTPUT raw OUTPUT #policy",
            "node1 OUTPUT mangle OUTPUT #policy",
        ],
        "{b}"
    );
    // The reply comes back from node2 (not on the client's link as seen
    // from node1: its route back to the pod has a gateway): no redirect.
    assert_eq!(b["reply"]["outcome"], "delivered", "{b}");
    // With send_redirects off (all and the device), no redirect.
    s.edit("node1", "sysctl", |t| {
        t.lines()
            .filter(|l| !l.contains("send_redirects"))
            .map(|l| format!("{l}\n"))
            .chain([
                "net.ipv4.conf.all.send_redirects = 0\n".into(),
                "net.ipv4.conf.ens192.send_redirects = 0\n".into(),
            ])
            .collect()
    });
    let t = trace(&s, "client", "10.0.0.51:32220");
    assert!(steps(&t["branches"][0], "redirect").is_empty());
}

/// Per-device forwarding (issue 13): the kernel forwards a received packet
/// when its input device's own `net.ipv4.conf.DEV.forwarding` is on
/// (`ip_route_input_slow`), whatever `ip_forward` says. node2 with tunl0's
/// off drops node1's DNATed SYN that comes through the tunnel, and still
/// forwards the SYN to its own NodePort, which comes in by ens192; `trace`
/// and `check` agree (tests/kernel.rs `per_device_forwarding_like_the_kernel`
/// has the kernel's word).
#[test]
fn forwarding_is_the_input_devices_own() {
    let s = Scratch::of("seed-ipip-remote", "fwd-dev");
    s.edit("node2", "sysctl", |t| format!("{t}net.ipv4.conf.tunl0.forwarding = 0\n"));
    let t = trace(&s, "client", "10.0.0.51:32220");
    let b = &t["branches"][0];
    assert_eq!(b["outcome"], "dropped", "{b}");
    assert_eq!(b["reason"], "dropped on node2: net.ipv4.conf.tunl0.forwarding is 0", "{b}");
    let t = trace(&s, "client", "10.0.0.52:32220");
    assert_eq!(t["branches"][0]["outcome"], "delivered", "{t}");
    let (code, out, err) = common::natpath(&["check", s.path(), "--invariant", "nodeport-reachable"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(
            "replay (model): Dropped (probability 1): dropped on node2: net.ipv4.conf.tunl0.forwarding is 0\n"
        ),
        "{out}"
    );
    // A failed route from that device sends no ICMP error either (ip_error).
    s.replace_line(
        "node2",
        "ip-route",
        "192.168.233.136 dev calib992f6c0b80",
        Some("unreachable 192.168.233.136 proto bird"),
    );
    let t = trace(&s, "client", "10.0.0.51:32220");
    let b = &t["branches"][0];
    assert_eq!(b["outcome"], "dropped", "{b}");
    assert!(
        b["reason"].as_str().unwrap().ends_with("; net.ipv4.conf.tunl0.forwarding is 0, so no ICMP error is sent"),
        "{b}"
    );
    // ens192 still forwards, so node2's own NodePort is refused with an error.
    let t = trace(&s, "client", "10.0.0.52:32220");
    assert_eq!(t["branches"][0]["outcome"], "rejected", "{t}");
    // With the device's own forwarding on, ip_forward 0 does not matter to it.
    let s = Scratch::of("seed-ipip-remote", "fwd-dev-on");
    s.edit("node2", "sysctl", |t| {
        t.replace("net.ipv4.ip_forward = 1\n", "net.ipv4.ip_forward = 0\n") + "net.ipv4.conf.tunl0.forwarding = 1\n"
    });
    let t = trace(&s, "client", "10.0.0.51:32220");
    assert_eq!(t["branches"][0]["outcome"], "delivered", "{t}");
    let (code, out, err) = common::natpath(&["check", s.path(), "--invariant", "nodeport-reachable"]);
    assert_eq!(code, 1, "node2's own NodePort comes in by ens192, which follows ip_forward: {out}{err}");
    assert!(out.contains("dropped on node2: net.ipv4.ip_forward is 0"), "{out}");
}

/// A TCP reset is 40 bytes (issue 13), whether a closed port or a REJECT
/// with tcp-reset sends it, whatever the SYN's length: a `-m length
/// --length 40` rule counts it and one for longer packets does not.
#[test]
fn a_tcp_reset_is_40_bytes() {
    let s = Scratch::of("node-listeners", "reset-len");
    common::reset_length_case(&s);
    for port in ["2222", "2223"] {
        let t = trace(&s, "client", &format!("10.0.0.51:{port}"));
        let b = &t["branches"][0];
        assert_eq!(b["outcome"], "rejected", "{b}");
        assert_eq!(b["refusal"]["kind"], "rst", "{b}");
        // The closed port's reset is the connection's reply; the REJECT's a refusal.
        let raw: Vec<String> = [steps(b, "reply"), steps(b, "refusal")]
            .concat()
            .into_iter()
            .filter(|s| s.contains(" raw OUTPUT #"))
            .collect();
        assert!(raw.contains(&"node1 OUTPUT raw OUTPUT #1".to_string()), "{port}: {raw:?}");
        assert!(!raw.contains(&"node1 OUTPUT raw OUTPUT #2".to_string()), "{port}: {raw:?}");
    }
    let syn = natpath_model::packet::Packet::first(
        "10.0.0.53".parse().unwrap(),
        40000,
        "10.0.0.51".parse().unwrap(),
        2222,
        natpath_model::ruleset::Proto::TCP,
    );
    assert_eq!(syn.len, 60);
    let rst = syn.reset();
    assert_eq!((rst.len, rst.tcp_flags, rst.src, rst.dport), (40, 0x14, syn.dst, syn.sport));
}

/// Source validation (issue 13, tests/common `rpf_cases`): node1 has
/// rp_filter 0 (or 1 or 2 on tunl0); the pod's SYN to node1's tunl0
/// address arrives on tunl0. With rp_filter 0, a source that is one of
/// node1's own addresses is a martian unless accept_local; with a custom
/// rule or local route the full check runs, where a local route back
/// drops (unless accept_local) and a blackhole one is no route, which
/// passes. With rp_filter 1 or 2 a local route back (lo's) goes on to the
/// device check with accept_local: 2 passes, 1 does not. The kernel agrees
/// with each (tests/kernel.rs
/// `source_validation_with_rp_filter_0_like_the_kernel`).
#[test]
fn source_validation_with_rp_filter_0() {
    for (tag, case, passes) in common::rpf_cases() {
        let s = Scratch::of("seed-ipip-remote", &format!("rpf-{tag}"));
        common::rpf_case(&s, &case);
        let t = trace(&s, common::RPF_POD, common::RPF_TO);
        let branches = t["branches"].as_array().unwrap();
        assert_eq!(branches.len(), 1, "{tag}");
        let b = &branches[0];
        let fwd = steps(b, "forward");
        let pre = "node1 PREROUTING raw PREROUTING #1".to_string();
        let input = "node1 INPUT filter INPUT #1".to_string();
        assert!(fwd.contains(&pre), "{tag}: node1 receives it on tunl0: {fwd:?}");
        assert_eq!(fwd.contains(&input), passes, "{tag}: {fwd:?}");
        let text = b.to_string();
        if !passes {
            let why = if case.blackhole_back {
                "the route back to 192.168.233.136 is Blackhole"
            } else if case.iif_rule.is_some() {
                "the route back to 192.168.233.136 leaves by `ens192`, not `tunl0`"
            } else if case.rp_filter == 1 && case.accept_local {
                "the route back to 192.168.233.136 leaves by `lo`, not `tunl0`"
            } else {
                "martian source 192.168.233.136: it is an address of this node"
            };
            assert!(text.contains(why), "{tag}: {text}");
        }
    }
}

/// The route back of a forwarded packet is looked up with input device
/// the forwarding route's (issue 13, tests/common `back_iif_case`): a rule
/// `iif tunl0` sending the client back by tunl0 makes node1's strict
/// rp_filter on ens192 drop the client's NodePort SYN, which node1
/// forwards out of tunl0; a rule `iif ens192`, the arrival device, does
/// not apply. The trace and the check (the encoding) say the same; the
/// kernel agrees (tests/kernel.rs `the_route_back_is_looked_up_like_the_kernel`).
#[test]
fn the_route_back_of_a_forwarded_packet_is_looked_up_from_its_way_out() {
    for (dev, dropped) in [("tunl0", true), ("ens192", false)] {
        let s = Scratch::of("seed-ipip-remote", &format!("back-iif-{dev}"));
        common::back_iif_case(&s, dev);
        let t = trace(&s, "client", "10.0.0.51:32220");
        let b = &t["branches"][0];
        let (code, out, err) = common::natpath(&["check", s.path(), "--invariant", "nodeport-reachable"]);
        if dropped {
            assert_eq!(b["outcome"], "dropped", "{dev}: {b}");
            assert_eq!(
                b["reason"],
                "dropped on node1 by routing: reverse path filter (rp_filter 1 on `ens192`): the route back to 10.0.0.53 leaves by `tunl0`, not `ens192`",
                "{dev}: {b}"
            );
            assert_eq!(code, 1, "{dev}: {out}{err}");
            assert!(out.contains("dropped on node1 by routing: reverse path filter"), "{dev}: {out}");
        } else {
            assert_eq!(b["outcome"], "delivered", "{dev}: {b}");
            assert_eq!(code, 0, "{dev}: {out}{err}");
        }
    }
}

/// `ip_forward` (issue 13): a packet that arrives with TTL 1 (or 0) and is
/// to be forwarded is not: the node answers with an ICMP time exceeded
/// (11/0), a packet of its own that
/// crosses its OUTPUT and POSTROUTING like any; with TTL 2 it is forwarded
/// with 1. The same SYN addressed to the node itself is delivered whatever
/// its TTL. The kernel's count of what a forward takes off is in
/// tests/kernel.rs `a_forwarded_packet_loses_one_ttl_per_node_like_the_kernel`.
#[test]
fn a_packet_that_would_run_out_of_ttl_is_answered_with_time_exceeded() {
    use natpath_model::node::{NodeEnd, NodeModel, NodeOptions, RefusedBy};
    use natpath_model::packet::{Hook, Packet};
    use natpath_model::ruleset::Proto;
    struct Take;
    impl natpath_model::traverse::Chooser for Take {
        fn choose(&mut self, p31: u32, _: &natpath_model::loc::Loc) -> bool {
            p31 > 0
        }
    }
    let s = Scratch::of("seed-ipip-remote", "ttl-exceeded");
    let snap = natpath_model::snapshot::load(std::path::Path::new(s.path())).unwrap();
    let node1 = snap.nodes.iter().find(|n| n.name == "node1").unwrap();
    let client = "10.0.0.53".parse().unwrap();
    // The NodePort SYN, DNATed to the pod on node2: forwarded.
    let syn = |ttl: u8| Packet { ttl, ..Packet::first(client, 40000, "10.0.0.51".parse().unwrap(), 32220, Proto::TCP) };
    for ttl in [0u8, 1] {
        let mut m = NodeModel::new(node1, NodeOptions::default());
        let p = m.receive(syn(ttl), "ens192", false, &mut Take);
        assert!(matches!(&p.end, NodeEnd::Rejected(why) if why.contains("TTL")), "TTL {ttl}: {:?}", p.end);
        assert!(p.hooks.contains(&Hook::Prerouting) && !p.hooks.contains(&Hook::Forward), "{:?}", p.hooks);
        let r = p.refused.clone().expect("the node answers");
        assert_eq!(r.by, RefusedBy::Hops);
        let answer = r.answer().expect("a SYN is answered");
        assert_eq!(answer.icmp, (11, 0), "time exceeded in transit");
        assert_eq!(answer.dst, client);
        let sent = m.send_refusal(&r, &mut Take).expect("the node sends it");
        match &sent.end {
            NodeEnd::Out { packet, dev, .. } => {
                assert_eq!(dev, "ens192");
                assert_eq!((packet.icmp, packet.dst), ((11, 0), client));
                assert_eq!(packet.src.to_string(), "10.0.0.51", "routing's source toward the client");
            }
            other => panic!("TTL {ttl}: the time exceeded goes out: {other:?}"),
        }
        assert!(sent.hooks.contains(&Hook::Output) && sent.hooks.contains(&Hook::Postrouting), "{:?}", sent.hooks);
    }
    let mut m = NodeModel::new(node1, NodeOptions::default());
    let p = m.receive(syn(2), "ens192", false, &mut Take);
    match &p.end {
        NodeEnd::Out { packet, dev, .. } => {
            assert_eq!(dev, "tunl0");
            assert_eq!(packet.ttl, 1, "one taken off");
        }
        other => panic!("TTL 2 is forwarded: {other:?}"),
    }
    // Delivered locally (the node's own address, no DNAT): no forward, no test.
    let own = Packet { ttl: 1, ..Packet::first(client, 40000, "10.0.0.51".parse().unwrap(), 22, Proto::TCP) };
    let p = NodeModel::new(node1, NodeOptions::default()).receive(own, "ens192", false, &mut Take);
    assert!(matches!(p.end, NodeEnd::Local(ref q) if q.ttl == 1), "{:?}", p.end);
}
