//! The one shell script every transport runs on a node, and the reading of
//! what it prints.
//!
//! The script is a constant: nothing from the outside (node names, paths,
//! dump text) is ever pasted into it, only the run's marker, which natpath
//! makes itself from hex digits. It runs each read-only command of the
//! snapshot format in turn and frames its output:
//!
//! ```text
//! MARKER begin NAME
//! <the command's stdout, byte for byte>
//! MARKER end NAME RC
//! ```
//!
//! (a newline is printed before each `end` line, and removed again when
//! reading, so output that does not end in a newline comes back exact). A
//! command that is not installed gives `MARKER missing NAME TOOL` instead.
//! Standard error gets the same `begin`/`end` lines, so each command's
//! messages are told apart too. The script writes nothing on the node: no
//! file, no temporary file, no setting.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One command of the script: the section name, the tool it needs, the argv.
pub struct Step {
    /// Section name (for dumps, the snapshot's file name).
    pub name: &'static str,
    /// The argv, run as is.
    pub argv: &'static [&'static str],
}

/// Everything the script runs, in order. The three `iptables*` sections are
/// the candidates of the backend choice (see `node::choose_backend`).
pub const STEPS: &[Step] = &[
    Step { name: "hostname", argv: &["cat", "/proc/sys/kernel/hostname"] },
    Step { name: "iptables-version", argv: &["iptables", "-V"] },
    Step { name: "iptables-legacy", argv: &["iptables-legacy-save", "-c"] },
    Step { name: "iptables-nft", argv: &["iptables-nft-save", "-c"] },
    Step { name: "iptables-default", argv: &["iptables-save", "-c"] },
    Step { name: "ipset-save", argv: &["ipset", "save"] },
    Step { name: "ip-route", argv: &["ip", "route", "show", "table", "all"] },
    Step { name: "ip-addr", argv: &["ip", "addr", "show"] },
    Step { name: "ip-rule", argv: &["ip", "rule", "show"] },
    Step { name: "sysctl", argv: &["sysctl", "net.ipv4"] },
    Step { name: "ip-link", argv: &["ip", "-d", "link", "show"] },
    Step { name: "ip-neigh", argv: &["ip", "neigh", "show"] },
    Step { name: "bridge-fdb", argv: &["bridge", "fdb", "show"] },
    Step { name: "ss-listen", argv: &["ss", "-tuln"] },
];

/// Quote `s` for a POSIX shell (single quotes; `'` as `'\''`).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The script for a run whose marker is `marker` (hex digits only).
pub fn script(marker: &str) -> String {
    let mut s = String::new();
    // `LC_ALL=C`: the tools' own words, untranslated. PATH: a node's sbin
    // directories, which a non-login shell may lack.
    let _ = writeln!(s, "export LC_ALL=C PATH=\"/usr/local/sbin:/usr/sbin:/sbin:$PATH\"");
    let _ = writeln!(s, "m={}", sh_quote(marker));
    for step in STEPS {
        let tool = step.argv.first().copied().unwrap_or("true");
        let argv: Vec<String> = step.argv.iter().map(|a| sh_quote(a)).collect();
        let _ = writeln!(
            s,
            "if command -v {tool} >/dev/null 2>&1; then \
printf '%s begin %s\\n' \"$m\" {name}; printf '%s begin %s\\n' \"$m\" {name} >&2; \
{cmd} </dev/null; rc=$?; \
printf '\\n%s end %s %s\\n' \"$m\" {name} \"$rc\"; printf '\\n%s end %s %s\\n' \"$m\" {name} \"$rc\" >&2; \
else printf '%s missing %s %s\\n' \"$m\" {name} {tool}; fi",
            tool = sh_quote(tool),
            name = sh_quote(step.name),
            cmd = argv.join(" "),
        );
    }
    let _ = writeln!(s, "printf '%s done\\n' \"$m\"");
    s
}

/// What one section of the script's output says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    /// The command ran: its output and exit code (`None`: not printed, the
    /// script was cut off).
    Ran { stdout: String, stderr: String, rc: Option<i32> },
    /// Its tool is not installed on the node.
    Missing { tool: String },
}

/// The sections of one run, by name, and whether the script got to its end.
#[derive(Debug, Default)]
pub struct Sections {
    /// By section name.
    pub by_name: BTreeMap<String, Section>,
    /// Whether the final `done` line was seen (else the run was cut off).
    pub complete: bool,
}

/// The body of every framed section of `text`: name → (text, rc).
/// Framed bodies by name (text, exit code), `missing` lines (name, tool), and
/// whether the final `done` line came.
type Frames = (BTreeMap<String, (String, Option<i32>)>, Vec<(String, String)>, bool);

fn frames(text: &str, marker: &str) -> Frames {
    let mut found = BTreeMap::new();
    let mut missing = Vec::new();
    let mut done = false;
    let begin = format!("{marker} begin ");
    let mut rest = text;
    // Each marker line at the start of a line, in turn.
    while let Some(at) = find_line_start(rest, marker) {
        let line_end = rest[at..].find('\n').map_or(rest.len(), |i| at + i);
        let line = &rest[at..line_end];
        let after = rest.get(line_end + 1..).unwrap_or("");
        if let Some(name) = line.strip_prefix(&begin) {
            let end = format!("\n{marker} end {name} ");
            match after.find(&end) {
                Some(e) => {
                    let body = &after[..e];
                    let tail = &after[e + end.len()..];
                    let rc_end = tail.find('\n').unwrap_or(tail.len());
                    let rc = tail[..rc_end].trim().parse::<i32>().ok();
                    found.insert(name.to_string(), (body.to_string(), rc));
                    rest = tail.get(rc_end + 1..).unwrap_or("");
                }
                None => {
                    // Cut off inside this section: keep what came.
                    found.insert(name.to_string(), (after.to_string(), None));
                    break;
                }
            }
        } else if let Some(m) = line.strip_prefix(&format!("{marker} missing ")) {
            let (name, tool) = m.split_once(' ').unwrap_or((m, ""));
            missing.push((name.to_string(), tool.to_string()));
            rest = after;
        } else {
            if line == format!("{marker} done") {
                done = true;
            }
            rest = after;
        }
    }
    (found, missing, done)
}

/// The byte offset of the first line of `text` that starts with `marker `
/// (or is `marker done`).
fn find_line_start(text: &str, marker: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text.get(from..)?.find(marker) {
        let at = from + i;
        if at == 0 || text.as_bytes().get(at - 1) == Some(&b'\n') {
            return Some(at);
        }
        from = at + marker.len();
    }
    None
}

/// Read the script's stdout and stderr.
pub fn read(stdout: &str, stderr: &str, marker: &str) -> Sections {
    let (outs, missing, complete) = frames(stdout, marker);
    let (errs, _, _) = frames(stderr, marker);
    let mut by_name = BTreeMap::new();
    for (name, (body, rc)) in outs {
        let err = errs.get(&name).map(|(e, _)| e.clone()).unwrap_or_default();
        by_name.insert(name, Section::Ran { stdout: body, stderr: err, rc });
    }
    for (name, tool) in missing {
        by_name.insert(name, Section::Missing { tool });
    }
    Sections { by_name, complete }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_script_frames_exact_bytes_and_tells_missing_tools() {
        let m = "np0123456789abcdef";
        let out = Command::new("sh").arg("-c").arg(script(m)).output().expect("sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let s = read(&stdout, &stderr, m);
        assert!(s.complete, "{stdout}");
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        assert_eq!(s.by_name.get("hostname"), Some(&Section::Ran { stdout: host, stderr: String::new(), rc: Some(0) }));
        assert_eq!(s.by_name.len(), STEPS.len(), "every step is either run or missing: {:?}", s.by_name.keys());
    }

    #[test]
    fn output_without_a_final_newline_comes_back_exact() {
        let m = "npfeed";
        let text =
            format!("{m} begin a\nx\ny\n{m} end a 0\n{m} begin b\n\n{m} end b 3\n{m} missing c ipset\n{m} done\n");
        let s = read(&text, "", m);
        assert_eq!(
            s.by_name.get("a"),
            Some(&Section::Ran { stdout: "x\ny".into(), stderr: String::new(), rc: Some(0) })
        );
        assert_eq!(
            s.by_name.get("b"),
            Some(&Section::Ran { stdout: String::new(), stderr: String::new(), rc: Some(3) })
        );
        assert_eq!(s.by_name.get("c"), Some(&Section::Missing { tool: "ipset".into() }));
        assert!(s.complete);
    }

    #[test]
    fn a_cut_off_run_keeps_what_came_and_says_so() {
        let m = "npfeed";
        let s = read(&format!("{m} begin a\npartial"), "", m);
        assert_eq!(
            s.by_name.get("a"),
            Some(&Section::Ran { stdout: "partial".into(), stderr: String::new(), rc: None })
        );
        assert!(!s.complete);
    }

    #[test]
    fn a_marker_inside_a_line_is_data() {
        let m = "npfeed";
        let s = read(&format!("{m} begin a\n-A X --comment \"{m} end a 0\"\n{m} end a 0\n{m} done\n"), "", m);
        assert_eq!(
            s.by_name.get("a"),
            Some(&Section::Ran {
                stdout: format!("-A X --comment \"{m} end a 0\""),
                stderr: String::new(),
                rc: Some(0)
            })
        );
    }
}
