#!/usr/bin/env bash
# scripts/lib.sh - shared helpers for the strata scripts (run.sh, test.sh, bench-compare.sh).
#
# Source it, don't run it:   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Provides:
#   STRATA_ROOT                 repository root (found from this file's location)
#   log / warn / die MSG        prefixed messages on stderr (die exits 1)
#   apt_install PKG...          quiet apt-get update + install (log shown on failure)
#   ensure_redis                installs redis-server + redis-tools if missing
#   ensure_nutcracker           installs nutcracker (twemproxy) if missing; sets NUTCRACKER
#   ensure_python3              installs python3 if missing
#   config_node_ports FILE      prints the ports of the loopback nodes listed under `nodes:`
#   config_listen FILE          prints the `listen:` address of a config (default 127.0.0.1:6380)
#   start_redis PORT DIR [TLS_PORT PKI]  starts a throw-away redis-server in the background (pid
#                               recorded); with TLS_PORT also a TLS port, certificate from PKI
#   start_nodes DIR PORT...     start_redis on each port, then waits for all (pids in NODE_PIDS)
#   make_tls_pki DIR            a throw-away CA and a server certificate for localhost/127.0.0.1
#   require_positive NAME...    dies unless each named variable holds a positive integer
#   redis_ping PORT [HOST]      succeeds if a Redis-protocol server on HOST:PORT answers PONG
#   wait_port PORT [TIMEOUT]    waits until 127.0.0.1:PORT answers PING (default 10 s)
#   free_port / free_ports N    prints free loopback TCP port(s)
#   register_pid PID            records a pid to be killed by cleanup (unregister_pid forgets it)
#   register_tmpdir DIR         records a directory to be removed by cleanup
#   cleanup                     kills recorded pids (newest first), removes recorded dirs
#   install_cleanup_trap        runs cleanup on EXIT, INT and TERM
#
# Every started process is recorded and only those are ever killed; nothing here touches the
# system Redis service or other people's processes.

set -euo pipefail

if [[ -n "${_STRATA_LIB_LOADED:-}" ]]; then
    return 0
fi
_STRATA_LIB_LOADED=1

STRATA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export STRATA_ROOT

# Name used in messages; scripts may override before or after sourcing.
: "${LIB_PROG:=$(basename "${0:-strata}")}"

_LIB_PIDS=()
_LIB_TMPDIRS=()
declare -gA _LIB_REDIS_LOG=()
_LIB_CLEANED=0

log() { printf '%s: %s\n' "$LIB_PROG" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$LIB_PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$LIB_PROG" "$*" >&2
    exit 1
}

# env_settings_only "$@" - for scripts configured by environment variables only: prints the
# calling script's header comment (line 2 to the first line that is not a comment) on
# -h/--help, refuses any other argument.
env_settings_only() {
    case "${1:-}" in
        -h | --help)
            awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[1]}"
            exit 0
            ;;
    esac
    [[ $# -eq 0 ]] || die "no arguments expected (settings come from the environment; see --help)"
}

# apt_install PKG... - installs Debian packages quietly; shows the log if it fails.
apt_install() {
    local sudo=() logf rc=0
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: $*"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these yourself: $*"
    logf="$(mktemp -t strata-apt.XXXXXX.log)"
    log "installing $* (apt-get, log: $logf)"
    {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends "$@"
    } >"$logf" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        printf '%s: error: installing %s failed (exit %d); apt-get output:\n' "$LIB_PROG" "$*" "$rc" >&2
        cat "$logf" >&2
        return 1
    fi
    rm -f "$logf"
}

ensure_redis() {
    if command -v redis-server >/dev/null 2>&1 &&
        command -v redis-benchmark >/dev/null 2>&1 &&
        command -v redis-cli >/dev/null 2>&1; then
        return 0
    fi
    apt_install redis-server redis-tools
    # The package enables a system-wide redis on port 6379; we never use it, but we must not
    # depend on it either. Leave it alone (it may be someone else's).
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after install"
    command -v redis-benchmark >/dev/null 2>&1 || die "redis-benchmark still missing after install"
}

# ensure_nutcracker - installs twemproxy if needed and sets NUTCRACKER to its path.
ensure_nutcracker() {
    if ! { command -v nutcracker >/dev/null 2>&1 || [[ -x /usr/sbin/nutcracker ]]; }; then
        apt_install nutcracker
    fi
    if command -v nutcracker >/dev/null 2>&1; then
        NUTCRACKER="$(command -v nutcracker)"
    elif [[ -x /usr/sbin/nutcracker ]]; then
        NUTCRACKER=/usr/sbin/nutcracker
    else
        die "nutcracker still missing after install"
    fi
    export NUTCRACKER
}

ensure_python3() {
    command -v python3 >/dev/null 2>&1 && return 0
    apt_install python3
}

# _config_section FILE KEY - prints the lines of the top-level YAML section KEY (comments removed).
_config_section() {
    local file="$1" key="$2"
    [[ -r "$file" ]] || die "cannot read config file: $file"
    sed -e 's/^[[:space:]]*#.*$//' -e 's/[[:space:]]#.*$//' "$file" |
        sed -n "/^${key}:/,/^[^[:space:]#-]/p" |
        sed -e "/^[^[:space:]#-]/{/^${key}:/!d}"
}

# config_node_ports FILE - prints (one a line, in order, no duplicates) the ports of the nodes
# under `nodes:` whose addr is a loopback address. Other nodes are mentioned on stderr and skipped:
# they are not ours to start. Handles `- { id: n, addr: 127.0.0.1:7001 }` and block style.
config_node_ports() {
    local file="$1" addr host port
    local -A seen=()
    while IFS= read -r addr; do
        addr="${addr#addr:}"
        addr="${addr//[[:space:]\"\']/}"
        [[ -n "$addr" ]] || continue
        host="${addr%:*}"
        port="${addr##*:}"
        if ! [[ "$port" =~ ^[0-9]+$ ]] || [[ "$host" == "$addr" ]]; then
            warn "$file: cannot parse node addr '$addr'; skipped"
            continue
        fi
        case "$host" in
            127.* | localhost) ;;
            *)
                warn "$file: node $addr is not a 127.x.x.x/localhost address; not starting it locally"
                continue
                ;;
        esac
        if [[ -z "${seen[$port]:-}" ]]; then
            seen[$port]=1
            printf '%s\n' "$port"
        fi
    done < <(_config_section "$file" nodes | grep -oE "addr:[[:space:]]*[\"']?[^,}\"'[:space:]]+" || true)
}

# config_listen FILE - prints the listen address (HOST:PORT) of a strata config.
config_listen() {
    local file="$1" line
    line="$(grep -E '^listen:' "$file" | head -n1 || true)"
    line="${line#listen:}"
    line="${line%%#*}"
    line="${line//[[:space:]\"\']/}"
    printf '%s\n' "${line:-127.0.0.1:6380}"
}

register_pid() { _LIB_PIDS+=("$1"); }
# unregister_pid PID - forget a pid (after waiting for it), so cleanup never signals a reused pid.
unregister_pid() {
    local p keep=()
    for p in "${_LIB_PIDS[@]}"; do
        [[ "$p" == "$1" ]] || keep+=("$p")
    done
    _LIB_PIDS=("${keep[@]}")
}
register_tmpdir() { _LIB_TMPDIRS+=("$1"); }

# start_redis PORT DIR [TLS_PORT PKI] - starts a throw-away redis-server on 127.0.0.1:PORT (no
# persistence), working directory and log in DIR. With TLS_PORT, it also listens there for TLS
# with the server certificate of PKI (a make_tls_pki directory) and asks clients for none; PORT
# stays plain (wait_port uses it). The pid is recorded for cleanup and left in REDIS_PID.
start_redis() {
    local port="$1" dir="$2" tls=()
    if [[ -n "${3:-}" ]]; then
        tls=(--tls-port "$3" --tls-cert-file "$4/server.crt" --tls-key-file "$4/server.key"
            --tls-ca-cert-file "$4/ca.crt" --tls-auth-clients no)
    fi
    mkdir -p "$dir"
    redis-server --port "$port" "${tls[@]}" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$dir" --logfile "$dir/node-$port.log" \
        </dev/null >>"$dir/node-$port.out" 2>&1 &
    REDIS_PID=$!
    register_pid "$REDIS_PID"
    _LIB_REDIS_LOG[$port]="$dir/node-$port.log"
}

# start_nodes DIR PORT... - a throw-away redis-server on each port (see start_redis), then waits
# until each answers PING; their pids are left in NODE_PIDS, in port order.
start_nodes() {
    local dir="$1" p
    shift
    NODE_PIDS=()
    for p in "$@"; do
        start_redis "$p" "$dir"
        NODE_PIDS+=("$REDIS_PID")
    done
    for p in "$@"; do
        wait_port "$p" 10 || die "redis-server on port $p did not start"
    done
}

# make_tls_pki DIR - makes, in DIR, a throw-away CA (ca.crt, ca.key) and a certificate signed by
# it for DNS:localhost and IP:127.0.0.1 (server.crt, server.key), valid 2 days: what a TLS test
# on loopback needs. Installs openssl if missing; dies with openssl's output if it fails.
make_tls_pki() {
    local dir="$1"
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    mkdir -p "$dir"
    if ! (
        cd "$dir" &&
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
                -subj "/CN=strata throw-away CA" &&
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
                -subj "/CN=localhost" &&
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext.cnf &&
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -out server.crt -days 2 -extfile ext.cnf
    ) >"$dir/openssl.log" 2>&1; then
        cat "$dir/openssl.log" >&2
        die "making the throw-away certificates with openssl failed"
    fi
}

# strata_nodes_yaml PORT... - the `nodes:` section of a strata config for local redis-servers
# on PORTs, named node1, node2, ... in order.
strata_nodes_yaml() {
    local i=0 p
    printf 'nodes:\n'
    for p in "$@"; do
        i=$((i + 1))
        printf '  - { id: node%d, addr: 127.0.0.1:%s }\n' "$i" "$p"
    done
}

# start_strata BIN CONFIG PORT DIR - checks CONFIG with `BIN check`, runs `BIN serve --config
# CONFIG` (log in DIR/strata.log) for cleanup on exit, leaves its pid in STRATA_PID, and waits
# until it answers PING on 127.0.0.1:PORT; dies with the log's tail otherwise.
start_strata() {
    local bin="$1" cfg="$2" port="$3" dir="$4"
    if ! "$bin" check --config "$cfg" >"$dir/strata-check.log" 2>&1; then
        cat "$cfg" "$dir/strata-check.log" >&2
        die "strata check rejected the generated config"
    fi
    NO_COLOR=1 "$bin" serve --config "$cfg" </dev/null >"$dir/strata.log" 2>&1 &
    STRATA_PID=$!
    register_pid "$STRATA_PID"
    if ! wait_port "$port" 30; then
        tail -n 30 "$dir/strata.log" >&2 || true
        die "strata did not answer PING on 127.0.0.1:$port"
    fi
}

# require_positive NAME... - dies unless each named variable holds a positive integer.
require_positive() {
    local v
    for v in "$@"; do
        [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
    done
}

# redis_ping PORT [HOST] - true if HOST:PORT (default 127.0.0.1) answers PING with PONG (2 s max).
redis_ping() {
    local out
    out="$(timeout 2 redis-cli -h "${2:-127.0.0.1}" -p "$1" ping 2>/dev/null || true)"
    [[ "$out" == PONG ]]
}

# wait_port PORT [TIMEOUT_SECONDS] - waits until 127.0.0.1:PORT answers PING.
wait_port() {
    local port="$1" timeout="${2:-10}" deadline logf
    deadline=$((SECONDS + timeout))
    while ! redis_ping "$port"; do
        if ((SECONDS >= deadline)); then
            printf '%s: error: nothing answered PING on 127.0.0.1:%s within %ss\n' \
                "$LIB_PROG" "$port" "$timeout" >&2
            logf="${_LIB_REDIS_LOG[$port]:-}"
            if [[ -n "$logf" && -s "$logf" ]]; then
                printf '%s: last lines of %s:\n' "$LIB_PROG" "$logf" >&2
                tail -n 20 "$logf" >&2
            fi
            return 1
        fi
        sleep 0.1
    done
}

# free_ports N - prints N distinct TCP ports that are free on 127.0.0.1 right now.
free_ports() {
    local n="${1:-1}"
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$n" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
    s.close()
PY
        return
    fi
    # Fallback without python3: random ports nobody accepts connections on.
    local -A used=()
    local port found=0
    while ((found < n)); do
        port=$((20000 + RANDOM % 30000))
        [[ -z "${used[$port]:-}" ]] || continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            used[$port]=1
            printf '%s\n' "$port"
            found=$((found + 1))
        fi
    done
}

free_port() { free_ports 1; }

# cleanup - stops every recorded process (newest first, TERM then KILL after 5 s) and removes
# recorded temporary directories. Safe to call more than once.
cleanup() {
    local i pid alive deadline
    ((_LIB_CLEANED == 0)) || return 0
    _LIB_CLEANED=1
    for ((i = ${#_LIB_PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${_LIB_PIDS[i]}" 2>/dev/null || true
    done
    deadline=$((SECONDS + 5))
    while :; do
        alive=()
        for pid in "${_LIB_PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive+=("$pid")
        done
        ((${#alive[@]} > 0)) || break
        if ((SECONDS >= deadline)); then
            warn "killing processes that ignored SIGTERM: ${alive[*]}"
            kill -KILL "${alive[@]}" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    for pid in "${_LIB_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    _LIB_PIDS=()
    for i in "${_LIB_TMPDIRS[@]}"; do
        [[ -n "$i" && -d "$i" ]] && rm -rf -- "$i"
    done
    _LIB_TMPDIRS=()
}

# install_cleanup_trap - cleanup on normal exit, errors, Ctrl-C and SIGTERM.
install_cleanup_trap() {
    trap cleanup EXIT
    trap 'printf "\n%s: interrupted, stopping\n" "$LIB_PROG" >&2; exit 130' INT
    trap 'printf "%s: terminated, stopping\n" "$LIB_PROG" >&2; exit 143' TERM
}

# build_strata: `cargo build --release` at the repository root; prints the binary's path.
build_strata() {
    log "building strata (cargo build --release)"
    (cd "$STRATA_ROOT" && cargo build --release >&2) || die "cargo build --release failed"
    local target_dir="${CARGO_TARGET_DIR:-$STRATA_ROOT/target}"
    [[ "$target_dir" = /* ]] || target_dir="$STRATA_ROOT/$target_dir"
    [[ -x "$target_dir/release/strata" ]] || die "built binary not found at $target_dir/release/strata"
    printf '%s\n' "$target_dir/release/strata"
}
