//! The `natpath collect` command: its three forms, their report and exit code.

use super::{cluster, collect_nodes, objects, transport, NodeOutcome, Options};
use crate::cli::{ApiArgs, Bad, CollectArgs, CollectCommon, CollectPart, Ui, Via};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;
use transport::Transport;

fn options(c: &CollectCommon, parallel: u64, ui: &Ui) -> Options {
    Options {
        timeout: Duration::from_secs(c.timeout),
        parallel: usize::try_from(parallel).unwrap_or(1),
        progress: ui.progress || c.progress,
    }
}

fn kubectl_base(api: &ApiArgs) -> Vec<String> {
    let mut v = vec!["kubectl".to_string()];
    if let Some(c) = &api.context {
        v.push(format!("--context={c}"));
    }
    if let Some(k) = &api.kubeconfig {
        v.push(format!("--kubeconfig={}", k.display()));
    }
    v
}

fn check_name(n: &str, what: &str) -> Result<(), Bad> {
    if transport::valid_node_name(n) {
        Ok(())
    } else {
        Err(Bad(format!("{what} `{n}`: expected a Kubernetes node name (lower-case letters, digits, `-` and `.`)")))
    }
}

/// Run `natpath collect`.
pub fn collect(a: &CollectArgs, ui: &Ui) -> Result<u8, Bad> {
    match &a.part {
        Some(CollectPart::Node(n)) => collect_node(&n.out, n.name.as_deref(), &n.common, ui),
        Some(CollectPart::Cluster(c)) => {
            let mut report = String::new();
            let code = cluster_half(&c.out, &c.api, &mut report, Duration::from_secs(c.timeout))?;
            finish(&c.out, c.redact, code, report)
        }
        None => {
            let Some(out) = &a.out else {
                return Err(Bad("collect: expected OUT, `node OUT` or `cluster OUT`".into()));
            };
            collect_all(out, a, ui)
        }
    }
}

fn collect_node(out: &Path, name: Option<&str>, c: &CollectCommon, ui: &Ui) -> Result<u8, Bad> {
    let opts = options(c, 1, ui);
    let name = match name {
        Some(n) => n.to_string(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_ascii_lowercase())
            .map_err(|e| Bad(format!("cannot read this machine's hostname ({e}): give --name")))?,
    };
    check_name(&name, "node name")?;
    let results = collect_nodes(out, std::slice::from_ref(&name), &Transport::Local, &opts);
    let mut report = String::new();
    let code = node_report(&results, &mut report);
    if code == 0 {
        let _ = writeln!(
            report,
            "wrote {}; `natpath collect cluster {}` writes cluster.toml",
            out.join("nodes").join(&name).display(),
            out.display()
        );
    }
    if c.redact && code == 0 {
        super::redact_dir(out).map_err(|e| Bad(format!("{}: redacting: {e}", out.display())))?;
    }
    crate::cli::emit(&report);
    Ok(code)
}

fn node_report(results: &[NodeOutcome], report: &mut String) -> u8 {
    let mut code = 0;
    for r in results {
        match &r.error {
            None => {
                let backend = r
                    .notes
                    .iter()
                    .find_map(|n| n.strip_prefix("iptables backend: "))
                    .map(|b| b.split(' ').next().unwrap_or(b));
                let _ = writeln!(report, "node {}: collected (iptables backend {})", r.node, backend.unwrap_or("?"));
                for n in r.notes.iter().filter(|n| n.starts_with("warning") || n.contains("not collected")) {
                    let _ = writeln!(report, "  {n}");
                }
            }
            Some(e) => {
                code = 3;
                let _ = writeln!(report, "node {}: NOT collected: {e}", r.node);
            }
        }
    }
    code
}

/// Write cluster.toml from the API; returns 0, or 3 when the API could not be read.
fn cluster_half(out: &Path, api: &ApiArgs, report: &mut String, timeout: Duration) -> Result<u8, Bad> {
    let (o, source) = match objects(api.objects.as_deref(), &kubectl_base(api), timeout) {
        Ok(x) => x,
        Err((msg, 2)) => return Err(Bad(msg)),
        Err((msg, code)) => {
            let _ = writeln!(report, "cluster.toml: not written: {msg}");
            return Ok(code);
        }
    };
    write_cluster(out, &o, api, &source, report)
}

fn write_cluster(
    out: &Path,
    o: &cluster::Objects,
    api: &ApiArgs,
    source: &str,
    report: &mut String,
) -> Result<u8, Bad> {
    let b = cluster::build(out, o, &api.client, source);
    std::fs::create_dir_all(out).map_err(|e| Bad(format!("{}: {e}", out.display())))?;
    let path = out.join("cluster.toml");
    std::fs::write(&path, &b.toml).map_err(|e| Bad(format!("{}: {e}", path.display())))?;
    let _ =
        writeln!(report, "cluster.toml: from {source}: {} nodes and {} pods in the API", o.nodes.len(), o.pods.len());
    for s in &o.skipped {
        let _ = writeln!(report, "  not a pod of the snapshot: {s}");
    }
    if !b.findings.is_empty() {
        let _ = writeln!(report, "findings (the API and the nodes disagree; see cluster.toml):");
        for f in &b.findings {
            let _ = writeln!(report, "  - {f}");
        }
    }
    Ok(0)
}

/// Redact, load the snapshot as `check` would, print the report.
fn finish(out: &Path, redact: bool, code: u8, mut report: String) -> Result<u8, Bad> {
    if redact {
        let n = super::redact_dir(out).map_err(|e| Bad(format!("{}: redacting: {e}", out.display())))?;
        let _ = writeln!(report, "redacted: public addresses replaced in {n} files");
    }
    let mut code = code;
    if !out.join("nodes").is_dir() {
        let _ = writeln!(report, "snapshot {}: not loaded, no node was collected", out.display());
    } else if out.join("cluster.toml").is_file() {
        match natpath_model::snapshot::load(out) {
            Ok(s) => {
                let _ = writeln!(
                    report,
                    "snapshot {}: loads ({} nodes, {} pods)",
                    out.display(),
                    s.nodes.len(),
                    s.cluster.pods.len()
                );
            }
            Err(e) => {
                let _ = writeln!(report, "snapshot {}: does not load:\n{e}", out.display());
                if code == 0 {
                    code = 2;
                }
            }
        }
    }
    crate::cli::emit(&report);
    Ok(code)
}

fn collect_all(out: &Path, a: &CollectArgs, ui: &Ui) -> Result<u8, Bad> {
    let opts = options(&a.common, a.parallel, ui);
    let kubectl = kubectl_base(&a.api);
    let t = match a.via {
        Via::Exec => {
            let tpl = a.exec.as_deref().ok_or_else(|| {
                Bad("--via exec needs --exec TEMPLATE, e.g. --exec 'ip netns exec {node} sh -c {cmd}'".into())
            })?;
            Transport::Exec(transport::exec_template(tpl).map_err(|e| Bad(format!("--exec: {e}")))?)
        }
        Via::Ssh => {
            if a.ssh_target.starts_with('-') || !a.ssh_target.contains("{node}") {
                return Err(Bad("--ssh-target: expected a destination with {node}, e.g. root@{node}".into()));
            }
            let mut options = Vec::new();
            for o in &a.ssh_options {
                if o.starts_with('-') || !o.contains('=') {
                    return Err(Bad(format!("--ssh-option `{o}`: expected KEY=VALUE (an ssh -o option)")));
                }
                options.extend(["-o".to_string(), o.clone()]);
            }
            Transport::Ssh { target: a.ssh_target.clone(), options }
        }
        Via::Kubectl => {
            transport::install_debug_pod_cleanup()
                .map_err(|e| Bad(format!("cannot install the signal handler: {e}")))?;
            Transport::Kubectl { kubectl: kubectl.clone(), image: a.image.clone() }
        }
    };
    let mut report = String::new();
    // The API first: it names the nodes, unless --nodes does.
    let api = objects(a.api.objects.as_deref(), &kubectl, opts.timeout);
    // A saved objects file that does not read is bad input: nothing is collected.
    if let Err((msg, 2)) = &api {
        return Err(Bad(msg.clone()));
    }
    let nodes: Vec<String> = if !a.nodes.is_empty() {
        a.nodes.clone()
    } else {
        match &api {
            Ok((o, _)) => o.nodes.iter().map(|n| n.name.clone()).collect(),
            Err((msg, 2)) => return Err(Bad(msg.clone())),
            Err((msg, _)) => {
                let _ = writeln!(report, "no node list: {msg}; give --nodes to collect the nodes without the API");
                crate::cli::emit(&report);
                return Ok(3);
            }
        }
    };
    if nodes.is_empty() {
        return Err(Bad("no node to collect: the API lists none and --nodes is empty".into()));
    }
    for n in &nodes {
        check_name(n, "node")?;
    }
    std::fs::create_dir_all(out).map_err(|e| Bad(format!("{}: {e}", out.display())))?;
    let results = collect_nodes(out, &nodes, &t, &opts);
    let mut code = node_report(&results, &mut report);
    match &api {
        Ok((o, source)) => {
            write_cluster(out, o, &a.api, source, &mut report)?;
        }
        Err((msg, _)) => {
            let _ = writeln!(report, "cluster.toml: not written: {msg}");
            code = 3;
        }
    }
    finish(out, a.common.redact, code, report)
}
