//! Criterion benchmark of `natpath diff` and `natpath gate` on a
//! one-Service change (snapshots loaded, as the library takes them): a
//! generated kube-proxy + Calico cluster ([`natpath_corpus::generate`],
//! seed 1, 3 nodes; 100 and 1,000 Services by default, or the sizes in
//! `NATPATH_BENCH_GATE_SERVICES`) against a copy in which the first
//! NodePort Service's endpoints have another target port on every node.
//! The baseline, measured in the same run, is the whole-catalog check of
//! the BEFORE snapshot (`check_all`, as `natpath check` runs it).
//!
//! Run: `cargo bench -p natpath-benches --bench gate`.
#![expect(clippy::expect_used, reason = "a benchmark on a broken generator should stop loudly")]

use criterion::{criterion_group, criterion_main, Criterion};
use natpath_corpus::{generate, write_snapshot, GeneratedSnapshot, Spec};
use natpath_model::snapshot::{self, Snapshot};
use natpath_verify::invariants::{self, CheckOptions};
use natpath_verify::{diff, gate};
use std::time::Duration;

/// The first NodePort Service's endpoint chains (`KUBE-SEP-*`), found
/// through `KUBE-NODEPORTS` → `KUBE-EXT-*` → `KUBE-SVC-*`.
fn first_nodeport_endpoints(save: &str) -> Vec<String> {
    let target = |line: &str| line.rsplit_once(" -j ").map(|(_, t)| t.trim().to_string());
    for np in save.lines().filter(|l| l.starts_with("-A KUBE-NODEPORTS -p tcp") && l.contains("-j KUBE-EXT-")) {
        let Some(ext) = target(np) else { continue };
        let Some(svc) = save
            .lines()
            .filter(|l| l.starts_with(&format!("-A {ext} ")))
            .filter_map(target)
            .find(|t| t.starts_with("KUBE-SVC-"))
        else {
            continue;
        };
        let seps: Vec<String> = save
            .lines()
            .filter(|l| l.starts_with(&format!("-A {svc} ")))
            .filter_map(target)
            .filter(|t| t.starts_with("KUBE-SEP-"))
            .collect();
        if !seps.is_empty() {
            return seps;
        }
    }
    Vec::new()
}

/// `snap` with the DNAT port of `seps` one higher on every node.
fn changed(snap: &GeneratedSnapshot, seps: &[String]) -> GeneratedSnapshot {
    let mut out = snap.clone();
    for n in &mut out.nodes {
        let lines: Vec<String> = n
            .iptables_save
            .lines()
            .map(|l| {
                let ours = seps.iter().any(|s| l.starts_with(&format!("-A {s} ")));
                match (ours, l.rsplit_once(':')) {
                    (true, Some((head, port))) if l.contains("-j DNAT") => {
                        let p: u16 = port.trim().parse().expect("a DNAT port");
                        format!("{head}:{}", p.wrapping_add(1))
                    }
                    _ => l.to_string(),
                }
            })
            .collect();
        n.iptables_save = lines.join("\n") + "\n";
    }
    out
}

fn load_generated(g: &GeneratedSnapshot, tag: &str) -> Snapshot {
    let dir = std::env::temp_dir().join(format!("natpath-bench-gate-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_snapshot(g, &dir).expect("write the snapshot");
    let s = snapshot::load(&dir).expect("a generated snapshot loads");
    let _ = std::fs::remove_dir_all(&dir);
    s
}

fn sizes() -> Vec<usize> {
    std::env::var("NATPATH_BENCH_GATE_SERVICES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000])
}

fn bench_gate(c: &mut Criterion) {
    let opts = CheckOptions::default();
    for n in sizes() {
        let gen = generate(&Spec::with_services(n));
        let seps = first_nodeport_endpoints(&gen.nodes.first().expect("a node").iptables_save);
        assert!(!seps.is_empty(), "no NodePort Service with endpoints at {n}");
        let before = load_generated(&gen, &format!("{n}-before"));
        let after = load_generated(&changed(&gen, &seps), &format!("{n}-after"));
        let d = diff::diff(&before, &after, "before", "after", &opts, &|_, _, _| {}).expect("comparable");
        assert_eq!(d.changes.len(), 1, "the one-Service change at {n} is one change");
        let mut g = c.benchmark_group(format!("gate/{n} Services, one Service changed"));
        g.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(5));
        g.bench_function("diff", |b| {
            b.iter(|| diff::diff(&before, &after, "before", "after", &opts, &|_, _, _| {}).expect("comparable"))
        });
        let gopts = gate::GateOptions { check: opts, ..gate::GateOptions::default() };
        g.bench_function("gate", |b| {
            b.iter(|| {
                gate::gate(&before, &after, ("before", "after"), None, &gopts, &|_, _, _| {}).expect("comparable")
            })
        });
        g.bench_function("check (baseline: the whole catalog of BEFORE)", |b| {
            b.iter(|| invariants::check_all(&before, &opts))
        });
        g.finish();
    }
}

criterion_group!(benches, bench_gate);
criterion_main!(benches);
