#!/usr/bin/env python3
"""Apply a kube-proxy restore input to a node's iptables-save, as
`iptables-restore --noflush` would, after dropping the per-Service chains
of an older kube-proxy.

usage: splice.py NODE-IPTABLES-SAVE RESTORE-INPUT > NEW-IPTABLES-SAVE

- Chains named KUBE-SVC-, KUBE-SEP-, KUBE-EXT-, KUBE-SVL-, KUBE-FW-,
  KUBE-XLB- are removed first (kube-proxy deletes the ones it no longer
  writes; a fresh render knows of none).
- Every chain the restore input declares is flushed and gets the input's
  rules, in order; a chain it declares that the dump lacks is added after
  the dump's chains.
- Everything else (built-in chains, their jumps into KUBE-*, Calico's
  chains, kubelet's) is kept as it was, except that the jumps kube-proxy
  v1.28 ensures at every sync (its `iptablesJumpChains`, each added at the
  top of its built-in chain when missing) are added where missing, below
  Calico's own jumps, which Calico keeps first. The seed came from an
  older kube-proxy that had no KUBE-PROXY-FIREWALL.

An empty RESTORE-INPUT (/dev/null) only adds the missing jumps.
"""
import re
import sys

STALE = ("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-", "KUBE-FW-", "KUBE-XLB-")


def parse(text):
    """Tables in order: name -> (chain order, {chain: header}, {chain: [rules]})."""
    tables, order = {}, []
    cur = None
    for line in text.splitlines():
        if line.startswith("*"):
            cur = line[1:].strip()
            if cur not in tables:
                tables[cur] = ([], {}, {})
                order.append(cur)
        elif line.startswith(":") and cur:
            name, rest = line[1:].split(" ", 1)
            chains, heads, rules = tables[cur]
            if name not in heads:
                chains.append(name)
                rules[name] = []
            heads[name] = rest
        elif line.startswith("-A ") and cur:
            name = line.split()[1]
            tables[cur][2].setdefault(name, []).append(line)
        elif line.startswith("-X ") and cur:
            name = line.split()[1]
            chains, heads, rules = tables[cur]
            if name in heads:
                chains.remove(name)
                del heads[name]
                del rules[name]
    return order, tables


# kube-proxy v1.28's jumps from built-in chains, in the order it ensures
# them: (table, chain, rule text after "-A CHAIN ").
JUMPS = [
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
]


def ensure_jumps(tables):
    for t, chain, rest in JUMPS:
        if t not in tables:
            continue
        chains, heads, rules = tables[t]
        target = rest.rsplit(" ", 1)[1]
        if chain not in heads or target not in heads:
            continue
        line = "-A %s %s" % (chain, rest)
        have = rules.setdefault(chain, [])
        if line in have:
            continue
        at = 0
        while at < len(have) and " -j cali-" in have[at]:
            at += 1
        have.insert(at, line)


def main():
    base, inp = (open(p).read() for p in sys.argv[1:3])
    order, tables = parse(base)
    _, new = parse(inp)
    for t, (nchains, nheads, nrules) in new.items():
        if t not in tables:
            tables[t] = ([], {}, {})
            order.append(t)
        chains, heads, rules = tables[t]
        for c in [c for c in chains if c.startswith(STALE)]:
            chains.remove(c)
            del heads[c]
            del rules[c]
        for c in nchains:
            if c not in heads:
                chains.append(c)
                heads[c] = "- [0:0]"
            rules[c] = nrules.get(c, [])
    ensure_jumps(tables)
    out = []
    for t in order:
        chains, heads, rules = tables[t]
        out.append("*" + t)
        out += [":%s %s" % (c, heads[c]) for c in chains]
        for c in chains:
            out += rules.get(c, [])
        out.append("COMMIT")
    sys.stdout.write("\n".join(out) + "\n")


main()
