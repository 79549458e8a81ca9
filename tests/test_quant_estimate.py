"""quant_estimate: meta-device parameter counts against the published ones, weight/KV/training
estimates with their formulas, does-it-fit, bad context/batch, and the meta build kept apart from
a concurrent load."""
import sys
import threading
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parent.parent / "spaces" / "quantization_comparer"
sys.path.insert(0, str(LAB))

import quant_configs as qc  # noqa: E402
import quant_estimate as qe  # noqa: E402

# Published parameter counts (model cards / the Hub's safetensors metadata).
KNOWN = {
    "Llama-3.1-8B": 8.03e9, "Llama-3.2-1B": 1.24e9, "Llama-3.1-70B": 70.6e9, "Mistral-7B-Instruct-v0.3": 7.25e9,
    "Qwen2.5-0.5B": 494e6, "Qwen2.5-7B": 7.62e9, "Qwen2.5-72B": 72.7e9, "gemma-2-2b": 2.61e9,
    "gemma-3-1b-pt": 1.0e9, "Phi-3-mini-4k-instruct": 3.82e9, "gpt2": 124e6, "gpt2-xl": 1.56e9,
    "SmolLM2-135M": 135e6, "SmolLM2-1.7B": 1.71e9,
}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("name,expected", sorted(KNOWN.items()))
def test_parameter_counts_match_published(name, expected):
    ref = qc.resolve_model(name)
    counts = qe.count_config(ref.config, ref.generative)
    assert counts.total == pytest.approx(expected, rel=0.01)
    assert counts.quantizable + counts.rest == counts.total


def test_tied_embeddings_counted_once_and_kept_unquantized():
    c = qe.count_config(qc.resolve_model("gpt2").config)
    assert c.tied and c.total == 124_439_808
    assert dict(c.rest_parts)["embeddings"] == 50257 * 768 + 1024 * 768  # wte (shared with lm_head) + wpe
    c8 = qe.count_config(qc.resolve_model("Llama-3.1-8B").config)
    assert not c8.tied and dict(c8.rest_parts)["output head"] == 128256 * 4096


def test_weight_formulas_bits_and_order():
    c = qe.count_config(qc.resolve_model("Llama-3.1-8B").config)
    est = {p: qe.weight_bytes(c, p) for p in qe.PRECISIONS}
    assert est["fp32"].bytes == pytest.approx(c.total * 4, rel=1e-4)
    assert est["fp32"].bytes > est["bf16"].bytes > est["int8"].bytes > est["nf4"].bytes > est["nf4-dq"].bytes
    assert est["nf4"].bits_per_quantized_weight == pytest.approx(4.5, abs=0.01)  # 4 + 32/64
    assert est["nf4-dq"].bits_per_quantized_weight == pytest.approx(4.127, abs=0.01)  # 4 + 8/64 + 32/(64*256)
    # The naive rule (fp32 / 8) forgets what stays in 16-bit: it underestimates 4-bit models.
    assert est["nf4"].naive_bytes < 0.75 * est["nf4"].bytes
    for e in est.values():
        assert "=" in e.formula and e.formula.endswith(qe.fmt_bytes(e.bytes))


def test_kv_cache_grouped_query_and_sliding_window():
    ref = qc.resolve_model("Llama-3.1-8B")
    kv, formula = qe.kv_bytes(ref.config, 8192, 1, 2)
    assert kv == 2 * 32 * 8192 * 8 * 128 * 2  # 8 kv heads, not 32: GQA
    assert "8 kv heads" in formula
    g = qc.resolve_model("gemma-3-1b-pt")
    windowed, text = qe.kv_bytes(g.config, 32768, 1, 2)
    full = qe.kv_cache_bytes(g.config, 32768, 1, 2)
    assert windowed < full / 3 and "sliding-window" in text


def test_estimate_training_and_fits():
    data = qe.estimate(qc.resolve_model("Llama-3.1-8B"), 4096, 1)
    methods = {t["method"].split(",")[0].split(" r=")[0]: t["bytes"] for t in data["training"]}
    assert methods["Full fine-tune"] > methods["LoRA"] > methods["QLoRA"]
    assert methods["Full fine-tune"] > 16 * 8e9
    fits = {row["what"]: row for row in data["fits"]}
    assert fits["inference fp32 (weights + KV cache)"]["T4 (16 GB)"] == "no"
    assert fits["inference nf4 (weights + KV cache)"]["T4 (16 GB)"] == "yes"
    assert any(k.startswith("ZeroGPU") for k in fits["inference nf4 (weights + KV cache)"])


@pytest.mark.parametrize("ctx,bs", [(10**9, 1), (0, 1), (2048, 0), ("abc", 1), (2048, 1.5), (None, 1), (2048, 10**6)])
def test_bad_context_and_batch_are_refused(ctx, bs):
    with pytest.raises(qe.EstimateError):
        qe.estimate(qc.resolve_model("gpt2"), ctx, bs)


def test_context_beyond_training_length_warns():
    data = qe.estimate(qc.resolve_model("gpt2"), 4096, 1)
    assert data["warnings"] and "1,024" in data["warnings"][0]


def test_meta_build_does_not_leak_into_a_concurrent_load(monkeypatch):
    """The estimate builds models on the meta device (init_empty_weights patches nn.Module for
    every thread) while a measurement may be loading one in another thread: BUILD_LOCK keeps them
    apart, so the loaded model never gets meta tensors."""
    import torch

    devices, started = [], threading.Event()
    import accelerate  # quant_estimate imports init_empty_weights from it at call time

    original = accelerate.init_empty_weights

    class SlowEmpty:
        def __init__(self):
            self.ctx = original()

        def __enter__(self):
            self.ctx.__enter__()
            started.set()
            threading.Event().wait(0.3)  # hold the patch long enough for the other thread to try

        def __exit__(self, *exc):
            return self.ctx.__exit__(*exc)

    monkeypatch.setattr(accelerate, "init_empty_weights", SlowEmpty)

    def loader():
        started.wait(5)
        with qe.BUILD_LOCK:
            devices.append(torch.nn.Linear(4, 4).weight.device.type)

    worker = threading.Thread(target=loader)
    worker.start()
    qe._count_cached.cache_clear()
    qe.count_config(qc.resolve_model("gpt2").config)
    worker.join()
    assert devices == ["cpu"]
