#!/usr/bin/env bash
# Sets up (first time only) and launches one lab on its offline default.
# Usage: bash scripts/run_lab.sh <lab> [--host H] [--port P]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lab="${1:-}"
if [ -z "$lab" ] || [ ! -f "$root/spaces/$lab/app.py" ]; then
  echo "usage: bash scripts/run_lab.sh <lab> [--host H] [--port P]"
  echo "labs: $(cd "$root/spaces" && ls -d */ | tr -d / | tr '\n' ' ')"
  exit 2
fi
shift
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/python" "$root/spaces/$lab/app.py" "$@"
