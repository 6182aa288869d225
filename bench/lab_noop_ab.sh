#!/usr/bin/env bash
# Two settings of a no-op site.yml side by side, on the running lab: runs alternate A, B, A, B, ... so
# both see the same noise, and the medians and the ratio B/A are printed (wall time, and the controller's
# CPU time: ansible-playbook and its workers, user + system; the hosts' containers are not counted).
#
#   bench/lab_noop_ab.sh RUNS 'A-ENV' 'B-ENV'
#   e.g. bench/lab_noop_ab.sh 3 'ANSIBLE_INJECT_FACT_VARS=True' 'ANSIBLE_INJECT_FACT_VARS=False'
#
# Each ENV is a space-separated list of NAME=VALUE put in ansible-playbook's environment. The lab must be
# up and converged (tools/lab.sh up); a run that fails or changes something stops the benchmark.
set -euo pipefail
# shellcheck source=tools/lib.sh
. "${BASH_SOURCE[0]%/*}/../tools/lib.sh"
cd "$(dirname "$0")/.."
[ $# -eq 3 ] || die "usage: $0 RUNS 'A-ENV' 'B-ENV'"
RUNS="$1"
OUT="${QWEN3VL_BENCH_DIR:-.cache/bench}"
mkdir -p "$OUT"
declare -A walls cpus

one_run() { # label env i
  local label="$1" i="$3" log="$OUT/ab-$1-$3.log" times="$OUT/ab-$1-$3.time" wall user sys cpu assignments
  read -r -a assignments <<<"$2"
  env "${assignments[@]}" /usr/bin/time -o "$times" -f "%e %U %S" \
    .venv/bin/ansible-playbook -i inventories/lab site.yml >"$log" 2>&1 || die "$label run $i failed: see $log"
  sed -n '/PLAY RECAP/,$p' "$log" | grep -q "changed=[1-9]" && die "$label run $i changed something: see $log"
  read -r wall user sys <"$times"
  cpu=$(echo "$user + $sys" | bc)
  walls[$label]+="$wall "
  cpus[$label]+="$cpu "
  log "$label run $i: wall ${wall}s, controller CPU ${cpu}s"
}

for i in $(seq 1 "$RUNS"); do
  one_run A "$2" "$i"
  one_run B "$3" "$i"
done
# shellcheck disable=SC2086 # each list is the runs' numbers, separated by spaces
for what in wall cpu; do
  if [ "$what" = wall ]; then a=$(median ${walls[A]}); b=$(median ${walls[B]})
  else a=$(median ${cpus[A]}); b=$(median ${cpus[B]}); fi
  printf '%s, median of %s runs: A (%s) %ss, B (%s) %ss, B/A = %s\n' "$what" "$RUNS" "$2" "$a" "$3" "$b" \
    "$(echo "scale=2; $b / $a" | bc)"
done
