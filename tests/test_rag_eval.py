"""rag_eval: question -> expected-source pairs, hit@k and MRR, and two settings compared on the real
embedder without touching the user's own settings."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "rag_chat"))

from rag_chunking import Chunk  # noqa: E402
from rag_eval import is_hit, parse_pairs, score  # noqa: E402


def test_eval_pairs_and_scores():
    pairs, problems = parse_pairs("question | expected\nWho? | a.txt\nbad line\nWhen? | passage, with comma")
    assert pairs == [("Who?", "a.txt"), ("When?", "passage, with comma")] and len(problems) == 1
    pairs, _ = parse_pairs(json.dumps([{"question": "Q", "expected": "E"}]))
    assert pairs == [("Q", "E")]
    assert parse_pairs("")[0] == [] and parse_pairs("[oops")[1]
    c = Chunk("Notes.md", "The answer is  forty\ntwo.", 0, 10)
    assert is_hit(c, "notes") and is_hit(c, "notes.md") and is_hit(c, "answer is forty two") and not is_hit(c, "x.md")
    m = score([1, 3, None, 2])
    assert m["hit@1"] == 0.25 and m["hit@3"] == 0.75 and abs(m["MRR"] - (1 + 1 / 3 + 1 / 2) / 4) < 1e-9


def test_eval_compares_two_settings():
    from rag_eval import compare, parse_pairs
    from rag_pipeline import RagSession, Settings

    session = RagSession()
    session.load_sample()
    docs = [d for d in session.docs if d.name in ("Abacus.md", "Aardvark.md")]
    session.docs = docs
    pairs, _ = parse_pairs("What do aardvarks eat? | Aardvark.md\nWhat is a binary abacus for? | Abacus.md")
    res = compare(session, pairs, Settings(strategy="fixed", size=1000, overlap=200, mode="dense"), Settings())
    for side in ("A", "B"):
        assert set(res[side]["metrics"]) == {"hit@1", "hit@3", "hit@5", "MRR"}
        assert res[side]["metrics"]["hit@5"] == 1.0
    assert session.settings.strategy == Settings().strategy  # the user's own settings untouched
