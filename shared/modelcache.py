"""The models a server holds in memory, kept within a byte budget sized from the machine.

Every visitor of a shared Space can ask for a different model; kept forever, five of them exhaust
its RAM. This cache keeps loaded models up to a budget (half the RAM by default, or
GENAI_LAB_MODEL_BUDGET_GB), unloads the least recently used one first, never one that is in use
(something outside the cache still holds it: a generation running, a session keeping it), and
loads large models one at a time. A model unloaded and asked for again loads again, and says so.

Plain Python; torch only to find a model's bytes. shared.loading holds the one instance."""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

BUDGET_VAR = "GENAI_LAB_MODEL_BUDGET_GB"
RAM_SHARE = 0.5  # of the machine's RAM (CPU models): the rest is for Python, gradio and the visitors' data
GPU_SHARE = 0.9  # of the GPU's memory (CUDA models)
LARGE_LOAD_BYTES = 1_000_000_000  # models at least this big load one at a time
ROOM_WAIT_S = 60.0  # how long a load waits for models in use to be released before it gives up
POLL_S = 0.25


@dataclass
class Entry:
    key: tuple
    value: Any
    device: str
    bytes: int
    obj: Any = None  # the object whose outside references mean "in use" (the torch module)
    base_refs: int = 0
    last_used: float = field(default_factory=time.monotonic)
    loads: int = 1


def _device_kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"  # mps shares the RAM


def budget_bytes(device: str = "cpu") -> int:
    """The bytes of models this process keeps on `device`'s memory: GENAI_LAB_MODEL_BUDGET_GB if set,
    else RAM_SHARE of the RAM (GPU_SHARE of the GPU's memory for CUDA)."""
    wanted = os.environ.get(BUDGET_VAR, "").strip()
    if wanted:
        try:
            return max(0, int(float(wanted) * 1e9))
        except ValueError:
            pass  # a typo in the variable must not take the lab down: the machine's default applies
    if _device_kind(device) == "cuda":
        import torch

        index = torch.device(device).index or 0
        return int(torch.cuda.get_device_properties(index).total_memory * GPU_SHARE)
    import psutil

    return int(psutil.virtual_memory().total * RAM_SHARE)


def main_module(value):
    """The torch module inside what a loader returned (a model, a (model, tokenizer) pair, a pipeline)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - every lab that loads models has torch
        return None
    if isinstance(value, dict):  # a lab's bundle: {"model": ..., "lock": ...}
        value = list(value.values())
    candidates = list(value) if isinstance(value, (tuple, list)) else [value, getattr(value, "model", None),
                                                                      getattr(value, "unet", None)]
    for c in candidates:
        if isinstance(c, torch.nn.Module):
            return c
    return None


def measured_bytes(value) -> int:
    from shared.memory import param_bytes

    module = main_module(value)
    return param_bytes(module) if module is not None else 0


class CacheFull(RuntimeError):
    """Every model in memory is in use and the new one does not fit beside them."""


class ModelCache:
    def __init__(self):
        self._entries: OrderedDict[tuple, Entry] = OrderedDict()  # least recently used first
        self._loading: dict[tuple, tuple[str, int]] = {}  # key -> (device kind, estimated bytes)
        self._evicted: dict[tuple, int] = {}  # key -> times it was unloaded
        self._lock = threading.RLock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._large = threading.Lock()
        self.events: list[str] = []  # what was unloaded and why, newest last (bounded)

    # ------------------------------------------------------------ reading
    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._entries

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._entries)

    def resident(self) -> list[dict]:
        """One row per model held: key, device, bytes, in use, loads (for a status table)."""
        with self._lock:
            return [dict(key=e.key, device=e.device, bytes=e.bytes, in_use=self.in_use(e), loads=e.loads)
                    for e in self._entries.values()]

    def resident_bytes(self, device: str = "cpu", include_loading: bool = True) -> int:
        kind = _device_kind(device)
        with self._lock:
            total = sum(e.bytes for e in self._entries.values() if _device_kind(e.device) == kind)
            if include_loading:
                total += sum(b for k, b in self._loading.values() if k == kind)
            return total

    def evictable_bytes(self, device: str = "cpu") -> int:
        kind = _device_kind(device)
        with self._lock:
            return sum(e.bytes for e in self._entries.values()
                       if _device_kind(e.device) == kind and not self.in_use(e))

    def in_use(self, entry: Entry) -> bool:
        """True while something outside the cache holds the model (a request using it, a session)."""
        if entry.obj is None:
            return False
        return self._refs(entry) > entry.base_refs

    @staticmethod
    def _refs(entry: Entry) -> int:
        return sys.getrefcount(entry.obj)

    def times_unloaded(self, key) -> int:
        with self._lock:
            return self._evicted.get(key, 0)

    # ------------------------------------------------------------ loading
    def get(self, key, build: Callable[[], Any], device: str = "cpu",
            estimate: int | Callable[[], int] = 0) -> tuple[Any, bool]:
        """(value, reloaded): the cached value for `key`, or build() within the budget. `reloaded` is True
        when this call loaded a model that had been unloaded to make room. `estimate`: the bytes the
        model will take (or a function that says, called only when it must load)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                return self._touch(entry), False
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # concurrent first requests for one model wait for one load
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    return self._touch(entry), False
            estimate = int((estimate() if callable(estimate) else estimate) or 0)
            with self._large if estimate >= LARGE_LOAD_BYTES else nullcontext():
                self._make_room(device, estimate)
                with self._lock:
                    self._loading[key] = (_device_kind(device), int(estimate))
                try:
                    value = build()
                finally:
                    with self._lock:
                        self._loading.pop(key, None)
                # In use = held outside the cache: the module callers unpack from a (model, tokenizer)
                # pair, else what they hold (a model, a pipeline, a lab's dict bundle whose module may be
                # wrapped for good, e.g. by peft).
                holder = main_module(value) if isinstance(value, (tuple, list)) else value
                entry = Entry(key, value, device, measured_bytes(value) or int(estimate), holder)
                del value, holder  # from here on only the entry holds it, so its reference count is the baseline
                with self._lock:
                    reloaded = key in self._evicted
                    entry.loads += self._evicted.get(key, 0)
                    self._entries[key] = entry
                    entry.base_refs = self._refs(entry)
                    self._shrink(device, keep=key)  # measured bytes may exceed the estimate
                return entry.value, reloaded

    @contextmanager
    def reserve(self, key, device: str = "cpu", estimate: int = 0):
        """Room for a model that is loaded, used and freed inside the block (the quantization lab's
        measurements): least recently used models are unloaded first so it fits the budget, and while
        it lasts its bytes count as loading, so other loads make room for it too."""
        estimate = int(estimate or 0)
        with self._large if estimate >= LARGE_LOAD_BYTES else nullcontext():  # not for the whole block:
            self._make_room(device, estimate)                                  # it may last minutes (training)
            with self._lock:
                self._loading[key] = (_device_kind(device), estimate)
        try:
            yield
        finally:
            with self._lock:
                self._loading.pop(key, None)

    def _touch(self, entry: Entry):
        self._entries.move_to_end(entry.key)
        entry.last_used = time.monotonic()
        return entry.value

    def _make_room(self, device: str, needed: int) -> None:
        """Unload least recently used models until `needed` more bytes fit in the budget; wait a while
        for models in use to be released; CacheFull if they are not."""
        budget = budget_bytes(device)
        deadline = time.monotonic() + ROOM_WAIT_S
        while True:
            with self._lock:
                self._shrink(device, needed=needed)
                used = self.resident_bytes(device)
                if used + needed <= budget or used == 0:
                    return
            if time.monotonic() >= deadline:
                from shared.memory import fmt_bytes

                raise CacheFull(
                    f"This server's model memory ({fmt_bytes(budget)}) is taken by models other visitors are "
                    f"using right now ({fmt_bytes(used)}); try again in a minute.")
            time.sleep(POLL_S)

    def _shrink(self, device: str, needed: int = 0, keep=None) -> None:
        budget = budget_bytes(device)
        kind = _device_kind(device)
        for key in list(self._entries):  # oldest first
            if self.resident_bytes(device) + needed <= budget:
                return
            entry = self._entries[key]
            if key == keep or _device_kind(entry.device) != kind or self.in_use(entry):
                continue
            self._unload(key, f"to make room within the {budget / 1e9:.2f} GB model budget")

    def _unload(self, key, why: str) -> None:
        entry = self._entries.pop(key)
        self._evicted[key] = self._evicted.get(key, 0) + 1
        self.events.append(f"unloaded {key[1] if len(key) > 1 else key} ({entry.bytes / 1e6:.1f} MB) {why}")
        del self.events[:-50]
        del entry
        gc.collect()
        _free_device_memory()

    def unload(self, match: Callable[[tuple], bool] | None = None) -> int:
        """Drop the cached models whose key matches (all when None), in use or not: their holders keep
        their own reference. Returns how many were dropped."""
        with self._lock:
            keys = [k for k in self._entries if match is None or match(k)]
            for key in keys:
                self._unload(key, "on request")
            return len(keys)


def _free_device_memory() -> None:
    if "torch" not in sys.modules:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    from shared.memory import return_free_memory

    return_free_memory()
