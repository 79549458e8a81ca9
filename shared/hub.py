"""Is the Hugging Face Hub reachable, and what is already in the local HF cache?

Offline must be detected fast: one short connection attempt in a worker thread, remembered
for a minute, so a lab on bad Wi-Fi never hangs and never retries in a storm."""
import os
import socket
import threading
import time
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
