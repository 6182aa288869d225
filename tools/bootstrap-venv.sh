#!/usr/bin/env bash
# Create (or refresh) the project's Python environment in .venv from requirements.txt.
# Skipped when .venv already holds exactly this requirements.txt (a stamp records its hash).
set -euo pipefail
# shellcheck source=tools/lib.sh
. "${BASH_SOURCE[0]%/*}/lib.sh"
cd "$(dirname "$0")/.."
VENV="${QWEN3VL_VENV:-.venv}"
PY="${PYTHON:-python3}"
# FQCN resolution from a checkout: .cache/collections/ansible_collections/qwen3vl/ha -> this repo
# (ansible.cfg and molecule put .cache/collections on the collections path).
mkdir -p .cache/collections/ansible_collections/qwen3vl
ln -sfn ../../../.. .cache/collections/ansible_collections/qwen3vl/ha
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
stamp="$VENV/.requirements.sha256"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  log "$VENV is up to date"
  exit 0
fi
command -v "$PY" >/dev/null 2>&1 || die "$PY not found"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python >= 3.11 needed, $PY is $("$PY" -V 2>&1)"
if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' 2>/dev/null; then
  die "$PY has no venv/ensurepip (Debian: apt-get install python3-venv)"
fi
log "creating $VENV from requirements.txt"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -r requirements.txt
echo "$want" >"$stamp"
log "done ($("$VENV/bin/ansible" --version | sed -n 1p))"
