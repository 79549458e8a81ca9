"""LoRA trainer API through gradio_client: /datasets, /estimate, /train (blocking, on a tiny random Llama),
/generate (the embedded SmolLM2 and a run's adapter), and every bad input of the issue: empty, huge,
wrong columns, non-UTF-8, corrupt CSV/JSONL, rows longer than max length, learning rate 0 / negative /
NaN, rank 0, target modules the model does not have, wrong types, hostile paths; the server keeps serving."""
import json
import math
import os
import sys
from pathlib import Path

import pytest

from conftest import import_app, running

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "lora_trainer"))
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from test_lora_logic import build_tiny_llama

    data = tmp_path_factory.mktemp("lora_api_data")
    old = os.environ.get("GENAI_LAB_DATA")
    os.environ["GENAI_LAB_DATA"] = str(data)
    tiny = str(build_tiny_llama(tmp_path_factory.mktemp("tiny_llama_api")))
    app = import_app("lora_trainer")
    from gradio_client import Client

    with running(app.demo) as url:
        yield {"client": Client(url, verbose=False), "tiny": tiny, "tmp": tmp_path_factory.mktemp("uploads")}
    if old is None:
        os.environ.pop("GENAI_LAB_DATA", None)
    else:
        os.environ["GENAI_LAB_DATA"] = old


def call(env, *args, api_name):
    return env["client"].predict(*args, api_name=api_name)


def test_datasets_and_estimate(env):
    listed = call(env, api_name="/datasets")
    assert [d["name"] for d in listed] == ["orvenne", "captains_log"]
    assert all(d["rows"] >= 40 and d["description"] for d in listed)
    est = call(env, "orvenne", {"r": 8, "batch_size": 4, "max_length": 128}, api_name="/estimate")
    # SmolLM2-135M, q,v, r=8: 30 layers x 8 x ((576+576) + (576+192)) LoRA parameters.
    assert est["total_params"] == 134_515_008 and est["trainable_params"] == 30 * 8 * (1152 + 768)
    parts = {p["part"] for p in est["lora"]}
    assert {"weights", "adapter", "gradients", "optimizer state", "activations"} <= parts
    assert est["full_bytes"] > est["lora_bytes"] > 134_515_008 * 4
    more = call(env, "orvenne", {"r": 8, "batch_size": 4, "max_length": 128, "target_modules": "all linear"},
                api_name="/estimate")
    assert more["trainable_params"] > est["trainable_params"] and more["lora_bytes"] > est["lora_bytes"]


def test_train_blocks_until_done_and_generate_uses_the_adapter(env):
    out = call(env, "orvenne", {"model": env["tiny"], "max_steps": 2, "batch_size": 2, "max_length": 64,
                                "learning_rate": 1e-2}, api_name="/train")
    assert out["status"] == "done" and out["steps"] == 2 and len(out["train_loss"]) == 2, out
    assert all(math.isfinite(x) for x in out["train_loss"])
    for key in ("run_id", "eval_loss_before", "eval_loss_after", "trainable_params", "total_params", "s_per_step",
                "peak_rss_bytes", "estimated_peak_bytes"):
        assert out[key] is not None, key
    assert out["trainable_params"] < out["total_params"]
    adapted = call(env, "Who founded Orvenne?", out["run_id"], 4, api_name="/generate")
    assert isinstance(adapted["text"], str)
    base = call(env, "What is the capital of France?", "", 8, api_name="/generate")
    assert "Paris" in base["text"]  # the real embedded SmolLM2 answers when no run id is given


def _upload(env, name: str, content: bytes) -> str:
    path = env["tmp"] / name
    path.write_bytes(content)
    return str(path)


BAD_FILES = [
    ("empty.csv", b"", "empty"),
    ("cols.csv", b"foo,bar\n1,2\n3,4\n5,6\n7,8\n", "no usable columns"),
    ("latin.csv", "instruction,response\ncaf\u00e9 cr\u00e8me,ok\n".encode("latin-1"), "not UTF-8"),
    ("corrupt.csv", b'instruction,response\n"unclosed,b\n', "not a readable CSV"),
    ("corrupt.jsonl", b'{"instruction": "a", "response": "b"}\n{broken\n', "line 2 is not valid JSON"),
]


def test_bad_files(env):
    for name, content, expected in BAD_FILES:
        out = call(env, _upload(env, name, content), {"model": env["tiny"]}, api_name="/train")
        assert expected in out.get("error", ""), (name, out)
    huge = env["tmp"] / "huge.jsonl"
    with huge.open("wb") as handle:  # over the 10 MB limit
        line = (json.dumps({"instruction": "q" * 1000, "response": "a" * 1000}) + "\n").encode()
        handle.write(line * 5300)
    out = call(env, str(huge), {"model": env["tiny"]}, api_name="/train")
    assert "limit" in out["error"]


def test_rows_longer_than_max_length_are_counted_not_silent(env):
    rows = "".join(json.dumps({"instruction": f"Question {i}", "response": "word " * (10 if i % 2 else 200)}) + "\n"
                   for i in range(8))
    path = _upload(env, "long.jsonl", rows.encode())
    est = call(env, path, {"model": env["tiny"], "max_length": 64}, api_name="/estimate")
    assert est["seq_len"] == 64
    out = call(env, path, {"model": env["tiny"], "max_length": 64, "max_steps": 1, "batch_size": 2}, api_name="/train")
    assert out["status"] == "done"
    import lora_train

    run = lora_train.get_run(out["run_id"])
    assert run["result"]["truncated_rows"] == 4 and run["result"]["dropped_rows"] == 0
    # A max length that leaves no answer token in any row is refused with the reason.
    out = call(env, "orvenne", {"model": env["tiny"], "max_length": 16}, api_name="/train")
    assert "too short" in out["error"]


@pytest.mark.parametrize("config,expected", [
    ({"learning_rate": 0}, "learning_rate is 0"),
    ({"learning_rate": -0.001}, "positive"),
    ({"learning_rate": "NaN"}, "finite"),
    ({"r": 0}, "at least 1"),
    ({"target_modules": ["q_proj", "wq"]}, "No linear layer is called wq"),
    ({"target_modules": "attention_everything"}, "No linear layer"),
    ({"max_steps": "ten"}, "number"),
    ({"batch_size": 10**6}, "at most"),
    ({"unknown_knob": 1}, "Unknown setting"),
    ({"qlora": "perhaps"}, "true or false"),
    ({"model": "no-such-org/no-such-model-xyz"}, "not in the local cache"),
])
def test_bad_settings(env, config, expected):
    out = call(env, "orvenne", {"model": env["tiny"], **config}, api_name="/train")
    assert expected in out.get("error", ""), out


@pytest.mark.parametrize("dataset,config,expected", [
    ("", {}, "No dataset"),
    ("no_such_set", {}, "neither a shipped dataset"),
    ("../../etc/passwd", {}, "neither a shipped dataset"),
    ("orvenne", [1, 2], "JSON object"),
    ("orvenne", "r=8", "JSON object"),
])
def test_bad_requests(env, dataset, config, expected):
    out = call(env, dataset, config, api_name="/train")
    assert expected in out.get("error", ""), out


def test_generate_bad_inputs(env):
    for args, expected in ((("", "", 8), "prompt"), (("x" * 5000, "", 8), "limit"), (("hi", "", 0), "between"),
                           (("hi", "", 100000), "between"), (("hi", "not-a-run", 8), "not a run id"),
                           (("hi", "0123456789ab", 8), "No run"), (("hi", "'; DROP TABLE runs;--", 8), "not a run id")):
        out = call(env, *args, api_name="/generate")
        assert expected in out.get("error", ""), (args, out)
    assert call(env, api_name="/datasets")[0]["name"] == "orvenne"  # still serving
