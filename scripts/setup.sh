#!/usr/bin/env bash
# Installs everything the labs and their tests need, into .venv at the repo root.
# Idempotent and quick when nothing changed. Usage: bash scripts/setup.sh [--browser]
#   --browser  also install Debian's Chromium for the browser tests (needs root or sudo).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($py --version)"
  "$py" -m venv .venv
fi
vpy=.venv/bin/python
stamp=.venv/.genai-lab-installed
want="$(cat requirements.txt requirements-nodeps.txt requirements-train.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing requirements (about 2 minutes the first time)"
  "$vpy" -m pip install -q --upgrade pip
  "$vpy" -m pip install -q -r requirements.txt
  "$vpy" -m pip install -q --no-deps -r requirements-nodeps.txt
  "$vpy" -m pip install -q --no-deps --ignore-requires-python -r requirements-train.txt
  echo "$want" > "$stamp"
fi
# shared/ as an installed package (editable: edits apply at once), so `python spaces/<lab>/app.py` just imports it.
if ! (cd / && "$root/$vpy" -c "import shared, sys; sys.exit(not shared.__file__.startswith('$root/'))" 2>/dev/null); then
  echo "[setup] installing the project's shared package (pip install -e .)"
  "$vpy" -m pip install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
fi

if [ "${1:-}" = "--browser" ] && { ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi emoji; }; then
  echo "[setup] installing Debian's chromium (and an emoji font for the screenshots) for the browser tests"
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null
fi

# Convert the embedded SmolLM2 GGUF once into a fast-loading cache (outside the repo).
"$vpy" -c "import shared.embedded as e; e.smollm2_folder()"
echo "[setup] ready"
