#!/usr/bin/env python3
"""Recover the Services (with ready endpoints) that `natpath generate` rendered
into a generated snapshot, in the kube-proxy reference format
(corpus/kube-proxy-reference/svc100.services.json).

usage: services_from_snapshot.py SNAPSHOT-DIR > services.json

cluster.toml of a generated snapshot holds nodes and pods but no Services, so
the Services are read back from the generator's kube-proxy rules
(KUBE-SERVICES, KUBE-NODEPORTS, KUBE-SVC-/KUBE-SEP-/KUBE-EXT-/KUBE-FW- chains,
filter KUBE-NODEPORTS health-check rules) of every node, and the nodes agree
on each Service (checked). Each endpoint's node comes from cluster.toml's
pods (pod IP -> node) or from the nodes' ip-addr (host-network endpoints such
as the API server on the first node's address).
"""
import json
import os
import re
import sys
import tomllib

SNAP = sys.argv[1]
NODES_DIR = os.path.join(SNAP, "nodes")

with open(os.path.join(SNAP, "cluster.toml"), "rb") as f:
    cluster = tomllib.load(f)
pod_node = {p["address"]: p["node"] for p in cluster.get("pod", [])}
node_names = [n["name"] for n in cluster["node"]]
lans = {n["name"]: n.get("lan", "eth0") for n in cluster["node"]}

node_ip = {}
for n in node_names:
    cur = None
    for line in open(os.path.join(NODES_DIR, n, "ip-addr")):
        m = re.match(r"^\d+: ([^:@]+)", line)
        if m:
            cur = m.group(1)
        m = re.match(r"\s+inet (\S+)/\d+ .* (\S+)$", line)
        if m and cur == lans[n] and n not in node_ip:
            node_ip[n] = m.group(1)
host_node = {ip: n for n, ip in node_ip.items()}

COMMENT = re.compile(r'-m comment --comment "([^"]*)"')


def parse_rules(path):
    """{(table, chain): [rule text after '-A CHAIN ']}"""
    rules, table = {}, None
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A "):
            _, chain, rest = line.split(" ", 2)
            rules.setdefault((table, chain), []).append(rest)
    return rules


def opt(rule, name):
    m = re.search(r"(?:^| )" + re.escape(name) + r" (\S+)", rule)
    return m.group(1) if m else None


def spn_split(spn):
    ns, rest = spn.split("/", 1)
    name, _, port = rest.partition(":")
    return ns, name, port


def services_of(node):
    r = parse_rules(os.path.join(NODES_DIR, node, "iptables-save"))
    svcs = {}  # (ns, name) -> dict
    order = []
    ports = {}  # spn -> port dict

    def svc(spn):
        ns, name, _ = spn_split(spn)
        k = (ns, name)
        if k not in svcs:
            svcs[k] = {"namespace": ns, "name": name, "ports": [], "lb": [], "ranges": [],
                       "eips": [], "local": False, "affinity": None, "hc": None, "eps": {}}
            order.append(k)
        return svcs[k]

    def port(spn, proto, p):
        if spn not in ports:
            ns, name, pname = spn_split(spn)
            d = {"name": pname, "protocol": proto.upper(), "port": int(p)}
            ports[spn] = d
            svc(spn)["ports"].append((spn, d))
        return ports[spn]

    for rule in r.get(("nat", "KUBE-SERVICES"), []):
        m = COMMENT.search(rule)
        if not m or "NOTE: this must be the last rule" in m.group(1):
            continue
        c = m.group(1)
        proto, dport, dst, target = opt(rule, "-p"), opt(rule, "--dport"), opt(rule, "-d"), opt(rule, "-j")
        dst = dst.split("/")[0]
        if c.endswith(" cluster IP"):
            spn = c[: -len(" cluster IP")]
            d = port(spn, proto, dport)
            d["_clusterIP"] = dst
            d["_svc"] = target
        elif c.endswith(" loadbalancer IP"):
            spn = c[: -len(" loadbalancer IP")]
            s = svc(spn)
            if dst not in s["lb"]:
                s["lb"].append(dst)
            port(spn, proto, dport)["_lbchain"] = target
        elif c.endswith(" external IP"):
            spn = c[: -len(" external IP")]
            s = svc(spn)
            if dst not in s["eips"]:
                s["eips"].append(dst)
        else:
            raise SystemExit("%s: unknown KUBE-SERVICES rule: %s" % (node, rule))
    # Services whose cluster IP is rejected in filter (no endpoints).
    for rule in r.get(("filter", "KUBE-SERVICES"), []):
        raise SystemExit("%s: filter KUBE-SERVICES rule (no endpoints) not handled: %s" % (node, rule))
    for rule in r.get(("nat", "KUBE-NODEPORTS"), []):
        c = COMMENT.search(rule).group(1)
        d = ports[c]
        d["nodePort"] = int(opt(rule, "--dport"))
        d["_ext"] = opt(rule, "-j")
    for rule in r.get(("filter", "KUBE-NODEPORTS"), []):
        c = COMMENT.search(rule).group(1)
        assert c.endswith(" health check node port"), rule
        spn = c[: -len(" health check node port")]
        svc(spn)["hc"] = int(opt(rule, "--dport"))
    for spn, d in ports.items():
        s = svc(spn)
        ext = d.get("_ext")
        if ext:
            if any("pod traffic for" in x for x in r.get(("nat", ext), [])):
                s["local"] = True
        fw = d.get("_lbchain")
        if fw and fw.startswith("KUBE-FW-"):
            for x in r.get(("nat", fw), []):
                src = opt(x, "-s")
                if src and src.split("/")[0] not in s["lb"] and src not in s["ranges"]:
                    s["ranges"].append(src)
        chain = d["_svc"]
        eps = []
        for x in r.get(("nat", chain), []):
            if "--rcheck" in x:
                s["affinity"] = int(opt(x, "--seconds"))
                continue
            tgt = opt(x, "-j")
            if not tgt.startswith("KUBE-SEP-"):
                continue
            dnat = [opt(y, "--to-destination") for y in r.get(("nat", tgt), []) if "DNAT" in y]
            assert len(dnat) == 1, (node, tgt)
            ip, tp = dnat[0].rsplit(":", 1)
            eps.append(ip)
            if "targetPort" in d:
                assert d["targetPort"] == int(tp)
            d["targetPort"] = int(tp)
        s["eps"][spn] = eps
    out = []
    for k in order:
        s = svcs[k]
        ps = [d for _, d in s["ports"]]
        cips = {d["_clusterIP"] for d in ps}
        assert len(cips) == 1, (k, cips)
        ep_sets = {tuple(sorted(v)) for v in s["eps"].values()}
        assert len(ep_sets) == 1, (k, "ports have different endpoints", ep_sets)
        eps = sorted(ep_sets.pop(), key=lambda ip: tuple(int(o) for o in ip.split(".")))
        kind = "LoadBalancer" if s["lb"] else ("NodePort" if any("nodePort" in d for d in ps) else "ClusterIP")
        o = {"namespace": s["namespace"], "name": s["name"], "type": kind, "clusterIP": cips.pop(), "ports": []}
        for d in ps:
            p = {"name": d["name"], "protocol": d["protocol"], "port": d["port"], "targetPort": d["targetPort"]}
            if "nodePort" in d:
                p["nodePort"] = d["nodePort"]
            o["ports"].append(p)
        if kind != "ClusterIP":
            o["externalTrafficPolicy"] = "Local" if s["local"] else "Cluster"
        if s["hc"] is not None:
            o["healthCheckNodePort"] = s["hc"]
        o["sessionAffinity"] = "ClientIP" if s["affinity"] else "None"
        if s["affinity"]:
            o["sessionAffinityTimeoutSeconds"] = s["affinity"]
        if s["lb"]:
            o["loadBalancerIngressIPs"] = s["lb"]
        if s["ranges"]:
            o["loadBalancerSourceRanges"] = s["ranges"]
        if s["eips"]:
            o["externalIPs"] = s["eips"]
        o["endpoints"] = []
        for ip in eps:
            n = pod_node.get(ip) or host_node.get(ip)
            if n is None:
                raise SystemExit("endpoint %s of %s/%s: no pod or node has this address" % (ip, *k))
            o["endpoints"].append({"ip": ip, "node": n, "ready": True})
        out.append(o)
    return out


per_node = {n: services_of(n) for n in node_names}
first = per_node[node_names[0]]
key = lambda s: (s["namespace"], s["name"])
base = sorted(first, key=key)
for n in node_names[1:]:
    other = sorted(per_node[n], key=key)
    if other != base:
        for a, b in zip(base, other):
            if a != b:
                raise SystemExit("nodes disagree on %s/%s:\n%s\n%s" % (a["namespace"], a["name"], a, b))
        raise SystemExit("nodes disagree on the Service count")

doc = {
    "generator": {
        "source": "recovered from the kube-proxy rules of %s (natpath generate); every node agrees" % SNAP,
        "clusterCIDR": "192.168.0.0/16",
        "localhostNodePorts": True,
        "masqueradeMark": "0x4000",
        "nodePortAddresses": "all local addresses (unset)",
        "nodes": [{"name": n, "ip": node_ip[n]} for n in node_names],
        "serviceCount": len(first),
        "kubernetesVersion": "v1.28.7",
    },
    "services": first,
}
json.dump(doc, sys.stdout, indent=1)
sys.stdout.write("\n")
