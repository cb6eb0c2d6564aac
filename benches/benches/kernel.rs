//! One probe on the real kernel against one trace of the same probe by the
//! model, measured in the same run: the blog's `curl 10.0.0.51:32220` on
//! `corpus/seed-ipip-remote` (the pod on the other node, over IPIP).
//!
//! The kernel side is the whole `kernel::run_with` for one probe: build the
//! namespaces, load the dumps, send the SYN, read counters and conntrack,
//! tear down. It needs root and network namespaces; without them the bench
//! prints SKIPPED and measures the model alone. The helper program must be
//! built first (`cargo build --release -p natpath-verify`), or named by
//! `NATPATH_KERNEL_HELPER`.

use criterion::{criterion_group, criterion_main, Criterion};
use natpath_model::ruleset::Proto;
use natpath_model::snapshot;
use natpath_model::walk::{self, TraceOptions};
use natpath_verify::kernel;
use std::path::{Path, PathBuf};

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/seed-ipip-remote")
}

fn helper() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATPATH_KERNEL_HELPER") {
        return Some(PathBuf::from(p));
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    ["release", "debug"].iter().map(|p| target.join(p).join("natpath")).find(|p| p.is_file())
}

fn bench(c: &mut Criterion) {
    let dir = snapshot_dir();
    let snap = match snapshot::load(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: {}: {e}", dir.display());
            return;
        }
    };
    let mut g = c.benchmark_group("kernel_vs_model/seed-ipip-remote client:10.0.0.51:32220/tcp");
    g.sample_size(10);
    let Ok(probe) = walk::probe(&snap, "client", "10.0.0.51:32220", Proto::TCP, 40000) else {
        eprintln!("SKIPPED: the probe is not valid for this snapshot");
        return;
    };
    g.bench_function("model trace", |b| b.iter(|| walk::trace(&snap, &probe, &TraceOptions::default())));
    let kprobe = match kernel::Probe::parse("client:10.0.0.51:32220/tcp") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    let opts = kernel::Options { helper: helper(), ..kernel::Options::default() };
    match kernel::run_with(&dir, std::slice::from_ref(&kprobe), &opts) {
        Ok(_) => {
            g.bench_function("kernel probe (setup, probe, teardown)", |b| {
                b.iter(|| kernel::run_with(&dir, std::slice::from_ref(&kprobe), &opts))
            });
        }
        Err(e) => eprintln!("SKIPPED kernel probe: {e}"),
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
