#!/usr/bin/env bash
# scripts/tls-bench.sh - what TLS costs, side by side: direct Redis and strata, plain and TLS.
#
# Makes a throw-away CA and certificates (openssl) and starts, on free loopback ports and all in
# a temp dir:
#   - 3 redis-server nodes, each with a plain and a TLS port,
#   - strata A (release build) in front of the nodes' plain ports, with a plain and a TLS
#     listener: targets "strata" (plain all the way) and "strata-tls" (TLS clients),
#   - strata B in front of the nodes' TLS ports, same listeners: targets "strata-tls-nodes"
#     (plain clients, TLS to the nodes) and "strata-tls-both",
#   - a 4th redis-server with a plain and a TLS port: targets "direct" and "direct-tls".
# Then runs, for P in 1 and 16 and for BENCH_ROUNDS rounds, every target in turn (in reverse
# order every other round):
#   redis-benchmark [--tls --cacert ca.crt] -h 127.0.0.1 -p PORT -t set,get -c 50 -r 100000
#                   -n N -P P --csv -q
# and prints the median req/s of SET and GET per target, and the ratios TLS / plain of the same
# target (direct-tls/direct, strata-tls/strata, strata-tls-nodes/strata, strata-tls-both/strata)
# and strata-tls/direct-tls. Everything started here is stopped on exit.
#
# Environment:
#   BENCH_ROUNDS   rounds per pipeline depth      (default 3)
#   BENCH_N_P1     requests per run with -P 1     (default 100000)
#   BENCH_N_P16    requests per run with -P 16    (default 500000)
#   BENCH_TIMEOUT  seconds before one run is aborted (default 300)

set -euo pipefail

LIB_PROG=tls-bench.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_settings_only "$@"

rounds="${BENCH_ROUNDS:-3}"
n_p1="${BENCH_N_P1:-100000}"
n_p16="${BENCH_N_P16:-500000}"
run_timeout="${BENCH_TIMEOUT:-300}"
require_positive rounds n_p1 n_p16 run_timeout

ensure_redis
ensure_python3

install_cleanup_trap
workdir="$(mktemp -d -t strata-tls-bench.XXXXXX)"
register_tmpdir "$workdir"

log "building strata (release)"
(cd "$STRATA_ROOT" && cargo build --release --quiet)
strata_bin="$STRATA_ROOT/target/release/strata"

# A CA, and a certificate for localhost / 127.0.0.1 used by every server here.
pki="$workdir/pki"
make_tls_pki "$pki"

mapfile -t ports < <(free_ports 12)
node_plain=("${ports[0]}" "${ports[1]}" "${ports[2]}")
node_tls=("${ports[3]}" "${ports[4]}" "${ports[5]}")
direct_plain="${ports[6]}"
direct_tls="${ports[7]}"
a_plain="${ports[8]}"
a_tls="${ports[9]}"
b_plain="${ports[10]}"
b_tls="${ports[11]}"

for i in 0 1 2; do
    start_redis "${node_plain[$i]}" "$workdir/node$i" "${node_tls[$i]}" "$pki"
done
start_redis "$direct_plain" "$workdir/direct" "$direct_tls" "$pki"
for p in "${node_plain[@]}" "$direct_plain"; do
    wait_port "$p"
done

# write_strata NAME PLAIN TLS NODE_PORTS TLS_TO_NODES - a config for one strata.
write_strata() {
    local f="$workdir/$1.yaml"
    {
        printf 'listen: 127.0.0.1:%s\n' "$2"
        printf 'tls: {listen: "127.0.0.1:%s", cert: "%s", key: "%s"}\n' \
            "$3" "$pki/server.crt" "$pki/server.key"
        printf 'security: {allow_dangerous_commands: true}\n'
        if [[ "$5" == 1 ]]; then
            printf 'backend: {tls: {ca: "%s"}}\n' "$pki/ca.crt"
        fi
        printf 'nodes:\n'
        local n=0 p
        for p in $4; do
            n=$((n + 1))
            printf '  - {id: node%s, addr: "127.0.0.1:%s"}\n' "$n" "$p"
        done
    } >"$f"
    printf '%s' "$f"
}
conf_a="$(write_strata a "$a_plain" "$a_tls" "${node_plain[*]}" 0)"
conf_b="$(write_strata b "$b_plain" "$b_tls" "${node_tls[*]}" 1)"
"$strata_bin" check --config "$conf_a" >/dev/null
"$strata_bin" check --config "$conf_b" >/dev/null
"$strata_bin" serve --config "$conf_a" >"$workdir/strata-a.log" 2>&1 &
register_pid $!
"$strata_bin" serve --config "$conf_b" >"$workdir/strata-b.log" 2>&1 &
register_pid $!
wait_port "$a_plain"
wait_port "$b_plain"

targets=(direct direct-tls strata strata-tls strata-tls-nodes strata-tls-both)
declare -A port_of=(
    [direct]="$direct_plain" [direct-tls]="$direct_tls"
    [strata]="$a_plain" [strata-tls]="$a_tls"
    [strata-tls-nodes]="$b_plain" [strata-tls-both]="$b_tls"
)

results="$workdir/results.tsv"
: >"$results"
for pipeline in 1 16; do
    n="$n_p1"
    ((pipeline == 16)) && n="$n_p16"
    for ((round = 1; round <= rounds; round++)); do
        order=("${targets[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[$i]}"); done
        fi
        for t in "${order[@]}"; do
            tls=()
            [[ "$t" == *-tls* ]] && [[ "$t" != strata-tls-nodes ]] && tls=(--tls --cacert "$pki/ca.crt")
            redis-cli -p "${port_of[strata]}" flushall >/dev/null
            csv="$workdir/run-P$pipeline-r$round-$t.csv"
            timeout "$run_timeout" redis-benchmark "${tls[@]}" -h 127.0.0.1 -p "${port_of[$t]}" \
                -t set,get -c 50 -r 100000 -n "$n" -P "$pipeline" --csv -q >"$csv" 2>"$csv.err" ||
                warn "$t -P $pipeline round $round: redis-benchmark failed (see $csv.err)"
            line=""
            for op in SET GET; do
                rps="$(awk -F'","' -v op="\"$op" '$1 == op { print $2 }' "$csv" | tr -d '"')"
                printf '%s\t%s\t%s\t%s\t%s\n' "$pipeline" "$round" "$t" "$op" "${rps:-0}" >>"$results"
                line+=" $op ${rps:-failed}"
            done
            log "P$pipeline round $round $t:$line"
        done
    done
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
med = {}
for p, _, t, op, rps in rows:
    med.setdefault((p, t, op), []).append(float(rps))
med = {k: statistics.median(v) for k, v in med.items()}
targets = ["direct", "direct-tls", "strata", "strata-tls", "strata-tls-nodes", "strata-tls-both"]
print("median req/s over rounds (redis-benchmark -c 50 -r 100000)")
print(f"{'':4} {'op':4} " + " ".join(f"{t:>16}" for t in targets))
for p in ("1", "16"):
    for op in ("SET", "GET"):
        print(f"P{p:<3} {op:4} " + " ".join(f"{med.get((p, t, op), 0):>16,.0f}" for t in targets))
pairs = [("direct-tls", "direct"), ("strata-tls", "strata"), ("strata-tls-nodes", "strata"),
         ("strata-tls-both", "strata"), ("strata-tls", "direct-tls")]
print()
print(f"{'':4} {'op':4} " + " ".join(f"{a + '/' + b:>28}" for a, b in pairs))
for p in ("1", "16"):
    for op in ("SET", "GET"):
        cells = []
        for a, b in pairs:
            x, y = med.get((p, a, op), 0), med.get((p, b, op), 0)
            cells.append(f"{(x / y if y else 0):>28.2f}")
        print(f"P{p:<3} {op:4} " + " ".join(cells))
EOF
