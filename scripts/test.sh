#!/usr/bin/env bash
# Runs every test (CTest) after an incremental build.
#   scripts/test.sh                              Release build in build/
#   scripts/test.sh --sanitize address,undefined ASan+UBSan build in build-asan/
#   scripts/test.sh --sanitize thread            TSan build in build-tsan/ (concurrent suites only)
# Extra arguments after -- go to ctest (e.g. -- -R store).
# Expects the dependencies that scripts/setup.sh installs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sanitize=""
ctest_args=()
while (($#)); do
  case "$1" in
    --sanitize) sanitize=$2; shift 2 ;;
    --) shift; ctest_args+=("$@"); break ;;
    *) echo "usage: scripts/test.sh [--sanitize address,undefined|thread] [-- ctest args]" >&2; exit 2 ;;
  esac
done

JOBS=${JOBS:-$(nproc)}
targets=()
if [[ -z "$sanitize" ]]; then
  build_dir=${BUILD_DIR:-build}
  # ZERODET_WERROR=ON (CI) makes compiler warnings errors; the cache keeps it otherwise.
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    ${ZERODET_WERROR:+-DZERODET_WERROR="$ZERODET_WERROR"} >/dev/null
else
  build_dir=$(scripts/configure_sanitizer.sh "$sanitize")
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
  # TSan builds and runs only the suites whose code is concurrent (labelled "concurrent").
  if [[ "$sanitize" == thread ]]; then
    ctest_args=(-L concurrent "${ctest_args[@]}")
    targets=(--target zerodet_concurrent_tests)
  fi
fi
cmake --build "$build_dir" -j "$JOBS" "${targets[@]}"
cd "$build_dir"
ctest --output-on-failure -j "$JOBS" "${ctest_args[@]}"
