#!/usr/bin/env python3
"""Load one corpus snapshot's cluster into a running kube-apiserver through kubectl.

Usage:
    python3 corpus/api/load.py SNAPSHOT_DIR [--dump OBJECTS_JSON] [--dry-run]

kubectl must be on PATH and pointed (KUBECONFIG) at an empty cluster: a fresh
kube-apiserver + etcd with nothing but what the apiserver creates itself
(namespaces, the `default/kubernetes` Service and its EndpointSlice).
See corpus/api/README.md for how corpus/*/api/objects.json were made with it.

What it reads from SNAPSHOT_DIR:
  cluster.toml           [[node]] name + lan, [[pod]] name/node/address/listen
  nodes/N/ip-addr        the node's LAN address (and its Calico tunnel address)
  nodes/N/ip-route       Calico's per-node blocks (blackhole routes), to place
                         endpoints that cluster.toml does not list
  nodes/N/iptables-save  the Services as kube-proxy rendered them: cluster IPs,
                         ports, NodePorts, endpoints (KUBE-SEP DNAT targets),
                         externalTrafficPolicy Local, session affinity,
                         external IPs, load-balancer IPs and source ranges

What it creates (status always through the status subresource):
  Nodes, one per [[node]], Ready, addresses InternalIP (LAN) + Hostname;
  ServiceAccounts the pods need (no controller-manager runs to make them);
  a Running pod per [[pod]] (podIP = address, hostIP = its node's LAN address,
    containers[].ports from `listen`), plus a Running pod for every endpoint
    address of the dumps that cluster.toml does not list (e.g. CoreDNS);
  per node, a hostNetwork kube-system/kube-proxy-XXXXX pod (podIP = node IP);
  one Pending pod, default/pending-xyz, never scheduled (no nodeName, no IP);
  the Services of the dumps (except default/kubernetes, which the apiserver
    owns) and one EndpointSlice per Service with the dumps' endpoints.
"""

import argparse
import datetime
import hashlib
import ipaddress
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

KUBECTL = "kubectl"
K8S_VERSION = "v1.28.7"
GET_CMD = ["get", "nodes,pods,services,endpointslices", "--all-namespaces", "-o", "json"]

# --------------------------------------------------------------------------
# reading the snapshot
# --------------------------------------------------------------------------


def parse_ip_addr(text):
    """{ifname: [ipv4 'a.b.c.d/len', ...]} from `ip addr` output."""
    out = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"^\d+:\s+([^:@\s]+)(?:@\S+)?:", line)
        if m:
            cur = m.group(1)
            out.setdefault(cur, [])
            continue
        m = re.match(r"^\s+inet\s+(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", line)
        if m and cur is not None:
            out[cur].append(m.group(1))
    return out


def parse_blocks(route_text):
    """Calico blocks a node owns: its `blackhole A/L` routes."""
    blocks = []
    for line in route_text.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] == "blackhole":
            try:
                blocks.append(ipaddress.ip_network(f[1], strict=False))
            except ValueError:
                pass
    return blocks


def rules(text):
    """Yield (table, chain, argv) for every `-A` line of an iptables-save dump."""
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A "):
            try:
                argv = shlex.split(line)
            except ValueError:
                continue
            yield table, argv[1], argv[2:]


def opt(argv, name):
    """Value after `name` (and whether it was negated with a `!` before it)."""
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1], (i > 0 and argv[i - 1] == "!")
    return None, False


def strip_mask(addr):
    return addr.split("/")[0] if addr.endswith("/32") or "/" not in addr else addr


SUFFIXES = (" cluster IP", " external IP", " loadbalancer IP", " has no endpoints",
            " has no local endpoints", " health check node port")


def split_comment(comment):
    """'ns/name:port cluster IP' -> ('ns/name:port', 'cluster IP')."""
    if comment is None:
        return None, None
    c = comment
    m = re.match(r"^(\S+?) -> \S+$", c)
    if m:
        return m.group(1), "->"
    for s in SUFFIXES:
        if c.endswith(s):
            return c[: -len(s)].strip(), s.strip()
    if re.match(r"^[a-z0-9.-]+/[a-z0-9.-]+(:\S*)?$", c):
        return c, ""
    return None, None


def port_key(key):
    """'ns/name:port' -> ('ns', 'name', 'port'); 'ns/name' / 'ns/name:' -> port ''."""
    nsname, _, pname = key.partition(":")
    ns, _, name = nsname.partition("/")
    return ns, name, pname


def services_from_dumps(dumps, node_ips):
    """Services kube-proxy rendered into the given iptables-save texts.

    dumps: {node: iptables-save text}; node_ips: {node: LAN IPv4}.
    Returns {'ns/name': service dict} with ports keyed by port name.
    """
    svcs = {}

    def svc(key):
        ns, name, pname = port_key(key)
        s = svcs.setdefault(f"{ns}/{name}", {
            "namespace": ns, "name": name, "clusterIP": None, "ports": {},
            "externalIPs": set(), "lbIPs": set(), "sourceRanges": set(),
            "etpLocal": False, "itpLocal": False, "affinity": None,
            "endpoints": {},  # ip -> {port name: (target port, protocol)}
            "localOn": set(),  # nodes whose KUBE-SVL/XLB chain lists the endpoint ip
        })
        p = s["ports"].setdefault(pname, {"name": pname, "protocol": None, "port": None,
                                           "targetPort": None, "nodePort": None,
                                           "healthCheckNodePort": None})
        return s, p

    chain_key = {}  # KUBE-SVC-/EXT-/SVL-/XLB-/FW- hash suffix -> 'ns/name:port'
    sep_key = {}    # KUBE-SEP chain -> (key, ip, port, proto)
    for node, text in dumps.items():
        parsed = list(rules(text))
        for table, chain, argv in parsed:
            comment, _ = opt(argv, "--comment")
            key, kind = split_comment(comment)
            target, _ = opt(argv, "-j")
            proto, _ = opt(argv, "-p")
            dport, _ = opt(argv, "--dport")
            dst, _ = opt(argv, "-d")
            if table == "nat" and chain == "KUBE-SERVICES" and key and target:
                s, p = svc(key)
                if kind == "cluster IP" and not target.startswith("KUBE-MARK"):
                    s["clusterIP"] = strip_mask(dst)
                    p["protocol"] = proto.upper()
                    p["port"] = int(dport)
                    if target.startswith("KUBE-SVL-"):
                        s["itpLocal"] = True
                elif kind == "external IP" and not target.startswith("KUBE-MARK"):
                    s["externalIPs"].add(strip_mask(dst))
                    p["protocol"] = p["protocol"] or proto.upper()
                    p["port"] = p["port"] or int(dport)
                elif kind == "loadbalancer IP" and not target.startswith("KUBE-MARK"):
                    s["lbIPs"].add(strip_mask(dst))
                for pre in ("KUBE-SVC-", "KUBE-EXT-", "KUBE-SVL-", "KUBE-FW-", "KUBE-XLB-"):
                    if target.startswith(pre):
                        chain_key[target[len(pre):]] = key
            elif table == "filter" and key and kind == "has no endpoints" and dport:
                # a Service without endpoints: kube-proxy REJECTs instead of DNATing
                s, p = svc(key)
                p["protocol"] = p["protocol"] or proto.upper()
                if chain == "KUBE-SERVICES" and dst:
                    s["clusterIP"] = strip_mask(dst)
                    p["port"] = int(dport)
                elif opt(argv, "--dst-type")[0] == "LOCAL":
                    p["nodePort"] = int(dport)
                elif dst:
                    s["externalIPs"].add(strip_mask(dst))
            elif table == "nat" and chain == "KUBE-NODEPORTS" and key and dport:
                s, p = svc(key)
                p["nodePort"] = int(dport)
                p["protocol"] = p["protocol"] or proto.upper()
                for pre in ("KUBE-SVC-", "KUBE-EXT-", "KUBE-XLB-", "KUBE-FW-"):
                    if target and target.startswith(pre):
                        chain_key[target[len(pre):]] = key
            elif table == "filter" and chain == "KUBE-NODEPORTS" and key and kind == "health check node port":
                s, p = svc(key)
                p["healthCheckNodePort"] = int(dport)
            elif table == "filter" and key and kind == "has no local endpoints":
                s, p = svc(key)
                s["etpLocal"] = True
                if dport and opt(argv, "--dst-type")[0] == "LOCAL":
                    p["nodePort"] = int(dport)
            elif table == "nat" and chain.startswith("KUBE-SEP-") and target == "DNAT":
                to, _ = opt(argv, "--to-destination")
                ip, _, tport = to.rpartition(":")
                if key is None:
                    continue
                sep_key[chain] = (key, ip, int(tport), proto.upper())
        # second pass on this node: per-Service chains
        for table, chain, argv in parsed:
            if table != "nat":
                continue
            comment, _ = opt(argv, "--comment")
            target, _ = opt(argv, "-j")
            if chain.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-SVL-", "KUBE-XLB-")):
                secs, _ = opt(argv, "--seconds")
                if secs and "--rcheck" in argv:
                    h = chain.split("-", 2)[2]
                    key = chain_key.get(h)
                    if key is None and target in sep_key:
                        key = sep_key[target][0]
                    if key:
                        svc(key)[0]["affinity"] = int(secs)
            if chain.startswith("KUBE-EXT-") and comment and (
                    comment.startswith("pod traffic for ") or comment.startswith("masquerade LOCAL traffic for ")):
                key = chain_key.get(chain[len("KUBE-EXT-"):])
                if key:
                    svc(key)[0]["etpLocal"] = True
            if chain.startswith("KUBE-XLB-"):
                key = chain_key.get(chain[len("KUBE-XLB-"):])
                if key:
                    svc(key)[0]["etpLocal"] = True
            if chain.startswith(("KUBE-SVL-", "KUBE-XLB-")) and target in sep_key:
                sk = sep_key[target]
                svc(sk[0])[0]["localOn"].add((sk[1], node))
            if chain.startswith("KUBE-FW-"):
                src, neg = opt(argv, "-s")
                key = chain_key.get(chain[len("KUBE-FW-"):])
                if key and src and not neg and target and not target.startswith("KUBE-MARK"):
                    if strip_mask(src) not in node_ips.values():  # allowFromNode rules
                        svc(key)[0]["sourceRanges"].add(src if "/" in src else src + "/32")
    for key, ip, tport, proto in sep_key.values():
        s, p = svc(key)
        s["endpoints"].setdefault(ip, {})[p["name"]] = (tport, proto)
        p["targetPort"] = tport
        p["protocol"] = p["protocol"] or proto
    return svcs


def load_snapshot(snap):
    snap = Path(snap)
    cluster = tomllib.loads((snap / "cluster.toml").read_text())
    nodes = []
    for n in cluster.get("node", []):
        d = snap / "nodes" / n["name"]
        addrs = parse_ip_addr((d / "ip-addr").read_text())
        lan = [a for a in addrs.get(n["lan"], [])]
        if not lan:
            sys.exit(f"{snap}: node {n['name']} has no IPv4 on {n['lan']}")
        tun = {}
        for ifname, key in (("tunl0", "IPv4IPIPTunnelAddr"), ("vxlan.calico", "IPv4VXLANTunnelAddr")):
            if addrs.get(ifname):
                tun[key] = addrs[ifname][0].split("/")[0]
        route = d / "ip-route"
        nodes.append({
            "name": n["name"], "ip": lan[0].split("/")[0], "cidr": lan[0], "tunnel": tun,
            "blocks": parse_blocks(route.read_text()) if route.exists() else [],
            "iptables": (d / "iptables-save").read_text() if (d / "iptables-save").exists() else "",
        })
    node_ip = {n["name"]: n["ip"] for n in nodes}
    pods = []
    for p in cluster.get("pod", []):
        ns, _, name = p["name"].partition("/")
        ports = []
        for l in p.get("listen", []):
            proto, _, port = l.partition("/")
            ports.append({"containerPort": int(port), "protocol": proto.upper()})
        pods.append({"namespace": ns, "name": name, "node": p["node"], "ip": p["address"],
                     "ports": ports, "from": "cluster.toml"})
    svcs = services_from_dumps({n["name"]: n["iptables"] for n in nodes}, node_ip)
    return {"nodes": nodes, "pods": pods, "services": svcs}


# --------------------------------------------------------------------------
# building the objects
# --------------------------------------------------------------------------


def suffix(seed, n=5):
    """Deterministic pod-name style suffix (k8s' rand.String alphabet)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    h = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    s = ""
    for _ in range(n):
        h, r = divmod(h, len(alphabet))
        s += alphabet[r]
    return s


def hexhash(seed, n=10):
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def app_of(podname):
    """Deployment-style name 'nginx-6799fc88d8-wfztd' -> 'nginx' (else the name)."""
    m = re.match(r"^(.*)-[a-z0-9]{6,10}-[a-z0-9]{5}$", podname)
    return m.group(1) if m else podname


def template_hash(podname):
    m = re.match(r"^.*-([a-z0-9]{6,10})-[a-z0-9]{5}$", podname)
    return m.group(1) if m else None


def plan(model):
    """Everything to create, as API objects (status kept apart)."""
    nodes, pods, svcs = model["nodes"], model["pods"], model["services"]
    node_ip = {n["name"]: n["ip"] for n in nodes}
    ip_pod = {p["ip"]: p for p in pods}
    notes = []

    def node_of(ip):
        for n in nodes:
            if n["ip"] == ip:
                return n["name"], True
        a = ipaddress.ip_address(ip)
        for n in nodes:
            if any(a in b for b in n["blocks"]):
                return n["name"], False
        return None, False

    # Endpoints without a cluster.toml pod: make the pod the cluster must have had.
    for key, s in sorted(svcs.items()):
        if key == "default/kubernetes":
            continue
        for ip, ports in sorted(s["endpoints"].items()):
            if ip in ip_pod:
                continue
            node, is_host = node_of(ip)
            if is_host:
                notes.append(f"{key}: endpoint {ip} is node {node}'s own address (hostNetwork), no pod made")
                continue
            if node is None:
                notes.append(f"{key}: endpoint {ip} is in no node's Calico block; pod left unscheduled-less (no nodeName)")
            if key == "kube-system/kube-dns":
                base, tmpl = "coredns", "5dd5756b68"
            else:
                base, tmpl = s["name"], hexhash(key)
            cports = []
            for pname, (tport, proto) in sorted(ports.items()):
                cp = {"containerPort": tport, "protocol": proto}
                if pname and re.match(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$", pname):
                    cp["name"] = pname
                cports.append(cp)
            p = {"namespace": s["namespace"], "name": f"{base}-{tmpl}-{suffix(key + ip)}",
                 "node": node, "ip": ip, "ports": cports, "from": f"endpoint of {key}"}
            pods.append(p)
            ip_pod[ip] = p
            notes.append(f"{key}: endpoint {ip} is no [[pod]] of cluster.toml; made pod {p['namespace']}/{p['name']} on {node}")

    # Labels and selectors.
    for p in pods:
        if p["namespace"] == "kube-system" and p["name"].startswith("coredns-"):
            p["labels"] = {"k8s-app": "kube-dns"}
        else:
            p["labels"] = {"app": app_of(p["name"])}
        th = template_hash(p["name"])
        if th:
            p["labels"]["pod-template-hash"] = th
    for key, s in svcs.items():
        eps = [ip_pod[ip] for ip in s["endpoints"] if ip in ip_pod]
        if key == "kube-system/kube-dns":
            s["selector"] = {"k8s-app": "kube-dns"}
        elif eps and len({json.dumps(e["labels"].get("app")) for e in eps}) == 1 and eps[0]["labels"].get("app"):
            s["selector"] = {"app": eps[0]["labels"]["app"]}
        else:
            s["selector"] = {"app": s["name"]}
            for e in eps:
                e["labels"].setdefault("app", s["name"])
        # pods the selector picks but the dumps do not list as endpoints
        for p in pods:
            if p["namespace"] == s["namespace"] and all(p["labels"].get(k) == v for k, v in s["selector"].items()) \
                    and p["ip"] not in s["endpoints"] and key != "default/kubernetes":
                notes.append(f"{key}: selector also picks {p['namespace']}/{p['name']} ({p['ip']}), "
                             "which the dumps do not list as an endpoint; it is left out of the EndpointSlice")
    return notes


def node_object(n):
    ann = {"node.alpha.kubernetes.io/ttl": "0",
           "volumes.kubernetes.io/controller-managed-attach-detach": "true",
           "projectcalico.org/IPv4Address": n["cidr"]}
    for k, v in n["tunnel"].items():
        ann[f"projectcalico.org/{k}"] = v
    obj = {"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": n["name"], "annotations": ann,
                        "labels": {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                                   "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": n["name"],
                                   "kubernetes.io/os": "linux"}},
           "spec": {}}
    t = now()
    status = {"status": {
        "addresses": [{"type": "InternalIP", "address": n["ip"]}, {"type": "Hostname", "address": n["name"]}],
        "conditions": [
            {"type": "NetworkUnavailable", "status": "False", "reason": "CalicoIsUp",
             "message": "Calico is running on this node", "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "message": "kubelet has sufficient memory available", "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
             "message": "kubelet has no disk pressure", "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
             "message": "kubelet has sufficient PID available", "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t},
        ],
        "capacity": {"pods": "110"}, "allocatable": {"pods": "110"},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                     "kubeletVersion": K8S_VERSION, "kubeProxyVersion": K8S_VERSION,
                     "bootID": "", "containerRuntimeVersion": "", "kernelVersion": "", "machineID": "",
                     "osImage": "", "systemUUID": ""},
    }}
    return obj, status


def pod_objects(p, node_ip):
    """(object, status patch) for an ordinary Running pod."""
    if p["namespace"] == "kube-system" and p["name"].startswith("coredns-"):
        image, sa, cname = "registry.k8s.io/coredns/coredns:v1.10.1", "coredns", "coredns"
        extra = {"args": ["-conf", "/etc/coredns/Corefile"], "priorityClassName": "system-cluster-critical"}
    else:
        image, sa, cname = ("nginx" if p["labels"].get("app") == "nginx" else "registry.k8s.io/pause:3.9"), "default", app_of(p["name"])
        extra = {}
    container = {"name": cname, "image": image, "imagePullPolicy": "IfNotPresent", "ports": p["ports"]}
    if "args" in extra:
        container["args"] = extra["args"]
    spec = {"containers": [container], "serviceAccountName": sa, "restartPolicy": "Always"}
    if p["node"]:
        spec["nodeName"] = p["node"]
    if "priorityClassName" in extra:
        spec["priorityClassName"] = extra["priorityClassName"]
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": p["name"], "namespace": p["namespace"], "labels": p["labels"]},
           "spec": spec}
    t = now()
    status = {"status": {
        "phase": "Running", "podIP": p["ip"], "podIPs": [{"ip": p["ip"]}],
        "hostIP": node_ip.get(p["node"], ""), "startTime": t,
        "conditions": [{"type": c, "status": "True", "lastTransitionTime": t}
                       for c in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
        "containerStatuses": [{"name": cname, "image": image, "imageID": "",
                               "containerID": "containerd://" + hashlib.sha256((p["namespace"] + "/" + p["name"]).encode()).hexdigest(),
                               "ready": True, "started": True, "restartCount": 0,
                               "state": {"running": {"startedAt": t}}}],
    }}
    return obj, status


def kube_proxy_pod(n):
    name = f"kube-proxy-{suffix('kube-proxy/' + n['name'])}"
    image = f"registry.k8s.io/kube-proxy:{K8S_VERSION}"
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "kube-system",
                        "labels": {"k8s-app": "kube-proxy", "controller-revision-hash": "7b8c9f6d5d",
                                   "pod-template-generation": "1"}},
           "spec": {"hostNetwork": True, "nodeName": n["name"], "serviceAccountName": "kube-proxy",
                    "priorityClassName": "system-node-critical", "dnsPolicy": "ClusterFirst",
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "kube-proxy", "image": image, "imagePullPolicy": "IfNotPresent",
                                    "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                                                "--hostname-override=$(NODE_NAME)"],
                                    "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                                    "securityContext": {"privileged": True}}]}}
    t = now()
    status = {"status": {
        "phase": "Running", "podIP": n["ip"], "podIPs": [{"ip": n["ip"]}], "hostIP": n["ip"], "startTime": t,
        "conditions": [{"type": c, "status": "True", "lastTransitionTime": t}
                       for c in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
        "containerStatuses": [{"name": "kube-proxy", "image": image, "imageID": "",
                               "containerID": "containerd://" + hashlib.sha256(name.encode()).hexdigest(),
                               "ready": True, "started": True, "restartCount": 0,
                               "state": {"running": {"startedAt": t}}}],
    }}
    return obj, status


def pending_pod(nnodes):
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "pending-xyz", "namespace": "default", "labels": {"app": "pending"}},
           "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9",
                                    "ports": [{"containerPort": 8000, "protocol": "TCP"}],
                                    "resources": {"requests": {"memory": "512Gi"}}}]}}
    t = now()
    msg = (f"0/{nnodes} nodes are available: {nnodes} Insufficient memory. preemption: 0/{nnodes} nodes are "
           f"available: {nnodes} No preemption victims found for incoming pod..")
    status = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
         "lastTransitionTime": t}]}}
    return obj, status


def service_object(s):
    ports = []
    for pname, p in sorted(s["ports"].items()):
        if p["port"] is None:
            continue
        sp = {"protocol": p["protocol"] or "TCP", "port": p["port"], "targetPort": p["targetPort"] or p["port"]}
        if pname:
            sp["name"] = pname
        if p["nodePort"]:
            sp["nodePort"] = p["nodePort"]
        ports.append(sp)
    lb = bool(s["lbIPs"]) or bool(s["sourceRanges"])
    typ = "LoadBalancer" if lb else ("NodePort" if any(p["nodePort"] for p in s["ports"].values()) else "ClusterIP")
    spec = {"type": typ, "clusterIP": s["clusterIP"], "clusterIPs": [s["clusterIP"]], "ports": ports,
            "selector": s["selector"], "sessionAffinity": "ClientIP" if s["affinity"] else "None",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Local" if s["itpLocal"] else "Cluster"}
    if s["affinity"]:
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": s["affinity"]}}
    if typ != "ClusterIP":
        spec["externalTrafficPolicy"] = "Local" if s["etpLocal"] else "Cluster"
    if s["externalIPs"]:
        spec["externalIPs"] = sorted(s["externalIPs"])
    if s["sourceRanges"]:
        spec["loadBalancerSourceRanges"] = sorted(s["sourceRanges"])
    hc = [p["healthCheckNodePort"] for p in s["ports"].values() if p["healthCheckNodePort"]]
    if hc and typ == "LoadBalancer" and s["etpLocal"]:
        spec["healthCheckNodePort"] = hc[0]
    if s["namespace"] == "kube-system" and s["name"] == "kube-dns":
        labels = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}
        ann = {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}
    else:
        labels, ann = {"app": s["name"]}, {}
    meta = {"name": s["name"], "namespace": s["namespace"], "labels": labels}
    if ann:
        meta["annotations"] = ann
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}
    status = {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in sorted(s["lbIPs"])]}}} if s["lbIPs"] else None
    return obj, status


def slice_object(s, svc_uid, svc_labels, ip_pod, pod_uid):
    eps = []
    ports = {}
    for ip in sorted(s["endpoints"], key=lambda a: ipaddress.ip_address(a)):
        pod = ip_pod.get(ip)
        ep = {"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False}}
        if pod:
            if pod["node"]:
                ep["nodeName"] = pod["node"]
            ep["targetRef"] = {"kind": "Pod", "namespace": pod["namespace"], "name": pod["name"],
                               "uid": pod_uid[(pod["namespace"], pod["name"])]}
        eps.append(ep)
        for pname, (tport, proto) in s["endpoints"][ip].items():
            ports[pname] = (tport, proto)
    labels = dict(svc_labels)
    labels["kubernetes.io/service-name"] = s["name"]
    labels["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller.k8s.io"
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": s["name"] + "-", "namespace": s["namespace"], "labels": labels,
                         "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": now()},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": s["name"],
                                              "uid": svc_uid, "controller": True, "blockOwnerDeletion": True}]},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": n, "port": tp, "protocol": pr} for n, (tp, pr) in sorted(ports.items())]}


# --------------------------------------------------------------------------
# kubectl
# --------------------------------------------------------------------------

DRY = False


def kubectl(*args, stdin=None, check=True):
    cmd = [KUBECTL, *args]
    if DRY:
        print("+", shlex.join(cmd) + (" <<< " + stdin if stdin else ""))
        return json.dumps({"metadata": {"uid": "dry-run-uid", "name": "dry-run"}})
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def create(obj):
    return json.loads(kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(obj)))


def patch_status(kind, name, patch, ns=None):
    args = ["patch", kind, name, "--subresource=status", "--type=merge", "-p", json.dumps(patch), "-o", "json"]
    if ns:
        args += ["-n", ns]
    return json.loads(kubectl(*args))


def main():
    global DRY, KUBECTL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("snapshot")
    ap.add_argument("--dump", help="then write the stdout of `kubectl " + " ".join(GET_CMD) + "` here")
    ap.add_argument("--dry-run", action="store_true", help="print the kubectl commands, change nothing")
    ap.add_argument("--kubectl", default="kubectl")
    a = ap.parse_args()
    DRY, KUBECTL = a.dry_run, a.kubectl

    model = load_snapshot(a.snapshot)
    notes = plan(model)
    nodes, pods, svcs = model["nodes"], model["pods"], model["services"]
    node_ip = {n["name"]: n["ip"] for n in nodes}

    # default/kubernetes belongs to the apiserver: only check it against the dumps.
    k = svcs.get("default/kubernetes")
    if k and not DRY:
        live = json.loads(kubectl("get", "endpointslice", "kubernetes", "-n", "default", "-o", "json"))
        live_ips = sorted(a for e in live.get("endpoints", []) for a in e["addresses"])
        live_svc = json.loads(kubectl("get", "service", "kubernetes", "-n", "default", "-o", "json"))
        if live_ips != sorted(k["endpoints"]) or live_svc["spec"]["clusterIP"] != k["clusterIP"]:
            notes.append(f"default/kubernetes: dumps say {k['clusterIP']} -> {sorted(k['endpoints'])}, "
                         f"apiserver has {live_svc['spec']['clusterIP']} -> {live_ips}")

    # Namespaces and the ServiceAccounts admission needs (no controller-manager here).
    namespaces = sorted({p["namespace"] for p in pods} | {s["namespace"] for s in svcs.values()} | {"default", "kube-system"})
    for ns in namespaces:
        if ns not in ("default", "kube-system", "kube-public", "kube-node-lease"):
            create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}})
    for sa in ("kube-proxy", "coredns"):
        create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": "kube-system"}})

    for n in nodes:
        obj, st = node_object(n)
        create(obj)
        patch_status("node", n["name"], st)

    pod_uid = {}
    for p in pods:
        obj, st = pod_objects(p, node_ip)
        pod_uid[(p["namespace"], p["name"])] = create(obj)["metadata"]["uid"]
        patch_status("pod", p["name"], st, p["namespace"])
    for n in nodes:
        obj, st = kube_proxy_pod(n)
        create(obj)
        patch_status("pod", obj["metadata"]["name"], st, "kube-system")
    obj, st = pending_pod(len(nodes))
    create(obj)
    patch_status("pod", "pending-xyz", st, "default")

    ip_pod = {p["ip"]: p for p in pods}
    for key, s in sorted(svcs.items()):
        if key == "default/kubernetes":
            continue
        if s["clusterIP"] is None:
            notes.append(f"{key}: no cluster IP in the dumps, Service not created")
            continue
        obj, st = service_object(s)
        made = create(obj)
        if st:
            patch_status("service", s["name"], st, s["namespace"])
        create(slice_object(s, made["metadata"]["uid"], obj["metadata"]["labels"], ip_pod, pod_uid))

    for line in notes:
        print("note:", line, file=sys.stderr)
    if a.dump and not DRY:
        out = kubectl(*GET_CMD)
        Path(a.dump).parent.mkdir(parents=True, exist_ok=True)
        Path(a.dump).write_text(out)


if __name__ == "__main__":
    main()
