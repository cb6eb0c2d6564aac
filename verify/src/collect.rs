//! `natpath collect`: a snapshot from a live cluster, read-only.
//!
//! Three parts: on each node, one constant shell script ([`script`]) runs
//! the read-only commands of the snapshot format through a transport
//! ([`transport`]: here, a command template, `ssh`, or a `kubectl debug`
//! pod); its framed output becomes the node's files, with the iptables
//! backend the node really uses ([`node`]); the Kubernetes API objects,
//! read with `kubectl get` or from a saved file, become `cluster.toml`
//! ([`cluster`]). `--redact` then replaces public addresses in every file
//! ([`redact`]). Before returning, the snapshot is loaded as `check` would
//! load it.
//!
//! Contract: nothing is written on a node and nothing built from data is
//! parsed by a shell (see [`transport`]); every run has a deadline and a
//! bound on what it reads; a node that fails is named with the reason, and
//! what the other nodes gave is kept. Exit codes: 0 collected and the
//! snapshot loads (findings about the cluster are listed, they are not
//! errors), 2 bad usage or a snapshot that does not load (file:line), 3 a
//! node or the API could not be read (a tool missing: the package to
//! install is named).

pub mod cli;
pub mod cluster;
pub mod node;
pub mod redact;
pub mod script;
pub mod transport;

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use transport::Transport;

/// The most of `kubectl get` output (or a saved objects file) read.
pub const MAX_OBJECTS: u64 = 256 * 1024 * 1024;

/// How a collection runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Per node (and for `kubectl get`).
    pub timeout: Duration,
    /// Nodes collected at once.
    pub parallel: usize,
    /// Print per-node progress lines on stderr.
    pub progress: bool,
}

/// What happened on one node.
#[derive(Debug, Clone)]
pub struct NodeOutcome {
    /// The node (its directory name).
    pub node: String,
    /// Notes (backend, missing optional tools, cleanup).
    pub notes: Vec<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A run marker: `np` and 16 hex digits from the kernel's random source.
fn marker() -> String {
    let mut b = [0u8; 8];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_ok();
    if !ok {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        b = ((t as u64) ^ (u64::from(std::process::id()) << 32)).to_le_bytes();
    }
    let mut s = String::from("np");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Run the script on `node` and read its sections.
/// On failure: why, and the transport's notes (a debug pod deleted or left).
fn read_node(
    t: &Transport,
    node: &str,
    opts: &Options,
) -> Result<(node::NodeDumps, Vec<String>), (String, Vec<String>)> {
    let m = marker();
    let out = transport::run(t, node, &script::script(&m), opts.timeout).map_err(|e| (e, Vec::new()))?;
    let mut notes = out.notes.clone();
    if out.truncated {
        return Err((format!("it printed more than {} MiB: not read", transport::MAX_STDOUT >> 20), notes));
    }
    let sections = script::read(&out.stdout, &out.stderr, &m);
    if sections.by_name.is_empty() {
        let why = if out.timed_out {
            format!("no answer within {} s", opts.timeout.as_secs())
        } else {
            let e = out.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            format!(
                "the transport failed (exit {}){}",
                out.code.map_or("none".into(), |c| c.to_string()),
                if e.is_empty() { String::new() } else { format!(": {e}") }
            )
        };
        return Err((why, notes));
    }
    if out.timed_out {
        notes.push(format!("warning: cut off after {} s", opts.timeout.as_secs()));
    }
    let d = node::dumps(node, &sections).map_err(|e| (e.reason, notes.clone()))?;
    Ok((d, notes))
}

/// Write one node's files (the ones of the format are replaced, so nothing
/// stale from an earlier run stays) and its notes under `out/collect/`.
fn write_node(out: &Path, name: &str, d: &node::NodeDumps, notes: &[String]) -> std::io::Result<()> {
    let dir = out.join("nodes").join(name);
    std::fs::create_dir_all(&dir)?;
    for (f, _, _) in natpath_model::snapshot::NODE_FILES {
        match std::fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    for (f, text) in &d.files {
        std::fs::write(dir.join(f), text)?;
    }
    write_notes(out, name, notes)
}

fn write_notes(out: &Path, name: &str, notes: &[String]) -> std::io::Result<()> {
    let dir = out.join("collect");
    std::fs::create_dir_all(&dir)?;
    let mut t = String::new();
    for n in notes {
        let _ = writeln!(t, "{n}");
    }
    std::fs::write(dir.join(format!("{name}.txt")), t)
}

/// Collect `nodes` through `t` into `out`, at most `opts.parallel` at once.
pub fn collect_nodes(out: &Path, nodes: &[String], t: &Transport, opts: &Options) -> Vec<NodeOutcome> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<NodeOutcome>> = Mutex::new(Vec::new());
    let workers = opts.parallel.clamp(1, 64).min(nodes.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(name) = nodes.get(i) else { break };
                let r = match read_node(t, name, opts) {
                    Ok((d, mut notes)) => {
                        notes.splice(0..0, d.notes.iter().cloned());
                        match write_node(out, name, &d, &notes) {
                            Ok(()) => NodeOutcome { node: name.clone(), notes, error: None },
                            Err(e) => NodeOutcome {
                                node: name.clone(),
                                notes,
                                error: Some(format!("writing its files: {e}")),
                            },
                        }
                    }
                    Err((e, mut notes)) => {
                        notes.insert(0, format!("error: {e}"));
                        let _ = write_notes(out, name, &notes);
                        NodeOutcome { node: name.clone(), notes, error: Some(e) }
                    }
                };
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                if opts.progress {
                    let what = r.error.as_ref().map_or_else(|| "collected".to_string(), |e| format!("FAILED: {e}"));
                    eprintln!("natpath collect: [{n}/{}] {name}: {what}", nodes.len());
                }
                results.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(r);
            });
        }
    });
    let mut r = results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    r.sort_by(|a, b| a.node.cmp(&b.node));
    r
}

/// The API objects: from `file`, or from `kubectl get` with `kubectl`'s
/// base argv (`kubectl --context X --kubeconfig Y`). Errors: the message
/// and the exit code (2 a file that does not read, 3 kubectl failed).
pub fn objects(
    file: Option<&Path>,
    kubectl: &[String],
    timeout: Duration,
) -> Result<(cluster::Objects, String), (String, u8)> {
    if let Some(f) = file {
        let text = crate::cli::read_text(f).map_err(|crate::cli::Bad(e)| (e, 2))?;
        let o = cluster::read_objects(&text, &f.display().to_string()).map_err(|e| (e, 2))?;
        return Ok((o, format!("saved objects {}", f.display())));
    }
    let mut argv = kubectl.to_vec();
    argv.extend(["get", "nodes,pods,services,endpointslices", "--all-namespaces", "-o", "json"].map(String::from));
    let out =
        transport::run_bounded(&argv, timeout, &mut |_| {}).map_err(|e| (format!("{e} (is kubectl installed?)"), 3))?;
    if out.timed_out {
        return Err((format!("`kubectl get` gave no answer within {} s", timeout.as_secs()), 3));
    }
    if out.code != Some(0) || out.truncated {
        let why = if out.truncated { "its output was too large".to_string() } else { out.stderr.trim().to_string() };
        return Err((format!("`kubectl get nodes,pods,services,endpointslices` failed: {why}"), 3));
    }
    let o = cluster::read_objects(&out.stdout, "kubectl get -o json").map_err(|e| (e, 3))?;
    Ok((o, "kubectl get".to_string()))
}

/// Redact every file of the snapshot at `out` with one random key.
pub fn redact_dir(out: &Path) -> std::io::Result<usize> {
    let mut key = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let r = redact::Redactor::new(key);
    let mut files: Vec<PathBuf> = vec![out.join("cluster.toml")];
    if let Ok(rd) = std::fs::read_dir(out.join("nodes")) {
        for d in rd.flatten() {
            if let Ok(fs) = std::fs::read_dir(d.path()) {
                files.extend(fs.flatten().map(|f| f.path()));
            }
        }
    }
    let mut n = 0;
    for f in files.iter().filter(|f| f.is_file()) {
        let text = crate::cli::read_text(f).map_err(|crate::cli::Bad(e)| std::io::Error::other(e))?;
        let red = r.text(&text);
        if red != text {
            std::fs::write(f, red)?;
            n += 1;
        }
    }
    Ok(n)
}
