#!/usr/bin/env bash
# Wall time and peak memory of planning a file (a dry run): the median of RUNS runs, each
# binary given taking turns so that a noisy neighbour hurts them alike.
#
#   bash benches/plan.sh RUNS FILE "ARGS" BIN [BIN...]
#   e.g. bash benches/plan.sh 7 big.csv "" target/release/velt-group-sync /tmp/old-binary
#
# Prints, per binary: median seconds (min-max) and median peak RSS in MB.
set -euo pipefail
runs=$1 file=$2 args=$3
shift 3
declare -A times mems
for ((i = 0; i < runs; i++)); do
  for bin in "$@"; do
    # shellcheck disable=SC2086
    out=$( { /usr/bin/time -f "%x %e %M" "$bin" sync "$file" --dry-run --report /tmp/plan-bench-report.csv -q $args >/dev/null; } 2>&1 | tail -1)
    if [[ ${out%% *} != 0 ]]; then
      echo "$bin failed: $( "$bin" sync "$file" --dry-run --report /tmp/plan-bench-report.csv -q $args 2>&1 >/dev/null | head -3)" >&2
      exit 1
    fi
    out=${out#* }
    times[$bin]+="${out%% *} "
    mems[$bin]+="${out##* } "
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], "(" a[1] "-" a[NR] ")"}'; }
for bin in "$@"; do
  t=$(echo "${times[$bin]}" | median)
  m=$(echo "${mems[$bin]}" | median | awk '{printf "%.0f", $1/1024}')
  echo "$bin: median ${t} s, ${m} MB"
done
