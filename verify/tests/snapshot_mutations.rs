//! Snapshot mutations never give a wrong `holds` (the issue "Never a wrong
//! holds"): copies of corpus snapshots are damaged — a node file deleted,
//! truncated (at a line boundary or mid-line), duplicated, emptied or
//! replaced by a directory, one line garbled, two nodes' `ip-addr`
//! swapped, a pod's `iface` line removed from cluster.toml — and the real
//! `natpath check` binary is run on each. It must never panic, crash or
//! hang; an exit 2 must name a file with `:LINE`; and the mutations that
//! certainly leave the snapshot inconsistent must not exit 0.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod common;
use natpath_model::snapshot::NODE_FILES;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The snapshots every mutation starts from.
const SNAPSHOTS: [&str; 3] = ["seed-ipip-remote", "calico-vxlan", "kube-proxy-1.28"];

/// Node files natpath cannot do without.
const REQUIRED: [&str; 3] = ["iptables-save", "ip-route", "ip-addr"];

/// Words a garbled line may get in place of one of its own.
const JUNK: [&str; 12] = [
    "garbage",
    "-",
    "--",
    "300.1.2.3",
    "10.0.0.1/33",
    "99999999999999999999",
    "0x",
    "\u{feff}",
    "é\u{0}",
    "\"",
    "[[",
    "",
];

/// How long one `check` may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(120);

/// A copy of a corpus snapshot in a fresh directory of its own under the
/// system's temporary directory, removed when dropped.
struct Case(PathBuf);

impl Case {
    fn new(snapshot: &str) -> Case {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("natpath-mutation-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        common::copy_dir(&common::corpus().join(snapshot), &d);
        Case(d)
    }

    fn node(&self, node: &str) -> PathBuf {
        self.0.join("nodes").join(node)
    }

    /// The node directories, sorted.
    fn nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.0.join("nodes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// The files of a node that exist, in the snapshot format's order.
    fn files(&self, node: &str) -> Vec<&'static str> {
        NODE_FILES.iter().map(|f| f.0).filter(|f| self.node(node).join(f).is_file()).collect()
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What natpath said.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `natpath check DIR` with a wall-clock bound; a panic, a signal or a
/// hang fails the test here.
#[track_caller]
fn check(dir: &Path, what: &str) -> Outcome {
    let out_path = dir.with_extension("stdout");
    let err_path = dir.with_extension("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_natpath"))
        .arg("check")
        .arg(dir)
        .args(["--format", "json", "--quiet", "--timeout", "5"])
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("natpath runs");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&out_path);
            let _ = std::fs::remove_file(&err_path);
            panic!("hang: `natpath check` ran over {HANG:?} after {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    let Some(code) = status.code() else {
        panic!("crash: `natpath check` was killed by a signal ({status}) after {what}\nstderr:\n{stderr}");
    };
    assert!(
        !stderr.contains("panicked"),
        "panic: `natpath check` panicked (exit {code}) after {what}\nstderr:\n{stderr}"
    );
    assert!(matches!(code, 0..=3), "crash: `natpath check` exited {code} after {what}\nstderr:\n{stderr}");
    if code == 2 {
        assert!(
            located(&stderr, dir),
            "exit 2 without a located reason (a file in the snapshot with :LINE) after {what}\nstderr:\n{stderr}"
        );
    }
    if code == 3 {
        assert!(
            !stderr.trim().is_empty() || unknown_with_reason(&stdout),
            "exit 3 without a reason after {what}\nstdout:\n{stdout}"
        );
    }
    Outcome { code, stdout, stderr }
}

/// Whether `stderr` names a path under `dir` followed by `:LINE`.
fn located(stderr: &str, dir: &Path) -> bool {
    let dir = dir.display().to_string();
    stderr.match_indices(&dir).any(|(at, _)| {
        let rest = &stderr[at + dir.len()..];
        let token = rest.split(char::is_whitespace).next().unwrap_or("");
        let mut parts = token.split(':');
        let _path = parts.next();
        parts.next().is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Whether the JSON report has an `unknown` verdict that gives its reason.
fn unknown_with_reason(stdout: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(stdout) else {
        return false;
    };
    v["verdicts"].as_array().is_some_and(|vs| {
        vs.iter().any(|v| v["verdict"] == "unknown" && v["reason"].as_str().is_some_and(|r| !r.trim().is_empty()))
    })
}

/// Assert natpath refused (exit 2 or 3) a snapshot that is certainly
/// inconsistent.
#[track_caller]
fn refused(o: &Outcome, what: &str) {
    assert!(
        matches!(o.code, 2 | 3),
        "silent exit {} on an inconsistent snapshot after {what}\nstderr:\n{}\nstdout:\n{}",
        o.code,
        o.stderr,
        o.stdout
    );
}

/// One damage to a snapshot. Indices are taken modulo what exists.
#[derive(Clone, Debug)]
enum Mutation {
    Delete {
        node: usize,
        file: usize,
    },
    /// Cut at byte `at` (a fraction, per mille, of the length), moved back
    /// to the start of its line when `line_boundary`.
    Truncate {
        node: usize,
        file: usize,
        at: u16,
        line_boundary: bool,
    },
    Duplicate {
        node: usize,
        file: usize,
    },
    /// Replace word `word` of line `line` with `JUNK[junk]`, or flip bits
    /// `flip` of one of its bytes when `flip` is not zero.
    Garble {
        node: usize,
        file: usize,
        line: usize,
        word: usize,
        junk: usize,
        flip: u8,
    },
    SwapAddr,
    DropIface,
    Empty {
        node: usize,
        file: usize,
    },
    Directory {
        node: usize,
        file: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let nf = (any::<usize>(), any::<usize>());
    prop_oneof![
        nf.prop_map(|(node, file)| Mutation::Delete { node, file }),
        (nf, 0u16..=1000, any::<bool>()).prop_map(|((node, file), at, line_boundary)| Mutation::Truncate {
            node,
            file,
            at,
            line_boundary
        }),
        nf.prop_map(|(node, file)| Mutation::Duplicate { node, file }),
        (nf, any::<usize>(), any::<usize>(), 0..JUNK.len(), prop_oneof![Just(0u8), any::<u8>()])
            .prop_map(|((node, file), line, word, junk, flip)| Mutation::Garble { node, file, line, word, junk, flip }),
        Just(Mutation::SwapAddr),
        Just(Mutation::DropIface),
        nf.prop_map(|(node, file)| Mutation::Empty { node, file }),
        nf.prop_map(|(node, file)| Mutation::Directory { node, file }),
    ]
}

/// The file a mutation picks: a node's file, or cluster.toml when the
/// index falls one past the node's files (only for edits, not deletes).
fn pick(case: &Case, node: usize, file: usize, toml: bool) -> (PathBuf, String) {
    let nodes = case.nodes();
    let n = &nodes[node % nodes.len()];
    let files = case.files(n);
    let k = file % (files.len() + usize::from(toml));
    match files.get(k) {
        Some(f) => (case.node(n).join(f), (*f).to_string()),
        None => (case.0.join("cluster.toml"), "cluster.toml".to_string()),
    }
}

/// Whether cutting an iptables-save dump to its first `at` bytes leaves a
/// table open: its `*table` line (or part of it) kept, its `COMMIT` not.
fn inside_table(text: &[u8], at: usize) -> bool {
    let mut open = false;
    for line in text[..at].split_inclusive(|&b| b == b'\n') {
        let t = String::from_utf8_lossy(line);
        let t = t.trim();
        if t.starts_with('*') {
            open = true;
        } else if t == "COMMIT" {
            open = false;
        }
    }
    open
}

/// Apply `m` to `case`; returns a description and whether the result is
/// certainly inconsistent (natpath must refuse it).
fn apply(case: &Case, m: &Mutation) -> (String, bool) {
    match *m {
        Mutation::Delete { node, file } => {
            let (p, f) = pick(case, node, file, false);
            std::fs::remove_file(&p).unwrap();
            (format!("deleting {}", p.display()), REQUIRED.contains(&f.as_str()))
        }
        Mutation::Truncate { node, file, at, line_boundary } => {
            let (p, f) = pick(case, node, file, true);
            let text = std::fs::read(&p).unwrap();
            let mut cut = text.len() * usize::from(at) / 1000;
            if line_boundary {
                cut = text[..cut].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            }
            std::fs::write(&p, &text[..cut]).unwrap();
            let certain = f == "iptables-save" && inside_table(&text, cut);
            (format!("truncating {} at byte {cut} of {}", p.display(), text.len()), certain)
        }
        Mutation::Duplicate { node, file } => {
            let (p, f) = pick(case, node, file, false);
            let mut text = std::fs::read(&p).unwrap();
            text.extend_from_slice(&text.clone());
            std::fs::write(&p, &text).unwrap();
            // An ip-route that lists its routes twice is no capture.
            (format!("duplicating {}", p.display()), f == "ip-route")
        }
        Mutation::Garble { node, file, line, word, junk, flip } => {
            let (p, _) = pick(case, node, file, true);
            let text = std::fs::read(&p).unwrap();
            let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let li = line % lines.len();
            let l = &mut lines[li];
            // Word spans: maximal runs of non-blank bytes.
            let mut spans = Vec::new();
            let mut start = None;
            for (i, &b) in l.iter().enumerate() {
                match (b == b' ' || b == b'\t', start) {
                    (false, None) => start = Some(i),
                    (true, Some(s)) => {
                        spans.push((s, i));
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                spans.push((s, l.len()));
            }
            let what = if let Some(&(s, e)) = spans.get(word % spans.len().max(1)) {
                if flip == 0 {
                    l.splice(s..e, JUNK[junk].bytes());
                    format!("replacing word {s}..{e} with {:?}", JUNK[junk])
                } else {
                    let i = s + word % (e - s);
                    l[i] ^= flip;
                    format!("flipping byte {i} with {flip:#04x}")
                }
            } else {
                l.extend_from_slice(JUNK[junk].as_bytes());
                format!("appending {:?}", JUNK[junk])
            };
            std::fs::write(&p, lines.join(&b'\n')).unwrap();
            (format!("garbling line {} of {}: {what}", li + 1, p.display()), false)
        }
        Mutation::SwapAddr => {
            let nodes = case.nodes();
            let (a, b) = (case.node(&nodes[0]).join("ip-addr"), case.node(&nodes[1]).join("ip-addr"));
            let tmp = case.0.join("ip-addr.swap");
            std::fs::rename(&a, &tmp).unwrap();
            std::fs::rename(&b, &a).unwrap();
            std::fs::rename(&tmp, &b).unwrap();
            (format!("swapping the ip-addr of {} and {}", nodes[0], nodes[1]), true)
        }
        Mutation::DropIface => {
            let p = case.0.join("cluster.toml");
            let text = std::fs::read_to_string(&p).unwrap();
            let kept: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("iface")).collect();
            assert!(kept.len() < text.lines().count(), "{} declares a pod iface", p.display());
            std::fs::write(&p, kept.join("\n") + "\n").unwrap();
            (format!("removing the pod iface lines of {}", p.display()), true)
        }
        Mutation::Empty { node, file } => {
            let (p, f) = pick(case, node, file, false);
            std::fs::write(&p, b"").unwrap();
            // An empty ip-addr is refused; an empty iptables-save or
            // ip-route is read as a node with no rules or no routes (a
            // violation, exit 1), checked apart in `empty_required`.
            (format!("emptying {}", p.display()), f == "ip-addr")
        }
        Mutation::Directory { node, file } => {
            let (p, _) = pick(case, node, file, false);
            std::fs::remove_file(&p).unwrap();
            std::fs::create_dir(&p).unwrap();
            (format!("replacing {} with a directory", p.display()), true)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random mutations: never a panic, crash or hang; a located reason for
    /// every exit 2; a refusal for every certainly inconsistent result.
    #[test]
    fn mutations_never_give_a_wrong_holds(snapshot in 0..SNAPSHOTS.len(), m in mutation()) {
        let case = Case::new(SNAPSHOTS[snapshot]);
        let (what, certain) = apply(&case, &m);
        let what = format!("{what} (snapshot {}, {m:?})", SNAPSHOTS[snapshot]);
        let o = check(&case.0, &what);
        if certain {
            refused(&o, &what);
        }
    }
}

/// Every fixed, certainly inconsistent mutation, on each snapshot.
fn each(f: impl Fn(&Case) -> String) {
    for s in SNAPSHOTS {
        let case = Case::new(s);
        let what = format!("{} (snapshot {s})", f(&case));
        let o = check(&case.0, &what);
        refused(&o, &what);
    }
}

#[test]
fn unmutated_snapshots_hold() {
    for s in SNAPSHOTS {
        let case = Case::new(s);
        let o = check(&case.0, &format!("no mutation (snapshot {s})"));
        assert_eq!(o.code, 0, "{s} holds unmutated\nstderr:\n{}", o.stderr);
    }
}

#[test]
fn deleting_a_required_file_is_refused() {
    for f in REQUIRED {
        for node in ["node1", "node2"] {
            each(|c| {
                let p = c.node(node).join(f);
                std::fs::remove_file(&p).unwrap();
                format!("deleting {}", p.display())
            });
        }
    }
}

#[test]
fn a_required_file_as_a_directory_is_refused() {
    for f in REQUIRED {
        each(|c| {
            let p = c.node("node2").join(f);
            std::fs::remove_file(&p).unwrap();
            std::fs::create_dir(&p).unwrap();
            format!("replacing {} with a directory", p.display())
        });
    }
}

#[test]
fn an_empty_ip_addr_is_refused() {
    each(|c| {
        let p = c.node("node1").join("ip-addr");
        std::fs::write(&p, b"").unwrap();
        format!("emptying {}", p.display())
    });
}

/// An empty ip-route cannot be `ip route show table all` of a node with
/// addresses (table local is never empty): bad input at the file.
#[test]
fn an_empty_ip_route_is_refused_at_the_file() {
    for s in SNAPSHOTS {
        let case = Case::new(s);
        let p = case.node("node1").join("ip-route");
        std::fs::write(&p, b"").unwrap();
        let o = check(&case.0, &format!("emptying {}", p.display()));
        assert_eq!(o.code, 2, "{s}: {}", o.stderr);
        assert!(
            o.stderr.contains(&format!("{}:1:1: node `node1`: no route of table `local`", p.display())),
            "{}",
            o.stderr
        );
    }
}

/// An ip-route that lists a route twice cannot be one capture (the kernel
/// holds a route once: adding it again answers `File exists`): refused at
/// the second line, which names the first. A route that differs in one
/// attribute (here `mtu`) is another route, as `ip route append` adds it
/// beside the first, and is read.
#[test]
fn a_route_listed_twice_is_refused_at_its_second_line() {
    for s in SNAPSHOTS {
        let case = Case::new(s);
        let p = case.node("node1").join("ip-route");
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The connected route of the node's LAN, listed again at the end.
        let (i, line) = lines.iter().enumerate().find(|(_, l)| l.contains("proto kernel scope link")).unwrap();
        std::fs::write(&p, format!("{}\n{line}\n", lines.join("\n"))).unwrap();
        let o = check(&case.0, &format!("listing line {} of {} again", i + 1, p.display()));
        assert_eq!(o.code, 2, "{s}: {}", o.stderr);
        let want = format!(
            "{}:{}:1: expected each route once, found the route of line {} again",
            p.display(),
            lines.len() + 1,
            i + 1
        );
        assert!(o.stderr.contains(&want), "{s}: want {want}\n{}", o.stderr);
    }
    let case = Case::new(SNAPSHOTS[0]);
    let p = case.node("node1").join("ip-route");
    let text = std::fs::read_to_string(&p).unwrap();
    let line = text.lines().find(|l| l.contains("proto kernel scope link")).unwrap().trim_end().to_string();
    std::fs::write(&p, format!("{text}{line} mtu 1400\n")).unwrap();
    let o = check(&case.0, &format!("appending a route beside another to {}", p.display()));
    assert_eq!(o.code, 0, "{}", o.stderr);
}

/// An empty iptables-save is read as a node with no rules (a real state):
/// natpath reports the violations that follow (exit 1), never a holds.
#[test]
fn empty_required() {
    for f in ["iptables-save"] {
        for s in SNAPSHOTS {
            let case = Case::new(s);
            let p = case.node("node1").join(f);
            std::fs::write(&p, b"").unwrap();
            let what = format!("emptying {} (snapshot {s})", p.display());
            let o = check(&case.0, &what);
            assert_ne!(o.code, 0, "silent exit 0 after {what}\nstderr:\n{}", o.stderr);
        }
    }
}

#[test]
fn iptables_save_cut_mid_table_is_refused() {
    each(|c| {
        let p = c.node("node1").join("iptables-save");
        let text = std::fs::read_to_string(&p).unwrap();
        // Keep everything before the first COMMIT.
        let cut = text.find("\nCOMMIT").unwrap() + 1;
        std::fs::write(&p, &text[..cut]).unwrap();
        format!("cutting {} before its first COMMIT", p.display())
    });
    each(|c| {
        let p = c.node("node2").join("iptables-save");
        let text = std::fs::read_to_string(&p).unwrap();
        // Cut in the middle of the last rule line of the nat table.
        let commit = text.rfind("\nCOMMIT").unwrap();
        let line = text[..commit].rfind('\n').unwrap();
        let cut = line + (commit - line) / 2;
        std::fs::write(&p, &text[..cut]).unwrap();
        format!("cutting {} mid-line in its last table", p.display())
    });
}

#[test]
fn swapping_two_nodes_ip_addr_is_refused() {
    each(|c| apply(c, &Mutation::SwapAddr).0);
}

/// Only the LAN addresses trade places (the interfaces keep their names):
/// each node's ip-route (`src`, table local) then names the other node's
/// address as its own.
#[test]
fn swapping_two_nodes_lan_addresses_is_refused() {
    each(|c| {
        let (a, b) = (c.node("node1").join("ip-addr"), c.node("node2").join("ip-addr"));
        let (ta, tb) = (std::fs::read_to_string(&a).unwrap(), std::fs::read_to_string(&b).unwrap());
        assert!(ta.contains("inet 10.0.0.51/24") && tb.contains("inet 10.0.0.52/24"));
        std::fs::write(&a, ta.replace("inet 10.0.0.51/24", "inet 10.0.0.52/24")).unwrap();
        std::fs::write(&b, tb.replace("inet 10.0.0.52/24", "inet 10.0.0.51/24")).unwrap();
        format!("swapping the LAN addresses in {} and {}", a.display(), b.display())
    });
    // Refused where it is: the address without its `local` route.
    let case = Case::new("seed-ipip-remote");
    let (a, b) = (case.node("node1").join("ip-addr"), case.node("node2").join("ip-addr"));
    let (ta, tb) = (std::fs::read_to_string(&a).unwrap(), std::fs::read_to_string(&b).unwrap());
    std::fs::write(&a, ta.replace("inet 10.0.0.51/24", "inet 10.0.0.52/24")).unwrap();
    std::fs::write(&b, tb.replace("inet 10.0.0.52/24", "inet 10.0.0.51/24")).unwrap();
    let o = check(&case.0, "swapping the LAN addresses");
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("has 10.0.0.52 on `ens192`, but its ip-route has no `local 10.0.0.52` route"),
        "{}",
        o.stderr
    );
}

#[test]
fn dropping_a_pod_iface_is_refused() {
    each(|c| apply(c, &Mutation::DropIface).0);
}

#[test]
fn the_cut_position_is_classified() {
    let t = b"# c\n*nat\n:A - [0:0]\nCOMMIT\n# done\n";
    assert!(!inside_table(t, 0));
    assert!(!inside_table(t, 4));
    assert!(inside_table(t, 5));
    assert!(inside_table(t, 9));
    assert!(inside_table(t, 22));
    assert!(!inside_table(t, 26));
    assert!(!inside_table(t, 27));
    assert!(!inside_table(t, t.len()));
}
