#!/usr/bin/env bash
# Stop every Ray process on this machine (head or worker).
set -euo pipefail
cd "$(dirname "$0")/.."
source "${VENV:-.venv}/bin/activate"
ray stop
