"""DPO labeler data: shipped assets, prompt uploads of every shape, majority preferences, the
TRL-ready JSONL + Parquet export."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "dpo_labeler"))

import dpo_data as data  # noqa: E402


def test_shipped_prompts_and_seed_set():
    prompts = data.shipped_prompts()
    assert len(prompts) > 500 and all(p["prompt"] and p["answer"] for p in prompts)
    train, held = data.seed_pairs("train"), data.seed_pairs("heldout")
    assert len(train) >= 200 and len(held) >= 50
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}  # held-back prompts never trained on
    row = data.seed_rows("heldout")[0]
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"


@pytest.mark.parametrize("name, content, expected", [
    ("p.txt", "First prompt\n\n  Second prompt  \nFirst prompt\n", ["First prompt", "Second prompt"]),
    ("p.jsonl", '{"prompt": "One"}\n"Two"\n', ["One", "Two"]),
    ("p.json", '["One", {"prompt": "Two"}]', ["One", "Two"]),
    ("p.json", '{"prompts": ["One"]}', ["One"]),
    ("p.csv", "id,Prompt\n1,Hello there\n2,\"With, comma\"\n", ["Hello there", "With, comma"]),
    ("p.jsonl", '{"prompt": [{"role": "user", "content": "Chat style"}]}\n', ["Chat style"]),
])
def test_prompt_uploads(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content, "utf-8")
    assert data.parse_prompt_file(path) == expected


@pytest.mark.parametrize("name, content, words", [
    ("empty.txt", b"", "is empty"),
    ("bin.txt", b"\x00\x01\x02binary", "not a text file"),
    ("x.json", b'{"a": 1}', "expected a JSON list"),
    ("x.json", b"[1, 2]", "must be a prompt string"),
    ("x.json", b"{not json", "not valid JSON"),
    ("x.jsonl", b'{"prompt": "ok"}\n{broken\n', "line 2 is not JSON"),
    ("x.csv", b"question,answer\nq,a\n", "needs a 'prompt' column"),
    ("x.pdf", b"%PDF-1.4 something", "upload prompts as"),
    ("x.txt", b"   \n\n", "no usable prompts"),
    ("x.txt", ("y" * 3000).encode(), "no usable prompts"),
    ("x.txt", "\n".join(f"p{i}" for i in range(1001)).encode(), "at most 1,000"),
])
def test_wrong_uploads_are_refused_with_a_reason(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=words):
        data.parse_prompt_file(path)


def test_majority_preferences_and_export(tmp_path):
    pairs = {p: {"pair_id": p, "prompt": f"Q{p}", "text_a": f"A{p}", "text_b": f"B{p}"} for p in "12345"}
    labels = [("1", "a"), ("1", "a"), ("1", "b"), ("2", "b"), ("3", "a"), ("3", "b"), ("4", "tie"), ("5", "both_bad")]
    prefs, left_out = data.preferences([{"pair_id": p, "choice": c} for p, c in labels], pairs)
    assert [(p["pair_id"], p["chosen"], p["rejected"]) for p in prefs] == [("1", "A1", "B1"), ("2", "B2", "A2")]
    assert left_out == {"split vote": 1, "tie": 1, "both_bad": 1}
    path = data.export(data.trl_rows(prefs), left_out, 8, 3, folder=tmp_path / "exp")
    rows = [json.loads(l) for l in path.read_text().splitlines()]
    assert rows[0] == {"prompt": [{"role": "user", "content": "Q1"}], "chosen": [{"role": "assistant", "content": "A1"}],
                       "rejected": [{"role": "assistant", "content": "B1"}]}
    from datasets import load_dataset

    ds = load_dataset("parquet", data_files=str(path.with_suffix(".parquet")), split="train")
    assert ds.column_names == ["prompt", "chosen", "rejected"] and ds[1]["chosen"][0]["content"] == "B2"
    assert "2 prompt/chosen/rejected rows" in (path.parent / "README.md").read_text()
    with pytest.raises(data.DataError, match="Nothing to export"):
        data.export([], {}, 0, 0, folder=tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_push_needs_a_repo_id_and_a_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setattr("shared.store.hub_token", lambda: None)
    with pytest.raises(data.DataError, match="repo id"):
        data.push(tmp_path, "  ")
    with pytest.raises(Exception, match="No Hugging Face token"):
        data.push(tmp_path, "me/prefs")
