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
use natpath_corpus::{generate, one_service_changed, write_snapshot, GeneratedSnapshot, Spec};
use natpath_model::snapshot::{self, Snapshot};
use natpath_verify::invariants::{self, CheckOptions};
use natpath_verify::{diff, gate};
use std::time::Duration;

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
        let (_, changed) = one_service_changed(&gen).expect("a NodePort Service with endpoints");
        let before = load_generated(&gen, &format!("{n}-before"));
        let after = load_generated(&changed, &format!("{n}-after"));
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
