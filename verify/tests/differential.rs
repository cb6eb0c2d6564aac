#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Differential tests: the SMT encoding against the executable model, packet
//! by packet, on every node of every corpus snapshot.
//!
//! For each node the encoding is built once, over a symbolic packet and a
//! symbolic input device. proptest then draws packets aimed at what matters
//! (node addresses, NodePorts, pod and cluster IPs, service ports, every
//! device, every protocol the rules name, plus noise) and a seed for the
//! model's random draws. For each packet the model runs
//! `NodeModel::receive`; then, with the packet and every free choice of the
//! encoding fixed to what the model did:
//! 1. the model's outcome satisfies the encoding (sat), and
//! 2. the encoding admits no other outcome (unsat).
//!
//! The outcome compared is the end (delivered locally, sent out of which
//! device towards which next hop, dropped, rejected, unknown), the packet as
//! it leaves or is delivered (addresses, ports, mark), whether DNAT and SNAT
//! happened, the hooks crossed, and the marks after nat PREROUTING and
//! entering nat POSTROUTING. A failure shrinks to a minimal packet.
//!
//! The cluster walk is checked the same way at the walk level: for every
//! corpus probe and generated ones (hosts to NodePorts, pods to cluster IPs),
//! the outcomes the encoding's walk and reply admit are exactly the model's
//! branches of `walk::trace` (who receives it, as what, and what the sender
//! sees of the answer).

mod common;
use natpath_model::intent::Intent;
use natpath_model::loc::Loc;
use natpath_model::node::{NodeEnd, NodeModel, NodeOptions, Passage as MPassage};
use natpath_model::packet::{Hook, Packet};
use natpath_model::ruleset::{Match, Proto, StatisticMode, TableName};
use natpath_model::snapshot::{self, Snapshot};
use natpath_model::traverse::Chooser;
use natpath_verify::encode::conntrack::CtCtx;
use natpath_verify::encode::node::{self, Passage};
use natpath_verify::encode::packet::{addr, bv16, bv32, bv8, DevTerm, Flow, State, SymPacket, DEV_BITS};
use natpath_verify::encode::{and2, not, ChoiceKind, EncodeOptions, Encoder, Trail};
use natpath_verify::solver::{Answer, Session};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use z3::ast::{Bool, BV};

/// Cases per node (two nodes per snapshot, eight snapshots: 16,000 packets).
const CASES: u32 = 1000;

fn load(name: &str) -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(name);
    snapshot::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The model's random draws: from a seed, recorded by rule.
struct Draws {
    state: u64,
    made: Vec<((String, u32), bool)>,
}

impl Chooser for Draws {
    fn choose(&mut self, p31: u32, loc: &Loc) -> bool {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let d = (self.state & 0x7fff_ffff) < u64::from(p31);
        self.made.push(((loc.file.to_string(), loc.line), d));
        d
    }
}

/// One node's encoding, built once.
struct NodeCase<'s> {
    n: usize,
    pkt: SymPacket,
    dev: DevTerm,
    passage: Passage,
    trail: Trail,
    session: Session,
    devs: Vec<String>,
    dev_values: Vec<u16>,
    snap: &'s Snapshot,
}

fn build<'s>(enc: &Encoder<'s>, snap: &'s Snapshot, n: usize) -> NodeCase<'s> {
    let ne = enc.node(n).unwrap();
    let pkt = SymPacket::named(&format!("diff{n}"));
    let dev = DevTerm::symbolic(BV::new_const(format!("diff{n}.dev"), DEV_BITS));
    let mut trail = Trail::default();
    let flow = Flow { cond: Bool::from_bool(true), state: State::arriving(pkt.clone()) };
    let passage = node::receive(enc, n, &mut trail, flow, &dev, &CtCtx::Fresh);
    let session = Session::new(Some(Duration::from_secs(20)));
    for d in &trail.defs {
        session.assert(d);
    }
    let devs: Vec<String> = ne.devs.clone();
    let dev_values = devs.iter().map(|d| ne.dev_value(d)).collect();
    NodeCase { n, pkt, dev, passage, trail, session, devs, dev_values, snap }
}

/// The encoding's outcome equals the model's.
fn same_outcome(c: &NodeCase<'_>, m: &MPassage) -> Bool {
    let p = &c.passage;
    let f = Bool::from_bool(false);
    let local = p.local.as_ref().map(|l| l.cond.clone()).unwrap_or_else(|| f.clone());
    let out = p.out().map(|o| o.flow.cond.clone()).unwrap_or_else(|| f.clone());
    let dropped = p.dropped_cond();
    let rejected = p.rejected_cond();
    let unknown = p.unknown_cond();
    let fields = |s: &SymPacket, q: &Packet| {
        Bool::and(&[
            s.src.eq(addr(q.src)),
            s.sport.eq(bv16(q.sport)),
            s.dst.eq(addr(q.dst)),
            s.dport.eq(bv16(q.dport)),
            s.mark.eq(bv32(q.mark)),
            s.ttl.eq(bv8(q.ttl)),
        ])
    };
    let mut c1 = vec![];
    match &m.end {
        NodeEnd::Local(q) => {
            let st = p.local.as_ref().map(|l| fields(&l.state.pkt, q)).unwrap_or_else(|| f.clone());
            c1.push(and2(&local, &st));
        }
        NodeEnd::Out { packet, dev, nexthop } => match p.out() {
            Some(o) => {
                let v = c.devs.iter().position(|d| d == dev).map(|i| c.dev_values[i]).unwrap_or(u16::MAX);
                c1.push(Bool::and(&[
                    out.clone(),
                    o.oif.is(v),
                    o.nexthop.eq(addr(*nexthop)),
                    fields(&o.flow.state.pkt, packet),
                ]));
            }
            None => c1.push(f.clone()),
        },
        NodeEnd::Dropped(_) => c1.push(dropped.clone()),
        NodeEnd::Rejected(_) => c1.push(rejected.clone()),
        NodeEnd::Unknown(_) => c1.push(unknown.clone()),
    }
    let delivered = matches!(m.end, NodeEnd::Local(_) | NodeEnd::Out { .. });
    if delivered {
        c1.push(if m.dnat.is_some() { p.dnat.clone() } else { not(&p.dnat) });
        c1.push(if m.snat.is_some() { p.snat.clone() } else { not(&p.snat) });
        c1.push(if m.hooks.contains(&Hook::Input) { p.crossed_input.clone() } else { not(&p.crossed_input) });
        c1.push(if m.hooks.contains(&Hook::Forward) { p.crossed_forward.clone() } else { not(&p.crossed_forward) });
        match (m.mark_after_nat_prerouting, &p.after_nat_pre()) {
            (Some(v), Some(fl)) => c1.push(and2(&fl.cond, &fl.state.pkt.mark.eq(bv32(v)))),
            (Some(_), None) => c1.push(f.clone()),
            (None, Some(fl)) => c1.push(not(&fl.cond)),
            (None, None) => {}
        }
        match (m.mark_at_nat_postrouting, &p.at_nat_post()) {
            (Some(v), Some(fl)) => c1.push(and2(&fl.cond, &fl.state.pkt.mark.eq(bv32(v)))),
            (Some(_), None) => c1.push(f.clone()),
            (None, Some(fl)) => c1.push(not(&fl.cond)),
            (None, None) => {}
        }
    }
    Bool::and(&c1)
}

/// Fix the encoding's free choices to what the model did (its draws, empty
/// `recent` lists, fresh `nth` counters, full token buckets).
fn fixed_choices(c: &NodeCase<'_>, draws: &[((String, u32), bool)]) -> Vec<Bool> {
    let mut by_loc: HashMap<(String, u32), bool> = HashMap::new();
    for (loc, d) in draws {
        by_loc.entry(loc.clone()).or_insert(*d);
    }
    let node = &c.snap.nodes[c.n];
    let rule_of = |t: TableName, chain: &str, i: usize| {
        node.ruleset.table(t).and_then(|t| t.chain(chain)).and_then(|ch| ch.rules.get(i - 1))
    };
    let mut v = Vec::new();
    for ch in &c.trail.choices {
        let loc = (ch.rule.loc.file.to_string(), ch.rule.loc.line);
        let val = match &ch.kind {
            ChoiceKind::Random { .. } => match by_loc.get(&loc) {
                Some(d) => *d,
                None => continue,
            },
            ChoiceKind::Nth => {
                let r = rule_of(ch.rule.table, &ch.rule.chain, ch.rule.rule);
                let hit = r.and_then(|r| {
                    r.matches.iter().find_map(|m| match m {
                        Match::Statistic { mode: StatisticMode::Nth { every, packet }, .. } => Some(every == packet),
                        _ => None,
                    })
                });
                hit.unwrap_or(false)
            }
            ChoiceKind::Recent { .. } => false,
            ChoiceKind::RateOk => true,
            ChoiceKind::Connlimit => {
                let r = rule_of(ch.rule.table, &ch.rule.chain, ch.rule.rule);
                r.and_then(|r| {
                    r.matches.iter().find_map(|m| match m {
                        Match::Connlimit(c) => Some(if c.above { 1 > c.count } else { 1 <= c.count }),
                        _ => None,
                    })
                })
                .unwrap_or(true)
            }
            ChoiceKind::OtherDevice => false,
        };
        v.push(if val { ch.var.clone() } else { not(&ch.var) });
    }
    v
}

/// What a case draws.
#[derive(Debug, Clone)]
struct Drawn {
    dev: usize,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    flags: u8,
    icmp: (u8, u8),
    ttl: u8,
    seed: u64,
}

/// Addresses, ports and protocols worth hitting on this snapshot.
struct Targets {
    addrs: Vec<u32>,
    ports: Vec<u16>,
    protos: Vec<u8>,
}

fn targets(snap: &Snapshot) -> Targets {
    let mut addrs: Vec<u32> = Vec::new();
    let mut ports: Vec<u16> = vec![80, 53, 443, 6443, 4789, 1, 65535];
    let mut protos: Vec<u8> = vec![6, 17, 1, 4, 132];
    for n in &snap.nodes {
        for i in &n.interfaces {
            for a in &i.addrs {
                addrs.push(u32::from(a.addr.addr()));
                if let Some(b) = a.broadcast {
                    addrs.push(u32::from(b));
                }
            }
        }
        for r in &n.routes {
            addrs.push(u32::from(r.dst.network()));
            addrs.push(u32::from(r.dst.broadcast()).wrapping_sub(1));
            for h in &r.nexthops {
                addrs.extend(h.via.map(u32::from));
            }
        }
        let intent = Intent::read(&n.ruleset, &n.ipsets, &n.interfaces);
        for s in &intent.services {
            ports.extend(s.node_port);
            if let Some((a, p)) = s.cluster_ip {
                addrs.push(u32::from(a));
                ports.push(p);
            }
            for e in s.endpoints.iter().chain(s.local_endpoints.iter()) {
                addrs.push(u32::from(e.address));
                ports.push(e.port);
            }
            protos.push(s.proto.0);
        }
        for p in &intent.ip_pools {
            addrs.push(u32::from(p.network()).wrapping_add(77));
        }
    }
    for p in &snap.cluster.pods {
        addrs.push(u32::from(p.address));
    }
    for h in &snap.cluster.hosts {
        addrs.push(u32::from(h.address.addr()));
        addrs.extend(h.gateway.map(u32::from));
    }
    addrs.push(u32::from(Ipv4Addr::new(8, 8, 8, 8)));
    addrs.push(u32::from(Ipv4Addr::new(127, 0, 0, 1)));
    addrs.sort_unstable();
    addrs.dedup();
    ports.sort_unstable();
    ports.dedup();
    protos.sort_unstable();
    protos.dedup();
    Targets { addrs, ports, protos }
}

fn strategy(t: &Targets, ndevs: usize) -> impl Strategy<Value = Drawn> {
    let a = proptest::sample::select(t.addrs.clone());
    let addr_s = prop_oneof![4 => a.clone(), 1 => any::<u32>()];
    let port_s = prop_oneof![4 => proptest::sample::select(t.ports.clone()), 1 => any::<u16>()];
    let proto_s = prop_oneof![4 => proptest::sample::select(t.protos.clone()), 1 => any::<u8>()];
    (
        0..ndevs,
        addr_s.clone(),
        addr_s,
        1u16..,
        port_s,
        proto_s,
        prop_oneof![3 => Just(natpath_model::packet::tcp::SYN), 1 => any::<u8>()],
        (any::<u8>(), any::<u8>()),
        // Mostly a client's, sometimes one that runs out on a forward.
        prop_oneof![3 => Just(64u8), 1 => 0u8..=2, 1 => any::<u8>()],
        any::<u64>(),
    )
        .prop_map(|(dev, src, dst, sport, dport, proto, flags, icmp, ttl, seed)| Drawn {
            dev,
            src,
            dst,
            sport,
            dport,
            proto,
            flags,
            icmp,
            ttl,
            seed: seed | 1,
        })
}

fn check_case(c: &mut NodeCase<'_>, d: &Drawn) -> Result<(), TestCaseError> {
    let node = &c.snap.nodes[c.n];
    let iface = c.devs[d.dev].clone();
    let packet = Packet {
        src: Ipv4Addr::from(d.src),
        dst: Ipv4Addr::from(d.dst),
        proto: Proto(d.proto),
        sport: d.sport,
        dport: d.dport,
        tcp_flags: d.flags,
        icmp: d.icmp,
        len: 60,
        ttl: d.ttl,
        mark: 0,
        inner: None,
    };
    let mut model = NodeModel::new(node, NodeOptions::default());
    let mut draws = Draws { state: d.seed, made: Vec::new() };
    let m = model.receive(packet.clone(), &iface, false, &mut draws);
    let inputs = vec![
        c.pkt.src.eq(bv32(d.src)),
        c.pkt.dst.eq(bv32(d.dst)),
        c.pkt.sport.eq(bv16(d.sport)),
        c.pkt.dport.eq(bv16(d.dport)),
        c.pkt.proto.eq(bv8(d.proto)),
        c.pkt.tcp_flags.eq(bv8(d.flags)),
        c.pkt.icmp_type.eq(bv8(d.icmp.0)),
        c.pkt.icmp_code.eq(bv8(d.icmp.1)),
        c.pkt.len.eq(bv16(60)),
        c.pkt.ttl.eq(bv8(d.ttl)),
        c.dev.is(c.dev_values[d.dev]),
    ];
    let fixed = fixed_choices(c, &draws.made);
    let same = same_outcome(c, &m);
    let what = || {
        format!("node {} iface {iface} packet {packet} flags {:#x}: model says {:?} dnat {:?} snat {:?} hooks {:?} marks {:?}/{:?}", node.name, d.flags, m.end, m.dnat, m.snat, m.hooks, m.mark_after_nat_prerouting, m.mark_at_nat_postrouting)
    };
    let mut base: Vec<&Bool> = inputs.iter().collect();
    base.extend(fixed.iter());
    // 1. The model's outcome satisfies the encoding.
    let mut q1 = base.clone();
    q1.push(&same);
    match c.session.check_with(&q1) {
        Answer::Sat(_) => {}
        Answer::Unsat => {
            return Err(TestCaseError::fail(format!("the encoding excludes the model's outcome: {}", what())))
        }
        Answer::Unknown(w) => return Err(TestCaseError::fail(format!("solver unknown ({w}): {}", what()))),
    }
    // 2. The encoding, with the packet and the draws fixed, admits nothing else.
    let other = not(&same);
    let mut q2 = base;
    q2.push(&other);
    match c.session.check_with(&q2) {
        Answer::Unsat => Ok(()),
        Answer::Sat(w) => {
            let p = &c.passage;
            let ends = [
                ("local", p.local.as_ref().map(|l| l.cond.clone())),
                ("out", p.out().map(|o| o.flow.cond.clone())),
                ("dropped", Some(p.dropped_cond())),
                ("rejected", Some(p.rejected_cond())),
                ("unknown", Some(p.unknown_cond())),
            ];
            let e: Vec<&str> = ends
                .iter()
                .filter(|(_, c)| c.as_ref().is_some_and(|c| w.bool(c) == Some(true)))
                .map(|(n, _)| *n)
                .collect();
            let reasons: Vec<String> = p
                .dropped
                .iter()
                .chain(p.rejected.iter())
                .chain(p.unknown.iter())
                .filter(|x| w.bool(&x.cond) == Some(true))
                .map(|x| x.reason.clone())
                .collect();
            let out = p.out().map(|o| {
                format!(
                    "out dev {:?} nh {:?} src {:?}:{:?} dst {:?}:{:?} mark {:?}",
                    w.u64(&o.oif.bv),
                    w.u64(&o.nexthop).map(|x| Ipv4Addr::from(x as u32)),
                    w.u64(&o.flow.state.pkt.src).map(|x| Ipv4Addr::from(x as u32)),
                    w.u64(&o.flow.state.pkt.sport),
                    w.u64(&o.flow.state.pkt.dst).map(|x| Ipv4Addr::from(x as u32)),
                    w.u64(&o.flow.state.pkt.dport),
                    w.u64(&o.flow.state.pkt.mark)
                )
            });
            let marks = (
                p.after_nat_pre().as_ref().map(|f| (w.bool(&f.cond), w.u64(&f.state.pkt.mark))),
                p.at_nat_post().as_ref().map(|f| (w.bool(&f.cond), w.u64(&f.state.pkt.mark))),
                w.bool(&p.dnat),
                w.bool(&p.snat),
                w.bool(&p.crossed_input),
                w.bool(&p.crossed_forward),
            );
            Err(TestCaseError::fail(format!(
                "the encoding admits another outcome: {}\n  encoding: ends {e:?} {reasons:?} {out:?} marks/nat/hooks {marks:?}",
                what()
            )))
        }
        Answer::Unknown(w) => Err(TestCaseError::fail(format!("solver unknown ({w}): {}", what()))),
    }
}

fn differential(name: &str) {
    differential_snap(name, load(name));
}

fn differential_snap(name: &str, snap: Snapshot) {
    let enc = Encoder::new(&snap, EncodeOptions::default());
    let t = targets(&snap);
    let mut total = 0;
    for n in 0..snap.nodes.len() {
        let c = std::cell::RefCell::new(build(&enc, &snap, n));
        let strat = strategy(&t, c.borrow().devs.len());
        let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
        let r = runner.run(&strat, |d| check_case(&mut c.borrow_mut(), &d));
        if let Err(e) = r {
            panic!("{name} node {}: {e}", snap.nodes[n].name);
        }
        total += CASES;
    }
    println!("{name}: {total} packets agree");
}

macro_rules! differential_test {
    ($f:ident, $snap:expr) => {
        #[test]
        fn $f() {
            differential($snap);
        }
    };
}

differential_test!(seed_ipip_local, "seed-ipip-local");
differential_test!(seed_ipip_remote, "seed-ipip-remote");
differential_test!(multi_endpoint, "multi-endpoint");
differential_test!(etp_local_with_endpoint, "etp-local-with-endpoint");
differential_test!(etp_local_no_endpoint, "etp-local-no-endpoint");
differential_test!(session_affinity, "session-affinity");
differential_test!(calico_vxlan, "calico-vxlan");
differential_test!(broken_no_mark_masq, "broken-no-mark-masq");

/// Per-device forwarding (issue 13): node1 forwards what comes in by tunl0
/// but not by ens192; node2 forwards what comes in by ens192 and its pod's
/// veth but not by tunl0 (the input device's own `forwarding`, as
/// `ip_route_input_slow` reads it). A failed route then sends no ICMP
/// error from those devices either.
fn per_device_forwarding(node: &str, file: &str, text: &str) -> String {
    match (node, file) {
        ("node1", "sysctl") => {
            format!("{text}net.ipv4.conf.ens192.forwarding = 0\nnet.ipv4.conf.tunl0.forwarding = 1\n")
        }
        ("node2", "sysctl") => format!("{text}net.ipv4.conf.tunl0.forwarding = 0\n"),
        _ => text.to_string(),
    }
}

#[test]
fn per_device_forwarding_agrees() {
    let dir = std::env::temp_dir().join(format!("natpath-differential-{}-fwd-node", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::copy_dir(&common::corpus().join("seed-ipip-remote"), &dir);
    for node in ["node1", "node2"] {
        let p = dir.join("nodes").join(node).join("sysctl");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, per_device_forwarding(node, "sysctl", &text)).unwrap();
    }
    let snap = snapshot::load(&dir).unwrap();
    assert!(!snap.nodes[0].sysctl.forwarding("ens192") && snap.nodes[0].sysctl.forwarding("tunl0"));
    differential_snap("seed-ipip-remote (per-device forwarding)", snap);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `seed-ipip-remote` with each node's files `sysctl`, `ip-rule` and
/// `ip-route` edited by `edit(node, file, text)`, packet by packet.
fn differential_edited(tag: &str, edit: fn(&str, &str, &str) -> String) {
    let dir = std::env::temp_dir().join(format!("natpath-differential-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::copy_dir(&common::corpus().join("seed-ipip-remote"), &dir);
    for node in ["node1", "node2"] {
        for file in ["sysctl", "ip-rule", "ip-route"] {
            let p = dir.join("nodes").join(node).join(file);
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let new = edit(node, file, &text);
            if new != text {
                std::fs::write(&p, new).unwrap();
            }
        }
    }
    let snap = snapshot::load(&dir).unwrap();
    differential_snap(&format!("seed-ipip-remote ({tag})"), snap);
    let _ = std::fs::remove_dir_all(&dir);
}

/// rp_filter 0 everywhere (issue 13, "never a wrong holds"): a source
/// that is one of the receiving node's addresses is a martian even then,
/// unless accept_local; with custom ip rules or custom local routes the
/// full lookup decides (a blackhole route back drops, no device check).
fn rpf_off(node: &str, file: &str, text: &str) -> String {
    match file {
        "sysctl" => text.replace("rp_filter = 1", "rp_filter = 0"),
        _ => {
            let _ = node;
            text.to_string()
        }
    }
}

#[test]
fn rp_filter_off_own_address_agrees() {
    differential_edited("rpf-off", rpf_off);
}

#[test]
fn rp_filter_off_accept_local_agrees() {
    differential_edited("rpf-off-accept-local", |node, file, text| {
        let t = rpf_off(node, file, text);
        match (node, file) {
            ("node1", "sysctl") => format!("{t}net.ipv4.conf.ens192.accept_local = 1\n"),
            ("node2", "sysctl") => format!("{t}net.ipv4.conf.all.accept_local = 1\n"),
            _ => t,
        }
    });
}

#[test]
fn rp_filter_off_full_check_agrees() {
    differential_edited("rpf-off-full", |node, file, text| {
        let t = rpf_off(node, file, text);
        match (node, file) {
            // A custom rule; node2 a custom local route instead.
            ("node1", "ip-rule") => t.replace("32766:", "100:\tfrom all fwmark 0x1 lookup main\n32766:"),
            ("node1", "ip-route") | ("node2", "ip-route") => {
                let mut t = format!("{t}blackhole 10.9.0.0/16 proto static\nunreachable 10.10.0.0/16 proto static\n");
                if node == "node2" {
                    t.push_str("local 10.77.0.1 dev lo table local scope host\n");
                }
                t
            }
            ("node2", "sysctl") => format!("{t}net.ipv4.conf.tunl0.accept_local = 1\n"),
            _ => t,
        }
    });
}

/// rp_filter 1 and 2 with accept_local: a local route back goes on to the
/// device check; per device modes mixed, with src_valid_mark on one device
/// (node2) and a rule on `iif` (node1), so each lookup is per device.
#[test]
fn rp_filter_on_accept_local_agrees() {
    differential_edited("rpf-on-accept-local", |node, file, text| {
        match (node, file) {
        ("node1", "sysctl") => format!(
            "{}net.ipv4.conf.tunl0.rp_filter = 2\nnet.ipv4.conf.ens192.rp_filter = 1\nnet.ipv4.conf.all.accept_local = 1\n",
            text.replace("rp_filter = 1", "rp_filter = 0").replace("net.ipv4.conf.tunl0.rp_filter = 0\n", "")
        ),
        ("node1", "ip-rule") => text.replace("32766:", "100:\tfrom all iif tunl0 lookup main\n32766:"),
        ("node1", "ip-route") => format!("{text}blackhole 10.9.0.0/16 proto static\n"),
        ("node2", "sysctl") => format!(
            "{}net.ipv4.conf.tunl0.rp_filter = 2\nnet.ipv4.conf.tunl0.accept_local = 1\nnet.ipv4.conf.tunl0.src_valid_mark = 1\n",
            text.replace("net.ipv4.conf.tunl0.rp_filter = 1\n", "")
        ),
        _ => text.to_string(),
    }
    });
}

/// The route back is looked up with input device `lo` (local delivery) or
/// the forwarding route's device, and a `local` route of another table than
/// `local` delivers after source validation (issue 13): node1 with a rule
/// `iif tunl0` to a table that routes the client back by tunl0, a rule to a
/// table holding `local 10.77.0.1`, and node2's tunl0 address routed back
/// by ens192. The model drops a SYN from node2's tunl0 address to 10.77.0.1
/// arriving on tunl0 (strict rp_filter) and delivers the pod's; the
/// encoding agrees with the model on random packets.
#[test]
fn back_lookups_and_local_routes_of_other_tables_agree() {
    let dir = std::env::temp_dir().join(format!("natpath-differential-{}-back-lookups", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::copy_dir(&common::corpus().join("seed-ipip-remote"), &dir);
    let node1 = dir.join("nodes/node1");
    let rules = std::fs::read_to_string(node1.join("ip-rule")).unwrap();
    std::fs::write(
        node1.join("ip-rule"),
        rules.replace("32766:", "100:\tfrom all iif tunl0 lookup 100\n101:\tfrom all lookup 101\n32766:"),
    )
    .unwrap();
    let routes = std::fs::read_to_string(node1.join("ip-route")).unwrap();
    std::fs::write(
        node1.join("ip-route"),
        format!(
            "{routes}10.0.0.53 via 10.0.0.52 dev tunl0 table 100 proto static onlink\n\
             local 10.77.0.1 dev lo table 101 proto static scope host\n\
             192.168.233.128 via 10.0.0.52 dev ens192 proto static\n"
        ),
    )
    .unwrap();
    let snap = snapshot::load(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let n1 = snap.nodes.iter().find(|n| n.name == "node1").unwrap();
    for (src, dropped) in [("192.168.233.128", true), ("192.168.233.136", false)] {
        let syn = Packet::first(src.parse().unwrap(), 40000, "10.77.0.1".parse().unwrap(), 8080, Proto::TCP);
        let mut model = NodeModel::new(n1, NodeOptions::default());
        let m = model.receive(syn, "tunl0", false, &mut Draws { state: 1, made: Vec::new() });
        match (&m.end, dropped) {
            (NodeEnd::Dropped(why), true) => assert!(why.contains("leaves by `ens192`, not `tunl0`"), "{why}"),
            (NodeEnd::Local(_), false) => {}
            (end, _) => panic!("from {src}: {end:?}"),
        }
    }
    differential_snap("seed-ipip-remote (back lookups, local route of table 101)", snap);
}

// ---------------------------------------------------------------------------
// Walks: the encoding's cluster walk (first packet and answer) against the
// model's `walk::trace`, on every probe of the corpus and on generated ones
// (each host to every NodePort of every node, each pod to every cluster IP).
// With the probe fixed and every draw left free, the set of outcomes the
// encoding admits must be exactly the set of the model's branches: each
// branch's outcome is admitted (sat) and nothing outside them is (unsat).

use natpath_model::router::{Forward, Target};
use natpath_model::trace::{Branch, Outcome as TOutcome, Probe};
use natpath_model::walk::{self as mwalk, TraceOptions};
use natpath_verify::encode::walk::{self, EndKind, Reached, Start, WalkEnd, WalkOut};

fn seen_is(st: &SymPacket, src: &str, dst: &str) -> Bool {
    let parse = |s: &str| -> Option<(Ipv4Addr, u16)> {
        let (a, p) = s.rsplit_once(':')?;
        Some((a.parse().ok()?, p.parse().ok()?))
    };
    match (parse(src), parse(dst)) {
        (Some((sa, sp)), Some((da, dp))) => {
            Bool::and(&[st.src.eq(addr(sa)), st.sport.eq(bv16(sp)), st.dst.eq(addr(da)), st.dport.eq(bv16(dp))])
        }
        _ => Bool::from_bool(false),
    }
}

fn reached_named(snap: &Snapshot, e: &WalkEnd, kind: &str, name: &str) -> bool {
    match e.kind {
        EndKind::Reached(Reached::Pod(i)) => kind == "pod" && snap.cluster.pods.get(i).is_some_and(|p| p.name == name),
        EndKind::Reached(Reached::Host(i)) => {
            kind == "host" && snap.cluster.hosts.get(i).is_some_and(|h| h.name == name)
        }
        EndKind::Reached(Reached::Node(i)) => kind == "node" && snap.nodes.get(i).is_some_and(|n| n.name == name),
        _ => false,
    }
}

/// The encoding's condition for the outcome of one model branch.
fn branch_outcome(snap: &Snapshot, fwd: &WalkOut, replies: &[(usize, WalkOut)], from: &str, b: &Branch) -> Bool {
    let f = Bool::from_bool(false);
    let any_end = |ends: &[WalkEnd], pick: &dyn Fn(&WalkEnd) -> bool| {
        natpath_verify::encode::any(&ends.iter().filter(|e| pick(e)).map(|e| e.cond.clone()).collect::<Vec<_>>())
    };
    let Some(d) = &b.delivered_to else {
        return match b.outcome {
            TOutcome::Dropped => any_end(&fwd.ends, &|e| e.kind == EndKind::Dropped),
            TOutcome::Rejected => any_end(&fwd.ends, &|e| e.kind == EndKind::Rejected),
            TOutcome::Loop => any_end(&fwd.ends, &|e| e.kind == EndKind::Loop),
            _ => any_end(&fwd.ends, &|e| matches!(e.kind, EndKind::Unknown | EndKind::Elsewhere { .. })),
        };
    };
    let Some(seen) = &b.seen_by_destination else { return f };
    let mut alts = Vec::new();
    for e in fwd.ends.iter().filter(|e| reached_named(snap, e, &d.kind, &d.name)) {
        let here = and2(&e.cond, &seen_is(&e.state.pkt, &seen.src, &seen.dst));
        let reply = match (&b.reply, &e.kind) {
            (None, _) => Bool::from_bool(true),
            (Some(r), EndKind::Reached(Reached::Pod(pi))) => {
                let pi = *pi;
                // The answers' ends, of every end that reached the pod.
                let back: Vec<WalkEnd> =
                    replies.iter().filter(|(p, _)| *p == pi).flat_map(|(_, w)| w.ends.iter().cloned()).collect();
                if back.is_empty() {
                    return f;
                }
                match &r.seen_by_client {
                    Some(s) => natpath_verify::encode::any(
                        &back
                            .iter()
                            .filter(|x| ["host", "pod", "node"].iter().any(|k| reached_named(snap, x, k, from)))
                            .map(|x| and2(&x.cond, &seen_is(&x.state.pkt, &s.src, &s.dst)))
                            .collect::<Vec<_>>(),
                    ),
                    None => match r.outcome {
                        TOutcome::Dropped => any_end(&back, &|x| x.kind == EndKind::Dropped),
                        TOutcome::Rejected => any_end(&back, &|x| x.kind == EndKind::Rejected),
                        TOutcome::Loop => any_end(&back, &|x| x.kind == EndKind::Loop),
                        TOutcome::Unknown => {
                            any_end(&back, &|x| matches!(x.kind, EndKind::Unknown | EndKind::Elsewhere { .. }))
                        }
                        _ => any_end(&back, &|x| {
                            matches!(x.kind, EndKind::Reached(_))
                                && !["host", "pod", "node"].iter().any(|k| reached_named(snap, x, k, from))
                        }),
                    },
                }
            }
            // Replies from hosts and nodes are not walked by the encoding's tests.
            (Some(_), _) => Bool::from_bool(true),
        };
        alts.push(and2(&here, &reply));
    }
    natpath_verify::encode::any(&alts)
}

fn walks(name: &str) {
    walks_at(name, &Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(name));
}

fn walks_at(name: &str, dir: &Path) {
    let snap = snapshot::load(dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    let enc = Encoder::new(&snap, EncodeOptions::default());
    let edge = natpath_model::edge::Edge::new(&snap);
    let probes = common::sender_probes(&snap, dir);
    let mut checked = 0;
    for (from, dst, dport, proto) in probes {
        let sport = 40000u16;
        let probe = Probe { from: from.clone(), to: format!("{dst}:{dport}"), dst, dport, proto, sport, via: None };
        let Ok(trace) = mwalk::trace(&snap, &probe, &TraceOptions::default()) else { continue };
        // Where the probe enters the cluster, as the model's walk has it.
        let (src, start_node, start_dev) = if let Some(h) = snap.cluster.hosts.iter().find(|h| h.name == from) {
            let nexthop = if h.address.contains(&dst) { Some(dst) } else { h.gateway };
            // A node owns the next hop, or a router forwards to one.
            let routed = nexthop.filter(|nh| *nh != dst).and_then(|nh| edge.router_at(nh)).map(|r| r.forward(dst));
            let m = match (nexthop.and_then(|nh| snap.lan_owner(nh)), routed) {
                (Some(m), _) => m,
                (None, Some(Forward::To(Target::Node(m)))) => m,
                _ => continue,
            };
            (h.address.addr(), m, Some(snap.nodes[m].lan.clone()))
        } else if let Some(p) = snap.cluster.pods.iter().find(|p| p.name == from) {
            let Some(m) = snap.nodes.iter().position(|x| x.name == p.node) else { continue };
            (p.address, m, Some(p.iface.clone()))
        } else if let Some(m) = snap.nodes.iter().position(|x| x.name == from) {
            // A node sends it: its routing chooses the source, as in the model.
            (Ipv4Addr::UNSPECIFIED, m, None)
        } else {
            continue;
        };
        let mut pkt = SymPacket::concrete(&Packet::first(src, sport, dst, dport, proto));
        pkt.len = bv16(60);
        let mut trail = Trail::default();
        let flow = Flow { cond: Bool::from_bool(true), state: State::arriving(pkt) };
        let start = match &start_dev {
            Some(d) => Start::Arrive { node: start_node, dev: enc.node(start_node).unwrap().dev_value(d), flow },
            None => Start::Send { node: start_node, flow },
        };
        let fwd = walk::walk(&enc, &mut trail, start, &|_| CtCtx::Fresh, false);
        let mut replies = Vec::new();
        for (pi, pod) in snap.cluster.pods.iter().enumerate() {
            let ends: Vec<&WalkEnd> = fwd.reached(Reached::Pod(pi)).collect();
            if ends.is_empty() {
                continue;
            }
            let pn = snap.nodes.iter().position(|x| x.name == pod.node).unwrap();
            let dev = enc.node(pn).unwrap().dev_value(&pod.iface);
            let listens = |p: &SymPacket| {
                if pod.listen.is_empty() {
                    return Bool::from_bool(true);
                }
                natpath_verify::encode::any(
                    &pod.listen
                        .iter()
                        .filter_map(|l| l.split_once('/'))
                        .filter_map(|(pr, po)| {
                            let pr = match pr {
                                "tcp" => 6u8,
                                "udp" => 17,
                                "sctp" => 132,
                                _ => return None,
                            };
                            Some(and2(&p.proto.eq(bv8(pr)), &p.dport.eq(bv16(po.parse().ok()?))))
                        })
                        .collect::<Vec<_>>(),
                )
            };
            // Each end's answer meets the connections its own path opened
            // (a second pass through a node included), as the invariants walk it.
            for e in ends {
                let flow = Flow {
                    cond: and2(&e.cond, &listens(&e.state.pkt)),
                    state: State::arriving(walk::answer(&e.state.pkt)),
                };
                let back =
                    walk::walk(&enc, &mut trail, Start::Arrive { node: pn, dev, flow }, &|m| e.replies_on(m), true);
                replies.push((pi, back));
            }
        }
        let mut s = Session::new(Some(Duration::from_secs(30)));
        for d in &trail.defs {
            s.assert(d);
        }
        let outs: Vec<Bool> = trace.branches.iter().map(|b| branch_outcome(&snap, &fwd, &replies, &from, b)).collect();
        for (b, o) in trace.branches.iter().zip(&outs) {
            match s.check_with(&[o]) {
                Answer::Sat(_) => {}
                a => panic!(
                    "{name}: probe {from} -> {dst}:{dport}: the encoding does not admit the model's branch ({a:?}): {:?} {:?} {:?} reply {:?} ({:?})",
                    b.outcome, b.delivered_to, b.seen_by_destination, b.reply, b.reason
                ),
            }
        }
        let none = not(&natpath_verify::encode::any(&outs));
        match s.check_with(&[&none]) {
            Answer::Unsat => {}
            Answer::Sat(w) => {
                let ends: Vec<String> = fwd
                    .ends
                    .iter()
                    .filter(|e| w.bool(&e.cond) == Some(true))
                    .map(|e| {
                        format!(
                            "{:?}: {} (seen {:?}:{:?} -> {:?}:{:?})",
                            e.kind,
                            e.reason,
                            w.u64(&e.state.pkt.src),
                            w.u64(&e.state.pkt.sport),
                            w.u64(&e.state.pkt.dst),
                            w.u64(&e.state.pkt.dport)
                        )
                    })
                    .collect();
                let back: Vec<String> = replies
                    .iter()
                    .flat_map(|(_, r)| r.ends.iter())
                    .filter(|e| w.bool(&e.cond) == Some(true))
                    .map(|e| {
                        format!(
                            "{:?}: {} (seen {:?}:{:?} -> {:?}:{:?})",
                            e.kind,
                            e.reason,
                            w.u64(&e.state.pkt.src),
                            w.u64(&e.state.pkt.sport),
                            w.u64(&e.state.pkt.dst),
                            w.u64(&e.state.pkt.dport)
                        )
                    })
                    .collect();
                let model: Vec<String> = trace
                    .branches
                    .iter()
                    .map(|b| {
                        format!(
                            "{:?} {:?} {:?} reply {:?}",
                            b.outcome,
                            b.delivered_to.as_ref().map(|d| &d.name),
                            b.seen_by_destination,
                            b.reply.as_ref().map(|r| (r.outcome, &r.seen_by_client))
                        )
                    })
                    .collect();
                panic!("{name}: probe {from} -> {dst}:{dport}: the encoding admits an outcome no model branch has: forward {ends:?} reply {back:?}; model: {model:?}");
            }
            a => panic!("{name}: probe {from} -> {dst}:{dport}: {a:?}"),
        }
        checked += 1;
    }
    println!("{name}: {checked} probes agree (forward walk and reply)");
    assert!(checked > 0, "{name}: no probe could be checked");
}

macro_rules! walk_test {
    ($f:ident, $snap:expr) => {
        #[test]
        fn $f() {
            walks($snap);
        }
    };
}

walk_test!(walks_seed_ipip_local, "seed-ipip-local");
walk_test!(walks_seed_ipip_remote, "seed-ipip-remote");
walk_test!(walks_multi_endpoint, "multi-endpoint");
walk_test!(walks_etp_local_with_endpoint, "etp-local-with-endpoint");
walk_test!(walks_etp_local_no_endpoint, "etp-local-no-endpoint");
walk_test!(walks_session_affinity, "session-affinity");
walk_test!(walks_calico_vxlan, "calico-vxlan");
walk_test!(walks_broken_no_mark_masq, "broken-no-mark-masq");
walk_test!(walks_kube_proxy_cidr, "kube-proxy-cidr");
walk_test!(walks_kube_proxy_1_28, "kube-proxy-1.28");
walk_test!(walks_kube_proxy_1_28_lb, "kube-proxy-1.28-lb");

// The edge of the snapshot: copies of corpus snapshots whose packets a
// node hands to its LAN gateway, which the snapshot does not describe. A
// packet into the overlay's pod addresses is lost there (dropped) in both
// walks; any other is unknown in both.

/// Walk-check a copy of corpus snapshot `name` after `edit` (node, file,
/// text) -> text on each of its files.
fn walks_edited(name: &str, tag: &str, edit: impl Fn(&str, &str, &str) -> String) {
    walks_edited_toml(name, tag, edit, "");
}

/// [`walks_edited`], with `toml` appended to cluster.toml.
fn walks_edited_toml(name: &str, tag: &str, edit: impl Fn(&str, &str, &str) -> String, toml: &str) {
    let dir = std::env::temp_dir().join(format!("natpath-differential-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::copy_dir(&common::corpus().join(name), &dir);
    for n in std::fs::read_dir(dir.join("nodes")).unwrap() {
        let n = n.unwrap();
        let node = n.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(n.path()).unwrap() {
            let f = f.unwrap();
            let file = f.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(f.path()).unwrap();
            let new = edit(&node, &file, &text);
            if new != text {
                std::fs::write(f.path(), new).unwrap();
            }
        }
    }
    if !toml.is_empty() {
        let p = dir.join("cluster.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("{text}\n{toml}")).unwrap();
    }
    walks_at(&format!("{name} ({tag})"), &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

fn without_line(text: &str, containing: &str) -> String {
    text.lines().filter(|l| !l.contains(containing)).map(|l| format!("{l}\n")).collect()
}

#[test]
fn walks_pod_bound_to_the_gateway_ipip() {
    walks_edited("seed-ipip-remote", "ipip-fwd", |node, file, text| match (node, file) {
        ("node1", "ip-route") => without_line(text, "192.168.233.128/26 via 10.0.0.52 dev tunl0"),
        _ => text.to_string(),
    });
}

#[test]
fn walks_pod_bound_to_the_gateway_vxlan() {
    walks_edited("calico-vxlan", "vxlan-fwd", |node, file, text| match (node, file) {
        ("node1", "ip-route") => without_line(text, "192.168.233.128/26 via 192.168.233.128 dev vxlan.calico"),
        _ => text.to_string(),
    });
}

#[test]
fn walks_pod_bound_reply_to_the_gateway() {
    walks_edited("seed-ipip-remote", "ipip-reply", |node, file, text| match (node, file) {
        ("node2", "ip-route") => without_line(text, "192.168.231.64/26 via 10.0.0.51 dev tunl0"),
        ("node2", "sysctl") => text.replace("rp_filter = 1", "rp_filter = 0"),
        _ => text.to_string(),
    });
}

#[test]
fn walks_outside_reply_to_the_gateway() {
    walks_edited("broken-no-mark-masq", "outside-reply", |node, file, text| match (node, file) {
        ("node2", "ip-route") => text.replacen('\n', "\n10.0.0.53 via 10.0.0.1 dev ens192\n", 1),
        ("node2", "sysctl") => text.replace("rp_filter = 1", "rp_filter = 0"),
        _ => text.to_string(),
    });
}

// Routers of cluster.toml (`[[router]]`): both walks ask
// `natpath_model::router` where the router forwards a packet.

#[test]
fn walks_cluster_ips_through_a_router() {
    walks_edited_toml(
        "seed-ipip-remote",
        "router-cluster-ip",
        |_, _, text| text.to_string(),
        "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.0/12 via node1\"]\n",
    );
}

#[test]
fn walks_a_cloud_route_table() {
    walks_edited_toml(
        "kube-proxy-cidr",
        "router-table",
        |node, file, text| match (node, file) {
            ("node1", "ip-route") => without_line(text, "10.244.2.0/24 via 10.0.0.52"),
            ("node2", "ip-route") => without_line(text, "10.244.1.0/24 via 10.0.0.51"),
            _ => text.to_string(),
        },
        "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.244.1.0/24 via node1\", \"10.244.2.0/24 via 10.0.0.52\", \"10.96.0.0/12 via node2\"]\n",
    );
}

#[test]
fn walks_a_reply_the_router_delivers_on_its_segment() {
    walks_edited_toml(
        "broken-no-mark-masq",
        "router-reply",
        |node, file, text| match (node, file) {
            ("node2", "ip-route") => text.replacen('\n', "\n10.0.0.53 via 10.0.0.1 dev ens192\n", 1),
            ("node2", "sysctl") => text.replace("rp_filter = 1", "rp_filter = 0"),
            _ => text.to_string(),
        },
        "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\n",
    );
}

#[test]
fn walks_pod_bound_to_a_router_without_the_route() {
    walks_edited_toml(
        "seed-ipip-remote",
        "router-lost",
        |node, file, text| match (node, file) {
            ("node1", "ip-route") => without_line(text, "192.168.233.128/26 via 10.0.0.52 dev tunl0"),
            _ => text.to_string(),
        },
        "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.0/12 via node1\"]\n",
    );
}

/// A node's packet marked in mangle OUTPUT is routed again there, one
/// marked in filter OUTPUT is not (tests/common `fwmark_reroute_case`,
/// refereed by the kernel in kernel.rs).
#[test]
fn walks_a_mark_set_in_mangle_or_filter_output() {
    for table in ["mangle", "filter"] {
        let s = common::Scratch::of("seed-ipip-remote", &format!("walks-reroute-{table}"));
        common::fwmark_reroute_case(&s, table);
        walks_at(&format!("seed-ipip-remote (reroute-{table})"), &s.0);
    }
}

#[test]
fn walks_per_device_forwarding() {
    walks_edited("seed-ipip-remote", "fwd-walk", per_device_forwarding);
}

// Router loops (issue 13): both walks follow a packet a router hands back
// to a node it crossed, and both end it at the same `loop`.

#[test]
fn walks_a_pod_range_routed_back_to_its_sender() {
    walks_edited_toml(
        "kube-proxy-cidr",
        "router-back",
        |node, file, text| match (node, file) {
            ("node1", "ip-route") => without_line(text, "10.244.2.0/24 via 10.0.0.52"),
            _ => text.to_string(),
        },
        "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.244.2.0/24 via node1\"]\n",
    );
}

// ---------------------------------------------------------------------------
// A passage followed only toward one address after DNAT (`Detail::dnat_to`,
// what hairpin-masquerade asks): the flows DNAT sends to the Service's other
// endpoints are left out, the ones to that address stay.

/// Whether some way through node `n` of `snap` (delivered locally or sent
/// out) can carry a TCP packet sent to `service` to `to` after nat
/// PREROUTING, in `detail`.
fn reaches_after_dnat(snap: &Snapshot, n: usize, detail: node::Detail, service: (Ipv4Addr, u16), to: Ipv4Addr) -> bool {
    let enc = Encoder::new(snap, EncodeOptions::default());
    let pkt = SymPacket::named("dnat_to");
    let dev = DevTerm::symbolic(BV::new_const("dnat_to.dev", DEV_BITS));
    let mut trail = Trail::default();
    let flow = Flow { cond: Bool::from_bool(true), state: State::arriving(pkt.clone()) };
    let p = node::receive_with(&enc, n, &mut trail, flow, &dev, &CtCtx::Fresh, detail);
    let mut ways: Vec<Bool> = p.outs.iter().map(|o| and2(&o.flow.cond, &o.flow.state.pkt.dst.eq(addr(to)))).collect();
    ways.extend(p.local.iter().map(|l| and2(&l.cond, &l.state.pkt.dst.eq(addr(to)))));
    let mut session = Session::new(Some(Duration::from_secs(20)));
    for d in &trail.defs {
        session.assert(d);
    }
    let any = Bool::or(&ways.iter().collect::<Vec<_>>());
    let sent = Bool::and(&[pkt.proto.eq(bv8(6)), pkt.dst.eq(addr(service.0)), pkt.dport.eq(bv16(service.1))]);
    match session.check_with(&[&sent, &any]) {
        Answer::Sat(_) => true,
        Answer::Unsat => false,
        Answer::Unknown(w) => panic!("solver unknown: {w}"),
    }
}

#[test]
fn a_passage_toward_one_endpoint_leaves_the_others_out() {
    let snap = load("multi-endpoint");
    let n = snap.nodes.iter().position(|x| x.name == "node1").unwrap();
    let here: Ipv4Addr = "192.168.231.70".parse().unwrap();
    let there: Ipv4Addr = "192.168.233.136".parse().unwrap();
    let node = &snap.nodes[n];
    let intent = Intent::read(&node.ruleset, &node.ipsets, &node.interfaces);
    let nginx = intent.services.iter().find(|s| s.name.starts_with("default/nginx")).unwrap();
    let cip = nginx.cluster_ip.unwrap();
    let toward = node::Detail { dnat_to: Some(here), ..node::Detail::EXACT };
    // Whole, node1 sends default/nginx's cluster IP on to both endpoints.
    assert!(reaches_after_dnat(&snap, n, node::Detail::EXACT, cip, here));
    assert!(reaches_after_dnat(&snap, n, node::Detail::EXACT, cip, there));
    // Toward node1's own endpoint, the other one's flows are not encoded.
    assert!(reaches_after_dnat(&snap, n, toward, cip, here));
    assert!(!reaches_after_dnat(&snap, n, toward, cip, there));
}

#[test]
fn walks_a_route_to_a_node_that_does_not_serve_the_address() {
    walks_edited_toml(
        "kube-proxy-cidr",
        "router-not-served",
        |node, file, text| match (node, file) {
            ("node2", "iptables-save") => without_line(text, "-d 10.96.0.20/32"),
            _ => text.to_string(),
        },
        "[[router]]\nname = \"gw\"\naddress = \"10.0.0.1/24\"\nroutes = [\"10.96.0.0/12 via node2\"]\n",
    );
}
