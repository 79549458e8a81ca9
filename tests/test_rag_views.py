"""rag_views: the sources panel's badges (the model's checked citations vs the lab's evidence), links
only for citations that match a source, and the explanations shown on the page."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "rag_chat"))

import rag_views as views  # noqa: E402
from rag_chunking import Chunk  # noqa: E402
from rag_index import Hit  # noqa: E402
from rag_pipeline import Retrieval  # noqa: E402


def test_source_badges_tell_model_citations_from_lab_evidence():
    texts = ["The Storvik lighthouse was built in 1872 by Hanna Berg.", "The museum opened in 1994."]
    hits = [Hit(Chunk("notes.md", t, 0, len(t)), 1.0, 0.6, 1.0, n) for n, t in enumerate(texts, 1)]
    retrieval = Retrieval("When was the museum opened?", "When was the museum opened?", "", hits, False, 0.0)
    cited = views.sources_html(retrieval, "It opened in 1994 [2].")
    assert cited.count(">cited</span>") == 1 and "evidence</span>" not in cited
    uncited = views.sources_html(retrieval, "The museum opened in 1994.")
    assert ">cited</span>" not in uncited and uncited.count(">evidence</span>") == 1
    assert "<mark>The museum opened in 1994.</mark>" in uncited


def test_only_a_number_that_matches_a_source_becomes_a_link():
    shown = views.link_citations("A [1]. B [2, 7]. C [9].", 2)
    assert shown.count("class='rag-cite'") == 2 and "[7]" not in shown and "[9]" not in shown


def test_rank_score_and_cosine_are_explained_on_the_page_not_on_hover():
    """Issue 25: "rank score 4.7364" was explained only in a tooltip."""
    assert "title=" not in views.sources_html(Retrieval("q", "q", "", [Hit(Chunk("a.md", "Text.", 0, 5), 4.7364, 0.3, 1.0, 1)],
                                                        False, 0.0))
    assert "rank score" in views.SOURCES_LEGEND and "not a probability" in views.SOURCES_LEGEND
    assert "cosine" in views.SOURCES_LEGEND and "could not find" in views.SOURCES_LEGEND


def test_an_answer_mode_shows_which_mode_answered_why_and_the_key_span():
    import rag_grounded as rg

    texts = ["The Storvik lighthouse was built in 1872 by the engineer Hanna Berg.", "The museum opened in 1994."]
    hits = [Hit(Chunk("notes.md", t, 0, len(t)), 1.0, 0.6, 1.0, n) for n, t in enumerate(texts, 1)]
    retrieval = Retrieval("Who built the lighthouse?", "Who built the lighthouse?", "", hits, False, 0.0)
    answer = rg.answer("Who built the lighthouse?", hits, "extractive", None)
    done = views.done_of(answer)
    shown = views.answer_md(done, retrieval.question, hits)
    assert "Answered in <b>extractive</b> mode" in shown and "<b class='rag-key-inline'>Hanna Berg</b>" in shown
    assert shown.count("The Storvik lighthouse") == 1  # the quote once, not again as a supporting line
    html = views.sources_html(retrieval, done["answer"], done["support"])
    assert "<mark>The Storvik lighthouse was built in 1872 by the engineer <b class=\"rag-key\">Hanna Berg</b>." in html
    assert html.count(">cited</span>") == 1
    # a free-form answer that is not the quote is followed by its supporting sentence
    done = {**done, "answer": "Hanna Berg built it [1].", "mode": "short", "why": "short prompt: ..."}
    assert "**Supporting sentence:**" in views.answer_md(done, retrieval.question, hits)
    assert "<script>" not in views.answer_md({**done, "answer": "<script>x</script> [1]"}, retrieval.question, hits)
