#!/usr/bin/env bash
# Builds the store's wire-protocol fuzzer with clang (libFuzzer + ASan + UBSan) in build-fuzz/
# and runs it for a bounded time. Exits non-zero when the fuzzer finds a crash, leak or
# sanitizer error (the reproducer is written to build-fuzz/fuzz/).
#   scripts/fuzz.sh [SECONDS]    default 60
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${1:-60}
build_dir=${BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}

CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DZERODET_BUILD_FUZZ=ON -DZERODET_BUILD_TESTS=OFF -DZERODET_BUILD_BENCH=OFF \
  -DZERODET_SANITIZE=address,undefined >/dev/null
cmake --build "$build_dir" -j "$JOBS" --target store_protocol_fuzzer

corpus="$build_dir/fuzz/corpus-store-protocol"
mkdir -p "$corpus"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build_dir/fuzz"
./store_protocol_fuzzer -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
  -dict="$root/fuzz/store/protocol.dict" "$root/$corpus"
