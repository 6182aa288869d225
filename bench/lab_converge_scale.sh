#!/usr/bin/env bash
# How a converge that changes nothing grows with the number of GPU hosts, on the local lab.
#
#   bench/lab_converge_scale.sh [RUNS]     (default 3; takes 15-25 minutes; removes any running lab)
#
# Brings the lab up with 2 GPU hosts (inventories/lab), times RUNS no-op `site.yml` runs, takes it down,
# does the same with 4 (plus tests/lab/more-gpus.yml), and prints each run, the medians, the tasks per
# host and the ratio 4/2. The two labs cannot exist side by side (the 4-host lab holds the 2-host one),
# so the runs are sequential: run it on a quiet machine, and read the ratio rather than the seconds.
set -euo pipefail
# shellcheck source=tools/lib.sh
. "${BASH_SOURCE[0]%/*}/../tools/lib.sh"
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
OUT="${QWEN3VL_BENCH_DIR:-.cache/bench}"
mkdir -p "$OUT"
declare -A medians

noop_runs() { # label inventory...
  local label="$1"; shift
  local inv=() src times=() i t0 t1 secs rc
  for src in "$@"; do inv+=(-i "$src"); done
  for i in $(seq 1 "$RUNS"); do
    t0=$(date +%s.%N)
    rc=0; .venv/bin/ansible-playbook "${inv[@]}" site.yml >"$OUT/$label-$i.log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    secs=$(echo "$t1 - $t0" | bc)
    [ "$rc" -eq 0 ] || die "$label run $i failed (rc $rc): see $OUT/$label-$i.log"
    grep -q "changed=[1-9]" <(sed -n '/PLAY RECAP/,$p' "$OUT/$label-$i.log") \
      && die "$label run $i changed something: see $OUT/$label-$i.log"
    log "$label run $i: ${secs}s, tasks on gpu1: $(sed -n '/PLAY RECAP/,$p' "$OUT/$label-$i.log" | awk '/^gpu1 /{print $3, $7}')"
    times+=("$secs")
  done
  medians[$label]=$(median "${times[@]}")
}

lab() { QWEN3VL_LAB_INVENTORY="$1" tools/lab.sh "${@:2}" >"$OUT/lab-$2.log" 2>&1 || die "tools/lab.sh $2 failed: see $OUT/lab-$2.log"; }

ALL="inventories/lab tests/lab/more-gpus.yml"
lab "$ALL" down
lab "inventories/lab" up
noop_runs gpu2 inventories/lab
lab "$ALL" down
lab "$ALL" up
noop_runs gpu4 inventories/lab tests/lab/more-gpus.yml
lab "$ALL" down
printf 'no-op site.yml, median of %s runs: 2 GPU hosts %ss, 4 GPU hosts %ss, ratio 4/2 = %s\n' "$RUNS" \
  "${medians[gpu2]}" "${medians[gpu4]}" "$(echo "scale=2; ${medians[gpu4]} / ${medians[gpu2]}" | bc)"
