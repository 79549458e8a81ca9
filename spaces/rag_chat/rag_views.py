"""Views of the RAG chat lab (no gradio here): the index summary, the model line, the sources with their
supporting sentences, the tables (files, chunks, neighbours, evaluation), cited answers with working
links, and the lab's CSS."""
import html
import re

import rag_answer as ra
import rag_grounded as rg

CSS = """
.rag-src {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .35rem .6rem; margin: .3rem 0;
          background: var(--background-fill-secondary)}
.rag-src summary {cursor: pointer; font-size: .9rem}
.rag-src-text {white-space: pre-wrap; font-size: .88rem; margin-top: .35rem; max-height: 16rem; overflow-y: auto}
.rag-src mark {background: #fde68a; color: #111; padding: 0 .1rem; border-radius: 3px}
.rag-cited {background: var(--color-accent); color: white; border-radius: 6px; padding: 0 .35rem; font-size: .75rem}
.rag-evidence {background: var(--neutral-500, #64748b); color: white; border-radius: 6px; padding: 0 .35rem;
               font-size: .75rem}
.rag-why, .rag-legend {font-size: .8rem; color: var(--body-text-color-subdued)}
.rag-empty {color: var(--body-text-color-subdued); font-size: .9rem}
.rag-chat-title {margin: 0 0 .25rem; font-weight: 600}
a.rag-cite {font-weight: 600; text-decoration: none}
.rag-src mark b.rag-key, .rag-key-inline {background: #f59e0b; color: #111; border-radius: 3px; padding: 0 .15rem}
.rag-mode {font-size: .8rem; color: var(--body-text-color-subdued); border-left: 3px solid var(--color-accent);
           padding-left: .45rem; margin-top: .35rem}
.rag-mode b {color: var(--body-text-color)}
.rag-table table {table-layout: fixed}
"""

EMBEDDER_WHY = ("all-MiniLM-L6-v2 is embedded (installed from PyPI), so retrieval works offline; it reads at most "
                "256 tokens per chunk, and chunks longer than that are split, never cut. bge-small/bge-base are used "
                "when you pick them and the Hub (or your local cache) has them.")
SOURCES_LEGEND = ("<b>rank score</b>: what put the chunks in this order (cosine for dense, BM25 for keyword, "
                  "0.7·z(cosine) + 0.3·z(BM25) for hybrid, where z is how many standard deviations above the "
                  "collection's average; the cross-encoder's score when re-ranking); it is not a probability. "
                  "<b>cosine</b>: how close question and chunk are in meaning (-1 to 1); below "
                  f"{ra.WEAK_COSINE} for every chunk the lab answers that it could not find this. "
                  "<b>cited</b>: the model cited this source and it holds the words of that sentence. "
                  "<b>evidence</b>: not cited, but it holds the sentence closest to the answer (highlighted).")
NO_SOURCES = "<p class='rag-empty'>Ask a question: the chunks it retrieves appear here, best first, with their scores.</p>"

STATUS_HEADERS = ["file", "ok", "message", "chunks"]
CHUNK_HEADERS = ["id", "file", "where", "chars", "embedded as (context + text)"]
NEIGHBOUR_HEADERS = ["#", "file", "where", "rank score", "cosine", "BM25", "dense rank", "BM25 rank", "text"]
EVAL_HEADERS = ["metric", "A", "B"]
EVAL_DETAIL_HEADERS = ["question", "expected", "rank A", "rank B"]


def status_rows(statuses) -> list[list]:
    return [[s["file"], "✓" if s["ok"] else "✗", s["message"], s.get("chunks", "")] for s in statuses]


def index_md(session) -> str:
    """What is indexed, how it was cut, and where the vectors came from (embedded now, or found ready)."""
    info = session.index_info
    if not session.docs:
        return "*No documents yet: upload files or load the sample corpus. Their chunks and scores appear here.*"
    split = info.get("split_to_fit", 0)
    n_docs = info.get("documents", 0)
    now, shipped, cached = info.get("embedded_now", 0), info.get("from_shipped", 0), info.get("from_session", 0)
    found = []
    if shipped:
        found.append(f"{shipped} from the sample corpus's shipped vectors")
    if cached:
        found.append(f"{cached} from this session's earlier embeddings")
    ready = f" ({'; '.join(found)}: nothing to compute)" if found else ""
    s = session.settings
    return (f"**{n_docs} document{'' if n_docs == 1 else 's'} → {info.get('chunks', 0)} chunks** · "
            f"{s.strategy}, {s.size} chars, overlap {s.overlap}{', title/heading context' if s.context else ''} · "
            f"embedder **{info.get('embedder', '?')}** (max {info.get('max_tokens', '?')} tokens; {split} chunk(s) split "
            f"to fit, none cut) · {now} chunk(s) embedded now{ready}; indexing took {info.get('seconds', 0)} s")


def chunk_rows(session, limit: int) -> list[list]:
    return [[c.id, c.doc, c.where, len(c.text), c.embed_text] for c in session.chunks[:limit]]


def model_md(session, generator_status: str = "") -> str:
    info = session.index_info
    emb = (f"**Embedder:** {info['embedder']} · {info['embedder_reason']} · max {info['max_tokens']} tokens"
           if info else "**Embedder:** all-MiniLM-L6-v2 (embedded; loads on first use)")
    gen = generator_status or ("**Generator:** SmolLM2-135M-Instruct (embedded; loads on first question) — a *very "
                               "small* model: fluent for a sentence or two, often wrong. Trust the cited sources, not it.")
    if generator_status and not generator_status.startswith("**Generator"):
        gen = "**Generator:** " + generator_status
    return f"{emb}  \n{gen}  \n<span class='rag-why'>{EMBEDDER_WHY}</span>"


def search_md(retrieval, threshold: float) -> str:
    """The search query (after rewriting a follow-up), what was found and how fast."""
    best = max([h.dense for h in retrieval.hits] or [0])
    weak = f" · retrieval weak (best cosine {best:.2f} < {threshold:.2f})" if retrieval.weak else ""
    rerank = f" · {retrieval.rerank_note}" if retrieval.rerank_note else ""
    return (f"**Search query:** {html.escape(retrieval.query)}  \n<small>{retrieval.rewrite_note} · "
            f"{len(retrieval.hits)} chunks in {retrieval.seconds * 1000:.0f} ms{rerank}{weak}</small>")


def sources_html(retrieval, answer: str = "", support: list[dict] | None = None) -> str:
    """The retrieved chunks, best first; a source is marked "cited" only when the (checked) answer cites it.
    `support` (an answer mode's supporting sentences, rag_grounded) highlights that sentence and its key span."""
    if retrieval is None:
        return NO_SOURCES
    if not retrieval.hits:
        return "<p class='rag-empty'>No chunks retrieved.</p>"
    if support:
        return _supported_sources_html(retrieval, answer, support)
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
        badge = ""
        if n in by_model:
            badge = " <span class='rag-cited'>cited</span>"
        elif n in cited:
            badge = " <span class='rag-evidence'>evidence</span>"
        opened = " open" if (n in cited or (not cited and n == 1)) else ""
        parts.append(
            f"<details class='rag-src' id='rag-src-{n}'{opened}><summary><b>[{n}]</b> {html.escape(c.doc)} · "
            f"{html.escape(c.where)} · rank score {h.score:.2f} · cosine {h.dense:.2f}{badge}</summary>"
            f"<div class='rag-src-text'>{ra.highlight(c.text, span)}</div></details>")
    return "".join(parts)


def _supported_sources_html(retrieval, answer: str, support: list[dict]) -> str:
    by_source = {s["source"]: s for s in support}
    cited = set(ra.parse_citations(answer, len(retrieval.hits)))
    parts = []
    for n, h in enumerate(retrieval.hits, 1):
        c = h.chunk
        sup = by_source.get(n)
        body = rg.highlight_support(c.text, sup) if sup else ra.highlight(c.text, None)
        badge = (" <span class='rag-cited'>cited</span>" if n in cited else
                 " <span class='rag-evidence'>evidence</span>" if sup else "")
        opened = " open" if (sup or (not by_source and n == 1)) else ""
        parts.append(
            f"<details class='rag-src' id='rag-src-{n}'{opened}><summary><b>[{n}]</b> {html.escape(c.doc)} · "
            f"{html.escape(c.where)} · rank score {h.score:.2f} · cosine {h.dense:.2f}{badge}</summary>"
            f"<div class='rag-src-text'>{body}</div></details>")
    return "".join(parts)


MODE_NAMES = {"extractive": "extractive", "grounded": "grounded decoding", "short": "short prompt",
              "free": "free-form"}
ANSWER_MODE_HELP = (
    "<b>Extractive</b>: the lab picks the answering sentence of the top sources (MiniLM similarity, the question's "
    "words and its type: number, date, duration, name, condition), quotes it and marks its key span; no model "
    "writes. <b>Grounded decoding</b>: a logits processor (the same machinery as the <i>decoding explorer</i> "
    "lab's) masks every token that would not copy one of the best sentences, so the model chooses what to quote "
    "and where to stop but cannot invent. <b>Short prompt</b>: one short source, quote first; the model writes "
    "freely. <b>Free-form</b>: all sources, the model writes freely: right for a real model, while the 135M model "
    "invents facts. <b>Auto</b>: extractive for the embedded SmolLM2, free-form for a Hub model or an endpoint.")


def done_of(answer) -> dict:
    """A rag_grounded.GroundedAnswer as the dict answer_md() shows."""
    return {"answer": answer.text, "mode": answer.mode, "why": answer.why, "support": answer.support,
            "notes": answer.notes, "seconds": answer.seconds}


def mode_line(done: dict) -> str:
    """Which answer mode answered, and why (the lesson of the modes, under every answer)."""
    mode = done.get("mode") or "free"
    why = done.get("why") or "the model read the retrieved sources and wrote freely; its citations were checked"
    secs = f" · {done['seconds']:.1f} s" if done.get("seconds") else ""
    return (f"<div class='rag-mode'>Answered in <b>{MODE_NAMES.get(mode, mode)}</b> mode{secs}: "
            f"{html.escape(why)}</div>")


def _bold_key(sentence: str, key: str) -> str:
    if key and key in sentence:
        i = sentence.index(key)
        return (html.escape(sentence[:i]) + f"<b class='rag-key-inline'>{html.escape(key)}</b>"
                + html.escape(sentence[i + len(key):]))
    return html.escape(sentence)


def _mode_answer(done: dict) -> str:
    """An answer made in a mode: a quote of the supporting sentence is shown with its key span in bold (and
    the key span first); any other answer is followed by the supporting sentence, key span in bold."""
    answer, support = done["answer"], done.get("support", [])[:2]
    if not support:
        return html.escape(answer)
    first = support[0]
    sentence, key = first["sentence"], first.get("key_text") or ""
    quoted = f"“{sentence}” [{first['source']}]"
    if answer.strip() == quoted:
        lead = f"<b class='rag-key-inline'>{html.escape(key)}</b> · " if key and key != sentence else ""
        return f"{lead}“{_bold_key(sentence, key)}” [{first['source']}]"
    lines = " ".join(f"“{_bold_key(s['sentence'], s.get('key_text') or '')}” [{s['source']}]" for s in support)
    return f"{html.escape(answer)}\n\n**Supporting sentence:** {lines}"


def neighbour_rows(retrieval) -> list[list]:
    if retrieval is None:
        return []
    return [[h.rank, h.chunk.doc, h.chunk.where, round(h.score, 4), round(h.dense, 3), round(h.bm25, 2),
             "" if h.dense_rank is None else h.dense_rank + 1, "" if h.bm25_rank is None else h.bm25_rank + 1,
             h.chunk.text[:300]] for h in retrieval.hits]


def link_citations(answer: str, n: int) -> str:
    """[n] as links to the n-th source; a number that matches no source is never a link."""
    def link(m):
        nums = re.split(r"\s*[,;]\s*", m.group(1))
        return "".join(f"<a href='#rag-src-{x}' class='rag-cite'>[{x}]</a>" for x in nums
                       if x.isdigit() and 1 <= int(x) <= n)

    return re.sub(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]", link, answer)


def answer_md(done: dict, question: str, hits) -> str:
    """The checked answer, its supporting sentence (key span in bold) or evidence line, a note for each
    citation the lab removed, and which answer mode answered and why."""
    if done.get("support") or done.get("mode", "free") != "free" or done.get("why"):
        shown = _mode_answer(done)
    else:
        shown = ra.with_evidence(done["answer"], question, hits)
    notes = "".join(f"\n\n<small>⚠ {html.escape(line)}</small>" for line in done["notes"])
    return link_citations(shown, len(hits)) + notes + "\n\n" + mode_line(done)


def compared_answer_md(answer: str, hits) -> str:
    """The RAG side of No-RAG vs RAG: the checked answer, the removed citations, the sources' names."""
    checked = ra.check_citations(answer, hits)
    notes = "".join(f"\n\n<small>⚠ {html.escape(line)}</small>" for line in ra.citation_notes(checked))
    names = "<br>".join(f"[{n}] {html.escape(h.chunk.doc)} · {html.escape(h.chunk.where)}" for n, h in enumerate(hits, 1))
    return link_citations(checked["text"], len(hits)) + notes + f"\n\n<small>{names}</small>"


def eval_tables(res: dict, pairs) -> tuple[list[list], list[list]]:
    metrics = list(res["A"]["metrics"].keys())
    table = [[m, round(res["A"]["metrics"][m], 3), round(res["B"]["metrics"][m], 3)] for m in metrics]
    table.append(["chunks", res["A"]["chunks"], res["B"]["chunks"]])
    per_q = [[q, exp[:80], res["A"]["ranks"][i] or "miss", res["B"]["ranks"][i] or "miss"]
             for i, (q, exp) in enumerate(pairs)]
    return table, per_q
