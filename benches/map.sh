#!/usr/bin/env bash
# How long a large --group-map takes to read (issue 24: 1,000,000 rows under 2 s): the median
# of RUNS runs of `validate` on a one-row export with a map of ROWS rows.
#
#   bash benches/map.sh [RUNS] [ROWS] [BIN]
#   e.g. bash benches/map.sh 5 1000000 target/release/velt-group-sync
set -euo pipefail
runs=${1:-5} rows=${2:-1000000} bin=${3:-target/release/velt-group-sync}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
awk -v n="$rows" 'BEGIN { print "source,organizationUserGroupId,name"
                         for (i = 0; i < n; i++) printf "Department %d,g%d,Dept %d\n", i, i, i }' >"$dir/map.csv"
printf 'userId,dept\nu1,Department 5\n' >"$dir/in.csv"
times=() mems=()
for ((i = 0; i < runs; i++)); do
  out=$( { /usr/bin/time -f "%e %M" "$bin" validate "$dir/in.csv" --org acme --group-column dept \
             --group-map "$dir/map.csv" >/dev/null; } 2>&1 | tail -1)
  times+=("${out% *}") mems+=("${out#* }")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "group map of $rows rows: median $(median "${times[@]}") s over $runs runs (min $(printf '%s\n' "${times[@]}" | sort -n | head -1), max $(printf '%s\n' "${times[@]}" | sort -n | tail -1)), median peak $(( $(median "${mems[@]}") / 1024 )) MB"
