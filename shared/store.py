"""What must outlive the process: the data folder, records in SQLite, files written atomically,
and pushes to the Hub.

The data folder is `GENAI_LAB_DATA` when set; `/data` on a Space with persistent storage; else
`~/.cache/genai-lab/data`. Records go to SQLite in WAL mode (a committed row survives a crash);
files and folders are written under a temporary name and renamed into place, so a reader never
sees half of one."""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

from shared.errors import UserError


class StoreError(UserError):
    """The data folder or a database cannot be used; the message says which and why."""


def data_dir(*parts: str) -> Path:
    """A folder under the data folder, created if needed."""
    base = os.environ.get("GENAI_LAB_DATA")
    if not base:
        space_data = Path("/data")
        if os.environ.get("SPACE_ID") and space_data.is_dir() and os.access(space_data, os.W_OK):
            base = str(space_data / "genai-lab")
        else:
            base = str(Path.home() / ".cache" / "genai-lab" / "data")
    path = Path(base, *parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"Cannot create the data folder {path}: {exc.strerror or exc}. "
                         "Set GENAI_LAB_DATA to a writable folder.") from exc
    return path


# ---------------------------------------------------------------- atomic files

def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write `data` to `path` through a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def atomic_folder(path: str | Path):
    """Yield a temporary folder beside `path`; when the block ends without error it replaces `path`
    whole (an older folder of that name is removed only after the new one is complete)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}-{threading.get_ident()}")
        os.replace(path, old)
    os.replace(staging, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- records

class Database:
    """One SQLite file in WAL mode, one connection per thread; `schema` is run on first open.

    A row is on disk when `write()` returns (synchronous=FULL): an acknowledged record survives
    a crash or a SIGKILL of the server."""

    def __init__(self, path: str | Path, schema: str = ""):
        self.path = Path(path)
        self.schema = schema
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.connect()  # fail now, with a clear message, rather than on the first label

    def connect(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is not None:
            return con
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA busy_timeout=30000")
            if self.schema:
                con.executescript(self.schema)
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"The database {self.path} cannot be used ({exc}). It was left untouched; "
                             "move it aside or set GENAI_LAB_DATA to another folder.") from exc
        except OSError as exc:
            raise StoreError(f"Cannot open the database {self.path}: {exc}.") from exc
        self._local.con = con
        return con

    def query(self, sql: str, params=()) -> list[dict]:
        try:
            return [dict(row) for row in self.connect().execute(sql, params).fetchall()]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"Reading {self.path.name} failed: {exc}.") from exc

    def write(self, sql: str, params=()) -> int:
        """Run one INSERT/UPDATE/DELETE in its own transaction; returns lastrowid."""
        return self.write_many([(sql, params)])[-1]

    def write_many(self, statements) -> list[int]:
        """Several statements in one transaction: all of them are stored, or none."""
        con = self.connect()
        ids = []
        with self._write_lock:
            try:
                con.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    ids.append(con.execute(sql, params).lastrowid)
                con.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                with contextlib.suppress(sqlite3.DatabaseError):
                    con.execute("ROLLBACK")
                if "readonly" in str(exc) or "read-only" in str(exc):
                    raise StoreError(f"The database {self.path} is read-only; nothing was saved. Make it "
                                     "writable or set GENAI_LAB_DATA to another folder.") from exc
                raise StoreError(f"Saving to {self.path.name} failed ({exc}); nothing was saved.") from exc
        return ids

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


# ---------------------------------------------------------------- the Hub

def hub_token() -> str | None:
    """The token of `hf auth login` or HF_TOKEN; None when there is none. Never shown, never logged."""
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001
        return None


def push_folder(folder: str | Path, repo_id: str, repo_type: str = "model", private: bool = True,
                message: str = "Upload from the GenAI Lab Playground") -> str:
    """Create (if needed) and upload `folder` to the Hub repo `repo_id`; returns its URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    token = hub_token()
    if not token:
        raise UserError("No Hugging Face token: run `hf auth login` (or set HF_TOKEN) where the lab runs, "
                        "then push again. The files are saved locally either way.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UserError(f"'{str(repo_id)[:80]}' is not a Hub repo id like 'your-name/my-adapter'.") from None
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, commit_message=message)
    except Exception as exc:  # noqa: BLE001  network, permissions: one line, the local copy stays
        raise UserError(f"Pushing to {repo_id} failed ({type(exc).__name__}: {str(exc)[:200]}); "
                        "the files are saved locally.") from exc
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    return f"https://huggingface.co/{prefix}{repo_id}"
