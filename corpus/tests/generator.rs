//! The generator's contract, pinned: kube-proxy v1.28.7 equivalence on the
//! reference Services file, reproducibility, self-consistency of generated
//! dumps, and loading them into the real kernel (`ipset restore`,
//! `iptables-restore --test`) inside throwaway network namespaces.
//!
//! The reference (`svc100.services.json`, `svc100.node.iptables-save`) is
//! looked up in `$NATPATH_KUBE_PROXY_REFERENCE`, then
//! `corpus/kube-proxy-reference/`. Kernel tests need root; without it a
//! test prints `SKIPPED: <reason>` and passes.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on broken fixtures")]
#![expect(clippy::indexing_slicing, reason = "test helpers index windows of known length")]
#![expect(clippy::panic, reason = "test helpers report the model's errors in full")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use natpath_corpus::netns::{self, Netns};
use natpath_corpus::{from_services_json, generate, kube_proxy_save, write_snapshot, Encap, GeneratedSnapshot, Spec};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf()
}

fn reference_dir() -> PathBuf {
    std::env::var_os("NATPATH_KUBE_PROXY_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("corpus/kube-proxy-reference"))
}

/// The reference files; the repository ships them, so a missing one fails.
#[track_caller]
fn reference() -> Option<(String, String)> {
    let dir = reference_dir();
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()));
    Some((read("svc100.services.json"), read("svc100.node.iptables-save")))
}

/// Lines of a dump without `#` comment lines.
fn body(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

/// Lines whose count differs: (line, count in `a` minus count in `b`).
fn multiset_diff<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(&'a str, i64)> {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for l in a {
        *count.entry(l).or_default() += 1;
    }
    for l in b {
        *count.entry(l).or_default() -= 1;
    }
    count.into_iter().filter(|(_, c)| *c != 0).collect()
}

fn skipped(reason: &str) {
    println!("SKIPPED: {reason}");
    eprintln!("SKIPPED: {reason}");
}

mod kube_proxy_reference {
    use super::*;

    /// Chains whose rule order follows kube-proxy's Go map walk over Services.
    const MAP_ORDERED: [&str; 4] = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL", "KUBE-EXTERNAL-SERVICES"];

    fn map_ordered(line: &str) -> bool {
        MAP_ORDERED.iter().any(|c| line.starts_with(&format!("-A {c} ")))
    }

    #[test]
    fn svc100_same_multiset_of_lines_as_kube_proxy_1_28_7() {
        let Some((json, reference)) = reference() else { return };
        let ours = kube_proxy_save(&json, "node-1").unwrap();
        let (ours, reference) = (body(&ours), body(&reference));
        let diff = multiset_diff(&reference, &ours);
        for (line, c) in &diff {
            let side = if *c > 0 { "only in kube-proxy's" } else { "only in ours" };
            eprintln!("{side} ({c:+}): {line}");
        }
        assert!(diff.is_empty(), "{} distinct lines differ from kube-proxy's (listed above)", diff.len());
        assert_eq!(ours.len(), reference.len());
    }

    #[test]
    fn svc100_same_order_outside_the_map_ordered_dispatch_chains() {
        let Some((json, reference)) = reference() else { return };
        let ours = kube_proxy_save(&json, "node-1").unwrap();
        let strip =
            |t: &str| -> Vec<String> { body(t).into_iter().filter(|l| !map_ordered(l)).map(str::to_string).collect() };
        assert_eq!(strip(&ours), strip(&reference));
        // The NodePort jump stays the last rule of nat KUBE-SERVICES.
        let last = body(&ours).into_iter().rfind(|l| l.starts_with("-A KUBE-SERVICES ")).unwrap();
        assert!(last.ends_with("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"), "{last}");
    }

    #[test]
    fn svc100_snapshot_for_node_1() {
        let Some((json, _)) = reference() else { return };
        let snap = from_services_json(&json, "node-1").unwrap();
        assert_eq!(snap.nodes.len(), 1);
        let node = &snap.nodes[0];
        assert_eq!(node.iptables_save, kube_proxy_save(&json, "node-1").unwrap());
        assert!(node.ip_addr.contains("inet 10.0.0.51/24 scope global eth0"));
        assert!(node.ip_route.contains("10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.51"));
        assert!(snap.cluster_toml.contains("name = \"node-1\""));
        // Every local endpoint is a pod with a route to its veth.
        assert_eq!(snap.pods, snap.cluster_toml.matches("[[pod]]").count());
        assert!(snap.pods > 0);
        assert!(from_services_json(&json, "node-9").unwrap_err().to_string().contains("node-9"));
    }

    #[test]
    fn bad_services_files_are_errors_that_name_the_service() {
        let bad = r#"{"generator":{"nodes":[{"name":"n","ip":"10.0.0.1"}]},"services":[
            {"namespace":"a","name":"b","type":"Headless","clusterIP":"10.96.0.5","ports":[],"endpoints":[]}]}"#;
        assert_eq!(kube_proxy_save(bad, "n").unwrap_err().to_string(), "service `a/b`: unknown type `Headless`");
        let bad_ip = r#"{"generator":{"nodes":[{"name":"n","ip":"10.0.0.1"}]},"services":[
            {"namespace":"a","name":"b","type":"ClusterIP","clusterIP":"10.96.0.500","ports":[],"endpoints":[]}]}"#;
        assert_eq!(
            kube_proxy_save(bad_ip, "n").unwrap_err().to_string(),
            "service `a/b` clusterIP: expected an IPv4 address, found `10.96.0.500`"
        );
        assert!(kube_proxy_save("{", "n").is_err());
    }
}

mod generated {
    use super::*;

    /// Every jump or goto target is a built-in target or a declared chain of its table.
    #[track_caller]
    fn assert_self_consistent(save: &str) {
        const TARGETS: [&str; 10] =
            ["ACCEPT", "DROP", "RETURN", "REJECT", "MARK", "MASQUERADE", "DNAT", "SNAT", "CT", "LOG"];
        let mut declared: Vec<String> = Vec::new();
        let mut table = "";
        for line in save.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t;
                declared.clear();
            } else if let Some(decl) = line.strip_prefix(':') {
                declared.push(decl.split(' ').next().unwrap().to_string());
            } else if line.starts_with("-A ") {
                let chain = line.split(' ').nth(1).unwrap();
                assert!(declared.iter().any(|d| d == chain), "{table}: rule in undeclared chain: {line}");
                let words: Vec<&str> = line.split(' ').collect();
                for w in words.windows(2) {
                    if w[0] == "-j" || w[0] == "-g" {
                        let target = w[1];
                        assert!(
                            TARGETS.contains(&target) || declared.iter().any(|d| d == target),
                            "{table}: jump to undeclared chain `{target}`: {line}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn reproducible_from_the_seed() {
        let spec = Spec::with_services(60);
        let a = generate(&spec);
        assert_eq!(a, generate(&spec));
        let b = generate(&Spec { seed: 99, ..spec });
        assert_ne!(a.nodes[0].iptables_save, b.nodes[0].iptables_save);
    }

    #[test]
    fn shapes_of_kube_proxy_and_calico() {
        let snap = generate(&Spec::with_services(200));
        assert_eq!(snap.nodes.len(), 3);
        assert_eq!(snap.services, 200);
        for node in &snap.nodes {
            let save = &node.iptables_save;
            assert_self_consistent(save);
            assert_eq!(body(save).iter().filter(|l| l.starts_with("-A ")).count(), node.rules);
            // kube-proxy, as in any kubeadm cluster.
            assert!(save.contains(":KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]"), "default/kubernetes:https");
            assert!(save.contains(":KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]"), "kube-system/kube-dns:dns");
            assert!(save.contains("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"));
            assert!(save.contains("-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-"));
            assert!(save.contains("-m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-"));
            assert!(save.contains(":KUBE-EXT-") && save.contains(":KUBE-SVL-") && save.contains(":KUBE-FW-"));
            assert!(save.contains("has no local endpoints\" -m addrtype --dst-type LOCAL"));
            assert!(save.contains("health check node port\" -m tcp --dport"));
            // Calico: per-pod chains for this node's pods only, IPIP rules.
            let pods_here = node.ip_addr.matches("@if2:").count();
            assert_eq!(pods_here, 110);
            assert_eq!(save.matches("\n:cali-fw-cali").count(), pods_here);
            assert_eq!(save.matches("\n:cali-tw-cali").count(), pods_here);
            assert!(save.contains("-A cali-INPUT -p ipencap -m comment --comment \"cali:"));
            assert!(save.contains("-A cali-POSTROUTING -o tunl0 -m comment"));
            let ipset = node.ipset_save.as_deref().unwrap();
            assert!(ipset.contains("add cali40all-hosts-net 10.0.0.51"));
            assert!(node.ip_route.contains(" dev tunl0 proto bird onlink "));
            assert!(node.ip_route.contains("blackhole 192.168."));
            assert!(node.ip_addr.contains("tunl0@NONE"));
        }
        // Local endpoints differ per node, so do the dumps.
        assert_ne!(snap.nodes[0].iptables_save, snap.nodes[1].iptables_save);
    }

    #[test]
    fn vxlan_variant() {
        let snap = generate(&Spec { encap: Encap::Vxlan, ..Spec::with_services(50) });
        for node in &snap.nodes {
            assert_self_consistent(&node.iptables_save);
            assert!(node.iptables_save.contains("-A cali-POSTROUTING -o vxlan.calico -m comment"));
            assert!(node.iptables_save.contains("--match-set cali40all-vxlan-net src"));
            assert!(!node.iptables_save.contains("cali40all-hosts-net"));
            assert!(node.ip_route.contains(" dev vxlan.calico proto 80 onlink "));
            assert!(node.ip_link.as_deref().unwrap().contains("vxlan id 4096 local "));
            assert_eq!(node.bridge_fdb.as_deref().unwrap().lines().count(), 2);
        }
    }

    #[test]
    fn large_cluster_mode_drops_endpoint_comments() {
        // Above 1,000 endpoints kube-proxy stops commenting KUBE-SEP rules.
        let snap = generate(&Spec::with_services(400));
        let save = &snap.nodes[0].iptables_save;
        assert!(save.lines().any(|l| l.starts_with("-A KUBE-SEP-") && l.contains(" -j DNAT ")));
        assert!(!save.lines().any(|l| l.starts_with("-A KUBE-SEP-") && l.contains("-m comment")));
        let small = generate(&Spec::with_services(20));
        assert!(small.nodes[0]
            .iptables_save
            .lines()
            .any(|l| l.starts_with("-A KUBE-SEP-") && l.contains("-m comment")));
    }

    #[test]
    fn written_in_the_snapshot_layout() {
        let snap = generate(&Spec::with_services(10));
        let dir = std::env::temp_dir().join(format!("natpath-gen-test-{}", std::process::id()));
        write_snapshot(&snap, &dir).unwrap();
        assert!(dir.join("cluster.toml").is_file());
        for n in ["node-1", "node-2", "node-3"] {
            for f in ["iptables-save", "ipset-save", "ip-route", "ip-addr", "ip-rule", "sysctl"] {
                assert!(dir.join("nodes").join(n).join(f).is_file(), "{n}/{f}");
            }
        }
        let back = std::fs::read_to_string(dir.join("nodes/node-2/iptables-save")).unwrap();
        assert_eq!(back, snap.nodes[1].iptables_save);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The model's own readers accept what the generator writes.
mod model_reads_it {
    use super::*;
    use natpath_model::parse::iptables::{parse, Options};

    #[track_caller]
    fn loads(snap: &GeneratedSnapshot, what: &str) {
        let dir = std::env::temp_dir().join(format!("natpath-gen-model-{}-{what}", std::process::id()));
        write_snapshot(snap, &dir).unwrap();
        let loaded = natpath_model::snapshot::load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => panic!("{what}: the model does not load the generated snapshot:\n{e}"),
        };
        assert_eq!(loaded.nodes.len(), snap.nodes.len());
        for (node, dumps) in loaded.nodes.iter().zip(&snap.nodes) {
            assert_eq!(node.name, dumps.name);
            assert_eq!(node.ruleset.rule_count(), dumps.rules, "{what} {}", node.name);
        }
    }

    #[test]
    fn iptables_parser_accepts_every_generated_dump() {
        for snap in
            [generate(&Spec::with_services(300)), generate(&Spec { encap: Encap::Vxlan, ..Spec::with_services(100) })]
        {
            for node in &snap.nodes {
                let rs = match parse(&node.iptables_save, &node.name, &Options::default()) {
                    Ok(rs) => rs,
                    Err(e) => panic!("{}: {e}", node.name),
                };
                assert_eq!(rs.rule_count(), node.rules);
            }
        }
    }

    #[test]
    fn snapshot_loader_accepts_generated_snapshots() {
        loads(&generate(&Spec::with_services(300)), "ipip");
        loads(&generate(&Spec { encap: Encap::Vxlan, ..Spec::with_services(100) }), "vxlan");
    }

    #[test]
    fn snapshot_loader_accepts_the_svc100_snapshot() {
        let Some((json, _)) = reference() else { return };
        loads(&from_services_json(&json, "node-1").unwrap(), "svc100");
    }
}

mod kernel {
    use super::*;

    /// Load every node of `snap` into its own throwaway namespace.
    fn load(snap: &GeneratedSnapshot, what: &str) {
        let dir = std::env::temp_dir().join(format!("natpath-gen-kernel-{}-{what}", std::process::id()));
        write_snapshot(snap, &dir).unwrap();
        let mut failures = Vec::new();
        for node in &snap.nodes {
            let nd = dir.join("nodes").join(&node.name);
            let ns = Netns::create().unwrap();
            if node.ipset_save.is_some() {
                if let Err(e) = ns.ipset_restore(&nd.join("ipset-save")) {
                    failures.push(format!("{what} {}: {e}", node.name));
                    continue;
                }
            }
            match ns.iptables_restore_test(&nd.join("iptables-save")) {
                Ok(took) => {
                    println!("{what} {}: iptables-restore --test ok in {took:?} ({} rules)", node.name, node.rules)
                }
                Err(e) => {
                    failures.push(format!("{what} {}: {e}", node.name));
                    continue;
                }
            }
            // A real load into the throwaway namespace also checks that
            // every jumped-to chain exists, and iptables-save must print
            // back exactly the lines we wrote.
            if let Err(e) = ns.iptables_restore(&nd.join("iptables-save")) {
                failures.push(format!("{what} {}: {e}", node.name));
                continue;
            }
            let back = ns.iptables_save().unwrap();
            let diff = multiset_diff(&body(&node.iptables_save), &body(&back));
            for (line, c) in diff.iter().take(20) {
                eprintln!("{what} {} ({c:+} ours vs kernel): {line}", node.name);
            }
            if !diff.is_empty() {
                failures.push(format!(
                    "{what} {}: {} lines differ from what iptables-save prints back",
                    node.name,
                    diff.len()
                ));
            }
            drop(ns);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn generated_dumps_load_with_iptables_restore_test() {
        if let Some(reason) = netns::unavailable() {
            return skipped(&reason);
        }
        load(&generate(&Spec::with_services(300)), "ipip");
        load(&generate(&Spec { encap: Encap::Vxlan, ..Spec::with_services(100) }), "vxlan");
    }

    #[test]
    fn svc100_rendering_loads_with_iptables_restore_test() {
        if let Some(reason) = netns::unavailable() {
            return skipped(&reason);
        }
        let Some((json, _)) = reference() else { return };
        load(&from_services_json(&json, "node-1").unwrap(), "svc100");
    }

    /// Rules svc100 does not exercise: no endpoints at all (REJECT),
    /// externalIPs, a source range holding the node, internal Local policy
    /// without local endpoints, UDP NodePorts. A real restore and save must
    /// give back exactly our lines, so their canonical forms are right.
    #[test]
    fn rules_beyond_svc100_round_trip_through_the_kernel() {
        if let Some(reason) = netns::unavailable() {
            return skipped(&reason);
        }
        let json = r#"{"generator":{"clusterCIDR":"10.244.0.0/16","nodes":[{"name":"n1","ip":"10.0.0.51"},{"name":"n2","ip":"10.0.0.52"}]},
          "services":[
            {"namespace":"a","name":"empty","type":"LoadBalancer","clusterIP":"10.96.0.20",
             "ports":[{"name":"p","protocol":"TCP","port":80,"targetPort":8080,"nodePort":30080}],
             "loadBalancerIngressIPs":["198.18.0.9"],"externalIPs":["192.0.2.7"],"endpoints":[]},
            {"namespace":"a","name":"ext","type":"NodePort","clusterIP":"10.96.0.21","externalTrafficPolicy":"Local",
             "ports":[{"name":"","protocol":"UDP","port":53,"targetPort":5353,"nodePort":30053}],
             "externalIPs":["192.0.2.8"],"endpoints":[{"ip":"10.244.1.2","node":"n2"}]},
            {"namespace":"a","name":"fw","type":"LoadBalancer","clusterIP":"10.96.0.22","sessionAffinity":"ClientIP",
             "sessionAffinityTimeoutSeconds":60,"ports":[{"name":"","protocol":"TCP","port":443,"targetPort":8443,"nodePort":30443}],
             "loadBalancerIngressIPs":["198.18.0.10"],"loadBalancerSourceRanges":["10.0.0.0/8"],
             "endpoints":[{"ip":"10.244.0.2","node":"n1"},{"ip":"10.244.1.3","node":"n2"}]},
            {"namespace":"a","name":"itp","type":"ClusterIP","clusterIP":"10.96.0.23","internalTrafficPolicy":"Local",
             "ports":[{"name":"","protocol":"TCP","port":80,"targetPort":80}],"endpoints":[{"ip":"10.244.1.4","node":"n2"}]}
          ]}"#;
        let snap = from_services_json(json, "n1").unwrap();
        let save = &snap.nodes[0].iptables_save;
        assert!(save.contains("-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment \"a/empty:p has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"));
        assert!(save.contains("-A KUBE-FW-"), "{save}");
        assert!(save.contains("-s 198.18.0.10/32 -m comment --comment \"a/fw loadbalancer IP\""), "allowFromNode");
        assert!(save.contains("\"a/itp has no local endpoints\" -m tcp --dport 80 -j DROP"));
        load(&snap, "edge-cases");
    }

    #[test]
    fn a_broken_dump_is_refused_and_the_namespace_removed() {
        if let Some(reason) = netns::unavailable() {
            return skipped(&reason);
        }
        let dir = std::env::temp_dir().join(format!("natpath-gen-broken-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("iptables-save");
        std::fs::write(&file, "*nat\n-A PREROUTING --no-such-option -j ACCEPT\nCOMMIT\n").unwrap();
        let ns = Netns::create().unwrap();
        let name = ns.name().to_string();
        assert!(ns.iptables_restore_test(&file).is_err());
        drop(ns);
        let list = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&name), "{name} left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The catalog on generated clusters: what kube-proxy and Calico write for
/// healthy Services keeps every invariant, as on the seed.
mod invariants {
    use super::*;
    use natpath_verify::invariants::{check_all, CheckOptions, Outcome};

    fn check(snap: &GeneratedSnapshot, what: &str) {
        let dir = std::env::temp_dir().join(format!("natpath-gen-check-{}-{what}", std::process::id()));
        write_snapshot(snap, &dir).unwrap();
        let loaded = natpath_model::snapshot::load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let loaded = loaded.unwrap_or_else(|e| panic!("{what}: {e}"));
        let verdicts = check_all(&loaded, &CheckOptions::default());
        assert_eq!(verdicts.len(), natpath_verify::invariants::NAMES.len(), "{what}: a verdict is missing");
        let mut problems = Vec::new();
        for v in &verdicts {
            println!(
                "{what} {}: {} ({} queries, {} settled while encoding)",
                v.name,
                v.outcome.word(),
                v.queries,
                v.folded
            );
            match &v.outcome {
                Outcome::Holds => {}
                Outcome::Violated(cx) => problems.push(format!("{}: violated: {}", v.name, cx.summary)),
                Outcome::Unknown(why) => problems.push(format!("{}: unknown: {why}", v.name)),
            }
        }
        assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
        // Not vacuous: the NodePort invariants looked at every NodePort of
        // every node.
        let node_ports: usize = loaded
            .nodes
            .iter()
            .map(|n| {
                n.ruleset
                    .table(natpath_model::ruleset::TableName::Nat)
                    .and_then(|t| t.chain("KUBE-NODEPORTS"))
                    .map_or(0, |c| {
                        c.rules.iter().filter(|r| r.target.as_ref().and_then(|t| t.chain()).is_some()).count()
                    })
            })
            .sum();
        assert!(node_ports > 0, "{what}: the generated cluster has no NodePort");
        for name in ["nodeport-reachable", "reply-finds-origin", "masq-iff-mark"] {
            let v = verdicts.iter().find(|v| v.name == name).unwrap();
            assert!(v.queries + v.folded > 0, "{what}: {name} asked nothing");
        }
        // What the scope says of an external source (no pod, no node
        // address, no martian) decides every test of it: local-preserves-
        // source settles while encoding, and its over-approximation holds.
        let v = verdicts.iter().find(|v| v.name == "local-preserves-source").unwrap();
        assert_eq!(v.queries, 0, "{what}: local-preserves-source sent queries to Z3");
        assert_eq!(v.refined, 0, "{what}: local-preserves-source was asked again exactly");
    }

    /// The settled queries are not vacuous: without kube-proxy's masquerade
    /// for external NodePort traffic on one node, its NodePorts break for
    /// endpoints on other nodes.
    #[test]
    fn a_generated_cluster_without_nodeport_masquerade_is_caught() {
        let snap = generate(&Spec { seed: 7, ..Spec::with_services(12) });
        let dir = std::env::temp_dir().join(format!("natpath-gen-broken-masq-{}", std::process::id()));
        write_snapshot(&snap, &dir).unwrap();
        let loaded = natpath_model::snapshot::load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let mut loaded = loaded.unwrap();
        let nat = loaded.nodes[0]
            .ruleset
            .tables
            .iter_mut()
            .find(|t| t.name == natpath_model::ruleset::TableName::Nat)
            .unwrap();
        let mut removed = 0;
        for c in nat.chains.iter_mut().filter(|c| c.name.starts_with("KUBE-EXT-")) {
            let before = c.rules.len();
            c.rules.retain(|r| r.target.as_ref().and_then(|t| t.chain()) != Some("KUBE-MARK-MASQ"));
            removed += before - c.rules.len();
        }
        assert!(removed > 0, "the generated node has no KUBE-EXT masquerade rule");
        // The un-masqueraded packet reaches a remote endpoint's node by the
        // tunnel with the client's source, where rp_filter drops it (the
        // route back to the client leaves by the LAN): the NodePort is
        // unreachable, and where it is not, the answer bypasses node-1.
        let mut caught = Vec::new();
        for name in ["nodeport-reachable", "reply-finds-origin"] {
            let v = natpath_verify::invariants::check(&loaded, name, &CheckOptions::default()).unwrap();
            if let Outcome::Violated(cx) = &v.outcome {
                println!("{name}: {}", cx.summary);
                assert!(cx.replay.confirmed, "{name}: the counterexample does not replay");
                caught.push(name);
            }
        }
        assert!(!caught.is_empty(), "removing KUBE-EXT's KUBE-MARK-MASQ jumps on node-1 went unnoticed");
    }

    #[test]
    fn the_catalog_holds_on_generated_clusters() {
        check(&generate(&Spec { seed: 7, ..Spec::with_services(24) }), "ipip");
        check(&generate(&Spec { seed: 3, encap: Encap::Vxlan, ..Spec::with_services(8) }), "vxlan");
    }
}
