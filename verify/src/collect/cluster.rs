//! `cluster.toml` from the Kubernetes API objects and the nodes' dumps.
//!
//! The API says which nodes and pods exist, each node's InternalIP, each
//! pod's node, address and ports; the dumps say which interface holds the
//! InternalIP (the node's LAN interface) and which interface a pod's /32
//! route leads to (the host side of its veth). Whatever the two disagree
//! on is a finding about the cluster, listed, not an error of the
//! collector: the pod or node is left out of `cluster.toml` with a comment
//! saying why.

use ipnet::Ipv4Net;
use natpath_model::netstate::{Interface, Route, RouteType};
use natpath_model::parse::{ipaddr, iproute};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

/// An outside host for `[[host]]`, from `--client NAME=ADDR/LEN[,GW]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Its name.
    pub name: String,
    /// Its address and prefix.
    pub address: Ipv4Net,
    /// Its gateway.
    pub gateway: Option<Ipv4Addr>,
}

impl std::str::FromStr for Client {
    type Err = String;
    fn from_str(s: &str) -> Result<Client, String> {
        let want = "expected NAME=ADDRESS/LEN[,GATEWAY], e.g. client=10.0.0.53/24,10.0.0.1";
        let (name, rest) = s.split_once('=').ok_or_else(|| format!("`{s}`: {want}"))?;
        let (addr, gw) = match rest.split_once(',') {
            Some((a, g)) => (a, Some(g)),
            None => (rest, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("`{name}`: a host name is letters, digits, `-` and `_` ({want})"));
        }
        let address: Ipv4Net = addr.parse().map_err(|_| format!("`{addr}` is not ADDRESS/LEN ({want})"))?;
        let gateway =
            gw.map(|g| g.parse::<Ipv4Addr>().map_err(|_| format!("`{g}` is not an IPv4 gateway"))).transpose()?;
        Ok(Client { name: name.to_string(), address, gateway })
    }
}

/// A node as the API describes it.
#[derive(Debug, Clone)]
pub struct ApiNode {
    /// `metadata.name`.
    pub name: String,
    /// The `InternalIP` address.
    pub internal_ip: Option<Ipv4Addr>,
}

/// A pod as the API describes it (host-network and finished pods excluded).
#[derive(Debug, Clone)]
pub struct ApiPod {
    /// `namespace/name`.
    pub name: String,
    /// `spec.nodeName`.
    pub node: String,
    /// `status.podIP` (the first IPv4 of `status.podIPs`).
    pub address: Ipv4Addr,
    /// `tcp/80`-style ports from its containers and its EndpointSlices.
    pub listen: BTreeSet<String>,
}

/// What the API objects give.
#[derive(Debug, Default)]
pub struct Objects {
    /// Nodes, by name.
    pub nodes: Vec<ApiNode>,
    /// Pods with an address on a node.
    pub pods: Vec<ApiPod>,
    /// Pods not listed and why (host network, no address yet, finished).
    pub skipped: Vec<String>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str)
}

fn port_of(p: &Value) -> Option<String> {
    let port = p.get("containerPort").or_else(|| p.get("port")).and_then(Value::as_u64)?;
    if !(1..=65535).contains(&port) {
        return None;
    }
    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_ascii_lowercase();
    matches!(proto.as_str(), "tcp" | "udp" | "sctp").then(|| format!("{proto}/{port}"))
}

/// Read `kubectl get nodes,pods,services,endpointslices -A -o json` output
/// (a `List`, or several JSON documents one after another). `what` names
/// the source in errors.
pub fn read_objects(text: &str, what: &str) -> Result<Objects, String> {
    let mut items = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for doc in stream {
        let doc = doc.map_err(|e| {
            format!("{what}:{}:{}: expected the JSON of `kubectl get -o json`: {e}", e.line(), e.column())
        })?;
        match doc.get("items").and_then(Value::as_array) {
            Some(list) => items.extend(list.iter().cloned()),
            None if doc.get("kind").is_some() => items.push(doc),
            None => {
                return Err(format!(
                    "{what}: expected a Kubernetes object or List, found JSON without `kind` or `items`"
                ))
            }
        }
    }
    let mut o = Objects::default();
    // Ports each pod serves through its Services' EndpointSlices.
    let mut slice_ports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for it in &items {
        if it.get("kind").and_then(Value::as_str) != Some("EndpointSlice") {
            continue;
        }
        let ports: Vec<String> = it
            .get("ports")
            .and_then(Value::as_array)
            .map(|ps| ps.iter().filter_map(port_of).collect())
            .unwrap_or_default();
        for ep in it.get("endpoints").and_then(Value::as_array).into_iter().flatten() {
            if str_at(ep, &["targetRef", "kind"]) != Some("Pod") {
                continue;
            }
            if let (Some(ns), Some(n)) = (str_at(ep, &["targetRef", "namespace"]), str_at(ep, &["targetRef", "name"])) {
                slice_ports.entry(format!("{ns}/{n}")).or_default().extend(ports.iter().cloned());
            }
        }
    }
    for it in &items {
        let kind = it.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = str_at(it, &["metadata", "name"]).unwrap_or("");
        match kind {
            "Node" => {
                let internal_ip = it
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
                    .filter_map(|a| a.get("address").and_then(Value::as_str)?.parse::<Ipv4Addr>().ok())
                    .next();
                o.nodes.push(ApiNode { name: name.to_string(), internal_ip });
            }
            "Pod" => {
                let ns = str_at(it, &["metadata", "namespace"]).unwrap_or("default");
                let full = format!("{ns}/{name}");
                let phase = str_at(it, &["status", "phase"]).unwrap_or("");
                let node = str_at(it, &["spec", "nodeName"]).unwrap_or("");
                let addr = it
                    .pointer("/status/podIPs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.get("ip").and_then(Value::as_str)?.parse::<Ipv4Addr>().ok())
                    .next()
                    .or_else(|| str_at(it, &["status", "podIP"])?.parse().ok());
                if it.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
                    o.skipped.push(format!("pod {full}: host network (it uses its node's addresses)"));
                    continue;
                }
                if matches!(phase, "Succeeded" | "Failed") {
                    o.skipped.push(format!("pod {full}: {phase}"));
                    continue;
                }
                let (Some(address), false) = (addr, node.is_empty()) else {
                    o.skipped.push(format!("pod {full}: no node or no IPv4 address yet (phase {phase})"));
                    continue;
                };
                let mut listen: BTreeSet<String> = BTreeSet::new();
                for c in it.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
                    listen.extend(c.get("ports").and_then(Value::as_array).into_iter().flatten().filter_map(port_of));
                }
                listen.extend(slice_ports.get(&full).into_iter().flatten().cloned());
                o.pods.push(ApiPod { name: full, node: node.to_string(), address, listen });
            }
            _ => {}
        }
    }
    o.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    o.pods.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(o)
}

/// A collected node's interfaces and routes (parse errors become findings).
struct NodeNet {
    ifaces: Vec<Interface>,
    routes: Vec<Route>,
    neigh: Vec<Ipv4Addr>,
}

fn read_node(dir: &Path, findings: &mut Vec<String>) -> Option<NodeNet> {
    // natpath's bounded reader; a file that is missing or unreadable here
    // is reported by the snapshot's load at the end.
    let read = |f: &str| crate::cli::read_text(&dir.join(f)).ok();
    let file = |f: &str| dir.join(f).display().to_string();
    let ifaces = match read("ip-addr").map(|t| ipaddr::parse(&t, &file("ip-addr"))) {
        Some(Ok(i)) => i,
        Some(Err(e)) => {
            findings.push(format!("{}", e));
            return None;
        }
        None => return None,
    };
    let routes = match read("ip-route").map(|t| iproute::parse(&t, &file("ip-route"))) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            findings.push(format!("{}", e));
            Vec::new()
        }
        None => Vec::new(),
    };
    let neigh = read("ip-neigh")
        .and_then(|t| ipaddr::parse_neigh(&t, &file("ip-neigh")).ok())
        .map(|n| n.into_iter().map(|n| n.addr).collect())
        .unwrap_or_default();
    Some(NodeNet { ifaces, routes, neigh })
}

const MAIN: u32 = 254;

fn default_route(n: &NodeNet) -> Option<&Route> {
    n.routes.iter().find(|r| r.table == MAIN && r.kind == RouteType::Unicast && r.dst.prefix_len() == 0)
}

/// The result of building `cluster.toml`.
#[derive(Debug, Default)]
pub struct Built {
    /// The file's text.
    pub toml: String,
    /// What the API and the dumps disagree on.
    pub findings: Vec<String>,
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Build `cluster.toml` for the snapshot at `out` (its `nodes/` already
/// collected) from the API objects. `source` says where they came from.
pub fn build(out: &Path, o: &Objects, clients: &[Client], source: &str) -> Built {
    let mut b = Built::default();
    let nodes_dir = out.join("nodes");
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(&nodes_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && e.path().is_dir() {
                dirs.insert(name);
            }
        }
    }
    let mut nets: BTreeMap<String, NodeNet> = BTreeMap::new();
    for d in &dirs {
        if let Some(n) = read_node(&nodes_dir.join(d), &mut b.findings) {
            nets.insert(d.clone(), n);
        }
    }
    let mut t = String::new();
    let _ = writeln!(t, "# Written by `natpath collect` from the Kubernetes API ({source}) and the nodes' dumps.");
    let _ = writeln!(
        t,
        "# LAN interface: the one holding the node's InternalIP; a pod's iface: where its /32 route leads."
    );
    // Nodes: those of the API that were collected, then collected ones the API lacks.
    let api: BTreeMap<&str, &ApiNode> = o.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    for n in &o.nodes {
        if !dirs.contains(&n.name) {
            b.findings.push(format!("node {}: in the API but not collected (no directory under nodes/)", n.name));
        }
    }
    let mut lan_of: BTreeMap<String, (String, Option<Ipv4Net>)> = BTreeMap::new();
    for d in &dirs {
        let Some(net) = nets.get(d) else {
            b.findings.push(format!("node {d}: its ip-addr could not be read; left out"));
            continue;
        };
        let ip = api.get(d.as_str()).and_then(|n| n.internal_ip);
        if !api.contains_key(d.as_str()) {
            b.findings.push(format!("node {d}: collected, but the API has no such node"));
        }
        let by_ip = ip.and_then(|ip| {
            net.ifaces
                .iter()
                .find_map(|i| i.addrs.iter().find(|a| a.addr.addr() == ip).map(|a| (i.name.clone(), Some(a.addr))))
        });
        let lan = match (by_ip, ip) {
            (Some(l), _) => Some(l),
            (None, ip) => {
                let why = match ip {
                    Some(ip) => format!("no interface holds its InternalIP {ip}"),
                    None => "the API gives it no IPv4 InternalIP".to_string(),
                };
                let fallback = default_route(net).and_then(|r| r.nexthops.first()?.dev.clone());
                match fallback {
                    Some(dev) => {
                        b.findings.push(format!("node {d}: {why}; took the default route's device {dev} as its LAN"));
                        let addr =
                            net.ifaces.iter().find(|i| i.name == dev).and_then(|i| i.addrs.first()).map(|a| a.addr);
                        Some((dev, addr))
                    }
                    None => {
                        b.findings.push(format!("node {d}: {why}, and it has no default route; left out"));
                        None
                    }
                }
            }
        };
        if let Some(l) = lan {
            let _ = writeln!(t, "\n[[node]]\nname = {}\nlan = {}", q(d), q(&l.0));
            lan_of.insert(d.clone(), l);
        }
    }
    // Outside hosts.
    let mut hosts: Vec<Client> = clients.to_vec();
    if hosts.is_empty() {
        match default_client(&lan_of, &nets) {
            Ok(c) => {
                let _ = writeln!(t, "\n# The default outside client: a free address on the first node's LAN segment (--client sets others).");
                hosts.push(c);
            }
            Err(e) => b.findings.push(format!("no default outside client: {e}; give one with --client")),
        }
    }
    for h in &hosts {
        let _ = write!(t, "\n[[host]]\nname = {}\naddress = {}\n", q(&h.name), q(&h.address.to_string()));
        if let Some(g) = h.gateway {
            let _ = writeln!(t, "gateway = {}", q(&g.to_string()));
        }
    }
    // Pods.
    for p in &o.pods {
        let Some(net) = nets.get(&p.node).filter(|_| lan_of.contains_key(&p.node)) else {
            b.findings.push(format!("pod {} ({}): its node {} was not collected; left out", p.name, p.address, p.node));
            continue;
        };
        let dev = net
            .routes
            .iter()
            .filter(|r| r.table == MAIN && r.kind == RouteType::Unicast && r.dst == Ipv4Net::from(p.address))
            .find_map(|r| r.nexthops.iter().find(|h| h.via.is_none()).and_then(|h| h.dev.clone()));
        let Some(dev) = dev else {
            b.findings.push(format!(
                "pod {} ({}): node {} has no route to it through a device (its veth); left out",
                p.name, p.address, p.node
            ));
            let _ = writeln!(
                t,
                "\n# pod {} ({}) on {}: left out, {} has no /32 route to it",
                p.name, p.address, p.node, p.node
            );
            continue;
        };
        if !net.ifaces.iter().any(|i| i.name == dev) {
            b.findings.push(format!(
                "pod {}: its route leads to {dev}, which {}'s ip-addr does not list; left out",
                p.name, p.node
            ));
            continue;
        }
        let _ = write!(
            t,
            "\n[[pod]]\nname = {}\nnode = {}\naddress = {}\niface = {}\n",
            q(&p.name),
            q(&p.node),
            q(&p.address.to_string()),
            q(&dev)
        );
        if !p.listen.is_empty() {
            let l: Vec<String> = p.listen.iter().map(|s| q(s)).collect();
            let _ = writeln!(t, "listen = [{}]", l.join(", "));
        }
    }
    b.toml = t;
    b
}

/// A free address on the first node's LAN segment, from the top down, and
/// the node's default gateway when it is on that segment.
fn default_client(
    lan_of: &BTreeMap<String, (String, Option<Ipv4Net>)>,
    nets: &BTreeMap<String, NodeNet>,
) -> Result<Client, String> {
    let (first, (_, net)) = lan_of.iter().next().ok_or("no node was collected")?;
    let net = net.ok_or_else(|| format!("node {first}'s LAN interface has no IPv4 address"))?;
    let mut used: BTreeSet<Ipv4Addr> = BTreeSet::new();
    for n in nets.values() {
        used.extend(n.ifaces.iter().flat_map(|i| i.addrs.iter().map(|a| a.addr.addr())));
        used.extend(n.routes.iter().flat_map(|r| r.nexthops.iter().filter_map(|h| h.via)));
        used.extend(n.neigh.iter().copied());
    }
    let gateway = nets
        .get(first)
        .and_then(default_route)
        .and_then(|r| r.nexthops.first()?.via)
        .filter(|g| net.trunc().contains(g));
    let lo = u32::from(net.network());
    let hi = u32::from(net.broadcast());
    if hi.saturating_sub(lo) < 3 {
        return Err(format!("the segment {} has no room", net.trunc()));
    }
    let free = (lo + 1..hi)
        .rev()
        .map(Ipv4Addr::from)
        .find(|a| !used.contains(a))
        .ok_or_else(|| format!("no free address in {}", net.trunc()))?;
    Ok(Client {
        name: "client".into(),
        address: Ipv4Net::new(free, net.prefix_len()).map_err(|e| e.to_string())?,
        gateway,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_parse_and_refuse_with_the_expected_form() {
        let c: Client = "client=10.0.0.53/24,10.0.0.1".parse().unwrap();
        assert_eq!(c.address.to_string(), "10.0.0.53/24");
        assert_eq!(c.gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        for bad in ["client", "=1.2.3.4/24", "c=1.2.3.4", "c=1.2.3.4/24,x", "c d=1.2.3.4/24"] {
            let e = bad.parse::<Client>().unwrap_err();
            assert!(e.contains("expected") || e.contains("not") || e.contains("host name"), "{bad}: {e}");
        }
    }

    #[test]
    fn host_network_pending_and_finished_pods_are_skipped_with_a_reason() {
        let j = r#"{"kind":"List","items":[
          {"kind":"Pod","metadata":{"name":"a","namespace":"kube-system"},"spec":{"hostNetwork":true,"nodeName":"n1","containers":[]},"status":{"phase":"Running","podIP":"10.0.0.51"}},
          {"kind":"Pod","metadata":{"name":"b","namespace":"default"},"spec":{"containers":[]},"status":{"phase":"Pending"}},
          {"kind":"Pod","metadata":{"name":"c","namespace":"default"},"spec":{"nodeName":"n1","containers":[{"ports":[{"containerPort":80}]}]},"status":{"phase":"Running","podIPs":[{"ip":"fd00::1"},{"ip":"192.168.1.5"}]}},
          {"kind":"EndpointSlice","ports":[{"port":8080,"protocol":"UDP"}],"endpoints":[{"addresses":["192.168.1.5"],"targetRef":{"kind":"Pod","namespace":"default","name":"c"}}]}
        ]}"#;
        let o = read_objects(j, "objects.json").unwrap();
        assert_eq!(o.pods.len(), 1);
        let p = &o.pods[0];
        assert_eq!((p.name.as_str(), p.address), ("default/c", Ipv4Addr::new(192, 168, 1, 5)));
        assert_eq!(p.listen.iter().cloned().collect::<Vec<_>>(), ["tcp/80", "udp/8080"]);
        assert_eq!(o.skipped.len(), 2, "{:?}", o.skipped);
    }

    #[test]
    fn json_that_is_not_objects_names_the_file_and_line() {
        let e = read_objects("{\"kind\":\"List\",\n\"items\": [}", "saved.json").unwrap_err();
        assert!(e.starts_with("saved.json:2:"), "{e}");
        let e = read_objects("[1,2]", "saved.json").unwrap_err();
        assert!(e.contains("expected a Kubernetes object"), "{e}");
    }
}
