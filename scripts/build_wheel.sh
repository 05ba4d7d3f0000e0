#!/usr/bin/env bash
# Build semot's release wheel into OUTDIR: `scripts/build_wheel.sh OUTDIR`, run with the Python
# environment that has maturin and the `wheel` extra (ziglang, auditwheel) as $PYTHON (default:
# `python`). `make wheel` and the wheel stage of .ci/run both call this script.
#
# Linux: an abi3 wheel tagged manylinux2014 (manylinux_2_17: glibc >= 2.17, the RHEL/Rocky 7-8
# and Ubuntu 18.04/20.04 of CPU clusters), linked by zig against glibc 2.17 instead of the
# build machine's glibc, then checked with `auditwheel show`: the script fails unless the wheel
# is consistent with manylinux_2_17 for this machine's architecture. Elsewhere (macOS,
# Windows): the platform's abi3 wheel, as the GitHub workflow builds it.
#
# Profile: $SEMOT_WHEEL_PROFILE, default `release` (thin LTO). The `dist` profile of Cargo.toml
# (fat LTO, one codegen unit) measured no faster on the bulk kernels (README "Performance":
# release/dist = 0.95-1.0 on the merge and matrix-product paths) and compiles slower.
set -euo pipefail

out=${1:?usage: scripts/build_wheel.sh OUTDIR}
PYTHON=${PYTHON:-python}
profile=${SEMOT_WHEEL_PROFILE:-release}
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mkdir -p "$out"
before=$(mktemp)
trap 'rm -f "$before"' EXIT
find "$out" -maxdepth 1 -name 'semot-*.whl' | sort >"$before"

args=(build --locked --profile "$profile" --out "$out")
linux=0
if [[ $(uname -s) == Linux ]]; then
    linux=1
    "$PYTHON" -c 'import ziglang' 2>/dev/null ||
        { echo "build_wheel.sh: ziglang is not installed in $PYTHON (pip install '.[wheel]')" >&2; exit 1; }
    # maturin runs `python3 -m ziglang` from the PATH: make that this environment's.
    PATH="$("$PYTHON" -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH"
    export PATH
    args+=(--zig --compatibility manylinux2014)
fi
printf '+ %s -m maturin %s\n' "$PYTHON" "${args[*]}"
"$PYTHON" -m maturin "${args[@]}"

whl=$(comm -13 "$before" <(find "$out" -maxdepth 1 -name 'semot-*.whl' | sort) | tail -n 1)
if [[ -z $whl ]]; then
    # Rebuilt over a wheel of the same name.
    whl=$(ls -t "$out"/semot-*.whl | head -n 1)
fi
base=$(basename "$whl")
[[ $base == *-abi3-* ]] || { echo "build_wheel.sh: $base is not an abi3 wheel" >&2; exit 1; }

if ((linux)); then
    arch=$(uname -m)
    [[ $base == *manylinux2014_"$arch"* || $base == *manylinux_2_17_"$arch"* ]] ||
        { echo "build_wheel.sh: $base is not tagged manylinux2014 / manylinux_2_17" >&2; exit 1; }
    report=$("$PYTHON" -m auditwheel show "$whl")
    printf '%s\n' "$report" | sed 's/^/    auditwheel: /'
    # auditwheel names the most compatible tag the wheel's symbol versions allow.
    grep -q "\"manylinux_2_17_$arch\"" <<<"$report" ||
        { echo "build_wheel.sh: auditwheel does not report manylinux_2_17_$arch for $base" >&2; exit 1; }
fi
printf '%s\n' "$whl"
