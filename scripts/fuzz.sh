#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (libFuzzer + ASan + UBSan) in build-fuzz/ and runs
# each for a bounded time. Exits non-zero when a fuzzer finds a crash, leak or sanitizer error
# (the reproducer is written to build-fuzz/fuzz/).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]    default 30
# Targets: store_protocol_fuzzer (the store's wire protocol), codec_decode_fuzzer (JPEG, PNG and
# BMP decoding, seeded with ../shared/images), pipeline_messages_fuzzer (the supervisor-child
# messages and the control socket's requests and replies), server_kserve_fuzzer (KServe v2 infer
# bodies, JSON and binary tensor data).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${1:-30}
build_dir=${BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}

CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DZERODET_BUILD_FUZZ=ON -DZERODET_BUILD_TESTS=OFF -DZERODET_BUILD_BENCH=OFF \
  -DZERODET_SANITIZE=address,undefined >/dev/null
cmake --build "$build_dir" -j "$JOBS" --target store_protocol_fuzzer codec_decode_fuzzer \
  pipeline_messages_fuzzer server_kserve_fuzzer

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build_dir/fuzz"
mkdir -p corpus-store-protocol corpus-codec-decode corpus-pipeline-messages corpus-server-kserve
./store_protocol_fuzzer -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
  -dict="$root/fuzz/store/protocol.dict" corpus-store-protocol
# The first corpus directory receives new inputs; the shared photos only seed it.
./codec_decode_fuzzer -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 \
  -print_final_stats=1 corpus-codec-decode "$root/../shared/images"
./pipeline_messages_fuzzer -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
  corpus-pipeline-messages
./server_kserve_fuzzer -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 \
  corpus-server-kserve
