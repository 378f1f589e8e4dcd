#!/usr/bin/env bash
# scripts/run.sh - build strata and run it locally in front of throw-away Redis nodes.
#
# Usage: scripts/run.sh [CONFIG] [EXTRA STRATA SERVE ARGS...]
#        CONFIG defaults to $STRATA_CONFIG, then to config.yaml at the repository root.
#
# Steps: installs redis-server/redis-tools if missing, `cargo build --release`, starts one
# redis-server (no persistence, data and logs in a temp dir) for every 127.x/localhost node of the
# config - reusing a port where a Redis already answers PING - then runs
# `strata serve --config CONFIG` in the foreground. Ctrl-C (or strata exiting) stops strata and
# every node this script started; nodes it did not start are left alone.

set -euo pipefail

LIB_PROG=run.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
esac

config="${STRATA_CONFIG:-$STRATA_ROOT/config.yaml}"
if [[ $# -gt 0 ]]; then
    config="$1"
    shift
fi
[[ -f "$config" ]] || die "config file not found: $config"
# Absolute path: the build below runs from the repository root.
config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"

install_cleanup_trap

ensure_redis

bin="$(build_strata)"

mapfile -t ports < <(config_node_ports "$config")
if [[ ${#ports[@]} -eq 0 ]]; then
    warn "no 127.x/localhost nodes in $config; starting no Redis nodes"
fi

workdir="$(mktemp -d -t strata-run.XXXXXX)"
register_tmpdir "$workdir"

started=()
for port in "${ports[@]}"; do
    if redis_ping "$port"; then
        log "port $port: a Redis already answers PING there; using it (not started, not stopped)"
        continue
    fi
    start_redis "$port" "$workdir"
    started+=("$port")
done
for port in "${started[@]}"; do
    wait_port "$port" 10 || die "redis-server on port $port did not start"
done
if [[ ${#started[@]} -gt 0 ]]; then
    log "started redis-server on port(s) ${started[*]} (logs in $workdir, removed on exit)"
fi

listen="$(config_listen "$config")"
listen_host="${listen%:*}"
listen_port="${listen##*:}"
case "$listen_host" in
    0.0.0.0 | '[::]' | '' | 127.0.0.1 | localhost)
        ping_host=127.0.0.1
        connect=(redis-cli -p "$listen_port")
        ;;
    *)
        ping_host="$listen_host"
        connect=(redis-cli -h "$listen_host" -p "$listen_port")
        ;;
esac

log "starting: $bin serve --config $config $*"
# Started in the background and waited for, so that Ctrl-C / SIGTERM reach our traps at once;
# cleanup stops strata first, then the nodes.
"$bin" serve --config "$config" "$@" &
strata_pid=$!
register_pid "$strata_pid"

# Announce the address once strata answers PING (or give up waiting after 30 s).
deadline=$((SECONDS + 30))
while kill -0 "$strata_pid" 2>/dev/null; do
    if redis_ping "$listen_port" "$ping_host"; then
        log "strata is up on $listen - connect with: ${connect[*]}   (Ctrl-C stops everything)"
        break
    fi
    if ((SECONDS >= deadline)); then
        warn "strata does not answer PING on $listen yet; connect with: ${connect[*]}"
        break
    fi
    sleep 0.2
done

rc=0
wait "$strata_pid" || rc=$?
log "strata exited with status $rc; stopping the nodes started by this script"
exit "$rc"
