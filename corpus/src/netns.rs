//! Throwaway network namespaces for loading generated dumps into the real
//! kernel (`ipset restore`, `iptables-restore --test`), shared by the
//! generator's tests and the scale benchmark.
//!
//! Contract: every command runs inside a namespace named
//! `natpath-gen-<pid>-<n>` created for the purpose (`ip netns exec`), never
//! in the caller's namespace; the namespace is deleted when the [`Netns`] is
//! dropped, on success, error and unwinding alike. Note that
//! `iptables-restore --test` (nf_tables backend) checks syntax, matches,
//! targets and ipsets but not that jumped-to chains are declared; a real
//! [`Netns::iptables_restore`] into the throwaway namespace checks that too. [`unavailable`] says why
//! namespaces cannot be used (not root, `ip` or `iptables-restore` missing),
//! so that callers can print `SKIPPED: <reason>` instead of failing.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace that exists until this value is dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Why throwaway namespaces cannot be used here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("not root: network namespaces and iptables-restore need CAP_NET_ADMIN".to_string());
    }
    for p in ["ip", "iptables-restore", "ipset"] {
        if !have(p) {
            return Some(format!("`{p}` is not installed"));
        }
    }
    None
}

fn describe(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if s.is_empty() {
        s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    s
}

impl Netns {
    /// Create a fresh namespace.
    pub fn create() -> Result<Netns, String> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("natpath-gen-{}-{n}", std::process::id());
        let out =
            Command::new("ip").args(["netns", "add", &name]).output().map_err(|e| format!("ip netns add: {e}"))?;
        if !out.status.success() {
            return Err(format!("ip netns add {name}: {}", describe(&out)));
        }
        Ok(Netns { name })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `program args…` inside the namespace with `stdin` from a file.
    pub fn run(&self, program: &str, args: &[&str], stdin: Option<&Path>) -> Result<Output, String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        match stdin {
            Some(path) => {
                let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                cmd.stdin(Stdio::from(f));
            }
            None => {
                cmd.stdin(Stdio::null());
            }
        }
        cmd.output().map_err(|e| format!("{program}: {e}"))
    }

    /// `ipset restore` of a file into the namespace.
    pub fn ipset_restore(&self, path: &Path) -> Result<(), String> {
        let out = self.run("ipset", &["restore"], Some(path))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("ipset restore {}: {}", path.display(), describe(&out)))
        }
    }

    /// `iptables-restore --test` of a file inside the namespace; the time it took.
    pub fn iptables_restore_test(&self, path: &Path) -> Result<Duration, String> {
        let start = Instant::now();
        let out = self.run("iptables-restore", &["--test"], Some(path))?;
        let took = start.elapsed();
        if out.status.success() {
            Ok(took)
        } else {
            Err(format!("iptables-restore --test {}: {}", path.display(), describe(&out)))
        }
    }

    /// `iptables-restore` of a file inside the namespace (a real load: the
    /// namespace is throwaway); the time it took.
    pub fn iptables_restore(&self, path: &Path) -> Result<Duration, String> {
        let start = Instant::now();
        let out = self.run("iptables-restore", &[], Some(path))?;
        let took = start.elapsed();
        if out.status.success() {
            Ok(took)
        } else {
            Err(format!("iptables-restore {}: {}", path.display(), describe(&out)))
        }
    }

    /// `iptables-save` inside the namespace.
    pub fn iptables_save(&self) -> Result<String, String> {
        let out = self.run("iptables-save", &[], None)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("iptables-save: {}", describe(&out)))
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ =
            Command::new("ip").args(["netns", "del", &self.name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}
