#!/usr/bin/env bash
# Build byzagg._C with AddressSanitizer + UBSan into build-asan/ (the in-place extension of
# the checkout is left alone) and run the fuzzer on it.
#   tools/fuzz_asan.sh [fuzz.py arguments, e.g. --minutes 20]
# Needs g++ with libasan/libubsan. Leak checking is off (CPython's allocations are not ours);
# any ASan or UBSan report aborts the run with its stack.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python}"
OUT="$ROOT/build-asan"
cd "$ROOT"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  BYZAGG_SANITIZE=1 "$PY" setup.py build_ext -b "$OUT/lib" -t "$OUT/tmp" -j "${JOBS:-2}"
fi
# A copy of the Python package next to the sanitized extension.
PKG="$OUT/pkg"
rm -rf "$PKG" && mkdir -p "$PKG"
cp -r "$ROOT/byzagg" "$PKG/byzagg"
rm -f "$PKG"/byzagg/_C*.so
cp "$OUT"/lib/byzagg/_C*.so "$PKG/byzagg/"
export LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd "$PKG"
PYTHONPATH="$PKG" "$PY" "$ROOT/tools/fuzz.py" --require-native "$@"
