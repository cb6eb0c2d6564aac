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

/// One verdict as the JSON report writes it.
fn verdict_value(v: &Verdict) -> serde_json::Value {
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
}

/// Every node's "defaults taken" lines, as `node: sentence`.
fn defaults_of(snap: &Snapshot) -> Vec<String> {
    snap.nodes.iter().flat_map(|n| n.defaults.iter().map(move |d| format!("{}: {d}", n.name))).collect()
}

/// The verdicts as JSON (`"schema": "natpath.check/1"`).
pub fn json(path: &str, snap: &Snapshot, verdicts: &[Verdict], empty: Option<&str>, exit: i32) -> String {
    document(path, defaults_of(snap), verdicts.iter().map(verdict_value).collect(), empty, exit)
}

fn document(path: &str, defaults: Vec<String>, vs: Vec<serde_json::Value>, empty: Option<&str>, exit: i32) -> String {
    let doc = serde_json::json!({
        "schema": SCHEMA,
        "snapshot": path,
        "verdicts": vs,
        "defaults": defaults,
        "exit": exit,
    });
    finish(doc, empty)
}

/// `doc` with `nothing_in_scope` when nothing was, as indented text.
fn finish(mut doc: serde_json::Value, empty: Option<&str>) -> String {
    if let (Some(why), Some(map)) = (empty, doc.as_object_mut()) {
        map.insert("nothing_in_scope".into(), serde_json::json!(why));
    }
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

/// The schema of one shard's output.
pub const SHARD_SCHEMA: &str = "natpath.shard/1";

/// What a sharded check writes (`natpath check --shard I/N`): its parts,
/// each with the verdict one run would merge, and what `natpath merge`
/// needs to check that the shards belong together. `index` counts from 1.
#[allow(clippy::too_many_arguments)]
pub fn shard(
    path: &str,
    snap: &Snapshot,
    (index, count): (usize, usize),
    names: &[&str],
    parts: &[crate::invariants::ShardPart],
    empty: Option<&str>,
    allow_empty: bool,
) -> String {
    let ps: Vec<serde_json::Value> = parts
        .iter()
        .map(|p| {
            let mut o = serde_json::json!({
                "invariant": p.invariant,
                "node": p.node,
                "verdict": verdict_value(&p.verdict),
            });
            if let (Some(why), Some(map)) = (&p.nothing, o.as_object_mut()) {
                map.insert("nothing".into(), serde_json::json!(why));
            }
            o
        })
        .collect();
    let doc = serde_json::json!({
        "schema": SHARD_SCHEMA,
        "snapshot": path,
        "shard": { "index": index, "count": count },
        "nodes": snap.nodes.len(),
        "invariants": names,
        "allow_empty": allow_empty,
        "defaults": defaults_of(snap),
        "parts": ps,
    });
    finish(doc, empty)
}

/// Merge the outputs of every shard of one sharded check (`(file, text)`,
/// in any order) into the `natpath.check/1` document and exit code one run
/// gives: each invariant's parts in node order, the first violation, else
/// every unknown reason once, else holds; times and counts added; notes in
/// node order, then the "nothing to check" note when no part had anything
/// to check. Fails, naming the file, when a document is not a shard, when
/// the shards are not of one check, or when one is missing or repeated.
pub fn merge(shards: &[(String, String)]) -> Result<(String, i32), String> {
    use serde_json::Value;
    let mut docs: Vec<(String, Value)> = Vec::new();
    for (file, text) in shards {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("{file}:{}:{}: {e}", e.line(), e.column()))?;
        if get(&v, "schema") != SHARD_SCHEMA {
            return Err(format!("{file}:1: expected a `{SHARD_SCHEMA}` document (natpath check --shard I/N)"));
        }
        docs.push((file.clone(), v));
    }
    let Some((first_file, first)) = docs.first() else { return Err("no shard given".into()) };
    let count = get(get(first, "shard"), "count").as_u64().ok_or_else(|| format!("{first_file}: no shard count"))?;
    let same = |k: &str, v: &Value| get(v, k) == get(first, k);
    let mut seen = vec![false; usize::try_from(count).unwrap_or(0)];
    for (file, v) in &docs {
        for k in ["snapshot", "nodes", "invariants", "allow_empty", "defaults"] {
            if !same(k, v) {
                return Err(format!("{file}: another check than {first_file}'s (its `{k}` differs)"));
            }
        }
        if get(get(v, "shard"), "count") != get(get(first, "shard"), "count") {
            return Err(format!(
                "{file}: cut into {} shards, {first_file} into {count}",
                get(get(v, "shard"), "count")
            ));
        }
        let i = get(get(v, "shard"), "index").as_u64().and_then(|i| usize::try_from(i).ok()).unwrap_or(0);
        match seen.get_mut(i.wrapping_sub(1)) {
            Some(s) if !*s => *s = true,
            Some(_) => return Err(format!("{file}: shard {i}/{count} is given twice")),
            None => return Err(format!("{file}: shard {i} is outside 1/{count}..{count}/{count}")),
        }
    }
    if let Some(k) = seen.iter().position(|s| !s) {
        return Err(format!("shard {}/{count} is missing", k + 1));
    }
    let names: Vec<String> = get(first, "invariants")
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let nodes = get(first, "nodes").as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // Every part a run of this check has, exactly once.
    let mut parts: Vec<(String, Option<usize>, Value)> = Vec::new();
    for (file, v) in &docs {
        for p in get(v, "parts").as_array().into_iter().flatten() {
            let inv = get(p, "invariant").as_str().unwrap_or_default().to_string();
            let node = get(p, "node").as_u64().and_then(|n| usize::try_from(n).ok());
            if parts.iter().any(|(i, n, _)| *i == inv && *n == node) {
                return Err(format!("{file}: the part {inv} on node {node:?} is in two shards"));
            }
            parts.push((inv, node, p.clone()));
        }
    }
    for (inv, node) in crate::invariants::shard_jobs(nodes, &name_refs) {
        if crate::invariants::NAMES.contains(&inv.as_str()) && !parts.iter().any(|(i, n, _)| *i == inv && *n == node) {
            return Err(format!("the part {inv} on node {node:?} is in no shard"));
        }
    }
    let mut verdicts: Vec<Value> = Vec::new();
    for name in &names {
        let mut mine: Vec<&(String, Option<usize>, Value)> = parts.iter().filter(|(i, _, _)| i == name).collect();
        if mine.is_empty() {
            continue;
        }
        mine.sort_by_key(|(_, n, _)| *n);
        verdicts.push(merge_parts(&mine));
    }
    let word = |v: &Value| get(v, "verdict").as_str().unwrap_or("unknown").to_string();
    let mut exit = if verdicts.iter().any(|v| word(v) == "violated") {
        1
    } else if verdicts.iter().any(|v| word(v) != "holds") {
        3
    } else {
        0
    };
    let empty = get(first, "nothing_in_scope").as_str();
    exit = crate::invariants::scope_exit(exit, empty, get(first, "allow_empty") == true);
    let defaults: Vec<String> = get(first, "defaults")
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let path = get(first, "snapshot").as_str().unwrap_or_default();
    Ok((document(path, defaults, verdicts, empty, exit), exit))
}

/// One invariant's parts, in node order, merged as one run merges them.
fn merge_parts(parts: &[&(String, Option<usize>, serde_json::Value)]) -> serde_json::Value {
    use serde_json::Value;
    let vs: Vec<&Value> = parts.iter().map(|(_, _, p)| get(p, "verdict")).collect();
    let Some(first) = vs.first() else { return Value::Null };
    let mut out = (*first).clone();
    let sum_f = |k: &str| vs.iter().map(|v| v[k].as_f64().unwrap_or(0.0)).sum::<f64>();
    let sum_u = |k: &str| vs.iter().map(|v| v[k].as_u64().unwrap_or(0)).sum::<u64>();
    let mut notes: Vec<Value> =
        vs.iter().flat_map(|v| get(v, "notes").as_array().cloned().unwrap_or_default()).collect();
    // The "nothing to check" note of the first part, when no part had anything.
    if parts.iter().all(|(_, _, p)| p.get("nothing").is_some()) {
        if let Some((_, _, p)) = parts.first() {
            notes.push(get(p, "nothing").clone());
        }
    }
    let violated = vs.iter().find(|v| get(v, "verdict") == "violated");
    let mut unknowns: Vec<String> = Vec::new();
    for v in &vs {
        if get(v, "verdict") == "unknown" {
            for l in get(v, "reason").as_str().unwrap_or_default().lines() {
                if !unknowns.iter().any(|u| u == l) {
                    unknowns.push(l.to_string());
                }
            }
        }
    }
    if let Some(map) = out.as_object_mut() {
        map.remove("reason");
        map.remove("counterexample");
        match violated {
            Some(v) => {
                map.insert("verdict".into(), "violated".into());
                map.insert("counterexample".into(), get(v, "counterexample").clone());
            }
            None if !unknowns.is_empty() => {
                map.insert("verdict".into(), "unknown".into());
                map.insert("reason".into(), unknowns.join("\n").into());
            }
            None => {
                map.insert("verdict".into(), "holds".into());
            }
        }
        map.insert("encode_ms".into(), sum_f("encode_ms").into());
        map.insert("solve_ms".into(), sum_f("solve_ms").into());
        map.insert("queries".into(), sum_u("queries").into());
        map.insert("settled_while_encoding".into(), sum_u("settled_while_encoding").into());
        map.insert("asked_again_exactly".into(), sum_u("asked_again_exactly").into());
        map.insert("notes".into(), Value::Array(notes));
    }
    out
}

/// `v.k`, or null when `v` has no `k` (never a panic, whatever the document).
fn get<'v>(v: &'v serde_json::Value, k: &str) -> &'v serde_json::Value {
    static NULL: serde_json::Value = serde_json::Value::Null;
    v.get(k).unwrap_or(&NULL)
}
