//! `natpath kernel-check SNAPSHOT [--probe FROM:IP:PORT/PROTO]...`: run the
//! probes on the real kernel, trace them with the model, print both and
//! every difference.
//!
//! Contract: exit 0 when kernel and model agree on every probe (or with
//! `--kernel-only`, when the kernel run succeeded), 1 on any difference,
//! 2 on bad input or usage, 3 when this machine cannot run the harness or
//! the model could not trace a probe (nothing was compared). Without
//! `--probe`, the snapshot's `probes` file (one probe per line, `#`
//! comments) is used. Output is text, or one JSON document with
//! `--format json` (schema `natpath.kernel-check/1`).

use super::{compare, Difference, KernelError, Options, Probe, ProbeResult, Run, L4};
use natpath_model::ruleset::Proto;
use natpath_model::walk::{self, TraceOptions};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

const USAGE: &str = "usage: natpath kernel-check SNAPSHOT [--probe FROM:IP:PORT/PROTO]... [--format text|json]
                             [--new-carriers] [--timeout-ms N] [--kernel-only]";

/// One probe's comparison.
#[derive(Debug, Clone, Serialize)]
struct Comparison {
    probe: String,
    /// `agree`, `differ`, or `not compared`.
    verdict: &'static str,
    differences: Vec<Difference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_error: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    kernel: &'a Run,
    comparisons: &'a [Comparison],
}

struct Args {
    snapshot: String,
    probes: Vec<String>,
    json: bool,
    kernel_only: bool,
    opts: Options,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a =
        Args { snapshot: String::new(), probes: Vec::new(), json: false, kernel_only: false, opts: Options::default() };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or_else(|| format!("expected a value after `{flag}`"));
        match arg.as_str() {
            "--probe" => a.probes.push(value("--probe")?),
            "--format" => match value("--format")?.as_str() {
                "text" => a.json = false,
                "json" => a.json = true,
                f => return Err(format!("expected text or json after `--format`, found `{f}`")),
            },
            "--new-carriers" => a.opts.new_carriers = true,
            "--kernel-only" => a.kernel_only = true,
            "--timeout-ms" => {
                let v = value("--timeout-ms")?;
                let n: u64 = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| format!("expected milliseconds (1-10000) after `--timeout-ms`, found `{v}`"))?;
                a.opts.reply_timeout = Duration::from_millis(n);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            f if f.starts_with('-') => return Err(format!("unknown option `{f}` for kernel-check\n{USAGE}")),
            s if a.snapshot.is_empty() => a.snapshot = s.to_string(),
            s => return Err(format!("unexpected argument `{s}`\n{USAGE}")),
        }
    }
    if a.snapshot.is_empty() {
        return Err(format!("expected a snapshot directory after `kernel-check`\n{USAGE}"));
    }
    Ok(a)
}

/// The model's trace of `p` as JSON, or why there is none.
fn model_trace(
    snap: &natpath_model::snapshot::Snapshot,
    p: &Probe,
    opts: &Options,
) -> Result<serde_json::Value, String> {
    let proto = match p.proto {
        L4::Tcp => Proto::TCP,
        L4::Udp => Proto::UDP,
    };
    let mp = walk::probe(snap, &p.from, &p.to.to_string(), proto, p.sport).map_err(|e| e.0)?;
    let mut t = TraceOptions::default();
    t.node.carrier_established = !opts.new_carriers;
    // The user-space relay that stands in for tunl0 does not copy marks.
    t.ipip_keeps_mark = super::lab::kernel_ipip();
    let trace = walk::trace(snap, &mp, &t).map_err(|e| e.0)?;
    serde_json::to_value(&trace).map_err(|e| e.to_string())
}

/// `natpath kernel-check`; returns the exit code.
pub fn kernel_check_cli(args: &[String]) -> i32 {
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(m) => {
            eprintln!("natpath kernel-check: {m}");
            return 2;
        }
    };
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
        eprintln!("natpath kernel-check: no probes: give `--probe FROM:IP:PORT/PROTO` or write {}/probes", a.snapshot);
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
    // The model first: it is fast, and its input errors need no namespaces.
    let model = if a.kernel_only { None } else { Some(natpath_model::snapshot::load(dir).map_err(|e| e.to_string())) };
    let traces: Vec<Result<serde_json::Value, String>> = probes
        .iter()
        .map(|p| match &model {
            Some(Ok(snap)) => model_trace(snap, p, &a.opts),
            Some(Err(e)) => Err(format!("the model cannot read the snapshot: {e}")),
            None => Err("--kernel-only".into()),
        })
        .collect();
    let stale = super::remove_stale_namespaces();
    let mut run = match super::run_with(dir, &probes, &a.opts) {
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
    if a.json {
        let report = Report { schema: "natpath.kernel-check/1", kernel: &run, comparisons: &comparisons };
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("natpath kernel-check: {e}");
                return 3;
            }
        }
    } else {
        print!("{}", text(&run, &comparisons, a.kernel_only));
    }
    if comparisons.iter().any(|c| c.verdict == "differ") {
        1
    } else if !a.kernel_only && comparisons.iter().any(|c| c.verdict == "not compared") {
        3
    } else {
        0
    }
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

fn text(run: &Run, comparisons: &[Comparison], kernel_only: bool) -> String {
    let mut o = String::new();
    let _ =
        writeln!(o, "kernel-check {} (setup {:.0} ms, teardown {:.0} ms)", run.snapshot, run.setup_ms, run.teardown_ms);
    for (r, c) in run.results.iter().zip(comparisons) {
        o.push('\n');
        o.push_str(&result_text(r));
        match (c.verdict, &c.model_error) {
            ("agree", _) => {
                let _ = writeln!(o, "  model: agrees");
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
