#!/usr/bin/env bash
# Start the Ray head node of an rlkit cluster (GCS, dashboard + job server, raylet).
#
#   launch/start_head.sh [extra `ray start` flags, e.g. --block]
#
# Settings (environment variables, all optional):
#   VENV            venv holding ray + rlkit (default: the repo's .venv); its bin/ goes first on
#                   PATH so that job entrypoints (`rlkit train`) and Ray workers use it too.
#   NODE_IP         address other nodes reach this one at (default: Ray picks the host's IP;
#                   127.0.0.1 for a single-machine, loopback-only cluster).
#   RAY_PORT        GCS port workers join (default 6379).
#   DASHBOARD_HOST  dashboard/job-server bind address (default 127.0.0.1: reach it through an
#                   SSH tunnel; set 0.0.0.0 only on a trusted network: the job API runs code).
#   DASHBOARD_PORT  dashboard/job-server port (default 8265): `launch.submit --address`.
#   NUM_CPUS, NUM_GPUS   logical resources (default: detected by Ray).
#   OBJECT_STORE_BYTES   shared-memory object store size (default 2 GB; weights travel there).
#   TEMP_DIR        Ray session/log dir (default Ray's /tmp/ray); one per cluster on a shared host.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
[ -d "$VENV/bin" ] && export PATH="$VENV/bin:$PATH"
export RAY_USAGE_STATS_ENABLED=0
export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}

args=(--head --port="${RAY_PORT:-6379}"
      --include-dashboard=true
      --dashboard-host="${DASHBOARD_HOST:-127.0.0.1}"
      --dashboard-port="${DASHBOARD_PORT:-8265}"
      --object-store-memory="${OBJECT_STORE_BYTES:-2000000000}"
      --disable-usage-stats)
[ -n "${NODE_IP:-}" ] && args+=(--node-ip-address="$NODE_IP")
[ -n "${NUM_CPUS:-}" ] && args+=(--num-cpus="$NUM_CPUS")
[ -n "${NUM_GPUS:-}" ] && args+=(--num-gpus="$NUM_GPUS")
[ -n "${TEMP_DIR:-}" ] && args+=(--temp-dir="$TEMP_DIR")
exec ray start "${args[@]}" "$@"
