"""shared.hub: offline is detected fast and remembered; the local cache is read without network."""
import time

import pytest

from shared import hub


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    monkeypatch.setattr(hub, "_last", None)
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "GENAI_LAB_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_offline_flag_short_circuits_the_probe(monkeypatch, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    monkeypatch.setattr(hub, "_probe", lambda *a: pytest.fail("probed the network while offline was forced"))
    assert hub.offline_forced() and hub.hub_reachable() is False


def test_refused_endpoint_is_offline(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")  # nothing listens on port 1
    assert hub.hub_reachable() is False


def test_hanging_lookup_is_abandoned_at_the_timeout(monkeypatch):
    # A DNS lookup on bad Wi-Fi can hang far past any socket timeout: simulate one.
    def hang(*args, **kwargs):
        time.sleep(3)
        raise OSError("timed out")

    monkeypatch.setattr(hub.socket, "create_connection", hang)
    start = time.monotonic()
    assert hub.hub_reachable() is False
    assert time.monotonic() - start < hub.PROBE_TIMEOUT_S + 1.0


def test_answer_is_remembered_so_offline_never_storms(monkeypatch):
    calls = []
    monkeypatch.setattr(hub, "_probe", lambda *a: calls.append(a) or False)
    for _ in range(20):
        hub.hub_reachable()
    assert len(calls) == 1


def test_reachable_endpoint_is_seen(monkeypatch):
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    try:
        assert hub.hub_reachable() is True
    finally:
        server.close()


def test_local_cache_lookup(tmp_path):
    repo = tmp_path / "models--org--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    assert hub.in_local_cache("org/tiny", cache_dir=str(tmp_path))
    assert not hub.in_local_cache("org/other", cache_dir=str(tmp_path))
    assert not hub.in_local_cache("not a//valid id", cache_dir=str(tmp_path))


# ---------------------------------------------------------------- through the stand-in Hub (tests/hubstub.py)

from hubstub import GPT2, hub as stub_hub  # noqa: E402


def test_stand_in_hub_is_probed_at_hf_endpoint_and_forgotten_on_request(stub_hub):
    assert hub.hub_reachable()
    stub_hub.stop()
    assert hub.hub_reachable()  # remembered for REMEMBER_S: no probe storm
    hub.forget()
    assert hub.hub_reachable() is False


def test_metadata_is_asked_once_for_repeated_checks(stub_hub):
    from shared.models import resolve

    for _ in range(3):
        assert resolve("causal", GPT2, fallback=False).source == "hub"
    assert [r for r in stub_hub.requests if r[2].startswith("api:")] == [("GET", GPT2, "api:", "")]
    info = hub.repo_info(GPT2)
    assert info.sha and {s.rfilename for s in info.siblings} >= {"config.json", "model.safetensors"}


def test_download_status_while_running(stub_hub):
    seen = []

    def progress(fraction, message):
        seen.append(hub.download_status(GPT2))

    hub.download(GPT2, [("config.json", len(stub_hub.repos.get(GPT2).files["config.json"]))], progress)
    assert seen and all(s.startswith(f"Downloading {GPT2}:") for s in seen)
    assert hub.download_status(GPT2) == ""
