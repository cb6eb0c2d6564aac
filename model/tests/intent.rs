//! What kube-proxy means, read from real dumps of each of its layouts: the
//! local-traffic detector (cluster CIDR or device) wherever kube-proxy
//! writes it, and the Services that only filter's refusals name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

use natpath_model::intent::Intent;
use natpath_model::parse::iptables::{self, Options};
use natpath_model::ruleset::{Proto, TableName};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

/// The intent of one dump file (a paste without `*table` lines is `table`'s).
fn intent_of(rel: &str, table: Option<TableName>) -> Intent {
    let path = corpus().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rs = iptables::parse(&text, rel, &Options { lenient: true, table })
        .unwrap_or_else(|e| panic!("{rel} does not parse:\n{e}"));
    Intent::read(&rs, &[], &[])
}

fn cidrs(i: &Intent) -> Vec<String> {
    i.cluster_cidrs.iter().map(|n| n.to_string()).collect()
}

/// kube-proxy v1.28.7's own output, with no Calico set beside it: the
/// cluster CIDR is only in the `KUBE-SVC-` masquerade rules and the
/// `KUBE-EXT-` pod short cuts, never in `KUBE-SERVICES`.
#[test]
fn cluster_cidr_from_kube_proxy_1_28_svc_and_ext_chains() {
    let i = intent_of("kube-proxy-reference/svc100.node.iptables-save", None);
    assert!(i.ip_pools.is_empty());
    assert_eq!(cidrs(&i), ["10.244.0.0/16"]);
    assert!(i.local_ifaces.is_empty());
    assert!(i.in_pod_nets(Ipv4Addr::new(10, 244, 1, 167)));
    assert!(!i.in_pod_nets(Ipv4Addr::new(10, 0, 0, 51)));
    // The new snapshot's two nodes, each on its own.
    for node in ["node1", "node2"] {
        let i = intent_of(&format!("kube-proxy-cidr/nodes/{node}/iptables-save"), None);
        assert_eq!(cidrs(&i), ["10.244.0.0/16"], "{node}");
    }
}

/// The older layout writes the detector in `KUBE-SERVICES` and in
/// `KUBE-XLB-` (a real AKS kubenet dump of that era).
#[test]
fn cluster_cidr_from_the_older_kube_services_and_xlb_layout() {
    let i = intent_of(
        "public/blog-aks-kubenet-service-types/4.3_nodeport-etp-local_node1-no-local-endpoint.partial.rules",
        Some(TableName::Nat),
    );
    assert_eq!(cidrs(&i), ["10.244.0.0/16"]);
    // Only the XLB short cut names it: still read.
    let text = std::fs::read_to_string(
        corpus()
            .join("public/blog-aks-kubenet-service-types/4.3_nodeport-etp-local_node1-no-local-endpoint.partial.rules"),
    )
    .unwrap();
    let only_xlb: String =
        text.lines().filter(|l| !l.contains("-j KUBE-MARK-MASQ")).map(|l| format!("{l}\n")).collect();
    let rs = iptables::parse(&only_xlb, "xlb", &Options { lenient: true, table: Some(TableName::Nat) }).unwrap();
    assert_eq!(cidrs(&Intent::read(&rs, &[], &[])), ["10.244.0.0/16"]);
}

/// A detector by device (AKS's `--detect-local-mode InterfaceNamePrefix`):
/// the device is recorded, no address is made up.
#[test]
fn an_interface_detector_names_a_device_and_no_cidr() {
    let i = intent_of(
        "public/notes-aks-cni-overlay-etp-local/vmss000001_nat_grep-loadbal_k8s-1.30.partial.rules",
        Some(TableName::Nat),
    );
    assert!(i.cluster_cidrs.is_empty(), "{:?}", i.cluster_cidrs);
    assert_eq!(i.local_ifaces, ["azv+"]);
}

/// Rules that look like the detector but are not: a `KUBE-SEP-`'s hairpin
/// `-s POD/32 -j KUBE-MARK-MASQ`, `loadBalancerSourceRanges` in `KUBE-FW-`.
#[test]
fn hairpin_and_source_range_rules_are_not_the_detector() {
    let text = "*nat\n:KUBE-SEP-A - [0:0]\n:KUBE-FW-A - [0:0]\n:KUBE-EXT-A - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n\
        -A KUBE-SEP-A -s 10.244.0.5/32 -j KUBE-MARK-MASQ\n\
        -A KUBE-FW-A -s 192.0.2.0/24 -j KUBE-EXT-A\n\
        -A KUBE-SVC-A -d 10.96.0.9/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ\n\
        COMMIT\n";
    let rs = iptables::parse(text, "t", &Options::default()).unwrap();
    let i = Intent::read(&rs, &[], &[]);
    assert!(i.cluster_cidrs.is_empty() && i.local_ifaces.is_empty(), "{i:?}");
}

/// kube-proxy v1.28.7's refusals on node1 of `corpus/kube-proxy-cidr`:
/// `default/gone` has no endpoint (REJECT of its cluster IP, external IP,
/// load-balancer IP and NodePort), `default/cache` is
/// internalTrafficPolicy Local with its only endpoint on node2 (a DROP of
/// its cluster IP and nothing in nat), `default/web-local` is
/// externalTrafficPolicy Local with its endpoint on node2.
#[test]
fn services_named_only_by_filter_refusals() {
    let i = intent_of("kube-proxy-cidr/nodes/node1/iptables-save", None);
    let svc = |n: &str| i.services.iter().find(|s| s.name == n).unwrap_or_else(|| panic!("{n}: {:?}", i.services));
    let gone = svc("default/gone:https");
    assert!(gone.rejects_no_endpoints && gone.endpoints.is_empty());
    assert_eq!(gone.cluster_ip, Some((Ipv4Addr::new(10, 96, 0, 22), 443)));
    assert_eq!(gone.node_port, Some(30443));
    assert_eq!(gone.external_ips, [(Ipv4Addr::new(192, 0, 2, 22), 443), (Ipv4Addr::new(198, 18, 0, 22), 443)]);
    assert!(!gone.external_local);
    let cache = svc("default/cache:dns");
    assert_eq!((cache.proto, cache.cluster_ip), (Proto::UDP, Some((Ipv4Addr::new(10, 96, 0, 23), 53))));
    assert!(!cache.external_local && !cache.rejects_no_endpoints, "an internal policy is not an external one");
    let local = svc("default/web-local:http");
    assert!(local.external_local && local.local_endpoints.is_empty());
    // On node2 the same internal-Local Service goes to its node-local chain.
    let i2 = intent_of("kube-proxy-cidr/nodes/node2/iptables-save", None);
    let cache2 = i2.services.iter().find(|s| s.name == "default/cache:dns").unwrap();
    assert!(cache2.svl_chain.is_some(), "{cache2:?}");
    assert_eq!(
        cache2.local_endpoints.iter().map(|e| (e.address, e.port)).collect::<Vec<_>>(),
        [(Ipv4Addr::new(10, 244, 2, 12), 5353)]
    );
    assert!(!cache2.external_local);
}
