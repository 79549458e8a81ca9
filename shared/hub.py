"""Is the Hugging Face Hub reachable, what is already in the local HF cache, what a repo holds
(metadata), and downloads with progress.

Offline must be detected fast: one short connection attempt in a worker thread, remembered
for a minute, so a lab on bad Wi-Fi never hangs and never retries in a storm. HF_ENDPOINT
(a mirror, or the tests' stand-in Hub) is what is probed and asked."""
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 1.5
REMEMBER_S = 60.0

_lock = threading.Lock()
_last: tuple[float, bool] | None = None


def offline_forced() -> bool:
    """True when the user asked for offline mode through the usual HF variables."""
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "GENAI_LAB_OFFLINE")
    return any(os.environ.get(f, "").lower() in ("1", "true", "yes", "on") for f in flags)


def _endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)


def _probe(host: str, port: int, timeout: float) -> bool:
    result = [False]

    def attempt():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result[0] = True
        except OSError:
            pass

    # DNS lookups ignore socket timeouts, so the whole attempt runs in a thread we can abandon.
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    return result[0]


def hub_reachable() -> bool:
    """One cheap connection attempt to the Hub, remembered for REMEMBER_S seconds."""
    global _last
    if offline_forced():
        return False
    with _lock:
        if _last and time.monotonic() - _last[0] < REMEMBER_S:
            return _last[1]
        ok = _probe(*_endpoint(), PROBE_TIMEOUT_S)
        _last = (time.monotonic(), ok)
        return ok


def in_local_cache(repo_id: str, filename: str = "config.json", cache_dir: str | None = None) -> bool:
    """True if `filename` of `repo_id` is in the local HF cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    except Exception:  # malformed ids raise validation errors: not cached
        return False
    return isinstance(found, str)


# ---------------------------------------------------------------- metadata and downloads

METADATA_TIMEOUT_S = 10.0  # one request for a model's file list and sizes
METADATA_REMEMBER_S = 300.0
DOWNLOAD_CONNECTION_ERRORS = ("RemoteProtocolError", "ConnectError", "ReadError", "TimeoutException",
                              "ReadTimeout", "ConnectTimeout", "LocalEntryNotFoundError", "ChunkedEncodingError")

_info: dict[str, tuple[float, object]] = {}
_info_locks: dict[str, threading.Lock] = {}
_downloads: dict[str, dict] = {}


def repo_info(repo_id: str, timeout: float | None = None):
    """The Hub's metadata for a model repo, remembered for a few minutes: huggingface_hub's ModelInfo
    with every file's size (`siblings`), the safetensors parameter counts (`safetensors.total`), the
    `config` (architectures, model_type) and whether it is `gated`. Raises huggingface_hub's errors
    (RepositoryNotFoundError, GatedRepoError, connection errors) as they come."""
    with _lock:
        lock = _info_locks.setdefault(repo_id, threading.Lock())
    with lock:  # one request per repo at a time; other repos are not held up by a slow answer
        hit = _info.get(repo_id)
        if hit and time.monotonic() - hit[0] < METADATA_REMEMBER_S:
            return hit[1]
        from huggingface_hub import HfApi, constants

        info = HfApi(endpoint=constants.ENDPOINT).model_info(
            repo_id, files_metadata=True, timeout=METADATA_TIMEOUT_S if timeout is None else timeout)
        _info[repo_id] = (time.monotonic(), info)
        return info


def download(repo_id: str, files: list[tuple[str, int]], progress=None) -> str:
    """Fetch `files` ([(name, size)]) of `repo_id` into the Hugging Face cache one after the other and
    return the snapshot folder. `progress(fraction, message)` hears about every chunk (a shared.jobs
    job's report fits); download_status(repo_id) says the same for a UI that polls. A dropped
    connection is retried by huggingface_hub from where it stopped; if it keeps dropping, the error
    says how far it got; the files that finished stay in the cache, so the next attempt fetches the rest."""
    from huggingface_hub import hf_hub_download

    from shared.memory import fmt_bytes

    total = sum(size for _, size in files) or 1
    state = {"done": 0, "total": total, "file": "", "error": ""}
    _downloads[repo_id] = state

    def tell():
        message = f"Downloading {repo_id}: {fmt_bytes(state['done'])} of {fmt_bytes(total)} ({state['file']})"
        if progress is not None:
            progress(min(state["done"] / total, 1.0), message)

    class Bar:  # what huggingface_hub's http_get drives instead of a tqdm bar
        def __init__(self, *args, initial=0, **kwargs):
            self.n = initial or 0
            state["done"] = state["before"] + self.n
            tell()

        def update(self, n=1):
            self.n += n or 0
            state["done"] = state["before"] + self.n
            tell()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def close(self):
            pass

        def set_postfix_str(self, *args, **kwargs):
            pass

        def set_description(self, *args, **kwargs):
            pass

    path, first = None, ""
    state["before"] = 0
    for name, size in files:
        state["file"] = name
        try:
            found = hf_hub_download(repo_id, name, tqdm_class=Bar)
        except Exception as exc:
            if type(exc).__name__ in DOWNLOAD_CONNECTION_ERRORS or "Consistency check failed" in str(exc):
                from shared.models import ModelUnavailable

                state["error"] = "stopped"
                raise ModelUnavailable(
                    f"The download of {repo_id} stopped at {fmt_bytes(state['done'])} of {fmt_bytes(total)}: the "
                    f"connection kept dropping during {name}; the files that finished are kept, so asking again "
                    "fetches only the rest.") from exc
            raise
        if path is None or len(Path(name).parts) < len(Path(first).parts):
            path, first = found, name
        state["before"] += size
        state["done"] = state["before"]
    tell()
    state["file"] = "done"
    folder = Path(path)
    for _ in Path(first).parts:
        folder = folder.parent
    return str(folder)


def download_status(repo_id: str) -> str:
    """'Downloading org/model: 120 MB of 548 MB (model.safetensors)' while a download runs, else ''."""
    from shared.memory import fmt_bytes

    state = _downloads.get(repo_id)
    if not state or state["file"] == "done" or state["error"]:
        return ""
    return f"Downloading {repo_id}: {fmt_bytes(state['done'])} of {fmt_bytes(state['total'])} ({state['file']})"


def forget() -> None:
    """Drop everything remembered about the Hub (reachability, metadata, downloads): tests, and a
    server whose network changed."""
    global _last
    with _lock:
        _last = None
        _info.clear()
        _downloads.clear()
