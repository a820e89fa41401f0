#!/usr/bin/env bash
# Join this machine to a running head as a worker node.
#   HEAD=10.0.0.5:6379 cluster/join.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
: "${HEAD:?set HEAD=<head ip>:<gcs port>}"
source "$VENV/bin/activate"
ray start --address="$HEAD" --num-cpus="${NUM_CPUS:-$(nproc)}" ${NODE_IP:+--node-ip-address="$NODE_IP"} --disable-usage-stats
