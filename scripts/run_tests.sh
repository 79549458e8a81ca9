#!/usr/bin/env bash
# Sets up (first time only, Chromium included) and runs the whole test suite.
# Extra arguments go to pytest, e.g. bash scripts/run_tests.sh -k decoding
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh" --browser
cd "$root"
exec .venv/bin/python -m pytest "$@"
