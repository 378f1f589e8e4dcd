#!/usr/bin/env bash
# scripts/bench-compare.sh - side-by-side throughput: direct Redis vs twemproxy vs strata.
#
# Starts, on free loopback ports and all in a temp dir:
#   - 3 redis-server nodes, shared by twemproxy and strata,
#   - strata (release build) in front of them,
#   - twemproxy (nutcracker; fnv1a_64 + ketama) in front of them,
#   - "direct": a 4th, separate redis-server (one node, as a single Redis server would be),
#   - optionally "baseline": another strata binary (STRATA_BASELINE, e.g. built from an earlier
#     commit) in front of the same nodes, to measure what a change costs, side by side.
# Then runs, for P in 1 and 16 and for BENCH_ROUNDS rounds, alternating the targets within each
# round (direct, twemproxy, strata, then again), in reverse order every other round: a target
# run right after another is measured differently (the nodes and the machine are in another
# state), so no target always runs before or after the same one:
#   redis-benchmark -h 127.0.0.1 -p PORT -t set,get -c 50 -r 100000 -n N -P P --csv -q
# and prints the median req/s of SET and GET per target with the ratios strata/twemproxy,
# strata/direct and twemproxy/direct (with a baseline also strata/baseline, and "paired": the
# median of the per-round strata/baseline ratios, which cancels the drift of a shared
# machine from round to round). Raw numbers and the table are also written to
# target/bench-compare/<timestamp>.txt. Everything started here is stopped on exit.
#
# Environment:
#   BENCH_TARGETS   targets to run, in this order     (default "direct twemproxy strata",
#                   plus "baseline" when STRATA_BASELINE is set)
#   BENCH_ROUNDS    rounds per pipeline depth          (default 3)
#   BENCH_N_P1      requests per run with -P 1         (default 200000)
#   BENCH_N_P16     requests per run with -P 16        (default 1000000)
#   BENCH_EXTRA     extra redis-benchmark arguments    (default none)
#   BENCH_TIMEOUT   seconds before one run is aborted  (default 600)
#   STRATA_WORKERS  `workers:` for strata              (default: not set, strata's default)
#   STRATA_EXTRA_CONFIG  YAML appended to strata's config (not the baseline's), e.g. layers
#   BASELINE_EXTRA_CONFIG  YAML appended to the baseline's config; with STRATA_BASELINE set to
#                   the same binary, this compares two configurations (e.g. replication 2 vs 1)
#   STRATA_BASELINE path of a strata binary to run as the "baseline" target

set -euo pipefail

LIB_PROG=bench-compare.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_settings_only "$@"

default_targets="direct twemproxy strata${STRATA_BASELINE:+ baseline}"
read -r -a targets <<<"${BENCH_TARGETS:-$default_targets}"
rounds="${BENCH_ROUNDS:-3}"
n_p1="${BENCH_N_P1:-200000}"
n_p16="${BENCH_N_P16:-1000000}"
run_timeout="${BENCH_TIMEOUT:-600}"
read -r -a extra <<<"${BENCH_EXTRA:-}"

[[ ${#targets[@]} -gt 0 ]] || die "BENCH_TARGETS is empty"
want_twemproxy=0
want_strata=0
want_baseline=0
for t in "${targets[@]}"; do
    case "$t" in
        direct) ;;
        twemproxy) want_twemproxy=1 ;;
        strata) want_strata=1 ;;
        baseline) want_baseline=1 ;;
        *) die "unknown target '$t' in BENCH_TARGETS (known: direct twemproxy strata baseline)" ;;
    esac
done
if ((want_baseline)); then
    [[ -n "${STRATA_BASELINE:-}" && -x "${STRATA_BASELINE:-}" ]] ||
        die "target baseline needs STRATA_BASELINE=<path of an executable strata binary>"
fi
require_positive rounds n_p1 n_p16 run_timeout
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
if ((want_strata)); then
    strata_bin="$(build_strata)"
fi

workdir="$(mktemp -d -t strata-bench.XXXXXX)"
register_tmpdir "$workdir"

mapfile -t ports < <(free_ports 8)
[[ ${#ports[@]} -eq 8 ]] || die "could not find 8 free ports"
node_ports=("${ports[0]}" "${ports[1]}" "${ports[2]}")
declare -A port_of=([direct]="${ports[3]}" [strata]="${ports[4]}" [twemproxy]="${ports[5]}"
    [baseline]="${ports[7]}")
twem_stats_port="${ports[6]}"

# --- redis nodes -----------------------------------------------------------------------------
need_nodes=$((want_twemproxy || want_strata || want_baseline))
redis_ports=("${port_of[direct]}")
((need_nodes)) && redis_ports+=("${node_ports[@]}")
declare -A pid_of=()
start_nodes "$workdir" "${redis_ports[@]}"
pid_of[direct]="${NODE_PIDS[0]}"
log "direct redis on ${port_of[direct]}$( ((need_nodes)) && printf '; proxy nodes on %s' "${node_ports[*]}")"

show_log() {
    printf '%s: --- last lines of %s ---\n' "$LIB_PROG" "$1" >&2
    tail -n 30 "$1" >&2 || true
}

# --- strata (and the baseline strata) -------------------------------------------------------
# start_strata TARGET BIN EXTRA_YAML - writes a config for TARGET and starts BIN with it.
start_strata() {
    local t="$1" bin="$2" extra_yaml="$3" cfg="$workdir/$1.yaml"
    {
        printf '# generated by scripts/bench-compare.sh\n'
        printf 'listen: 127.0.0.1:%s\n' "${port_of[$t]}"
        [[ -n "${STRATA_WORKERS:-}" ]] && printf 'workers: %s\n' "$STRATA_WORKERS"
        printf 'nodes:\n'
        for i in 0 1 2; do
            printf '  - { id: node%d, addr: 127.0.0.1:%s, weight: 1 }\n' $((i + 1)) "${node_ports[i]}"
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
    register_pid "${pid_of[$t]}"
    if ! wait_port "${port_of[$t]}" 30; then
        show_log "$workdir/$t.log"
        die "$t did not answer PING on 127.0.0.1:${port_of[$t]}"
    fi
    log "$t on ${port_of[$t]}${STRATA_WORKERS:+ (workers: $STRATA_WORKERS)}"
}
if ((want_strata)); then
    start_strata strata "$strata_bin" "${STRATA_EXTRA_CONFIG:-}"
fi
if ((want_baseline)); then
    start_strata baseline "$STRATA_BASELINE" "${BASELINE_EXTRA_CONFIG:-}"
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
        for i in 0 1 2; do
            printf '    - 127.0.0.1:%s:1 node%d\n' "${node_ports[i]}" $((i + 1))
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

# --- runs ------------------------------------------------------------------------------------
stamp="$(date +%Y%m%d-%H%M%S)"
outdir="$STRATA_ROOT/target/bench-compare"
mkdir -p "$outdir"
report="$outdir/$stamp.txt"
raw="$workdir/raw.tsv"
printf 'pipeline\tround\ttarget\ttest\trps\n' >"$raw"
commands="$workdir/commands.txt"
: >"$commands"
failures=0

printf '\n%s: targets: %s; rounds: %s; -n %s with -P 1, -n %s with -P 16%s\n' "$LIB_PROG" \
    "${targets[*]}" "$rounds" "$n_p1" "$n_p16" "${BENCH_EXTRA:+; extra: $BENCH_EXTRA}"

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

# extract_rps CSV TEST - prints the rps column of the line for TEST ("SET"/"GET"), or nothing.
extract_rps() {
    awk -F, -v want="\"$2\"" '$1 == want { gsub(/"/, "", $2); print $2; exit }' "$1"
}

declare -A log_of=([direct]="$workdir/node-${port_of[direct]}.log" [strata]="$workdir/strata.log"
    [twemproxy]="$workdir/nutcracker.log" [baseline]="$workdir/baseline.log")
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

# run_bench TARGET OUT ERR CMD... - runs CMD (under BENCH_TIMEOUT) and stops it early if the
# target's process dies meanwhile (redis-benchmark would otherwise spin forever).
run_bench() {
    local t="$1" outf="$2" err="$3" bpid rc=0
    shift 3
    timeout "$run_timeout" "$@" >"$outf" 2>"$err" &
    bpid=$!
    register_pid "$bpid"
    while kill -0 "$bpid" 2>/dev/null; do
        if ! kill -0 "${pid_of[$t]}" 2>/dev/null; then
            kill -TERM "$bpid" 2>/dev/null || true
            printf '%s: %s exited during the run\n' "$LIB_PROG" "$t" >>"$err"
            break
        fi
        sleep 0.2
    done
    wait "$bpid" || rc=$?
    unregister_pid "$bpid"
    return "$rc"
}

for pipeline in 1 16; do
    if [[ $pipeline -eq 1 ]]; then n="$n_p1"; else n="$n_p16"; fi
    for ((round = 1; round <= rounds; round++)); do
        order=("${targets[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[$i]}"); done
        fi
        for t in "${order[@]}"; do
            cmd=(redis-benchmark -h 127.0.0.1 -p "${port_of[$t]}" -t 'set,get' -c 50 -r 100000
                -n "$n" -P "$pipeline" --csv -q "${extra[@]}")
            cmd_str="$(shell_quote "${cmd[@]}")"
            printf '%-9s  %s\n' "$t" "$cmd_str" >>"$commands"
            printf '\n[P=%s round %s/%s] %-9s $ %s\n' "$pipeline" "$round" "$rounds" "$t" "$cmd_str"
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
            run_bench "$t" "$csv" "$errf" "${cmd[@]}" || rc=$?
            set_rps="$(extract_rps "$csv" SET)"
            get_rps="$(extract_rps "$csv" GET)"
            if [[ $rc -ne 0 || -z "$set_rps" || -z "$get_rps" ]]; then
                failures=$((failures + 1))
                ((rc == 124)) && warn "$t: redis-benchmark timed out after ${run_timeout}s (BENCH_TIMEOUT)"
                warn "$t: redis-benchmark failed (exit $rc) or printed no SET/GET result"
                show_log "$errf"
                check_alive "$t" || true
            fi
            printf '    SET %12s req/s    GET %12s req/s\n' "${set_rps:-n/a}" "${get_rps:-n/a}"
            [[ -n "$set_rps" ]] && printf '%s\t%s\t%s\tSET\t%s\n' "$pipeline" "$round" "$t" "$set_rps" >>"$raw"
            [[ -n "$get_rps" ]] && printf '%s\t%s\t%s\tGET\t%s\n' "$pipeline" "$round" "$t" "$get_rps" >>"$raw"
        done
    done
done

# --- table -----------------------------------------------------------------------------------
table="$workdir/table.txt"
python3 - "$raw" >"$table" <<'PY'
import csv
import statistics
import sys

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
data = {}
by_round = {}
for r in rows:
    data.setdefault((int(r["pipeline"]), r["test"], r["target"]), []).append(float(r["rps"]))
    by_round[(int(r["pipeline"]), r["test"], r["target"], r["round"])] = float(r["rps"])

def paired(p, test, a, b):
    """Median over rounds of a's rate over b's in the same round: the machine's speed drifts
    from round to round (other load), and a ratio taken within a round cancels that."""
    rounds = {k[3] for k in by_round if k[:3] == (p, test, a)}
    ratios = [by_round[(p, test, a, r)] / by_round[(p, test, b, r)] for r in rounds
              if by_round.get((p, test, b, r))]
    return "-" if not ratios else f"{statistics.median(ratios):.2f}"

def med(p, test, target):
    v = data.get((p, test, target))
    return statistics.median(v) if v else None

def num(x):
    return "-" if x is None else f"{x:.2f}"

def ratio(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"

baseline = any(k[2] == "baseline" for k in data)
head = ["P", "test", "direct", "twemproxy", "strata"] + (["baseline"] if baseline else []) + [
        "strata/twemproxy", "strata/direct", "twemproxy/direct"] + (
        ["strata/baseline", "paired"] if baseline else [])
lines = []
for p in sorted({k[0] for k in data} or {1, 16}):
    for test in ("SET", "GET"):
        d, tw, st, b = (med(p, test, t) for t in ("direct", "twemproxy", "strata", "baseline"))
        lines.append([str(p), test, num(d), num(tw), num(st)] + ([num(b)] if baseline else []) +
                     [ratio(st, tw), ratio(st, d), ratio(tw, d)] +
                     ([ratio(st, b), paired(p, test, "strata", "baseline")] if baseline else []))
widths = [max(len(x) for x in col) for col in zip(head, *lines)]
fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))
print("median req/s over rounds (redis-benchmark -c 50 -r 100000); ratios of the medians" +
      ("; paired: median of the per-round strata/baseline ratios" if baseline else ""))
print(fmt(head))
print(fmt(["-" * w for w in widths]))
for l in lines:
    print(fmt(l))
PY

{
    printf 'strata bench-compare %s\n' "$stamp"
    printf 'host: %s, %s CPUs; %s\n' "$(uname -srm)" "$(nproc 2>/dev/null || echo '?')" \
        "$(redis-server --version | cut -d' ' -f1-3)"
    ((want_twemproxy)) && printf 'twemproxy: %s\n' "$("$NUTCRACKER" -V 2>&1 | head -n1)"
    if ((want_strata)); then
        printf 'strata: %s (git %s)%s\n' "${strata_bin#"$STRATA_ROOT"/}" \
            "$(git -C "$STRATA_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
            "${STRATA_WORKERS:+, workers: $STRATA_WORKERS}"
    fi
    printf 'targets: %s; rounds: %s; N(P=1)=%s; N(P=16)=%s; BENCH_EXTRA=%s\n' \
        "${targets[*]}" "$rounds" "$n_p1" "$n_p16" "${BENCH_EXTRA:-}"
    printf '\ncommands (ports are per run of this script):\n'
    awk '!seen[$0]++ { print "  " $0 }' "$commands"
    if ((want_baseline)); then
        printf 'baseline: %s\n' "$STRATA_BASELINE"
    fi
    for t in strata baseline; do
        if [[ -f "$workdir/$t.yaml" ]]; then
            printf '\n%s config:\n' "$t"
            sed 's/^/  /' "$workdir/$t.yaml"
        fi
    done
    if ((want_twemproxy)); then
        printf '\ntwemproxy config:\n'
        sed 's/^/  /' "$twem_cfg"
    fi
    printf '\nraw req/s per round:\n'
    column -t -s $'\t' "$raw" 2>/dev/null | sed 's/^/  /' || sed 's/^/  /' "$raw"
    printf '\n'
    cat "$table"
} >"$report"

printf '\n'
cat "$table"
printf '\n%s: raw numbers and table written to %s\n' "$LIB_PROG" "${report#"$STRATA_ROOT"/}"
if ((failures > 0)); then
    logs="$outdir/$stamp-logs"
    mkdir -p "$logs"
    cp "$workdir"/*.log "$workdir"/*.err "$workdir"/*.yaml "$workdir"/*.yml "$logs"/ 2>/dev/null || true
    die "$failures benchmark run(s) failed or were skipped; logs kept in ${logs#"$STRATA_ROOT"/}"
fi
