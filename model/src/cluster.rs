//! `cluster.toml`: the hand-written manifest of what no dump can tell
//! (docs/snapshot-format.md): which directory is which node and its LAN interface, the
//! machines outside the cluster, where each pod lives, and what the routers
//! of the underlay route.
//!
//! Contract: [`parse`] never panics; unknown keys, TOML syntax errors,
//! addresses that do not parse, duplicate names, pods on unknown nodes, a
//! `listen` entry that is not `PROTO/PORT`, a host gateway outside the
//! host's segment, and a `[[router]]` route that is not `CIDR via NEXT`, is
//! listed twice, is the router's own segment or names nothing, or more than
//! [`MAX_ROUTES`] routes or [`MAX_ROUTERS`] routers, are errors naming
//! `cluster.toml`, line and column. The
//! checks that need the dumps (the node directories, the interfaces) are
//! [`crate::snapshot::load`]'s.

use crate::error::{ParseError, ParseErrors};
use crate::loc::Loc;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A node of the cluster (`[[node]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDecl {
    /// The node's name: the directory under `nodes/`.
    pub name: String,
    /// The interface on the segment shared with the other nodes and hosts.
    pub lan: String,
    /// Where the table's `name` is.
    #[serde(skip)]
    pub loc: Loc,
}

/// A machine outside the cluster (`[[host]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostDecl {
    /// The host's name (what `--from` takes).
    pub name: String,
    /// Its address with the prefix of its segment.
    pub address: Ipv4Net,
    /// Where it sends what is not on its segment.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// Where the table's `name` is.
    #[serde(skip)]
    pub loc: Loc,
}

/// A pod (`[[pod]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodDecl {
    /// `namespace/name`.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// The host side of its veth pair on that node.
    pub iface: String,
    /// Ports it answers on, as `tcp/80`, `udp/53`; empty means every port.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Where the table's `name` is.
    #[serde(skip)]
    pub loc: Loc,
}

/// A router on the nodes' LAN segment (`[[router]]`): forwards what it is
/// handed by its routes, without NAT or filtering (see [`crate::router`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterDecl {
    /// The router's name.
    pub name: String,
    /// Its address with the prefix of its segment.
    pub address: Ipv4Net,
    /// Its routes, each `CIDR via NAME-OR-ADDRESS`, as written.
    #[serde(default)]
    pub routes: Vec<String>,
    /// The routes, parsed (same order as `routes`).
    #[serde(skip)]
    pub parsed: Vec<RouteDecl>,
    /// Where the table's `name` is.
    #[serde(skip)]
    pub loc: Loc,
}

/// One route of a `[[router]]`: `dst via via`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteDecl {
    /// The destination network.
    pub dst: Ipv4Net,
    /// The next hop as written.
    pub via: Via,
    /// Where the route's string is.
    #[serde(skip)]
    pub loc: Loc,
}

/// The next hop of a router's route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Via {
    /// A `[[node]]` or `[[host]]` by name.
    Name(String),
    /// An address on the router's segment that a node or host owns.
    Addr(Ipv4Addr),
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Name(n) => f.write_str(n),
            Via::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// Routers a `cluster.toml` may declare at most.
pub const MAX_ROUTERS: usize = 64;
/// Routes a `[[router]]` may have at most.
pub const MAX_ROUTES: usize = 4096;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// `[[node]]` tables.
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeDecl>,
    /// `[[host]]` tables.
    #[serde(default, rename = "host")]
    pub hosts: Vec<HostDecl>,
    /// `[[pod]]` tables.
    #[serde(default, rename = "pod")]
    pub pods: Vec<PodDecl>,
    /// `[[router]]` tables.
    #[serde(default, rename = "router", skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<RouterDecl>,
}

/// Where each key of each table was written, for errors found later
/// (a node without a directory, a pod's interface missing on its node).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyLocs {
    /// Per `[[node]]`, key -> location of its value.
    pub nodes: Vec<BTreeMap<String, Loc>>,
    /// Per `[[host]]`.
    pub hosts: Vec<BTreeMap<String, Loc>>,
    /// Per `[[pod]]`.
    pub pods: Vec<BTreeMap<String, Loc>>,
    /// Per `[[router]]`.
    pub routers: Vec<BTreeMap<String, Loc>>,
}

impl KeyLocs {
    /// The location of `key` in table `i` of `tables`, else of its table's name, else line 1.
    pub fn of(tables: &[BTreeMap<String, Loc>], i: usize, key: &str, file: &Arc<str>) -> Loc {
        tables
            .get(i)
            .and_then(|t| t.get(key).or_else(|| t.get("name")))
            .cloned()
            .unwrap_or_else(|| Loc::new(file, 1, 1))
    }
}

/// The same document with every value's span, to locate later errors.
#[derive(serde::Deserialize)]
struct Raw {
    #[serde(default)]
    node: Vec<BTreeMap<String, toml::Spanned<toml::Value>>>,
    #[serde(default)]
    host: Vec<BTreeMap<String, toml::Spanned<toml::Value>>>,
    #[serde(default)]
    pod: Vec<BTreeMap<String, toml::Spanned<toml::Value>>>,
    #[serde(default)]
    router: Vec<BTreeMap<String, toml::Spanned<toml::Value>>>,
}

/// The routes of each router with the span of each string.
#[derive(serde::Deserialize)]
struct RawRoutes {
    #[serde(default)]
    router: Vec<RawRouter>,
}

#[derive(serde::Deserialize)]
struct RawRouter {
    #[serde(default)]
    routes: Vec<toml::Spanned<String>>,
}

/// The line and column of byte `offset` of `text`.
pub(crate) fn loc_at(text: &str, offset: usize, file: &Arc<str>) -> Loc {
    Lines::new(text).loc(offset, file)
}

/// Where each line of a text starts, to turn many byte offsets into lines
/// and columns without reading the text again for each (a `cluster.toml`
/// of a few hundred nodes has tens of thousands of keys).
pub(crate) struct Lines<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    pub(crate) fn new(text: &'t str) -> Lines<'t> {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i.saturating_add(1))).collect();
        Lines { text, starts }
    }

    /// The line and column (in characters, both from 1) of byte `offset`.
    pub(crate) fn loc(&self, offset: usize, file: &Arc<str>) -> Loc {
        let offset = offset.min(self.text.len());
        // The lines that start at or before `offset`: at least the first.
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line.saturating_sub(1)).copied().unwrap_or(0);
        let col = self.text.get(start..offset).map_or(0, |s| s.chars().count()).saturating_add(1);
        Loc::new(file, u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(col).unwrap_or(u32::MAX))
    }
}

/// Parse `cluster.toml` and check what it can check alone.
pub fn parse(text: &str, file: &str) -> Result<Cluster, ParseErrors> {
    parse_with_locs(text, file).map(|(c, _)| c)
}

/// [`parse`], also returning where each key was written.
pub(crate) fn parse_with_locs(text: &str, file: &str) -> Result<(Cluster, KeyLocs), ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut cluster: Cluster = toml::from_str(text).map_err(|e| {
        let loc = e.span().map_or_else(|| Loc::new(&file, 1, 1), |s| loc_at(text, s.start, &file));
        let msg = e.message().trim().replace('\n', "; ");
        ParseError::new(loc, lower_first(&msg))
    })?;
    let raw: Raw =
        toml::from_str(text).map_err(|e| ParseError::new(Loc::new(&file, 1, 1), lower_first(e.message())))?;
    let lines = Lines::new(text);
    let locs = |tables: Vec<BTreeMap<String, toml::Spanned<toml::Value>>>| -> Vec<BTreeMap<String, Loc>> {
        tables
            .into_iter()
            .map(|t| t.into_iter().map(|(k, v)| (k, lines.loc(v.span().start, &file))).collect())
            .collect()
    };
    let keys = KeyLocs { nodes: locs(raw.node), hosts: locs(raw.host), pods: locs(raw.pod), routers: locs(raw.router) };
    for (i, n) in cluster.nodes.iter_mut().enumerate() {
        n.loc = KeyLocs::of(&keys.nodes, i, "name", &file);
    }
    for (i, h) in cluster.hosts.iter_mut().enumerate() {
        h.loc = KeyLocs::of(&keys.hosts, i, "name", &file);
    }
    for (i, p) in cluster.pods.iter_mut().enumerate() {
        p.loc = KeyLocs::of(&keys.pods, i, "name", &file);
    }
    for (i, r) in cluster.routers.iter_mut().enumerate() {
        r.loc = KeyLocs::of(&keys.routers, i, "name", &file);
    }
    let mut errs = ParseErrors::default();
    if cluster.routers.len() > MAX_ROUTERS {
        let at = cluster.routers.get(MAX_ROUTERS).map_or_else(|| Loc::new(&file, 1, 1), |r| r.loc.clone());
        errs.push(ParseError::new(
            at,
            format!("expected at most {MAX_ROUTERS} [[router]] tables, found {}", cluster.routers.len()),
        ));
        return Err(errs);
    }
    let route_spans: RawRoutes =
        toml::from_str(text).map_err(|e| ParseError::new(Loc::new(&file, 1, 1), lower_first(e.message())))?;
    for (i, r) in cluster.routers.iter_mut().enumerate() {
        let spans = route_spans.router.get(i).map(|x| x.routes.as_slice()).unwrap_or(&[]);
        if r.routes.len() > MAX_ROUTES {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.routers, i, "routes", &file),
                format!("expected at most {MAX_ROUTES} routes in router `{}`, found {}", r.name, r.routes.len()),
            ));
            continue;
        }
        for (k, text_k) in r.routes.iter().enumerate() {
            let loc = spans.get(k).map_or_else(
                || KeyLocs::of(&keys.routers, i, "routes", &file),
                |s| loc_at(text, s.span().start, &file),
            );
            match parse_route(text_k) {
                Ok((dst, via)) => {
                    if let Some(first) = r.parsed.iter().find(|p| p.dst == dst) {
                        errs.push(ParseError::new(
                            loc,
                            format!(
                                "duplicate route {dst} in router `{}` (first at line {}, column {}): a destination has one next hop",
                                r.name, first.loc.line, first.loc.column
                            ),
                        ));
                    } else if dst == r.address.trunc() {
                        errs.push(ParseError::new(
                            loc,
                            format!(
                                "route {dst} of router `{}` is its own segment, which it reaches directly: expected a route to another network",
                                r.name
                            ),
                        ));
                    } else {
                        r.parsed.push(RouteDecl { dst, via, loc });
                    }
                }
                Err(why) => errs.push(ParseError::new(
                    loc,
                    format!(
                        "expected `CIDR via NAME-OR-ADDRESS` in router `{}`'s `routes`, found `{text_k}`: {why}",
                        r.name
                    ),
                )),
            }
        }
    }
    dup(cluster.nodes.iter().map(|n| (&n.name, &n.loc)), "node", &mut errs);
    dup(cluster.hosts.iter().map(|h| (&h.name, &h.loc)), "host", &mut errs);
    dup(cluster.pods.iter().map(|p| (&p.name, &p.loc)), "pod", &mut errs);
    dup(cluster.routers.iter().map(|r| (&r.name, &r.loc)), "router", &mut errs);
    router_checks(&cluster, &keys, &file, &mut errs);
    identity_checks(&cluster, &keys, &file, &mut errs);
    for n in &cluster.nodes {
        if n.name.is_empty() || n.name.contains('/') || n.name == "." || n.name == ".." {
            errs.push(ParseError::new(
                n.loc.clone(),
                format!("expected a node name that is a directory name under nodes/, found `{}`", n.name),
            ));
        }
    }
    for (i, h) in cluster.hosts.iter().enumerate() {
        if let Some(g) = h.gateway {
            if !h.address.contains(&g) {
                errs.push(ParseError::new(
                    KeyLocs::of(&keys.hosts, i, "gateway", &file),
                    format!("expected host `{}`'s gateway on its segment {}, found `{g}`", h.name, h.address.trunc()),
                ));
            }
        }
    }
    let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
    for (i, p) in cluster.pods.iter().enumerate() {
        if !names.contains(&p.node.as_str()) {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.pods, i, "node", &file),
                format!(
                    "pod `{}` is on node `{}`, which no [[node]] declares (nodes: {})",
                    p.name,
                    p.node,
                    list(&names)
                ),
            ));
        }
        for l in &p.listen {
            let ok = l.split_once('/').is_some_and(|(proto, port)| {
                matches!(proto, "tcp" | "udp" | "sctp")
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
                    && !port.starts_with('+')
            });
            if !ok {
                errs.push(ParseError::new(
                    KeyLocs::of(&keys.pods, i, "listen", &file),
                    format!(
                        "expected `tcp/PORT`, `udp/PORT` or `sctp/PORT` in pod `{}`'s `listen`, found `{l}`",
                        p.name
                    ),
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok((cluster, keys))
    } else {
        Err(errs)
    }
}

/// `CIDR via NAME-OR-ADDRESS`: the destination and the next hop, or why not
/// (a route of a `[[router]]`).
pub fn parse_route(s: &str) -> Result<(Ipv4Net, Via), String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let [dst, via_word, via] = words.as_slice() else {
        return Err("expected three words".into());
    };
    if *via_word != "via" {
        return Err(format!("expected `via` after the destination, found `{via_word}`"));
    }
    if !dst.contains('/') {
        return Err(format!("expected a network with its prefix length, such as `{dst}/32`"));
    }
    let net: Ipv4Net = dst.parse().map_err(|_| format!("`{dst}` is not an IPv4 network"))?;
    if net != net.trunc() {
        return Err(format!("`{dst}` has host bits set (the network is {})", net.trunc()));
    }
    let via = match via.parse::<Ipv4Addr>() {
        Ok(a) => Via::Addr(a),
        Err(_) if via.chars().next().is_some_and(|c| c.is_ascii_digit()) && via.contains('.') => {
            return Err(format!("`{via}` is not an IPv4 address"));
        }
        Err(_) => Via::Name((*via).to_string()),
    };
    Ok((net, via))
}

/// What a router's declaration must satisfy without the dumps: a name of
/// its own, an address no host has, next hops that name a node or a host,
/// or an address on its segment.
fn router_checks(cluster: &Cluster, keys: &KeyLocs, file: &Arc<str>, errs: &mut ParseErrors) {
    let nodes: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
    let hosts: Vec<&str> = cluster.hosts.iter().map(|h| h.name.as_str()).collect();
    for (i, r) in cluster.routers.iter().enumerate() {
        if let Some(what) = named_like(cluster, &r.name, &[Kind::Node, Kind::Host, Kind::Pod]) {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.routers, i, "name", file),
                format!(
                    "router `{}` has the name of {what}: routers, hosts, pods and nodes need names of their own",
                    r.name
                ),
            ));
        }
        if let Some(h) = cluster.hosts.iter().find(|h| h.address.addr() == r.address.addr()) {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.routers, i, "address", file),
                format!(
                    "router `{}` has the address {} of host `{}`: expected an address of its own",
                    r.name,
                    r.address.addr(),
                    h.name
                ),
            ));
        }
        if r.address.addr() == r.address.network() && r.address.prefix_len() < 31 {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.routers, i, "address", file),
                format!("expected router `{}`'s address with the prefix of its segment (such as 10.0.0.1/24), found the network {}", r.name, r.address),
            ));
        }
        for route in &r.parsed {
            match &route.via {
                Via::Name(n) => {
                    // A host may be off the router's segment: the router
                    // reaches it on another link.
                    if !hosts.contains(&n.as_str()) && !nodes.contains(&n.as_str()) {
                        errs.push(ParseError::new(
                            route.loc.clone(),
                            format!(
                                "router `{}`'s route {} goes via `{n}`, which names no node or host (nodes: {}; hosts: {})",
                                r.name,
                                route.dst,
                                list(&nodes),
                                list(&hosts)
                            ),
                        ));
                    }
                }
                Via::Addr(a) => {
                    if !r.address.contains(a) || *a == r.address.addr() {
                        errs.push(ParseError::new(
                            route.loc.clone(),
                            format!(
                                "router `{}`'s route {} goes via {a}: expected the address of a node or host on its segment {}, other than its own",
                                r.name,
                                route.dst,
                                r.address.trunc()
                            ),
                        ));
                    }
                }
            }
        }
    }
}

/// The kinds of declaration a name may clash between.
#[derive(Clone, Copy)]
enum Kind {
    Node,
    Host,
    Pod,
}

/// Which declaration of the kinds `among` (the first, in that order) is
/// also called `name`, in words ("a node").
fn named_like(cluster: &Cluster, name: &str, among: &[Kind]) -> Option<&'static str> {
    among.iter().find_map(|k| match k {
        Kind::Node => cluster.nodes.iter().any(|n| n.name == name).then_some("a node"),
        Kind::Host => cluster.hosts.iter().any(|h| h.name == name).then_some("a host"),
        Kind::Pod => cluster.pods.iter().any(|p| p.name == name).then_some("a pod"),
    })
}

/// Pods and hosts are who `trace --from NAME` starts at and who a
/// counterexample names, and their addresses are how the model tells who
/// sent or receives a packet: a host named like a node, a pod named like
/// either, or two of them at one address, would make either ambiguous.
/// (Routers are checked with the routers, addresses against the nodes'
/// with the dumps.)
fn identity_checks(cluster: &Cluster, keys: &KeyLocs, file: &Arc<str>, errs: &mut ParseErrors) {
    for (i, h) in cluster.hosts.iter().enumerate() {
        if let Some(what) = named_like(cluster, &h.name, &[Kind::Node]) {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.hosts, i, "name", file),
                format!("host `{}` has the name of {what}: hosts, pods and nodes need names of their own", h.name),
            ));
        }
    }
    for (i, p) in cluster.pods.iter().enumerate() {
        if let Some(what) = named_like(cluster, &p.name, &[Kind::Node, Kind::Host]) {
            errs.push(ParseError::new(
                KeyLocs::of(&keys.pods, i, "name", file),
                format!("pod `{}` has the name of {what}: hosts, pods and nodes need names of their own", p.name),
            ));
        }
    }
    // Each address with the first declaration that has it.
    let mut owners: Vec<(Ipv4Addr, String)> = Vec::new();
    let mut claim = |addr: Ipv4Addr, who: String, loc: Loc, errs: &mut ParseErrors| {
        match owners.iter().find(|(a, _)| *a == addr) {
            Some((_, first)) => errs.push(ParseError::new(
                loc,
                format!("{who} has the address {addr} of {first}: expected an address of its own (two captures mixed, or a pod restarted elsewhere?)"),
            )),
            None => owners.push((addr, who)),
        }
    };
    for (i, h) in cluster.hosts.iter().enumerate() {
        claim(h.address.addr(), format!("host `{}`", h.name), KeyLocs::of(&keys.hosts, i, "address", file), errs);
    }
    for (i, p) in cluster.pods.iter().enumerate() {
        claim(p.address, format!("pod `{}`", p.name), KeyLocs::of(&keys.pods, i, "address", file), errs);
    }
}

fn dup<'a>(items: impl Iterator<Item = (&'a String, &'a Loc)>, what: &str, errs: &mut ParseErrors) {
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for (name, loc) in items {
        if let Some(first) = seen.get(name.as_str()) {
            errs.push(ParseError::new(
                loc.clone(),
                format!("duplicate {what} `{name}` (first declared at line {first})"),
            ));
        } else {
            seen.insert(name, loc.line);
        }
    }
}

/// `a, b, c`, or `none`.
pub(crate) fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line and column by reading the text up to `offset`, as the errors
    /// were placed before [`Lines`].
    fn slow(text: &str, offset: usize) -> (u32, u32) {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        (line as u32, before[start..].chars().count() as u32 + 1)
    }

    #[test]
    fn lines_place_every_offset_as_a_scan_of_the_text_does() {
        let file: Arc<str> = Arc::from("cluster.toml");
        for text in ["", "\n", "a", "[[node]]\nname = \"é1\"\n\n  lan = \"eth0\"", "x\n\ny\n"] {
            let lines = Lines::new(text);
            for offset in (0..=text.len() + 2).filter(|&o| o >= text.len() || text.is_char_boundary(o)) {
                let loc = lines.loc(offset, &file);
                assert_eq!((loc.line, loc.column), slow(text, offset), "{text:?} at {offset}");
            }
        }
    }
}
