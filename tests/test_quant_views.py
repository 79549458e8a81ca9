"""quant_views: one unit (MB or GB) per view across its chart and tables, refused rows, the
visible legend of the measure table, the progress and staleness lines."""
import sys
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parent.parent / "spaces" / "quantization_comparer"
sys.path.insert(0, str(LAB))

import quant_configs as qc  # noqa: E402
import quant_estimate as qe  # noqa: E402
import quant_views as views  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def sizes_in(frame, columns) -> set[str]:
    return {str(frame[c][i]).split()[-1] for c in columns for i in range(len(frame)) if str(frame[c][i]) != "-"}


@pytest.mark.parametrize("model,unit", [("Llama-3.1-8B", "GB"), ("gpt2", "MB"), (qc.MINILM, "MB")])
def test_estimate_uses_one_unit_in_chart_and_tables(model, unit):
    data = qe.estimate(qc.resolve_model(model), 2048, 1)
    v = views.estimate_views(data)
    assert v["unit"] == unit and f"every size below in **{unit}**" in v["summary"]
    assert sizes_in(v["table"], ["weights", "KV cache", "weights + KV", "naive (fp32 / n)"]) == {unit}
    assert sizes_in(v["training"], ["memory"]) == {unit}
    fp32 = data["precisions"]["fp32"]["weights_bytes"]
    chart = v["chart"].set_index(["precision", "part"])["memory"]
    assert chart["fp32", "weights"] == pytest.approx(fp32 / (1e9 if unit == "GB" else 1e6))
    assert list(v["fits"].columns)[:2] == ["what", "needs"] and len(views.fits_widths(len(v["fits"].columns))) == len(
        v["fits"].columns)


def measured(**rows):
    base = dict(estimated_bytes=112_000_000, estimate_formula="e", naive_bytes=67_000_000, naive_formula="n")
    ok = dict(base, measured_bytes=111_000_000, error_pct=0.9, naive_error_pct=-39.6, rss_delta_bytes=5_000_000,
              rss_after_use_bytes=180_000_000, load_s=1.0, ms_per_token=12.0, perplexity=30.1,
              measured_formula="m", speed_formula="s", continuation=None)
    return {"model": qc.SMOLLM2, "device": "cpu", "prompt": None,
            "results": {p: (dict(base, error=r) if isinstance(r, str) else ok) for p, r in rows.items()}}


def test_measure_views_one_unit_refused_rows_and_a_visible_legend():
    v = views.measure_views(measured(nf4=None, fp32="refused before loading: too big"))
    assert v["unit"] == "MB"
    table = v["table"]
    assert list(table["precision"]) == ["nf4", "fp32"] and table["how"][1].startswith("refused")
    assert sizes_in(table, ["estimated", "measured"]) == {"MB"} and "180.00 MB" in table["RSS load → use"][0]
    assert set(v["chart"]["kind"]) == {"estimate", "measured", "naive fp32/n"}
    assert "Negative = the naive rule" in views.MEASURE_LEGEND and "RSS load → use" in views.MEASURE_LEGEND
    big = measured(bf16=None)
    big["results"]["bf16"].update(estimated_bytes=2_500_000_000, measured_bytes=2_480_000_000)
    assert views.measure_views(big)["unit"] == "GB"
    stopped = dict(measured(fp32=None), stopped=True)
    assert "**Stopped.**" in views.measure_views(stopped)["quality"]


def test_progress_and_staleness_lines():
    queued = {"state": "queued", "position": 2, "progress": 0.0, "message": "", "elapsed": 0.0, "error": ""}
    assert "number 2 in line" in views.job_line(queued, qc.SMOLLM2)
    running = dict(queued, state="running", position=0, progress=0.25, message="fp32: loading", elapsed=12.0)
    assert views.job_line(running, qc.SMOLLM2).startswith("⏳ **25%** · fp32: loading")
    assert views.job_line(dict(queued, state="error", error="Too big"), "x") == "**Not measured:** Too big"
    assert views.stale_line(qc.SMOLLM2, qc.SMOLLM2) == "" and views.stale_line("", "gpt2") == ""
    assert "press Measure" in views.stale_line(qc.SMOLLM2, "gpt2").replace("Press", "press")
