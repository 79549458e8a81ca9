"""Decoding explorer through its API (gradio_client): /compare's JSON, same seed -> same output,
bad input gets a clear message and the server keeps serving. The app runs on the tiny GPT-2
here (the real model is exercised by the logic and browser tests)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, import_app, running

LAB = ROOT / "spaces" / "decoding_explorer"


@pytest.fixture(scope="module")
def url(tiny_gpt2):
    app = import_app("decoding_explorer")
    import decoding_service
    from shared.loading import Loaded
    from shared.models import Choice, ModelSpec, default

    model, tok = tiny_gpt2
    tiny = Loaded(model, tok, Choice(ModelSpec("tiny-gpt2 (test fixture)", "test/tiny-gpt2", "causal", True),
                                     "embedded", "test fixture"), "cpu", "float32")
    real_load = decoding_service.load

    def load(requested=None):
        if not requested or requested.strip() in ("", default("causal").name):
            return tiny
        return real_load(requested)

    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the model-id tests must never download, even where the Hub is up
    decoding_service.load = load
    try:
        with running(app.demo) as u:
            yield u
    finally:
        decoding_service.load = real_load
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


@pytest.fixture(scope="module")
def client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def compare(client, prompt="Once upon a time", strategies=("greedy", "top_p"), n=8, seed=0, **kw):
    return client.predict(prompt, list(strategies), n, seed, kw.get("chat", True), kw.get("params", ""),
                          kw.get("model", ""), api_name="/compare")


def test_compare_json_shape(client):
    r = compare(client, strategies=["greedy", "beam", "top_p", "contrastive"], n=6)
    assert r["model"] == "test/tiny-gpt2" and r["max_new_tokens"] == 6
    assert [x["strategy"] for x in r["results"]] == ["greedy", "beam", "top_p", "contrastive"]
    for x in r["results"]:
        assert isinstance(x["text"], str) and x["tokens_per_s"] > 0
        assert len(x["tokens"]) == 6
        t = x["tokens"][0]
        assert set(t) >= {"token", "prob", "top"} and 0 < t["prob"] <= 1
        assert len(t["top"]) == 5 and all(isinstance(a, str) and 0 <= p <= 1 for a, p in t["top"])
        assert t["top"] == sorted(t["top"], key=lambda a: -a[1])
        assert {"perplexity", "distinct_1", "distinct_2", "repetition_rate"} <= set(x["metrics"])


def test_same_seed_same_output_different_seed_differs(client):
    names = ["temperature", "top_k", "min_p", "greedy"]
    a = compare(client, strategies=names, seed=42, params=json.dumps({"temperature": {"temperature": 1.5}}))
    b = compare(client, strategies=names, seed=42, params={"temperature": {"temperature": 1.5}})
    c = compare(client, strategies=names, seed=43, params={"temperature": {"temperature": 1.5}})
    tokens = lambda r: [[t["token"] for t in x["tokens"]] for x in r["results"]]  # noqa: E731
    assert tokens(a) == tokens(b)
    assert tokens(a)[0] != tokens(c)[0]  # temperature 1.5 on a random model: another seed, another text
    assert tokens(a)[3] == tokens(c)[3]  # greedy ignores the seed


@pytest.mark.parametrize("kwargs,needle", [
    (dict(prompt=""), "empty"),
    (dict(prompt="   \n "), "empty"),
    (dict(strategies=[]), "at least one strategy"),
    (dict(strategies=["warp_drive"]), "Unknown strategy"),
    (dict(model="bert-base-uncased"), "not in the local cache"),
    (dict(model="meta-llama/Llama-3.2-1B"), "not in the local cache"),
    (dict(model="no such model!!"), "is not a model name"),
])
def test_bad_input_gets_a_clear_error(client, kwargs, needle):
    r = compare(client, **kwargs)
    assert needle in r["error"]


def test_out_of_range_values_are_clamped_with_notes(client):
    params = {"top_p": {"top_p": 1.5}, "top_k": {"top_p": 0}, "temperature": {"temperature": 0},
              "min_p": {"temperature": -2}, "beam": {"num_beams": 64}}
    r = compare(client, strategies=list(params), n=5, params=params, seed=-7)
    notes = " ".join(r["notes"])
    for needle in ("top_p=1.5", "top_p=0", "temperature must be > 0", "num_beams=64"):
        assert needle in notes
    assert r["seed"] == 7
    beam = r["results"][-1]
    assert beam["params"]["num_beams"] == 8 and len(beam["tokens"]) == 5
    r = compare(client, strategies=["greedy"], n=100000)
    notes = " ".join(r["notes"])
    assert "max_new_tokens=100000" in notes and "context of 256" in notes  # the lab cap, then the tiny model's
    assert r["max_new_tokens"] == 240 and len(r["results"][0]["tokens"]) == 240


def test_huge_prompt_is_cut_to_the_context(client):
    r = compare(client, prompt="lorem ipsum " * 90_000, n=4)  # ~1 MB
    assert r["prompt_tokens"] <= 256 - 4
    assert any("characters" in n for n in r["notes"]) and any("kept its last" in n for n in r["notes"])


def test_params_that_are_not_json_are_reported(client):
    r = compare(client, params="{top_p: nope")
    assert "not valid JSON" in r["notes"][0] and len(r["results"]) == 2


def test_concurrent_requests_and_server_keeps_serving(client):
    jobs = [client.submit("Twice", ["top_p", "beam"], 6, 3, True, "", "", api_name="/compare") for _ in range(2)]
    results = [j.result(timeout=120) for j in jobs]
    strip = lambda r: [(x["text"], x["tokens"]) for x in r["results"]]  # noqa: E731  (timings differ)
    assert strip(results[0]) == strip(results[1])
    assert compare(client)["results"][0]["tokens"]  # a good request after all the bad ones


def test_compare_is_the_one_public_endpoint(client):
    """The Generate button runs a shared.jobs job that the page follows (see test_decoding_service and
    the browser test); scripts use /compare (and /compare_endpoint for a serving engine)."""
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/compare", "/compare_endpoint"}


def test_compare_endpoint_answers_bad_input_with_a_message(client):
    """The serving-engine route (tested against a stand-in server in test_decoding_batching)."""
    down = client.predict("http://127.0.0.1:9/v1", "Hi", ["greedy"], 4, 0, True, "", "", "",
                          api_name="/compare_endpoint")
    assert "did not answer" in down["error"]
    bad = client.predict("ftp://x", "Hi", ["greedy"], 4, 0, True, "", "", "", api_name="/compare_endpoint")
    assert "http://" in bad["error"]
    empty = client.predict("http://127.0.0.1:9/v1", " ", ["greedy"], 4, 0, True, "", "", "",
                           api_name="/compare_endpoint")
    assert "empty" in empty["error"]


def test_app_import_is_light():
    """No torch/transformers at import: the server answers first, the model loads afterwards."""
    code = ("import sys; sys.argv=['app']; sys.path.insert(0, %r); import app; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))" % str(LAB))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
