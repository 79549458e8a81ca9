import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# shared/ sits beside app.py in a deployed Space bundle, two folders up in the repo.
sys.path.insert(0, str(HERE if (HERE / "shared").is_dir() else HERE.parent.parent))
sys.path.insert(0, str(HERE))

from shared.bootstrap import require  # noqa: E402

require("gradio", "torch", "transformers", "sentence_transformers", "faiss", "pypdf", "scipy")

import html  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402

import gradio as gr  # noqa: E402

from shared.launch import launch  # noqa: E402
from shared.look import header  # noqa: E402
from shared.models import REGISTRY  # noqa: E402

import rag_answer as ra  # noqa: E402
from rag_chunking import DEFAULTS, STRATEGIES  # noqa: E402
from rag_documents import MAX_FILES, MAX_FILE_BYTES, SUPPORTED  # noqa: E402
from rag_eval import EXAMPLE_PAIRS, compare, parse_pairs  # noqa: E402
from rag_generators import EXTRACTIVE, ENDPOINT, GeneratorError, generator_choices, make_generator  # noqa: E402
from rag_index import MODES  # noqa: E402
from rag_pipeline import RagSession, Settings  # noqa: E402

MAX_QUESTION = 2000  # characters
FILE_TYPES = [".pdf", ".txt", ".md", ".markdown", ".html", ".htm", ".docx"]
DEFAULT_GENERATOR = REGISTRY["chat"][0].name
STRATEGY_CHOICES = [(v.split(":")[0], k) for k, v in STRATEGIES.items()]
MODE_CHOICES = [(v.split(":")[0], k) for k, v in MODES.items()]
EMBEDDER_CHOICES = [s.name for s in REGISTRY["embeddings"]]
NEIGHBOUR_HEADERS = ["#", "file", "where", "score", "cosine", "BM25", "dense rank", "BM25 rank", "text"]
CHUNK_HEADERS = ["id", "file", "where", "chars", "embedded as (context + text)"]
STATUS_HEADERS = ["file", "ok", "message", "chunks"]

EMBEDDER_WHY = ("all-MiniLM-L6-v2 is embedded (installed from PyPI), so retrieval works offline; it reads at most "
                "256 tokens per chunk, and chunks longer than that are split, never cut. bge-small/bge-base are used "
                "when you pick them and the Hub (or your local cache) has them.")


def _session(session) -> RagSession:
    return session if isinstance(session, RagSession) else RagSession()


def _status_rows(statuses):
    return [[s["file"], "✓" if s["ok"] else "✗", s["message"], s.get("chunks", "")] for s in statuses]


def _index_md(session: RagSession) -> str:
    info = session.index_info
    if not session.docs:
        return "*No documents yet: upload files or load the sample corpus.*"
    split = info.get("split_to_fit", 0)
    n_docs = info.get("documents", 0)
    return (f"**{n_docs} document{'' if n_docs == 1 else 's'} → {info.get('chunks', 0)} chunks** · "
            f"{session.settings.strategy}, {session.settings.size} chars, overlap {session.settings.overlap}"
            f"{', title/heading context' if session.settings.context else ''} · embedder **{info.get('embedder', '?')}** "
            f"(max {info.get('max_tokens', '?')} tokens; {split} chunk(s) split to fit, none cut) · "
            f"{info.get('embedded_now', 0)} embedded now in {info.get('embed_seconds', 0)} s")


def _chunk_rows(session: RagSession, limit: int = 400):
    return [[c.id, c.doc, c.where, len(c.text), c.embed_text] for c in session.chunks[:limit]]


def _model_md(session: RagSession, generator_status: str = "") -> str:
    info = session.index_info
    emb = (f"**Embedder:** {info['embedder']} · {info['embedder_reason']} · max {info['max_tokens']} tokens"
           if info else "**Embedder:** all-MiniLM-L6-v2 (embedded; loads on first use)")
    gen = generator_status or ("**Generator:** SmolLM2-135M-Instruct (embedded; loads on first question) — a *very "
                               "small* model: fluent for a sentence or two, often wrong. Trust the cited sources, not it.")
    if generator_status and not generator_status.startswith("**Generator"):
        gen = "**Generator:** " + generator_status
    return f"{emb}  \n{gen}  \n<span class='rag-why'>{EMBEDDER_WHY}</span>"


# ------------------------------------------------------------------ documents
def add_files(files, session, progress=gr.Progress()):
    session = _session(session)
    paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
    if not paths:
        gr.Warning("Choose one or more files first.")
        return _status_rows(session.statuses), _index_md(session), _chunk_rows(session), _model_md(session), session
    progress(0, desc=f"Reading {len(paths)} file(s)")
    result = session.ingest(paths, progress=lambda done, total: progress(done / total, desc=f"Embedding {done}/{total} chunks"))
    bad = [r for r in result if not r["ok"]]
    if bad:
        gr.Warning(f"{len(bad)} of {len(result)} file(s) could not be used: see the status table.")
    return _status_rows(session.statuses), _index_md(session), _chunk_rows(session), _model_md(session), session


def load_sample(session, progress=gr.Progress()):
    session = _session(session)
    progress(0, desc="Loading the sample corpus")
    session.load_sample(progress=lambda d, t: progress(d / t, desc=f"Embedding {d}/{t} chunks"))
    return _status_rows(session.statuses), _index_md(session), _chunk_rows(session), _model_md(session), session


def clear_docs(session):
    session = _session(session)
    session.clear()
    return [], _index_md(session), [], _model_md(session), [], "", [], "", session


def rechunk(strategy, size, overlap, context, embedder, session, progress=gr.Progress()):
    session = _session(session)
    s = session.settings
    s.strategy, s.size, s.overlap, s.context = strategy, int(size), int(overlap), bool(context)
    s.embedder = "" if embedder == EMBEDDER_CHOICES[0] else embedder
    if session.docs:
        progress(0, desc="Re-chunking and re-indexing")
        session.rebuild(progress=lambda d, t: progress(d / t, desc=f"Embedding {d}/{t} chunks"))
        if session.index_info.get("embedder") != (embedder or EMBEDDER_CHOICES[0]) and s.embedder:
            gr.Warning(f"Using {session.index_info['embedder']}: {session.index_info['embedder_reason']}")
    return _index_md(session), _chunk_rows(session), _model_md(session), session


# ------------------------------------------------------------------ chat
EVIDENCE_TIP = ("cited: the model cited this source as [n]. evidence: the model did not cite it, but this source "
                "holds the sentence closest to the answer (highlighted).")
SCORE_TIP = ("rank score: what the ranking used (cosine for dense, BM25 for keyword, 0.7 z(cosine) + 0.3 z(BM25) for hybrid, the cross-encoder when re-ranking). cosine: similarity of question and chunk, which decides &quot;I could not find this&quot;.")


def _sources_html(retrieval, answer: str = "") -> str:
    if retrieval is None:
        return ""
    if not retrieval.hits:
        return "<p class='rag-empty'>No chunks retrieved.</p>"
    ev = dict(ra.evidence(retrieval.question, answer, retrieval.hits)) if answer else {}
    by_model = set(ra.parse_citations(answer, len(retrieval.hits))) if answer else set()
    cited = by_model | set(ev)
    parts = []
    for n, h in enumerate(retrieval.hits, 1):
        c = h.chunk
        if n in ev and ev[n] in c.text:
            start = c.text.index(ev[n])
            span = (start, start + len(ev[n]))
        else:
            span = ra.supporting_sentence(c.text, "", retrieval.question)
        # "cited": the model put [n] in its answer; "evidence": the lab found the closest sentence here
        label = "cited" if n in by_model else "evidence"
        badge = f" <span class='rag-cited' title='{EVIDENCE_TIP}'>{label}</span>" if n in cited else ""
        opened = " open" if (n in cited or (not cited and n == 1)) else ""
        parts.append(
            f"<details class='rag-src' id='rag-src-{n}'{opened}><summary><b>[{n}]</b> {html.escape(c.doc)} · "
            f"{html.escape(c.where)} · <span title='{SCORE_TIP}'>rank score {h.score:.4f} · cosine {h.dense:.2f}</span>"
            f"{badge}</summary>"
            f"<div class='rag-src-text'>{ra.highlight(c.text, span)}</div></details>")
    return "".join(parts)


def _neighbour_rows(retrieval):
    if retrieval is None:
        return []
    return [[h.rank, h.chunk.doc, h.chunk.where, round(h.score, 4), round(h.dense, 3), round(h.bm25, 2),
             "" if h.dense_rank is None else h.dense_rank + 1, "" if h.bm25_rank is None else h.bm25_rank + 1,
             h.chunk.text[:300]] for h in retrieval.hits]


def _link_citations(answer: str, n: int) -> str:
    import re

    def link(m):
        nums = [x for x in re.split(r"\s*[,;]\s*", m.group(1))]
        return "".join(f"<a href='#rag-src-{x}' class='rag-cite'>[{x}]</a>" if x.isdigit() and 1 <= int(x) <= n
                       else f"[{x}]" for x in nums)

    return re.sub(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]", link, answer)


def _check_question(question: str) -> str | None:
    q = (question or "").strip()
    if not q:
        return "Type a question first."
    if len(q) > MAX_QUESTION:
        return f"That question is {len(q):,} characters long; the limit is {MAX_QUESTION:,}. Ask something shorter."
    return None


def _apply(session, mode, top_k, rerank, generator, url, model):
    s = session.settings
    s.mode = mode if mode in MODES else "hybrid"
    s.top_k = int(top_k or Settings.top_k)
    s.rerank = bool(rerank)
    s.generator, s.endpoint_url, s.endpoint_model = generator or DEFAULT_GENERATOR, url or "", model or ""


def chat(question, history, session, mode, top_k, rerank, generator_name, url, model, api_key):
    session = _session(session)
    history = list(history or [])
    problem = _check_question(question)
    if problem is None and not session.docs:
        problem = "Upload documents (or click **Load sample corpus**) before asking."
    if problem:
        gr.Warning(problem)
        yield history, session, gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), question
        return
    question = question.strip()
    _apply(session, mode, top_k, rerank, generator_name, url, model)
    retrieval = session.retrieve(question)
    rewrite = (f"**Search query:** {html.escape(retrieval.query)}  \n<small>{retrieval.rewrite_note} · "
               f"{len(retrieval.hits)} chunks in {retrieval.seconds * 1000:.0f} ms"
               f"{' · ' + retrieval.rerank_note if retrieval.rerank_note else ''}"
               f"{' · retrieval weak (best cosine %.2f < %.2f)' % (max([h.dense for h in retrieval.hits] or [0]), session.settings.threshold) if retrieval.weak else ''}</small>")
    history = history + [{"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
    messages = ra.build_messages(question, retrieval.hits)
    status = ""
    try:
        generator = make_generator(generator_name or DEFAULT_GENERATOR, url, model, api_key)
        status = generator.status
        prompt = generator.prompt_text(messages)
    except GeneratorError as exc:
        generator = make_generator(EXTRACTIVE)
        status = f"{exc} — answering extractively instead."
        gr.Warning(str(exc))
        prompt = generator.prompt_text(messages)
    if retrieval.weak:
        prompt = "(not sent: retrieval was too weak, so the lab answers that it could not find this)\n\n" + prompt
    yield (history, session, rewrite, _sources_html(retrieval), _neighbour_rows(retrieval), prompt,
           _model_md(session, status), "")
    stop = threading.Event()
    answer = ""
    try:
        for answer in session.answer_stream(retrieval, generator, stop_event=stop):
            history[-1] = {"role": "assistant", "content": answer}
            yield history, session, gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), ""
    except GeneratorError as exc:
        answer = answer + f"\n\n*{exc}*"
    finally:
        stop.set()
    answer = answer.strip() or ra.NOT_FOUND
    session.remember(retrieval, answer)
    shown = ra.with_evidence(answer, question, retrieval.hits)
    history[-1] = {"role": "assistant", "content": _link_citations(shown, len(retrieval.hits))}
    yield history, session, gr.update(), _sources_html(retrieval, answer), gr.update(), gr.update(), gr.update(), ""


def clear_chat(session):
    session = _session(session)
    session.history = []
    return [], "", "", [], "", session


def compare_rag(question, session, mode, top_k, generator_name, url, model, api_key):
    session = _session(session)
    problem = _check_question(question) or (None if session.docs else "Load documents first.")
    if problem:
        gr.Warning(problem)
        yield "", "", session
        return
    _apply(session, mode, top_k, False, generator_name, url, model)
    try:
        generator = make_generator(generator_name or DEFAULT_GENERATOR, url, model, api_key)
    except GeneratorError as exc:
        gr.Warning(str(exc))
        yield f"*{exc}*", "", session
        return
    retrieval = session.retrieve(question, rewrite=False)
    plain = ""
    if getattr(generator, "kind", "") == "extractive":
        plain = "*(The extractive mode has no model to ask without documents: pick a language model.)*"
    else:
        for plain in generator.stream(ra.build_plain_messages(question)):
            yield plain, "…", session
    rag = ""
    for rag in session.answer_stream(retrieval, generator):
        yield plain, rag, session
    srcs = "\n".join(f"[{n}] {h.chunk.doc} · {h.chunk.where}" for n, h in enumerate(retrieval.hits, 1))
    yield plain, _link_citations(rag, len(retrieval.hits)) + "\n\n<small>" + html.escape(srcs).replace("\n", "<br>") + "</small>", session


# ------------------------------------------------------------------ evaluation
def load_pairs_file(file):
    if not file:
        return gr.update()
    path = file if isinstance(file, str) else file.name
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")[:200_000]
    except OSError as exc:
        gr.Warning(f"Could not read that file: {exc}")
        return gr.update()


def run_eval(pairs_text, a_strategy, a_size, a_mode, b_strategy, b_size, b_mode, session, progress=gr.Progress()):
    session = _session(session)
    pairs, problems = parse_pairs(pairs_text)
    for p in problems[:3]:
        gr.Warning(p)
    if not pairs or not session.docs:
        gr.Warning("Need documents and at least one 'question | expected file or passage' line.")
        return [], [], session
    pairs = pairs[:200]
    base = session.settings
    sa = Settings(**{**base.__dict__, "strategy": a_strategy, "size": int(a_size), "mode": a_mode, "rerank": False})
    sb = Settings(**{**base.__dict__, "strategy": b_strategy, "size": int(b_size), "mode": b_mode, "rerank": False})
    progress(0.1, desc="Indexing and scoring both settings")
    res = compare(session, pairs, sa, sb)
    metrics = list(res["A"]["metrics"].keys())
    table = [[m, round(res["A"]["metrics"][m], 3), round(res["B"]["metrics"][m], 3)] for m in metrics]
    table.append(["chunks", res["A"]["chunks"], res["B"]["chunks"]])
    per_q = [[q, exp[:80], res["A"]["ranks"][i] or "miss", res["B"]["ranks"][i] or "miss"]
             for i, (q, exp) in enumerate(pairs)]
    return table, per_q, session


# ------------------------------------------------------------------ API
def api_ingest(files, session):
    """files: list of files -> {"files": [per-file status], "documents": n, "chunks": n}."""
    session = _session(session)
    paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
    if not paths:
        return {"error": "no files given", "files": []}, session
    result = session.ingest(paths)
    return {"files": result, "documents": len(session.docs), "chunks": len(session.chunks)}, session


def api_ask(question, session):
    """question -> {"answer", "sources": [{"source", "text", "score"}...] best first, ...}."""
    session = _session(session)
    problem = _check_question(question)
    if problem:
        return {"error": problem, "answer": "", "sources": []}, session
    if not session.docs:
        return {"error": "no documents in this session: call /ingest first", "answer": "", "sources": []}, session
    s = session.settings
    try:
        generator = make_generator(s.generator or DEFAULT_GENERATOR, s.endpoint_url, s.endpoint_model)
    except GeneratorError as exc:
        return {"error": str(exc), "answer": "", "sources": []}, session
    try:
        return session.ask(question.strip(), generator), session
    except GeneratorError as exc:
        return {"error": str(exc), "answer": "", "sources": []}, session


def api_configure(settings, session):
    """settings (JSON object): any of strategy, size, overlap, context, mode, top_k, rerank, generator,
    endpoint_url, endpoint_model, embedder. Returns the session's settings."""
    session = _session(session)
    try:
        wanted = json.loads(settings or "{}")
        if not isinstance(wanted, dict):
            raise ValueError("settings must be a JSON object")
    except ValueError as exc:
        return {"error": f"settings must be a JSON object: {exc}"}, session
    known = Settings().__dict__
    unknown = [k for k in wanted if k not in known]
    for k, v in wanted.items():
        if k in known:
            setattr(session.settings, k, type(known[k])(v) if known[k] is not None else v)
    out = dict(session.settings.__dict__)
    if unknown:
        out["warning"] = f"unknown settings ignored: {', '.join(unknown)}"
    return out, session


# ------------------------------------------------------------------ layout
CSS = """
.rag-src {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .35rem .6rem; margin: .3rem 0;
          background: var(--background-fill-secondary)}
.rag-src summary {cursor: pointer; font-size: .9rem}
.rag-src-text {white-space: pre-wrap; font-size: .88rem; margin-top: .35rem; max-height: 16rem; overflow-y: auto}
.rag-src mark {background: #fde68a; color: #111; padding: 0 .1rem; border-radius: 3px}
.rag-cited {background: var(--color-accent); color: white; border-radius: 6px; padding: 0 .35rem; font-size: .75rem}
.rag-why {font-size: .8rem; color: var(--body-text-color-subdued)}
a.rag-cite {font-weight: 600; text-decoration: none}
"""


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="RAG chat · GenAI Lab Playground") as demo:
        gr.HTML(f"<style>{CSS}</style>")
        header("RAG chat: talk to your documents, and see every step",
               "Retrieval-augmented generation: your files are cut into chunks, embedded and indexed; each question "
               "retrieves the closest chunks (scores shown), which are put into the exact prompt the model answers from, "
               "with numbered citations back to the source.")
        session = gr.State(None, time_to_live=4 * 3600)
        models = gr.Markdown(_model_md(RagSession()), elem_classes="model-status")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        files = gr.File(label=f"Your documents ({SUPPORTED}; up to {MAX_FILE_BYTES // 2**20} MB each, "
                                              f"{MAX_FILES} per upload)", file_count="multiple", file_types=FILE_TYPES,
                                        height=150)
                        with gr.Row():
                            add_btn = gr.Button("Add files", variant="primary", size="sm")
                            sample_btn = gr.Button("Load sample corpus", size="sm")
                            clear_btn = gr.Button("Clear", size="sm", variant="stop")
                        gr.Markdown("<small>Sample corpus: 16 English Wikipedia articles (Einstein, Aristotle, Apollo 11, "
                                    "Alchemy, Abacus, ASCII…), CC BY-SA.</small>")
                        index_md = gr.Markdown(_index_md(RagSession()))
                        status = gr.Dataframe(headers=STATUS_HEADERS, label="Files", interactive=False, wrap=True,
                                              max_height=220, column_widths=["28%", "8%", "50%", "14%"])
                        with gr.Accordion("Retrieval and generator", open=True):
                            mode = gr.Radio(MODE_CHOICES, value="hybrid", label="Retrieval")
                            with gr.Row():
                                top_k = gr.Slider(1, 10, value=Settings.top_k, step=1, label="top-k chunks")
                                rerank = gr.Checkbox(False, label="Re-rank (cross-encoder; needs the Hub)")
                            generator = gr.Dropdown(generator_choices(), value=DEFAULT_GENERATOR, label="Generator")
                            with gr.Group(visible=False) as endpoint_box:
                                url = gr.Textbox(label="Endpoint URL", placeholder="http://localhost:8000/v1 (vLLM) · "
                                                 "http://localhost:11434/v1 (Ollama)")
                                model = gr.Textbox(label="Model name on that server", placeholder="e.g. Qwen/Qwen2.5-7B-Instruct")
                                api_key = gr.Textbox(label="API key (if the server needs one)", type="password")
                    with gr.Column(scale=3, min_width=420):
                        chatbot = gr.Chatbot(label="Chat (answers cite their sources as [n])", height=380,
                                             sanitize_html=False)
                        with gr.Row():
                            question = gr.Textbox(placeholder="Ask about your documents…", show_label=False, scale=5,
                                                  max_length=MAX_QUESTION + 1000, autofocus=True)
                            ask_btn = gr.Button("Ask", variant="primary", scale=1, min_width=80)
                            stop_btn = gr.Button("Stop", scale=1, min_width=70)
                        with gr.Row():
                            clear_chat_btn = gr.Button("New conversation", size="sm")
                        rewrite = gr.Markdown()
                        gr.Markdown("**Sources** (click to expand; the supporting sentence is highlighted)")
                        sources = gr.HTML()
                        with gr.Accordion("Neighbours: the top-k chunks with their scores", open=False):
                            neighbours = gr.Dataframe(headers=NEIGHBOUR_HEADERS, interactive=False, wrap=True)
                        with gr.Accordion("View the exact prompt sent to the model", open=False):
                            prompt = gr.Code(label="Prompt", language="markdown", interactive=False, wrap_lines=True)

            with gr.Tab("Chunks", id="chunks"):
                gr.Markdown("Change how documents are cut and embedded, then re-index. A chunk's *context* (document "
                            "title and section heading) is put in front of its text for embedding and keyword search.")
                with gr.Row():
                    strategy = gr.Radio(STRATEGY_CHOICES, value=DEFAULTS["strategy"], label="Chunking")
                    embedder = gr.Dropdown(EMBEDDER_CHOICES, value=EMBEDDER_CHOICES[0], label="Embedder")
                with gr.Row():
                    size = gr.Slider(100, 2000, value=DEFAULTS["size"], step=50, label="Chunk size (characters)")
                    overlap = gr.Slider(0, 500, value=DEFAULTS["overlap"], step=10, label="Overlap (characters)")
                    context = gr.Checkbox(DEFAULTS["context"], label="Prepend title/heading context")
                rechunk_btn = gr.Button("Re-chunk and re-index", variant="primary")
                index_md2 = gr.Markdown()
                chunk_table = gr.Dataframe(headers=CHUNK_HEADERS, label="Chunks (first 400)", interactive=False,
                                           wrap=True, max_height=520, column_widths=["6%", "16%", "20%", "7%", "51%"])

            with gr.Tab("No-RAG vs RAG", id="compare"):
                gr.Markdown("The same model and question, without and with the retrieved sources. Without them the "
                            "model can only guess from what it memorised.")
                with gr.Row():
                    cmp_question = gr.Textbox(label="Question", scale=5, max_length=MAX_QUESTION + 1000)
                    cmp_btn = gr.Button("Compare", variant="primary", scale=1)
                with gr.Row():
                    no_rag = gr.Markdown(label="Without retrieval", container=True)
                    with_rag = gr.Markdown(label="With retrieval (RAG)", container=True)

            with gr.Tab("Evaluate retrieval", id="eval"):
                gr.Markdown("Question → expected source pairs, one per line: `question | file name or a passage of the "
                            "answer`. A question *hits* at k when a top-k chunk is that file or contains that passage. "
                            "MRR = mean of 1/rank of the first hit.")
                with gr.Row():
                    pairs = gr.Textbox(EXAMPLE_PAIRS, lines=8, label="Pairs", scale=3)
                    pairs_file = gr.File(label="…or upload .txt/.csv/.json", file_types=[".txt", ".csv", ".json"], scale=1)
                with gr.Row():
                    with gr.Column():
                        gr.Markdown("**Setting A**")
                        a_strategy = gr.Radio(STRATEGY_CHOICES, value="fixed", label="Chunking")
                        a_size = gr.Slider(100, 2000, value=1000, step=50, label="Size")
                        a_mode = gr.Radio(MODE_CHOICES, value="dense", label="Retrieval")
                    with gr.Column():
                        gr.Markdown("**Setting B**")
                        b_strategy = gr.Radio(STRATEGY_CHOICES, value=DEFAULTS["strategy"], label="Chunking")
                        b_size = gr.Slider(100, 2000, value=DEFAULTS["size"], step=50, label="Size")
                        b_mode = gr.Radio(MODE_CHOICES, value="hybrid", label="Retrieval")
                eval_btn = gr.Button("Evaluate both", variant="primary")
                with gr.Row():
                    eval_table = gr.Dataframe(headers=["metric", "A", "B"], interactive=False, scale=1)
                    eval_detail = gr.Dataframe(headers=["question", "expected", "rank A", "rank B"], interactive=False,
                                               wrap=True, scale=2)

        # API-only components (the same session state as the UI).
        with gr.Row(visible=False):
            api_files = gr.File(file_count="multiple")
            api_question = gr.Textbox()
            api_settings = gr.Textbox()
            api_out = gr.JSON()
            api_btn1, api_btn2, api_btn3 = gr.Button(), gr.Button(), gr.Button()

        doc_outputs = [status, index_md, chunk_table, models, session]
        add_btn.click(add_files, [files, session], doc_outputs, api_visibility="private", concurrency_id="rag_index",
                      concurrency_limit=2).then(lambda m: (m, None), index_md, [index_md2, files], api_visibility="private")
        sample_btn.click(load_sample, [session], doc_outputs, api_visibility="private",
                         concurrency_id="rag_index").then(lambda m: m, index_md, index_md2, api_visibility="private")
        clear_btn.click(clear_docs, [session], [status, index_md, chunk_table, models, chatbot, sources, neighbours,
                                                rewrite, session], api_visibility="private")
        rechunk_btn.click(rechunk, [strategy, size, overlap, context, embedder, session],
                          [index_md2, chunk_table, models, session], api_visibility="private",
                          concurrency_id="rag_index").then(lambda m: m, index_md2, index_md, api_visibility="private")
        generator.change(lambda g: gr.update(visible=g == ENDPOINT), generator, endpoint_box, api_visibility="private")

        chat_inputs = [question, chatbot, session, mode, top_k, rerank, generator, url, model, api_key]
        chat_outputs = [chatbot, session, rewrite, sources, neighbours, prompt, models, question]
        ev1 = ask_btn.click(chat, chat_inputs, chat_outputs, api_visibility="private", concurrency_id="rag_answer",
                            concurrency_limit=2)
        ev2 = question.submit(chat, chat_inputs, chat_outputs, api_visibility="private", concurrency_id="rag_answer")
        stop_btn.click(None, None, None, cancels=[ev1, ev2], api_visibility="private")
        clear_chat_btn.click(clear_chat, [session], [chatbot, rewrite, sources, neighbours, prompt, session],
                             api_visibility="private")
        cmp_btn.click(compare_rag, [cmp_question, session, mode, top_k, generator, url, model, api_key],
                      [no_rag, with_rag, session], api_visibility="private", concurrency_id="rag_answer")
        pairs_file.change(load_pairs_file, pairs_file, pairs, api_visibility="private")
        eval_btn.click(run_eval, [pairs, a_strategy, a_size, a_mode, b_strategy, b_size, b_mode, session],
                       [eval_table, eval_detail, session], api_visibility="private", concurrency_id="rag_index")

        api_btn1.click(api_ingest, [api_files, session], [api_out, session], api_name="ingest",
                       concurrency_id="rag_index", concurrency_limit=2)
        api_btn2.click(api_ask, [api_question, session], [api_out, session], api_name="ask",
                       concurrency_id="rag_answer", concurrency_limit=2)
        api_btn3.click(api_configure, [api_settings, session], [api_out, session], api_name="configure")
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo)
