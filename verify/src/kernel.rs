//! The kernel as referee: rebuild a snapshot's cluster in network
//! namespaces on this machine's real kernel, send real probes, and record
//! what the kernel did - which pod got the packet and what source it saw,
//! whether and from where the reply came back, the conntrack entries each
//! node made, and which rules matched (rule counters before and after) -
//! then compare that with the model's trace (`natpath.trace/1`).
//!
//! ```text
//! snapshot dir --dumps--> Lab (namespaces, devices, routes, sysctls,
//!                              ipset restore, iptables-restore unchanged)
//!              --probe--> ProbeResult (pod, seen src/dst, reply, counter
//!                              deltas, conntrack) --compare(trace)--> Differences
//! ```
//!
//! Contract: nothing in the root namespace changes (no veth end, address,
//! route, rule, sysctl or ruleset there); every namespace has the unique
//! prefix `np-<pid>-<n>-` and is removed when the run ends, on error, on
//! panic (the lab is a drop guard) and on SIGINT/SIGTERM/SIGHUP (a signal
//! thread tears every lab down); every command and wait is bounded (a probe
//! waits at most its reply timeout, default 2 s). The harness needs root,
//! working `ip netns`, iptables, ipset, conntrack, nft and sysctl, and says
//! "cannot run here: <reason>" otherwise (exit code 3 from the CLI).
//!
//! Kernel facts the harness relies on, and the ones it works around, are in
//! each submodule's header; the two that shape every result:
//! - this kernel has no `ipip` module: `tunl0` is a TUN device plus a
//!   user-space relay sending real protocol-4 packets, which does not copy
//!   the skb mark between inner and outer packets (a kernel tunnel does,
//!   within one node);
//! - tunnel carrier flows are made ESTABLISHED before the probe (one hello
//!   each way), as on a live cluster, unless `new_carriers` is set.

pub mod cli;
pub mod compare;
pub mod conntrack;
pub mod counters;
pub mod dumps;
mod exec;
pub mod helper;
mod lab;
mod probe;
mod tun;
pub mod wire;

pub use crate::report::kernel::result_text;
pub use compare::{compare, Difference};

use serde::Serialize;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the referee could not give an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// This machine cannot run the harness (not root, no `ip netns`, a tool missing).
    CannotRun(String),
    /// The snapshot or a probe is malformed (`file:line: message`).
    BadInput(String),
    /// Rebuilding the cluster or probing failed (the kernel or a tool refused).
    Setup(String),
    /// A signal stopped the run; everything was removed.
    Interrupted,
    /// A state that should not happen.
    Internal(&'static str),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::CannotRun(r) => write!(f, "cannot run here: {r}"),
            KernelError::BadInput(m) => f.write_str(m),
            KernelError::Setup(m) => write!(f, "kernel setup failed: {m}"),
            KernelError::Interrupted => f.write_str("interrupted: the namespaces were removed"),
            KernelError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for KernelError {}

/// Transport of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    /// TCP: one SYN, and its SYN-ACK (or RST).
    Tcp,
    /// UDP: one datagram, and the pod's echo.
    Udp,
    /// SCTP: one INIT, and the pod's INIT ACK.
    Sctp,
}

impl L4 {
    /// `tcp`, `udp` or `sctp`.
    pub fn name(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
            L4::Sctp => "sctp",
        }
    }

    /// The model's protocol number.
    pub fn proto(self) -> natpath_model::ruleset::Proto {
        use natpath_model::ruleset::Proto;
        match self {
            L4::Tcp => Proto::TCP,
            L4::Udp => Proto::UDP,
            L4::Sctp => Proto::SCTP,
        }
    }
}

/// One probe: `FROM:IP:PORT/PROTO`, FROM a `[[host]]`, `[[pod]]` or node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// The sender's name.
    pub from: String,
    /// Destination.
    pub to: SocketAddrV4,
    /// Transport.
    pub proto: L4,
    /// The sender's source port (40000 unless set).
    pub sport: u16,
}

/// The source port probes use unless told otherwise (the trace's default too).
pub const DEFAULT_SPORT: u16 = 40000;

/// Give each probe of a run a source port of its own: the `i`-th probe
/// still on [`DEFAULT_SPORT`] gets `DEFAULT_SPORT + i` (modulo 20,000), so
/// no answer to one probe can pass for another's, whatever their order.
/// Idempotent.
pub fn own_ports(probes: &mut [Probe]) {
    for (i, p) in probes.iter_mut().enumerate() {
        if p.sport == DEFAULT_SPORT {
            p.sport = DEFAULT_SPORT + u16::try_from(i % 20_000).unwrap_or(0);
        }
    }
}

impl Probe {
    /// Parse `FROM:IP:PORT/PROTO` (e.g. `client:10.0.0.51:32220/tcp`).
    pub fn parse(s: &str) -> Result<Probe, KernelError> {
        let bad = |why: &str| KernelError::BadInput(format!("expected FROM:IP:PORT/PROTO, found `{s}`: {why}"));
        let (rest, proto) = s.rsplit_once('/').ok_or_else(|| bad("no `/tcp`, `/udp` or `/sctp`"))?;
        let proto = match proto {
            "tcp" => L4::Tcp,
            "udp" => L4::Udp,
            "sctp" => L4::Sctp,
            _ => return Err(bad("the protocol must be tcp, udp or sctp")),
        };
        let (rest, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let (from, ip) = rest.rsplit_once(':').ok_or_else(|| bad("no address"))?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port must be 1-65535"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("the address must be IPv4"))?;
        if from.is_empty() {
            return Err(bad("no sender"));
        }
        Ok(Probe { from: from.to_string(), to: SocketAddrV4::new(ip, port), proto, sport: DEFAULT_SPORT })
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.from, self.to, self.proto.name())
    }
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Leave tunnel carrier flows NEW (no hello before the probes).
    pub new_carriers: bool,
    /// How long a probe waits for its answer.
    pub reply_timeout: Duration,
    /// The `natpath` program whose hidden `kernel-helper` subcommand runs
    /// inside the namespaces (`NATPATH_KERNEL_HELPER`, else the running
    /// program, when not set: a test binary must set it).
    pub helper: Option<PathBuf>,
    /// Load the node namespaces' rules into iptables-legacy (x_tables)
    /// instead of iptables-nft (nf_tables), the kernel's two back-ends.
    pub legacy: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { new_carriers: false, reply_timeout: Duration::from_secs(2), helper: None, legacy: false }
    }
}

/// A pod that received the probe, and the packet as it saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodSeen {
    /// The pod's `namespace/name`.
    pub pod: String,
    /// Its node.
    pub node: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// Source as the pod saw it.
    pub src: SocketAddrV4,
    /// Destination as the pod saw it.
    pub dst: SocketAddrV4,
}

/// The first answer the sender got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplySeen {
    /// `syn-ack`, `rst`, `udp` or `icmp TYPE/CODE`.
    pub kind: String,
    /// Its source (`ip:port`, or `ip` for ICMP).
    pub src: String,
    /// Its destination.
    pub dst: String,
}

/// New conntrack entries of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConntrack {
    /// The node.
    pub node: String,
    /// Entries that did not exist before the probe.
    pub entries: Vec<conntrack::Entry>,
}

/// What a tunnel relay did during the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelEvent {
    /// The node whose relay it was.
    pub node: String,
    /// `encap` / `decap` / `no-route` with the inner packet.
    pub event: String,
}

/// The probe's first packet as the sender's kernel built it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// `ip:port` source (the address the sender's routing chose).
    pub src: String,
    /// `ip:port` destination.
    pub dst: String,
}

/// What the kernel did with one probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeResult {
    /// The probe.
    pub probe: Probe,
    /// The packet as the sender sent it (`src`, `dst`).
    pub sent: Sent,
    /// Pods that received it (normally one).
    pub delivered_to: Vec<PodSeen>,
    /// The answer the sender got, if any.
    pub reply: Option<ReplySeen>,
    /// Every rule (and policy) counter that moved, per node: the forward
    /// first packet and its reply, including the tunnels' outer packets.
    pub counters: Vec<counters::Delta>,
    /// Conntrack entries the probe made, per node.
    pub conntrack: Vec<NodeConntrack>,
    /// What the IPIP relays carried.
    pub tunnel: Vec<TunnelEvent>,
    /// Milliseconds for this probe (counters, send, wait, counters).
    pub probe_ms: f64,
    /// Milliseconds from sending the probe to its answer (when one came).
    pub answer_ms: Option<f64>,
    /// How the harness differs from a real cluster, for this result.
    pub notes: Vec<String>,
}

impl ProbeResult {
    /// The pod the kernel chose (the first that received the packet).
    pub fn pod(&self) -> Option<&PodSeen> {
        self.delivered_to.first()
    }
}

/// A whole run: results and timings.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Schema of the JSON form.
    pub schema: &'static str,
    /// The snapshot.
    pub snapshot: String,
    /// One result per probe, in order.
    pub results: Vec<ProbeResult>,
    /// Milliseconds to build the cluster.
    pub setup_ms: f64,
    /// Milliseconds to remove it.
    pub teardown_ms: f64,
    /// Facts and defaults every result depends on.
    pub notes: Vec<String>,
}

/// The JSON schema name of a run's observations.
pub const SCHEMA: &str = "natpath.kernel/1";

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Rebuild `snapshot_dir` and run `probes` with default options.
pub fn run(snapshot_dir: &Path, probes: &[Probe]) -> Result<Vec<ProbeResult>, KernelError> {
    run_with(snapshot_dir, probes, &Options::default()).map(|r| r.results)
}

/// Rebuild `snapshot_dir`, run `probes`, tear down; with timings.
pub fn run_with(snapshot_dir: &Path, probes: &[Probe], opts: &Options) -> Result<Run, KernelError> {
    run_observed(snapshot_dir, probes, opts, &|_, _| {})
}

/// [`run_with`], telling `progress` how many steps are done (the lab's
/// setup is the first, then one per probe) and what comes next.
pub fn run_observed(
    snapshot_dir: &Path,
    probes: &[Probe],
    opts: &Options,
    progress: &dyn Fn(usize, &str),
) -> Result<Run, KernelError> {
    let dumps = dumps::load(snapshot_dir)?;
    let names = lab::source_names(&dumps);
    for p in probes {
        if !names.contains(&p.from) {
            return Err(KernelError::BadInput(format!(
                "probe `{p}`: unknown sender `{}`; the snapshot has {}",
                p.from,
                names.join(", ")
            )));
        }
    }
    let helper = preflight(&dumps, probes, opts)?;
    let direct: Vec<(usize, String, u16)> = probes
        .iter()
        .filter_map(|p| {
            let i = dumps.cluster.pods.iter().position(|d| d.address == *p.to.ip())?;
            Some((i, p.proto.name().to_string(), p.to.port()))
        })
        .collect();
    let mut lab = lab::Lab::build(&dumps, opts, helper, &direct)?;
    let mut probes = probes.to_vec();
    own_ports(&mut probes);
    let mut results = Vec::new();
    let mut pace = RouteErrorPace::new();
    let mut redirects = RedirectPace::default();
    for (i, p) in probes.iter().enumerate() {
        progress(i + 1, &format!("probe {p}"));
        if let Some(waited) = pace.before() {
            lab.notes.push(format!(
                "waited {:.2} s before probe {p}: the kernel rate-limits the ICMP errors of failed routes per sender (ip_error: a burst of 5, then one a second), and earlier probes met failed routes",
                waited.as_secs_f64()
            ));
        }
        if let Some(waited) = redirects.before() {
            lab.notes.push(format!(
                "waited {:.2} s before probe {p}: the kernel backs off ICMP redirects per sender (ip_rt_send_redirect: the next one only 20 ms << n after the n-th)",
                waited.as_secs_f64()
            ));
        }
        if redirects.probes == REDIRECT_NUMBER + 1 {
            lab.notes.push(format!(
                "from probe {p} on, the kernel may have stopped sending ICMP redirects to a sender it sent {REDIRECT_NUMBER} already (none until 20 s without redirected packets): a node that forwards a packet out of the device it came in by may then count less in raw and mangle OUTPUT than the model says"
            ));
        }
        results.push(probe::run_probe(&mut lab, &dumps, p, opts, i == 0)?);
        pace.after();
        redirects.after();
    }
    progress(probes.len() + 1, "removing the namespaces");
    let setup_ms = ms(lab.setup);
    let mut notes = std::mem::take(&mut lab.notes);
    notes.dedup();
    let t = std::time::Instant::now();
    drop(lab);
    Ok(Run {
        schema: SCHEMA,
        snapshot: snapshot_dir.display().to_string(),
        results,
        setup_ms,
        teardown_ms: ms(t.elapsed()),
        notes,
    })
}

/// `ip_error` answers a failed route with an ICMP error only while the
/// sender's token bucket (per namespace and source address, in the
/// inetpeer cache) holds a token: a burst of 5, then one a second
/// (`net.ipv4.route.error_burst`/`error_cost`, which exist in the initial
/// namespace only, so the lab cannot turn the limit off as it does
/// `icmp_ratelimit`; measured: the sixth error in a row is not sent).
/// Each probe may meet one failed route per node; how many it met is read
/// from the kernel's `in_no_route` statistic (every CPU, every namespace:
/// other traffic only makes the count larger). The bucket is kept as if
/// every one of them hit the same sender on the same node, and a probe
/// waits until it holds a token: the kernel's answer never depends on the
/// probes before it.
struct RouteErrorPace {
    tokens: f64,
    at: std::time::Instant,
    before: Option<u64>,
}

const ROUTE_ERROR_BURST: f64 = 5.0;

impl RouteErrorPace {
    fn new() -> Self {
        RouteErrorPace { tokens: ROUTE_ERROR_BURST, at: std::time::Instant::now(), before: None }
    }

    fn refill(&mut self) {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64()).min(ROUTE_ERROR_BURST);
        self.at = now;
    }

    /// Wait, if needed, until a token is sure to be there; how long.
    fn before(&mut self) -> Option<std::time::Duration> {
        self.refill();
        let waited = (self.tokens < 1.0).then(|| {
            // A margin over the kernel's jiffies.
            let d = std::time::Duration::from_secs_f64(1.0 - self.tokens + 0.05);
            std::thread::sleep(d);
            self.refill();
            d
        });
        self.before = in_no_route();
        waited
    }

    /// Take the tokens the probe's failed routes may have used.
    fn after(&mut self) {
        self.refill();
        let used = match (self.before, in_no_route()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            // Unreadable: assume the worst.
            _ => u64::MAX,
        };
        self.tokens = (self.tokens - used.min(8) as f64).max(0.0);
    }
}

/// `ip_rt_send_redirect` sends a sender its first ICMP redirect at once
/// and the next only once `20 ms << n` passed since the n-th was sent, up to
/// 9; then none until 20 s without redirected packets (per namespace and
/// sender, `net.ipv4.route.redirect_*`, initial namespace only). The lab
/// starts with none sent; the pace assumes every probe made every node
/// redirect one sender, and waits before a probe until the next redirect
/// is sure to be sent; past the ninth it can only say so.
#[derive(Default)]
struct RedirectPace {
    /// Probes started so far.
    probes: u32,
    last: Option<std::time::Instant>,
}

/// The redirects `ip_rt_send_redirect` sends a sender before it stops.
const REDIRECT_NUMBER: u32 = 9;

impl RedirectPace {
    fn before(&mut self) -> Option<std::time::Duration> {
        let n = self.probes;
        self.probes += 1;
        let last = self.last?;
        if n >= REDIRECT_NUMBER {
            return None;
        }
        // A margin over the kernel's jiffies.
        let need = std::time::Duration::from_millis((20u64 << n) + 20);
        let wait = need.checked_sub(last.elapsed())?;
        std::thread::sleep(wait);
        Some(wait)
    }

    /// A probe ended: any redirect it made was sent before now.
    fn after(&mut self) {
        self.last = Some(std::time::Instant::now());
    }
}

/// The sum over CPUs of `in_no_route` in `/proc/net/stat/rt_cache` (hex
/// columns, one line per CPU after the header).
fn in_no_route() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/stat/rt_cache").ok()?;
    let mut lines = text.lines();
    let col = lines.next()?.split_whitespace().position(|h| h == "in_no_route")?;
    lines.try_fold(0u64, |sum, l| {
        let v = u64::from_str_radix(l.split_whitespace().nth(col)?, 16).ok()?;
        Some(sum.wrapping_add(v))
    })
}

/// Rebuild `snapshot_dir`'s cluster in namespaces, hand `f` each node's
/// name and namespace, then remove everything (also when `f` panics).
/// For tools that read a node the way they would read a live one.
pub fn with_cluster<R>(
    snapshot_dir: &Path,
    opts: &Options,
    f: impl FnOnce(&[(String, String)]) -> R,
) -> Result<R, KernelError> {
    let dumps = dumps::load(snapshot_dir)?;
    let helper = preflight(&dumps, &[], opts)?;
    let lab = lab::Lab::build(&dumps, opts, helper, &[])?;
    let nodes: Vec<(String, String)> =
        dumps.nodes.iter().map(|n| n.name.clone()).zip(lab.nodes.iter().cloned()).collect();
    let r = f(&nodes);
    drop(lab);
    Ok(r)
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false)
}

/// The effective uid, from /proc/self/status.
fn euid() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The program that serves as the referee's helper inside the namespaces:
/// `PROGRAM kernel-helper ...` (the hidden subcommand of `natpath`).
pub fn find_helper(explicit: Option<&Path>) -> Result<PathBuf, KernelError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("NATPATH_KERNEL_HELPER") {
        return Ok(PathBuf::from(p));
    }
    std::env::current_exe().map_err(|e| KernelError::CannotRun(format!("cannot find the running program: {e}")))
}

/// Whether this machine can run the referee; returns the helper's path.
pub fn preflight(dumps: &dumps::Dumps, probes: &[Probe], opts: &Options) -> Result<PathBuf, KernelError> {
    if euid() != Some(0) {
        return Err(KernelError::CannotRun(
            "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)".into(),
        ));
    }
    let mut tools = vec!["ip", "iptables-restore", "iptables-save", "ipset", "conntrack", "sysctl"];
    if probes.iter().any(|p| p.proto == L4::Tcp && dumps.nodes.iter().any(|n| n.name == p.from)) {
        // A TCP probe from a node drops its RST with an nftables table.
        tools.push("nft");
    }
    if dumps.nodes.iter().any(|n| !n.fdb.is_empty()) {
        tools.push("bridge");
    }
    for t in tools {
        if !in_path(t) {
            return Err(KernelError::CannotRun(format!("`{t}` is not installed")));
        }
    }
    let tun_needed = dumps.nodes.iter().any(|n| n.ifaces.iter().any(|f| f.link == "ipip" || f.name == "tunl0"));
    if tun_needed && !Path::new("/dev/net/tun").exists() {
        return Err(KernelError::CannotRun("/dev/net/tun is missing (needed to emulate tunl0)".into()));
    }
    let helper = find_helper(opts.helper.as_deref())?;
    let probe_ns = format!("np-{}-preflight", std::process::id());
    let add = exec::run(&["ip", "netns", "add", &probe_ns].map(String::from), None, Duration::from_secs(5))
        .map_err(|e| KernelError::CannotRun(format!("`ip netns add` failed: {e}")))?;
    if !add.ok() {
        return Err(KernelError::CannotRun(format!("`ip netns add` failed: {}", add.stderr.trim())));
    }
    let del = exec::run(&["ip", "netns", "del", &probe_ns].map(String::from), None, Duration::from_secs(5));
    if !del.as_ref().is_ok_and(exec::Output::ok) {
        return Err(KernelError::CannotRun(format!("`ip netns del {probe_ns}` failed: remove it by hand")));
    }
    Ok(helper)
}

/// Namespaces left by a referee process that no longer exists (it was
/// killed with SIGKILL): `np-<pid>-...` whose pid is gone.
pub fn stale_namespaces() -> Vec<String> {
    let out = exec::run(&["ip", "netns", "list"].map(String::from), None, Duration::from_secs(5))
        .map(|o| o.stdout)
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            n.strip_prefix("np-")
                .and_then(|r| r.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .map(str::to_string)
        .collect()
}

/// Delete the namespaces of [`stale_namespaces`]; returns their names.
pub fn remove_stale_namespaces() -> Vec<String> {
    let stale = stale_namespaces();
    for n in &stale {
        let _ = exec::run(&["ip", "netns", "del", n].map(String::from), None, Duration::from_secs(5));
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_probe_gets_its_own_source_port() {
        let mut v: Vec<Probe> =
            ["client:10.0.0.51:32220/tcp", "client:10.0.0.51:32220/tcp", "client:10.0.0.52:32220/udp"]
                .iter()
                .map(|p| Probe::parse(p).unwrap())
                .collect();
        own_ports(&mut v);
        assert_eq!(v.iter().map(|p| p.sport).collect::<Vec<_>>(), vec![40000, 40001, 40002]);
        own_ports(&mut v);
        assert_eq!(v.iter().map(|p| p.sport).collect::<Vec<_>>(), vec![40000, 40001, 40002], "idempotent");
    }

    #[test]
    fn probe_syntax() {
        let p = Probe::parse("client:10.0.0.51:32220/tcp").unwrap();
        assert_eq!((p.from.as_str(), p.to.port(), p.proto, p.sport), ("client", 32220, L4::Tcp, 40000));
        assert_eq!(p.to_string(), "client:10.0.0.51:32220/tcp");
        let p = Probe::parse("default/nginx-1:10.96.0.10:53/udp").unwrap();
        assert_eq!(p.from, "default/nginx-1");
        let p = Probe::parse("client:10.0.0.52:30868/sctp").unwrap();
        assert_eq!((p.proto, p.proto.proto()), (L4::Sctp, natpath_model::ruleset::Proto::SCTP));
        assert_eq!(p.to_string(), "client:10.0.0.52:30868/sctp");
        for bad in [
            "client:10.0.0.51:32220",
            "client:10.0.0.51/tcp",
            "c:1.2.3.4:5/icmp",
            ":1.2.3.4:5/tcp",
            "c:1.2.3.4:0/tcp",
            "c:x:5/udp",
        ] {
            assert!(matches!(Probe::parse(bad), Err(KernelError::BadInput(_))), "{bad}");
        }
    }
}
