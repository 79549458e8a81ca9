"""What the NER tagger lab's UI and API call: tag a text with several models at once (each shared
stage run once), the sub-word view, the user's corrections and their scores, export and push, the
gold-set and CoNLL scores, the student's training curve and what best's typer learned.

Plain Python (no gradio); the models load on first use (ner_models)."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import ner_models
from ner_align import STRATEGIES, WINDOW, aggregate, windows
from ner_entities import COARSE, HUB_COARSE, MAX_CHARS, TaggerError, check_text
from ner_eval import EVAL_TYPES, gold_split_sizes, load_conll, load_gold, resolve_annotations, score
from ner_export import export_files, new_export_folder, push_to_hub, valid_entities
from ner_typer import FITTED_ON

from shared.loading import once

# ---------------------------------------------------------------- limits and UI defaults
# MAX_CHARS (100,000 characters per run) is ner_entities' input check, imported above.
EXAMPLES = [
    "Chief executive Paul Batchelor said AMP would raise $750 million after profits fell in Sydney. "
    "Batchelor met the Reserve Bank of Australia's governor on Tuesday.",
    "Apple is looking at buying a U.K. startup for $1 billion, Tim Cook told reporters in Cupertino, California.",
    "Angela Merkel met Emmanuel Macron in Berlin before the European Union summit; the talks focused on "
    "Ukraine and the Nord Stream pipeline.",
]
DEFAULT_MODELS = ["best", "spaCy", "student"]
DEFAULT_STRATEGY = "max"  # the student's aggregation in the side-by-side view
SUBWORD_MODELS = ["student", "bert-base-NER"]
UPLOAD_TYPES = [".txt", ".md", ".text", ".csv", ".tsv", ".json", ".jsonl", ".conll", ".html", ".xml"]
LOAD_SHOWN_FROM_S = 0.5  # a first load shorter than this is not worth a mention on the model's card
PIECES_SHOWN = 400  # rows of the sub-word table
# A user's own gold file: bounded so one upload cannot hold the server for long (about 25 sentences/s
# for best on a laptop CPU).
CONLL_MAX_BYTES, CONLL_MAX_SENTENCES = 2_000_000, 2_000
EXPORTS = Path(tempfile.gettempdir()) / "ner_tagger_exports"  # each export's folder is removed after a day
TYPES = ("PER", "ORG", "LOC", "MISC")
TYPER_COLUMNS = ("PER", "ORG", "LOC", "MISC", "O")
CURVE_SMOOTHING = 0.9  # exponential moving average of the training loss: about the last 10 steps


# ---------------------------------------------------------------- reading the input
def read_upload(path, current_text: str) -> tuple[str, str]:
    """(text, warning): the text of an uploaded file, or the current text and why it was refused."""
    if not path:
        return current_text, ""
    data = Path(path).read_bytes()
    if b"\x00" in data[:4096]:
        return current_text, "That file is not text (it looks binary). Upload a .txt file or paste the text."
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return current_text, "That file is not UTF-8 text. Save it as UTF-8 (or paste the text) and try again."
    if len(text) > MAX_CHARS:
        return text[:MAX_CHARS], (f"The file has {len(text):,} characters; the lab tags at most {MAX_CHARS:,} per run. "
                                  "Only the first part was loaded: tag the rest separately.")
    return text, ""


# ---------------------------------------------------------------- tagging with several models
def first_load_seconds(name: str) -> float | None:
    """The first use of a model in this process loads it (seconds on a CPU): that time, measured apart
    from the tagging, when it is worth mentioning; None once the model is in memory."""
    fresh = []

    def load():
        t0 = time.perf_counter()
        ner_models.get_tagger(name).tag("Loading.")
        fresh.append(time.perf_counter() - t0)
        return True

    once(("ner", "warm", name), load)
    return fresh[0] if fresh and fresh[0] >= LOAD_SHOWN_FROM_S else None


def _noop(*_args, **_kwargs):
    return None


def tag_models(text, chosen, strategy: str = DEFAULT_STRATEGY, progress=None) -> dict:
    """Tag `text` with every chosen model. Shared stages run once: spaCy's parse serves `spaCy` and
    `best`, the student's word pieces serve `student` and `best`; each model's time is that of the stages
    it uses. progress(fraction, desc) moves with the spaCy stage, every batch of windows and every 50 of
    best's candidates. Returns the run: {"text", "models", "strategy", "results" (name -> entities or
    the reason it did not run), "timings", "loads", "pieces" (the student's, or None)}."""
    progress = progress or _noop
    text = check_text(text)
    if not text.strip():
        raise TaggerError("Paste some text (or upload a .txt file) first.")
    chosen = [c for c in (chosen or []) if c in ner_models.MODELS] or ["best"]
    strategy = strategy if strategy in STRATEGIES[1:] else DEFAULT_STRATEGY
    results, timings, loads = {}, {}, {}
    usable = []
    for name in chosen:
        ok, why = ner_models.get_tagger(name).status()
        if ok:
            usable.append(name)
        else:
            results[name] = f"Not available: {why}"
    # Plan the stages: (weight, what) so the bar moves in proportion to the work on a long text.
    need_doc = any(n in ("spaCy", "best") for n in usable)
    need_pieces = any(n in ("student", "best") for n in usable) and ner_models.STUDENT.status()[0]
    plan = [n for n in usable if n not in ("spaCy", "student", "best")]
    # Measured on 100,000 characters on a CPU: spaCy ~20% of the time, the student's windows ~50%, best's typing ~10%.
    weights = {"load": 0.05, "doc": 0.2 if need_doc else 0, "pieces": 0.5 if need_pieces else 0,
               "best": 0.1 if "best" in usable else 0, "others": 0.1 * len(plan)}
    total = sum(weights.values()) or 1.0
    done = 0.0

    def stage(name, fraction, desc):
        progress(min(0.999, (done + weights[name] * fraction) / total), desc=desc)

    for name in usable:
        stage("load", usable.index(name) / len(usable), f"loading {name}…")
        try:
            seconds = first_load_seconds(name)
        except TaggerError as exc:
            results[name] = str(exc)
            continue
        if seconds is not None:
            loads[name] = seconds
    usable = [n for n in usable if n not in results]
    done += weights["load"]
    doc, doc_s, pieces, pieces_s = None, 0.0, None, 0.0
    if need_doc:
        stage("doc", 0.0, f"spaCy reads {len(text):,} characters…")
        t0 = time.perf_counter()
        doc = ner_models.SPACY.doc(text)
        doc_s = time.perf_counter() - t0
    done += weights["doc"]
    if need_pieces:
        def windows_done(k, n):
            stage("pieces", k / n, f"student: window {k:,} of {n:,}")

        stage("pieces", 0.0, "student: word pieces…")
        t0 = time.perf_counter()
        pieces = ner_models.STUDENT.pieces(text, progress=windows_done)
        pieces_s = time.perf_counter() - t0
    done += weights["pieces"]
    for name in usable:
        t0 = time.perf_counter()
        try:
            if name == "spaCy":
                ents = ner_models.spacy_doc_entities(doc, native=True)
                timings[name] = doc_s
            elif name == "student":
                ents = ner_models.STUDENT.entities_from(text, pieces, strategy)
                timings[name] = pieces_s
            elif name == "best":
                def typed(k, n):
                    stage("best", k / n, f"best: typing candidate {k:,} of {n:,}")

                ents = ner_models.BEST.tag(text, pieces=pieces, doc=doc, progress=typed)
                timings[name] = doc_s + pieces_s
                done += weights["best"]
            else:
                stage("others", plan.index(name) / max(len(plan), 1), f"{name}…")
                ents = ner_models.get_tagger(name).tag(text)
        except TaggerError as exc:
            results[name] = str(exc)
            continue
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        results[name] = ents
    progress(1.0, desc="done")
    ordered = {name: results[name] for name in chosen if name in results}
    return {"text": text, "models": chosen, "strategy": strategy, "results": ordered, "timings": timings,
            "loads": loads, "pieces": pieces}


def tagged(run: dict | None) -> dict[str, list[dict]]:
    """The models of a run that gave entities (not an error)."""
    return {k: v for k, v in (run or {}).get("results", {}).items() if isinstance(v, list)}


def reference(run: dict) -> list[dict]:
    """The entities the correction table starts from: best's, else the first model's that ran."""
    results = tagged(run)
    return next((results[n] for n in ("best", *results) if n in results), [])


def is_stale(run: dict | None, text, chosen, strategy) -> bool:
    """True when the views of `run` no longer match the inputs (the text, models or strategy changed)."""
    if not run or not run.get("text"):
        return False
    return (run["text"] != (text or "") or list(run.get("models", [])) != list(chosen or [])
            or run.get("strategy") != strategy)


# ---------------------------------------------------------------- the sub-word view
def subword(text, name: str = "student", pieces=None, progress=None) -> dict:
    """What a transformer tagger sees of `text`: {"pieces", "by_strategy", "note", "text", "model"}.
    `pieces` are that model's pieces of `text` when the caller has them already (a Tag computed them)."""
    text = check_text(text)
    if not text.strip():
        raise TaggerError("Paste some text first.")
    if name not in SUBWORD_MODELS:
        raise TaggerError(f"The sub-word view shows {' or '.join(SUBWORD_MODELS)}, not {str(name)[:40]!r}.")
    tagger = ner_models.get_tagger(name)
    ok, why = tagger.status()
    if not ok:
        raise TaggerError(f"{name} is not available here: {why}")
    if pieces is None:
        pieces = tagger.pieces(text, progress=progress)
    _, tokenizer = tagger.load()
    by_strategy = {s: aggregate(pieces, s, tokenizer) for s in STRATEGIES}
    n_windows = len(windows(len(pieces)))
    shown = f" (the table shows the first {PIECES_SHOWN})" if len(pieces) > PIECES_SHOWN else ""
    note = ("No word pieces." if not pieces else
            f"{len(pieces)} word pieces{shown}: one window of {WINDOW} holds them all." if n_windows == 1 else
            f"{len(pieces)} word pieces{shown} in {n_windows} overlapping windows of {WINDOW}; a piece seen by two "
            "windows gets the mean of their probabilities (the `windows` column).")
    return {"pieces": pieces, "by_strategy": by_strategy, "note": note, "text": text, "model": name}


# ---------------------------------------------------------------- corrections and their scores
def _cells(table) -> list[list]:
    rows = table.values.tolist() if hasattr(table, "values") else (table or [])
    return [list(r) for r in rows]


def follow_types(table) -> list[list]:
    """The correction rows with each label following its type: a label that no longer maps to the
    row's type (the user changed PER to ORG on a 'PERSON' row) becomes the type itself."""
    out = []
    for row in _cells(table):
        row = row + [None] * (5 - len(row))
        coarse = str(row[1] or "").strip().upper()
        label = str(row[4] or "").strip()
        native = COARSE.get(label) or HUB_COARSE.get(label) or label.upper()
        if coarse in TYPES and native != coarse:
            row[4] = coarse
        out.append(row)
    return out


def corrections(text: str, table) -> list[dict]:
    """Rows of the editable table -> entities; a row with only text and type finds its offsets. A type
    left empty (or O) drops the row; anything else that is not PER/ORG/LOC/MISC is refused."""
    out = []
    for row in _cells(table):
        row = row + [None] * (5 - len(row))
        surface, coarse, start, end = (str(row[0] or "").strip(), str(row[1] or "").strip().upper(), row[2], row[3])
        if not surface and start in (None, ""):
            continue
        if coarse not in TYPES:
            if coarse in ("", "O", "NONE", "-"):
                continue
            raise TaggerError(f"Type {coarse[:20]!r} for {surface[:60]!r}: use PER, ORG, LOC or MISC "
                              "(empty drops the row).")
        try:
            s, t = int(float(start)), int(float(end))
            ok = 0 <= s < t <= len(text) and (not surface or text[s:t] == surface)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            found = resolve_annotations(text, f"{coarse}:{surface}") if surface and surface in text else []
            if not found:
                raise TaggerError(f"{surface[:60]!r} is not in the text: fix the row or clear it.")
            out.extend(found)
            continue
        out.append({"text": text[s:t], "start": s, "end": t, "label": coarse, "coarse": coarse})
    return valid_entities(text, out)


def score_corrections(run: dict | None, table) -> list[dict]:
    """Every model of the run against the user's corrections: [{"model", "precision", "recall", "f1",
    "gold", "predicted", "per_type": {type: f1 or None}}]. A type's F1 is None (n/a) when the
    corrections hold no entity of that type: there is nothing to find, so no score."""
    results = tagged(run)
    if not results:
        raise TaggerError("Tag a text first, then correct the entities and score.")
    text = run["text"]
    gold = corrections(text, table)
    out = []
    for name, ents in results.items():
        s = score([(text, gold, ents)])
        per = {t: (s["per_type"][t]["f1"] if s["per_type"].get(t, {}).get("support") else None) for t in EVAL_TYPES}
        out.append({"model": name, "precision": s["precision"], "recall": s["recall"], "f1": s["f1"],
                    "gold": s["support"], "predicted": s["predicted"], "per_type": per})
    return out


def export(run: dict | None, table, parent: Path = EXPORTS) -> tuple[Path, list[Path], int]:
    """(folder, [CoNLL, JSONL], entities) of the corrections, in a fresh folder of their own."""
    if not run or not run.get("text"):
        raise TaggerError("Tag a text first.")
    ents = corrections(run["text"], table)
    folder = new_export_folder(parent)  # one folder per request: never shared
    conll, jsonl = export_files(folder, run["text"], ents)
    return folder, [conll, jsonl], len(ents)


def push(folder, repo_id: str) -> str:
    """Push an export folder to a Hub dataset repo with the login of the machine that runs the lab."""
    import os

    if not folder:
        raise TaggerError("Export first, then push.")
    if os.environ.get("SPACE_ID"):
        raise TaggerError("Pushing is off on a hosted Space (its token belongs to the Space's owner): download "
                          "the two files and push them from your own machine, or run the lab locally.")
    return push_to_hub(repo_id, Path(folder))


# ---------------------------------------------------------------- gold sets
def gold_split_choices() -> list[tuple[str, str]]:
    """(label, split) for the gold set's splits: `test` first, then the other held-out ones, then those
    best's typer is fitted on (assets/ner_tagger/SOURCE.md describes each)."""
    sizes = gold_split_sizes()
    order = sorted(sizes, key=lambda s: (s in FITTED_ON, s != "test"))
    return [(f"{s}: {sizes[s]} sentences, " + ("best's typer is fitted on it" if s in FITTED_ON else "held out"), s)
            for s in order]


def gold_scores(split="test", progress=None) -> tuple[list[list], str]:
    """Teacher vs student vs best on one split of the shipped gold sentences: (rows, note)."""
    if not (isinstance(split, str) and split in gold_split_sizes()):
        raise TaggerError(f"Unknown gold split {str(split)[:40]!r}: choose one of "
                          f"{', '.join(s for _, s in gold_split_choices())}.")
    rows = score_offline_models(load_gold(split), progress)
    return rows, f"{gold_split_sizes()[split]:,} sentences of the shipped gold split **{split}**."


def conll_scores(path, progress=None) -> tuple[list[list], str]:
    """Teacher vs student vs best on the user's own CoNLL-style gold file: (rows, note)."""
    if not path:
        raise TaggerError("Upload a CoNLL file first: one word and its tag per line (O, B-PER, I-ORG...), "
                          "a blank line between sentences.")
    path = Path(path)
    size = path.stat().st_size  # before reading: a huge upload is refused without loading it
    if size > CONLL_MAX_BYTES:
        raise TaggerError(f"The file has {size:,} bytes; upload at most {CONLL_MAX_BYTES:,} "
                          f"(or score a big set from the command line: python bench/ner_tagger.py --conll FILE).")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if b"\x00" in head:
        raise TaggerError("That file is not text (it looks binary). Upload a CoNLL-style .txt or .conll file.")
    try:
        gold = load_conll(path)
    except ValueError as exc:
        raise TaggerError(f"Not a CoNLL file: {exc}".replace(str(path), path.name)) from None
    if not any(e["coarse"] in EVAL_TYPES for g in gold for e in g["entities"]):
        raise TaggerError("No PER, ORG or LOC tag in the file: each line needs the word first and its NER tag "
                          "(O, B-PER, I-ORG...) last.")
    note = f"{len(gold):,} sentences from **{path.name}**, text rebuilt from the tokens."
    if len(gold) > CONLL_MAX_SENTENCES:
        note = (f"The file has {len(gold):,} sentences; these scores are for the first {CONLL_MAX_SENTENCES:,} "
                f"(score all of them with python bench/ner_tagger.py --conll FILE).")
        gold = gold[:CONLL_MAX_SENTENCES]
    return score_offline_models(gold, progress), note


def score_offline_models(gold: list[dict], progress=None) -> list[list]:
    """[model, P, R, F1, sentences/s] of spaCy, the student and best on [{"text", "entities"}]. The
    student's pieces are computed once and reused by best."""
    progress = progress or _noop
    texts = [g["text"] for g in gold]
    runs = {}
    progress(0.0, desc="spaCy")
    t0 = time.perf_counter()
    runs["spaCy"] = ([ner_models.SPACY.tag(t) for t in texts], time.perf_counter() - t0)
    if ner_models.STUDENT.status()[0]:
        progress(0.3, desc="student")
        t0 = time.perf_counter()
        pieces = [ner_models.STUDENT.pieces(t) for t in texts]
        ents = [ner_models.STUDENT.entities_from(t, p) for t, p in zip(texts, pieces)]
        runs["student"] = (ents, time.perf_counter() - t0)
    else:
        pieces = [None] * len(texts)
    progress(0.7, desc="best")
    t0 = time.perf_counter()
    best = [ner_models.BEST.tag(t, pieces=p) for t, p in zip(texts, pieces)]
    runs["best (+ student's pieces above)"] = (best, time.perf_counter() - t0 + runs.get("student", (0, 0))[1])
    rows = []
    for name, (ents, secs) in runs.items():
        s = score([(g["text"], g["entities"], e) for g, e in zip(gold, ents)])
        rows.append([name, round(s["precision"], 3), round(s["recall"], 3), round(s["f1"], 3),
                     round(len(gold) / max(secs, 1e-9), 1)])
    return rows


# ---------------------------------------------------------------- how the models were made
def training_curve():
    """(long table step/metric/value/smoothed of the student's training loss, or None; the text about it)."""
    path = ner_models.student_adapter_dir() / "training_report.json"
    if not path.exists():
        return None, "No training report: run scripts/train_ner_student.py."
    from shared.metrics import Metrics

    report = json.loads(path.read_text(encoding="utf-8"))
    metrics = Metrics()
    for step, loss in enumerate(report["loss_every_step"], 1):
        metrics.add(step, loss=loss)
    about = (f"Trained {report['steps']} steps ({report['epochs']} epochs, batch {report['batch']}) on "
             f"{report['sentences']:,} silver sentences labelled by two teachers ({report['teacher']}): the student "
             f"learned the {report['names_agreed']:,} names both agree on, and the word pieces of the "
             f"{report['names_disputed']:,} names only one gives (or types differently) carry no label, so neither "
             "teacher's private mistakes are learned. LoRA on the top "
             f"{report['top_layers_trained']} encoder layers + a new head; {report['train_seconds']} s on "
             f"{report['threads']} CPU threads; seed {report['seed']}. The line is the loss smoothed over about "
             "the last 10 steps.")
    return metrics.table(["loss"], weight=CURVE_SMOOTHING), about


def typer_weights(n: int = 20):
    """What best's typer learned: (rows [evidence, PER, ORG, LOC, MISC, O] of the n largest weights, note)."""
    import ner_best

    typer = ner_best.load_typer()
    if typer is None:
        return [], "No typer: run scripts/train_ner_best.py."
    strongest = sorted(typer.weights.items(), key=lambda kv: -max(abs(w) for w in kv[1].values()))[:n]
    rows = [[ner_best.why_text(name)] + [round(ws.get(c, 0.0), 2) for c in TYPER_COLUMNS] for name, ws in strongest]
    note = (f"Each candidate starts with +{typer.trust:.2f} for the type its finder proposed; then every piece of "
            f"evidence adds its weight (times its value, 0-1) to each type's score, and the highest score wins "
            f"(O = not a name). The {n} strongest of {len(typer.weights)} learned weights:")
    return rows, note


# ---------------------------------------------------------------- the API
def api_tag(text: str, model: str = "best") -> list | dict:
    """Entities of `text` by `model` (see /models; "best" is the best offline model):
    [{"text", "start", "end", "label", "coarse"}] with char offsets into the input, or {"error": ...}."""
    from shared.errors import api_error

    try:
        return ner_models.tag(text, model)
    except Exception as exc:  # noqa: BLE001  a bad request gets one line; the server keeps serving
        return api_error(exc, "Tagging")


def api_models() -> list:
    """The model names /tag accepts."""
    return ner_models.model_names()
