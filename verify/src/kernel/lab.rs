//! Rebuilding a snapshot's cluster on this machine's kernel: one network
//! namespace per node, pod, outside host and router, plus a `lan` namespace
//! whose bridge is the shared segment. A router (`[[router]]`) is a
//! namespace on the bridge that forwards by its routes and does nothing
//! else: no netfilter rules, no ICMP redirects. Each node gets the snapshot's devices in
//! device order (the LAN interface as a veth to the bridge, each pod's
//! `cali*` as a veth whose other end is the pod's `eth0`, `tunl0` as a TUN
//! served by the user-space IPIP relay (or, on a kernel with the ipip
//! module, the namespace's own fallback tunl0), `vxlan.calico` as a real VXLAN
//! device, anything else as a veth to a per-node stub namespace), then its
//! addresses, sysctls, policy rules and routes, then `ipset restore` and
//! `iptables-restore` of the dumps, unchanged.
//!
//! Contract: nothing is linked to the root namespace (no veth end, address,
//! route, rule, sysctl or netfilter change there); every namespace name
//! starts with the lab's unique prefix `np-<pid>-<n>-` and is registered for
//! removal before it exists; dropping the [`Lab`] kills its helpers and
//! deletes its namespaces; every command has a deadline. Kernel facts
//! relied on: devices created in a namespace are listed (and walked by
//! `inet_select_addr`) in creation order; `ip link add ... peer name X
//! netns Y` creates the peer directly in Y; addresses bring their
//! connected and `table local` routes with them; a new device inherits
//! `conf.default.*`, and writing `ip_forward` or `conf.all.forwarding`
//! resets every device's `forwarding`, so global sysctls go first.

use super::dumps::{Dumps, Iface, NodeDumps};
use super::exec::{self, check, in_ns};
use super::{counters, KernelError, Options};
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The hidden subcommand of `natpath` that runs the helper programs.
pub(crate) const HELPER_SUBCOMMAND: &str = crate::cli::KERNEL_HELPER;

const CMD_DEADLINE: Duration = Duration::from_secs(10);

/// sysctl keys under `net.ipv4.conf.<if>.` that are replayed from the dump.
const CONF_KEYS: &[&str] = &[
    "rp_filter",
    "route_localnet",
    "proxy_arp",
    "proxy_arp_pvlan",
    "forwarding",
    "accept_local",
    "src_valid_mark",
    "arp_ignore",
    "arp_announce",
    "arp_filter",
    "arp_accept",
    "send_redirects",
    "accept_redirects",
    "secure_redirects",
    "accept_source_route",
    "shared_media",
    "log_martians",
    "bc_forwarding",
    "ignore_routes_with_linkdown",
    "disable_policy",
    "disable_xfrm",
];

/// Global `net.ipv4.` keys that are replayed from the dump.
const GLOBAL_KEYS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.ipv4.ip_nonlocal_bind",
    "net.ipv4.ip_forward_use_pmtu",
    "net.ipv4.fwmark_reflect",
    "net.ipv4.tcp_fwmark_accept",
    "net.ipv4.ip_local_port_range",
];

/// How a node's device is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Loopback,
    Lan,
    /// Emulated IPIP: a TUN and the relay.
    Tun,
    Vxlan,
    Pod(usize),
    Stub,
}

/// A rebuilt cluster; dropping it removes everything.
pub struct Lab {
    pub(crate) id: u64,
    pub(crate) lan: String,
    pub(crate) nodes: Vec<String>,
    pub(crate) pods: Vec<String>,
    pub(crate) hosts: Vec<String>,
    pub(crate) routers: Vec<String>,
    /// Per node: the relay's routes (empty without an emulated tunnel).
    pub(crate) relay_routes: Vec<Vec<(Ipv4Net, Ipv4Addr)>>,
    pub(crate) events: Receiver<(String, String)>,
    tx: Sender<(String, String)>,
    pub(crate) helper: PathBuf,
    pub(crate) logs: Vec<(String, Arc<Mutex<String>>)>,
    /// Facts and defaults the results depend on.
    pub(crate) notes: Vec<String>,
    pub(crate) setup: Duration,
    /// The iptables back-end of the node namespaces: `iptables-legacy` or `iptables`.
    pub(crate) iptables: &'static str,
}

impl Drop for Lab {
    fn drop(&mut self) {
        exec::yield_to_signal_exit();
        for p in exec::teardown(self.id) {
            eprintln!("natpath kernel: {p}");
        }
    }
}

/// One `ip -batch` line and the dump line it comes from.
struct Line {
    cmd: String,
    origin: Option<String>,
}

fn line(cmd: impl Into<String>) -> Line {
    Line { cmd: cmd.into(), origin: None }
}

fn from_dump(cmd: impl Into<String>, file: &Path, n: usize) -> Line {
    Line { cmd: cmd.into(), origin: Some(format!("{}:{n}", file.display())) }
}

/// Run `lines` with `ip -n NS -batch -` (or `bridge`), naming the dump line of a failure.
fn batch(tool: &str, ns: &str, lines: &[Line], what: &str) -> Result<(), KernelError> {
    if lines.is_empty() {
        return Ok(());
    }
    let text: String = lines.iter().map(|l| format!("{}\n", l.cmd)).collect();
    let argv: Vec<String> = if tool == "ip" {
        ["ip", "-n", ns, "-batch", "-"].iter().map(|s| s.to_string()).collect()
    } else {
        in_ns(ns, &[tool, "-batch", "-"])
    };
    let o = exec::run(&argv, Some(&text), CMD_DEADLINE).map_err(|e| KernelError::Setup(format!("{what}: {e}")))?;
    if o.ok() {
        return Ok(());
    }
    // iproute2 reports "Command failed -:N" with the batch line number.
    let n: Option<usize> =
        o.stderr.lines().find_map(|l| l.trim().strip_prefix("Command failed -:")).and_then(|v| v.trim().parse().ok());
    let failed = n.and_then(|n| lines.get(n.wrapping_sub(1)));
    let msg = o.stderr.lines().filter(|l| !l.starts_with("Command failed")).collect::<Vec<_>>().join("; ");
    Err(match failed {
        Some(Line { cmd, origin: Some(o) }) => {
            KernelError::Setup(format!("{what}: {o}: `{tool} {cmd}` failed: {}", msg.trim()))
        }
        Some(Line { cmd, origin: None }) => {
            KernelError::Setup(format!("{what}: `{tool} {cmd}` failed: {}", msg.trim()))
        }
        None => KernelError::Setup(format!("{what}: {}", o.stderr.trim())),
    })
}

/// Write sysctls in `ns`. IPv6 keys only quieten the lab and are skipped
/// where the kernel has no IPv6; every other key must take.
fn sysctl(ns: &str, kv: &[(String, String)], what: &str) -> Result<(), KernelError> {
    let (v6, v4): (Vec<_>, Vec<_>) = kv.iter().partition(|(k, _)| k.starts_with("net.ipv6."));
    for (keys, strict) in [(v4, true), (v6, false)] {
        if keys.is_empty() {
            continue;
        }
        let pairs: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut cmd = if strict { vec!["sysctl", "-q", "-w"] } else { vec!["sysctl", "-q", "-e", "-w"] };
        cmd.extend(pairs.iter().map(String::as_str));
        if strict {
            check(what, &in_ns(ns, &cmd), None, CMD_DEADLINE)?;
        } else {
            let _ = exec::run(&in_ns(ns, &cmd), None, CMD_DEADLINE);
        }
    }
    Ok(())
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The sysctl key of interface `name` (sysctl writes `.` in names as `/`).
fn key_if(family: &str, name: &str, key: &str) -> String {
    format!("net.ipv4.{family}.{}.{key}", name.replace('.', "/"))
}

/// Split `net.ipv4.conf.<if>.<key>` into (interface, key).
fn conf_key<'a>(k: &'a str, family: &str) -> Option<(String, &'a str)> {
    let rest = k.strip_prefix("net.ipv4.")?.strip_prefix(family)?.strip_prefix('.')?;
    let (iface, key) = rest.rsplit_once('.')?;
    Some((iface.replace('/', "."), key))
}

fn kind_of(node_idx: usize, node: &NodeDumps, iface: &Iface, dumps: &Dumps) -> Kind {
    if iface.link == "loopback" || iface.name == "lo" {
        Kind::Loopback
    } else if iface.name == node.lan {
        Kind::Lan
    } else if iface.link == "ipip" || iface.name == "tunl0" {
        Kind::Tun
    } else if node.vxlans.iter().any(|v| v.name == iface.name) || iface.name.starts_with("vxlan") {
        Kind::Vxlan
    } else if let Some(p) = dumps
        .cluster
        .pods
        .iter()
        .position(|p| p.iface == iface.name && dumps.cluster.nodes.get(node_idx).is_some_and(|n| n.name == p.node))
    {
        Kind::Pod(p)
    } else {
        Kind::Stub
    }
}

/// Ports a pod answers on: its `listen` list, or (when empty: "every port")
/// the ports DNAT rules send to it and the ports probes aim at it directly.
fn pod_ports(dumps: &Dumps, pod: usize, extra: &[(String, u16)]) -> Vec<(String, u16)> {
    let Some(p) = dumps.cluster.pods.get(pod) else { return Vec::new() };
    let mut out = BTreeSet::new();
    for l in &p.listen {
        if let Some((proto, port)) = l.split_once('/').and_then(|(a, b)| Some((a.to_string(), b.parse().ok()?))) {
            out.insert((proto, port));
        }
    }
    if p.listen.is_empty() {
        let target = format!("{}:", p.address);
        for n in &dumps.nodes {
            for rule in n.iptables.lines() {
                let t: Vec<&str> = rule.split_whitespace().collect();
                let proto = t.iter().position(|w| *w == "-p").and_then(|i| t.get(i + 1)).copied();
                let to = t.iter().position(|w| *w == "--to-destination").and_then(|i| t.get(i + 1)).copied();
                if let (Some(proto), Some(to)) = (proto, to) {
                    if let Some(port) = to.strip_prefix(&target).and_then(|v| v.parse::<u16>().ok()) {
                        out.insert((proto.to_string(), port));
                    }
                }
            }
        }
        out.extend(extra.iter().cloned());
    }
    out.into_iter().collect()
}

/// Whether this kernel has the ipip module loaded (then every namespace
/// has a real tunl0 and no relay is needed). Not the case on the machine
/// these tests were written on: that path is untested here.
pub(crate) fn kernel_ipip() -> bool {
    Path::new("/sys/module/ipip").exists()
}

static LABS: AtomicU64 = AtomicU64::new(0);

impl Lab {
    /// Build the cluster of `dumps`. `direct` lists (pod index, proto, port)
    /// that probes aim at pod addresses directly.
    pub fn build(
        dumps: &Dumps,
        opts: &Options,
        helper: PathBuf,
        direct: &[(usize, String, u16)],
    ) -> Result<Lab, KernelError> {
        let started = Instant::now();
        exec::install_signal_cleanup()?;
        let id = LABS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("np-{}-{id}-", std::process::id());
        let (tx, events) = channel();
        let mut lab = Lab {
            id: (u64::from(std::process::id()) << 20) | id,
            lan: format!("{prefix}lan"),
            nodes: (0..dumps.nodes.len()).map(|i| format!("{prefix}n{i}")).collect(),
            pods: (0..dumps.cluster.pods.len()).map(|i| format!("{prefix}p{i}")).collect(),
            hosts: (0..dumps.cluster.hosts.len()).map(|i| format!("{prefix}h{i}")).collect(),
            routers: (0..dumps.routers.len()).map(|i| format!("{prefix}r{i}")).collect(),
            relay_routes: vec![Vec::new(); dumps.nodes.len()],
            events,
            tx,
            helper,
            logs: Vec::new(),
            notes: Vec::new(),
            setup: Duration::ZERO,
            iptables: if opts.legacy { "iptables-legacy" } else { "iptables" },
        };
        let kinds: Vec<Vec<Kind>> = dumps
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| n.ifaces.iter().map(|f| kind_of(i, n, f, dumps)).collect())
            .collect();
        let stubs: Vec<Option<String>> =
            kinds.iter().enumerate().map(|(i, k)| k.contains(&Kind::Stub).then(|| format!("{prefix}s{i}"))).collect();
        let mut all = vec![lab.lan.clone()];
        all.extend(lab.nodes.iter().cloned());
        all.extend(lab.pods.iter().cloned());
        all.extend(lab.hosts.iter().cloned());
        all.extend(lab.routers.iter().cloned());
        all.extend(stubs.iter().flatten().cloned());
        exec::add_namespaces(lab.id, &all)?;

        // Quiet, deterministic ends: no IPv6 chatter, rp_filter off.
        let quiet = [
            kv("net.ipv6.conf.all.disable_ipv6", "1"),
            kv("net.ipv6.conf.default.disable_ipv6", "1"),
            kv("net.ipv4.conf.all.rp_filter", "0"),
            kv("net.ipv4.conf.default.rp_filter", "0"),
        ];
        for ns in std::iter::once(&lab.lan).chain(&lab.hosts).chain(stubs.iter().flatten()) {
            sysctl(ns, &quiet, "setting up an end namespace")?;
        }
        let mut pod_quiet = quiet.to_vec();
        // One SYN-ACK per probe: a retransmission would cross the nodes again.
        pod_quiet.push(kv("net.ipv4.tcp_synack_retries", "0"));
        for ns in &lab.pods {
            sysctl(ns, &pod_quiet, "setting up a pod namespace")?;
        }
        // A router forwards and tells no one of a better hop (the model's
        // router sends no redirects); set before its device exists, which
        // inherits `default`.
        let mut router_quiet = quiet.to_vec();
        router_quiet.extend([
            kv("net.ipv4.ip_forward", "1"),
            kv("net.ipv4.conf.all.send_redirects", "0"),
            kv("net.ipv4.conf.default.send_redirects", "0"),
        ]);
        for ns in &lab.routers {
            sysctl(ns, &router_quiet, "setting up a router namespace")?;
        }
        // No multicast snooping: a snooping bridge joins 224.0.0.106 and its
        // IGMP reports (source 0.0.0.0) would reach every node's PREROUTING.
        batch(
            "ip",
            &lab.lan,
            &[line("link set lo up"), line("link add lan type bridge mcast_snooping 0"), line("link set lan up")],
            "the LAN bridge",
        )?;

        let mut lan_macs = BTreeSet::new();
        let mut lan_lines = Vec::new();
        for (i, node) in dumps.nodes.iter().enumerate() {
            let ns = lab.nodes.get(i).cloned().unwrap_or_default();
            lab.global_sysctls(node, &ns)?;
            let kinds = kinds.get(i).cloned().unwrap_or_default();
            let stub = stubs.get(i).cloned().flatten();
            lab.build_node(i, node, &ns, &kinds, stub.as_deref(), dumps, &mut lan_macs)?;
            lan_lines.push(line(format!("link set n{i} master lan")));
            lan_lines.push(line(format!("link set n{i} up")));
        }
        for (i, h) in dumps.cluster.hosts.iter().enumerate() {
            let hns = lab.hosts.get(i).cloned().unwrap_or_default();
            lan_lines.push(line(format!("link add h{i} type veth peer name eth0 netns {hns}")));
            lan_lines.push(line(format!("link set h{i} master lan")));
            lan_lines.push(line(format!("link set h{i} up")));
            let _ = h;
        }
        for i in 0..dumps.routers.len() {
            let rns = lab.routers.get(i).cloned().unwrap_or_default();
            lan_lines.push(line(format!("link add r{i} type veth peer name eth0 netns {rns}")));
            lan_lines.push(line(format!("link set r{i} master lan")));
            lan_lines.push(line(format!("link set r{i} up")));
        }
        batch("ip", &lab.lan, &lan_lines, "wiring the LAN")?;
        for (i, h) in dumps.cluster.hosts.iter().enumerate() {
            let hns = lab.hosts.get(i).cloned().unwrap_or_default();
            let mut l = vec![
                line("link set lo up"),
                line("link set eth0 up"),
                line(format!("addr add {} dev eth0", h.address)),
            ];
            if let Some(gw) = h.gateway {
                l.push(line(format!("route add default via {gw} dev eth0")));
                let served =
                    dumps.nodes.iter().any(|n| n.ifaces.iter().any(|f| f.addrs.iter().any(|a| a.net.addr() == gw)))
                        || dumps.routers.iter().any(|r| r.address.addr() == gw);
                if !served {
                    lab.notes.push(format!(
                        "host `{}`: its gateway {gw} is nobody's address in the snapshot: it is not emulated, so only \
                         destinations on {} are reachable from it",
                        h.name,
                        h.address.trunc()
                    ));
                }
            }
            batch("ip", &hns, &l, &format!("host `{}`", h.name))?;
        }
        for (i, r) in dumps.routers.iter().enumerate() {
            let rns = lab.routers.get(i).cloned().unwrap_or_default();
            let mut l = vec![
                line("link set lo up"),
                line("link set eth0 up"),
                line(format!("addr add {} dev eth0", r.address)),
            ];
            // `onlink`: a host a route names may be off the segment, on a
            // link of the router's own; here every host is on the bridge.
            l.extend(r.routes.iter().map(|(dst, via)| line(format!("route add {dst} via {via} dev eth0 onlink"))));
            batch("ip", &rns, &l, &format!("router `{}`", r.name))?;
        }
        for (i, p) in dumps.cluster.pods.iter().enumerate() {
            let pns = lab.pods.get(i).cloned().unwrap_or_default();
            let l = [
                line("link set lo up"),
                line("link set eth0 up"),
                line(format!("addr add {}/32 dev eth0", p.address)),
                line("route add 169.254.1.1 dev eth0 scope link"),
                line("route add default via 169.254.1.1 dev eth0"),
            ];
            batch("ip", &pns, &l, &format!("pod `{}`", p.name))?;
        }
        for (i, node) in dumps.nodes.iter().enumerate() {
            let ns = lab.nodes.get(i).cloned().unwrap_or_default();
            lab.iface_sysctls(node, &ns)?;
            lab.routes(node, &ns)?;
            lab.netfilter(node, &ns)?;
        }
        lab.start_relays(dumps, &kinds)?;
        lab.start_servers(dumps, direct)?;
        if !opts.new_carriers {
            lab.warm_carriers(dumps)?;
        }
        lab.setup = started.elapsed();
        Ok(lab)
    }

    fn global_sysctls(&mut self, node: &NodeDumps, ns: &str) -> Result<(), KernelError> {
        // docs/snapshot-format.md's defaults first, then what the dump says, globals
        // before `default` so new devices inherit it.
        let mut kvs = vec![
            kv("net.ipv6.conf.all.disable_ipv6", "1"),
            kv("net.ipv6.conf.default.disable_ipv6", "1"),
            kv("net.ipv4.ip_forward", "1"),
            kv("net.ipv4.conf.all.rp_filter", "0"),
            kv("net.ipv4.conf.default.rp_filter", "0"),
            kv("net.ipv4.conf.all.route_localnet", "0"),
            kv("net.ipv4.conf.default.route_localnet", "0"),
            // ICMP errors are rate limited per destination (1 s, a burst of
            // 6): after a few REJECTed probes from one sender the kernel
            // stops answering, which would read as a drop. Each probe sends
            // one packet, so the limit is about history the model does not
            // keep: the lab turns it off.
            kv("net.ipv4.icmp_ratelimit", "0"),
            // A listener that answers a probe's SYN keeps the half-open
            // connection and sends its SYN-ACK again after a second, and
            // the prober's raw SYN leaves no socket to end it. That second
            // SYN-ACK is history of an earlier probe: on a slow machine it
            // landed in a later probe's counters. The lab sends none.
            kv("net.ipv4.tcp_synack_retries", "0"),
        ];
        if node.sysctls.is_empty() {
            self.notes.push(format!(
                "node `{}`: no sysctl dump: ip_forward 1, rp_filter 0, route_localnet 0 (the snapshot format's defaults, docs/snapshot-format.md)",
                node.name
            ));
        }
        let mut skipped = 0usize;
        for s in &node.sysctls {
            if GLOBAL_KEYS.contains(&s.key.as_str()) {
                kvs.push(kv(&s.key, &s.value));
            } else if let Some((iface, key)) = conf_key(&s.key, "conf") {
                if (iface == "all" || iface == "default") && CONF_KEYS.contains(&key) {
                    kvs.push(kv(&s.key, &s.value));
                }
            } else if conf_key(&s.key, "neigh").is_none() {
                skipped += 1;
            }
        }
        // ip_forward first (it resets forwarding everywhere), then all, then default.
        kvs.sort_by_key(|(k, _)| {
            if k == "net.ipv4.ip_forward" {
                0
            } else if k.contains(".conf.all.") {
                1
            } else {
                2
            }
        });
        if skipped > 0 {
            self.notes.push(format!(
                "node `{}`: {skipped} sysctl values that do not affect forwarding were not replayed",
                node.name
            ));
        }
        sysctl(ns, &kvs, &format!("node `{}`: global sysctls", node.name))
    }

    #[allow(clippy::too_many_arguments)]
    fn build_node(
        &mut self,
        i: usize,
        node: &NodeDumps,
        ns: &str,
        kinds: &[Kind],
        stub: Option<&str>,
        dumps: &Dumps,
        lan_macs: &mut BTreeSet<String>,
    ) -> Result<(), KernelError> {
        let addr_file = node.dir.join("ip-addr");
        let mut links = vec![line("link set lo up")];
        let mut stub_lines = Vec::new();
        let mut created = BTreeSet::new();
        for (k, (iface, kind)) in node.ifaces.iter().zip(kinds).enumerate() {
            let mtu = iface.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
            let mac = iface.mac.as_ref().map(|m| format!(" address {m}")).unwrap_or_default();
            let name = &iface.name;
            let cmd = match kind {
                Kind::Loopback => continue,
                Kind::Lan => {
                    let mac = match &iface.mac {
                        Some(m) if !lan_macs.insert(m.clone()) => {
                            self.notes.push(format!(
                                "node `{}`: {name}'s MAC {m} is already on the LAN: a random one is used",
                                node.name
                            ));
                            String::new()
                        }
                        _ => mac,
                    };
                    format!("link add {name}{mac}{mtu} type veth peer name n{i} netns {}", self.lan)
                }
                Kind::Tun if kernel_ipip() && name == "tunl0" => {
                    // The ipip module gives every new namespace its own
                    // fallback tunl0 (device 2, before the dump's devices).
                    if iface.mtu.is_some() {
                        links.push(from_dump(format!("link set {name}{mtu}"), &addr_file, iface.line));
                    }
                    self.notes.push(format!(
                        "node `{}`: {name} is the kernel's ipip fallback device, created with the namespace: it comes \
                         before the dump's devices in device order (MASQUERADE's fallback source may differ)",
                        node.name
                    ));
                    created.insert(name.clone());
                    continue;
                }
                Kind::Tun => {
                    links.push(from_dump(format!("tuntap add dev {name} mode tun"), &addr_file, iface.line));
                    if iface.mtu.is_some() {
                        links.push(from_dump(format!("link set {name}{mtu}"), &addr_file, iface.line));
                    }
                    self.notes.push(format!(
                        "node `{}`: {name} (IPIP) is a TUN device served by a user-space relay: the outer packets are real \
                         protocol 4 (OUTPUT/POSTROUTING on the sender, PREROUTING/INPUT on the receiver), but the skb \
                         mark is not copied between inner and outer packets as the kernel's ipip driver would",
                        node.name
                    ));
                    created.insert(name.clone());
                    continue;
                }
                Kind::Vxlan => {
                    let v = node.vxlans.iter().find(|v| &v.name == name);
                    let id = v.map(|v| v.id).unwrap_or(4096);
                    let port = v.map(|v| v.dstport).unwrap_or(4789);
                    let local = v.and_then(|v| v.local).or_else(|| {
                        node.ifaces
                            .iter()
                            .find(|f| f.name == node.lan)
                            .and_then(|f| f.addrs.first())
                            .map(|a| a.net.addr())
                    });
                    let local = local.map(|a| format!(" local {a}")).unwrap_or_default();
                    let dev = if created.contains(&node.lan) { format!(" dev {}", node.lan) } else { String::new() };
                    self.notes.push(format!(
                        "node `{}`: {name} is the kernel's VXLAN device: the outer UDP source port hashes the inner \
                         flow, so each new connection's carrier flows (both directions) are NEW in conntrack and \
                         cross nat like any first packet; the carrier hello does not apply",
                        node.name
                    ));
                    if v.is_none() {
                        self.notes.push(format!(
                            "node `{}`: no ip-link details for {name}: VNI 4096, port 4789 (Calico's defaults)",
                            node.name
                        ));
                    }
                    format!("link add {name}{mac}{mtu} type vxlan id {id} dstport {port}{local}{dev} nolearning")
                }
                Kind::Pod(p) => {
                    let pns = self.pods.get(*p).cloned().unwrap_or_default();
                    format!("link add {name}{mac}{mtu} type veth peer name eth0{mtu} netns {pns}")
                }
                Kind::Stub => {
                    let Some(s) = stub else { return Err(KernelError::Internal("stub namespace missing")) };
                    stub_lines.push(line(format!("link set x{k} up")));
                    self.notes.push(format!(
                        "node `{}`: {name} (link/{}) is emulated as a veth whose peer is in a stub namespace",
                        node.name, iface.link
                    ));
                    format!("link add {name}{mac}{mtu} type veth peer name x{k} netns {s}")
                }
            };
            links.push(from_dump(cmd, &addr_file, iface.line));
            created.insert(name.clone());
        }
        for (p, pod) in dumps.cluster.pods.iter().enumerate() {
            if pod.node == node.name && !created.contains(&pod.iface) {
                let pns = self.pods.get(p).cloned().unwrap_or_default();
                self.notes.push(format!(
                    "node `{}`: pod `{}`'s interface {} is not in ip-addr: created last, without proxy_arp unless the sysctl dump sets it",
                    node.name, pod.name, pod.iface
                ));
                links.push(line(format!("link add {} type veth peer name eth0 netns {pns}", pod.iface)));
                created.insert(pod.iface.clone());
            }
        }
        for iface in &node.ifaces {
            for a in &iface.addrs {
                if iface.name == "lo" && a.net == Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).unwrap_or_default() {
                    continue;
                }
                let args = if a.args.is_empty() { String::new() } else { format!(" {}", a.args.join(" ")) };
                links.push(from_dump(format!("addr add {}{args} dev {}", a.net, iface.name), &addr_file, a.line));
            }
        }
        for iface in &node.ifaces {
            if iface.up() && iface.name != "lo" {
                links.push(from_dump(format!("link set {} up", iface.name), &addr_file, iface.line));
            }
        }
        for pod in dumps.cluster.pods.iter().filter(|p| p.node == node.name) {
            if !node.ifaces.iter().any(|f| f.name == pod.iface) {
                links.push(line(format!("link set {} up", pod.iface)));
            }
        }
        batch("ip", ns, &links, &format!("node `{}`: devices", node.name))?;
        if let Some(s) = stub {
            batch("ip", s, &stub_lines, &format!("node `{}`: stub devices", node.name))?;
        }
        Ok(())
    }

    fn iface_sysctls(&mut self, node: &NodeDumps, ns: &str) -> Result<(), KernelError> {
        let mut kvs = Vec::new();
        for s in &node.sysctls {
            let (iface, key, family) = match (conf_key(&s.key, "conf"), conf_key(&s.key, "neigh")) {
                (Some((i, k)), _) => (i, k, "conf"),
                (None, Some((i, k))) => (i, k, "neigh"),
                _ => continue,
            };
            if iface == "all" || iface == "default" {
                continue;
            }
            let exists = iface == "lo" || node.ifaces.iter().any(|f| f.name == iface);
            let wanted = if family == "conf" { CONF_KEYS.contains(&key) } else { key == "proxy_delay" };
            if exists && wanted {
                kvs.push(kv(&key_if(family, &iface, key), &s.value));
            } else if !exists {
                self.notes.push(format!(
                    "{}:{}: `{}` names an interface that is not in ip-addr: not applied",
                    node.dir.join("sysctl").display(),
                    s.line,
                    s.key
                ));
            }
        }
        // Forwarding is each input device's own (`IN_DEV_FORWARD`). A
        // device the dump gives no `forwarding` of its own gets the value
        // the model gives it (`conf.default`'s, else `all`'s or
        // `ip_forward`'s, docs/snapshot-format.md): the lab's devices made
        // before the global writes (lo, the ipip module's tunl0) would
        // otherwise keep `ip_forward`'s even where the dump's `default`
        // differs.
        let model = natpath_model::netstate::Sysctl {
            values: node.sysctls.iter().map(|s| (s.key.clone(), s.value.clone())).collect(),
        };
        for iface in &node.ifaces {
            let own = key_if("conf", &iface.name, "forwarding");
            if kvs.iter().any(|(k, _)| *k == own) {
                continue;
            }
            let on = model.forwarding(&iface.name);
            kvs.push(kv(&own, if on { "1" } else { "0" }));
        }
        sysctl(ns, &kvs, &format!("node `{}`: interface sysctls", node.name))
    }

    fn routes(&mut self, node: &NodeDumps, ns: &str) -> Result<(), KernelError> {
        let rule_file = node.dir.join("ip-rule");
        let route_file = node.dir.join("ip-route");
        let mut l: Vec<Line> = node
            .rules
            .iter()
            .map(|r| from_dump(format!("rule add {}", r.tokens.join(" ")), &rule_file, r.line))
            .collect();
        let wanted: Vec<_> = node.routes.iter().filter(|r| !r.is_kernel()).collect();
        // Routes to a directly connected destination first, then those via a gateway.
        for pass in [false, true] {
            for r in wanted.iter().filter(|r| r.via().is_some() == pass) {
                l.push(from_dump(format!("route add {}", r.tokens.join(" ")), &route_file, r.line));
            }
        }
        batch("ip", ns, &l, &format!("node `{}`: policy rules and routes", node.name))?;
        // Self-check: what the kernel now has against the dump.
        let shown = check(
            "reading routes back",
            &["ip", "-n", ns, "route", "show", "table", "all"].map(String::from),
            None,
            CMD_DEADLINE,
        )?;
        let norm =
            |s: &str| -> String { s.split_whitespace().filter(|t| *t != "linkdown").collect::<Vec<_>>().join(" ") };
        let have: BTreeSet<String> =
            super::dumps::parse_ip_route(&shown).iter().map(|r| norm(&r.tokens.join(" "))).collect();
        for r in &node.routes {
            if !have.contains(&norm(&r.tokens.join(" "))) {
                self.notes.push(format!(
                    "{}:{}: the rebuilt node has no route `{}`",
                    route_file.display(),
                    r.line,
                    r.tokens.join(" ")
                ));
            }
        }
        let neigh_file = node.dir.join("ip-neigh");
        let fdb_file = node.dir.join("bridge-fdb");
        let n: Vec<Line> = node
            .neigh
            .iter()
            .map(|(a, ln)| from_dump(format!("neigh replace {}", a.join(" ")), &neigh_file, *ln))
            .collect();
        batch("ip", ns, &n, &format!("node `{}`: neighbours", node.name))?;
        let f: Vec<Line> =
            node.fdb.iter().map(|(a, ln)| from_dump(format!("fdb append {}", a.join(" ")), &fdb_file, *ln)).collect();
        batch("bridge", ns, &f, &format!("node `{}`: forwarding database", node.name))
    }

    fn netfilter(&mut self, node: &NodeDumps, ns: &str) -> Result<(), KernelError> {
        if !node.ipset.trim().is_empty() {
            check(
                &format!("node `{}`: {}", node.name, node.dir.join("ipset-save").display()),
                &in_ns(ns, &["ipset", "restore"]),
                Some(&node.ipset),
                CMD_DEADLINE,
            )?;
        }
        check(
            &format!("node `{}`: {}", node.name, node.dir.join("iptables-save").display()),
            &in_ns(ns, &[&format!("{}-restore", self.iptables)]),
            Some(&node.iptables),
            CMD_DEADLINE,
        )?;
        // The rule numbers the results use are the dump's only if the kernel
        // holds the same rules in the same chains.
        let loaded = counters::parse(&check(
            "reading the rules back",
            &in_ns(ns, &[&format!("{}-save", self.iptables), "-c"]),
            None,
            CMD_DEADLINE,
        )?);
        let dumped = counters::parse(&node.iptables);
        if counters::shape(&loaded) != counters::shape(&dumped) {
            return Err(KernelError::Setup(format!(
                "node `{}`: the kernel holds a different number of rules per chain than {}",
                node.name,
                node.dir.join("iptables-save").display()
            )));
        }
        Ok(())
    }

    fn wait_ready(&mut self, tag: &str, deadline: Duration) -> Result<(), KernelError> {
        let end = Instant::now() + deadline;
        // Bounded by `deadline`.
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((t, l)) if t == tag && l.contains("\"ready\"") => return Ok(()),
                Ok((t, l)) if t == tag && l.contains("\"error\"") => {
                    return Err(KernelError::Setup(format!("{tag}: {l}")));
                }
                Ok(_) => continue,
                Err(_) => {
                    let log =
                        self.logs.iter().find(|(t, _)| t == tag).and_then(|(_, s)| s.lock().ok().map(|s| s.clone()));
                    return Err(KernelError::Setup(format!(
                        "{tag}: not ready within {deadline:?}{}",
                        log.map(|l| format!(": {}", l.trim())).unwrap_or_default()
                    )));
                }
            }
        }
    }

    fn spawn(&mut self, ns: &str, args: &[String], tag: &str) -> Result<(), KernelError> {
        let helper = self.helper.to_string_lossy().into_owned();
        let mut cmd = vec![helper.as_str(), HELPER_SUBCOMMAND];
        cmd.extend(args.iter().map(String::as_str));
        let log = exec::spawn_helper(self.id, &in_ns(ns, &cmd), tag, self.tx.clone())?;
        self.logs.push((tag.to_string(), log));
        self.wait_ready(tag, Duration::from_secs(3))
    }

    fn start_relays(&mut self, dumps: &Dumps, kinds: &[Vec<Kind>]) -> Result<(), KernelError> {
        for (i, node) in dumps.nodes.iter().enumerate() {
            let tuns: Vec<&Iface> = node
                .ifaces
                .iter()
                .zip(kinds.get(i).map(Vec::as_slice).unwrap_or(&[]))
                .filter(|(_, k)| **k == Kind::Tun)
                .map(|(f, _)| f)
                .collect();
            for tun in tuns {
                let mut routes = Vec::new();
                let unicast = |r: &&super::dumps::RouteLine| {
                    r.tokens.first().is_some_and(|t| !super::dumps::ROUTE_TYPES.contains(&t.as_str()) || t == "unicast")
                };
                for r in node.routes.iter().filter(|r| r.dev() == Some(tun.name.as_str())).filter(unicast) {
                    match (r.dst(), r.via()) {
                        (Some(dst), Some(gw)) => routes.push((dst, gw)),
                        _ => self.notes.push(format!(
                            "{}:{}: a {} route without a gateway: the relay does not carry it",
                            node.dir.join("ip-route").display(),
                            r.line,
                            tun.name
                        )),
                    }
                }
                let mut args = vec!["relay".to_string(), "--tun".into(), tun.name.clone()];
                for (d, g) in &routes {
                    args.push("--route".into());
                    args.push(format!("{d}={g}"));
                }
                let ns = self.nodes.get(i).cloned().unwrap_or_default();
                if !(kernel_ipip() && tun.name == "tunl0") {
                    self.spawn(&ns, &args, &format!("relay:{}", node.name))?;
                }
                if let Some(slot) = self.relay_routes.get_mut(i) {
                    slot.extend(routes);
                }
            }
        }
        Ok(())
    }

    fn start_servers(&mut self, dumps: &Dumps, direct: &[(usize, String, u16)]) -> Result<(), KernelError> {
        for (i, p) in dumps.cluster.pods.iter().enumerate() {
            let extra: Vec<(String, u16)> =
                direct.iter().filter(|(d, _, _)| *d == i).map(|(_, pr, po)| (pr.clone(), *po)).collect();
            let mut args = vec!["serve".to_string(), "--addr".into(), p.address.to_string()];
            for (proto, port) in pod_ports(dumps, i, &extra) {
                if proto == "tcp" || proto == "udp" || proto == "sctp" {
                    args.push(format!("--{proto}"));
                    args.push(port.to_string());
                }
            }
            let ns = self.pods.get(i).cloned().unwrap_or_default();
            self.spawn(&ns, &args, &format!("pod:{i}"))?;
        }
        // What a node's `ss-listen` says it answers on: one server per
        // bound address (a port the wildcard already takes is left to it).
        for (i, node) in dumps.nodes.iter().enumerate() {
            let mut by_addr: std::collections::BTreeMap<Ipv4Addr, BTreeSet<(u8, u16)>> = Default::default();
            let wild: BTreeSet<(u8, u16)> =
                node.listeners.iter().filter(|l| l.addr.is_none()).map(|l| (l.proto, l.port)).collect();
            for l in node.listeners.iter().filter(|l| l.proto == 6 || l.proto == 17) {
                if l.addr.is_some() && wild.contains(&(l.proto, l.port)) {
                    continue;
                }
                by_addr.entry(l.addr.unwrap_or(Ipv4Addr::UNSPECIFIED)).or_default().insert((l.proto, l.port));
            }
            let ns = self.nodes.get(i).cloned().unwrap_or_default();
            for (k, (addr, ports)) in by_addr.into_iter().enumerate() {
                let mut args = vec!["serve".to_string(), "--addr".into(), addr.to_string()];
                for (proto, port) in ports {
                    args.push(if proto == 6 { "--tcp".into() } else { "--udp".into() });
                    args.push(port.to_string());
                }
                self.spawn(&ns, &args, &format!("node:{i}:{k}"))?;
            }
        }
        Ok(())
    }

    /// Make every tunnel carrier flow ESTABLISHED (both directions seen), as
    /// on a live cluster: one hello each way, then wait (bounded) until no
    /// protocol-4 entry is `[UNREPLIED]`.
    pub(crate) fn warm_carriers(&mut self, dumps: &Dumps) -> Result<(), KernelError> {
        let helper = self.helper.to_string_lossy().into_owned();
        let mut any = false;
        for (i, routes) in self.relay_routes.iter().enumerate() {
            let gws: BTreeSet<Ipv4Addr> = routes.iter().map(|(_, g)| *g).collect();
            let ns = self.nodes.get(i).cloned().unwrap_or_default();
            for gw in gws {
                any = true;
                check(
                    "sending a carrier hello",
                    &in_ns(&ns, &[&helper, HELPER_SUBCOMMAND, "hello", "--to", &gw.to_string()]),
                    None,
                    CMD_DEADLINE,
                )?;
            }
        }
        if !any {
            return Ok(());
        }
        for _ in 0..40 {
            let mut unreplied = Vec::new();
            for (i, routes) in self.relay_routes.iter().enumerate() {
                if routes.is_empty() {
                    continue;
                }
                let ns = self.nodes.get(i).cloned().unwrap_or_default();
                let out = exec::run(&in_ns(&ns, &["conntrack", "-L"]), None, CMD_DEADLINE)
                    .map(|o| o.stdout)
                    .unwrap_or_default();
                for e in super::conntrack::parse(&out) {
                    if e.protonum == 4 && e.flags.iter().any(|f| f == "[UNREPLIED]") {
                        let name = dumps.nodes.get(i).map(|n| n.name.clone()).unwrap_or_default();
                        unreplied.push(format!("{name}: {}", e.summary()));
                    }
                }
            }
            if unreplied.is_empty() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.notes.push("some tunnel carrier flows stay one-way (no node routes back through the tunnel): they are NEW for the probe".into());
        Ok(())
    }

    /// Drop every relay/server event that arrived so far.
    pub(crate) fn drain_events(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Map from tag to pod index.
    pub(crate) fn pod_of_tag(tag: &str) -> Option<usize> {
        tag.strip_prefix("pod:").and_then(|v| v.parse().ok())
    }
}

/// The namespace a probe leaves from.
pub(crate) fn source_ns<'a>(lab: &'a Lab, dumps: &Dumps, from: &str) -> Option<&'a String> {
    if let Some(i) = dumps.cluster.hosts.iter().position(|h| h.name == from) {
        return lab.hosts.get(i);
    }
    if let Some(i) = dumps.cluster.pods.iter().position(|p| p.name == from) {
        return lab.pods.get(i);
    }
    dumps.nodes.iter().position(|n| n.name == from).and_then(|i| lab.nodes.get(i))
}

/// Names of everything a probe can leave from.
pub(crate) fn source_names(dumps: &Dumps) -> Vec<String> {
    let mut v: Vec<String> = dumps.cluster.hosts.iter().map(|h| h.name.clone()).collect();
    v.extend(dumps.cluster.pods.iter().map(|p| p.name.clone()));
    v.extend(dumps.nodes.iter().map(|n| n.name.clone()));
    v
}
