//! What to generate ([`Spec`]) and the seeded construction of the declared
//! cluster from it.
//!
//! Contract: [`build`] is a pure function of the [`Spec`]: the same spec gives
//! the same cluster, byte for byte, on every machine. The mix follows the
//! kube-proxy reference's Services (`svc100.services.json`): 60% ClusterIP,
//! 30% NodePort, 10% LoadBalancer; 20% of NodePort and LoadBalancer Services
//! with `externalTrafficPolicy: Local` (LoadBalancers among them get a health
//! check NodePort); 10% with `sessionAffinity: ClientIP` (10800 s); 40% of
//! LoadBalancers with source ranges; the reference's port shapes (unnamed
//! 80, http, https, http+https, dns+dns-tcp, metrics, grpc, syslog/UDP).
//! Two well-known Services come first when there is room:
//! `default/kubernetes` (the API server on the first node, 6443) and
//! `kube-system/kube-dns` (two CoreDNS pods). Every other Service picks its
//! endpoints among the pods of its namespace, so pods are shared between
//! Services the way Deployments behind several Services are, and a node
//! holds at most [`Spec::pods_per_node`] pods however many Services there
//! are. NodePorts are allocated upward from 30000; beyond 32767 (the API
//! server's default range) they continue upward as with a widened
//! `--service-node-port-range`.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::cluster::{Cluster, Encap, Endpoint, Host, Node, Pod, Protocol, Service, ServicePort, ServiceType};
use crate::names;
use crate::rng::Rng;

/// Shares of the Service mix, each in `0.0..=1.0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Share of NodePort Services.
    pub node_port: f64,
    /// Share of LoadBalancer Services (the rest are ClusterIP).
    pub load_balancer: f64,
    /// Share of NodePort and LoadBalancer Services with `externalTrafficPolicy: Local`.
    pub local: f64,
    /// Share of Services with `sessionAffinity: ClientIP`.
    pub affinity: f64,
    /// Share of LoadBalancers with `loadBalancerSourceRanges`.
    pub source_ranges: f64,
    /// Share of Services without any endpoint (kube-proxy REJECTs them).
    pub no_endpoints: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { node_port: 0.3, load_balancer: 0.1, local: 0.2, affinity: 0.1, source_ranges: 0.4, no_endpoints: 0.0 }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Seed: the same spec and seed give the same snapshot.
    pub seed: u64,
    /// Number of Services (including the two well-known ones).
    pub services: usize,
    /// Number of nodes (`node-1` … `node-M`).
    pub nodes: usize,
    /// Endpoints per Service, uniform in `min..=max` (mean 5 by default).
    pub endpoints: (usize, usize),
    /// Pods per node (kubelet's default `maxPods` is 110).
    pub pods_per_node: usize,
    /// Calico overlay.
    pub encap: Encap,
    /// The nodes' LAN interface (`ens192`, `eth0`).
    pub lan: String,
    /// Service mix.
    pub mix: Mix,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            seed: 1,
            services: 100,
            nodes: 3,
            endpoints: (1, 9),
            pods_per_node: 110,
            encap: Encap::Ipip,
            lan: "ens192".to_string(),
            mix: Mix::default(),
        }
    }
}

impl Spec {
    /// The default spec with `services` Services.
    pub fn with_services(services: usize) -> Self {
        Spec { services, ..Spec::default() }
    }
}

/// The Service CIDR (kubeadm's default).
const SERVICE_CIDR_BASE: u32 = 0x0A60_0000; // 10.96.0.0/12
const SERVICE_CIDR_SIZE: u32 = 1 << 20;
/// Load-balancer ingress range (RFC 2544 benchmarking space, 198.18.0.0/15).
const LB_BASE: u32 = 0xC612_0000;
const LB_SIZE: u32 = 1 << 17;
/// Documentation ranges used as `loadBalancerSourceRanges`.
const SOURCE_RANGES: [&str; 3] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];
const NAMESPACES: usize = 20;

struct PortShape {
    weight: u32,
    ports: &'static [PortTemplate],
}

/// The reference's port shapes, weighted as in `svc100.services.json`.
const SHAPES: &[PortShape] = &[
    PortShape { weight: 33, ports: &[("", Protocol::Tcp, 80, 8080)] },
    PortShape { weight: 21, ports: &[("http", Protocol::Tcp, 80, 8080)] },
    PortShape { weight: 14, ports: &[("https", Protocol::Tcp, 443, 8443)] },
    PortShape { weight: 13, ports: &[("http", Protocol::Tcp, 80, 8080), ("https", Protocol::Tcp, 443, 8443)] },
    PortShape { weight: 6, ports: &[("dns", Protocol::Udp, 53, 5353), ("dns-tcp", Protocol::Tcp, 53, 5353)] },
    PortShape { weight: 5, ports: &[("metrics", Protocol::Tcp, 9100, 9100)] },
    PortShape { weight: 4, ports: &[("grpc", Protocol::Tcp, 9090, 9090)] },
    PortShape { weight: 4, ports: &[("", Protocol::Udp, 514, 5514)] },
];

type PortTemplate = (&'static str, Protocol, u16, u16);

fn pick_shape(rng: &mut Rng) -> &'static [PortTemplate] {
    let total: u32 = SHAPES.iter().map(|s| s.weight).sum();
    let mut x = rng.below(u64::from(total)) as u32;
    for s in SHAPES {
        if x < s.weight {
            return s.ports;
        }
        x -= s.weight;
    }
    // INVARIANT: `x < total`, so the loop returned; any shape will do here.
    &[("", Protocol::Tcp, 80, 8080)]
}

fn add(base: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base).wrapping_add(n))
}

/// Calico's IP pool in the seed's clusters, also kube-proxy's cluster CIDR.
fn pool() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16).unwrap_or_default()
}

/// The declared cluster for a spec.
pub fn build(spec: &Spec) -> Cluster {
    let root = Rng::new(spec.seed);
    let nodes = build_nodes(spec, &mut root.fork(1));
    let mut pods = build_pods(spec, &nodes, &mut root.fork(2));
    let services = build_services(spec, &nodes, &mut pods, &mut root.fork(3));
    let lan_base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    let hosts = vec![Host {
        name: "client".to_string(),
        ip: Ipv4Addr::from(lan_base + 10),
        prefix: lan_prefix(spec.nodes),
        gateway: Some(Ipv4Addr::from(lan_base + 1)),
    }];
    Cluster { nodes, pods, services, hosts, pool: pool(), encap: spec.encap }
}

fn lan_prefix(nodes: usize) -> u8 {
    if nodes + 51 < 255 {
        24
    } else {
        16
    }
}

fn build_nodes(spec: &Spec, rng: &mut Rng) -> Vec<Node> {
    let n = spec.nodes.max(1);
    let pool = pool();
    let block_count = 1usize << (26 - pool.prefix_len().min(26));
    // The first block holds the tunnel address, so it takes one pod less.
    let blocks_per_node = (spec.pods_per_node + 1).div_ceil(64).max(1);
    let mut taken = HashSet::new();
    let lan_base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mut blocks = Vec::with_capacity(blocks_per_node);
        while blocks.len() < blocks_per_node && taken.len() < block_count {
            let b = rng.index(block_count);
            if taken.insert(b) {
                let net = add(pool.network(), (b as u32) << 6);
                if let Ok(block) = Ipv4Net::new(net, 26) {
                    blocks.push(block);
                }
            }
        }
        let mut mac = [0u8; 6];
        let r = rng.next_u64().to_be_bytes();
        mac.copy_from_slice(r.get(..6).unwrap_or(&[0; 6]));
        mac[0] = (mac[0] & 0xFE) | 0x02;
        nodes.push(Node {
            name: format!("node-{}", i + 1),
            ip: Ipv4Addr::from(lan_base + 51 + i as u32),
            lan_prefix: lan_prefix(n),
            lan: spec.lan.clone(),
            gateway: Ipv4Addr::from(lan_base + 1),
            blocks,
            mac,
        });
    }
    nodes
}

fn build_pods(spec: &Spec, nodes: &[Node], rng: &mut Rng) -> Vec<Pod> {
    let mut pods = Vec::with_capacity(nodes.len() * spec.pods_per_node);
    let mut serial = 0usize;
    for (ni, node) in nodes.iter().enumerate() {
        // Addresses of the node's blocks after the tunnel address.
        let mut addrs = node.blocks.iter().flat_map(|b| (0..64u32).map(move |k| add(b.network(), k))).skip(1);
        for k in 0..spec.pods_per_node {
            let Some(ip) = addrs.next() else { break };
            // Two CoreDNS pods on the first two nodes, as kubeadm places them.
            let (namespace, name) = if k == 0 && ni < 2 {
                ("kube-system".to_string(), format!("coredns-5dd5756b68-{}", suffix(rng)))
            } else {
                serial += 1;
                (format!("ns-{:02}", rng.index(NAMESPACES)), format!("app-{serial:05}-{}", suffix(rng)))
            };
            let iface = names::calico_veth(&namespace, &name);
            pods.push(Pod { namespace, name, node: ni, ip, iface, listen: Vec::new() });
        }
    }
    pods
}

/// A ReplicaSet-style 5-character pod suffix.
fn suffix(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| char::from(ALPHABET.get(rng.index(ALPHABET.len())).copied().unwrap_or(b'x'))).collect()
}

struct Allocators {
    cluster_ips: HashSet<u32>,
    lb_ips: HashSet<u32>,
    next_node_port: u32,
}

impl Allocators {
    fn cluster_ip(&mut self, rng: &mut Rng) -> Ipv4Addr {
        loop {
            // Skip the network address, .1 (kubernetes) and .10 (kube-dns).
            let off = 11 + rng.below(u64::from(SERVICE_CIDR_SIZE - 12)) as u32;
            if self.cluster_ips.insert(off) {
                return Ipv4Addr::from(SERVICE_CIDR_BASE + off);
            }
        }
    }

    fn lb_ip(&mut self, rng: &mut Rng) -> Ipv4Addr {
        loop {
            let off = 1 + rng.below(u64::from(LB_SIZE - 2)) as u32;
            if self.lb_ips.insert(off) {
                return Ipv4Addr::from(LB_BASE + off);
            }
        }
    }

    fn node_port(&mut self) -> u16 {
        let p = self.next_node_port.min(65535) as u16;
        self.next_node_port += 1;
        p
    }
}

fn build_services(spec: &Spec, nodes: &[Node], pods: &mut [Pod], rng: &mut Rng) -> Vec<Service> {
    let mut alloc = Allocators { cluster_ips: HashSet::new(), lb_ips: HashSet::new(), next_node_port: 30000 };
    let mut services = Vec::with_capacity(spec.services);
    let mut by_ns: Vec<Vec<usize>> = vec![Vec::new(); NAMESPACES];
    let mut dns_pods = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        if p.namespace == "kube-system" {
            dns_pods.push(i);
        } else if let Some(ns) = p.namespace.strip_prefix("ns-").and_then(|n| n.parse::<usize>().ok()) {
            if let Some(list) = by_ns.get_mut(ns) {
                list.push(i);
            }
        }
    }
    let mut listen: Vec<BTreeSet<String>> = vec![BTreeSet::new(); pods.len()];

    if spec.services >= 1 {
        if let Some(first) = nodes.first() {
            services.push(Service {
                namespace: "default".to_string(),
                name: "kubernetes".to_string(),
                kind: ServiceType::ClusterIp,
                cluster_ip: Ipv4Addr::from(SERVICE_CIDR_BASE + 1),
                ports: vec![ServicePort {
                    name: "https".to_string(),
                    protocol: Protocol::Tcp,
                    port: 443,
                    target_port: 6443,
                    node_port: None,
                }],
                external_local: false,
                internal_local: false,
                affinity_timeout: None,
                health_check_node_port: None,
                load_balancer_ips: Vec::new(),
                source_ranges: Vec::new(),
                external_ips: Vec::new(),
                endpoints: vec![Endpoint { ip: first.ip, node: first.name.clone(), ready: true }],
            });
        }
    }
    if spec.services >= 2 && !dns_pods.is_empty() {
        let ports = vec![
            ServicePort {
                name: "dns".to_string(),
                protocol: Protocol::Udp,
                port: 53,
                target_port: 53,
                node_port: None,
            },
            ServicePort {
                name: "dns-tcp".to_string(),
                protocol: Protocol::Tcp,
                port: 53,
                target_port: 53,
                node_port: None,
            },
            ServicePort {
                name: "metrics".to_string(),
                protocol: Protocol::Tcp,
                port: 9153,
                target_port: 9153,
                node_port: None,
            },
        ];
        let endpoints = endpoints_of(&dns_pods, pods, nodes, &ports, &mut listen);
        services.push(Service {
            namespace: "kube-system".to_string(),
            name: "kube-dns".to_string(),
            kind: ServiceType::ClusterIp,
            cluster_ip: Ipv4Addr::from(SERVICE_CIDR_BASE + 10),
            ports,
            external_local: false,
            internal_local: false,
            affinity_timeout: None,
            health_check_node_port: None,
            load_balancer_ips: Vec::new(),
            source_ranges: Vec::new(),
            external_ips: Vec::new(),
            endpoints,
        });
    }

    let mix = &spec.mix;
    let mut serial = 0usize;
    while services.len() < spec.services {
        let ns = rng.index(NAMESPACES);
        let roll = rng.next_u64() as f64 / u64::MAX as f64;
        let kind = if roll < mix.load_balancer {
            ServiceType::LoadBalancer
        } else if roll < mix.load_balancer + mix.node_port {
            ServiceType::NodePort
        } else {
            ServiceType::ClusterIp
        };
        let shape = pick_shape(rng);
        let ports: Vec<ServicePort> = shape
            .iter()
            .map(|(name, protocol, port, target)| ServicePort {
                name: name.to_string(),
                protocol: *protocol,
                port: *port,
                target_port: *target,
                node_port: (kind != ServiceType::ClusterIp).then(|| alloc.node_port()),
            })
            .collect();
        let external_local = kind != ServiceType::ClusterIp && rng.chance(mix.local);
        let health_check_node_port = (kind == ServiceType::LoadBalancer && external_local).then(|| alloc.node_port());
        let affinity_timeout = rng.chance(mix.affinity).then_some(10800);
        let mut load_balancer_ips = Vec::new();
        let mut source_ranges = Vec::new();
        if kind == ServiceType::LoadBalancer {
            load_balancer_ips.push(alloc.lb_ip(rng));
            if rng.chance(mix.source_ranges) {
                let first = rng.index(SOURCE_RANGES.len());
                let count = rng.between(1, 2);
                for k in 0..count {
                    if let Some(r) = SOURCE_RANGES.get((first + k) % SOURCE_RANGES.len()).and_then(|r| r.parse().ok()) {
                        source_ranges.push(r);
                    }
                }
            }
        }
        let candidates = by_ns.get(ns).cloned().unwrap_or_default();
        let chosen = if rng.chance(mix.no_endpoints) {
            Vec::new()
        } else {
            let want = rng.between(spec.endpoints.0, spec.endpoints.1.max(spec.endpoints.0)).min(candidates.len());
            choose(rng, &candidates, want)
        };
        let endpoints = endpoints_of(&chosen, pods, nodes, &ports, &mut listen);
        let cluster_ip = alloc.cluster_ip(rng);
        services.push(Service {
            namespace: format!("ns-{ns:02}"),
            name: format!("svc-{serial:05}"),
            kind,
            cluster_ip,
            ports,
            external_local,
            internal_local: false,
            affinity_timeout,
            health_check_node_port,
            load_balancer_ips,
            source_ranges,
            external_ips: Vec::new(),
            endpoints,
        });
        serial += 1;
    }
    for (pod, ports) in pods.iter_mut().zip(listen) {
        pod.listen = ports.into_iter().collect();
    }
    services
}

/// `want` distinct elements of `from`, in random order.
fn choose(rng: &mut Rng, from: &[usize], want: usize) -> Vec<usize> {
    let mut pool: Vec<usize> = from.to_vec();
    let want = want.min(pool.len());
    for i in 0..want {
        let j = i + rng.index(pool.len() - i);
        pool.swap(i, j);
    }
    pool.truncate(want);
    pool
}

fn endpoints_of(
    chosen: &[usize],
    pods: &[Pod],
    nodes: &[Node],
    ports: &[ServicePort],
    listen: &mut [BTreeSet<String>],
) -> Vec<Endpoint> {
    let mut out = Vec::with_capacity(chosen.len());
    for &i in chosen {
        let Some(pod) = pods.get(i) else { continue };
        let node = nodes.get(pod.node).map(|n| n.name.clone()).unwrap_or_default();
        out.push(Endpoint { ip: pod.ip, node, ready: true });
        if let Some(set) = listen.get_mut(i) {
            for p in ports {
                set.insert(format!("{}/{}", p.protocol.lower(), p.target_port));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_sized() {
        let spec = Spec::with_services(50);
        let a = build(&spec);
        assert_eq!(a, build(&spec));
        assert_eq!(a.services.len(), 50);
        assert_eq!(a.nodes.len(), 3);
        assert_eq!(a.pods.len(), 330);
        // Pods are in their node's blocks and distinct.
        let mut ips: Vec<_> = a.pods.iter().map(|p| p.ip).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), a.pods.len());
        for p in &a.pods {
            assert!(a.nodes[p.node].blocks.iter().any(|b| b.contains(&p.ip)));
        }
        assert_ne!(build(&Spec { seed: 2, ..spec }).services, a.services);
    }
}
