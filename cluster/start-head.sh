#!/usr/bin/env bash
# Start a Ray head on this machine from the project's venv (so jobs run with its python).
#   cluster/start-head.sh            # 127.0.0.1, dashboard/job API on :8265
#   NUM_CPUS=8 HEAD_IP=10.0.0.5 cluster/start-head.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
HEAD_IP="${HEAD_IP:-127.0.0.1}"
NUM_CPUS="${NUM_CPUS:-$(nproc)}"
source "$VENV/bin/activate"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
ray start --head --node-ip-address="$HEAD_IP" --port="${GCS_PORT:-6379}" --num-cpus="$NUM_CPUS" \
  --dashboard-host="$HEAD_IP" --dashboard-port="${DASHBOARD_PORT:-8265}" --disable-usage-stats
echo "head up: submit with  RAY_AUTH_MODE=token ray job submit --address http://$HEAD_IP:${DASHBOARD_PORT:-8265} --working-dir . -- python -m jobs.demo"
