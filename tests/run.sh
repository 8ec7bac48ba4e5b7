#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what it needs
# (Rust toolchain components, promtool, postfix; exim4 is downloaded by its
# test), then checks formatting and
# lints, then runs every test. Non-interactive; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# Debian packages the tests use: promtool (package prometheus) checks the
# metrics output and the rules; postfix runs as a private instance on
# loopback. Installing must never start or configure a system service.
need_pkgs=()
# The same package brings the prometheus server for the end-to-end test of
# the dashboards' rules (tests/dashboards.rs).
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need_pkgs+=(prometheus)
[ -x /usr/sbin/postfix ] || need_pkgs+=(postfix)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
# The real-Exim test (tests/exim_live.rs) fetches exim4-daemon-light with
# `apt-get download` at test time (it conflicts with postfix, so it is never
# installed) and unpacks it with dpkg -x; it needs unshare (util-linux).
command -v unshare >/dev/null 2>&1 || need_pkgs+=(util-linux)
# GNU time: the bounded-state test measures the replay's peak RSS with it.
[ -x /usr/bin/time ] || need_pkgs+=(time)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing Debian packages: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting services (postfix, prometheus).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" </dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust from https://rustup.rs (or Debian's cargo) and run again" >&2
    exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

log "dashboards: promtool check/test rules, generated JSON up to date"
promtool check rules dashboards/rules/maillog-recording.yml dashboards/rules/maillog-alerts.yml
promtool test rules dashboards/rules/tests/*.yml
python3 dashboards/generate.py --check

# cargo test includes tests/dashboards.rs: every PromQL expression of the
# dashboards and rules against the exporter's real metric names, the
# dashboard JSON structure, and a real Prometheus scraping the exporter.
# Package lists for `apt-get download` of exim4 (skipped when its .debs
# are already in the cache).
export EXIM_DEB_CACHE="${EXIM_DEB_CACHE:-$PWD/target/exim-debs}"
if ! ls "$EXIM_DEB_CACHE"/exim4-daemon-light_*.deb >/dev/null 2>&1 \
    && ! apt-cache show exim4-daemon-light >/dev/null 2>&1; then
    log "apt-get update (package lists for the real-Exim test)"
    as_root apt-get update -qq </dev/null
fi

log "cargo test"
if [ "$(id -u)" -eq 0 ]; then
    cargo test --all-targets --locked
else
    # The real-Postfix test (tests/postfix_live.rs) runs a private Postfix,
    # which needs root: run everything else as this user, then that test
    # alone under sudo, with its own target directory outside the tree so
    # that no root-owned file lands in target/.
    MAILLOG_SKIP_POSTFIX=1 MAILLOG_SKIP_EXIM=1 cargo test --all-targets --locked
    log "cargo test postfix_live and exim_live (as root, via sudo)"
    sudo -n env "PATH=$PATH" "HOME=$HOME" "EXIM_DEB_CACHE=${TMPDIR:-/tmp}/maillog_exporter-exim-debs" \
        CARGO_TARGET_DIR="${TMPDIR:-/tmp}/maillog_exporter-root-target" \
        cargo test --locked --test tests -- postfix_live exim_live
fi

log "soak benchmark, 30-second version (benches/soak.sh)"
SOAK_SECONDS=30 benches/soak.sh

log "all tests passed"
