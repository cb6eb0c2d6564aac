//! Routing: policy rules, longest prefix match, address types, source
//! address selection and reverse path filtering, for one node.
//!
//! Semantics follow net/ipv4/fib_rules.c (rules by priority; `lookup` a
//! table; `throw` and a table without a match go on to the next rule),
//! fib_trie.c (longest prefix, then lowest metric), fib_frontend.c
//! (`__inet_dev_addr_type`, `fib_validate_source`) and devinet.c
//! (`inet_select_addr`). Where we differ: TOS and multipath hashing are not
//! modelled (the first next hop of a multipath route is taken, and said).

use crate::netstate::{
    Interface, IpRule, Route, RouteType, RuleAction, Scope, Sysctl, TABLE_DEFAULT, TABLE_LOCAL, TABLE_MAIN,
};
use crate::ruleset::AddrTypes;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// What a route lookup is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey<'a> {
    /// Destination.
    pub dst: Ipv4Addr,
    /// Source, when known.
    pub src: Option<Ipv4Addr>,
    /// The packet mark (`ip rule fwmark`).
    pub mark: u32,
    /// Input interface for forwarded packets (`iif`).
    pub iif: Option<&'a str>,
    /// Output interface if the sender bound one (`oif`).
    pub oif: Option<&'a str>,
}

/// The answer of a route lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHit<'a> {
    /// Route type (local, unicast, blackhole...).
    pub kind: RouteType,
    /// The route that matched (`None` for a rule action such as `ip rule ... blackhole`).
    pub route: Option<&'a Route>,
    /// The output device.
    pub dev: Option<&'a str>,
    /// The gateway (`via`), if any.
    pub gateway: Option<Ipv4Addr>,
}

impl RouteHit<'_> {
    /// The next hop: the gateway, or the destination itself on a direct route.
    pub fn nexthop(&self, dst: Ipv4Addr) -> Ipv4Addr {
        self.gateway.unwrap_or(dst)
    }
}

/// One node's routing state.
#[derive(Debug, Clone)]
pub struct Fib<'a> {
    /// Per routing table, its routes in the order a lookup prefers them:
    /// longest prefix first, then lowest metric, then dump order.
    tables: Vec<(u32, Vec<&'a Route>)>,
    rules: Vec<IpRule>,
    interfaces: &'a [Interface],
    sysctl: &'a Sysctl,
    /// What reverse path filtering reads of each interface
    /// ([`Sysctl::rpf_conf`]), read from the sysctls once.
    rpf: HashMap<&'a str, RpfConf>,
    /// The kernel's `fib_has_custom_local_routes || fib4_has_custom_rules`
    /// as the dumps show it ([`has_custom_rules`],
    /// [`has_custom_local_routes`]): `fib_validate_source` with rp_filter 0
    /// then does the full route lookup instead of the address check.
    full_check: bool,
    /// Every address configured on any interface ([`own_addrs`]):
    /// `inet_lookup_ifaddr_rcu`'s set.
    own: HashSet<Ipv4Addr>,
}

pub use crate::netstate::RpfConf;

/// Whether the policy rules are other than the kernel's three defaults
/// (`fib4_has_custom_rules`: the kernel sets it when any rule is added or
/// deleted from user space; a dump can only tell a set that differs from
/// the defaults). Empty means the defaults.
pub fn has_custom_rules(rules: &[IpRule]) -> bool {
    if rules.is_empty() {
        return false;
    }
    let mut got: Vec<IpRule> = rules.iter().map(|r| IpRule { loc: crate::Loc::synthetic(), ..r.clone() }).collect();
    got.sort_by_key(|r| r.priority);
    got != default_ip_rules()
}

/// Whether a route of type `local` was added from user space
/// (`fib_has_custom_local_routes`, set by `inet_rtm_newroute`): in a dump, a
/// `local` route in any table whose protocol is not `kernel` (the kernel's
/// own local routes, from addresses, are `proto kernel`; `ip route add`
/// without `proto` is `boot`, which `ip route` does not print).
pub fn has_custom_local_routes(routes: &[Route]) -> bool {
    routes.iter().any(|r| r.kind == RouteType::Local && !matches!(r.proto.as_deref(), Some("kernel") | Some("2")))
}

/// Whether `fib_lookup` fails for a route (or rule action) of type `kind`
/// (`fib_props[type].error`: blackhole, unreachable, prohibit, nat), so
/// that `fib_validate_source` takes it for no route back.
pub fn lookup_fails(kind: RouteType) -> bool {
    matches!(kind, RouteType::Blackhole | RouteType::Unreachable | RouteType::Prohibit | RouteType::Nat)
}

/// Every address configured on any of `interfaces` (any scope, secondary
/// or not, on a device up or down): the set `inet_lookup_ifaddr_rcu`
/// searches, sorted.
pub fn own_addrs(interfaces: &[Interface]) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = interfaces.iter().flat_map(|i| i.addrs.iter().map(|a| a.addr.addr())).collect();
    v.sort();
    v.dedup();
    v
}

/// The kernel's three rules when `ip rule` was not given.
pub fn default_ip_rules() -> Vec<IpRule> {
    [(0, TABLE_LOCAL), (32766, TABLE_MAIN), (32767, TABLE_DEFAULT)]
        .into_iter()
        .map(|(priority, table)| IpRule {
            priority,
            not: false,
            from: None,
            to: None,
            fwmark: None,
            iif: None,
            oif: None,
            tos: None,
            ipproto: None,
            sport: None,
            dport: None,
            uidrange: None,
            suppress_prefixlength: None,
            action: RuleAction::Lookup(table),
            loc: crate::Loc::synthetic(),
        })
        .collect()
}

impl<'a> Fib<'a> {
    /// Routing state from a node's dumps; `rules` empty means the defaults.
    pub fn new(routes: &'a [Route], rules: &[IpRule], interfaces: &'a [Interface], sysctl: &'a Sysctl) -> Self {
        let mut rules = if rules.is_empty() { default_ip_rules() } else { rules.to_vec() };
        rules.sort_by_key(|r| r.priority);
        let mut tables: Vec<(u32, Vec<&'a Route>)> = Vec::new();
        for r in routes {
            match tables.iter_mut().find(|(t, _)| *t == r.table) {
                Some((_, v)) => v.push(r),
                None => tables.push((r.table, vec![r])),
            }
        }
        for (_, v) in &mut tables {
            // Stable: among equal prefix and metric, the first in the dump wins.
            v.sort_by_key(|r| (std::cmp::Reverse(r.dst.prefix_len()), r.metric));
        }
        let rpf = interfaces.iter().map(|i| (i.name.as_str(), sysctl.rpf_conf(&i.name))).collect();
        let full_check = has_custom_rules(&rules) || has_custom_local_routes(routes);
        let own = own_addrs(interfaces).into_iter().collect();
        Fib { tables, rules, interfaces, sysctl, rpf, full_check, own }
    }

    /// The interfaces in device order.
    pub fn interfaces(&self) -> &'a [Interface] {
        self.interfaces
    }

    /// The interface named `name`.
    pub fn interface(&self, name: &str) -> Option<&'a Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The sysctls.
    pub fn sysctl(&self) -> &'a Sysctl {
        self.sysctl
    }

    fn rule_selects(rule: &IpRule, key: &FlowKey<'_>) -> bool {
        let mut m = true;
        if let Some(from) = rule.from {
            m &= key.src.is_some_and(|s| from.contains(&s));
        }
        if let Some(to) = rule.to {
            m &= to.contains(&key.dst);
        }
        if let Some((v, mask)) = rule.fwmark {
            m &= key.mark & mask == v;
        }
        if let Some(iif) = &rule.iif {
            // Locally generated packets have iif `lo` in the kernel's flow.
            m &= key.iif.unwrap_or("lo") == iif;
        }
        if let Some(oif) = &rule.oif {
            m &= key.oif == Some(oif.as_str());
        }
        m != rule.not
    }

    /// The best route for `dst` in table `table`.
    pub fn table_lookup(&self, table: u32, dst: Ipv4Addr, oif: Option<&str>) -> Option<&'a Route> {
        let (_, routes) = self.tables.iter().find(|(t, _)| *t == table)?;
        // The routes are in preference order: the first that fits is the best.
        routes.iter().copied().find(|r| {
            r.dst.contains(&dst)
                && oif.is_none_or(|oif| {
                    r.kind != RouteType::Unicast || r.nexthops.iter().any(|n| n.dev.as_deref() == Some(oif))
                })
        })
    }

    /// Look a flow up through the policy rules.
    pub fn lookup(&self, key: &FlowKey<'_>) -> Option<RouteHit<'a>> {
        let mut skip_to: Option<u32> = None;
        for rule in &self.rules {
            if let Some(p) = skip_to {
                if rule.priority < p {
                    continue;
                }
                skip_to = None;
            }
            if !Self::rule_selects(rule, key) {
                continue;
            }
            let table = match rule.action {
                RuleAction::Lookup(t) => t,
                RuleAction::Goto(p) => {
                    skip_to = Some(p);
                    continue;
                }
                RuleAction::Nop => continue,
                RuleAction::Blackhole => {
                    return Some(RouteHit { kind: RouteType::Blackhole, route: None, dev: None, gateway: None })
                }
                RuleAction::Unreachable => {
                    return Some(RouteHit { kind: RouteType::Unreachable, route: None, dev: None, gateway: None })
                }
                RuleAction::Prohibit => {
                    return Some(RouteHit { kind: RouteType::Prohibit, route: None, dev: None, gateway: None })
                }
            };
            let Some(route) = self.table_lookup(table, key.dst, key.oif) else {
                continue;
            };
            if let Some(n) = rule.suppress_prefixlength {
                if route.dst.prefix_len() <= n {
                    continue;
                }
            }
            if route.kind == RouteType::Throw {
                continue;
            }
            let nh = route.nexthops.first();
            return Some(RouteHit {
                kind: route.kind,
                route: Some(route),
                dev: nh.and_then(|n| n.dev.as_deref()),
                gateway: nh.and_then(|n| n.via),
            });
        }
        None
    }

    /// `__inet_dev_addr_type`: the address type of `addr` as the local table
    /// says; with `dev`, a local or broadcast route counts only if it is on
    /// that device (`--limit-iface-in/out`).
    pub fn addr_type(&self, addr: Ipv4Addr, dev: Option<&str>) -> u16 {
        if addr.is_unspecified() || addr.is_broadcast() {
            return AddrTypes::BROADCAST;
        }
        if addr.is_multicast() {
            return AddrTypes::MULTICAST;
        }
        match self.table_lookup(TABLE_LOCAL, addr, None) {
            Some(r) => {
                let on_dev = match dev {
                    None => true,
                    Some(d) => r.nexthops.iter().any(|n| n.dev.as_deref() == Some(d)),
                };
                if !on_dev {
                    return AddrTypes::UNICAST;
                }
                match r.kind {
                    RouteType::Local => AddrTypes::LOCAL,
                    RouteType::Broadcast => AddrTypes::BROADCAST,
                    RouteType::Multicast => AddrTypes::MULTICAST,
                    RouteType::Blackhole => AddrTypes::BLACKHOLE,
                    RouteType::Unreachable => AddrTypes::UNREACHABLE,
                    RouteType::Prohibit => AddrTypes::PROHIBIT,
                    _ => AddrTypes::UNICAST,
                }
            }
            None => AddrTypes::UNICAST,
        }
    }

    /// Whether `addr` is one of this node's own addresses.
    pub fn is_local(&self, addr: Ipv4Addr) -> bool {
        self.addr_type(addr, None) == AddrTypes::LOCAL
    }

    /// `inet_select_addr(dev, dst, RT_SCOPE_UNIVERSE)`: the first primary
    /// address of `dev` whose subnet holds `nexthop`, else its first primary
    /// address; a device without one falls back to the first address of
    /// global scope of any device, in device order.
    pub fn select_src(&self, dev: &str, nexthop: Ipv4Addr) -> Option<Ipv4Addr> {
        if let Some(i) = self.interface(dev) {
            let prim: Vec<_> = i
                .addrs
                .iter()
                .filter(|a| !a.secondary && a.scope != Scope::Host && a.scope != Scope::Nowhere)
                .collect();
            if let Some(a) = prim.iter().find(|a| a.addr.contains(&nexthop)) {
                return Some(a.addr.addr());
            }
            if let Some(a) = prim.first() {
                return Some(a.addr.addr());
            }
        }
        self.interfaces
            .iter()
            .flat_map(|i| i.addrs.iter())
            .find(|a| a.scope == Scope::Global && !a.secondary)
            .map(|a| a.addr.addr())
    }

    /// The source a locally generated packet to `dst` gets: the route's
    /// `src`, else `inet_select_addr` on its device.
    pub fn local_src(&self, dst: Ipv4Addr, mark: u32) -> Option<Ipv4Addr> {
        let hit = self.lookup(&FlowKey { dst, src: None, mark, iif: None, oif: None })?;
        if hit.kind == RouteType::Local {
            return Some(dst);
        }
        if let Some(src) = hit.route.and_then(|r| r.src) {
            return Some(src);
        }
        self.select_src(hit.dev?, hit.nexthop(dst))
    }

    /// The effective rp_filter of `iface` (max of `all` and the interface).
    pub fn rp_filter(&self, iface: &str) -> i64 {
        self.sysctl.rp_filter(iface)
    }

    /// [`Sysctl::rpf_conf`] for `iface`, read once for the node's
    /// interfaces.
    pub fn rpf_conf(&self, iface: &str) -> RpfConf {
        self.rpf.get(iface).copied().unwrap_or_else(|| self.sysctl.rpf_conf(iface))
    }

    /// Whether `addr` is configured on any interface of the node.
    pub fn is_own_addr(&self, addr: Ipv4Addr) -> bool {
        self.own.contains(&addr)
    }

    /// `fib_validate_source` for a packet from `src` to `dst` arriving on
    /// `iif` with `mark`: `Err(reason)` when the kernel drops it (reverse
    /// path filtering, or a martian source).
    ///
    /// net/ipv4/fib_frontend.c: with rp_filter 0 on `iif`, `accept_local`
    /// accepts at once; else, when the node has custom ip rules or custom
    /// local routes, the full check below runs with rp_filter 0 (no route
    /// back passes; a route back that is neither unicast nor local with
    /// accept_local drops; the device is not checked); else only a source
    /// that is one of the node's addresses drops. With rp_filter 1 or more
    /// the full check: no route back drops; a local route back drops unless
    /// accept_local; then the route back must leave by `iif` (a local route
    /// counts for `lo`), or, for any value but 1, `iif` must have an address.
    /// A blackhole, unreachable or prohibit route back is no route back
    /// ([`lookup_fails`]). The route back is looked up with input device
    /// `back` (`None`: `lo`), whatever device the packet arrived on: the
    /// forwarding route's device for a forwarded packet, `lo` for one
    /// delivered locally (`ip_route_input_slow` passes `FIB_RES_OIF` or 0).
    pub fn validate_source(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        iif: &str,
        back: Option<&str>,
        mark: u32,
    ) -> Result<(), String> {
        let RpfConf { rp_filter: rpf, src_valid_mark, accept_local } = self.rpf_conf(iif);
        if rpf == 0 {
            if accept_local {
                return Ok(());
            }
            if !self.full_check {
                if self.is_own_addr(src) {
                    return Err(format!(
                        "martian source {src}: it is an address of this node (rp_filter 0 and accept_local 0 on `{iif}`)"
                    ));
                }
                return Ok(());
            }
        }
        // `__fib_validate_source` looks the route back up with input
        // device `oif ?: LOOPBACK_IFINDEX` (no VRF here): `ip rule iif`
        // selects it by `back`, never by the arrival device.
        let key =
            FlowKey { dst: src, src: Some(dst), mark: if src_valid_mark { mark } else { 0 }, iif: back, oif: None };
        // fib_lookup fails (`fib_props[type].error`) for a blackhole,
        // unreachable, prohibit or nat route or rule: as no route at all.
        let hit = self.lookup(&key);
        let failed = hit.as_ref().map(|h| h.kind).filter(|k| lookup_fails(*k));
        let Some(hit) = hit.filter(|_| failed.is_none()) else {
            if rpf == 0 {
                return Ok(());
            }
            return Err(match failed {
                Some(kind) => {
                    format!("reverse path filter (rp_filter {rpf} on `{iif}`): the route back to {src} is {kind:?}")
                }
                None => format!("reverse path filter (rp_filter {rpf} on `{iif}`): no route back to {src}"),
            });
        };
        match hit.kind {
            RouteType::Unicast => {}
            RouteType::Local if accept_local => {}
            RouteType::Local => return Err(format!("martian source {src}: it is an address of this node")),
            kind => {
                return Err(format!(
                    "martian source {src} (rp_filter {rpf} on `{iif}`): the route back to it is {kind:?}"
                ))
            }
        }
        // fib_info_nh_uses_dev, or a local route and `lo`.
        if hit.dev == Some(iif) || (hit.kind == RouteType::Local && iif == "lo") || rpf == 0 {
            return Ok(());
        }
        // Only 1 is strict: fib_validate_source tests `rpf == 1`, so 2 and
        // every larger value are loose (with an address on the device).
        if rpf != 1 && self.interface(iif).is_some_and(|i| !i.addrs.is_empty()) {
            return Ok(());
        }
        Err(format!(
            "reverse path filter (rp_filter {rpf} on `{iif}`): the route back to {src} leaves by `{}`, not `{iif}`",
            hit.dev.unwrap_or("?")
        ))
    }
}
