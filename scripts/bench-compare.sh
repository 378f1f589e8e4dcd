#!/usr/bin/env bash
# scripts/bench-compare.sh - side-by-side throughput: direct Redis vs twemproxy vs strata; with
# BENCH_PRESET=published, the project's published benchmark. Helpers (the probe of each test's
# command, the report's tables): scripts/bench-compare/bench.py.
#
# Starts, on free loopback ports and all in a temp dir:
#   - "direct": one redis-server (as a single Redis server would be),
#   - "twemproxy": nutcracker (fnv1a_64 + ketama) in front of 3 redis-server nodes,
#   - "strata": strata (release build) in front of 3 nodes, one copy of each key,
#   - "strata-rf2": the same binary in front of 3 nodes with STRATA_RF2_CONFIG (default
#     `defaults: {replication: 2, write_consistency: quorum}`: two copies of each key, a write
#     answered once both replicas acknowledged it, reads from one replica),
#   - "baseline": another strata binary (STRATA_BASELINE, e.g. built from an earlier commit) in
#     front of 3 nodes, to measure what a change costs, side by side.
# Only the targets in BENCH_TARGETS are started. Each proxy has three nodes of its own, so no
# target reads keys another one wrote (hit rates depend on it); BENCH_SHARED_NODES=1 puts
# every proxy in front of the same three nodes instead.
#
# Then runs the workloads of BENCH_WORKLOADS, each alternating the targets within a round, in
# reverse order every other round (a target run right after another meets the nodes and the
# machine in another state, so none always runs before or after the same one):
#   redis-benchmark  for P in 1 and 16 and for BENCH_ROUNDS rounds, against each target:
#                      redis-benchmark -h 127.0.0.1 -p PORT -t TESTS -c 50 -r 100000 -n N -P P --csv -q
#                    with the tests of BENCH_TESTS that the target accepts: each test's
#                    command is first sent once to every target, and a test a target refuses
#                    (an error reply, or the connection closed) is reported as n/a for it.
#                    (lrange_*: the LPUSHes redis-benchmark fills the list with are not reported.)
#                    Prints the median req/s per target and test with the ratios strata/direct,
#                    strata/twemproxy, strata-rf2/strata and twemproxy/direct (with a baseline
#                    also strata/baseline), as ratios of the medians and "paired" (the median
#                    of the per-round ratios, which cancels a shared machine's drift).
#   mixed            strata bench --workload mixed --read-ratio 0.7 --key-dist zipf:0.99
#                      --requests BENCH_MIXED_REQUESTS --rounds BENCH_MIXED_ROUNDS, every target
#                      in one invocation (strata bench alternates them itself).
#   router           strata bench --workload router --requests BENCH_ROUTER_REQUESTS
#                      --time-scale BENCH_ROUTER_SCALE --rounds BENCH_ROUTER_ROUNDS
#                      --result-variants BENCH_ROUTER_VARIANTS, every
#                      target in one invocation, then the same queries with no cache.
# The report (markdown: the machine, the setup and its configs, every command run, the tables,
# strata bench's own tables and key figures from its JSON, the raw numbers) is printed and
# written to target/bench-compare/<timestamp>.md, beside <timestamp>.tsv (req/s of every
# redis-benchmark run) and <timestamp>-mixed.json / -router.json (strata bench's reports) with
# their charts, <timestamp>-mixed.svg / -router.svg.
# Everything started here is stopped on exit; every run is bounded by BENCH_TIMEOUT.
#
# The published benchmark (direct, twemproxy, strata, strata-rf2; every workload and test;
# sized for about 15 minutes on a 2-core machine):   BENCH_PRESET=published scripts/bench-compare.sh
#
# Environment (defaults without a preset; "published:" where BENCH_PRESET=published differs):
#   BENCH_PRESET    "" or "published"                  (default "")
#   BENCH_TARGETS   targets to run, in this order      (default "direct twemproxy strata";
#                   published: "direct twemproxy strata strata-rf2"; both plus "baseline" when
#                   STRATA_BASELINE is set)
#   BENCH_WORKLOADS workloads to run                   (default "redis-benchmark";
#                   published: "redis-benchmark mixed router")
#   BENCH_TESTS     redis-benchmark -t list            (default "set,get";
#                   published: "set,get,mset,lpush,lrange_100")
#   BENCH_ROUNDS    rounds per pipeline depth          (default 3)
#   BENCH_N_P1      requests per run with -P 1         (default 200000; published: 100000)
#   BENCH_N_P16     requests per run with -P 16        (default 1000000; published: 500000)
#   BENCH_EXTRA     extra redis-benchmark arguments    (default none)
#   BENCH_MIXED_REQUESTS  mixed: requests per target and round (default 300000)
#   BENCH_MIXED_ROUNDS    mixed: rounds                (default BENCH_ROUNDS)
#   BENCH_MIXED_PIPELINE  mixed: --pipeline            (default 1)
#   BENCH_ROUTER_REQUESTS router: queries per target and round (default 20000)
#   BENCH_ROUTER_SCALE    router: --time-scale         (default 4)
#   BENCH_ROUTER_ROUNDS   router: rounds               (default 1)
#   BENCH_ROUTER_VARIANTS router: --result-variants    (default 4: answers vary more than routes)
#   BENCH_TIMEOUT   seconds before one redis-benchmark run, or one measured phase of strata
#                   bench, is aborted                  (default 600)
#   BENCH_SHARED_NODES  1: every proxy in front of the same three nodes (default 0)
#   STRATA_WORKERS  `workers:` for every strata        (default: not set, strata's default)
#   STRATA_EXTRA_CONFIG  YAML appended to strata's config (not the others'), e.g. layers
#   STRATA_RF2_CONFIG    YAML appended to strata-rf2's config
#                   (default "defaults: {replication: 2, write_consistency: quorum}")
#   BASELINE_EXTRA_CONFIG  YAML appended to the baseline's config; with STRATA_BASELINE set to
#                   the same binary, this compares two configurations (e.g. replication 2 vs 1)
#   STRATA_BASELINE path of a strata binary to run as the "baseline" target
#   BENCH_NEAR      1: the benchmark's keys (key:...) in a near-cached layer of every strata
#                   target (`layers: [{name: bench, prefix: "key:", near_cache: {...}}]`,
#                   BENCH_NEAR_BYTES of memory, default 256mb; do not also give `layers:` in
#                   the *_EXTRA_CONFIG variables), and before the redis-benchmark runs every
#                   target is loaded: SET of every key, then GETs that fill the near caches
#                   (redis-benchmark -r 100000 -P 16, BENCH_NEAR_LOAD requests each, default
#                   1000000). Use with BENCH_TESTS=get: a SET test would invalidate the
#                   entries the GET test reads.             (default 0)
#   BASELINE_NEAR   0: BENCH_NEAR leaves the baseline without the near-cached layer (to
#                   measure the near cache itself with STRATA_BASELINE the same binary)
#                                                      (default 1)

set -euo pipefail

LIB_PROG=bench-compare.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_settings_only "$@"

started_at=$SECONDS
preset="${BENCH_PRESET:-}"
case "$preset" in
    "")
        def_targets="direct twemproxy strata"
        def_workloads="redis-benchmark"
        def_tests="set,get"
        def_n_p1=200000
        def_n_p16=1000000
        ;;
    published)
        def_targets="direct twemproxy strata strata-rf2"
        def_workloads="redis-benchmark mixed router"
        def_tests="set,get,mset,lpush,lrange_100"
        def_n_p1=100000
        def_n_p16=500000
        ;;
    *) die "unknown BENCH_PRESET '$preset' (known: published)" ;;
esac
read -r -a targets <<<"${BENCH_TARGETS:-$def_targets${STRATA_BASELINE:+ baseline}}"
read -r -a workloads <<<"${BENCH_WORKLOADS:-$def_workloads}"
tests="${BENCH_TESTS:-$def_tests}"
rounds="${BENCH_ROUNDS:-3}"
n_p1="${BENCH_N_P1:-$def_n_p1}"
n_p16="${BENCH_N_P16:-$def_n_p16}"
run_timeout="${BENCH_TIMEOUT:-600}"
read -r -a extra <<<"${BENCH_EXTRA:-}"
mixed_requests="${BENCH_MIXED_REQUESTS:-300000}"
mixed_rounds="${BENCH_MIXED_ROUNDS:-$rounds}"
mixed_pipeline="${BENCH_MIXED_PIPELINE:-1}"
router_requests="${BENCH_ROUTER_REQUESTS:-20000}"
router_scale="${BENCH_ROUTER_SCALE:-4}"
router_rounds="${BENCH_ROUTER_ROUNDS:-1}"
router_variants="${BENCH_ROUTER_VARIANTS:-4}"
shared_nodes="${BENCH_SHARED_NODES:-0}"
default_rf2_config='defaults: {replication: 2, write_consistency: quorum}'
rf2_config="${STRATA_RF2_CONFIG:-$default_rf2_config}"
near="${BENCH_NEAR:-0}"
near_bytes="${BENCH_NEAR_BYTES:-256mb}"
near_load="${BENCH_NEAR_LOAD:-1000000}"
baseline_near="${BASELINE_NEAR:-1}"
[[ "$near" == 0 || "$near" == 1 ]] || die "BENCH_NEAR must be 0 or 1, got '$near'"
[[ "$baseline_near" == 0 || "$baseline_near" == 1 ]] || die "BASELINE_NEAR must be 0 or 1, got '$baseline_near'"
[[ "$near_load" =~ ^[1-9][0-9]*$ ]] || die "BENCH_NEAR_LOAD must be a positive count, got '$near_load'"
near_yaml="layers: [{name: bench, prefix: \"key:\", near_cache: {max_bytes: $near_bytes}}]
near_cache: { max_bytes: $near_bytes }"
# near_config EXTRA_YAML - EXTRA_YAML with, under BENCH_NEAR=1, the near-cached layer.
near_config() {
    if ((near)); then
        printf '%s\n%s' "$near_yaml" "$1"
    else
        printf '%s' "$1"
    fi
}

[[ ${#targets[@]} -gt 0 ]] || die "BENCH_TARGETS is empty"
[[ ${#workloads[@]} -gt 0 ]] || die "BENCH_WORKLOADS is empty"
want_twemproxy=0
want_strata_bin=0
want_baseline=0
declare -A seen_target=()
for t in "${targets[@]}"; do
    [[ -z "${seen_target[$t]:-}" ]] || die "target '$t' is listed twice in BENCH_TARGETS"
    seen_target[$t]=1
    case "$t" in
        direct) ;;
        twemproxy) want_twemproxy=1 ;;
        strata | strata-rf2) want_strata_bin=1 ;;
        baseline) want_baseline=1 ;;
        *) die "unknown target '$t' in BENCH_TARGETS (known: direct twemproxy strata strata-rf2 baseline)" ;;
    esac
done
want_rb=0
want_mixed=0
want_router=0
for w in "${workloads[@]}"; do
    case "$w" in
        redis-benchmark) want_rb=1 ;;
        mixed) want_mixed=1 want_strata_bin=1 ;;
        router) want_router=1 want_strata_bin=1 ;;
        *) die "unknown workload '$w' in BENCH_WORKLOADS (known: redis-benchmark mixed router)" ;;
    esac
done
if ((want_baseline)); then
    [[ -n "${STRATA_BASELINE:-}" && -x "${STRATA_BASELINE:-}" ]] ||
        die "target baseline needs STRATA_BASELINE=<path of an executable strata binary>"
fi
[[ "$tests" =~ ^[a-z0-9_]+(,[a-z0-9_]+)*$ ]] ||
    die "BENCH_TESTS must be a comma-separated list of redis-benchmark tests, got '$tests'"
IFS=, read -r -a test_list <<<"$tests"
require_positive rounds n_p1 n_p16 run_timeout mixed_requests mixed_rounds mixed_pipeline \
    router_requests router_rounds router_variants
[[ "$router_scale" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_ROUTER_SCALE must be a number, got '$router_scale'"
[[ "$shared_nodes" =~ ^[01]$ ]] || die "BENCH_SHARED_NODES must be 0 or 1, got '$shared_nodes'"
if [[ -n "${STRATA_WORKERS:-}" && ! "$STRATA_WORKERS" =~ ^[0-9]+$ ]]; then
    die "STRATA_WORKERS must be a number, got '$STRATA_WORKERS'"
fi

install_cleanup_trap

# --- tools -----------------------------------------------------------------------------------
ensure_redis
ensure_python3
if ((want_twemproxy)); then
    ensure_nutcracker
fi
if ((want_strata_bin)); then
    strata_bin="$(build_strata)"
fi

helper="$STRATA_ROOT/scripts/bench-compare/bench.py"
workdir="$(mktemp -d -t strata-bench.XXXXXX)"
register_tmpdir "$workdir"
load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

# --- ports -----------------------------------------------------------------------------------
# Every target listens on a port of its own; each proxy gets three nodes of its own (or all
# share one set); twemproxy also has a stats port.
proxies=()
for t in "${targets[@]}"; do
    [[ "$t" == direct ]] || proxies+=("$t")
done
n_node_sets=${#proxies[@]}
((shared_nodes && n_node_sets > 1)) && n_node_sets=1
n_ports=$((${#targets[@]} + 3 * n_node_sets + want_twemproxy))
mapfile -t ports < <(free_ports "$n_ports")
[[ ${#ports[@]} -eq $n_ports ]] || die "could not find $n_ports free ports"
declare -A port_of=() nodes_of=()
next=0
for t in "${targets[@]}"; do
    port_of[$t]="${ports[next]}"
    next=$((next + 1))
done
for t in "${proxies[@]}"; do
    if ((shared_nodes)) && [[ "$t" != "${proxies[0]}" ]]; then
        nodes_of[$t]="${nodes_of[${proxies[0]}]}"
    else
        nodes_of[$t]="${ports[next]} ${ports[next + 1]} ${ports[next + 2]}"
        next=$((next + 3))
    fi
done
((want_twemproxy)) && twem_stats_port="${ports[next]}"

# --- redis servers ---------------------------------------------------------------------------
redis_ports=()
declare -A pid_of=() log_of=()
[[ -n "${port_of[direct]:-}" ]] && redis_ports+=("${port_of[direct]}")
declare -A node_started=()
for t in "${proxies[@]}"; do
    for p in ${nodes_of[$t]}; do
        [[ -n "${node_started[$p]:-}" ]] || redis_ports+=("$p")
        node_started[$p]=1
    done
done
start_nodes "$workdir" "${redis_ports[@]}"
if [[ -n "${port_of[direct]:-}" ]]; then
    pid_of[direct]="${NODE_PIDS[0]}"
    log_of[direct]="$workdir/node-${port_of[direct]}.log"
    log "direct redis on ${port_of[direct]}"
fi
for t in "${proxies[@]}"; do
    log "$t's nodes on ${nodes_of[$t]}"
done

show_log() {
    printf '%s: --- last lines of %s ---\n' "$LIB_PROG" "$1" >&2
    tail -n 30 "$1" >&2 || true
}

# --- strata, strata-rf2, baseline ------------------------------------------------------------
# start_strata_target TARGET BIN EXTRA_YAML - writes a config for TARGET (its nodes, its port)
# and starts BIN with it.
start_strata_target() {
    local t="$1" bin="$2" extra_yaml="$3" cfg="$workdir/$1.yaml" i=0 p
    {
        printf '# generated by scripts/bench-compare.sh\n'
        printf 'listen: 127.0.0.1:%s\n' "${port_of[$t]}"
        [[ -n "${STRATA_WORKERS:-}" ]] && printf 'workers: %s\n' "$STRATA_WORKERS"
        printf 'nodes:\n'
        for p in ${nodes_of[$t]}; do
            i=$((i + 1))
            printf '  - { id: node%d, addr: 127.0.0.1:%s, weight: 1 }\n' "$i" "$p"
        done
        printf 'security: { allow_dangerous_commands: true }\n'
        [[ -n "$extra_yaml" ]] && printf '%s\n' "$extra_yaml"
    } >"$cfg"
    if ! "$bin" check --config "$cfg" >"$workdir/$t-check.log" 2>&1; then
        cat "$cfg" >&2
        show_log "$workdir/$t-check.log"
        die "$t: strata check rejected the generated config"
    fi
    NO_COLOR=1 "$bin" serve --config "$cfg" </dev/null >"$workdir/$t.log" 2>&1 &
    pid_of[$t]=$!
    log_of[$t]="$workdir/$t.log"
    register_pid "${pid_of[$t]}"
    if ! wait_port "${port_of[$t]}" 30; then
        show_log "$workdir/$t.log"
        die "$t did not answer PING on 127.0.0.1:${port_of[$t]}"
    fi
    log "$t on ${port_of[$t]}${STRATA_WORKERS:+ (workers: $STRATA_WORKERS)}"
}
[[ -n "${seen_target[strata]:-}" ]] && start_strata_target strata "$strata_bin" "$(near_config "${STRATA_EXTRA_CONFIG:-}")"
[[ -n "${seen_target[strata-rf2]:-}" ]] && start_strata_target strata-rf2 "$strata_bin" "$(near_config "$rf2_config")"
if ((want_baseline)); then
    if ((baseline_near)); then
        start_strata_target baseline "$STRATA_BASELINE" "$(near_config "${BASELINE_EXTRA_CONFIG:-}")"
    else
        start_strata_target baseline "$STRATA_BASELINE" "${BASELINE_EXTRA_CONFIG:-}"
    fi
fi

# --- twemproxy -------------------------------------------------------------------------------
if ((want_twemproxy)); then
    twem_cfg="$workdir/nutcracker.yml"
    {
        printf '# generated by scripts/bench-compare.sh\n'
        printf 'bench:\n'
        printf '  listen: 127.0.0.1:%s\n' "${port_of[twemproxy]}"
        printf '  hash: fnv1a_64\n'
        printf '  distribution: ketama\n'
        printf '  redis: true\n'
        printf '  auto_eject_hosts: false\n'
        printf '  timeout: 2000\n'
        printf '  servers:\n'
        i=0
        for p in ${nodes_of[twemproxy]}; do
            i=$((i + 1))
            printf '    - 127.0.0.1:%s:1 node%d\n' "$p" "$i"
        done
    } >"$twem_cfg"
    if ! "$NUTCRACKER" -t -c "$twem_cfg" >"$workdir/nutcracker-test.log" 2>&1; then
        cat "$twem_cfg" >&2
        show_log "$workdir/nutcracker-test.log"
        die "nutcracker -t rejected the generated config"
    fi
    "$NUTCRACKER" -c "$twem_cfg" -o "$workdir/nutcracker.log" -s "$twem_stats_port" -a 127.0.0.1 \
        </dev/null >"$workdir/nutcracker.out" 2>&1 &
    pid_of[twemproxy]=$!
    log_of[twemproxy]="$workdir/nutcracker.log"
    register_pid "${pid_of[twemproxy]}"
    if ! wait_port "${port_of[twemproxy]}" 10; then
        show_log "$workdir/nutcracker.log"
        die "twemproxy did not answer PING on 127.0.0.1:${port_of[twemproxy]}"
    fi
    log "twemproxy on ${port_of[twemproxy]} (stats on $twem_stats_port)"
fi

# --- check every target answers before measuring --------------------------------------------
for t in "${targets[@]}"; do
    redis_ping "${port_of[$t]}" || die "$t (127.0.0.1:${port_of[$t]}) does not answer PING"
    log "$t answers PING on 127.0.0.1:${port_of[$t]}"
done

# expected_rows TEST - the first word of the CSV rows redis-benchmark prints for test TEST.
expected_rows() {
    case "$1" in
        lrange) printf '%s\n' LRANGE_100 LRANGE_300 LRANGE_500 LRANGE_600 ;;
        ping) printf '%s\n' PING_INLINE PING_MBULK ;;
        *) printf '%s\n' "${1^^}" ;;
    esac
}

if ((want_rb)); then
    # redis-benchmark ignores a test it does not know: run each once against a plain node
    # (in a database of its own, emptied after) and require its rows.
    check_port="${redis_ports[0]}"
    redis-benchmark -h 127.0.0.1 -p "$check_port" --dbnum 9 -t "$tests" -n 1 -c 1 --csv -q \
        >"$workdir/tests-check.csv" 2>"$workdir/tests-check.err" ||
        die "redis-benchmark -t $tests failed against a plain redis-server: $(head -c 300 "$workdir/tests-check.err")"
    redis-cli -h 127.0.0.1 -p "$check_port" -n 9 FLUSHDB >/dev/null
    for test in "${test_list[@]}"; do
        while read -r name; do
            grep -q "^\"${name}[ \"]" "$workdir/tests-check.csv" ||
                die "this redis-benchmark ($(redis-benchmark --version)) has no test '$test' (BENCH_TESTS)"
        done < <(expected_rows "$test")
    done
fi

# --- helpers for the runs --------------------------------------------------------------------
stamp="$(date +%Y%m%d-%H%M%S)"
outdir="$STRATA_ROOT/target/bench-compare"
mkdir -p "$outdir"
report="$outdir/$stamp.md"
raw="$outdir/$stamp.tsv"
((want_rb)) && printf 'pipeline\tround\ttarget\ttest\trps\n' >"$raw"
refused="$workdir/refused.tsv"
: >"$refused"
commands="$workdir/commands.txt"
: >"$commands"
failures=0
declare -A took=()

# shell_quote ARG... - prints the args as one copy-pasteable command line.
shell_quote() {
    local a out=()
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:,=+@%-]+$ ]]; then
            out+=("$a")
        else
            out+=("'${a//\'/\'\\\'\'}'")
        fi
    done
    printf '%s\n' "${out[*]}"
}

# relative ARG... - the args with the repository root taken off their front (commands shown
# as run from the repository root).
relative() {
    local a out=()
    for a in "$@"; do out+=("${a#"$STRATA_ROOT"/}"); done
    shell_quote "${out[@]}"
}

declare -A dead=()

# check_alive TARGET - false (and reports it once, with the exit status and log) if the
# target's process has exited.
check_alive() {
    local t="$1" pid="${pid_of[$1]}" st=0 how
    kill -0 "$pid" 2>/dev/null && return 0
    if [[ -z "${dead[$t]:-}" ]]; then
        dead[$t]=1
        wait "$pid" 2>/dev/null || st=$?
        unregister_pid "$pid"
        if ((st > 128)); then how="killed by signal $((st - 128)) ($(kill -l $((st - 128)) 2>/dev/null || echo '?'))"; else how="exit status $st"; fi
        warn "$t (pid $pid) is gone: $how; its remaining runs are skipped"
        show_log "${log_of[$t]}"
    fi
    return 1
}

# run_bench "TARGET..." TIMEOUT OUT ERR CMD... - runs CMD (at most TIMEOUT seconds) and stops it
# early if one of the targets' processes dies meanwhile (redis-benchmark would otherwise spin
# forever).
run_bench() {
    local watched="$1" limit="$2" outf="$3" err="$4" bpid rc=0 t gone=""
    shift 4
    timeout "$limit" "$@" >"$outf" 2>"$err" &
    bpid=$!
    register_pid "$bpid"
    while kill -0 "$bpid" 2>/dev/null && [[ -z "$gone" ]]; do
        for t in $watched; do
            if ! kill -0 "${pid_of[$t]}" 2>/dev/null; then
                gone="$t"
                kill -TERM "$bpid" 2>/dev/null || true
                printf '%s: %s exited during the run\n' "$LIB_PROG" "$t" >>"$err"
                break
            fi
        done
        [[ -n "$gone" ]] || sleep 0.2
    done
    wait "$bpid" || rc=$?
    unregister_pid "$bpid"
    return "$rc"
}

# probe PORT TEST... - sends each test's command once to 127.0.0.1:PORT (see bench.py).
probe() { python3 "$helper" probe "$@"; }

# order_of ROUND - the targets in this round's order (reversed every other round).
order_of() {
    local i
    if (($1 % 2 == 0)); then
        for ((i = ${#targets[@]} - 1; i >= 0; i--)); do printf '%s\n' "${targets[$i]}"; done
    else
        printf '%s\n' "${targets[@]}"
    fi
}

printf '\n%s: targets: %s; workloads: %s%s\n' "$LIB_PROG" "${targets[*]}" "${workloads[*]}" \
    "${preset:+; preset: $preset}"

# --- redis-benchmark -------------------------------------------------------------------------
if ((want_rb)); then
    section_start=$SECONDS
    declare -A accepted=() got=()
    for t in "${targets[@]}"; do
        ok=()
        while IFS=$'\t' read -r test verdict reason; do
            if [[ "$verdict" == refused ]]; then
                warn "$t refuses redis-benchmark's $test ($reason): reported as n/a"
                printf '%s\t%s\t%s\n' "$t" "$test" "$reason" >>"$refused"
            else
                ok+=("$test")
            fi
        done < <(probe "${port_of[$t]}" "${test_list[@]}")
        accepted[$t]="$(
            IFS=,
            printf '%s' "${ok[*]}"
        )"
    done
    if ((near)); then
        # Every target gets every key, then GETs of them (which fill the near caches): the
        # measured GETs then find their keys everywhere, and strata answers from memory.
        for t in "${targets[@]}"; do
            for test in set get; do
                cmd=(redis-benchmark -h 127.0.0.1 -p "${port_of[$t]}" -t "$test" -c 50 -r 100000
                    -n "$near_load" -P 16 -q)
                printf '%s\n' "$(shell_quote "${cmd[@]}")" >>"$commands"
                run_bench "$t" "$run_timeout" "$workdir/load-$t-$test.out" "$workdir/load-$t-$test.err" "${cmd[@]}" ||
                    die "$t: loading the keys ($test) failed: $(tail -c 300 "$workdir/load-$t-$test.err")"
            done
            log "$t loaded: $near_load SETs and GETs of key:__rand_int__ (-r 100000)"
        done
    fi
    printf '\n%s: redis-benchmark -t %s; rounds: %s; -n %s with -P 1, -n %s with -P 16%s\n' \
        "$LIB_PROG" "$tests" "$rounds" "$n_p1" "$n_p16" "${BENCH_EXTRA:+; extra: $BENCH_EXTRA}"
    for pipeline in 1 16; do
        if [[ $pipeline -eq 1 ]]; then n="$n_p1"; else n="$n_p16"; fi
        for ((round = 1; round <= rounds; round++)); do
            mapfile -t order < <(order_of "$round")
            for t in "${order[@]}"; do
                if [[ -z "${accepted[$t]}" ]]; then
                    printf '\n[P=%s round %s/%s] %-10s every test refused: n/a\n' "$pipeline" "$round" "$rounds" "$t"
                    continue
                fi
                cmd=(redis-benchmark -h 127.0.0.1 -p "${port_of[$t]}" -t "${accepted[$t]}" -c 50
                    -r 100000 -n "$n" -P "$pipeline" --csv -q "${extra[@]}")
                cmd_str="$(shell_quote "${cmd[@]}")"
                printf '%s\n' "$cmd_str" >>"$commands"
                printf '\n[P=%s round %s/%s] %-10s $ %s\n' "$pipeline" "$round" "$rounds" "$t" "$cmd_str"
                if ! check_alive "$t"; then
                    failures=$((failures + 1))
                    printf '    skipped: %s is not running\n' "$t"
                    continue
                fi
                if ! redis_ping "${port_of[$t]}"; then
                    failures=$((failures + 1))
                    warn "$t does not answer PING on 127.0.0.1:${port_of[$t]}; run skipped"
                    continue
                fi
                csv="$workdir/run-P$pipeline-r$round-$t.csv"
                errf="$workdir/run-P$pipeline-r$round-$t.err"
                rc=0
                run_bench "$t" "$run_timeout" "$csv" "$errf" "${cmd[@]}" || rc=$?
                # Rows: "TEST ...",rps,... ; the LPUSH that fills the list for LRANGE is not a
                # test of its own.
                got=()
                while IFS=$'\t' read -r name rps; do
                    got[$name]="$rps"
                    printf '%s\t%s\t%s\t%s\t%s\n' "$pipeline" "$round" "$t" "$name" "$rps" >>"$raw"
                done < <(awk -F'","' '$1 ~ /^"[A-Z]/ && $1 !~ /needed to/ && $2 ~ /^[0-9.]+$/ {
                        sub(/^"/, "", $1); split($1, w, " "); print w[1] "\t" $2 }' "$csv")
                missing=()
                line=""
                IFS=, read -r -a ran <<<"${accepted[$t]}"
                for test in "${ran[@]}"; do
                    while read -r name; do
                        if [[ -n "${got[$name]:-}" ]]; then
                            line+="$(printf '  %s %s' "$name" "${got[$name]}")"
                        else
                            missing+=("$name")
                        fi
                    done < <(expected_rows "$test")
                done
                printf '   %s req/s\n' "${line:-  (none)}"
                if [[ $rc -ne 0 || ${#missing[@]} -gt 0 ]]; then
                    failures=$((failures + 1))
                    ((rc == 124)) && warn "$t: redis-benchmark timed out after ${run_timeout}s (BENCH_TIMEOUT)"
                    warn "$t: redis-benchmark failed (exit $rc)${missing[*]:+; no result for ${missing[*]}}"
                    show_log "$errf"
                    check_alive "$t" || true
                fi
            done
        done
    done
    took[redis-benchmark]=$((SECONDS - section_start))
fi

# --- strata bench ----------------------------------------------------------------------------
# strata_bench NAME PHASES ARGS... - runs `strata bench` with every target and ARGS, its table
# in $workdir/NAME.txt and JSON in target/bench-compare/<stamp>-NAME.json; at most
# BENCH_TIMEOUT per measured phase (PHASES of them).
strata_bench() {
    local name="$1" phases="$2" t rc=0 json="$outdir/$stamp-$1.json"
    shift 2
    local cmd=("$strata_bin" bench)
    for t in "${targets[@]}"; do cmd+=(--target "$t=127.0.0.1:${port_of[$t]}"); done
    cmd+=("$@" --json "$json" --svg "${json%.json}.svg")
    local cmd_str
    cmd_str="$(relative "${cmd[@]}")"
    printf '%s\n' "$cmd_str" >>"$commands"
    printf '%s\n' "$cmd_str" >"$workdir/$name.cmd"
    printf '\n[%s] $ %s\n' "$name" "$cmd_str"
    for t in "${targets[@]}"; do
        if ! check_alive "$t"; then
            failures=$((failures + 1))
            printf '    skipped: %s is not running\n' "$t"
            printf 'not run: %s had stopped\n' "$t" >"$workdir/$name.skipped"
            return 0
        fi
    done
    local section_start=$SECONDS
    run_bench "${targets[*]}" $((run_timeout * phases)) "$workdir/$name.txt" "$workdir/$name.err" \
        "${cmd[@]}" || rc=$?
    took[$name]=$((SECONDS - section_start))
    sed 's/^/    /' "$workdir/$name.txt"
    if ((rc != 0)); then
        failures=$((failures + 1))
        ((rc == 124)) && warn "$name: strata bench timed out after $((run_timeout * phases))s (BENCH_TIMEOUT per phase)"
        warn "$name: strata bench exited with status $rc (1: some requests failed, 2: could not run)"
        show_log "$workdir/$name.err"
        printf '%s\n' "$rc" >"$workdir/$name.rc"
    fi
}

ntargets=${#targets[@]}
if ((want_mixed)); then
    strata_bench mixed $((ntargets * (mixed_rounds + 1))) --workload mixed --read-ratio 0.7 \
        --key-dist zipf:0.99 --keys 100000 --clients 50 --pipeline "$mixed_pipeline" \
        --requests "$mixed_requests" --rounds "$mixed_rounds"
fi
if ((want_router)); then
    strata_bench router $(((ntargets + 1) * router_rounds)) --workload router \
        --requests "$router_requests" --time-scale "$router_scale" --rounds "$router_rounds" \
        --result-variants "$router_variants"
fi

# --- report ----------------------------------------------------------------------------------
load_after="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
total_took=$((SECONDS - started_at))

# tables_md SECTION - results as markdown: "redis-benchmark" (medians and ratios from the raw
# numbers), "mixed" or "router" (key figures from strata bench's JSON report).
tables_md() {
    python3 "$helper" tables "$1" --targets "${targets[*]}" --raw "$raw" --refused "$refused" \
        --rounds "$rounds" --tests "$tests" --json "$outdir/$stamp-$1.json"
}

# lscpu_field NAME - the value of lscpu's line "NAME:", or nothing.
lscpu_field() {
    lscpu 2>/dev/null | awk -F: -v name="$1" '$1 == name { sub(/^[ \t]+/, "", $2); print $2; exit }' ||
        true
}

# machine - the machine the run was on, as markdown table rows.
machine() {
    local cpu sockets cores threads mem
    cpu="$(lscpu_field 'Model name')"
    [[ -n "$cpu" ]] ||
        cpu="$(awk -F: '/^model name/ { sub(/^[ \t]+/, "", $2); print $2; exit }' /proc/cpuinfo || true)"
    sockets="$(lscpu_field 'Socket(s)')"
    cores="$(lscpu_field 'Core(s) per socket')"
    threads="$(lscpu_field 'Thread(s) per core')"
    mem="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo || echo '?')"
    printf '| CPU | %s |\n' "${cpu:-unknown}"
    if [[ -n "$sockets" && -n "$cores" && -n "$threads" ]]; then
        printf '| cores | %s CPUs online: %s socket(s) × %s core(s) × %s thread(s) |\n' \
            "$(nproc)" "$sockets" "$cores" "$threads"
    else
        printf '| cores | %s CPUs online |\n' "$(nproc)"
    fi
    printf '| memory | %s |\n' "$mem"
    printf '| kernel | %s |\n' "$(uname -srm)"
    printf '| load average (1, 5, 15 min) | %s at the start, %s at the end |\n' "$load_before" "$load_after"
    printf '| Redis | %s; %s |\n' "$(redis-server --version | cut -d' ' -f1-3)" \
        "$(redis-benchmark --version 2>&1 | head -n1)"
    ((want_twemproxy)) && printf '| twemproxy | %s |\n' "$("$NUTCRACKER" -V 2>&1 | head -n1 | sed 's/^This is //')"
    printf '| rustc | %s |\n' "$(rustc --version 2>/dev/null || echo unknown)"
    if ((want_strata_bin)); then
        local commit dirty
        commit="$(git -C "$STRATA_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
        if git -C "$STRATA_ROOT" diff --quiet HEAD -- 2>/dev/null; then
            dirty="clean tree"
        else
            dirty="dirty tree: uncommitted changes to tracked files"
        fi
        printf '| strata | commit %s (%s), release build%s |\n' "$commit" "$dirty" \
            "${STRATA_WORKERS:+, workers: $STRATA_WORKERS}"
    fi
    ((want_baseline)) && printf '| baseline | %s |\n' "$STRATA_BASELINE"
    return 0
}

# near_note - under BENCH_NEAR=1, what it adds to a strata target's description.
# shellcheck disable=SC2016 # backquotes in the report are markdown, not commands
near_note() {
    ((near)) && printf ', the keys in a near-cached layer (`%s`), loaded and read once before the runs' "${near_yaml//$'\n'/ }"
    return 0
}

# describe TARGET - what a target is, one line of markdown.
# shellcheck disable=SC2016 # backquotes in the report are markdown, not commands
describe() {
    case "$1" in
        direct) printf 'one redis-server' ;;
        twemproxy) printf 'nutcracker (fnv1a_64, ketama) in front of 3 nodes' ;;
        strata) printf 'strata in front of 3 nodes, one copy of each key%s%s' "${STRATA_EXTRA_CONFIG:+, plus \`$STRATA_EXTRA_CONFIG\`}" "$(near_note)" ;;
        strata-rf2) printf 'the same strata binary in front of 3 nodes with `%s`%s' "$rf2_config" "$(near_note)" ;;
        baseline) printf 'strata binary %s in front of 3 nodes%s%s' "$STRATA_BASELINE" "${BASELINE_EXTRA_CONFIG:+, plus \`$BASELINE_EXTRA_CONFIG\`}" "$( ((baseline_near)) && near_note)" ;;
    esac
}

# reproduce - the command line that runs this benchmark again with the same settings.
reproduce() {
    local v vars=()
    for v in $(compgen -v | grep -E '^(BENCH_|STRATA_WORKERS$|STRATA_EXTRA_CONFIG$|STRATA_RF2_CONFIG$|BASELINE_EXTRA_CONFIG$|BASELINE_NEAR$|STRATA_BASELINE$)' || true); do
        vars+=("$v=${!v}")
    done
    shell_quote "${vars[@]}" scripts/bench-compare.sh
}

# code_block FILE - FILE's text as a markdown code block.
code_block() {
    printf '```\n'
    cat "$1"
    printf '```\n'
}

# shellcheck disable=SC2016 # backquotes in the report are markdown, not commands
{
    title="direct Redis vs twemproxy vs strata"
    [[ -n "${seen_target[strata-rf2]:-}" ]] && title+=" (replication 1 and 2)"
    printf '# strata benchmark: %s\n\n' "$title"
    printf 'Run %s%s, %d min %02d s. Everything (load generators, Redis nodes, proxies) ran on ' \
        "$stamp" "${preset:+ (BENCH_PRESET=$preset)}" $((total_took / 60)) $((total_took % 60))
    printf 'the same machine, over loopback.\n\n'
    printf '## Machine\n\n| | |\n|---|---|\n'
    machine
    printf '\n## Targets\n\n'
    printf '| target | what | port |\n|---|---|---|\n'
    for t in "${targets[@]}"; do
        printf '| %s | %s | %s |\n' "$t" "$(describe "$t")" "${port_of[$t]}"
    done
    if ((shared_nodes && ${#proxies[@]} > 1)); then
        printf '\nEvery proxy is in front of the same three redis-server nodes (BENCH_SHARED_NODES=1)'
        ((want_router)) && printf ': in the router workload a target finds the keys the targets before it wrote, so hit rates are not comparable'
        printf '.\n'
    elif ((${#proxies[@]} > 0)); then
        printf '\nEach proxy has three redis-server nodes of its own (no target reads keys another wrote).\n'
    fi
    printf 'Nodes and direct: `redis-server --port PORT --bind 127.0.0.1 --save "" --appendonly no`.\n'
    if ((${#proxies[@]} > 0 && near)); then
        printf 'BENCH_NEAR=1: the benchmark'"'"'s keys are in a near-cached layer of strata (see the targets), and every target was loaded first (`-t set`, then `-t get`, `-r 100000 -n %s -P 16`).\n' "$near_load"
    elif ((${#proxies[@]} > 0)); then
        printf 'strata configs have no layers: every key is in the `default` layer.\n'
    fi
    if ((want_rb)); then
        printf '\n## redis-benchmark\n\n'
        tables_md redis-benchmark
    fi
    for name in mixed router; do
        [[ -f "$workdir/$name.cmd" ]] || continue
        if [[ $name == mixed ]]; then
            printf '\n## strata bench: mixed workload (GET 70%%, SET 30%%, Zipf 0.99 keys)\n\n'
        else
            printf '\n## strata bench: model-router workload\n\n'
        fi
        if [[ -f "$workdir/$name.skipped" ]]; then
            printf 'Not run (%s).' "$(sed 's/^not run: //' "$workdir/$name.skipped")"
        else
            printf 'Took %s s; strata bench exited with status %s' "${took[$name]:-?}" \
                "$(cat "$workdir/$name.rc" 2>/dev/null || echo 0)"
            [[ -f "$workdir/$name.rc" ]] && printf ' (1: some requests failed, 2: could not run)'
            printf '.'
        fi
        if [[ $name == router ]]; then
            printf ' Each round runs every target (in reverse order every other round), then the'
            printf ' same queries with no cache.'
        fi
        printf '\n\n```sh\n%s\n```\n\n' "$(cat "$workdir/$name.cmd")"
        if [[ -s "$workdir/$name.txt" ]]; then
            printf 'Its report:\n\n'
            code_block "$workdir/$name.txt"
            printf '\n'
        fi
        if [[ -f "$workdir/$name.rc" && -s "$workdir/$name.err" ]]; then
            printf 'Its stderr (last lines):\n\n'
            tail -n 20 "$workdir/$name.err" >"$workdir/$name.err.tail"
            code_block "$workdir/$name.err.tail"
            printf '\n'
        fi
        tables_md "$name"
    done
    printf '\n## How it ran\n\nTo run it again (from the repository root):\n\n'
    printf '```sh\n%s\n```\n\n' "$(reproduce)"
    if ((${#took[@]} > 0)); then
        printf 'Time per workload:'
        for k in redis-benchmark mixed router; do
            [[ -n "${took[$k]:-}" ]] && printf ' %s %d s;' "$k" "${took[$k]}"
        done
        printf ' total %d s (with start-up).\n\n' "$total_took"
    fi
    printf 'Setup (the ports are this run'\''s; config files below):\n\n```sh\n'
    for p in "${redis_ports[@]}"; do
        printf 'redis-server --port %s --bind 127.0.0.1 --save "" --appendonly no --daemonize yes\n' "$p"
    done
    for t in strata strata-rf2; do
        [[ -f "$workdir/$t.yaml" ]] && printf '%s serve --config %s.yaml &\n' "${strata_bin#"$STRATA_ROOT"/}" "$t"
    done
    [[ -f "$workdir/baseline.yaml" ]] && printf '%s serve --config baseline.yaml &\n' "$(shell_quote "$STRATA_BASELINE")"
    ((want_twemproxy)) && printf 'nutcracker -c nutcracker.yml -s %s -a 127.0.0.1 &\n' "$twem_stats_port"
    printf '```\n\n'
    for t in strata strata-rf2 baseline; do
        if [[ -f "$workdir/$t.yaml" ]]; then
            printf '`%s.yaml`:\n\n```yaml\n' "$t"
            cat "$workdir/$t.yaml"
            printf '```\n\n'
        fi
    done
    if ((want_twemproxy)); then
        printf '`nutcracker.yml`:\n\n```yaml\n'
        cat "$twem_cfg"
        printf '```\n\n'
    fi
    printf 'Commands measured, in the order first run:\n\n```sh\n'
    awk '!seen[$0]++' "$commands"
    printf '```\n\n'
    if ((want_rb)); then
        printf '## Raw numbers\n\nredis-benchmark req/s of every run (also in `%s`):\n\n```\n' "${raw#"$STRATA_ROOT"/}"
        column -t -s $'\t' "$raw" 2>/dev/null || cat "$raw"
        printf '```\n\n'
    fi
    for name in mixed router; do
        [[ -f "$outdir/$stamp-$name.json" ]] && printf 'strata bench %s: `%s` (every round, every figure).\n' \
            "$name" "target/bench-compare/$stamp-$name.json"
        [[ -f "$outdir/$stamp-$name.svg" ]] && printf 'strata bench %s charts: `%s`.\n' \
            "$name" "target/bench-compare/$stamp-$name.svg"
    done
    if ((failures > 0)); then
        printf '\n**%d run(s) failed or were skipped**; logs kept in `target/bench-compare/%s-logs`.\n' "$failures" "$stamp"
    fi
} >"$report"

printf '\n'
cat "$report"
printf '\n%s: report written to %s\n' "$LIB_PROG" "${report#"$STRATA_ROOT"/}"
if ((failures > 0)); then
    logs="$outdir/$stamp-logs"
    mkdir -p "$logs"
    cp "$workdir"/*.log "$workdir"/*.err "$workdir"/*.yaml "$workdir"/*.yml "$logs"/ 2>/dev/null || true
    die "$failures benchmark run(s) failed or were skipped; logs kept in ${logs#"$STRATA_ROOT"/}"
fi
