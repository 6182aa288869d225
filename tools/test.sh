#!/usr/bin/env bash
# The test command: sets up what is missing (venv, Docker engine, base image), then runs every gate.
#
#   tools/test.sh                 everything
#   tools/test.sh --quick         static checks and unit tests only (no containers)
#   QWEN3VL_SKIP="lab sanity" tools/test.sh    skip named stages
#
# Stages: yamllint ruff ansible-lint sanity unit collection molecule lab vm. Every stage runs even when
# an earlier one failed; the exit status is non-zero when any failed. The last line reads
# "N passed, N failed" (stages).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
QUICK=0; [ "${1:-}" = "--quick" ] && QUICK=1
SKIP=" ${QWEN3VL_SKIP:-} "
passed=0; failed=0; failures=(); timings=()

stage() {
  local name="$1"; shift
  if [[ "$SKIP" == *" $name "* ]]; then echo "=== $name: skipped (QWEN3VL_SKIP)"; return; fi
  echo; echo "=== $name: $*"
  local t0=$SECONDS
  if "$@"; then passed=$((passed + 1)); timings+=("$name ok $((SECONDS - t0))s")
  else failed=$((failed + 1)); failures+=("$name"); timings+=("$name FAILED $((SECONDS - t0))s"); fi
}

t0=$SECONDS
tools/bootstrap-venv.sh || { echo "test: could not create .venv" >&2; exit 1; }
# shellcheck disable=SC1091
source .venv/bin/activate
timings+=("setup-venv $((SECONDS - t0))s")
if [ "$QUICK" -eq 0 ]; then
  t0=$SECONDS
  tools/bootstrap-docker.sh || { echo "test: no Docker engine or base image" >&2; exit 1; }
  timings+=("setup-docker+image $((SECONDS - t0))s")
fi

stage yamllint yamllint --strict .
stage ruff bash -c 'ruff check . && ruff format --check .'
stage ansible-lint ansible-lint
stage sanity tools/sanity.sh
stage unit python -m pytest -q tests/unit
stage collection python -m pytest -q tests/integration
if [ "$QUICK" -eq 0 ]; then
  for scenario in molecule/*/molecule.yml; do
    s="$(basename "$(dirname "$scenario")")"
    stage "molecule-$s" molecule test -s "$s"
  done
  stage lab python -m pytest -q tests/lab
  stage vm python -m pytest -q -s tests/vm
fi

echo; echo "=== timings"; printf '  %s\n' "${timings[@]}"
[ "$failed" -gt 0 ] && echo "failed stages: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
