//! `cluster.toml`: the hand-written manifest of what no dump can tell
//! (SNAPSHOT.md): which directory is which node and its LAN interface, the
//! machines outside the cluster, and where each pod lives.
//!
//! Contract: unknown keys, duplicate names, addresses that do not parse and
//! pods on unknown nodes are errors naming `cluster.toml`, line and column.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// A node of the cluster (`[[node]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDecl {
    /// The node's name: the directory under `nodes/`.
    pub name: String,
    /// The interface on the segment shared with the other nodes and hosts.
    pub lan: String,
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
}

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
}
