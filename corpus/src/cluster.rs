//! The cluster the generator renders: nodes, pods, Services with their
//! endpoints, and the configuration kube-proxy and Calico run with.
//!
//! Contract: this is the *declared* state (what the API server and Calico
//! IPAM hold), never rules; [`crate::kube_proxy`] and [`crate::calico`] turn
//! it into what kube-proxy v1.28 and Calico write on one node. A cluster is
//! built either from a [`crate::Spec`] ([`crate::spec`]) or from a Services
//! file ([`crate::services_json`]).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// A Service port's L4 protocol, as kube-proxy writes it (`-p tcp`, `-m udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lower-case name kube-proxy hashes and writes.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    /// Reachable on its cluster IP only.
    ClusterIp,
    /// Also on a port of every node.
    NodePort,
    /// Also on load-balancer ingress IPs.
    LoadBalancer,
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name, empty for an unnamed single port.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Port on the cluster IP (and load-balancer IPs).
    pub port: u16,
    /// Port on the endpoints.
    pub target_port: u16,
    /// NodePort, if allocated.
    pub node_port: Option<u16>,
}

/// One endpoint of a Service (an EndpointSlice entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Pod (or host) address.
    pub ip: Ipv4Addr,
    /// Node the endpoint runs on.
    pub node: String,
    /// `conditions.ready`.
    pub ready: bool,
}

/// A Service as kube-proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ServiceType,
    /// Cluster IP.
    pub cluster_ip: Ipv4Addr,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `sessionAffinity: ClientIP` with its timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// `healthCheckNodePort` (LoadBalancer with Local policy).
    pub health_check_node_port: Option<u16>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `loadBalancerSourceRanges`.
    pub source_ranges: Vec<Ipv4Net>,
    /// `externalIPs`.
    pub external_ips: Vec<Ipv4Addr>,
    /// Endpoints (for every port: kube-proxy pairs them with `target_port`).
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    /// `namespace/name[:port]`, kube-proxy's ServicePortName string.
    pub fn port_name(&self, port: &ServicePort) -> String {
        if port.name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, port.name)
        }
    }
}

/// How kube-proxy is configured on the node being rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeProxyConfig {
    /// `--hostname-override`: which endpoints are local.
    pub node_name: String,
    /// The node's primary IP (for loadBalancerSourceRanges `allowFromNode`).
    pub node_ip: Ipv4Addr,
    /// `--cluster-cidr` for the local-traffic detector (`! -s` / `-s`);
    /// `None` when the detector is not implemented.
    pub cluster_cidr: Option<Ipv4Net>,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit` (14 gives mark 0x4000).
    pub masquerade_bit: u8,
    /// `--iptables-localhost-nodeports`.
    pub localhost_nodeports: bool,
    /// iptables supports `--random-fully`.
    pub random_fully: bool,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal` is set (no INVALID drop).
    pub conntrack_tcp_liberal: bool,
}

impl KubeProxyConfig {
    /// kube-proxy's defaults for a node.
    pub fn new(node_name: &str, node_ip: Ipv4Addr, cluster_cidr: Ipv4Net) -> Self {
        KubeProxyConfig {
            node_name: node_name.to_string(),
            node_ip,
            cluster_cidr: Some(cluster_cidr),
            masquerade_all: false,
            masquerade_bit: 14,
            localhost_nodeports: true,
            random_fully: true,
            conntrack_tcp_liberal: false,
        }
    }

    /// The masquerade mark as iptables-save prints it (`0x4000`).
    pub fn mark(&self) -> String {
        format!("{:#x}", 1u32 << u32::from(self.masquerade_bit.min(31)))
    }
}

/// Calico's overlay between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// IP-in-IP through `tunl0` (routes `via <node> dev tunl0 proto bird onlink`).
    Ipip,
    /// VXLAN through `vxlan.calico` (UDP 4789, VNI 4096).
    Vxlan,
}

/// A node of the generated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Name (directory under `nodes/`).
    pub name: String,
    /// Address on the shared segment.
    pub ip: Ipv4Addr,
    /// Prefix length of the shared segment.
    pub lan_prefix: u8,
    /// The shared segment's interface (`ens192`, `eth0`).
    pub lan: String,
    /// The segment's gateway.
    pub gateway: Ipv4Addr,
    /// Calico IPAM blocks (/26) affine to this node; the first block's first
    /// address is the tunnel device's.
    pub blocks: Vec<Ipv4Net>,
    /// MAC of the LAN interface.
    pub mac: [u8; 6],
}

impl Node {
    /// The tunnel (tunl0 / vxlan.calico) address: the first block's first address.
    pub fn tunnel_ip(&self) -> Option<Ipv4Addr> {
        self.blocks.first().map(|b| b.network())
    }
}

/// A pod of the generated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Index into [`Cluster::nodes`].
    pub node: usize,
    /// Address from its node's block.
    pub ip: Ipv4Addr,
    /// Host-side veth (`cali…`).
    pub iface: String,
    /// Ports it answers on, `tcp/8080` style, sorted.
    pub listen: Vec<String>,
}

/// A machine outside the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Name.
    pub name: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Gateway.
    pub gateway: Option<Ipv4Addr>,
}

/// Everything the generator renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Nodes, in name order.
    pub nodes: Vec<Node>,
    /// Pods, in creation order.
    pub pods: Vec<Pod>,
    /// Services, in the order kube-proxy's map happened to give them.
    pub services: Vec<Service>,
    /// Hosts outside the cluster.
    pub hosts: Vec<Host>,
    /// Calico IP pool (also kube-proxy's cluster CIDR).
    pub pool: Ipv4Net,
    /// Overlay.
    pub encap: Encap,
}
