#!/usr/bin/env bash
# Provides ONNX Runtime 1.29.0 (official Linux x64 build) in .deps/onnxruntime when the system has
# none. Debian 12 packages no ONNX Runtime; the npm registry carries the official build inside
# com.github.asus4.onnxruntime. `npm pack` only downloads the tarball (no install scripts run);
# its sha256 is pinned below. Idempotent: returns at once when the right version is in place.
set -euo pipefail

ORT_VERSION=1.29.0
NPM_PACKAGE=com.github.asus4.onnxruntime@0.4.9
NPM_SHA256=e59788788818fdde1b2e522e766a21ba0f7d8391de55737abf81e32cc801785d

root=$(cd "$(dirname "$0")/.." && pwd)
prefix="$root/.deps/onnxruntime"
stamp="$prefix/VERSION"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$ORT_VERSION" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch_onnxruntime: npm is required (apt-get install npm)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetch_onnxruntime: downloading $NPM_PACKAGE (ONNX Runtime $ORT_VERSION)"
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tarball=$(ls "$work"/*.tgz)
echo "$NPM_SHA256  $tarball" | sha256sum --check --quiet - ||
  { echo "fetch_onnxruntime: sha256 mismatch for $tarball" >&2; exit 1; }

headers='package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64_x86_64-simulator/onnxruntime.framework/Headers'
tar -xzf "$tarball" -C "$work" package/Plugins/Linux/x64/libonnxruntime.so \
  package/Plugins/Linux/x64/libonnxruntime_providers_shared.so "$headers"

rm -rf "$prefix"
mkdir -p "$prefix/include" "$prefix/lib"
cp "$work/$headers"/*.h "$prefix/include/"
cp "$work/package/Plugins/Linux/x64/libonnxruntime_providers_shared.so" "$prefix/lib/"
cp "$work/package/Plugins/Linux/x64/libonnxruntime.so" "$prefix/lib/libonnxruntime.so.$ORT_VERSION"
ln -s "libonnxruntime.so.$ORT_VERSION" "$prefix/lib/libonnxruntime.so.1"
ln -s "libonnxruntime.so.1" "$prefix/lib/libonnxruntime.so"
echo "$ORT_VERSION" >"$stamp"
echo "fetch_onnxruntime: installed into $prefix"
