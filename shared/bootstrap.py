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


def one_malloc_arena() -> bool:
    """Every thread allocates from glibc's main arena (as MALLOC_ARENA_MAX=1 would do from the environment).

    By default each thread that allocates gets an arena of its own, and a thread's arena cannot keep large
    blocks, so every big tensor a worker thread allocates is a fresh mmap (page faults, zeroed pages): the
    same DPO step took 4.7-5.5 s in a worker thread against 3.4-4.2 s in the main thread here, and a lab
    trains and generates in worker threads. With one arena: 3.6-3.7 s in either. Must run before other
    threads allocate (glibc fixes the arena limit when the second arena is made, and a thread keeps the arena
    it has); True if glibc took the setting. Measured on 2 cores; on a big machine with many threads
    allocating at once, set MALLOC_ARENA_MAX yourself (e.g. 8) and this leaves it alone."""
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, 1))  # -8: M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to do
        return False


one_malloc_arena()


def missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(*modules: str) -> None:
    """Exit with the exact command to run if any of `modules` cannot be imported."""
    absent = missing(*modules)
    if absent:
        sys.stderr.write(f"Missing Python packages: {', '.join(absent)}\n{SETUP_HINT}\n")
        raise SystemExit(1)
