//! First-packet traversal at scale: one node's hooks for a NodePort packet,
//! and the whole cluster walk (client → NodePort → endpoint → reply), on
//! generated kube-proxy + Calico snapshots of 100, 1,000 and 10,000 Services.
//!
//! The snapshots are generated ([`natpath_corpus::generate`], seed 1),
//! written and loaded with `natpath_model::snapshot::load` once, outside the
//! timed loops. The probe targets the NodePort of the *last* Cluster-policy
//! NodePort/LoadBalancer Service with endpoints, so a rule-by-rule
//! evaluation scans nearly all of KUBE-SERVICES and KUBE-NODEPORTS: the
//! worst case the dispatch indexing is meant to remove. The node
//! bench indexes the node's tables once (as a trace does) and runs one
//! first packet per iteration with empty conntrack, both with the dispatch
//! indexes and rule by rule (`NodeTables::linear`, the naive baseline);
//! its chooser takes every `statistic` draw, so the first endpoint is
//! chosen. The cluster bench follows one seeded branch.
//!
//! Run: `cargo bench -p natpath-benches --bench traverse`.

use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use natpath_corpus::cluster::{Protocol, ServiceType};
use natpath_corpus::{generate, spec, write_snapshot, Spec};
use natpath_model::loc::Loc;
use natpath_model::node::{NodeModel, NodeOptions, NodeTables};
use natpath_model::packet::Packet;
use natpath_model::ruleset::Proto;
use natpath_model::snapshot::{self, Snapshot};
use natpath_model::traverse::Chooser;
use natpath_model::walk::{self, TraceOptions};
use std::sync::Arc;

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);

/// Takes every `statistic` draw: the first endpoint of a service.
struct First;

impl Chooser for First {
    fn choose(&mut self, _p31: u32, _loc: &Loc) -> bool {
        true
    }
}

struct Case {
    services: usize,
    snap: Snapshot,
    node_ip: Ipv4Addr,
    node_port: u16,
}

fn case(services: usize) -> Result<Case, String> {
    let spec = Spec::with_services(services);
    let cluster = spec::build(&spec);
    let target = cluster
        .services
        .iter()
        .rev()
        .filter(|s| s.kind != ServiceType::ClusterIp && !s.external_local && !s.endpoints.is_empty())
        .find_map(|s| s.ports.iter().find(|p| p.protocol == Protocol::Tcp).and_then(|p| p.node_port))
        .ok_or("no NodePort service with endpoints")?;
    let node_ip = cluster.nodes.first().map(|n| n.ip).ok_or("no node")?;
    let dir = std::env::temp_dir().join(format!("natpath-traverse-bench-{}-{services}", std::process::id()));
    write_snapshot(&generate(&spec), &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let loaded = snapshot::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let snap = loaded.map_err(|e| format!("the model does not load the generated snapshot: {e}"))?;
    Ok(Case { services, snap, node_ip, node_port: target })
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, services: usize) {
    group.sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_secs(1));
    if services >= 10_000 {
        group.sample_size(10).measurement_time(Duration::from_secs(10));
    } else {
        group.sample_size(20).measurement_time(Duration::from_secs(3));
    }
}

/// The corpus's rulesets: the seed's node 1 (case B) and kube-proxy's own
/// rules for 100 Services (`corpus/kube-proxy-reference`, the largest
/// kube-proxy ruleset of the corpus, 3,256 rules) as a one-node snapshot.
fn bench_corpus(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut cases: Vec<(&str, Snapshot, Ipv4Addr, u16)> = Vec::new();
    match snapshot::load(&root.join("seed-ipip-remote")) {
        Ok(s) => cases.push(("seed-ipip-remote node1", s, Ipv4Addr::new(10, 0, 0, 51), 32220)),
        Err(e) => println!("SKIPPED: seed-ipip-remote: {e}"),
    }
    let json = std::fs::read_to_string(root.join("kube-proxy-reference/svc100.services.json"));
    let svc100 = json.map_err(|e| e.to_string()).and_then(|j| {
        let g = natpath_corpus::from_services_json(&j, "node-1").map_err(|e| e.to_string())?;
        let dir = std::env::temp_dir().join(format!("natpath-traverse-svc100-{}", std::process::id()));
        write_snapshot(&g, &dir).map_err(|e| e.to_string())?;
        let loaded = snapshot::load(&dir).map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        loaded
    });
    match svc100 {
        Ok(s) => {
            let target = s.nodes.first().and_then(|n| {
                let intent = natpath_model::intent::Intent::read(&n.ruleset, &n.ipsets, &n.interfaces);
                let ip = n.interfaces.iter().find(|i| i.name == n.lan)?.addrs.first()?.addr.addr();
                intent
                    .services
                    .iter()
                    .rev()
                    .find(|sv| {
                        sv.proto == Proto::TCP
                            && !sv.external_local
                            && !sv.endpoints.is_empty()
                            && sv.node_port.is_some()
                    })
                    .and_then(|sv| sv.node_port)
                    .map(|p| (ip, p))
            });
            match target {
                Some((ip, port)) => cases.push(("kube-proxy svc100 node-1", s, ip, port)),
                None => println!("SKIPPED: svc100: no NodePort service with endpoints"),
            }
        }
        Err(e) => println!("SKIPPED: svc100: {e}"),
    }
    let mut group = c.benchmark_group("corpus node first packet (NodePort)");
    group.warm_up_time(Duration::from_secs(1));
    for (name, snap, ip, port) in &cases {
        let Some(node) = snap.nodes.first() else { continue };
        for (how, tables) in
            [("indexed", Arc::new(NodeTables::new(node))), ("naive", Arc::new(NodeTables::linear(node)))]
        {
            group.bench_function(format!("{name}/{how}"), |b| {
                b.iter(|| {
                    let mut model = NodeModel::shared(Arc::clone(&tables), NodeOptions::default());
                    let pkt = Packet::first(CLIENT, 40000, *ip, *port, Proto::TCP);
                    black_box(model.receive(pkt, &node.lan, false, &mut First).steps.len())
                })
            });
        }
    }
    group.finish();
}

fn bench_traverse(c: &mut Criterion) {
    let mut cases = Vec::new();
    for services in SIZES {
        match case(services) {
            Ok(k) => cases.push(k),
            Err(e) => println!("SKIPPED: traverse at {services} services: {e}"),
        }
    }

    for k in &cases {
        let Some(node) = k.snap.nodes.first() else { continue };
        // The tables are indexed once, as `natpath trace` does per run; each
        // iteration is one first packet through a node with empty conntrack.
        let indexed = Arc::new(NodeTables::new(node));
        let naive = Arc::new(NodeTables::linear(node));
        let mut group = c.benchmark_group("node first packet (NodePort, last service)");
        configure(&mut group, k.services);
        for (name, tables) in [("indexed", &indexed), ("naive rule by rule", &naive)] {
            group.bench_with_input(BenchmarkId::new(name, k.services), node, |b, node| {
                b.iter(|| {
                    let mut model = NodeModel::shared(Arc::clone(tables), NodeOptions::default());
                    let pkt = Packet::first(CLIENT, 40000, k.node_ip, k.node_port, Proto::TCP);
                    black_box(model.receive(pkt, &node.lan, false, &mut First).steps.len())
                })
            });
        }
        group.finish();
    }

    for k in &cases {
        let to = format!("{}:{}", k.node_ip, k.node_port);
        let probe = match walk::probe(&k.snap, "client", &to, Proto::TCP, 40000) {
            Ok(p) => p,
            Err(e) => {
                println!("SKIPPED: cluster trace at {} services: {e}", k.services);
                continue;
            }
        };
        let opts = TraceOptions { seed: Some(1), ..TraceOptions::default() };
        if let Err(e) = walk::trace(&k.snap, &probe, &opts) {
            println!("SKIPPED: cluster trace at {} services: {e}", k.services);
            continue;
        }
        let mut group = c.benchmark_group("cluster trace (client to NodePort, one branch)");
        configure(&mut group, k.services);
        group.bench_with_input(BenchmarkId::from_parameter(k.services), &probe, |b, probe| {
            b.iter(|| black_box(walk::trace(&k.snap, probe, &opts)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_corpus, bench_traverse);
criterion_main!(benches);
