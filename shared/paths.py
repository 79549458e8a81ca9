"""Where the project's files live, in the repo and in a deployed Space bundle alike."""
import os
from pathlib import Path

# shared/ sits at the repo root, or beside app.py in a deployed bundle: either way its parent
# holds assets/.
ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"


def cache_dir(*parts: str) -> Path:
    """A folder outside the repo for converted models and other rebuildable files."""
    base = os.environ.get("GENAI_LAB_CACHE") or Path.home() / ".cache" / "genai-lab"
    path = Path(base, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def pypi_file(spec: str, pattern: str, *pip_args: str) -> Path:
    """A PyPI package's wheel or sdist (`spec` like "gensim==4.3.3", `pattern` its file name glob),
    downloaded once with `pip download --no-deps` into the cache and never installed: for scripts
    that read data files out of it."""
    import subprocess
    import sys

    folder = cache_dir("pypi", spec.split("==")[0])
    found = sorted(folder.glob(pattern))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *pip_args, "-d", str(folder),
                        spec], check=True)
        found = sorted(folder.glob(pattern))
    if not found:
        raise FileNotFoundError(f"pip downloaded {spec} but no file matches {pattern} in {folder}")
    return found[0]
