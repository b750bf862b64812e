#!/usr/bin/env bash
# Per-minute quotas in every window shape, in real time (issue 25): 30 a minute without
# Retry-After over 90 requests, then 120 a minute with Retry-After: 60 over 400. Each runs all
# six shapes at once (they wait on their own windows); about 6 minutes in all.
#
#   bash benches/quota.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example bench_quota
target/release/examples/bench_quota 30 90
target/release/examples/bench_quota 120 400 --retry-after 60
