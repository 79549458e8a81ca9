"""First import of every app.py: quiet defaults, and a clear message when packages are missing.

Imports nothing heavy, so it can run before gradio and torch are known to be installed."""
import importlib.util
import os
import sys

SETUP_HINT = (
    "From the repo root run:  bash scripts/setup.sh\n"
    "or, by hand:  pip install -r requirements.txt && "
    "pip install --no-deps -r requirements-nodeps.txt"
)

# Set before gradio is imported: otherwise it looks up its telemetry hosts at start-up.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(*modules: str) -> None:
    """Exit with the exact command to run if any of `modules` cannot be imported."""
    absent = missing(*modules)
    if absent:
        sys.stderr.write(f"Missing Python packages: {', '.join(absent)}\n{SETUP_HINT}\n")
        raise SystemExit(1)
