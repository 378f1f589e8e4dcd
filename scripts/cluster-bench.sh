#!/usr/bin/env bash
# scripts/cluster-bench.sh - throughput over a Redis Cluster: redis-benchmark against the
# cluster directly (`--cluster`: it learns the slot map and sends each key to its primary) vs
# against strata in front of the same cluster (a `backends: [{cluster: ...}]` backend serving
# every layer), and against the same strata binary over its own ring of as many plain nodes
# (today's path, what the cluster path must keep), side by side in one run.
#
# Starts, on free loopback ports in a temp dir: CLUSTER_BENCH_PRIMARIES redis-server nodes with
# `--cluster-enabled yes` (their cluster bus on port + 10000), joined by `redis-cli --cluster
# create` (no replicas), and strata (release build, or STRATA_BIN) with `workers:
# STRATA_WORKERS` in front of them, and a second strata ("strata-ring") over as many plain
# redis-servers. Then, for -P 1 and -P 16 and CLUSTER_BENCH_ROUNDS rounds (the targets in
# reverse order every other round):
#   cluster      redis-benchmark --cluster -h 127.0.0.1 -p SEED -t TESTS -c 50 -r 100000 -n N -P P --csv -q
#   strata       redis-benchmark -h 127.0.0.1 -p STRATA      -t TESTS -c 50 -r 100000 -n N -P P --csv -q
#   strata-ring  redis-benchmark -h 127.0.0.1 -p STRATA_RING -t TESTS -c 50 -r 100000 -n N -P P --csv -q
# and prints the median req/s of each with the ratios strata/cluster and strata/strata-ring, of
# the medians and paired (the median of the per-round ratios). Note that the cluster's three
# redis-servers may use every core, while strata with one worker uses one. The report (markdown, with the machine and every
# command) is also written to target/cluster-bench/<timestamp>.md. Everything started is
# stopped on exit; each run is bounded by CLUSTER_BENCH_TIMEOUT.
#
# Environment:
#   CLUSTER_BENCH_TESTS      redis-benchmark -t list            (default "set,get")
#   CLUSTER_BENCH_ROUNDS     rounds per pipeline depth          (default 3)
#   CLUSTER_BENCH_N_P1       requests per run with -P 1         (default 200000)
#   CLUSTER_BENCH_N_P16      requests per run with -P 16        (default 1000000)
#   CLUSTER_BENCH_PRIMARIES  cluster primaries                  (default 3)
#   CLUSTER_BENCH_TIMEOUT    seconds one redis-benchmark run may take (default 600)
#   STRATA_WORKERS           strata's `workers:`                (default 1)
#   STRATA_BIN               strata binary                      (default: cargo build --release)

set -euo pipefail

LIB_PROG=cluster-bench.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_settings_only "$@"

tests="${CLUSTER_BENCH_TESTS:-set,get}"
rounds="${CLUSTER_BENCH_ROUNDS:-3}"
n_p1="${CLUSTER_BENCH_N_P1:-200000}"
n_p16="${CLUSTER_BENCH_N_P16:-1000000}"
primaries="${CLUSTER_BENCH_PRIMARIES:-3}"
run_timeout="${CLUSTER_BENCH_TIMEOUT:-600}"
workers="${STRATA_WORKERS:-1}"
require_positive rounds n_p1 n_p16 primaries run_timeout workers
((primaries >= 3)) || die "CLUSTER_BENCH_PRIMARIES must be at least 3 (redis-cli --cluster create needs 3)"

install_cleanup_trap
started=$SECONDS
ensure_redis
ensure_python3
if [[ -n "${STRATA_BIN:-}" ]]; then
    strata_bin="$STRATA_BIN"
    [[ -x "$strata_bin" ]] || die "STRATA_BIN $strata_bin is not executable"
else
    strata_bin="$(build_strata)"
fi

workdir="$(mktemp -d -t strata-cluster-bench.XXXXXX)"
register_tmpdir "$workdir"

# Ports whose cluster bus port (+10000) is free too.
mapfile -t node_ports < <(python3 - "$primaries" <<'PY'
import random, socket, sys
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
out = []
while len(out) < int(sys.argv[1]):
    p = random.randint(20000, 50000)
    if p not in out and free(p) and free(p + 10000):
        out.append(p)
print("\n".join(map(str, out)))
PY
)
mapfile -t other_ports < <(free_ports $((primaries + 2)))
strata_port="${other_ports[0]}"
ring_port="${other_ports[1]}"
ring_nodes=("${other_ports[@]:2}")
for p in "${node_ports[@]}"; do
    mkdir -p "$workdir/node-$p"
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "$workdir/node-$p/nodes.conf" --cluster-node-timeout 5000 \
        --save '' --appendonly no --daemonize no --dir "$workdir/node-$p" \
        --logfile "$workdir/node-$p/redis.log" </dev/null >/dev/null 2>&1 &
    register_pid $!
done
for p in "${node_ports[@]}"; do
    wait_port "$p" 10 || die "cluster node on $p did not start"
done
create=(redis-cli --cluster create)
for p in "${node_ports[@]}"; do create+=("127.0.0.1:$p"); done
"${create[@]}" --cluster-replicas 0 --cluster-yes >"$workdir/create.log" 2>&1 ||
    { cat "$workdir/create.log" >&2; die "redis-cli --cluster create failed"; }
deadline=$((SECONDS + 60))
for p in "${node_ports[@]}"; do
    until redis-cli -p "$p" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok'; do
        ((SECONDS < deadline)) || die "the cluster did not reach cluster_state:ok"
        sleep 0.2
    done
done
seed="${node_ports[0]}"

cfg="$workdir/strata.yaml"
cat >"$cfg" <<EOF
# generated by scripts/cluster-bench.sh
listen: 127.0.0.1:$strata_port
workers: $workers
nodes: []
backends:
  - { name: bench, cluster: { seeds: ["127.0.0.1:$seed"] } }
defaults: { backend: bench, ttl: 0, max_ttl: 0 }
stats: { layer_keys_interval: 0s }
EOF
start_strata "$strata_bin" "$cfg" "$strata_port" "$workdir"
deadline=$((SECONDS + 30))
until redis-cli -p "$strata_port" INFO backends 2>/dev/null | grep -q 'slots_covered=16384'; do
    ((SECONDS < deadline)) || { tail -n 20 "$workdir/strata.log" >&2; die "strata did not learn the slot map"; }
    sleep 0.2
done
ring_cfg="$workdir/strata-ring.yaml"
start_nodes "$workdir" "${ring_nodes[@]}"
{
    printf '# generated by scripts/cluster-bench.sh\nlisten: 127.0.0.1:%s\nworkers: %s\n' "$ring_port" "$workers"
    strata_nodes_yaml "${ring_nodes[@]}"
    printf 'defaults: { ttl: 0, max_ttl: 0 }\nstats: { layer_keys_interval: 0s }\n'
} >"$ring_cfg"
mkdir -p "$workdir/ring"
start_strata "$strata_bin" "$ring_cfg" "$ring_port" "$workdir/ring"
log "cluster on ${node_ports[*]}; strata on $strata_port; strata-ring on $ring_port over ${ring_nodes[*]}"

tsv="$workdir/runs.tsv"
: >"$tsv"
commands=()
# run_one TARGET P ROUND - one redis-benchmark run; appends "target P round test rps" lines.
run_one() {
    local target="$1" p="$2" round="$3" n cmd out
    n=$n_p1
    ((p == 1)) || n=$n_p16
    case "$target" in
        cluster) cmd=(redis-benchmark --cluster -h 127.0.0.1 -p "$seed") ;;
        strata) cmd=(redis-benchmark -h 127.0.0.1 -p "$strata_port") ;;
        *) cmd=(redis-benchmark -h 127.0.0.1 -p "$ring_port") ;;
    esac
    cmd+=(-t "$tests" -c 50 -r 100000 -n "$n" -P "$p" --csv -q)
    ((round > 1)) || commands+=("${cmd[*]}")
    local rc=0 err="$workdir/redis-benchmark.err"
    out="$(timeout "$run_timeout" "${cmd[@]}" 2>"$err")" || rc=$?
    if ((rc != 0)); then
        printf '%s\n' "$out" | tail -n 5 >&2
        tail -n 5 "$err" >&2
        [[ "$target" == cluster ]] || tail -n 20 "$workdir/strata.log" "$workdir/ring/strata.log" >&2
        ((rc != 124)) || die "redis-benchmark against $target took longer than ${run_timeout}s"
        die "redis-benchmark against $target failed (exit $rc): ${cmd[*]}"
    fi
    # --csv: "test","rps",... (a header line first in newer redis-benchmark).
    printf '%s\n' "$out" | python3 -c '
import csv, sys
target, p, rnd = sys.argv[1:4]
for row in csv.reader(sys.stdin):
    if len(row) < 2 or row[0] == "test":
        continue
    try:
        rps = float(row[1])
    except ValueError:
        continue
    print(f"{target}\t{p}\t{rnd}\t{row[0]}\t{rps}")
' "$target" "$p" "$round" >>"$tsv"
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for p in 1 16; do
    for ((r = 1; r <= rounds; r++)); do
        order=(cluster strata strata-ring)
        ((r % 2 == 1)) || order=(strata-ring strata cluster)
        for t in "${order[@]}"; do
            log "-P $p round $r: $t"
            run_one "$t" "$p" "$r"
        done
    done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
kill -0 "$STRATA_PID" 2>/dev/null || { tail -n 20 "$workdir/strata.log" >&2; die "strata exited during the run"; }
backends_line="$(redis-cli -p "$strata_port" INFO backends | tr -d '\r' | grep '^backend_bench:' || true)"

stamp="$(date +%Y%m%d-%H%M%S)"
outdir="$STRATA_ROOT/target/cluster-bench"
mkdir -p "$outdir"
cp "$tsv" "$outdir/$stamp.tsv"
commit="$(git -C "$STRATA_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if git -C "$STRATA_ROOT" diff --quiet HEAD -- 2>/dev/null; then tree="clean tree"; else tree="dirty tree"; fi
cpu="$(awk -F: '/^model name/ { sub(/^[ \t]+/, "", $2); print $2; exit }' /proc/cpuinfo || true)"
report="$outdir/$stamp.md"
{
    printf '# strata over a Redis Cluster vs the cluster directly, %s\n\n' "$stamp"
    printf '%s primaries, no replicas (strata-ring: %s plain nodes); %s rounds per pipeline depth, targets alternated.\n\n' "$primaries" "$primaries" "$rounds"
    python3 - "$tsv" <<'PY'
import statistics, sys
from collections import defaultdict
runs = defaultdict(dict)
for line in open(sys.argv[1]):
    target, p, rnd, test, rps = line.rstrip("\n").split("\t")
    runs[(int(p), test)].setdefault(target, {})[int(rnd)] = float(rps)
def ratio(a, b):
    med = statistics.median(a.values()) / statistics.median(b.values())
    paired = statistics.median(a[r] / b[r] for r in a if r in b and b[r] > 0)
    return f"{med:.2f} | {paired:.2f}"
print("| -P | test | cluster direct | strata over the cluster | strata over its ring | strata / cluster | paired | strata / strata-ring | paired |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for (p, test) in sorted(runs):
    t = runs[(p, test)]
    c, s, g = t.get("cluster", {}), t.get("strata", {}), t.get("strata-ring", {})
    if not c or not s or not g:
        continue
    med = lambda x: f"{statistics.median(x.values()):,.0f}"
    print(f"| {p} | {test} | {med(c)} | {med(s)} | {med(g)} | {ratio(s, c)} | {ratio(s, g)} |")
print()
print("Median req/s of each target; the ratios are of the medians, then paired (the median of the per-round ratios).")
PY
    printf '\n| machine | |\n|---|---|\n'
    printf '| CPU | %s, %s CPUs online |\n' "${cpu:-unknown}" "$(nproc)"
    printf '| load average (1, 5, 15 min) | %s at the start, %s at the end |\n' "$load_before" "$load_after"
    printf '| Redis | %s |\n' "$(redis-server --version | cut -d' ' -f1-3)"
    printf '| strata | commit %s (%s), release build, workers: %s |\n' "$commit" "$tree" "$workers"
    printf '| strata INFO backends after the run | %s |\n' "${backends_line:-(none)}"
    printf '\ncommands (first round; ports vary per run):\n\n'
    for c in "${commands[@]}"; do
        # shellcheck disable=SC2016 # markdown code spans, not expansions
        printf -- '- `%s`\n' "$c"
    done
} >"$report"
printf '\n'
cat "$report"
printf '\n%s: ran in %s s; report in target/cluster-bench/%s.md\n' "$LIB_PROG" "$((SECONDS - started))" "$stamp"
