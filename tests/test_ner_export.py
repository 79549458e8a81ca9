"""ner_export: CoNLL and JSONL of the corrections, written atomically into a folder of their own, and
the push to a Hub dataset repo with the machine's login (never a typed token). Fast, offline."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))

import ner_entities  # noqa: E402
import ner_export  # noqa: E402


def test_each_export_gets_its_own_folder_and_those_a_day_old_are_removed(tmp_path):
    old, recent = tmp_path / "export_old", tmp_path / "export_recent"
    for folder in (old, recent):
        folder.mkdir()
        (folder / "ner_corrected.conll").write_text("Paris B-LOC\n")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(old, (two_days_ago, two_days_ago))
    unrelated = tmp_path / "notes"  # not an export: never touched
    unrelated.mkdir()
    os.utime(unrelated, (two_days_ago, two_days_ago))
    first = ner_export.new_export_folder(tmp_path)
    second = ner_export.new_export_folder(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    assert not old.exists()
    assert (recent / "ner_corrected.conll").exists() and unrelated.exists()


def test_export_conll_jsonl_and_atomic_write(tmp_path):
    text = "Angela Merkel visited Paris.\nShe met Macron."
    ents = [{"start": 0, "end": 13, "coarse": "PER"}, {"start": 22, "end": 27, "coarse": "LOC"},
            {"start": 37, "end": 43, "coarse": "PER"}, {"start": 5, "end": 9, "coarse": "ORG"}]  # overlap dropped
    conll = ner_export.to_conll(text, ents)
    assert conll.splitlines()[:3] == ["Angela B-PER", "Merkel I-PER", "visited O"]
    assert "\n\nShe O\n" in conll
    records = [json.loads(l) for l in ner_export.to_jsonl(text, ents).splitlines()]
    assert len(records) == 1 and len(records[0]["entities"]) == 3
    for e in records[0]["entities"]:
        assert records[0]["text"][e["start"]:e["end"]] == e["text"]
    conll_path, jsonl_path = ner_export.export_files(tmp_path, text, ents)
    assert conll_path.read_text() == conll and not list(tmp_path.glob(".*"))  # no temporary file left
    assert "token-classification" in (tmp_path / "README.md").read_text()  # the dataset card a push uploads


def test_push_uses_the_machines_login_and_says_how_to_log_in(tmp_path, monkeypatch):
    import huggingface_hub

    import shared.store

    ner_export.export_files(tmp_path, "Paris is big.", [{"start": 0, "end": 5, "coarse": "LOC"}])
    monkeypatch.setattr(shared.store, "hub_token", lambda: None)
    with pytest.raises(ner_entities.TaggerError, match="your-name/my-ner-data"):
        ner_export.push_to_hub("not a repo", tmp_path)
    with pytest.raises(shared.store.UserError, match="hf auth login"):
        ner_export.push_to_hub("me/data", tmp_path)
    calls = []

    class FakeApi:  # what a logged-in machine would send to the Hub
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, repo_type, private, exist_ok):
            calls.append(("create", repo_id, repo_type, private))

        def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
            calls.append(("upload", sorted(os.listdir(folder_path)), repo_type))

    monkeypatch.setattr(shared.store, "hub_token", lambda: "hf_from_login")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = ner_export.push_to_hub("me/data", tmp_path)
    assert url == "https://huggingface.co/datasets/me/data"
    assert calls == [("token", "hf_from_login"), ("create", "me/data", "dataset", True),
                     ("upload", ["README.md", "ner_corrected.conll", "ner_corrected.jsonl"], "dataset")]
