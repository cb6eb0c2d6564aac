//! Criterion benchmark of `natpath check`: the time to check each invariant
//! of the catalog on the seed's case B (`seed-ipip-remote`) and on the
//! largest corpus snapshot (by rule count), with the encoding (building the
//! constraints, replays included) and the solver (Z3's `check`) measured
//! separately: each benchmark runs whole checks and reports one phase's own
//! duration through `iter_custom`.
//!
//! A second group, `check at scale`, times whole single-invariant checks on
//! generated kube-proxy + Calico clusters ([`natpath_corpus::generate`],
//! seed 1, 3 nodes): 100 and 1,000 Services by default, or the sizes in
//! `NATPATH_BENCH_CHECK_SERVICES` (comma-separated): every invariant of the
//! catalog on one thread, then the whole catalog as `natpath check` runs it
//! (`check_all`, on every core).
#![expect(clippy::expect_used, reason = "a benchmark on a broken corpus should stop loudly")]

use criterion::{criterion_group, criterion_main, Criterion};
use natpath_corpus::{generate, write_snapshot, Spec};
use natpath_model::snapshot::{self, Snapshot};
use natpath_verify::invariants::{self, CheckOptions, NAMES};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

fn load(dir: &Path) -> Snapshot {
    snapshot::load(dir).expect("corpus snapshot loads")
}

/// The corpus snapshot with the most rules.
fn largest() -> PathBuf {
    let mut best: Option<(usize, PathBuf)> = None;
    for e in std::fs::read_dir(corpus()).expect("corpus/").flatten() {
        let p = e.path();
        if !p.join("cluster.toml").is_file() {
            continue;
        }
        let Ok(s) = snapshot::load(&p) else { continue };
        let rules: usize = s.nodes.iter().map(|n| n.ruleset.rule_count()).sum();
        if best.as_ref().is_none_or(|(r, _)| rules > *r) {
            best = Some((rules, p));
        }
    }
    best.map(|(_, p)| p).expect("a corpus snapshot")
}

fn bench_check(c: &mut Criterion) {
    let opts = CheckOptions::default();
    for dir in [corpus().join("seed-ipip-remote"), largest()] {
        let snap = load(&dir);
        let label = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let rules: usize = snap.nodes.iter().map(|n| n.ruleset.rule_count()).sum();
        let mut g = c.benchmark_group(format!("check/{label} ({rules} rules)"));
        g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
        for name in NAMES {
            g.bench_function(format!("{name}/encode"), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| invariants::check(&snap, name, &opts).map(|v| v.encode).unwrap_or_default())
                        .sum()
                })
            });
            // An invariant whose every query the encoding settled never
            // calls Z3: there is no solver time to measure.
            if invariants::check(&snap, name, &opts).is_some_and(|v| v.queries == 0) {
                println!("check/{label}/{name}/solve: no solver query (every query settled while encoding)");
                continue;
            }
            g.bench_function(format!("{name}/solve"), |b| {
                b.iter_custom(|iters| {
                    (0..iters).map(|_| invariants::check(&snap, name, &opts).map(|v| v.solve).unwrap_or_default()).sum()
                })
            });
        }
        g.finish();
    }
}

fn generated(services: usize) -> Snapshot {
    let dir = std::env::temp_dir().join(format!("natpath-check-bench-{}-{services}", std::process::id()));
    write_snapshot(&generate(&Spec::with_services(services)), &dir).expect("the generated snapshot is written");
    let snap = load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    snap
}

fn bench_check_scale(c: &mut Criterion) {
    let opts = CheckOptions::default();
    let sizes: Vec<usize> = std::env::var("NATPATH_BENCH_CHECK_SERVICES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for services in sizes {
        let snap = generated(services);
        let mut g = c.benchmark_group("check at scale");
        g.sample_size(10).warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_secs(1));
        for name in NAMES {
            g.bench_function(format!("{name}/{services}"), |b| {
                b.iter(|| {
                    let v = invariants::check(&snap, name, &opts).expect("a catalog invariant");
                    assert!(matches!(v.outcome, invariants::Outcome::Holds), "{name} holds on the generated cluster");
                })
            });
        }
        g.bench_function(format!("catalog/{services}"), |b| {
            b.iter(|| {
                let vs = invariants::check_all(&snap, &opts);
                assert_eq!(vs.len(), NAMES.len(), "every verdict is there");
                assert!(
                    vs.iter().all(|v| matches!(v.outcome, invariants::Outcome::Holds)),
                    "the catalog holds on the generated cluster"
                );
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench_check, bench_check_scale);
criterion_main!(benches);
