//! A node's state besides its rules, when it differs only where a pod came
//! or went: the pod's routes, its veth, that veth's sysctls and its entry
//! in cluster.toml.
//!
//! Scaling a Deployment, a rollout or a pod rescheduled changes, on the
//! pod's node, a /32 route by the pod's veth, the veth itself (no address
//! of its own), the veth's sysctls and the pods of cluster.toml, besides
//! the rules. Marking every query of that node (and every walk) touched
//! for that makes a gate of one new pod cost a whole check. Each such
//! difference is met only by packets to or from a short list of addresses,
//! which become keys:
//! - A route for prefix P is looked up only for a destination in P
//!   (longest prefix first: a route that does not contain the destination
//!   is never chosen), or for a source in P (the reverse-path check of
//!   `rp_filter` and `-m rpfilter`). Routes are compared by table,
//!   destination, TOS and metric, in order within each; a difference for P
//!   keys every address of P as a destination and as an arrival (what the
//!   pod at that address sends, or its answer). That is sound only when no
//!   other packet can carry an address of P: P holds no node address, no
//!   tunnel peer or gateway, no SNAT target, no outside host, and the route
//!   is not of the local table (local addresses). Else nothing is narrowed.
//! - A device without addresses (a pod's veth, not the LAN, not a tunnel)
//!   is left only by packets a route by it carries, and entered only by
//!   what the pod behind it sends, or its answers: its appearance, its
//!   link details and its sysctls (`net.ipv4.conf.DEV.*`,
//!   `net.ipv4.neigh.DEV.*`) key the addresses the node routes by it on
//!   either side, as above. A device nothing routes by is not narrowed.
//! - A pod of cluster.toml (its name, address, veth, listening ports) is
//!   met by packets to its address and by what it sends: its address is
//!   keyed the same way.
//! - ipsets are compared by their members (the hash seed and the hash
//!   order `ipset save` prints differ between two captures of one set).
//!   A member on one side only (Calico adds a pod's address to the sets
//!   of the selectors it matches, on every node) is met only by packets
//!   that carry its address where a rule reads the set: as a destination
//!   (a key of that address), or as a source (sent by it or its answer, by
//!   any arrival device: a rule in raw or mangle reads it before any
//!   reverse-path check). A set on one side only, a `list:set`, or a member
//!   of more than [`MAX_RANGE`] addresses is not narrowed.
//!
//! Everything else that differs (addresses, the LAN, policy rules,
//! neighbours, the forwarding database, what the node listens on) still
//! makes every query of the node touched.

use super::{arrive_any, arrive_by, routed_by, Dirty, Key, Set, MAX_RANGE};
use natpath_model::cluster::PodDecl;
use natpath_model::netstate::{Interface, IpSet, Route, RouteType, SetType, TABLE_LOCAL};
use natpath_model::snapshot::{Node, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Addresses a packet can carry without being sent by or to a pod: a
/// narrowed prefix must hold none of them.
pub(super) struct Protected<'s> {
    /// Node addresses, tunnel peers, gateways, SNAT targets (the delta's
    /// own sets of them).
    pub dsts: &'s Set<u32>,
    pub reply_dsts: &'s Set<u32>,
    /// Local routes of every node of both sides and the outside hosts, as
    /// (first, last).
    pub spans: Vec<(u32, u32)>,
}

impl Protected<'_> {
    /// Some address of `lo..=hi` (a short span: callers keep it under
    /// [`MAX_RANGE`]) may be carried by other packets.
    fn meets(&self, lo: u32, hi: u32) -> bool {
        self.spans.iter().any(|&(a, b)| a <= hi && lo <= b)
            || (lo..=hi).any(|a| self.dsts.has(a) || self.reply_dsts.has(a))
    }
}

/// The keys of a difference met by packets to or from `a`.
fn keys_of(a: u32, out: &mut BTreeSet<Dirty>) {
    out.insert(Dirty { key: Key::Dst(a), new_only: false, local_only: false, arrive: None });
    out.insert(Dirty { key: Key::All, new_only: false, local_only: false, arrive: Some(a) });
}

/// What differs besides the rules of node `x` (BEFORE) and `y` (AFTER),
/// with the snapshots' pods: the keys of those differences and a line for
/// each, or `Err` with what differs when it cannot be narrowed.
pub(super) fn churn(
    before: &Snapshot,
    after: &Snapshot,
    x: &Node,
    y: &Node,
    protected: &Protected<'_>,
    arrive_devs: &mut super::ArriveDevs,
) -> Result<(Vec<Dirty>, Vec<String>), String> {
    let mut keys: BTreeSet<Dirty> = BTreeSet::new();
    let mut addrs: BTreeSet<u32> = BTreeSet::new();
    let mut what: Vec<String> = Vec::new();

    // Routes: by (table, destination, TOS, metric), in order within each.
    let prefixes = route_differences(&x.routes, &y.routes).map_err(|e| format!("its routes differ ({e})"))?;
    for (lo, hi) in &prefixes {
        if hi - lo >= MAX_RANGE || protected.meets(*lo, *hi) {
            return Err(format!(
                "its routes differ (to {}: an address of a node, a host, a gateway or an SNAT target, or too many)",
                span_text(*lo, *hi)
            ));
        }
        for a in *lo..=*hi {
            addrs.insert(a);
            // A reverse-path check of a packet from `a` compares the
            // device of the route back with the arrival device (strict,
            // see `loose_reverse_path`): it differs only for the devices
            // of the route either side chooses for `a`.
            arrive_by(arrive_devs, a, chosen_devices(&x.routes, a).into_iter().chain(chosen_devices(&y.routes, a)));
        }
    }
    if !prefixes.is_empty() {
        if let Some(why) = loose_reverse_path(x).or_else(|| loose_reverse_path(y)) {
            return Err(format!("its routes differ, and {why}"));
        }
        what.push(format!(
            "routes to {}",
            prefixes.iter().map(|&(a, b)| span_text(a, b)).collect::<Vec<_>>().join(", ")
        ));
    }

    // Devices, by name; the others in the same order.
    let devs = device_differences(&x.interfaces, &y.interfaces, &x.lan)?;
    let mut sysctl_devs: BTreeSet<String> = BTreeSet::new();
    for (k, v) in sysctl_differences(x, y) {
        let Some(dev) = sysctl_dev(&k) else {
            return Err(format!("its sysctls differ ({k}: {v})"));
        };
        if dev == "all" || dev == "default" || dev == x.lan || has_addrs(x, y, &dev) || is_tunnel(x, y, &dev) {
            return Err(format!("its sysctls differ ({k})"));
        }
        sysctl_devs.insert(dev);
    }
    for dev in devs.iter().chain(&sysctl_devs) {
        let Some(routed) = routed_by((&x.routes, &y.routes), dev) else {
            return Err(format!("its devices differ ({dev}: no short list of addresses is routed by it)"));
        };
        for &a in &routed {
            if protected.meets(a, a) {
                return Err(format!("its devices differ ({dev} carries {})", Ipv4Addr::from(a)));
            }
        }
        for a in routed {
            addrs.insert(a);
            arrive_by(arrive_devs, a, [dev.clone()]);
        }
    }
    if !devs.is_empty() {
        what.push(format!("devices {}", devs.iter().cloned().collect::<Vec<_>>().join(", ")));
    }
    if !sysctl_devs.is_empty() {
        what.push(format!("sysctls of {}", sysctl_devs.iter().cloned().collect::<Vec<_>>().join(", ")));
    }

    // Members of ipsets (Calico's selector sets gain a pod's address).
    let changed_sets = set_differences(x, y)?;
    for (name, spans) in &changed_sets {
        let (dst, src) = set_directions(x, y, name)?;
        for &(lo, hi) in spans {
            if src && protected.meets(lo, hi) {
                return Err(format!(
                    "its ipsets differ ({name} changes {}: an address of a node, a host, a gateway or an SNAT target)",
                    span_text(lo, hi)
                ));
            }
            for a in lo..=hi {
                if dst {
                    keys.insert(Dirty { key: Key::Dst(a), new_only: false, local_only: false, arrive: None });
                }
                if src {
                    // From `a`, by whatever device: a rule before routing
                    // (raw, mangle) sees it before any reverse-path check.
                    keys.insert(Dirty { key: Key::All, new_only: false, local_only: false, arrive: Some(a) });
                    arrive_any(arrive_devs, a);
                }
            }
        }
    }
    if !changed_sets.is_empty() {
        what.push(format!("members of ipsets {}", changed_sets.keys().cloned().collect::<Vec<_>>().join(", ")));
    }

    // Pods of cluster.toml on this node.
    let on = |s: &'_ Snapshot| -> BTreeSet<String> {
        s.cluster.pods.iter().filter(|p| p.node == x.name).map(pod_line).collect()
    };
    let (pb, pa) = (on(before), on(after));
    let changed: BTreeSet<&String> = pb.symmetric_difference(&pa).collect();
    if !changed.is_empty() {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for p in before.cluster.pods.iter().chain(&after.cluster.pods).filter(|p| changed.contains(&pod_line(p))) {
            let a = u32::from(p.address);
            if protected.meets(a, a) {
                return Err(format!("its pods differ ({} has the address of a node, host or gateway)", p.name));
            }
            addrs.insert(a);
            arrive_by(arrive_devs, a, [p.iface.clone()]);
            names.insert(p.name.as_str());
        }
        what.push(format!("pods {}", names.into_iter().collect::<Vec<_>>().join(", ")));
    }
    for a in addrs {
        keys_of(a, &mut keys);
    }
    Ok((keys.into_iter().collect(), what))
}

/// Why a route back to a source may be checked without regard to the
/// arrival device, when it may: an interface whose reverse-path filter is
/// loose (2; `all` counts, as the kernel takes the larger), or `-m
/// rpfilter --loose`. Strict or no filtering compares the route back with
/// the device a packet arrived by, so a route for P changes what arrives
/// from an address of P only by the devices of that route.
fn loose_reverse_path(n: &Node) -> Option<String> {
    if let Some(i) = n.interfaces.iter().find(|i| n.sysctl.rp_filter(&i.name) >= 2) {
        return Some(format!("the reverse-path filter of {} is loose", i.name));
    }
    let loose =
        n.ruleset.tables.iter().flat_map(|t| &t.chains).flat_map(|c| &c.rules).any(|r| {
            r.matches.iter().any(|m| matches!(m, natpath_model::ruleset::Match::Rpfilter { loose: true, .. }))
        });
    loose.then(|| "a rule uses -m rpfilter --loose".to_string())
}

/// The devices of the routes a lookup of `a` can choose: in each table,
/// those of the longest prefixes that hold `a` (every metric).
fn chosen_devices(routes: &[Route], a: u32) -> BTreeSet<String> {
    let a = Ipv4Addr::from(a);
    let mut longest: BTreeMap<u32, u8> = BTreeMap::new();
    for r in routes.iter().filter(|r| r.dst.contains(&a)) {
        let l = longest.entry(r.table).or_insert(0);
        *l = (*l).max(r.dst.prefix_len());
    }
    routes
        .iter()
        .filter(|r| r.dst.contains(&a) && longest.get(&r.table) == Some(&r.dst.prefix_len()))
        .flat_map(|r| r.nexthops.iter().filter_map(|h| h.dev.clone()))
        .collect()
}

/// The members of an ipset as comparable lines, each with its first
/// address dimension. What `ipset save` prints besides them (the hash
/// seed `initval`, `hashsize`, `maxelem`, counters, timeouts: none of
/// which the model reads) is no difference, nor is the order of a hash or
/// bitmap set's members (the hash order, which a new `initval` changes):
/// they are sorted. A `list:set` keeps its order.
fn members(s: &IpSet) -> Vec<(String, Option<ipnet::Ipv4Net>)> {
    let mut m: Vec<(String, Option<ipnet::Ipv4Net>)> = s
        .entries
        .iter()
        .map(|e| (format!("{:?} {:?} {:?} {:?} {:?} {}", e.net, e.port, e.net2, e.iface, e.set, e.nomatch), e.net))
        .collect();
    if s.kind != SetType::ListSet {
        m.sort_unstable();
    }
    m
}

/// The sets whose members differ ([`members`] says what is no
/// difference), each with the first-dimension addresses of the members
/// on one side only, as spans. `Err` when a set is on one side only, its
/// type differs, it is a `list:set` or is listed by one, or a member has
/// no address or too many.
fn set_differences(x: &Node, y: &Node) -> Result<BTreeMap<String, Vec<(u32, u32)>>, String> {
    fn by(n: &Node) -> BTreeMap<&str, &IpSet> {
        n.ipsets.iter().map(|s| (s.name.as_str(), s)).collect()
    }
    let (bx, by_) = (by(x), by(y));
    if bx.len() != x.ipsets.len() || by_.len() != y.ipsets.len() || !bx.keys().eq(by_.keys()) {
        return Err("its ipsets differ (a set is on one side only)".into());
    }
    let mut out = BTreeMap::new();
    for (name, s) in &bx {
        let Some(t) = by_.get(name) else { continue };
        let (ms, mt) = (members(s), members(t));
        if s.kind == t.kind && s.inet == t.inet && ms == mt {
            continue;
        }
        let listed =
            [x, y].iter().flat_map(|n| &n.ipsets).flat_map(|s| &s.entries).any(|e| e.set.as_deref() == Some(name));
        if s.kind != t.kind || s.inet != t.inet || s.kind == SetType::ListSet || listed {
            return Err(format!("its ipsets differ ({name}: its type, or a list of sets)"));
        }
        let lines =
            |m: &[(String, Option<ipnet::Ipv4Net>)]| m.iter().map(|(l, _)| l.clone()).collect::<BTreeSet<String>>();
        let (ls, lt) = (lines(&ms), lines(&mt));
        let mut spans = Vec::new();
        for (line, net) in ms.iter().filter(|(l, _)| !lt.contains(l)).chain(mt.iter().filter(|(l, _)| !ls.contains(l)))
        {
            let Some(net) = net else {
                return Err(format!("its ipsets differ ({name}: a member without an address: {line})"));
            };
            let (lo, hi) = (u32::from(net.network()), u32::from(net.broadcast()));
            if hi - lo >= MAX_RANGE {
                return Err(format!("its ipsets differ ({name}: {net})"));
            }
            spans.push((lo, hi));
        }
        out.insert((*name).to_string(), spans);
    }
    Ok(out)
}

/// Whether the rules of either side read set `name`'s first dimension as
/// a destination, and as a source. A set no rule reads is neither.
fn set_directions(x: &Node, y: &Node, name: &str) -> Result<(bool, bool), String> {
    let (mut dst, mut src) = (false, false);
    for r in [x, y].iter().flat_map(|n| &n.ruleset.tables).flat_map(|t| &t.chains).flat_map(|c| &c.rules) {
        for m in &r.matches {
            if let natpath_model::ruleset::Match::Set(sm) = m {
                if sm.name == name {
                    match sm.dirs.first() {
                        Some(natpath_model::ruleset::SetDir::Dst) => dst = true,
                        Some(natpath_model::ruleset::SetDir::Src) => src = true,
                        None => return Err(format!("its ipsets differ ({name} is read without a direction)")),
                    }
                }
            }
        }
    }
    Ok((dst, src))
}

/// One pod as a comparable line.
fn pod_line(p: &PodDecl) -> String {
    format!("{} {} {} {:?}", p.name, p.address, p.iface, p.listen)
}

/// `lo..=hi` as an address or a range.
fn span_text(lo: u32, hi: u32) -> String {
    if lo == hi {
        Ipv4Addr::from(lo).to_string()
    } else {
        format!("{}-{}", Ipv4Addr::from(lo), Ipv4Addr::from(hi))
    }
}

/// The destination prefixes (as first and last address) whose routes
/// differ: the routes of each (table, destination, TOS, metric) are
/// compared in order. `Err` for a route of the local table or of a local
/// or broadcast type (those make addresses local).
fn route_differences(x: &[Route], y: &[Route]) -> Result<Vec<(u32, u32)>, String> {
    type Slot<'r> = BTreeMap<(u32, u32, u8, Option<u8>, u32), (Vec<&'r Route>, Vec<&'r Route>)>;
    let mut by: Slot<'_> = BTreeMap::new();
    for (side, routes) in [x, y].into_iter().enumerate() {
        for r in routes {
            let k = (r.table, u32::from(r.dst.network()), r.dst.prefix_len(), r.tos, r.metric);
            let slot = by.entry(k).or_default();
            if side == 0 {
                slot.0.push(r);
            } else {
                slot.1.push(r);
            }
        }
    }
    let mut out = Vec::new();
    for ((table, _, _, _, _), (b, a)) in by {
        if b == a {
            continue;
        }
        let Some(r) = b.first().or(a.first()) else { continue };
        // Only these kinds: a route lookup for an address of the prefix
        // then either fails or leaves by the route's devices, which is
        // what a reverse-path check compares with the arrival device.
        let plain = |r: &&Route| match r.kind {
            RouteType::Unicast => !r.nexthops.is_empty() && r.nexthops.iter().all(|h| h.dev.is_some()),
            RouteType::Blackhole | RouteType::Unreachable | RouteType::Prohibit => true,
            _ => false,
        };
        if table == TABLE_LOCAL || !b.iter().chain(&a).all(plain) {
            return Err(format!("a route to {} of another kind, or without a device", r.dst));
        }
        out.push((u32::from(r.dst.network()), u32::from(r.dst.broadcast())));
    }
    Ok(out)
}

/// The devices that differ (present on one side only, or otherwise
/// different), each without addresses on either side, not the LAN and
/// not a tunnel; `Err` otherwise, or when the other devices' order differs.
fn device_differences(x: &[Interface], y: &[Interface], lan: &str) -> Result<BTreeSet<String>, String> {
    fn by(v: &[Interface]) -> BTreeMap<&str, &Interface> {
        v.iter().map(|i| (i.name.as_str(), i)).collect()
    }
    let (bx, by_) = (by(x), by(y));
    let mut out = BTreeSet::new();
    for name in bx.keys().chain(by_.keys()) {
        let (i, j) = (bx.get(name), by_.get(name));
        // The index is the kernel's numbering, which nothing reads.
        let same = match (i, j) {
            (Some(i), Some(j)) => Interface { index: 0, ..(*i).clone() } == Interface { index: 0, ..(*j).clone() },
            _ => false,
        };
        if same {
            continue;
        }
        let narrow = *name != lan
            && [i, j].into_iter().flatten().all(|d| d.addrs.is_empty() && d.vxlan.is_none() && !tunnel_kind(d));
        if !narrow {
            return Err(format!("its addresses or devices differ ({name})"));
        }
        out.insert((*name).to_string());
    }
    let rest =
        |v: &[Interface]| v.iter().filter(|i| !out.contains(&i.name)).map(|i| i.name.clone()).collect::<Vec<_>>();
    if rest(x) != rest(y) {
        return Err("its devices are in another order".into());
    }
    Ok(out)
}

/// A tunnel device: its kind or link type says so.
fn tunnel_kind(d: &Interface) -> bool {
    let tun = |s: &Option<String>| {
        s.as_deref().is_some_and(|k| matches!(k, "ipip" | "vxlan" | "gre" | "sit" | "wireguard" | "tunnel" | "none"))
    };
    tun(&d.kind) || tun(&d.link_type)
}

fn has_addrs(x: &Node, y: &Node, dev: &str) -> bool {
    [x, y].iter().flat_map(|n| &n.interfaces).any(|i| i.name == dev && !i.addrs.is_empty())
}

fn is_tunnel(x: &Node, y: &Node, dev: &str) -> bool {
    [x, y].iter().flat_map(|n| &n.interfaces).any(|i| i.name == dev && (i.vxlan.is_some() || tunnel_kind(i)))
}

/// The sysctl keys whose values differ, with a word on how.
fn sysctl_differences(x: &Node, y: &Node) -> Vec<(String, String)> {
    let (a, b) = (&x.sysctl.values, &y.sysctl.values);
    let mut out = Vec::new();
    for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        match (a.get(k), b.get(k)) {
            (Some(v), Some(w)) if v == w => {}
            (v, w) => out.push((k.clone(), format!("{} -> {}", v.map_or("absent", |s| s), w.map_or("absent", |s| s)))),
        }
    }
    out
}

/// The device of a per-device sysctl key (`net.ipv4.conf.DEV.KEY`,
/// `net.ipv4.neigh.DEV.KEY`; `/` in DEV stands for `.`).
fn sysctl_dev(k: &str) -> Option<String> {
    let rest = k.strip_prefix("net.ipv4.conf.").or_else(|| k.strip_prefix("net.ipv4.neigh."))?;
    let (dev, _) = rest.rsplit_once('.')?;
    (!dev.is_empty()).then(|| dev.replace('/', "."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sysctl_key_names_its_device() {
        assert_eq!(sysctl_dev("net.ipv4.conf.cali12.rp_filter").as_deref(), Some("cali12"));
        assert_eq!(sysctl_dev("net.ipv4.neigh.cali12.proxy_delay").as_deref(), Some("cali12"));
        assert_eq!(sysctl_dev("net.ipv4.conf.eth0/100.forwarding").as_deref(), Some("eth0.100"));
        assert_eq!(sysctl_dev("net.ipv4.ip_forward"), None);
        assert_eq!(sysctl_dev("net.ipv4.conf.all.rp_filter").as_deref(), Some("all"));
    }
}
