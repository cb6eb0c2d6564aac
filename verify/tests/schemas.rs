//! Every JSON output names its schema, and validates against the JSON
//! Schema file of that name in `schemas/`: `parse`, `trace` (every probe of
//! every corpus snapshot) and `check` of every corpus snapshot, single
//! dumps of each kind, `diff` and `gate` of every pair of `corpus/pairs`
//! (and a gate with a contracts file, and one with unknown entries), and
//! `kernel-check` where this machine can run it.
//! A schema that drifts from the code fails here, and so does a schema
//! that accepts anything (each is checked to refuse a broken document).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn snapshots() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("corpus"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("cluster.toml").is_file())
        .collect();
    v.sort();
    v
}

/// The validator for a schema name such as `natpath.trace/1`
/// (`schemas/natpath.trace.v1.json`).
fn validator(name: &str) -> jsonschema::Validator {
    let (base, version) = name.split_once('/').unwrap();
    let path = root().join("schemas").join(format!("{base}.v{version}.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{}", path.display());
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Run natpath and return its JSON output (exit codes 0, 1 and 3 all print a document).
#[track_caller]
fn json_of(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_natpath")).args(args).output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(matches!(code, 0 | 1 | 3), "natpath {args:?} exited {code}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("natpath {args:?}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Validate `doc` against the schema it names; returns that name.
#[track_caller]
fn valid(what: &str, doc: &Value) -> String {
    let name = doc["schema"].as_str().unwrap_or_else(|| panic!("{what}: no `schema` field")).to_string();
    let v = validator(&name);
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{what} does not match {name}:\n{}", errors.join("\n"));
    name
}

fn probes(snap: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(snap.join("probes")).unwrap_or_default();
    text.lines().map(|l| l.split('#').next().unwrap_or("").trim().to_string()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn parse_check_and_trace_of_every_corpus_snapshot_match_their_schemas() {
    let snaps = snapshots();
    assert!(snaps.len() >= 8, "the corpus lost snapshots: {snaps:?}");
    let mut traces = 0;
    for snap in &snaps {
        let s = snap.to_str().unwrap();
        assert_eq!(valid(&format!("parse {s}"), &json_of(&["parse", s, "--format", "json"])), "natpath.parse/1");
        assert_eq!(valid(&format!("check {s}"), &json_of(&["check", s, "--format", "json"])), "natpath.check/1");
        for p in probes(snap) {
            let (from, rest) = p.split_once(':').unwrap();
            let (to, proto) = rest.split_once('/').unwrap_or((rest, "tcp"));
            let doc = json_of(&["trace", s, "--from", from, "--to", to, "--proto", proto, "--format", "json"]);
            assert_eq!(valid(&format!("trace {s} {p}"), &doc), "natpath.trace/1");
            traces += 1;
        }
    }
    assert!(traces >= 10, "only {traces} probes in the corpus");
}

#[test]
fn a_violation_and_its_counterexample_match_the_check_schema() {
    let s = root().join("corpus/broken-no-mark-masq");
    let doc = json_of(&["check", s.to_str().unwrap(), "--format", "json"]);
    valid("check broken-no-mark-masq", &doc);
    let violated: Vec<&Value> =
        doc["verdicts"].as_array().unwrap().iter().filter(|v| v["verdict"] == "violated").collect();
    assert!(!violated.is_empty(), "broken-no-mark-masq violates nothing: {doc}");
    assert!(violated.iter().all(|v| v["counterexample"].is_object()));
}

#[test]
fn single_dumps_of_each_kind_match_the_parse_schema() {
    let node = root().join("corpus/seed-ipip-remote/nodes/node1");
    for f in ["iptables-save", "ipset-save", "ip-route", "ip-addr", "ip-rule", "sysctl"] {
        let p = node.join(f);
        if p.is_file() {
            valid(f, &json_of(&["parse", p.to_str().unwrap(), "--format", "json"]));
        }
    }
    let reference = root().join("corpus/kube-proxy-reference/svc100.node.iptables-save");
    valid("svc100", &json_of(&["parse", reference.to_str().unwrap(), "--format", "json"]));
}

/// `doc` is valid for `name`, and the schema refuses it without `field`,
/// with an unknown top-level field, and under another schema name.
#[track_caller]
fn refuses_broken_documents(doc: Value, name: &str, field: &str) {
    let v = validator(name);
    assert!(v.is_valid(&doc));
    let mut missing = doc.clone();
    missing.as_object_mut().unwrap().remove(field);
    assert!(!v.is_valid(&missing), "{name} accepts a document without `{field}`");
    let mut extra = doc.clone();
    extra.as_object_mut().unwrap().insert("surprise".into(), Value::Bool(true));
    assert!(!v.is_valid(&extra), "{name} accepts an unknown top-level field");
    let mut renamed = doc;
    renamed["schema"] = Value::String(format!("{name}x"));
    assert!(!v.is_valid(&renamed), "{name} accepts another schema name");
}

#[test]
fn the_schemas_refuse_a_broken_document() {
    let s = root().join("corpus/seed-ipip-remote");
    let s = s.to_str().unwrap();
    let trace = json_of(&["trace", s, "--from", "client", "--to", "10.0.0.51:32220", "--format", "json"]);
    let check = json_of(&["check", s, "--format", "json"]);
    let parse = json_of(&["parse", s, "--format", "json"]);
    for (doc, name, field) in [
        (trace, "natpath.trace/1", "branches"),
        (check, "natpath.check/1", "verdicts"),
        (parse, "natpath.parse/1", "nodes"),
    ] {
        refuses_broken_documents(doc, name, field);
    }
}

#[test]
fn kernel_check_json_matches_its_schema_where_it_can_run() {
    let s = root().join("corpus/seed-ipip-remote");
    let out = Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(["kernel-check", s.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    if out.status.code() == Some(3) && out.stdout.is_empty() {
        println!("SKIPPED: kernel-check cannot run here: {}", String::from_utf8_lossy(&out.stderr).trim());
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(valid("kernel-check seed-ipip-remote", &doc), "natpath.kernel-check/1");
}

/// The pairs of `corpus/pairs/*/pair.toml`: name, BEFORE and AFTER (paths
/// relative to the pair's directory).
fn pairs() -> Vec<(String, PathBuf, PathBuf)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(root().join("corpus/pairs")).unwrap() {
        let dir = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("pair.toml")) else { continue };
        let t: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let side = |k: &str| dir.join(t[k].as_str().unwrap_or_else(|| panic!("{}: no `{k}`", dir.display())));
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        v.push((name, side("before"), side("after")));
    }
    v.sort();
    v
}

#[test]
fn diff_and_gate_of_every_pair_match_their_schemas() {
    let pairs = pairs();
    assert!(pairs.len() >= 7, "corpus/pairs lost pairs: {pairs:?}");
    for (name, before, after) in &pairs {
        let (b, a) = (before.to_str().unwrap(), after.to_str().unwrap());
        let diff = json_of(&["diff", b, a, "--format", "json"]);
        assert_eq!(valid(&format!("diff {name}"), &diff), "natpath.diff/1");
        // With pods and nodes as senders: the cluster-ip and pod-to-pod entries.
        let pods = json_of(&["diff", b, a, "--pods", "--format", "json"]);
        assert_eq!(valid(&format!("diff --pods {name}"), &pods), "natpath.diff/1");
        let gate = json_of(&["gate", b, a, "--format", "json"]);
        assert_eq!(valid(&format!("gate {name}"), &gate), "natpath.gate/1");
        assert_eq!(gate["changes"].as_array().unwrap().len(), gate["diff"]["changes"].as_array().unwrap().len());
    }
}

#[test]
fn a_gate_with_contracts_and_gates_with_unknowns_match_the_gate_schema() {
    let (b, a) = (root().join("corpus/seed-ipip-remote"), root().join("corpus/broken-no-mark-masq"));
    let (b, a) = (b.to_str().unwrap(), a.to_str().unwrap());
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/contracts.toml");
    let doc = json_of(&["gate", b, a, "--contracts", contracts.to_str().unwrap(), "--format", "json"]);
    valid("gate with contracts", &doc);
    assert_eq!(doc["contracts_file"], contracts.to_str().unwrap());
    let verdicts: Vec<&str> =
        doc["contracts"].as_array().unwrap().iter().map(|c| c["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["holds", "violated"]);
    assert!(doc["changes"][0]["allowed_by"].is_u64(), "{doc}");
    let strict = json_of(&["gate", b, a, "--strict", "--allow-changes", "--format", "json"]);
    valid("gate --strict --allow-changes", &strict);
    // A query bound too short for the solver: unknown invariants and diff
    // entries (how many depends on the machine; each must be well-formed).
    for t in ["0.0001", "0.01"] {
        let doc =
            json_of(&["gate", b, a, "--timeout", t, "--contracts", contracts.to_str().unwrap(), "--format", "json"]);
        valid(&format!("gate --timeout {t}"), &doc);
        let doc = json_of(&["diff", b, a, "--timeout", t, "--format", "json"]);
        valid(&format!("diff --timeout {t}"), &doc);
    }
}

/// Two snapshots whose dumps hold only iptables-nft-save's legacy-tables
/// warning: `diff` and `gate` write `nothing_in_scope`, and the gate's
/// verdict is unknown (exit 3), never a pass with exit 0.
#[test]
fn diff_and_gate_with_nothing_in_scope_match_their_schemas() {
    let dir = std::env::temp_dir().join(format!("natpath-schemas-{}-empty", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = root().join("corpus/seed-ipip-remote");
    std::fs::create_dir_all(dir.join("nodes")).unwrap();
    std::fs::copy(src.join("cluster.toml"), dir.join("cluster.toml")).unwrap();
    for node in ["node1", "node2"] {
        std::fs::create_dir_all(dir.join("nodes").join(node)).unwrap();
        for f in ["ip-addr", "ip-route", "sysctl"] {
            std::fs::copy(src.join("nodes").join(node).join(f), dir.join("nodes").join(node).join(f)).unwrap();
        }
        std::fs::write(
            dir.join("nodes").join(node).join("iptables-save"),
            "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n",
        )
        .unwrap();
    }
    let d = dir.to_str().unwrap();
    let diff = json_of(&["diff", d, d, "--format", "json"]);
    assert_eq!(valid("diff of nothing", &diff), "natpath.diff/1");
    assert!(diff["nothing_in_scope"].is_string(), "{diff}");
    let gate = json_of(&["gate", d, d, "--format", "json"]);
    assert_eq!(valid("gate of nothing", &gate), "natpath.gate/1");
    assert_eq!((gate["verdict"].as_str(), gate["exit"].as_i64()), (Some("unknown"), Some(3)), "{gate}");
    let mut x = gate;
    x["verdict"] = Value::from("pass");
    assert!(!validator("natpath.gate/1").is_valid(&x), "a pass that exits 3 passes");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_diff_and_gate_schemas_refuse_a_broken_document() {
    let (b, a) = (root().join("corpus/seed-ipip-remote"), root().join("corpus/broken-no-mark-masq"));
    let (b, a) = (b.to_str().unwrap(), a.to_str().unwrap());
    let diff = json_of(&["diff", b, a, "--format", "json"]);
    let gate = json_of(&["gate", b, a, "--format", "json"]);
    for (doc, name, field) in
        [(diff.clone(), "natpath.diff/1", "changes"), (gate.clone(), "natpath.gate/1", "invariants")]
    {
        refuses_broken_documents(doc, name, field);
    }
    // Deeper: a NodePort change without its port, a rule without a line,
    // a failing gate that exits 0, an unknown invariant with rules.
    let d = validator("natpath.diff/1");
    let mut x = diff.clone();
    x["changes"][0].as_object_mut().unwrap().remove("port");
    assert!(!d.is_valid(&x), "a nodeport change without `port` passes");
    let mut x = diff;
    x["changes"][0]["examples"][0]["rules"][0]["line"] = Value::from(0);
    assert!(!d.is_valid(&x), "a rule at line 0 passes");
    let g = validator("natpath.gate/1");
    let mut x = gate.clone();
    x["exit"] = Value::from(0);
    assert!(!g.is_valid(&x), "a failing gate with exit 0 passes");
    let mut x = gate.clone();
    x["diff"]["changes"][0]["entry"] = Value::from("other-port");
    assert!(!g.is_valid(&x), "an other-port change with a service passes");
    let mut x = gate;
    let i = x["invariants"].as_array().unwrap().iter().position(|i| i["after"] == "violated").unwrap();
    x["invariants"][i]["after"] = Value::from("unknown");
    assert!(!g.is_valid(&x), "an unknown invariant that fails the gate with rules passes");
}
