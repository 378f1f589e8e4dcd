#!/usr/bin/env bash
# scripts/fleet-check.sh - the fleet of docs/scaling.md on loopback: two strata instances with
# one configuration in front of three redis-servers, behind HAProxy with the example's own
# docker/fleet/haproxy.cfg (its service addresses rewritten to loopback ports; everything else
# as committed). What the docker-compose example runs, without containers.
#
# Checks, in order, and prints each result:
#   1. `haproxy -c` accepts the rewritten example;
#   2. keys written through HAProxy (a new connection per client, spread by leastconn) read
#      back the same through each instance directly, and both instances name the same nodes
#      for every key (STRATA RING);
#   3. redis-benchmark through HAProxy: both instances served clients (their INFO);
#   4. a membership change the supported way: a fourth node added to the one config file,
#      then SIGHUP to each instance; both then agree on every key's nodes again;
#   5. one instance stopped with SIGTERM (it drains): clients connecting through HAProxy keep
#      working; the connections refused while HAProxy's check notices are counted.
# Exits non-zero when a check fails. Everything started is stopped on exit.
#
# Environment:
#   FLEET_KEYS     keys written in checks 2 and 4       (default 300)
#   STRATA_BIN     strata binary                        (default: cargo build --release)

set -euo pipefail

LIB_PROG=fleet-check.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_settings_only "$@"
install_cleanup_trap
ensure_redis
command -v haproxy >/dev/null 2>&1 || apt_install haproxy
KEYS="${FLEET_KEYS:-300}"
require_positive KEYS

BIN="${STRATA_BIN:-$(build_strata)}"
DIR="$(mktemp -d -t strata-fleet.XXXXXX)"
[[ -n "${FLEET_KEEP:-}" ]] || register_tmpdir "$DIR"
mapfile -t PORTS < <(free_ports 7)
NODE_PORTS=("${PORTS[@]:0:4}")
S1="${PORTS[4]}" S2="${PORTS[5]}" HP="${PORTS[6]}"
start_nodes "$DIR" "${NODE_PORTS[@]}"

# The one configuration both instances read (each gets its own `listen` appended: on one host
# they cannot share a port; in containers they would).
config() {
    local n="$1"
    printf 'workers: 1\n'
    strata_nodes_yaml "${NODE_PORTS[@]:0:$n}"
    cat <<'YAML'
layers:
  - { name: route,  prefix: "route:",  ttl: 5m, replication: 2, write_consistency: quorum }
  - { name: result, prefix: "result:", ttl: 10m }
  - { name: meta,   prefix: "meta:",   ttl: 1m, replication: 3, write_consistency: strong }
  - { name: load,   prefix: "load:",   ttl: 5s }
YAML
}
write_configs() {
    config "$1" >"$DIR/shared.yaml"
    for port in "$S1" "$S2"; do
        { cat "$DIR/shared.yaml"; printf 'listen: 127.0.0.1:%s\n' "$port"; } >"$DIR/strata-$port.yaml"
    done
}
write_configs 3
mkdir -p "$DIR/s1" "$DIR/s2"
start_strata "$BIN" "$DIR/strata-$S1.yaml" "$S1" "$DIR/s1"
PID1="$STRATA_PID"
start_strata "$BIN" "$DIR/strata-$S2.yaml" "$S2" "$DIR/s2"
PID2="$STRATA_PID"

FAILED=0
check() { # check NAME OK(0/1) DETAIL
    if [[ "$2" == 0 ]]; then
        printf 'ok    %s: %s\n' "$1" "$3"
    else
        printf 'FAIL  %s: %s\n' "$1" "$3"
        FAILED=1
    fi
}

# 1. The example's haproxy.cfg, its addresses on loopback.
sed -e "s/^\( *bind \).*/\1127.0.0.1:$HP/" \
    -e "s/strata1:6380/127.0.0.1:$S1/" -e "s/strata2:6380/127.0.0.1:$S2/" \
    "$STRATA_ROOT/docker/fleet/haproxy.cfg" >"$DIR/haproxy.cfg"
if ! grep -q "127.0.0.1:$S1" "$DIR/haproxy.cfg" || ! grep -q "127.0.0.1:$S2" "$DIR/haproxy.cfg"; then
    die "docker/fleet/haproxy.cfg no longer names strata1:6380 and strata2:6380"
fi
if haproxy -c -f "$DIR/haproxy.cfg" >"$DIR/haproxy-check.log" 2>&1; then
    check "haproxy -c" 0 "the example's configuration is valid"
else
    check "haproxy -c" 1 "$(tail -n 3 "$DIR/haproxy-check.log")"
fi
haproxy -db -f "$DIR/haproxy.cfg" </dev/null >"$DIR/haproxy.log" 2>&1 &
register_pid $!
wait_port "$HP" 10 || die "HAProxy did not forward PING on 127.0.0.1:$HP"
# Both servers pass HAProxy's check (rise 2, inter 1s).
sleep 3

# 2. Written through HAProxy, read through each instance; the same nodes named by both.
for ((i = 0; i < KEYS; i++)); do
    printf 'SET route:q%d v%d\n' "$i" "$i"
done | redis-cli -p "$HP" >/dev/null
for ((i = 0; i < KEYS; i++)); do
    redis-cli -p "$HP" SET "meta:m$i" "m$i" >/dev/null
done
agree() { # agree N: keys whose value and nodes both instances report alike
    local i same=0 k
    for ((i = 0; i < $1; i++)); do
        for k in "route:q$i" "meta:m$i"; do
            if [[ "$(redis-cli -p "$S1" GET "$k")" == "$(redis-cli -p "$S2" GET "$k")" &&
                "$(redis-cli -p "$S1" STRATA RING "$k")" == "$(redis-cli -p "$S2" STRATA RING "$k")" ]]; then
                same=$((same + 1))
            fi
        done
    done
    printf '%s\n' "$same"
}
SAME="$(agree "$KEYS")"
check "placement" "$([[ "$SAME" == $((2 * KEYS)) ]] && echo 0 || echo 1)" \
    "$SAME of $((2 * KEYS)) keys written through HAProxy read alike through both instances, same nodes"

# 3. Load through HAProxy reaches both instances.
received() { redis-cli -p "$1" INFO stats | tr -d '\r' | awk -F: '/^total_connections_received:/ { print $2 }'; }
before1="$(received "$S1")" before2="$(received "$S2")"
redis-benchmark -p "$HP" -c 50 -n 100000 -r 10000 -t set,get --csv -q >"$DIR/bench.csv"
got1=$(($(received "$S1") - before1)) got2=$(($(received "$S2") - before2))
check "spread" "$([[ $got1 -gt 5 && $got2 -gt 5 ]] && echo 0 || echo 1)" \
    "redis-benchmark -c 50 through HAProxy: $got1 connections to instance 1, $got2 to instance 2; $(tr -d '"' <"$DIR/bench.csv" | tr '\n' ' ')"

# 4. Membership: node4 added to the one file, each instance reloaded.
write_configs 4
kill -HUP "$PID1" "$PID2"
deadline=$((SECONDS + 30))
until redis-cli -p "$S1" STRATA NODES | grep -q node4 && redis-cli -p "$S2" STRATA NODES | grep -q node4; do
    ((SECONDS < deadline)) || die "node4 did not reach both instances within 30 s"
    sleep 0.2
done
SAME="$(agree "$KEYS")"
check "membership" "$([[ "$SAME" == $((2 * KEYS)) ]] && echo 0 || echo 1)" \
    "after adding node4 to the file and SIGHUP to each: $SAME of $((2 * KEYS)) keys alike through both"

# 5. Instance 1 drains; clients through HAProxy go on.
kill -TERM "$PID1"
ok=0 refused=0
end=$((SECONDS + 6))
while ((SECONDS < end)); do
    if [[ "$(redis-cli -p "$HP" GET route:q1 2>/dev/null)" == "v1" ]]; then
        ok=$((ok + 1))
    else
        refused=$((refused + 1))
    fi
done
last_ok=0
for _ in 1 2 3 4 5; do
    [[ "$(redis-cli -p "$HP" GET route:q1 2>/dev/null)" == "v1" ]] && last_ok=$((last_ok + 1))
done
check "drain" "$([[ $last_ok == 5 ]] && echo 0 || echo 1)" \
    "instance 1 stopped (SIGTERM): $ok reads through HAProxy answered, $refused failed in the 6 s after; the last 5 answered by instance 2: $last_ok"

exit "$FAILED"
