#!/usr/bin/env bash
# One command from a fresh Debian 12 / Ubuntu machine to a built zerodet:
#   1. installs the build dependencies with apt-get (only the missing ones),
#   2. provides ONNX Runtime (an installed CMake package, else the pinned official build),
#   3. configures and builds into build/ (binary: build/zerodet).
# Idempotent: a second run installs nothing and rebuilds only what changed.
# Environment: BUILD_DIR (default build), BUILD_TYPE (default Release), JOBS (default nproc).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
JOBS=${JOBS:-$(nproc)}

# Build tools, libraries, and what the tests use (python3-onnx generates small test models).
packages=(
  build-essential cmake ninja-build pkg-config git
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
  libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev zlib1g-dev
  libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-onnx python3-numpy
)
if [[ -f scripts/packages.extra ]]; then
  # Packages of optional components (store, rings, pipeline), one per line.
  mapfile -t extra < <(grep -v '^\s*#' scripts/packages.extra | grep -v '^\s*$')
  packages+=("${extra[@]}")
fi

# npm fetches ONNX Runtime; a machine with Node.js from elsewhere (e.g. NodeSource, whose nodejs
# package bundles npm and conflicts with Debian's npm) already has it.
command -v npm >/dev/null 2>&1 || packages+=(npm)
# kubectl renders deploy/k8s in the deploy checks: Debian's kubernetes-client, unless a kubectl
# is installed already (the Google Cloud SDK's kubectl package owns the same path).
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ONNX Runtime: prefer one the system provides (Debian 13 / Ubuntu libonnxruntime-dev, or a
# release tarball under CMAKE_PREFIX_PATH); otherwise the pinned official build.
if ! ls /usr/lib/*/cmake/onnxruntime/onnxruntimeConfig.cmake /usr/lib/cmake/onnxruntime/onnxruntimeConfig.cmake \
     /usr/local/lib/cmake/onnxruntime/onnxruntimeConfig.cmake >/dev/null 2>&1; then
  scripts/fetch_onnxruntime.sh
fi

# npm packages the tests use, pinned by their lock files: playwright-core drives Chromium for the
# web console's test; kubernetes-models, yaml and dockerfile-utils check deploy/ offline.
for dir in tests/server/console tests/deploy; do
  if [[ ! -d $dir/node_modules ]]; then
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
done

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" ${CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "setup: built $BUILD_DIR/zerodet"
