#!/bin/sh
# Re-records the default-route samples (local-routes-*; see README.md).  Needs root.
# A throwaway host namespace (fleetr-a) and a router (fleetr-b) joined by a veth
# pair, addressed from 198.18.200.0/24; no packet leaves them.  Deleted at exit.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../.."
A=fleetr-a B=fleetr-b
cleanup() {
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "/etc/netns/$A"
}
trap cleanup EXIT
cleanup
ip netns add "$A"
ip netns add "$B"
mkdir -p "/etc/netns/$A"
printf 'nameserver 198.18.200.53\n' >"/etc/netns/$A/resolv.conf"
ip -n "$A" link set lo up
ip -n "$B" link set lo up
ip link add rec0 netns "$A" type veth peer name rec1 netns "$B"
ip -n "$A" link set rec0 up
ip -n "$B" link set rec1 up
ip -n "$B" addr add 198.18.200.1/25 dev rec1
ip -n "$A" addr add 198.18.200.10/25 dev rec0
sleep 1

inA() { ip netns exec "$A" "$@"; }
net_step() { python3 -c "import fleet.checks.net.unix as u; print(u.NET_SCRIPT, end='')"; }
ping_step() { python3 -c "import fleet.checks.ping.unix as u; print(u.ping_script('gateway', 2, 1), end='')"; }

# Everything fleet reads of one configuration, as local-routes-<name>-*.out.
record() {
  inA sh -c "$(net_step)" >"$here/local-routes-$1-net.out"
  inA ip addr show >"$here/local-routes-$1-ip-addr.out"
  inA ip -4 route show >"$here/local-routes-$1-ip-route.out"
  inA ip -4 route get 192.0.2.1 >"$here/local-routes-$1-ip-route-get.out" 2>&1 || true
  inA sh -c "$(ping_step)" >"$here/local-routes-$1-ping-gateway.out" 2>&1 || true
}

# 1. On-link default route: no gateway (as ppp, tun, WireGuard have).
ip -n "$A" route add default dev rec0
record onlink
ip -n "$A" route del default dev rec0

# 2. Two default routes, metrics 100 (the router, .1) and 200 (.2: nobody).
ip -n "$A" route add default via 198.18.200.1 metric 100
ip -n "$A" route add default via 198.18.200.2 metric 200
record twodefaults
ip -n "$A" route del default via 198.18.200.1 metric 100
ip -n "$A" route del default via 198.18.200.2 metric 200

# 3. Policy routing: the default route only in table 100, which a rule consults first.
ip -n "$A" route add 198.18.200.0/25 dev rec0 src 198.18.200.10 table 100
ip -n "$A" route add default via 198.18.200.1 table 100
ip -n "$A" rule add pref 1000 lookup 100
record policy
inA ip rule show >"$here/local-routes-policy-ip-rule.out"
ip -n "$A" rule del pref 1000
ip -n "$A" route flush table 100

# 4. The default route on an uplink with no carrier (its veth peer is down), the
#    gateway in the uplink's own /30, outside rec0's subnet.
ip -n "$A" link add up0 type veth peer name up1
ip -n "$A" link set up0 up
ip -n "$A" addr add 198.18.200.129/30 dev up0
ip -n "$A" route add default via 198.18.200.130 dev up0
record nocarrier
ip -n "$A" link del up0

# 5. No route at all: what `ip route get` says then.
inA ip -4 route get 192.0.2.1 >"$here/local-routes-none-ip-route-get.out" 2>&1 || true
inA ip -j -4 route get 192.0.2.1 >"$here/local-routes-none-ip-j-route-get.out" 2>&1 || true
echo "recorded into $here"
