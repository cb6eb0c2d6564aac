//! What kube-proxy v1.28 (iptables mode, `syncProxyRules()` of
//! `pkg/proxy/iptables/proxier.go`) writes on one node, rendered as
//! `iptables-save` prints it back.
//!
//! Contract: for the same Services, endpoints and configuration, the lines
//! are the ones kube-proxy v1.28.7 leaves in the kernel: the same chains,
//! rules, comments, masquerade and firewall rules, `-m recent` affinity,
//! `KUBE-EXT`/`KUBE-FW`/`KUBE-SVL` chains, "has no local endpoints" and
//! "has no endpoints" filter rules, health-check NodePorts, the localhost
//! NodePort guard, and `--probability` printed as iptables-save prints the
//! value kube-proxy passed (kube-proxy formats `1/n` with `%0.10f`; the
//! kernel keeps `lround(p * 2^31)` and iptables-save prints that over `2^31`
//! with `%.11f`, hence `0.20000000019`). Above 1,000 endpoints kube-proxy's
//! "large cluster mode" drops the comments of `KUBE-SEP` rules and of the
//! rules that jump to them; so do we. Differences from kube-proxy: services
//! come in the order given (kube-proxy walks a Go map, so its order inside
//! `KUBE-SERVICES`, `KUBE-NODEPORTS` and the filter chains varies between
//! runs), topology hints and terminating endpoints are not modelled (an
//! endpoint is ready or absent), and `--nodeport-addresses` is "all".

use std::net::Ipv4Addr;

use crate::cluster::{KubeProxyConfig, Service};
use crate::names;
use crate::save::Ruleset;

/// kube-proxy switches to "large cluster mode" above this many endpoints.
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

/// The `--probability` iptables-save prints for kube-proxy's `1/n`.
pub fn probability(n: usize) -> String {
    let asked = format!("{:.10}", 1.0 / n.max(1) as f64);
    let p: f64 = asked.parse().unwrap_or(1.0);
    // xt_statistic keeps the probability as a fraction of 2^31.
    let kernel = (p * 2_147_483_648.0).round();
    format!("{:.11}", kernel / 2_147_483_648.0)
}

/// The jumps kube-proxy (and kubelet, for KUBE-FIREWALL) keep in the
/// built-in chains, in the order they end up in (each is prepended).
pub fn render_jumps(rs: &mut Ruleset) {
    let f = rs.table("filter");
    f.rule_str("INPUT", "-j KUBE-FIREWALL");
    f.rule_str(
        "INPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    );
    f.rule_str("INPUT", "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS");
    f.rule_str("INPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES");
    f.rule_str(
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    );
    f.rule_str("FORWARD", "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD");
    f.rule_str(
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    );
    f.rule_str("FORWARD", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES");
    f.rule_str("OUTPUT", "-j KUBE-FIREWALL");
    f.rule_str(
        "OUTPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
    );
    f.rule_str(
        "OUTPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    );
    let n = rs.table("nat");
    n.rule_str("PREROUTING", "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES");
    n.rule_str("OUTPUT", "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES");
    n.rule_str("POSTROUTING", "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING");
}

/// One endpoint of one service port, as kube-proxy keys it.
struct Ep {
    /// `ip:port`.
    key: String,
    ip: Ipv4Addr,
    local: bool,
    sep: String,
}

/// Per-sync state: cached probabilities and the comment mode.
struct Sync<'c> {
    cfg: &'c KubeProxyConfig,
    mark: String,
    large: bool,
    probabilities: Vec<String>,
}

impl Sync<'_> {
    fn probability(&mut self, n: usize) -> String {
        while self.probabilities.len() <= n {
            let i = self.probabilities.len();
            self.probabilities.push(probability(i));
        }
        self.probabilities.get(n).cloned().unwrap_or_else(|| probability(n))
    }
}

/// Total endpoints over all service ports, as kube-proxy counts them for
/// large cluster mode.
pub fn total_endpoints(services: &[Service]) -> usize {
    services.iter().map(|s| s.ports.len() * distinct_endpoints(s)).sum()
}

fn distinct_endpoints(s: &Service) -> usize {
    let mut ips: Vec<Ipv4Addr> = s.endpoints.iter().map(|e| e.ip).collect();
    ips.sort_unstable();
    ips.dedup();
    ips.len()
}

/// kube-proxy's chains and rules (everything but the built-in jumps of
/// [`render_jumps`]) for node `cfg.node_name`.
pub fn render_chains(cfg: &KubeProxyConfig, services: &[Service], rs: &mut Ruleset) {
    let mut sync = Sync {
        cfg,
        mark: cfg.mark(),
        large: total_endpoints(services) > LARGE_CLUSTER_ENDPOINTS,
        probabilities: Vec::new(),
    };
    {
        let f = rs.table("filter");
        for c in [
            "KUBE-SERVICES",
            "KUBE-EXTERNAL-SERVICES",
            "KUBE-FORWARD",
            "KUBE-NODEPORTS",
            "KUBE-PROXY-FIREWALL",
            "KUBE-FIREWALL",
        ] {
            f.chain(c);
        }
        if cfg.localhost_nodeports {
            f.rule_str(
                "KUBE-FIREWALL",
                "! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
            );
        }
    }
    {
        let mark = &sync.mark;
        let n = rs.table("nat");
        for c in ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"] {
            n.chain(c);
        }
        n.rule("KUBE-POSTROUTING", format_args!("-m mark ! --mark {mark}/{mark} -j RETURN"));
        n.rule("KUBE-POSTROUTING", format_args!("-j MARK --set-xmark {mark}/0x0"));
        if cfg.random_fully {
            n.rule_str(
                "KUBE-POSTROUTING",
                "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
            );
        } else {
            n.rule_str(
                "KUBE-POSTROUTING",
                "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE",
            );
        }
        n.rule("KUBE-MARK-MASQ", format_args!("-j MARK --set-xmark {mark}/{mark}"));
    }

    for svc in services {
        for port in &svc.ports {
            render_service_port(&mut sync, svc, port, rs);
        }
    }

    let n = rs.table("nat");
    if cfg.localhost_nodeports {
        n.rule_str(
            "KUBE-SERVICES",
            "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
        );
    } else {
        n.rule_str(
            "KUBE-SERVICES",
            "! -d 127.0.0.0/8 -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
        );
    }
    let mark = &sync.mark;
    let f = rs.table("filter");
    if !cfg.conntrack_tcp_liberal {
        f.rule_str("KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP");
    }
    f.rule(
        "KUBE-FORWARD",
        format_args!("-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"),
    );
    f.rule_str(
        "KUBE-FORWARD",
        "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    );
}

/// The target (and its options) of a filter rule for a service without
/// usable endpoints.
fn filter_target(reject: bool) -> &'static str {
    if reject {
        "REJECT --reject-with icmp-port-unreachable"
    } else {
        "DROP"
    }
}

fn render_service_port(sync: &mut Sync<'_>, svc: &Service, port: &crate::cluster::ServicePort, rs: &mut Ruleset) {
    let cfg = sync.cfg;
    let p = port.protocol.lower();
    let spn = svc.port_name(port);
    let cip = svc.cluster_ip;
    let dport = port.port;

    // Endpoints, deduplicated and sorted by `ip:port` as kube-proxy's
    // endpoints map gives them.
    let mut eps: Vec<Ep> = Vec::with_capacity(svc.endpoints.len());
    for e in svc.endpoints.iter().filter(|e| e.ready) {
        let key = format!("{}:{}", e.ip, port.target_port);
        if eps.iter().any(|x| x.key == key) {
            continue;
        }
        let sep = names::sep_chain(&spn, p, &key);
        eps.push(Ep { key, ip: e.ip, local: e.node == cfg.node_name, sep });
    }
    eps.sort_by(|a, b| a.key.cmp(&b.key));

    let externally_accessible =
        port.node_port.is_some() || !svc.load_balancer_ips.is_empty() || !svc.external_ips.is_empty();
    let external_local = externally_accessible && svc.external_local;
    let internal_local = svc.internal_local;
    let uses_cluster = !internal_local || (externally_accessible && !external_local);
    let uses_local = internal_local || (externally_accessible && external_local);

    let cluster_eps: Vec<&Ep> = if uses_cluster { eps.iter().collect() } else { Vec::new() };
    let local_eps: Vec<&Ep> = if uses_local { eps.iter().filter(|e| e.local).collect() } else { Vec::new() };
    let has_endpoints = if uses_cluster { !cluster_eps.is_empty() } else { !eps.is_empty() };
    // Cluster endpoints include the local ones, so the union is either set.
    let all_reachable: Vec<&Ep> = if uses_cluster { cluster_eps.clone() } else { local_eps.clone() };

    let svc_chain = names::svc_chain(&spn, p);
    let svl_chain = names::svl_chain(&spn, p);
    let ext_chain = names::ext_chain(&spn, p);
    let fw_chain = names::fw_chain(&spn, p);

    let internal_chain = if internal_local { &svl_chain } else { &svc_chain };
    let has_internal = has_endpoints && !(internal_local && local_eps.is_empty());
    let external_policy_chain = if external_local { &svl_chain } else { &svc_chain };
    let has_external = has_endpoints && !(external_local && local_eps.is_empty());
    let uses_ext_chain = has_endpoints && externally_accessible;
    let uses_fw = has_endpoints && !svc.load_balancer_ips.is_empty() && !svc.source_ranges.is_empty();
    let lb_chain = if uses_fw { &fw_chain } else { &ext_chain };

    let (internal_target, internal_comment, external_target, external_comment) = if !has_endpoints {
        let c = format!("{spn} has no endpoints");
        (filter_target(true), c.clone(), filter_target(true), c)
    } else {
        let c = format!("{spn} has no local endpoints");
        (filter_target(false), c.clone(), filter_target(false), c)
    };

    // Capture the cluster IP.
    if has_internal {
        rs.table("nat").rule(
            "KUBE-SERVICES",
            format_args!("-d {cip}/32 -p {p} -m comment --comment \"{spn} cluster IP\" -m {p} --dport {dport} -j {internal_chain}"),
        );
    } else {
        rs.table("filter").rule(
            "KUBE-SERVICES",
            format_args!("-d {cip}/32 -p {p} -m comment --comment \"{internal_comment}\" -m {p} --dport {dport} -j {internal_target}"),
        );
    }

    // Capture external IPs.
    for eip in &svc.external_ips {
        if has_endpoints {
            rs.table("nat").rule(
                "KUBE-SERVICES",
                format_args!("-d {eip}/32 -p {p} -m comment --comment \"{spn} external IP\" -m {p} --dport {dport} -j {ext_chain}"),
            );
        }
        if !has_external {
            rs.table("filter").rule(
                "KUBE-EXTERNAL-SERVICES",
                format_args!("-d {eip}/32 -p {p} -m comment --comment \"{external_comment}\" -m {p} --dport {dport} -j {external_target}"),
            );
        }
    }

    // Capture load-balancer ingress.
    for lb in &svc.load_balancer_ips {
        if has_endpoints {
            rs.table("nat").rule(
                "KUBE-SERVICES",
                format_args!("-d {lb}/32 -p {p} -m comment --comment \"{spn} loadbalancer IP\" -m {p} --dport {dport} -j {lb_chain}"),
            );
        }
        if uses_fw {
            rs.table("filter").rule(
                "KUBE-PROXY-FIREWALL",
                format_args!("-d {lb}/32 -p {p} -m comment --comment \"{spn} traffic not accepted by {fw_chain}\" -m {p} --dport {dport} -j DROP"),
            );
        }
    }
    if !has_external {
        for lb in &svc.load_balancer_ips {
            rs.table("filter").rule(
                "KUBE-EXTERNAL-SERVICES",
                format_args!("-d {lb}/32 -p {p} -m comment --comment \"{external_comment}\" -m {p} --dport {dport} -j {external_target}"),
            );
        }
    }

    // Capture NodePorts.
    if let Some(np) = port.node_port {
        if has_endpoints {
            rs.table("nat").rule(
                "KUBE-NODEPORTS",
                format_args!("-p {p} -m comment --comment \"{spn}\" -m {p} --dport {np} -j {ext_chain}"),
            );
        }
        if !has_external {
            rs.table("filter").rule(
                "KUBE-EXTERNAL-SERVICES",
                format_args!("-p {p} -m comment --comment \"{external_comment}\" -m addrtype --dst-type LOCAL -m {p} --dport {np} -j {external_target}"),
            );
        }
    }

    // Health-check NodePorts are accepted whether or not endpoints are local.
    if let Some(hc) = svc.health_check_node_port {
        rs.table("filter").rule(
            "KUBE-NODEPORTS",
            format_args!("-p tcp -m comment --comment \"{spn} health check node port\" -m tcp --dport {hc} -j ACCEPT"),
        );
    }

    let nat = rs.table("nat");

    // Internal traffic: masquerade what does not come from a pod.
    if has_internal {
        if cfg.masquerade_all {
            nat.rule(
                internal_chain,
                format_args!("-d {cip}/32 -p {p} -m comment --comment \"{spn} cluster IP\" -m {p} --dport {dport} -j KUBE-MARK-MASQ"),
            );
        } else if let Some(cidr) = cfg.cluster_cidr {
            nat.rule(
                internal_chain,
                format_args!("! -s {cidr} -d {cip}/32 -p {p} -m comment --comment \"{spn} cluster IP\" -m {p} --dport {dport} -j KUBE-MARK-MASQ"),
            );
        }
    }

    // External traffic.
    if uses_ext_chain {
        nat.chain(&ext_chain);
        if !external_local {
            nat.rule(
                &ext_chain,
                format_args!(
                    "-m comment --comment \"masquerade traffic for {spn} external destinations\" -j KUBE-MARK-MASQ"
                ),
            );
        } else {
            if let Some(cidr) = cfg.cluster_cidr {
                nat.rule(
                    &ext_chain,
                    format_args!(
                        "-s {cidr} -m comment --comment \"pod traffic for {spn} external destinations\" -j {svc_chain}"
                    ),
                );
            }
            nat.rule(
                &ext_chain,
                format_args!("-m comment --comment \"masquerade LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"),
            );
            nat.rule(
                &ext_chain,
                format_args!("-m comment --comment \"route LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j {svc_chain}"),
            );
        }
        if has_external {
            nat.rule(&ext_chain, format_args!("-j {external_policy_chain}"));
        }
    }

    // loadBalancerSourceRanges.
    if uses_fw {
        nat.chain(&fw_chain);
        let mut allow_from_node = false;
        for range in &svc.source_ranges {
            nat.rule(
                &fw_chain,
                format_args!("-s {} -m comment --comment \"{spn} loadbalancer IP\" -j {ext_chain}", range.trunc()),
            );
            if range.contains(&cfg.node_ip) {
                allow_from_node = true;
            }
        }
        if allow_from_node {
            for lb in &svc.load_balancer_ips {
                nat.rule(
                    &fw_chain,
                    format_args!("-s {lb}/32 -m comment --comment \"{spn} loadbalancer IP\" -j {ext_chain}"),
                );
            }
        }
        nat.rule(
            &fw_chain,
            format_args!("-m comment --comment \"other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL\""),
        );
    }

    if uses_cluster && !cluster_eps.is_empty() {
        nat.chain(&svc_chain);
        write_service_to_endpoints(sync, nat, &spn, svc, &svc_chain, &cluster_eps);
    }
    if uses_local && !local_eps.is_empty() {
        nat.chain(&svl_chain);
        write_service_to_endpoints(sync, nat, &spn, svc, &svl_chain, &local_eps);
    }

    // Endpoint chains.
    for ep in all_reachable {
        let sep = &ep.sep;
        let ip = ep.ip;
        let key = &ep.key;
        nat.chain(sep);
        if sync.large {
            nat.rule(sep, format_args!("-s {ip}/32 -j KUBE-MARK-MASQ"));
        } else {
            nat.rule(sep, format_args!("-s {ip}/32 -m comment --comment \"{spn}\" -j KUBE-MARK-MASQ"));
        }
        let comment = if sync.large { String::new() } else { format!(" -m comment --comment \"{spn}\"") };
        match svc.affinity_timeout {
            Some(_) => nat.rule(
                sep,
                format_args!("-p {p}{comment} -m recent --set --name {sep} --mask 255.255.255.255 --rsource -m {p} -j DNAT --to-destination {key}"),
            ),
            None => nat.rule(sep, format_args!("-p {p}{comment} -m {p} -j DNAT --to-destination {key}")),
        }
    }
}

fn write_service_to_endpoints(
    sync: &mut Sync<'_>,
    nat: &mut crate::save::Table,
    spn: &str,
    svc: &Service,
    chain: &str,
    eps: &[&Ep],
) {
    let comment = |ep: &Ep| {
        if sync.large {
            String::new()
        } else {
            format!("-m comment --comment \"{spn} -> {}\" ", ep.key)
        }
    };
    if let Some(timeout) = svc.affinity_timeout {
        for ep in eps {
            let sep = &ep.sep;
            nat.rule(
                chain,
                format_args!("{}-m recent --rcheck --seconds {timeout} --reap --name {sep} --mask 255.255.255.255 --rsource -j {sep}", comment(ep)),
            );
        }
    }
    let n = eps.len();
    let comments: Vec<String> = eps.iter().map(|ep| comment(ep)).collect();
    for (i, (ep, c)) in eps.iter().zip(comments).enumerate() {
        let sep = &ep.sep;
        if i + 1 < n {
            let prob = sync.probability(n - i);
            nat.rule(chain, format_args!("{c}-m statistic --mode random --probability {prob} -j {sep}"));
        } else {
            nat.rule(chain, format_args!("{c}-j {sep}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_as_iptables_save_prints_them() {
        assert_eq!(probability(2), "0.50000000000");
        assert_eq!(probability(3), "0.33333333349");
        assert_eq!(probability(4), "0.25000000000");
        assert_eq!(probability(5), "0.20000000019");
        assert_eq!(probability(6), "0.16666666651");
        assert_eq!(probability(7), "0.14285714272");
        assert_eq!(probability(9), "0.11111111101");
        assert_eq!(probability(10), "0.10000000009");
    }
}
