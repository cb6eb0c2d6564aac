//! Loading a snapshot directory (docs/snapshot-format.md) into one value: the manifest,
//! and per node its ruleset, ipsets, interfaces, routes, policy rules,
//! sysctls and, when given, device details, neighbours and fdb entries.
//!
//! Contract: never panics; every problem of every file is reported (not only
//! the first) with its file path, line and column; problems that concern a
//! whole file or directory (a missing required file, an unknown file, a
//! directory without a `[[node]]`) are located at its line 1, column 1 or at
//! the cluster.toml key that names it. A missing optional file takes its
//! documented default, and the defaults used are listed in
//! [`Node::defaults`] so that verdicts can print them. Cross-file checks:
//! every `[[node]]` has a directory and every directory a `[[node]]`, the
//! LAN interface and each pod's interface exist in the node's `ip-addr`, and
//! every ipset a rule or a `list:set` names is in the node's `ipset-save`.

use crate::cluster::{self, Cluster, KeyLocs};
use crate::error::{ParseError, ParseErrors};
use crate::loc::Loc;
use crate::netstate::{FdbEntry, Interface, IpRule, IpSet, Neighbor, Route, Sysctl};
use crate::parse::{ipaddr, iproute, iprule, ipset, iptables, sysctl};
use crate::ruleset::{Match, Ruleset};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One node's state, read from `nodes/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// The node's name (its directory).
    pub name: String,
    /// The LAN interface from cluster.toml.
    pub lan: String,
    /// `iptables-save`.
    pub ruleset: Ruleset,
    /// `ipset-save` (empty when absent).
    pub ipsets: Vec<IpSet>,
    /// `ip-addr`, in device order, with the kinds and VXLAN details of
    /// `ip-link` merged in when it is present.
    pub interfaces: Vec<Interface>,
    /// `ip-route`, every table.
    pub routes: Vec<Route>,
    /// `ip-rule` (the kernel's three default rules when absent).
    pub ip_rules: Vec<IpRule>,
    /// `sysctl` (empty when absent: defaults apply).
    pub sysctl: Sysctl,
    /// `ip-neigh` (empty when absent).
    pub neighbors: Vec<Neighbor>,
    /// `bridge-fdb` (empty when absent).
    pub fdb: Vec<FdbEntry>,
    /// `ss-listen`: the sockets the node answers on; `None` when absent
    /// (then it answers on every port).
    pub listeners: Option<Vec<crate::parse::ss::Listener>>,
    /// The defaults taken for absent optional files, one sentence each.
    pub defaults: Vec<String>,
}

/// A whole snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// The directory it was read from.
    pub root: PathBuf,
    /// cluster.toml.
    pub cluster: Cluster,
    /// Nodes in cluster.toml order.
    pub nodes: Vec<Node>,
}

impl Snapshot {
    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The first node whose LAN interface has `addr`.
    pub fn lan_owner(&self, addr: Ipv4Addr) -> Option<usize> {
        self.nodes.iter().position(|n| n.lan_addrs().contains(&addr))
    }

    /// The first node whose device `dev` has `addr`: for a VXLAN device,
    /// the VTEP behind that gateway.
    pub fn vtep_owner(&self, dev: &str, addr: Ipv4Addr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.interfaces.iter().any(|i| i.name == dev && i.addrs.iter().any(|a| a.addr.addr() == addr)))
    }
}

/// The overlay a tunnel device carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    /// IPIP (`tunl0`, or a device of kind or link type `ipip`).
    Ipip,
    /// VXLAN (`vxlan.calico`, `flannel.N`, or a device of kind `vxlan`).
    Vxlan,
}

impl Node {
    /// The addresses of the LAN interface, in dump order.
    pub fn lan_addrs(&self) -> Vec<Ipv4Addr> {
        self.interfaces
            .iter()
            .filter(|i| i.name == self.lan)
            .flat_map(|i| i.addrs.iter().map(|a| a.addr.addr()))
            .collect()
    }

    /// The tunnel device `dev` is, if it is one.
    pub fn tunnel_kind(&self, dev: &str) -> Option<Tunnel> {
        let i = self.interfaces.iter().find(|i| i.name == dev);
        let kind = i.and_then(|i| i.kind.as_deref());
        let link = i.and_then(|i| i.link_type.as_deref());
        if kind == Some("ipip") || link == Some("ipip") || dev == "tunl0" {
            Some(Tunnel::Ipip)
        } else if kind == Some("vxlan") || dev.starts_with("vxlan") || dev.starts_with("flannel.") {
            Some(Tunnel::Vxlan)
        } else {
            None
        }
    }

    /// The node's first device of tunnel kind `want`.
    pub fn tunnel_dev(&self, want: Tunnel) -> Option<&str> {
        self.interfaces.iter().find(|i| self.tunnel_kind(&i.name) == Some(want)).map(|i| i.name.as_str())
    }
}

/// The files of a node directory: name, required, what it holds.
pub const NODE_FILES: &[(&str, bool, &str)] = &[
    ("iptables-save", true, "`iptables-save` (or `iptables-save -c`)"),
    ("ipset-save", false, "`ipset save`"),
    ("ip-route", true, "`ip route show table all`"),
    ("ip-addr", true, "`ip addr show`"),
    ("ip-rule", false, "`ip rule show`"),
    ("sysctl", false, "`sysctl net.ipv4`"),
    ("ip-link", false, "`ip -d link show`"),
    ("ip-neigh", false, "`ip neigh show`"),
    ("bridge-fdb", false, "`bridge fdb show`"),
    ("ss-listen", false, "`ss -tuln`"),
];

/// The default when `ss-listen` is absent.
pub const DEFAULT_LISTEN: &str = "no ss-listen: the node answers on every port";

/// The default when `ip-rule` is absent.
pub const DEFAULT_IP_RULE: &str = "no ip-rule: the kernel's default rules 0 local, 32766 main, 32767 default";
/// The default when `sysctl` is absent.
pub const DEFAULT_SYSCTL: &str = "no sysctl: rp_filter 0 and ip_forward 1";

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn at_start(p: &Path) -> Loc {
    Loc::new(&Arc::from(path_str(p)), 1, 1)
}

/// The text of `p`; `Ok(None)` when it does not exist.
fn read_text(p: &Path) -> Result<Option<String>, ParseError> {
    let bytes = match crate::input::read_file(p) {
        Ok(b) => b,
        Err(crate::input::InputError::Missing(_)) => return Ok(None),
        Err(e) => return Err(ParseError::new(at_start(p), e.reason())),
    };
    match String::from_utf8(bytes) {
        Ok(t) => Ok(Some(t)),
        Err(e) => {
            let good = e.as_bytes().get(..e.utf8_error().valid_up_to()).unwrap_or(&[]);
            let text = String::from_utf8_lossy(good);
            let loc = cluster::loc_at(&text, text.len(), &Arc::from(path_str(p)));
            Err(ParseError::new(loc, "expected text, found bytes that are not UTF-8"))
        }
    }
}

/// Read the snapshot at `dir`.
///
/// Fails, with every problem found, when cluster.toml is missing or
/// invalid, a `[[node]]` has no directory under `nodes/` or a directory no
/// `[[node]]`, a node directory lacks `iptables-save`, `ip-route` or
/// `ip-addr` or holds a file natpath does not know, any dump does not
/// parse, or the cross-file checks of the module contract fail.
pub fn load(dir: &Path) -> Result<Snapshot, ParseErrors> {
    let mut errs = ParseErrors::default();
    let cpath = dir.join("cluster.toml");
    let cfile: Arc<str> = Arc::from(path_str(&cpath));
    let parsed = match read_text(&cpath) {
        Ok(Some(text)) => match cluster::parse_with_locs(&text, &cfile) {
            Ok(c) => Some(c),
            Err(e) => {
                errs.0.extend(e.0);
                None
            }
        },
        Ok(None) => {
            errs.push(ParseError::new(
                at_start(&cpath),
                "missing cluster.toml: expected the snapshot's manifest (docs/snapshot-format.md)",
            ));
            None
        }
        Err(e) => {
            errs.push(e);
            None
        }
    };

    let nodes_dir = dir.join("nodes");
    let mut dirs: Vec<String> = Vec::new();
    let mut have_nodes_dir = true;
    match std::fs::read_dir(&nodes_dir) {
        Ok(rd) => {
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with('.') {
                    continue;
                }
                if entry.path().is_dir() {
                    dirs.push(name);
                } else {
                    errs.push(ParseError::new(
                        at_start(&entry.path()),
                        format!("unexpected file `{name}` in nodes/: expected one directory per node"),
                    ));
                }
            }
        }
        Err(_) => {
            have_nodes_dir = false;
            errs.push(ParseError::new(
                at_start(&nodes_dir),
                "missing directory nodes/: expected one directory per node",
            ));
        }
    }
    dirs.sort();

    // Which directories to read, with the LAN interface cluster.toml gives.
    let mut todo: Vec<(String, String)> = Vec::new();
    if let Some((cluster, _)) = &parsed {
        for n in &cluster.nodes {
            if dirs.contains(&n.name) {
                todo.push((n.name.clone(), n.lan.clone()));
            } else if have_nodes_dir {
                errs.push(ParseError::new(
                    n.loc.clone(),
                    format!("node `{}` has no directory {}", n.name, path_str(&nodes_dir.join(&n.name))),
                ));
            }
        }
        for d in &dirs {
            if !cluster.nodes.iter().any(|n| &n.name == d) {
                errs.push(ParseError::new(
                    Loc::new(&cfile, 1, 1),
                    format!(
                        "directory {} has no [[node]] with name = \"{d}\" in cluster.toml",
                        path_str(&nodes_dir.join(d))
                    ),
                ));
            }
        }
    } else {
        // Still read every directory, to report the dumps' errors too.
        todo = dirs.iter().map(|d| (d.clone(), String::new())).collect();
    }

    let mut nodes = Vec::new();
    // Each node's interfaces, even when another of its files failed, for
    // the cross-file checks.
    let mut ifaces: Vec<(String, Vec<Interface>)> = Vec::new();
    // The nodes are read side by side, one per core; results and errors
    // keep cluster.toml's order.
    let loaded = parallel_map(&todo, |(name, lan)| load_node(&nodes_dir.join(name), name, lan));
    for ((name, _), (node, ifs, e)) in todo.into_iter().zip(loaded) {
        errs.0.extend(e.0);
        if let Some(ifs) = ifs {
            ifaces.push((name, ifs));
        }
        nodes.extend(node);
    }

    let Some((cluster, keys)) = parsed else { return Err(errs) };
    cross_checks(&cluster, &keys, &ifaces, &nodes_dir, &cfile, &mut errs);
    consistency_checks(&cluster, &keys, &nodes, &cfile, &mut errs);
    if errs.is_empty() {
        Ok(Snapshot { root: dir.to_path_buf(), cluster, nodes })
    } else {
        Err(errs)
    }
}

/// The most threads natpath runs at once: `NATPATH_THREADS` when it is a
/// number from 1 to 1024, else as many as the machine gives this process.
/// Answers never depend on it (each unit of solver work has a Z3 context
/// of its own), only the time they take.
pub fn threads() -> usize {
    if let Some(n) = std::env::var("NATPATH_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok()) {
        if (1..=1024).contains(&n) {
            return n;
        }
    }
    std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1)
}

/// `f` of every item, in order, computed on [`threads`] threads (each
/// takes the next item when it is free).
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads();
    if threads <= 1 || items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<R>> = items.iter().map(|_| None).collect();
    std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads.min(items.len()))
            .map(|_| {
                sc.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(x) = items.get(k) else { break };
                        mine.push((k, f(x)));
                    }
                    mine
                })
            })
            .collect();
        for w in workers {
            match w.join() {
                Ok(mine) => {
                    for (k, r) in mine {
                        if let Some(slot) = slots.get_mut(k) {
                            *slot = Some(r);
                        }
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    slots.into_iter().map(|r| r.unwrap_or_else(|| unreachable!("every item was taken by a thread"))).collect()
}

/// The checks that need both cluster.toml and the dumps.
fn cross_checks(
    cluster: &Cluster,
    keys: &KeyLocs,
    ifaces: &[(String, Vec<Interface>)],
    nodes_dir: &Path,
    cfile: &Arc<str>,
    errs: &mut ParseErrors,
) {
    fn names(ifs: &[Interface]) -> Vec<&str> {
        ifs.iter().map(|i| i.name.as_str()).collect()
    }
    let of = |name: &str| ifaces.iter().find(|(n, _)| n == name).map(|(_, ifs)| ifs.as_slice());
    for (i, decl) in cluster.nodes.iter().enumerate() {
        let Some(node) = of(&decl.name) else { continue };
        if !node.iter().any(|i| i.name == decl.lan) {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.nodes, i, "lan", cfile),
                format!(
                    "node `{}`: expected its LAN interface `{}` in {}, found only {}",
                    decl.name,
                    decl.lan,
                    path_str(&nodes_dir.join(&decl.name).join("ip-addr")),
                    cluster::list(&names(node))
                ),
            ));
        }
    }
    for (i, pod) in cluster.pods.iter().enumerate() {
        let Some(node) = of(&pod.node) else { continue };
        if !node.iter().any(|i| i.name == pod.iface) {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.pods, i, "iface", cfile),
                format!(
                    "pod `{}`: expected its interface `{}` in {}, found only {}",
                    pod.name,
                    pod.iface,
                    path_str(&nodes_dir.join(&pod.node).join("ip-addr")),
                    cluster::list(&names(node))
                ),
            ));
        }
    }
}

/// The checks that keep `check` and `trace` from answering about a cluster
/// the dumps do not describe (issue 13): a name shared by a host and a
/// node, an address two nodes claim, a route through a device the node
/// does not have, and routes collected without the local table.
/// What a `[[router]]` must satisfy with the dumps read: its address on a
/// node's LAN segment and no node's, every next hop a node's LAN address or
/// a host's on that segment.
fn router_checks(cluster: &Cluster, keys: &KeyLocs, nodes: &[Node], cfile: &Arc<str>, errs: &mut ParseErrors) {
    use crate::cluster::Via;
    let lans: Vec<(&str, Vec<std::net::Ipv4Addr>)> = nodes.iter().map(|n| (n.name.as_str(), n.lan_addrs())).collect();
    let lan_list = || -> String {
        let v: Vec<String> = nodes
            .iter()
            .flat_map(|n| {
                n.interfaces
                    .iter()
                    .filter(|i| i.name == n.lan)
                    .flat_map(move |i| i.addrs.iter().map(move |a| format!("{} {}", n.name, a.addr)))
            })
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    };
    for (i, r) in cluster.routers.iter().enumerate() {
        let at = KeyLocs::of(&keys.routers, i, "address", cfile);
        if !lans.iter().any(|(_, addrs)| addrs.iter().any(|a| r.address.contains(a))) {
            errs.push(ParseError::new(
                at.clone(),
                format!(
                    "expected router `{}`'s address on a node's LAN segment (LAN addresses: {}), found {}",
                    r.name,
                    lan_list(),
                    r.address
                ),
            ));
        }
        if let Some((n, _)) = lans.iter().find(|(_, addrs)| addrs.contains(&r.address.addr())) {
            errs.push(ParseError::new(
                at,
                format!(
                    "router `{}` has the address {} of node `{n}`: expected an address of its own",
                    r.name,
                    r.address.addr()
                ),
            ));
        }
        for route in &r.parsed {
            match &route.via {
                Via::Name(name) => {
                    let Some((_, addrs)) = lans.iter().find(|(n, _)| n == name) else { continue };
                    if !addrs.iter().any(|a| r.address.contains(a)) {
                        errs.push(ParseError::new(
                            route.loc.clone(),
                            format!(
                                "router `{}`'s route {} goes via node `{name}`, whose LAN interface has no address on the router's segment {}",
                                r.name,
                                route.dst,
                                r.address.trunc()
                            ),
                        ));
                    }
                }
                Via::Addr(a) => {
                    let owned = lans.iter().any(|(_, addrs)| addrs.contains(a))
                        || cluster.hosts.iter().any(|h| h.address.addr() == *a);
                    if !owned && r.address.contains(a) && *a != r.address.addr() {
                        errs.push(ParseError::new(
                            route.loc.clone(),
                            format!(
                                "router `{}`'s route {} goes via {a}, which no node's LAN interface and no host has (LAN addresses: {})",
                                r.name,
                                route.dst,
                                lan_list()
                            ),
                        ));
                    }
                }
            }
        }
    }
}

fn consistency_checks(cluster: &Cluster, keys: &KeyLocs, nodes: &[Node], cfile: &Arc<str>, errs: &mut ParseErrors) {
    router_checks(cluster, keys, nodes, cfile, errs);
    declared_against_dumps(cluster, keys, nodes, cfile, errs);
    let mut owners: Vec<(std::net::Ipv4Addr, &str)> = Vec::new();
    for n in nodes {
        for ifc in &n.interfaces {
            for a in &ifc.addrs {
                let ip = a.addr.addr();
                if ip.is_loopback() {
                    continue;
                }
                match owners.iter().find(|(x, _)| *x == ip) {
                    Some((_, other)) if *other != n.name => errs.push(ParseError::new(
                        ifc.loc.clone(),
                        format!("node `{}` has {ip} on `{}`, which node `{other}` has too: a snapshot's nodes have addresses of their own (two captures of one node?)", n.name, ifc.name),
                    )),
                    Some(_) => {}
                    None => owners.push((ip, n.name.as_str())),
                }
            }
        }
        let has_addr = n.interfaces.iter().any(|i| i.addrs.iter().any(|a| !a.addr.addr().is_loopback()));
        let has_local = n.routes.iter().any(|r| r.table == crate::netstate::TABLE_LOCAL);
        if has_addr && !has_local {
            // An empty ip-route has no line to point at: its first line.
            let file = n.routes.first().map(|r| r.loc.file.clone()).unwrap_or_else(|| {
                let dir = Path::new(&**cfile).parent().unwrap_or(Path::new(""));
                Arc::from(path_str(&dir.join("nodes").join(&n.name).join("ip-route")))
            });
            errs.push(ParseError::new(
                Loc::new(&file, 1, 1),
                format!("node `{}`: no route of table `local`: expected the output of `ip route show table all` (plain `ip route` leaves out the local table, and the node would own no address)", n.name),
            ));
        }
        // The kernel gives every address of an up device its `local` route
        // in table local: an address without one means ip-addr and
        // ip-route are not one capture (two nodes' files swapped, say).
        if has_local {
            for ifc in n.interfaces.iter().filter(|i| i.is_up()) {
                for a in &ifc.addrs {
                    let ip = a.addr.addr();
                    let routed = n.routes.iter().any(|r| {
                        r.table == crate::netstate::TABLE_LOCAL
                            && r.kind == crate::netstate::RouteType::Local
                            && r.dst.contains(&ip)
                    });
                    if !routed {
                        errs.push(ParseError::new(
                            ifc.loc.clone(),
                            format!("node `{}` has {ip} on `{}`, but its ip-route has no `local {ip}` route in table local, which the kernel adds for every address of an up device: ip-addr and ip-route are not from one capture", n.name, ifc.name),
                        ));
                    }
                }
            }
        }
        // The kernel also routes each address's prefix by its device in
        // table main (`proto kernel scope link`), unless the address is
        // `noprefixroute`, a /32 or on a device that is down: an address
        // whose prefix route is missing (a /24 edited to /16, one node's
        // ip-addr beside another capture's ip-route) is not one capture.
        for ifc in n.interfaces.iter().filter(|i| i.is_up()) {
            for a in &ifc.addrs {
                let net = a.addr.trunc();
                if a.noprefixroute || a.addr.prefix_len() >= 31 || a.addr.addr().is_loopback() || a.peer.is_some() {
                    continue;
                }
                let routed = n.routes.iter().any(|r| {
                    r.table == crate::netstate::TABLE_MAIN
                        && r.dst == net
                        && r.nexthops.iter().any(|nh| nh.dev.as_deref() == Some(ifc.name.as_str()))
                });
                if !routed {
                    errs.push(ParseError::new(
                        a.loc.clone(),
                        format!("node `{}` has {} on `{}`, but its ip-route has no route to {net} by `{}`, which the kernel adds for every address without `noprefixroute`: ip-addr and ip-route are not from one capture", n.name, a.addr, ifc.name, ifc.name),
                    ));
                }
            }
        }
        for r in &n.routes {
            for nh in &r.nexthops {
                let Some(dev) = &nh.dev else { continue };
                if !n.interfaces.iter().any(|i| &i.name == dev) {
                    errs.push(ParseError::new(
                        r.loc.clone(),
                        format!("node `{}`: the route leaves by `{dev}`, which is not in its ip-addr", n.name),
                    ));
                }
            }
        }
    }
}

/// What cluster.toml declares must be what the nodes' dumps say: a host
/// or pod does not have a node's address, and each pod is where its node
/// routes its address (the main table's best route leaves by the pod's
/// interface). A pod the routes do not lead to would otherwise be reported
/// as a cluster that loses its packets, when the two inputs disagree
/// (cluster.toml written before a pod restarted, or by hand).
fn declared_against_dumps(cluster: &Cluster, keys: &KeyLocs, nodes: &[Node], cfile: &Arc<str>, errs: &mut ParseErrors) {
    let node_of = |ip: std::net::Ipv4Addr| {
        nodes
            .iter()
            .find(|n| n.interfaces.iter().any(|i| i.addrs.iter().any(|a| a.addr.addr() == ip && !ip.is_loopback())))
    };
    for (i, h) in cluster.hosts.iter().enumerate() {
        if let Some(n) = node_of(h.address.addr()) {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.hosts, i, "address", cfile),
                format!(
                    "host `{}` has the address {} of node `{}` (its ip-addr): expected an address of its own",
                    h.name,
                    h.address.addr(),
                    n.name
                ),
            ));
        }
    }
    // A pod whose address a node also has is not refused: that is a
    // duplicate address in the cluster (the node then takes the pod's
    // packets as its own, or as martians), which the checks show.
    // One routing table per node, not per pod: 300 nodes hold 33,000 pods.
    let fibs: Vec<crate::fib::Fib<'_>> =
        nodes.iter().map(|n| crate::fib::Fib::new(&n.routes, &n.ip_rules, &n.interfaces, &n.sysctl)).collect();
    for (i, p) in cluster.pods.iter().enumerate() {
        let Some(fib) = nodes.iter().position(|n| n.name == p.node).and_then(|k| fibs.get(k)) else { continue };
        let best = fib.table_lookup(crate::netstate::TABLE_MAIN, p.address, None);
        // By its device; or refused by a route of the pod's own address
        // (`unreachable 192.168.1.5`), which someone wrote on purpose and
        // the checks then answer as the kernel does; a failing route of a
        // whole block (Calico's blackhole of its block) is no route.
        let leads = best.is_some_and(|r| match r.kind {
            crate::netstate::RouteType::Unicast => {
                r.nexthops.iter().any(|nh| nh.dev.as_deref() == Some(p.iface.as_str()))
            }
            kind => crate::fib::lookup_fails(kind) && r.dst.prefix_len() == 32,
        });
        if !leads {
            let found = match best {
                Some(r) => {
                    let devs: Vec<&str> = r.nexthops.iter().filter_map(|nh| nh.dev.as_deref()).collect();
                    let leaves = if r.kind != crate::netstate::RouteType::Unicast {
                        format!("is a {} route", format!("{:?}", r.kind).to_lowercase())
                    } else if devs.is_empty() {
                        "leaves by no device".to_string()
                    } else {
                        format!("leaves by `{}`", devs.join("`, `"))
                    };
                    format!("its best route there, {} at {}:{}, {leaves}", r.dst, r.loc.file, r.loc.line)
                }
                None => "it has no route there".to_string(),
            };
            errs.push(ParseError::new(
                KeyLocs::of(&keys.pods, i, "address", cfile),
                format!(
                    "pod `{}` is declared at {} behind `{}` on node `{}`, but {found}: cluster.toml and the node's ip-route disagree (expected a route to {} by `{}`, as the CNI writes for each pod)",
                    p.name, p.address, p.iface, p.node, p.address, p.iface
                ),
            ));
        }
    }
}

/// Every ipset a rule or a `list:set` names must be defined.
fn check_set_refs(ruleset: &Ruleset, ipsets: &[IpSet], have_file: bool, ipset_path: &Path, errs: &mut ParseErrors) {
    let known = |n: &str| ipsets.iter().any(|s| s.name == n);
    let where_ = if have_file {
        format!("{} does not define it", path_str(ipset_path))
    } else {
        format!("the node has no {}", path_str(ipset_path))
    };
    for t in &ruleset.tables {
        for c in &t.chains {
            for r in &c.rules {
                for m in &r.matches {
                    if let Match::Set(s) = m {
                        if !known(&s.name) {
                            errs.push(ParseError::new(
                                r.loc.clone(),
                                format!("rule uses ipset `{}`, but {where_}", s.name),
                            ));
                        }
                    }
                }
            }
        }
    }
    for s in ipsets {
        for e in &s.entries {
            if let Some(m) = &e.set {
                if !known(m) {
                    errs.push(ParseError::new(
                        s.loc.clone(),
                        format!("list:set `{}` has member `{m}`, which no `create` line defines", s.name),
                    ));
                }
            }
        }
    }
}

/// Whether every table of a node's dump is whole. The iptables parser
/// reads partial dumps (a table cut before `COMMIT`, `iptables -S` lines)
/// because bug reports are made of them, but a node of a snapshot must be
/// what `iptables-save` printed: `iptables-restore` refuses a table without
/// `COMMIT`, and a cut table would be checked as if its missing rules did
/// not exist.
fn whole_tables(rs: &crate::ruleset::Ruleset, errs: &mut ParseErrors) -> bool {
    let mut whole = true;
    for t in &rs.tables {
        let why = match t.form {
            crate::ruleset::TableForm::Complete => continue,
            crate::ruleset::TableForm::Unterminated => format!(
                "table `{}` has no `COMMIT`: the dump was cut (iptables-restore refuses it: COMMIT expected); collect the whole `iptables-save` output",
                t.name.as_str()
            ),
            crate::ruleset::TableForm::Headerless => format!(
                "rules without a `*{}` line: a snapshot needs `iptables-save` output, not `iptables -S` or a paste",
                t.name.as_str()
            ),
        };
        errs.push(ParseError::new(t.loc.clone(), why));
        whole = false;
    }
    whole
}

/// Whether the dump is the node's whole ruleset as far as it can tell:
/// `iptables-nft-save` warns when the kernel also holds iptables-legacy
/// tables, which it runs too and the dump does not show. With rules in
/// the dump, both back-ends are in use and natpath, which models one
/// ruleset per node, would check half of them: an error at the warning.
/// The warning alone (every table empty) is the dump of the back-end
/// nobody uses, which `check` reports as nothing in scope.
pub fn one_backend(rs: &crate::ruleset::Ruleset, text: &str, file: &str, errs: &mut ParseErrors) -> bool {
    let Some(line) = iptables::legacy_warning_line(text) else { return true };
    if rs.rule_count() == 0 {
        return true;
    }
    errs.push(ParseError::new(
        Loc::new(&Arc::from(file), line, 1),
        format!(
            "expected the node's whole ruleset, found one back-end's {} rules: iptables-nft-save says the kernel \
             also runs iptables-legacy tables, whose rules are not in this dump (`iptables-legacy-save` prints \
             them); natpath models one ruleset per node, so empty the back-end kube-proxy and Calico do not use \
             and collect again (docs/snapshot-format.md)",
            rs.rule_count()
        ),
    ));
    false
}

/// Read one node directory: the node when every file is right, its
/// interfaces when `ip-addr` is, and every error.
fn load_node(dir: &Path, name: &str, lan: &str) -> (Option<Node>, Option<Vec<Interface>>, ParseErrors) {
    let mut errs = ParseErrors::default();
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut extra: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|f| !f.starts_with('.') && !NODE_FILES.iter().any(|(k, _, _)| k == f))
            .collect();
        extra.sort();
        for f in extra {
            let known: Vec<&str> = NODE_FILES.iter().map(|(k, _, _)| *k).collect();
            errs.push(ParseError::new(
                at_start(&dir.join(&f)),
                format!("unknown file `{f}`: expected one of {}", known.join(", ")),
            ));
        }
    }
    // Read every known file; `None` when absent (an error if required).
    let mut texts: Vec<Option<(String, String)>> = Vec::new();
    for (file, required, what) in NODE_FILES {
        let p = dir.join(file);
        match read_text(&p) {
            Ok(Some(t)) => texts.push(Some((path_str(&p), t))),
            Ok(None) => {
                if *required {
                    errs.push(ParseError::new(
                        at_start(&p),
                        format!("missing required file: expected the output of {what} on node `{name}`"),
                    ));
                }
                texts.push(None);
            }
            Err(e) => {
                errs.push(e);
                texts.push(None);
            }
        }
    }
    let text = |k: &str| -> Option<&(String, String)> {
        NODE_FILES.iter().position(|(f, _, _)| *f == k).and_then(|i| texts.get(i)).and_then(Option::as_ref)
    };
    fn run<T>(r: Result<T, ParseErrors>, errs: &mut ParseErrors) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                errs.0.extend(e.0);
                None
            }
        }
    }
    let ruleset = text("iptables-save").and_then(|(p, t)| {
        run(iptables::parse(t, p, &iptables::Options::default()), &mut errs)
            .filter(|rs| whole_tables(rs, &mut errs) && one_backend(rs, t, p, &mut errs))
    });
    let ipsets = text("ipset-save").map(|(p, t)| run(ipset::parse(t, p), &mut errs));
    let interfaces = text("ip-addr").and_then(|(p, t)| run(ipaddr::parse(t, p), &mut errs));
    let routes = text("ip-route").and_then(|(p, t)| run(iproute::parse(t, p), &mut errs));
    let ip_rules = text("ip-rule").map(|(p, t)| run(iprule::parse(t, p), &mut errs));
    // Read with the node's devices when ip-addr gave them, so that a key
    // naming a near miss of one (`tunI0` for `tunl0`) is an error.
    let devices: Option<Vec<&str>> = interfaces.as_ref().map(|ifs| ifs.iter().map(|i| i.name.as_str()).collect());
    let sysctl = text("sysctl").map(|(p, t)| {
        let parsed = match &devices {
            Some(devs) => sysctl::parse_for_node(t, p, devs),
            None => sysctl::parse(t, p),
        };
        run(parsed, &mut errs)
    });
    let links = text("ip-link").map(|(p, t)| run(ipaddr::parse(t, p), &mut errs));
    let neighbors = text("ip-neigh").map(|(p, t)| run(ipaddr::parse_neigh(t, p), &mut errs));
    let fdb = text("bridge-fdb").map(|(p, t)| run(ipaddr::parse_fdb(t, p), &mut errs));
    let listeners = text("ss-listen").map(|(p, t)| run(crate::parse::ss::parse(t, p), &mut errs));

    let (Some(ruleset), Some(mut interfaces), Some(routes)) = (ruleset, interfaces.clone(), routes) else {
        return (None, interfaces, errs);
    };
    let have_ipset_file = ipsets.is_some();
    let ipsets = match ipsets {
        Some(Some(s)) => s,
        Some(None) => return (None, Some(interfaces), errs),
        None => Vec::new(),
    };
    check_set_refs(&ruleset, &ipsets, have_ipset_file, &dir.join("ipset-save"), &mut errs);

    let mut defaults = Vec::new();
    let ip_rules = match ip_rules {
        Some(r) => r.unwrap_or_default(),
        None => {
            defaults.push(DEFAULT_IP_RULE.to_string());
            crate::fib::default_ip_rules()
        }
    };
    let sysctl = match sysctl {
        Some(s) => s.unwrap_or_default(),
        None => {
            defaults.push(DEFAULT_SYSCTL.to_string());
            Sysctl::default()
        }
    };
    match links {
        Some(Some(links)) => {
            for l in links {
                if let Some(i) = interfaces.iter_mut().find(|i| i.name == l.name) {
                    if l.kind.is_some() {
                        i.kind = l.kind;
                    }
                    if l.vxlan.is_some() {
                        i.vxlan = l.vxlan;
                    }
                    if i.link_type.is_none() {
                        i.link_type = l.link_type;
                    }
                }
            }
        }
        Some(None) => {}
        None => {
            let vx: Vec<&str> = interfaces
                .iter()
                .filter(|i| i.name.starts_with("vxlan") || i.name.starts_with("flannel."))
                .map(|i| i.name.as_str())
                .collect();
            if !vx.is_empty() {
                defaults.push(format!(
                    "no ip-link: the VXLAN parameters (VNI, UDP port, local address) of {} are unknown",
                    vx.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    let neighbors = neighbors.flatten().unwrap_or_default();
    let fdb = fdb.flatten().unwrap_or_default();
    let listeners = match listeners {
        Some(l) => l,
        None => {
            defaults.push(DEFAULT_LISTEN.to_string());
            None
        }
    };
    if !errs.is_empty() {
        return (None, Some(interfaces), errs);
    }
    let checked = interfaces.clone();
    let node = Node {
        name: name.to_string(),
        lan: lan.to_string(),
        ruleset,
        ipsets,
        interfaces,
        routes,
        ip_rules,
        sysctl,
        neighbors,
        fdb,
        listeners,
        defaults,
    };
    (Some(node), Some(checked), errs)
}
