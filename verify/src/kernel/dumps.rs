//! What the referee reads from a snapshot to rebuild it: cluster.toml (with
//! the model's serde types), and from each node's raw dumps only what the
//! kernel needs to be told (interfaces in device order with their addresses,
//! the routes and rules that are not the kernel's own, sysctls, VXLAN peers).
//! The iptables and ipset dumps are not read here at all: they go to
//! `iptables-restore` and `ipset restore` unchanged.
//!
//! Contract: never panics; every problem names `file:line`. Nothing here
//! interprets netfilter semantics: it only turns `ip` output back into `ip`
//! input. Kernel facts relied on: `ip addr` lists devices in the kernel's
//! device order (the order MASQUERADE's fallback source choice walks), and
//! routes marked `proto kernel` (connected and `table local` routes) are
//! re-created by the kernel itself when the addresses are added.

use super::KernelError;
use ipnet::Ipv4Net;
use natpath_model::cluster::Cluster;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// One device of `ip-addr`, in dump order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Name without the `@peer` suffix.
    pub name: String,
    /// Flags between `<` and `>` (empty in `ip -o addr` form).
    pub flags: Vec<String>,
    /// `mtu` when shown.
    pub mtu: Option<u32>,
    /// `ether`, `loopback`, `ipip`, `none`, ... (the `link/` word).
    pub link: String,
    /// The link-layer address of an `ether` device.
    pub mac: Option<String>,
    /// IPv4 addresses in order.
    pub addrs: Vec<Addr>,
    /// Line of the device's first line.
    pub line: usize,
}

impl Iface {
    /// Whether the device is up (a one-line dump does not say: taken as up).
    pub fn up(&self) -> bool {
        self.flags.is_empty() || self.flags.iter().any(|f| f == "UP")
    }
}

/// One `inet` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// The local address and prefix.
    pub net: Ipv4Net,
    /// Arguments for `ip addr add` after the address (peer, brd, scope, flags).
    pub args: Vec<String>,
    /// Dump line.
    pub line: usize,
}

/// One route of `ip-route` (continuation lines joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLine {
    /// The tokens as `ip route add` takes them.
    pub tokens: Vec<String>,
    /// Dump line.
    pub line: usize,
}

impl RouteLine {
    fn value(&self, key: &str) -> Option<&str> {
        let i = self.tokens.iter().position(|t| t == key)?;
        self.tokens.get(i + 1).map(String::as_str)
    }

    /// `proto kernel`: made by the kernel from an address.
    pub fn is_kernel(&self) -> bool {
        self.value("proto") == Some("kernel")
    }

    /// The output device (of the first next hop).
    pub fn dev(&self) -> Option<&str> {
        self.value("dev")
    }

    /// The gateway (of the first next hop).
    pub fn via(&self) -> Option<Ipv4Addr> {
        self.value("via").and_then(|v| v.parse().ok())
    }

    /// The destination prefix (`default` is 0.0.0.0/0, a bare address /32).
    pub fn dst(&self) -> Option<Ipv4Net> {
        let mut it = self.tokens.iter();
        let mut first = it.next()?;
        if ROUTE_TYPES.contains(&first.as_str()) {
            first = it.next()?;
        }
        if first == "default" {
            return Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).ok();
        }
        first.parse::<Ipv4Net>().ok().or_else(|| first.parse::<Ipv4Addr>().ok().and_then(|a| Ipv4Net::new(a, 32).ok()))
    }

    /// The table (`main` when not shown).
    pub fn table(&self) -> &str {
        self.value("table").unwrap_or("main")
    }
}

/// Route types `ip route` prints before the destination.
pub const ROUTE_TYPES: &[&str] =
    &["unicast", "local", "broadcast", "multicast", "throw", "unreachable", "prohibit", "blackhole", "nat", "anycast"];

/// Words `ip route show` prints that `ip route add` does not take.
const ROUTE_STATUS_WORDS: &[&str] = &[
    "linkdown",
    "dead",
    "offload",
    "trap",
    "offload_failed",
    "rt_offload",
    "rt_trap",
    "rt_offload_failed",
    "pervasive",
    "notify",
];

/// One `ip-rule` line other than the kernel's three defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLine {
    /// `pref N` followed by the selector and action tokens.
    pub tokens: Vec<String>,
    /// Dump line.
    pub line: usize,
}

/// A `key = value` of the sysctl dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlLine {
    /// `net.ipv4.conf.ens192.rp_filter`.
    pub key: String,
    /// The value as printed.
    pub value: String,
    /// Dump line.
    pub line: usize,
}

/// VXLAN parameters from `ip -d link` (Calico's defaults where absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    /// Device name.
    pub name: String,
    /// VNI.
    pub id: u32,
    /// UDP port.
    pub dstport: u16,
    /// Local address.
    pub local: Option<Ipv4Addr>,
    /// Underlying device.
    pub dev: Option<String>,
}

/// A node's dumps as the referee needs them.
#[derive(Debug, Clone)]
pub struct NodeDumps {
    /// Node name.
    pub name: String,
    /// LAN interface.
    pub lan: String,
    /// Directory.
    pub dir: PathBuf,
    /// Devices in order.
    pub ifaces: Vec<Iface>,
    /// Routes (all tables).
    pub routes: Vec<RouteLine>,
    /// Non-default policy rules.
    pub rules: Vec<RuleLine>,
    /// Sysctls in dump order.
    pub sysctls: Vec<SysctlLine>,
    /// VXLAN devices described by `ip-link`.
    pub vxlans: Vec<Vxlan>,
    /// `ip-neigh` lines to replay (`ip neigh replace` arguments).
    pub neigh: Vec<(Vec<String>, usize)>,
    /// `bridge-fdb` lines to replay (`bridge fdb append` arguments).
    pub fdb: Vec<(Vec<String>, usize)>,
    /// iptables-save text, unchanged.
    pub iptables: String,
    /// ipset save text, unchanged (empty when absent).
    pub ipset: String,
    /// `ss-listen`: the sockets the node answers on (empty when absent).
    pub listeners: Vec<natpath_model::parse::ss::Listener>,
}

/// A `[[router]]` of cluster.toml as the lab rebuilds it: a machine on
/// the LAN that forwards by its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterDumps {
    /// Its name.
    pub name: String,
    /// Its address with the prefix of its segment.
    pub address: Ipv4Net,
    /// Its routes, each destination with the address of its next hop (a
    /// node's LAN address, a host's address, or the address written).
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
}

/// The whole snapshot as the referee needs it.
#[derive(Debug, Clone)]
pub struct Dumps {
    /// Snapshot directory.
    pub root: PathBuf,
    /// cluster.toml.
    pub cluster: Cluster,
    /// Nodes in cluster.toml order.
    pub nodes: Vec<NodeDumps>,
    /// cluster.toml's routers, in order.
    pub routers: Vec<RouterDumps>,
    /// Probes from the snapshot's `probes` file, with their lines.
    pub probes: Vec<(String, usize)>,
}

fn bad(msg: String) -> KernelError {
    KernelError::BadInput(msg)
}

fn read_text(path: &Path, required: bool) -> Result<Option<String>, KernelError> {
    match natpath_model::input::read_file(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| bad(format!("{}: expected text, found bytes that are not UTF-8", path.display()))),
        Err(natpath_model::input::InputError::Missing(_)) if !required => Ok(None),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Read the snapshot at `dir`.
pub fn load(dir: &Path) -> Result<Dumps, KernelError> {
    let toml_path = dir.join("cluster.toml");
    let text = read_text(&toml_path, true)?.unwrap_or_default();
    let cluster: Cluster = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| text.get(..s.start).map(|t| t.matches('\n').count() + 1).unwrap_or(1)).unwrap_or(1);
        bad(format!("{}:{line}: {}", toml_path.display(), e.message()))
    })?;
    let mut nodes = Vec::new();
    for decl in &cluster.nodes {
        let ndir = dir.join("nodes").join(&decl.name);
        let f = |n: &str| ndir.join(n);
        let req = |n: &str| read_text(&f(n), true).map(Option::unwrap_or_default);
        let opt = |n: &str| read_text(&f(n), false);
        let ip_addr = req("ip-addr")?;
        let ip_route = req("ip-route")?;
        let iptables = req("iptables-save")?;
        let ifaces = parse_ip_addr(&ip_addr, &f("ip-addr"))?;
        if !ifaces.iter().any(|i| i.name == decl.lan) {
            return Err(bad(format!(
                "{}: node `{}` has no interface `{}` (its `lan` in cluster.toml)",
                f("ip-addr").display(),
                decl.name,
                decl.lan
            )));
        }
        let vxlans = match opt("ip-link")? {
            Some(t) => parse_ip_link(&t),
            None => Vec::new(),
        };
        nodes.push(NodeDumps {
            name: decl.name.clone(),
            lan: decl.lan.clone(),
            dir: ndir.clone(),
            ifaces,
            routes: parse_ip_route(&ip_route),
            rules: parse_ip_rule(&opt("ip-rule")?.unwrap_or_default()),
            sysctls: parse_sysctl(&opt("sysctl")?.unwrap_or_default()),
            vxlans,
            neigh: parse_neigh(&opt("ip-neigh")?.unwrap_or_default()),
            fdb: parse_fdb(&opt("bridge-fdb")?.unwrap_or_default()),
            iptables,
            ipset: opt("ipset-save")?.unwrap_or_default(),
            listeners: match opt("ss-listen")? {
                Some(t) => natpath_model::parse::ss::parse(&t, &f("ss-listen").display().to_string())
                    .map_err(|e| bad(e.to_string()))?,
                None => Vec::new(),
            },
        });
    }
    for p in &cluster.pods {
        if !cluster.nodes.iter().any(|n| n.name == p.node) {
            return Err(bad(format!("{}: pod `{}` is on unknown node `{}`", toml_path.display(), p.name, p.node)));
        }
    }
    let routers = cluster
        .routers
        .iter()
        .map(|r| {
            router(r, &cluster, &nodes)
                .map_err(|why| bad(format!("{}: router `{}`: {why}", toml_path.display(), r.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let probes = read_text(&dir.join("probes"), false)?
        .map(|t| {
            t.lines()
                .enumerate()
                .filter_map(|(i, l)| {
                    let l = l.split('#').next().unwrap_or("").trim();
                    (!l.is_empty()).then(|| (l.to_string(), i + 1))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Dumps { root: dir.to_path_buf(), cluster, nodes, routers, probes })
}

/// A router's routes with their next hops as addresses: a node's is its
/// LAN address on the router's segment, a host's its address.
fn router(
    r: &natpath_model::cluster::RouterDecl,
    cluster: &Cluster,
    nodes: &[NodeDumps],
) -> Result<RouterDumps, String> {
    let mut routes = Vec::new();
    for text in &r.routes {
        let (dst, via) = natpath_model::cluster::parse_route(text).map_err(|why| format!("route `{text}`: {why}"))?;
        let next = match via {
            natpath_model::cluster::Via::Addr(a) => a,
            natpath_model::cluster::Via::Name(name) => {
                if let Some(n) = nodes.iter().find(|n| n.name == name) {
                    let lan: Vec<Ipv4Addr> = n
                        .ifaces
                        .iter()
                        .filter(|f| f.name == n.lan)
                        .flat_map(|f| f.addrs.iter().map(|a| a.net.addr()))
                        .collect();
                    lan.iter()
                        .find(|a| r.address.contains(*a))
                        .or(lan.first())
                        .copied()
                        .ok_or_else(|| format!("route `{text}`: node `{name}` has no address on `{}`", n.lan))?
                } else if let Some(h) = cluster.hosts.iter().find(|h| h.name == name) {
                    h.address.addr()
                } else {
                    return Err(format!("route `{text}` goes via `{name}`, which names no node or host"));
                }
            }
        };
        routes.push((dst, next));
    }
    Ok(RouterDumps { name: r.name.clone(), address: r.address, routes })
}

/// `ip addr show` or `ip -o addr show` into devices in order.
pub fn parse_ip_addr(text: &str, path: &Path) -> Result<Vec<Iface>, KernelError> {
    let mut out: Vec<Iface> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_end();
        if l.trim().is_empty() {
            continue;
        }
        let starts_header = l.chars().next().is_some_and(|c| c.is_ascii_digit());
        let mut rest = l.trim_start();
        if starts_header {
            let (_, after) = rest
                .split_once(": ")
                .ok_or_else(|| bad(format!("{}:{line}: expected `N: NAME`, found `{l}`", path.display())))?;
            let mut toks = after.split_whitespace();
            let name_tok = toks.next().unwrap_or("");
            let one_line = !name_tok.ends_with(':');
            let name = name_tok.trim_end_matches(':');
            let name = name.split('@').next().unwrap_or(name).to_string();
            if out.last().is_none_or(|d| d.name != name) {
                out.push(Iface {
                    name: name.clone(),
                    flags: Vec::new(),
                    mtu: None,
                    link: String::new(),
                    mac: None,
                    addrs: Vec::new(),
                    line,
                });
            }
            let after_name = after.get(name_tok.len()..).unwrap_or("").trim_start();
            if !one_line {
                if let Some(d) = out.last_mut() {
                    if let Some(fl) = after_name.strip_prefix('<').and_then(|s| s.split_once('>')) {
                        d.flags = fl.0.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
                    }
                    let t: Vec<&str> = after_name.split_whitespace().collect();
                    d.mtu = t.iter().position(|w| *w == "mtu").and_then(|p| t.get(p + 1)).and_then(|m| m.parse().ok());
                }
                continue;
            }
            // `ip -o`: the rest of the line is one attribute line.
            rest = after_name;
        }
        let rest = rest.split('\\').next().unwrap_or(rest).trim();
        let Some(dev) = out.last_mut() else {
            return Err(bad(format!("{}:{line}: expected a device line `N: NAME:` first", path.display())));
        };
        let toks: Vec<&str> = rest.split_whitespace().collect();
        match toks.first().copied() {
            Some(w) if w.starts_with("link/") => {
                dev.link = w.trim_start_matches("link/").to_string();
                if dev.link == "ether" {
                    dev.mac = toks.get(1).map(|s| s.to_string());
                }
            }
            Some("inet") => dev.addrs.push(parse_inet(&toks, &dev.name, path, line)?),
            _ => {}
        }
    }
    Ok(out)
}

fn parse_inet(toks: &[&str], dev: &str, path: &Path, line: usize) -> Result<Addr, KernelError> {
    let local = toks.get(1).copied().unwrap_or("");
    let net = local
        .parse::<Ipv4Net>()
        .ok()
        .or_else(|| local.parse::<Ipv4Addr>().ok().and_then(|a| Ipv4Net::new(a, 32).ok()))
        .ok_or_else(|| {
            bad(format!("{}:{line}: expected an IPv4 address after `inet`, found `{local}`", path.display()))
        })?;
    let mut args = Vec::new();
    let mut i = 2;
    while let Some(t) = toks.get(i).copied() {
        match t {
            "peer" | "brd" | "scope" | "metric" => {
                if let Some(v) = toks.get(i + 1) {
                    args.push(t.to_string());
                    args.push(v.to_string());
                }
                i += 2;
                continue;
            }
            "noprefixroute" | "nodad" | "home" | "mngtmpaddr" => args.push(t.to_string()),
            "valid_lft" | "preferred_lft" => break,
            _ if t.starts_with(dev) && t.len() > dev.len() && t.get(dev.len()..dev.len() + 1) == Some(":") => {
                args.push("label".into());
                args.push(t.to_string());
            }
            _ => {}
        }
        i += 1;
    }
    Ok(Addr { net, args, line })
}

/// `ip route show table all`: IPv4 routes the kernel would not make itself
/// are kept as tokens for `ip route add`; continuation lines (`nexthop`) are
/// joined to their route.
pub fn parse_ip_route(text: &str) -> Vec<RouteLine> {
    let mut out: Vec<RouteLine> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let toks = raw.split_whitespace().filter(|t| !ROUTE_STATUS_WORDS.contains(t)).map(str::to_string);
        if raw.starts_with(char::is_whitespace) {
            if let Some(last) = out.last_mut() {
                last.tokens.extend(toks);
            }
            continue;
        }
        out.push(RouteLine { tokens: toks.collect(), line: i + 1 });
    }
    out.retain(|r| {
        let first = r.tokens.first().map(String::as_str).unwrap_or("");
        first != "cache" && !r.tokens.iter().take(2).any(|t| t.contains(':'))
    });
    out
}

/// `ip rule show`: every rule except the kernel's three defaults.
pub fn parse_ip_rule(text: &str) -> Vec<RuleLine> {
    let defaults = ["0:from all lookup local", "32766:from all lookup main", "32767:from all lookup default"];
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let Some((prio, rest)) = raw.trim().split_once(':') else { continue };
        let rest: Vec<&str> = rest.split_whitespace().filter(|t| !t.starts_with('[')).collect();
        let norm = format!("{}:{}", prio.trim(), rest.join(" "));
        if rest.is_empty() || defaults.contains(&norm.as_str()) {
            continue;
        }
        let mut tokens = vec!["pref".to_string(), prio.trim().to_string()];
        tokens.extend(rest.iter().map(|s| s.to_string()));
        out.push(RuleLine { tokens, line: i + 1 });
    }
    out
}

/// `sysctl net.ipv4`: `key = value` lines.
pub fn parse_sysctl(text: &str) -> Vec<SysctlLine> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let (k, v) = l.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            (!k.is_empty() && !k.starts_with('#')).then(|| SysctlLine { key: k.into(), value: v.into(), line: i + 1 })
        })
        .collect()
}

/// VXLAN devices of `ip -d link show`.
pub fn parse_ip_link(text: &str) -> Vec<Vxlan> {
    let mut out = Vec::new();
    let mut current = String::new();
    for l in text.lines() {
        if l.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            if let Some((_, after)) = l.split_once(": ") {
                let n = after.split(':').next().unwrap_or("");
                current = n.split('@').next().unwrap_or(n).to_string();
            }
            continue;
        }
        let t: Vec<&str> = l.split_whitespace().collect();
        if t.first() != Some(&"vxlan") {
            continue;
        }
        let val = |k: &str| t.iter().position(|w| *w == k).and_then(|p| t.get(p + 1)).copied();
        out.push(Vxlan {
            name: current.clone(),
            id: val("id").and_then(|v| v.parse().ok()).unwrap_or(4096),
            dstport: val("dstport").and_then(|v| v.parse().ok()).unwrap_or(4789),
            local: val("local").and_then(|v| v.parse().ok()),
            dev: val("dev").map(str::to_string),
        });
    }
    out
}

/// `ip neigh show`: PERMANENT entries (what Calico programs for VXLAN peers).
pub fn parse_neigh(text: &str) -> Vec<(Vec<String>, usize)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t: Vec<&str> = l.split_whitespace().collect();
            if !t.contains(&"PERMANENT") || !t.contains(&"lladdr") || t.first().is_some_and(|a| a.contains(':')) {
                return None;
            }
            let mut args: Vec<String> = t.iter().filter(|w| **w != "PERMANENT").map(|s| s.to_string()).collect();
            args.extend(["nud".to_string(), "permanent".to_string()]);
            Some((args, i + 1))
        })
        .collect()
}

/// `bridge fdb show`: entries with a remote `dst` (VXLAN peers).
pub fn parse_fdb(text: &str) -> Vec<(Vec<String>, usize)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t: Vec<&str> = l.split_whitespace().collect();
            if !t.contains(&"dst") {
                return None;
            }
            Some((t.iter().map(|s| s.to_string()).collect(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addr_both_forms() {
        let full = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n    inet 127.0.0.1/8 scope host lo\n       valid_lft forever preferred_lft forever\n3: tunl0@NONE: <NOARP,UP,LOWER_UP> mtu 1440 qdisc noqueue\n    link/ipip 0.0.0.0 brd 0.0.0.0\n    inet 192.168.231.64/32 scope global tunl0\n4: cali1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1440\n    link/ether ee:ee:ee:ee:ee:ee brd ff:ff:ff:ff:ff:ff link-netns x\n";
        let d = parse_ip_addr(full, Path::new("ip-addr")).unwrap();
        assert_eq!(d.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["lo", "tunl0", "cali1"]);
        assert_eq!(d[1].link, "ipip");
        assert_eq!(d[1].mtu, Some(1440));
        assert_eq!(d[1].addrs[0].args, ["scope", "global"]);
        assert_eq!(d[2].mac.as_deref(), Some("ee:ee:ee:ee:ee:ee"));
        let one = "2: ens192    inet 10.0.0.51/24 brd 10.0.0.255 scope global ens192\\       valid_lft forever preferred_lft forever\n";
        let d = parse_ip_addr(one, Path::new("ip-addr")).unwrap();
        assert_eq!(d[0].addrs[0].args, ["brd", "10.0.0.255", "scope", "global"]);
        assert!(d[0].up());
    }

    #[test]
    fn routes_keep_what_the_kernel_does_not_make() {
        let t = "default via 10.0.0.1 dev ens192 \n10.0.0.0/24 dev ens192 proto kernel scope link src 10.0.0.51 \n192.168.233.128/26 via 10.0.0.52 dev tunl0 proto bird onlink linkdown\n10.1.0.0/16 proto bird\n\tnexthop via 10.0.0.2 dev ens192 weight 1\n";
        let r: Vec<RouteLine> = parse_ip_route(t).into_iter().filter(|r| !r.is_kernel()).collect();
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].tokens.join(" "), "192.168.233.128/26 via 10.0.0.52 dev tunl0 proto bird onlink");
        assert_eq!(r[1].via(), Some("10.0.0.52".parse().unwrap()));
        assert_eq!(r[2].tokens.join(" "), "10.1.0.0/16 proto bird nexthop via 10.0.0.2 dev ens192 weight 1");
        assert_eq!(r[0].dst().unwrap().prefix_len(), 0);
    }

    #[test]
    fn a_router_s_next_hops_are_addresses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/seed-ipip-remote");
        let d = load(&dir).unwrap();
        let decl = |routes: &[&str]| natpath_model::cluster::RouterDecl {
            name: "gw".into(),
            address: "10.0.0.1/24".parse().unwrap(),
            routes: routes.iter().map(|r| (*r).to_string()).collect(),
            parsed: Vec::new(),
            loc: natpath_model::loc::Loc::default(),
        };
        let r = router(
            &decl(&["10.96.0.0/12 via node2", "0.0.0.0/0 via client", "10.1.0.0/16 via 10.0.0.51"]),
            &d.cluster,
            &d.nodes,
        )
        .unwrap();
        let want: Vec<(Ipv4Net, Ipv4Addr)> =
            [("10.96.0.0/12", "10.0.0.52"), ("0.0.0.0/0", "10.0.0.53"), ("10.1.0.0/16", "10.0.0.51")]
                .iter()
                .map(|(n, a)| (n.parse().unwrap(), a.parse().unwrap()))
                .collect();
        assert_eq!(r.routes, want);
        let e = router(&decl(&["10.96.0.0/12 via node9"]), &d.cluster, &d.nodes).unwrap_err();
        assert!(e.contains("`node9`, which names no node or host"), "{e}");
        let e = router(&decl(&["10.96.0.0 via node1"]), &d.cluster, &d.nodes).unwrap_err();
        assert!(e.contains("prefix length"), "{e}");
    }

    #[test]
    fn rules_skip_defaults() {
        let t = "0:\tfrom all lookup local\n100:\tfrom all fwmark 0x1/0x1 lookup 100\n32766:\tfrom all lookup main\n";
        let r = parse_ip_rule(t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].tokens.join(" "), "pref 100 from all fwmark 0x1/0x1 lookup 100");
    }
}
