#!/usr/bin/env bash
# Build a wheelhouse for offline gateway installs, on a machine with internet.
#
#   build-wheelhouse.sh -o DIR [--target native|amd64|arm64|armhf] [--python 3.11] [--replica]
#
# Then copy DIR and this source tree to the gateway and run
#   sudo bash deploy/install.sh --wheelhouse DIR
# which installs with no network. `native` (the default) builds for this machine; the
# other targets download binary wheels for that platform. Where PyPI has no binary wheel
# for a dependency on the target (armhf for some releases), build the wheelhouse on a
# machine of that platform with `--target native` instead; this script says which package.
set -euo pipefail

die() { echo "build-wheelhouse.sh: error: $*" >&2; exit 2; }

OUT=""
TARGET=native
PYVER=3.11
EXTRA=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o|--out) OUT="${2:?-o needs a directory}"; shift 2 ;;
    --target) TARGET="${2:?--target needs a value}"; shift 2 ;;
    --python) PYVER="${2:?--python needs a version like 3.11}"; shift 2 ;;
    --replica) EXTRA="[replica]"; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown option: $1" ;;
  esac
done
[ -n "$OUT" ] || die "-o DIR is required"

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$OUT"
pip=(python3 -m pip)
if [ -x "$src/.venv/bin/python" ]; then pip=("$src/.venv/bin/python" -m pip); fi

# meterchain itself is pure Python: one wheel serves every platform.
"${pip[@]}" wheel --quiet --no-deps --wheel-dir "$OUT" "$src"

case "$TARGET" in
  native)
    "${pip[@]}" wheel --quiet --wheel-dir "$OUT" "${src}${EXTRA}" ;;
  amd64|arm64|armhf)
    case "$TARGET" in
      amd64) arch=x86_64 ;;
      arm64) arch=aarch64 ;;
      armhf) arch=armv7l ;;
    esac
    # pip matches --platform tags exactly: list every manylinux tag up to glibc 2.36
    # (Debian and Raspberry Pi OS bookworm).
    plat_args=(--platform "linux_$arch" --platform "manylinux2014_$arch")
    for minor in $(seq 17 36); do plat_args+=(--platform "manylinux_2_${minor}_$arch"); done
    wheel="$(find "$OUT" -maxdepth 1 -name 'meterchain-*.whl' | head -n 1)"
    if ! "${pip[@]}" download --quiet --dest "$OUT" --only-binary=:all: \
        --python-version "$PYVER" --implementation cp "${plat_args[@]}" "${wheel}${EXTRA}"; then
      die "no binary wheels for every dependency on $TARGET (Python $PYVER); build on such a machine with --target native"
    fi ;;
  *) die "unknown --target $TARGET (native, amd64, arm64, armhf)" ;;
esac
echo "build-wheelhouse.sh: $(find "$OUT" -name '*.whl' | wc -l) wheels in $OUT for $TARGET"
