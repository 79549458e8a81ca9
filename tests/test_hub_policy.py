"""Who may load what on a server strangers use: a Space, or serve_all.py on a non-loopback address.
By default only the registry's models and no local folders; the owner widens it with variables."""
import os

import pytest

from hubstub import EMBEDDER, GPT2, HUGE, REGISTRY_GPT2, hub  # noqa: F401
from shared import hubguard, loading
from shared.models import ModelUnavailable, resolve


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.1.1", True), ("", True),
    ("0.0.0.0", False), ("192.168.1.20", False), ("::", False), ("workshop.local", False)])
def test_loopback_addresses(host, loopback):
    assert hubguard.is_loopback(host) is loopback


@pytest.mark.parametrize("env", [{"SPACE_ID": "someone/lab"}, {"GENAI_LAB_PUBLIC": "1"},
                                 {"GRADIO_SERVER_NAME": "0.0.0.0"}])
def test_a_public_server_refuses_unlisted_ids_before_asking_the_hub(hub, monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ModelUnavailable, match="loads only the models in its list.*GENAI_LAB_ALLOW_ANY_MODEL=1"):
        loading.load_causal_lm(GPT2, fallback=False)
    for loader in (lambda: loading.load_embedder(EMBEDDER, fallback=False),
                   lambda: loading.load_pretrained("ner", GPT2, lambda where, offline: None)):
        with pytest.raises(ModelUnavailable, match="loads only the models in its list"):
            loader()
    assert [r for r in hub.requests if r[1] in (GPT2, EMBEDDER)] == []  # not even the metadata


def test_registry_models_load_on_a_space(hub, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/lab")
    loaded = loading.load_causal_lm("gpt2", fallback=False)
    assert loaded.choice.spec.hub_id == REGISTRY_GPT2 and loaded.choice.source == "hub"


def test_the_owner_can_allow_any_id_and_the_size_guard_still_applies(hub, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/lab")
    monkeypatch.setenv("GENAI_LAB_ALLOW_ANY_MODEL", "1")
    assert loading.load_causal_lm(GPT2, fallback=False).choice.source == "hub"
    with pytest.raises(ModelUnavailable, match="too big"):
        loading.load_causal_lm(HUGE, fallback=False)
    assert hub.served(HUGE) == []


def test_the_owner_can_list_extra_ids(hub, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/lab")
    monkeypatch.setenv("GENAI_LAB_ALLOWED_MODELS", f" {GPT2} , other-org/other")
    assert resolve("causal", GPT2, fallback=False).source == "hub"
    with pytest.raises(ModelUnavailable, match="loads only the models in its list"):
        resolve("causal", "third-org/unlisted", fallback=False)


@pytest.mark.parametrize("env", [{"SPACE_ID": "someone/lab"}, {"GENAI_LAB_PUBLIC": "1"},
                                 {"GRADIO_SERVER_NAME": "0.0.0.0"},
                                 {"SPACE_ID": "someone/lab", "GENAI_LAB_ALLOW_ANY_MODEL": "1"}])
def test_a_public_server_never_loads_its_own_folders(tmp_path, monkeypatch, env):
    for var in ("SPACE_ID", "GENAI_LAB_PUBLIC", "GRADIO_SERVER_NAME", "GENAI_LAB_ALLOW_ANY_MODEL"):
        monkeypatch.delenv(var, raising=False)
    assert resolve("causal", str(tmp_path)).source == "local folder"  # on this machine, for its owner
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("shared.hub.hub_reachable", lambda: False)
    with pytest.raises(ModelUnavailable):
        resolve("causal", str(tmp_path), fallback=False)


def test_serve_all_on_a_lan_address_is_a_public_server(monkeypatch, capsys):
    import serve_all

    for var in ("GENAI_LAB_PUBLIC", "SPACE_ID", "GRADIO_SERVER_NAME"):
        monkeypatch.setenv(var, "")  # so that what main() sets is undone after the test
        monkeypatch.delenv(var)
    assert serve_all.main(["--host", "127.0.0.1", "--labs", "no_such_lab"]) == 2
    assert not hubguard.public_server()
    assert serve_all.main(["--host", "0.0.0.0", "--labs", "no_such_lab"]) == 2
    assert os.environ.get("GENAI_LAB_PUBLIC") == "1" and hubguard.public_server()
    assert "only the registry's models" in capsys.readouterr().out
