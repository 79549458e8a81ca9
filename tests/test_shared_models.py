"""shared.models: which model a lab gets, and the reason it says in the UI."""
import pytest

from shared import hub, hubguard, models
from shared.models import ModelUnavailable, resolve


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    monkeypatch.setattr(hub, "in_local_cache", lambda *a, **k: False)


def test_every_role_lists_real_hub_ids():
    for role, specs in models.REGISTRY.items():
        assert specs, role
        for spec in specs:
            assert models.valid_repo_id(spec.hub_id), spec
            assert spec.role == role


@pytest.mark.parametrize("role", ["chat", "causal", "embeddings", "ner"])
def test_default_is_the_embedded_model(role):
    choice = resolve(role)
    assert choice.source == "embedded" and choice.spec.embedded and not choice.fell_back


def test_offline_request_falls_back_and_says_why(offline):
    choice = resolve("causal", "gpt2-large")
    assert choice.fell_back and choice.source == "embedded"
    assert "openai-community/gpt2-large" in choice.reason and "unreachable" in choice.reason


def test_offline_request_without_fallback_is_a_clear_error(offline):
    with pytest.raises(ModelUnavailable, match="not in the local cache"):
        resolve("causal", "someone/some-model", fallback=False)


def test_forced_offline_mode_is_named(offline, monkeypatch):
    monkeypatch.setattr(hub, "offline_forced", lambda: True)
    assert "HF_HUB_OFFLINE" in resolve("chat", "Qwen/Qwen2.5-0.5B-Instruct").reason


def test_cached_model_is_used_offline(monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    monkeypatch.setattr(hub, "in_local_cache", lambda repo, *a, **k: repo == "openai-community/gpt2")
    monkeypatch.setattr(hubguard, "cached_folder", lambda repo: "/cache/snapshot")
    monkeypatch.setattr(hubguard, "check", lambda *a, **k: None)  # the size guard: tests/test_hub_*.py
    choice = resolve("causal", "gpt2")
    assert choice.source == "local cache" and choice.spec.hub_id == "openai-community/gpt2"


def test_hub_model_when_reachable(monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(hub, "in_local_cache", lambda *a, **k: False)
    monkeypatch.setattr(hubguard, "check", lambda *a, **k: None)  # the size guard: tests/test_hub_*.py
    choice = resolve("causal", "  my-org/my-model  ")
    assert (choice.source, choice.spec.hub_id) == ("hub", "my-org/my-model")


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a" * 500, "<script>alert(1)</script>", "x y z"])
def test_hostile_ids_are_refused(bad, offline):
    with pytest.raises(ModelUnavailable, match="not a model name"):
        resolve("causal", bad)


def test_local_folder_is_accepted(tmp_path):
    choice = resolve("causal", str(tmp_path))
    assert choice.source == "local folder" and choice.spec.hub_id == str(tmp_path.resolve())


def test_local_folders_are_refused_on_a_hosted_space(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/lab")
    with pytest.raises(ModelUnavailable):
        resolve("causal", str(tmp_path), fallback=False)


def test_role_without_embedded_model_refuses_offline(offline):
    with pytest.raises(ModelUnavailable):
        resolve("reranker", "cross-encoder/ms-marco-MiniLM-L-6-v2")


def test_picker_labels_say_what_works_offline(offline):
    rows = models.available("causal")
    assert rows[0][0].endswith("offline")
    assert all(label.endswith("needs internet") for label, _ in rows[1:])
