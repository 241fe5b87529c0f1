#!/usr/bin/env bash
# Builds the zerodet container image (deploy/Containerfile) with podman, or docker where there is
# no podman. Without a container engine (or with a docker client but no daemon) it says so and
# exits 2; CI checks the Containerfile statically instead (tests/deploy/check_deploy.mjs).
#   scripts/build_image.sh [TAG]     default zerodet:latest
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-zerodet:latest}
if command -v podman >/dev/null 2>&1; then
  engine=podman
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=docker
else
  echo "build_image: no container engine here (podman, or docker with a running daemon)" >&2
  exit 2
fi
exec "$engine" build -f "$root/deploy/Containerfile" -t "$tag" "$root"
