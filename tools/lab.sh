#!/usr/bin/env bash
# The local lab: the whole stack on six systemd containers on this machine.
#
#   tools/lab.sh up       set up what is missing (venv, Docker engine, base image), create the lab
#                         hosts, run site.yml against inventories/lab, print what runs where
#   tools/lab.sh converge run site.yml against the existing lab again
#   tools/lab.sh summary  print what runs where
#   tools/lab.sh down     remove the lab's containers, volumes and network
#
# Extra arguments after `up` or `converge` go to ansible-playbook (e.g. --check, --diff, -v).
set -euo pipefail
# shellcheck source=tools/lib.sh
. "${BASH_SOURCE[0]%/*}/lib.sh"
cd "$(dirname "$0")/.."
# More hosts by inventory: QWEN3VL_LAB_INVENTORY="inventories/lab tests/lab/more-gpus.yml" (4 GPU hosts)
read -r -a _lab_sources <<<"${QWEN3VL_LAB_INVENTORY:-inventories/lab}"
INV=()
for _src in "${_lab_sources[@]}"; do INV+=(-i "$_src"); done

step() { printf '\n=== lab: %s\n' "$*" >&2; }
timed() { local t0=$SECONDS; "$@"; log "$* took $((SECONDS - t0))s"; }

setup() {
  timed tools/bootstrap-venv.sh
  timed tools/bootstrap-docker.sh
  timed tools/build-standin-images.sh
}

venv() { # shellcheck disable=SC1091
  source .venv/bin/activate
}

summary() {
  ansible-playbook "${INV[@]}" tests/lab/summary.yml >/dev/null || { log "summary failed"; return 1; }
  cat .cache/lab-summary.txt
}

case "${1:-}" in
  up)
    shift
    setup; venv
    step "creating the lab hosts"
    timed ansible-playbook "${INV[@]}" tests/lab/up.yml
    step "running site.yml"
    timed ansible-playbook "${INV[@]}" site.yml "$@"
    step "summary"
    summary
    ;;
  converge)
    shift; venv
    timed ansible-playbook "${INV[@]}" site.yml "$@"
    ;;
  summary)
    venv; summary
    ;;
  down)
    if [ ! -x .venv/bin/ansible-playbook ] || ! docker info >/dev/null 2>&1; then
      log "nothing to remove (no venv or no Docker engine)"; exit 0
    fi
    venv
    timed ansible-playbook "${INV[@]}" tests/lab/down.yml
    ;;
  *)
    echo "usage: $0 up|converge|summary|down [ansible-playbook args]" >&2; exit 2 ;;
esac
