#!/bin/sh
# Re-records the local samples in this directory (see README.md).  Needs root.
# Two throwaway network namespaces joined by a veth pair, addressed from the
# lab range 198.18.0.0/24; no packet leaves them.  Both are deleted at exit.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../.."
A=fleet-rec-a B=fleet-rec-b
cleanup() {
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "/etc/netns/$A"
}
trap cleanup EXIT
cleanup
ip netns add "$A"
ip netns add "$B"
# Own name service for A: files only, so an unknown name fails without a DNS query.
mkdir -p "/etc/netns/$A"
printf 'hosts: files\n' >"/etc/netns/$A/nsswitch.conf"
printf '127.0.0.1 localhost\n198.18.0.249 gw.lab.invalid\n' >"/etc/netns/$A/hosts"
printf 'nameserver 198.18.0.53\nsearch lab.invalid\n' >"/etc/netns/$A/resolv.conf"
ip -n "$A" link set lo up
ip -n "$B" link set lo up
ip link add rec0 netns "$A" type veth peer name rec1 netns "$B"
ip -n "$A" link set rec0 up
ip -n "$B" link set rec1 up
ip -n "$B" addr add 198.18.0.249/24 dev rec1
sleep 1

inA() { ip netns exec "$A" "$@"; }
step() { python3 -c "import sys, fleet.checks.net.unix as u; print(getattr(u, sys.argv[1]), end='')" "$@"; }
ping_step() { python3 -c "import sys, fleet.checks.ping.unix as u; print(u.ping_script(sys.argv[1], int(sys.argv[2]), 1), end='')" "$@"; }

# 1. A host whose configuration is broken: only an APIPA address, no default route.
ip -n "$A" addr add 169.254.10.3/16 dev rec0
inA sh -c "$(step NET_SCRIPT)" >"$here/local-net-apipa-ip-json.out" || true
inA sh -c "$(ping_step gateway 2)" >"$here/local-ping-gateway-none.out" 2>&1 || true
inA ping -n -c 1 -W 1 198.18.1.1 >"$here/local-ping-network-unreachable.out" 2>&1 || true
ip -n "$A" addr del 169.254.10.3/16 dev rec0

# 2. A healthy one: DHCP-style address (valid_lft makes it "dynamic"), default route proto dhcp.
ip -n "$A" addr add 198.18.0.250/24 dev rec0 valid_lft 3600 preferred_lft 3600
ip -n "$A" route add default via 198.18.0.249 dev rec0 proto dhcp
sleep 1
inA sh -c "$(step NET_SCRIPT)" >"$here/local-net-ip-json.out"
inA ip addr show >"$here/local-ip-addr.out"
inA ip -4 route show >"$here/local-ip-route.out"
inA ip -j addr show >"$here/local-ip-j-addr.out"
inA ip -j -4 route show >"$here/local-ip-j-route.out"
inA ifconfig -a >"$here/local-ifconfig-a.out"
inA netstat -rn >"$here/local-netstat-rn.out"
inA sh -c "$(ping_step gateway 2)" >"$here/local-ping-gateway.out" 2>&1
inA ping -n -c 2 -W 1 198.18.0.249 >"$here/local-ping-success.out" 2>&1
inA ping -n -c 2 -W 1 nosuch-mx.lab.invalid >"$here/local-ping-unknown-host.out" 2>&1 || true
# Nobody owns .240: ARP fails and the kernel reports the host unreachable.
inA ping -n -c 5 -W 1 198.18.0.240 >"$here/local-ping-host-unreachable.out" 2>&1 || true
# B answers nothing: its replies to A go into a blackhole.
ip -n "$B" route add blackhole 198.18.0.250/32
inA ping -n -c 2 -W 1 198.18.0.249 >"$here/local-ping-loss-100.out" 2>&1 || true
ip -n "$B" route del blackhole 198.18.0.250/32
# Some loss: B's link drops half the packets it sends (netem, when the kernel has it).
if ip netns exec "$B" tc qdisc add dev rec1 root netem loss 50% 2>/dev/null; then
  inA ping -n -c 10 -i 0.2 -W 1 198.18.0.249 >"$here/local-ping-partial-loss.out" 2>&1 || true
fi
echo "recorded into $here"
