//! What Calico's felix (v3.2x, iptables data plane, IPIP or VXLAN overlay,
//! no policy beyond the namespace and service-account profiles) writes on
//! one node: its raw, mangle, filter and nat chains, the per-workload
//! `cali-fw-`/`cali-tw-` chains and dispatch chains, and `ipset save`.
//!
//! Contract: the layout, matches, targets, marks and comments are those of
//! the seed's captured nodes (`seed/snapshot/*/nodes/*/iptables-save`,
//! `ipset-save`), generalised to many workloads: dispatch chains sorted by
//! interface, split by the first character after `cali` into
//! `cali-from-wl-dispatch-<c>` / `cali-to-wl-dispatch-<c>` when several
//! interfaces share it, each ending in the "Unknown interface" DROP; one
//! `cali-pri-`/`cali-pro-` pair per namespace (`kns.<ns>`) and service
//! account (`ksa.<ns>.<sa>`, names longer than 28 characters hashed as
//! felix does). The `cali:` rule ids use felix's hashing scheme over our
//! rendering (see [`crate::names::calico_rule_ids`]): stable and unique, not
//! byte-identical to a live felix. For VXLAN the IPIP rules are replaced by
//! felix's VXLAN ones (UDP 4789, `cali40all-vxlan-net`, `vxlan.calico`).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use sha2::{Digest, Sha224};

use crate::cluster::{Cluster, Encap, Pod};
use crate::names;
use crate::rng::Rng;
use crate::save::{Ruleset, Table};

/// One felix rule: the part iptables-save prints before the `cali:`
/// comment (`-i`, `-o`, `-p`) and the part after it.
type FelixRule = (String, String);

fn r(head: &str, rest: &str) -> FelixRule {
    (head.to_string(), rest.to_string())
}

/// Append felix's rules to `chain`, each with its `cali:` id.
fn emit(table: &mut Table, chain: &str, rules: &[FelixRule]) {
    emit_at(table, chain, &[], rules);
}

/// Like [`emit`], for rules that follow `before` in felix's view of the
/// chain (felix's appended rules at the end of a built-in chain).
fn emit_at(table: &mut Table, chain: &str, before: &[FelixRule], rules: &[FelixRule]) {
    let texts: Vec<String> = before.iter().chain(rules).map(|(h, rest)| join(h, rest)).collect();
    let ids = names::calico_rule_ids(chain, &texts);
    table.chain(chain);
    for ((head, rest), id) in rules.iter().zip(ids.iter().skip(before.len())) {
        let sep_h = if head.is_empty() { "" } else { " " };
        let sep_r = if rest.is_empty() { "" } else { " " };
        table.rule(chain, format_args!("{head}{sep_h}-m comment --comment \"cali:{id}\"{sep_r}{rest}"));
    }
}

fn join(head: &str, rest: &str) -> String {
    match (head.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (false, true) => head.to_string(),
        (false, false) => format!("{head} {rest}"),
    }
}

/// felix's length-limited chain names (`cali-pri-_<hash>` beyond 28 characters).
pub fn profile_chain(prefix: &str, profile: &str) -> String {
    let name = format!("{prefix}{profile}");
    if name.len() <= 28 {
        return name;
    }
    let digest = Sha224::digest(profile.as_bytes());
    let mut hash = String::new();
    for chunk in digest.chunks(3) {
        let mut acc = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            acc |= u32::from(*b) << (16 - 8 * i);
        }
        for k in 0..4 {
            let v = (acc >> (18 - 6 * k)) & 63;
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            hash.push(char::from(alphabet.get(v as usize).copied().unwrap_or(b'A')));
        }
    }
    let keep = 28usize.saturating_sub(prefix.len() + 1);
    hash.truncate(keep);
    format!("{prefix}_{hash}")
}

/// The service account of a pod (CoreDNS runs as `coredns`).
fn service_account(pod: &Pod) -> &'static str {
    if pod.namespace == "kube-system" && pod.name.starts_with("coredns") {
        "coredns"
    } else {
        "default"
    }
}

/// Felix's jumps at the top of the built-in chains.
pub fn render_head_jumps(rs: &mut Ruleset) {
    for t in ["mangle", "raw", "nat"] {
        emit(rs.table(t), "PREROUTING", &[r("", "-j cali-PREROUTING")]);
    }
    emit(rs.table("mangle"), "POSTROUTING", &[r("", "-j cali-POSTROUTING")]);
    emit(rs.table("raw"), "OUTPUT", &[r("", "-j cali-OUTPUT")]);
    let f = rs.table("filter");
    emit(f, "INPUT", &[r("", "-j cali-INPUT")]);
    emit(f, "FORWARD", &[r("", "-j cali-FORWARD")]);
    emit(f, "OUTPUT", &[r("", "-j cali-OUTPUT")]);
    let n = rs.table("nat");
    emit(n, "OUTPUT", &[r("", "-j cali-OUTPUT")]);
    emit(n, "POSTROUTING", &[r("", "-j cali-POSTROUTING")]);
}

/// Felix's rules appended at the end of filter FORWARD.
pub fn render_tail_jumps(rs: &mut Ruleset) {
    emit_at(
        rs.table("filter"),
        "FORWARD",
        &[r("", "-j cali-FORWARD")],
        &[
            r(
                "",
                "-m comment --comment \"Policy explicitly accepted packet.\" -m mark --mark 0x10000/0x10000 -j ACCEPT",
            ),
            r("", "-j MARK --set-xmark 0x10000/0x10000"),
        ],
    );
}

/// Felix's chains on node `node` (an index into `cluster.nodes`).
pub fn render_chains(cluster: &Cluster, node: usize, rs: &mut Ruleset) {
    let ipip = cluster.encap == Encap::Ipip;
    let host_mark = "-m comment --comment \"Host endpoint policy accepted packet.\" -m mark --mark 0x10000/0x10000";

    let m = rs.table("mangle");
    emit(
        m,
        "cali-POSTROUTING",
        &[
            r("", "-m mark --mark 0x10000/0x10000 -j RETURN"),
            r("", "-j MARK --set-xmark 0x0/0xf0000"),
            r("", "-m conntrack --ctstate DNAT -j cali-to-host-endpoint"),
            r("", &format!("{host_mark} -j RETURN")),
        ],
    );
    emit(
        m,
        "cali-PREROUTING",
        &[
            r("", "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
            r("", "-m mark --mark 0x10000/0x10000 -j ACCEPT"),
            r("", "-j cali-from-host-endpoint"),
            r("", &format!("{host_mark} -j ACCEPT")),
        ],
    );
    m.chain("cali-from-host-endpoint");
    m.chain("cali-to-host-endpoint");

    let raw = rs.table("raw");
    emit(
        raw,
        "cali-OUTPUT",
        &[
            r("", "-j MARK --set-xmark 0x0/0xf0000"),
            r("", "-j cali-to-host-endpoint"),
            r("", "-m mark --mark 0x10000/0x10000 -j ACCEPT"),
        ],
    );
    emit(
        raw,
        "cali-PREROUTING",
        &[
            r("", "-j MARK --set-xmark 0x0/0xf0000"),
            r("-i cali+", "-j MARK --set-xmark 0x40000/0x40000"),
            r("", "-m mark --mark 0x40000/0x40000 -j cali-rpf-skip"),
            r("", "-m mark --mark 0x40000/0x40000 -m rpfilter --validmark --invert -j DROP"),
            r("", "-m mark --mark 0x0/0x40000 -j cali-from-host-endpoint"),
            r("", "-m mark --mark 0x10000/0x10000 -j ACCEPT"),
        ],
    );
    for c in ["cali-from-host-endpoint", "cali-rpf-skip", "cali-to-host-endpoint"] {
        raw.chain(c);
    }

    let f = rs.table("filter");
    emit(
        f,
        "cali-FORWARD",
        &[
            r("", "-j MARK --set-xmark 0x0/0xe0000"),
            r("", "-m mark --mark 0x0/0x10000 -j cali-from-hep-forward"),
            r("-i cali+", "-j cali-from-wl-dispatch"),
            r("-o cali+", "-j cali-to-wl-dispatch"),
            r("", "-j cali-to-hep-forward"),
            r("", "-j cali-cidr-block"),
        ],
    );
    let mut input = if ipip {
        vec![
            r("-p ipencap", "-m comment --comment \"Allow IPIP packets from Calico hosts\" -m set --match-set cali40all-hosts-net src -m addrtype --dst-type LOCAL -j ACCEPT"),
            r("-p ipencap", "-m comment --comment \"Drop IPIP packets from non-Calico hosts\" -j DROP"),
        ]
    } else {
        vec![
            r("-p udp", "-m comment --comment \"Allow VXLAN packets from allowlisted hosts\" -m multiport --dports 4789 -m set --match-set cali40all-vxlan-net src -m addrtype --dst-type LOCAL -j ACCEPT"),
            r("-p udp", "-m comment --comment \"Drop VXLAN packets from non-allowlisted hosts\" -m multiport --dports 4789 -m addrtype --dst-type LOCAL -j DROP"),
        ]
    };
    input.extend([
        r("-i cali+", "-g cali-wl-to-host"),
        r("", "-m mark --mark 0x10000/0x10000 -j ACCEPT"),
        r("", "-j MARK --set-xmark 0x0/0xf0000"),
        r("", "-j cali-from-host-endpoint"),
        r("", &format!("{host_mark} -j ACCEPT")),
    ]);
    emit(f, "cali-INPUT", &input);
    let mut output = vec![r("", "-m mark --mark 0x10000/0x10000 -j ACCEPT"), r("-o cali+", "-j RETURN")];
    if ipip {
        output.push(r("-p ipencap", "-m comment --comment \"Allow IPIP packets to other Calico hosts\" -m set --match-set cali40all-hosts-net dst -m addrtype --src-type LOCAL -j ACCEPT"));
    } else {
        output.push(r("-p udp", "-m comment --comment \"Allow VXLAN packets to other allowlisted hosts\" -m multiport --dports 4789 -m addrtype --src-type LOCAL -m set --match-set cali40all-vxlan-net dst -j ACCEPT"));
    }
    output.extend([
        r("", "-j MARK --set-xmark 0x0/0xf0000"),
        r("", "-m conntrack ! --ctstate DNAT -j cali-to-host-endpoint"),
        r("", &format!("{host_mark} -j ACCEPT")),
    ]);
    emit(f, "cali-OUTPUT", &output);
    emit(
        f,
        "cali-wl-to-host",
        &[
            r("", "-j cali-from-wl-dispatch"),
            r("", "-m comment --comment \"Configured DefaultEndpointToHostAction\" -j ACCEPT"),
        ],
    );
    for c in [
        "cali-cidr-block",
        "cali-from-hep-forward",
        "cali-from-host-endpoint",
        "cali-to-hep-forward",
        "cali-to-host-endpoint",
    ] {
        f.chain(c);
    }

    // Workloads on this node.
    let mut pods: Vec<&Pod> = cluster.pods.iter().filter(|p| p.node == node).collect();
    pods.sort_by(|a, b| a.iface.cmp(&b.iface));
    let mut profiles: BTreeSet<(String, &'static str)> = BTreeSet::new();
    for pod in &pods {
        profiles.insert((pod.namespace.clone(), service_account(pod)));
        let kns = format!("kns.{}", pod.namespace);
        let ksa = format!("ksa.{}.{}", pod.namespace, service_account(pod));
        let fw = format!("cali-fw-{}", pod.iface);
        let tw = format!("cali-tw-{}", pod.iface);
        let ret = r("", "-m comment --comment \"Return if profile accepted\" -m mark --mark 0x10000/0x10000 -j RETURN");
        let drop = r("", "-m comment --comment \"Drop if no profiles matched\" -j DROP");
        let common = [
            r("", "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
            r("", "-m conntrack --ctstate INVALID -j DROP"),
            r("", "-j MARK --set-xmark 0x0/0x10000"),
        ];
        let mut from = common.to_vec();
        from.extend([
            r("-p udp", "-m comment --comment \"Drop VXLAN encapped packets originating in workloads\" -m multiport --dports 4789 -j DROP"),
            r("-p ipencap", "-m comment --comment \"Drop IPinIP encapped packets originating in workloads\" -j DROP"),
            r("", &format!("-j {}", profile_chain("cali-pro-", &kns))),
            ret.clone(),
            r("", &format!("-j {}", profile_chain("cali-pro-", &ksa))),
            ret.clone(),
            drop.clone(),
        ]);
        emit(f, &fw, &from);
        let mut to = common.to_vec();
        to.extend([
            r("", &format!("-j {}", profile_chain("cali-pri-", &kns))),
            ret.clone(),
            r("", &format!("-j {}", profile_chain("cali-pri-", &ksa))),
            ret,
            drop,
        ]);
        emit(f, &tw, &to);
    }
    let ifaces: Vec<&str> = pods.iter().map(|p| p.iface.as_str()).collect();
    dispatch(f, "cali-from-wl-dispatch", "-i", "cali-fw-", &ifaces);
    dispatch(f, "cali-to-wl-dispatch", "-o", "cali-tw-", &ifaces);
    for (ns, sa) in &profiles {
        let kns = format!("kns.{ns}");
        for prefix in ["cali-pri-", "cali-pro-"] {
            emit(
                f,
                &profile_chain(prefix, &kns),
                &[r("", "-j MARK --set-xmark 0x10000/0x10000"), r("", "-m mark --mark 0x10000/0x10000 -j RETURN")],
            );
        }
        let ksa = format!("ksa.{ns}.{sa}");
        emit(
            f,
            &profile_chain("cali-pri-", &ksa),
            &[r("", &format!("-m comment --comment \"Profile {ksa} ingress\""))],
        );
        emit(f, &profile_chain("cali-pro-", &ksa), &[r("", &format!("-m comment --comment \"Profile {ksa} egress\""))]);
    }

    let n = rs.table("nat");
    emit(n, "cali-OUTPUT", &[r("", "-j cali-fip-dnat")]);
    emit(n, "cali-PREROUTING", &[r("", "-j cali-fip-dnat")]);
    let out_if = if ipip { "-o tunl0" } else { "-o vxlan.calico" };
    emit(
        n,
        "cali-POSTROUTING",
        &[
            r("", "-j cali-fip-snat"),
            r("", "-j cali-nat-outgoing"),
            r(out_if, "-m addrtype ! --src-type LOCAL --limit-iface-out -m addrtype --src-type LOCAL -j MASQUERADE"),
        ],
    );
    emit(
        n,
        "cali-nat-outgoing",
        &[r("", "-m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully")],
    );
    n.chain("cali-fip-dnat");
    n.chain("cali-fip-snat");
}

/// A dispatch chain (and its per-prefix sub-chains) for sorted `ifaces`.
fn dispatch(f: &mut Table, root: &str, flag: &str, target: &str, ifaces: &[&str]) {
    let unknown = r("", "-m comment --comment \"Unknown interface\" -j DROP");
    let mut root_rules: Vec<FelixRule> = Vec::new();
    let mut i = 0;
    while i < ifaces.len() {
        let key = ifaces.get(i).and_then(|n| n.get(4..5)).unwrap_or("");
        let group: Vec<&str> =
            ifaces.iter().skip(i).take_while(|n| n.get(4..5).unwrap_or("") == key).copied().collect();
        i += group.len().max(1);
        if group.len() == 1 || key.is_empty() {
            for iface in &group {
                root_rules.push(iface_rule(flag, iface, &format!("-g {target}{iface}")));
            }
        } else {
            let sub = format!("{root}-{key}");
            let mut rules: Vec<FelixRule> =
                group.iter().map(|iface| iface_rule(flag, iface, &format!("-g {target}{iface}"))).collect();
            rules.push(unknown.clone());
            emit(f, &sub, &rules);
            root_rules.push(iface_rule(flag, &format!("cali{key}+"), &format!("-g {sub}")));
        }
    }
    root_rules.push(unknown);
    emit(f, root, &root_rules);
}

/// A rule matching interface `iface` (`-i` or `-o`).
fn iface_rule(flag: &str, iface: &str, rest: &str) -> FelixRule {
    (format!("{flag} {iface}"), rest.to_string())
}

/// `ipset save` of felix's sets on node `node`.
pub fn ipset_save(cluster: &Cluster, node: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed ^ 0x1F5E_7000).fork(node as u64 + 1);
    let mut out = String::new();
    let create = |out: &mut String, name: &str, rng: &mut Rng| {
        let _ = writeln!(
            out,
            "create {name} hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval {:#010x}",
            rng.next_u64() as u32
        );
    };
    create(&mut out, "cali40all-ipam-pools", &mut rng);
    let _ = writeln!(out, "add cali40all-ipam-pools {}", cluster.pool);
    let hosts = match cluster.encap {
        Encap::Ipip => "cali40all-hosts-net",
        Encap::Vxlan => "cali40all-vxlan-net",
    };
    create(&mut out, hosts, &mut rng);
    // ipset lists hash members in bucket order; newest first is what the
    // seed's nodes show for two members.
    for n in cluster.nodes.iter().rev() {
        let _ = writeln!(out, "add {hosts} {}", n.ip);
    }
    create(&mut out, "cali40masq-ipam-pools", &mut rng);
    let _ = writeln!(out, "add cali40masq-ipam-pools {}", cluster.pool);
    out
}
