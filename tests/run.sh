#!/usr/bin/env bash
# The test command (README quick start): installs the real components the tests talk to when
# they are missing -- Debian's prometheus-pushgateway, for the --metrics-push test -- then
# runs `cargo test` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus-pushgateway >/dev/null 2>&1; then
    echo "tests/run.sh: installing prometheus-pushgateway (a test pushes metrics to a real one)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus-pushgateway >/dev/null
fi
# Most integration tests wait (on a rate, a latency, a child process) rather than compute:
# twice as many test threads as this machine's cores keep both busy (a value set outside wins).
cores=$(nproc 2>/dev/null || echo 2)
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$((2 * cores))}"
exec cargo test "$@"
