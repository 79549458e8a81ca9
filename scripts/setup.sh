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

# System packages: bubblewrap (the agent sandbox's namespace layer; without it the lab runs and says
# that layer is off) and, with --browser, Debian's chromium and an emoji font for the browser tests.
apt_wanted=""
command -v bwrap >/dev/null 2>&1 || apt_wanted="bubblewrap"
if [ "${1:-}" = "--browser" ] && { ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi emoji; }; then
  apt_wanted="$apt_wanted chromium fonts-noto-color-emoji"
fi
if [ -n "$apt_wanted" ]; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  if [ -z "$sudo_" ] || command -v sudo >/dev/null 2>&1; then
    echo "[setup] installing Debian packages:$apt_wanted"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq $apt_wanted >/dev/null
  else
    echo "[setup] not root and no sudo: install these Debian packages yourself:$apt_wanted"
  fi
fi

# Convert the embedded SmolLM2 GGUF once into a fast-loading cache (outside the repo).
"$vpy" -c "import shared.embedded as e; e.smollm2_folder()"
echo "[setup] ready"
