#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (libFuzzer + ASan + UBSan) in build-asan/ and runs
# each for a bounded time. Exits non-zero when a fuzzer finds a crash, leak or sanitizer error
# (the reproducer is written to build-asan/fuzz/).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]    default 30
# Targets: store_protocol_fuzzer (the store's wire protocol), codec_decode_fuzzer (JPEG, PNG and
# BMP decoding, seeded with ../shared/images), pipeline_messages_fuzzer (the supervisor-child
# messages and the control socket's requests and replies), server_kserve_fuzzer (KServe v2 infer
# bodies, JSON and binary tensor data), server_http_fuzzer (HTTP requests through Beast's parser
# and every route of zerodet serve).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${1:-30}
JOBS=${JOBS:-$(nproc)}

# The ASan+UBSan build directory of scripts/test.sh (clang): after the sanitizer tests, only the
# fuzzers' own sources are left to compile.
build_dir=$(scripts/configure_sanitizer.sh address,undefined)
cmake --build "$build_dir" -j "$JOBS" --target store_protocol_fuzzer codec_decode_fuzzer \
  pipeline_messages_fuzzer server_kserve_fuzzer server_http_fuzzer

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build_dir/fuzz"
mkdir -p corpus-store-protocol corpus-codec-decode corpus-pipeline-messages corpus-server-kserve \
  corpus-server-http
./store_protocol_fuzzer -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
  -dict="$root/fuzz/store/protocol.dict" corpus-store-protocol
# The first corpus directory receives new inputs; the shared photos only seed it.
./codec_decode_fuzzer -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 \
  -print_final_stats=1 corpus-codec-decode "$root/../shared/images"
./pipeline_messages_fuzzer -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
  corpus-pipeline-messages
./server_kserve_fuzzer -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 \
  corpus-server-kserve
./server_http_fuzzer -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 \
  -dict="$root/fuzz/server/http.dict" corpus-server-http "$root/fuzz/server/http-seeds"
