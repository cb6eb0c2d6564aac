//! `fair-balancing`: each of a service's n endpoints is chosen with
//! probability 1/n, within the 1e-9 that kube-proxy's ten printed decimals
//! and iptables' rounding to `p31 / 2^31` allow.
//!
//! Quantifies over: every node; every service chain that picks endpoints
//! (`KUBE-SVC-`, `KUBE-SVL-`, and an old-style `KUBE-XLB-` that jumps to
//! endpoints itself); a new connection, for which `recent --rcheck` affinity
//! rules do not match. The shares are computed exactly, in rationals: the
//! rule at position i is reached with probability prod_{j<i}(1 - p_j), where
//! p_j is `p31 / 2^31` of rule j's `statistic` draw (1 for a rule without
//! one), and it takes share p_i of that. This is not an SMT query: the
//! encoding treats every draw as a free choice, and the shares are a
//! separate exact check (docs/kernel-semantics.md).
//!
//! Contract: a rule that picks an endpoint under any condition other than a
//! random draw (a source match, an `nth` counter) makes the verdict unknown,
//! naming it; a conditional jump to another chain (old layouts send pod or
//! local traffic to the cluster-wide chain) is other traffic and skipped. A
//! violation is replayed by enumerating every draw of the model's node
//! passage and summing the exact probability of each DNAT destination.
//!
//! Why operators care: a hand-edited probability, a rule left behind by a
//! crashed kube-proxy sync or a reordered chain sends most traffic to one
//! replica; it never fails a probe, it only overloads a pod.

use super::{Checker, Outcome};
use crate::counterexample::{dnat_shares, Counterexample, PacketValue, Replay};
use natpath_model::intent::Endpoint;
use natpath_model::packet::Packet;
use natpath_model::ruleset::{Chain, Match, StatisticMode, Target};
use num_bigint::{BigInt, BigUint};
use num_rational::Ratio;
use std::net::Ipv4Addr;

/// The catalog name.
pub const NAME: &str = "fair-balancing";

type Q = Ratio<BigInt>;

/// Each endpoint chain's exact share of new connections entering `chain`,
/// in rule order, and what falls off the end.
pub fn shares(chain: &Chain) -> Result<(Vec<(String, Q)>, Q), String> {
    let two31 = BigInt::from(1u64 << 31);
    let one = Q::from_integer(BigInt::from(1));
    let mut reach = one.clone();
    let mut per: Vec<(String, Q)> = Vec::new();
    for (i, r) in chain.rules.iter().enumerate() {
        let mut p = one.clone();
        let mut recent_check = false;
        let mut other: Vec<String> = Vec::new();
        for (set, what) in [
            (r.src.is_some(), "-s"),
            (r.dst.is_some(), "-d"),
            (r.in_iface.is_some(), "-i"),
            (r.out_iface.is_some(), "-o"),
            (r.proto.is_some(), "-p"),
            (r.fragment.is_some(), "-f"),
        ] {
            if set {
                other.push(format!("`{what}`"));
            }
        }
        for m in &r.matches {
            match m {
                Match::Comment(_) => {}
                Match::Statistic { neg, mode: StatisticMode::Random { p31 } } => {
                    let q = Q::new(BigInt::from((*p31).min(1 << 31)), two31.clone());
                    p *= if *neg { one.clone() - q } else { q };
                }
                Match::Recent(rm) if rm.cmd != natpath_model::ruleset::RecentCmd::Set => recent_check = true,
                Match::Unsupported { module, .. } => other.push(format!("`-m {module}`")),
                m => other.push(format!("`-m {}`", module_name(m))),
            }
        }
        let other_s = other.join(", ");
        let other = !other.is_empty();
        if recent_check {
            // Affinity: only a returning client matches it.
            continue;
        }
        let where_ = format!("{}:{}: nat {} rule {}", r.loc.file, r.loc.line, chain.name, i + 1);
        match &r.target {
            Some(Target::Jump(t)) if t.starts_with("KUBE-SEP-") => {
                if other {
                    return Err(format!(
                        "{where_} picks an endpoint under a condition other than a random draw ({other_s})"
                    ));
                }
                let share = reach.clone() * p.clone();
                match per.iter_mut().find(|(k, _)| k == t) {
                    Some((_, s)) => *s = s.clone() + share,
                    None => per.push((t.clone(), share)),
                }
                reach *= one.clone() - p;
                if reach == Q::from_integer(BigInt::from(0)) {
                    break;
                }
            }
            None | Some(Target::Mark { .. }) | Some(Target::Log(_)) | Some(Target::Nflog(_)) => {}
            Some(Target::Jump(t)) if t.starts_with("KUBE-MARK-") => {}
            Some(_) if other => {}
            Some(_) => {
                return Err(format!("{where_} ends the chain for every new connection without choosing an endpoint"))
            }
        }
    }
    Ok((per, reach))
}

/// The module name of a match, as `-m` takes it.
fn module_name(m: &Match) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_object().and_then(|o| o.keys().next().cloned()).or_else(|| v.as_str().map(str::to_string)))
        .unwrap_or_else(|| "?".into())
}

fn within(share: &Q, n: usize) -> bool {
    let target = Q::new(BigInt::from(1), BigInt::from(n.max(1)));
    let d = share.clone() - target;
    let d = if d < Q::from_integer(BigInt::from(0)) { -d } else { d };
    d <= Q::new(BigInt::from(1), BigInt::from(1_000_000_000u64))
}

fn to_f64(q: &Q) -> f64 {
    let n: f64 = q.numer().to_string().parse().unwrap_or(f64::NAN);
    let d: f64 = q.denom().to_string().parse().unwrap_or(f64::NAN);
    n / d
}

/// Check `fair-balancing` on the checker's snapshot.
pub fn check_fair_balancing(c: &mut Checker<'_>) -> Outcome {
    let snap = c.snap;
    let mut chains = 0usize;
    for (n, node) in snap.nodes.iter().enumerate() {
        let Some(nat) = node.ruleset.table(natpath_model::ruleset::TableName::Nat) else { continue };
        let intents = std::sync::Arc::clone(&c.intents);
        let services = intents.get(n).map(|i| i.services.as_slice()).unwrap_or_default();
        // Chains by name: a 10,000-service node has some 35,000. Built at
        // the first Service a difference reaches, when there is one.
        let mut by_name: Option<natpath_model::hash::FastMap<&str, &natpath_model::ruleset::Chain>> = None;
        for s in services {
            // A Service's chains are reached through the rules of its own
            // addresses and ports: when none of them differs, its shares
            // are those of the other side of the delta.
            if let Some(d) = c.delta {
                let dsts: Vec<Ipv4Addr> = s.cluster_ip.iter().chain(&s.external_ips).map(|(a, _)| *a).collect();
                let ports = crate::delta::Ports::These(
                    s.cluster_ip.iter().chain(&s.external_ips).map(|(_, p)| *p).chain(s.node_port).collect(),
                );
                if !d.touches_node(&node.name, Some(&dsts), Some(s.proto), &ports) {
                    c.same += 1;
                    continue;
                }
            }
            let mut names: Vec<&String> = Vec::new();
            names.extend(s.svc_chain.as_ref());
            names.extend(s.svl_chain.as_ref());
            names.extend(s.ext_chain.as_ref().filter(|x| x.starts_with("KUBE-XLB-")));
            let by_name = by_name.get_or_insert_with(|| nat.chains.iter().map(|ch| (ch.name.as_str(), ch)).collect());
            for cname in names {
                let Some(chain) = by_name.get(cname.as_str()).copied() else { continue };
                let label = format!("{} {} ({})", node.name, cname, s.name);
                let (per, _rest) = match shares(chain) {
                    Ok(x) => x,
                    Err(why) => {
                        c.unknown(&label, why);
                        continue;
                    }
                };
                if per.is_empty() {
                    continue;
                }
                chains += 1;
                let k = per.len();
                let Some((sep, share)) = per.iter().find(|(_, sh)| !within(sh, k)) else { continue };
                let eps: Vec<&Endpoint> = s.endpoints.iter().chain(s.local_endpoints.iter()).collect();
                let ep = eps.iter().find(|e| &e.chain == sep).map(|e| format!("{}:{}", e.address, e.port));
                let summary = format!(
                    "{label}: endpoint {} ({sep}) gets {} = {:.12} of new connections instead of 1/{k}",
                    ep.clone().unwrap_or_else(|| "?".into()),
                    share,
                    to_f64(share)
                );
                let rules: Vec<String> = chain
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        r.target.as_ref().and_then(|t| t.chain()).is_some_and(|t| t.starts_with("KUBE-SEP-"))
                    })
                    .map(|(i, r)| {
                        let p = r.matches.iter().find_map(|m| match m {
                            Match::Statistic { mode: StatisticMode::Random { p31 }, .. } => {
                                Some(format!("p31 {p31}/2^31"))
                            }
                            _ => None,
                        });
                        format!(
                            "{}:{} (nat {} rule {}) {} {}",
                            r.loc.file,
                            r.loc.line,
                            cname,
                            i + 1,
                            r.target.as_ref().and_then(|t| t.chain()).unwrap_or_default(),
                            p.unwrap_or_else(|| "always".into())
                        )
                    })
                    .collect();
                // A new connection that enters this chain, for the replay.
                let client =
                    snap.cluster.hosts.first().map(|h| h.address.addr()).unwrap_or(Ipv4Addr::new(198, 51, 100, 7));
                let target = if Some(cname) == s.svc_chain.as_ref() {
                    s.cluster_ip.or_else(|| s.node_port.and_then(|p| node.lan_addrs().first().map(|a| (*a, p))))
                } else {
                    s.node_port.and_then(|p| node.lan_addrs().first().map(|a| (*a, p)))
                };
                let replay = match (target, &ep) {
                    (Some((dst, dport)), Some(ep)) => {
                        let pkt = Packet::first(client, 40000, dst, dport, s.proto);
                        let dist = c.timed(|| dnat_shares(snap, n, &node.lan, &pkt));
                        let got = dist.iter().find(|(k, _)| {
                            k.as_deref().and_then(|k| k.split("-> ").nth(1)).and_then(|x| x.split_whitespace().next())
                                == Some(ep.as_str())
                        });
                        let mine = Ratio::new(
                            BigUint::try_from(share.numer().clone()).unwrap_or_default(),
                            BigUint::try_from(share.denom().clone()).unwrap_or_else(|_| BigUint::from(1u32)),
                        );
                        let outs: Vec<String> = dist
                            .iter()
                            .map(|(k, p)| format!("{} with {p}", k.clone().unwrap_or_else(|| "no DNAT".into())))
                            .collect();
                        (
                            Replay {
                                confirmed: got.is_some_and(|(_, p)| *p == mine),
                                outcome: outs.join("; "),
                                steps: Vec::new(),
                            },
                            Some(pkt),
                        )
                    }
                    _ => (
                        Replay {
                            confirmed: false,
                            outcome: "no packet of the snapshot enters this chain".into(),
                            steps: Vec::new(),
                        },
                        None,
                    ),
                };
                let (replay, pkt) = replay;
                let pv = pkt
                    .as_ref()
                    .map(|p| PacketValue {
                        src: u32::from(p.src),
                        dst: u32::from(p.dst),
                        sport: p.sport,
                        dport: p.dport,
                        proto: p.proto.0,
                        tcp_flags: p.tcp_flags,
                        icmp: p.icmp,
                        len: p.len,
                        ttl: p.ttl,
                    })
                    .unwrap_or_default();
                let cx = Counterexample {
                    invariant: NAME,
                    summary,
                    node: node.name.clone(),
                    iface: node.lan.clone(),
                    from: None,
                    packet: pkt.map(|p| p.to_string()).unwrap_or_default(),
                    draws: Vec::new(),
                    rules,
                    replay,
                    pkt: pv,
                };
                if let Some(o) = c.found(cx) {
                    return o;
                }
            }
        }
    }
    if chains == 0 {
        c.nothing_to_check("no service chain picks endpoints: nothing to check");
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use natpath_model::loc::Loc;
    use natpath_model::ruleset::Rule;

    /// A KUBE-SVC chain as kube-proxy writes it for `n` endpoints: rule i
    /// draws with the printed probability 1/(n-i) (ten decimals), the last
    /// one always matches.
    fn svc(n: usize) -> Chain {
        let rules = (0..n)
            .map(|i| {
                let mut r = Rule::empty(Loc::synthetic());
                if i + 1 < n {
                    let printed: f64 = format!("{:.10}", 1.0 / (n - i) as f64).parse().unwrap();
                    let p31 = (printed * f64::from(1u32 << 31)).round() as u32;
                    r.matches.push(Match::Statistic { neg: false, mode: StatisticMode::Random { p31 } });
                }
                r.target = Some(Target::Jump(format!("KUBE-SEP-{i}")));
                r
            })
            .collect();
        Chain { name: "KUBE-SVC-X".into(), policy: None, counters: None, rules, implied: false, loc: Loc::synthetic() }
    }

    #[test]
    fn kube_proxy_probabilities_are_fair_within_1e9() {
        for n in [1, 2, 3, 7, 10, 100] {
            let (per, rest) = shares(&svc(n)).unwrap();
            assert_eq!(per.len(), n);
            assert!(per.iter().all(|(_, s)| within(s, n)), "{n} endpoints: {per:?}");
            assert_eq!(rest, Q::from_integer(BigInt::from(0)));
        }
    }

    #[test]
    fn a_halved_probability_is_unfair() {
        let mut c = svc(2);
        if let Some(Match::Statistic { mode: StatisticMode::Random { p31 }, .. }) = c.rules[0].matches.first_mut() {
            *p31 /= 2;
        }
        let (per, _) = shares(&c).unwrap();
        assert_eq!(per[0].1, Q::new(BigInt::from(1), BigInt::from(4)));
        assert!(!within(&per[0].1, 2));
    }

    #[test]
    fn a_condition_besides_the_draw_is_unknown() {
        let mut c = svc(2);
        c.rules[0].src = Some(natpath_model::ruleset::Neg::pos("10.0.0.0/8".parse().unwrap()));
        let e = shares(&c).unwrap_err();
        assert!(e.contains("`-s`"), "{e}");
    }
}
