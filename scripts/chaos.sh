#!/usr/bin/env bash
# scripts/chaos.sh - faults under load: does strata lose an acknowledged write, and what do
# clients see?
#
# Starts, on free loopback ports and all in a temp dir, 4 redis-server nodes (AOF on, fsync every
# second, each in a directory of its own) and strata (release build) in front of them, every key
# at replication 3 with quorum writes and quorum reads (health: heartbeat 250ms, node_timeout
# 1s). Throughout the run a checking writer (scripts/chaos/chaos.py writer) SETs unique keys
# chaos:<n> (and rewrites an earlier key CHAOS_REWRITE_PCT% of the time) at CHAOS_WRITE_RATE a
# second, logging each acknowledged write (key, value, time) and each failure. Then, in turn,
# each scenario of CHAOS_SCENARIOS, under rounds of redis-benchmark -t set,get (bounded -n):
#   kill        SIGKILL node2, restart it CHAOS_DOWN s later on the same port and data dir (its
#               AOF brings back what it had; what it missed comes from hints)
#   stop        SIGSTOP node3 for CHAOS_DOWN s, then SIGCONT
#   empty       SIGKILL node1, delete its data dir, start it again at once: back empty
#               (the default list then does the same to node2 with `empty:2`, before or while
#               node1 is refilled: keys whose third copy is on neither must survive)
#   reload      SIGHUP with a changed config (health, timeouts), STRATA RELOAD of a broken file
#               (must be refused), STRATA RELOAD of the good one, then of the first settings
#   membership  STRATA NODE REMOVE node4 + STRATA REBALANCE, then NODE ADD node4 + REBALANCE
#   idle        CHAOS_IDLE_CLIENTS clients connected at once, one PING each, held CHAOS_IDLE_HOLD s
# `kill:N`, `stop:N`, `empty:N`, `membership:N` hit node N (1-4) instead; e.g.
# CHAOS_SCENARIOS="empty:1 empty:2" restarts two nodes empty, one after the other.
# Each scenario has CHAOS_STEADY s of load before and after its fault, then every key the writer
# had acknowledged is read back: its copies on each node directly, then through strata (quorum
# reads, which also repair). The table at the end has, per scenario: writes acknowledged and
# failed, benchmark rounds with an error, acknowledged keys lost, keys with fewer than 3 copies
# (before the read-back), strata's RSS before/during/after the fault, when the node was seen
# down and when it was back (from the fault), and when the writer's writes succeeded again.
# Exit status 1 when an acknowledged write is lost (or could not be read back). Not part of
# scripts/test.sh or CI (about 4 minutes on 2 cores, plus the build). docs/testing.md has a run.
#
# Environment:
#   CHAOS_SCENARIOS      scenarios, in order        (default "kill stop empty empty:2 reload membership idle")
#   CHAOS_STEADY         load before/after a fault, s                  (default 10)
#   CHAOS_DOWN           a node killed or stopped for, s               (default 8)
#   CHAOS_RECOVER        longest wait for a node / a rebalance, s      (default 60)
#   CHAOS_WRITE_RATE     checking writer's writes per second           (default 200)
#   CHAOS_REWRITE_PCT    share of its writes that rewrite a key, %     (default 10)
#   CHAOS_BENCH_CLIENTS  redis-benchmark -c                            (default 8)
#   CHAOS_BENCH_N        redis-benchmark -n per round                  (default 20000)
#   CHAOS_BENCH_KEYS     redis-benchmark -r                            (default 10000)
#   CHAOS_IDLE_CLIENTS   idle clients of the idle scenario             (default 10000)
#   CHAOS_IDLE_HOLD      how long they are held, s                     (default 10)
#   CHAOS_KEEP           a directory to copy the run's logs into       (default: none)
#   STRATA_WORKERS       `workers:` of strata                          (default 2)

set -euo pipefail

LIB_PROG=chaos.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_settings_only "$@"

scenarios="${CHAOS_SCENARIOS:-kill stop empty empty:2 reload membership idle}"
steady="${CHAOS_STEADY:-10}"
down="${CHAOS_DOWN:-8}"
recover="${CHAOS_RECOVER:-60}"
write_rate="${CHAOS_WRITE_RATE:-200}"
rewrite_pct="${CHAOS_REWRITE_PCT:-10}"
bench_clients="${CHAOS_BENCH_CLIENTS:-8}"
bench_n="${CHAOS_BENCH_N:-20000}"
bench_keys="${CHAOS_BENCH_KEYS:-10000}"
idle_clients="${CHAOS_IDLE_CLIENTS:-10000}"
idle_hold="${CHAOS_IDLE_HOLD:-10}"
keep="${CHAOS_KEEP:-}"
strata_workers="${STRATA_WORKERS:-2}"
require_positive steady down recover write_rate bench_clients bench_n bench_keys idle_clients \
    idle_hold strata_workers
[[ "$rewrite_pct" =~ ^[0-9]+$ ]] && ((rewrite_pct <= 100)) ||
    die "CHAOS_REWRITE_PCT must be 0 to 100, got '$rewrite_pct'"
# victim SCENARIO - the node a scenario hits: its `:N` suffix, else its default.
victim() {
    case "$1" in
        *:[1-4]) printf '%s\n' "${1##*:}" ;;
        kill) echo 2 ;;
        stop) echo 3 ;;
        empty) echo 1 ;;
        membership) echo 4 ;;
        *) echo 0 ;;
    esac
}
declare -A seen_label=()
for s in $scenarios; do
    case "$s" in
        kill | stop | empty | membership | kill:[1-4] | stop:[1-4] | empty:[1-4] | membership:[1-4]) ;;
        reload | idle) ;;
        *) die "unknown scenario '$s' (kill stop empty reload membership idle; the first four take :1 to :4)" ;;
    esac
    [[ -z "${seen_label[$s]:-}" ]] || die "scenario '$s' is listed twice (give it another node: $s:N)"
    seen_label[$s]=1
done

# strata and the idle clients hold one descriptor per client, plus some.
need_fds=$((idle_clients + 2048))
if (($(ulimit -n) < need_fds)); then
    ulimit -n "$need_fds" 2>/dev/null ||
        die "ulimit -n is $(ulimit -n) and cannot be raised to $need_fds (hard limit $(ulimit -Hn)); lower CHAOS_IDLE_CLIENTS"
fi

install_cleanup_trap
ensure_redis
ensure_python3
strata_bin="$(build_strata)"
helper="$STRATA_ROOT/scripts/chaos/chaos.py"

workdir="$(mktemp -d -t strata-chaos.XXXXXX)"
register_tmpdir "$workdir"
mapfile -t ports < <(free_ports 6)
[[ ${#ports[@]} -eq 6 ]] || die "could not find 6 free ports"
node_ports=("${ports[0]}" "${ports[1]}" "${ports[2]}" "${ports[3]}")
strata_port="${ports[4]}"
admin_port="${ports[5]}"
events="$workdir/events.log"
: >"$events"

# event SCENARIO KIND [DETAIL] - one timed line for the report (DETAIL without spaces).
event() { printf 'V %s %s %s %s\n' "$(date +%s.%N)" "$1" "$2" "${3:-}" >>"$events"; }

cli() { timeout 30 redis-cli -h 127.0.0.1 -p "$strata_port" "$@"; }

# --- nodes: redis-server N (1-4) on node_ports[N-1], data in $workdir/nodeN ---------------------
declare -A node_pid=()
start_node() {
    local n="$1" port="${node_ports[$1 - 1]}" dir="$workdir/node$1"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes \
        --appendfsync everysec --daemonize no --dir "$dir" --logfile "$dir/redis.log" \
        </dev/null >>"$dir/redis.out" 2>&1 &
    node_pid[$n]=$!
    register_pid "${node_pid[$n]}"
    # Killed on purpose below: no job report from bash (cleanup still stops it).
    disown "${node_pid[$n]}"
    wait_port "$port" 10 || die "redis-server node$n on port $port did not start"
}
# kill_node N - SIGKILL node N and wait until it is gone.
kill_node() {
    local pid="${node_pid[$1]}" i
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && die "node$1 (pid $pid) survived SIGKILL"
    unregister_pid "$pid"
}

# node_state ID - the node's state in STRATA NODES (empty when it is not listed).
node_state() {
    cli STRATA NODES 2>/dev/null | tr -d '\r' |
        awk -v id="$1" 'prev == "id" { cur = $0 } prev == "state" && cur == id { print } { prev = $0 }'
}
# wait_state ID STATE - polls STRATA NODES until ID is in STATE; false after CHAOS_RECOVER s.
wait_state() {
    local deadline=$((SECONDS + recover))
    while [[ "$(node_state "$1")" != "$2" ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
info_field() { cli INFO "$1" | tr -d '\r' | sed -n "s/^$2://p"; }

# --- strata -----------------------------------------------------------------------------------
for n in 1 2 3 4; do
    start_node "$n"
done
cfg="$workdir/strata.yaml"
# write_config HEARTBEAT REQUEST_TIMEOUT - the run's config (the reload scenario changes both).
write_config() {
    {
        printf '# generated by scripts/chaos.sh\nlisten: 127.0.0.1:%s\n' "$strata_port"
        printf 'admin_listen: 127.0.0.1:%s\nworkers: %s\n' "$admin_port" "$strata_workers"
        strata_nodes_yaml "${node_ports[@]}"
        cat <<EOF
defaults: { replication: 3, write_consistency: quorum, read_consistency: quorum }
layers:
  - { name: chaos, prefix: "chaos:", replication: 3, write_consistency: quorum, read_consistency: quorum }
health: { heartbeat_interval: $1, node_timeout: 1s, failure_threshold: 3, recovery_threshold: 2 }
timeouts: { connect: 500ms, request: $2 }
stats: { layer_keys_interval: 0s }
limits: { max_clients: $((idle_clients + 1000)) }
rebalance: { max_keys_per_sec: 20000 }
EOF
    } >"$cfg"
}
write_config 250ms 2s
start_strata "$strata_bin" "$cfg" "$strata_port" "$workdir"
strata_pid="$STRATA_PID"
log "nodes on ${node_ports[*]}, strata on $strata_port (pid $strata_pid), work dir $workdir"

# --- the monitor (node states, RSS) and the checking writer run for the whole run --------------
python3 "$helper" monitor --port "$strata_port" --pid "$strata_pid" --log "$workdir/monitor.log" \
    --stop "$workdir/monitor.stop" >"$workdir/monitor.out" 2>&1 &
monitor_pid=$!
register_pid "$monitor_pid"
python3 "$helper" writer --port "$strata_port" --log "$workdir/writer.log" --rate "$write_rate" \
    --rewrite-pct "$rewrite_pct" --stop "$workdir/writer.stop" >"$workdir/writer.out" 2>&1 &
writer_pid=$!
register_pid "$writer_pid"

# stop_helper PID STOPFILE - asks a helper to stop and waits for it (10 s at most).
stop_helper() {
    local i
    touch "$2"
    for i in $(seq 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$1" 2>/dev/null && kill -TERM "$1" 2>/dev/null
    wait "$1" 2>/dev/null || true
    unregister_pid "$1"
}

# --- redis-benchmark rounds in the background, one log per scenario ---------------------------
bench_pid=""
bench_start() {
    local log="$workdir/bench-$1.log"
    rm -f "$workdir/bench.stop"
    (
        child=""
        trap '[[ -n "$child" ]] && kill "$child" 2>/dev/null; exit 0' TERM
        i=0
        while [[ ! -e "$workdir/bench.stop" ]]; do
            i=$((i + 1))
            timeout 120 redis-benchmark -h 127.0.0.1 -p "$strata_port" -t set,get -d 64 \
                -c "$bench_clients" -n "$bench_n" -r "$bench_keys" --csv \
                >"$workdir/bench.out" 2>&1 &
            child=$!
            rc=0
            wait "$child" || rc=$?
            child=""
            { cat "$workdir/bench.out"; echo "round $i rc=$rc"; } >>"$log"
        done
    ) &
    bench_pid=$!
    register_pid "$bench_pid"
}
bench_stop() {
    stop_helper "$bench_pid" "$workdir/bench.stop"
    bench_pid=""
}

verify() {
    timeout 600 python3 "$helper" verify --port "$strata_port" --nodes "${node_ports[@]}" \
        --log "$workdir/writer.log" --out "$workdir/verify-$1.json" ||
        warn "verification of $1 failed to run"
}

scenario_begin() {
    log "scenario $1"
    event "$1" start
    bench_start "$1"
    sleep "$steady"
}
# figures SCENARIO - hint and read-repair counters so far, for the report's notes.
figures() {
    local repair layer
    repair="$(cli INFO repair | tr -d '\r' | grep -E '^hints_(stored|replayed|dropped):' | tr '\n' ',')"
    layer="$(cli INFO layers | tr -d '\r' | grep '^layer_chaos:' | grep -oE '(repairs|write_failures)=[0-9]+' | tr '=\n' ':,')"
    event "$1" figures "$repair$layer"
}
scenario_end() {
    sleep "$steady"
    bench_stop
    verify "$1"
    figures "$1"
    event "$1" end
}

# --- the scenarios ----------------------------------------------------------------------------
# Each is called with its label (the name as given, e.g. `kill` or `kill:3`) and the node it hits.
scenario_kill() {
    local label="$1" n="$2"
    scenario_begin "$label"
    event "$label" fault "node$n"
    kill_node "$n"
    sleep "$down"
    start_node "$n"
    event "$label" healed
    if wait_state "node$n" up; then event "$label" recovered; else warn "node$n not up again within ${recover}s"; fi
    scenario_end "$label"
}

scenario_stop() {
    local label="$1" n="$2"
    scenario_begin "$label"
    event "$label" fault "node$n"
    kill -STOP "${node_pid[$n]}"
    sleep "$down"
    kill -CONT "${node_pid[$n]}"
    event "$label" healed
    if wait_state "node$n" up; then event "$label" recovered; else warn "node$n not up again within ${recover}s"; fi
    scenario_end "$label"
}

scenario_empty() {
    local label="$1" n="$2" keys
    scenario_begin "$label"
    event "$label" fault "node$n"
    kill_node "$n"
    rm -rf "$workdir/node$n"
    start_node "$n"
    event "$label" healed
    keys="$(timeout 5 redis-cli -p "${node_ports[$n - 1]}" DBSIZE)"
    if wait_state "node$n" up; then event "$label" recovered; else warn "node$n not up again within ${recover}s"; fi
    event "$label" note "node${n}_restarted_with_${keys}_keys"
    scenario_end "$label"
}

scenario_reload() {
    local label="$1" before after out deadline
    scenario_begin "$label"
    event "$label" fault strata
    before="$(grep -c "configuration reloaded" "$workdir/strata.log" || true)"
    write_config 300ms 3s
    kill -HUP "$strata_pid"
    deadline=$((SECONDS + 10))
    while :; do
        after="$(grep -c "configuration reloaded" "$workdir/strata.log" || true)"
        ((after > before)) && break
        ((SECONDS < deadline)) || die "SIGHUP: no 'configuration reloaded' in strata's log within 10s"
        sleep 0.05
    done
    cp "$cfg" "$workdir/strata.yaml.good"
    printf 'not_a_key: 1\n' >>"$cfg"
    out="$(cli STRATA RELOAD 2>&1 | tr '\n' ' ')"
    [[ "$out" == *"reload refused"* ]] || die "STRATA RELOAD of a broken file was not refused: $out"
    cp "$workdir/strata.yaml.good" "$cfg"
    out="$(cli STRATA RELOAD 2>&1 | tr '\n' ' ')"
    [[ "$out" == reloaded\ 1* ]] || die "STRATA RELOAD failed: $out"
    # Back to the first settings, so a later scenario runs as the first ones did.
    write_config 250ms 2s
    out="$(cli STRATA RELOAD 2>&1 | tr '\n' ' ')"
    [[ "$out" == reloaded\ 1* ]] || die "STRATA RELOAD failed: $out"
    event "$label" healed
    event "$label" recovered
    event "$label" note "SIGHUP_applied_(heartbeat_300ms,_request_3s),_a_broken_file_refused,_STRATA_RELOAD_reloaded_(twice)"
    scenario_end "$label"
}

# rebalance_run - STRATA REBALANCE, then waits until it has finished; prints keys moved.
rebalance_run() {
    local runs out deadline
    runs="$(info_field rebalance rebalance_runs)"
    out="$(cli STRATA REBALANCE | tr '\n' ' ')"
    [[ "$out" == started* ]] || die "STRATA REBALANCE: $out"
    deadline=$((SECONDS + recover))
    while [[ "$(info_field rebalance rebalance_runs)" == "$runs" ||
        "$(info_field rebalance rebalance_running)" != 0 ]]; do
        ((SECONDS < deadline)) || die "the rebalance did not finish within ${recover}s"
        sleep 0.2
    done
    info_field rebalance rebalance_keys_moved
}

scenario_membership() {
    local label="$1" n="$2" out moved1 moved2
    scenario_begin "$label"
    event "$label" fault "node$n"
    out="$(cli STRATA NODE REMOVE "node$n" | tr '\n' ' ')"
    [[ "$out" == action\ remove* ]] || die "STRATA NODE REMOVE node$n: $out"
    moved1="$(rebalance_run)"
    out="$(cli STRATA NODE ADD "node$n" "127.0.0.1:${node_ports[$n - 1]}" | tr '\n' ' ')"
    [[ "$out" == action\ add* ]] || die "STRATA NODE ADD node$n: $out"
    event "$label" healed
    moved2="$(rebalance_run)"
    if wait_state "node$n" up; then event "$label" recovered; else warn "node$n not up within ${recover}s"; fi
    event "$label" note "rebalances_moved_${moved1}_then_${moved2}_keys_(counted_since_start)"
    scenario_end "$label"
}

scenario_idle() {
    local label="$1" fifo="$workdir/idle.hold" out="$workdir/idle.out" idle_pid connected i
    scenario_begin "$label"
    rm -f "$fifo" "$out"
    mkfifo "$fifo"
    event "$label" fault strata
    python3 "$helper" idle --port "$strata_port" --clients "$idle_clients" <"$fifo" >"$out" 2>&1 &
    idle_pid=$!
    register_pid "$idle_pid"
    exec 7>"$fifo"
    for i in $(seq 1800); do
        grep -q . "$out" 2>/dev/null && break
        kill -0 "$idle_pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^ready' "$out" || {
        cat "$out" >&2
        die "the idle clients did not all get their PONG"
    }
    event "$label" recovered
    connected="$(info_field clients connected_clients)"
    sleep "$idle_hold"
    exec 7>&-
    wait "$idle_pid" 2>/dev/null || true
    unregister_pid "$idle_pid"
    event "$label" healed
    event "$label" note "${idle_clients}_clients_got_PONG_in_$(awk '{ print $2 }' "$out")s;_INFO_connected_clients_${connected}"
    scenario_end "$label"
}

event setup start
sleep 2
figures setup
for s in $scenarios; do
    "scenario_${s%%:*}" "$s" "$(victim "$s")"
done

log "stopping the writer; final read-back"
stop_helper "$writer_pid" "$workdir/writer.stop"
sleep 2
verify final
stop_helper "$monitor_pid" "$workdir/monitor.stop"

rc=0
python3 "$helper" report --dir "$workdir" --events "$events" --writer-log "$workdir/writer.log" \
    --monitor-log "$workdir/monitor.log" | tee "$workdir/report.txt" || rc=$?
if grep -q " ERROR \| panicked" "$workdir/strata.log"; then
    warn "strata logged errors:"
    grep " ERROR \| panicked" "$workdir/strata.log" | head -n 5 >&2
fi
if [[ -n "$keep" ]]; then
    mkdir -p "$keep"
    cp -r "$workdir"/*.log "$workdir"/*.json "$workdir"/*.yaml "$workdir/report.txt" "$keep"/ 2>/dev/null || true
    log "logs copied to $keep"
fi
exit "$rc"
