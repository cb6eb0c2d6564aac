//! How the script reaches a node: run here, through a command template,
//! through `ssh`, or in a `kubectl debug node/...` pod.
//!
//! Contract: a node's name and the script are only ever argv elements (or,
//! for `ssh`, whose remote side is always a shell, the script is quoted
//! whole and the node name goes in the destination argument, which is
//! checked first); nothing is pasted into a string that a local shell
//! parses. Every run has a deadline, and its stdout and stderr are read up
//! to a bound. Every debug pod natpath creates is deleted when its node is
//! done, on a deadline, on an error, and on SIGINT/SIGTERM/SIGHUP.

use super::script::sh_quote;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The most one node's run may print on stdout (the dumps).
pub const MAX_STDOUT: u64 = 768 * 1024 * 1024;
/// The most kept of one run's stderr.
pub const MAX_STDERR: u64 = 4 * 1024 * 1024;

/// Where and how the script runs.
#[derive(Debug, Clone)]
pub enum Transport {
    /// On this machine, in its own network namespace.
    Local,
    /// A user's command template: words with `{node}` and `{cmd}`.
    Exec(Vec<String>),
    /// `ssh` to the destination template (`user@{node}`), with extra options.
    Ssh { target: String, options: Vec<String> },
    /// `kubectl debug node/<node>` with `image`, then `chroot /host`.
    Kubectl { kubectl: Vec<String>, image: String },
}

/// Split a command template into words as a POSIX shell would (quotes and
/// backslashes), without expanding anything.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(x) => cur.push(x),
                    None => return Err("a backslash ends the template".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Parse an `--exec` template: at least a program, and `{cmd}` exactly once.
pub fn exec_template(s: &str) -> Result<Vec<String>, String> {
    let words = split_words(s)?;
    let n = words.iter().map(|w| w.matches("{cmd}").count()).sum::<usize>();
    if words.is_empty() {
        return Err("the template is empty".into());
    }
    if n != 1 {
        return Err(format!(
            "the template must hold `{{cmd}}` exactly once (found {n}), e.g. 'ip netns exec {{node}} sh -c {{cmd}}'"
        ));
    }
    if words.first().is_some_and(|w| w.contains("{cmd}") || w.contains("{node}")) {
        return Err("the template must start with a program, not `{node}` or `{cmd}`".into());
    }
    Ok(words)
}

/// Whether `name` is a node name natpath hands to transports: a Kubernetes
/// node name (DNS subdomain: lower-case letters, digits, `-`, `.`, starting
/// and ending with a letter or digit, at most 253 characters). This also
/// keeps it from being read as an option or a path.
pub fn valid_node_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(ok_char)
        && alnum(name.chars().next())
        && alnum(name.chars().last())
        && !name.contains("..")
}

/// What one run gave.
#[derive(Debug, Default)]
pub struct RunOutput {
    /// Standard output (lossy UTF-8), up to [`MAX_STDOUT`].
    pub stdout: String,
    /// Standard error, up to [`MAX_STDERR`].
    pub stderr: String,
    /// Exit code (`None`: killed).
    pub code: Option<i32>,
    /// The deadline passed and the run was killed.
    pub timed_out: bool,
    /// Stdout was longer than [`MAX_STDOUT`] (the rest was not read).
    pub truncated: bool,
    /// What the transport itself did or could not undo (debug pods).
    pub notes: Vec<String>,
}

/// The argv that runs `script` on `node`.
pub fn argv(t: &Transport, node: &str, script: &str) -> Vec<String> {
    match t {
        Transport::Local => vec!["sh".into(), "-c".into(), script.into()],
        Transport::Exec(words) => words.iter().map(|w| w.replace("{node}", node).replace("{cmd}", script)).collect(),
        Transport::Ssh { target, options } => {
            let mut v: Vec<String> = vec!["ssh".into(), "-o".into(), "BatchMode=yes".into()];
            v.extend(options.iter().cloned());
            v.push("--".into());
            v.push(target.replace("{node}", node));
            v.push(format!("sh -c {}", sh_quote(script)));
            v
        }
        Transport::Kubectl { kubectl, image } => {
            let mut v = kubectl.clone();
            v.extend(
                [
                    "debug".to_string(),
                    format!("node/{node}"),
                    format!("--image={image}"),
                    "--profile=netadmin".into(),
                    "--attach=true".into(),
                    "--".into(),
                    "chroot".into(),
                    "/host".into(),
                    "sh".into(),
                    "-c".into(),
                    script.into(),
                ]
                .iter()
                .cloned(),
            );
            v
        }
    }
}

/// Debug pods created and not yet deleted: (kubectl base argv, pod name).
type DebugPods = Vec<(Vec<String>, String)>;

fn debug_pods() -> MutexGuard<'static, DebugPods> {
    static P: OnceLock<Mutex<DebugPods>> = OnceLock::new();
    P.get_or_init(|| Mutex::new(Vec::new())).lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Set by the signal handler: the process is about to exit with 128 + the signal.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Once a signal has started the cleanup, the thread that notices (its
/// transport was killed) waits for the handler to end the process, so
/// that nothing reports the killed runs as failures first; bounded.
fn yield_if_interrupted() {
    for _ in 0..600 {
        if !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Process groups of the transports running now (ended on a signal).
fn running() -> MutexGuard<'static, Vec<u32>> {
    static R: OnceLock<Mutex<Vec<u32>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new())).lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Delete one debug pod (bounded); the error text when it could not be.
fn delete_pod(kubectl: &[String], pod: &str) -> Result<(), String> {
    let mut argv = kubectl.to_vec();
    argv.extend(["delete".to_string(), "pod".into(), pod.into(), "--wait=false".into(), "--ignore-not-found".into()]);
    let out = run_bounded(&argv, Duration::from_secs(30), &mut |_| {})?;
    if out.code == Some(0) {
        Ok(())
    } else {
        Err(format!("`kubectl delete pod {pod}` failed: {}", out.stderr.trim()))
    }
}

/// Install, once, the handler that deletes every debug pod on
/// SIGINT/SIGTERM/SIGHUP and exits with 128 + the signal.
pub fn install_debug_pod_cleanup() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("natpath-collect-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
                    for g in std::mem::take(&mut *running()) {
                        kill_group(g);
                    }
                    let pods = std::mem::take(&mut *debug_pods());
                    for (k, p) in pods {
                        eprintln!("natpath collect: signal {sig}: deleting debug pod {p}");
                        if let Err(e) = delete_pod(&k, &p) {
                            eprintln!("natpath collect: {e}");
                        }
                    }
                    std::process::exit(128 + sig);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .clone()
}

/// The pod name in kubectl's "Creating debugging pod NAME with container ..." line.
fn debug_pod_name(line: &str) -> Option<String> {
    let rest = line.split("Creating debugging pod ").nth(1)?;
    let name = rest.split_whitespace().next()?;
    valid_node_name(name).then(|| name.to_string())
}

/// Run the script on `node` through `t`, within `deadline`.
pub fn run(t: &Transport, node: &str, script: &str, deadline: Duration) -> Result<RunOutput, String> {
    let argv = argv(t, node, script);
    let Transport::Kubectl { kubectl, .. } = t else {
        let r = run_bounded(&argv, deadline, &mut |_| {});
        yield_if_interrupted();
        return r;
    };
    // The debug pod is registered as soon as kubectl names it (on stdout),
    // so that a signal, a deadline or an error deletes it.
    let mut seen: Option<String> = None;
    let result = run_bounded(&argv, deadline, &mut |line| {
        if seen.is_none() {
            if let Some(p) = debug_pod_name(line) {
                debug_pods().push((kubectl.clone(), p.clone()));
                seen = Some(p);
            }
        }
    });
    yield_if_interrupted();
    let mut cleanup = Vec::new();
    if let Some(p) = &seen {
        debug_pods().retain(|(_, q)| q != p);
        match delete_pod(kubectl, p) {
            Ok(()) => cleanup.push(format!("deleted debug pod {p}")),
            Err(e) => cleanup.push(format!("warning: debug pod {p} is left: {e}")),
        }
    }
    let mut out = result?;
    out.notes.extend(cleanup);
    Ok(out)
}

fn lock(c: &Mutex<Child>) -> MutexGuard<'_, Child> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How much of stdout's start is handed to the line callback of [`run_bounded`].
const STDOUT_HEAD: usize = 64 * 1024;

/// Hand the complete lines of `got`'s first [`STDOUT_HEAD`] bytes past
/// `*scanned` to `on_line`.
fn stdout_head_lines(got: &Mutex<(Vec<u8>, bool)>, scanned: &mut usize, on_line: &mut dyn FnMut(&str)) {
    let g = got.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let head = g.0.get(..g.0.len().min(STDOUT_HEAD)).unwrap_or(&[]);
    while let Some(nl) = head.get(*scanned..).and_then(|rest| rest.iter().position(|&b| b == b'\n')) {
        let line = head.get(*scanned..*scanned + nl + 1).unwrap_or(&[]);
        on_line(&String::from_utf8_lossy(line));
        *scanned += nl + 1;
    }
}

/// Run `argv` (stdin closed), reading stdout up to [`MAX_STDOUT`] and
/// stderr up to [`MAX_STDERR`], handing each line of stderr and of the
/// first 64 KiB of stdout to `on_line` as it arrives; killed when
/// `deadline` passes.
pub fn run_bounded(argv: &[String], deadline: Duration, on_line: &mut dyn FnMut(&str)) -> Result<RunOutput, String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    // Its own process group, so that a deadline ends whatever it started.
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start `{prog}`: {e}"))?;
    let pgid = child.id();
    running().push(pgid);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let got: Arc<Mutex<(Vec<u8>, bool)>> = Arc::new(Mutex::new((Vec::new(), false)));
    let sink = Arc::clone(&got);
    let out_thread = std::thread::spawn(move || {
        let Some(mut r) = stdout else { return };
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut g = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let room = usize::try_from(MAX_STDOUT).unwrap_or(usize::MAX).saturating_sub(g.0.len());
                    // Past the bound the rest is read and dropped, so the
                    // writer is never blocked on a full pipe.
                    if n > room {
                        g.1 = true;
                    }
                    g.0.extend_from_slice(chunk.get(..n.min(room)).unwrap_or(&[]));
                }
            }
        }
    });
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err_thread = std::thread::spawn(move || {
        let mut kept = 0u64;
        if let Some(r) = stderr {
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            // Each line is bounded too: a stream without newlines is cut.
            while let Ok(n) = (&mut r).take(64 * 1024).read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                kept += n as u64;
                if kept <= MAX_STDERR && tx.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
                    break;
                }
                line.clear();
            }
        }
    });
    let child = Arc::new(Mutex::new(child));
    let start = Instant::now();
    let mut stderr_text = String::new();
    let mut scanned = 0;
    let mut timed_out = false;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        while let Ok(l) = rx.try_recv() {
            on_line(&l);
            stderr_text.push_str(&l);
        }
        stdout_head_lines(&got, &mut scanned, on_line);
        let polled = lock(&child).try_wait();
        match polled {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() >= deadline => {
                timed_out = true;
                kill_group(pgid);
                let mut c = lock(&child);
                let _ = c.kill();
                break c.wait().ok();
            }
            Ok(None) => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                kill_group(pgid);
                running().retain(|&g| g != pgid);
                return Err(format!("waiting for `{prog}`: {e}"));
            }
        }
    };
    // The process is gone; its pipes close unless something it started
    // keeps them open: that is ended too, after a bounded grace period.
    let grace = Instant::now();
    while !(out_thread.is_finished() && err_thread.is_finished()) {
        if grace.elapsed() > Duration::from_secs(2) {
            kill_group(pgid);
        }
        if grace.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for l in rx.try_iter() {
        on_line(&l);
        stderr_text.push_str(&l);
    }
    stdout_head_lines(&got, &mut scanned, on_line);
    running().retain(|&g| g != pgid);
    let (bytes, truncated) = std::mem::take(&mut *got.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    Ok(RunOutput {
        stdout: String::from_utf8_lossy(&bytes).into_owned(),
        stderr: stderr_text,
        code: status.and_then(|s| s.code()),
        timed_out,
        truncated,
        notes: Vec::new(),
    })
}

/// SIGKILL the process group `pgid` (a group natpath created), with
/// `kill(1)`: a number as one argv element, no shell, no `unsafe`.
fn kill_group(pgid: u32) {
    if pgid > 1 {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_like_a_shell_and_need_cmd_once() {
        assert_eq!(
            exec_template("ip netns exec {node} sh -c {cmd}").unwrap(),
            ["ip", "netns", "exec", "{node}", "sh", "-c", "{cmd}"]
        );
        assert_eq!(split_words(r#"a 'b c' "d \"e\"" f\ g"#).unwrap(), ["a", "b c", "d \"e\"", "f g"]);
        assert!(exec_template("ssh {node}").is_err());
        assert!(exec_template("{cmd}").is_err());
        assert!(exec_template("x '{cmd}").is_err());
    }

    #[test]
    fn node_names_never_become_options_or_paths() {
        for bad in ["-oProxyCommand=x", "a/b", "", "a b", "a;b", "$(x)", "A", "a.", "../x"] {
            assert!(!valid_node_name(bad), "{bad}");
        }
        for good in ["node1", "ip-10-0-0-1.ec2.internal", "kind-worker2"] {
            assert!(valid_node_name(good), "{good}");
        }
    }

    #[test]
    fn the_node_name_is_one_argv_element() {
        let t = Transport::Exec(exec_template("echo {node} {cmd}").unwrap());
        let a = argv(&t, "n1", "x; rm -rf /");
        assert_eq!(a, ["echo", "n1", "x; rm -rf /"]);
    }

    #[test]
    fn a_deadline_kills_and_output_is_bounded_per_stream() {
        let argv: Vec<String> = ["sh", "-c", "echo hi; echo err >&2; sleep 30"].iter().map(|s| s.to_string()).collect();
        let start = Instant::now();
        let mut lines = Vec::new();
        let o = run_bounded(&argv, Duration::from_millis(300), &mut |l| lines.push(l.to_string())).unwrap();
        assert!(o.timed_out);
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(o.stdout, "hi\n");
        lines.sort();
        assert_eq!(lines, ["err\n", "hi\n"]);
    }

    #[test]
    fn kubectl_names_its_debug_pod() {
        assert_eq!(
            debug_pod_name("Creating debugging pod node-debugger-node1-x7z2k with container debugger on node node1."),
            Some("node-debugger-node1-x7z2k".to_string())
        );
        assert_eq!(debug_pod_name("something else"), None);
    }
}
