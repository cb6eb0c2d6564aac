//! A node's network state as the standard tools print it (`ip addr show`,
//! `ip route show table all`, `ip rule show`, `sysctl net.ipv4`, and for
//! VXLAN `ip -d link show`, `ip neigh show`, `bridge fdb show`), and the
//! snapshot's `cluster.toml`.
//!
//! Contract: the shapes are those of the seed's captured nodes (iproute2 as
//! shipped with Debian 12: trailing space after routes, interfaces in
//! kernel device order, main table sorted by prefix then local table):
//! `lo`, the LAN interface, the Calico tunnel device with the first address
//! of the node's first IPAM block (`tunl0@NONE` for IPIP, `vxlan.calico` for
//! VXLAN), then one `cali…@if2` veth per local pod; a blackhole route per own
//! block, a route per remote block (`via <node> dev tunl0 proto bird
//! onlink`, or `via <vtep> dev vxlan.calico proto 80 onlink`), a /32 per
//! local pod. The file layout is docs/snapshot-format.md's.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::cluster::{Cluster, Encap, Host, Node, Pod};

fn mac(bytes: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = *bytes;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// The MAC felix gives `vxlan.calico` on a node (derived from its address).
pub fn vtep_mac(node: &Node) -> [u8; 6] {
    let [a, b, c, d] = node.ip.octets();
    [0x66, a ^ 0x5a, b ^ 0x3c, c, d, 0x0c]
}

/// The peer namespace name `ip addr` shows for a veth.
fn netns_name(pod: &Pod) -> String {
    // A stable UUID-shaped name derived from the interface.
    let h = pod.iface.trim_start_matches("cali");
    let h: String = h.chars().chain("0123456789abcdef0123456789abcdef".chars()).take(32).collect();
    format!(
        "cni-{}-{}-{}-{}-{}",
        h.get(0..8).unwrap_or(""),
        h.get(8..12).unwrap_or(""),
        h.get(12..16).unwrap_or(""),
        h.get(16..20).unwrap_or(""),
        h.get(20..32).unwrap_or("")
    )
}

/// An interface stanza for `ip addr`: index, name, flags line, link line,
/// optional IPv4 address with scope.
pub(crate) fn iface_stanza(
    out: &mut String,
    index: usize,
    name: &str,
    flags: &str,
    link: &str,
    addr: Option<(String, &str)>,
) {
    let _ = writeln!(out, "{index}: {name}: {flags}");
    let _ = writeln!(out, "    {link}");
    if let Some((cidr, scope)) = addr {
        let label = name.split('@').next().unwrap_or(name);
        let _ = writeln!(out, "    inet {cidr} scope {scope} {label}");
        out.push_str("       valid_lft forever preferred_lft forever\n");
    }
}

fn tunnel_mtu(encap: Encap) -> u32 {
    match encap {
        Encap::Ipip => 1440,
        Encap::Vxlan => 1450,
    }
}

/// `ip addr show` of node `n`.
pub fn ip_addr(cluster: &Cluster, n: usize) -> String {
    let mut out = String::new();
    let Some(node) = cluster.nodes.get(n) else { return out };
    iface_stanza(
        &mut out,
        1,
        "lo",
        "<LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000",
        "link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
        Some(("127.0.0.1/8".to_string(), "host")),
    );
    iface_stanza(
        &mut out,
        2,
        &node.lan,
        "<BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default qlen 1000",
        &format!("link/ether {} brd ff:ff:ff:ff:ff:ff", mac(&node.mac)),
        Some((format!("{}/{}", node.ip, node.lan_prefix), "global")),
    );
    let tunnel_addr = node.tunnel_ip().map(|ip| (format!("{ip}/32"), "global"));
    match cluster.encap {
        Encap::Ipip => iface_stanza(
            &mut out,
            3,
            "tunl0@NONE",
            "<NOARP,UP,LOWER_UP> mtu 1440 qdisc noqueue state UNKNOWN group default qlen 1000",
            "link/ipip 0.0.0.0 brd 0.0.0.0",
            tunnel_addr,
        ),
        Encap::Vxlan => iface_stanza(
            &mut out,
            3,
            "vxlan.calico",
            "<BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN group default qlen 1000",
            &format!("link/ether {} brd ff:ff:ff:ff:ff:ff", mac(&vtep_mac(node))),
            tunnel_addr,
        ),
    }
    let mtu = tunnel_mtu(cluster.encap);
    for (k, pod) in cluster.pods.iter().filter(|p| p.node == n).enumerate() {
        iface_stanza(
            &mut out,
            4 + k,
            &format!("{}@if2", pod.iface),
            &format!("<BROADCAST,MULTICAST,UP,LOWER_UP> mtu {mtu} qdisc noqueue state UP group default qlen 1000"),
            &format!("link/ether ee:ee:ee:ee:ee:ee brd ff:ff:ff:ff:ff:ff link-netns {}", netns_name(pod)),
            None,
        );
    }
    out
}

/// The network of an address with a prefix.
fn net(ip: Ipv4Addr, prefix: u8) -> Ipv4Net {
    Ipv4Net::new(ip, prefix).map(|n| n.trunc()).unwrap_or_default()
}

/// Main and local routing tables, sorted as `ip route show table all` prints them.
pub(crate) fn routes(main: Vec<(Ipv4Net, String)>, local: Vec<(Ipv4Addr, String)>) -> String {
    let mut main = main;
    main.sort_by_key(|(n, _)| (u32::from(n.network()), n.prefix_len()));
    let mut local = local;
    local.sort_by_key(|(a, l)| (u32::from(*a), !l.starts_with("local")));
    let mut out = String::new();
    for (_, line) in main {
        out.push_str(&line);
        out.push_str(" \n");
    }
    for (_, line) in local {
        out.push_str(&line);
        out.push_str(" \n");
    }
    out
}

pub(crate) fn local_routes(
    node_ip: Ipv4Addr,
    prefix: u8,
    lan: &str,
    extra: &[(Ipv4Addr, &str)],
) -> Vec<(Ipv4Addr, String)> {
    let lan_net = net(node_ip, prefix);
    let mut local = vec![
        (node_ip, format!("local {node_ip} dev {lan} table local proto kernel scope host src {node_ip}")),
        (
            lan_net.broadcast(),
            format!("broadcast {} dev {lan} table local proto kernel scope link src {node_ip}", lan_net.broadcast()),
        ),
        (
            Ipv4Addr::new(127, 0, 0, 0),
            "local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1".to_string(),
        ),
        (
            Ipv4Addr::new(127, 0, 0, 1),
            "local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1".to_string(),
        ),
        (
            Ipv4Addr::new(127, 255, 255, 255),
            "broadcast 127.255.255.255 dev lo table local proto kernel scope link src 127.0.0.1".to_string(),
        ),
    ];
    for (ip, dev) in extra {
        local.push((*ip, format!("local {ip} dev {dev} table local proto kernel scope host src {ip}")));
    }
    local
}

/// `ip route show table all` of node `n`.
pub fn ip_route(cluster: &Cluster, n: usize) -> String {
    let Some(node) = cluster.nodes.get(n) else {
        return String::new();
    };
    let lan = &node.lan;
    let lan_net = net(node.ip, node.lan_prefix);
    let mut main = vec![
        (net(Ipv4Addr::UNSPECIFIED, 0), format!("default via {} dev {lan}", node.gateway)),
        (lan_net, format!("{lan_net} dev {lan} proto kernel scope link src {}", node.ip)),
    ];
    let proto = match cluster.encap {
        Encap::Ipip => "proto bird",
        Encap::Vxlan => "proto 80",
    };
    for b in &node.blocks {
        main.push((*b, format!("blackhole {b} {proto}")));
    }
    for (k, other) in cluster.nodes.iter().enumerate() {
        if k == n {
            continue;
        }
        for b in &other.blocks {
            let line = match (cluster.encap, other.tunnel_ip()) {
                (Encap::Vxlan, Some(vtep)) => format!("{b} via {vtep} dev vxlan.calico {proto} onlink"),
                _ => format!("{b} via {} dev tunl0 {proto} onlink", other.ip),
            };
            main.push((*b, line));
        }
    }
    for pod in cluster.pods.iter().filter(|p| p.node == n) {
        main.push((net(pod.ip, 32), format!("{} dev {} scope link", pod.ip, pod.iface)));
    }
    let tunnel_dev = match cluster.encap {
        Encap::Ipip => "tunl0",
        Encap::Vxlan => "vxlan.calico",
    };
    let extra: Vec<(Ipv4Addr, &str)> = node.tunnel_ip().map(|ip| (ip, tunnel_dev)).into_iter().collect();
    routes(main, local_routes(node.ip, node.lan_prefix, lan, &extra))
}

/// `ip rule show` of a node with the default policy rules.
pub fn ip_rule() -> String {
    "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n".to_string()
}

/// The `sysctl net.ipv4` keys natpath reads, for node `n`.
pub fn sysctl(cluster: &Cluster, n: usize) -> String {
    let mut out = String::from(
        "net.ipv4.conf.all.route_localnet = 1\nnet.ipv4.conf.all.rp_filter = 1\nnet.ipv4.conf.default.rp_filter = 1\nnet.ipv4.ip_forward = 1\n",
    );
    for pod in cluster.pods.iter().filter(|p| p.node == n) {
        let i = &pod.iface;
        let _ = write!(
            out,
            "net.ipv4.conf.{i}.forwarding = 1\nnet.ipv4.neigh.{i}.proxy_delay = 0\nnet.ipv4.conf.{i}.proxy_arp = 1\nnet.ipv4.conf.{i}.route_localnet = 1\nnet.ipv4.conf.{i}.rp_filter = 1\n"
        );
    }
    if cluster.encap == Encap::Ipip {
        out.push_str("net.ipv4.conf.tunl0.rp_filter = 1\n");
    }
    out
}

/// `ip -d link show vxlan.calico` of node `n` (VXLAN only).
pub fn ip_link(cluster: &Cluster, n: usize) -> Option<String> {
    let node = cluster.nodes.get(n)?;
    if cluster.encap != Encap::Vxlan {
        return None;
    }
    Some(format!(
        "3: vxlan.calico: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\n    link/ether {} brd ff:ff:ff:ff:ff:ff promiscuity 0 minmtu 68 maxmtu 65535 \n    vxlan id 4096 local {} dev {} srcport 0 0 dstport 4789 nolearning ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535 \n",
        mac(&vtep_mac(node)),
        node.ip,
        node.lan
    ))
}

/// `ip neigh show` entries felix programs for remote VTEPs (VXLAN only).
pub fn ip_neigh(cluster: &Cluster, n: usize) -> Option<String> {
    if cluster.encap != Encap::Vxlan {
        return None;
    }
    let mut out = String::new();
    for (k, other) in cluster.nodes.iter().enumerate() {
        if let (true, Some(vtep)) = (k != n, other.tunnel_ip()) {
            let _ = writeln!(out, "{vtep} dev vxlan.calico lladdr {} PERMANENT", mac(&vtep_mac(other)));
        }
    }
    Some(out)
}

/// `bridge fdb show` entries felix programs for remote VTEPs (VXLAN only).
pub fn bridge_fdb(cluster: &Cluster, n: usize) -> Option<String> {
    if cluster.encap != Encap::Vxlan {
        return None;
    }
    let mut out = String::new();
    for (k, other) in cluster.nodes.iter().enumerate() {
        if k != n {
            let _ = writeln!(out, "{} dev vxlan.calico dst {} self permanent", mac(&vtep_mac(other)), other.ip);
        }
    }
    Some(out)
}

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The snapshot's `cluster.toml` for `nodes` (indices), `hosts` and the
/// pods on those nodes.
pub fn cluster_toml(comment: &str, nodes: &[&Node], hosts: &[Host], pods: &[(&Pod, &str)]) -> String {
    let mut out = String::new();
    for line in comment.lines() {
        let _ = writeln!(out, "# {line}");
    }
    for n in nodes {
        let _ = writeln!(out, "[[node]]\nname = {}\nlan = {}\n", toml_str(&n.name), toml_str(&n.lan));
    }
    for h in hosts {
        let _ = writeln!(
            out,
            "[[host]]\nname = {}\naddress = {}",
            toml_str(&h.name),
            toml_str(&format!("{}/{}", h.ip, h.prefix))
        );
        if let Some(gw) = h.gateway {
            let _ = writeln!(out, "gateway = {}", toml_str(&gw.to_string()));
        }
        out.push('\n');
    }
    for (p, node) in pods {
        let _ = writeln!(
            out,
            "[[pod]]\nname = {}\nnode = {}\naddress = {}\niface = {}",
            toml_str(&format!("{}/{}", p.namespace, p.name)),
            toml_str(node),
            toml_str(&p.ip.to_string()),
            toml_str(&p.iface)
        );
        if !p.listen.is_empty() {
            let list: Vec<String> = p.listen.iter().map(|l| toml_str(l)).collect();
            let _ = writeln!(out, "listen = [{}]", list.join(", "));
        }
        out.push('\n');
    }
    out
}
