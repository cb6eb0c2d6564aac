//! The report of `natpath gate` as text: the verdict first, then what
//! decided it (invariants, contracts, changes), then the diff's details
//! (the JSON report, schema `natpath.gate/1`, is the serialised [`Gate`]).

use super::style::Style;
use crate::gate::Gate;
use std::fmt::Write as _;

/// The gate as text.
pub fn text(g: &Gate, style: Style) -> String {
    let mut o = String::new();
    let verdict = match g.verdict {
        "pass" => style.verdict("pass"),
        "fail" => style.verdict("fail"),
        v => style.verdict(v),
    };
    let _ = writeln!(o, "natpath gate {} {}: {verdict}", g.diff.before, g.diff.after);
    let failing: Vec<_> = g.invariants.iter().filter(|i| i.gate != "pass").collect();
    let pre: Vec<_> = g.invariants.iter().filter(|i| i.gate == "pass" && i.after != "holds").collect();
    let _ = writeln!(
        o,
        "  invariants: {} of {} hold on AFTER{}{}",
        g.invariants.iter().filter(|i| i.after == "holds").count(),
        g.invariants.len(),
        scope_words(g),
        if pre.is_empty() { String::new() } else { format!(" ({} already failed on BEFORE)", pre.len()) }
    );
    for i in failing.iter().chain(pre.iter()) {
        let _ = writeln!(
            o,
            "    {:<24} before {:<8} after {:<8} gate {}",
            i.invariant,
            i.before,
            i.after,
            style.verdict(i.gate)
        );
        if let Some(d) = &i.detail {
            for l in d.lines() {
                let _ = writeln!(o, "      {l}");
            }
        }
    }
    if let Some(f) = &g.contracts_file {
        let _ = writeln!(o, "  contracts ({f}): {} expectations", g.contracts.len());
        for c in &g.contracts {
            let _ = writeln!(o, "    {f}:{} {}: {}", c.line, c.name, style.verdict(c.verdict));
            if let Some(d) = &c.detail {
                let _ = writeln!(o, "      {d}");
            }
        }
    }
    let _ = writeln!(
        o,
        "  changes: {} Service port{} or port range{} changed, {} not allowed{}",
        g.changes.len(),
        if g.changes.len() == 1 { "" } else { "s" },
        if g.changes.len() == 1 { "" } else { "s" },
        g.changes.iter().filter(|c| c.gate == "fail").count(),
        if g.allow_changes { " (--allow-changes)" } else { "" }
    );
    for c in &g.changes {
        let Some(ch) = g.diff.changes.get(c.change) else { continue };
        let what = ch.label();
        let how = match (c.allowed_by, &g.contracts_file) {
            (Some(l), Some(f)) => format!("allowed by {f}:{l}"),
            _ if g.allow_changes => "allowed by --allow-changes".to_string(),
            _ => "not allowed by any [[allow]]".to_string(),
        };
        let _ = writeln!(o, "    {what} on {}: {} ({how})", ch.nodes.join(", "), style.verdict(c.gate));
    }
    if !g.diff.unknown.is_empty() {
        let _ = writeln!(o, "  {} entries of the diff are unknown", g.diff.unknown.len());
    }
    if let Some(why) = &g.nothing_in_scope {
        let _ = writeln!(o, "  {}: {why}", style.verdict("nothing in scope"));
    }
    o.push('\n');
    o.push_str(&super::diff::text(&g.diff, style));
    o
}

/// The gate as JSON.
pub fn json(g: &Gate) -> String {
    let mut s = serde_json::to_string_pretty(g).unwrap_or_default();
    s.push('\n');
    s
}

/// Where the invariants were checked, in words (empty for the whole
/// snapshots): ` where the change reaches (N queries meet the same rules
/// on both sides)`.
pub(crate) fn scope_words(g: &Gate) -> String {
    if g.invariants.iter().all(|i| i.scope == "whole") {
        return String::new();
    }
    let same: usize = g.invariants.iter().map(|i| i.same).sum();
    if same == 0 {
        return " (the change reaches every query)".into();
    }
    format!(" where the change reaches ({same} queries meet the same rules on both sides; --whole checks them too)")
}
