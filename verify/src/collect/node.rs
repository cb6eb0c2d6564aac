//! One node's dumps from the script's sections: the iptables backend the
//! node really uses, the files of the snapshot format, and the notes that
//! say what was chosen, what was missing and why.

use super::script::{Section, Sections};
use std::fmt;

/// Why a node could not be collected (exit 3: cannot run here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    /// The node.
    pub node: String,
    /// What went wrong, with the package to install when a tool is missing.
    pub reason: String,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}: {}", self.node, self.reason)
    }
}

/// The Debian package that brings a tool (named in errors).
pub fn package_of(tool: &str) -> &'static str {
    match tool {
        t if t.starts_with("iptables") => "iptables",
        "ipset" => "ipset",
        "ip" | "bridge" | "ss" => "iproute2",
        "sysctl" => "procps",
        _ => "coreutils",
    }
}

/// A node's collected files (snapshot file name → text) and notes.
#[derive(Debug, Default, Clone)]
pub struct NodeDumps {
    /// The node's hostname as the node reports it.
    pub hostname: Option<String>,
    /// `(file name, text)` in the snapshot format's order.
    pub files: Vec<(&'static str, String)>,
    /// What was chosen or missing, one line each.
    pub notes: Vec<String>,
}

/// One candidate ruleset and what it holds.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// `legacy`, `nft` or `default` (the `iptables-save` on the PATH).
    pub backend: &'static str,
    /// The dump.
    pub text: String,
    /// Rules (`-A` lines).
    pub rules: usize,
    /// Whether it declares kube-proxy's or Calico's chains.
    pub kube_or_calico: bool,
}

impl Candidate {
    fn new(backend: &'static str, text: String) -> Candidate {
        let mut rules = 0;
        let mut kube_or_calico = false;
        for l in text.lines() {
            // `iptables-save -c` puts `[packets:bytes] ` in front.
            let l = if l.starts_with('[') { l.split_once("] ").map_or(l, |(_, r)| r) } else { l };
            if l.starts_with("-A ") {
                rules += 1;
            }
            if l.starts_with(":KUBE-") || l.starts_with(":cali-") {
                kube_or_calico = true;
            }
        }
        Candidate { backend, text, rules, kube_or_calico }
    }
}

/// Pick the ruleset the node's kube-proxy and Calico program: the one
/// candidate that declares their chains; when both backends do, the one
/// with more rules, with a warning (the kernel runs both); when neither,
/// the one with more rules. `default` (plain `iptables-save`) is the same
/// ruleset as one of the two when they exist, so it is a candidate only
/// when neither `iptables-legacy-save` nor `iptables-nft-save` ran.
pub fn choose_backend(cands: Vec<Candidate>, notes: &mut Vec<String>) -> Option<Candidate> {
    let named: Vec<Candidate> = cands.iter().filter(|c| c.backend != "default").cloned().collect();
    let pool = if named.is_empty() { cands } else { named };
    let with_chains: Vec<&Candidate> = pool.iter().filter(|c| c.kube_or_calico).collect();
    let describe = |c: &Candidate| {
        format!("{} ({} rules{})", c.backend, c.rules, if c.kube_or_calico { ", kube-proxy/Calico chains" } else { "" })
    };
    let all: Vec<String> = pool.iter().map(describe).collect();
    let pick = match with_chains.as_slice() {
        [one] => Some((*one).clone()),
        [] => pool.iter().max_by_key(|c| c.rules).cloned(),
        many => {
            notes.push(format!(
                "warning: both iptables backends hold kube-proxy/Calico chains ({}); the kernel runs both, natpath \
                 models one: kept the one with more rules",
                many.iter().map(|c| describe(c)).collect::<Vec<_>>().join(", ")
            ));
            many.iter().max_by_key(|c| c.rules).map(|c| (*c).clone())
        }
    };
    if let Some(p) = &pick {
        notes.push(format!("iptables backend: {} (candidates: {})", p.backend, all.join(", ")));
        if !p.kube_or_calico {
            notes.push("warning: no kube-proxy or Calico chain in any iptables backend".to_string());
        }
    }
    pick
}

/// The dumps of the snapshot format from one node's sections.
pub fn dumps(node: &str, s: &Sections) -> Result<NodeDumps, NodeError> {
    let mut out = NodeDumps::default();
    let err = |reason: String| NodeError { node: node.to_string(), reason };
    if !s.complete {
        out.notes.push("warning: the collection was cut off before its end".to_string());
    }
    let ran = |name: &str| match s.by_name.get(name) {
        Some(Section::Ran { stdout, stderr, rc }) => Some((stdout.clone(), stderr.clone(), *rc)),
        _ => None,
    };
    if let Some((h, _, Some(0))) = ran("hostname") {
        out.hostname = Some(h.trim().to_string());
    }
    if let Some((v, _, _)) = ran("iptables-version") {
        out.notes.push(format!("iptables -V: {}", v.trim()));
    }
    let mut cands = Vec::new();
    let mut why_not = Vec::new();
    for (name, backend) in [("iptables-legacy", "legacy"), ("iptables-nft", "nft"), ("iptables-default", "default")] {
        match ran(name) {
            Some((text, _, Some(0))) => cands.push(Candidate::new(backend, text)),
            Some((_, e, rc)) => why_not.push(format!("{name}-save failed ({}): {}", rc_text(rc), first_line(&e))),
            None => {}
        }
    }
    let Some(chosen) = choose_backend(cands, &mut out.notes) else {
        let mut reason = "no iptables-save could run: install the package iptables".to_string();
        if !why_not.is_empty() {
            reason = format!("no iptables-save could run ({})", why_not.join("; "));
        }
        return Err(err(reason));
    };
    out.notes.extend(why_not);
    let uses_sets = chosen.text.lines().any(|l| l.contains("-A ") && l.contains(" -m set "));
    out.files.push(("iptables-save", chosen.text));
    for (file, required) in [
        ("ipset-save", uses_sets),
        ("ip-route", true),
        ("ip-addr", true),
        ("ip-rule", false),
        ("sysctl", false),
        ("ip-link", false),
        ("ip-neigh", false),
        ("bridge-fdb", false),
        ("ss-listen", false),
    ] {
        match s.by_name.get(file) {
            Some(Section::Ran { stdout, stderr, rc: Some(0) }) => {
                if !stderr.trim().is_empty() {
                    out.notes.push(format!("{file}: said on stderr: {}", first_line(stderr)));
                }
                out.files.push((file, stdout.clone()));
            }
            // `sysctl net.ipv4` exits 255 over the write-only keys it
            // cannot read (`route.flush`) yet prints every other key.
            Some(Section::Ran { stdout, stderr, rc }) if file == "sysctl" && !stdout.trim().is_empty() => {
                out.notes.push(format!("sysctl exited {}: {}", rc_text(*rc), first_line(stderr)));
                out.files.push((file, stdout.clone()));
            }
            Some(Section::Ran { stderr, rc, .. }) if required => {
                return Err(err(format!("`{file}` failed ({}): {}", rc_text(*rc), first_line(stderr))));
            }
            Some(Section::Ran { stderr, rc, .. }) => {
                out.notes.push(format!(
                    "{file}: not collected, the command failed ({}): {}",
                    rc_text(*rc),
                    first_line(stderr)
                ));
            }
            Some(Section::Missing { tool }) if required => {
                let why = if file == "ipset-save" { " (the rules use -m set)" } else { "" };
                return Err(err(format!("`{tool}` is not installed{why}: install the package {}", package_of(tool))));
            }
            Some(Section::Missing { tool }) => {
                out.notes
                    .push(format!("{file}: not collected, `{tool}` is not installed (package {})", package_of(tool)));
            }
            None if required => return Err(err(format!("`{file}` was not collected: the run was cut off"))),
            None => out.notes.push(format!("{file}: not collected: the run was cut off")),
        }
    }
    Ok(out)
}

fn rc_text(rc: Option<i32>) -> String {
    rc.map_or_else(|| "no exit code".to_string(), |c| format!("exit {c}"))
}

fn first_line(s: &str) -> String {
    let l = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let mut t: String = l.chars().take(200).collect();
    if t.is_empty() {
        t = "no message".to_string();
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(b: &'static str, t: &str) -> Candidate {
        Candidate::new(b, t.to_string())
    }

    #[test]
    fn the_backend_with_kube_chains_wins_over_a_bigger_one_without() {
        let legacy = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -j DROP\nCOMMIT\n";
        let nft = "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j RETURN\nCOMMIT\n";
        let mut notes = Vec::new();
        let c = choose_backend(vec![cand("legacy", legacy), cand("nft", nft), cand("default", legacy)], &mut notes);
        assert_eq!(c.map(|c| c.backend), Some("nft"));
        assert!(notes.iter().any(|n| n.starts_with("iptables backend: nft")), "{notes:?}");
    }

    #[test]
    fn both_backends_with_chains_warn() {
        let a = "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j RETURN\nCOMMIT\n";
        let b = "*nat\n:cali-nat-outgoing - [0:0]\nCOMMIT\n";
        let mut notes = Vec::new();
        let c = choose_backend(vec![cand("legacy", b), cand("nft", a)], &mut notes);
        assert_eq!(c.map(|c| c.backend), Some("nft"));
        assert!(notes.iter().any(|n| n.contains("both iptables backends")), "{notes:?}");
    }

    #[test]
    fn plain_iptables_save_is_used_only_alone() {
        let mut notes = Vec::new();
        let c = choose_backend(vec![cand("default", "*nat\nCOMMIT\n")], &mut notes);
        assert_eq!(c.map(|c| c.backend), Some("default"));
        assert!(notes.iter().any(|n| n.contains("no kube-proxy or Calico chain")), "{notes:?}");
    }
}

#[cfg(test)]
mod dump_tests {
    use super::*;
    use crate::collect::script::{Section, Sections};

    fn ran(text: &str) -> Section {
        Section::Ran { stdout: text.into(), stderr: String::new(), rc: Some(0) }
    }

    fn sections(missing: &[(&str, &str)]) -> Sections {
        let mut s = Sections { complete: true, ..Sections::default() };
        let rules = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [0:0]\n-A INPUT -m set --match-set x src -j KUBE-FIREWALL\nCOMMIT\n";
        for (name, text) in [
            ("iptables-nft", rules),
            ("ipset-save", "create x hash:ip\n"),
            ("ip-route", "default via 10.0.0.1 dev eth0\n"),
            ("ip-addr", "1: lo: <LOOPBACK,UP> mtu 65536\n"),
            ("ip-rule", ""),
            ("sysctl", ""),
            ("ip-link", ""),
            ("ip-neigh", ""),
            ("bridge-fdb", ""),
            ("ss-listen", ""),
        ] {
            s.by_name.insert(name.into(), ran(text));
        }
        for (name, tool) in missing {
            s.by_name.insert((*name).into(), Section::Missing { tool: (*tool).into() });
        }
        s
    }

    #[test]
    fn a_missing_required_tool_names_its_package_and_an_optional_one_is_a_note() {
        let e = dumps("n1", &sections(&[("ip-route", "ip")])).unwrap_err();
        assert_eq!(e.to_string(), "node n1: `ip` is not installed: install the package iproute2");
        // ipset is required because a rule uses -m set.
        let e = dumps("n1", &sections(&[("ipset-save", "ipset")])).unwrap_err();
        assert!(e.reason.contains("(the rules use -m set): install the package ipset"), "{e}");
        let d = dumps("n1", &sections(&[("sysctl", "sysctl"), ("ss-listen", "ss")])).unwrap();
        assert!(
            d.notes.iter().any(|n| n == "sysctl: not collected, `sysctl` is not installed (package procps)"),
            "{:?}",
            d.notes
        );
        assert!(d.files.iter().all(|(f, _)| *f != "sysctl" && *f != "ss-listen"));
        assert!(d.files.iter().any(|(f, _)| *f == "iptables-save"));
    }
}
