"""One user's RAG session: documents -> chunks -> index -> retrieval -> prompt -> answer.

A RagSession lives in the user's gr.State (never a module global); models are shared
read-only. Everything here is plain Python, driven the same way by app.py, tests and bench."""
import hashlib
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import rag_answer as ra
from rag_chunking import DEFAULTS, chunk_documents, fit_to_model
from rag_documents import Document, FileStatus, read_files, sample_corpus_files
from rag_index import MODES, RagIndex, get_embedder, get_reranker

HERE = Path(__file__).resolve().parent


def corpus_folder() -> Path:
    from shared.paths import ASSETS

    return ASSETS / "rag_corpus"


@dataclass
class Settings:
    strategy: str = DEFAULTS["strategy"]
    size: int = DEFAULTS["size"]
    overlap: int = DEFAULTS["overlap"]
    context: bool = DEFAULTS["context"]
    mode: str = "hybrid"
    top_k: int = 5
    rerank: bool = False
    embedder: str = ""  # "" = the embedded MiniLM
    generator: str = ""  # "" = the embedded SmolLM2
    endpoint_url: str = ""
    endpoint_model: str = ""
    threshold: float = ra.WEAK_COSINE

    def index_key(self) -> tuple:
        return (self.strategy, int(self.size), int(self.overlap), bool(self.context), self.embedder)


@dataclass
class Retrieval:
    question: str
    query: str  # after rewriting
    rewrite_note: str
    hits: list
    weak: bool
    seconds: float
    rerank_note: str = ""


# Shipped vectors for the sample corpus (MiniLM, default chunking): clicking "load sample
# corpus" is instant on a laptop. Read-only, shared; keyed by the hash of the embedded text.
_sample_vectors: dict[str, np.ndarray] | None = None
_sample_lock = threading.Lock()
SAMPLE_VECTORS = "minilm_vectors.npz"


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def sample_vectors() -> dict[str, np.ndarray]:
    global _sample_vectors
    with _sample_lock:
        if _sample_vectors is None:
            path = corpus_folder() / SAMPLE_VECTORS
            table = {}
            if path.exists():
                data = np.load(path)
                table = {k: v.astype(np.float32) for k, v in zip(data["keys"], data["vectors"])}
            _sample_vectors = table
        return _sample_vectors


class RagSession:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.docs: list[Document] = []
        self.statuses: list[dict] = []
        self.chunks = []
        self.index: RagIndex | None = None
        self.index_info: dict = {}
        self.history: list[dict] = []  # {"role", "content", "query", "topic"}
        self._vectors: dict[str, np.ndarray] = {}  # this session's embedding cache
        self.lock = threading.RLock()

    def __deepcopy__(self, memo):  # gr.State may copy its initial value; a session is never shared
        return RagSession(Settings(**asdict(self.settings)))

    # ------------------------------------------------------------ documents
    @property
    def chars(self) -> int:
        return sum(len(d.text) for d in self.docs)

    def ingest(self, paths, names=None, progress=None) -> list[dict]:
        """Read files, add the readable ones, re-index. Returns one status dict per file."""
        with self.lock:
            docs, statuses = read_files(paths, self.chars, names)
            known = {d.name for d in self.docs}
            for doc, st in zip(docs, [s for s in statuses if s.ok]):
                if doc.name in known:  # same name again: replace the old copy
                    self.docs = [d for d in self.docs if d.name != doc.name]
                    st.message += " (replaced the earlier file of that name)"
                known.add(doc.name)
            self.docs.extend(docs)
            result = [s.as_dict() for s in statuses]
            if docs:
                self.rebuild(progress)
                per_doc = {}
                for c in self.chunks:
                    per_doc[c.doc] = per_doc.get(c.doc, 0) + 1
                for r in result:
                    if r["ok"]:
                        r["chunks"] = per_doc.get(r["file"], 0)
            self.statuses = (self.statuses + result)[-500:]
            return result

    def load_sample(self, progress=None) -> list[dict]:
        files = sample_corpus_files(corpus_folder())
        with self.lock:
            names = {d.name for d in self.docs}
            todo = [f for f in files if f.name not in names]
            result = self.ingest(todo, progress=progress) if todo else []
            for doc in self.docs:
                if doc.name in {f.name for f in files}:
                    doc.sample = True
            return result

    def clear(self) -> None:
        with self.lock:
            self.docs, self.chunks, self.index, self.statuses, self.history = [], [], None, [], []
            self.index_info = {}

    # ------------------------------------------------------------ index
    def rebuild(self, progress=None) -> dict:
        """Chunk every document with the current settings, fit chunks to the embedder, embed
        what is not cached yet, and build the dense + BM25 index."""
        with self.lock:
            s = self.settings
            embedder = get_embedder(s.embedder or None)
            t0 = time.perf_counter()
            chunks = chunk_documents(self.docs, s.strategy, s.size, s.overlap, s.context)
            chunks, n_split = fit_to_model(chunks, embedder.count_tokens, embedder.max_tokens)
            vectors, embedded_now = self.embed(embedder, [c.embed_text for c in chunks], progress)
            t1 = time.perf_counter()
            self.index = RagIndex(chunks, vectors)
            self.chunks = chunks
            self.history = []
            self.index_info = {
                "chunks": len(chunks), "documents": len(self.docs), "embedder": embedder.name,
                "embedder_reason": embedder.reason, "max_tokens": embedder.max_tokens, "split_to_fit": n_split,
                "embedded_now": embedded_now, "seconds": round(time.perf_counter() - t0, 2),
                "embed_seconds": round(t1 - t0, 2), "key": s.index_key(),
            }
            return self.index_info

    def embed(self, embedder, texts: list[str], progress=None) -> tuple[np.ndarray, int]:
        shipped = sample_vectors() if embedder.name.startswith("all-MiniLM-L6-v2") else {}
        keys = [text_key(t) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self._vectors and k not in shipped]
        if missing:
            new = embedder.encode([texts[i] for i in missing], progress=progress)
            for i, v in zip(missing, new):
                self._vectors[keys[i]] = v
        rows = [self._vectors[k] if k in self._vectors else shipped[k] for k in keys]
        out = np.vstack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, 384), dtype=np.float32)
        return out, len(missing)

    def ensure_index(self) -> None:
        if self.docs and (self.index is None or self.index_info.get("key") != self.settings.index_key()):
            self.rebuild()

    # ------------------------------------------------------------ retrieval
    def retrieve(self, question: str, rewrite: bool = True) -> Retrieval:
        with self.lock:
            self.ensure_index()
            s = self.settings
            t0 = time.perf_counter()
            query, note = ra.rewrite_question(question, self.history) if rewrite else (question, "used as is")
            if self.index is None or not len(self.index):
                return Retrieval(question, query, note, [], True, 0.0)
            embedder = get_embedder(s.embedder or None)
            qvec = embedder.encode_query(query)
            reranker, rerank_note = (get_reranker() if s.rerank else (None, ""))
            hits = self.index.search(query, qvec, s.mode if s.mode in MODES else "hybrid",
                                     max(1, min(int(s.top_k), 20)), reranker=reranker)
            weak = ra.is_weak(hits, s.threshold)
            return Retrieval(question, query, note, hits, weak, time.perf_counter() - t0, rerank_note)

    def remember(self, retrieval: Retrieval, answer: str) -> None:
        topic = retrieval.hits[0].chunk.title if retrieval.hits and not retrieval.weak else ""
        self.history.append({"role": "user", "content": retrieval.question, "query": retrieval.query,
                             "topic": topic})
        self.history.append({"role": "assistant", "content": answer})
        self.history = self.history[-20:]

    def answer_stream(self, retrieval: Retrieval, generator, stop_event=None):
        """Yield the answer text as it grows. Weak retrieval -> the not-found sentence, no model call."""
        if retrieval.weak:
            yield ra.NOT_FOUND
            return
        if getattr(generator, "kind", "") == "extractive":
            yield ra.extractive_answer(retrieval.question, retrieval.hits)
            return
        messages = ra.build_messages(retrieval.question, retrieval.hits)
        text = ""
        for piece in generator.stream(messages, stop_event=stop_event):
            text += piece
            yield text

    def ask(self, question: str, generator) -> dict:
        """Retrieve and answer in one go (the /ask API)."""
        retrieval = self.retrieve(question)
        answer = ""
        for answer in self.answer_stream(retrieval, generator):
            pass
        answer = answer.strip() or ra.NOT_FOUND
        self.remember(retrieval, answer)
        return {"answer": answer, "sources": ra.answer_sources(retrieval.hits), "rewritten_question": retrieval.query,
                "retrieval_weak": retrieval.weak, "cited": ra.parse_citations(answer, len(retrieval.hits)),
                "evidence": [{"source_number": n, "sentence": s}
                             for n, s in ra.evidence(retrieval.question, answer, retrieval.hits)]}
