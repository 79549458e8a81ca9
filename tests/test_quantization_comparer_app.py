"""quantization_comparer app: /estimate and /measure through gradio_client, bad input through the
API (the server keeps serving), both ways of finding shared/, and one browser test."""
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, import_app, running, screenshot

LAB = "quantization_comparer"


@pytest.fixture(scope="module")
def app():
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # CI has no Hub: make offline explicit and fast
    yield import_app(LAB)
    if old is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = old


@pytest.fixture(scope="module")
def url(app):
    """One server for the whole module: launching the same Blocks a second time while the first
    server still runs (module-scoped) left the browser's measurement hanging."""
    with running(app.demo) as address:
        yield address


@pytest.fixture(scope="module")
def client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def test_api_lists_the_two_endpoints(client):
    api = client.view_api(return_format="dict", print_info=False)
    names = set(api["named_endpoints"])
    assert {"/estimate", "/measure"} <= names


def test_estimate_endpoint(client):
    data = client.predict("Llama-3.1-8B", 8192, 2, api_name="/estimate")
    assert data["parameters"]["total"] == 8_030_261_248
    assert set(data["precisions"]) == {"fp32", "fp16", "bf16", "int8", "nf4", "nf4-dq"}
    bf16 = data["precisions"]["bf16"]
    assert bf16["kv_cache_bytes"] == 2 * 32 * 2 * 8192 * 8 * 128 * 2
    assert "x 2 B" in bf16["weights_formula"] and bf16["total_bytes"] == bf16["weights_bytes"] + bf16["kv_cache_bytes"]
    assert [t["method"].split(" ")[0] for t in data["training"]] == ["Full", "LoRA", "QLoRA"]
    assert len(data["fits"]) == 9


def test_measure_endpoint_minilm(client):
    data = client.predict("all-MiniLM-L6-v2 (embedded)", ["fp32", "nf4"], api_name="/measure")
    for prec in ("fp32", "nf4"):
        r = data["results"][prec]
        for key in ("estimated_bytes", "measured_bytes", "load_s", "ms_per_token", "perplexity"):
            assert key in r
        assert abs(r["estimated_bytes"] - r["measured_bytes"]) <= 0.05 * r["measured_bytes"]
        assert r["perplexity"] is None and "encoder" in r["generation"]


@pytest.mark.parametrize("args,needle", [
    (("Llama-3.1-8B", 10**9, 1), "context"),
    (("", 2048, 1), "Pick a model"),
    (("definitely/not-a-model-xyz", 2048, 1), "offline"),
    (("<script>alert(1)</script>", 2048, 1), "not a model"),
    (("gpt2", -5, 1), "at least 1"),
])
def test_estimate_bad_input(client, args, needle):
    data = client.predict(*args, api_name="/estimate")
    assert needle in data["error"]


@pytest.mark.parametrize("args,needle", [
    (("Llama-3.1-70B", ["nf4"]), "does not fit"),
    (("Llama-3.2-1B", ["bf16"]), "offline"),
    (("all-MiniLM-L6-v2 (embedded)", ["fp3"]), "Unknown precision"),
    (("all-MiniLM-L6-v2 (embedded)", []), "at least one"),
    (("x" * 1000, ["fp32"]), "characters"),
])
def test_measure_bad_input(client, args, needle):
    data = client.predict(*args, api_name="/measure")
    assert needle in data["error"]


def test_wrong_types_then_server_still_serves(client):
    for args, api in ((("gpt2", "many", "some"), "/estimate"), ((123, "fp32"), "/measure"),
                      ((["gpt2"], 10, 1), "/estimate")):
        try:
            out = client.predict(*args, api_name=api)
        except Exception:  # rejected by gradio's own validation: fine, as long as the server lives
            continue
        assert "error" in out
    assert client.predict("gpt2", 1024, 1, api_name="/estimate")["parameters"]["total"] == 124_439_808


def test_measuring_while_another_measurement_runs(app, client):
    import quant_measure as qm

    job = client.submit("all-MiniLM-L6-v2 (embedded)", ["fp32", "int8"], api_name="/measure")
    deadline = time.time() + 60
    while not qm.busy() and time.time() < deadline:
        time.sleep(0.05)
    assert qm.busy(), "the API measurement never started"
    with pytest.raises(qm.MeasurementBusy, match="already running"):
        qm.measure("all-MiniLM-L6-v2 (embedded)", ["fp32"])
    text, *_ = app.run_measure("all-MiniLM-L6-v2 (embedded)", ["fp32"])  # what a second UI user sees
    assert "already running" in text
    assert "results" in job.result(timeout=300)
    assert not qm.busy()


@pytest.mark.parametrize("bundle", [False, True])
def test_app_finds_shared_in_repo_and_in_a_bundle(tmp_path, bundle):
    folder = ROOT / "spaces" / LAB
    if bundle:  # a deployed Space: shared/ and assets/ beside app.py
        target = tmp_path / LAB
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "shared", target / "shared", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "assets" / LAB, target / "assets" / LAB)
        folder = target
    code = ("import runpy,sys; m = runpy.run_path('app.py'); "
            "import quant_configs, shared; print(len(quant_configs.shipped()), shared.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=240,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    count, where = out.stdout.split()[-2:]
    assert int(count) >= 20 and Path(where).parent.parent == (folder if bundle else ROOT)


def test_browser_measure_smollm2(app, url, page, monkeypatch):
    import functools

    # A shorter reference text and continuation keep this fast on a busy CPU (the app uses 256 / 16).
    monkeypatch.setattr(app, "measure", functools.partial(app.measure, new_tokens=6, reference_tokens=64))
    page.goto(url)
    page.get_by_role("tab", name="Measure (load it for real)").click()
    for name in ("bf16", "int8", "nf4"):  # fp32 and nf4-dq stay checked
        page.get_by_label(name, exact=True).uncheck()
    page.get_by_role("button", name="Measure", exact=True).click()
    try:
        page.get_by_text("Prompt:").or_(page.get_by_text("Not measured:")).first.wait_for(timeout=400_000)
    finally:
        page.wait_for_timeout(1500)  # let the chart draw
        path = screenshot(page, LAB)
    assert page.get_by_text("Prompt:").count() == 1, page.get_by_text("Not measured:").all_inner_texts()
    assert path.exists() and path.stat().st_size > 10_000
