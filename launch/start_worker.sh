#!/usr/bin/env bash
# Join a worker node to a running rlkit Ray cluster.
#
#   launch/start_worker.sh HEAD_IP:PORT [extra `ray start` flags, e.g. --block]
#
# Settings (environment variables, all optional): VENV, NODE_IP, NUM_CPUS, NUM_GPUS,
# OBJECT_STORE_BYTES, TEMP_DIR, as in launch/start_head.sh. The worker must see the same venv
# (same Python, ray, torch, vllm, deepspeed versions) as the head, e.g. on shared storage.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 HEAD_IP:PORT [ray start flags...]" >&2
    exit 2
fi
HEAD=$1
shift
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
[ -d "$VENV/bin" ] && export PATH="$VENV/bin:$PATH"
export RAY_USAGE_STATS_ENABLED=0
export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}

args=(--address="$HEAD"
      --object-store-memory="${OBJECT_STORE_BYTES:-2000000000}"
      --disable-usage-stats)
[ -n "${NODE_IP:-}" ] && args+=(--node-ip-address="$NODE_IP")
[ -n "${NUM_CPUS:-}" ] && args+=(--num-cpus="$NUM_CPUS")
[ -n "${NUM_GPUS:-}" ] && args+=(--num-gpus="$NUM_GPUS")
[ -n "${TEMP_DIR:-}" ] && args+=(--temp-dir="$TEMP_DIR")
exec ray start "${args[@]}" "$@"
