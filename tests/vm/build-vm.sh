#!/usr/bin/env bash
# Build what tests/vm needs: a small Debian 12 VM (kernel, initrd, ext4 root disk) that boots under
# qemu software emulation with a real kernel NFS client, and an NFS-Ganesha server image.
#
#   tests/vm/build-vm.sh            build what is missing or stale, then print KEY=VALUE lines
#   tests/vm/build-vm.sh recipe     print the VM recipe's hash (what the cache compares)
#
# Cache: $QWEN3VL_VM_CACHE (default .cache/vm/ in the repository) holds one folder per VM recipe
# hash with vmlinuz, initrd.img and root.img; it is rebuilt only when the recipe (the variables and
# functions below) changes. The Ganesha image carries the hash of its recipe as a label, like the
# base image of tools/bootstrap-docker.sh (which this script runs first for the engine and image).
#
# Host tools it installs from Debian when missing: qemu-system-x86, socat, e2fsprogs, debootstrap.
# Needs root (debootstrap, files owned by root in the disk image).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${QWEN3VL_VM_CACHE:-$REPO/.cache/vm}"
SUITE="bookworm"
MIRROR="${QWEN3VL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
VM_PACKAGES="systemd,systemd-sysv,udev,kmod,netbase,linux-image-cloud-amd64,initramfs-tools,nfs-common,iproute2,procps"
DISK_SIZE="1536M"
BASE_IMAGE="${QWEN3VL_BASE_IMAGE:-qwen3vl-ha/systemd-debian:bookworm}"
GANESHA_IMAGE="${QWEN3VL_VM_GANESHA_IMAGE:-qwen3vl-ha/vmtest-ganesha:bookworm}"
GANESHA_PACKAGES="nfs-ganesha nfs-ganesha-vfs"

# shellcheck source=tools/lib.sh
. "${BASH_SOURCE[0]%/*}/../../tools/lib.sh"

host_tools() {
  # command:package pairs; install the packages whose command is missing
  local pair missing=()
  for pair in qemu-system-x86_64:qemu-system-x86 socat:socat debugfs:e2fsprogs mkfs.ext4:e2fsprogs \
              debootstrap:debootstrap; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  apt_install "${missing[@]}"
}

# --- the guest -------------------------------------------------------------------------------

# The agent: reads "ID TIMEOUT BASE64-SCRIPT" lines on the second serial port (ttyS1, a socket on
# the host), runs each script with bash under that timeout, answers "QWEN3VL ID RC BASE64-OUTPUT".
# It starts once multi-user.target is reached and first says "QWEN3VL ready UPTIME".
agent_script() {
  cat <<'EOF'
#!/bin/bash
set -u
tty=/dev/ttyS1
stty -F "$tty" raw -echo
exec 3<>"$tty"
printf 'QWEN3VL ready %s\n' "$(cut -d' ' -f1 /proc/uptime)" >&3
while read -r id limit script <&3; do
  [ -n "${script:-}" ] || continue
  out="$(printf '%s' "$script" | base64 -d | timeout -k 5 "$limit" bash 2>&1)"
  rc=$?
  printf 'QWEN3VL %s %s %s\n' "$id" "$rc" "$(printf '%s' "$out" | base64 -w0)" >&3
done
EOF
}

configure_rootfs() {
  local dir="$1"
  echo qwen3vl-vm >"$dir/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 qwen3vl-vm\n' >"$dir/etc/hosts"
  echo 5b1f7a0c3e2d4c6b8a9f0e1d2c3b4a59 >"$dir/etc/machine-id"   # fixed: same guest every boot
  # fstab: the root disk only; the test writes the NFS line into each boot's copy of the disk
  printf '/dev/vda / ext4 rw,errors=remount-ro 0 0\n' >"$dir/etc/fstab"
  mkdir -p "$dir/srv/qwen3vl-data"
  # static address on qemu's user network: the NFS server is the guestfwd address 10.0.2.100
  mkdir -p "$dir/etc/systemd/network"
  printf '[Match]\nName=eth0\n\n[Network]\nAddress=10.0.2.15/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
    >"$dir/etc/systemd/network/10-eth0.network"
  agent_script >"$dir/usr/local/sbin/qwen3vl-agent"
  chmod 0755 "$dir/usr/local/sbin/qwen3vl-agent"
  printf '%s\n' '[Unit]' 'Description=qwen3vl test agent on ttyS1' 'After=multi-user.target' '' \
    '[Service]' 'Type=exec' 'ExecStart=/usr/local/sbin/qwen3vl-agent' '' \
    '[Install]' 'WantedBy=multi-user.target' >"$dir/etc/systemd/system/qwen3vl-agent.service"
  chroot "$dir" systemctl enable systemd-networkd.service systemd-networkd-wait-online.service \
    qwen3vl-agent.service >/dev/null 2>&1 || die "systemctl enable in the guest root failed"
  # nothing on the consoles, no timers that would reach for the network or the disk
  chroot "$dir" systemctl mask serial-getty@ttyS0.service serial-getty@ttyS1.service getty@tty1.service getty-static.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
    >/dev/null 2>&1 || die "systemctl mask in the guest root failed"
  rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/cache/apt/"*.bin "$dir/var/lib/apt/lists/"*
}

vm_recipe() {
  printf '%s\n' "v1" "$SUITE" "$MIRROR" "$VM_PACKAGES" "$DISK_SIZE" \
    "$(declare -f agent_script configure_rootfs build_vm)" | sha256sum | cut -c1-16
}

build_vm() {
  local out="$1" work="$1.tmp"
  rm -rf "$work"; mkdir -p "$work"
  log "debootstrap $SUITE with $VM_PACKAGES (about a minute)"
  debootstrap --variant=minbase --include="$VM_PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" \
      >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above, full log $work/debootstrap.log)"; }
  configure_rootfs "$work/rootfs"
  local kernel initrd
  kernel="$(find "$work/rootfs/boot" -name 'vmlinuz-*' | sort | tail -n 1)"
  initrd="$(find "$work/rootfs/boot" -name 'initrd.img-*' | sort | tail -n 1)"
  if [ -z "$kernel" ] || [ -z "$initrd" ]; then die "no kernel or initrd in $work/rootfs/boot"; fi
  cp "$kernel" "$work/vmlinuz"; cp "$initrd" "$work/initrd.img"
  mkfs.ext4 -q -F -L qwen3vl-root -d "$work/rootfs" "$work/root.img" "$DISK_SIZE" >&2 \
    || die "mkfs.ext4 -d failed"
  rm -rf "$work/rootfs" "$work/debootstrap.log"
  mv "$work" "$out"
}

vm() {
  local hash dir
  hash="$(vm_recipe)"
  dir="$CACHE/$hash"
  if [ -f "$dir/root.img" ] && [ -f "$dir/vmlinuz" ] && [ -f "$dir/initrd.img" ]; then
    log "VM image is up to date (recipe $hash)"
  else
    need_root "building the VM image"
    log "VM image missing or stale: building (recipe $hash)"
    local old
    for old in "$CACHE"/*/; do   # earlier recipes: drop them, they are 500 MB each
      if [ -d "$old" ] && [ "${old%/}" != "$dir" ]; then rm -rf "${old%/}"; fi
    done
    build_vm "$dir"
    log "built VM image in $dir"
  fi
  echo "KERNEL=$dir/vmlinuz"
  echo "INITRD=$dir/initrd.img"
  echo "ROOT_IMAGE=$dir/root.img"
}

# --- the server ------------------------------------------------------------------------------

ganesha_dockerfile() {
  printf 'FROM %s\n' "$BASE_IMAGE"
  printf 'RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends %s' \
    "$GANESHA_PACKAGES"
  printf ' && rm -rf /var/lib/apt/lists/* && mkdir -p /run/ganesha /var/lib/nfs/ganesha\n'
}

ganesha() {
  local want have base
  base="$(docker image inspect --format '{{ .Id }}' "$BASE_IMAGE" 2>/dev/null)" \
    || die "base image $BASE_IMAGE missing after tools/bootstrap-docker.sh"
  want="$(printf '%s\n' "v1" "$base" "$(ganesha_dockerfile)" | sha256sum | cut -c1-16)"
  have="$(docker image inspect --format '{{ index .Config.Labels "qwen3vl.recipe" }}' "$GANESHA_IMAGE" 2>/dev/null || true)"
  if [ "$have" = "$want" ]; then
    log "image $GANESHA_IMAGE is up to date (recipe $want)"
  else
    log "image $GANESHA_IMAGE missing or stale: building (recipe $want)"
    ganesha_dockerfile | docker build -q --label "qwen3vl.recipe=$want" -t "$GANESHA_IMAGE" - >/dev/null \
      || die "docker build of $GANESHA_IMAGE failed"
  fi
  echo "GANESHA_IMAGE=$GANESHA_IMAGE"
}

main() {
  host_tools
  "$REPO/tools/bootstrap-docker.sh" >&2 || die "tools/bootstrap-docker.sh failed (no Docker engine or base image)"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock -w 1800 9 || die "another build-vm.sh holds $CACHE/.lock"
  vm
  ganesha
}

case "${1:-all}" in
  all) main ;;
  recipe) vm_recipe ;;
  *) die "usage: $0 [all|recipe]" ;;
esac
