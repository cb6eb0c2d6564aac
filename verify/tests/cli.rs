//! The `natpath` command line as a user meets it: exit codes and exact
//! messages for bad input, and the outputs of `parse` and `trace`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(name: &str) -> String {
    format!("{}/../corpus/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Run natpath; returns (exit code, stdout, stderr).
#[track_caller]
fn natpath(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_natpath")).args(args).output().expect("natpath runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of a corpus snapshot in a fresh temporary directory.
fn copy_snapshot(name: &str, tag: &str) -> PathBuf {
    let dst = std::env::temp_dir().join(format!("natpath-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    copy_dir(Path::new(&corpus(name)), &dst);
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

#[test]
fn trace_unknown_from_names_what_exists() {
    let (code, _, err) =
        natpath(&["trace", &corpus("seed-ipip-remote"), "--from", "laptop", "--to", "10.0.0.51:32220"]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "natpath: unknown `--from` `laptop`; the snapshot has host `client`, pod `default/nginx-854f5d4bbd-x7k2p`, node `node1`, node `node2`"
    );
}

#[test]
fn trace_destination_nobody_owns() {
    let (code, _, err) = natpath(&["trace", &corpus("seed-ipip-remote"), "--from", "client", "--to", "10.9.9.9:80"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("natpath: nobody owns 10.9.9.9: it is no node's, pod's or host's address and no service IP; addresses that exist: 10.0.0.51 (node1 ens192), 192.168.231.64 (node1 tunl0), 10.0.0.52 (node2 ens192)"), "{err}");
}

#[test]
fn trace_port_out_of_range() {
    for (to, msg) in [
        ("10.0.0.51:0", "natpath: port 0 is outside 1-65535"),
        ("10.0.0.51:70000", "natpath: port 70000 is outside 1-65535"),
        ("10.0.0.51:http", "natpath: expected a port (1-65535) in `--to`, found `http`"),
        ("10.0.0.51", "natpath: expected `IP:PORT` after `--to`, found `10.0.0.51`"),
    ] {
        let (code, _, err) = natpath(&["trace", &corpus("seed-ipip-remote"), "--from", "client", "--to", to]);
        assert_eq!((code, err.trim()), (2, msg), "--to {to}");
    }
    let (code, _, err) =
        natpath(&["trace", &corpus("seed-ipip-remote"), "--from", "client", "--to", "10.0.0.51:32220", "--sport", "0"]);
    assert_eq!((code, err.trim()), (2, "natpath: expected a port (1-65535) after `--sport`, found `0`"));
}

#[test]
fn nodes_that_disagree_are_bad_input() {
    let dir = copy_snapshot("seed-ipip-remote", "disagree");
    let routes = dir.join("nodes/node1/ip-route");
    let text = std::fs::read_to_string(&routes).unwrap().replace("via 10.0.0.52 dev tunl0", "via 10.0.0.99 dev tunl0");
    std::fs::write(&routes, text).unwrap();
    let (code, _, err) = natpath(&["trace", dir.to_str().unwrap(), "--from", "client", "--to", "10.0.0.51:32220"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 2);
    assert!(
        err.contains("nodes/node1/ip-route:4: route 192.168.233.128/26 via 10.0.0.99 dev tunl0 on node1: no node has 10.0.0.99; nodes: node1 (ens192 10.0.0.51, tunl0 192.168.231.64); node2 (ens192 10.0.0.52, tunl0 192.168.233.128)"),
        "{err}"
    );
}

#[test]
fn trace_json_follows_the_contract() {
    let (code, out, err) = natpath(&[
        "trace",
        &corpus("multi-endpoint"),
        "--from",
        "client",
        "--to",
        "10.0.0.51:32220",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], "natpath.trace/1");
    assert_eq!(v["probe"]["from"], "client");
    assert_eq!(v["probe"]["proto"], "tcp");
    let branches = v["branches"].as_array().unwrap();
    assert_eq!(branches.len(), 2);
    for b in branches {
        assert_eq!(b["probability"], "1/2");
        assert_eq!(b["outcome"], "delivered");
        assert_eq!(b["reply"]["seen_by_client"]["src"], "10.0.0.51:32220");
        assert_eq!(b["sport_random"], true);
        let first = &b["steps"][0];
        assert_eq!(first["node"], "node1");
        assert_eq!(first["packet"], "forward");
        assert_eq!(first["hook"], "PREROUTING");
        assert_eq!(first["table"], "raw");
        assert_eq!(first["rule"], 1);
    }
    let pods: Vec<&str> = branches.iter().map(|b| b["delivered_to"]["address"].as_str().unwrap()).collect();
    assert!(pods.contains(&"192.168.231.70") && pods.contains(&"192.168.233.136"), "{pods:?}");
}

#[test]
fn trace_with_a_seed_follows_one_branch() {
    let (code, out, _) = natpath(&[
        "trace",
        &corpus("multi-endpoint"),
        "--from",
        "client",
        "--to",
        "10.0.0.51:32220",
        "--seed",
        "7",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["branches"].as_array().unwrap().len(), 1);
}

#[test]
fn trace_dot_is_a_digraph() {
    let (code, out, _) = natpath(&[
        "trace",
        &corpus("seed-ipip-remote"),
        "--from",
        "client",
        "--to",
        "10.0.0.51:32220",
        "--format",
        "dot",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("digraph natpath {"));
    assert!(out.contains("KUBE-POSTROUTING #3\\nMASQUERADE (source port chosen at random)"), "{out}");
}

#[test]
fn parse_reads_single_dumps_and_names_formats_it_does_not_read() {
    let (code, out, _) = natpath(&["parse", &corpus("kube-proxy-reference/svc100.node.iptables-save")]);
    assert_eq!(code, 0);
    assert!(out.starts_with("iptables "), "{out}");
    let (code, _, err) =
        natpath(&["parse", &corpus("public/notes-calico-ipip-routes/worker1-c1_route-n_calico-ipip.txt")]);
    assert_eq!(code, 2);
    assert!(err.contains("`route -n`"), "{err}");
}

#[test]
fn parse_json_summary_of_a_snapshot() {
    let (code, out, _) = natpath(&["parse", &corpus("seed-ipip-remote"), "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], "natpath.parse/1");
    let node1 = &v["nodes"][0];
    assert_eq!(node1["name"], "node1");
    let nginx = node1["services"].as_array().unwrap().iter().find(|s| s["name"] == "default/nginx:8080-80").unwrap();
    assert_eq!(nginx["node_port"], 32220);
    assert_eq!(nginx["endpoints"][0], "192.168.233.136:80");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(natpath(&[]).0, 2);
    assert_eq!(natpath(&["frobnicate"]).0, 2);
    assert_eq!(natpath(&["trace", &corpus("seed-ipip-remote")]).0, 2);
    let (code, _, err) = natpath(&["parse", "/nonexistent/natpath"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("natpath: /nonexistent/natpath: cannot read"), "{err}");
}
