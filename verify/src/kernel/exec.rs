//! Running the standard tools (`ip`, `iptables-restore`, `ipset`,
//! `conntrack`, `sysctl`, `nft`) with a deadline, and the registry of
//! everything the referee created (namespaces, helper processes) so that it
//! can be removed on drop, on error and on SIGINT/SIGTERM/SIGHUP.
//!
//! Contract: every command has a deadline and is killed when it passes;
//! every namespace is registered *before* it is created and every helper
//! process as it is spawned, under one lock that the signal handler takes
//! too, so an interrupt never leaves a namespace behind (except on SIGKILL,
//! which nothing can catch: see `kernel::stale_namespaces`). Processes are
//! ended only by their own handle (their pid), never by name. Kernel facts
//! relied on: `ip netns exec NS CMD` execs CMD in place (no fork), so the
//! handle's pid is the helper itself; a namespace disappears when its name
//! is deleted and its last process has exited.

use super::KernelError;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// What a finished command said.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (`None`: killed by a signal or the deadline).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Whether the deadline killed it.
    pub timed_out: bool,
}

impl Output {
    /// Exit code 0 within the deadline.
    pub fn ok(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    })
}

fn lock(c: &Mutex<Child>) -> MutexGuard<'_, Child> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Run `argv` with `stdin`, killing it after `deadline`.
pub fn run(argv: &[String], stdin: Option<&str>, deadline: Duration) -> Result<Output, String> {
    run_inner(argv, stdin, deadline, true)
}

/// `run`; `yield_on_signal` is false only for the signal thread's own commands.
fn run_inner(
    argv: &[String],
    stdin: Option<&str>,
    deadline: Duration,
    yield_on_signal: bool,
) -> Result<Output, String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{prog}`: {e}"))?;
    let writer = match (stdin, child.stdin.take()) {
        (Some(text), Some(mut pipe)) => {
            let text = text.to_string();
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            }))
        }
        _ => None,
    };
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let child = Arc::new(Mutex::new(child));
    let ticket = transient(Some(Arc::clone(&child)), None);
    let start = Instant::now();
    let mut nap = Duration::from_micros(200);
    let mut timed_out = false;
    // Bounded: ends when the child exits or the deadline passes.
    let status = loop {
        let polled = lock(&child).try_wait();
        match polled {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() >= deadline => {
                timed_out = true;
                let mut c = lock(&child);
                let _ = c.kill();
                break c.wait().ok();
            }
            Ok(None) => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(5));
            }
            Err(e) => {
                transient(None, Some(ticket));
                return Err(format!("waiting for `{prog}`: {e}"));
            }
        }
    };
    transient(None, Some(ticket));
    if yield_on_signal {
        yield_to_signal_exit();
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(Output {
        code: status.and_then(|s| s.code()),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
    })
}

/// Run and require success; the error says what was being done.
pub fn check(what: &str, argv: &[String], stdin: Option<&str>, deadline: Duration) -> Result<String, KernelError> {
    let o = run(argv, stdin, deadline).map_err(|e| KernelError::Setup(format!("{what}: {e}")))?;
    if o.ok() {
        return Ok(o.stdout);
    }
    let why = if o.timed_out { format!("no answer within {deadline:?}") } else { o.stderr.trim().to_string() };
    Err(KernelError::Setup(format!("{what}: `{}` failed: {why}", argv.join(" "))))
}

/// `ip netns exec NS` followed by `cmd`.
pub fn in_ns(ns: &str, cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["ip", "netns", "exec", ns].iter().map(|s| s.to_string()).collect();
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

/// Short-lived commands in flight, so a signal can end them too.
type Transients = BTreeMap<u64, Arc<Mutex<Child>>>;

/// Register (`Some(child)`) or forget (`Some(ticket)`) a running command;
/// with neither, kill every registered one.
fn transient(child: Option<Arc<Mutex<Child>>>, forget: Option<u64>) -> u64 {
    static T: OnceLock<Mutex<(u64, Transients)>> = OnceLock::new();
    let mut t =
        T.get_or_init(|| Mutex::new((0, BTreeMap::new()))).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(c) = child {
        t.0 += 1;
        let id = t.0;
        t.1.insert(id, c);
        return id;
    }
    if let Some(id) = forget {
        t.1.remove(&id);
        return id;
    }
    for c in t.1.values() {
        if let Ok(mut c) = c.try_lock() {
            let _ = c.kill();
        }
    }
    0
}

/// What one lab owns.
#[derive(Default)]
struct Owned {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

fn registry() -> MutexGuard<'static, BTreeMap<u64, Owned>> {
    static REG: OnceLock<Mutex<BTreeMap<u64, Owned>>> = OnceLock::new();
    let m = REG.get_or_init(|| Mutex::new(BTreeMap::new()));
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether a signal asked everything to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Once a signal has started the teardown, the thread that notices waits
/// here for the signal thread to end the process (so that nothing else, a
/// test harness for instance, exits first with another code); bounded.
pub fn yield_to_signal_exit() {
    if !interrupted() {
        return;
    }
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn refuse_if_interrupted() -> Result<(), KernelError> {
    if interrupted() {
        yield_to_signal_exit();
        return Err(KernelError::Interrupted);
    }
    Ok(())
}

/// Create namespaces for lab `lab` (registered first, under the lock).
pub fn add_namespaces(lab: u64, names: &[String]) -> Result<(), KernelError> {
    let mut reg = registry();
    refuse_if_interrupted()?;
    reg.entry(lab).or_default().namespaces.extend(names.iter().cloned());
    let batch: String = names.iter().map(|n| format!("netns add {n}\n")).collect();
    let argv = ["ip", "-batch", "-"].map(String::from);
    check("creating the namespaces", &argv, Some(&batch), Duration::from_secs(10)).map(|_| ())
}

/// Spawn a long-running helper in lab `lab`; its stdout lines go to `lines`
/// tagged with `tag`. Its stdin stays open: the helper exits when it closes.
pub fn spawn_helper(
    lab: u64,
    argv: &[String],
    tag: &str,
    lines: Sender<(String, String)>,
) -> Result<std::sync::Arc<Mutex<String>>, KernelError> {
    let mut reg = registry();
    refuse_if_interrupted()?;
    let (prog, args) = argv.split_first().ok_or(KernelError::Internal("empty helper command"))?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| KernelError::Setup(format!("cannot start `{}`: {e}", argv.join(" "))))?;
    let stderr = std::sync::Arc::new(Mutex::new(String::new()));
    if let Some(out) = child.stdout.take() {
        let tag = tag.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if lines.send((tag.clone(), line)).is_err() {
                    break;
                }
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let sink = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    if s.len() < 16_384 {
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
            }
        });
    }
    reg.entry(lab).or_default().children.push(child);
    Ok(stderr)
}

fn clean(owned: Owned) -> Vec<String> {
    let mut problems = Vec::new();
    for mut c in owned.children {
        drop(c.stdin.take());
        let _ = c.kill();
        let _ = c.wait();
    }
    if owned.namespaces.is_empty() {
        return problems;
    }
    let batch: String = owned.namespaces.iter().rev().map(|n| format!("netns del {n}\n")).collect();
    let argv = ["ip", "-force", "-batch", "-"].map(String::from);
    match run_inner(&argv, Some(&batch), Duration::from_secs(10), false) {
        Ok(o) if o.ok() => {}
        Ok(o) => problems.push(format!("deleting namespaces: {}", o.stderr.trim())),
        Err(e) => problems.push(format!("deleting namespaces: {e}")),
    }
    problems
}

/// Remove everything lab `lab` created; returns what could not be removed.
pub fn teardown(lab: u64) -> Vec<String> {
    let owned = registry().remove(&lab);
    owned.map(clean).unwrap_or_default()
}

/// Remove everything every lab created (the signal path).
fn teardown_all() {
    let all: Vec<Owned> = {
        let mut reg = registry();
        INTERRUPTED.store(true, Ordering::SeqCst);
        std::mem::take(&mut *reg).into_values().collect()
    };
    transient(None, None);
    for o in all {
        for p in clean(o) {
            eprintln!("natpath kernel: {p}");
        }
    }
}

/// Install, once, the SIGINT/SIGTERM/SIGHUP handler that tears every lab
/// down and exits with 128 + the signal number.
pub fn install_signal_cleanup() -> Result<(), KernelError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let r = DONE.get_or_init(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("natpath-kernel-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    eprintln!("natpath kernel: signal {sig}: removing the namespaces");
                    teardown_all();
                    std::process::exit(128 + sig);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    });
    r.clone().map_err(|e| KernelError::CannotRun(format!("cannot install the signal handler: {e}")))
}
