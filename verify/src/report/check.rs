//! The report of `natpath check`: the verdicts as text for people and as
//! JSON (schema `natpath.check/1`, `schemas/natpath.check.v1.json`).

use super::style::Style;
use crate::invariants::{Outcome, Verdict};
use natpath_model::snapshot::Snapshot;
use std::time::Duration;

/// The schema name of the JSON report.
pub const SCHEMA: &str = "natpath.check/1";

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// How many notes per invariant the text report shows.
const TEXT_NOTES: usize = 5;

/// The verdicts as text: one line per invariant, then each counterexample.
pub fn text(path: &str, snap: &Snapshot, verdicts: &[Verdict], empty: Option<&str>, style: Style) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "natpath check {path}");
    for v in verdicts {
        let _ = writeln!(
            s,
            "  {:<24} {} encode {:>9}  solve {:>9}  ({} {}{}{})",
            v.name,
            style.verdict(&format!("{:<8}", v.outcome.word())),
            ms(v.encode),
            ms(v.solve),
            v.queries,
            if v.queries == 1 { "query" } else { "queries" },
            if v.folded > 0 { format!(", {} settled while encoding", v.folded) } else { String::new() },
            if v.refined > 0 { format!(", {} asked again exactly", v.refined) } else { String::new() }
        );
    }
    for v in verdicts {
        match &v.outcome {
            Outcome::Holds => {}
            Outcome::Unknown(why) => {
                let _ = writeln!(s, "\n{} is unknown:", v.name);
                for l in why.lines() {
                    let _ = writeln!(s, "  {l}");
                }
            }
            Outcome::Violated(cx) => {
                let _ = writeln!(s, "\n{} is violated: {}", v.name, cx.summary);
                let from = cx.from.as_deref().map(|f| format!(" from {f}")).unwrap_or_default();
                let _ = writeln!(s, "  packet: {}{from}, arriving at {} by {}", cx.packet, cx.node, cx.iface);
                for d in &cx.draws {
                    let _ = writeln!(s, "  draw: {} {} = {}", d.kind, d.rule, d.value);
                }
                if !cx.rules.is_empty() {
                    let _ = writeln!(s, "  rules (encoding):");
                    for r in &cx.rules {
                        let _ = writeln!(s, "    {r}");
                    }
                }
                let _ = writeln!(s, "  replay (model): {}", cx.replay.outcome);
                for st in &cx.replay.steps {
                    let _ = writeln!(s, "    {st}");
                }
            }
        }
        // A large cluster can have a note per Service: the text report shows
        // the first few (the JSON report has them all).
        for n in v.notes.iter().take(TEXT_NOTES) {
            let _ = writeln!(s, "  note ({}): {n}", v.name);
        }
        if v.notes.len() > TEXT_NOTES {
            let _ = writeln!(
                s,
                "  note ({}): and {} more like these (--format json lists them all)",
                v.name,
                v.notes.len() - TEXT_NOTES
            );
        }
    }
    let mut defaults = Vec::new();
    for n in &snap.nodes {
        for d in &n.defaults {
            defaults.push(format!("{}: {d}", n.name));
        }
    }
    if !defaults.is_empty() {
        let _ = writeln!(s, "\ndefaults used:");
        for d in defaults {
            let _ = writeln!(s, "  {d}");
        }
    }
    if let Some(why) = empty {
        let _ = writeln!(s, "\n{}: {why}", style.verdict("nothing in scope"));
    }
    s
}

/// The verdicts as JSON (`"schema": "natpath.check/1"`).
pub fn json(path: &str, snap: &Snapshot, verdicts: &[Verdict], empty: Option<&str>, exit: i32) -> String {
    let vs: Vec<serde_json::Value> = verdicts
        .iter()
        .map(|v| {
            let mut o = serde_json::json!({
                "invariant": v.name,
                "verdict": v.outcome.word(),
                "encode_ms": v.encode.as_secs_f64() * 1000.0,
                "solve_ms": v.solve.as_secs_f64() * 1000.0,
                "queries": v.queries,
                "settled_while_encoding": v.folded,
                "asked_again_exactly": v.refined,
                "notes": v.notes,
            });
            if let Some(map) = o.as_object_mut() {
                match &v.outcome {
                    Outcome::Holds => {}
                    Outcome::Unknown(why) => {
                        map.insert("reason".into(), serde_json::json!(why));
                    }
                    Outcome::Violated(cx) => {
                        map.insert("counterexample".into(), serde_json::to_value(cx).unwrap_or_default());
                    }
                }
            }
            o
        })
        .collect();
    let defaults: Vec<String> =
        snap.nodes.iter().flat_map(|n| n.defaults.iter().map(move |d| format!("{}: {d}", n.name))).collect();
    let mut doc = serde_json::json!({
        "schema": SCHEMA,
        "snapshot": path,
        "verdicts": vs,
        "defaults": defaults,
        "exit": exit,
    });
    if let (Some(why), Some(map)) = (empty, doc.as_object_mut()) {
        map.insert("nothing_in_scope".into(), serde_json::json!(why));
    }
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}
