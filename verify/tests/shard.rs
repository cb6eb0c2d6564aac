//! `natpath check --shard I/N` and `natpath merge`: for several N, on
//! corpus snapshots that hold, break and have nothing in scope, the merge
//! of every shard is the document and exit code of one unsharded run
//! (times aside); each shard validates against its schema; and merging the
//! wrong set of shards is bad input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod common;

use common::corpus;
use std::path::Path;
use std::process::Command;

fn natpath(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_natpath")).args(args).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// A check document without its times, which differ from run to run.
fn timeless(text: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
    for x in v["verdicts"].as_array_mut().unwrap() {
        let m = x.as_object_mut().unwrap();
        m.remove("encode_ms");
        m.remove("solve_ms");
    }
    v
}

fn validator(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas").join(name);
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn the_merge_of_every_shard_is_one_run() {
    let shard_schema = validator("natpath.shard.v1.json");
    let check_schema = validator("natpath.check.v1.json");
    let dir = std::env::temp_dir().join(format!("natpath-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut exits = Vec::new();
    for snap in ["seed-ipip-remote", "broken-no-mark-masq", "etp-local-no-endpoint", "kube-proxy-1.28"] {
        let path = corpus().join(snap);
        let path = path.to_str().unwrap();
        let (code, whole, _) = natpath(&["check", path, "--format", "json"]);
        exits.push(code);
        for n in [1usize, 2, 3, 5, 13] {
            let mut files = Vec::new();
            for i in 1..=n {
                let (_, out, err) = natpath(&["check", path, "--shard", &format!("{i}/{n}")]);
                let v: serde_json::Value =
                    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{snap} {i}/{n}: {e}: {err}"));
                assert!(shard_schema.is_valid(&v), "{snap} {i}/{n}: {out}");
                let f = dir.join(format!("{snap}-{i}-of-{n}.json"));
                std::fs::write(&f, out).unwrap();
                files.push(f.to_str().unwrap().to_string());
            }
            files.reverse();
            let mut args = vec!["merge"];
            args.extend(files.iter().map(String::as_str));
            let (merged_code, merged, err) = natpath(&args);
            assert_eq!(merged_code, code, "{snap} in {n}: {err}");
            assert!(check_schema.is_valid(&serde_json::from_str(&merged).unwrap()), "{merged}");
            assert_eq!(timeless(&merged), timeless(&whole), "{snap} in {n} shards");
        }
    }
    // The snapshots above hold, break an invariant, and (the last two) hold
    // with notes of parts that had nothing to check.
    assert!(exits.contains(&0) && exits.contains(&1), "{exits:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn merging_the_wrong_shards_is_bad_input() {
    let dir = std::env::temp_dir().join(format!("natpath-shards-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shard = |snap: &str, i: usize, n: usize| -> String {
        let p = corpus().join(snap);
        let (_, out, _) = natpath(&["check", p.to_str().unwrap(), "--shard", &format!("{i}/{n}")]);
        let f = dir.join(format!("{snap}-{i}-{n}.json"));
        std::fs::write(&f, out).unwrap();
        f.to_str().unwrap().to_string()
    };
    let (a1, a2, a3) =
        (shard("seed-ipip-remote", 1, 3), shard("seed-ipip-remote", 2, 3), shard("seed-ipip-remote", 3, 3));
    let other = shard("seed-ipip-local", 3, 3);
    let halves = shard("seed-ipip-remote", 2, 2);
    let not_json = dir.join("verdicts.json");
    std::fs::write(&not_json, "{\n  \"schema\": \"natpath.check/1\"\n}\n").unwrap();
    let not_json = not_json.to_str().unwrap();
    for (args, want) in [
        (vec![a1.as_str(), a2.as_str()], "shard 3/3 is missing"),
        (vec![a1.as_str(), a2.as_str(), a2.as_str(), a3.as_str()], "shard 2/3 is given twice"),
        (vec![a1.as_str(), a2.as_str(), other.as_str()], "another check than"),
        (vec![a1.as_str(), a2.as_str(), halves.as_str()], "cut into 2 shards"),
        (vec![not_json], "expected a `natpath.shard/1` document"),
    ] {
        let mut full = vec!["merge"];
        full.extend(args);
        let (code, out, err) = natpath(&full);
        assert_eq!((code, out.as_str()), (2, ""), "{full:?}: {err}");
        assert!(err.contains(want), "{full:?}: {err}");
    }
    for bad in ["0/3", "4/3", "1/0", "1/1001", "a/b", "2"] {
        let p = corpus().join("seed-ipip-remote");
        let (code, _, err) = natpath(&["check", p.to_str().unwrap(), "--shard", bad]);
        assert_eq!(code, 2, "--shard {bad}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// examples/k8s-indexed-job.yaml's command, run as Kubernetes runs it (one
/// shell per completion index, with JOB_COMPLETION_INDEX set), on a corpus
/// snapshot mounted where it expects one; then the merge it documents. And
/// examples/github-sharded-check.yml's matrix covers 1..SHARDS.
#[test]
fn the_examples_shard_and_merge_as_documented() {
    let yaml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/k8s-indexed-job.yaml"))
        .unwrap();
    let value = |key: &str| -> usize {
        yaml.lines().find_map(|l| l.trim().strip_prefix(key)?.trim().parse().ok()).unwrap_or_else(|| panic!("no {key}"))
    };
    let completions = value("completions:");
    assert_eq!(completions, value("parallelism:"));
    // The folded `args` scalar: the lines after `- >-` up to `resources:`.
    let start = yaml.find("- >-").unwrap() + 4;
    let end = yaml[start..].find("resources:").unwrap() + start;
    let command: String = yaml[start..end].split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(command.contains(&format!("/{completions}\"")), "{command}");
    let dir = std::env::temp_dir().join(format!("natpath-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snap = corpus().join("broken-no-mark-masq");
    let command = command.replace("/snapshot", snap.to_str().unwrap()).replace("/results", dir.to_str().unwrap());
    let bin = Path::new(env!("CARGO_BIN_EXE_natpath")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for i in 0..completions {
        let st = Command::new("sh")
            .args(["-c", &command])
            .env("PATH", &path)
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .status()
            .unwrap();
        assert!(st.success(), "index {i}: {command}");
    }
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path().display().to_string()).collect();
    files.sort();
    assert_eq!(files.len(), completions);
    let mut args = vec!["merge"];
    args.extend(files.iter().map(String::as_str));
    let (code, merged, err) = natpath(&args);
    let (whole_code, whole, _) = natpath(&["check", snap.to_str().unwrap(), "--format", "json"]);
    assert_eq!((code, timeless(&merged)), (whole_code, timeless(&whole)), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    let gh =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/github-sharded-check.yml"))
            .unwrap();
    let shards: usize = gh.lines().find_map(|l| l.trim().strip_prefix("SHARDS:")?.trim().parse().ok()).unwrap();
    let matrix = gh.lines().find_map(|l| l.trim().strip_prefix("index:")).unwrap();
    let want: Vec<String> = (1..=shards).map(|i| i.to_string()).collect();
    assert!(matrix.contains(&format!("[{}]", want.join(", "))), "{matrix}");
    assert!(gh.contains("natpath merge shard-*.json"));
}
