#!/usr/bin/env bash
# scripts/coherence-check.sh - the near cache's coherence checker, run longer, the same run
# with client-side caches as readers, and the invalidation delays.
#
# Runs tests/coherence.rs (release build, one test at a time, output shown). The checker:
# writers write versions through strata and on the nodes directly, readers read through strata,
# and every COHERENCE_FAULT_GAP_MS a fault strikes (strata's tracking connection killed with
# CLIENT KILL ID, all its connections to the node killed with CLIENT KILL TYPE normal, FLUSHALL,
# node restarted empty; in turn over the nodes); it prints the report (stale reads per fault
# window, staleness p50/p99/max, violations). It runs twice, COHERENCE_SECS each: as is, and
# with COHERENCE_CSC_READERS readers besides that each keep a client-side cache through
# strata's CLIENT TRACKING (RESP3; default mode, BCAST and OPTIN in turn, as client libraries
# do), whose reads, local hits, stale reads and violations are reported apart, and each fault
# checked to make strata empty every such cache. Also the invalidation delays over
# COHERENCE_DELAY_WRITES writes each: of the near cache (a write on a node -> the entry gone
# from strata), and of client tracking (a write on a node, and a write through strata -> the
# push at a tracking client); and COHERENCE_RACE_ROUNDS rounds of the fill race of client
# tracking (a read overtaken by a write must be told). The tests start their own redis-server
# nodes on free loopback ports and stop them. See docs/near-cache.md, "Coherence checker",
# and docs/testing.md.
#
# Exit status 1 when a read was staler than the bound (or any other check failed).
#
# Environment:
#   COHERENCE_SECS          how long each of the two runs lasts           (default 60)
#   COHERENCE_BOUND_MS      the staleness bound                           (default 100)
#   COHERENCE_FAULT_GAP_MS  time between two fault steps                  (default 3000)
#   COHERENCE_CSC_READERS   readers with a client-side cache, second run  (default 3)
#   COHERENCE_CSC_PAUSE_US  such a reader's pause between two reads, µs   (default 100)
#   COHERENCE_DELAY_WRITES  writes whose invalidation is timed, per kind  (default 1000)
#   COHERENCE_RACE_ROUNDS   rounds of the fill-race test                  (default 1000)
#   COHERENCE_PROFILE       cargo profile: release or dev                 (default release)

set -euo pipefail

LIB_PROG=coherence-check.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_settings_only "$@"

secs="${COHERENCE_SECS:-60}"
bound="${COHERENCE_BOUND_MS:-100}"
gap="${COHERENCE_FAULT_GAP_MS:-3000}"
writes="${COHERENCE_DELAY_WRITES:-1000}"
race_rounds="${COHERENCE_RACE_ROUNDS:-1000}"
csc_readers="${COHERENCE_CSC_READERS:-3}"
csc_pause="${COHERENCE_CSC_PAUSE_US:-100}"
profile="${COHERENCE_PROFILE:-release}"
require_positive secs bound gap writes race_rounds csc_readers csc_pause
case "$profile" in
    release) profile_args=(--release) ;;
    dev) profile_args=() ;;
    *) die "COHERENCE_PROFILE must be release or dev, got '$profile'" ;;
esac

ensure_redis
command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup: https://rustup.rs)"
cd "$STRATA_ROOT"
log "building and running tests/coherence.rs ($profile): ${secs}s a run, bound ${bound}ms, a fault every ${gap}ms, $csc_readers client-side caches, $writes timed writes, $race_rounds fill-race rounds"
STRATA_COHERENCE_SECS="$secs" \
    STRATA_COHERENCE_BOUND_MS="$bound" \
    STRATA_COHERENCE_FAULT_GAP_MS="$gap" \
    STRATA_COHERENCE_CSC_READERS="$csc_readers" \
    STRATA_COHERENCE_CSC_PAUSE_US="$csc_pause" \
    STRATA_INVALIDATION_WRITES="$writes" \
    STRATA_RACE_ROUNDS="$race_rounds" \
    cargo test "${profile_args[@]}" --test coherence -- --nocapture --test-threads=1
