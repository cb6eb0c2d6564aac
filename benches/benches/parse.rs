//! Parse (and print) throughput of real iptables dumps, in bytes per second.
//!
//! Inputs, read from the repository's `corpus/`: kube-proxy's own iptables-save of
//! 100 Services (`svc100.node.iptables-save`, 370 KB) and the largest real
//! dump of the corpus, the TUM chair firewall (5,556 rules, 446 KB). The TUM
//! dump anonymised its MAC addresses as `XX:XX:XX:XX:XX:XX`, which
//! iptables-restore (and natpath) refuse, so the bench replaces them with
//! `00:00:00:00:00:00` (same length) before timing. When a file is
//! missing the bench says so and measures nothing.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use natpath_model::parse::iptables::{parse, Options};
use natpath_model::print::iptables_save;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

/// `(name, text)` of every input that exists and parses.
fn inputs() -> Vec<(&'static str, String)> {
    let files = [
        ("svc100-iptables-save", "kube-proxy-reference/svc100.node.iptables-save"),
        ("tum-i8-chair-5556-rules", "public/research-net-network/tum-i8-chair_iptables-save-2016-06-27.rules"),
    ];
    let mut out = Vec::new();
    for (name, rel) in files {
        let path = corpus().join(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = text.replace("XX:XX:XX:XX:XX:XX", "00:00:00:00:00:00");
                match parse(&text, rel, &Options::default()) {
                    Ok(_) => out.push((name, text)),
                    Err(e) => eprintln!("skipping {rel}: it does not parse: {e}"),
                }
            }
            Err(e) => eprintln!("skipping {}: {e}", path.display()),
        }
    }
    out
}

fn bench_parse(c: &mut Criterion) {
    let inputs = inputs();
    let mut group = c.benchmark_group("parse");
    for (name, text) in &inputs {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(*name, |b| b.iter(|| parse(black_box(text), "bench", &Options::default())));
    }
    group.finish();
    let mut group = c.benchmark_group("print");
    for (name, text) in &inputs {
        let Ok(rs) = parse(text, "bench", &Options::default()) else { continue };
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(*name, |b| b.iter(|| iptables_save(black_box(&rs))));
    }
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
