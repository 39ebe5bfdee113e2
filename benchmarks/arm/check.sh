#!/usr/bin/env bash
# One command: install edgecxr on emulated Raspberry Pi OS userlands and check its answers against x86-64.
#
#   bash benchmarks/arm/check.sh [--out DIR] [--arch aarch64|armv7l]... [--per-class N] [--runs N]
#   (from anywhere; root needed the first time, to apt-get install qemu-user-static and debootstrap)
#
# For each board (default: aarch64 and armv7l) make_env.sh builds or reuses the emulated userland
# and installs this checkout into it; then benchmarks.arm.parity compares every bundled model's
# answers on N (10) test images per class with x86-64 and writes results.json and report.md to
# DIR (default: the cache folder; --out benchmarks/results/arm refreshes the committed result).
# Exits non-zero when an install fails or any answer differs beyond tolerance.
set -euo pipefail
python=${PYTHON:-python3}
out=${EDGECXR_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgecxr-arm}/results
arches=()
parity_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --arch) arches+=("$2"); shift 2 ;;
    --per-class|--runs) parity_args+=("$1" "$2"); shift 2 ;;
    *) echo "usage: check.sh [--out DIR] [--arch aarch64|armv7l]... [--per-class N] [--runs N]" >&2; exit 2 ;;
  esac
done
[ ${#arches[@]} -gt 0 ] || arches=(aarch64 armv7l)
out=$(realpath -m "$out")
cd "$(dirname "$0")/../.."

boards=()
for arch in "${arches[@]}"; do
  launchers=$(bash benchmarks/arm/make_env.sh "$arch") || { echo "error: installing edgecxr for $arch failed (see above)" >&2; exit 1; }
  read -r board twin <<< "$launchers"
  boards+=(--board "$arch" "$board" "$twin")
done
"$python" -m benchmarks.arm.parity "${boards[@]}" ${parity_args[@]+"${parity_args[@]}"} --out "$out"
