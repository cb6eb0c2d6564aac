//! The report of `natpath kernel-check`: what the kernel did with each
//! probe and how the model compares, as text (the JSON report, schema
//! `natpath.kernel-check/1`, is the serialised [`Report`]).

use super::style::Style;
use crate::kernel::{Difference, ProbeResult, Run};
use serde::Serialize;
use std::fmt::Write as _;

/// The schema name of `natpath kernel-check --format json`.
pub const SCHEMA: &str = "natpath.kernel-check/1";

/// One probe's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The probe, `FROM:IP:PORT/PROTO`.
    pub probe: String,
    /// `agree`, `differ`, or `not compared`.
    pub verdict: &'static str,
    /// What differs between the kernel and the model.
    pub differences: Vec<Difference>,
    /// Why the model did not trace the probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_error: Option<String>,
}

/// The JSON report.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// What the kernel did.
    pub kernel: &'a Run,
    /// Kernel against model, probe by probe.
    pub comparisons: &'a [Comparison],
}

/// The observations of one probe as text.
pub fn result_text(r: &ProbeResult) -> String {
    let mut o = String::new();
    let answer = r.answer_ms.map(|a| format!(", answer after {a:.1} ms")).unwrap_or_default();
    let _ =
        writeln!(o, "probe {}  (sent {} > {}; probe {:.1} ms{answer})", r.probe, r.sent.src, r.sent.dst, r.probe_ms);
    match r.delivered_to.as_slice() {
        [] => {
            let _ = writeln!(o, "  no pod received it");
        }
        pods => {
            for p in pods {
                let _ = writeln!(o, "  pod {} on {} received it: src {} dst {}", p.pod, p.node, p.src, p.dst);
            }
        }
    }
    match &r.reply {
        Some(x) => {
            let _ = writeln!(o, "  reply {} reached the sender: src {} dst {}", x.kind, x.src, x.dst);
        }
        None => {
            let _ = writeln!(o, "  no reply reached the sender");
        }
    }
    let _ = writeln!(o, "  rules that matched (counter deltas):");
    for d in &r.counters {
        let rule = d.rule.map(|n| format!("#{n}")).unwrap_or_else(|| "policy".into());
        let _ = writeln!(o, "    {:<6} {}/{} {rule} x{}  {}", d.node, d.table, d.chain, d.packets, d.text);
    }
    let _ = writeln!(o, "  new conntrack entries:");
    for n in &r.conntrack {
        for e in &n.entries {
            let _ = writeln!(o, "    {:<6} {}", n.node, e.summary());
        }
    }
    if !r.tunnel.is_empty() {
        let _ = writeln!(o, "  tunnel relay:");
        for t in &r.tunnel {
            let _ = writeln!(o, "    {:<6} {}", t.node, t.event);
        }
    }
    for n in &r.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    o
}

pub fn text(run: &Run, comparisons: &[Comparison], kernel_only: bool, style: Style) -> String {
    let mut o = String::new();
    let _ =
        writeln!(o, "kernel-check {} (setup {:.0} ms, teardown {:.0} ms)", run.snapshot, run.setup_ms, run.teardown_ms);
    for (r, c) in run.results.iter().zip(comparisons) {
        o.push('\n');
        o.push_str(&result_text(r));
        match (c.verdict, &c.model_error) {
            ("agree", _) => {
                let _ = writeln!(o, "  model: {}s", style.verdict("agree"));
            }
            (_, Some(e)) if !kernel_only => {
                let _ = writeln!(o, "  model: not compared: {e}");
            }
            (_, Some(_)) => {}
            _ => {
                let _ = writeln!(o, "  model: {} difference(s):", c.differences.len());
                for d in &c.differences {
                    let _ = writeln!(o, "    - {d}");
                }
            }
        }
    }
    if !run.notes.is_empty() {
        let _ = writeln!(o, "\nnotes:");
        for n in &run.notes {
            let _ = writeln!(o, "  - {n}");
        }
    }
    o
}
