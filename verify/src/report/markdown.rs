//! The reports of `natpath gate` and `natpath diff` as GitHub-flavoured
//! Markdown, sized for a pull-request comment or a job summary
//! (`>> "$GITHUB_STEP_SUMMARY"`).
//!
//! The first line is the verdict, a bold status word (`PASS`, `FAIL`,
//! `UNKNOWN` for a gate; `UNCHANGED`, `CHANGED`, `UNKNOWN` for a diff) and
//! what decided it. Then tables: the invariants that do not hold on AFTER
//! (with a count of those that do), the contracts, the changes (Service
//! port, nodes, sources, and for a gate whether an `[[allow]]` covers it),
//! the entries natpath could not decide; then, for each change, its first
//! example in a collapsed `<details>` block: the packet, its fate on both
//! sides and the steps that differ as a `diff` code block.
//!
//! Contract: the document stays under [`LIMIT`] bytes however large the
//! diff (GitHub refuses comments over 65,536 characters): rows and blocks
//! that do not fit are left out, and a line says how many. Every table row
//! has as many cells as its header (pipes in cells are escaped), and every
//! `<details>` is closed.

use crate::diff::{Change, Diff, Example, Unknown};
use crate::gate::Gate;
use std::fmt::Write as _;

/// The most bytes a report holds.
pub const LIMIT: usize = 60 * 1024;

/// Room kept for the lines that say what was left out.
const RESERVE: usize = 4 * 1024;

/// The most characters of one table cell.
const MAX_CELL: usize = 400;

/// The document being written, within its budget.
struct Out {
    s: String,
}

impl Out {
    /// Append `piece` when it fits in the budget (less the reserve).
    fn fits(&mut self, piece: &str) -> bool {
        if self.s.len() + piece.len() + RESERVE <= LIMIT {
            self.s.push_str(piece);
            true
        } else {
            false
        }
    }

    /// Append `piece` from the reserve (the left-out lines): only while
    /// the whole stays under [`LIMIT`].
    fn force(&mut self, piece: &str) {
        if self.s.len() + piece.len() <= LIMIT {
            self.s.push_str(piece);
        }
    }

    /// A table: the header and as many rows as fit, then a line saying
    /// how many rows were left out.
    fn table(&mut self, head: &[&str], rows: &[Vec<String>], what: &str) {
        let mut t = format!("| {} |\n|", head.join(" | "));
        for _ in head {
            t.push_str(" --- |");
        }
        t.push('\n');
        let mut shown = 0;
        if self.fits(&t) {
            for r in rows {
                let mut cells: Vec<String> = r.iter().take(head.len()).cloned().collect();
                cells.resize(head.len(), String::new());
                if !self.fits(&format!("| {} |\n", cells.join(" | "))) {
                    break;
                }
                shown += 1;
            }
        }
        self.s.push('\n');
        let left = rows.len() - shown;
        if left > 0 {
            self.force(&format!(
                "_{left} more {what} left out to keep this report short; `--format json` has them all._\n\n"
            ));
        }
    }
}

/// The gate as Markdown.
pub fn gate(g: &Gate) -> String {
    let mut o = Out { s: String::new() };
    let newly = g.invariants.iter().filter(|i| i.gate == "fail").count();
    let unknown_inv = g.invariants.iter().filter(|i| i.gate == "unknown").count();
    let violated = g.contracts.iter().filter(|c| c.verdict == "violated").count();
    let unknown_con = g.contracts.iter().filter(|c| c.verdict == "unknown").count();
    let not_allowed = g.changes.iter().filter(|c| c.gate == "fail").count();
    let mut why: Vec<String> = Vec::new();
    for (n, one, many) in [
        (newly, "invariant fails", "invariants fail"),
        (unknown_inv, "invariant is unknown", "invariants are unknown"),
        (violated, "contract is violated", "contracts are violated"),
        (unknown_con, "contract is unknown", "contracts are unknown"),
        (not_allowed, "change is not allowed", "changes are not allowed"),
        (g.diff.unknown.len(), "entry of the diff is unknown", "entries of the diff are unknown"),
    ] {
        if n > 0 {
            why.push(format!("{n} {}", if n == 1 { one } else { many }));
        }
    }
    if let Some(empty) = &g.nothing_in_scope {
        why.push(format!("nothing in scope: {}", esc(empty)));
    }
    if why.is_empty() {
        why.push("every invariant and contract holds, and every change is allowed".into());
    }
    let _ = o.fits(&format!(
        "**natpath gate: {}**: {} to {}: {}.\n\n",
        g.verdict.to_uppercase(),
        code(&g.diff.before),
        code(&g.diff.after),
        why.join(", ")
    ));
    // Invariants.
    let holding = g.invariants.iter().filter(|i| i.after == "holds").count();
    let pre = g.invariants.iter().filter(|i| i.gate == "pass" && i.after != "holds").count();
    let mut count = format!("{holding} of {} hold on AFTER{}", g.invariants.len(), super::gate::scope_words(g));
    if newly > 0 {
        count.push_str(&format!("; {newly} fail{} the gate", if newly == 1 { "s" } else { "" }));
    }
    if unknown_inv > 0 {
        count.push_str(&format!("; {unknown_inv} {} unknown", if unknown_inv == 1 { "is" } else { "are" }));
    }
    if pre > 0 {
        count.push_str(&format!("; {pre} already failed on BEFORE (without `--strict`, that does not fail the gate)"));
    }
    let _ = o.fits(&format!("### Invariants\n\n{count}.\n\n"));
    let rows: Vec<Vec<String>> = g
        .invariants
        .iter()
        .filter(|i| i.after != "holds")
        .map(|i| {
            let mut detail = i.detail.clone().unwrap_or_default();
            if let Some(r) = i.rules.first() {
                detail.push_str(&format!("\nfirst rule: {r}"));
            }
            vec![code_cell(i.invariant), i.before.into(), i.after.into(), gate_word(i.gate), cell(&detail)]
        })
        .collect();
    if !rows.is_empty() {
        o.table(&["Invariant", "Before", "After", "Gate", "Detail"], &rows, "invariants");
    }
    // Contracts.
    match &g.contracts_file {
        None => {
            let _ = o.fits("### Contracts\n\nNo contracts file (`--contracts FILE`).\n\n");
        }
        Some(f) => {
            let _ = o.fits(&format!("### Contracts ({})\n\n", code(f)));
            if g.contracts.is_empty() {
                let _ = o.fits("No `[[expect]]` in the file.\n\n");
            } else {
                let rows: Vec<Vec<String>> = g
                    .contracts
                    .iter()
                    .map(|c| {
                        vec![
                            cell(&c.name),
                            code_cell(&format!("{f}:{}", c.line)),
                            gate_word(c.verdict),
                            cell(c.detail.as_deref().unwrap_or("")),
                        ]
                    })
                    .collect();
                o.table(&["Contract", "Where", "Verdict", "Detail"], &rows, "contracts");
            }
        }
    }
    // Changes.
    let _ = o.fits(&format!(
        "### Changes\n\n{} Service port{} or port range{} changed, {not_allowed} not allowed{}.\n\n",
        g.changes.len(),
        if g.changes.len() == 1 { "" } else { "s" },
        if g.changes.len() == 1 { "" } else { "s" },
        if g.allow_changes { " (`--allow-changes`)" } else { "" }
    ));
    let rows: Vec<Vec<String>> = g
        .changes
        .iter()
        .filter_map(|c| {
            let ch = g.diff.changes.get(c.change)?;
            let allowed = match (c.gate, c.allowed_by, &g.contracts_file) {
                ("fail", _, _) => "**no**".to_string(),
                (_, Some(l), Some(f)) => format!("yes, {}", code_cell(&format!("{f}:{l}"))),
                _ => "yes, `--allow-changes`".to_string(),
            };
            let mut row = change_cells(ch);
            row.push(allowed);
            Some(row)
        })
        .collect();
    if !rows.is_empty() {
        o.table(&["Service port", "Nodes", "Sources", "Allowed"], &rows, "changes");
    }
    unknown_table(&mut o, &g.diff.unknown);
    examples(&mut o, &g.diff.changes);
    o.s
}

/// The diff as Markdown.
pub fn diff(d: &Diff) -> String {
    let mut o = Out { s: String::new() };
    let word = match d.exit_code() {
        0 => "UNCHANGED",
        1 => "CHANGED",
        _ => "UNKNOWN",
    };
    let nodes: std::collections::BTreeSet<&str> =
        d.changes.iter().flat_map(|c| c.nodes.iter().map(String::as_str)).collect();
    let what = if d.changes.is_empty() {
        "no packet in scope meets another fate".to_string()
    } else {
        format!(
            "packets of {} Service port{} or port range{} on {} of {} nodes meet another fate",
            d.changes.len(),
            if d.changes.len() == 1 { "" } else { "s" },
            if d.changes.len() == 1 { "" } else { "s" },
            nodes.len(),
            d.scope.nodes.len()
        )
    };
    let mut unknown =
        if d.unknown.is_empty() { String::new() } else { format!(", {} entries unknown", d.unknown.len()) };
    if let Some(empty) = &d.nothing_in_scope {
        unknown.push_str(&format!("; nothing in scope: {}", esc(empty)));
    }
    let _ =
        o.fits(&format!("**natpath diff: {word}**: {} to {}: {what}{unknown}.\n\n", code(&d.before), code(&d.after)));
    let _ = o.fits(&format!(
        "Compared {} entries on {} nodes from {} ({} unchanged structurally, {} solver queries, {} settled while encoding).\n\n",
        d.scope.entries,
        d.scope.nodes.len(),
        if d.scope.sources.is_empty() { "no source".to_string() } else { esc(&d.scope.sources.join(", ")) },
        d.scope.unchanged,
        d.scope.queries,
        d.scope.settled_while_encoding
    ));
    if !d.changes.is_empty() {
        let _ = o.fits("### Changes\n\n");
        let rows: Vec<Vec<String>> = d.changes.iter().map(change_cells).collect();
        o.table(&["Service port", "Nodes", "Sources"], &rows, "changes");
    }
    unknown_table(&mut o, &d.unknown);
    examples(&mut o, &d.changes);
    if !d.notes.is_empty() && o.fits("### Notes\n\n") {
        let mut left = 0;
        for n in &d.notes {
            if !o.fits(&format!("- {}\n", esc(n))) {
                left += 1;
            }
        }
        o.s.push('\n');
        if left > 0 {
            o.force(&format!("_{left} more notes left out._\n\n"));
        }
    }
    o.s
}

/// Service port, nodes and sources of a change, as cells.
fn change_cells(ch: &Change) -> Vec<String> {
    let what = cell(&ch.label());
    vec![what, cell(&ch.nodes.join(", ")), cell(&ch.sources.join(", "))]
}

fn unknown_table(o: &mut Out, unknown: &[Unknown]) {
    if unknown.is_empty() {
        return;
    }
    let _ = o.fits(&format!(
        "### Unknown\n\nnatpath could not decide {} entr{} of the diff: they are not a pass.\n\n",
        unknown.len(),
        if unknown.len() == 1 { "y" } else { "ies" }
    ));
    let rows: Vec<Vec<String>> = unknown.iter().map(|u| vec![cell(&u.entry), cell(&u.reason)]).collect();
    o.table(&["Entry", "Why"], &rows, "unknown entries");
}

/// The first example of each change, collapsed.
fn examples(o: &mut Out, changes: &[Change]) {
    let firsts: Vec<(&Change, &Example)> = changes.iter().filter_map(|c| c.examples.first().map(|e| (c, e))).collect();
    if firsts.is_empty() {
        return;
    }
    let _ = o.fits("### Examples\n\nThe first packet of each change, replayed in the model on both sides.\n\n");
    let mut left = 0;
    for (c, e) in firsts {
        if !o.fits(&details(c, e)) {
            left += 1;
        }
    }
    if left > 0 {
        o.force(&format!(
            "_{left} more examples left out to keep this report short; `--format json` has them all._\n\n"
        ));
    }
}

/// One example in a `<details>` block.
fn details(c: &Change, e: &Example) -> String {
    let what = c.label();
    let mut b = String::new();
    let _ = writeln!(b, "<details><summary>{} on {}: {}</summary>\n", html(&what), html(&e.node), html(&e.packet));
    let _ = writeln!(b, "Packet {} sent to {} by {}.\n", code(&e.packet), code(&e.node), esc(&e.source));
    let _ = writeln!(b, "- **Before:** {}", esc(&one_line(&e.before)));
    let _ = writeln!(b, "- **After:** {}", esc(&one_line(&e.after)));
    for f in &e.before_fates {
        let _ = writeln!(b, "- model, before: {}", esc(&one_line(f)));
    }
    for f in &e.after_fates {
        let _ = writeln!(b, "- model, after: {}", esc(&one_line(f)));
    }
    b.push('\n');
    if !e.steps.is_empty() {
        let _ = writeln!(b, "Steps that differ ({} alike left out):\n", e.same_steps);
        let lines: Vec<String> = e
            .steps
            .iter()
            .map(|s| {
                let s = one_line(s);
                if s.starts_with("- ") || s.starts_with("+ ") {
                    s
                } else {
                    format!("  {s}")
                }
            })
            .collect();
        let body = lines.join("\n");
        let fence = "`".repeat(longest_run(&body, '`').max(2) + 1);
        let _ = writeln!(b, "{fence}diff\n{body}\n{fence}\n");
    }
    if !e.rules.is_empty() {
        b.push_str("Rules:\n\n");
        for r in &e.rules {
            let _ = writeln!(b, "- {} ({}): {}", code(&format!("{}:{}", r.file, r.line)), r.side, code(&r.text));
        }
        b.push('\n');
    }
    b.push_str("</details>\n\n");
    b
}

fn gate_word(w: &str) -> String {
    match w {
        "fail" | "violated" | "unknown" => format!("**{w}**"),
        w => w.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Escape Markdown's inline syntax (GitHub accepts a backslash before any
/// ASCII punctuation).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '|' | '~' | '&' | '#') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// A table cell: escaped, on one line (`<br>` between lines), at most
/// [`MAX_CELL`] characters of the text.
fn cell(s: &str) -> String {
    let mut t: String = s.chars().take(MAX_CELL).collect();
    if t.len() < s.len() {
        t.push_str("...");
    }
    t.trim_end().lines().map(esc).collect::<Vec<_>>().join("<br>")
}

/// Code in a table cell (pipes escaped, which GitHub reads inside code
/// spans of tables too).
fn code_cell(s: &str) -> String {
    let t: String = one_line(s).chars().take(MAX_CELL).collect();
    code(&t).replace('|', "\\|")
}

/// A code span that holds `s` whatever backticks it has.
fn code(s: &str) -> String {
    let s = one_line(s);
    let fence = "`".repeat(longest_run(&s, '`') + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// Text inside HTML (the `<summary>`).
fn html(s: &str) -> String {
    one_line(s).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for x in s.chars() {
        run = if x == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::diff::{RuleAt, Scope};

    fn example(i: usize) -> Example {
        Example {
            node: format!("node{i}"),
            source: "outside client `client`".into(),
            packet: format!("tcp 10.0.0.53:1 -> 10.0.0.51:{i}"),
            before: "delivered | to <pod>".into(),
            after: "dropped ```".into(),
            before_fates: vec!["delivered (probability 1)".into()],
            after_fates: vec!["dropped (probability 1)".into()],
            steps: (0..20)
                .map(|k| format!("{} node1: PREROUTING nat X: rule {k} | ```x```", ["-", "+"][k % 2]))
                .collect(),
            same_steps: 3,
            rules: vec![RuleAt {
                side: "before",
                file: "a/nodes/node1/iptables-save".into(),
                line: 163,
                text: "-A KUBE-NODEPORTS -j KUBE-MARK-MASQ".into(),
            }],
        }
    }

    fn huge() -> Diff {
        Diff {
            schema: crate::diff::SCHEMA,
            before: "a".into(),
            after: "b".into(),
            scope: Scope { nodes: vec!["node1".into()], ..Scope::default() },
            changes: (0..5000)
                .map(|i| Change {
                    service: Some(format!("default/svc-{i}|x:80")),
                    pod: None,
                    entry: "nodeport",
                    address: None,
                    proto: "tcp".into(),
                    port: Some(30000),
                    nodes: vec!["node1".into()],
                    sources: vec!["outside client `client`".into()],
                    examples: vec![example(i)],
                })
                .collect(),
            unknown: (0..3000)
                .map(|i| Unknown { entry: format!("node1 other tcp ports {i}"), reason: "timeout".into() })
                .collect(),
            notes: vec!["a note".into()],
            nothing_in_scope: None,
            allow_empty: false,
        }
    }

    /// The cells of a table row, split at unescaped pipes.
    fn cells(row: &str) -> usize {
        let mut n = 0;
        let mut prev = ' ';
        for c in row.chars() {
            if c == '|' && prev != '\\' {
                n += 1;
            }
            prev = c;
        }
        n - 1
    }

    fn well_formed(md: &str) {
        let mut width = None;
        for l in md.lines() {
            if l.starts_with('|') {
                let w = cells(l);
                assert_eq!(*width.get_or_insert(w), w, "row {l}");
            } else {
                width = None;
            }
        }
        assert_eq!(md.matches("<details>").count(), md.matches("</details>").count());
    }

    #[test]
    fn a_huge_diff_stays_under_the_limit_and_says_what_it_left_out() {
        let md = diff(&huge());
        assert!(md.len() <= LIMIT, "{}", md.len());
        assert!(md.starts_with("**natpath diff: CHANGED**"));
        assert!(md.contains("more changes left out"), "{md}");
        assert!(md.contains("more unknown entries left out"));
        assert!(md.contains("more examples left out"));
        well_formed(&md);
    }

    #[test]
    fn a_few_changes_show_whole() {
        let mut d = huge();
        d.changes.truncate(2);
        d.unknown.clear();
        let md = diff(&d);
        well_formed(&md);
        assert!(!md.contains("left out to keep"), "{md}");
        assert_eq!(md.matches("<details>").count(), 2);
        assert!(md.contains("````diff\n- node1"), "{md}");
    }
}
