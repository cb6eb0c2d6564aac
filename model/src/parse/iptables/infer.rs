//! Which table the lines of a paste without a `*table` line belong to.
//!
//! Contract: never panics; always answers (the last resort is `filter`,
//! iptables' default table) and says how it decided, so the caller can
//! record a [`crate::ruleset::Note`]. The evidence, strongest first:
//! 1. a listing (`iptables -S`, or save lines) that declares exactly the
//!    built-in chains of one table with their policies is that table, unless
//!    most of its rules' targets point to another;
//! 2. otherwise each rule by its target (DNAT, SNAT, MASQUERADE, REDIRECT:
//!    nat; REJECT: filter; CT, NOTRACK: raw; CHECKSUM: mangle), then by the
//!    chain it jumps to, then by its own chain (kube-proxy's and Calico's
//!    chain names, e.g. `KUBE-SEP-*` and `KUBE-MARK-MASQ` are nat,
//!    `KUBE-FORWARD` and `cali-fw-*` are filter);
//! 3. a rule with no evidence takes its chain's table (the most common among
//!    the chain's rules), or that of a chain it jumps to or that jumps to
//!    it; what is left takes the paste's most common table.
//!
//! The result depends only on which rules are in which chains, not on
//! their order, so printing the inferred tables back (each without its
//! `*table` line) and reading them again infers the same tables.

use crate::ruleset::{Rule, Table, TableName, Target};
use std::collections::HashMap;

/// How a table was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Nothing says: iptables' default table.
    Default,
    /// Targets and chain names say so.
    Evidence,
    /// The paste lists exactly this table's built-in chains.
    Listing,
}

/// One line of a paste, as inference sees it.
pub(crate) struct Item<'a> {
    /// The chain the line is about.
    pub chain: &'a str,
    /// True when the line declares the chain with a policy (`-P X ACCEPT`,
    /// `:X DROP [0:0]`); the printer writes user chains with `-`, so a
    /// printed table lists with policies only its own built-in chains.
    pub with_policy: bool,
    /// The rules it adds (empty for declarations).
    pub rules: &'a [Rule],
}

fn idx(t: TableName) -> usize {
    TableName::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

fn from_idx(i: usize) -> TableName {
    TableName::ALL.get(i).copied().unwrap_or(TableName::Filter)
}

/// The table a target only works in.
fn target_hint(t: &Target) -> Option<TableName> {
    match t {
        Target::Dnat { .. } | Target::Snat { .. } | Target::Masquerade { .. } | Target::Redirect { .. } => {
            Some(TableName::Nat)
        }
        Target::Reject(_) => Some(TableName::Filter),
        Target::Ct(_) | Target::Notrack => Some(TableName::Raw),
        Target::Checksum => Some(TableName::Mangle),
        _ => None,
    }
}

/// The table a chain name belongs to in kube-proxy, Calico and the CNIs
/// seen in real dumps.
pub(crate) fn chain_hint(name: &str) -> Option<TableName> {
    const NAT_PREFIX: [&str; 9] = [
        "KUBE-SEP-",
        "KUBE-SVC-",
        "KUBE-SVL-",
        "KUBE-EXT-",
        "KUBE-FW-",
        "KUBE-XLB-",
        "AWS-SNAT-CHAIN-",
        "CILIUM_POST_nat",
        "CILIUM_PRE_nat",
    ];
    const NAT: [&str; 13] = [
        "KUBE-MARK-MASQ",
        "KUBE-MARK-DROP",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-PORTALS-CONTAINER",
        "KUBE-PORTALS-HOST",
        "KUBE-NODE-PORT",
        "KUBE-LOAD-BALANCER",
        "cali-nat-outgoing",
        "cali-fip-dnat",
        "cali-fip-snat",
        "FLANNEL-POSTRTG",
        "KIND-MASQ-AGENT",
    ];
    const FILTER_PREFIX: [&str; 12] = [
        "cali-fw-",
        "cali-tw-",
        "cali-pi-",
        "cali-po-",
        "cali-pri-",
        "cali-pro-",
        "cali-from-wl-dispatch",
        "cali-to-wl-dispatch",
        "cali-failsafe-",
        "WEAVE-NPC",
        "DOCKER-ISOLATION",
        "KUBE-NWPLCY-",
    ];
    const FILTER: [&str; 13] = [
        "KUBE-FORWARD",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FIREWALL",
        "KUBE-PROXY-FIREWALL",
        "FORWARD",
        "cali-FORWARD",
        "cali-INPUT",
        "cali-from-hep-forward",
        "cali-to-hep-forward",
        "cali-wl-to-host",
        "cali-cidr-block",
        "FLANNEL-FWD",
        "DOCKER-USER",
    ];
    if NAT.contains(&name) || NAT_PREFIX.iter().any(|p| name.starts_with(p)) {
        return Some(TableName::Nat);
    }
    if FILTER.contains(&name) || FILTER_PREFIX.iter().any(|p| name.starts_with(p)) {
        return Some(TableName::Filter);
    }
    if name == "cali-rpf-skip" {
        return Some(TableName::Raw);
    }
    None
}

fn rule_hint(chain: &str, r: &Rule) -> Option<TableName> {
    if let Some(t) = r.target.as_ref().and_then(target_hint) {
        return Some(t);
    }
    if let Some(t) = r.target.as_ref().and_then(|t| t.chain()).and_then(chain_hint) {
        return Some(t);
    }
    chain_hint(chain)
}

/// The table whose built-in chains are exactly `names`.
fn signature(names: &[&str]) -> Option<TableName> {
    let mut best = None;
    for t in [TableName::Filter, TableName::Nat, TableName::Mangle, TableName::Raw] {
        let b = t.builtin_chains();
        if b.len() == names.len() && b.iter().all(|c| names.contains(c)) {
            best = Some(t);
            break;
        }
    }
    best
}

/// The table of each item, and why.
pub(crate) fn infer(items: &[Item<'_>]) -> Vec<(TableName, Reason)> {
    // Per-rule evidence, counted per chain and in all.
    let mut votes: HashMap<&str, [u32; 5]> = HashMap::new();
    let mut total = [0u32; 5];
    // Evidence from what rules do (their targets), not from the name of the
    // chain they are in: KUBE-NODEPORTS, say, is in nat and in filter.
    let mut by_target = [0u32; 5];
    let mut edges: Vec<(&str, &str)> = Vec::new();
    for it in items {
        votes.entry(it.chain).or_default();
        for r in it.rules {
            let t = r.target.as_ref();
            if let Some(h) = t.and_then(target_hint).or_else(|| t.and_then(|t| t.chain()).and_then(chain_hint)) {
                if let Some(v) = by_target.get_mut(idx(h)) {
                    *v += 1;
                }
            }
            if let Some(t) = rule_hint(it.chain, r) {
                if let Some(v) = votes.get_mut(it.chain).and_then(|v| v.get_mut(idx(t))) {
                    *v += 1;
                }
                if let Some(v) = total.get_mut(idx(t)) {
                    *v += 1;
                }
            }
            if let Some(to) = r.target.as_ref().and_then(|t| t.chain()) {
                edges.push((it.chain, to));
            }
        }
        if it.rules.is_empty() {
            if let Some(t) = chain_hint(it.chain) {
                if let Some(v) = votes.get_mut(it.chain).and_then(|v| v.get_mut(idx(t))) {
                    *v += 1;
                }
            }
        }
    }
    let argmax = |v: &[u32; 5]| -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        for (i, &n) in v.iter().enumerate() {
            if n > 0 && best.is_none_or(|(_, b)| n > b) {
                best = Some((i, n));
            }
        }
        best.map(|(i, _)| i)
    };

    // 1. A listing of one table's built-in chains: those declared with a
    // policy are exactly one table's, and what the rules' targets say, if
    // anything, mostly agrees (a piece of a nat dump that declares
    // PREROUTING and OUTPUT is not the raw table).
    let builtin_name = |c: &str| TableName::ALL.iter().any(|t| t.builtin_chains().contains(&c));
    let mut declared: Vec<&str> =
        items.iter().filter(|i| i.with_policy && builtin_name(i.chain)).map(|i| i.chain).collect();
    declared.sort_unstable();
    declared.dedup();
    if let Some(t) = signature(&declared) {
        if argmax(&by_target).is_none_or(|m| m == idx(t)) {
            return vec![(t, Reason::Listing); items.len()];
        }
    }

    let mut chain_table: HashMap<&str, usize> = votes.iter().filter_map(|(c, v)| argmax(v).map(|t| (*c, t))).collect();

    // 3. Chains without evidence take the table of a chain they are linked to.
    loop {
        let mut changed = false;
        for (a, b) in &edges {
            match (chain_table.get(a).copied(), chain_table.get(b).copied()) {
                (Some(t), None) => {
                    chain_table.insert(b, t);
                    changed = true;
                }
                (None, Some(t)) => {
                    chain_table.insert(a, t);
                    changed = true;
                }
                _ => {}
            }
        }
        if !changed {
            break;
        }
    }
    let default = argmax(&total).or_else(|| {
        let mut per_chain = [0u32; 5];
        for t in chain_table.values() {
            if let Some(v) = per_chain.get_mut(*t) {
                *v += 1;
            }
        }
        argmax(&per_chain)
    });
    items
        .iter()
        .map(|it| {
            // A rule with its own evidence goes where that says, even in a
            // chain that exists in two tables (KUBE-SERVICES).
            let own = it.rules.first().and_then(|r| rule_hint(it.chain, r));
            if let Some(t) = own {
                return (t, Reason::Evidence);
            }
            match chain_table.get(it.chain).copied().or(default) {
                Some(t) => (from_idx(t), Reason::Evidence),
                None => (TableName::Filter, Reason::Default),
            }
        })
        .collect()
}

/// Why an inferred table is what it is, told from the table itself (so
/// that a table printed back and read again gets the same note, however
/// its lines were spread over pastes): it declares all its built-in
/// chains, or some rule or chain name points to a table, or nothing does.
pub(crate) fn reason_of(t: &Table) -> Reason {
    let declared = |name: &&str| t.chains.iter().any(|c| !c.implied && c.name == *name);
    if t.name.builtin_chains().iter().all(declared) {
        return Reason::Listing;
    }
    let hinted = t
        .chains
        .iter()
        .any(|c| chain_hint(&c.name).is_some() || c.rules.iter().any(|r| rule_hint(&c.name, r).is_some()));
    if hinted {
        Reason::Evidence
    } else {
        Reason::Default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        assert_eq!(chain_hint("KUBE-SEP-ABC"), Some(TableName::Nat));
        assert_eq!(chain_hint("KUBE-MARK-MASQ"), Some(TableName::Nat));
        assert_eq!(chain_hint("KUBE-NODEPORTS"), Some(TableName::Nat));
        assert_eq!(chain_hint("KUBE-FORWARD"), Some(TableName::Filter));
        assert_eq!(chain_hint("cali-fw-cali1234"), Some(TableName::Filter));
        assert_eq!(chain_hint("KUBE-SERVICES"), None);
        assert_eq!(signature(&["INPUT", "OUTPUT", "POSTROUTING", "PREROUTING"]), Some(TableName::Nat));
        assert_eq!(signature(&["FORWARD", "INPUT", "OUTPUT"]), Some(TableName::Filter));
        assert_eq!(signature(&["INPUT", "OUTPUT"]), None);
    }
}
