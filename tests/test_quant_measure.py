"""quant_measure: requests refused before loading (gated offline, too large, bad precisions), a
stop between precisions, the queue of measurements, and real bitsandbytes measurements of the
embedded models (estimate within 5% of measured)."""
import sys
import threading
import time
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parent.parent / "spaces" / "quantization_comparer"
sys.path.insert(0, str(LAB))

import quant_configs as qc  # noqa: E402
import quant_measure as qm  # noqa: E402
from shared.models import ModelUnavailable  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_gated_model_offline_needs_its_weights():
    ref = qc.resolve_model("Llama-3.2-1B")  # gated on the Hub: the estimate works, measuring does not
    ok, why = qc.weights_available(ref)
    assert not ok and "offline mode" in why
    with pytest.raises(ModelUnavailable, match="estimate"):
        qm.plan("Llama-3.2-1B", ["bf16"])


def test_too_large_is_refused_before_loading(monkeypatch):
    loaded = []
    monkeypatch.setattr(qm, "load_at", lambda *a, **k: loaded.append(a))
    with pytest.raises(qm.TooLarge, match="Nothing was loaded"):
        qm.measure("Llama-3.1-70B", ["nf4"])
    assert not loaded


@pytest.mark.parametrize("bad", [[], ["fp8"], "int3", [1, 2], 5, None])
def test_bad_precisions(bad):
    with pytest.raises(qm.PrecisionError):
        qm.parse_precisions(bad)


def test_precisions_are_put_in_canonical_order():
    assert qm.parse_precisions(["nf4", "FP32", "int8"]) == ["fp32", "int8", "nf4"]
    assert qm.parse_precisions("bf16, nf4-dq") == ["bf16", "nf4-dq"]


def test_word_diff_marks_changes():
    assert qm.word_diff("a b c", "a x c") == "a ~~b~~ **x** c"
    assert qm.word_diff("same words", "same words") == "same words"


# ------------------------------------------------------------------ real measurements
def test_minilm_measured_matches_estimate_and_refuses_generation():
    data = qm.measure(qc.MINILM, ["fp32", "int8", "nf4-dq"])
    for prec, r in data["results"].items():
        assert abs(r["error_pct"]) < 5, (prec, r)
        assert r["perplexity"] is None and "encoder" in r["generation"]
    assert data["results"]["nf4-dq"]["naive_error_pct"] < -30  # the naive rule is far off
    ref = qc.resolve_model(qc.MINILM)
    with pytest.raises(qm.NotGenerative, match="encoder"):
        qm.continue_text(ref, None, None, "cpu")


def test_smollm2_measured_matches_estimate_with_quality():
    # Short text and continuation keep this fast on a busy CPU; the app uses 256 and 16 tokens.
    # fp32 rather than bf16 as the reference: on a CPU, bf16 matmuls are several times slower.
    data = qm.measure(qc.SMOLLM2, ["fp32", "nf4"], new_tokens=6, reference_tokens=64)
    fp32, nf4 = data["results"]["fp32"], data["results"]["nf4"]
    for r in (fp32, nf4):
        assert abs(r["error_pct"]) < 5
        assert r["perplexity"] > 1 and r["ms_per_token"] > 0 and r["load_s"] > 0
        assert len(r["continuation_ids"]) == 6 and r["perplexity_tokens"] == 64
        assert isinstance(r["rss_after_use_bytes"], int) and isinstance(r["rss_delta_bytes"], int)
    assert nf4["quant_state_bytes"] > 0 and fp32["quant_state_bytes"] == 0
    assert nf4["measured_bytes"] < 0.25 * fp32["measured_bytes"]  # more than fp32 / 8: embeddings stay 16-bit
    assert nf4["measured_bytes"] > fp32["measured_bytes"] / 8
    assert fp32["same_as_reference"] and nf4["reference_precision"] == "fp32"




def test_stop_keeps_the_precisions_already_measured():
    asked = []

    def stop_after_the_first():
        asked.append(1)
        return len(asked) > 1

    data = qm.measure(qc.MINILM, ["fp32", "int8", "nf4"], should_stop=stop_after_the_first)
    assert data["stopped"] and "measured_bytes" in data["results"]["fp32"]
    assert data["results"]["int8"]["error"] == data["results"]["nf4"]["error"] == qm.STOPPED_ROW


def test_measurements_wait_in_line_one_at_a_time(monkeypatch):
    """The app's measurements share one shared.jobs key: the second waits with its position, then runs."""
    from shared import jobs

    release, running = threading.Event(), []

    def held(model_name, precisions, progress=None, should_stop=None, **kw):
        running.append(model_name)
        release.wait(30)
        return {"model": model_name, "results": {}}

    monkeypatch.setattr(qm, "measure", held)
    first = qm.start_measurement(qc.MINILM, ["fp32"])
    second = qm.start_measurement(qc.SMOLLM2, ["nf4"])
    try:
        deadline = time.time() + 30
        while not running and time.time() < deadline:
            time.sleep(0.02)
        assert jobs.poll(first.id)["state"] == jobs.RUNNING
        assert jobs.poll(second.id)["state"] == jobs.QUEUED and jobs.poll(second.id)["position"] == 1
    finally:
        release.set()
    assert first.wait(30) and second.wait(30)
    assert running == [qc.MINILM, qc.SMOLLM2] and second.result["model"] == qc.SMOLLM2
    with pytest.raises(qm.TooLarge):  # refused before it queues, with the estimate as the reason
        qm.start_measurement("Llama-3.1-70B", ["nf4"])
