"""DPO labeler API through gradio_client against the running lab: /pair with the real embedded model,
/label, /stats (agreement), /export (TRL JSONL + Parquet), /train (1 real DPO step) and every bad input:
unknown pair, invalid choice, empty or 10,000-character names, SQL and HTML, a second /train while one
trains, a corrupt database file."""
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import import_app, running

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "dpo_labeler"))

EVIL = "'); DROP TABLE labels; -- <img src=x onerror=alert(1)> <b>bold</b>"
S = {"temperature": 0.7, "top_p": 0.9, "top_k": 0, "max_new_tokens": 48}


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dpo-data")
    old = os.environ.get("GENAI_LAB_DATA")
    os.environ["GENAI_LAB_DATA"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("GENAI_LAB_DATA", None)
    else:
        os.environ["GENAI_LAB_DATA"] = old


@pytest.fixture(scope="module")
def app(data_folder):
    return import_app("dpo_labeler")


@pytest.fixture(scope="module")
def server(app):
    with running(app.demo) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def store(app):
    import dpo_service

    return dpo_service.store()


def _pair(store, prompt="What is DPO?"):
    return store.add_pair(prompt, "A short, right answer.", "A long rambling answer that goes nowhere at all.",
                          "fixture", S, S, 1)


def test_pair_writes_two_answers_with_the_real_model(client, store):
    out = client.predict("What is the capital of France?", "", api_name="/pair")
    assert set(out) == {"pair_id", "prompt", "a", "b"} and out["prompt"] == "What is the capital of France?"
    assert out["a"] and out["b"]
    row = store.pair(out["pair_id"])
    assert row["model"].startswith("SmolLM2") and {json.loads(row["setting_a"])["temperature"],
                                                   json.loads(row["setting_b"])["temperature"]} == {0.7, 1.2}
    assert (row["text_a"], row["text_b"]) == (out["a"], out["b"])
    ack = client.predict(out["pair_id"], "a", "alice", api_name="/label")
    assert ack["ok"] is True and ack["label_id"] in store.label_ids()


def test_overlap_pair_is_served_to_a_second_annotator(client, store):
    pid = _pair(store, "Overlap question?")
    client.predict(pid, "b", "overlap-1", api_name="/label")
    before = store.count("pairs")
    seen = set()
    for _ in range(2):  # both labelled pairs are offered (oldest first), no new pair is generated
        out = client.predict("", "overlap-2", api_name="/pair")
        assert store.count("pairs") == before and out["pair_id"] not in seen
        assert any(l["pair_id"] == out["pair_id"] for l in store.labels())
        seen.add(out["pair_id"])
        client.predict(out["pair_id"], "a", "overlap-2", api_name="/label")
    assert pid in seen


def test_stats_and_agreement(client, store):
    pids = [_pair(store, f"Agreement {i}?") for i in range(4)]
    for pid, x, y in zip(pids, "aabt", "abbt"):
        client.predict(pid, {"t": "tie"}.get(x, x), "rater-1", api_name="/label")
        client.predict(pid, {"t": "tie"}.get(y, y), "rater-2", api_name="/label")
    out = client.predict(api_name="/stats")
    assert {"pairs", "labels", "annotators", "per_annotator", "agreement"} <= set(out)
    assert out["per_annotator"]["rater-1"]["labels"] == 4 and out["per_annotator"]["rater-2"]["b"] == 2
    row = [r for r in out["agreement"]["by_pair"] if {r["a"], r["b"]} == {"rater-1", "rater-2"}][0]
    assert row["shared"] == 4 and row["percent"] == 75.0 and row["kappa"] == pytest.approx(0.636, abs=1e-3)


def test_export_is_trl_ready(client):
    out = client.predict(api_name="/export")
    path = Path(out["jsonl"])
    rows = [json.loads(l) for l in path.read_text().splitlines()]
    assert out["rows"] == len(rows) >= 3
    assert all(set(r) == {"prompt", "chosen", "rejected"} and r["prompt"][0]["role"] == "user" for r in rows)
    import pyarrow.parquet as pq

    assert pq.read_table(out["parquet"]).num_rows == len(rows)


@pytest.mark.parametrize("args, words", [
    (("p-nope", "a", "bob"), "Unknown pair id"),
    (("", "a", "bob"), "No pair id"),
    (("PAIR", "c", "bob"), "not a choice"),
    (("PAIR", "", "bob"), "not a choice"),
    (("PAIR", "a", ""), "Give your name"),
    (("PAIR", "a", "x" * 10_000), "at most 64"),
])
def test_bad_labels_get_a_clear_error_and_nothing_is_stored(client, store, args, words):
    pid = _pair(store)
    before = store.count("labels")
    out = client.predict(*[pid if a == "PAIR" else a for a in args], api_name="/label")
    assert set(out) == {"error"} and words in out["error"]
    assert store.count("labels") == before


@pytest.fixture
def tiny_writer(monkeypatch):
    """The tiny random GPT-2 writes the answers (the real model's /pair is tested above; this keeps tests fast)."""
    from types import SimpleNamespace

    import dpo_service
    from conftest import build_tiny_gpt2

    model, tokenizer = build_tiny_gpt2()
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    loaded = SimpleNamespace(model=model, tokenizer=tokenizer, choice=SimpleNamespace(spec=SimpleNamespace(name="tiny")))
    monkeypatch.setattr(dpo_service, "model", lambda: loaded)


def test_sql_and_html_are_stored_and_returned_as_text(client, store, app, tiny_writer):
    out = client.predict(EVIL, EVIL[:60], api_name="/pair")
    assert out["prompt"] == EVIL.strip()
    assert client.predict(out["pair_id"], "a", EVIL[:60], api_name="/label")["ok"]
    assert store.pair(out["pair_id"])["prompt"] == EVIL.strip()
    stats = client.predict(api_name="/stats")
    assert " ".join(EVIL[:60].split()) in stats["per_annotator"]
    import dpo_views

    shown = dpo_views.pair_html({"prompt": EVIL, "a": EVIL, "b": "ok"})
    assert "<img" not in shown and "&lt;img src=x" in shown
    counter = dpo_views.counter_md(1, 1, 1, EVIL)
    assert "<img" not in counter and "<b>bold" not in counter and "&lt;b&gt;bold" in counter


@pytest.mark.parametrize("prompt, words", [("x" * 5000, "the limit is 2,000")])
def test_bad_prompts(client, prompt, words):
    out = client.predict(prompt, "", api_name="/pair")
    assert words in out["error"]


@pytest.mark.parametrize("config, words", [
    ({"dataset": "nope"}, "one of seed, labels"), ({"max_steps": -1}, "between 1"), ({"lr": 1}, "Unknown config key"),
    ({"beta": "x"}, "must be a float"),
])
def test_bad_train_configs(client, config, words):
    out = client.predict(config, api_name="/train")
    assert words in out["error"]


def test_train_one_step_and_a_second_train_is_refused_meanwhile(client, server, app):
    import dpo_service
    from gradio_client import Client

    results = {}
    config = {"max_steps": 1, "batch_size": 2, "dataset": "seed", "learning_rate": 5e-4}
    first = threading.Thread(target=lambda: results.setdefault("first", Client(server, verbose=False).predict(
        config, api_name="/train")))
    first.start()
    deadline = time.time() + 60
    while not dpo_service.busy() and time.time() < deadline:
        time.sleep(0.1)
    second = client.predict(config, api_name="/train")
    assert "in progress" in second["error"]
    assert client.predict(api_name="/stats")["pairs"] >= 1  # the server keeps serving meanwhile
    first.join(timeout=600)
    res = results["first"]
    assert res["status"] == "done" and res["steps"] == 1, res
    for key in ("loss", "margins", "heldout_accuracy_before", "heldout_accuracy_after", "heldout_margin_before",
                "heldout_margin_after", "s_per_step", "peak_rss_bytes"):
        assert key in res
    assert res["heldout_accuracy_before"] == 0.5 and len(res["loss"]) == 1
    assert res["heldout_accuracy_after"] > 0.5  # one step at 5e-4 already ranks most held-back pairs right
    assert (Path(res["adapter"]) / "adapter_config.json").exists()


def test_train_on_labels_needs_enough_majority_pairs(client, tmp_path, monkeypatch):
    import dpo_service

    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path))
    out = client.predict({"dataset": "labels"}, api_name="/train")
    assert "at least 4 are needed" in out["error"]
    assert dpo_service.store(tmp_path / "dpo_labeler").count("labels") == 0


def test_corrupt_database_is_reported_and_left_untouched(client, tmp_path, monkeypatch):
    folder = tmp_path / "dpo_labeler"
    folder.mkdir()
    garbage = b"SQLite format 2\x00 not really" * 100
    (folder / "labels.sqlite").write_bytes(garbage)
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path))
    for endpoint, args in (("/label", ("p-1", "a", "bob")), ("/stats", ()), ("/pair", ("", "bob"))):
        out = client.predict(*args, api_name=endpoint)
        assert "cannot be used" in out["error"] and "left untouched" in out["error"], out
    assert (folder / "labels.sqlite").read_bytes() == garbage
    monkeypatch.undo()
    assert client.predict(api_name="/stats")["labels"] > 0  # the server still serves the good database


def test_plain_json_label_route(server, store):
    """POST /api/label: the same checks and store as /label, in one plain HTTP round trip."""
    import urllib.error
    import urllib.request

    def post(body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(server.rstrip("/") + "/api/label", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    pid = _pair(store)
    before = store.count("labels")
    status, out = post({"pair_id": pid, "choice": "tie", "annotator": EVIL[:60]})
    assert status == 200 and out["ok"] and out["label_id"] in store.label_ids()
    assert store.count("labels") == before + 1
    for body, words in [({"pair_id": "p-nope", "choice": "a", "annotator": "bob"}, "Unknown pair id"),
                        ({"pair_id": pid, "choice": "c", "annotator": "bob"}, "not a choice"),
                        ({"pair_id": pid, "choice": "a", "annotator": "x" * 10_000}, "at most 64"),
                        ({"pair_id": pid, "choice": "a"}, "annotator"),
                        ({"pair_id": pid, "choice": ["a"], "annotator": "bob"}, "not a choice")]:
        status, out = post(body)
        assert status == 400 and set(out) == {"error"} and words in out["error"], (body, out)
    assert store.count("labels") == before + 1
    status, stats = post({})
    assert status == 400  # /api/label needs its arguments
    request = urllib.request.Request(server.rstrip("/") + "/api/stats", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert json.loads(r.read())["labels_stored"] == before + 1
