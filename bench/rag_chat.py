"""RAG chat lab benchmark: retrieval quality, indexing throughput and retrieval latency, each
next to the tutorial baseline (fixed 1000-character chunks with 200 overlap, all-MiniLM-L6-v2,
FAISS flat inner product, top-k) measured in the same run.

Quality uses bench/data/rag_eval/: four real documents nobody on this team wrote (the Apache-2.0
licence, the tqdm and python-dotenv READMEs as shipped on PyPI, 40 stories of the Lee news
corpus from the gensim wheel) and 52 questions written for them in our own words, each marked
with the passage that answers it. A question hits at k when a top-k chunk contains that passage.

    python bench/rag_chat.py                         # all sections, prints markdown tables
    python bench/rag_chat.py calibration latency     # only some: quality wiki calibration throughput latency
    python bench/rag_chat.py citations               # the embedded SmolLM2's citations, checked (minutes)
    python bench/rag_chat.py answers                 # answer accuracy per answer mode (an hour on a busy CPU)
    python bench/rag_chat.py answers tuning          # one set only (tuning or blind); --details FILE saves
                                                     # the tuning set's answers (never the blind set's)

`wiki` is a second quality set: 60 questions (bench/data/rag_eval_wiki/) over the shipped
Wikipedia sample corpus (assets/rag_corpus/, 16 articles), so settings are not tuned to one set.
"""
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "rag_chat"))  # the lab's own modules (shared is installed)
import shared.bootstrap  # noqa: E402,F401

from rag_chunking import Chunk  # noqa: E402
from rag_eval import evaluate_session, first_hit_rank, is_hit, score  # noqa: E402
from rag_index import RagIndex, get_embedder  # noqa: E402
from rag_pipeline import RagSession, Settings  # noqa: E402

DATA = ROOT / "bench" / "data" / "rag_eval"
WIKI = ROOT / "bench" / "data" / "rag_eval_wiki"
OFF_TOPIC = [
    "What is the best recipe for sourdough pizza?", "Who won the 2018 FIFA World Cup?",
    "How many moons does Neptune have?", "What is the capital of Mongolia?",
    "How do I change a flat bicycle tyre?", "Which vitamins are in spinach?",
    "What is the plot of Hamlet?", "How tall is Mount Kilimanjaro?",
    "What does a mitochondrion do?", "How do I knit a scarf?",
    "Who painted the Mona Lisa?", "What is the exchange rate of the yen?",
]


def quality(pairs, files):
    rows, sessions = [], {}
    configs = [
        ("baseline: fixed 1000/200, dense (FAISS flat IP)", Settings(strategy="fixed", size=1000, overlap=200,
                                                                       context=False, mode="dense")),
        ("**lab default: recursive 1000/200 + title/heading context, hybrid (0.7 dense + 0.3 BM25, z-scores)**",
         Settings()),
        ("lab chunks, dense only", Settings(mode="dense")),
        ("lab chunks, BM25 only", Settings(mode="bm25")),
        ("sentence 1000/200 + context, hybrid", Settings(strategy="sentence")),
        ("recursive 600/120 + context, hybrid (the previous default)", Settings(size=600, overlap=120)),
        ("fixed 1000/200, hybrid", Settings(strategy="fixed", size=1000, overlap=200, context=False)),
        ("lab chunks, hybrid by reciprocal-rank fusion (the previous default)", "rrf"),
        ("lab default, all questions asked in turn in one session (as through /ask)", "conversation"),
    ]
    cache = {}
    for label, settings in configs:
        if settings in ("rrf", "conversation"):
            s = sessions[configs[1][0]]
            ranks = rrf_ranks(s, pairs) if settings == "rrf" else conversation_ranks(s, pairs)
            rows.append((label, len(s.chunks), score(ranks)))
            continue
        s = RagSession(settings)
        s._vectors = cache
        s.ingest(files)
        metrics, _ = evaluate_session(s, pairs)
        rows.append((label, len(s.chunks), metrics))
        sessions[label] = s
    return rows, sessions


def conversation_ranks(session, pairs):
    """The questions asked one after another in ONE session, as a client of /ask would: each goes
    through the follow-up check (and rewrite) and is remembered. Rank of the first hit per question."""
    ranks = []
    for question, expected in pairs:
        retrieval = session.retrieve(question)
        ranks.append(first_hit_rank(retrieval.hits, expected))
        session.remember(retrieval, "(answer)")
    session.history.clear()
    return ranks


def rrf_ranks(session, pairs, k=5, depth=50, rrf_k=60):
    """The hybrid we used before: dense and BM25 top-50 lists fused by reciprocal rank
    (1/(60 + rank), Cormack et al. 2009), on the same index. Rank of the first hit per question."""
    index, embedder = session.index, get_embedder()
    ranks = []
    for q, expected in pairs:
        d_ids, _ = index.dense_search(embedder.encode_query(q), depth)
        bm = index.bm25.scores(q)
        b_ids = [i for i in np.argsort(-bm, kind="stable")[:depth] if bm[i] > 0]
        fused = {}
        for ids in (d_ids, b_ids):
            for r, i in enumerate(ids):
                fused[int(i)] = fused.get(int(i), 0.0) + 1.0 / (rrf_k + r + 1)
        top = sorted(fused, key=lambda i: -fused[i])[:k]
        ranks.append(next((r for r, i in enumerate(top, 1) if is_hit(index.chunks[i], expected)), None))
    return ranks


def calibration(session, pairs):
    answerable = [max(h.dense for h in session.retrieve(q, rewrite=False).hits) for q, _ in pairs]
    off = [max(h.dense for h in session.retrieve(q, rewrite=False).hits) for q in OFF_TOPIC]
    return answerable, off


def throughput(files):
    """The lab's whole index build (chunk, fit to 256 tokens, embed, FAISS + BM25) vs a plain
    sentence-transformers encode of the same chunk texts. Best of 2 runs each, interleaved."""
    embedder = get_embedder()
    lab_times, plain_times, n = [], [], 0
    texts = None
    for _ in range(2):
        s = RagSession()
        s._vectors = {}
        t = time.perf_counter()
        s.ingest(files)
        lab_times.append(time.perf_counter() - t)
        texts = [c.embed_text for c in s.chunks]
        n = len(texts)
        t = time.perf_counter()
        embedder.model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                              show_progress_bar=False)
        plain_times.append(time.perf_counter() - t)
    return n, min(lab_times), min(plain_times)


def latency(n=100_000, dim=384, queries=60):
    """Retrieval at 100k chunks: synthetic unit vectors + synthetic Zipf-distributed text."""
    import faiss

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vocab = [f"w{i}" for i in range(30_000)]
    ranks = np.minimum(rng.zipf(1.2, size=(n, 60)), len(vocab)) - 1
    chunks = [Chunk("synthetic.txt", " ".join(vocab[j] for j in row), 0, 0, id=i) for i, row in enumerate(ranks)]
    t = time.perf_counter()
    index = RagIndex(chunks, vecs)
    build = time.perf_counter() - t
    plain = faiss.IndexFlatIP(dim)
    plain.add(vecs)
    qs = rng.standard_normal((queries, dim), dtype=np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    qtext = [" ".join(vocab[j] for j in rng.integers(0, 3000, 6)) for _ in range(queries)]
    out = {}
    for mode in ("dense", "bm25", "hybrid"):
        times = []
        for q, text in zip(qs, qtext):
            t = time.perf_counter()
            index.search(text, q, mode, k=5)
            times.append((time.perf_counter() - t) * 1000)
        out[mode] = times
    times = []
    for q in qs:
        t = time.perf_counter()
        plain.search(q.reshape(1, -1), 5)
        times.append((time.perf_counter() - t) * 1000)
    out["baseline"] = times
    embedder = get_embedder()
    times = []
    for text in ["When was the lighthouse built?"] * 20:
        t = time.perf_counter()
        embedder.encode_query(text)
        times.append((time.perf_counter() - t) * 1000)
    out["query embedding"] = times
    return out, build


def citations(n_questions=20):
    """The embedded SmolLM2 answers questions over the sample corpus (the first n of the wiki set, and the
    off-topic ones): how many [n] it writes, how many match no source, how many the lab removes because the
    source does not hold the sentence, and how often a kept citation points at a chunk holding the expected
    passage (the plain baseline shows every citation the model wrote)."""
    import rag_answer as ra
    from rag_generators import LocalGenerator

    session = RagSession()
    session.load_sample()
    generator = LocalGenerator()
    pairs = load_pairs(WIKI)[:n_questions] + [(q, None) for q in OFF_TOPIC]
    rows = {"answerable": [0] * 6, "off-topic": [0] * 6}  # questions, cited, no such source, not backed, kept, kept+hit
    for question, expected in pairs:
        retrieval = session.retrieve(question, rewrite=False)
        raw = "".join(session.answer_stream(retrieval, generator)) if not retrieval.weak else ra.NOT_FOUND
        checked = ra.check_citations(raw, retrieval.hits)
        written = [int(n) for g in ra._CITATION.findall(raw) for n in re.split(r"\s*[,;]\s*", g)]
        row = rows["off-topic" if expected is None else "answerable"]
        row[0] += 1
        row[1] += len(written)
        row[2] += sum(1 for r in checked["removed"] if r["reason"].startswith("there is no source"))
        row[3] += sum(1 for r in checked["removed"] if not r["reason"].startswith("there is no source"))
        row[4] += len(checked["cited"])
        if expected:
            row[5] += sum(1 for n in checked["cited"] if is_hit(retrieval.hits[n - 1].chunk, expected))
    return rows


def show_citations():
    rows = citations()
    print("\n## Citations of the embedded SmolLM2-135M, checked (sample corpus, top-5, hybrid)\n")
    print("| questions | asked | citations written | no such source | source does not say it | shown | shown and "
          "holding the expected passage |\n|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        print(f"| {label} | {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5] if label == 'answerable' else '-'} |")


FACTS = ROOT / "bench" / "data" / "rag_eval_facts"
ANSWER_MODES = ("free", "short", "grounded", "extractive")  # the order of the table; cheapest are run first
MODE_LABELS = {"free": "baseline: free-form (today's prompt: 5 chunks, the model writes freely)",
               "short": "short prompt (one source, quote first; the model writes freely)",
               "grounded": "grounded decoding (copy-only logits processor)",
               "extractive": "**extractive (the lab picks the sentence and its key span, and quotes it)**"}


def has_fact(text: str, facts: list[str]) -> bool:
    """One spelling of the key fact occurs in the text (case and spacing ignored; a number must not run
    on into more digits: '3.1' does not match '3.10')."""
    norm = " ".join(text.lower().split())
    for fact in facts:
        f = " ".join(fact.lower().split())
        if re.search(r"(?<![\w])" + re.escape(f) + r"(?![\d]|\.\d)", norm):
            return True
    return False


def cited_ok(answer, hits, facts) -> tuple[int, int]:
    """(citations shown, backed: the cited source holds at least half the answer's content words and, when the
    answer states the key fact, the key fact)."""
    import rag_answer as ra

    claim = re.sub(r"\[\d+(?:\s*[,;]\s*\d+)*\]", " ", answer["text"])
    shown = backed = 0
    for n in answer["cited"]:
        shown += 1
        text = hits[n - 1].chunk.text
        found, total = ra.support(claim, text)
        fact_ok = not has_fact(claim, facts) or has_fact(text, facts)
        backed += bool(total and found / total >= ra.SUPPORT_MIN and fact_ok)
    return shown, backed


def answers(sets, details: Path | None = None, modes=ANSWER_MODES):
    """Each answer mode of rag_grounded with the embedded SmolLM2 on our own question sets (documents the lab
    does not ship, key facts written before any answer was looked at): key fact present, 'not found' on the
    unanswerable questions, citations backed by their source, latency. The free-form mode is today's answer
    (the same prompt, model and citation check; these documents hold no instruction-like text to withhold).
    Answers are cached in a temp file keyed by the answer code's hash, so an interrupted run resumes."""
    import hashlib
    import os
    import tempfile

    import rag_grounded as rg
    from rag_generators import LocalGenerator

    code = hashlib.sha1(Path(rg.__file__).read_bytes()).hexdigest()[:12]
    cache_path = Path(tempfile.gettempdir()) / f"rag_chat_answers_{code}.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    generator = LocalGenerator()
    embedder = get_embedder()
    out, kept = {}, []
    for name in sets:
        folder = FACTS / name
        data = json.loads((folder / "questions.json").read_text())
        files = sorted(p for p in folder.iterdir() if p.name not in ("questions.json",))
        session = RagSession()
        session.ingest(files)
        load = [os.getloadavg()[0]]
        asked = [(q, True) for q in data["answerable"]] + [({"q": q, "fact": []}, False) for q in data["unanswerable"]]
        retrievals = [session.retrieve(q["q"], rewrite=False) for q, _ in asked]
        ranks = [first_hit_rank(r.hits, q["passage"]) for (q, ok), r in zip(asked, retrievals) if ok]
        rows = {}
        for mode in modes:
            r = rows[mode] = {"fact": 0, "refused": 0, "false_refusal": 0, "shown": 0, "backed": 0, "gold": 0,
                              "written": 0, "removed": 0, "seconds": [], "words": []}
            for (q, answerable), retrieval in zip(asked, retrievals):
                key = f"{name}|{mode}|{q['q']}"
                if key not in cache:
                    a = rg.answer(q["q"], retrieval.hits, mode, generator, embedder, retrieval.weak)
                    cache[key] = {"text": a.text, "raw": a.raw, "cited": a.cited, "removed": len(a.removed),
                                  "not_found": a.not_found, "seconds": retrieval.seconds + a.seconds, "why": a.why}
                    cache_path.write_text(json.dumps(cache))
                a = cache[key]
                r["seconds"].append(a["seconds"])
                if not answerable:
                    r["refused"] += a["not_found"] or a["text"].strip() == ra_not_found()
                    continue
                r["words"].append(len(re.sub(r"\[\d+\]", "", a["text"]).split()))
                r["fact"] += has_fact(a["text"], q["fact"])
                r["false_refusal"] += a["not_found"]
                shown, backed = cited_ok(a, retrieval.hits, q["fact"])
                r["shown"] += shown
                r["backed"] += backed
                r["gold"] += sum(is_hit(retrieval.hits[n - 1].chunk, q["passage"]) for n in a["cited"])
                r["written"] += len(re.findall(r"\[\d+", a["raw"])) if mode == "free" else 0
                r["removed"] += a["removed"]
                if details is not None and name != "blind":  # the blind set's answers are never written out
                    kept.append({"set": name, "q": q["q"], "fact": q["fact"], "mode": mode, "answer": a["text"],
                                 "raw": a["raw"], "why": a["why"], "ok": has_fact(a["text"], q["fact"])})
        load.append(os.getloadavg()[0])
        out[name] = (rows, score(ranks), len(data["answerable"]), len(data["unanswerable"]), load)
        show_answers(name, *out[name])
    if details is not None:
        details.write_text(json.dumps(kept, indent=1, ensure_ascii=False))
    return out


def ra_not_found():
    import rag_answer as ra

    return ra.NOT_FOUND


def show_answers(name, rows, retrieval, n_ans, n_un, load):
    print(f"\n## Answers of the embedded SmolLM2-135M by answer mode: set `{name}` ({n_ans} answerable + {n_un} "
          f"unanswerable questions, bench/data/rag_eval_facts/{name}/)\n")
    print(f"Retrieval on this set (lab default, hybrid, top-5): hit@1 {retrieval['hit@1']:.3f}, hit@5 "
          f"{retrieval['hit@5']:.3f}. Load average {load[0]:.1f} at the start, {load[1]:.1f} at the end.\n")
    print("| answer mode | key fact stated | 'not found' on unanswerable | 'not found' on answerable | citations shown | "
          "backed by the cited source | cited source holds the answer passage | mean words | p50 s | p90 s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode in [m for m in ANSWER_MODES if m in rows]:
        r = rows[mode]
        extra = f" (model wrote {r['written']}, check removed {r['removed']})" if mode == "free" else ""
        print(f"| {MODE_LABELS[mode]} | {r['fact']}/{n_ans} = **{r['fact'] / n_ans:.0%}** | {r['refused']}/{n_un} | "
              f"{r['false_refusal']}/{n_ans} | {r['shown']}{extra} | {r['backed']}/{r['shown']} | {r['gold']}/{r['shown']} | "
              f"{statistics.mean(r['words'] or [0]):.0f} | {pct(r['seconds'], 50):.1f} | {pct(r['seconds'], 90):.1f} |")


def pct(values, p):
    return float(np.percentile(values, p))


def main():
    wanted = {a for a in sys.argv[1:] if not a.startswith("--") and not a.endswith(".json")} or {
        "quality", "wiki", "calibration", "throughput", "latency"}
    pairs = load_pairs(DATA)
    files = sorted(p for p in DATA.iterdir() if p.suffix in (".txt", ".md") and not p.name.startswith("SOURCE"))
    if "quality" in wanted:
        default = show_quality(pairs, files, "real documents")
    if "wiki" in wanted:
        wiki_files = sorted(p for p in (ROOT / "assets" / "rag_corpus").glob("*.md") if p.name != "SOURCE.md")
        show_quality(load_pairs(WIKI), wiki_files, "Wikipedia articles (the shipped sample corpus)")
    if "calibration" in wanted:
        if "quality" not in wanted:
            default = RagSession()
            default.ingest(files)
        calibrate(default, pairs)
    if "throughput" in wanted:
        show_throughput(files)
    if "latency" in wanted:
        show_latency()
    if "citations" in wanted:
        show_citations()
    if "answers" in wanted:
        details = None
        if "--details" in sys.argv:
            details = Path(sys.argv[sys.argv.index("--details") + 1])
        sets = [s for s in ("tuning", "blind") if s in wanted] or ["tuning", "blind"]
        modes = [m for m in ANSWER_MODES if m in wanted] or list(ANSWER_MODES)
        answers(sets, details, [m for m in ("extractive", "grounded", "short", "free") if m in modes])


def load_pairs(folder):
    return [(q["q"], q["passage"]) for q in json.loads((folder / "questions.json").read_text())]


def show_quality(pairs, files, what):
    print(f"## RAG chat: retrieval quality ({len(pairs)} questions over {len(files)} {what})\n")
    rows, sessions = quality(pairs, files)
    print("| setting | chunks | hit@1 | hit@3 | hit@5 | MRR |\n|---|---|---|---|---|---|")
    for label, n, m in rows:
        print(f"| {label} | {n} | {m['hit@1']:.3f} | {m['hit@3']:.3f} | {m['hit@5']:.3f} | {m['MRR']:.3f} |")
    print()
    return sessions[rows[1][0]]


def calibrate(default, pairs):
    answerable, off = calibration(default, pairs)
    from rag_answer import WEAK_COSINE

    print(f"\n## 'Not found' threshold (best chunk cosine, MiniLM)\n")
    print("| questions | min | 10th pct | median | max | called weak at %.2f |\n|---|---|---|---|---|---|" % WEAK_COSINE)
    for label, vals in (("answerable (eval set)", answerable), ("off-topic", off)):
        weak = sum(v < WEAK_COSINE for v in vals)
        print(f"| {label} ({len(vals)}) | {min(vals):.2f} | {pct(vals, 10):.2f} | {statistics.median(vals):.2f} | "
              f"{max(vals):.2f} | {weak}/{len(vals)} |")


def show_throughput(files):
    n, lab_s, plain_s = throughput(files)
    print(f"\n## Indexing throughput ({n} chunks, best of 2)\n")
    print("| pipeline | seconds | chunks/s |\n|---|---|---|")
    print(f"| plain sentence-transformers encode of the same chunks | {plain_s:.2f} | {n / plain_s:.1f} |")
    print(f"| lab: read + chunk + fit to 256 tokens + embed + FAISS + BM25 | {lab_s:.2f} | {n / lab_s:.1f} |")
    print(f"\nratio lab / plain: **{plain_s / lab_s:.2f}x** (goal >= 0.9x)")


def show_latency():
    times, build = latency()
    print(f"\n## Retrieval latency, 100,000 chunks (384-dim synthetic vectors, 60-word synthetic texts; "
          f"index built in {build:.1f} s)\n")
    print("| search | p50 ms | p95 ms |\n|---|---|---|")
    names = {"baseline": "baseline: FAISS flat IP top-5", "dense": "lab dense (FAISS + cosines)",
             "bm25": "lab BM25 (sparse matrix)", "hybrid": "**lab hybrid (0.7 z(dense) + 0.3 z(BM25))**",
             "query embedding": "query embedding (MiniLM, one question)"}
    for key in ("baseline", "dense", "bm25", "hybrid", "query embedding"):
        print(f"| {names[key]} | {pct(times[key], 50):.1f} | {pct(times[key], 95):.1f} |")


if __name__ == "__main__":
    main()
