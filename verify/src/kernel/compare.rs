//! The kernel's result against the model's trace (`natpath.trace/1`): for
//! the branch whose `delivered_to` pod is the one the kernel chose, compare
//! the pod, the source and destination it saw, whether the reply reached
//! the sender and from which address, whether a refusal (a reset or ICMP
//! error of the probe's own connection) reached it, of which kind and from
//! which address, the outcome, and the multiset of
//! (node, table, chain, rule) counter increments against the trace's steps
//! that carry a rule number.
//!
//! Contract: never panics on any JSON; a missing or malformed field is a
//! difference, not an error; every difference carries both sides. The
//! source port the pod saw is not compared when the branch says
//! `"sport_random": true` (MASQUERADE/SNAT `--random-fully`). Kernel facts
//! relied on: counters count each packet once per rule whose matches all
//! held, so the kernel's multiset is the forward first packet, its reply,
//! the packets a node sends of its own because of them (a REJECT's ICMP
//! error or reset, a failed route's ICMP error, an ICMP redirect, across
//! that node's OUTPUT and POSTROUTING) and their tunnel outer packets -
//! exactly the steps a trace lists.

use super::ProbeResult;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// One disagreement between the kernel and the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// What differs (`source seen by the pod`, `counter node1 nat/KUBE-POSTROUTING #3`, ...).
    pub what: String,
    /// The kernel's side.
    pub kernel: String,
    /// The model's side.
    pub model: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: kernel {}; model {}", self.what, self.kernel, self.model)
    }
}

fn diff(what: impl Into<String>, kernel: impl Into<String>, model: impl Into<String>) -> Difference {
    Difference { what: what.into(), kernel: kernel.into(), model: model.into() }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str)
}

fn host(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr)
}

/// The kernel's outcome in the trace's words.
fn kernel_outcome(r: &ProbeResult) -> &'static str {
    let answered = r.reply.as_ref().map(|x| x.kind.as_str());
    match (r.pod().is_some(), answered) {
        (true, Some("syn-ack" | "udp" | "init-ack")) => "delivered",
        (true, _) => "reply-lost",
        // No pod reported it, yet it was answered: a node's own socket (its
        // `ss-listen`) took it.
        (false, Some("syn-ack" | "udp" | "init-ack")) => "delivered",
        // A reset of the probe's own connection, or a destination
        // unreachable quoting the probe (the helper checks both belong to
        // it): what REJECT, a closed port or a failed route sends.
        (false, Some(k)) if is_refusal(k) => "rejected",
        // Time exceeded: the packet went round until its TTL ran out.
        (false, Some(k)) if k.starts_with("icmp 11/") => "loop",
        (false, _) => "dropped",
    }
}

/// Compare `result` with `trace` (a `natpath.trace/1` value).
pub fn compare(result: &ProbeResult, trace: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    if s(trace, &["schema"]) != Some("natpath.trace/1") {
        out.push(diff("trace schema", "natpath.trace/1", s(trace, &["schema"]).unwrap_or("missing")));
        return out;
    }
    let probe = &result.probe;
    if let Some(sp) = trace.get("probe").and_then(|p| p.get("sport")).and_then(Value::as_u64) {
        if sp != u64::from(probe.sport) {
            out.push(diff("probe source port", probe.sport.to_string(), sp.to_string()));
        }
    }
    if let Some(p) = s(trace, &["probe", "proto"]) {
        if p != probe.proto.name() {
            out.push(diff("probe protocol", probe.proto.name(), p));
        }
    }
    let empty = Vec::new();
    let branches = trace.get("branches").and_then(Value::as_array).unwrap_or(&empty);
    let pod_of = |b: &Value| -> Option<String> {
        (s(b, &["delivered_to", "kind"]) == Some("pod"))
            .then(|| s(b, &["delivered_to", "name"]).unwrap_or("").to_string())
    };
    // The branches the kernel's pod (or its delivering to none) allows; of
    // those, the one the kernel's observation fits best: two branches that
    // deliver to no pod (endpoints outside the snapshot, chosen at random)
    // differ in the rules they count.
    let candidates: Vec<&Value> = branches
        .iter()
        .filter(|b| match result.pod() {
            Some(p) => pod_of(b).as_deref() == Some(p.pod.as_str()),
            None => pod_of(b).is_none(),
        })
        .collect();
    let best = candidates.iter().map(|b| against(result, b)).min_by_key(Vec::len);
    let Some(differences) = best else {
        let listed: Vec<String> = branches
            .iter()
            .map(|b| {
                let to = pod_of(b).map(|p| format!("pod {p}")).unwrap_or_else(|| "no pod".into());
                format!("{} {} ({})", s(b, &["probability"]).unwrap_or("?"), s(b, &["outcome"]).unwrap_or("?"), to)
            })
            .collect();
        let k = result.pod().map(|p| format!("pod {} on {}", p.pod, p.node)).unwrap_or_else(|| "no pod".into());
        out.push(diff("delivered to", k, format!("no such branch; branches: {}", listed.join(", "))));
        return out;
    };
    out.extend(differences);
    out
}

/// The differences between the kernel's `result` and one branch of the
/// model's trace.
fn against(result: &ProbeResult, branch: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    let empty = Vec::new();
    let ko = kernel_outcome(result);
    let mo = s(branch, &["outcome"]).unwrap_or("missing");
    // An unknown outcome claims none (the packet went where the snapshot
    // does not say, such as an API server off the snapshot): whatever the
    // kernel did there is not compared; the counters up to there are.
    if ko != mo && mo != "unknown" {
        out.push(diff("outcome", ko, mo));
    }
    if let Some(pod) = result.pod() {
        let random = branch.get("sport_random").and_then(Value::as_bool).unwrap_or(false);
        let (ksrc, kdst) = (pod.src.to_string(), pod.dst.to_string());
        match s(branch, &["seen_by_destination", "src"]) {
            Some(m) if random && host(m) == pod.src.ip().to_string() => {}
            Some(m) if !random && m == ksrc => {}
            Some(m) => {
                let what = if random {
                    "source seen by the pod (port random-fully: address only)"
                } else {
                    "source seen by the pod"
                };
                out.push(diff(what, ksrc, m));
            }
            None => out.push(diff("source seen by the pod", ksrc, "missing")),
        }
        match s(branch, &["seen_by_destination", "dst"]) {
            Some(m) if m == kdst => {}
            m => out.push(diff("destination seen by the pod", kdst, m.unwrap_or("missing"))),
        }
    }
    let k_reached = result.reply.as_ref().filter(|r| matches!(r.kind.as_str(), "syn-ack" | "udp" | "init-ack"));
    let m_reached = s(branch, &["reply", "outcome"]) == Some("delivered");
    match (k_reached, m_reached) {
        (Some(k), true) => {
            for (field, kv) in [("src", &k.src), ("dst", &k.dst)] {
                let mv = s(branch, &["reply", "seen_by_client", field]).unwrap_or("missing");
                if mv != kv {
                    out.push(diff(format!("reply {field} seen by the sender"), kv.clone(), mv));
                }
            }
        }
        (None, false) => {}
        (k, _) => out.push(diff(
            "reply reached the sender",
            k.map(|r| format!("yes, {} from {}", r.kind, r.src)).unwrap_or_else(|| {
                format!(
                    "no{}",
                    result.reply.as_ref().map(|r| format!(" ({} from {})", r.kind, r.src)).unwrap_or_default()
                )
            }),
            if m_reached {
                "yes".to_string()
            } else {
                format!("no ({})", s(branch, &["reply", "outcome"]).unwrap_or("no reply"))
            },
        )),
    }

    // A refusal: the kernel's reset or ICMP error that reached the sender
    // (the helper keeps only those of the probe's own connection) against
    // the model's walked answer of the refusing node.
    let k_refused = result.reply.as_ref().filter(|r| is_refusal(&r.kind));
    let m_refused = branch.get("refusal").filter(|r| s(r, &["outcome"]) == Some("delivered"));
    match (k_refused, m_refused) {
        (Some(k), Some(m)) => {
            if let Some(mk) = s(m, &["kind"]) {
                if mk != k.kind {
                    out.push(diff("refusal the sender got", k.kind.clone(), mk));
                }
            }
            for (field, kv) in [("src", &k.src), ("dst", &k.dst)] {
                let mv = s(m, &["seen_by_client", field]).unwrap_or("missing");
                if mv != kv {
                    out.push(diff(format!("refusal {field} seen by the sender"), kv.clone(), mv));
                }
            }
        }
        (None, None) => {}
        (k, m) => out.push(diff(
            "refusal reached the sender",
            k.map(|r| format!("yes, {} from {}", r.kind, r.src)).unwrap_or_else(|| "no".into()),
            match m {
                Some(r) => format!(
                    "yes, {} from {}",
                    s(r, &["kind"]).unwrap_or("?"),
                    s(r, &["seen_by_client", "src"]).unwrap_or("?")
                ),
                None => format!(
                    "no{}",
                    branch
                        .get("refusal")
                        .map(|r| format!(" ({})", s(r, &["reason"]).unwrap_or("lost")))
                        .unwrap_or_default()
                ),
            },
        )),
    }

    // Counter multisets.
    type Key = (String, String, String, u64);
    let mut model: BTreeMap<Key, (u64, String)> = BTreeMap::new();
    for st in branch.get("steps").and_then(Value::as_array).unwrap_or(&empty) {
        let Some(rule) = st.get("rule").and_then(Value::as_u64) else { continue };
        let key = (
            s(st, &["node"]).unwrap_or("").to_string(),
            s(st, &["table"]).unwrap_or("").to_string(),
            s(st, &["chain"]).unwrap_or("").to_string(),
            rule,
        );
        let e = model.entry(key).or_insert((0, s(st, &["text"]).unwrap_or("").to_string()));
        e.0 += 1;
    }
    let mut kernel: BTreeMap<Key, (u64, String)> = BTreeMap::new();
    for d in &result.counters {
        let Some(rule) = d.rule else { continue };
        let key = (d.node.clone(), d.table.clone(), d.chain.clone(), rule as u64);
        let e = kernel.entry(key).or_insert((0, d.text.clone()));
        e.0 += d.packets;
    }
    let keys: std::collections::BTreeSet<&Key> = model.keys().chain(kernel.keys()).collect();
    for k in keys {
        let (kc, kt) = kernel.get(k).cloned().unwrap_or_default();
        let (mc, mt) = model.get(k).cloned().unwrap_or_default();
        if kc != mc {
            let text = if kt.is_empty() { mt } else { kt };
            out.push(diff(
                format!("rule {} {}/{} #{} `{}`", k.0, k.1, k.2, k.3, text),
                format!("matched {kc}x"),
                format!("matched {mc}x"),
            ));
        }
    }
    out
}

/// Whether an answer the helper reports is a refusal: a reset, or an ICMP
/// destination unreachable (what REJECT, a closed port or a failed route
/// sends).
fn is_refusal(kind: &str) -> bool {
    kind == "rst" || kind.starts_with("icmp 3/")
}

#[cfg(test)]
mod tests {
    use super::super::{counters::Delta, PodSeen, Probe, ReplySeen, Sent};
    use super::*;
    use serde_json::json;

    fn result() -> ProbeResult {
        ProbeResult {
            probe: Probe::parse("client:10.0.0.51:32220/tcp").unwrap(),
            sent: Sent { src: "10.0.0.53:40000".into(), dst: "10.0.0.51:32220".into() },
            delivered_to: vec![PodSeen {
                pod: "default/nginx".into(),
                node: "node2".into(),
                address: "192.168.233.136".parse().unwrap(),
                src: "192.168.231.64:5555".parse().unwrap(),
                dst: "192.168.233.136:80".parse().unwrap(),
            }],
            reply: Some(ReplySeen {
                kind: "syn-ack".into(),
                src: "10.0.0.51:32220".into(),
                dst: "10.0.0.53:40000".into(),
            }),
            counters: vec![Delta {
                node: "node1".into(),
                table: "nat".into(),
                chain: "KUBE-NODEPORTS".into(),
                rule: Some(1),
                packets: 1,
                bytes: 60,
                text: "-A KUBE-NODEPORTS -j KUBE-MARK-MASQ".into(),
            }],
            conntrack: vec![],
            tunnel: vec![],
            probe_ms: 1.0,
            answer_ms: None,
            notes: vec![],
        }
    }

    fn trace(sport_random: bool, rule: u64) -> Value {
        json!({"schema": "natpath.trace/1", "probe": {"from": "client", "to": "10.0.0.51:32220", "proto": "tcp", "sport": 40000},
               "branches": [{"probability": "1", "outcome": "delivered", "sport_random": sport_random,
                 "delivered_to": {"kind": "pod", "name": "default/nginx", "node": "node2", "address": "192.168.233.136"},
                 "seen_by_destination": {"src": "192.168.231.64:40000", "dst": "192.168.233.136:80"},
                 "reply": {"outcome": "delivered", "seen_by_client": {"src": "10.0.0.51:32220", "dst": "10.0.0.53:40000"}},
                 "steps": [{"node": "node1", "packet": "forward", "hook": "PREROUTING", "table": "nat", "chain": "KUBE-NODEPORTS",
                            "rule": rule, "text": "-A KUBE-NODEPORTS -j KUBE-MARK-MASQ", "effect": "jump"},
                           {"node": "node1", "packet": "forward", "hook": "PREROUTING", "table": "nat", "chain": "PREROUTING",
                            "rule": null, "text": "", "effect": "policy ACCEPT"}]}]})
    }

    #[test]
    fn agreement_with_random_port() {
        assert_eq!(compare(&result(), &trace(true, 1)), vec![]);
    }

    #[test]
    fn port_and_counter_differences_show_both_sides() {
        let d = compare(&result(), &trace(false, 2));
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(d[0].to_string(), "source seen by the pod: kernel 192.168.231.64:5555; model 192.168.231.64:40000");
        assert!(d[1].what.contains("KUBE-NODEPORTS #1") && d[1].kernel == "matched 1x" && d[1].model == "matched 0x");
        assert!(d[2].what.contains("#2") && d[2].model == "matched 1x");
    }

    /// A trace of `result()`'s probe with these branches.
    fn trace_of(branches: &[Value]) -> Value {
        json!({"schema": "natpath.trace/1", "probe": {"from": "client", "to": "10.0.0.51:32220", "proto": "tcp", "sport": 40000},
               "branches": branches})
    }

    /// A branch that ends `outcome` after one counted step, node1's nat
    /// KUBE-NODEPORTS rule `rule` (the rule `result()` counts is 1).
    fn ends_after(outcome: &str, rule: u64) -> Value {
        json!({"probability": "1/2", "outcome": outcome,
               "steps": [{"node": "node1", "packet": "forward", "hook": "PREROUTING", "table": "nat",
                          "chain": "KUBE-NODEPORTS", "rule": rule, "text": "-A KUBE-NODEPORTS -j KUBE-MARK-MASQ",
                          "effect": "jump"}]})
    }

    #[test]
    fn of_two_branches_to_no_pod_the_one_the_kernel_took_is_compared() {
        // Two endpoints outside the snapshot, chosen at random: both
        // branches are dropped, each after its own KUBE-SEP rule.
        let mut r = result();
        r.delivered_to.clear();
        r.reply = None;
        let t = |a: u64, b: u64| trace_of(&[ends_after("dropped", a), ends_after("dropped", b)]);
        // The kernel counted rule 1: the second branch fits, wherever it is listed.
        assert_eq!(compare(&r, &t(2, 1)), vec![]);
        assert_eq!(compare(&r, &t(1, 2)), vec![]);
        // Neither fits: the closest is reported.
        let d = compare(&r, &t(2, 3));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().any(|x| x.what.contains("#2")) && d.iter().any(|x| x.what.contains("#1")), "{d:?}");
    }

    #[test]
    fn an_unknown_outcome_is_not_compared_but_its_counters_are() {
        let mut r = result();
        r.delivered_to.clear();
        r.reply = None;
        // Beyond the snapshot (a LAN gateway it does not describe).
        let t = |rule: u64| trace_of(&[ends_after("unknown", rule)]);
        assert_eq!(compare(&r, &t(1)), vec![]);
        assert_eq!(compare(&r, &t(2)).len(), 2);
    }

    #[test]
    fn a_refusal_is_compared_with_the_kernels_icmp_error() {
        let mut r = result();
        r.delivered_to.clear();
        r.counters.clear();
        r.reply = Some(ReplySeen { kind: "icmp 3/3".into(), src: "10.0.0.51".into(), dst: "10.0.0.53".into() });
        let branch = |refusal: Value| {
            json!({"schema": "natpath.trace/1", "probe": {"from": "client", "to": "10.0.0.51:32220", "proto": "tcp", "sport": 40000},
                   "branches": [{"probability": "1", "outcome": "rejected", "refusal": refusal, "steps": []}]})
        };
        let icmp = json!({"kind": "icmp 3/3", "outcome": "delivered",
                          "seen_by_client": {"src": "10.0.0.51", "dst": "10.0.0.53"}});
        assert_eq!(compare(&r, &branch(icmp)), vec![]);
        let other = json!({"kind": "icmp 3/13", "outcome": "delivered",
                           "seen_by_client": {"src": "10.0.0.52", "dst": "10.0.0.53"}});
        let d = compare(&r, &branch(other));
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].to_string(), "refusal the sender got: kernel icmp 3/3; model icmp 3/13");
        let d = compare(&r, &branch(Value::Null));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].what, "refusal reached the sender");
        // Without the ICMP error the kernel's outcome is a drop.
        r.reply = None;
        let d = compare(&r, &branch(Value::Null));
        assert_eq!(d, vec![diff("outcome", "dropped", "rejected")]);
    }

    #[test]
    fn wrong_pod_is_one_difference() {
        let mut r = result();
        r.delivered_to[0].pod = "default/other".into();
        let d = compare(&r, &trace(true, 1));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].what, "delivered to");
    }
}
