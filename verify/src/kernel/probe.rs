//! One probe against a rebuilt cluster: read every node's rule counters and
//! conntrack table, send the probe from the sender's namespace, wait
//! (bounded) for its answer and for the pods' and relays' reports, read the
//! counters and conntrack again, and keep the differences.
//!
//! Contract: the probe's packets are the only traffic in the lab while it
//! runs (no IPv6, no daemons; the carrier hellos happen before the first
//! reading), so a counter that moved counted exactly the forward first
//! packet, its reply and their tunnel outer packets. For TCP the sender's
//! kernel would answer the SYN-ACK with a RST, which is dropped in the
//! sender's namespace: by an iptables raw rule in a host or pod namespace,
//! and in a node namespace by a probe-control nftables table (`ip
//! natpath_probe`, hook output at priority -400, before raw and conntrack,
//! invisible to iptables-save, so the snapshot's ruleset and its counters
//! are untouched); pods have `tcp_synack_retries = 0`, so exactly one SYN and
//! one SYN-ACK cross the nodes. Before every probe but the first, every
//! node's conntrack table and `-m recent` lists are cleared (and carriers
//! warmed again) so each probe starts from the state the model assumes:
//! its first packet NEW, no affinity remembered.

use super::lab::{self, Lab};
use super::{conntrack, counters, exec, KernelError, NodeConntrack, Options, PodSeen, Probe, ProbeResult, ReplySeen};
use super::{dumps::Dumps, exec::in_ns, Sent, TunnelEvent, L4};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

struct NodeState {
    counters: counters::Counters,
    conntrack: Vec<conntrack::Entry>,
}

/// Read every node's counters and conntrack, all commands at once.
fn read_nodes(lab: &Lab) -> Result<Vec<NodeState>, KernelError> {
    let save = format!("{}-save", lab.iptables);
    let spawn = |ns: &String, cmd: &[&str]| {
        let argv = in_ns(ns, cmd);
        std::thread::spawn(move || exec::run(&argv, None, DEADLINE))
    };
    let jobs: Vec<_> =
        lab.nodes.iter().map(|ns| (spawn(ns, &[&save, "-c"]), spawn(ns, &["conntrack", "-L"]))).collect();
    let join =
        |h: std::thread::JoinHandle<Result<exec::Output, String>>, what: &str| -> Result<exec::Output, KernelError> {
            let o = h
                .join()
                .map_err(|_| KernelError::Internal("a reader thread panicked"))?
                .map_err(|e| KernelError::Setup(format!("{what}: {e}")))?;
            if what == "reading counters" && !o.ok() {
                return Err(KernelError::Setup(format!("{what}: {}", o.stderr.trim())));
            }
            Ok(o)
        };
    jobs.into_iter()
        .map(|(rules, ct)| {
            let rules = join(rules, "reading counters")?;
            let ct = join(ct, "reading conntrack")?;
            Ok(NodeState { counters: counters::parse(&rules.stdout), conntrack: conntrack::parse(&ct.stdout) })
        })
        .collect()
}

/// Drop the RST the sender's kernel answers the SYN-ACK with. In a host or
/// pod namespace (no snapshot rules there) an iptables raw rule does it; in
/// a node namespace the snapshot's ruleset must stay untouched, so a
/// separate nftables table hooked before raw (priority -400) does it.
fn ensure_rst_drop(ns: &str, sport: u16, node: bool) -> Result<(), KernelError> {
    if node {
        let script = format!(
            "table ip natpath_probe {{\n chain out {{\n  type filter hook output priority -400; policy accept;\n }}\n}}\n\
             flush chain ip natpath_probe out\n\
             add rule ip natpath_probe out tcp sport {sport} tcp flags & rst == rst drop\n"
        );
        return exec::check(
            "installing the probe's RST drop",
            &in_ns(ns, &["nft", "-f", "-"]),
            Some(&script),
            DEADLINE,
        )
        .map(|_| ());
    }
    let rules =
        format!("*raw\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp --sport {sport} --tcp-flags RST RST -j DROP\nCOMMIT\n");
    exec::check("installing the probe's RST drop", &in_ns(ns, &["iptables-restore"]), Some(&rules), DEADLINE)
        .map(|_| ())
}

/// Run one probe.
pub(crate) fn run_probe(
    lab: &mut Lab,
    dumps: &Dumps,
    probe: &Probe,
    opts: &Options,
    first: bool,
) -> Result<ProbeResult, KernelError> {
    if exec::interrupted() {
        return Err(KernelError::Interrupted);
    }
    let src_ns = lab::source_ns(lab, dumps, &probe.from)
        .cloned()
        .ok_or_else(|| KernelError::BadInput(format!("unknown sender `{}`", probe.from)))?;
    let mut notes = Vec::new();
    if !first {
        for ns in &lab.nodes {
            exec::check("flushing conntrack", &in_ns(ns, &["conntrack", "-F"]), None, DEADLINE)?;
            // `-m recent` lists (session affinity) are per-namespace state too.
            let clear = "for f in /proc/net/xt_recent/*; do [ -e \"$f\" ] && echo / > \"$f\"; done; true";
            exec::check("clearing xt_recent lists", &in_ns(ns, &["sh", "-c", clear]), None, DEADLINE)?;
        }
        if !opts.new_carriers {
            lab.warm_carriers(dumps)?;
        }
    }
    if probe.proto == L4::Tcp {
        ensure_rst_drop(&src_ns, probe.sport, lab.nodes.contains(&src_ns))?;
    }
    let started = Instant::now();
    let before = read_nodes(lab)?;
    lab.drain_events();
    let helper = lab.helper.to_string_lossy().into_owned();
    let timeout_ms = opts.reply_timeout.as_millis().min(10_000).to_string();
    let argv = in_ns(
        &src_ns,
        &[
            &helper,
            super::lab::HELPER_SUBCOMMAND,
            "probe",
            "--proto",
            probe.proto.name(),
            "--dst",
            &probe.to.to_string(),
            "--sport",
            &probe.sport.to_string(),
            "--timeout-ms",
            &timeout_ms,
        ],
    );
    let out = exec::check("sending the probe", &argv, None, opts.reply_timeout + Duration::from_secs(3))?;
    let result: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("ev").and_then(|e| e.as_str()) == Some("result"))
        .ok_or_else(|| KernelError::Setup(format!("the probe printed no result: {}", out.trim())))?;
    let str_at = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let sent = result.get("sent").map(|s| Sent { src: str_at(s, "src"), dst: str_at(s, "dst") }).unwrap_or_default();
    if result.get("refused_by_own_output").and_then(serde_json::Value::as_bool) == Some(true) {
        let why = result.get("send_error").and_then(serde_json::Value::as_str).unwrap_or("EPERM");
        notes.push(format!(
            "the sender's own node refused the probe: sending it failed ({why}), from a DROP in OUTPUT or a route that fails after OUTPUT's NAT"
        ));
    }
    let answer_ms = result
        .get("elapsed_us")
        .and_then(serde_json::Value::as_u64)
        .map(|us| us as f64 / 1e3)
        .filter(|_| result.get("reply").is_some_and(|r| !r.is_null()));
    let reply = result.get("reply").filter(|r| !r.is_null()).map(|r| ReplySeen {
        kind: str_at(r, "kind"),
        src: str_at(r, "src"),
        dst: str_at(r, "dst"),
    });

    // Reports from pods and relays: bounded wait, longer when something
    // answered (the pod's report may trail the reply by a few ms).
    let mut delivered = Vec::new();
    let mut tunnel = Vec::new();
    let settle = if reply.is_some() { Duration::from_millis(150) } else { Duration::from_millis(100) };
    let mut end = Instant::now() + settle;
    let want_ev = match probe.proto {
        L4::Tcp => "tcp-syn",
        L4::Udp => "udp",
        L4::Sctp => "sctp-init",
    };
    // Bounded by `settle`.
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let Ok((tag, line)) = lab.events.recv_timeout(left) else { break };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let ev = str_at(&v, "ev");
        if let Some(node) = tag.strip_prefix("relay:") {
            let what = match ev.as_str() {
                "ready" | "hello" => None,
                "encap" => Some(format!("encap {} -> outer to {}", str_at(&v, "inner"), str_at(&v, "outer_dst"))),
                "decap" => Some(format!("decap outer from {}: {}", str_at(&v, "outer_src"), str_at(&v, "inner"))),
                _ => Some(format!("{ev} {}", str_at(&v, "inner"))),
            };
            if let Some(event) = what {
                tunnel.push(TunnelEvent { node: node.to_string(), event });
            }
        } else if let Some(i) = Lab::pod_of_tag(&tag) {
            // A pod that sent the probe also sees the answer arrive: that is
            // the reply (already in `reply`), not a delivery to itself.
            let answer_to_sender = !sent.src.is_empty() && str_at(&v, "dst") == sent.src;
            if ev == want_ev && !answer_to_sender {
                if let (Some(pod), Ok(src), Ok(dst)) =
                    (dumps.cluster.pods.get(i), str_at(&v, "src").parse(), str_at(&v, "dst").parse())
                {
                    delivered.push(PodSeen {
                        pod: pod.name.clone(),
                        node: pod.node.clone(),
                        address: pod.address,
                        src,
                        dst,
                    });
                }
            }
        }
        if reply.is_some() && !delivered.is_empty() {
            // Everything that made the answer happen has been reported or is
            // about to be: a short tail for the relays' last lines.
            end = end.min(Instant::now() + Duration::from_millis(20));
        }
    }
    let after = read_nodes(lab)?;
    let probe_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;

    let mut deltas = Vec::new();
    let mut cts = Vec::new();
    for ((b, a), node) in before.iter().zip(&after).zip(&dumps.nodes) {
        if counters::shape(&b.counters) != counters::shape(&a.counters) {
            return Err(KernelError::Setup(format!("node `{}`: the ruleset changed during the probe", node.name)));
        }
        deltas.extend(counters::delta(&node.name, &b.counters, &a.counters));
        let old: BTreeSet<(String, String)> = b.conntrack.iter().map(conntrack::Entry::key).collect();
        let new: Vec<conntrack::Entry> = a.conntrack.iter().filter(|e| !old.contains(&e.key())).cloned().collect();
        cts.push(NodeConntrack { node: node.name.clone(), entries: new });
    }
    if lab.logs.iter().any(|(tag, _)| tag.starts_with("relay:")) {
        notes.push(
            "tunl0 is emulated (TUN + user-space relay): the skb mark is not copied between inner and outer packets"
                .into(),
        );
        notes.push(if opts.new_carriers {
            "tunnel carrier flows were NEW for this probe".into()
        } else {
            "tunnel carrier flows were ESTABLISHED before the probe (one hello each way)".into()
        });
    }
    if reply.as_ref().is_some_and(|r| r.kind.starts_with("icmp")) {
        notes.push("ICMP errors are not rate limited in the lab (net.ipv4.icmp_ratelimit = 0 on every node)".into());
    }
    if delivered.len() > 1 {
        notes.push(format!("{} pods received the probe", delivered.len()));
    }
    Ok(ProbeResult {
        probe: probe.clone(),
        sent,
        delivered_to: delivered,
        reply,
        counters: deltas,
        conntrack: cts,
        tunnel,
        probe_ms,
        answer_ms,
        notes,
    })
}
