"""quantization_comparer app: /estimate and /measure through gradio_client, bad input through the
API (the server keeps serving), measurements waiting in line, and the app started from the repo
and from a Space bundle."""
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import ROOT, import_app, running

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


def test_a_second_measurement_waits_in_line_and_sees_its_position(app, client, monkeypatch):
    """Measurements run one at a time (a shared.jobs key): while an API measurement runs, a UI
    user's Measure waits in line, is told its place, and runs when the first ends."""
    import quant_measure as qm
    import quant_views as views
    from shared import jobs

    release, started = threading.Event(), threading.Event()
    real = qm.measure

    def held(*args, **kwargs):
        started.set()
        release.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(qm, "measure", held)
    first = client.submit("all-MiniLM-L6-v2 (embedded)", ["fp32"], api_name="/measure")
    try:
        assert started.wait(60), "the API measurement never started"
        second = qm.start_measurement("all-MiniLM-L6-v2 (embedded)", ["int8"])  # what the UI's Measure does
        poll = jobs.poll(second.id)
        assert poll["state"] == jobs.QUEUED and poll["position"] == 1
        assert "number 1 in line" in views.job_line(poll, "all-MiniLM-L6-v2 (embedded)")
    finally:
        release.set()
    assert "fp32" in first.result(timeout=300)["results"]
    assert second.wait(300) and second.state == jobs.DONE and "int8" in second.result["results"]


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
