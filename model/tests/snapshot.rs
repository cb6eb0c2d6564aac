//! Loading snapshot directories: the seed's two real snapshots (cases A and
//! B of the blog), and broken snapshots built in temporary directories,
//! each error asserted with its exact file, line, column and message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

use natpath_model::netstate::{RouteType, TABLE_LOCAL};
use natpath_model::snapshot::{self, Snapshot, DEFAULT_IP_RULE, DEFAULT_LISTEN, DEFAULT_SYSCTL};
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

fn seed(name: &str) -> PathBuf {
    corpus().join(name)
}

#[track_caller]
fn load_ok(dir: &Path) -> Snapshot {
    match snapshot::load(dir) {
        Ok(s) => s,
        Err(e) => panic!("{} does not load:\n{e}", dir.display()),
    }
}

/// The messages of a failed load, one per error.
#[track_caller]
fn load_err(dir: &Path) -> Vec<String> {
    match snapshot::load(dir) {
        Ok(_) => panic!("{} loads, expected errors", dir.display()),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[track_caller]
fn has(errs: &[String], want: &str) {
    assert!(errs.iter().any(|e| e == want), "missing error:\n  {want}\nfound:\n  {}", errs.join("\n  "));
}

fn names<T>(v: &[T], f: impl Fn(&T) -> &str) -> Vec<&str> {
    v.iter().map(f).collect()
}

#[test]
fn seed_ipip_local() {
    let s = load_ok(&seed("seed-ipip-local"));
    assert_eq!(names(&s.nodes, |n| n.name.as_str()), ["node1", "node2"]);
    let n1 = s.node("node1").unwrap();
    assert_eq!(n1.lan, "ens192");
    assert_eq!(names(&n1.interfaces, |i| i.name.as_str()), ["lo", "ens192", "tunl0", "cali583c2cee4e2"]);
    assert_eq!(n1.routes.len(), 11);
    assert_eq!(n1.routes.iter().filter(|r| r.table == TABLE_LOCAL).count(), 6);
    assert_eq!(n1.routes.iter().filter(|r| r.kind == RouteType::Blackhole).count(), 1);
    assert_eq!(n1.ip_rules.len(), 3);
    assert_eq!(
        names(&n1.ipsets, |s| s.name.as_str()),
        ["cali40all-ipam-pools", "cali40all-hosts-net", "cali40masq-ipam-pools"]
    );
    assert_eq!(n1.sysctl.rp_filter("tunl0"), 1);
    // Every optional file of the capture is there; `ss-listen` came later.
    assert_eq!(n1.defaults, [DEFAULT_LISTEN], "every optional file but ss-listen is there");
    assert!(n1.ruleset.rule_count() > 0);
    assert_eq!(s.cluster.pods[0].iface, "cali583c2cee4e2");
    assert_eq!(s.cluster.pods[0].loc.line, 17);
    assert_eq!(s.cluster.hosts[0].name, "client");
    assert_eq!(s.node("node2").unwrap().interfaces.len(), 3);
}

#[test]
fn seed_ipip_remote() {
    let s = load_ok(&seed("seed-ipip-remote"));
    assert_eq!(names(&s.nodes, |n| n.name.as_str()), ["node1", "node2"]);
    let n2 = s.node("node2").unwrap();
    assert_eq!(names(&n2.interfaces, |i| i.name.as_str()), ["lo", "ens192", "tunl0", "calib992f6c0b80"]);
    assert_eq!(n2.routes.len(), 11);
    assert_eq!(s.node("node1").unwrap().routes.len(), 10);
    assert_eq!(s.cluster.pods[0].node, "node2");
    assert!(s.nodes.iter().all(|n| n.defaults == [DEFAULT_LISTEN] && n.ruleset.rule_count() > 0));
    assert!(s.nodes.iter().all(|n| n.listeners.is_none()));
}

/// A copy of a seed snapshot in a fresh temporary directory, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn copy_of(seed_name: &str, tag: &str) -> Temp {
        let dir = std::env::temp_dir().join(format!("natpath-snapshot-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy(&seed(seed_name), &dir);
        Temp(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// The path as errors print it.
    fn shown(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path(rel)).unwrap();
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dst = to.join(e.file_name());
        if p.is_dir() {
            copy(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

/// The seed's cluster.toml for case A, with `node1`'s table rewritten.
const CLUSTER_A: &str = "[[node]]\nname = \"node1\"\nlan = \"ens192\"\n\n[[node]]\nname = \"node2\"\nlan = \"ens192\"\n\n[[host]]\nname = \"client\"\naddress = \"10.0.0.53/24\"\ngateway = \"10.0.0.1\"\n\n[[pod]]\nname = \"default/nginx\"\nnode = \"node1\"\naddress = \"192.168.231.70\"\niface = \"cali583c2cee4e2\"\nlisten = [\"tcp/80\"]\n";

#[test]
fn missing_required_file() {
    let t = Temp::copy_of("seed-ipip-local", "missing");
    t.remove("nodes/node2/ip-route");
    let errs = load_err(&t.0);
    has(
        &errs,
        &format!(
            "{}:1:1: missing required file: expected the output of `ip route show table all` on node `node2`",
            t.shown("nodes/node2/ip-route")
        ),
    );
}

#[test]
fn unknown_key_in_cluster_toml() {
    let t = Temp::copy_of("seed-ipip-local", "unknown-key");
    t.write("cluster.toml", &CLUSTER_A.replace("lan = \"ens192\"\n\n[[host]]", "lna = \"ens192\"\n\n[[host]]"));
    let errs = load_err(&t.0);
    has(&errs, &format!("{}:7:1: unknown field `lna`, expected `name` or `lan`", t.shown("cluster.toml")));
}

#[test]
fn bad_address_in_cluster_toml() {
    let t = Temp::copy_of("seed-ipip-local", "bad-address");
    t.write("cluster.toml", &CLUSTER_A.replace("192.168.231.70", "192.168.231.700"));
    let errs = load_err(&t.0);
    has(&errs, &format!("{}:17:11: invalid IPv4 address syntax", t.shown("cluster.toml")));
}

#[test]
fn node_directory_without_node_table() {
    let t = Temp::copy_of("seed-ipip-local", "extra-dir");
    copy(&t.path("nodes/node2"), &t.path("nodes/node3"));
    let errs = load_err(&t.0);
    has(
        &errs,
        &format!(
            "{}:1:1: directory {} has no [[node]] with name = \"node3\" in cluster.toml",
            t.shown("cluster.toml"),
            t.shown("nodes/node3")
        ),
    );
}

#[test]
fn node_table_without_directory() {
    let t = Temp::copy_of("seed-ipip-local", "extra-node");
    t.write("cluster.toml", &format!("{CLUSTER_A}\n[[node]]\nname = \"node3\"\nlan = \"ens192\"\n"));
    let errs = load_err(&t.0);
    has(&errs, &format!("{}:22:8: node `node3` has no directory {}", t.shown("cluster.toml"), t.shown("nodes/node3")));
}

#[test]
fn pod_on_unknown_node() {
    let t = Temp::copy_of("seed-ipip-local", "pod-node");
    t.write("cluster.toml", &CLUSTER_A.replace("node = \"node1\"", "node = \"node9\""));
    let errs = load_err(&t.0);
    has(
        &errs,
        &format!(
            "{}:16:8: pod `default/nginx` is on node `node9`, which no [[node]] declares (nodes: node1, node2)",
            t.shown("cluster.toml")
        ),
    );
}

#[test]
fn duplicate_node_and_bad_listen() {
    let t = Temp::copy_of("seed-ipip-local", "dup");
    let text = CLUSTER_A.replace("name = \"node2\"", "name = \"node1\"").replace("tcp/80", "http");
    t.write("cluster.toml", &text);
    let errs = load_err(&t.0);
    let c = t.shown("cluster.toml");
    has(&errs, &format!("{c}:6:8: duplicate node `node1` (first declared at line 2)"));
    has(
        &errs,
        &format!(
            "{c}:19:10: expected `tcp/PORT`, `udp/PORT` or `sctp/PORT` in pod `default/nginx`'s `listen`, found `http`"
        ),
    );
}

#[test]
fn missing_interfaces() {
    let t = Temp::copy_of("seed-ipip-local", "ifaces");
    t.write(
        "cluster.toml",
        &CLUSTER_A
            .replace("cali583c2cee4e2", "cali000")
            .replace("lan = \"ens192\"\n\n[[host]]", "lan = \"eth0\"\n\n[[host]]"),
    );
    let errs = load_err(&t.0);
    let c = t.shown("cluster.toml");
    has(
        &errs,
        &format!(
            "{c}:7:7: node `node2`: expected its LAN interface `eth0` in {}, found only lo, ens192, tunl0",
            t.shown("nodes/node2/ip-addr")
        ),
    );
    has(&errs, &format!("{c}:18:9: pod `default/nginx`: expected its interface `cali000` in {}, found only lo, ens192, tunl0, cali583c2cee4e2", t.shown("nodes/node1/ip-addr")));
}

#[test]
fn unknown_file_and_dump_errors_all_reported() {
    let t = Temp::copy_of("seed-ipip-local", "files");
    t.write("nodes/node1/ip-routes", "default via 10.0.0.1 dev ens192\n");
    let route = std::fs::read_to_string(t.path("nodes/node2/ip-route")).unwrap();
    t.write("nodes/node2/ip-route", &route.replace("blackhole", "blockhole"));
    t.write("nodes/node2/ip-rule", "0:\tfrom all lookup\n");
    let errs = load_err(&t.0);
    has(&errs, &format!("{}:1:1: unknown file `ip-routes`: expected one of iptables-save, ipset-save, ip-route, ip-addr, ip-rule, sysctl, ip-link, ip-neigh, bridge-fdb, ss-listen", t.shown("nodes/node1/ip-routes")));
    has(&errs, &format!("{}:4:1: unknown route type `blockhole`: expected unicast, local, broadcast, multicast, anycast, blackhole, unreachable, prohibit, throw or nat", t.shown("nodes/node2/ip-route")));
    has(
        &errs,
        &format!(
            "{}:1:19: expected a table name or number after `lookup`, found the end of the line",
            t.shown("nodes/node2/ip-rule")
        ),
    );
}

#[test]
fn not_utf8() {
    let t = Temp::copy_of("seed-ipip-local", "utf8");
    std::fs::write(t.path("nodes/node1/sysctl"), b"net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.rp_filter = \xff\n")
        .unwrap();
    let errs = load_err(&t.0);
    has(&errs, &format!("{}:2:31: expected text, found bytes that are not UTF-8", t.shown("nodes/node1/sysctl")));
}

#[test]
fn missing_cluster_toml_and_nodes() {
    let dir = std::env::temp_dir().join(format!("natpath-snapshot-test-{}-empty", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let errs = load_err(&dir);
    assert_eq!(
        errs,
        [
            format!(
                "{}:1:1: missing cluster.toml: expected the snapshot's manifest (docs/snapshot-format.md)",
                dir.join("cluster.toml").display()
            ),
            format!("{}:1:1: missing directory nodes/: expected one directory per node", dir.join("nodes").display()),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Absent optional files take their defaults, which the node lists.
#[test]
fn defaults_of_absent_files() {
    let t = Temp::copy_of("seed-ipip-local", "defaults");
    t.remove("nodes/node2/ip-rule");
    t.remove("nodes/node2/sysctl");
    let s = load_ok(&t.0);
    let n2 = s.node("node2").unwrap();
    assert_eq!(n2.defaults, [DEFAULT_IP_RULE, DEFAULT_SYSCTL, DEFAULT_LISTEN]);
    assert_eq!(n2.ip_rules.iter().map(|r| r.priority).collect::<Vec<_>>(), [0, 32766, 32767]);
    assert!(n2.sysctl.ip_forward());
    assert_eq!(n2.sysctl.rp_filter("ens192"), 0);
    assert_eq!(DEFAULT_IP_RULE, "no ip-rule: the kernel's default rules 0 local, 32766 main, 32767 default");
    assert_eq!(DEFAULT_SYSCTL, "no sysctl: rp_filter 0 and ip_forward 1");
    assert_eq!(DEFAULT_LISTEN, "no ss-listen: the node answers on every port");
}

/// The rules name ipsets: without ipset-save, each use is an error at its rule.
#[test]
fn ipset_named_by_rules_is_required() {
    let t = Temp::copy_of("seed-ipip-local", "ipsets");
    t.remove("nodes/node1/ipset-save");
    let errs = load_err(&t.0);
    let want =
        format!("rule uses ipset `cali40masq-ipam-pools`, but the node has no {}", t.shown("nodes/node1/ipset-save"));
    assert!(
        errs.iter().any(|e| e.starts_with(&t.shown("nodes/node1/iptables-save")) && e.ends_with(&want)),
        "{errs:?}"
    );
}

/// ip-link, ip-neigh and bridge-fdb are read and merged when present.
#[test]
fn link_layer_files() {
    let t = Temp::copy_of("seed-ipip-local", "links");
    t.write(
        "nodes/node1/ip-link",
        "3: tunl0@NONE: <NOARP,UP,LOWER_UP> mtu 1440 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\n    link/ipip 0.0.0.0 brd 0.0.0.0 promiscuity 0 allmulti 0 minmtu 0 maxmtu 0 \n    ipip any remote any local any ttl inherit nopmtudisc addrgenmode eui64 numtxqueues 1 numrxqueues 1 \n",
    );
    t.write("nodes/node1/ip-neigh", "10.0.0.52 dev ens192 lladdr 06:68:95:33:cb:c8 REACHABLE\n");
    t.write("nodes/node1/bridge-fdb", "33:33:00:00:00:01 dev ens192 self permanent\n");
    let s = load_ok(&t.0);
    let n1 = s.node("node1").unwrap();
    assert_eq!(n1.interfaces.iter().find(|i| i.name == "tunl0").unwrap().kind.as_deref(), Some("ipip"));
    assert_eq!((n1.neighbors.len(), n1.fdb.len()), (1, 1));
}

/// Issue 13: a dump cut inside `*nat` (no `COMMIT`), on one node or on
/// every node, is refused as iptables-restore refuses it, never read as a
/// smaller ruleset; and `iptables -S` lines are not a node's dump.
#[test]
fn a_cut_or_headerless_dump_is_refused() {
    let t = Temp::copy_of("seed-ipip-remote", "cut");
    for node in ["node1", "node2"] {
        let rel = format!("nodes/{node}/iptables-save");
        let text = std::fs::read_to_string(t.path(&rel)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let nat = lines.iter().position(|l| *l == "*nat").unwrap();
        let commit = nat + lines[nat..].iter().position(|l| *l == "COMMIT").unwrap();
        // Cut at a line boundary two lines before the table's COMMIT.
        t.write(&rel, &format!("{}\n", lines[..commit - 2].join("\n")));
        let errs = load_err(&t.0);
        has(
            &errs,
            &format!(
                "{}:{}:1: table `nat` has no `COMMIT`: the dump was cut (iptables-restore refuses it: COMMIT expected); collect the whole `iptables-save` output",
                t.shown(&rel),
                nat + 1
            ),
        );
    }
    t.write("nodes/node1/iptables-save", "-P PREROUTING ACCEPT\n-A PREROUTING -j ACCEPT\n");
    let t2 = Temp::copy_of("seed-ipip-remote", "headerless");
    t2.write("nodes/node1/iptables-save", "-P FORWARD ACCEPT\n-A FORWARD -j ACCEPT\n");
    let errs = load_err(&t2.0);
    has(
        &errs,
        &format!(
            "{}:1:1: rules without a `*filter` line: a snapshot needs `iptables-save` output, not `iptables -S` or a paste",
            t2.shown("nodes/node1/iptables-save")
        ),
    );
}

/// Issue 13: inputs that describe no consistent cluster are refused where
/// they are written, instead of checking and tracing a cluster the dumps
/// do not describe.
#[test]
fn inconsistent_snapshots_are_refused_where_they_are_written() {
    // A host named like a node.
    let t = Temp::copy_of("seed-ipip-remote", "host-name");
    let toml =
        std::fs::read_to_string(t.path("cluster.toml")).unwrap().replace("name = \"client\"", "name = \"node2\"");
    t.write("cluster.toml", &toml);
    let errs = load_err(&t.0);
    // The host's name is the last `name = "node2"` of the file.
    let host_line = toml.lines().enumerate().filter(|(_, l)| *l == "name = \"node2\"").map(|(i, _)| i).last().unwrap();
    assert!(
        errs.iter().any(|e| e.starts_with(&format!("{}:{}:", t.shown("cluster.toml"), host_line + 1))
            && e.ends_with("host `node2` has the name of a node: hosts, pods and nodes need names of their own")),
        "{errs:#?}"
    );

    // Two nodes with the same address (node2's dump copied over node1's).
    let t = Temp::copy_of("seed-ipip-remote", "same-addr");
    let addr1 = std::fs::read_to_string(t.path("nodes/node1/ip-addr")).unwrap();
    t.write("nodes/node1/ip-addr", &addr1.replace("10.0.0.51/24", "10.0.0.52/24"));
    let errs = load_err(&t.0);
    assert!(
        errs.iter().any(|e| e.contains("node `node2` has 10.0.0.52 on `ens192`, which node `node1` has too")),
        "{errs:#?}"
    );

    // A route through a device the node does not have.
    let t = Temp::copy_of("seed-ipip-remote", "route-dev");
    let routes = std::fs::read_to_string(t.path("nodes/node1/ip-route")).unwrap();
    t.write("nodes/node1/ip-route", &format!("{routes}10.9.0.0/16 dev eth7 scope link\n"));
    let errs = load_err(&t.0);
    let n = routes.lines().count() + 1;
    has(
        &errs,
        &format!(
            "{}:{n}:1: node `node1`: the route leaves by `eth7`, which is not in its ip-addr",
            t.shown("nodes/node1/ip-route")
        ),
    );

    // `ip route` without `table all`: no local table.
    let t = Temp::copy_of("seed-ipip-remote", "no-local");
    let routes = std::fs::read_to_string(t.path("nodes/node2/ip-route")).unwrap();
    let main_only: Vec<&str> = routes.lines().filter(|l| !l.contains("table local")).collect();
    t.write("nodes/node2/ip-route", &(main_only.join("\n") + "\n"));
    let errs = load_err(&t.0);
    has(
        &errs,
        &format!(
            "{}:1:1: node `node2`: no route of table `local`: expected the output of `ip route show table all` (plain `ip route` leaves out the local table, and the node would own no address)",
            t.shown("nodes/node2/ip-route")
        ),
    );

    // An address whose prefix the node does not route (the LAN's /24
    // edited to /16: exit 0 before).
    let t = Temp::copy_of("seed-ipip-remote", "prefix");
    let addr = std::fs::read_to_string(t.path("nodes/node1/ip-addr")).unwrap();
    t.write("nodes/node1/ip-addr", &addr.replace("10.0.0.51/24", "10.0.0.51/16"));
    let errs = load_err(&t.0);
    assert!(
        errs.iter().any(|e| e.starts_with(&t.shown("nodes/node1/ip-addr"))
            && e.ends_with("node `node1` has 10.0.0.51/16 on `ens192`, but its ip-route has no route to 10.0.0.0/16 by `ens192`, which the kernel adds for every address without `noprefixroute`: ip-addr and ip-route are not from one capture")),
        "{errs:#?}"
    );
    // With `noprefixroute` the kernel adds none, and none is expected.
    let with_flag =
        addr.replace("inet 10.0.0.51/24 scope global ens192", "inet 10.0.0.51/16 scope global noprefixroute ens192");
    assert_ne!(with_flag, addr);
    t.write("nodes/node1/ip-addr", &with_flag);
    load_ok(&t.0);
}

/// Who is who: a pod no route of its node leads to, a host or pod with a
/// node's address, two pods or hosts at one address and a pod named like
/// a node are refused at the line of cluster.toml that says so, not
/// checked as a cluster that loses packets (each was exit 1 or 0 before).
#[test]
fn declarations_the_dumps_contradict_are_refused_at_their_line() {
    let line_of = |text: &str, needle: &str, nth: usize| {
        text.lines().enumerate().filter(|(_, l)| l.contains(needle)).map(|(i, _)| i + 1).nth(nth).unwrap()
    };
    let edit = |label: &str, from: &str, to: &str| {
        let t = Temp::copy_of("seed-ipip-remote", label);
        let toml = std::fs::read_to_string(t.path("cluster.toml")).unwrap();
        assert!(toml.contains(from), "{from}");
        let toml = toml.replacen(from, to, 1);
        t.write("cluster.toml", &toml);
        (t, toml)
    };

    // The pod moved to an address its node has no route to.
    let (t, toml) = edit("pod-addr", "address = \"192.168.233.136\"", "address = \"192.168.233.137\"");
    let errs = load_err(&t.0);
    let at = format!("{}:{}:", t.shown("cluster.toml"), line_of(&toml, "192.168.233.137", 0));
    assert!(
        errs.iter().any(|e| e.starts_with(&at)
            && e.contains("is declared at 192.168.233.137 behind `calib992f6c0b80` on node `node2`, but its best route there, 192.168.233.128/26 at ")
            && e.contains("is a blackhole route: cluster.toml and the node's ip-route disagree")),
        "{errs:#?}"
    );
    // Behind another interface than the one its route leaves by.
    let (t, _) = edit("pod-iface", "iface = \"calib992f6c0b80\"", "iface = \"cali0000000000\"");
    let errs = load_err(&t.0);
    assert!(
        errs.iter().any(|e| e
            .contains("behind `cali0000000000` on node `node2`, but its best route there, 192.168.233.136/32 at ")
            && e.contains("leaves by `calib992f6c0b80`")),
        "{errs:#?}"
    );

    // A host with a node's address.
    let (t, toml) = edit("host-addr", "10.0.0.53/24", "10.0.0.51/24");
    let errs = load_err(&t.0);
    has(
        &errs,
        &format!(
            "{}:{}:11: host `client` has the address 10.0.0.51 of node `node1` (its ip-addr): expected an address of its own",
            t.shown("cluster.toml"),
            line_of(&toml, "10.0.0.51/24", 0)
        ),
    );

    // A pod named like a node.
    let (t, _) = edit("pod-name", "name = \"default/nginx-854f5d4bbd-x7k2p\"", "name = \"node1\"");
    let errs = load_err(&t.0);
    assert!(
        errs.iter()
            .any(|e| e.ends_with("pod `node1` has the name of a node: hosts, pods and nodes need names of their own")),
        "{errs:#?}"
    );

    // Two hosts at one address.
    let t = Temp::copy_of("seed-ipip-remote", "two-hosts");
    let toml = std::fs::read_to_string(t.path("cluster.toml")).unwrap();
    t.write("cluster.toml", &format!("{toml}\n[[host]]\nname = \"client2\"\naddress = \"10.0.0.53/24\"\n"));
    let errs = load_err(&t.0);
    assert!(errs.iter().any(|e| e.ends_with("host `client2` has the address 10.0.0.53 of host `client`: expected an address of its own (two captures mixed, or a pod restarted elsewhere?)")), "{errs:#?}");
}

/// `ss-listen` says what a node answers on: the trace delivers to the
/// node where a socket takes the packet and refuses it elsewhere.
#[test]
fn a_node_answers_where_it_listens() {
    let s = load_ok(&seed("node-listeners"));
    let n1 = s.node("node1").unwrap();
    assert!(n1.defaults.is_empty(), "{:?}", n1.defaults);
    let ls = n1.listeners.as_ref().unwrap();
    assert!(ls.iter().any(|l| l.takes(6, "10.0.0.51".parse().unwrap(), 22)));
    assert!(!ls.iter().any(|l| l.takes(6, "10.0.0.51".parse().unwrap(), 9099)), "9099 is on 127.0.0.1 only");
    use natpath_model::trace::Outcome;
    for (port, outcome) in
        [(22, Outcome::Delivered), (10250, Outcome::Delivered), (9099, Outcome::Rejected), (2222, Outcome::Rejected)]
    {
        let probe = natpath_model::trace::Probe {
            from: "client".into(),
            to: format!("10.0.0.51:{port}"),
            dst: "10.0.0.51".parse().unwrap(),
            dport: port,
            proto: natpath_model::ruleset::Proto::TCP,
            sport: 40000,
            via: None,
        };
        let t = natpath_model::walk::trace(&s, &probe, &natpath_model::walk::TraceOptions::default()).unwrap();
        let b = &t.branches[0];
        assert_eq!(b.outcome, outcome, "port {port}: {:?}", b.reason);
        if outcome == Outcome::Rejected {
            assert_eq!(b.reason.as_deref(), Some(format!("node1 does not listen on tcp/{port}").as_str()));
        }
    }
}

/// ip-addr and ip-route from two captures (the LAN addresses of two nodes
/// swapped) are refused where the address is, and an empty ip-route where
/// the file is: neither can be a node's `ip route show table all`.
#[test]
fn ip_addr_and_ip_route_must_be_one_capture() {
    let t = Temp::copy_of("seed-ipip-remote", "swapped-lan");
    let a1 = std::fs::read_to_string(t.0.join("nodes/node1/ip-addr")).unwrap();
    let a2 = std::fs::read_to_string(t.0.join("nodes/node2/ip-addr")).unwrap();
    t.write("nodes/node1/ip-addr", &a1.replace("10.0.0.51/24", "10.0.0.52/24"));
    t.write("nodes/node2/ip-addr", &a2.replace("10.0.0.52/24", "10.0.0.51/24"));
    let errs = load_err(&t.0);
    has(&errs, &format!("{}:5:1: node `node1` has 10.0.0.52 on `ens192`, but its ip-route has no `local 10.0.0.52` route in table local, which the kernel adds for every address of an up device: ip-addr and ip-route are not from one capture", t.shown("nodes/node1/ip-addr")));
    let t = Temp::copy_of("seed-ipip-remote", "empty-route");
    t.write("nodes/node2/ip-route", "");
    let errs = load_err(&t.0);
    has(&errs, &format!("{}:1:1: node `node2`: no route of table `local`: expected the output of `ip route show table all` (plain `ip route` leaves out the local table, and the node would own no address)", t.shown("nodes/node2/ip-route")));
}

/// The walk's indexes of who is where give what the snapshot's searches
/// give, for every address, device and pod of every corpus snapshot
/// (calico-vxlan has VXLAN gateways; kube-proxy-cidr pods on both nodes).
#[test]
fn edge_indexes_agree_with_the_searches() {
    for name in ["seed-ipip-remote", "calico-vxlan", "kube-proxy-cidr", "multi-endpoint", "kube-proxy-1.28-lb"] {
        let s = load_ok(&seed(name));
        let edge = natpath_model::edge::Edge::new(&s);
        let mut asked = 0;
        for n in &s.nodes {
            for i in &n.interfaces {
                for a in &i.addrs {
                    let a = a.addr.addr();
                    assert_eq!(edge.lan_owner(a), s.lan_owner(a), "{name}: LAN owner of {a}");
                    for d in &s.nodes {
                        for j in &d.interfaces {
                            assert_eq!(
                                edge.vtep_owner(&j.name, a),
                                s.vtep_owner(&j.name, a),
                                "{name}: {a} on {}",
                                j.name
                            );
                            asked += 1;
                        }
                    }
                }
            }
            for i in &n.interfaces {
                let want = s.cluster.pods.iter().position(|p| p.node == n.name && p.iface == i.name);
                assert_eq!(edge.pod_behind(&n.name, &i.name), want, "{name}: pod behind {} on {}", i.name, n.name);
            }
        }
        let pods = s.cluster.pods.iter().filter(|p| edge.pod_behind(&p.node, &p.iface).is_some()).count();
        assert_eq!(pods, s.cluster.pods.len(), "{name}: every pod is behind its device");
        assert!(asked > 0 && edge.lan_owner(std::net::Ipv4Addr::new(203, 0, 113, 9)).is_none());
    }
}
