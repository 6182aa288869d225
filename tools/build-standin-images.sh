#!/usr/bin/env bash
# Build the lab's TEST STAND-IN images (not vLLM, not the production WebUI) and save them to a tar.
#
#   tools/build-standin-images.sh          engine + base image, both stand-in images, the tar
#   tools/build-standin-images.sh hash     print the stand-in hash (what the cache compares)
#
# Images: qwen3vl-ha/standin-vllm:test and qwen3vl-ha/standin-webui:test, from tests/standin/Dockerfile
# on top of the local base image (tools/bootstrap-docker.sh builds it; nothing is pulled). Each image
# carries the label qwen3vl.standin.hash (sha256 of the files under tests/standin/, 16 hex digits)
# and qwen3vl.standin.base (the base image's id); it is rebuilt only when one of them differs.
# Tar: `docker save` of both images, for nested engines on test hosts that `docker load` it (the
# air-gapped path of the webui role). Rewritten only when the images changed or it is missing.
# The tar's path is printed on stdout at the end; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

SRC="tests/standin"
BASE_IMAGE="${QWEN3VL_BASE_IMAGE:-qwen3vl-ha/systemd-debian:bookworm}"
VLLM_IMAGE="${QWEN3VL_STANDIN_VLLM_IMAGE:-qwen3vl-ha/standin-vllm:test}"
WEBUI_IMAGE="${QWEN3VL_STANDIN_WEBUI_IMAGE:-qwen3vl-ha/standin-webui:test}"
TAR="${QWEN3VL_STANDIN_TAR:-.cache/images/qwen3vl-standin-images.tar}"

# shellcheck source=tools/lib.sh
. "${BASH_SOURCE[0]%/*}/lib.sh"

standin_hash() {
  # Names and contents of every file under tests/standin/ (caches excluded), in a stable order.
  [ -f "$SRC/Dockerfile" ] || die "$SRC/Dockerfile not found (run from a checkout of the collection)"
  (cd "$SRC" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

label() {  # label IMAGE KEY -> value, empty when the image or the label is missing
  docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

build_one() {  # build_one TARGET IMAGE HASH BASE_ID -> 0 when it built, 1 when up to date
  local target="$1" image="$2" want="$3" base_id="$4" have have_base old_id new_id t0
  have="$(label "$image" qwen3vl.standin.hash)"
  have_base="$(label "$image" qwen3vl.standin.base)"
  if [ "$have" = "$want" ] && [ "$have_base" = "$base_id" ]; then
    log "$image is up to date (stand-in hash $want)"
    return 1
  fi
  if [ -z "$have" ]; then
    log "$image missing: building (stand-in hash $want)"
  elif [ "$have" != "$want" ]; then
    log "$image has stand-in hash $have, want $want: rebuilding"
  else
    log "$image was built on another base image: rebuilding"
  fi
  old_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
  t0=$SECONDS
  DOCKER_BUILDKIT=0 docker build -q --target "$target" -t "$image" \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "STANDIN_HASH=$want" --build-arg "BASE_IMAGE_ID=$base_id" \
      "$SRC" >/dev/null || die "docker build --target $target failed"
  log "built $image in $((SECONDS - t0))s ($(docker image inspect --format '{{.Size}}' "$image") bytes)"
  new_id="$(docker image inspect --format '{{.Id}}' "$image")"
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    # the previous build is now untagged; drop it unless a container still uses it
    if docker rmi "$old_id" >/dev/null 2>&1; then log "removed the previous $image (${old_id:7:12})"; fi
  fi
  return 0
}

save_tar() {  # save_tar CHANGED: write the tar when images changed, the tar is missing or stale
  local changed="$1" ids ids_file="$TAR.ids" tmp t0
  ids="$(docker image inspect --format '{{.Id}}' "$VLLM_IMAGE" "$WEBUI_IMAGE" | tr '\n' ' ')"
  if [ "$changed" -eq 0 ] && [ -s "$TAR" ] && [ "$(cat "$ids_file" 2>/dev/null || true)" = "$ids" ]; then
    log "$TAR is up to date"
    return 0
  fi
  mkdir -p "$(dirname "$TAR")"
  tmp="$TAR.tmp.$$"
  t0=$SECONDS
  docker save -o "$tmp" "$VLLM_IMAGE" "$WEBUI_IMAGE" || { rm -f "$tmp"; die "docker save failed"; }
  chmod 0644 "$tmp"
  mv -f "$tmp" "$TAR"
  printf '%s\n' "$ids" >"$ids_file"
  log "wrote $TAR in $((SECONDS - t0))s ($(du -h "$TAR" | cut -f1))"
}

all() {
  tools/bootstrap-docker.sh all || die "no Docker engine or base image (tools/bootstrap-docker.sh failed)"
  local want base_id changed=0
  want="$(standin_hash)"
  base_id="$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE")" || die "base image $BASE_IMAGE missing"
  if build_one vllm "$VLLM_IMAGE" "$want" "$base_id"; then changed=1; fi
  if build_one webui "$WEBUI_IMAGE" "$want" "$base_id"; then changed=1; fi
  save_tar "$changed"
  realpath "$TAR"
}

case "${1:-all}" in
  all) all ;;
  hash) standin_hash ;;
  *) die "usage: $0 [all|hash]" ;;
esac
