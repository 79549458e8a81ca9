"""The bounded model cache (shared.modelcache): models stay within a byte budget, the least recently
used one is unloaded first, never one in use, large loads run one at a time, and a model that had
to load again says so; once() still keeps the labs' own data."""
import gc
import threading
import weakref

import pytest

from hubstub import FIVE, forget_hub_models, hub  # noqa: F401
from shared import loading, modelcache
from shared.memory import param_bytes
from shared.modelcache import ModelCache
from shared.models import ModelUnavailable

MB = 1_000_000


@pytest.fixture
def cache(monkeypatch):
    """A fresh cache for the process (other tests' models, e.g. the embedded SmolLM2, stay out of it)."""
    fresh = ModelCache()
    monkeypatch.setattr(loading, "_models", fresh)
    return fresh


def budget(monkeypatch, megabytes: float) -> int:
    monkeypatch.setenv(modelcache.BUDGET_VAR, str(megabytes / 1000))
    return int(megabytes * MB)


def module(megabytes: float):
    import torch

    return torch.nn.Linear(int(megabytes * MB / 4), 1, bias=False)  # float32: 4 bytes a weight


def test_five_models_never_hold_more_than_the_budget(hub, cache, monkeypatch):
    limit = budget(monkeypatch, 15)  # room for two 6.5 MB tiny GPT-2s
    hub.prepare(*FIVE)
    refs = []
    for name in FIVE:
        loaded = loading.load_causal_lm(name, fallback=False)
        refs.append(weakref.ref(loaded.model))
        del loaded
        assert cache.resident_bytes("cpu") <= limit
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert sum(param_bytes(m) for m in alive) <= limit  # the process itself: unloaded models are gone
    assert [r() is not None for r in refs] == [False, False, False, True, True]  # least recently used went first
    del alive
    again = loading.load_causal_lm(FIVE[0], fallback=False)
    assert "loaded again" in again.status and "memory budget" in again.status
    weights = [r for r in hub.served(FIVE[0]) if r[0] == "GET" and r[2] == "model.safetensors"]
    assert len(weights) == 1  # loaded again from the local HF cache, not downloaded again
    del again
    forget_hub_models()


def test_a_model_in_use_is_never_unloaded(hub, cache, monkeypatch):
    budget(monkeypatch, 15)
    hub.prepare(*FIVE)
    held = loading.load_causal_lm(FIVE[0], fallback=False)  # a request still generating with it
    for name in FIVE[1:3]:
        loading.load_causal_lm(name, fallback=False)
    assert ("causal", FIVE[0], "hub", "cpu") in cache
    assert loading.load_causal_lm(FIVE[0], fallback=False).model is held.model
    del held
    forget_hub_models()


def test_when_every_model_is_in_use_a_new_one_is_told_to_wait(hub, cache, monkeypatch):
    budget(monkeypatch, 15)
    hub.prepare(*FIVE)
    held = [loading.load_causal_lm(name, fallback=False) for name in FIVE[:2]]
    with pytest.raises(ModelUnavailable, match="other visitors' models are in use: try again in a minute"):
        loading.load_causal_lm(FIVE[2], fallback=False)
    assert hub.served(FIVE[2]) == []
    assert loading.load_causal_lm(FIVE[0], fallback=False).model is held[0].model  # shared, not refused
    del held
    loading.load_causal_lm(FIVE[2], fallback=False)  # released: now it fits
    forget_hub_models()


def test_lru_order_follows_use(cache, monkeypatch):
    budget(monkeypatch, 2.5)
    cache.get(("m", "a"), lambda: module(1))
    cache.get(("m", "b"), lambda: module(1))
    cache.get(("m", "a"), lambda: pytest.fail("a is cached"))  # a is now the most recent
    cache.get(("m", "c"), lambda: module(1))
    assert cache.keys() == [("m", "a"), ("m", "c")]
    assert cache.times_unloaded(("m", "b")) == 1 and cache.events[-1].startswith("unloaded b (1.0 MB)")
    value, reloaded = cache.get(("m", "b"), lambda: module(1))
    assert reloaded and cache.resident_bytes("cpu") <= 2.5 * MB


def test_a_bundle_held_by_a_request_stays_and_a_reservation_makes_room(cache, monkeypatch):
    budget(monkeypatch, 2.5)
    bundle, _ = cache.get(("m", "bundle"), lambda: {"model": module(1), "lock": threading.Lock()})
    bundle["wrapped"] = bundle["model"]  # e.g. peft wrapping the model for good: still not "in use"
    cache.get(("m", "b"), lambda: module(1))
    cache.get(("m", "c"), lambda: module(1))  # over budget: the held bundle stays, b goes
    assert ("m", "bundle") in cache and ("m", "b") not in cache
    del bundle
    with cache.reserve(("m", "measured"), "cpu", int(2 * MB)):  # a load measured then freed (quantization lab)
        assert ("m", "bundle") not in cache and cache.resident_bytes("cpu") <= 2.5 * MB
    assert cache.resident_bytes("cpu") <= 1 * MB  # the reservation ended with the block


def test_a_full_cache_waits_then_refuses(cache, monkeypatch):
    budget(monkeypatch, 1.5)
    monkeypatch.setattr(modelcache, "ROOM_WAIT_S", 0.3)
    held = cache.get(("m", "a"), lambda: module(1))[0]
    with pytest.raises(modelcache.CacheFull, match="taken by models other visitors are using"):
        cache.get(("m", "b"), lambda: module(1), estimate=MB)
    assert cache.keys() == [("m", "a")]
    del held
    cache.get(("m", "b"), lambda: module(1), estimate=MB)
    assert cache.keys() == [("m", "b")]


def test_large_loads_run_one_at_a_time_small_ones_together(cache, monkeypatch):
    budget(monkeypatch, 100_000)
    running, peak, lock = [0], [0], threading.Lock()
    both_small = threading.Barrier(2, timeout=10)

    def build(small):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if small:
            both_small.wait()  # fails (BrokenBarrierError) unless two small loads overlap
        else:
            threading.Event().wait(0.2)
        with lock:
            running[0] -= 1
        return object()

    def ask(key, small):
        cache.get(key, lambda: build(small), estimate=0 if small else modelcache.LARGE_LOAD_BYTES)

    threads = [threading.Thread(target=ask, args=(("big", i), False)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1
    threads = [threading.Thread(target=ask, args=(("small", i), True)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not both_small.broken and peak[0] == 2


def test_concurrent_first_requests_load_once(cache):
    calls = []

    def build():
        calls.append(1)
        threading.Event().wait(0.1)
        return module(0.1)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(("m", "x"), build)[0])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


def test_once_keeps_lab_data_whatever_the_budget(cache, monkeypatch):
    budget(monkeypatch, 0)
    data = loading.once(("test_hub_cache", "table"), lambda: {"rows": [1, 2, 3]})
    cache.get(("m", "a"), lambda: module(1))
    assert loading.once(("test_hub_cache", "table"), lambda: pytest.fail("rebuilt")) is data
    assert loading.is_loaded("test_hub_cache") and loading.is_loaded("m")


def test_budget_comes_from_the_machine_unless_set(monkeypatch):
    import psutil

    monkeypatch.delenv(modelcache.BUDGET_VAR, raising=False)
    assert modelcache.budget_bytes("cpu") == int(psutil.virtual_memory().total * modelcache.RAM_SHARE)
    monkeypatch.setenv(modelcache.BUDGET_VAR, "2.5")
    assert modelcache.budget_bytes("cpu") == 2_500_000_000
    monkeypatch.setenv(modelcache.BUDGET_VAR, "lots")  # a typo falls back to the machine's default
    assert modelcache.budget_bytes("cpu") == int(psutil.virtual_memory().total * modelcache.RAM_SHARE)
