//! The `natpath` command line as a user meets it: exit codes and exact
//! messages for bad input, and the outputs of `parse` and `trace`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::copy_dir;
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(name: &str) -> String {
    format!("{}/../corpus/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Run natpath; returns (exit code, stdout, stderr).
#[track_caller]
fn natpath(args: &[&str]) -> (i32, String, String) {
    // No terminal width to wrap help to (it wraps at 100), no NO_COLOR from
    // the environment: the outputs are the same on every machine.
    let out = Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(args)
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR")
        .output()
        .expect("natpath runs");
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

/// Issue 13: `kernel-check` reads the snapshot with the model's loader
/// before anything else, `--kernel-only` too, so that bad input is exit 2
/// at its file and line and no namespace is ever built for it (the lab's
/// own reader would fail half-way, with iptables-restore's words).
#[test]
fn kernel_check_refuses_bad_input_before_building_anything() {
    let dir = copy_snapshot("seed-ipip-remote", "kc-bad");
    let toml = std::fs::read_to_string(dir.join("cluster.toml")).unwrap();
    std::fs::write(dir.join("cluster.toml"), toml.replacen("10.0.0.53/24", "10.0.0.51/24", 1)).unwrap();
    let d = dir.to_str().unwrap();
    for extra in [None, Some("--kernel-only")] {
        let mut args = vec!["kernel-check", d, "--probe", "client:10.0.0.51:32220/tcp"];
        args.extend(extra);
        let (code, out, err) = natpath(&args);
        assert_eq!(code, 2, "{extra:?}: {out}{err}");
        assert!(
            err.contains("cluster.toml:13:11: host `client` has the address 10.0.0.51 of node `node1`"),
            "{extra:?}: {err}"
        );
        assert!(!err.contains("namespace") && out.is_empty(), "{extra:?}: {out}{err}");
    }
    // A named pipe in place of a dump is refused, not waited on.
    std::fs::write(dir.join("cluster.toml"), toml).unwrap();
    let dump = dir.join("nodes/node2/iptables-save");
    std::fs::remove_file(&dump).unwrap();
    if Command::new("mkfifo").arg(&dump).status().is_ok_and(|s| s.success()) {
        let (code, _, err) = natpath(&["kernel-check", d, "--kernel-only", "--probe", "client:10.0.0.51:32220/tcp"]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(
                "nodes/node2/iptables-save:1:1: cannot read the file: expected a regular file, found a named pipe"
            ),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
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
    assert_eq!(code, 2);
    assert!(err.starts_with("error: invalid value '0' for '--sport <PORT>': 0 is not in 1..=65535"), "{err}");
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

// ---------------------------------------------------------------------------
// The command line's definition: help pinned, version, completions, man.

/// Compare with the pinned file under `verify/tests/cli/`, or rewrite it
/// with `NATPATH_BLESS=1`.
#[track_caller]
fn pinned(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli").join(name);
    if std::env::var_os("NATPATH_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing pinned file {} (run with NATPATH_BLESS=1)", path.display()));
    assert_eq!(expected, actual, "{} changed; review it and rewrite it with NATPATH_BLESS=1", path.display());
}

#[test]
fn help_of_every_subcommand_is_pinned() {
    for (file, args) in [
        ("natpath.help", vec!["--help"]),
        ("natpath.h", vec!["-h"]),
        ("parse.help", vec!["parse", "--help"]),
        ("trace.help", vec!["trace", "--help"]),
        ("check.help", vec!["check", "--help"]),
        ("kernel-check.help", vec!["kernel-check", "--help"]),
        ("generate.help", vec!["generate", "--help"]),
        ("collect.help", vec!["collect", "--help"]),
        ("collect-node.help", vec!["collect", "node", "--help"]),
        ("collect-cluster.help", vec!["collect", "cluster", "--help"]),
        ("completions.help", vec!["completions", "--help"]),
        ("man.help", vec!["man", "--help"]),
    ] {
        let (code, out, err) = natpath(&args);
        assert_eq!(code, 0, "natpath {args:?}: {err}");
        assert!(err.is_empty(), "natpath {args:?} wrote to stderr: {err}");
        pinned(file, &out);
    }
}

#[test]
fn every_subcommand_help_has_examples() {
    for sub in ["parse", "trace", "check", "kernel-check", "collect", "generate", "completions", "man"] {
        let (_, out, _) = natpath(&[sub, "--help"]);
        assert!(out.contains("Examples:\n  natpath "), "natpath {sub} --help has no examples:\n{out}");
    }
}

#[test]
fn version_names_the_crate_version() {
    let (code, out, _) = natpath(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("natpath {}\n", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = natpath(&["check", "--version"]);
    assert_eq!((code, out.starts_with("natpath-check ")), (0, true), "{out}");
}

#[test]
fn options_take_their_value_with_an_equals_sign() {
    let snap = corpus("seed-ipip-remote");
    let (code, spaced, _) =
        natpath(&["trace", &snap, "--from", "client", "--to", "10.0.0.51:32220", "--format", "json"]);
    assert_eq!(code, 0);
    let (code, joined, _) = natpath(&["trace", &snap, "--from=client", "--to=10.0.0.51:32220", "--format=json"]);
    assert_eq!(code, 0);
    assert_eq!(spaced, joined);
    let (code, out, _) = natpath(&["check", &snap, "--invariant=fair-balancing", "--format=json", "--timeout=5"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdicts"].as_array().unwrap().len(), 1);
    assert_eq!(v["verdicts"][0]["invariant"], "fair-balancing");
}

#[test]
fn numbers_out_of_bounds_are_usage_errors_not_crashes() {
    let snap = corpus("seed-ipip-remote");
    for args in [
        vec!["check", snap.as_str(), "--timeout", "1e20"],
        vec!["check", snap.as_str(), "--timeout", "-1"],
        vec!["check", snap.as_str(), "--timeout", "NaN"],
        vec!["generate", "/nonexistent/natpath-gen", "--services", "99999999999"],
        vec!["generate", "/nonexistent/natpath-gen", "--nodes", "0"],
        vec!["kernel-check", snap.as_str(), "--timeout-ms", "999999"],
        vec!["trace", snap.as_str(), "--from", "client", "--to", "10.0.0.51:32220", "--sport", "65536"],
    ] {
        let (code, out, err) = natpath(&args);
        assert_eq!(code, 2, "natpath {args:?}: {err}");
        assert!(out.is_empty(), "natpath {args:?} printed {out}");
        assert!(err.starts_with("error: invalid value"), "natpath {args:?}: {err}");
    }
    // Each bound alone holds, their product too.
    let (code, _, err) = natpath(&["generate", "/nonexistent/natpath-gen", "--services", "50000", "--nodes", "1000"]);
    assert_eq!(code, 2);
    assert!(err.contains("is more than natpath generates"), "{err}");
}

#[test]
fn an_unknown_invariant_lists_the_catalog() {
    let (code, _, err) = natpath(&["check", &corpus("seed-ipip-remote"), "--invariant", "masq-if-mark"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'masq-if-mark' for '--invariant <NAME>'"), "{err}");
    assert!(err.contains("masq-iff-mark"), "{err}");
}

#[test]
fn completions_are_generated_for_each_shell() {
    for (shell, marker) in [("bash", "_natpath()"), ("zsh", "#compdef natpath"), ("fish", "complete -c natpath")] {
        let (code, out, err) = natpath(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell} completions lack `{marker}`");
        for sub in ["trace", "check", "kernel-check", "generate"] {
            assert!(out.contains(sub), "{shell} completions lack `{sub}`");
        }
        assert!(!out.contains("kernel-helper"), "{shell} completions offer the hidden helper");
    }
    // bash can read what it is given.
    let (_, script, _) = natpath(&["completions", "bash"]);
    let status = Command::new("bash").args(["-n", "-c", &script]).status();
    if let Ok(s) = status {
        assert!(s.success(), "bash -n refuses the completion script");
    }
}

#[test]
fn man_pages_come_from_the_same_definition() {
    let (code, out, _) = natpath(&["man"]);
    assert_eq!(code, 0);
    assert!(out.starts_with(".ie \\n(.g .ds Aq"), "{}", &out[..out.len().min(200)]);
    assert!(out.contains(".TH natpath 1"), "no .TH header");
    assert!(out.contains("kernel\\-check"), "the page does not list kernel-check");
    let dir = std::env::temp_dir().join(format!("natpath-man-{}", std::process::id()));
    let (code, _, err) = natpath(&["man", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mut pages: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pages.sort();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        pages,
        [
            "natpath-check.1",
            "natpath-collect.1",
            "natpath-completions.1",
            "natpath-diff.1",
            "natpath-gate.1",
            "natpath-generate.1",
            "natpath-kernel-check.1",
            "natpath-man.1",
            "natpath-merge.1",
            "natpath-parse.1",
            "natpath-trace.1",
            "natpath.1"
        ]
    );
}

#[test]
fn no_colour_in_a_pipe_nor_with_no_color() {
    let snap = corpus("seed-ipip-remote");
    let (_, plain, _) = natpath(&["check", &snap, "--invariant", "fair-balancing"]);
    assert!(!plain.contains('\x1b'), "colour in a pipe: {plain}");
    let (_, forced, _) = natpath(&["check", &snap, "--invariant", "fair-balancing", "--color", "always"]);
    assert!(forced.contains("\x1b[32mholds\x1b[0m"), "{forced}");
    let out = Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(["check", &snap, "--invariant", "fair-balancing", "--color", "always"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'), "colour despite NO_COLOR");
}

#[test]
fn no_progress_on_stderr_when_it_is_not_a_terminal() {
    let (code, _, err) = natpath(&["check", &corpus("seed-ipip-remote")]);
    assert_eq!(code, 0);
    assert_eq!(err, "", "check wrote to a piped stderr");
}

#[test]
fn a_named_pipe_or_a_device_is_refused_not_waited_on() {
    let (code, _, err) = natpath(&["parse", "/dev/zero"]);
    assert_eq!(code, 2);
    assert_eq!(err.trim(), "natpath: /dev/zero: cannot read: expected a regular file, found a character device");
    let dir = copy_snapshot("seed-ipip-remote", "fifo");
    let dump = dir.join("nodes/node1/iptables-save");
    std::fs::remove_file(&dump).unwrap();
    let made = Command::new("mkfifo").arg(&dump).status().map(|s| s.success()).unwrap_or(false);
    if made {
        let (code, _, err) = natpath(&["check", dir.to_str().unwrap()]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(
                "nodes/node1/iptables-save:1:1: cannot read the file: expected a regular file, found a named pipe"
            ),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 13: every node's iptables-save holds only iptables-nft's warning
/// about legacy tables (the wrong backend): nothing is in scope, which
/// must never read as a pass.
/// A misspelled sysctl key was read silently, and the default it left in
/// place flipped the verdict to holds: `ip_foward = 0` let node1 forward,
/// `tunI0` (not the node's `tunl0`) left rp_filter 0 on the tunnel. Both
/// are bad input at their line, naming what was meant.
#[test]
fn a_misspelled_sysctl_key_is_bad_input_not_a_default() {
    let cases = [
        (
            "seed-ipip-remote",
            "node1",
            "net.ipv4.ip_forward = 1",
            "net.ipv4.ip_foward = 0",
            "nodes/node1/sysctl:4:1: `net.ipv4.ip_foward` is no setting the kernel has; expected `ip_forward` (natpath reads it, and a misspelling would be ignored)",
        ),
        (
            "broken-no-mark-masq",
            "node2",
            "net.ipv4.conf.tunl0.rp_filter",
            "net.ipv4.conf.tunI0.rp_filter",
            "nodes/node2/sysctl:10:1: `net.ipv4.conf.tunI0.rp_filter` names device `tunI0`, which ip-addr does not list; expected `tunl0` (a misspelled device's settings would be ignored)",
        ),
    ];
    for (i, (snap, node, real, typo, msg)) in cases.into_iter().enumerate() {
        let dir = copy_snapshot(snap, &format!("sysctl-typo-{i}"));
        let file = dir.join("nodes").join(node).join("sysctl");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(real), "{snap}");
        std::fs::write(&file, text.replace(real, typo)).unwrap();
        let (code, out, err) = natpath(&["check", dir.to_str().unwrap(), "--invariant", "nodeport-reachable"]);
        assert_eq!(code, 2, "{snap}: {out}{err}");
        assert_eq!(err.trim(), format!("natpath: {}/{msg}", dir.display()), "{snap}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// iptables-nft-save's warning with rules after (or before) it: the node
/// runs two rulesets and the dump shows one, so no verdict about it can be
/// trusted. That was a pass without a note; it is bad input at the warning.
#[test]
fn a_dump_that_says_legacy_tables_hold_more_rules_is_bad_input() {
    const WARNING: &str = "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n";
    let rules = std::fs::read_to_string(format!("{}/nodes/node1/iptables-save", corpus("seed-ipip-remote"))).unwrap();
    let at_end = rules.lines().count() + 1;
    for (tag, text, line) in [("first", format!("{WARNING}{rules}"), 1), ("last", format!("{rules}{WARNING}"), at_end)]
    {
        let dir = copy_snapshot("seed-ipip-remote", &format!("legacy-{tag}"));
        std::fs::write(dir.join("nodes/node1/iptables-save"), text).unwrap();
        let (code, out, err) = natpath(&["check", dir.to_str().unwrap(), "--invariant", "nodeport-reachable"]);
        assert_eq!(code, 2, "{tag}: {out}{err}");
        let want = format!(
            "natpath: {}/nodes/node1/iptables-save:{line}:1: expected the node's whole ruleset, found one back-end's \
             122 rules: iptables-nft-save says the kernel also runs iptables-legacy tables, whose rules are not in this \
             dump (`iptables-legacy-save` prints them); natpath models one ruleset per node, so empty the back-end \
             kube-proxy and Calico do not use and collect again (docs/snapshot-format.md)",
            dir.display()
        );
        assert_eq!(err.trim(), want, "{tag}");
        // `diff` of two dump files reads them the same way.
        let dump = dir.join("nodes/node1/iptables-save");
        let (code, out, err) = natpath(&["diff", dump.to_str().unwrap(), dump.to_str().unwrap()]);
        assert_eq!(code, 2, "{tag}: {out}{err}");
        assert!(err.contains(&format!("iptables-save:{line}:1: expected the node's whole ruleset")), "{tag}: {err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_dump_from_the_wrong_backend_is_nothing_in_scope_not_a_pass() {
    let dir = copy_snapshot("seed-ipip-remote", "backend");
    for node in ["node1", "node2"] {
        std::fs::write(
            dir.join("nodes").join(node).join("iptables-save"),
            "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n",
        )
        .unwrap();
        std::fs::remove_file(dir.join("nodes").join(node).join("ipset-save")).ok();
    }
    let d = dir.to_str().unwrap();
    let (code, out, err) = natpath(&["check", d]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("\nnothing in scope: no node's rules define a Kubernetes Service (0 rules on 2 nodes)"),
        "{out}"
    );
    let (code, out, _) = natpath(&["check", d, "--format", "json"]);
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["exit"], 3);
    assert!(v["nothing_in_scope"].as_str().unwrap().contains("iptables-legacy-save"), "{v}");
    // Asked for: the verdicts' own exit code.
    let (code, _, _) = natpath(&["check", d, "--allow-empty"]);
    assert_eq!(code, 0);
    // `gate` and `diff` passed such a pair (exit 0): they compare nothing.
    let both = "BEFORE and AFTER: no node's rules define a Kubernetes Service (0 rules on 2 nodes)";
    let (code, out, err) = natpath(&["gate", d, d]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.starts_with(&format!("natpath gate {d} {d}: unknown\n")), "{out}");
    assert!(out.contains(&format!("  nothing in scope: {both}")), "{out}");
    let (code, out, _) = natpath(&["gate", d, d, "--format", "json"]);
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["verdict"].as_str(), v["exit"].as_i64()), (Some("unknown"), Some(3)), "{v}");
    assert!(v["nothing_in_scope"].as_str().unwrap().starts_with(both), "{v}");
    assert!(v["diff"]["nothing_in_scope"].as_str().unwrap().contains("iptables-legacy-save"), "{v}");
    for (format, says) in [
        ("junit", "<error message=\"nothing in scope: BEFORE and AFTER"),
        ("sarif", "\"ruleId\": \"nothing-in-scope\""),
        ("markdown", "**natpath gate: UNKNOWN**"),
    ] {
        let (code, out, _) = natpath(&["gate", d, d, "--format", format]);
        assert_eq!(code, 3, "{format}");
        assert!(out.contains(says) && out.contains("nothing in scope"), "{format}: {out}");
    }
    let (code, out, _) = natpath(&["diff", d, d]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(&format!("\nnothing in scope: {both}")), "{out}");
    let (code, out, _) = natpath(&["diff", d, d, "--format", "json"]);
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["nothing_in_scope"].as_str().unwrap().starts_with(both), "{v}");
    let (code, out, _) = natpath(&["diff", d, d, "--format", "markdown"]);
    assert_eq!(code, 3);
    assert!(out.starts_with("**natpath diff: UNKNOWN**") && out.contains("nothing in scope"), "{out}");
    // One side is enough: a pass where AFTER has no Service proves nothing.
    let real = corpus("seed-ipip-remote");
    let (code, out, _) = natpath(&["gate", &real, d, "--allow-changes", "--format", "json"]);
    assert_eq!(code, 3, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["nothing_in_scope"].as_str().unwrap().starts_with("AFTER: no node's rules"), "{v}");
    for cmd in ["gate", "diff"] {
        let (code, out, _) = natpath(&[cmd, d, d, "--allow-empty"]);
        assert_eq!(code, 0, "{cmd} --allow-empty: {out}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    // A real cluster is in scope.
    let (_, out, _) = natpath(&["check", &corpus("seed-ipip-remote"), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v.get("nothing_in_scope").is_none());
}

/// A packet to a load-balancer IP nobody owns: the host's routes cannot say
/// which node gets it, `--via` hands it to one, and that node's rules
/// (kube-proxy's `loadBalancerSourceRanges` firewall included) decide.
#[test]
fn trace_via_hands_a_host_packet_to_a_node() {
    let lb = corpus("kube-proxy-1.28-lb");
    let (code, out, _) = natpath(&["trace", &lb, "--from", "client", "--to", "10.0.0.240:8080"]);
    assert_eq!(code, 3, "without --via the snapshot does not say who gets it: {out}");
    let (code, out, err) = natpath(&["trace", &lb, "--from", "client", "--to", "10.0.0.240:8080", "--via", "node1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("trace tcp client -> 10.0.0.240:8080 (sport 40000, handed to node1)"), "{out}");
    assert!(out.contains("delivered to pod default/nginx-854f5d4bbd-x7k2p"), "{out}");
    let (_, json, _) =
        natpath(&["trace", &lb, "--from", "client", "--to", "10.0.0.240:8080", "--via", "node1", "--format", "json"]);
    assert!(json.contains("\"via\": \"node1\""), "{json}");
    let ranges = corpus("pairs/kp-lb-source-ranges/after");
    let (code, out, _) = natpath(&["trace", &ranges, "--from", "client", "--to", "10.0.0.240:8080", "--via", "node2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("KUBE-PROXY-FIREWALL") && out.contains("dropped"), "{out}");
    // Only a host's packet is handed over, and only to a node.
    let (code, _, err) = natpath(&["trace", &lb, "--from", "node1", "--to", "10.0.0.240:8080", "--via", "node2"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a host"), "{err}");
    let (code, _, err) = natpath(&["trace", &lb, "--from", "client", "--to", "10.0.0.240:8080", "--via", "node9"]);
    assert_eq!((code, err.contains("no such node")), (2, true), "{err}");
}

/// A rule with a module iptables has and natpath does not model (`-m u32`
/// on node1's forwarding path) makes unknown exactly the verdicts whose
/// packets can meet it, naming its file and line, and `check` exits 3; the
/// other verdicts are still given. Without it the copy holds everything.
#[test]
fn an_unmodelled_module_makes_only_what_depends_on_it_unknown() {
    let dir = copy_snapshot("seed-ipip-remote", "u32");
    let file = dir.join("nodes/node1/iptables-save");
    let text = std::fs::read_to_string(&file).unwrap();
    let at = text.find("-A KUBE-FORWARD ").expect("the seed has KUBE-FORWARD rules");
    let line = text[..at].lines().count() + 1;
    let rule = "-A KUBE-FORWARD -m u32 --u32 \"0x0>>0x16&0x3c@0x0>>0x10=0x50\" -j DROP\n";
    std::fs::write(&file, format!("{}{rule}{}", &text[..at], &text[at..])).unwrap();
    let (code, out, err) = natpath(&["check", dir.to_str().unwrap(), "--format", "json", "--quiet"]);
    assert_eq!(code, 3, "{err}\n{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let verdicts = v["verdicts"].as_array().unwrap();
    let unknown: Vec<&str> =
        verdicts.iter().filter(|x| x["verdict"] == "unknown").map(|x| x["invariant"].as_str().unwrap()).collect();
    let holds = verdicts.iter().filter(|x| x["verdict"] == "holds").count();
    assert!(unknown.contains(&"nodeport-reachable"), "{unknown:?}");
    assert!(holds > 0 && holds + unknown.len() == verdicts.len(), "{out}");
    let place = format!("iptables-save:{line}: filter KUBE-FORWARD rule 1: `-m u32` is not modelled");
    assert!(out.contains(&place), "{place} not in {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// kube-proxy v1.28.7 alone (no Calico): its cluster CIDR is only in the
/// `KUBE-SVC-` and `KUBE-EXT-` rules. natpath reads it there, so pod sources
/// are pods: `no-pod-masquerade` has pod traffic to check, and
/// `local-preserves-source` no longer takes a pod (10.244.2.11, reaching
/// node2's Local NodePort) for an outside client whose source must be kept.
/// An internalTrafficPolicy Local Service names its endpoints on a node only
/// in that node's `KUBE-SVL-` chain: hairpin-masquerade still holds each of
/// them to its own hairpin rule. kube-proxy-cidr's `cache` (endpoint
/// cache-2 on node2) holds; without its `-s 10.244.2.12/32 -j
/// KUBE-MARK-MASQ`, the pod reaching its own Service is sent back to itself
/// unmasqueraded, and the check says so.
#[test]
fn hairpin_covers_the_endpoints_only_an_internal_local_chain_names() {
    let (code, out, err) =
        natpath(&["check", &corpus("kube-proxy-cidr"), "--invariant", "hairpin-masquerade", "--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"holds\""), "{out}");
    let dir = copy_snapshot("kube-proxy-cidr", "itp-hairpin");
    let f = dir.join("nodes").join("node2").join("iptables-save");
    let text = std::fs::read_to_string(&f).unwrap();
    let cut: String = text.lines().filter(|l| !l.contains("-s 10.244.2.12/32 ")).map(|l| format!("{l}\n")).collect();
    assert_ne!(cut, text, "the hairpin rule was not found");
    std::fs::write(&f, cut).unwrap();
    let (code, out, _) = natpath(&["check", dir.to_str().unwrap(), "--invariant", "hairpin-masquerade"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("node2 pod default/cache-2 to default/cache:dns 10.96.0.23:53"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kube_proxy_alone_its_cluster_cidr_makes_pod_sources_pods() {
    let snap = corpus("kube-proxy-cidr");
    let (code, out, err) = natpath(&["parse", &snap, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(n["cluster_cidrs"], serde_json::json!(["10.244.0.0/16"]), "{n}");
        assert_eq!(n["ip_pools"], serde_json::json!([]), "{n}");
    }
    let (code, out, err) = natpath(&[
        "check",
        &snap,
        "--invariant",
        "no-pod-masquerade",
        "--invariant",
        "local-preserves-source",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for x in v["verdicts"].as_array().unwrap() {
        assert_eq!(x["verdict"], "holds", "{x}");
    }
    assert!(!out.contains("no IP pool or cluster CIDR"), "{out}");
    // The same rules with kube-proxy's interface detector (`! -i veth+`,
    // `-i veth+`) name no address: pods exist, their addresses are not
    // known, and no-pod-masquerade says so instead of holding.
    let dir = copy_snapshot("kube-proxy-cidr", "ifdetect");
    for node in ["node1", "node2"] {
        let f = dir.join("nodes").join(node).join("iptables-save");
        let text = std::fs::read_to_string(&f).unwrap();
        let text = text.replace("! -s 10.244.0.0/16 ", "! -i veth+ ").replace("-s 10.244.0.0/16 ", "-i veth+ ");
        std::fs::write(&f, text).unwrap();
    }
    let d = dir.to_str().unwrap();
    let (code, out, _) = natpath(&["check", d, "--invariant", "no-pod-masquerade"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("kube-proxy tells pod traffic by device, not by address, on node1 (`veth+`), node2 (`veth+`)"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Service without endpoints, as kube-proxy v1.28.7 renders it: nothing in
/// nat, filter REJECTs its NodePort in INPUT. That is what kube-proxy means,
/// so `forward-only` holds and says why, on both real renderings.
#[test]
fn a_service_without_endpoints_is_meant_to_be_rejected() {
    for (snap, name, nodes) in [
        ("kube-proxy-cidr", "default/gone:https", &["node1", "node2"]),
        ("pairs/kp-endpoint-removed/after", "default/nginx:8080-80", &["node1", "node2"]),
    ] {
        let s = corpus(snap);
        let (code, out, err) =
            natpath(&["check", &s, "--invariant", "forward-only", "--invariant", "nodeport-reachable"]);
        assert_eq!(code, 0, "{snap}: {out}{err}");
        for node in nodes {
            let note =
                format!("note (forward-only): {node}: {name} has no endpoint: meant to be rejected, not checked");
            assert!(out.contains(&note), "{snap}: {note}\n{out}");
        }
    }
    // The Local Service without an endpoint on node1 is the other intended refusal.
    let (_, out, _) = natpath(&["check", &corpus("kube-proxy-cidr"), "--invariant", "forward-only"]);
    assert!(
        out.contains("node1: default/web-local:http is Local with no local endpoint: meant to drop, not checked"),
        "{out}"
    );
}

/// Addresses that only kube-proxy's filter refusals name are traced to the
/// refusal, which the trace names by file and line: a Service without
/// endpoints' external and load-balancer IPs (no host route reaches them:
/// `--via` hands the packet to a node, and without it the trace says who
/// serves the address), its cluster IP, and a cluster IP whose only rule on
/// the node is internalTrafficPolicy Local's DROP.
#[test]
fn trace_follows_addresses_only_refusals_serve() {
    let snap = corpus("kube-proxy-cidr");
    let file = |node: &str| format!("{snap}/nodes/{node}/iptables-save");
    let (code, out, err) = natpath(&["trace", &snap, "--from", "client", "--to", "192.0.2.22:443"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("192.0.2.22 is an address of default/gone:https, served by node1, node2: --via NODE hands the packet to one of them"),
        "{out}"
    );
    for (to, via, line) in [("192.0.2.22:443", "node1", 35), ("198.18.0.22:443", "node2", 35)] {
        let (code, out, err) = natpath(&["trace", &snap, "--from", "client", "--to", to, "--via", via]);
        assert_eq!(code, 0, "{to}: {err}");
        let want = format!("rejected on {via} by {}:{line} (filter KUBE-EXTERNAL-SERVICES rule ", file(via));
        assert!(out.contains("branch 1/1 (probability 1): rejected") && out.contains(&want), "{want}\n{out}");
    }
    let (code, out, err) = natpath(&["trace", &snap, "--from", "default/web-1", "--to", "10.96.0.22:443"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("rejected on node1 by {}:42 (filter KUBE-SERVICES rule 1)", file("node1"))), "{out}");
    let (code, out, err) =
        natpath(&["trace", &snap, "--from", "default/web-1", "--to", "10.96.0.23:53", "--proto", "udp"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("dropped on node1 by {}:43 (filter KUBE-SERVICES rule 2) (FORWARD)", file("node1"))),
        "{out}"
    );
    // An address no rule names is still nobody's.
    let (code, _, err) = natpath(&["trace", &snap, "--from", "client", "--to", "192.0.2.99:443"]);
    assert_eq!(code, 2);
    assert!(err.contains("nobody owns 192.0.2.99"), "{err}");
}

/// kube-proxy writes SCTP Services; a trace follows an SCTP INIT through
/// them (here across nodes to the endpoint, and back).
#[test]
fn trace_takes_sctp() {
    let snap = corpus("kube-proxy-cidr");
    let (code, out, err) = natpath(&["trace", &snap, "--from", "client", "--to", "10.0.0.52:30868", "--proto", "sctp"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("trace sctp client -> 10.0.0.52:30868"), "{out}");
    assert!(
        out.contains("DNAT to 10.244.1.12:3868") && out.contains("delivered to pod default/diameter-1 on node1"),
        "{out}"
    );
    assert!(out.contains("reply: delivered: the sender sees 10.0.0.52:30868 -> 10.0.0.53:40000"), "{out}");
    let (code, json, _) = natpath(&[
        "trace",
        &snap,
        "--from",
        "default/web-2",
        "--to",
        "10.96.0.24:3868",
        "--proto",
        "sctp",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["probe"]["proto"], "sctp", "{v}");
    assert_eq!(v["branches"][0]["outcome"], "delivered", "{v}");
}
