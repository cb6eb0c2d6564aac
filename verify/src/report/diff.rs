//! The report of `natpath diff`: the changes grouped by Service port, each
//! with one replayed packet per node, as text (the JSON report, schema
//! `natpath.diff/1`, is the serialised [`Diff`]).

use super::style::Style;
use crate::diff::Diff;
use std::fmt::Write as _;

/// The diff as text: one summary line, then each changed Service port
/// with its nodes, sources and packets, then what could not be decided.
pub fn text(d: &Diff, style: Style) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "natpath diff {} {}", d.before, d.after);
    let _ = writeln!(
        o,
        "  compared {} entries on {} nodes from {} ({} unchanged structurally, {} solver queries, {} settled while encoding)",
        d.scope.entries,
        d.scope.nodes.len(),
        if d.scope.sources.is_empty() { "no source".to_string() } else { d.scope.sources.join(", ") },
        d.scope.unchanged,
        d.scope.queries,
        d.scope.settled_while_encoding
    );
    if d.changes.is_empty() {
        let word = if d.exit_code() == 0 { style.verdict("holds") } else { style.verdict("unknown") };
        let _ = writeln!(o, "  no packet in scope meets another fate ({word})");
    } else {
        let nodes: std::collections::BTreeSet<&str> =
            d.changes.iter().flat_map(|c| c.nodes.iter().map(String::as_str)).collect();
        let _ = writeln!(
            o,
            "  {}: {} Service port{} or port range{} on {} of {} nodes",
            style.verdict("differ"),
            d.changes.len(),
            if d.changes.len() == 1 { "" } else { "s" },
            if d.changes.len() == 1 { "" } else { "s" },
            nodes.len(),
            d.scope.nodes.len()
        );
    }
    for c in &d.changes {
        let what = c.label();
        let _ = writeln!(o, "\n{what}: changed on {}, from {}", c.nodes.join(", "), c.sources.join(", "));
        for e in &c.examples {
            let _ = writeln!(o, "  packet on {}: {} from {}", e.node, e.packet, e.source);
            let _ = writeln!(o, "    before: {}", e.before);
            let _ = writeln!(o, "    after:  {}", e.after);
            for f in &e.before_fates {
                let _ = writeln!(o, "    model before: {f}");
            }
            for f in &e.after_fates {
                let _ = writeln!(o, "    model after:  {f}");
            }
            if !e.steps.is_empty() {
                let _ = writeln!(o, "    steps that differ ({} alike left out):", e.same_steps);
            }
            for r in &e.steps {
                let _ = writeln!(o, "      {r}");
            }
        }
    }
    if !d.unknown.is_empty() {
        let _ = writeln!(o, "\n{}:", style.verdict("unknown"));
        for u in &d.unknown {
            let _ = writeln!(o, "  {}: {}", u.entry, u.reason);
        }
    }
    for n in &d.notes {
        let _ = writeln!(o, "note: {n}");
    }
    if let Some(why) = &d.nothing_in_scope {
        let _ = writeln!(o, "\n{}: {why}", style.verdict("nothing in scope"));
    }
    o
}

/// The diff as JSON.
pub fn json(d: &Diff) -> String {
    let mut s = serde_json::to_string_pretty(d).unwrap_or_default();
    s.push('\n');
    s
}
