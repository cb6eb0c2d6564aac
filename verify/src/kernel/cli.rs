//! `natpath kernel-check SNAPSHOT [--probe FROM:IP:PORT/PROTO]...`: run the
//! probes on the real kernel, trace them with the model, print both and
//! every difference (the arguments are defined in `crate::cli`, the
//! reports in `crate::report::kernel`).
//!
//! Contract: exit 0 when kernel and model agree on every probe (or with
//! `--kernel-only`, when the kernel run succeeded), 1 on any difference,
//! 2 on bad input or usage, 3 when this machine cannot run the harness or
//! the model could not trace a probe (nothing was compared). Without
//! `--probe`, the snapshot's `probes` file (one probe per line, `#`
//! comments) is used. Output is text, or one JSON document with
//! `--format json` (schema `natpath.kernel-check/1`).

use super::{compare, KernelError, Options, Probe};
use crate::cli::{Format, KernelCheckArgs, Ui};
use crate::report::kernel::{text, Comparison, Report, SCHEMA};
use natpath_model::walk::{self, TraceOptions};
use std::path::Path;
use std::time::Duration;

/// The model's trace of `p` as JSON, or why there is none.
fn model_trace(
    snap: &natpath_model::snapshot::Snapshot,
    p: &Probe,
    opts: &Options,
) -> Result<serde_json::Value, String> {
    let mp = walk::probe(snap, &p.from, &p.to.to_string(), p.proto.proto(), p.sport).map_err(|e| e.0)?;
    let mut t = TraceOptions::default();
    t.node.carrier_established = !opts.new_carriers;
    // The user-space relay that stands in for tunl0 does not copy marks.
    t.ipip_keeps_mark = super::lab::kernel_ipip();
    let trace = walk::trace(snap, &mp, &t).map_err(|e| e.0)?;
    serde_json::to_value(&trace).map_err(|e| e.to_string())
}

/// `natpath kernel-check`; returns the exit code.
pub fn kernel_check(a: &KernelCheckArgs, ui: &Ui) -> u8 {
    let opts = Options {
        new_carriers: a.new_carriers,
        reply_timeout: Duration::from_millis(a.timeout_ms),
        ..Options::default()
    };
    let snapshot = a.snapshot.display().to_string();
    let dir = Path::new(&a.snapshot);
    let mut texts = a.probes.clone();
    if texts.is_empty() {
        match super::dumps::load(dir) {
            Ok(d) => texts = d.probes.into_iter().map(|(p, _)| p).collect(),
            Err(e) => {
                eprintln!("natpath kernel-check: {e}");
                return 2;
            }
        }
    }
    if texts.is_empty() {
        eprintln!("natpath kernel-check: no probes: give `--probe FROM:IP:PORT/PROTO` or write {snapshot}/probes");
        return 2;
    }
    let mut probes = Vec::new();
    for t in &texts {
        match Probe::parse(t) {
            Ok(p) => probes.push(p),
            Err(e) => {
                eprintln!("natpath kernel-check: {e}");
                return 2;
            }
        }
    }
    // The model's loader first, `--kernel-only` too: it is fast, and bad
    // input is refused with its file and line before any namespace exists
    // (the lab's own reader would build namespaces and then fail with
    // iptables-restore's or ip's words).
    let model = match natpath_model::snapshot::load(dir) {
        Ok(s) => (!a.kernel_only).then_some(s),
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    // The run gives each probe a source port of its own; trace the same.
    super::own_ports(&mut probes);
    let traces: Vec<Result<serde_json::Value, String>> = probes
        .iter()
        .map(|p| match &model {
            Some(snap) => model_trace(snap, p, &opts),
            None => Err("--kernel-only".into()),
        })
        .collect();
    let stale = super::remove_stale_namespaces();
    let bar = ui.bar(probes.len() as u64 + 1, "kernel-check");
    bar.set_message("building the namespaces");
    let progress = |done: usize, what: &str| {
        bar.set_position(done as u64);
        bar.set_message(what.to_string());
    };
    let run = super::run_observed(dir, &probes, &opts, &progress);
    bar.finish_and_clear();
    let mut run = match run {
        Ok(r) => r,
        Err(e) => {
            eprintln!("natpath kernel-check: {e}");
            return match e {
                KernelError::BadInput(_) => 2,
                KernelError::Interrupted => 130,
                _ => 3,
            };
        }
    };
    if !stale.is_empty() {
        run.notes.push(format!("removed namespaces left by killed runs: {}", stale.join(", ")));
    }
    let comparisons: Vec<Comparison> = run
        .results
        .iter()
        .zip(&traces)
        .map(|(r, t)| match t {
            Ok(trace) => {
                let differences = compare(r, trace);
                let verdict = if differences.is_empty() { "agree" } else { "differ" };
                Comparison { probe: r.probe.to_string(), verdict, differences, model_error: None }
            }
            Err(e) => Comparison {
                probe: r.probe.to_string(),
                verdict: "not compared",
                differences: Vec::new(),
                model_error: Some(e.clone()),
            },
        })
        .collect();
    match a.format {
        Format::Json => {
            let report = Report { schema: SCHEMA, kernel: &run, comparisons: &comparisons };
            match serde_json::to_string_pretty(&report) {
                Ok(s) => crate::cli::emit(&format!("{s}\n")),
                Err(e) => {
                    eprintln!("natpath kernel-check: {e}");
                    return 3;
                }
            }
        }
        Format::Text => crate::cli::emit(&text(&run, &comparisons, a.kernel_only, ui.style)),
    }
    if comparisons.iter().any(|c| c.verdict == "differ") {
        1
    } else if !a.kernel_only && comparisons.iter().any(|c| c.verdict == "not compared") {
        3
    } else {
        0
    }
}
