#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Laws of the executable model, checked with proptest: conntrack's reply
//! translation inverts the forward NAT; a chain that RETURNs everywhere
//! leaves a packet as it was; `-g` and `-j` differ exactly as the kernel
//! says; MARK's xmark arithmetic.

use natpath_model::conntrack::{Conn, Tuple};
use natpath_model::fib::Fib;
use natpath_model::netstate::Sysctl;
use natpath_model::packet::{Hook, Packet};
use natpath_model::parse::iptables;
use natpath_model::ruleset::{Proto, Ruleset, TableName};
use natpath_model::traverse::{self, Chooser, CtView, Env, IndexedTable, MatchState, Verdict};
use natpath_model::Loc;
use proptest::prelude::*;
use std::net::Ipv4Addr;

struct Always(bool);
impl Chooser for Always {
    fn choose(&mut self, _p31: u32, _loc: &Loc) -> bool {
        self.0
    }
}

#[track_caller]
fn ruleset(text: &str) -> Ruleset {
    match iptables::parse(text, "law", &iptables::Options::default()) {
        Ok(rs) => rs,
        Err(e) => panic!("test ruleset does not parse: {e}"),
    }
}

/// Run `table` at `hook` over `pkt`; returns the verdict and the rules hit
/// as `(chain, rule)`.
fn run(rs: &Ruleset, table: TableName, hook: Hook, pkt: &mut Packet) -> (Verdict, Vec<(String, Option<usize>)>) {
    let sysctl = Sysctl::default();
    let fib = Fib::new(&[], &[], &[], &sysctl);
    let t = rs.table(table).expect("table present");
    let idx = IndexedTable::new(t);
    let env =
        Env { fib: &fib, ipsets: &[], hook, in_iface: Some("eth0"), out_iface: Some("eth1"), local_origin: false };
    let mut ct = CtView { state: natpath_model::ruleset::CtStates::NEW, ..CtView::default() };
    let mut notrack = false;
    let mut hits = Vec::new();
    let v = traverse::run_table(
        &idx,
        pkt,
        &mut ct,
        &mut notrack,
        &env,
        &mut MatchState::default(),
        &mut Always(true),
        &mut hits,
    );
    (v, hits.into_iter().map(|h| (h.chain.to_string(), h.rule)).collect())
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    (any::<u32>(), any::<u32>(), 1u16.., 1u16.., prop_oneof![Just(Proto::TCP), Just(Proto::UDP)], any::<u32>())
        .prop_map(|(s, d, sp, dp, proto, mark)| {
            let mut p = Packet::first(Ipv4Addr::from(s), sp, Ipv4Addr::from(d), dp, proto);
            p.mark = mark;
            p
        })
}

proptest! {
    /// The reply, translated by the bindings of a DNAT and an SNAT, is the
    /// exact inverse of the original packet: the client sees the address it
    /// asked for, answering to its own address.
    #[test]
    fn reply_translation_inverts_forward_nat(p in arb_packet(), dnat in (any::<u32>(), 1u16..), snat in (any::<u32>(), 1u16..)) {
        let mut conn = Conn::new(&p);
        let mut fwd = p.clone();
        conn.set_dnat(Ipv4Addr::from(dnat.0), dnat.1);
        conn.apply_dst(&mut fwd, false);
        conn.set_snat(Ipv4Addr::from(snat.0), snat.1);
        conn.apply_src(&mut fwd, false);
        // The destination answers the packet it saw.
        let mut reply = fwd.answer();
        prop_assert_eq!(Tuple::of(&reply), conn.reply);
        conn.apply_dst(&mut reply, true);
        conn.apply_src(&mut reply, true);
        prop_assert_eq!(Tuple::of(&reply), Tuple::of(&p).inverse());
    }

    /// A chain whose every rule ends in RETURN leaves the packet unchanged
    /// and hands the decision to the policy.
    #[test]
    fn return_everywhere_changes_nothing(p in arb_packet(), n in 1usize..6) {
        let mut text = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:X - [0:0]\n-A FORWARD -j X\n");
        for i in 0..n {
            text.push_str(&format!("-A X -p tcp --dport {} -j RETURN\n", i + 1));
        }
        text.push_str("-A X -j RETURN\nCOMMIT\n");
        let rs = ruleset(&text);
        let mut q = p.clone();
        let (v, hits) = run(&rs, TableName::Filter, Hook::Forward, &mut q);
        prop_assert_eq!(&q, &p);
        prop_assert_eq!(v, Verdict::Drop { chain: "FORWARD".into(), rule: None });
        prop_assert_eq!(hits.last().cloned(), Some(("FORWARD".to_string(), None)));
    }

    /// MARK --set-xmark V/M computes (mark & !M) ^ V, whatever the spelling.
    #[test]
    fn xmark_arithmetic(p in arb_packet(), v in any::<u32>(), m in any::<u32>()) {
        let text = format!("*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A FORWARD -j MARK --set-xmark {v:#x}/{m:#x}\n-A FORWARD -j MARK --or-mark 0x4000\nCOMMIT\n");
        let rs = ruleset(&text);
        let mut q = p.clone();
        run(&rs, TableName::Mangle, Hook::Forward, &mut q);
        prop_assert_eq!(q.mark, ((p.mark & !m) ^ v) | 0x4000);
    }
}

/// `-j` returns to the next rule of the caller; `-g` returns to the
/// caller's caller (ipt_do_table keeps no return point for a goto).
#[test]
fn goto_and_jump_differ_as_the_kernel_says() {
    let base = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n\
                -A FORWARD -j A\n-A FORWARD -j MARK --set-xmark 0x1/0x1\n";
    let tail = "-A A -j MARK --set-xmark 0x2/0x2\n-A B -j RETURN\nCOMMIT\n";
    let p = Packet::first(Ipv4Addr::new(10, 0, 0, 1), 1000, Ipv4Addr::new(10, 0, 0, 2), 80, Proto::TCP);

    let jump = ruleset(&format!("{base}-A A -j B\n{tail}"));
    let mut q = p.clone();
    let (_, hits) = run(&jump, TableName::Filter, Hook::Forward, &mut q);
    // After B returns, A goes on and sets 0x2; then FORWARD sets 0x1.
    assert_eq!(q.mark, 0x3, "hits: {hits:?}");

    let goto = ruleset(&format!("{base}-A A -g B\n{tail}"));
    let mut q = p.clone();
    let (_, hits) = run(&goto, TableName::Filter, Hook::Forward, &mut q);
    // B's RETURN goes back to FORWARD, skipping the rest of A.
    assert_eq!(q.mark, 0x1, "hits: {hits:?}");
    assert!(hits.contains(&("B".to_string(), Some(1))));
}

/// A RETURN in a chain entered by goto from the base chain applies the
/// base chain's policy.
#[test]
fn goto_from_base_then_return_is_the_policy() {
    let rs = ruleset(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:B - [0:0]\n\
         -A FORWARD -g B\n-A FORWARD -j ACCEPT\n-A B -j RETURN\nCOMMIT\n",
    );
    let mut q = Packet::first(Ipv4Addr::new(10, 0, 0, 1), 1000, Ipv4Addr::new(10, 0, 0, 2), 80, Proto::TCP);
    let (v, _) = run(&rs, TableName::Filter, Hook::Forward, &mut q);
    assert_eq!(v, Verdict::Drop { chain: "FORWARD".into(), rule: None });
}

fn svc100() -> &'static Ruleset {
    static RS: std::sync::OnceLock<Ruleset> = std::sync::OnceLock::new();
    RS.get_or_init(load_svc100)
}

fn load_svc100() -> Ruleset {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/kube-proxy-reference/svc100.node.iptables-save");
    let text = std::fs::read_to_string(path).expect("reference dump");
    match iptables::parse(&text, path, &iptables::Options::default()) {
        Ok(rs) => rs,
        Err(e) => panic!("{e}"),
    }
}

/// Destinations and ports that kube-proxy's rules name, so that random
/// packets hit services, NodePorts and endpoints rather than noise.
fn svc100_targets(rs: &Ruleset) -> Vec<(Ipv4Addr, u16)> {
    let mut v = Vec::new();
    for t in &rs.tables {
        for c in &t.chains {
            for r in &c.rules {
                let port = r.matches.iter().find_map(|m| match m {
                    natpath_model::ruleset::Match::Tcp(t) => t.dport.map(|d| d.value.lo),
                    natpath_model::ruleset::Match::Udp(u) => u.dport.map(|d| d.value.lo),
                    _ => None,
                });
                if let (Some(d), Some(p)) = (r.dst, port) {
                    v.push((d.value.addr(), p));
                }
                if let (None, Some(p)) = (r.dst, port) {
                    v.push((Ipv4Addr::new(10, 0, 0, 51), p));
                }
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// The dispatch index over long chains changes nothing: same verdict,
    /// same rules hit in the same order, same packet, as a linear scan.
    #[test]
    fn dispatch_index_equals_linear_scan(pick in any::<prop::sample::Index>(), src in any::<u32>(), sport in 1u16.., mark in prop_oneof![Just(0u32), Just(0x4000u32), any::<u32>()], udp in any::<bool>(), noise in any::<bool>()) {
        let rs = svc100();
        let targets = svc100_targets(rs);
        let (dst, dport) = if noise { (Ipv4Addr::from(src.rotate_left(7)), sport) } else { *pick.get(&targets) };
        let proto = if udp { Proto::UDP } else { Proto::TCP };
        let sysctl = Sysctl::default();
        let fib = Fib::new(&[], &[], &[], &sysctl);
        for table in [TableName::Nat, TableName::Filter] {
            let t = rs.table(table).expect("table");
            for hook in [Hook::Prerouting, Hook::Forward, Hook::Output, Hook::Postrouting, Hook::Input] {
                let run = |idx: &IndexedTable<'static>| {
                    let mut p = Packet::first(Ipv4Addr::from(src), sport, dst, dport, proto);
                    p.mark = mark;
                    let env = Env { fib: &fib, ipsets: &[], hook, in_iface: Some("eth0"), out_iface: Some("eth0"), local_origin: false };
                    let mut ct = CtView { state: natpath_model::ruleset::CtStates::NEW, ..CtView::default() };
                    let mut hits = Vec::new();
                    let v = traverse::run_table(idx, &mut p, &mut ct, &mut false, &env, &mut MatchState::default(), &mut Always(true), &mut hits);
                    (v, hits, p)
                };
                prop_assert_eq!(run(&IndexedTable::new(t)), run(&IndexedTable::linear(t)));
            }
        }
    }
}
