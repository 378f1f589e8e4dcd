#!/usr/bin/env bash
# scripts/clients-check.sh - do real client libraries get the same replies from strata as from Redis?
#
# Installs, into a temp dir removed on exit: the newest redis-py and the newest redis-py 5.x (one
# virtualenv each), and the current ioredis and node-redis (`redis`) npm packages. Starts, on free
# loopback ports: a plain redis-server ("direct") and strata (release build, or STRATA_BIN) in
# front of 3 more, with the layers of config.yaml (route: and result: keep 2 copies, meta: 3) and
# no TTL on the default layer, so that replies compare equal. Then runs the scenario of each library
# (scripts/clients/: scenario.py for redis-py, scenario-ioredis.mjs, scenario-node-redis.mjs) in
# RESP2 and, where the library speaks it, RESP3, first against direct Redis, then against strata.
# Each scenario records what every step returned: the client's own handshake, every data type,
# pipelines (among them 400 × SET 64 KiB + GET and 2000 × SET 4 KiB + GET in one batch),
# MULTI/EXEC and WATCH, pub/sub, Lua, SCAN, CONFIG GET, DBSIZE. A step that takes longer than
# CLIENTS_CHECK_TIMEOUT is recorded as a timeout. Prints a table of the steps whose results
# differ (client, protocol, step, direct, strata) and "N steps, M differ" per client and
# protocol; the recordings and every difference in full are kept in target/clients-check/.
#
# With CLIENTS_CHECK_TLS=1 the whole path is TLS: a throw-away CA and a certificate for
# localhost / 127.0.0.1 are made (openssl, in the temp dir); direct Redis and strata's 3 nodes get
# a TLS port beside their plain one (only the script's readiness PING uses the plain one); strata
# gets `tls: {listen, cert, key}` beside its plain `listen` and reaches its nodes on their TLS
# ports (`backend: {tls: {ca}}`, INFO must show tls=1 for each); and every client connects to the
# TLS port of direct Redis and of strata with that CA and the host name checked (scenario
# --tls-ca: redis-py ssl=True, ssl_check_hostname against 127.0.0.1; ioredis and node-redis
# servername localhost). The protocol column then reads RESP2/TLS, RESP3/TLS. redis-server 7.0
# itself now and then drops a TLS client in the middle of a big pipeline (its own write bug, see
# tls_write_errors): so the redis-servers log at `verbose` in this mode, their logs are kept
# beside the recordings, and a note after the table says how often that happened and where.
#
# Client-side caching (CLIENT TRACKING, RESP3 `>invalidate` pushes), as an application tries it:
# redis-py (`protocol=3, cache_config=CacheConfig()`, scripts/clients/tracking.py) and node-redis
# (`RESP: 3, clientSideCache`, tracking-node-redis.mjs) read a key twice (the second read must be
# served from the client's memory: the cache's own counters, and no GET reaching a node), then
# the key is changed by another client through the same endpoint, on the Redis node holding it
# (found with EXISTS on each node; for direct Redis that is the server itself), by the caching
# client itself, and a key expires (SET PX 1000): each time the invalidation must reach the
# client, the next read return the new value (nil after the expiry) from the server, and the one
# after it come from memory again. Then 200 times the caching client writes the key and reads it
# at once, which must return its own write (Redis sends that invalidation together with the
# write's reply). ioredis has no client-side cache. redis-py refuses to cache with a server older
# than 7.4 (both sides here say 7.0): its scenario records that refusal, then lowers the gate
# (see tracking.py). These runs are part of the default run because they take seconds and a
# proxy that forwards every command right can still break invalidation; they run after the other
# scenarios, so that their tracking clients (while any tracks, strata's nodes report every
# written key to strata) change nothing for those. Their own table follows the first one, with how
# long each invalidation took to arrive (ms, not compared). Unlike the other scenarios, any
# difference here, and any stale read (an older value than the last write, once the invalidation
# came or should have: after none within CLIENTS_CHECK_TIMEOUT, or right after the client's own
# write), makes the run fail.
#
# Exit status 0 when the check ran, differences or not (they are reported, not failures); with
# CLIENTS_CHECK_STRICT=1, 1 when any step differs. 1 also when a scenario fails against direct
# Redis (the check itself is broken then), and when the client-side caching runs differ or read
# a stale value. Not part of CI: it needs PyPI and npm.
#
# Environment:
#   CLIENTS_CHECK_CLIENTS  which to run, in order (default "redis-py redis-py-5 ioredis node-redis")
#   CLIENTS_CHECK_TIMEOUT  seconds one step may take                         (default 5)
#   CLIENTS_CHECK_STRICT   1: exit 1 when any step differs                    (default 0)
#   CLIENTS_CHECK_WIDTH    characters of each result shown in the table       (default 48)
#   CLIENTS_CHECK_TLS      1: clients, strata and nodes all over TLS (above)  (default 0)
#   CLIENTS_CHECK_NEAR     1: strata serves from its near cache and coalesces reads: the
#                          scenarios' str: and pipe: keys (and the client-side caching
#                          scenarios' csc: keys) get near-cached layers, route: and
#                          result: a near cache too, and every layer `coalesce: true`
#                          (docs/near-cache.md, docs/coalescing.md)                (default 0)
#   CLIENTS_CHECK_TRACKING 1: after the scenarios above, the client-side caching ones (below);
#                          0: not them; only: them alone                       (default 1)
#   STRATA_BIN             strata binary to check             (default: cargo build --release)
#   REDIS_PY_VERSION       redis-py version instead of the newest             (default: newest)
#   REDIS_PY5_VERSION      redis-py 5.x version instead of the newest 5.x     (default: newest 5.x)
#   NODE_REDIS_VERSION     node-redis (npm `redis`) version instead of the newest (default: newest)

set -euo pipefail

LIB_PROG="clients-check.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_settings_only "$@"

read -r -a clients <<<"${CLIENTS_CHECK_CLIENTS:-redis-py redis-py-5 ioredis node-redis}"
step_timeout="${CLIENTS_CHECK_TIMEOUT:-5}"
strict="${CLIENTS_CHECK_STRICT:-0}"
width="${CLIENTS_CHECK_WIDTH:-48}"
use_tls="${CLIENTS_CHECK_TLS:-0}"
use_near="${CLIENTS_CHECK_NEAR:-0}"
use_tracking="${CLIENTS_CHECK_TRACKING:-1}"
require_positive step_timeout width
[[ "$use_tls" == 0 || "$use_tls" == 1 ]] || die "CLIENTS_CHECK_TLS must be 0 or 1, got '$use_tls'"
[[ "$use_tracking" == 0 || "$use_tracking" == 1 || "$use_tracking" == only ]] ||
    die "CLIENTS_CHECK_TRACKING must be 0, 1 or only, got '$use_tracking'"
[[ ${#clients[@]} -gt 0 ]] || die "CLIENTS_CHECK_CLIENTS is empty"
want_python=0
want_node=0
for c in "${clients[@]}"; do
    case "$c" in
        redis-py | redis-py-5) want_python=1 ;;
        ioredis | node-redis) want_node=1 ;;
        *) die "unknown client '$c' in CLIENTS_CHECK_CLIENTS (known: redis-py redis-py-5 ioredis node-redis)" ;;
    esac
done
scenarios="$STRATA_ROOT/scripts/clients"
# A whole scenario run may take this long at most (its steps have their own timeouts).
run_timeout=$((step_timeout * 30 + 60))

install_cleanup_trap
started=$SECONDS

# --- tools -----------------------------------------------------------------------------------
ensure_redis
ensure_python3
if ((want_node)); then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        die "node and npm are needed for ioredis and node-redis (apt-get install nodejs npm)"
    fi
fi
if [[ -n "${STRATA_BIN:-}" ]]; then
    strata_bin="$STRATA_BIN"
    [[ -x "$strata_bin" ]] || die "STRATA_BIN $strata_bin is not executable"
else
    strata_bin="$(build_strata)"
fi

workdir="$(mktemp -d -t strata-clients.XXXXXX)"
register_tmpdir "$workdir"
mkdir -p "$workdir/rec"

# --- client libraries ------------------------------------------------------------------------
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Used when PyPI cannot be asked for its versions: the newest ones when this script was written.
fallback_py=8.1.0
fallback_py5=5.3.1

# pypi_versions - prints redis-py's released versions, newest first (nothing if pip cannot tell).
pypi_versions() {
    python3 -m pip index versions redis 2>/dev/null |
        sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' || true
}

declare -A py_version=() label_of=()
if ((want_python)); then
    mapfile -t versions < <(pypi_versions)
    newest="$(printf '%s\n' "${versions[@]}" | grep -E '^[0-9]+(\.[0-9]+)*$' | head -n1 || true)"
    newest5="$(printf '%s\n' "${versions[@]}" | grep -E '^5(\.[0-9]+)*$' | head -n1 || true)"
    [[ -n "$newest" ]] || warn "could not ask PyPI for redis-py's versions; using $fallback_py and $fallback_py5"
    py_version[redis-py]="${REDIS_PY_VERSION:-${newest:-$fallback_py}}"
    py_version[redis-py-5]="${REDIS_PY5_VERSION:-${newest5:-$fallback_py5}}"
fi

# install_redis_py NAME - a virtualenv with redis-py py_version[NAME] in $workdir/NAME.
install_redis_py() {
    local name="$1" venv="$workdir/$1"
    log "installing redis-py ${py_version[$name]} (virtualenv for $name)"
    python3 -m venv "$venv" >"$workdir/$name-install.log" 2>&1 ||
        { show_install_log "$name"; die "python3 -m venv failed (Debian: apt-get install python3-venv)"; }
    "$venv/bin/pip" install -q "redis==${py_version[$name]}" >>"$workdir/$name-install.log" 2>&1 ||
        { show_install_log "$name"; die "pip install redis==${py_version[$name]} failed"; }
}
show_install_log() { tail -n 20 "$workdir/$1-install.log" >&2 || true; }

for c in "${clients[@]}"; do
    case "$c" in
        redis-py | redis-py-5)
            install_redis_py "$c"
            label_of[$c]="redis-py ${py_version[$c]}"
            ;;
    esac
done
if ((want_node)); then
    log "installing ioredis and redis (node-redis${NODE_REDIS_VERSION:+ $NODE_REDIS_VERSION}) from npm"
    npm install --prefix "$workdir/node" --no-audit --no-fund --loglevel=error ioredis \
        "redis${NODE_REDIS_VERSION:+@$NODE_REDIS_VERSION}" \
        >"$workdir/npm-install.log" 2>&1 || { show_install_log npm; die "npm install failed"; }
    node_version() { node -p "require('$workdir/node/node_modules/$1/package.json').version"; }
    label_of[ioredis]="ioredis $(node_version ioredis)"
    label_of[node-redis]="node-redis $(node_version redis)"
fi

# --- servers ---------------------------------------------------------------------------------
nports=$((use_tls ? 10 : 5))
mapfile -t ports < <(free_ports "$nports")
[[ ${#ports[@]} -eq $nports ]] || die "could not find $nports free ports"
node_ports=("${ports[0]}" "${ports[1]}" "${ports[2]}")
direct_port="${ports[3]}"
strata_port="${ports[4]}"
# What the clients connect to, and what strata connects to: the plain ports, or the TLS ones.
direct_client_port="$direct_port"
strata_client_port="$strata_port"
strata_node_ports=("${node_ports[@]}")
tls_args=()   # the scenarios' TLS option
proto_tag=""  # after RESP2 / RESP3 in the table
if ((use_tls)); then
    pki="$workdir/pki"
    make_tls_pki "$pki"
    strata_node_ports=("${ports[5]}" "${ports[6]}" "${ports[7]}")
    direct_client_port="${ports[8]}"
    strata_client_port="${ports[9]}"
    tls_args=(--tls-ca "$pki/ca.crt")
    proto_tag="/TLS"
    for i in 0 1 2; do
        start_redis "${node_ports[$i]}" "$workdir" "${strata_node_ports[$i]}" "$pki"
    done
    start_redis "$direct_port" "$workdir" "$direct_client_port" "$pki"
    for p in "${node_ports[@]}" "$direct_port"; do
        wait_port "$p" 10 || die "redis-server on port $p did not start"
        # redis-server logs a connection it drops after a TLS error at `verbose` only; see
        # tls_write_errors below.
        redis-cli -p "$p" config set loglevel verbose >/dev/null
    done
else
    start_nodes "$workdir" "${node_ports[@]}" "$direct_port"
fi

cfg="$workdir/strata.yaml"
{
    printf '# generated by scripts/clients-check.sh: the layers of config.yaml, no TTL on the default layer\nlisten: 127.0.0.1:%s\n' "$strata_port"
    printf 'workers: 1\n'
    if ((use_tls)); then
        printf 'tls: { listen: "127.0.0.1:%s", cert: "%s", key: "%s" }\n' \
            "$strata_client_port" "$pki/server.crt" "$pki/server.key"
        printf 'backend: { tls: { ca: "%s" } }\n' "$pki/ca.crt"
    fi
    strata_nodes_yaml "${strata_node_ports[@]}"
    if ((use_near)); then
        cat <<EOF
defaults: { ttl: 0, max_ttl: 0, replication: 1, coalesce: true }
layers:
  - { name: route,  prefix: "route:",  ttl: 5m,  replication: 2, write_consistency: eventual, near_cache: { max_bytes: 16mb } }
  - { name: result, prefix: "result:", ttl: 10m, replication: 2, write_consistency: quorum, near_cache: { max_bytes: 16mb } }
  - { name: meta,   prefix: "meta:",   ttl: 1m,  replication: 3, write_consistency: strong, read_consistency: quorum }
  - { name: load,   prefix: "load:",   ttl: 5s,  replication: 1 }
  - { name: str,    prefix: "str:",    near_cache: { max_bytes: 16mb } }
  - { name: pipe,   prefix: "pipe:",   near_cache: { max_bytes: 16mb } }
  - { name: csc,    prefix: "csc:",    near_cache: { max_bytes: 16mb } }
EOF
    else
        cat <<EOF
defaults: { ttl: 0, max_ttl: 0, replication: 1 }
layers:
  - { name: route,  prefix: "route:",  ttl: 5m,  replication: 2, write_consistency: eventual }
  - { name: result, prefix: "result:", ttl: 10m, replication: 2, write_consistency: quorum }
  - { name: meta,   prefix: "meta:",   ttl: 1m,  replication: 3, write_consistency: strong, read_consistency: quorum }
  - { name: load,   prefix: "load:",   ttl: 5s,  replication: 1 }
EOF
    fi
    cat <<EOF
stats: { layer_keys_interval: 0s }
# The scenarios start from an empty database (FLUSHALL) and list keys (KEYS).
security: { allow_dangerous_commands: true }
EOF
} >"$cfg"
start_strata "$strata_bin" "$cfg" "$strata_port" "$workdir"
strata_pid="$STRATA_PID"
if ((use_tls)); then
    # A run over TLS that went plain somewhere would compare the wrong thing: strata must say
    # that each node is reached over TLS and name its TLS listener.
    info="$(redis-cli -p "$strata_port" info 2>&1 | tr -d '\r')"
    tls_nodes="$(grep -c '^node_[^:]*:addr=[^,]*,tls=1,' <<<"$info" || true)"
    if [[ "$tls_nodes" != 3 ]] || ! grep -q "^strata_tls_port:$strata_client_port\$" <<<"$info"; then
        printf '%s\n' "$info" >&2
        die "strata's INFO does not show 3 nodes with tls=1 and strata_tls_port:$strata_client_port"
    fi
    log "over TLS: direct Redis on $direct_client_port; strata on $strata_client_port in front of" \
        "${strata_node_ports[*]} (plain ports, for the readiness checks only: $direct_port; $strata_port; ${node_ports[*]})"
else
    log "direct Redis on $direct_port; strata on $strata_port in front of ${node_ports[*]}"
fi

# --- runs ------------------------------------------------------------------------------------
compare_args=()
broken=() # runs whose scenario failed against direct Redis: the check itself needs fixing

# scenario_cmd CLIENT - prints nothing; sets cmd to the command line of CLIENT's scenario.
scenario_cmd() {
    case "$1" in
        redis-py | redis-py-5) cmd=("$workdir/$1/bin/python" "$scenarios/scenario.py") ;;
        ioredis) cmd=(node "$scenarios/scenario-ioredis.mjs" --modules "$workdir/node") ;;
        node-redis) cmd=(node "$scenarios/scenario-node-redis.mjs" --modules "$workdir/node") ;;
    esac
}

# resp3_support CLIENT - prints "yes", or why the installed library cannot speak RESP3.
resp3_support() {
    case "$1" in
        redis-py | redis-py-5) echo yes ;; # protocol=3 since redis-py 5.0
        *)
            scenario_cmd "$1"
            "${cmd[@]}" --supports-resp3
            ;;
    esac
}

# run_one CLIENT PROTO TARGET PORT - records CLIENT's scenario against TARGET; false if it failed
# (what it recorded until then is kept and compared).
run_one() {
    local client="$1" proto="$2" target="$3" port="$4" base rc=0 t0=$SECONDS
    base="$workdir/rec/$client-resp$proto-$target"
    scenario_cmd "$client"
    timeout "$run_timeout" "${cmd[@]}" --port "$port" --protocol "$proto" --out "$base.json" \
        --timeout "$step_timeout" "${tls_args[@]}" </dev/null >"$base.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        ((rc == 124)) && printf '%s: stopped after %ss\n' "$LIB_PROG" "$run_timeout" >>"$base.log"
        warn "${label_of[$client]} RESP$proto$proto_tag against $target failed (exit $rc); last lines of its log:"
        tail -n 15 "$base.log" >&2
        return 1
    fi
    log "${label_of[$client]} RESP$proto$proto_tag against $target: $((SECONDS - t0)) s"
}

if [[ "$use_tracking" != only ]]; then
    for client in "${clients[@]}"; do
        support="$(resp3_support "$client")"
        for proto in 2 3; do
            if ((proto == 3)) && [[ "$support" != yes ]]; then
                compare_args+=(--skip "${label_of[$client]}" "RESP3$proto_tag" "${support#no: }")
                log "${label_of[$client]}: RESP3 skipped (${support#no: })"
                continue
            fi
            run_one "$client" "$proto" direct "$direct_client_port" ||
                broken+=("${label_of[$client]} RESP$proto$proto_tag")
            kill -0 "$strata_pid" 2>/dev/null || { tail -n 20 "$workdir/strata.log" >&2; die "strata exited"; }
            run_one "$client" "$proto" strata "$strata_client_port" || true
            kill -0 "$strata_pid" 2>/dev/null || { tail -n 20 "$workdir/strata.log" >&2; die "strata exited"; }
            base="$workdir/rec/$client-resp$proto"
            compare_args+=(--run "${label_of[$client]}" "RESP$proto$proto_tag" "$base-direct.json" "$base-strata.json")
        done
    done
fi

# --- client-side caching runs ----------------------------------------------------------------
tracking_args=()

# tracking_cmd CLIENT - sets cmd to the command line of CLIENT's client-side caching scenario
# (empty for a library that has none).
tracking_cmd() {
    case "$1" in
        redis-py | redis-py-5) cmd=("$workdir/$1/bin/python" "$scenarios/tracking.py") ;;
        node-redis) cmd=(node "$scenarios/tracking-node-redis.mjs" --modules "$workdir/node") ;;
        *) cmd=() ;;
    esac
}

# csc_support CLIENT - prints "yes", or why the installed library has no client-side cache.
csc_support() {
    tracking_cmd "$1"
    if ((${#cmd[@]} == 0)); then
        echo "no: $1 has no client-side cache"
        return
    fi
    "${cmd[@]}" --supports-csc
}

# run_tracking CLIENT TARGET PORT NODES - records CLIENT's client-side caching scenario against
# TARGET (NODES: the plain ports of the redis-servers holding its data, comma-separated); false
# if it failed.
run_tracking() {
    local client="$1" target="$2" port="$3" nodes="$4" base rc=0 t0=$SECONDS
    base="$workdir/rec/$client-tracking-$target"
    tracking_cmd "$client"
    timeout "$run_timeout" "${cmd[@]}" --port "$port" --nodes "$nodes" --out "$base.json" \
        --timeout "$step_timeout" "${tls_args[@]}" </dev/null >"$base.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        ((rc == 124)) && printf '%s: stopped after %ss\n' "$LIB_PROG" "$run_timeout" >>"$base.log"
        warn "${label_of[$client]} client-side caching against $target failed (exit $rc); last lines of its log:"
        tail -n 15 "$base.log" >&2
        return 1
    fi
    log "${label_of[$client]} client-side caching$proto_tag against $target: $((SECONDS - t0)) s"
}

if [[ "$use_tracking" != 0 ]]; then
    strata_nodes_csv="$(IFS=,; echo "${node_ports[*]}")"
    for client in "${clients[@]}"; do
        support="$(csc_support "$client")"
        if [[ "$support" != yes ]]; then
            tracking_args+=(--skip "${label_of[$client]}" "RESP3$proto_tag" "${support#no: }")
            log "${label_of[$client]}: client-side caching skipped (${support#no: })"
            continue
        fi
        run_tracking "$client" direct "$direct_client_port" "$direct_port" ||
            broken+=("${label_of[$client]} client-side caching")
        kill -0 "$strata_pid" 2>/dev/null || { tail -n 20 "$workdir/strata.log" >&2; die "strata exited"; }
        run_tracking "$client" strata "$strata_client_port" "$strata_nodes_csv" || true
        kill -0 "$strata_pid" 2>/dev/null || { tail -n 20 "$workdir/strata.log" >&2; die "strata exited"; }
        base="$workdir/rec/$client-tracking"
        tracking_args+=(--run "${label_of[$client]}" "RESP3$proto_tag" "$base-direct.json" "$base-strata.json")
    done
fi

# tls_write_errors PORT - how many times the redis-server with plain port PORT dropped a client
# after "Error writing to client: ...SSL routines::bad length". That is redis-server's own TLS
# bug, not strata's: when SSL_write asks it to retry, its writev path may retry with fewer bytes
# than the first try (it concatenates the reply buffers only up to 64 KiB), which OpenSSL refuses,
# and it closes the connection (valkey-io/valkey#1135, fixed in Valkey by #1737; Redis 7.0 has
# it). Seen on direct Redis in the pipeline of 2000 × 4 KiB: the client reads "Connection closed
# by server" there, and strata, whose answer went through rustls, is then the side that is right.
tls_write_errors() {
    grep -c 'Error writing to client: .*bad length' "$workdir/node-$1.log" 2>/dev/null || true
}

# --- comparison ------------------------------------------------------------------------------
stamp="$(date +%Y%m%d-%H%M%S)"
((use_tls)) && stamp+="-tls"
outdir="$STRATA_ROOT/target/clients-check/$stamp"
mkdir -p "$outdir"
rc=0
if [[ "$use_tracking" != only ]]; then
    python3 "$scenarios/compare.py" --width "$width" --full "$outdir/differences.txt" "${compare_args[@]}" \
        >"$outdir/table.txt" || rc=$?
    ((rc == 0 || rc == 3)) || die "compare.py failed (exit $rc)"
fi
tracking_rc=0
if [[ "$use_tracking" != 0 ]]; then
    python3 "$scenarios/compare.py" --width "$width" --full "$outdir/tracking-differences.txt" \
        --title "client-side caching (CLIENT TRACKING)" "${tracking_args[@]}" \
        >"$outdir/tracking-table.txt" || tracking_rc=$?
    ((tracking_rc == 0 || tracking_rc == 3)) || die "compare.py failed (exit $tracking_rc)"
fi
cp "$workdir"/rec/* "$cfg" "$outdir"/
cp "$workdir/strata.log" "$outdir/strata.log"
tls_notes=()
if ((use_tls)); then
    cp "$workdir/node-$direct_port.log" "$outdir/redis-direct.log"
    n="$(tls_write_errors "$direct_port")"
    ((n == 0)) || tls_notes+=("direct Redis dropped $n client connection(s) on its own TLS write bug\
 (\"Error writing to client: ...SSL routines::bad length\" in redis-direct.log, see tls_write_errors\
 in this script): a step where direct shows \"Connection closed by server\" and strata the right\
 replies is that bug, not a strata difference")
    for p in "${node_ports[@]}"; do
        cp "$workdir/node-$p.log" "$outdir/redis-node-$p.log"
        n="$(tls_write_errors "$p")"
        ((n == 0)) || tls_notes+=("strata's node $p dropped $n of strata's connections on the same\
 redis-server TLS write bug (redis-node-$p.log)")
    done
fi
for table in table.txt tracking-table.txt; do
    [[ -f "$outdir/$table" ]] || continue
    printf '\n'
    cat "$outdir/$table"
done
for note in "${tls_notes[@]}"; do
    printf '\nnote: %s\n' "$note"
done
if ((use_near)); then
    # What strata's near caches and coalescing did over every scenario: the check means little
    # if nothing was served from memory.
    printf '\nstrata, near cache and coalescing (INFO layers):\n'
    redis-cli -p "$strata_port" INFO layers | python3 -c '
import sys
for line in sys.stdin:
    name, _, fields = line.strip().partition(":")
    pairs = dict(f.split("=", 1) for f in fields.split(",") if "=" in f)
    shown = [f"{k}={pairs[k]}" for k in ("near_hits", "near_fills", "coalesced") if k in pairs]
    if shown:
        print("  " + name.removeprefix("layer_") + ": " + " ".join(shown))
'
fi
printf '\n%s: ran in %s s; table, full differences, recordings and logs in %s\n' "$LIB_PROG" \
    "$((SECONDS - started))" "${outdir#"$STRATA_ROOT"/}"
if ((${#broken[@]} > 0)); then
    die "the scenario failed against direct Redis for: ${broken[*]} (see the logs above)"
fi
if ((tracking_rc == 3)); then
    die "client-side caching: strata differs from direct Redis, or a read was stale (table above)"
fi
if ((rc == 3)) && [[ "$strict" == 1 ]]; then
    die "differences found (CLIENTS_CHECK_STRICT=1)"
fi
