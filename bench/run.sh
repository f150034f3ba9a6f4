#!/usr/bin/env bash
# The whole benchmark: create/refresh the venvs, then run the driver.
#   bash bench/run.sh [--only a,b] [--n 20000] [--reps 3] [--nr 2000] [--extras] [--out PATH]
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$BENCH/setup.sh"
exec "$BENCH/.venv/bin/python" "$BENCH/peers/run.py" "$@"
