#!/usr/bin/env bash
# ansible-test sanity on the collection, with the local Python (no container images).
# ansible-test needs the collection at .../ansible_collections/qwen3vl/ha, so the checkout's files
# (tracked and untracked, minus what .gitignore ignores) are copied into such a tree first.
set -euo pipefail
# shellcheck source=tools/lib.sh
. "${BASH_SOURCE[0]%/*}/lib.sh"
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
# one tree per run, so runs side by side (helpers, a second checkout user) do not remove each other's
WORK="${QWEN3VL_SANITY_DIR:-$ROOT/.cache/sanity.$$}"
SANITY_VENV="$ROOT/.cache/sanity-venv"
ANSIBLE_CORE="$("$ROOT/.venv/bin/python" -c 'import ansible.release as r; print(r.__version__)')"

# ansible-test gets its own venv with the same ansible-core as .venv (its sanity requirements
# would otherwise be installed into .venv and change the pinned tools).
if [ "$("$SANITY_VENV/bin/python" -c 'import ansible.release as r; print(r.__version__)' 2>/dev/null)" != "$ANSIBLE_CORE" ]; then
  rm -rf "$SANITY_VENV"
  python3 -m venv "$SANITY_VENV"
  "$SANITY_VENV/bin/pip" install -q "ansible-core==$ANSIBLE_CORE" 2>&1 | grep -v '^WARNING: Location' || true
fi
export PATH="$SANITY_VENV/bin:$PATH"
# Its pip bootstrap script lives on a host that is unreachable here: put our stand-in in its cache.
PIP_VERSION="$(python3 - <<'PY'
import re, ansible_test, pathlib
src = (pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)"
mkdir -p ~/.ansible/test/cache
cp "$ROOT/tools/ansible-test/get_pip_standin.py" ~/.ansible/test/cache/"get_pip_${PIP_VERSION//./_}.py"
DEST="$WORK/ansible_collections/qwen3vl/ha"
rm -rf "$WORK" && mkdir -p "$DEST"
[ -n "${QWEN3VL_SANITY_DIR:-}" ] || trap 'rm -rf "$WORK"' EXIT
# (tracked files deleted in the work tree but not yet in the index are left out)
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -c | tar -C "$DEST" -x || die "copying the tree failed"
cd "$DEST"
# ansible-test lists files through git when it finds a repository; give it one.
git init -q && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
ansible-test sanity --color no --python "$PY" --local --requirements "$@"
