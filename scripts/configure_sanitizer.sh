#!/usr/bin/env bash
# Configures a sanitizer build directory: the one rule scripts/test.sh and scripts/fuzz.sh share.
#   scripts/configure_sanitizer.sh address,undefined   -> build-asan (clang, with the fuzzers)
#   scripts/configure_sanitizer.sh thread              -> build-tsan
# Prints the build directory. ASan+UBSan builds use clang: it compiles this code base about a
# third faster than GCC, and the same objects then link the libFuzzer targets, so CI compiles the
# sanitized libraries once for the tests and the fuzzers.
set -euo pipefail
sanitize=$1
root=$(cd "$(dirname "$0")/.." && pwd)
case "$sanitize" in
  thread) build_dir=${BUILD_DIR:-build-tsan}; compilers=(); fuzz=OFF ;;
  *) build_dir=${BUILD_DIR:-build-asan}; compilers=(CC=clang CXX=clang++); fuzz=ON ;;
esac
# -O1 -g1: sanitizers need no more to report well, and it compiles much faster than -O2 -g.
env "${compilers[@]}" cmake -S "$root" -B "$root/$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DZERODET_SANITIZE="$sanitize" -DZERODET_BUILD_BENCH=OFF -DZERODET_BUILD_FUZZ="$fuzz" >/dev/null
echo "$build_dir"
