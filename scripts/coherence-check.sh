#!/usr/bin/env bash
# scripts/coherence-check.sh - the near cache's coherence checker, run longer, and the
# invalidation delay of a write made on a node directly.
#
# Runs tests/coherence.rs (release build, one test at a time, output shown): writers write
# versions through strata and on the nodes directly, readers read through strata, and every
# COHERENCE_FAULT_GAP_MS a fault strikes (tracking connection killed, FLUSHALL, node restarted
# empty, in turn over the nodes); it prints the report (stale reads per fault window, staleness
# p50/p99/max, violations) and then the invalidation delay over COHERENCE_DELAY_WRITES writes.
# The tests start their own redis-server nodes on free loopback ports and stop them. See
# docs/near-cache.md, "Coherence checker".
#
# Exit status 1 when a read was staler than the bound (or any other check failed).
#
# Environment:
#   COHERENCE_SECS          how long the checker runs                   (default 60)
#   COHERENCE_BOUND_MS      the staleness bound                         (default 100)
#   COHERENCE_FAULT_GAP_MS  time between two fault steps                (default 3000)
#   COHERENCE_DELAY_WRITES  direct writes whose invalidation is timed   (default 1000)
#   COHERENCE_PROFILE       cargo profile: release or dev               (default release)

set -euo pipefail

LIB_PROG=coherence-check.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_settings_only "$@"

secs="${COHERENCE_SECS:-60}"
bound="${COHERENCE_BOUND_MS:-100}"
gap="${COHERENCE_FAULT_GAP_MS:-3000}"
writes="${COHERENCE_DELAY_WRITES:-1000}"
profile="${COHERENCE_PROFILE:-release}"
require_positive secs bound gap writes
case "$profile" in
    release) profile_args=(--release) ;;
    dev) profile_args=() ;;
    *) die "COHERENCE_PROFILE must be release or dev, got '$profile'" ;;
esac

ensure_redis
command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup: https://rustup.rs)"
cd "$STRATA_ROOT"
log "building and running tests/coherence.rs ($profile): ${secs}s, bound ${bound}ms, a fault every ${gap}ms, $writes timed writes"
STRATA_COHERENCE_SECS="$secs" \
    STRATA_COHERENCE_BOUND_MS="$bound" \
    STRATA_COHERENCE_FAULT_GAP_MS="$gap" \
    STRATA_INVALIDATION_WRITES="$writes" \
    cargo test "${profile_args[@]}" --test coherence -- --nocapture --test-threads=1
