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
