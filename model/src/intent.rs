//! What the dumps declare the cluster is meant to do: the services, their
//! ports, NodePorts, traffic policies, affinity and endpoints that
//! kube-proxy's rules encode, Calico's IP pools, and the tunnels.
//!
//! Contract: intent is *read* from the rules the way kube-proxy writes them
//! (its chain names `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-XLB-`,
//! `KUBE-SEP-`, `KUBE-FW-` and the `ns/name:port` comments), never from how
//! the rules behave: invariants compare behaviour (model, encoding) against
//! this intent. A dump written by another proxy simply has no services.
//! Never panics; unknown shapes are skipped, not guessed.

use crate::netstate::{Interface, IpSet};
use crate::ruleset::{Match, Proto, Ruleset, TableName, Target};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// One endpoint of a service port: a `KUBE-SEP-` chain and its DNAT.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    /// The `KUBE-SEP-` chain.
    pub chain: String,
    /// The DNAT destination address.
    pub address: Ipv4Addr,
    /// The DNAT destination port.
    pub port: u16,
}

/// One service port as kube-proxy programs it on one node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Service {
    /// `namespace/name:port-name` (the comment kube-proxy writes).
    pub name: String,
    /// The protocol.
    pub proto: Proto,
    /// The cluster IP and port, from KUBE-SERVICES.
    pub cluster_ip: Option<(Ipv4Addr, u16)>,
    /// External IPs and LoadBalancer ingress IPs with their port.
    pub external_ips: Vec<(Ipv4Addr, u16)>,
    /// Which of `external_ips` are LoadBalancer ingress IPs (kube-proxy's
    /// comment ends in "loadbalancer IP"; the others in "external IP").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lb_ips: Vec<Ipv4Addr>,
    /// The NodePort, from KUBE-NODEPORTS.
    pub node_port: Option<u16>,
    /// The `KUBE-SVC-` chain (all endpoints).
    pub svc_chain: Option<String>,
    /// The `KUBE-SVL-` chain (node-local endpoints), when externalTrafficPolicy is Local.
    pub svl_chain: Option<String>,
    /// The `KUBE-EXT-` or `KUBE-XLB-` chain that external traffic enters.
    pub ext_chain: Option<String>,
    /// externalTrafficPolicy Local.
    pub external_local: bool,
    /// sessionAffinity ClientIP (`-m recent` in the service chain).
    pub affinity: bool,
    /// Every endpoint of the service (the `KUBE-SVC-` chain's targets).
    pub endpoints: Vec<Endpoint>,
    /// The endpoints on this node, for Local services (the `KUBE-SVL-` targets).
    pub local_endpoints: Vec<Endpoint>,
    /// True when kube-proxy wrote a "has no endpoints" REJECT for it.
    pub rejects_no_endpoints: bool,
}

/// What one node's dumps declare.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Intent {
    /// Services by name, in name order.
    pub services: Vec<Service>,
    /// kube-proxy's masquerade bit (the `KUBE-MARK-MASQ` value), if present.
    pub masq_mark: Option<u32>,
    /// Calico's IP pools (`cali40all-ipam-pools`).
    pub ip_pools: Vec<Ipv4Net>,
    /// Calico pools whose outgoing traffic is masqueraded (`cali40masq-ipam-pools`).
    pub masq_pools: Vec<Ipv4Net>,
    /// Tunnel interfaces: `(name, kind, address)`, e.g. `tunl0`, `ipip`.
    pub tunnels: Vec<(String, String, Option<Ipv4Net>)>,
    /// kube-proxy's local-traffic detector when it tells pods by address
    /// (`--detect-local-mode ClusterCIDR` or `NodeCIDR`): the prefixes its
    /// rules name, in the order first met (see [`Intent::read`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster_cidrs: Vec<Ipv4Net>,
    /// kube-proxy's local-traffic detector when it tells pods by the device
    /// they arrive on (`BridgeInterface`, `InterfaceNamePrefix`): the
    /// devices as the rules write them (`cni0`, `azv+`). They say nothing
    /// of the pods' addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local_ifaces: Vec<String>,
}

/// The `ns/name:port` part of a kube-proxy comment (`"default/nginx:8080-80 cluster IP"`
/// gives `default/nginx:8080-80`).
fn service_name(comment: &str) -> Option<&str> {
    let first = comment.split_whitespace().next()?;
    (first.contains('/') && !first.starts_with("cali:")).then_some(first)
}

fn dport(rule: &crate::ruleset::Rule) -> Option<u16> {
    rule.matches.iter().find_map(|m| match m {
        Match::Tcp(t) => t.dport.filter(|d| !d.neg).map(|d| d.value.lo),
        Match::Udp(u) => u.dport.filter(|d| !d.neg).map(|d| d.value.lo),
        Match::Sctp(s) => s.dport.filter(|d| !d.neg).map(|d| d.value.lo),
        _ => None,
    })
}

struct ChainIndex<'a>(crate::hash::FastMap<&'a str, &'a crate::ruleset::Chain>);

impl<'a> ChainIndex<'a> {
    fn chain(&self, name: &str) -> Option<&'a crate::ruleset::Chain> {
        self.0.get(name).copied()
    }
}

impl Service {
    /// A service with nothing known but its name and protocol.
    fn new(name: &str, proto: Proto) -> Service {
        Service {
            name: name.to_string(),
            proto,
            cluster_ip: None,
            external_ips: Vec::new(),
            lb_ips: Vec::new(),
            node_port: None,
            svc_chain: None,
            svl_chain: None,
            ext_chain: None,
            external_local: false,
            affinity: false,
            endpoints: Vec::new(),
            local_endpoints: Vec::new(),
            rejects_no_endpoints: false,
        }
    }
}

impl Intent {
    /// Read the intent of one node from its ruleset, ipsets and interfaces.
    pub fn read(ruleset: &Ruleset, ipsets: &[IpSet], interfaces: &[Interface]) -> Intent {
        let mut services: BTreeMap<String, Service> = BTreeMap::new();
        let mut intent = Intent::default();
        if let Some(nat_table) = ruleset.table(TableName::Nat) {
            // Chains by name: kube-proxy writes tens of thousands of them.
            let nat = ChainIndex(nat_table.chains.iter().map(|c| (c.name.as_str(), c)).collect());
            let sep_dest = |chain: &str| -> Option<Endpoint> {
                let c = nat.chain(chain)?;
                c.rules.iter().find_map(|r| match &r.target {
                    Some(Target::Dnat { to, .. }) => {
                        let range = to.first()?;
                        let addrs = range.addrs?;
                        Some(Endpoint {
                            chain: chain.to_string(),
                            address: addrs.lo,
                            port: range.ports.map(|p| p.lo).unwrap_or(0),
                        })
                    }
                    _ => None,
                })
            };
            let chain_endpoints = |chain: &str| -> (Vec<Endpoint>, bool) {
                let mut eps = Vec::new();
                let mut affinity = false;
                if let Some(c) = nat.chain(chain) {
                    for r in &c.rules {
                        if r.matches.iter().any(|m| matches!(m, Match::Recent(_))) {
                            affinity = true;
                        }
                        if let Some(Target::Jump(t)) = &r.target {
                            if t.starts_with("KUBE-SEP-") && !eps.iter().any(|e: &Endpoint| &e.chain == t) {
                                if let Some(ep) = sep_dest(t) {
                                    eps.push(ep);
                                }
                            }
                        }
                    }
                }
                (eps, affinity)
            };
            let mut entry = |name: &str, proto: Proto| -> Service {
                services.remove(name).unwrap_or_else(|| Service::new(name, proto))
            };
            let mut found: Vec<Service> = Vec::new();
            // Where each service is in `found`: 10,000 services must not be
            // searched one by one for each of their rules.
            let mut at: crate::hash::FastMap<String, usize> = crate::hash::FastMap::default();
            for chain_name in ["KUBE-SERVICES", "KUBE-NODEPORTS"] {
                let Some(chain) = nat.chain(chain_name) else { continue };
                for r in &chain.rules {
                    let Some(Target::Jump(target)) = &r.target else { continue };
                    let is_svc = ["KUBE-SVC-", "KUBE-EXT-", "KUBE-XLB-", "KUBE-FW-", "KUBE-SVL-"]
                        .iter()
                        .any(|p| target.starts_with(p));
                    if !is_svc {
                        continue;
                    }
                    let Some(name) = r.comments().find_map(service_name) else { continue };
                    let proto = r.proto.map(|p| p.value).unwrap_or(Proto::TCP);
                    let i = match at.get(name) {
                        Some(&i) => i,
                        None => {
                            found.push(entry(name, proto));
                            at.insert(name.to_string(), found.len() - 1);
                            found.len() - 1
                        }
                    };
                    let Some(s) = found.get_mut(i) else { continue };
                    let port = dport(r);
                    if chain_name == "KUBE-NODEPORTS" {
                        s.node_port = port.or(s.node_port);
                    } else if let (Some(d), Some(port)) = (r.dst.filter(|d| !d.neg), port) {
                        let is_cluster_ip = r.comments().any(|c| c.ends_with("cluster IP"));
                        if is_cluster_ip {
                            s.cluster_ip = Some((d.value.addr(), port));
                        } else if !s.external_ips.contains(&(d.value.addr(), port)) {
                            s.external_ips.push((d.value.addr(), port));
                        }
                        let lb = r.comments().any(|c| c.ends_with("loadbalancer IP"));
                        if lb && !is_cluster_ip && !s.lb_ips.contains(&d.value.addr()) {
                            s.lb_ips.push(d.value.addr());
                        }
                    }
                    if target.starts_with("KUBE-SVC-") {
                        s.svc_chain = Some(target.clone());
                    } else if target.starts_with("KUBE-SVL-") {
                        // internalTrafficPolicy Local: the cluster IP goes
                        // straight to the node-local endpoints.
                        s.svl_chain = Some(target.clone());
                    } else if target.starts_with("KUBE-EXT-") || target.starts_with("KUBE-XLB-") {
                        s.ext_chain = Some(target.clone());
                    }
                }
            }
            for mut s in found {
                // The external chain names the service and local chains.
                if let Some(ext) = s.ext_chain.clone() {
                    if let Some(c) = nat.chain(&ext) {
                        for r in &c.rules {
                            if let Some(Target::Jump(t)) = &r.target {
                                if t.starts_with("KUBE-SVL-") {
                                    s.svl_chain = Some(t.clone());
                                    s.external_local = true;
                                } else if t.starts_with("KUBE-SVC-") && s.svc_chain.is_none() {
                                    s.svc_chain = Some(t.clone());
                                } else if t.starts_with("KUBE-SEP-") {
                                    // Older KUBE-XLB chains jump to local SEPs directly.
                                    s.external_local = true;
                                }
                            }
                            // kube-proxy 1.2x renders Local policy with "pod traffic for"
                            // and "LOCAL traffic for" rules, whether or not this
                            // node has a local endpoint (KUBE-SVL- only if it has).
                            if r.comments().any(|c| {
                                c.contains("has no local endpoints")
                                    || c.starts_with("pod traffic for ")
                                    || c.contains(" LOCAL traffic for ")
                            }) {
                                s.external_local = true;
                            }
                        }
                        if ext.starts_with("KUBE-XLB-") {
                            s.external_local = true;
                            let (eps, aff) = chain_endpoints(&ext);
                            s.local_endpoints = eps;
                            s.affinity |= aff;
                        }
                    }
                }
                if let Some(svc) = s.svc_chain.clone() {
                    let (eps, aff) = chain_endpoints(&svc);
                    s.endpoints = eps;
                    s.affinity |= aff;
                }
                if let Some(svl) = s.svl_chain.clone() {
                    let (eps, aff) = chain_endpoints(&svl);
                    s.local_endpoints = eps;
                    s.affinity |= aff;
                }
                services.insert(s.name.clone(), s);
            }
            let (cidrs, ifaces) = local_detector(nat_table);
            intent.cluster_cidrs = cidrs;
            intent.local_ifaces = ifaces;
            intent.masq_mark = nat.chain("KUBE-MARK-MASQ").and_then(|c| {
                c.rules.iter().find_map(|r| match r.target {
                    Some(Target::Mark { value, .. }) if value != 0 => Some(value),
                    _ => None,
                })
            });
        }
        // What kube-proxy refuses in filter: a Service without endpoints is
        // REJECTed ("has no endpoints"), and a Local traffic policy without
        // an endpoint on this node is DROPped ("has no local endpoints"):
        // in KUBE-SERVICES for the cluster IP (internalTrafficPolicy), in
        // KUBE-EXTERNAL-SERVICES for NodePorts, external and load-balancer
        // IPs (externalTrafficPolicy). These rules may be all the node says
        // of such a Service, so they declare its addresses too.
        if let Some(filter) = ruleset.table(TableName::Filter) {
            for c in &filter.chains {
                let internal = c.name == "KUBE-SERVICES";
                if !internal && c.name != "KUBE-EXTERNAL-SERVICES" {
                    continue;
                }
                for r in &c.rules {
                    let no_local = r.comments().any(|c| c.ends_with("has no local endpoints"));
                    let none = r.comments().any(|c| c.ends_with("has no endpoints"));
                    let refuses = match r.target {
                        Some(Target::Reject(_)) => none,
                        Some(Target::Drop) => no_local,
                        _ => false,
                    };
                    if !refuses {
                        continue;
                    }
                    let Some(name) = r.comments().find_map(service_name) else { continue };
                    let proto = r.proto.filter(|p| !p.neg).map(|p| p.value).unwrap_or(Proto::TCP);
                    let s = services.entry(name.to_string()).or_insert_with(|| Service::new(name, proto));
                    if none {
                        s.rejects_no_endpoints = true;
                    } else if !internal {
                        s.external_local = true;
                    }
                    let Some(port) = dport(r) else { continue };
                    match r.dst.filter(|d| !d.neg) {
                        Some(d) if internal => {
                            s.cluster_ip.get_or_insert((d.value.addr(), port));
                        }
                        Some(d) if !s.external_ips.contains(&(d.value.addr(), port)) => {
                            s.external_ips.push((d.value.addr(), port));
                        }
                        Some(_) => {}
                        None if !internal => s.node_port = s.node_port.or(Some(port)),
                        None => {}
                    }
                }
            }
        }
        intent.services = services.into_values().collect();
        let members = |name: &str| -> Vec<Ipv4Net> {
            ipsets.iter().filter(|s| s.name == name).flat_map(|s| s.entries.iter().filter_map(|e| e.net)).collect()
        };
        intent.ip_pools = members("cali40all-ipam-pools");
        intent.masq_pools = members("cali40masq-ipam-pools");
        for i in interfaces {
            let kind = match (i.name.as_str(), i.link_type.as_deref(), i.kind.as_deref()) {
                (_, _, Some(k)) if k == "ipip" || k == "vxlan" => Some(k.to_string()),
                (_, Some("ipip"), _) => Some("ipip".to_string()),
                ("vxlan.calico", _, _) => Some("vxlan".to_string()),
                (n, _, _) if n.starts_with("flannel.") => Some("vxlan".to_string()),
                _ => None,
            };
            if let Some(kind) = kind {
                intent.tunnels.push((i.name.clone(), kind, i.addrs.first().map(|a| a.addr)));
            }
        }
        intent
    }

    /// Whether `addr` is inside kube-proxy's cluster CIDR (as its rules
    /// name it) or one of Calico's IP pools: a pod's address, as far as
    /// this node's rules say.
    pub fn in_pod_nets(&self, addr: Ipv4Addr) -> bool {
        self.in_pools(addr) || self.cluster_cidrs.iter().any(|n| n.contains(&addr))
    }

    /// The service whose NodePort is `port` for `proto`.
    pub fn by_node_port(&self, proto: Proto, port: u16) -> Option<&Service> {
        self.services.iter().find(|s| s.proto == proto && s.node_port == Some(port))
    }

    /// Whether `addr` is inside one of Calico's IP pools.
    pub fn in_pools(&self, addr: Ipv4Addr) -> bool {
        self.ip_pools.iter().any(|n| n.contains(&addr))
    }
}

/// kube-proxy's local-traffic detector, read from every rule that carries
/// it: the cluster-IP masquerade rule (`! -s CIDR -d CLUSTER-IP ... -j
/// KUBE-MARK-MASQ`, in `KUBE-SERVICES` before kube-proxy 1.2x, in the
/// `KUBE-SVC-`/`KUBE-SVL-` chain since), and the short cut that sends pods'
/// traffic to an external address straight to the service (`-s CIDR ... -j
/// KUBE-SVC-`, in `KUBE-EXT-` or the older `KUBE-XLB-`). With an interface
/// detector the same rules carry `! -i DEV` and `-i DEV` instead. Rules of
/// other shapes (a `KUBE-SEP-`'s hairpin `-s POD/32`, a `KUBE-FW-`'s source
/// ranges) are not the detector and are not read.
fn local_detector(nat: &crate::ruleset::Table) -> (Vec<Ipv4Net>, Vec<String>) {
    let mut cidrs: Vec<Ipv4Net> = Vec::new();
    let mut ifaces: Vec<String> = Vec::new();
    let mut add = |src: Option<&crate::ruleset::Neg<Ipv4Net>>,
                   dev: Option<&crate::ruleset::Neg<crate::ruleset::Iface>>,
                   neg: bool| {
        if let Some(s) = src.filter(|s| s.neg == neg) {
            if !cidrs.contains(&s.value) {
                cidrs.push(s.value);
            }
        }
        if let Some(i) = dev.filter(|i| i.neg == neg) {
            let name = if i.value.wildcard { format!("{}+", i.value.name) } else { i.value.name.to_string() };
            if !ifaces.contains(&name) {
                ifaces.push(name);
            }
        }
    };
    for c in &nat.chains {
        let masq_side = c.name == "KUBE-SERVICES" || c.name.starts_with("KUBE-SVC-") || c.name.starts_with("KUBE-SVL-");
        let pod_side = c.name.starts_with("KUBE-EXT-") || c.name.starts_with("KUBE-XLB-");
        if !masq_side && !pod_side {
            continue;
        }
        for r in &c.rules {
            let Some(Target::Jump(t)) = &r.target else { continue };
            if masq_side && t == "KUBE-MARK-MASQ" && r.dst.is_some_and(|d| !d.neg) {
                add(r.src.as_ref(), r.in_iface.as_ref(), true);
            } else if pod_side && t.starts_with("KUBE-SVC-") {
                add(r.src.as_ref(), r.in_iface.as_ref(), false);
            }
        }
    }
    (cidrs, ifaces)
}
