#!/bin/sh
# Usage: build-ns.sh KUBE_PROXY_TEST_BINARY OUT_DIR NATPATH
# Two node namespaces on one LAN bridge, pods on veths, kube-proxy v1.28.7's
# proxier run once in each node namespace, then `natpath collect node`.
set -eu
KP=$1; OUT=$2; NP=$3
P=npkp
cleanup() {
  for n in lan node1 node2 web1 dia1 web2 webl2 cache2; do ip netns del $P-$n 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
cleanup
ip netns add $P-lan
ip -n $P-lan link add br0 type bridge
ip -n $P-lan link set br0 up
ip -n $P-lan link set lo up
node() { # name ip
  ip netns add $P-$1
  ip -n $P-$1 link set lo up
  ip link add eth0 netns $P-$1 type veth peer name $1 netns $P-lan
  ip -n $P-lan link set $1 master br0 up
  ip -n $P-$1 addr add $2/24 dev eth0
  ip -n $P-$1 link set eth0 up
  ip -n $P-$1 route add default via 10.0.0.1 dev eth0
  ip netns exec $P-$1 sysctl -qw net.ipv4.ip_forward=1
}
pod() { # node podns ifname address
  ip netns add $P-$2
  ip -n $P-$2 link set lo up
  ip link add $3 netns $P-$1 type veth peer name eth0 netns $P-$2
  ip -n $P-$2 addr add $4/32 dev eth0
  ip -n $P-$2 link set eth0 up
  ip -n $P-$2 route add 169.254.1.1 dev eth0 scope link
  ip -n $P-$2 route add default via 169.254.1.1 dev eth0
  ip -n $P-$1 link set $3 up
  ip -n $P-$1 route add $4 dev $3 scope link
  ip netns exec $P-$1 sysctl -qw net.ipv4.conf.$3.proxy_arp=1
  ip netns exec $P-$1 sysctl -qw net.ipv4.neigh.$3.proxy_delay=0
}
node node1 10.0.0.51
node node2 10.0.0.52
ip -n $P-node1 route add 10.244.2.0/24 via 10.0.0.52 dev eth0
ip -n $P-node2 route add 10.244.1.0/24 via 10.0.0.51 dev eth0
pod node1 web1 vethweb1 10.244.1.10
pod node1 dia1 vethdia1 10.244.1.12
pod node2 web2 vethweb2 10.244.2.10
pod node2 webl2 vethwebl2 10.244.2.11
pod node2 cache2 vethcache2 10.244.2.12
mkdir -p $OUT
for n in node1 node2; do
  ip=10.0.0.51; [ $n = node2 ] && ip=10.0.0.52
  ip netns exec $P-$n env NATPATH_NODE=$n NATPATH_NODE_IP=$ip NATPATH_RESTORE_OUT=$OUT/$n.restore-input \
    $KP -test.run '^TestNatpathRender$' -test.count=1 >$OUT/$n.kube-proxy.log 2>&1
  ip netns exec $P-$n $NP collect node $OUT --name $n
done
