"""Search over chunks: dense (FAISS inner product on normalized embeddings = cosine), keyword
(BM25 as a sparse matrix), and a hybrid of both: each score is standardised over the whole
collection (z-score) and the two are mixed 0.7 dense + 0.3 BM25; optional cross-encoder
re-ranking when one can be loaded.

Why not reciprocal-rank fusion (the usual default)? It gives BM25 an equal vote, and on
paraphrased questions (our Wikipedia evaluation set) BM25's noise pushed good dense hits out of
the top 5: hybrid-RRF scored below plain dense there. A weighted mix of normalised scores keeps
BM25's exact-word wins without that (see bench/results/rag_chat.md; Bruch et al. 2023 find the
same for convex combinations vs RRF)."""
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from shared.device import gpu

MODES = {
    "hybrid": "Hybrid: 0.7 dense + 0.3 BM25, each standardised (robust default)",
    "dense": "Dense: embedding cosine similarity (meaning, synonyms)",
    "bm25": "Keyword (BM25): exact words, names, numbers, codes",
}
DENSE_WEIGHT = 0.7  # hybrid = 0.7 z(cosine) + 0.3 z(BM25)
CANDIDATES = 50  # how deep each list goes before fusion / re-ranking

_STOP = set("""a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
off on once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves also may might must shall via per
whose upon within without s t don""".split())


def stem(word: str) -> str:
    """A light plural stemmer (cars -> car, studies -> study); enough for keyword matching."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "ys")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    return [stem(w) for w in re.findall(r"\w+", text.lower()) if w not in _STOP]


class BM25:
    """Okapi BM25 with every document's term weights precomputed into one sparse matrix
    (documents x vocabulary, CSC), so a query is a sum of a few columns: fast at 100k chunks."""

    def __init__(self, texts: list[str], k1: float = 1.2, b: float = 0.75):
        self.vocab: dict[str, int] = {}
        rows, cols, tfs, lengths = [], [], [], []
        for i, text in enumerate(texts):
            counts = Counter(tokenize(text))
            lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                rows.append(i)
                cols.append(self.vocab.setdefault(term, len(self.vocab)))
                tfs.append(tf)
        n = len(texts)
        self.n = n
        rows = np.asarray(rows, dtype=np.int32)
        cols = np.asarray(cols, dtype=np.int32)
        tf = np.asarray(tfs, dtype=np.float32)
        lengths = np.asarray(lengths, dtype=np.float32)
        avg = float(lengths.mean()) if n else 1.0
        df = np.bincount(cols, minlength=len(self.vocab)).astype(np.float32)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * lengths[rows] / max(avg, 1e-9))
        weights = idf[cols] * tf * (k1 + 1) / (tf + norm)
        self.matrix = sparse.csc_matrix((weights, (rows, cols)), shape=(n, max(len(self.vocab), 1)))

    def scores(self, query: str) -> np.ndarray:
        ids = sorted({self.vocab[t] for t in tokenize(query) if t in self.vocab})
        out = np.zeros(self.n, dtype=np.float32)
        m = self.matrix
        for c in ids:  # add each query term's column (CSC: contiguous rows and weights)
            lo, hi = m.indptr[c], m.indptr[c + 1]
            out[m.indices[lo:hi]] += m.data[lo:hi]
        return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


@dataclass
class Hit:
    chunk: object  # rag_chunking.Chunk
    score: float  # the score the ranking used (cosine, BM25, fused or re-ranker)
    dense: float  # cosine similarity of the question and the chunk (always computed)
    bm25: float
    rank: int = 0
    dense_rank: int | None = None
    bm25_rank: int | None = None
    rerank: float | None = None


class RagIndex:
    """Chunks + their normalized embeddings in a FAISS flat inner-product index + BM25."""

    def __init__(self, chunks, vectors: np.ndarray):
        import faiss

        # One query at a time: FAISS's OpenMP threads only fight each other (and the other users of
        # a shared CPU); one thread measured 3-5x faster per query here.
        faiss.omp_set_num_threads(1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.chunks = list(chunks)
        self.dim = vectors.shape[1] if vectors.ndim == 2 and vectors.size else 384
        self.faiss = faiss.IndexFlatIP(self.dim)
        if len(vectors):
            self.faiss.add(vectors)
        self.bm25 = BM25([c.embed_text for c in self.chunks])
        # First and second moments of the chunk vectors: the mean and spread of every chunk's
        # cosine with a question follow exactly from them (mean = m.q, E[x^2] = q.S.q), so the
        # hybrid can standardise dense scores over the whole collection without scoring it all.
        n = max(len(vectors), 1)
        self._mean = vectors.sum(0) / n if len(vectors) else np.zeros(self.dim, np.float32)
        self._second = (vectors.T @ vectors) / n if len(vectors) else np.zeros((self.dim, self.dim), np.float32)

    def __len__(self):
        return len(self.chunks)

    def dense_search(self, qvec: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(qvec, dtype=np.float32).reshape(1, -1)
        scores, ids = self.faiss.search(q, min(k, len(self)))
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def search(self, query: str, qvec: np.ndarray, mode: str = "hybrid", k: int = 5,
               reranker=None, candidates: int = CANDIDATES) -> list[Hit]:
        if not len(self) or not query.strip():
            return []
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        depth = max(candidates, k)
        d_ids, d_scores = self.dense_search(qvec, depth)
        dense_rank = {int(i): r for r, i in enumerate(d_ids)}
        bm = self.bm25.scores(query)
        b_ids = top_k(bm, depth)
        b_ids = b_ids[bm[b_ids] > 0]
        bm25_rank = {int(i): r for r, i in enumerate(b_ids)}
        cos = {int(i): float(s) for i, s in zip(d_ids, d_scores)}  # FAISS's scores are the cosines
        if mode == "dense":
            ranked = list(cos.items())
        elif mode == "bm25":
            ranked = [(int(i), float(bm[i])) for i in b_ids]
        else:
            ranked = self._hybrid(qvec, cos, bm, b_ids, dense_rank)
        ranked = ranked[:depth if reranker else k]
        self._add_cosines(qvec, cos, [i for i, _ in ranked])
        hits = [Hit(self.chunks[i], s, cos[i], float(bm[i]), 0, dense_rank.get(i), bm25_rank.get(i))
                for i, s in ranked]
        if reranker is not None and hits:
            scores = rerank_scores(reranker, [(query, h.chunk.embed_text) for h in hits])
            for h, s in zip(hits, scores):
                h.rerank = float(s)
                h.score = float(s)
            hits.sort(key=lambda h: -h.score)
            hits = hits[:k]
        for r, h in enumerate(hits):
            h.rank = r + 1
        return hits

    def _hybrid(self, qvec, cos, bm, b_ids, dense_rank) -> list[tuple[int, float]]:
        """0.7 z(cosine) + 0.3 z(BM25) over the union of both candidate lists; z uses the mean
        and standard deviation over ALL chunks (exact for dense from the moments, direct for BM25)."""
        q = np.asarray(qvec, dtype=np.float32).ravel()
        mu = float(self._mean @ q)
        sd = float(np.sqrt(max(float(q @ self._second @ q) - mu * mu, 0.0))) or 1.0
        b_mu, b_sd = float(bm.mean()), float(bm.std()) or 1.0
        self._add_cosines(q, cos, [int(i) for i in b_ids])
        fused = [(i, DENSE_WEIGHT * (c - mu) / sd + (1 - DENSE_WEIGHT) * (float(bm[i]) - b_mu) / b_sd)
                 for i, c in cos.items()]
        return sorted(fused, key=lambda kv: (-kv[1], dense_rank.get(kv[0], 1e9)))

    def _add_cosines(self, qvec, cos: dict, ids) -> None:
        """Fill in cos[i] for the ids the dense search did not return (BM25-only candidates)."""
        missing = [i for i in ids if i not in cos]
        if missing:
            vecs = self.faiss.reconstruct_batch(np.asarray(missing, dtype=np.int64))
            cos.update(zip(missing, (vecs @ np.asarray(qvec, dtype=np.float32).ravel()).tolist()))


# ------------------------------------------------------------------ embedding
class Embedder:
    """A SentenceTransformer with what the lab needs to know about it: name, why it was
    chosen, maximum input length in tokens, and a token counter for fit_to_model."""

    def __init__(self, model, name: str, reason: str = ""):
        self.model = model
        self.name = name
        self.reason = reason
        self.max_tokens = int(getattr(model, "max_seq_length", 256) or 256)
        self.tokenizer = model.tokenizer

    def count_tokens(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, padding=False,
                             return_attention_mask=False, return_token_type_ids=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def encode(self, texts: list[str], batch_size: int | None = None, progress=None) -> np.ndarray:
        """Normalized float32 embeddings, in slices so a progress bar can move."""
        texts = list(texts)
        if batch_size is None:
            # On a CPU, small batches of ~250-token chunks run faster (25 s vs 31 s for 293 chunks
            # at 16 vs 64 here: less padding and cache pressure); a GPU wants big ones.
            batch_size = 16 if str(getattr(self.model, "device", "cpu")).startswith("cpu") else 64
        dim = self.model.get_embedding_dimension() or 384
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        step = 1024
        if len(texts) <= step:
            out = self._encode(texts, batch_size)
            if progress:
                progress(len(texts), len(texts))
            return out
        out = np.empty((len(texts), dim), dtype=np.float32)
        for s in range(0, len(texts), step):
            out[s:s + step] = self._encode(texts[s:s + step], batch_size)
            if progress:
                progress(min(s + step, len(texts)), len(texts))
        return out

    def _encode(self, texts, batch_size):
        return encode_texts(self.model, texts, batch_size)

    def encode_query(self, text: str) -> np.ndarray:
        return self._encode([text], 1)[0]


def get_embedder(requested: str | None = None) -> Embedder:
    """The embedded MiniLM, or bge-small/bge-base when asked for and reachable (falls back to
    MiniLM with the reason otherwise). The model lives in shared.loading's bounded cache, shared
    read-only; this wrapper holds no copy of its own, so an unloaded model is really freed."""
    from shared.loading import load_embedder

    model, choice = load_embedder(requested or None)
    return Embedder(model, choice.spec.name, f"{choice.source}: {choice.reason}")


def get_reranker(requested: str | None = None):
    """(CrossEncoder or None, message). Only when the Hub or the local cache has one; loaded through
    shared.loading (size guard, download with progress, bounded cache) like every Hub model."""
    from shared.loading import load_pretrained
    from shared.models import ModelUnavailable, REGISTRY

    def build(where, offline):
        from sentence_transformers import CrossEncoder

        return CrossEncoder(where, local_files_only=offline)

    try:
        model, choice = load_pretrained("reranker", requested or REGISTRY["reranker"][0].hub_id, build)
    except ModelUnavailable as exc:
        return None, f"Re-ranking off: {exc}"
    return model, f"Re-ranking with {choice.spec.name} ({choice.source})"


@gpu(duration=60)
def rerank_scores(reranker, pairs: list[tuple[str, str]]):
    """The cross-encoder's score of each (question, chunk) pair (a GPU on ZeroGPU hardware)."""
    return reranker.predict(pairs)


@gpu(duration=60)
def encode_texts(model, texts: list[str], batch_size: int) -> np.ndarray:
    """Normalized float32 embeddings (a GPU on ZeroGPU hardware)."""
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False).astype(np.float32, copy=False)
