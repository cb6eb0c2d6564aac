//! The `natpath` command line: its one definition (clap derive), and the
//! dispatch of each subcommand to the library. Help, shell completions and
//! the man page are generated from the same definition (`natpath
//! completions SHELL`, `natpath man`), so they cannot drift apart.
//!
//! Contract: every subcommand returns the project's exit code: 0 all hold
//! (or the command did what was asked), 1 a violation, 2 bad input or
//! usage (the message names file:line), 3 unknown (unsupported rule,
//! solver timeout, cannot run here). Every number a user
//! gives is bounded here, before any work starts, so that no flag can make
//! natpath panic or allocate without limit. stdout carries the answer;
//! stderr carries diagnostics and, on a terminal only, progress.

use crate::invariants::{self, CheckOptions, NAMES};
use crate::report::{self, style::Style};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use natpath_model::parse::{self, detect::DumpKind, iptables};
use natpath_model::ruleset::{Proto, TableName};
use natpath_model::snapshot;
use natpath_model::walk::{self, TraceOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exact NodePort packet paths and invariants for kube-proxy + Calico clusters.
#[derive(Debug, Parser)]
#[command(
    name = "natpath",
    version,
    about = "Exact NodePort packet paths and invariants for kube-proxy + Calico clusters",
    long_about = "natpath reads what standard tools print on a Kubernetes node (iptables-save, ipset save, \
ip route, ip addr, ip rule, sysctl) and tells exactly what happens to a packet: which rule of \
which chain on which node touched it, where it was DNATed and masqueraded, which tunnel it \
crossed and whether the reply found its way back. `check` proves invariants for every packet \
with an SMT solver; `kernel-check` replays probes on the real kernel in network namespaces.",
    after_help = "Exit codes: 0 holds or done, 1 a violation, 2 bad input or usage, 3 unknown or cannot run here.\n\
Docs: docs/snapshot-format.md (input), docs/invariants.md (check), docs/output.md (outputs).",
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Print nothing on stderr but errors (no progress).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to colour the text output (never when NO_COLOR is set).
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    pub color: ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// When stdout is a terminal and NO_COLOR is not set.
    Auto,
    /// Always (still never with NO_COLOR).
    Always,
    /// Never.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse a snapshot or one dump file and summarise it.
    #[command(after_help = "Examples:\n  \
natpath parse corpus/seed-ipip-remote\n  \
natpath parse corpus/seed-ipip-remote/nodes/node1/iptables-save --table nat\n  \
natpath parse corpus/kube-proxy-reference/svc100.node.iptables-save --format json")]
    Parse(ParseArgs),
    /// Trace one packet and its reply across the nodes of a snapshot.
    #[command(after_help = "Examples:\n  \
natpath trace corpus/seed-ipip-remote --from client --to 10.0.0.51:32220\n  \
natpath trace corpus/multi-endpoint --from client --to 10.0.0.51:32220 --seed 7\n  \
natpath trace corpus/kube-proxy-1.28-lb --from client --to 10.0.0.240:8080 --via node1\n  \
natpath trace corpus/calico-vxlan --from client --to 10.0.0.51:32220 --format dot | dot -Tsvg > trace.svg\n\n\
Every branch of a random choice (statistic) is traced with its exact probability unless --seed picks one.\n\
Exit 0 when traced, 2 for bad input, 3 when a branch is unknown (a rule natpath cannot model).")]
    Trace(TraceArgs),
    /// Prove the invariant catalog for every packet (SMT), with counterexamples.
    #[command(after_help = "Examples:\n  \
natpath check corpus/seed-ipip-remote\n  \
natpath check corpus/broken-no-mark-masq --invariant nodeport-reachable\n  \
natpath check /tmp/g10k --format json --timeout 60 > verdicts.json\n\n\
The invariants are described in docs/invariants.md.\n\
Exit 0 when every invariant holds, 1 on a violation (its packet is replayed in the model and \
printed), 3 when a verdict is unknown (unsupported rule, solver timeout) or nothing is in scope \
(no node's rules define a Service: the wrong iptables backend?), 2 for bad input.")]
    Check(CheckArgs),
    /// Merge the shards of a sharded check into the report and exit code of one run.
    #[command(after_help = "Examples:\n  \
natpath check /tmp/g10k --shard 1/2 > s1.json   # on one runner\n  \
natpath check /tmp/g10k --shard 2/2 > s2.json   # on another\n  \
natpath merge s1.json s2.json > verdicts.json\n\n\
It writes natpath.check/1 JSON, as `natpath check --format json` would, and exits as that check would:\n\
0 every invariant holds, 1 a violation, 3 unknown or nothing in scope, 2 when the shards are not\n\
every shard of one check (one missing or repeated, another snapshot or cut).")]
    Merge(MergeArgs),
    /// Show the packets whose fate differs between two snapshots (SMT, for every packet in scope).
    #[command(after_help = "Examples:\n  \
natpath diff corpus/seed-ipip-remote corpus/broken-no-mark-masq\n  \
natpath diff before/ after/ --format json > diff.json\n\n\
Each change is grouped by Service port, with one packet per node replayed in the model on both sides.\n\
Exit 0 when no packet in scope meets another fate, 1 when some does, 3 when an entry is unknown, 2 for bad input.")]
    Diff(DiffArgs),
    /// Pass or fail a rule change: invariants, contracts and every packet whose fate changed.
    #[command(after_help = "Examples:\n  \
natpath gate corpus/seed-ipip-remote corpus/broken-no-mark-masq\n  \
natpath gate before/ after/ --contracts natpath-contracts.toml --format sarif > natpath.sarif\n  \
natpath gate before/ after/ --allow-changes --format markdown >> \"$GITHUB_STEP_SUMMARY\"\n\n\
It fails when an invariant newly fails on AFTER (--strict: any failure), an [[expect]] contract does not hold,\n\
or a packet meets another fate in a Service port no [[allow]] covers. The contracts format is in docs/contracts.md.\n\
Invariants are checked where the change reaches: every other query meets the same rules on both sides\n\
(--whole checks everything, to also report failures that were already there).\n\
Exit 0 pass, 1 fail, 3 unknown (never a pass), 2 for bad input.")]
    Gate(GateArgs),
    /// Rebuild the snapshot in network namespaces and compare the kernel with the model (root).
    #[command(after_help = "Examples:\n  \
natpath kernel-check corpus/seed-ipip-remote\n  \
natpath kernel-check corpus/seed-ipip-local --probe client:10.0.0.52:32220/tcp --format json\n\n\
It needs root, network namespaces, iptables, ipset, conntrack and iproute2.\n\
Without --probe, the snapshot's `probes` file is used (one FROM:IP:PORT/PROTO per line).\n\
Namespaces are never linked to the root namespace and are removed on exit, error or Ctrl-C.\n\
Exit 0 when kernel and model agree, 1 on a difference, 2 for bad input, 3 when it cannot run here.")]
    KernelCheck(KernelCheckArgs),
    /// Collect a snapshot from a live cluster: every node's dumps and cluster.toml, read-only.
    #[command(after_help = "Examples:\n  \
natpath collect snap --via kubectl                    # every node, through kubectl debug node/...\n  \
natpath collect snap --via ssh --ssh-target 'root@{node}'\n  \
natpath collect snap --via exec --exec 'ip netns exec {node} sh -c {cmd}' --objects objects.json\n  \
natpath collect node snap                             # on a node: this machine's dumps only\n  \
natpath collect cluster snap --objects objects.json   # cluster.toml for the nodes already in snap\n\n\
Nothing is written on a node: one read-only script runs there (iptables-legacy-save and\n\
iptables-nft-save, ipset, ip, sysctl, bridge); of the two iptables backends, the one holding\n\
kube-proxy's and Calico's chains is kept. {node} is a Kubernetes node name and {cmd} the script,\n\
each passed as one argument, never through a local shell. Notes per node (backend, missing\n\
tools, cleanup) go to OUT/collect/NODE.txt. See docs/collect.md.\n\
Exit 0 collected and the snapshot loads (findings about the cluster are listed), 2 bad usage\n\
or a snapshot that does not load, 3 a node or the API could not be read (what was collected\n\
is kept).")]
    Collect(Box<CollectArgs>),
    /// Write a snapshot shaped like kube-proxy v1.28 + Calico output, at any scale.
    #[command(after_help = "Examples:\n  \
natpath generate /tmp/g1k --services 1000\n  \
natpath generate /tmp/g30 --services 300 --nodes 30 --vxlan\n  \
natpath generate /tmp/svc100 --from-services corpus/kube-proxy-reference/svc100.services.json")]
    Generate(GenerateArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
natpath completions bash > /etc/bash_completion.d/natpath\n  \
natpath completions zsh > \"${fpath[1]}/_natpath\"\n  \
natpath completions fish > ~/.config/fish/completions/natpath.fish")]
    Completions(CompletionsArgs),
    /// Write the man pages (natpath.1 and one page per subcommand).
    #[command(after_help = "Examples:\n  \
natpath man > natpath.1\n  \
natpath man --dir /usr/local/share/man/man1")]
    Man(ManArgs),
}

/// Output formats of `parse` and `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Text for people.
    Text,
    /// One JSON document (its schema is in schemas/).
    Json,
}

/// Output formats of `diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// Text for people.
    Text,
    /// One JSON document, schema natpath.diff/1.
    Json,
    /// Markdown for a pull-request comment or a job summary.
    Markdown,
}

/// Output formats of `trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// Text for people.
    Text,
    /// One JSON document, schema natpath.trace/1.
    Json,
    /// A Graphviz digraph of the walk.
    Dot,
}

/// Transport protocols a probe can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    /// TCP (a SYN).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP (an INIT).
    Sctp,
}

/// Arguments of `natpath parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// A snapshot directory, or one dump file (its kind is detected).
    pub path: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Read only this table of an iptables dump.
    #[arg(long, value_parser = parse_table, value_name = "TABLE")]
    pub table: Option<TableName>,
    /// Accept rules natpath cannot model; verdicts that depend on them are unknown.
    #[arg(long)]
    pub lenient: bool,
}

/// Arguments of `natpath trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The snapshot directory.
    pub snapshot: PathBuf,
    /// Who sends: a host, pod (namespace/name) or node of the snapshot.
    #[arg(long, value_name = "NAME")]
    pub from: String,
    /// Where to: an address and port, e.g. a node's NodePort.
    #[arg(long, value_name = "IP:PORT")]
    pub to: String,
    /// Transport protocol.
    #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
    pub proto: ProtoArg,
    /// Source port of the packet.
    #[arg(long, default_value_t = 40000, value_parser = clap::value_parser!(u16).range(1..), value_name = "PORT")]
    pub sport: u16,
    /// Follow one branch of every random choice, drawn with this seed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Hand a host's packet to this node, whatever the host's routes say (a
    /// load balancer's choice): for external and load-balancer IPs.
    #[arg(long, value_name = "NODE")]
    pub via: Option<String>,
    /// Take tunnel carrier flows as NEW (IPIP carriers are ESTABLISHED by default).
    #[arg(long)]
    pub new_carriers: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TraceFormat::Text)]
    pub format: TraceFormat,
}

/// Arguments of `natpath check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The snapshot directory.
    pub snapshot: PathBuf,
    /// Check only these invariants (repeat the flag); all by default.
    #[arg(long = "invariant", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(NAMES))]
    pub invariants: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Bound on each solver query, in seconds (a timeout makes the verdict unknown).
    #[arg(long, default_value = "30", value_parser = parse_timeout, value_name = "SECS", allow_hyphen_values = true)]
    pub timeout: Duration,
    /// Accept a snapshot whose rules define no Service (otherwise: nothing in scope, exit 3).
    #[arg(long)]
    pub allow_empty: bool,
    /// Check only shard I of N (1 <= I <= N <= 1000) and write its parts as one JSON document
    /// (natpath.shard/1) for `natpath merge`; the parts are dealt out heaviest first.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
}

/// Arguments of `natpath merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The JSON outputs of every shard of one `natpath check --shard I/N`, in any order.
    #[arg(required = true, value_name = "SHARD")]
    pub shards: Vec<PathBuf>,
}

/// Arguments of `natpath diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The snapshot before the change.
    pub before: PathBuf,
    /// The snapshot after the change.
    pub after: PathBuf,
    /// Also compare senders inside the cluster: the first pod of each node and each node itself,
    /// to every Service's cluster IP (slow where a change reaches every packet).
    #[arg(long)]
    pub pods: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,

    /// Bound on each solver query, in seconds (a timeout makes the entry unknown).
    #[arg(long, default_value = "30", value_parser = parse_timeout, value_name = "SECS", allow_hyphen_values = true)]
    pub timeout: Duration,
    /// Accept snapshots whose rules define no Service (otherwise: nothing in scope, exit 3).
    #[arg(long)]
    pub allow_empty: bool,
}

/// Output formats of `gate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GateFormat {
    /// Text for people.
    Text,
    /// One JSON document, schema natpath.gate/1.
    Json,
    /// JUnit XML: a test case per invariant, contract and changed Service port.
    Junit,
    /// SARIF 2.1.0: results at the dump file and line of the rules responsible.
    Sarif,
    /// Markdown for a pull-request comment or a job summary.
    Markdown,
}

/// Arguments of `natpath gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// The snapshot before the change.
    pub before: PathBuf,
    /// The snapshot after the change.
    pub after: PathBuf,
    /// The contracts every change is held to (docs/contracts.md).
    #[arg(long, value_name = "FILE")]
    pub contracts: Option<PathBuf>,
    /// Check the invariants on the whole of both snapshots, not only where the change
    /// reaches, to report failures that were already there (they do not fail the gate).
    #[arg(long)]
    pub whole: bool,
    /// Fail on invariants that already failed on BEFORE too (implies --whole).
    #[arg(long)]
    pub strict: bool,
    /// Accept every change of a packet's fate (invariants and contracts still count).
    #[arg(long)]
    pub allow_changes: bool,
    /// The diff also compares senders inside the cluster: the first pod of each node and each
    /// node itself, to every Service's cluster IP (slow where a change reaches every packet).
    #[arg(long)]
    pub pods: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = GateFormat::Text)]
    pub format: GateFormat,
    /// Bound on each solver query, in seconds (a timeout makes the result unknown).
    #[arg(long, default_value = "30", value_parser = parse_timeout, value_name = "SECS", allow_hyphen_values = true)]
    pub timeout: Duration,
    /// Accept snapshots whose rules define no Service (otherwise: nothing in scope, exit 3).
    #[arg(long)]
    pub allow_empty: bool,
}

/// Arguments of `natpath kernel-check`.
#[derive(Debug, Args)]
pub struct KernelCheckArgs {
    /// The snapshot directory.
    pub snapshot: PathBuf,
    /// A probe FROM:IP:PORT/PROTO (repeat the flag); the snapshot's `probes` file by default.
    #[arg(long = "probe", value_name = "FROM:IP:PORT/PROTO")]
    pub probes: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Leave tunnel carrier flows NEW (no hello before the probes).
    #[arg(long)]
    pub new_carriers: bool,
    /// How long a probe waits for its answer, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=10_000), value_name = "MS")]
    pub timeout_ms: u64,
    /// Run the kernel side only, without comparing with the model.
    #[arg(long)]
    pub kernel_only: bool,
}

/// Arguments of `natpath collect`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CollectArgs {
    /// Collect one part only.
    #[command(subcommand)]
    pub part: Option<CollectPart>,
    /// The snapshot directory to write (created when missing).
    #[arg(required = true, value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// How natpath reaches each node.
    #[arg(long, value_enum, default_value_t = Via::Kubectl)]
    pub via: Via,
    /// The nodes to collect, comma-separated (default: every node of the API).
    #[arg(long, value_delimiter = ',', value_name = "NODE,...")]
    pub nodes: Vec<String>,
    /// With --via exec: the command template, with {node} and {cmd} (one word each).
    #[arg(long, value_name = "TEMPLATE")]
    pub exec: Option<String>,
    /// With --via ssh: the destination, with {node}.
    #[arg(long, default_value = "{node}", value_name = "DEST")]
    pub ssh_target: String,
    /// With --via ssh: an ssh option KEY=VALUE (repeat the flag), passed as -o.
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    pub ssh_options: Vec<String>,
    /// Nodes collected at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64), value_name = "N")]
    pub parallel: u64,
    /// With --via kubectl: the debug pod's image (it needs only chroot and sh).
    #[arg(long, default_value = "busybox:1.36", value_name = "IMAGE")]
    pub image: String,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub common: CollectCommon,
}

/// The parts of `natpath collect`.
#[derive(Debug, Subcommand)]
pub enum CollectPart {
    /// Collect this machine (run on a node, or inside its network namespace).
    Node(CollectNodeArgs),
    /// Write cluster.toml from the Kubernetes API for the nodes already under OUT/nodes.
    Cluster(CollectClusterArgs),
}

/// How `collect` reaches a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// `kubectl debug node/NODE` with `chroot /host` (the debug pod is deleted afterwards).
    Kubectl,
    /// `ssh` to --ssh-target.
    Ssh,
    /// Any command template (--exec).
    Exec,
}

/// Where the Kubernetes API objects come from, and the outside hosts.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Read saved `kubectl get nodes,pods,services,endpointslices -A -o json` output instead of the API.
    #[arg(long, value_name = "FILE")]
    pub objects: Option<PathBuf>,
    /// kubectl's --context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// kubectl's --kubeconfig.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// An outside host NAME=ADDRESS/LEN[,GATEWAY] (repeat the flag; default: one free address on the first node's LAN).
    #[arg(long = "client", value_name = "NAME=ADDR/LEN[,GW]")]
    pub client: Vec<crate::collect::cluster::Client>,
}

/// Options of every form of `collect` that runs on nodes.
#[derive(Debug, Args)]
pub struct CollectCommon {
    /// Seconds each node may take.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600), value_name = "SECS")]
    pub timeout: u64,
    /// Replace public IPv4 addresses with consistent stand-ins in every file.
    #[arg(long)]
    pub redact: bool,
    /// Print a line per node on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

/// Arguments of `natpath collect node`.
#[derive(Debug, Args)]
pub struct CollectNodeArgs {
    /// The snapshot directory (this node goes to OUT/nodes/NAME).
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// The node's name (default: this machine's hostname).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub common: CollectCommon,
}

/// Arguments of `natpath collect cluster`.
#[derive(Debug, Args)]
pub struct CollectClusterArgs {
    /// The snapshot directory whose nodes/ is already collected.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Seconds `kubectl get` may take.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600), value_name = "SECS")]
    pub timeout: u64,
    /// Replace public IPv4 addresses with consistent stand-ins in every file.
    #[arg(long)]
    pub redact: bool,
}

/// The largest cluster `generate` writes: Services, nodes, and both
/// together (about 2.6 KB of dumps per Service and node).
pub const MAX_SERVICES: usize = 50_000;
/// See [`MAX_SERVICES`].
pub const MAX_NODES: usize = 1_000;
/// See [`MAX_SERVICES`].
pub const MAX_SERVICE_NODES: usize = 1_000_000;

/// Arguments of `natpath generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The directory to write the snapshot to (created if needed).
    pub dir: PathBuf,
    /// Number of Services.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_SERVICES as u64), value_name = "N")]
    pub services: u64,
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=MAX_NODES as u64), value_name = "M")]
    pub nodes: u64,
    /// Seed: the same arguments and seed write the same snapshot.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Calico VXLAN instead of IPIP.
    #[arg(long)]
    pub vxlan: bool,
    /// Render the Services of this file (kube-proxy reference format) instead.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["services", "nodes", "seed", "vxlan"])]
    pub from_services: Option<PathBuf>,
    /// With --from-services: the node kube-proxy runs on.
    #[arg(long, default_value = "node-1", value_name = "NAME", requires = "from_services")]
    pub node: String,
}

/// Arguments of `natpath completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `natpath man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write natpath.1 and natpath-SUBCOMMAND.1 into this directory instead of natpath.1 to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

fn parse_table(s: &str) -> Result<TableName, String> {
    TableName::from_name(s).ok_or_else(|| format!("expected raw, mangle, nat, filter or security, found `{s}`"))
}

/// The longest `--timeout`: a day per query.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("expected seconds, found `{s}`"))?;
    if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
        return Err(format!("expected seconds in (0, {MAX_TIMEOUT_SECS}], found `{s}`"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Most shards a check is cut into.
const MAX_SHARDS: usize = 1000;

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("expected I/N with 1 <= I <= N <= {MAX_SHARDS}, found `{s}`");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if i == 0 || i > n || n > MAX_SHARDS {
        return Err(bad());
    }
    Ok((i, n))
}

/// The command line's definition, for help, completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}

/// A usage or input error: exit code 2, printed as `natpath: MESSAGE`.
#[derive(Debug)]
pub struct Bad(pub String);

/// What the process does around a command: where progress goes, colour.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// Progress may be drawn (stderr is a terminal and no `--quiet`).
    pub progress: bool,
    /// Text output is coloured.
    pub style: Style,
}

impl Ui {
    fn new(cli: &Cli) -> Ui {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = !no_color
            && match cli.color {
                ColorWhen::Always => true,
                ColorWhen::Never => false,
                ColorWhen::Auto => std::io::stdout().is_terminal(),
            };
        Ui { progress: !cli.quiet && std::io::stderr().is_terminal(), style: Style { color } }
    }

    /// A progress bar of `total` steps on stderr, hidden unless [`Ui::progress`].
    pub fn bar(&self, total: u64, what: &str) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {wide_msg} ({elapsed}, about {eta} left)",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_string());
        bar
    }
}

/// The first argument that runs the kernel referee's helper programs
/// instead of the command line: `natpath kernel-helper relay|serve|probe|hello
/// ...`, started by `kernel-check` inside its namespaces. It is not part of
/// the command line users see (no help, no completion), and its arguments
/// are the helper's own protocol (`crate::kernel::helper`).
pub const KERNEL_HELPER: &str = "kernel-helper";

/// A progress callback for the library (`done` of `total` parts, the last
/// one named) that draws on `bar`.
fn bar_progress(bar: &indicatif::ProgressBar) -> impl Fn(usize, usize, &str) + Sync + '_ {
    move |done, total, what| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(what.to_string());
    }
}

/// Run the command line of this process; returns the exit code.
pub fn main() -> u8 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == KERNEL_HELPER) {
        let rest: Vec<String> = args.iter().skip(2).map(|a| a.to_string_lossy().into_owned()).collect();
        return clamp(crate::kernel::helper::helper_main(&rest));
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and exit 0; usage errors exit 2.
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let ui = Ui::new(&cli);
    let result = match cli.command {
        Command::Parse(a) => cmd_parse(&a),
        Command::Trace(a) => cmd_trace(&a, &ui),
        Command::Check(a) => cmd_check(&a, &ui),
        Command::Merge(a) => cmd_merge(&a),
        Command::Diff(a) => cmd_diff(&a, &ui),
        Command::Gate(a) => cmd_gate(&a, &ui),
        Command::KernelCheck(a) => Ok(crate::kernel::cli::kernel_check(&a, &ui)),
        Command::Collect(a) => crate::collect::cli::collect(&a, &ui),
        Command::Generate(a) => cmd_generate(&a),
        Command::Completions(a) => {
            let mut out = Vec::new();
            clap_complete::generate(a.shell, &mut command(), "natpath", &mut out);
            emit_bytes(&out);
            Ok(0)
        }
        Command::Man(a) => cmd_man(&a),
    };
    match result {
        Ok(code) => code,
        Err(Bad(msg)) => {
            eprintln!("natpath: {msg}");
            2
        }
    }
}

/// Write to stdout; a reader that went away (`natpath ... | head`) is not an
/// error worth a panic.
pub fn emit(s: &str) {
    emit_bytes(s.as_bytes());
}

fn emit_bytes(b: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b).and_then(|()| out.flush());
}

fn clamp(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(3)
}

fn load(path: &Path) -> Result<snapshot::Snapshot, Bad> {
    snapshot::load(path).map_err(|e| Bad(e.to_string()))
}

/// BEFORE and AFTER, read side by side; BEFORE's errors first when both fail.
/// Hand `loaded` to the end of the process instead of freeing it: the
/// process exits once the report is out, and freeing the parsed rules of a
/// large cluster one by one costs a sixth of a 10,000-Service gate's CPU.
fn left_for_exit<T>(loaded: T) {
    std::mem::forget(loaded);
}

fn load_pair(before: &Path, after: &Path) -> Result<(snapshot::Snapshot, snapshot::Snapshot), Bad> {
    let (b, a) = std::thread::scope(|sc| {
        let b = sc.spawn(|| load(before));
        let a = load(after);
        (b.join(), a)
    });
    let b = b.map_err(|_| Bad(format!("{}: BUG: reading it failed", before.display())))?;
    Ok((b?, a?))
}

fn cmd_parse(a: &ParseArgs) -> Result<u8, Bad> {
    let opts = iptables::Options { lenient: a.lenient, table: a.table };
    let path = a.path.display().to_string();
    let summary = if a.path.is_dir() {
        report::summary::snapshot(&load(&a.path)?, &path)
    } else {
        let text = read_text(&a.path)?;
        let kind = parse::detect::detect(&text).map_err(|why| Bad(format!("{path}: {why}")))?;
        single_dump(&path, &text, kind, &opts)?
    };
    match a.format {
        Format::Json => emit(&json(&summary)?),
        Format::Text => emit(&report::summary::text(&summary)),
    }
    Ok(0)
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, Bad> {
    serde_json::to_string_pretty(v)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| Bad(e.to_string()))
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
        schema: report::summary::SCHEMA,
        kind: kind_name.into(),
        path: path.to_string(),
        hosts: Vec::new(),
        pods: Vec::new(),
        routers: Vec::new(),
        nodes: vec![node],
    })
}

fn cmd_trace(a: &TraceArgs, ui: &Ui) -> Result<u8, Bad> {
    let proto = match a.proto {
        ProtoArg::Tcp => Proto::TCP,
        ProtoArg::Udp => Proto::UDP,
        ProtoArg::Sctp => Proto::SCTP,
    };
    let mut opts = TraceOptions { seed: a.seed, ..TraceOptions::default() };
    opts.node.carrier_established = !a.new_carriers;
    let snap = load(&a.snapshot)?;
    // Handed to a node, the packet may go to an address nobody owns (a
    // load-balancer IP): that node's rules decide.
    let probe = match &a.via {
        None => walk::probe(&snap, &a.from, &a.to, proto, a.sport),
        Some(v) => walk::probe_anywhere(&snap, &a.from, &a.to, proto, a.sport)
            .map(|p| natpath_model::trace::Probe { via: Some(v.clone()), ..p }),
    }
    .map_err(|e| Bad(e.0))?;
    let trace = walk::trace(&snap, &probe, &opts).map_err(|e| Bad(e.0))?;
    match a.format {
        TraceFormat::Json => emit(&json(&trace)?),
        TraceFormat::Dot => emit(&report::dot::trace(&trace)),
        TraceFormat::Text => emit(&ui.style.paint_outcomes(&report::text::trace(&trace))),
    }
    let unknown = trace.branches.iter().any(|b| b.outcome == natpath_model::trace::Outcome::Unknown);
    Ok(if unknown { 3 } else { 0 })
}

fn cmd_check(a: &CheckArgs, ui: &Ui) -> Result<u8, Bad> {
    let snap = load(&a.snapshot)?;
    let opts = CheckOptions { timeout: Some(a.timeout), ..CheckOptions::default() };
    let names: Vec<&str> =
        if a.invariants.is_empty() { NAMES.to_vec() } else { a.invariants.iter().map(String::as_str).collect() };
    let bar = ui.bar(0, "check");
    let progress = bar_progress(&bar);
    if let Some((i, n)) = a.shard {
        let parts = invariants::check_shard(&snap, &names, &opts, (i - 1, n), &progress).map_err(Bad)?;
        bar.finish_and_clear();
        let path = a.snapshot.display().to_string();
        let empty = invariants::empty_scope(&snap);
        emit(&report::check::shard(&path, &snap, (i, n), &names, &parts, empty.as_deref(), a.allow_empty));
        // This shard's own parts: a red runner for a violation; `merge` decides.
        let verdicts: Vec<invariants::Verdict> = parts.into_iter().map(|p| p.verdict).collect();
        return Ok(clamp(invariants::exit_code(&verdicts)));
    }
    let verdicts = invariants::check_many_with(&snap, &names, &opts, &progress);
    bar.finish_and_clear();
    if verdicts.len() != names.len() {
        eprintln!("natpath check: internal error: a checker thread failed; verdicts are missing");
        return Ok(3);
    }
    let path = a.snapshot.display().to_string();
    // Nothing in scope never reads as a pass, unless the user says so.
    let empty = invariants::empty_scope(&snap);
    let empty = empty.as_deref();
    let exit = invariants::scope_exit(invariants::exit_code(&verdicts), empty, a.allow_empty);
    match a.format {
        Format::Json => emit(&report::check::json(&path, &snap, &verdicts, empty, exit)),
        Format::Text => emit(&report::check::text(&path, &snap, &verdicts, empty, ui.style)),
    }
    left_for_exit(snap);
    Ok(clamp(exit))
}

fn cmd_merge(a: &MergeArgs) -> Result<u8, Bad> {
    let mut texts = Vec::new();
    for p in &a.shards {
        texts.push((p.display().to_string(), read_text(p)?));
    }
    let (doc, exit) = report::check::merge(&texts).map_err(Bad)?;
    emit(&doc);
    Ok(clamp(exit))
}

/// A file read with natpath's bounds, as text; bytes that are not UTF-8
/// are bad input at their line.
pub(crate) fn read_text(path: &Path) -> Result<String, Bad> {
    let bytes = natpath_model::input::read_file(path).map_err(|e| Bad(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let upto = e.utf8_error().valid_up_to();
        let line = bytes.get(..upto).map(|b| b.iter().filter(|&&c| c == b'\n').count() + 1).unwrap_or(1);
        Bad(format!("{}:{line}:1: expected text, found bytes that are not UTF-8", path.display()))
    })
}

/// An `iptables-save` dump file, parsed (the one-node use of `diff`).
fn dump_file(path: &Path) -> Result<natpath_model::ruleset::Ruleset, Bad> {
    let name = path.display().to_string();
    let text = read_text(path)?;
    match parse::detect::detect(&text).map_err(|why| Bad(format!("{name}: {why}")))? {
        DumpKind::Iptables => {
            let rs = iptables::parse(&text, &name, &iptables::Options::default()).map_err(|e| Bad(e.to_string()))?;
            // A dump that says another back-end holds rules too is half a
            // ruleset, here as in a snapshot.
            let mut errs = natpath_model::ParseErrors::default();
            if snapshot::one_backend(&rs, &text, &name, &mut errs) {
                Ok(rs)
            } else {
                Err(Bad(errs.to_string()))
            }
        }
        _ => Err(Bad(format!("{name}:1:1: expected an iptables-save dump (or a snapshot directory)"))),
    }
}

fn cmd_diff(a: &DiffArgs, ui: &Ui) -> Result<u8, Bad> {
    let names = (a.before.display().to_string(), a.after.display().to_string());
    if a.before.is_file() || a.after.is_file() {
        if !(a.before.is_file() && a.after.is_file()) {
            return Err(Bad(format!(
                "{}: expected two snapshot directories or two iptables-save files, found one of each",
                names.1
            )));
        }
        let (b, af) = (dump_file(&a.before)?, dump_file(&a.after)?);
        let d = crate::diff::diff_dumps(&b, &af, (&names.0, &names.1));
        match a.format {
            DiffFormat::Json => emit(&report::diff::json(&d)),
            DiffFormat::Text => emit(&report::diff::text(&d, ui.style)),
            DiffFormat::Markdown => emit(&report::markdown::diff(&d)),
        }
        return Ok(clamp(d.exit_code()));
    }
    let (before, after) = load_pair(&a.before, &a.after)?;
    let opts = CheckOptions { timeout: Some(a.timeout), ..CheckOptions::default() };
    let bar = ui.bar(0, "diff");
    let progress = bar_progress(&bar);
    let dopts = crate::diff::DiffOptions {
        check: opts,
        pods: a.pods,
        allow_empty: a.allow_empty,
        ..crate::diff::DiffOptions::default()
    };
    let d = crate::diff::diff_with(&before, &after, (&names.0, &names.1), &dopts, &progress).map_err(|e| Bad(e.0))?;
    bar.finish_and_clear();
    match a.format {
        DiffFormat::Json => emit(&report::diff::json(&d)),
        DiffFormat::Text => emit(&report::diff::text(&d, ui.style)),
        DiffFormat::Markdown => emit(&report::markdown::diff(&d)),
    }
    let exit = clamp(d.exit_code());
    drop(d);
    left_for_exit((before, after));
    Ok(exit)
}

fn cmd_gate(a: &GateArgs, ui: &Ui) -> Result<u8, Bad> {
    if a.before.is_file() || a.after.is_file() {
        return Err(Bad(format!(
            "{}: the gate needs snapshot directories (its invariants and contracts walk packets across \
             addresses and routes); `natpath diff BEFORE-FILE AFTER-FILE` compares two dump files rule by rule",
            a.after.display()
        )));
    }
    let contracts = match &a.contracts {
        Some(p) => Some(crate::gate::Contracts::read(p).map_err(|e| Bad(e.0))?),
        None => None,
    };
    let (before, after) = load_pair(&a.before, &a.after)?;
    let opts = crate::gate::GateOptions {
        check: CheckOptions { timeout: Some(a.timeout), ..CheckOptions::default() },
        strict: a.strict,
        whole: a.whole || a.strict,
        allow_changes: a.allow_changes,
        pods: a.pods,
        allow_empty: a.allow_empty,
    };
    let bar = ui.bar(0, "gate");
    let progress = bar_progress(&bar);
    let names = (a.before.display().to_string(), a.after.display().to_string());
    let g = crate::gate::gate(&before, &after, (&names.0, &names.1), contracts.as_ref(), &opts, &progress)
        .map_err(|e| Bad(e.0))?;
    bar.finish_and_clear();
    match a.format {
        GateFormat::Text => emit(&report::gate::text(&g, ui.style)),
        GateFormat::Json => emit(&report::gate::json(&g)),
        GateFormat::Junit => emit(&report::junit::gate(&g)),
        GateFormat::Sarif => emit(&report::sarif::gate(&g)),
        GateFormat::Markdown => emit(&report::markdown::gate(&g)),
    }
    let exit = clamp(g.exit);
    drop(g);
    left_for_exit((before, after));
    Ok(exit)
}

fn cmd_generate(a: &GenerateArgs) -> Result<u8, Bad> {
    let dir = a.dir.display().to_string();
    let snap = match &a.from_services {
        Some(f) => {
            let bytes = natpath_model::input::read_file(f).map_err(|e| Bad(e.to_string()))?;
            let json = String::from_utf8(bytes)
                .map_err(|_| Bad(format!("{}: expected UTF-8 JSON, found other bytes", f.display())))?;
            natpath_corpus::from_services_json(&json, &a.node).map_err(|e| Bad(format!("{}: {e}", f.display())))?
        }
        None => {
            // Both bounds hold (clap checked them); their product is bounded too.
            let (services, nodes) = (a.services as usize, a.nodes as usize);
            if services.saturating_mul(nodes) > MAX_SERVICE_NODES {
                return Err(Bad(format!(
                    "{services} Services on {nodes} nodes is more than natpath generates ({MAX_SERVICE_NODES} \
                     Services times nodes, about {} GB of dumps)",
                    MAX_SERVICE_NODES * 2600 / 1_000_000_000
                )));
            }
            let spec = natpath_corpus::Spec {
                services,
                nodes,
                seed: a.seed,
                encap: if a.vxlan { natpath_corpus::Encap::Vxlan } else { natpath_corpus::Encap::Ipip },
                ..natpath_corpus::Spec::default()
            };
            natpath_corpus::generate(&spec)
        }
    };
    natpath_corpus::write_snapshot(&snap, &a.dir).map_err(|e| Bad(format!("{dir}: cannot write: {e}")))?;
    emit(&format!("wrote {} nodes to {dir}\n", snap.nodes.len()));
    Ok(0)
}

fn cmd_man(a: &ManArgs) -> Result<u8, Bad> {
    let cmd = command();
    match &a.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out).map_err(|e| Bad(e.to_string()))?;
            emit_bytes(&out);
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Bad(format!("{}: cannot create: {e}", dir.display())))?;
            let mut pages = vec![("natpath".to_string(), cmd.clone())];
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("natpath-{}", sub.get_name());
                pages.push((name.clone(), sub.clone().name(name)));
            }
            for (name, page) in pages {
                let mut out = Vec::new();
                clap_mangen::Man::new(page).render(&mut out).map_err(|e| Bad(e.to_string()))?;
                let file = dir.join(format!("{name}.1"));
                std::fs::write(&file, out).map_err(|e| Bad(format!("{}: cannot write: {e}", file.display())))?;
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn timeouts_are_bounded() {
        assert!(parse_timeout("1e20").is_err());
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("NaN").is_err());
        assert!(parse_timeout("inf").is_err());
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
    }
}
