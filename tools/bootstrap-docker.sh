#!/usr/bin/env bash
# Make a Docker engine available and build the systemd base image that molecule and the lab use.
#
#   tools/bootstrap-docker.sh            engine + image (skips what is already there)
#   tools/bootstrap-docker.sh engine     only the engine
#   tools/bootstrap-docker.sh image      only the image (needs a running engine)
#   tools/bootstrap-docker.sh recipe     print the image recipe's hash (what the cache compares)
#
# Engine: when `docker info` fails, install Debian's docker.io (if dockerd is missing) and start
# dockerd in the background with its log in $QWEN3VL_DOCKERD_LOG, then wait until it answers.
# Image: debootstrap + `docker import`. The image carries a label with the hash of its recipe
# (the variables below); it is rebuilt only when that hash changes or the image is missing.
set -euo pipefail

IMAGE="${QWEN3VL_BASE_IMAGE:-qwen3vl-ha/systemd-debian:bookworm}"
SUITE="bookworm"
MIRROR="${QWEN3VL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-apt,systemd,systemd-sysv,dbus,iproute2,procps,sudo,ca-certificates"
DOCKERD_LOG="${QWEN3VL_DOCKERD_LOG:-/var/log/qwen3vl-dockerd.log}"
READY_TIMEOUT="${QWEN3VL_DOCKERD_TIMEOUT:-90}"
# test hosts keep the bytecode of what Python imports from zip archives (Ansible's modules): see the file
ZIPCACHE="$(cd "${BASH_SOURCE[0]%/*}" && pwd)/test-host/qwen3vl_test_zipcache.py"

# shellcheck source=tools/lib.sh
. "${BASH_SOURCE[0]%/*}/lib.sh"

engine() {
  if docker info >/dev/null 2>&1; then
    log "engine already answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
    return 0
  fi
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  command -v docker >/dev/null 2>&1 || die "docker client missing after install"
  need_root "starting dockerd"
  if pgrep -x dockerd >/dev/null 2>&1; then
    log "dockerd is running but not answering yet; waiting"
  else
    log "starting dockerd (log: $DOCKERD_LOG)"
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 < /dev/null &
  fi
  local waited=0
  until docker info >/dev/null 2>&1; do
    if [ "$waited" -ge "$READY_TIMEOUT" ]; then
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      die "dockerd did not answer within ${READY_TIMEOUT}s (see $DOCKERD_LOG)"
    fi
    sleep 1; waited=$((waited + 1))
  done
  log "engine ready after ${waited}s ($(docker version --format '{{.Server.Version}}'))"
}

recipe_hash() {
  # Everything that shapes the image; change any of it and the image is rebuilt.
  printf '%s\n' "v2" "$SUITE" "$MIRROR" "$PACKAGES" "$(declare -f build_rootfs)" "$(cat "$ZIPCACHE")" | sha256sum | cut -c1-16
}

build_rootfs() {
  local dir="$1"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1 \
    || { tail -n 20 "$dir.log" >&2; die "debootstrap failed (log above)"; }
  # A container has no console or udev; these units only fail or wait there.
  for unit in getty@tty1.service console-getty.service systemd-udevd.service \
              systemd-udev-trigger.service systemd-remount-fs.service; do
    ln -sf /dev/null "$dir/etc/systemd/system/$unit"
  done
  : >"$dir/etc/machine-id"            # a fresh id per container at first boot
  local python site
  python="$(cd "$dir/usr/lib" && ls -d python3.[0-9]* | sort -V | tail -n 1)"
  site="$dir/usr/local/lib/$python/dist-packages"
  mkdir -p "$site"
  cp "$ZIPCACHE" "$site/"
  echo "import qwen3vl_test_zipcache" >"$site/qwen3vl-test-zipcache.pth"
  # no package lists and no stale caches: the first apt run on a test host must update
  rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/cache/apt/"*.bin "$dir/var/lib/apt/lists/"*
}

image() {
  docker info >/dev/null 2>&1 || die "no Docker engine answers; run '$0 engine' first"
  local want have
  want="$(recipe_hash)"
  have="$(docker image inspect --format '{{ index .Config.Labels "qwen3vl.recipe" }}' "$IMAGE" 2>/dev/null || true)"
  if [ "$have" = "$want" ]; then
    log "image $IMAGE is up to date (recipe $want)"
    return 0
  fi
  if [ -n "$have" ]; then
    log "image $IMAGE has recipe $have, want $want: rebuilding"
  else
    log "image $IMAGE missing: building (recipe $want)"
  fi
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  need_root "debootstrap"
  ROOTFS="$(mktemp -d /var/tmp/qwen3vl-rootfs.XXXXXX)"
  trap 'rm -rf "$ROOTFS" "$ROOTFS.log"' EXIT
  build_rootfs "$ROOTFS"
  tar -C "$ROOTFS" -c . | docker import \
      -c 'CMD ["/lib/systemd/systemd"]' \
      -c 'ENV container=docker' \
      -c "LABEL qwen3vl.recipe=$want" - "$IMAGE" >/dev/null
  log "built $IMAGE (recipe $want)"
}

case "${1:-all}" in
  engine) engine ;;
  image) image ;;
  all) engine; image ;;
  recipe) recipe_hash ;;
  *) die "usage: $0 [all|engine|image|recipe]" ;;
esac
