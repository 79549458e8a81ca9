"""A Hub model typed into the decoding explorer, through its public /compare API (gradio_client),
served by the stand-in Hub: it downloads, loads and generates; refusals come back as one sentence;
a slow Hub does not stop the lab from answering other requests."""
import time

import pytest

from conftest import import_app, running
from hubstub import GPT2, HUGE, REGISTRY_GPT2, TOKENIZER_ONLY, hub, wait_for  # noqa: F401


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    app = import_app("decoding_explorer")
    with running(app.demo) as url:
        yield Client(url, verbose=False)


def compare(client, model, prompt="Once upon a time", strategies=("greedy",), n=6):
    return client.predict(prompt, list(strategies), n, 0, False, "", model, api_name="/compare")


def test_a_typed_hub_id_downloads_loads_and_generates(hub, client):
    out = compare(client, GPT2, strategies=("greedy", "top_p"))
    assert "error" not in out, out
    assert out["model"] == GPT2 and "hub" in out["model_status"]
    assert [r["strategy"] for r in out["results"]] == ["greedy", "top_p"]
    assert all(len(r["tokens"]) == 6 for r in out["results"])
    assert [r for r in hub.served(GPT2) if r[2] == "model.safetensors" and r[0] == "GET"]


def test_refusals_are_one_sentence_and_fetch_nothing(hub, client):
    start = time.monotonic()
    out = compare(client, HUGE)
    assert time.monotonic() - start < 2.0
    assert "too big" in out["error"] and "1.60 TB" in out["error"]
    for model, expect in [(TOKENIZER_ONLY, "is not a model"), ("nobody-org/no-such-model", "not found on the Hub")]:
        assert expect in compare(client, model)["error"]
    assert hub.served(HUGE) == [] and hub.served(TOKENIZER_ONLY) == []


def test_a_slow_hub_leaves_the_lab_answering(hub, client):
    release = hub.hold(r"^/tiny-org/tiny-gpt2/resolve/.*/model\.safetensors$")
    slow = client.submit("Hello", ["greedy"], 4, 0, False, "", GPT2, api_name="/compare")
    try:
        assert wait_for(lambda: hub.held)
        other = compare(client, "gpt2")  # the registry's gpt2 (from the stand-in): another visitor
        assert "error" not in other and other["model"] == REGISTRY_GPT2
        assert hub.held and not slow.done()
    finally:
        release.set()
    result = slow.result(timeout=60)
    assert "error" not in result and result["model"] == GPT2
