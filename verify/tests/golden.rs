#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Golden tests: the parse summary and the traces of every probe of every
//! corpus snapshot are pinned in `corpus/<snapshot>/expected/` and reviewed
//! like code. Run with `NATPATH_BLESS=1` to rewrite them after a reviewed
//! change.

use natpath_model::ruleset::Proto;
use natpath_model::snapshot;
use natpath_model::walk::{self, TraceOptions};
use natpath_verify::report;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

/// Snapshot directories of the corpus (those with a cluster.toml).
fn snapshots() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("cluster.toml").is_file())
        .collect();
    v.sort();
    v
}

/// The probes file: `FROM:IP:PORT/PROTO` per line, `#` comments.
pub fn probes(snap: &Path) -> Vec<(String, String, Proto)> {
    let Ok(text) = std::fs::read_to_string(snap.join("probes")) else { return Vec::new() };
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (from, rest) = l.split_once(':').expect("FROM:IP:PORT/PROTO");
            let (to, proto) = rest.split_once('/').unwrap_or((rest, "tcp"));
            let proto = match proto {
                "udp" => Proto::UDP,
                "sctp" => Proto::SCTP,
                _ => Proto::TCP,
            };
            (from.to_string(), to.to_string(), proto)
        })
        .collect()
}

#[track_caller]
fn golden(path: &Path, actual: &str) {
    if std::env::var_os("NATPATH_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("missing golden file {} (run with NATPATH_BLESS=1)", path.display()));
    if expected != actual {
        panic!(
            "{} differs from the golden file; diff it with NATPATH_BLESS=1 and git diff\n--- actual ---\n{actual}",
            path.display()
        );
    }
}

#[test]
fn summaries_are_pinned() {
    let snaps = snapshots();
    assert!(snaps.len() >= 2, "the corpus has the two seed snapshots at least");
    for snap in snaps {
        let s = snapshot::load(&snap).unwrap_or_else(|e| panic!("{}: {e}", snap.display()));
        let name = snap.file_name().expect("name").to_string_lossy().to_string();
        let summary = report::summary::snapshot(&s, &format!("corpus/{name}"));
        golden(&snap.join("expected/summary.txt"), &report::summary::text(&summary));
    }
}

#[test]
fn traces_are_pinned() {
    let mut count = 0;
    for snap in snapshots() {
        let s = snapshot::load(&snap).unwrap_or_else(|e| panic!("{}: {e}", snap.display()));
        for (from, to, proto) in probes(&snap) {
            let probe = walk::probe(&s, &from, &to, proto, 40000).expect("probe is valid");
            let t = walk::trace(&s, &probe, &TraceOptions::default()).expect("trace runs");
            let stem = format!("{}_{}_{}", from, to.replace(':', "_"), natpath_model::packet::proto_name(proto));
            // A refusal names its rule's dump by the path it was read from:
            // pinned relative to the repository, as `corpus/...`.
            let here = format!("{}/", corpus().display());
            let text = report::text::trace(&t).replace(&here, "corpus/");
            golden(&snap.join(format!("expected/trace/{stem}.txt")), &text);
            let json = (serde_json::to_string_pretty(&t).expect("json") + "\n").replace(&here, "corpus/");
            golden(&snap.join(format!("expected/trace/{stem}.json")), &json);
            count += 1;
        }
    }
    assert!(count >= 2, "at least the seed probes are pinned, found {count}");
}
