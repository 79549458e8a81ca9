"""shared.device: cpu/fp32 here, and one decorator for ZeroGPU and everywhere else."""
import sys
import types

import torch

from shared import device


def test_cpu_machine_gets_fp32():
    assert device.pick_dtype("cpu") == torch.float32
    assert device.pick_dtype("mps") == torch.float16


def test_env_overrides_device(monkeypatch):
    device.pick_device.cache_clear()
    monkeypatch.setenv("GENAI_LAB_DEVICE", "cpu")
    try:
        assert device.pick_device() == "cpu"
    finally:
        device.pick_device.cache_clear()


def test_decorator_is_a_no_op_off_zerogpu(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def work(x):
        return x * 2

    assert device.gpu(duration=30)(work) is work


def test_decorator_uses_spaces_gpu_on_zerogpu(monkeypatch):
    seen = {}
    fake = types.SimpleNamespace(GPU=lambda duration: (lambda fn: seen.setdefault("wrapped", (fn, duration)) and fn))
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")

    def work():
        return 1

    device.gpu(duration=45)(work)
    assert seen["wrapped"] == (work, 45)
