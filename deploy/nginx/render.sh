#!/usr/bin/env bash
# Renders deploy/nginx/zerodet.conf.template for a list of `zerodet serve` replicas.
#   deploy/nginx/render.sh LISTEN HOST:PORT... [--hot MODEL]... > zerodet.conf
# The Kubernetes ConfigMap (deploy/k8s) and tests/deploy render it the same way.
set -euo pipefail
if (($# < 2)); then
  echo "usage: deploy/nginx/render.sh LISTEN HOST:PORT... [--hot MODEL]..." >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
ZERODET_LISTEN=$1
shift
servers=""
hot=""
while (($#)); do
  case "$1" in
    --hot) hot+="${2} \"${2}#\$zerodet_spread\";"$'\n  '; shift 2 ;;
    *) servers+="server $1 max_fails=1 fail_timeout=10s;"$'\n  '; shift ;;
  esac
done
export ZERODET_LISTEN ZERODET_SERVERS="$servers" ZERODET_HOT_MODELS="$hot"
envsubst '${ZERODET_LISTEN} ${ZERODET_SERVERS} ${ZERODET_HOT_MODELS}' < "$here/zerodet.conf.template"
