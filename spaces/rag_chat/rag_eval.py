"""Retrieval evaluation: hit@k and MRR of question -> expected-source pairs, for two settings
side by side.

An expectation matches a retrieved chunk when it is the chunk's file name (with or without the
extension), or a passage whose text appears in the chunk (case and spacing ignored)."""
import csv
import io
import json
import re
from dataclasses import replace

KS = (1, 3, 5)

EXAMPLE_PAIRS = """\
When was Einstein born? | Albert Einstein was born in Ulm
Who wrote Animal Farm? | Animal_Farm.md
What is the binary abacus used for? | The binary abacus is used to explain how computers manipulate numbers
How deep is the Atlantic Ocean at its deepest? | Atlantic_Ocean.md
What did alchemists hope to make from base metals? | Alchemy.md
Which spacecraft carried the first men to land on the Moon? | Apollo_11.md
"""


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def parse_pairs(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Pairs from "question | expected" lines, a CSV with two columns, or JSON
    ([{"question": ..., "expected": ...}] or {"q", "passage"/"file"}). Returns (pairs, problems)."""
    text = (text or "").strip()
    pairs, problems = [], []
    if not text:
        return pairs, ["no pairs given"]
    if text[0] in "[{":
        try:
            rows = json.loads(text)
            rows = rows if isinstance(rows, list) else [rows]
            for i, r in enumerate(rows, 1):
                q = r.get("question") or r.get("q")
                exp = r.get("expected") or r.get("passage") or r.get("file") or r.get("source")
                if q and exp:
                    pairs.append((str(q), str(exp)))
                else:
                    problems.append(f"item {i}: needs a question and an expected source/passage")
            return pairs, problems
        except (json.JSONDecodeError, AttributeError) as exc:
            return [], [f"not valid JSON: {exc}"]
    delimiter = "|" if "|" in text else ("\t" if "\t" in text else ",")
    for i, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1):
        row = [c.strip() for c in row]
        if not any(row) or row[0].startswith("#"):
            continue
        if len(row) < 2 or not row[0] or not row[1]:
            problems.append(f"line {i}: expected 'question | expected file or passage'")
            continue
        if i == 1 and row[0].lower() == "question":
            continue
        pairs.append((row[0], delimiter.join(row[1:]).strip()))
    return pairs, problems


def is_hit(chunk, expected: str) -> bool:
    exp = expected.strip()
    name = chunk.doc.lower()
    if exp.lower() in (name, name.rsplit(".", 1)[0]):
        return True
    return _norm(exp) in _norm(chunk.text)


def first_hit_rank(hits, expected: str) -> int | None:
    for h in hits:
        if is_hit(h.chunk, expected):
            return h.rank
    return None


def score(ranks: list[int | None], ks=KS) -> dict:
    n = max(len(ranks), 1)
    out = {f"hit@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in ks}
    out["MRR"] = sum(1.0 / r for r in ranks if r is not None) / n
    return out


def evaluate_session(session, pairs, ks=KS) -> tuple[dict, list[int | None]]:
    """Score `session` (a rag_pipeline.RagSession, already holding documents) with its current
    settings; questions are taken alone (no conversation rewriting)."""
    k = max(ks)
    old_k = session.settings.top_k
    session.settings.top_k = k
    try:
        ranks = [first_hit_rank(session.retrieve(q, rewrite=False).hits, exp) for q, exp in pairs]
    finally:
        session.settings.top_k = old_k
    return score(ranks, ks), ranks


def compare(session, pairs, settings_a, settings_b, ks=KS) -> dict:
    """Both settings on the same documents and questions. Uses a copy of the session, so the
    user's own index and settings are left as they were."""
    from rag_pipeline import RagSession

    results = {}
    for label, settings in (("A", settings_a), ("B", settings_b)):
        trial = RagSession(replace(settings))
        trial.docs = list(session.docs)
        trial._vectors = session._vectors  # share this user's embedding cache
        trial.rebuild()
        metrics, ranks = evaluate_session(trial, pairs, ks)
        results[label] = {"metrics": metrics, "ranks": ranks, "chunks": len(trial.chunks)}
    return results
