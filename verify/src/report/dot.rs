//! A trace as a Graphviz DOT picture of the journey: one cluster per node,
//! one box per rule that took effect, edges in order, one colour per branch.

use natpath_model::trace::Trace;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Render a trace as DOT.
pub fn trace(t: &Trace) -> String {
    const COLOURS: [&str; 6] = ["black", "blue", "darkgreen", "red", "purple", "orange"];
    let mut out = String::from("digraph natpath {\n  rankdir=TB;\n  node [shape=box, fontsize=10];\n");
    let _ = writeln!(out, "  start [shape=ellipse, label=\"{} -> {}\"];", esc(&t.probe.from), esc(&t.probe.to));
    for (bi, b) in t.branches.iter().enumerate() {
        let colour = COLOURS.get(bi % COLOURS.len()).copied().unwrap_or("black");
        let mut prev = "start".to_string();
        for (si, s) in b.steps.iter().enumerate() {
            let id = format!("b{bi}s{si}");
            let rule = s.rule.map(|r| format!(" #{r}")).unwrap_or_else(|| " policy".into());
            match (s.hook, s.table) {
                (Some(hook), Some(table)) => {
                    let _ = writeln!(
                        out,
                        "  {id} [label=\"{}\\n{} {} {}{}\\n{}\"];",
                        esc(&s.node),
                        hook.chain(),
                        table.as_str(),
                        esc(&s.chain),
                        rule,
                        esc(&s.effect)
                    );
                }
                // A router hop.
                _ => {
                    let _ = writeln!(
                        out,
                        "  {id} [shape=diamond, label=\"router {}\\n{}\\n{}\"];",
                        esc(&s.node),
                        esc(&s.text),
                        esc(&s.effect)
                    );
                }
            }
            let _ = writeln!(out, "  {prev} -> {id} [color={colour}];");
            prev = id;
        }
        let end = format!("b{bi}end");
        let _ = writeln!(
            out,
            "  {end} [shape=ellipse, label=\"{} (p={})\"];",
            super::text::outcome_name(b.outcome),
            esc(&b.probability)
        );
        let _ = writeln!(out, "  {prev} -> {end} [color={colour}];");
    }
    out.push_str("}\n");
    out
}
