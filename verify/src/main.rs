//! The `natpath` command line. Only argument handling lives here; every
//! command maps its result to DESIGN.md's exit codes: 0 all hold (or the
//! command did what was asked), 1 a violation, 2 bad input or usage (the
//! message names file:line), 3 unknown (unsupported rule, solver timeout,
//! cannot run here).

use natpath_model::parse::{self, detect::DumpKind, iptables};
use natpath_model::ruleset::{Proto, TableName};
use natpath_model::snapshot;
use natpath_model::walk::{self, TraceOptions};
use natpath_verify::report;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "natpath: exact NodePort packet paths for kube-proxy and Calico clusters

usage:
  natpath parse PATH [--format text|json] [--table TABLE] [--lenient]
  natpath trace SNAPSHOT --from NAME --to IP:PORT [--proto tcp|udp] [--sport N]
                [--seed N] [--new-carriers] [--format text|json|dot]
  natpath check SNAPSHOT [--invariant NAME]... [--format text|json] [--timeout SECS]
  natpath kernel-check SNAPSHOT [--probe FROM:IP:PORT/PROTO]... [--format text|json]
  natpath generate DIR [--services N] [--nodes M] [--seed S] [--vxlan]
  natpath generate DIR --from-services FILE [--node NAME]

exit codes: 0 holds/ok, 1 violation, 2 bad input or usage, 3 unknown or cannot run here";

/// A usage or input error: exit code 2.
struct Bad(String);

type Res = Result<u8, Bad>;

fn take_value(args: &[String], i: &mut usize, flag: &str) -> Result<String, Bad> {
    *i += 1;
    args.get(*i).cloned().ok_or_else(|| Bad(format!("expected a value after `{flag}`")))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = args.get(1..).unwrap_or(&[]).to_vec();
    let result = match cmd.as_str() {
        "parse" => cmd_parse(&rest),
        "trace" => cmd_trace(&rest),
        "check" => Ok(clamp(natpath_verify::invariants::check_cli(&rest))),
        "kernel-check" => Ok(clamp(natpath_verify::kernel::kernel_check_cli(&rest))),
        "generate" => cmd_generate(&rest),
        "-h" | "--help" | "help" => {
            emit(&format!("{USAGE}\n"));
            Ok(0)
        }
        other => Err(Bad(format!("unknown command `{other}`\n{USAGE}"))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Bad(msg)) => {
            eprintln!("natpath: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Write to stdout; a reader that went away (`natpath ... | head`) is not an
/// error worth a panic.
fn emit(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
}

fn clamp(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(3)
}

fn cmd_parse(args: &[String]) -> Res {
    let mut path = None;
    let mut format = "text".to_string();
    let mut opts = iptables::Options::default();
    let mut i = 0;
    while i < args.len() {
        let a = args.get(i).map(String::as_str).unwrap_or("");
        match a {
            "--format" => format = take_value(args, &mut i, a)?,
            "--lenient" => opts.lenient = true,
            "--table" => {
                let t = take_value(args, &mut i, a)?;
                opts.table = Some(TableName::from_name(&t).ok_or_else(|| {
                    Bad(format!("expected raw, mangle, nat, filter or security after `--table`, found `{t}`"))
                })?);
            }
            _ if a.starts_with('-') => return Err(Bad(format!("unknown option `{a}` for parse"))),
            _ => path = Some(a.to_string()),
        }
        i += 1;
    }
    let path = path.ok_or_else(|| Bad("expected a snapshot directory or a dump file after `parse`".into()))?;
    if !matches!(format.as_str(), "text" | "json") {
        return Err(Bad(format!("expected text or json after `--format`, found `{format}`")));
    }
    let p = Path::new(&path);
    let summary = if p.is_dir() {
        let snap = snapshot::load(p).map_err(|e| Bad(e.to_string()))?;
        report::summary::snapshot(&snap, &path)
    } else {
        let bytes = std::fs::read(p).map_err(|e| Bad(format!("{path}: cannot read: {e}")))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let line = bytes.get(..e.valid_up_to()).map(|b| b.iter().filter(|&&c| c == b'\n').count() + 1).unwrap_or(1);
            Bad(format!("{path}:{line}:1: expected text, found bytes that are not UTF-8"))
        })?;
        let kind = parse::detect::detect(text).map_err(|why| Bad(format!("{path}: {why}")))?;
        single_dump(&path, text, kind, &opts)?
    };
    match format.as_str() {
        "json" => emit(&(serde_json::to_string_pretty(&summary).map_err(|e| Bad(e.to_string()))?)),
        _ => emit(&report::summary::text(&summary)),
    }
    Ok(0)
}

fn single_dump(
    path: &str,
    text: &str,
    kind: DumpKind,
    opts: &iptables::Options,
) -> Result<report::summary::Summary, Bad> {
    let bad = |e: natpath_model::ParseErrors| Bad(e.to_string());
    let mut node = report::summary::node(path, &Default::default(), &[], &[], 0, Vec::new());
    let kind_name = match kind {
        DumpKind::Iptables => {
            let rs = iptables::parse(text, path, opts).map_err(bad)?;
            node = report::summary::node(path, &rs, &[], &[], 0, Vec::new());
            "iptables"
        }
        DumpKind::Ipset => {
            let sets = parse::ipset::parse(text, path).map_err(bad)?;
            node.ipsets = sets.len();
            "ipset"
        }
        DumpKind::IpRoute => {
            node.routes = parse::iproute::parse(text, path).map_err(bad)?.len();
            "ip-route"
        }
        DumpKind::IpAddr => {
            let ifs = parse::ipaddr::parse(text, path).map_err(bad)?;
            node = report::summary::node(path, &Default::default(), &[], &ifs, 0, Vec::new());
            "ip-addr"
        }
        DumpKind::IpRule => {
            let rules = parse::iprule::parse(text, path).map_err(bad)?;
            node.notes.push(format!("{} ip rules", rules.len()));
            "ip-rule"
        }
        DumpKind::Sysctl => {
            let s = parse::sysctl::parse(text, path).map_err(bad)?;
            node.notes.push(format!("{} sysctl values", s.values.len()));
            "sysctl"
        }
    };
    Ok(report::summary::Summary {
        schema: "natpath.parse/1",
        kind: kind_name.into(),
        path: path.to_string(),
        hosts: Vec::new(),
        pods: Vec::new(),
        nodes: vec![node],
    })
}

fn cmd_trace(args: &[String]) -> Res {
    let mut snap_path = None;
    let (mut from, mut to) = (None, None);
    let mut proto = Proto::TCP;
    let mut sport: u32 = 40000;
    let mut format = "text".to_string();
    let mut opts = TraceOptions::default();
    let mut i = 0;
    while i < args.len() {
        let a = args.get(i).map(String::as_str).unwrap_or("");
        match a {
            "--from" => from = Some(take_value(args, &mut i, a)?),
            "--to" => to = Some(take_value(args, &mut i, a)?),
            "--proto" => {
                let p = take_value(args, &mut i, a)?;
                proto = match p.as_str() {
                    "tcp" => Proto::TCP,
                    "udp" => Proto::UDP,
                    "sctp" => Proto::SCTP,
                    _ => return Err(Bad(format!("expected tcp, udp or sctp after `--proto`, found `{p}`"))),
                };
            }
            "--sport" => {
                let v = take_value(args, &mut i, a)?;
                sport = v
                    .parse()
                    .ok()
                    .filter(|p| (1..=65535).contains(p))
                    .ok_or_else(|| Bad(format!("expected a port (1-65535) after `--sport`, found `{v}`")))?;
            }
            "--seed" => {
                let v = take_value(args, &mut i, a)?;
                opts.seed = Some(v.parse().map_err(|_| Bad(format!("expected a number after `--seed`, found `{v}`")))?);
            }
            "--new-carriers" => opts.node.carrier_established = false,
            "--format" => format = take_value(args, &mut i, a)?,
            _ if a.starts_with('-') => return Err(Bad(format!("unknown option `{a}` for trace"))),
            _ => snap_path = Some(a.to_string()),
        }
        i += 1;
    }
    let snap_path = snap_path.ok_or_else(|| Bad("expected a snapshot directory after `trace`".into()))?;
    let from = from.ok_or_else(|| Bad("expected `--from NAME`".into()))?;
    let to = to.ok_or_else(|| Bad("expected `--to IP:PORT`".into()))?;
    if !matches!(format.as_str(), "text" | "json" | "dot") {
        return Err(Bad(format!("expected text, json or dot after `--format`, found `{format}`")));
    }
    let snap = snapshot::load(Path::new(&snap_path)).map_err(|e| Bad(e.to_string()))?;
    let sport = u16::try_from(sport).map_err(|_| Bad("source port out of range".into()))?;
    let probe = walk::probe(&snap, &from, &to, proto, sport).map_err(|e| Bad(e.0))?;
    let trace = walk::trace(&snap, &probe, &opts).map_err(|e| Bad(e.0))?;
    match format.as_str() {
        "json" => emit(&(serde_json::to_string_pretty(&trace).map_err(|e| Bad(e.to_string()))?)),
        "dot" => emit(&report::dot::trace(&trace)),
        _ => emit(&report::text::trace(&trace)),
    }
    let unknown = trace.branches.iter().any(|b| b.outcome == natpath_model::trace::Outcome::Unknown);
    Ok(if unknown { 3 } else { 0 })
}

fn cmd_generate(args: &[String]) -> Res {
    let mut dir = None;
    let mut spec = natpath_benches::Spec::default();
    let mut services_file = None;
    let mut node = "node-1".to_string();
    let mut i = 0;
    let number = |v: String, flag: &str| -> Result<u64, Bad> {
        v.parse().map_err(|_| Bad(format!("expected a number after `{flag}`, found `{v}`")))
    };
    while i < args.len() {
        let a = args.get(i).map(String::as_str).unwrap_or("");
        match a {
            "--services" => spec.services = number(take_value(args, &mut i, a)?, a)? as usize,
            "--nodes" => spec.nodes = (number(take_value(args, &mut i, a)?, a)? as usize).max(1),
            "--seed" => spec.seed = number(take_value(args, &mut i, a)?, a)?,
            "--vxlan" => spec.encap = natpath_benches::Encap::Vxlan,
            "--from-services" => services_file = Some(take_value(args, &mut i, a)?),
            "--node" => node = take_value(args, &mut i, a)?,
            _ if a.starts_with('-') => return Err(Bad(format!("unknown option `{a}` for generate"))),
            _ => dir = Some(a.to_string()),
        }
        i += 1;
    }
    let dir = dir.ok_or_else(|| Bad("expected a directory to write the snapshot to after `generate`".into()))?;
    let snap = match services_file {
        Some(f) => {
            let json = std::fs::read_to_string(&f).map_err(|e| Bad(format!("{f}: cannot read: {e}")))?;
            natpath_benches::from_services_json(&json, &node).map_err(|e| Bad(format!("{f}: {e}")))?
        }
        None => natpath_benches::generate(&spec),
    };
    natpath_benches::write_snapshot(&snap, Path::new(&dir)).map_err(|e| Bad(format!("{dir}: cannot write: {e}")))?;
    emit(&format!("wrote {} nodes to {dir}\n", snap.nodes.len()));
    Ok(0)
}
