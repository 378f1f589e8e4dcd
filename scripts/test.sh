#!/usr/bin/env bash
# scripts/test.sh - the project's test command (README) and what CI runs (.ci/run).
#
# Usage: scripts/test.sh [EXTRA CARGO TEST ARGS...]     e.g. scripts/test.sh -- --nocapture
#
# Installs redis-server/redis-tools if missing (the integration tests start their own
# redis-server processes from PATH), then runs, stopping at the first failure:
#   1. cargo fmt --all -- --check
#   2. cargo clippy --all-targets --locked -- -D warnings
#   3. cargo test --locked [EXTRA ARGS]

set -euo pipefail

LIB_PROG=test.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
    -h | --help)
        sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
        exit 0
        ;;
esac

cd "$STRATA_ROOT"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

ensure_redis
command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup: https://rustup.rs)"

# rustfmt and clippy are rustup components; add them if this toolchain lacks them.
for component in rustfmt clippy; do
    sub="${component/rustfmt/fmt}"
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 || die "cargo $sub is missing and rustup is not available"
        log "adding rustup component $component"
        rustup component add "$component" >/dev/null 2>&1 || die "rustup component add $component failed"
    fi
done

log "$(cargo --version), $(redis-server --version | cut -d' ' -f1-3)"

steps=0
step() {
    local name="$1" rc=0
    shift
    steps=$((steps + 1))
    printf '\n==> [%d/3] %s\n' "$steps" "$name" >&2
    "$@" || rc=$?
    if [[ $rc -ne 0 ]]; then
        printf '\n%s: FAILED: %s (exit %d)\n' "$LIB_PROG" "$name" "$rc" >&2
        case "$name" in
            "cargo fmt"*) printf "%s: hint: run 'cargo fmt --all' to fix the formatting\n" "$LIB_PROG" >&2 ;;
        esac
        exit "$rc"
    fi
    printf '==> ok: %s\n' "$name" >&2
}

step "cargo fmt --all -- --check" cargo fmt --all -- --check
step "cargo clippy --all-targets --locked -- -D warnings" \
    cargo clippy --all-targets --locked -- -D warnings
step "cargo test --locked${*:+ $*}" cargo test --locked "$@"

printf '\n%s: all checks passed\n' "$LIB_PROG"
