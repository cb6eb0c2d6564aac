//! The report of `natpath gate` as SARIF 2.1.0, for code-scanning views
//! (GitHub code scanning, GitLab, Azure DevOps, IDE viewers) that annotate
//! the lines of the files responsible.
//!
//! One run of the tool `natpath`, whose rules are the invariants of the
//! catalog, `changed-fate` (packets of a Service port meet another fate)
//! and `contract` (an `[[expect]]` of the contracts file). Results:
//!
//! - `error` for every item that fails the gate: an invariant newly
//!   violated on AFTER (or any violation with `--strict`), a violated
//!   contract, a change no `[[allow]]` covers;
//! - `warning` for every item that is unknown (an invariant or contract
//!   natpath cannot decide, an entry of the diff it cannot compare): the
//!   gate is not a pass, and a reviewer must look;
//! - `note` for what is reported but passes: an invariant that already
//!   failed on BEFORE (without `--strict`), a change an `[[allow]]` (or
//!   `--allow-changes`) covers.
//!
//! Each result is located at the dump file and line of the rules
//! responsible: for a change, the rules of the steps its examples take on
//! one side only (on BEFORE's dump for a rule AFTER no longer takes, on
//! AFTER's for a rule it newly takes); for an invariant, the rules of the
//! AFTER counterexample; for a contract, its `[[expect]]` line in the
//! contracts file. Where no rule is known (an unknown entry whose reason
//! names none), the result points at the node's `iptables-save` in AFTER,
//! or at AFTER's `cluster.toml`, so that every result has a location.
//! Paths are relative as given on the command line (`uriBaseId`
//! `%SRCROOT%`, the directory natpath ran in); absolute paths become
//! `file://` URIs.

use crate::diff::{Change, Example};
use crate::gate::Gate;
use serde::Serialize;

/// The `$schema` of the document.
pub const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The base of relative paths: where natpath ran.
const SRCROOT: &str = "%SRCROOT%";

/// The most locations one result carries.
const MAX_LOCATIONS: usize = 32;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Log {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<Run>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    tool: Tool,
    invocations: Vec<Invocation>,
    results: Vec<SResult>,
    properties: RunProperties,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunProperties {
    before: String,
    after: String,
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    contracts: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    execution_successful: bool,
    exit_code: i32,
}

#[derive(Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    version: &'static str,
    semantic_version: &'static str,
    information_uri: &'static str,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: String,
    name: String,
    short_description: Text,
    full_description: Text,
    help: Text,
    default_configuration: Config,
}

#[derive(Serialize)]
struct Config {
    level: &'static str,
}

#[derive(Serialize, Clone)]
struct Text {
    text: String,
}

fn msg(s: impl Into<String>) -> Text {
    Text { text: s.into() }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SResult {
    rule_id: String,
    rule_index: usize,
    level: &'static str,
    message: Text,
    locations: Vec<Location>,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: Physical,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Text>,
}

#[derive(Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Physical {
    artifact_location: Artifact,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<Region>,
}

#[derive(Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Artifact {
    uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_base_id: Option<&'static str>,
}

#[derive(Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: u64,
}

/// What each rule is about, for its descriptor.
fn describe(rule: &str) -> &'static str {
    match rule {
        "masq-iff-mark" => {
            "A NodePort packet a node DNATs is masqueraded on that node exactly when kube-proxy's masquerade bit is set as it enters nat POSTROUTING."
        }
        "reply-finds-origin" => {
            "The answer of every delivered connection goes back through the nodes holding its NAT bindings and reaches the client from the address and port it connected to."
        }
        "mark-survives" => {
            "The masquerade bit set in nat PREROUTING is still set when the packet enters nat POSTROUTING on the same node."
        }
        "forward-only" => "NodePort traffic from outside the node is forwarded after DNAT, never delivered to INPUT.",
        "nodeport-reachable" => {
            "Every NodePort on every node address reaches an endpoint of its Service; a Service without endpoints rejects, never drops silently."
        }
        "local-preserves-source" => {
            "An externalTrafficPolicy: Local Service keeps the client's source address and goes only to an endpoint on the node."
        }
        "fair-balancing" => "Each of a Service's n endpoints gets probability 1/n of new connections.",
        "no-pod-masquerade" => "Traffic from one pod to another pod is never masqueraded or SNATed on any node it crosses.",
        "hairpin-masquerade" => {
            "A pod that reaches its own Service and is sent back to itself is masqueraded, so that its answer returns through the node."
        }
        "changed-fate" => {
            "Packets of a Service port (or of the ports no Service declares) meet another fate after the change than before, and no [[allow]] of the contracts covers it."
        }
        "contract" => "An [[expect]] of the contracts file does not hold on AFTER for every packet it covers.",
        "nothing-in-scope" => {
            "No node's rules of a side define a Kubernetes Service, so the gate's pass would rest on nothing checked."
        }
        _ => "An invariant of natpath's catalog.",
    }
}

fn help(rule: &str) -> String {
    match rule {
        "changed-fate" => "See `natpath diff BEFORE AFTER` for every changed packet; allow a meant change with an [[allow]] entry of the contracts file (docs/contracts.md), or pass --allow-changes.".into(),
        "contract" => "The contracts format is in docs/contracts.md.".into(),
        "nothing-in-scope" => "Collect each iptables-save from the backend its node uses (docs/snapshot-format.md), or pass --allow-empty.".into(),
        r => format!("See docs/invariants.md#{r}; `natpath check AFTER --invariant {r}` prints the counterexample replayed in the model."),
    }
}

/// The gate as SARIF 2.1.0.
pub fn gate(g: &Gate) -> String {
    let mut ids: Vec<String> = crate::invariants::NAMES.iter().map(|s| s.to_string()).collect();
    for i in &g.invariants {
        if !ids.iter().any(|x| x == i.invariant) {
            ids.push(i.invariant.to_string());
        }
    }
    ids.push("changed-fate".into());
    ids.push("contract".into());
    if g.nothing_in_scope.is_some() {
        ids.push("nothing-in-scope".into());
    }
    let rules: Vec<Rule> = ids
        .iter()
        .map(|id| Rule {
            id: id.clone(),
            name: camel(id),
            short_description: msg(describe(id)),
            full_description: msg(describe(id)),
            help: msg(help(id)),
            default_configuration: Config { level: "error" },
        })
        .collect();
    let index = |id: &str| ids.iter().position(|x| x == id).unwrap_or(0);
    let mut results = Vec::new();
    for i in &g.invariants {
        let level = match i.gate {
            "fail" => "error",
            "pass" if i.after == "holds" => continue,
            "pass" => "note",
            _ => "warning",
        };
        let detail = i.detail.clone().unwrap_or_default();
        let text = match level {
            "error" => format!("{} is {} on AFTER (it {} on BEFORE): {detail}", i.invariant, i.after, was(i.before)),
            "note" => format!(
                "{} is {} on AFTER, and already was on BEFORE ({}); it fails the gate only with --strict: {detail}",
                i.invariant, i.after, i.before
            ),
            _ => format!("natpath cannot tell whether {} holds on AFTER: {detail}", i.invariant),
        };
        let mut locations: Vec<Location> = i.rules.iter().filter_map(|r| rule_location(r)).collect();
        if locations.is_empty() {
            locations = mentioned(&detail, g);
        }
        if locations.is_empty() {
            locations.push(fallback(g, &detail));
        }
        results.push(SResult {
            rule_id: i.invariant.to_string(),
            rule_index: index(i.invariant),
            level,
            message: msg(text),
            locations: cap(locations),
        });
    }
    let file = g.contracts_file.clone().unwrap_or_default();
    for c in &g.contracts {
        let level = match c.verdict {
            "holds" => continue,
            "violated" => "error",
            _ => "warning",
        };
        let detail = c.detail.clone().unwrap_or_default();
        let text = if level == "error" {
            format!("The contract `{}` does not hold on AFTER: {detail}", c.name)
        } else {
            format!("natpath cannot tell whether the contract `{}` holds on AFTER: {detail}", c.name)
        };
        let at = location(&file, Some(c.line as u64), Some(format!("[[expect]] `{}`", c.name)));
        results.push(SResult {
            rule_id: "contract".into(),
            rule_index: index("contract"),
            level,
            message: msg(text),
            locations: vec![at],
        });
    }
    for c in &g.changes {
        let Some(ch) = g.diff.changes.get(c.change) else { continue };
        let (level, why) = match (c.gate, c.allowed_by) {
            ("fail", _) => ("error", "no [[allow]] of the contracts covers it".to_string()),
            (_, Some(l)) => ("note", format!("allowed by the [[allow]] at {file}:{l}")),
            _ => ("note", "allowed by --allow-changes".to_string()),
        };
        let mut text = format!(
            "{}: packets from {} meet another fate on {} ({why}).",
            what(ch),
            ch.sources.join(", "),
            ch.nodes.join(", ")
        );
        for e in &ch.examples {
            text.push_str(&format!(" {}: {}: before: {}; after: {}.", e.node, e.packet, e.before, e.after));
        }
        let mut locations: Vec<Location> = Vec::new();
        for e in &ch.examples {
            for l in example_locations(e) {
                if !locations.iter().any(|x| x.physical_location == l.physical_location) {
                    locations.push(l);
                }
            }
        }
        if locations.is_empty() {
            locations = ch.nodes.iter().map(|n| node_dump(g, n)).collect();
        }
        if locations.is_empty() {
            locations.push(fallback(g, ""));
        }
        results.push(SResult {
            rule_id: "changed-fate".into(),
            rule_index: index("changed-fate"),
            level,
            message: msg(text),
            locations: cap(locations),
        });
    }
    for u in &g.diff.unknown {
        let mut locations = mentioned(&u.reason, g);
        if locations.is_empty() {
            locations.push(fallback(g, &u.entry));
        }
        results.push(SResult {
            rule_id: "changed-fate".into(),
            rule_index: index("changed-fate"),
            level: "warning",
            message: msg(format!("natpath cannot tell whether packets of {} meet another fate: {}", u.entry, u.reason)),
            locations: cap(locations),
        });
    }
    if let Some(why) = &g.nothing_in_scope {
        // A warning while it makes the gate unknown; a note once
        // `--allow-empty` accepted it.
        let level = if g.diff.allow_empty { "note" } else { "warning" };
        results.push(SResult {
            rule_id: "nothing-in-scope".into(),
            rule_index: index("nothing-in-scope"),
            level,
            message: msg(format!("nothing in scope: {why}")),
            locations: vec![fallback(g, "")],
        });
    }
    let log = Log {
        schema: SCHEMA_URI,
        version: "2.1.0",
        runs: vec![Run {
            tool: Tool {
                driver: Driver {
                    name: "natpath",
                    version: env!("CARGO_PKG_VERSION"),
                    semantic_version: env!("CARGO_PKG_VERSION"),
                    information_uri: "https://natpath.dev/",
                    rules,
                },
            },
            invocations: vec![Invocation { execution_successful: true, exit_code: g.exit }],
            results,
            properties: RunProperties {
                before: g.diff.before.clone(),
                after: g.diff.after.clone(),
                verdict: g.verdict,
                contracts: g.contracts_file.clone(),
            },
        }],
    };
    let mut s = serde_json::to_string_pretty(&log).unwrap_or_default();
    s.push('\n');
    s
}

fn was(word: &str) -> &'static str {
    match word {
        "holds" => "held",
        "violated" => "was violated",
        _ => "was unknown",
    }
}

/// `nodeport-reachable` → `NodeportReachable` (SARIF's rule names are
/// identifiers).
fn camel(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

fn cap(mut v: Vec<Location>) -> Vec<Location> {
    v.truncate(MAX_LOCATIONS);
    v
}

/// A change's name, as in the text report.
fn what(ch: &Change) -> String {
    ch.label()
}

/// The rules of an example's differing steps.
fn example_locations(e: &Example) -> Vec<Location> {
    e.rules
        .iter()
        .map(|r| {
            let what = if r.side == "before" { "taken on BEFORE only" } else { "taken on AFTER only" };
            location(&r.file, Some(u64::from(r.line)), Some(format!("{}: {what}: {}", e.node, r.text)))
        })
        .collect()
}

/// A location at `file` (and `line`).
fn location(file: &str, line: Option<u64>, message: Option<String>) -> Location {
    Location {
        physical_location: Physical {
            artifact_location: artifact(file),
            region: line.filter(|l| *l > 0).map(|start_line| Region { start_line }),
        },
        message: message.map(msg),
    }
}

/// A path as an artifact location: relative to `%SRCROOT%`, or a
/// `file://` URI when absolute.
fn artifact(path: &str) -> Artifact {
    if path.starts_with('/') {
        Artifact { uri: format!("file://{}", encode(path)), uri_base_id: None }
    } else {
        Artifact { uri: encode(path), uri_base_id: Some(SRCROOT) }
    }
}

/// Percent-encode what a URI path cannot hold (`:` too, which would read
/// as a scheme in a relative reference).
fn encode(path: &str) -> String {
    let mut o = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'/'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b'@' => o.push(char::from(b)),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// `FILE:LINE` at the start of `s`, when `s` reads `FILE:LINE (...)` or
/// `FILE:LINE` alone, and the rest.
fn split_file_line(s: &str) -> Option<(&str, u64, &str)> {
    // The first `:DIGITS` followed by a space or the end.
    let mut found = None;
    for (i, _) in s.match_indices(':') {
        let rest = s.get(i + 1..)?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            continue;
        }
        let after = rest.get(digits..)?;
        if after.is_empty() || after.starts_with(' ') {
            let line: u64 = rest.get(..digits)?.parse().ok()?;
            found = Some((s.get(..i)?, line, after.trim_start()));
            break;
        }
    }
    found.filter(|(f, _, _)| !f.is_empty())
}

/// An invariant counterexample's rule: `FILE:LINE (TABLE CHAIN rule N) EFFECT`.
fn rule_location(r: &str) -> Option<Location> {
    let (file, line, rest) = split_file_line(r)?;
    Some(location(file, Some(line), Some(if rest.is_empty() { r.to_string() } else { rest.to_string() })))
}

/// The `FILE:LINE` places a reason names in one of the two snapshots.
fn mentioned(reason: &str, g: &Gate) -> Vec<Location> {
    let mut out: Vec<Location> = Vec::new();
    let roots = [g.diff.before.trim_end_matches('/'), g.diff.after.trim_end_matches('/')];
    for line in reason.lines() {
        for root in roots.iter().filter(|r| !r.is_empty()) {
            let prefix = format!("{root}/");
            for (i, _) in line.match_indices(prefix.as_str()) {
                // A path starts the line or follows a space or `(`.
                let ok = i == 0 || line.get(..i).is_some_and(|b| b.ends_with(' ') || b.ends_with('('));
                let Some(tail) = line.get(i..) else { continue };
                if !ok {
                    continue;
                }
                if let Some((file, n, _)) = split_file_line(tail).filter(|(f, _, _)| !f.contains(' ')) {
                    let l = location(file, Some(n), Some(line.to_string()));
                    if !out.iter().any(|x| x.physical_location == l.physical_location) {
                        out.push(l);
                    }
                }
            }
        }
    }
    out
}

/// The AFTER dump of a node.
fn node_dump(g: &Gate, node: &str) -> Location {
    let root = g.diff.after.trim_end_matches('/');
    location(&format!("{root}/nodes/{node}/iptables-save"), None, None)
}

/// Where to point when no rule is known: the node the text starts with
/// (`node1 NodePort ...`) in AFTER, else AFTER's `cluster.toml`.
fn fallback(g: &Gate, about: &str) -> Location {
    let first = about.split(' ').next().unwrap_or("");
    if g.diff.scope.nodes.iter().any(|n| n == first) {
        return node_dump(g, first);
    }
    let root = g.diff.after.trim_end_matches('/');
    location(&format!("{root}/cluster.toml"), None, None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_rule_places() {
        let (f, l, r) =
            split_file_line("corpus/x/nodes/node1/iptables-save:40 (raw cali-PREROUTING rule 1) mark").unwrap();
        assert_eq!((f, l, r), ("corpus/x/nodes/node1/iptables-save", 40, "(raw cali-PREROUTING rule 1) mark"));
        assert_eq!(split_file_line("a:b:7").map(|x| (x.0, x.1)), Some(("a:b", 7)));
        assert!(split_file_line("default/nginx:8080-80").is_none());
        assert!(split_file_line(":12 x").is_none());
    }

    #[test]
    fn encodes_paths_as_uri_references() {
        assert_eq!(encode("corpus/a b/x:y%"), "corpus/a%20b/x%3Ay%25");
        assert_eq!(artifact("/tmp/é").uri, "file:///tmp/%C3%A9");
        assert_eq!(artifact("corpus/x").uri_base_id, Some(SRCROOT));
        assert_eq!(camel("nodeport-reachable"), "NodeportReachable");
    }
}
