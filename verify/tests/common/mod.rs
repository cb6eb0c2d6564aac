//! Helpers shared by the integration tests of natpath-verify.

#![allow(dead_code, clippy::unwrap_used, reason = "each test binary uses some; a test fails by panicking")]

use std::path::{Path, PathBuf};

/// The repository's corpus/ directory.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

/// Copy the directory `src` (a snapshot) to `dst`, recursively.
pub fn copy_dir(src: &Path, dst: &Path) {
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

/// Run the natpath binary; returns (exit code, stdout, stderr).
#[track_caller]
pub fn natpath(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_natpath"))
        .args(args)
        .env_remove("COLUMNS")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of a corpus snapshot in a directory of its own under the
/// system's temporary directory, without its golden outputs; removed when
/// dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Copy corpus snapshot `name`; `tag` makes the directory unique.
    pub fn of(name: &str, tag: &str) -> Scratch {
        let dst = std::env::temp_dir().join(format!("natpath-scratch-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dst);
        copy_dir(&corpus().join(name), &dst);
        let _ = std::fs::remove_dir_all(dst.join("expected"));
        Scratch(dst)
    }

    /// A file of the copy, by its path relative to the snapshot.
    pub fn file(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// The copy's directory as a string.
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// Edit node `node`'s file `file` with `f`, which must change it.
    pub fn edit(&self, node: &str, file: &str, f: impl Fn(&str) -> String) -> &Self {
        let p: PathBuf = self.0.join("nodes").join(node).join(file);
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let new = f(&text);
        assert_ne!(text, new, "the edit of {node}/{file} changed nothing");
        std::fs::write(&p, new).unwrap();
        self
    }

    /// Remove every line of node `node`'s file `file` that contains
    /// `containing`.
    pub fn drop_line(&self, node: &str, file: &str, containing: &str) -> &Self {
        self.edit(node, file, |t| t.lines().filter(|l| !l.contains(containing)).map(|l| format!("{l}\n")).collect())
    }

    /// Replace the line of node `node`'s file `file` that starts with
    /// `start` by `with` (nothing: the line is removed).
    pub fn replace_line(&self, node: &str, file: &str, start: &str, with: Option<&str>) -> &Self {
        self.edit(node, file, |t| {
            t.lines()
                .filter_map(|l| if l.starts_with(start) { with.map(str::to_string) } else { Some(l.to_string()) })
                .map(|l| format!("{l}\n"))
                .collect()
        })
    }
}

impl Scratch {
    /// Append `text` to the copy's cluster.toml; returns the line number
    /// its first line gets.
    pub fn append_toml(&self, text: &str) -> usize {
        let p = self.file("cluster.toml");
        let mut old = std::fs::read_to_string(&p).unwrap();
        if !old.ends_with('\n') {
            old.push('\n');
        }
        let first = old.lines().count() + 1;
        std::fs::write(&p, format!("{old}{text}")).unwrap();
        first
    }

    /// `natpath trace` of the copy, from `from` to `to`.
    pub fn trace(&self, from: &str, to: &str) -> (i32, String, String) {
        natpath(&["trace", self.path(), "--from", from, "--to", to])
    }

    /// `natpath check` of the copy, one invariant.
    pub fn check(&self, invariant: &str) -> (i32, String, String) {
        natpath(&["check", self.path(), "--invariant", invariant])
    }
}

/// The verdict line of `invariant` in `check`'s text output.
#[track_caller]
pub fn verdict_line<'a>(out: &'a str, invariant: &str) -> &'a str {
    out.lines().find(|l| l.trim_start().starts_with(invariant)).unwrap_or_else(|| panic!("no {invariant} in {out}"))
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The edited copies of `seed-ipip-remote` whose routing refuses the
/// NodePort's DNATed packet (`client:10.0.0.51:32220/tcp`), with what the
/// client gets back: (tag, the edit, `Some(kind)` of the ICMP error from
/// 10.0.0.51, or `None` when the packet is dropped silently).
pub type RouteCase = (&'static str, fn(&Scratch), Option<&'static str>);

/// The rules file of node1 with one policy rule before main's.
fn rule_before_main(s: &Scratch, rule: &str) {
    let text = format!(
        "0:\tfrom all lookup local\n100:\tfrom all to 192.168.233.128/26 {rule}\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n"
    );
    s.edit("node1", "ip-rule", |_| text.clone());
}

/// The route cases: node1's route to node2's pod block replaced or removed,
/// or a policy rule in front of it; node2's route to the pod made
/// unreachable (the error crosses the tunnel back and node1's conntrack).
pub fn route_cases() -> Vec<RouteCase> {
    const POD_BLOCK: &str = "192.168.233.128/26 via 10.0.0.52 dev tunl0";
    vec![
        (
            "unreachable",
            |s| {
                s.replace_line("node1", "ip-route", POD_BLOCK, Some("unreachable 192.168.233.128/26 proto bird"));
            },
            Some("icmp 3/1"),
        ),
        (
            "prohibit",
            |s| {
                s.replace_line("node1", "ip-route", POD_BLOCK, Some("prohibit 192.168.233.128/26 proto bird"));
            },
            Some("icmp 3/13"),
        ),
        (
            "no-route",
            |s| {
                s.replace_line("node1", "ip-route", POD_BLOCK, None).replace_line(
                    "node1",
                    "ip-route",
                    "default via",
                    None,
                );
            },
            Some("icmp 3/0"),
        ),
        (
            "blackhole",
            |s| {
                s.replace_line("node1", "ip-route", POD_BLOCK, Some("blackhole 192.168.233.128/26 proto bird"));
            },
            None,
        ),
        ("rule-unreachable", |s| rule_before_main(s, "unreachable"), Some("icmp 3/0")),
        ("rule-prohibit", |s| rule_before_main(s, "prohibit"), Some("icmp 3/13")),
        ("rule-blackhole", |s| rule_before_main(s, "blackhole"), None),
        (
            "remote-unreachable",
            |s| {
                s.replace_line(
                    "node2",
                    "ip-route",
                    "192.168.233.136 dev calib992f6c0b80",
                    Some("unreachable 192.168.233.136"),
                );
            },
            Some("icmp 3/1"),
        ),
    ]
}

/// node1 routes node2's pod block over the LAN instead of the tunnel: the
/// NodePort's DNATed SYN from the client leaves ens192, the device it came
/// in by, to a gateway on the client's link, so node1 sends the client an
/// ICMP redirect (and forwards the SYN).
pub fn redirect_case(s: &Scratch) {
    s.replace_line(
        "node1",
        "ip-route",
        "192.168.233.128/26 via 10.0.0.52 dev tunl0",
        Some("192.168.233.128/26 via 10.0.0.52 dev ens192 proto bird"),
    );
}

/// Counting rules (no target) at the top of node1's raw OUTPUT that tell a
/// TCP reset of 40 bytes (#1) from a longer one (#2), and a filter INPUT
/// REJECT with tcp-reset for port 2223: on `node-listeners`, the reset of
/// `client:10.0.0.51:2222/tcp` (nothing listens) and of `:2223` (the
/// REJECT) are node1's own packets, counted by one of the two.
pub fn reset_length_case(s: &Scratch) {
    s.edit("node1", "iptables-save", |t| {
        let mut out = String::new();
        let mut table = "";
        for l in t.lines() {
            if let Some(name) = l.strip_prefix('*') {
                table = if name == "raw" {
                    "raw"
                } else if name == "filter" {
                    "filter"
                } else {
                    ""
                };
            }
            if table == "raw" && l.starts_with("-A OUTPUT") {
                out.push_str("-A OUTPUT -p tcp -m tcp --tcp-flags RST RST -m length --length 40\n");
                out.push_str("-A OUTPUT -p tcp -m tcp --tcp-flags RST RST -m length --length 41:65535\n");
                table = "";
            }
            if table == "filter" && l.starts_with("-A INPUT") {
                out.push_str("-A INPUT -p tcp -m tcp --dport 2223 -j REJECT --reject-with tcp-reset\n");
                table = "";
            }
            out.push_str(l);
            out.push('\n');
        }
        out
    });
}
