#!/bin/sh
# Builds a TEST STAND-IN of NVIDIA's container-toolkit apt repository, on the test host itself
# (NVIDIA's repository is unreachable here). Same package names, versions and dependency chain as
# NVIDIA's, tiny shell scripts instead of the real binaries, each Description says "test stand-in":
#   nvidia-container-toolkit      (= V base, >= V tools)  nvidia-container-runtime-hook (no-op OCI hook)
#   nvidia-container-toolkit-base                        nvidia-ctk, nvidia-container-runtime (exec runc)
#   libnvidia-container-tools     (>= V libnvidia-container1)  nvidia-container-cli
#   libnvidia-container1
# for each version given. Laid out as a FLAT repository like NVIDIA's (DIR/stable/deb/ARCH/ with
# Packages, Release, InRelease, Release.gpg), signed with a throwaway key made here; the armoured
# public key is DIR/gpgkey. A second, unrelated key (WRONG_KEY) lets tests prove apt rejects it.
#
#   build-standin-repo.sh DIR WORKDIR VERSION...
set -eu
DIR="$1"; WORK="$2"; shift 2
ARCH="$(dpkg --print-architecture)"
REPO="$DIR/stable/deb/$ARCH"
export GNUPGHOME="$WORK/gnupg"
rm -rf "$REPO" "$WORK/pkgs" "$GNUPGHOME"
mkdir -p "$REPO" "$WORK/pkgs"
mkdir -m 0700 "$GNUPGHOME"

pkgroot() { echo "$WORK/pkgs/$1_$2"; }

write_file() {  # write_file ROOT PATH MODE  (content on stdin)
  mkdir -p "$(dirname "$1$2")"
  cat > "$1$2"
  chmod "$3" "$1$2"
}

control() {  # control NAME VERSION DEPENDS SUMMARY
  root="$(pkgroot "$1" "$2")"
  mkdir -p "$root/DEBIAN"
  {
    echo "Package: $1"
    echo "Version: $2"
    echo "Architecture: $ARCH"
    echo "Maintainer: qwen3vl.ha tests <tests@example.invalid>"
    [ -n "$3" ] && echo "Depends: $3"
    echo "Section: utils"
    echo "Priority: optional"
    echo "Description: test stand-in for NVIDIA's $1 ($4)"
    echo " Built by molecule/nvidia_container_toolkit/files/build-standin-repo.sh for the"
    echo " qwen3vl.ha tests. Not NVIDIA software: it does not give containers any GPU."
  } > "$root/DEBIAN/control"
  write_file "$root" "/usr/share/doc/$1/STAND-IN" 0644 <<DOC
test stand-in for $1 $2 (qwen3vl.ha molecule scenario nvidia_container_toolkit)
DOC
}

for V in "$@"; do
  U="${V%-*}"  # upstream version, as the real tools print it

  control libnvidia-container1 "$V" "" "container library"

  control libnvidia-container-tools "$V" "libnvidia-container1 (>= $V)" "nvidia-container-cli"
  write_file "$(pkgroot libnvidia-container-tools "$V")" /usr/bin/nvidia-container-cli 0755 <<SCRIPT
#!/bin/sh
# test stand-in for nvidia-container-cli $U
case "\${1:-}" in
  --version) echo "cli-version: $U (test stand-in)" ;;
  *) if [ -d /proc/driver/nvidia ]; then echo "stand-in: no real GPU access"; else
       echo "nvidia-container-cli: initialization error: nvml error: driver not loaded" >&2; exit 1; fi ;;
esac
SCRIPT

  control nvidia-container-toolkit-base "$V" "" "nvidia-ctk and nvidia-container-runtime"
  root="$(pkgroot nvidia-container-toolkit-base "$V")"
  write_file "$root" /etc/nvidia-container-runtime/config.toml 0644 <<CONF
# test stand-in configuration ($V); the stand-in runtime does not read it
[nvidia-container-runtime]
log-level = "info"
CONF
  echo /etc/nvidia-container-runtime/config.toml > "$root/DEBIAN/conffiles"
  write_file "$root" /usr/bin/nvidia-container-runtime 0755 <<'SCRIPT'
#!/bin/sh
# test stand-in for nvidia-container-runtime: records the call, then hands over to runc
echo "$*" >> /run/nvidia-container-runtime-standin.log 2>/dev/null || true
exec runc "$@"
SCRIPT
  write_file "$root" /usr/bin/nvidia-ctk 0755 <<SCRIPT
#!/bin/sh
# test stand-in for nvidia-ctk $U: --version, and cdi generate [--output=FILE]
echo "\$*" >> /run/nvidia-ctk-standin.log 2>/dev/null || true
case "\${1:-}" in
  --version|-v)
    echo "NVIDIA Container Toolkit CLI version $U (test stand-in)"
    echo "commit: standin" ;;
  cdi)
    [ "\${2:-}" = generate ] || { echo "stand-in nvidia-ctk: only 'cdi generate' is supported" >&2; exit 2; }
    shift 2
    out=""
    while [ \$# -gt 0 ]; do
      case "\$1" in
        --output=*) out="\${1#--output=}" ;;
        --output) shift; out="\$1" ;;
      esac
      shift
    done
    if [ ! -d /proc/driver/nvidia ]; then
      echo 'level=error msg="failed to generate CDI spec: failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND"' >&2
      exit 1
    fi
    spec="\$(
      echo "# test stand-in CDI spec (nvidia-ctk $U); driver \$(cat /sys/module/nvidia/version 2>/dev/null || head -n 1 /proc/driver/nvidia/version)"
      echo "cdiVersion: 0.5.0"
      echo "kind: nvidia.com/gpu"
      echo "devices:"
      i=0
      for gpu in /proc/driver/nvidia/gpus/*; do
        [ -d "\$gpu" ] || continue
        echo "  - name: \"\$i\""
        echo "    containerEdits: {}"
        i=\$((i + 1))
      done
      echo "  - name: all"
      echo "    containerEdits: {}"
      echo "containerEdits: {}"
    )"
    if [ -n "\$out" ]; then
      mkdir -p "\$(dirname "\$out")"
      printf '%s\n' "\$spec" > "\$out"
    else
      printf '%s\n' "\$spec"
    fi ;;
  runtime)
    echo "stand-in nvidia-ctk: 'runtime' must not be used by qwen3vl.ha (docker_engine owns daemon.json)" >&2
    exit 3 ;;
  *)
    echo "stand-in nvidia-ctk: unsupported arguments: \$*" >&2
    exit 2 ;;
esac
SCRIPT

  control nvidia-container-toolkit "$V" \
    "nvidia-container-toolkit-base (= $V), libnvidia-container-tools (>= $V), libnvidia-container-tools (<< 2.0.0)" \
    "runtime hook"
  write_file "$(pkgroot nvidia-container-toolkit "$V")" /usr/bin/nvidia-container-runtime-hook 0755 <<'SCRIPT'
#!/bin/sh
# test stand-in for nvidia-container-runtime-hook: an OCI hook that injects nothing; it reads the
# container state from stdin and records that it ran
cat > /dev/null
echo "$*" >> /run/nvidia-container-runtime-hook-standin.log 2>/dev/null || true
exit 0
SCRIPT
done

for root in "$WORK"/pkgs/*; do
  dpkg-deb --root-owner-group -Zgzip -b "$root" "$REPO/" >/dev/null
done

cd "$REPO"
apt-ftparchive packages . > Packages
gzip -9nc Packages > Packages.gz
apt-ftparchive \
  -o APT::FTPArchive::Release::Origin="qwen3vl.ha test stand-in" \
  -o APT::FTPArchive::Release::Label="nvidia-container-toolkit test stand-in" \
  release . > "$WORK/Release"
mv "$WORK/Release" Release

gpg --batch --passphrase '' --quick-gen-key "qwen3vl.ha NVIDIA repository test stand-in <standin@example.invalid>" ed25519 sign never 2>/dev/null
gpg --batch --yes --armor --export > "$DIR/gpgkey"
gpg --batch --yes --clearsign -o InRelease Release
gpg --batch --yes --armor --detach-sign -o Release.gpg Release

# an unrelated key: apt must refuse the repository with it
WRONG="$WORK/wrong-gnupg"
rm -rf "$WRONG" && mkdir -m 0700 "$WRONG"
GNUPGHOME="$WRONG" gpg --batch --passphrase '' --quick-gen-key "unrelated test key <wrong@example.invalid>" ed25519 sign never 2>/dev/null
GNUPGHOME="$WRONG" gpg --batch --yes --armor --export > "$WORK/wrong-key.asc"
echo "stand-in repository for $* in $REPO"
