//! The non-iptables parsers on real dumps: every `ip addr`, `ip route`,
//! `ip rule`, ipset and sysctl file of the public corpus and of the seed
//! snapshots parses (one table row per file, with a few exact facts pinned),
//! every file in a format natpath does not read is detected and named, bad
//! input gives exact located messages, and no mutation of a corpus line
//! makes a parser panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

use natpath_model::netstate::{
    table_id, IfAddr, Interface, IpRule, IpSet, Route, RouteType, RuleAction, Scope, SetType, Sysctl, TABLE_DEFAULT,
    TABLE_LOCAL, TABLE_MAIN,
};
use natpath_model::parse::detect::{detect, DumpKind};
use natpath_model::parse::{ipaddr, iproute, iprule, ipset, sysctl};
use natpath_model::ParseErrors;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The repository's corpus (`corpus/`).
fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

fn read(rel: &str) -> String {
    let p = corpus().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Parse `rel` with `parse` (errors are labelled with `rel`), or fail with the errors.
#[track_caller]
fn ok<T>(parse: fn(&str, &str) -> Result<T, ParseErrors>, rel: &str) -> T {
    match parse(&read(rel), rel) {
        Ok(v) => v,
        Err(e) => panic!("{rel} does not parse:\n{e}"),
    }
}

#[track_caller]
fn err<T: std::fmt::Debug>(r: Result<T, ParseErrors>) -> String {
    match r {
        Ok(v) => panic!("expected an error, parsed {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

fn names(ifs: &[Interface]) -> Vec<&str> {
    ifs.iter().map(|i| i.name.as_str()).collect()
}

fn iface<'a>(ifs: &'a [Interface], name: &str) -> &'a Interface {
    ifs.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no interface {name}"))
}

fn route<'a>(rs: &'a [Route], dst: &str) -> &'a Route {
    rs.iter().find(|r| r.dst == net(dst)).unwrap_or_else(|| panic!("no route to {dst}"))
}

/// One test per file: `name: parser "path" => |parsed| checks;`. The paths
/// are collected in the constant named first, for the coverage test.
macro_rules! corpus {
    ($all:ident; $($test:ident: $parser:ident $path:literal => $check:expr;)*) => {
        $(
            #[test]
            fn $test() {
                let v = ok($parser::parse, $path);
                ($check)(&v);
            }
        )*
        const $all: &[&str] = &[$($path),*];
    };
}

corpus! { ADDR_FILES;
    addr_seed_local_node1: ipaddr "seed-ipip-local/nodes/node1/ip-addr" => |v: &Vec<Interface>| {
        assert_eq!(names(v), ["lo", "ens192", "tunl0", "cali583c2cee4e2"]);
        let t = iface(v, "tunl0");
        assert_eq!((t.index, t.link.as_deref(), t.link_type.as_deref(), t.mtu), (3, Some("NONE"), Some("ipip"), Some(1440)));
        assert_eq!(t.flags, ["NOARP", "UP", "LOWER_UP"]);
        assert_eq!(t.addrs[0].addr, net("192.168.231.64/32"));
        assert_eq!(t.addrs[0].scope, Scope::Global);
        let c = iface(v, "cali583c2cee4e2");
        assert_eq!(c.link.as_deref(), Some("if2"));
        assert_eq!(c.link_netns.as_deref(), Some("cni-b51a7f4d-4c2e-9d1a-2b7f3e6a5c10"));
        assert!(c.addrs.is_empty());
        assert_eq!(v[0].addrs[0].scope, Scope::Host);
        assert_eq!(v[1].addrs[0], IfAddr { addr: net("10.0.0.51/24"), peer: None, broadcast: None, scope: Scope::Global, secondary: false, noprefixroute: false, label: None, loc: Default::default() });
    };
    addr_seed_local_node2: ipaddr "seed-ipip-local/nodes/node2/ip-addr" => |v: &Vec<Interface>| {
        assert_eq!(names(v), ["lo", "ens192", "tunl0"]);
        assert_eq!(iface(v, "tunl0").addrs[0].addr, net("192.168.233.128/32"));
    };
    addr_seed_remote_node1: ipaddr "seed-ipip-remote/nodes/node1/ip-addr" => |v: &Vec<Interface>| {
        assert_eq!(names(v), ["lo", "ens192", "tunl0"]);
    };
    addr_seed_remote_node2: ipaddr "seed-ipip-remote/nodes/node2/ip-addr" => |v: &Vec<Interface>| {
        assert_eq!(names(v), ["lo", "ens192", "tunl0", "calib992f6c0b80"]);
        assert_eq!(iface(v, "calib992f6c0b80").link_addr.as_deref(), Some("ee:ee:ee:ee:ee:ee"));
    };
    addr_eks: ipaddr "public/blog-eks-vpccni/node1_ip-addr.txt" => |v: &Vec<Interface>| {
        assert_eq!(names(v), ["lo", "ens5", "eni14227b50c6b", "ens6"]);
        let a = &iface(v, "ens5").addrs[0];
        assert_eq!((a.addr, a.broadcast), (net("192.168.6.121/22"), Some(ip("192.168.7.255"))));
        assert_eq!(iface(v, "eni14227b50c6b").link.as_deref(), Some("if3"));
        assert!(iface(v, "eni14227b50c6b").addrs.is_empty(), "inet6 only");
    };
    addr_openlab: ipaddr "public/research-net-network/openlab-stettenstr_ip-4-addr.txt" => |v: &Vec<Interface>| {
        assert_eq!(names(v), ["lo", "eth0", "eth4", "eth5", "eth6", "br0", "br1", "br2", "tap0", "tap20"]);
        assert_eq!(iface(v, "eth5").addrs[1].label.as_deref(), Some("eth5:0"));
        let tap = &iface(v, "tap0").addrs[0];
        assert_eq!((tap.addr, tap.peer), (net("10.11.64.69/30"), Some(net("10.11.64.70/30"))));
        assert_eq!(iface(v, "tap20").index, 102);
        assert!(v.iter().all(|i| i.link_type.is_none()), "`ip -4 addr` has no link lines");
    };
    addr_sqrl: ipaddr "public/research-net-network/sqrl-shorewall_2015-08_ip-addr.txt" => |v: &Vec<Interface>| {
        assert_eq!(v.len(), 16);
        assert_eq!(names(v)[..4], ["lo", "loben", "lua", "lup"]);
        let p = iface(v, "vpriv");
        assert_eq!((p.link_type.as_deref(), p.link_addr.as_deref()), (Some("none"), None));
        assert_eq!((p.addrs[0].addr, p.addrs[0].peer), (net("10.13.37.200/32"), Some(net("255.255.255.0/32"))));
        assert!(iface(v, "vocb-nic").addrs.is_empty());
        assert_eq!(iface(v, "wg").index, 20);
    };
    addr_synology: ipaddr "public/research-net-network/synology-ds414_2016-07_ip-addr.txt" => |v: &Vec<Interface>| {
        assert_eq!(names(v), ["lo", "eth0", "eth1", "sit0"]);
        let e = iface(v, "eth1");
        assert_eq!((e.flags[0].as_str(), e.state.as_deref(), e.is_up()), ("NO-CARRIER", Some("DOWN"), true));
        assert_eq!(iface(v, "sit0").link_type.as_deref(), Some("sit"));
        assert_eq!(iface(v, "eth0").link_addr.as_deref(), Some("XX:XX:XX:XX:XX:XX"));
    };
    addr_tum: ipaddr "public/research-net-network/tum-i8-chair_ip-addr-2016-06-27.txt" => |v: &Vec<Interface>| {
        assert_eq!(v.len(), 27);
        assert_eq!(names(v)[..5], ["lo", "eth0", "eth1", "eth1.96", "eth1.108"]);
        let e = iface(v, "eth1.1011");
        assert_eq!(e.link.as_deref(), Some("eth1"));
        assert_eq!(e.addrs.iter().filter(|a| a.secondary).count(), 2);
        assert_eq!(e.addrs.len(), 3);
        assert_eq!(v.iter().map(|i| i.addrs.len()).sum::<usize>(), 42);
    };
    addr_ugent: ipaddr "public/research-net-network/ugent_ip-addr.txt" => |v: &Vec<Interface>| {
        assert_eq!(names(v), ["lo", "eth0", "eth1", "eth2", "virbr0"]);
        assert_eq!((iface(v, "virbr0").index, iface(v, "eth0").state.as_deref()), (6, None));
    };
}

/// The one `ip addr` file that does not parse: its author replaced eth1's
/// address with a placeholder, and guessing it would change which address
/// MASQUERADE picks.
#[test]
fn addr_home_user_placeholder_is_refused() {
    let rel = "public/research-net-network/home-user_ip-addr.txt";
    assert_eq!(
        err(ipaddr::parse(&read(rel), rel)),
        "public/research-net-network/home-user_ip-addr.txt:6:10: expected an IPv4 address with prefix length after `inet`, found `[PUBLIC`"
    );
}

corpus! { ROUTE_FILES;
    route_seed_local_node1: iproute "seed-ipip-local/nodes/node1/ip-route" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 11);
        let r = route(v, "192.168.233.128/26");
        assert_eq!((r.kind, r.table, r.proto.as_deref(), r.metric), (RouteType::Unicast, TABLE_MAIN, Some("bird"), 0));
        assert_eq!(r.nexthops.len(), 1);
        assert_eq!((r.nexthops[0].via, r.nexthops[0].dev.as_deref(), r.nexthops[0].onlink), (Some(ip("10.0.0.52")), Some("tunl0"), true));
        let b = route(v, "192.168.231.64/26");
        assert_eq!((b.kind, b.nexthops.len()), (RouteType::Blackhole, 0));
        let p = route(v, "192.168.231.70/32");
        assert_eq!((p.scope, p.nexthops[0].dev.as_deref()), (Some(Scope::Link), Some("cali583c2cee4e2")));
        let l = v.iter().find(|r| r.kind == RouteType::Local && r.dst == net("10.0.0.51/32")).unwrap();
        assert_eq!((l.table, l.scope, l.src), (TABLE_LOCAL, Some(Scope::Host), Some(ip("10.0.0.51"))));
        assert_eq!(v.iter().filter(|r| r.table == TABLE_LOCAL).count(), 6);
        assert_eq!(route(v, "0.0.0.0/0").nexthops[0].via, Some(ip("10.0.0.1")));
    };
    route_seed_local_node2: iproute "seed-ipip-local/nodes/node2/ip-route" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 10);
        assert_eq!(route(v, "192.168.231.64/26").nexthops[0].via, Some(ip("10.0.0.51")));
    };
    route_seed_remote_node1: iproute "seed-ipip-remote/nodes/node1/ip-route" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 10);
    };
    route_seed_remote_node2: iproute "seed-ipip-remote/nodes/node2/ip-route" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 11);
        assert_eq!(route(v, "192.168.233.136/32").nexthops[0].dev.as_deref(), Some("calib992f6c0b80"));
    };
    route_eks: iproute "public/blog-eks-vpccni/node1_ip-route.txt" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 5);
        let d = route(v, "0.0.0.0/0");
        assert_eq!((d.proto.as_deref(), d.src, d.metric), (Some("dhcp"), Some(ip("192.168.6.121")), 512));
    };
    route_flannel: iproute "public/blog-flannel-kubeproxy/node-ctr_ip-route_after-flannel.txt" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 7);
        let f = route(v, "10.244.1.0/24");
        assert_eq!((f.nexthops[0].via, f.nexthops[0].dev.as_deref(), f.nexthops[0].onlink), (Some(ip("10.244.1.0")), Some("flannel.1"), true));
    };
    route_weave_old_style: iproute "public/gh-bossjones-kubeadm-weave/master_ip-route_2018-11-30.txt" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 4);
        let d = route(v, "172.17.0.0/16");
        assert_eq!((d.proto.as_deref(), d.scope, d.src), (Some("kernel"), Some(Scope::Link), Some(ip("172.17.0.1"))));
        assert_eq!(d.extra, [("linkdown".to_string(), String::new())]);
    };
    route_calico_bird2: iproute "public/notes-calico-ipip-routes/k8s-node1_ip-route_calico-ipip_bird2.txt" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 10);
        assert_eq!(v.iter().filter(|r| r.nexthops.first().and_then(|h| h.dev.as_deref()) == Some("tunl0")).count(), 2);
        assert_eq!(route(v, "10.122.36.64/26").kind, RouteType::Blackhole);
    };
    route_calico_annotated: iproute "public/notes-calico-ipip-routes/worker3-c1_ip-route_calico-ipip.txt" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 8);
        assert_eq!(route(v, "10.244.92.128/26").nexthops[0].via, Some(ip("192.168.3.126")), "the `# ...` annotation is a comment");
    };
    route_openlab: iproute "public/research-net-network/openlab-stettenstr_ip-route.txt" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 53);
        let defaults: Vec<u32> = v.iter().filter(|r| r.dst.prefix_len() == 0).map(|r| r.metric).collect();
        assert_eq!(defaults, [0, 2, 3]);
    };
    route_sqrl: iproute "public/research-net-network/sqrl-shorewall_routing-2016.txt" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 13);
        assert_eq!(route(v, "0.0.0.0/0").metric, 1024);
        assert_eq!(route(v, "10.13.37.0/24").nexthops[0].via, Some(ip("255.255.255.0")));
    };
    route_synology: iproute "public/research-net-network/synology-ds414_2016-07_ip-route.txt" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 2);
        assert_eq!(route(v, "0.0.0.0/0").src, Some(ip("192.168.178.37")));
    };
    route_tum: iproute "public/research-net-network/tum-i8-chair_ip-route-2016-06-27.txt" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 27);
        assert_eq!(route(v, "131.159.14.0/23").kind, RouteType::Blackhole);
    };
    route_tum_table500: iproute "public/research-net-network/tum-i8-chair_ip-route-table500-2016-06-27.txt" => |v: &Vec<Route>| {
        assert_eq!(v.len(), 11);
        assert_eq!(v.iter().filter(|r| r.kind == RouteType::Throw).count(), 8);
        assert_eq!(route(v, "188.95.232.56/29").scope, Some(Scope::Link));
    };
}

corpus! { RULE_FILES;
    rule_seed_local_node1: iprule "seed-ipip-local/nodes/node1/ip-rule" => |v: &Vec<IpRule>| {
        let got: Vec<(u32, RuleAction)> = v.iter().map(|r| (r.priority, r.action.clone())).collect();
        assert_eq!(got, [(0, RuleAction::Lookup(TABLE_LOCAL)), (32766, RuleAction::Lookup(TABLE_MAIN)), (32767, RuleAction::Lookup(TABLE_DEFAULT))]);
        assert!(v.iter().all(|r| r.from.is_none() && r.fwmark.is_none()));
    };
    rule_seed_local_node2: iprule "seed-ipip-local/nodes/node2/ip-rule" => |v: &Vec<IpRule>| assert_eq!(v.len(), 3);
    rule_seed_remote_node1: iprule "seed-ipip-remote/nodes/node1/ip-rule" => |v: &Vec<IpRule>| assert_eq!(v.len(), 3);
    rule_seed_remote_node2: iprule "seed-ipip-remote/nodes/node2/ip-rule" => |v: &Vec<IpRule>| assert_eq!(v.len(), 3);
    rule_openlab: iprule "public/research-net-network/openlab-stettenstr_ip-rule.txt" => |v: &Vec<IpRule>| {
        assert_eq!(v.len(), 6);
        assert_eq!((v[1].priority, v[1].fwmark, v[1].action.clone()), (32763, Some((3, u32::MAX)), RuleAction::Lookup(table_id("FREIFUNK").unwrap())));
        assert_ne!(table_id("FREIFUNK"), table_id("KABEL"));
    };
    rule_tum: iprule "public/research-net-network/tum-i8-chair_ip-rule-2016-06-27.txt" => |v: &Vec<IpRule>| {
        assert_eq!(v.len(), 9);
        assert_eq!((v[1].priority, v[1].from, v[1].action.clone()), (32760, Some(net("185.86.232.0/22")), RuleAction::Lookup(500)));
    };
}

corpus! { IPSET_FILES;
    ipset_seed_local_node1: ipset "seed-ipip-local/nodes/node1/ipset-save" => |v: &Vec<IpSet>| {
        let n: Vec<&str> = v.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(n, ["cali40all-ipam-pools", "cali40all-hosts-net", "cali40masq-ipam-pools"]);
        let h = &v[1];
        assert_eq!((h.kind, h.inet), (SetType::HashNet, true));
        let e: Vec<_> = h.entries.iter().map(|e| e.net).collect();
        assert_eq!(e, [Some(net("10.0.0.52/32")), Some(net("10.0.0.51/32"))]);
        assert_eq!(h.options[0..2], [("family".to_string(), "inet".to_string()), ("hashsize".to_string(), "1024".to_string())]);
        assert_eq!(v[0].entries[0].net, Some(net("192.168.0.0/16")));
    };
    ipset_seed_local_node2: ipset "seed-ipip-local/nodes/node2/ipset-save" => |v: &Vec<IpSet>| assert_eq!(v.len(), 3);
    ipset_seed_remote_node1: ipset "seed-ipip-remote/nodes/node1/ipset-save" => |v: &Vec<IpSet>| assert_eq!(v.len(), 3);
    ipset_seed_remote_node2: ipset "seed-ipip-remote/nodes/node2/ipset-save" => |v: &Vec<IpSet>| assert_eq!(v.len(), 3);
    ipset_minikube_list: ipset "public/blog-k8s-networking-demystified-calico/minikube_ipset-list.txt" => |v: &Vec<IpSet>| {
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].name.as_str(), v[0].kind), ("cali40s:LrVD8vMIGQDyv8Y7sPFB1Ge", SetType::HashNet));
        assert_eq!(v[0].entries[0].net, Some(net("10.88.0.27/32")));
        assert_eq!(v[0].options.len(), 3);
    };
}

corpus! { SYSCTL_FILES;
    sysctl_seed_local_node1: sysctl "seed-ipip-local/nodes/node1/sysctl" => |s: &Sysctl| {
        assert_eq!(s.values.len(), 10);
        assert_eq!((s.rp_filter("cali583c2cee4e2"), s.ip_forward(), s.route_localnet("ens192")), (1, true, true));
    };
    sysctl_seed_local_node2: sysctl "seed-ipip-local/nodes/node2/sysctl" => |s: &Sysctl| assert_eq!(s.values.len(), 5);
    sysctl_seed_remote_node1: sysctl "seed-ipip-remote/nodes/node1/sysctl" => |s: &Sysctl| assert_eq!(s.values.len(), 5);
    sysctl_seed_remote_node2: sysctl "seed-ipip-remote/nodes/node2/sysctl" => |s: &Sysctl| assert_eq!(s.int("net.ipv4.conf.calib992f6c0b80.proxy_arp"), Some(1));
}

/// The `ip link` file of the corpus is what a snapshot's `ip-link` holds
/// (without `-d`): the same reader takes it.
#[test]
fn ip_link_reads_as_interfaces() {
    let v = ok(ipaddr::parse, "public/blog-flannel-kubeproxy/node-ctr_ip-link_after-flannel.txt");
    assert_eq!(names(&v), ["lo", "eth0", "eth1", "flannel.1"]);
    assert!(v.iter().all(|i| i.addrs.is_empty() && i.kind.is_none()));
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn rel(p: &Path) -> String {
    p.strip_prefix(corpus()).unwrap().to_string_lossy().replace('\\', "/")
}

/// Every routing, address, rule, ipset and sysctl file of the corpus and the
/// seed has a row above; none escapes the tables.
#[test]
fn every_netstate_file_has_a_row() {
    let mut files = Vec::new();
    all_files(&corpus().join("public"), &mut files);
    for seed in ["seed-ipip-local", "seed-ipip-remote"] {
        all_files(&corpus().join(seed).join("nodes"), &mut files);
    }
    let covered: Vec<&str> = [ADDR_FILES, ROUTE_FILES, RULE_FILES, IPSET_FILES, SYSCTL_FILES]
        .concat()
        .into_iter()
        .chain(["public/research-net-network/home-user_ip-addr.txt"])
        .collect();
    let mut missing = Vec::new();
    for f in &files {
        let r = rel(f);
        let base = r.rsplit('/').next().unwrap_or("");
        let netstate = ["ip-addr", "ip-4-addr", "ip-route", "routing", "ip-rule", "ipset", "sysctl"]
            .iter()
            .any(|k| base.contains(k))
            && !base.contains("iptables")
            && !base.contains("route-n");
        if netstate && !covered.contains(&r.as_str()) {
            missing.push(r);
        }
    }
    assert!(missing.is_empty(), "files without a row: {missing:?}");
}

const ROUTE_N: &str = "this is `route -n` output; natpath reads `ip route show table all`";
const IP_LINK: &str = "this is `ip link` output (interfaces without addresses); natpath reads `ip addr show` (a snapshot may add `ip -d link show` as nodes/<node>/ip-link)";
const IP6: &str = "this is ip6tables (IPv6) output; natpath models IPv4 and reads `iptables-save`";

/// What `detect` says of a corpus file, from its name.
fn expected_kind(r: &str) -> Result<DumpKind, String> {
    let base = r.rsplit('/').next().unwrap_or("");
    if base.contains("route-n") {
        Err(ROUTE_N.into())
    } else if base.contains("ip-link") {
        Err(IP_LINK.into())
    } else if base.starts_with("calico-3835_ip6") {
        Err(IP6.into())
    } else if base.ends_with(".rules") || base.contains("iptables") {
        Ok(DumpKind::Iptables)
    } else if base.contains("ip-addr") || base.contains("ip-4-addr") {
        Ok(DumpKind::IpAddr)
    } else if base.contains("ip-route") || base.contains("routing") {
        Ok(DumpKind::IpRoute)
    } else if base.contains("ip-rule") {
        Ok(DumpKind::IpRule)
    } else if base.contains("ipset") {
        Ok(DumpKind::Ipset)
    } else if base == "sysctl" {
        Ok(DumpKind::Sysctl)
    } else if base == "cluster.toml" {
        Err("this is a snapshot's cluster.toml; give natpath the snapshot directory, or one dump".into())
    } else {
        panic!("no expectation for {r}")
    }
}

/// Every corpus and seed file is detected as what it is; the formats natpath
/// does not read (`route -n`, `ip link`, ip6tables) are named.
#[test]
fn detect_every_corpus_file() {
    let mut files = Vec::new();
    all_files(&corpus().join("public"), &mut files);
    for seed in ["seed-ipip-local", "seed-ipip-remote"] {
        all_files(&corpus().join(seed).join("nodes"), &mut files);
        files.push(corpus().join(seed).join("cluster.toml"));
    }
    let mut wrong = Vec::new();
    let mut named = 0;
    for f in files.iter().filter(|f| !f.ends_with("PROVENANCE.md") && !f.ends_with("README.md")) {
        let r = rel(f);
        let want = expected_kind(&r);
        named += usize::from(want.is_err());
        let got = detect(&std::fs::read_to_string(f).unwrap());
        if got != want {
            wrong.push(format!("{r}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(named, 6, "2 route -n, 1 ip link, 1 ip6tables, 2 cluster.toml");
}

#[test]
fn detect_other_formats() {
    let cases: &[(&str, Result<DumpKind, &str>)] = &[
        ("", Err("the file is empty; natpath reads `iptables-save`, `ipset save`, `ip route show table all`, `ip addr show`, `ip rule show` and `sysctl net.ipv4` output")),
        ("Chain INPUT (policy ACCEPT)\ntarget     prot opt source               destination\n", Err("this is `iptables -L` output; natpath reads `iptables-save` (or `iptables -S`)")),
        ("table ip nat {\n\tchain PREROUTING {\n", Err("this is an nftables ruleset (`nft list ruleset`); natpath reads `iptables-save`, which prints the same tables in iptables syntax on iptables-nft hosts")),
        ("# Generated by ip6tables-save v1.8.9\n*nat\n", Err(IP6)),
        ("\u{7f}ELF\u{2}\u{1}\u{1}\u{0}\u{0}\u{0}", Err("this is binary data, not the text output of a tool; natpath reads `iptables-save`, `ipset save`, `ip route show table all`, `ip addr show`, `ip rule show` and `sysctl net.ipv4` output")),
        ("10.0.0.1 dev eth0 lladdr 52:54:00:12:35:02 REACHABLE\n", Err("this is `ip neigh` output; natpath reads it only inside a snapshot, as nodes/<node>/ip-neigh")),
        ("66:4e:2d:44:7a:a0 dev vxlan.calico dst 10.0.0.52 self permanent\n", Err("this is `bridge fdb` output; natpath reads it only inside a snapshot, as nodes/<node>/bridge-fdb")),
        ("lo               UNKNOWN        127.0.0.1/8 ::1/128\n", Err("this is `ip -br` (brief) output; natpath reads `ip addr show`")),
        ("[{\"ifindex\":1,\"ifname\":\"lo\"}]\n", Err("this is JSON (`ip -j`?); natpath reads the plain text output of the tools")),
        ("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n", Ok(DumpKind::IpAddr)),
        ("0:\tfrom all lookup local\n", Ok(DumpKind::IpRule)),
        ("net.ipv4.ip_forward = 1\n", Ok(DumpKind::Sysctl)),
        ("unreachable 10.0.0.0/8\n", Ok(DumpKind::IpRoute)),
        ("create s hash:ip family inet\n", Ok(DumpKind::Ipset)),
        ("[5:300] -A KUBE-SERVICES -j ACCEPT\n", Ok(DumpKind::Iptables)),
    ];
    for (text, want) in cases {
        assert_eq!(detect(text), want.map_err(str::to_string), "{text:?}");
    }
}

// ---- exact errors ----

macro_rules! errors {
    ($($test:ident: $parser:path, $text:expr => $msg:expr;)*) => {
        $(
            #[test]
            fn $test() {
                assert_eq!(err($parser($text, "t")), $msg);
            }
        )*
    };
}

errors! {
    addr_truncated_header: ipaddr::parse, "2: eth0: <UP> mtu" => "t:1:18: expected an MTU after `mtu`, found the end of the line";
    addr_truncated_inet: ipaddr::parse, "2: eth0: <UP> mtu 1500\n    inet" => "t:2:9: expected an IPv4 address with prefix length after `inet`, found the end of the line";
    addr_bad_prefix: ipaddr::parse, "2: eth0: <UP> mtu 1500\n    inet 10.0.0.300/24 scope global eth0" => "t:2:10: expected an IPv4 address with prefix length after `inet`, found `10.0.0.300/24`";
    addr_bad_scope: ipaddr::parse, "2: eth0: <UP>\n    inet 10.0.0.3/24 scope galaxy eth0" => "t:2:28: expected a scope (global, site, link, host, nowhere or a number) after `scope`, found `galaxy`";
    addr_line_before_header: ipaddr::parse, "    inet 10.0.0.3/24 scope global eth0" => "t:1:5: expected an interface line `N: NAME: <FLAGS> ...`, found `inet`";
    addr_twice: ipaddr::parse, "2: eth0: <UP>\n2: eth1: <UP>" => "t:2:1: interface 2 is listed twice (`eth0` at line 1)";
    addr_garbage: ipaddr::parse, "\u{0}\u{1}\u{fffd}garbage\n\u{7f}ELF" => "t:1:1: expected an interface line `N: NAME: <FLAGS> ...`, found `\\u{0}\\u{1}\\u{fffd}garbage`\nt:2:1: expected an interface line `N: NAME: <FLAGS> ...`, found `\\u{7f}ELF`";
    addr_unknown_line: ipaddr::parse, "2: eth0: <UP>\n    inet4 10.0.0.3/24" => "t:2:5: expected `inet`, `inet6`, `link/...`, `valid_lft` or `altname` in the lines of interface `eth0`, found `inet4`";
    route_truncated: iproute::parse, "10.0.0.0/24 via" => "t:1:16: expected a gateway address after `via`, found the end of the line";
    route_bad_prefix: iproute::parse, "10.0.0.300/24 dev eth0" => "t:1:1: expected a destination prefix (`ADDR/LEN`, `ADDR` or `default`), found `10.0.0.300/24`";
    route_unknown_type: iproute::parse, "blockhole 10.0.0.0/8 proto bird" => "t:1:1: unknown route type `blockhole`: expected unicast, local, broadcast, multicast, anycast, blackhole, unreachable, prohibit, throw or nat";
    route_host_bits: iproute::parse, "10.0.0.5/24 dev eth0" => "t:1:1: expected a destination prefix without host bits, found `10.0.0.5/24` (the kernel refuses it; `10.0.0.0/24` was probably meant)";
    route_bad_gateway: iproute::parse, "default via 10.0.0.256 dev eth0" => "t:1:13: expected a gateway address after `via`, found `10.0.0.256`";
    route_unknown_attribute: iproute::parse, "default via 10.0.0.1 dev eth0 colour blue" => "t:1:31: expected a route attribute (via, dev, table, proto, scope, src, metric, onlink, mtu...), found `colour`";
    route_garbage: iproute::parse, "\u{0}\u{1}\u{fffd}garbage\n\u{7f}ELF" => "t:1:1: expected a route type or a destination prefix, found `\\u{0}\\u{1}\\u{fffd}garbage`\nt:2:1: expected a route type or a destination prefix, found `\\u{7f}ELF`";
    route_all_errors: iproute::parse, "default via 10.0.0.1 dev eth0\n10.1.0.0/16 dev\n10.2.0.0/16 metric x\nthrow" =>
        "t:2:16: expected a device name after `dev`, found the end of the line\nt:3:20: expected a metric after `metric`, found `x`\nt:4:6: expected a destination after `throw`, found the end of the line";
    route_stray_nexthop: iproute::parse, "\tnexthop via 10.0.0.1 dev eth0" => "t:1:2: expected a route before this `nexthop` line, found none";
    route_twice: iproute::parse, "10.1.0.0/16 via 10.9.0.2 dev v0 metric 5\nblackhole 10.2.0.0/16\n10.1.0.0/16  via 10.9.0.2 dev v0 metric 5 " => "t:3:1: expected each route once, found the route of line 1 again: the kernel holds a route once (adding it again answers `File exists`), so one `ip route show table all` lists it once";
    route_multipath_twice: iproute::parse, "default proto static\n\tnexthop via 10.0.0.1 dev eth0 weight 1\n\tnexthop via 10.0.1.1 dev eth1 weight 1\ndefault proto static\n\tnexthop via 10.0.0.1 dev eth0 weight 1\n\tnexthop via 10.0.1.1 dev eth1 weight 1" => "t:4:1: expected each route once, found the route of line 1 again: the kernel holds a route once (adding it again answers `File exists`), so one `ip route show table all` lists it once";
    rule_no_action: iprule::parse, "100:\tfrom all fwmark 0x1" => "t:1:25: expected an action (lookup, goto, blackhole, unreachable, prohibit or nop), found the end of the line";
    rule_truncated: iprule::parse, "0:\tfrom all lookup" => "t:1:19: expected a table name or number after `lookup`, found the end of the line";
    rule_bad_priority: iprule::parse, "x:\tfrom all lookup main" => "t:1:1: expected a rule priority `N:`, found `x:`";
    rule_bad_from: iprule::parse, "5:\tfrom 10.0.0.300 lookup main" => "t:1:9: expected `all` or an IPv4 prefix after `from`, found `10.0.0.300`";
    rule_unsupported: iprule::parse, "1000:\tfrom all l3mdev lookup main" => "t:1:16: expected a selector natpath models, found `l3mdev` (not supported)";
    ipset_unknown_set: ipset::parse, "add nosuch 10.0.0.1" => "t:1:5: expected a set created by an earlier `create` line, found `nosuch`";
    ipset_bad_element: ipset::parse, "create s hash:ip,port family inet\nadd s 10.0.0.1" => "t:2:7: expected an element `ADDR[/LEN],[PROTO:]PORT` for a hash:ip,port set, found `10.0.0.1`";
    ipset_bad_prefix: ipset::parse, "create s hash:net family inet\nadd s 10.0.0.300/24" => "t:2:7: expected an element `ADDR[/LEN]` for a hash:net set, found `10.0.0.300/24`";
    ipset_unsupported_type: ipset::parse, "create m hash:mac\nadd m 00:11:22:33:44:55" => "t:1:10: expected a set type (hash:ip, hash:net, hash:ip,port, hash:net,port, hash:ip,port,ip, hash:ip,port,net, hash:net,iface, bitmap:ip, bitmap:port or list:set), found `hash:mac`";
    ipset_unclosed_quote: ipset::parse, "create s hash:ip comment\nadd s 10.0.0.1 comment \"open" => "t:2:24: expected a closing `\"`, found the end of the line";
    ipset_twice: ipset::parse, "create s hash:ip\ncreate s hash:net" => "t:2:1: set `s` is defined twice (first at line 1)";
    ipset_restore_script: ipset::parse, "flush s" => "t:1:1: expected `create` or `add`, found `flush` (a restore script; natpath reads `ipset save` output)";
    sysctl_no_equals: sysctl::parse, "net.ipv4.ip_forward 1" => "t:1:1: expected `key = value`, found `net.ipv4.ip_forward 1`";
    sysctl_conflict: sysctl::parse, "net.ipv4.ip_forward = 1\nnet.ipv4.ip_forward = 0" => "t:2:1: `net.ipv4.ip_forward` is `0` here but `1` at line 1";
    sysctl_not_an_integer: sysctl::parse, "net.ipv4.conf.all.rp_filter = banana" => "t:1:1: expected an integer value for `net.ipv4.conf.all.rp_filter`, found `banana`";
    sysctl_forward_not_an_integer: sysctl::parse, "net.ipv4.ip_forward = yes" => "t:1:1: expected an integer value for `net.ipv4.ip_forward`, found `yes`";
    sysctl_forwarding_not_an_integer: sysctl::parse, "net.ipv4.conf.eth1.forwarding = on" => "t:1:1: expected an integer value for `net.ipv4.conf.eth1.forwarding`, found `on`";
    sysctl_forwarding_misspelled: sysctl::parse, "net.ipv4.conf.eth1.forwardin = 0" => "t:1:1: `net.ipv4.conf.eth1.forwardin` is no setting the kernel has; expected `forwarding` (natpath reads it, and a misspelling would be ignored)";
    sysctl_ip_forward_is_all_forwarding: sysctl::parse, "net.ipv4.conf.all.forwarding = 1\nnet.ipv4.ip_forward = 0" => "t:2:1: `net.ipv4.ip_forward` is `0` here but `net.ipv4.conf.all.forwarding` is `1` at line 1: the kernel has one setting for both";
    sysctl_ip_forward_misspelled: sysctl::parse, "net.ipv4.ip_foward = 0" => "t:1:1: `net.ipv4.ip_foward` is no setting the kernel has; expected `ip_forward` (natpath reads it, and a misspelling would be ignored)";
    sysctl_icmp_errors_misspelled: sysctl::parse, "net.ipv4.icmp_errors_use_inbound_ifadr = 1" => "t:1:1: `net.ipv4.icmp_errors_use_inbound_ifadr` is no setting the kernel has; expected `icmp_errors_use_inbound_ifaddr` (natpath reads it, and a misspelling would be ignored)";
    sysctl_all_misspelled: sysctl::parse, "net.ipv4.conf.al.forwarding = 0" => "t:1:1: `net.ipv4.conf.al.forwarding` names device `al`; expected `all` (a misspelled device's settings would be ignored)";
    sysctl_default_in_capitals: sysctl::parse, "net.ipv4.conf.DEFAULT.rp_filter = 1" => "t:1:1: `net.ipv4.conf.DEFAULT.rp_filter` names device `DEFAULT`; expected `default` (a misspelled device's settings would be ignored)";
    sysctl_setting_in_capitals: sysctl::parse, "net.ipv4.conf.tunl0.RP_FILTER = 1" => "t:1:1: `net.ipv4.conf.tunl0.RP_FILTER` is no setting the kernel has; expected `rp_filter` (natpath reads it, and a misspelling would be ignored)";
    sysctl_conf_misspelled: sysctl::parse, "net.ipv4.conff.tunl0.rp_filter = 1" => "t:1:1: `net.ipv4.conff.tunl0.rp_filter` is no setting the kernel has: expected `net.ipv4.conf.` before the device, found `net.ipv4.conff.` (a misspelling would be ignored)";
    sysctl_conf_in_capitals: sysctl::parse, "net.ipv4.Conf.all.rp_filter = 1" => "t:1:1: `net.ipv4.Conf.all.rp_filter` is no setting the kernel has: expected `net.ipv4.conf.` before the device, found `net.ipv4.Conf.` (a misspelling would be ignored)";
    sysctl_send_redirects_not_an_integer: sysctl::parse, "net.ipv4.conf.all.send_redirects = banana" => "t:1:1: expected an integer value for `net.ipv4.conf.all.send_redirects`, found `banana`";
    sysctl_send_redirects_misspelled: sysctl::parse, "net.ipv4.conf.eth0.send_redirect = 0" => "t:1:1: `net.ipv4.conf.eth0.send_redirect` is no setting the kernel has; expected `send_redirects` (natpath reads it, and a misspelling would be ignored)";
    sysctl_icmp_errors_not_an_integer: sysctl::parse, "net.ipv4.icmp_errors_use_inbound_ifaddr = yes" => "t:1:1: expected an integer value for `net.ipv4.icmp_errors_use_inbound_ifaddr`, found `yes`";
    sysctl_misspelled: sysctl::parse, "net.ipv4.conf.eth0.rp_filtr = 1" => "t:1:1: `net.ipv4.conf.eth0.rp_filtr` is no setting the kernel has; expected `rp_filter` (natpath reads it, and a misspelling would be ignored)";
    neigh_no_dev: ipaddr::parse_neigh, "10.0.0.1 lladdr 52:54:00:12:35:02 REACHABLE" => "t:1:44: expected `dev NAME` in the neighbour entry, found the end of the line";
    fdb_bad_mac: ipaddr::parse_fdb, "66:4e:2d dev vxlan.calico dst 10.0.0.52 self permanent" => "t:1:1: expected a MAC address, found `66:4e:2d`";
}

// ---- forms the corpus lacks ----

/// Routes of one table, destination, TOS and metric that differ in
/// anything else are several routes, as `ip route append` adds them (seen
/// in a network namespace: another gateway, device, type, protocol,
/// source, scope or `mtu`); only a route equal in every attribute is
/// listed twice by no capture.
#[test]
fn routes_that_append_adds_beside_each_other() {
    let t = "10.1.0.0/16 via 10.9.0.5 dev v0 metric 5\n\
             10.1.0.0/16 via 10.9.0.2 dev v0 metric 5\n\
             blackhole 10.1.0.0/16 metric 5\n\
             unreachable 10.1.0.0/16 metric 5\n\
             10.1.0.0/16 via 10.9.0.2 dev v0 proto static metric 5\n\
             10.1.0.0/16 via 10.9.0.2 dev v0 src 10.9.0.1 metric 5\n\
             10.1.0.0/16 dev v0 scope link metric 5\n\
             10.1.0.0/16 dev v0 metric 5\n\
             10.1.0.0/16 via 10.9.0.2 dev v0 metric 5 mtu 1400\n\
             10.1.0.0/16 via 10.9.0.2 dev v0 table 100 metric 5\n\
             10.1.0.0/16 tos 0x10 via 10.9.0.2 dev v0 metric 5\n\
             10.1.0.0/16 via 10.9.0.2 dev v0\n";
    assert_eq!(iproute::parse(t, "t").unwrap().len(), 12);
}

#[test]
fn route_forms() {
    let t = "default via 10.0.0.1 dev eth0 proto 12 metric 100 mtu lock 1400 advmss 1360 \n\
             10.9.0.0/16 table 100 dev eth1 scope link\n\
             unreachable 10.8.0.0/16 table KABEL\n\
             prohibit 10.7.0.0/16\n\
             local 10.0.0.5 dev eth0 proto kernel scope host src 10.0.0.5\n\
             broadcast 10.0.0.255 dev eth0 table local proto kernel scope link src 10.0.0.5\n\
             fe80::/64 dev eth0 proto kernel metric 256 pref medium\n\
             unreachable ::/96 dev lo metric 1024 pref medium\n\
             default proto static metric 20\n\
             \tnexthop via 10.0.0.1 dev eth0 weight 1 onlink\n\
             \tnexthop via 10.0.1.1 dev eth1 weight 3\n\
             default via fe80::1 dev eth0 proto ra metric 1024 expires 1797sec hoplimit 64 pref medium\n\
             \tnexthop via fe80::2 dev eth0 weight 1\n\
             10.6.0.0/24 via 10.0.0.9 dev eth0 onlink linkdown   \n";
    let v = iproute::parse(t, "t").unwrap();
    assert_eq!(v.len(), 8);
    assert_eq!(v[0].proto.as_deref(), Some("bird"));
    assert_eq!(v[0].extra, [("mtu".to_string(), "lock 1400".to_string()), ("advmss".to_string(), "1360".to_string())]);
    assert_eq!(v[1].table, 100);
    assert_eq!((v[2].kind, v[2].table), (RouteType::Unreachable, table_id("KABEL").unwrap()));
    assert_eq!(v[3].kind, RouteType::Prohibit);
    assert_eq!((v[4].kind, v[4].table), (RouteType::Local, TABLE_LOCAL), "local routes live in table local");
    assert_eq!(v[6].nexthops.len(), 2);
    assert_eq!(
        (v[6].nexthops[0].weight, v[6].nexthops[0].onlink, v[6].nexthops[1].via),
        (Some(1), true, Some(ip("10.0.1.1")))
    );
    assert_eq!(v[7].extra, [("linkdown".to_string(), String::new())]);
}

#[test]
fn rule_forms() {
    let t = "0:\tfrom all lookup local\n\
             100:\tnot from 10.0.0.0/8 to 192.168.0.0/16 fwmark 0x4000/0x4000 iif eth0 lookup 100 suppress_prefixlength 0\n\
             200:\tfrom all oif vrf0 [detached] goto 300 [unresolved]\n\
             300:\tfrom all ipproto tcp dport 80-90 sport 1000 uidrange 0-1000 tos 0x10 blackhole\n\
             400:\tfrom all unreachable\n\
             500:\tfrom all prohibit\n\
             600:\tfrom all nop\n\
             700:\tfrom ::1 lookup main\n\
             32766:\tfrom all lookup main proto kernel\n";
    let v = iprule::parse(t, "t").unwrap();
    assert_eq!(v.len(), 8);
    let r = &v[1];
    assert!(r.not);
    assert_eq!(
        (r.from, r.to, r.fwmark, r.iif.as_deref()),
        (Some(net("10.0.0.0/8")), Some(net("192.168.0.0/16")), Some((0x4000, 0x4000)), Some("eth0"))
    );
    assert_eq!((r.action.clone(), r.suppress_prefixlength), (RuleAction::Lookup(100), Some(0)));
    assert_eq!((v[2].oif.as_deref(), v[2].action.clone()), (Some("vrf0"), RuleAction::Goto(300)));
    let p = &v[3];
    assert_eq!(
        (p.ipproto.map(|p| p.0), p.dport.map(|d| (d.lo, d.hi)), p.sport.map(|d| d.lo), p.uidrange, p.tos),
        (Some(6), Some((80, 90)), Some(1000), Some((0, 1000)), Some(0x10))
    );
    assert_eq!(p.action, RuleAction::Blackhole);
    assert_eq!(
        [v[4].action.clone(), v[5].action.clone(), v[6].action.clone()],
        [RuleAction::Unreachable, RuleAction::Prohibit, RuleAction::Nop]
    );
}

#[test]
fn ipset_forms() {
    let t = "create kube-ipvs hash:ip,port,ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n\
             add kube-ipvs 10.0.0.1,udp:53,10.0.0.1\n\
             create nets hash:ip,port,net family inet\n\
             add nets 10.0.0.1,tcp:80-90,10.1.0.0/16\n\
             create np hash:net,port family inet timeout 300\n\
             add np 10.0.0.0/8,sctp:9 timeout 30\n\
             add np 10.1.0.0/8,gre:0\n\
             create ifs hash:net,iface family inet\n\
             add ifs 10.0.0.0/8,physdev:eth0\n\
             create bm bitmap:ip range 10.0.0.0/24\n\
             add bm 10.0.0.7\n\
             create v6 hash:net family inet6 hashsize 1024 maxelem 65536\n\
             add v6 fd00::/8\n";
    let v = ipset::parse(t, "t").unwrap();
    assert_eq!(v.len(), 6);
    assert_eq!(v[0].entries[0].net2, Some(net("10.0.0.1/32")));
    assert_eq!(v[1].entries[0].port.map(|(p, r)| (p.0, r.lo, r.hi)), Some((6, 80, 90)));
    assert_eq!(v[2].entries[0].options, [("timeout".to_string(), "30".to_string())]);
    assert_eq!(v[2].entries[1].port.map(|(p, r)| (p.0, r.lo)), Some((47, 0)));
    assert_eq!(v[3].entries[0].iface.as_deref(), Some("eth0"));
    assert_eq!((v[4].kind, v[4].entries.len()), (SetType::BitmapIp, 1));
    assert_eq!((v[5].inet, v[5].entries.len()), (false, 0), "IPv6 entries are not read");
}

#[test]
fn ipset_list_several_sets() {
    let t = "Name: KUBE-NODE-PORT-TCP\nType: bitmap:port\nRevision: 3\nHeader: range 0-65535\nSize in memory: 8264\nReferences: 1\nNumber of entries: 2\nMembers:\n30080\n31000\n\n\
             Name: weave-;rGqyMIl1HN^cfDki~Z$3]6!N\nType: list:set\nRevision: 3\nHeader: size 8\nSize in memory: 80\nReferences: 0\nNumber of entries: 1\nMembers:\nKUBE-NODE-PORT-TCP\n\n\
             Name: empty\nType: hash:ip\nRevision: 4\nHeader: family inet hashsize 1024 maxelem 65536 timeout 300 counters comment\nSize in memory: 88\nReferences: 0\nNumber of entries: 0\nMembers:\n";
    let v = ipset::parse(t, "t").unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[0].entries.iter().map(|e| e.port.unwrap().1.lo).collect::<Vec<_>>(), [30080, 31000]);
    assert_eq!(v[1].entries[0].set.as_deref(), Some("KUBE-NODE-PORT-TCP"));
    assert_eq!(v[2].options.len(), 6);
}

#[test]
fn link_neigh_fdb() {
    let link = "7: vxlan.calico: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default \n    link/ether 66:4e:2d:44:7a:a0 brd ff:ff:ff:ff:ff:ff promiscuity 0 allmulti 0 minmtu 68 maxmtu 65535 \n    vxlan id 4096 local 10.0.0.51 dev ens192 srcport 0 0 dstport 4789 nolearning ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535 \n8: tunl0@NONE: <NOARP,UP,LOWER_UP> mtu 1440 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\n    link/ipip 0.0.0.0 brd 0.0.0.0 promiscuity 0 allmulti 0 minmtu 0 maxmtu 0 \n    ipip any remote any local any ttl inherit nopmtudisc addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535 \n9: ens192: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT group default qlen 1000\n    link/ether ae:f1:b0:0b:a4:24 brd ff:ff:ff:ff:ff:ff promiscuity 0 allmulti 0 minmtu 68 maxmtu 9000 \n    addrgenmode none numtxqueues 8 numrxqueues 8 gso_max_size 65536 gso_max_segs 65535 parentbus pci parentdev 0000:0b:00.0 \n    altname enp11s0\n";
    let v = ipaddr::parse(link, "t").unwrap();
    assert_eq!(v.iter().map(|i| i.kind.as_deref()).collect::<Vec<_>>(), [Some("vxlan"), Some("ipip"), None]);
    let x = v[0].vxlan.clone().unwrap();
    assert_eq!(
        (x.vni, x.local, x.dev.as_deref(), x.dstport, x.learning),
        (4096, Some(ip("10.0.0.51")), Some("ens192"), 4789, false)
    );
    let n = ipaddr::parse_neigh("10.0.0.52 dev vxlan.calico lladdr 66:4e:2d:44:7a:a1 PERMANENT\n10.0.0.1 dev ens192 lladdr 52:54:00:12:35:02 router STALE\nfe80::1 dev ens192 lladdr 52:54:00:12:35:02 router STALE\n10.0.0.9 dev ens192 FAILED\n", "t").unwrap();
    assert_eq!(n.len(), 3);
    assert_eq!(
        (n[0].addr, n[0].lladdr.as_deref(), n[0].state.clone()),
        (ip("10.0.0.52"), Some("66:4e:2d:44:7a:a1"), vec!["PERMANENT".to_string()])
    );
    assert!(n[1].router);
    let f = ipaddr::parse_fdb("66:4e:2d:44:7a:a1 dev vxlan.calico dst 10.0.0.52 self permanent\n33:33:00:00:00:01 dev ens192 self permanent\nee:ee:ee:ee:ee:ee dev veth1 vlan 1 master br0 permanent\n", "t").unwrap();
    assert_eq!(
        (f[0].dst, f[0].flags.clone()),
        (Some(ip("10.0.0.52")), vec!["self".to_string(), "permanent".to_string()])
    );
    assert_eq!((f[2].vlan, f[2].master.as_deref()), (Some(1), Some("br0")));
}

// ---- no panics ----

/// Every line of every `ip addr`/`ip route`/`ip rule`/ipset file above.
fn corpus_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for f in [ADDR_FILES, ROUTE_FILES, RULE_FILES, IPSET_FILES].concat() {
        lines.extend(read(f).lines().map(str::to_string));
    }
    lines
}

/// One edit of a line: delete a range, insert text, duplicate a word, or cut.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Repeat(usize),
    Cut(usize),
}

fn apply(line: &str, edit: &Edit) -> String {
    let chars: Vec<char> = line.chars().collect();
    let at = |i: usize| if chars.is_empty() { 0 } else { i % (chars.len() + 1) };
    match edit {
        Edit::Delete(i, n) => {
            let s = at(*i);
            let e = (s + n).min(chars.len());
            chars[..s].iter().chain(&chars[e..]).collect()
        }
        Edit::Insert(i, t) => {
            let s = at(*i);
            chars[..s].iter().collect::<String>() + t + &chars[s..].iter().collect::<String>()
        }
        Edit::Repeat(i) => {
            let w: Vec<&str> = line.split(' ').collect();
            let k = i % w.len();
            let mut out = w.clone();
            out.insert(k, w[k]);
            out.join(" ")
        }
        Edit::Cut(i) => chars[..at(*i)].iter().collect(),
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..8).prop_map(|(i, n)| Edit::Delete(i, n)),
        (
            any::<usize>(),
            prop_oneof![
                "[ \t\\\\/:@<>,.\"#0-9a-z-]{0,6}".boxed(),
                any::<String>().boxed(),
                Just("\u{0}".to_string()).boxed(),
                Just(" nexthop".to_string()).boxed(),
                Just("\n    inet ".to_string()).boxed(),
                Just("/33".to_string()).boxed(),
                Just("999999999999".to_string()).boxed(),
            ]
        )
            .prop_map(|(i, s)| Edit::Insert(i, s)),
        any::<usize>().prop_map(Edit::Repeat),
        any::<usize>().prop_map(Edit::Cut),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A window of three corpus lines with up to four edits goes through
    /// every parser of this crate's netstate side without a panic.
    #[test]
    fn parsers_never_panic(start in any::<usize>(), edits in prop::collection::vec((0usize..3, edit()), 0..4)) {
        let lines = corpus_lines();
        let s = start % lines.len();
        let mut window: Vec<String> = lines.iter().cycle().skip(s).take(3).cloned().collect();
        for (k, e) in &edits {
            window[*k] = apply(&window[*k], e);
        }
        let text = window.join("\n");
        let _ = ipaddr::parse(&text, "p");
        let _ = iproute::parse(&text, "p");
        let _ = iprule::parse(&text, "p");
        let _ = ipset::parse(&text, "p");
        let _ = sysctl::parse(&text, "p");
        let _ = ipaddr::parse_neigh(&text, "p");
        let _ = ipaddr::parse_fdb(&text, "p");
        let _ = detect(&text);
    }

    /// Arbitrary text, not only edited corpus lines.
    #[test]
    fn parsers_never_panic_on_any_text(text in any::<String>()) {
        let _ = ipaddr::parse(&text, "p");
        let _ = iproute::parse(&text, "p");
        let _ = iprule::parse(&text, "p");
        let _ = ipset::parse(&text, "p");
        let _ = sysctl::parse(&text, "p");
        let _ = detect(&text);
    }
}

/// A node on two LANs (`ip addr`): eth0 10.0.0.1/24, eth1 10.1.0.1/24.
const TWO_LANS: &str = "1: lo: <LOOPBACK,UP> mtu 65536\n    inet 127.0.0.1/8 scope host lo\n\
                        2: eth0: <UP> mtu 1500\n    inet 10.0.0.1/24 scope global eth0\n\
                        3: eth1: <UP> mtu 1500\n    inet 10.1.0.1/24 scope global eth1\n";

/// The kernel's routes of [`TWO_LANS`] (`ip route show table all`).
const TWO_LANS_ROUTES: &str = "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1\n\
                               10.1.0.0/24 dev eth1 proto kernel scope link src 10.1.0.1\n\
                               local 10.0.0.1 dev eth0 table local proto kernel scope host src 10.0.0.1\n\
                               local 10.1.0.1 dev eth1 table local proto kernel scope host src 10.1.0.1\n";

/// Issue 13: `fib_validate_source` is strict only for rp_filter 1; 2 and
/// every larger value are loose.
#[test]
fn rp_filter_above_two_is_loose() {
    use natpath_model::fib::Fib;
    let ifs = ipaddr::parse(TWO_LANS, "a").unwrap();
    let routes = iproute::parse(TWO_LANS_ROUTES, "r").unwrap();
    let rules = iprule::parse("0:\tfrom all lookup local\n32766:\tfrom all lookup main\n", "i").unwrap();
    // 10.0.0.7 is routed by eth0; it arrives on eth1.
    for (rpf, ok) in [(0, true), (1, false), (2, true), (3, true), (4, true)] {
        let sys = sysctl::parse(&format!("net.ipv4.conf.all.rp_filter = {rpf}\n"), "s").unwrap();
        let fib = Fib::new(&routes, &rules, &ifs, &sys);
        let got = fib.validate_source("10.0.0.7".parse().unwrap(), "10.1.0.1".parse().unwrap(), "eth1", None, 0);
        assert_eq!(got.is_ok(), ok, "rp_filter {rpf}: {got:?}");
    }
}

/// Forwarding is the input device's own `forwarding`; a device without a
/// key has `conf.default`'s, which `ip_forward` (`conf.all.forwarding`)
/// sets with every device's.
#[test]
fn forwarding_is_the_input_devices_own() {
    let s = sysctl::parse(
        "net.ipv4.ip_forward = 1\nnet.ipv4.conf.eth0.forwarding = 1\nnet.ipv4.conf.eth1.forwarding = 0\nnet.ipv4.conf.vxlan/calico.forwarding = 0\n",
        "t",
    )
    .unwrap();
    assert!(s.forwarding("eth0"));
    assert_eq!(s.forwarding_source("eth1"), (Some("net.ipv4.conf.eth1.forwarding".to_string()), false));
    assert!(!s.forwarding("vxlan.calico"));
    assert_eq!(s.forwarding_source("eth2"), (Some("net.ipv4.ip_forward".to_string()), true));
    let s = sysctl::parse("net.ipv4.ip_forward = 0\nnet.ipv4.conf.default.forwarding = 1\n", "t").unwrap();
    assert!(s.forwarding("cali1"), "a device without a key of its own has default's value");
    assert!(!s.ip_forward());
    let s = sysctl::parse("net.ipv4.conf.all.forwarding = 0\n", "t").unwrap();
    assert!(!s.forwarding("eth0"));
    assert!(sysctl::parse("", "t").unwrap().forwarding("eth0"), "absent: 1");
}

/// Issue 13: `fib_validate_source` with rp_filter 0 is not "accept
/// everything" (net/ipv4/fib_frontend.c). `accept_local` (`all` or the
/// device) accepts; else, with custom ip rules or custom local routes, the
/// full check runs with rp_filter 0 (a route back that is local without
/// accept_local, or broadcast, drops; no route back, or one by another
/// device, passes; a blackhole route back is no route back); else a source
/// configured on any interface of the node is a martian. With rp_filter 1
/// or 2, accept_local lets a local route back through to the device check
/// (a local route matches its own device and `lo`).
#[test]
fn validate_source_with_rp_filter_0_and_accept_local() {
    use natpath_model::fib::Fib;
    let addr = "1: lo: <LOOPBACK,UP> mtu 65536\n    inet 127.0.0.1/8 scope host lo\n\
                2: eth0: <UP> mtu 1500\n    inet 10.0.0.1/24 scope global eth0\n\
                3: eth1: <UP> mtu 1500\n    inet 10.1.0.1/24 scope global eth1\n\
                4: eth2: <UP> mtu 1500\n";
    let kernel_routes = "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1\n\
                 10.1.0.0/24 dev eth1 proto kernel scope link src 10.1.0.1\n\
                 blackhole 10.9.0.0/16 proto bird\n\
                 local 10.0.0.1 dev eth0 table local proto kernel scope host src 10.0.0.1\n\
                 local 10.1.0.1 dev eth1 table local proto kernel scope host src 10.1.0.1\n\
                 local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1\n\
                 broadcast 10.0.0.255 dev eth0 table local proto kernel scope link src 10.0.0.1\n";
    let custom_local = format!("{kernel_routes}local 10.77.0.1 dev lo table local scope host\n");
    let default_rules = "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n";
    let custom_rules = "0:\tfrom all lookup local\n100:\tfrom all fwmark 0x1 lookup main\n\
                        32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n";
    let ifs = ipaddr::parse(addr, "a").unwrap();
    // (rp_filter setting, extra sysctls, routes, rules, source, arrival device, accepted)
    let own = "10.1.0.1"; // eth1's address
    let cases: Vec<(&str, &str, &str, &str, &str, &str, bool)> = vec![
        // rp_filter 0, kernel-only routes and default rules: the address check.
        ("0", "", kernel_routes, default_rules, own, "eth0", false),
        ("0", "", kernel_routes, "", own, "eth0", false),
        ("0", "", kernel_routes, default_rules, "10.0.0.1", "eth0", false),
        ("0", "", kernel_routes, default_rules, "127.0.0.1", "eth0", false),
        ("0", "", kernel_routes, default_rules, "10.9.1.1", "eth0", true),
        ("0", "", kernel_routes, default_rules, "10.0.0.7", "eth1", true),
        ("0", "", kernel_routes, default_rules, "172.16.0.1", "eth0", true),
        // accept_local: `all`, the device's own, `default` for a device without one.
        ("0", "net.ipv4.conf.all.accept_local = 1\n", kernel_routes, default_rules, own, "eth0", true),
        ("0", "net.ipv4.conf.eth0.accept_local = 1\n", kernel_routes, default_rules, own, "eth0", true),
        ("0", "net.ipv4.conf.eth1.accept_local = 1\n", kernel_routes, default_rules, own, "eth0", false),
        ("0", "net.ipv4.conf.default.accept_local = 1\n", kernel_routes, default_rules, own, "eth0", true),
        (
            "0",
            "net.ipv4.conf.default.accept_local = 1\nnet.ipv4.conf.eth0.accept_local = 0\n",
            kernel_routes,
            default_rules,
            own,
            "eth0",
            false,
        ),
        // Custom rules or custom local routes: the full check with rp_filter
        // 0. A blackhole route back is no route back (fib_lookup fails),
        // which passes; a local or broadcast one drops.
        ("0", "", kernel_routes, custom_rules, "10.9.1.1", "eth0", true),
        ("0", "", &custom_local, default_rules, "10.9.1.1", "eth0", true),
        ("0", "", &custom_local, default_rules, "10.77.0.1", "eth0", false),
        ("0", "net.ipv4.conf.eth0.accept_local = 1\n", &custom_local, default_rules, "10.77.0.1", "eth0", true),
        ("0", "", kernel_routes, default_rules, "10.0.0.255", "eth0", true),
        ("0", "", kernel_routes, custom_rules, "10.0.0.255", "eth0", false),
        ("0", "", kernel_routes, custom_rules, own, "eth0", false),
        ("0", "", kernel_routes, custom_rules, "10.0.0.7", "eth1", true),
        ("0", "", kernel_routes, custom_rules, "172.16.0.1", "eth0", true),
        ("0", "net.ipv4.conf.all.accept_local = 1\n", kernel_routes, custom_rules, "10.9.1.1", "eth0", true),
        // rp_filter 1 and 2 with accept_local: the local route back is eth1's.
        ("1", "", kernel_routes, default_rules, own, "eth1", false),
        ("1", "net.ipv4.conf.all.accept_local = 1\n", kernel_routes, default_rules, own, "eth1", true),
        ("1", "net.ipv4.conf.all.accept_local = 1\n", kernel_routes, default_rules, own, "eth0", false),
        ("1", "net.ipv4.conf.all.accept_local = 1\n", kernel_routes, default_rules, own, "lo", true),
        ("2", "net.ipv4.conf.all.accept_local = 1\n", kernel_routes, default_rules, own, "eth0", true),
        ("2", "net.ipv4.conf.all.accept_local = 1\n", kernel_routes, default_rules, own, "eth2", false),
        ("2", "", kernel_routes, default_rules, own, "eth0", false),
        ("1", "net.ipv4.conf.all.accept_local = 1\n", kernel_routes, default_rules, "10.9.1.1", "eth0", false),
    ];
    for (i, (rpf, extra, routes, rules, src, iif, ok)) in cases.iter().enumerate() {
        let sys = sysctl::parse(&format!("net.ipv4.conf.all.rp_filter = {rpf}\n{extra}"), "s").unwrap();
        let routes = iproute::parse(routes, "r").unwrap();
        let rules = if rules.is_empty() { Vec::new() } else { iprule::parse(rules, "i").unwrap() };
        let fib = Fib::new(&routes, &rules, &ifs, &sys);
        let got = fib.validate_source(src.parse().unwrap(), "10.0.0.1".parse().unwrap(), iif, None, 0);
        assert_eq!(got.is_ok(), *ok, "case {i}: rp_filter {rpf}, {extra:?}, from {src} on {iif}: {got:?}");
    }
}

/// What counts as custom to `fib_validate_source`: any rule set but the
/// kernel's three, and a `local` route that is not the kernel's own.
#[test]
fn custom_rules_and_local_routes() {
    use natpath_model::fib::{has_custom_local_routes, has_custom_rules};
    let d = iprule::parse(
        "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n",
        "i",
    )
    .unwrap();
    assert!(!has_custom_rules(&d));
    assert!(!has_custom_rules(&[]));
    let reordered: Vec<_> = d.iter().rev().cloned().collect();
    assert!(!has_custom_rules(&reordered), "the order of the dump does not matter");
    assert!(has_custom_rules(&d[..2]), "a default rule deleted");
    let extra = iprule::parse("0:\tfrom all lookup local\n10:\tfrom 10.0.0.0/8 lookup main\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n", "i").unwrap();
    assert!(has_custom_rules(&extra));
    let kernel =
        iproute::parse("local 10.0.0.1 dev eth0 table local proto kernel scope host src 10.0.0.1\n", "r").unwrap();
    assert!(!has_custom_local_routes(&kernel));
    for line in [
        "local 10.0.0.2 dev lo table local scope host\n",
        "local 10.0.0.0/24 dev lo table local proto static scope host\n",
        "local 10.0.0.3 dev lo table 100 proto bird\n",
    ] {
        let r = iproute::parse(line, "r").unwrap();
        assert!(has_custom_local_routes(&r), "{line}");
    }
}

/// A node's sysctl names its devices: a name ip-addr does not list but
/// that is near one of the node's (`tunI0`, `TUNL0` for `tunl0`) is a
/// misspelling, whose settings would be ignored. A device the node does
/// not have and that is near none (a pod's veth gone between the captures)
/// and a numbered sibling (`eth1` beside `eth0`) are real devices.
#[test]
fn a_sysctl_device_near_one_of_the_node_is_a_misspelling() {
    let devices = ["lo", "ens192", "tunl0", "vxlan.calico"];
    for (dev, meant) in [("tunI0", "tunl0"), ("TUNL0", "tunl0"), ("tun10", "tunl0"), ("vxlan/calco", "vxlan.calico")] {
        let text = format!("net.ipv4.conf.all.rp_filter = 0\nnet.ipv4.conf.{dev}.rp_filter = 1\n");
        let got = err(sysctl::parse_for_node(&text, "s", &devices));
        let shown = dev.replace('/', ".");
        assert_eq!(
            got,
            format!("s:2:1: `net.ipv4.conf.{dev}.rp_filter` names device `{shown}`, which ip-addr does not list; expected `{meant}` (a misspelled device's settings would be ignored)"),
        );
    }
    for dev in ["tunl0", "vxlan/calico", "vxlan.calico", "cali5f3a9e1b2c4", "eth1", "ens193", "lo", "all", "default"] {
        let text = format!("net.ipv4.conf.{dev}.rp_filter = 1\nnet.ipv4.conf.{dev}.proxy_arp = 0\n");
        assert!(
            sysctl::parse_for_node(&text, "s", &["lo", "eth0", "ens192", "tunl0", "vxlan.calico"]).is_ok(),
            "{dev}"
        );
    }
}

/// `sysctl -a` prints a `.` in a device name as `/` (`vxlan.calico` is
/// `net.ipv4.conf.vxlan/calico.*`): rp_filter, accept_local and
/// src_valid_mark are read for the device in that form as in the dotted
/// one, by the sysctl accessors and by the routing decision alike.
#[test]
fn device_sysctls_are_read_in_sysctls_slash_form() {
    use natpath_model::fib::Fib;
    let addr = "1: lo: <LOOPBACK,UP> mtu 65536\n    inet 127.0.0.1/8 scope host lo\n\
                2: eth0: <UP> mtu 1500\n    inet 10.0.0.1/24 scope global eth0\n\
                3: vxlan.calico: <UP> mtu 1450\n    inet 192.168.231.64/32 scope global vxlan.calico\n";
    let ifs = ipaddr::parse(addr, "a").unwrap();
    let routes = iproute::parse(
        "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1\n\
         local 10.0.0.1 dev eth0 table local proto kernel scope host src 10.0.0.1\n",
        "r",
    )
    .unwrap();
    for form in ["vxlan/calico", "vxlan.calico"] {
        let text = format!(
            "net.ipv4.conf.all.rp_filter = 0\nnet.ipv4.conf.{form}.rp_filter = 2\n\
             net.ipv4.conf.{form}.accept_local = 1\nnet.ipv4.conf.{form}.src_valid_mark = 1\n"
        );
        let sysctl = sysctl::parse(&text, "s").unwrap();
        assert_eq!(sysctl.rp_filter("vxlan.calico"), 2, "{form}");
        assert!(sysctl.accept_local("vxlan.calico"), "{form}");
        assert!(sysctl.src_valid_mark("vxlan.calico"), "{form}");
        assert_eq!(sysctl.rp_filter("eth0"), 0, "{form}");
        let fib = Fib::new(&routes, &[], &ifs, &sysctl);
        let c = fib.rpf_conf("vxlan.calico");
        assert_eq!((c.rp_filter, c.accept_local, c.src_valid_mark), (2, true, true), "{form}");
        // The node's own address from vxlan.calico: accept_local lets it
        // through to the device check, which loose mode passes.
        let got = fib.validate_source(
            "10.0.0.1".parse().unwrap(),
            "192.168.231.64".parse().unwrap(),
            "vxlan.calico",
            None,
            0,
        );
        assert!(got.is_ok(), "{form}: {got:?}");
    }
}

/// Issue 13: `fib_validate_source` looks the route back up with input
/// device `lo` for a packet delivered locally and the forwarding route's
/// device for a forwarded one, never the arrival device: an `ip rule iif`
/// selects the route back by that device.
#[test]
fn the_route_back_is_looked_up_from_lo_or_the_way_out() {
    use natpath_model::fib::Fib;
    // 10.0.0.7 is routed back by eth0 in main, by eth1 in table 100.
    let ifs = ipaddr::parse(TWO_LANS, "a").unwrap();
    let routes = iproute::parse(&format!("{TWO_LANS_ROUTES}10.0.0.7 dev eth1 table 100 scope link\n"), "r").unwrap();
    let sys = sysctl::parse("net.ipv4.conf.all.rp_filter = 1\n", "s").unwrap();
    let (src, dst) = ("10.0.0.7".parse().unwrap(), "10.1.0.1".parse().unwrap());
    // (the rule's iif, the device the route back is looked up with, accepted
    // arriving on eth0)
    for (rule_iif, back, ok) in
        [("eth0", None, true), ("lo", None, false), ("eth1", Some("eth1"), false), ("eth0", Some("eth1"), true)]
    {
        let rules = iprule::parse(
            &format!(
                "0:\tfrom all lookup local\n100:\tfrom all iif {rule_iif} lookup 100\n32766:\tfrom all lookup main\n"
            ),
            "i",
        )
        .unwrap();
        let fib = Fib::new(&routes, &rules, &ifs, &sys);
        let got = fib.validate_source(src, dst, "eth0", back, 0);
        assert_eq!(got.is_ok(), ok, "iif {rule_iif}, back {back:?}: {got:?}");
    }
}
