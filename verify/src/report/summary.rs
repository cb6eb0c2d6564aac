//! `natpath parse`: a summary a person can read (or JSON) of a snapshot or
//! of one dump: nodes, tables with chain and rule counts, the services,
//! NodePorts and endpoints kube-proxy's rules declare, Calico's IP pools and
//! the tunnels.

use natpath_model::intent::Intent;
use natpath_model::netstate::{Interface, IpSet};
use natpath_model::ruleset::Ruleset;
use natpath_model::snapshot::Snapshot;
use std::fmt::Write;

/// One table's counts.
/// The schema name of `natpath parse --format json`.
pub const SCHEMA: &str = "natpath.parse/1";

#[derive(Debug, Clone, serde::Serialize)]
pub struct TableSummary {
    /// The table.
    pub name: String,
    /// Chains (built-in and user).
    pub chains: usize,
    /// Rules.
    pub rules: usize,
}

/// One service port as kube-proxy declares it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceSummary {
    /// `ns/name:port`.
    pub name: String,
    /// Protocol.
    pub proto: String,
    /// `IP:PORT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// The NodePort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    /// `Cluster` or `Local`.
    pub external_traffic_policy: &'static str,
    /// sessionAffinity ClientIP.
    pub affinity: bool,
    /// `IP:PORT` of every endpoint.
    pub endpoints: Vec<String>,
    /// External and LoadBalancer IPs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
}

/// One node's summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeSummary {
    /// The node (or the file, for a single dump).
    pub name: String,
    /// Tables in dump order.
    pub tables: Vec<TableSummary>,
    /// Services.
    pub services: Vec<ServiceSummary>,
    /// Calico IP pools.
    pub ip_pools: Vec<String>,
    /// kube-proxy's cluster CIDR, as its local-traffic detector names it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster_cidrs: Vec<String>,
    /// Tunnels: `name (kind, address)`.
    pub tunnels: Vec<String>,
    /// Interface count.
    pub interfaces: usize,
    /// Route count (all tables).
    pub routes: usize,
    /// ipset count.
    pub ipsets: usize,
    /// What the parser assumed and the defaults taken.
    pub notes: Vec<String>,
}

/// The whole summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// `natpath.parse/1`.
    pub schema: &'static str,
    /// `snapshot`, or the kind of the single dump.
    pub kind: String,
    /// The path given.
    pub path: String,
    /// Hosts of cluster.toml.
    pub hosts: Vec<String>,
    /// Pods of cluster.toml.
    pub pods: Vec<String>,
    /// Routers of cluster.toml (absent when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<String>,
    /// Per node.
    pub nodes: Vec<NodeSummary>,
}

/// Summarise one node's dumps.
pub fn node(
    name: &str,
    rs: &Ruleset,
    ipsets: &[IpSet],
    interfaces: &[Interface],
    routes: usize,
    notes: Vec<String>,
) -> NodeSummary {
    let intent = Intent::read(rs, ipsets, interfaces);
    let mut all_notes: Vec<String> = rs.notes.iter().map(|n| format!("{}: {}", n.loc, n.message)).collect();
    all_notes.extend(notes);
    NodeSummary {
        name: name.to_string(),
        tables: rs
            .tables
            .iter()
            .map(|t| TableSummary {
                name: t.name.as_str().to_string(),
                chains: t.chains.len(),
                rules: t.chains.iter().map(|c| c.rules.len()).sum(),
            })
            .collect(),
        services: intent
            .services
            .iter()
            .map(|s| ServiceSummary {
                name: s.name.clone(),
                proto: natpath_model::packet::proto_name(s.proto),
                cluster_ip: s.cluster_ip.map(|(a, p)| format!("{a}:{p}")),
                node_port: s.node_port,
                external_traffic_policy: if s.external_local { "Local" } else { "Cluster" },
                affinity: s.affinity,
                // A node-local chain (internalTrafficPolicy Local) may be
                // all this node's rules say of the endpoints.
                endpoints: s
                    .endpoints
                    .iter()
                    .chain(s.local_endpoints.iter().filter(|l| !s.endpoints.contains(l)))
                    .map(|e| format!("{}:{}", e.address, e.port))
                    .collect(),
                external_ips: s.external_ips.iter().map(|(a, p)| format!("{a}:{p}")).collect(),
            })
            .collect(),
        ip_pools: intent.ip_pools.iter().map(|p| p.to_string()).collect(),
        cluster_cidrs: intent.cluster_cidrs.iter().map(|p| p.to_string()).collect(),
        tunnels: intent
            .tunnels
            .iter()
            .map(|(n, k, a)| match a {
                Some(a) => format!("{n} ({k}, {a})"),
                None => format!("{n} ({k})"),
            })
            .collect(),
        interfaces: interfaces.len(),
        routes,
        ipsets: ipsets.len(),
        notes: all_notes,
    }
}

/// Summarise a snapshot.
pub fn snapshot(snap: &Snapshot, path: &str) -> Summary {
    Summary {
        schema: SCHEMA,
        kind: "snapshot".into(),
        path: path.to_string(),
        hosts: snap.cluster.hosts.iter().map(|h| format!("{} {}", h.name, h.address)).collect(),
        pods: snap
            .cluster
            .pods
            .iter()
            .map(|p| format!("{} {} on {} via {}", p.name, p.address, p.node, p.iface))
            .collect(),
        routers: snap
            .cluster
            .routers
            .iter()
            .map(|r| {
                let routes: Vec<String> = r.parsed.iter().map(|x| format!("{} via {}", x.dst, x.via)).collect();
                let routes = if routes.is_empty() { "no routes".to_string() } else { routes.join(", ") };
                format!("{} {}: {routes}", r.name, r.address)
            })
            .collect(),
        nodes: snap
            .nodes
            .iter()
            .map(|n| node(&n.name, &n.ruleset, &n.ipsets, &n.interfaces, n.routes.len(), n.defaults.clone()))
            .collect(),
    }
}

/// Render a summary as text.
pub fn text(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", s.kind, s.path);
    for h in &s.hosts {
        let _ = writeln!(out, "host {h}");
    }
    for p in &s.pods {
        let _ = writeln!(out, "pod {p}");
    }
    for r in &s.routers {
        let _ = writeln!(out, "router {r}");
    }
    for n in &s.nodes {
        let _ = writeln!(out, "node {}: {} interfaces, {} routes, {} ipsets", n.name, n.interfaces, n.routes, n.ipsets);
        for t in &n.tables {
            let _ = writeln!(out, "  table {:<8} {:>5} chains {:>7} rules", t.name, t.chains, t.rules);
        }
        for sv in &n.services {
            let mut line = format!("  service {} {}", sv.name, sv.proto);
            if let Some(c) = &sv.cluster_ip {
                let _ = write!(line, " cluster IP {c}");
            }
            if let Some(np) = sv.node_port {
                let _ = write!(line, " NodePort {np}");
            }
            let _ = write!(line, " externalTrafficPolicy {}", sv.external_traffic_policy);
            if sv.affinity {
                line.push_str(" affinity ClientIP");
            }
            let _ = writeln!(out, "{line}");
            if !sv.external_ips.is_empty() {
                let _ = writeln!(out, "    external {}", sv.external_ips.join(", "));
            }
            let eps = if sv.endpoints.is_empty() { "none".to_string() } else { sv.endpoints.join(", ") };
            let _ = writeln!(out, "    endpoints {eps}");
        }
        if !n.ip_pools.is_empty() {
            let _ = writeln!(out, "  ip pools {}", n.ip_pools.join(", "));
        }
        if !n.cluster_cidrs.is_empty() {
            let _ = writeln!(out, "  cluster cidr {}", n.cluster_cidrs.join(", "));
        }
        for t in &n.tunnels {
            let _ = writeln!(out, "  tunnel {t}");
        }
        for note in &n.notes {
            let _ = writeln!(out, "  note: {note}");
        }
    }
    out
}
