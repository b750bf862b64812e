#!/usr/bin/env bash
# The `--rate auto` and known-rate figures of the README, in real time against the built-in
# emulator (token bucket of burst 5, 20-80 ms latency, Retry-After: 1): each case 3 times,
# medians printed last. About 30 minutes; two cases run side by side.
#   bash benches/rate.sh [OUT_DIR]
set -euo pipefail
out=${1:-target/bench-rate}
mkdir -p "$out"
cargo build --release --example bench_rate
b=target/release/examples/bench_rate
lane_a() {
  for l in 300 120 60; do "$b" "$l" auto 75 --runs 3 >"$out/auto-$l.txt" 2>/dev/null; done
  "$b" 120 auto 300 --runs 3 >"$out/auto-120-5min.txt" 2>/dev/null
}
lane_b() {
  for l in 15 5; do "$b" "$l" auto 75 --runs 3 >"$out/auto-$l.txt" 2>/dev/null; done
  for l in 60 120; do "$b" "$l" auto 100 --change 40 --runs 3 >"$out/change-$l.txt" 2>/dev/null; done
  for l in 100 200; do "$b" "$l" "$l" 60 --runs 3 >"$out/known-$l.txt" 2>/dev/null; done
}
lane_a &
lane_b
wait
for f in "$out"/*.txt; do echo "== $(basename "$f" .txt)"; tail -1 "$f"; done
