"""rag_pipeline: one user's session on the real embedder and the sample corpus (retrieval, not-found,
follow-ups, where the vectors came from), the question check, settings, and the answer as a shared job
that a stop request ends."""
import re
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "rag_chat"))

import rag_answer as ra  # noqa: E402
import rag_pipeline as rp  # noqa: E402
from rag_generators import ExtractiveGenerator  # noqa: E402
from rag_pipeline import RagError, RagSession, Settings  # noqa: E402


def test_sample_corpus_retrieval_and_not_found():



    session = RagSession(Settings(generator="extractive"))
    session.load_sample()
    assert len(session.docs) == 16 and len(session.chunks) > 500
    assert session.index_info["split_to_fit"] == 0 or session.index_info["max_tokens"] == 256
    hits = session.retrieve("When was Einstein born?").hits
    assert hits[0].chunk.doc == "Albert_Einstein.md"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


    # (A question about a pizza *recipe* sits right at the threshold: Alchemy.md has recipes.)
    out = session.ask("How do I change a flat bicycle tyre?", ExtractiveGenerator())
    assert out["answer"] == ra.NOT_FOUND and out["retrieval_weak"]
    out = session.ask("Who wrote Animal Farm?", ExtractiveGenerator())
    assert out["sources"][0]["source"] == "Animal_Farm.md"
    assert "Orwell" in out["answer"] and re.search(r"\[[1-5]\]", out["answer"])
    # A follow-up is rewritten with the conversation.
    follow = session.retrieve("When was it published?")
    assert "Animal Farm" in follow.query and follow.hits[0].chunk.doc == "Animal_Farm.md"


def test_the_index_says_where_its_vectors_came_from():
    """Issue 25: "0 embedded now in 0.37 s" was unexplained: the sample corpus ships its vectors."""
    import rag_views as views

    session = RagSession()
    session.load_sample()
    info = session.index_info
    assert info["embedded_now"] == 0 and info["from_shipped"] == info["chunks"] > 500
    summary = views.index_md(session)
    assert "0 chunk(s) embedded now" in summary and f"{info['chunks']} from the sample corpus's shipped vectors" in summary


def test_question_check_and_settings():
    assert rp.check_question("  Who?  ") == "Who?"
    for bad, says in (("   ", "Type a question"), ("why " * 1000, "limit"), (None, "must be text"), (12, "must be text")):
        with pytest.raises(RagError, match=says):
            rp.check_question(bad)
    session = RagSession()
    out = session.configure('{"top_k": 3, "mode": "dense", "colour": "red"}')
    assert out["top_k"] == 3 and out["mode"] == "dense" and "colour" in out["warning"]
    assert session.configure({"top_k": 500})["top_k"] == 20  # clamped
    for bad in ("[1]", "{oops", '{"top_k": "many"}'):
        with pytest.raises(RagError):
            session.configure(bad)
    session.apply(mode="nonsense", top_k=4)
    assert session.settings.mode == "hybrid" and session.settings.top_k == 4


class _SlowGenerator:
    """Stands in for a model: one word every 50 ms, until asked to stop."""
    kind = "local"

    def stream(self, messages, max_new_tokens=200, should_stop=None):
        for i in range(200):
            if should_stop and should_stop():
                return
            time.sleep(0.05)
            yield f"word{i} "


def _retrieval(text="The Quellen Museum opens at 9am every day."):
    from rag_chunking import Chunk
    from rag_index import Hit

    hits = [Hit(Chunk("museum.txt", text, 0, len(text)), 1.0, 0.7, 1.0, 1)]
    return rp.Retrieval("When does the museum open?", "When does the museum open?", "", hits, False, 0.0)


def test_an_answer_is_a_job_that_stop_ends_and_keeps_what_was_written():
    from shared import jobs

    session = RagSession(Settings(answer_mode="free"))
    job = session.start_answer(_retrieval(), _SlowGenerator(), owner="me")
    while not (job.result or "").count("word"):
        time.sleep(0.02)
    assert jobs.find("rag-answer", "me")[0] is job
    assert jobs.stop(job.id)
    assert job.wait(5) and job.state == jobs.STOPPED
    assert 0 < job.result.count("word") < 200


def test_finish_checks_citations_and_remembers_the_turn():
    session = RagSession()
    done = session.finish(_retrieval(), "The museum opens at 9am [1]. Entry is free [2].")
    assert done["answer"] == "The museum opens at 9am [1]. Entry is free." and done["cited"] == [1]
    assert done["raw_answer"].endswith("[2].") and "no such source" in done["notes"][0]
    assert session.history[-1]["content"] == done["answer"]
    assert session.finish(_retrieval(), "   ")["answer"] == ra.NOT_FOUND
