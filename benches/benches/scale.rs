//! Scale: natpath's iptables-save parser against the kernel's own
//! `iptables-restore --test` on kube-proxy + Calico nodes of 100, 1,000 and
//! 10,000 Services (about 5 endpoints each, 3 nodes), measured in the same run.
//!
//! The snapshots are generated once, outside the timed loops
//! ([`natpath_corpus::generate`], seed 1); both groups read node-1's
//! `iptables-save` and report bytes per second (`Throughput::Bytes`), so the
//! two rates compare directly. `iptables-restore --test` runs inside a
//! throwaway network namespace (with the node's ipsets restored first);
//! without root it is skipped with a visible `SKIPPED:` line. Sample sizes
//! are small for the big inputs so the whole bench takes a few minutes. At
//! the end a summary prints, per size, the file size and rule count, the
//! median of each measurement, their ratio, and the parser's peak resident
//! memory (`VmHWM` after resetting it, so it covers one parse of that size
//! plus what the process already held).
//!
//! Run: `cargo bench -p natpath-benches --bench scale`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use natpath_corpus::netns::{self, Netns};
use natpath_corpus::{generate, Spec};
use natpath_model::parse::iptables::{parse, Options};

const SIZES: [usize; 3] = [100, 1_000, 10_000];

struct Input {
    services: usize,
    text: String,
    rules: usize,
    file: PathBuf,
    ipsets: PathBuf,
    generated_in: Duration,
}

/// Medians gathered while criterion runs, for the summary.
static PARSE: Mutex<Vec<(usize, Duration)>> = Mutex::new(Vec::new());
static RESTORE: Mutex<Vec<(usize, Duration)>> = Mutex::new(Vec::new());
static PEAK: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());

fn record(into: &Mutex<Vec<(usize, Duration)>>, size: usize, took: Duration) {
    if let Ok(mut v) = into.lock() {
        v.push((size, took));
    }
}

fn median(from: &Mutex<Vec<(usize, Duration)>>, size: usize) -> Option<Duration> {
    let v = from.lock().ok()?;
    let mut d: Vec<Duration> = v.iter().filter(|(s, _)| *s == size).map(|(_, d)| *d).collect();
    d.sort();
    d.get(d.len() / 2).copied()
}

fn inputs(dir: &Path) -> Vec<Input> {
    let mut out = Vec::new();
    for services in SIZES {
        let start = Instant::now();
        let snap = generate(&Spec::with_services(services));
        let generated_in = start.elapsed();
        let Some(node) = snap.nodes.first() else { continue };
        let file = dir.join(format!("node-1-{services}.iptables-save"));
        let ipsets = dir.join(format!("node-1-{services}.ipset-save"));
        if let Err(e) = std::fs::write(&file, &node.iptables_save) {
            eprintln!("cannot write {}: {e}", file.display());
            continue;
        }
        if let Err(e) = std::fs::write(&ipsets, node.ipset_save.as_deref().unwrap_or("")) {
            eprintln!("cannot write {}: {e}", ipsets.display());
            continue;
        }
        out.push(Input { services, text: node.iptables_save.clone(), rules: node.rules, file, ipsets, generated_in });
    }
    out
}

/// Peak resident memory of this process in KiB, after `f`, with the
/// high-water mark reset before it (Linux `clear_refs` 5).
fn peak_kib_of(f: impl FnOnce()) -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    f();
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, services: usize) {
    group.sampling_mode(SamplingMode::Flat);
    if services >= 10_000 {
        group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    } else if services >= 1_000 {
        group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    } else {
        group.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    }
}

fn bench_scale(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("natpath-scale-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return;
    }
    let inputs = inputs(&dir);

    // Parse throughput.
    let parses = match inputs.first().map(|i| parse(&i.text, "bench", &Options::default())) {
        Some(Err(e)) => {
            println!("SKIPPED: parse: the parser rejects the generated dump: {e}");
            false
        }
        _ => true,
    };
    if parses {
        for input in &inputs {
            let mut group = c.benchmark_group("parse");
            configure(&mut group, input.services);
            group.throughput(Throughput::Bytes(input.text.len() as u64));
            group.bench_with_input(BenchmarkId::from_parameter(input.services), &input.text, |b, text| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let _ = black_box(parse(black_box(text), "bench", &Options::default()));
                    }
                    let took = start.elapsed();
                    record(&PARSE, input.services, took / iters.max(1) as u32);
                    took
                })
            });
            group.finish();
            if let Some(kib) = peak_kib_of(|| {
                let _ = black_box(parse(&input.text, "bench", &Options::default()));
            }) {
                if let Ok(mut p) = PEAK.lock() {
                    p.push((input.services, kib));
                }
            }
        }
    }

    // The kernel's own parser on the same files.
    match netns::unavailable() {
        Some(reason) => println!("SKIPPED: iptables-restore --test: {reason}"),
        None => {
            for input in &inputs {
                let ns = match Netns::create() {
                    Ok(ns) => ns,
                    Err(e) => {
                        println!("SKIPPED: iptables-restore --test: {e}");
                        break;
                    }
                };
                if let Err(e) = ns.ipset_restore(&input.ipsets) {
                    println!("SKIPPED: iptables-restore --test at {}: {e}", input.services);
                    continue;
                }
                if let Err(e) = ns.iptables_restore_test(&input.file) {
                    println!("SKIPPED: iptables-restore --test at {}: {e}", input.services);
                    continue;
                }
                let mut group = c.benchmark_group("iptables-restore --test");
                configure(&mut group, input.services);
                group.throughput(Throughput::Bytes(input.text.len() as u64));
                group.bench_with_input(BenchmarkId::from_parameter(input.services), &input.file, |b, file| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            // Only the restore is timed; spawning `ip netns exec` is included, as for any caller.
                            let took = ns.iptables_restore_test(file).unwrap_or_default();
                            record(&RESTORE, input.services, took);
                            total += took;
                        }
                        total
                    })
                });
                group.finish();
                drop(ns);
            }
        }
    }

    summary(&inputs);
    let _ = std::fs::remove_dir_all(&dir);
}

fn summary(inputs: &[Input]) {
    println!();
    println!("scale summary (node-1 of `generate(&Spec::with_services(N))`, seed 1, 3 nodes, ~5 endpoints/service)");
    println!(
        "{:>8} {:>10} {:>9} {:>10} {:>12} {:>12} {:>22} {:>9} {:>10}",
        "services", "MB", "rules", "generate", "parse", "parse MB/s", "iptables-restore -t", "ratio", "peak MiB"
    );
    for i in inputs {
        let mb = i.text.len() as f64 / 1e6;
        let parse = median(&PARSE, i.services);
        let restore = median(&RESTORE, i.services);
        let peak = PEAK.lock().ok().and_then(|p| p.iter().find(|(s, _)| *s == i.services).map(|(_, k)| *k));
        let fmt =
            |d: Option<Duration>| d.map(|d| format!("{:.3} s", d.as_secs_f64())).unwrap_or_else(|| "-".to_string());
        let rate = parse.map(|d| format!("{:.0}", mb / d.as_secs_f64().max(1e-9))).unwrap_or_else(|| "-".to_string());
        let ratio = match (parse, restore) {
            (Some(p), Some(r)) => format!("{:.1}x", r.as_secs_f64() / p.as_secs_f64().max(1e-9)),
            _ => "-".to_string(),
        };
        println!(
            "{:>8} {:>10.1} {:>9} {:>10} {:>12} {:>12} {:>22} {:>9} {:>10}",
            i.services,
            mb,
            i.rules,
            format!("{:.3} s", i.generated_in.as_secs_f64()),
            fmt(parse),
            rate,
            fmt(restore),
            ratio,
            peak.map(|k| format!("{:.0}", k as f64 / 1024.0)).unwrap_or_else(|| "-".to_string())
        );
    }
    println!("(generate: the whole 3-node snapshot; ratio: iptables-restore --test time over parse time)");
}

criterion_group!(benches, bench_scale);
criterion_main!(benches);
