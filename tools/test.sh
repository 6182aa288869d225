#!/usr/bin/env bash
# The test command: sets up what is missing (venv, Docker engine, base image), then runs every gate.
#
#   tools/test.sh                 everything
#   tools/test.sh --quick         static checks and unit tests only (no containers)
#   QWEN3VL_SKIP="lab sanity" tools/test.sh    skip named stages
#   QWEN3VL_SERIAL=1 tools/test.sh             one stage at a time (for timing a stage alone)
#
# Stages: yamllint ruff ansible-lint sanity unit collection molecule-<scenario> lab vm drills. Every stage runs
# even when an earlier one failed; the exit status is non-zero when any failed. The last line reads
# "N passed, N failed" (stages).
#
# The machine is shared in two phases:
#   phase 1, two lanes side by side (each keeps the two cores busy; together they saturate them):
#     lane 1: the molecule scenarios that measure no time (but modules), then the VM
#     lane 2: molecule modules, webui, then the lab (webui and the lab build the stand-in images: one at a time)
#   (in the clean-clone run at 1d629b4 the stages added up to 53 min in lane 1 and 49 min in lane 2)
#   phase 2, side by side:
#     alone: the drills (on the lab the lab stage left up; it takes it down), then molecule keepalived and
#            nginx_lb (their failover bounds are derived from the settings and measured in tenths of a
#            second: no other container stage runs beside them, from create to destroy: a VRRP pair with
#            0.1 s adverts left idle on a starved machine flaps, which is not what those tests are about)
#     quiet: the static checks and the unit tests, at the lowest CPU priority (nice 19). They start no
#            container, so the kernel gives them only the CPU the timing-sensitive stages leave idle (one
#            of those keeps about one core busy); in phase 1 they would take CPU from the lanes instead.
# A stage's result line gives its wall time and how busy the whole machine's CPUs were while it ran.
# Each stage writes its output to .cache/test-logs/<stage>.log; a line is printed when it ends, and every
# log is printed in full, in stage order, at the end.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
QUICK=0; [ "${1:-}" = "--quick" ] && QUICK=1
SKIP=" ${QWEN3VL_SKIP:-} "
LOGS=.cache/test-logs
ALONE=" drills molecule-keepalived molecule-nginx_lb "
QUIET=" yamllint ruff ansible-lint sanity unit collection "
LANE2=" molecule-modules molecule-webui lab "

# command NAME: what the stage NAME runs
command_of() {
  case "$1" in
    yamllint) yamllint --strict . ;;
    ruff) ruff check . && ruff format --check . ;;
    ansible-lint) ansible-lint ;;
    sanity) tools/sanity.sh ;;
    unit) python -m pytest -q --durations=10 tests/unit ;;
    collection) python -m pytest -q tests/integration ;;
    molecule-*) molecule test -s "${1#molecule-}" ;;
    # the lab stays up for the drills stage, which runs alone (it times the VIP's move) and takes it down
    lab) QWEN3VL_KEEP_LAB=1 python -m pytest -q --durations=0 tests/lab/test_lab.py ;;
    drills) python -m pytest -q -s --durations=0 tests/lab/test_drills.py ;;
    vm) python -m pytest -q -s --durations=0 tests/vm ;;
    *) echo "test: no stage $1" >&2; return 2 ;;
  esac
}

# cpu_ticks: "busy total" jiffies of all CPUs since boot (/proc/stat), for the busy share of a stage
cpu_ticks() {
  awk '/^cpu /{busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6; exit}' /proc/stat
}

# stage NAME: run one stage, its output to its log, the result to $LOGS/NAME.result
stage() {
  local name="$1"
  if [[ "$SKIP" == *" $name "* ]]; then echo "skipped (QWEN3VL_SKIP)" > "$LOGS/$name.result"; return; fi
  echo "=== $name: started $(date +%T)"
  local t0=$SECONDS status=ok busy0 total0 busy1 total1
  read -r busy0 total0 < <(cpu_ticks)
  { echo "=== $name"; command_of "$name"; } > "$LOGS/$name.log" 2>&1 || status=FAILED
  read -r busy1 total1 < <(cpu_ticks)
  local cpu=$(( (busy1 - busy0) * 100 / (total1 - total0 > 0 ? total1 - total0 : 1) ))
  echo "$status $((SECONDS - t0))s (cpu busy ${cpu}%)" > "$LOGS/$name.result"
  echo "=== $name: $status after $((SECONDS - t0))s (cpu busy ${cpu}%)"
}

# run_stages NAME...: the named stages, one after another
run_stages() {
  local name
  for name in "$@"; do stage "$name"; done
}

t0=$SECONDS
tools/bootstrap-venv.sh || { echo "test: could not create .venv" >&2; exit 1; }
# shellcheck disable=SC1091
source .venv/bin/activate
timings=("setup-venv $((SECONDS - t0))s")
if [ "$QUICK" -eq 0 ]; then
  t0=$SECONDS
  tools/bootstrap-docker.sh || { echo "test: no Docker engine or base image" >&2; exit 1; }
  timings+=("setup-docker+image $((SECONDS - t0))s")
fi
rm -rf "$LOGS"; mkdir -p "$LOGS"

order=(yamllint ruff ansible-lint sanity unit collection)
if [ "$QUICK" -eq 0 ]; then
  for scenario in molecule/*/molecule.yml; do
    order+=("molecule-$(basename "$(dirname "$scenario")")")
  done
  order+=(lab vm drills)
fi

lane1=(); lane2=(); alone=(); quiet=()
for name in "${order[@]}"; do
  if [[ "$ALONE" == *" $name "* ]]; then continue
  elif [[ "$QUIET" == *" $name "* ]]; then quiet+=("$name")
  elif [[ "$LANE2" == *" $name "* ]]; then lane2+=("$name")
  else lane1+=("$name"); fi
done
for name in $ALONE; do  # in ALONE's order (the drills first: the lab stage left the lab up for them)
  [[ " ${order[*]} " == *" $name "* ]] && alone+=("$name")
done

t0=$SECONDS
if [ "${QWEN3VL_SERIAL:-0}" = 1 ] || [ "$QUICK" -eq 1 ]; then
  run_stages "${order[@]}"
else
  run_stages "${lane1[@]}" & pid1=$!
  run_stages "${lane2[@]}" & pid2=$!
  wait "$pid1" "$pid2"
  timings+=("phase 1 (wall) $((SECONDS - t0))s")
  t1=$SECONDS
  (renice -n 19 -p "$BASHPID" >/dev/null; run_stages "${quiet[@]}") & pid3=$!
  run_stages "${alone[@]}"
  wait "$pid3"
  timings+=("phase 2 (wall) $((SECONDS - t1))s")
fi
timings+=("stages (wall) $((SECONDS - t0))s")

passed=0; failed=0; failures=()
for name in "${order[@]}"; do
  result="$(cat "$LOGS/$name.result" 2>/dev/null || echo "FAILED (no result)")"
  if [ -f "$LOGS/$name.log" ]; then echo; cat "$LOGS/$name.log"; fi
  timings+=("$name $result")
  case "$result" in
    ok*) passed=$((passed + 1)) ;;
    skipped*) ;;
    *) failed=$((failed + 1)); failures+=("$name") ;;
  esac
done

echo; echo "=== timings"; printf '  %s\n' "${timings[@]}"
[ "$failed" -gt 0 ] && echo "failed stages: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
