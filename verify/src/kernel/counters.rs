//! Rule counters: `iptables-save -c` read before and after a probe, and the
//! difference per (table, chain, rule number) - which is exactly the set of
//! rules whose matches all held for the probe's packets.
//!
//! Contract: never panics; rule numbers are 1-based positions within their
//! chain in dump order (what `iptables -L --line-numbers` shows); a chain
//! policy is `rule: None`. Kernel facts relied on (nf_tables backend): a
//! rule's counter is bumped when all its matches held and its target ran
//! (a `statistic` rule only when its draw succeeded); a built-in chain's
//! `[packets:bytes]` counts packets that fell to its policy.

use serde::Serialize;
use std::collections::BTreeMap;

/// One counter position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Key {
    /// `raw`, `mangle`, `nat`, `filter`, `security`.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// 1-based rule number; `None` for the chain's policy.
    pub rule: Option<usize>,
}

/// Counters of one `iptables-save -c`, with each rule's text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// (packets, bytes, rule text without the counter prefix).
    pub values: BTreeMap<Key, (u64, u64, String)>,
}

fn counter(tok: &str) -> Option<(u64, u64)> {
    let inner = tok.strip_prefix('[')?.strip_suffix(']')?;
    let (p, b) = inner.split_once(':')?;
    Some((p.parse().ok()?, b.parse().ok()?))
}

/// Read `iptables-save` text (with or without `-c`).
pub fn parse(text: &str) -> Counters {
    let mut out = Counters::default();
    let mut table = String::new();
    let mut next_rule: BTreeMap<String, usize> = BTreeMap::new();
    for l in text.lines() {
        let l = l.trim_end();
        if let Some(t) = l.strip_prefix('*') {
            table = t.trim().to_string();
            next_rule.clear();
        } else if let Some(decl) = l.strip_prefix(':') {
            let mut t = decl.split_whitespace();
            let (Some(chain), Some(policy)) = (t.next(), t.next()) else { continue };
            if policy != "-" {
                let (p, b) = t.next().and_then(counter).unwrap_or((0, 0));
                let key = Key { table: table.clone(), chain: chain.to_string(), rule: None };
                out.values.insert(key, (p, b, format!("policy {policy}")));
            }
        } else {
            let (c, rule) = match l.split_once(' ') {
                Some((first, rest)) if first.starts_with('[') => (counter(first), rest),
                _ => (None, l),
            };
            let Some(rest) = rule.strip_prefix("-A ") else { continue };
            let chain = rest.split_whitespace().next().unwrap_or("").to_string();
            let n = next_rule.entry(chain.clone()).or_insert(0);
            *n += 1;
            let (p, b) = c.unwrap_or((0, 0));
            out.values.insert(Key { table: table.clone(), chain, rule: Some(*n) }, (p, b, rule.to_string()));
        }
    }
    out
}

/// Rule count per (table, chain).
pub fn shape(c: &Counters) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for k in c.values.keys() {
        if k.rule.is_some() {
            *m.entry((k.table.clone(), k.chain.clone())).or_insert(0) += 1;
        }
    }
    m
}

/// One counter that moved during a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delta {
    /// The node.
    pub node: String,
    /// Table.
    pub table: String,
    /// Chain.
    pub chain: String,
    /// 1-based rule number; `null` for the chain's policy.
    pub rule: Option<usize>,
    /// Packets counted during the probe.
    pub packets: u64,
    /// Bytes counted during the probe.
    pub bytes: u64,
    /// The rule as `iptables-save` prints it (or `policy ACCEPT`).
    pub text: String,
}

/// What moved between `before` and `after` on `node`, in table/chain/rule order.
pub fn delta(node: &str, before: &Counters, after: &Counters) -> Vec<Delta> {
    after
        .values
        .iter()
        .filter_map(|(k, (p, b, text))| {
            let (p0, b0) = before.values.get(k).map(|(p, b, _)| (*p, *b)).unwrap_or((0, 0));
            (*p > p0).then(|| Delta {
                node: node.to_string(),
                table: k.table.clone(),
                chain: k.chain.clone(),
                rule: k.rule,
                packets: p - p0,
                bytes: b.saturating_sub(b0),
                text: text.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_rules_per_chain_and_diffs() {
        let before = "*nat\n:PREROUTING ACCEPT [1:60]\n:KUBE-X - [0:0]\n[0:0] -A PREROUTING -j KUBE-X\n[0:0] -A KUBE-X -p tcp -j RETURN\n[5:300] -A PREROUTING -j ACCEPT\nCOMMIT\n";
        let after = "*nat\n:PREROUTING ACCEPT [2:120]\n:KUBE-X - [0:0]\n[1:60] -A PREROUTING -j KUBE-X\n[0:0] -A KUBE-X -p tcp -j RETURN\n[5:300] -A PREROUTING -j ACCEPT\nCOMMIT\n";
        let (b, a) = (parse(before), parse(after));
        assert_eq!(shape(&a).get(&("nat".into(), "PREROUTING".into())), Some(&2));
        let d = delta("n1", &b, &a);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].chain.as_str(), d[0].rule), ("PREROUTING", None));
        assert_eq!((d[1].chain.as_str(), d[1].rule, d[1].packets), ("PREROUTING", Some(1), 1));
        assert_eq!(d[1].text, "-A PREROUTING -j KUBE-X");
    }
}
