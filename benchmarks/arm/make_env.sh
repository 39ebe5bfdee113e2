#!/usr/bin/env bash
# Make an emulated Raspberry Pi OS-like userland and install this checkout's edgecxr into it.
#
#   bash benchmarks/arm/make_env.sh aarch64|armv7l      (prints the paths of two launchers, see below)
#
# Needs only the package registries: a Debian bookworm root (arm64 or armhf, Python 3.11 like
# this host) from `debootstrap --foreign`, its packages unpacked with dpkg-deb (no chroot, no
# second stage), run by qemu-user (-L ROOT) without binfmt_misc. The runtime dependencies are
# installed as a Pi user would get them: the board's own Python decides which of edgecxr's
# requirements apply (setup.cfg markers), pip on this host downloads their ARM wheels from PyPI
# (--platform), and the board's pip installs them offline into a target folder. On armv7l numpy
# and OpenCV come from Debian (python3-numpy, python3-opencv): PyPI has no 32-bit ARM wheels.
#
# Cached under ${EDGECXR_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgecxr-arm}/ARCH: the root
# file system, the wheels and the installed dependencies are reused while their inputs are the
# same; edgecxr itself is rebuilt from the checkout and reinstalled on every run.
# Prints two launchers of `edgecxr`: ARCH/edgecxr runs the board's install under emulation,
# ARCH/x86-edgecxr runs this checkout on x86-64 with the same package versions (its twin).
set -euo pipefail

arch=${1:?usage: make_env.sh aarch64|armv7l}
repo=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
suite=bookworm   # glibc 2.36, Python 3.11
case "$arch" in
  aarch64)  # 64-bit Raspberry Pi OS on a Pi 4 (Cortex-A72)
    deb_arch=arm64; qemu=qemu-aarch64-static; cpu=cortex-a72
    debs=python3,python3-pip; from_debian=""; pip_deps=""
    platforms="manylinux2014_aarch64 $(printf 'manylinux_2_%s_aarch64 ' $(seq 17 36))"
    cpu_block=$'BogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3'
    ;;
  armv7l)  # 32-bit Raspberry Pi OS on a Pi 2 (Cortex-A7), the board whose kernel reports armv7l
    deb_arch=armhf; qemu=qemu-arm-static; cpu=cortex-a7
    debs=python3,python3-pip,python3-numpy,python3-opencv; from_debian="numpy|opencv-python-headless"
    pip_deps=--no-deps  # tflite-runtime's own numpy requirement is met by Debian's numpy
    platforms="linux_armv7l manylinux2014_armv7l $(printf 'manylinux_2_%s_armv7l ' $(seq 17 36))"
    cpu_block=$'model name\t: ARMv7 Processor rev 5 (v7l)\nBogoMIPS\t: 38.40\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xc07\nCPU revision\t: 5'
    ;;
  *) echo "error: unknown architecture '$arch' (aarch64 or armv7l)" >&2; exit 2 ;;
esac

cache=${EDGECXR_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgecxr-arm}
dir=$cache/$arch
root=$dir/rootfs
log() { echo "[$arch] $*" >&2; }
fail() { echo "error: [$arch] $*" >&2; exit 1; }
trap 'echo "error: [$arch] $BASH_SOURCE line $LINENO failed" >&2' ERR

# --- tools: qemu-user-static and debootstrap, from Debian when missing --------------------
if ! command -v "$qemu" >/dev/null || ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || fail "needs qemu-user-static and debootstrap: apt-get install them (as root)"
  log "installing qemu-user-static and debootstrap"
  apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static debootstrap >&2 \
    || fail "apt-get install qemu-user-static debootstrap failed"
fi
qemu=$(command -v "$qemu")

# The Debian mirror this machine's apt already uses (deb822 or one-line sources).
mirror() {
  if [ -n "${EDGECXR_ARM_MIRROR:-}" ]; then echo "$EDGECXR_ARM_MIRROR"; return; fi
  cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$suite" '
    /^URIs:/ {u=$2} /^Suites:/ {for (i=2; i<=NF; i++) if ($i==s) {print u; exit}}'
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v s="$suite" '
    $1=="deb" {for (i=2; i<NF; i++) if ($i ~ /^[a-z]+:\/\// && $(i+1)==s) {print $i; exit}}'
  true
}

# --- root file system ----------------------------------------------------------------------
stamp="$suite $deb_arch $debs v1"
if [ "$(cat "$root/.edgecxr-stamp" 2>/dev/null)" != "$stamp" ]; then
  url=$(mirror | head -1)
  [ -n "$url" ] || fail "no Debian $suite mirror in /etc/apt/sources*; set EDGECXR_ARM_MIRROR"
  log "debootstrap --foreign $suite $deb_arch with $debs"
  rm -rf "$root" "$root.tmp" && mkdir -p "$dir"
  debootstrap --foreign --arch="$deb_arch" --variant=minbase --include="$debs" "$suite" "$root.tmp" "$url" \
    > "$dir/debootstrap.log" 2>&1 || { tail -20 "$dir/debootstrap.log" >&2; fail "debootstrap failed (log: $dir/debootstrap.log)"; }
  log "unpacking $(ls "$root.tmp"/var/cache/apt/archives/*.deb | wc -l) packages"
  for deb in "$root.tmp"/var/cache/apt/archives/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$root.tmp"
  done
  # No maintainer scripts ran: make the BLAS/LAPACK links update-alternatives would make,
  # and leave /dev and /proc to the host, except for a fake /proc/cpuinfo written below.
  for lib in "$root.tmp"/usr/lib/*/{blas,lapack}/lib*.so.3; do
    [ -e "$lib" ] && ln -sfn "$(basename "$(dirname "$lib")")/$(basename "$lib")" "$(dirname "$(dirname "$lib")")/$(basename "$lib")"
  done
  rm -rf "$root.tmp"/{debootstrap,dev,proc} "$root.tmp"/var/cache/apt/archives/*.deb
  mkdir -p "$root.tmp"/{proc,usr/local/bin}
  echo "$stamp" > "$root.tmp/.edgecxr-stamp"
  mv "$root.tmp" "$root"
fi

# qemu-user passes the host's /proc/cpuinfo (x86) through; LiteRT's CPU detection crashes on
# it. Give the board's own text instead (qemu -L serves files under ROOT first), one entry per
# host CPU so it agrees with /sys/devices/system/cpu.
for ((i = 0; i < $(nproc --all); i++)); do printf 'processor\t: %d\n%s\n\n' "$i" "$cpu_block"; done > "$root/proc/cpuinfo"

# `python3` of the board. argv[0] (-0) is this script, so sys.executable is a file the host can
# execute: multiprocessing's spawn (used by `edgecxr benchmark`) re-runs it without binfmt_misc.
cat > "$root/usr/local/bin/python3" <<EOF
#!/bin/sh
exec "$qemu" -cpu $cpu -L "$root" -0 "\$0" "$root/usr/bin/python3.11" "\$@"
EOF
chmod +x "$root/usr/local/bin/python3"

# The board's Python with a clean environment. pip runs with the real ELF as sys.executable:
# it reads the ELF header to tell armhf from armel.
board() { env -i LANG=C.UTF-8 HOME="$dir" "$@"; }
board_pip() {
  board PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH="${site:-}" "$qemu" -cpu "$cpu" -L "$root" "$root/usr/bin/python3.11" -m pip "$@"
}

# --- edgecxr wheel from the checkout (a clean copy: no stale build/ files) ----------------------
rm -rf "$dir/build" && mkdir -p "$dir/build/src"
cp -r "$repo"/{setup.cfg,pyproject.toml,README.md,edgecxr} "$dir/build/src/"
find "$dir/build/src" -name __pycache__ -prune -exec rm -rf {} +
"$python" -m pip wheel -q --no-deps -w "$dir/build" "$dir/build/src" >&2 || fail "building the edgecxr wheel failed"
rm -rf "$dir/build/src"
wheel=$(ls "$dir"/build/edgecxr-*.whl)

# --- runtime dependencies -----------------------------------------------------------------------
drop_from_debian() { if [ -n "$from_debian" ]; then grep -v -i -x -E "($from_debian)([^a-z0-9_.-].*)?" || true; else cat; fi; }
# The requirements whose markers hold on the board, as the board's pip sees them.
requirements=$(board "$root/usr/local/bin/python3" - "$wheel" <<'EOF' | drop_from_debian
import sys, zipfile
from pip._vendor.packaging.requirements import Requirement
wheel = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
for line in wheel.read(meta).decode().splitlines():
    if line.startswith("Requires-Dist: "):
        req = Requirement(line[len("Requires-Dist: "):])
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            print(f"{req.name}{req.specifier}")
EOF
)
[ -n "$requirements" ] || fail "no requirements read from $wheel"
log "requirements on the board: $(echo $requirements)"
mkdir -p "$dir/wheels"
# shellcheck disable=SC2046
"$python" -m pip download -q $pip_deps --only-binary=:all: --implementation cp --python-version 3.11 \
  $(printf -- '--platform %s ' $platforms) -d "$dir/wheels" $requirements >&2 \
  || fail "no $arch wheels on PyPI for: $(echo $requirements)"

key=$( (echo "$requirements"; ls "$dir/wheels") | sha256sum | cut -c1-16)
deps=$dir/deps-$key
if [ ! -d "$deps" ]; then
  log "installing the dependencies with the board's pip (emulated: about a minute)"
  rm -rf "$dir"/deps-*  # and its .pins
  # shellcheck disable=SC2086
  board_pip install -q --no-index --find-links "$dir/wheels" $pip_deps --target "$deps.tmp" $requirements >&2 \
    || fail "pip install of the dependencies failed"
  mv "$deps.tmp" "$deps"
fi
rm -rf "$dir/app"
board_pip install -q --no-index --no-deps --target "$dir/app" "$wheel" >&2 || fail "pip install of edgecxr failed"
# Everything edgecxr requires on the board is installed (Debian's packages stand in for
# numpy and opencv-python-headless on armv7l, which pip cannot see as those distributions).
site="$dir/app:$deps"
problems=$(board_pip check 2>&1 | grep -v -i -E "^No broken requirements" | grep -v -i -E "requires (${from_debian:-^$}),") || true
[ -z "$problems" ] || fail "pip check on the board: $problems"

cat > "$dir/edgecxr" <<EOF
#!/bin/sh
# edgecxr installed for $arch (Debian $suite $deb_arch + PyPI wheels), run under qemu-user.
exec env -i LANG=C.UTF-8 HOME="$dir" PYTHONPATH="$dir/app:$deps" "$root/usr/local/bin/python3" "$dir/app/bin/edgecxr" "\$@"
EOF

# --- x86-64 twin: the board's package versions installed on this machine, running this checkout,
# so a difference in answers can be told apart as CPU (board vs twin) or versions (twin vs host).
names="$(echo "$requirements" | sed 's/[^a-zA-Z0-9_.-].*//') ${from_debian//|/ }"
# shellcheck disable=SC2086
if [ ! -s "$deps.pins" ]; then
  board PYTHONPATH="$site" "$root/usr/local/bin/python3" - $names > "$deps.pins.tmp" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for name in sys.argv[1:]:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:  # Debian's python3-opencv installs cv2 without pip metadata
        import cv2
        print(f"{name}=={cv2.__version__}.*")
EOF
  mv "$deps.pins.tmp" "$deps.pins"
fi
pins=$(cat "$deps.pins")
twin=$dir/x86-$(echo "$pins" | sha256sum | cut -c1-16)
if [ ! -d "$twin" ]; then
  log "x86-64 twin: $(echo $pins)"
  rm -rf "$dir"/x86-*
  # shellcheck disable=SC2086
  "$python" -m pip install -q --no-warn-conflicts --root-user-action=ignore --only-binary=:all: --target "$twin.tmp" $pins >&2 || fail "x86-64 twin install failed: $(echo $pins)"
  mv "$twin.tmp" "$twin"
fi
# -S: the twin's packages and the standard library only, none of this Python's site-packages.
cat > "$dir/x86-edgecxr" <<EOF
#!/bin/sh
# this checkout's edgecxr on x86-64 with the package versions of the $arch board.
exec env -i LANG=C.UTF-8 HOME="$dir" PYTHONPATH="$twin:$repo" "$(command -v "$python")" -S -m edgecxr "\$@"
EOF
chmod +x "$dir/edgecxr" "$dir/x86-edgecxr"
echo "$dir/edgecxr $dir/x86-edgecxr"
