"""RAG chat: the Gradio UI. What it computes lives in rag_*.py (rag_pipeline's RagSession is what the
UI, the API, the tests and the bench drive)."""
from shared.bootstrap import require

require("gradio", "torch", "transformers", "sentence_transformers", "faiss", "pypdf", "scipy")

from pathlib import Path

import gradio as gr

from shared import jobs
from shared.cards import title_and_teaches
from shared.errors import api_error, ui_error
from shared.launch import launch
from shared.look import lab_header
from shared.models import REGISTRY

import rag_answer as ra
import rag_grounded as rg
import rag_pipeline as rp
import rag_views as views
from rag_chunking import DEFAULTS, STRATEGIES
from rag_documents import MAX_FILE_BYTES, MAX_FILES, SUPPORTED
from rag_eval import EXAMPLE_PAIRS, compare, parse_pairs
from rag_generators import ENDPOINT, EXTRACTIVE, GeneratorError, generator_choices, make_generator
from rag_index import MODES
from rag_pipeline import RagError, RagSession, Settings

DEFAULT_GENERATOR = REGISTRY["chat"][0].name
STRATEGY_CHOICES = [(v.split(":")[0], k) for k, v in STRATEGIES.items()]
MODE_CHOICES = [(v.split(":")[0], k) for k, v in MODES.items()]
ANSWER_MODE_CHOICES = [(v.split(":")[0], k) for k, v in rg.MODES.items()]
EMBEDDER_CHOICES = [s.name for s in REGISTRY["embeddings"]]
NO_DOCUMENTS = 'Upload documents (or press "Load sample corpus") before asking.'


def _session(session) -> RagSession:
    return session if isinstance(session, RagSession) else RagSession()


def _paths(files) -> list[str]:
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]


def _embedding_progress(progress):
    return lambda done, total: progress(done / total, desc=f"Embedding {done}/{total} chunks")


# ---------------------------------------------------------------- Chat: documents, settings, the conversation
def build_documents(session: gr.State, models: gr.Markdown):
    """The document panel of the Chat tab. Returns its index summary, its "documents changed" events (add,
    sample, clear) and the clear event."""
    files = gr.File(label="Your documents", file_count="multiple", file_types=rp.FILE_TYPES, height=150)
    with gr.Row():
        add_btn = gr.Button("Add files", variant="primary", size="sm", min_width=90)
        sample_btn = gr.Button("Load sample corpus", size="sm", min_width=150)
        clear_btn = gr.Button("Clear", size="sm", variant="stop", min_width=70)
    gr.Markdown(f"<small>{SUPPORTED}; up to {MAX_FILE_BYTES // 2**20} MB each, {MAX_FILES} per upload. Sample "
                "corpus: 16 English Wikipedia articles (Einstein, Aristotle, Apollo 11, Alchemy, Abacus, ASCII…), "
                "CC BY-SA.</small>")
    index = gr.Markdown(views.index_md(RagSession()))
    status = gr.Dataframe(headers=views.STATUS_HEADERS, label="Files", interactive=False, wrap=True, max_height=220,
                          column_widths=[150, 40, 260, 70], elem_classes=["rag-table"])

    def add(paths, sess, progress=gr.Progress()):
        sess = _session(sess)
        paths = _paths(paths)
        if not paths:
            raise ui_error(RagError("Choose one or more files first."))
        progress(0, desc=f"Reading {len(paths)} file(s)")
        result = sess.ingest(paths, progress=_embedding_progress(progress))
        bad = [r for r in result if not r["ok"]]
        if bad:
            gr.Warning(f"{len(bad)} of {len(result)} file(s) could not be used: see the Files table.")
        return {status: views.status_rows(sess.statuses), index: views.index_md(sess), models: views.model_md(sess),
                session: sess, files: None}

    def load_sample(sess, progress=gr.Progress()):
        sess = _session(sess)
        progress(0, desc="Loading the sample corpus")
        sess.load_sample(progress=_embedding_progress(progress))
        return {status: views.status_rows(sess.statuses), index: views.index_md(sess), models: views.model_md(sess),
                session: sess}

    def clear(sess):
        sess = _session(sess)
        sess.clear()
        return {status: [], index: views.index_md(sess), models: views.model_md(sess), session: sess}

    added = add_btn.click(add, [files, session], [status, index, models, session, files], api_visibility="private",
                          concurrency_id="rag_index", concurrency_limit=2)
    sampled = sample_btn.click(load_sample, session, [status, index, models, session], api_visibility="private",
                               concurrency_id="rag_index")
    cleared = clear_btn.click(clear, session, [status, index, models, session], api_visibility="private")
    return index, [added, sampled, cleared], cleared


def build_retrieval_settings():
    """Retrieval and generator controls, shared by the chat and the No-RAG comparison."""
    with gr.Accordion("Retrieval and generator", open=True):
        mode = gr.Radio(MODE_CHOICES, value="hybrid", label="Retrieval")
        with gr.Row():
            top_k = gr.Slider(1, rp.MAX_TOP_K, value=Settings.top_k, step=1, label="top-k chunks", min_width=160)
            rerank = gr.Checkbox(False, label="Re-rank (cross-encoder; needs the Hub)", min_width=160)
        generator = gr.Dropdown(generator_choices(), value=DEFAULT_GENERATOR, label="Generator")
        answer_mode = gr.Radio(ANSWER_MODE_CHOICES, value="auto", label="Answer mode")
        gr.HTML(f"<p class='rag-legend'>{views.ANSWER_MODE_HELP}</p>")
        with gr.Group(visible=False) as endpoint_box:
            url = gr.Textbox(label="Endpoint URL", placeholder="http://localhost:8000/v1 (vLLM) · "
                             "http://localhost:11434/v1 (Ollama)")
            model = gr.Textbox(label="Model name on that server", placeholder="e.g. Qwen/Qwen2.5-7B-Instruct")
            api_key = gr.Textbox(label="API key (if the server needs one)", type="password")
    generator.change(lambda g: gr.Group(visible=g == ENDPOINT), generator, endpoint_box, api_visibility="private")
    return mode, top_k, rerank, generator, url, model, api_key, answer_mode


def build_conversation(session: gr.State, models: gr.Markdown, controls, docs_cleared):
    mode, top_k, rerank, generator, url, model, api_key, answer_mode = controls
    gr.Markdown("**Chat** · answers cite their sources as [n]", elem_classes=["rag-chat-title"])
    chatbot = gr.Chatbot(show_label=False, height=380, sanitize_html=False,
                         placeholder="Load documents on the left (or the sample corpus), then ask: the answer "
                                     "appears here with numbered citations.")
    with gr.Row():
        question = gr.Textbox(placeholder="Ask about your documents…", show_label=False, scale=5, min_width=200,
                              max_length=rp.MAX_QUESTION + 1000)
        ask_btn = gr.Button("Ask", variant="primary", scale=1, min_width=70)
        stop_btn = gr.Button("Stop", scale=1, min_width=70)
    new_btn = gr.Button("New conversation", size="sm")
    search = gr.Markdown()
    gr.Markdown("**Sources** (click to expand; the supporting sentence is highlighted)")
    gr.HTML(f"<p class='rag-legend'>{views.SOURCES_LEGEND}</p>")
    sources = gr.HTML(views.NO_SOURCES)
    with gr.Accordion("Neighbours: the top-k chunks with their scores", open=False):
        neighbours = gr.Dataframe(headers=views.NEIGHBOUR_HEADERS, interactive=False, wrap=True,
                                  column_widths=[40, 130, 150, 90, 70, 70, 80, 80, 360], elem_classes=["rag-table"])
    with gr.Accordion("View the exact prompt sent to the model", open=False):
        prompt = gr.Code(label="Prompt", language="markdown", interactive=False, wrap_lines=True)

    def chat_turn(q, history, sess, mode_v, k, rerank_v, gen_name, url_v, model_v, key_v, answer_mode_v,
                  request: gr.Request):
        sess = _session(sess)
        try:
            q = rp.check_question(q)
            if not sess.docs:
                raise RagError(NO_DOCUMENTS)
        except RagError as exc:
            raise ui_error(exc) from None
        sess.apply(mode_v, k, rerank_v, gen_name or DEFAULT_GENERATOR, url_v or "", model_v or "")
        sess.settings.answer_mode = answer_mode_v if answer_mode_v in rg.MODES else "auto"
        retrieval = sess.retrieve(q)
        history = list(history or []) + [{"role": "user", "content": q}, {"role": "assistant", "content": "…"}]
        try:
            gen = make_generator(gen_name or DEFAULT_GENERATOR, url_v, model_v, key_v)
            status = gen.status
        except GeneratorError as exc:
            gen = make_generator(EXTRACTIVE)
            status = f"{exc} — answering extractively instead."
            gr.Warning(str(exc))
        text = gen.prompt_text(ra.build_messages(q, rg.withhold_instructions(retrieval.hits)))
        if retrieval.weak:
            text = "(not sent: retrieval was too weak, so the lab answers that it could not find this)\n\n" + text
        yield {chatbot: history, session: sess, search: views.search_md(retrieval, sess.settings.threshold),
               sources: views.sources_html(retrieval), neighbours: views.neighbour_rows(retrieval), prompt: text,
               models: views.model_md(sess, status), question: ""}
        job = sess.start_answer(retrieval, gen, owner=getattr(request, "session_hash", "") or "")
        try:
            shown = None
            while not job.wait(0.15):
                waiting = job.state == jobs.QUEUED
                partial = f"… {jobs.poll(job.id)['message']}" if waiting else (job.result or "…")
                if partial != shown:
                    shown = partial
                    history[-1] = {"role": "assistant", "content": partial}
                    yield {chatbot: history}
        finally:
            jobs.stop(job.id)  # the page was closed or the event cancelled: the model stops too
        done = sess.finish(retrieval, job.result or "", getattr(job, "grounded", None))
        shown = views.answer_md(done, q, retrieval.hits)
        if job.state == jobs.STOPPED:
            shown += "\n\n<small>(stopped: this is the part written before Stop)</small>"
        elif job.state == jobs.ERROR:
            shown += f"\n\n*{job.error}*"
        history[-1] = {"role": "assistant", "content": shown}
        grounded = getattr(job, "grounded", None)
        used = text
        if grounded is not None and grounded.prompt:
            used = gen.prompt_text(grounded.prompt)
        elif grounded is not None and grounded.mode != "free":
            used = f"(no prompt: the model was not asked. {grounded.why})"
        yield {chatbot: history, session: sess, prompt: used,
               sources: views.sources_html(retrieval, done["answer"], done.get("support"))}

    outputs = [chatbot, session, search, sources, neighbours, prompt, models, question]
    inputs = [question, chatbot, session, mode, top_k, rerank, generator, url, model, api_key, answer_mode]
    gr.on([ask_btn.click, question.submit], chat_turn, inputs, outputs, api_visibility="private",
          concurrency_id="rag_answer", concurrency_limit=4)

    def stop(request: gr.Request):
        for job in jobs.find("rag-answer", getattr(request, "session_hash", "") or ""):
            jobs.stop(job.id)

    stop_btn.click(stop, None, None, api_visibility="private", queue=False)

    def new_conversation(sess):
        sess = _session(sess)
        sess.history = []
        return {chatbot: [], search: "", sources: views.NO_SOURCES, neighbours: [], prompt: "", session: sess}

    cleared = [chatbot, search, sources, neighbours, prompt, session]
    new_btn.click(new_conversation, session, cleared, api_visibility="private")
    docs_cleared.success(new_conversation, session, cleared, api_visibility="private")  # their sources are gone


def build_chat_tab(session: gr.State, models: gr.Markdown):
    with gr.Tab("Chat", id="chat"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                index, docs_changed, docs_cleared = build_documents(session, models)
                controls = build_retrieval_settings()
            with gr.Column(scale=3, min_width=300):
                build_conversation(session, models, controls, docs_cleared)
    return index, docs_changed, controls


# ---------------------------------------------------------------- Chunks
def build_chunks_tab(session: gr.State, models: gr.Markdown, chat_index: gr.Markdown, docs_changed):
    with gr.Tab("Chunks", id="chunks"):
        gr.Markdown("Change how documents are cut and embedded, then re-index. A chunk's *context* (document title "
                    "and section heading) is put in front of its text for embedding and keyword search.")
        with gr.Row():
            strategy = gr.Radio(STRATEGY_CHOICES, value=DEFAULTS["strategy"], label="Chunking")
            embedder = gr.Dropdown(EMBEDDER_CHOICES, value=EMBEDDER_CHOICES[0], label="Embedder")
        with gr.Row():
            size = gr.Slider(100, 2000, value=DEFAULTS["size"], step=50, label="Chunk size (characters)", min_width=200)
            overlap = gr.Slider(0, 500, value=DEFAULTS["overlap"], step=10, label="Overlap (characters)", min_width=200)
            context = gr.Checkbox(DEFAULTS["context"], label="Prepend title/heading context")
        rechunk_btn = gr.Button("Re-chunk and re-index", variant="primary")
        index = gr.Markdown(views.index_md(RagSession()))
        table = gr.Dataframe(headers=views.CHUNK_HEADERS, label=f"Chunks (first {rp.CHUNK_TABLE_ROWS})",
                             interactive=False, wrap=True, max_height=520, column_widths=[50, 130, 170, 60, 480],
                             elem_classes=["rag-table"])

    def rechunk(strategy_v, size_v, overlap_v, context_v, embedder_v, sess, progress=gr.Progress()):
        sess = _session(sess)
        s = sess.settings
        s.strategy, s.size, s.overlap, s.context = strategy_v, int(size_v), int(overlap_v), bool(context_v)
        s.embedder = "" if embedder_v == EMBEDDER_CHOICES[0] else embedder_v
        if sess.docs:
            progress(0, desc="Re-chunking and re-indexing")
            sess.rebuild(progress=_embedding_progress(progress))
            if s.embedder and sess.index_info.get("embedder") != embedder_v:
                gr.Warning(f"Using {sess.index_info['embedder']}: {sess.index_info['embedder_reason']}")
        summary = views.index_md(sess)
        return {index: summary, chat_index: summary, table: views.chunk_rows(sess, rp.CHUNK_TABLE_ROWS),
                models: views.model_md(sess), session: sess}

    rechunk_btn.click(rechunk, [strategy, size, overlap, context, embedder, session],
                      [index, chat_index, table, models, session], api_visibility="private", concurrency_id="rag_index")

    def follow(sess):  # documents added or cleared in the Chat tab
        sess = _session(sess)
        return {index: views.index_md(sess), table: views.chunk_rows(sess, rp.CHUNK_TABLE_ROWS)}

    for event in docs_changed:
        event.success(follow, session, [index, table], api_visibility="private")


# ---------------------------------------------------------------- No-RAG vs RAG
def build_compare_tab(session: gr.State, controls):
    mode, top_k, _, generator, url, model, api_key, _ = controls
    with gr.Tab("No-RAG vs RAG", id="compare"):
        gr.Markdown("The same model and question, without and with the retrieved sources. Without them the model "
                    "can only guess from what it memorised.")
        with gr.Row():
            question = gr.Textbox(label="Question", scale=5, min_width=200, max_length=rp.MAX_QUESTION + 1000)
            go = gr.Button("Compare", variant="primary", scale=1, min_width=100)
        with gr.Row():
            no_rag = gr.Markdown("*The answer without retrieval appears here.*", label="Without retrieval",
                                 container=True, min_width=280)
            with_rag = gr.Markdown("*The answer with the retrieved sources appears here.*",
                                   label="With retrieval (RAG)", container=True, min_width=280)

    def run(q, sess, mode_v, k, gen_name, url_v, model_v, key_v):
        sess = _session(sess)
        try:
            q = rp.check_question(q)
            if not sess.docs:
                raise RagError(NO_DOCUMENTS)
            gen = make_generator(gen_name or DEFAULT_GENERATOR, url_v, model_v, key_v)
        except (RagError, GeneratorError) as exc:
            raise ui_error(exc) from None
        sess.apply(mode_v, k, False, gen_name or DEFAULT_GENERATOR, url_v or "", model_v or "")
        retrieval = sess.retrieve(q, rewrite=False)
        plain = ""
        if getattr(gen, "kind", "") == "extractive":
            plain = "*(The extractive mode has no model to ask without documents: pick a language model.)*"
        else:
            for plain in _grow(gen.stream(ra.build_plain_messages(q))):
                yield {no_rag: plain, with_rag: "…", session: sess}
        rag = ""
        for rag in sess.answer_stream(retrieval, gen):
            yield {no_rag: plain, with_rag: rag, session: sess}
        yield {no_rag: plain, with_rag: views.compared_answer_md(rag, retrieval.hits), session: sess}

    go.click(run, [question, session, mode, top_k, generator, url, model, api_key], [no_rag, with_rag, session],
             api_visibility="private", concurrency_id="rag_answer")


# ---------------------------------------------------------------- Answer modes side by side
SIDE_MODES = ["free", "short", "grounded", "extractive"]


def build_modes_tab(session: gr.State, controls):
    mode, top_k, _, generator, url, model, api_key, _ = controls
    with gr.Tab("Answer modes side by side", id="modes"):
        gr.Markdown("The same question and the same retrieved sources, answered in each **answer mode**. With the "
                    "embedded 135M model, free-form writing reads well and often states a fact the sources do not "
                    "have; the grounded modes keep it to the sources. *Grounded decoding* is the **decoding "
                    "explorer**'s machinery applied to RAG: a logits processor sets every token that would not copy "
                    "the sources to −∞ before the model picks one. Each answer says which mode answered and why; the "
                    "supporting sentence is highlighted in the sources below, its key span in bold.")
        with gr.Row():
            question = gr.Textbox(label="Question", scale=5, min_width=200, max_length=rp.MAX_QUESTION + 1000,
                                  placeholder="One question, answered in each mode…")
            go = gr.Button("Answer in each mode", variant="primary", scale=1, min_width=120)
        chosen = gr.CheckboxGroup([(views.MODE_NAMES[m], m) for m in SIDE_MODES], value=["free", "grounded", "extractive"],
                                  label="Modes to compare (each model answer takes seconds on a CPU)")
        with gr.Row():
            cols = {m: gr.Markdown(f"*The {views.MODE_NAMES[m]} answer appears here.*", label=views.MODE_NAMES[m],
                                   container=True, min_width=220, elem_id=f"rag-side-{m}") for m in SIDE_MODES}
        sources = gr.HTML(views.NO_SOURCES)

    def run(q, chosen_v, sess, mode_v, k, gen_name, url_v, model_v, key_v):
        from rag_index import get_embedder

        sess = _session(sess)
        try:
            q = rp.check_question(q)
            if not sess.docs:
                raise RagError(NO_DOCUMENTS)
            if not chosen_v:
                raise RagError("Tick at least one answer mode.")
            gen = make_generator(gen_name or DEFAULT_GENERATOR, url_v, model_v, key_v)
        except (RagError, GeneratorError) as exc:
            raise ui_error(exc) from None
        sess.apply(mode_v, k, False, gen_name or DEFAULT_GENERATOR, url_v or "", model_v or "")
        retrieval = sess.retrieve(q, rewrite=False)
        embedder = get_embedder(sess.settings.embedder or None) if retrieval.hits else None
        shown = {cols[m]: ("*(not chosen)*" if m not in chosen_v else "*waiting…*") for m in SIDE_MODES}
        yield {**shown, sources: views.sources_html(retrieval), session: sess}
        support = []
        for m in [m for m in SIDE_MODES if m in chosen_v]:
            shown[cols[m]] = "*answering…*"
            yield shown
            answer = rg.answer(q, retrieval.hits, m, gen, embedder, retrieval.weak)
            shown[cols[m]] = views.answer_md(views.done_of(answer), q, retrieval.hits)
            support += [s for s in answer.support if s["source"] not in {x["source"] for x in support}]
            yield {**shown, sources: views.sources_html(retrieval, "", support)}

    go.click(run, [question, chosen, session, mode, top_k, generator, url, model, api_key],
             [*cols.values(), sources, session], api_visibility="private", concurrency_id="rag_answer")


def _grow(pieces):
    text = ""
    for piece in pieces:
        text += piece
        yield text


# ---------------------------------------------------------------- Evaluate retrieval
def build_eval_tab(session: gr.State):
    with gr.Tab("Evaluate retrieval", id="eval"):
        gr.Markdown("Question → expected source pairs, one per line: `question | file name or a passage of the "
                    "answer`. A question *hits* at k when a top-k chunk is that file or contains that passage. "
                    "MRR = mean of 1/rank of the first hit.")
        with gr.Row():
            pairs = gr.Textbox(EXAMPLE_PAIRS, lines=8, label="Pairs", scale=3, min_width=260)
            pairs_file = gr.File(label="…or upload .txt/.csv/.json", file_types=rp.PAIR_FILE_TYPES, scale=1,
                                 min_width=160)
        with gr.Row():
            with gr.Column(min_width=260):
                gr.Markdown("**Setting A**")
                a_strategy = gr.Radio(STRATEGY_CHOICES, value="fixed", label="Chunking")
                a_size = gr.Slider(100, 2000, value=1000, step=50, label="Size")
                a_mode = gr.Radio(MODE_CHOICES, value="dense", label="Retrieval")
            with gr.Column(min_width=260):
                gr.Markdown("**Setting B**")
                b_strategy = gr.Radio(STRATEGY_CHOICES, value=DEFAULTS["strategy"], label="Chunking")
                b_size = gr.Slider(100, 2000, value=DEFAULTS["size"], step=50, label="Size")
                b_mode = gr.Radio(MODE_CHOICES, value="hybrid", label="Retrieval")
        go = gr.Button("Evaluate both", variant="primary")
        note = gr.Markdown("*Load documents in the Chat tab, then press **Evaluate both**: the scores of A and B "
                           "appear here.*")
        with gr.Row():
            table = gr.Dataframe(headers=views.EVAL_HEADERS, interactive=False, scale=1, min_width=260,
                                 label="Scores: hit@k = share of questions with the expected source in the top k",
                                 column_widths=[90, 80, 80], elem_classes=["rag-table"])
            detail = gr.Dataframe(headers=views.EVAL_DETAIL_HEADERS, interactive=False, wrap=True, scale=2,
                                  min_width=300, label="Per question: rank of the first chunk that hits (miss: none "
                                                       "in the top 5)",
                                  column_widths=[260, 220, 80, 80], elem_classes=["rag-table"])

    def read_pairs(path):
        if not path:
            return gr.skip()
        try:
            return Path(_paths([path])[0]).read_text(encoding="utf-8", errors="replace")[:rp.MAX_PAIRS_FILE_CHARS]
        except OSError as exc:
            raise ui_error(RagError(f"Could not read that file: {exc.strerror or exc}")) from None

    pairs_file.change(read_pairs, pairs_file, pairs, api_visibility="private")

    def evaluate(text, a_s, a_n, a_m, b_s, b_n, b_m, sess, progress=gr.Progress()):
        sess = _session(sess)
        found, problems = parse_pairs(text)
        for p in problems[:3]:
            gr.Warning(p)
        if not sess.docs:
            raise ui_error(RagError('Load documents first (Chat tab: "Add files" or "Load sample corpus").'))
        if not found:
            raise ui_error(RagError("Give at least one line 'question | expected file or passage'."))
        found = found[:rp.MAX_EVAL_PAIRS]
        base = sess.settings.__dict__
        sa = Settings(**{**base, "strategy": a_s, "size": int(a_n), "mode": a_m, "rerank": False})
        sb = Settings(**{**base, "strategy": b_s, "size": int(b_n), "mode": b_m, "rerank": False})
        progress(0.1, desc="Indexing and scoring both settings")
        scores, per_question = views.eval_tables(compare(sess, found, sa, sb), found)
        return {table: scores, detail: per_question, session: sess,
                note: f"{len(found)} question(s) on {len(sess.docs)} document(s)."}

    go.click(evaluate, [pairs, a_strategy, a_size, a_mode, b_strategy, b_size, b_mode, session],
             [table, detail, session, note], api_visibility="private", concurrency_id="rag_index")


# ---------------------------------------------------------------- the API (the same session state as the UI)
def api_ingest(files, session):
    """files: list of files -> {"files": [per-file status], "documents": n, "chunks": n}."""
    session = _session(session)
    paths = _paths(files)
    if not paths:
        return {"error": "no files given", "files": []}, session
    try:
        result = session.ingest(paths)
    except Exception as exc:  # noqa: BLE001  one line for the caller; the server keeps serving
        return api_error(exc, "Ingesting"), session
    return {"files": result, "documents": len(session.docs), "chunks": len(session.chunks)}, session


def api_ask(question, session, request: gr.Request):
    """question -> {"answer", "sources": [{"source", "text", "score"}...] best first, "cited", ...}."""
    session = _session(session)
    try:
        question = rp.check_question(question)
        if not session.docs:
            raise RagError("no documents in this session: call /ingest first")
        s = session.settings
        generator = make_generator(s.generator or DEFAULT_GENERATOR, s.endpoint_url, s.endpoint_model)
        return session.ask(question, generator, owner=getattr(request, "session_hash", "") or ""), session
    except Exception as exc:  # noqa: BLE001
        return {**api_error(exc, "Answering"), "answer": "", "sources": []}, session


def api_configure(settings, session):
    """settings (JSON object): any of strategy, size, overlap, context, mode, top_k, rerank, generator,
    endpoint_url, endpoint_model, embedder. Returns the session's settings."""
    session = _session(session)
    try:
        return session.configure(settings), session
    except Exception as exc:  # noqa: BLE001
        return api_error(exc, "Configuring"), session


def build_api(session: gr.State):
    with gr.Row(visible=False):
        files = gr.File(file_count="multiple")
        question = gr.Textbox()
        settings = gr.Textbox()
        out = gr.JSON()
        ingest_btn, ask_btn, configure_btn = gr.Button(), gr.Button(), gr.Button()
    ingest_btn.click(api_ingest, [files, session], [out, session], api_name="ingest", concurrency_id="rag_index",
                     concurrency_limit=2)
    ask_btn.click(api_ask, [question, session], [out, session], api_name="ask", concurrency_id="rag_answer",
                  concurrency_limit=4)
    configure_btn.click(api_configure, [settings, session], [out, session], api_name="configure")


# ---------------------------------------------------------------- the page
def build_demo() -> gr.Blocks:
    with gr.Blocks(title=title_and_teaches(__file__)[0]) as demo:
        gr.HTML(f"<style>{views.CSS}</style>")
        lab_header(__file__)
        session = gr.State(None, time_to_live=rp.SESSION_TTL_S)
        models = gr.Markdown(views.model_md(RagSession()), elem_classes="model-status")
        with gr.Tabs(overflow_behavior="wrap"):
            index, docs_changed, controls = build_chat_tab(session, models)
            build_chunks_tab(session, models, index, docs_changed)
            build_modes_tab(session, controls)
            build_compare_tab(session, controls)
            build_eval_tab(session)
        build_api(session)
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo)
