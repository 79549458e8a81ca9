"""rag_index: BM25, the dense/keyword/hybrid index on small hand-made vectors, and the hybrid's
standardisation over the whole collection. Fast: no model."""
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "rag_chat"))

from rag_chunking import Chunk  # noqa: E402
from rag_index import BM25, RagIndex, top_k  # noqa: E402


def test_bm25_ranks_exact_terms_and_top_k():
    texts = ["the cat sat on the mat", "dogs chase cats in parks", "quantum chromodynamics of quarks", ""]
    bm = BM25(texts)
    scores = bm.scores("quark chromodynamics")
    assert scores.argmax() == 2 and scores[3] == 0
    assert bm.scores("cats")[[0, 1]].min() > 0  # plural stemming: cat ~ cats
    assert list(top_k(np.array([0.1, 0.9, 0.5]), 2)) == [1, 2]
    assert not bm.scores("zzz").any()


def _index(texts):
    chunks = [Chunk("f.txt", t, 0, len(t), id=i) for i, t in enumerate(texts)]
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(texts), 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return RagIndex(chunks, vecs), vecs


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_index_modes(mode):
    index, vecs = _index(["alpha beta", "gamma delta", "epsilon zeta", "eta theta"])
    hits = index.search("gamma", vecs[1], mode, k=2)
    assert hits[0].chunk.id == 1 and hits[0].rank == 1
    assert abs(hits[0].dense - 1.0) < 1e-5


def test_hybrid_standardises_over_the_whole_collection_and_favours_dense():
    rng = np.random.default_rng(1)
    texts = [f"filler text number {i} about nothing much" for i in range(40)]
    texts[5] = "the harbour lighthouse"  # the question's meaning, no shared word
    texts[7] = "a coastal beacon tower"  # close in meaning, no shared word
    texts[9] = "keeper keeper of records"  # a bit less close, but shares the rare word
    chunks = [Chunk("f.txt", t, 0, len(t), id=i) for i, t in enumerate(texts)]
    vecs = np.zeros((40, 16), dtype=np.float32)
    vecs[:, 3:] = rng.normal(size=(40, 13))  # fillers: about orthogonal to the question
    vecs[5] = 0
    vecs[5, 0] = 1.0
    vecs[7] = 0
    vecs[7, :2] = [0.6, 0.8]
    vecs[9] = 0
    vecs[9, [0, 2]] = [0.5, 0.866]
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = RagIndex(chunks, vecs)
    q = np.zeros(16, dtype=np.float32)
    q[0] = 1.0
    # the moments give exactly the mean and spread of every chunk's cosine
    cos = vecs @ q
    mu = float(index._mean @ q)
    assert abs(mu - cos.mean()) < 1e-5
    assert abs(np.sqrt(q @ index._second @ q - mu * mu) - cos.std()) < 1e-4
    assert [h.chunk.id for h in index.search("lighthouse keeper", q, "dense", k=3)] == [5, 7, 9]
    assert index.search("lighthouse keeper", q, "bm25", k=1)[0].chunk.id == 9
    hits = index.search("lighthouse keeper", q, "hybrid", k=3)
    assert hits[0].chunk.id == 5, "a clear dense match is not outvoted by a keyword match"
    assert [h.chunk.id for h in hits[1:]] == [9, 7], "the shared rare word breaks the near tie"
    assert hits[0].score > hits[1].score > hits[2].score
