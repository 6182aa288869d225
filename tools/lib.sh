# shellcheck shell=bash
# The shell prelude of the project's scripts: log, die, need_root, apt_install and median, every message
# prefixed with the script's name. Sourced, never run:
#   . "${BASH_SOURCE[0]%/*}/lib.sh"              (a script in tools/)
#   . "${BASH_SOURCE[0]%/*}/../../tools/lib.sh"  (tests/vm/build-vm.sh)
# Only bash built-ins here: the set-up scripts' tests run them with a PATH that lacks most tools.
QWEN3VL_SCRIPT="${QWEN3VL_SCRIPT:-${0##*/}}"
QWEN3VL_SCRIPT="${QWEN3VL_SCRIPT%.sh}"

log() { echo "$QWEN3VL_SCRIPT: $*" >&2; }
die() { echo "$QWEN3VL_SCRIPT: ERROR: $*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "$1 needs root (run as root or with sudo); current uid is $(id -u)"
}

# apt_install PACKAGE...: install from the distribution (Debian/Ubuntu), or die saying what to do instead.
apt_install() {
  command -v apt-get >/dev/null 2>&1 \
    || die "apt-get not found: this script supports Debian/Ubuntu hosts only; install $* by hand"
  need_root "installing $*"
  log "installing $* from the distribution"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

# median NUMBER...: the median of the numbers (the benchmarks in bench/; uses sort and awk).
median() {
  printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
