//! Reads a Services file in the form of
//! `kube-proxy-reference/svc100.services.json`: the Services and ready
//! endpoints that were fed to kube-proxy v1.28.7, with the proxier's
//! configuration (`generator`: node, cluster CIDR, masquerade mark,
//! localhost NodePorts).
//!
//! Contract: unknown fields are ignored; a missing required field, a field
//! of the wrong type, an address or CIDR that does not parse, an unknown
//! Service type, protocol, traffic policy or affinity, and a node that is
//! not listed are errors naming the Service (or JSON position). IPv6
//! addresses are rejected: the generator is IPv4 only.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::cluster::{Endpoint, KubeProxyConfig, Protocol, Service, ServicePort, ServiceType};

/// Why a Services file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesError(pub String);

impl std::fmt::Display for ServicesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServicesError {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    #[serde(default)]
    generator: Generator,
    services: Vec<JsonService>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Generator {
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: Option<String>,
    localhost_node_ports: Option<bool>,
    masquerade_mark: Option<String>,
    #[serde(default)]
    nodes: Vec<JsonNode>,
}

#[derive(Deserialize, Clone)]
struct JsonNode {
    name: String,
    ip: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonService {
    namespace: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "clusterIP")]
    cluster_ip: String,
    ports: Vec<JsonPort>,
    external_traffic_policy: Option<String>,
    internal_traffic_policy: Option<String>,
    session_affinity: Option<String>,
    session_affinity_timeout_seconds: Option<u32>,
    health_check_node_port: Option<u16>,
    #[serde(rename = "loadBalancerIngressIPs", default)]
    load_balancer_ingress_ips: Vec<String>,
    #[serde(default)]
    load_balancer_source_ranges: Vec<String>,
    #[serde(rename = "externalIPs", default)]
    external_ips: Vec<String>,
    #[serde(default)]
    endpoints: Vec<JsonEndpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonPort {
    #[serde(default)]
    name: String,
    protocol: String,
    port: u16,
    target_port: u16,
    node_port: Option<u16>,
}

#[derive(Deserialize)]
struct JsonEndpoint {
    ip: String,
    node: String,
    #[serde(default = "yes")]
    ready: bool,
}

fn yes() -> bool {
    true
}

/// What a Services file declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// Nodes (name, IP) from `generator.nodes`.
    pub nodes: Vec<(String, Ipv4Addr)>,
    /// kube-proxy's cluster CIDR (local-traffic detector).
    pub cluster_cidr: Option<Ipv4Net>,
    /// `localhostNodePorts`.
    pub localhost_nodeports: bool,
    /// Masquerade bit (from `masqueradeMark`).
    pub masquerade_bit: u8,
    /// The Services.
    pub services: Vec<Service>,
}

impl Declared {
    /// kube-proxy's configuration on node `node`.
    pub fn proxier(&self, node: &str) -> Result<KubeProxyConfig, ServicesError> {
        let (name, ip) = self
            .nodes
            .iter()
            .find(|(n, _)| n == node)
            .ok_or_else(|| ServicesError(format!("node `{node}` is not in `generator.nodes`")))?;
        Ok(KubeProxyConfig {
            node_name: name.clone(),
            node_ip: *ip,
            cluster_cidr: self.cluster_cidr,
            masquerade_all: false,
            masquerade_bit: self.masquerade_bit,
            localhost_nodeports: self.localhost_nodeports,
            random_fully: true,
            conntrack_tcp_liberal: false,
        })
    }
}

fn ip(text: &str, what: &str) -> Result<Ipv4Addr, ServicesError> {
    text.parse().map_err(|_| ServicesError(format!("{what}: expected an IPv4 address, found `{text}`")))
}

fn cidr(text: &str, what: &str) -> Result<Ipv4Net, ServicesError> {
    text.parse().map_err(|_| ServicesError(format!("{what}: expected an IPv4 CIDR, found `{text}`")))
}

/// Read a Services file.
pub fn read(json: &str) -> Result<Declared, ServicesError> {
    let file: File = serde_json::from_str(json).map_err(|e| ServicesError(format!("services file: {e}")))?;
    let g = &file.generator;
    let mut nodes = Vec::new();
    for n in &g.nodes {
        nodes.push((n.name.clone(), ip(&n.ip, &format!("node `{}`", n.name))?));
    }
    let cluster_cidr = match &g.cluster_cidr {
        Some(c) => Some(cidr(c, "generator.clusterCIDR")?),
        None => None,
    };
    let masquerade_bit = match &g.masquerade_mark {
        None => 14,
        Some(m) => {
            let v = u32::from_str_radix(m.trim_start_matches("0x"), 16)
                .map_err(|_| ServicesError(format!("generator.masqueradeMark: expected a hex mark, found `{m}`")))?;
            if !v.is_power_of_two() {
                return Err(ServicesError(format!("generator.masqueradeMark: expected a single bit, found `{m}`")));
            }
            v.trailing_zeros() as u8
        }
    };
    let mut services = Vec::with_capacity(file.services.len());
    for s in &file.services {
        let what = format!("service `{}/{}`", s.namespace, s.name);
        let kind = match s.kind.as_str() {
            "ClusterIP" => ServiceType::ClusterIp,
            "NodePort" => ServiceType::NodePort,
            "LoadBalancer" => ServiceType::LoadBalancer,
            other => return Err(ServicesError(format!("{what}: unknown type `{other}`"))),
        };
        let local = |policy: &Option<String>, field: &str| -> Result<bool, ServicesError> {
            match policy.as_deref() {
                None | Some("Cluster") => Ok(false),
                Some("Local") => Ok(true),
                Some(other) => Err(ServicesError(format!("{what}: unknown {field} `{other}`"))),
            }
        };
        let affinity_timeout = match s.session_affinity.as_deref() {
            None | Some("None") => None,
            Some("ClientIP") => Some(s.session_affinity_timeout_seconds.unwrap_or(10800)),
            Some(other) => return Err(ServicesError(format!("{what}: unknown sessionAffinity `{other}`"))),
        };
        let mut ports = Vec::with_capacity(s.ports.len());
        for p in &s.ports {
            let protocol = match p.protocol.as_str() {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                other => return Err(ServicesError(format!("{what}: unknown protocol `{other}`"))),
            };
            ports.push(ServicePort {
                name: p.name.clone(),
                protocol,
                port: p.port,
                target_port: p.target_port,
                node_port: p.node_port.filter(|n| *n != 0),
            });
        }
        let mut endpoints = Vec::with_capacity(s.endpoints.len());
        for e in &s.endpoints {
            endpoints.push(Endpoint {
                ip: ip(&e.ip, &format!("{what} endpoint"))?,
                node: e.node.clone(),
                ready: e.ready,
            });
        }
        services.push(Service {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            kind,
            cluster_ip: ip(&s.cluster_ip, &format!("{what} clusterIP"))?,
            ports,
            external_local: local(&s.external_traffic_policy, "externalTrafficPolicy")?,
            internal_local: local(&s.internal_traffic_policy, "internalTrafficPolicy")?,
            affinity_timeout,
            health_check_node_port: s.health_check_node_port.filter(|n| *n != 0),
            load_balancer_ips: s
                .load_balancer_ingress_ips
                .iter()
                .map(|t| ip(t, &format!("{what} loadBalancer ingress")))
                .collect::<Result<_, _>>()?,
            source_ranges: s
                .load_balancer_source_ranges
                .iter()
                .map(|t| cidr(t, &format!("{what} loadBalancerSourceRanges")))
                .collect::<Result<_, _>>()?,
            external_ips: s
                .external_ips
                .iter()
                .map(|t| ip(t, &format!("{what} externalIPs")))
                .collect::<Result<_, _>>()?,
            endpoints,
        });
    }
    Ok(Declared {
        nodes,
        cluster_cidr,
        localhost_nodeports: g.localhost_node_ports.unwrap_or(true),
        masquerade_bit,
        services,
    })
}
