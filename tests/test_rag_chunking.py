"""rag_chunking: sentences, the three chunking strategies (nothing lost), splitting to fit the embedder
instead of truncating. Fast: no model."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "rag_chat"))

import rag_documents as rd  # noqa: E402
from rag_chunking import chunk_document, fit_to_model, split_sentences  # noqa: E402


def test_sentences_keep_abbreviations_and_cover_the_text():
    text = "Dr. Smith met J. R. R. Tolkien in the U.S. in 1950. It rained! Did it? Yes."
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["Dr. Smith met J. R. R. Tolkien in the U.S. in 1950.", "It rained!",
                                             "Did it?", "Yes."]


@pytest.mark.parametrize("strategy", ["sentence", "recursive", "fixed"])
def test_chunks_cover_the_document_without_loss(strategy):
    body = "\n\n".join(f"Paragraph {p}. " + " ".join(f"Sentence {p}.{i} says something long enough here."
                                                       for i in range(12)) for p in range(6))
    doc = rd.Document("d.md", "# Doc\n\n## Part A\n\n" + body, "markdown", title="Doc")
    chunks = chunk_document(doc, strategy, size=300, overlap=60)
    assert all(doc.text[c.start:c.end] == c.text for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    words = [i for i, ch in enumerate(doc.text) if not ch.isspace() and i > doc.text.index("Paragraph 0")]
    assert all(i in covered for i in words), "some text is in no chunk"
    assert max(len(c.text) for c in chunks) <= 300
    assert chunks[0].prefix.startswith("Doc")
    if strategy != "fixed":  # fixed windows start anywhere, headings included
        assert "Part A" in chunks[0].heading and "Part A" in chunks[0].prefix


def test_fit_to_model_splits_instead_of_truncating():
    doc = rd.Document("d.txt", " ".join(f"Word{i} is here." for i in range(200)), "text")
    chunks = chunk_document(doc, "fixed", size=2000, overlap=0, context=False)

    def count(texts):
        return [len(t.split()) + 2 for t in texts]

    fitted, n_split = fit_to_model(chunks, count, max_tokens=50)
    assert n_split > 0 and all(n <= 50 for n in count([c.embed_text for c in fitted]))
    assert "".join(c.text.replace(" ", "") for c in fitted) == doc.text.replace(" ", "")
