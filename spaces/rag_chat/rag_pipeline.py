"""One user's RAG session: documents -> chunks -> index -> retrieval -> prompt -> answer.

A RagSession lives in the user's gr.State (never a module global); models are shared
read-only. Everything here is plain Python, driven the same way by app.py, tests and bench."""
import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import rag_answer as ra
from rag_chunking import DEFAULTS, chunk_documents, fit_to_model
from rag_documents import Document, read_files, sample_corpus_files
from rag_index import MODES, RagIndex, get_embedder, get_reranker

from shared.errors import UserError

# ---------------------------------------------------------------- limits and UI defaults
# (per file and per upload: rag_documents.MAX_FILE_BYTES, MAX_FILES, MAX_SESSION_CHARS)
MAX_QUESTION = 2000  # characters
MAX_TOP_K = 10  # the UI's slider; the API may ask up to 20
MAX_EVAL_PAIRS = 200  # question -> expected-source pairs scored per Evaluate
MAX_PAIRS_FILE_CHARS = 200_000
CHUNK_TABLE_ROWS = 400  # rows of the Chunks tab
SESSION_TTL_S = 4 * 3600  # a session's documents and index are dropped after this long unused
ANSWERS_AT_ONCE = 2  # answers generated at once on this machine; more wait in line (shared.jobs)
FILE_TYPES = [".pdf", ".txt", ".md", ".markdown", ".html", ".htm", ".docx"]
PAIR_FILE_TYPES = [".txt", ".csv", ".json"]
SAMPLE_VECTORS = "minilm_vectors.npz"


class RagError(UserError):
    """A request the lab cannot serve as asked (no documents yet, a question too long...)."""


def corpus_folder() -> Path:
    from shared.paths import ASSETS

    return ASSETS / "rag_corpus"


def check_question(question) -> str:
    """The question stripped, or a RagError that says what to do."""
    if not isinstance(question, str):
        raise RagError(f"The question must be text, not {type(question).__name__}.")
    q = question.strip()
    if not q:
        raise RagError("Type a question first.")
    if len(q) > MAX_QUESTION:
        raise RagError(f"That question is {len(q):,} characters long; the limit is {MAX_QUESTION:,}. "
                       "Ask something shorter.")
    return q


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
    answer_mode: str = "auto"  # rag_grounded.MODES: auto, extractive, grounded, short, free

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


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def sample_vectors() -> dict[str, np.ndarray]:
    """Shipped vectors for the sample corpus (MiniLM, default chunking), keyed by the hash of the embedded
    text: "Load sample corpus" is instant on a laptop. Read once per process, shared read-only."""
    from shared.loading import once

    def read():
        path = corpus_folder() / SAMPLE_VECTORS
        if not path.exists():
            return {}
        data = np.load(path)
        return {k: v.astype(np.float32) for k, v in zip(data["keys"], data["vectors"])}

    return once(("rag", "sample-vectors", str(corpus_folder())), read)


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
        self.shipped = True  # use the sample corpus's shipped vectors (the corpus builder turns this off)
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
            texts = [c.embed_text for c in chunks]
            cached = sum(1 for t in texts if text_key(t) in self._vectors)
            vectors, embedded_now = self.embed(embedder, texts, progress)
            t1 = time.perf_counter()
            self.index = RagIndex(chunks, vectors)
            self.chunks = chunks
            self.history = []
            self.index_info = {
                "chunks": len(chunks), "documents": len(self.docs), "embedder": embedder.name,
                "embedder_reason": embedder.reason, "max_tokens": embedder.max_tokens, "split_to_fit": n_split,
                "embedded_now": embedded_now, "from_session": cached,
                "from_shipped": len(chunks) - embedded_now - cached, "seconds": round(time.perf_counter() - t0, 2),
                "embed_seconds": round(t1 - t0, 2), "key": s.index_key(),
            }
            return self.index_info

    def embed(self, embedder, texts: list[str], progress=None) -> tuple[np.ndarray, int]:
        shipped = sample_vectors() if self.shipped and embedder.name.startswith("all-MiniLM-L6-v2") else {}
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

    def answer_stream(self, retrieval: Retrieval, generator, should_stop=None):
        """Yield the answer text as it grows. Weak retrieval -> the not-found sentence, no model call.
        `should_stop()` turning true (a job's stop request) ends the model's answer where it is."""
        if retrieval.weak:
            yield ra.NOT_FOUND
            return
        if getattr(generator, "kind", "") == "extractive":
            yield ra.extractive_answer(retrieval.question, retrieval.hits)
            return
        from rag_grounded import withhold_instructions

        messages = ra.build_messages(retrieval.question, withhold_instructions(retrieval.hits))
        text = ""
        for piece in generator.stream(messages, should_stop=should_stop):
            text += piece
            yield text

    def start_answer(self, retrieval: Retrieval, generator, owner: str = "", mode: str | None = None):
        """The answer as a shared job (ANSWERS_AT_ONCE run on this machine, the others wait in line), in the
        answer mode of the settings (rag_grounded: extractive, grounded decoding, short prompt, free-form;
        'auto' picks by the model): job.result holds the text so far, job.grounded the finished
        rag_grounded.GroundedAnswer; jobs.stop(job.id) ends the model's answer at the next token."""
        import rag_grounded as rg
        from shared import jobs

        mode = mode or self.settings.answer_mode
        embedder = get_embedder(self.settings.embedder or None) if retrieval.hits else None

        def work(job):
            job.report(0.0, "answering")
            job.grounded = None

            def shown(text):
                job.result = text

            done = rg.answer(retrieval.question, retrieval.hits, mode, generator, embedder, retrieval.weak,
                             on_text=shown, should_stop=job.should_stop)
            job.grounded = done
            return done.text

        return jobs.submit(work, key="rag-answer", kind="rag-answer", label="The answer", owner=owner,
                           slots=ANSWERS_AT_ONCE)

    def finish(self, retrieval: Retrieval, raw: str, grounded=None) -> dict:
        """Check the answer's citations against its sources, remember the turn, and say what to show:
        {"answer" (citations that match no source, or whose source does not say the sentence, removed),
        "raw_answer", "cited", "removed", "notes", "evidence", "mode", "why", "support"}. `grounded` (a
        rag_grounded.GroundedAnswer, checked already) gives all of these for an answer made in a mode."""
        if grounded is not None:
            self.remember(retrieval, grounded.text)
            return {"answer": grounded.text, "raw_answer": grounded.raw or grounded.text, "cited": grounded.cited,
                    "removed": grounded.removed, "notes": grounded.notes, "mode": grounded.mode, "why": grounded.why,
                    "support": grounded.support, "question_type": grounded.qtype, "seconds": grounded.seconds,
                    "evidence": [(s["source"], s["sentence"]) for s in grounded.support]}
        raw = raw.strip() or ra.NOT_FOUND
        checked = ra.check_citations(raw, retrieval.hits)
        answer = checked["text"] or ra.NOT_FOUND
        self.remember(retrieval, answer)
        had = bool(ra.parse_citations(raw, 10 ** 6))
        return {"answer": answer, "raw_answer": raw, "cited": checked["cited"], "removed": checked["removed"],
                "notes": ra.citation_notes(checked, had), "mode": "free", "why": "", "support": [],
                "evidence": ra.evidence(retrieval.question, answer, retrieval.hits)}

    def ask(self, question: str, generator, owner: str = "") -> dict:
        """Retrieve and answer in one go (the /ask API), through the same line of answer jobs as the chat."""
        retrieval = self.retrieve(question)
        job = self.start_answer(retrieval, generator, owner)
        job.wait()
        if job.error:
            raise RagError(job.error)
        done = self.finish(retrieval, job.result or "", getattr(job, "grounded", None))
        return {"answer": done["answer"], "sources": ra.answer_sources(retrieval.hits),
                "rewritten_question": retrieval.query, "retrieval_weak": retrieval.weak, "cited": done["cited"],
                "citations_removed": done["removed"],
                "evidence": [{"source_number": n, "sentence": s} for n, s in done["evidence"]],
                "answer_mode": done["mode"], "why": done["why"],
                "support": [{"source_number": s["source"], "sentence": s["sentence"], "key": s.get("key_text", "")}
                            for s in done["support"]]}

    # ------------------------------------------------------------ settings
    def apply(self, mode=None, top_k=None, rerank=None, generator=None, url=None, model=None) -> None:
        """The chat's controls into the settings (None leaves a setting as it is)."""
        s = self.settings
        if mode is not None:
            s.mode = mode if mode in MODES else "hybrid"
        if top_k is not None:
            s.top_k = max(1, min(int(top_k or Settings.top_k), 20))
        if rerank is not None:
            s.rerank = bool(rerank)
        if generator is not None:
            s.generator = generator
        if url is not None:
            s.endpoint_url = url
        if model is not None:
            s.endpoint_model = model

    def configure(self, settings) -> dict:
        """The /configure API: a JSON object of settings -> the session's settings (unknown keys named)."""
        try:
            wanted = json.loads(settings or "{}") if isinstance(settings, str) else settings
        except ValueError as exc:
            raise RagError(f"settings must be a JSON object: {exc}") from None
        if not isinstance(wanted, dict):
            raise RagError("settings must be a JSON object, like {\"top_k\": 3}")
        known = asdict(Settings())
        unknown = [k for k in wanted if k not in known]
        for k, v in wanted.items():
            if k in known:
                try:
                    setattr(self.settings, k, type(known[k])(v) if known[k] is not None else v)
                except (TypeError, ValueError):
                    raise RagError(f"setting {k!r} must be a {type(known[k]).__name__}, not {v!r}") from None
        self.settings.top_k = max(1, min(int(self.settings.top_k), 20))
        from rag_grounded import MODES as ANSWER_MODES

        if self.settings.answer_mode not in ANSWER_MODES:
            bad, self.settings.answer_mode = self.settings.answer_mode, "auto"
            raise RagError(f"answer_mode must be one of {', '.join(ANSWER_MODES)}, not {bad!r}")
        out = asdict(self.settings)
        if unknown:
            out["warning"] = f"unknown settings ignored: {', '.join(unknown)}"
        return out
