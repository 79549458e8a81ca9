import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# shared/ sits beside app.py in a deployed Space bundle, two folders up in the repo.
sys.path.insert(0, str(HERE if (HERE / "shared").is_dir() else HERE.parent.parent))
sys.path.insert(0, str(HERE))

from shared.bootstrap import require  # noqa: E402

require("gradio", "torch", "transformers", "peft", "spacy", "seqeval", "numpy")

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import gradio as gr  # noqa: E402

from shared.launch import launch  # noqa: E402
from shared.look import header  # noqa: E402
from ner_align import STRATEGIES, WINDOW, aggregate, windows  # noqa: E402
from ner_eval import EVAL_TYPES, gold_split_sizes, load_conll, load_gold, resolve_annotations, score  # noqa: E402
from ner_typer import FITTED_ON  # noqa: E402
from ner_export import export_files, new_export_folder, push_to_hub, valid_entities  # noqa: E402
import ner_best  # noqa: E402
import ner_models  # noqa: E402
from ner_entities import MAX_CHARS, TaggerError, check_text  # noqa: E402
from ner_models import MODELS, get_tagger, models_status  # noqa: E402
from ner_views import pieces_rows, side_by_side, strategies_table  # noqa: E402

EXAMPLES = [
    "Chief executive Paul Batchelor said AMP would raise $750 million after profits fell in Sydney. "
    "Batchelor met the Reserve Bank of Australia's governor on Tuesday.",
    "Apple is looking at buying a U.K. startup for $1 billion, Tim Cook told reporters in Cupertino, California.",
    "Angela Merkel met Emmanuel Macron in Berlin before the European Union summit; the talks focused on "
    "Ukraine and the Nord Stream pipeline.",
]
ENTITY_COLUMNS = ["text", "coarse", "start", "end", "label"]
EXPORTS = Path(tempfile.gettempdir()) / "ner_tagger_exports"  # each export's folder is removed after a day
UPLOAD_TYPES = [".txt", ".md", ".text", ".csv", ".tsv", ".json", ".jsonl", ".conll", ".html", ".xml"]


# ---------------------------------------------------------------- events
def models_markdown() -> str:
    lines = ["| model | available | why / what it is |", "|---|---|---|"]
    for row in models_status():
        mark = "yes" if row["available"] else "no"
        lines.append(f"| **{row['name']}** ({row['kind']}) | {mark} | {row['why']}. {row['about']} |")
    return "\n".join(lines)


def read_upload(path, current_text):
    """Text of an uploaded file, or a warning and the text unchanged."""
    if not path:
        return current_text
    data = Path(path).read_bytes()
    if b"\x00" in data[:4096]:
        gr.Warning("That file is not text (it looks binary). Upload a .txt file or paste the text.")
        return current_text
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        gr.Warning("That file is not UTF-8 text. Save it as UTF-8 (or paste the text) and try again.")
        return current_text
    if len(text) > MAX_CHARS:
        gr.Warning(f"The file has {len(text):,} characters; the lab tags at most {MAX_CHARS:,} per run. "
                   "Only the first part was loaded: tag the rest separately.")
        return text[:MAX_CHARS]
    return text


# Models that have tagged once in this process. A model's first use loads it (seconds on a CPU);
# that time is measured apart, so the per-model timing is the tagging alone, and shown when it
# is worth mentioning (a model another one already loaded takes ~0 s).
_WARM: set[str] = set()
LOAD_SHOWN_FROM_S = 0.5


def run_models(text, chosen, strategy, progress=gr.Progress()):
    """Tag the text with every chosen model -> side-by-side HTML, per-model state, entity table."""
    try:
        text = check_text(text)
    except TaggerError as exc:
        raise gr.Error(str(exc))
    if not text.strip():
        raise gr.Error("Paste some text (or upload a .txt file) first.")
    chosen = [c for c in (chosen or []) if c in MODELS] or ["best"]
    results, timings, loads = {}, {}, {}
    pieces = None
    for i, name in enumerate(chosen):
        progress(i / len(chosen), desc=f"{name}…")
        tagger = get_tagger(name)
        ok, why = tagger.status()
        if not ok:
            results[name] = f"Not available: {why}"
            continue
        try:
            if name not in _WARM:
                t0 = time.perf_counter()
                tagger.tag("Loading.")
                if time.perf_counter() - t0 >= LOAD_SHOWN_FROM_S:
                    loads[name] = time.perf_counter() - t0
                _WARM.add(name)
            t0 = time.perf_counter()
            if name == "student":
                pieces = tagger.pieces(text)
                ents = tagger.entities_from(text, pieces, strategy)
            elif name == "best":
                if pieces is None and ner_models.STUDENT.status()[0]:
                    pieces = ner_models.STUDENT.pieces(text)
                ents = tagger.tag(text, pieces=pieces)
            else:
                ents = tagger.tag(text)
        except TaggerError as exc:
            results[name] = str(exc)
            continue
        timings[name] = time.perf_counter() - t0
        results[name] = ents
    progress(1.0)
    reference = next((results[n] for n in ("best", *results) if isinstance(results.get(n), list)), [])
    rows = [[e["text"], e["coarse"], e["start"], e["end"], e.get("label", e["coarse"])] for e in reference]
    state = {"text": text, "results": {k: v for k, v in results.items() if isinstance(v, list)}}
    return side_by_side(text, results, timings, loads), state, rows, None


def subword_view(text, name):
    try:
        text = check_text(text)
    except TaggerError as exc:
        raise gr.Error(str(exc))
    if not text.strip():
        raise gr.Error("Paste some text first.")
    tagger = get_tagger(name)
    ok, why = tagger.status()
    if not ok:
        raise gr.Error(f"{name} is not available here: {why}")
    pieces = tagger.pieces(text)
    _, tokenizer = tagger.load()
    by_strategy = {s: aggregate(pieces, s, tokenizer) for s in STRATEGIES}
    n_windows = len(windows(len(pieces)))
    shown = " (the table shows the first 400)" if len(pieces) > 400 else ""
    note = ("No word pieces." if not pieces else
            f"{len(pieces)} word pieces{shown}: one window of {WINDOW} holds them all." if n_windows == 1 else
            f"{len(pieces)} word pieces{shown} in {n_windows} overlapping windows of {WINDOW}; a piece seen by two "
            "windows gets the mean of their probabilities (the `windows` column).")
    return pieces_rows(pieces), strategies_table(by_strategy), note


def _corrections(text: str, table) -> list[dict]:
    """Rows of the editable table -> entities; a row with only text and type finds its offsets."""
    rows = table.values.tolist() if hasattr(table, "values") else (table or [])
    out = []
    for row in rows:
        row = list(row) + [None] * (5 - len(row))
        surface, coarse, start, end = (str(row[0] or "").strip(), str(row[1] or "").strip().upper(), row[2], row[3])
        if not surface and start in (None, ""):
            continue
        if coarse not in ("PER", "ORG", "LOC", "MISC"):
            if coarse in ("", "O", "NONE", "-"):
                continue  # an emptied type drops the row
            raise gr.Error(f"Type {coarse!r} for {surface!r}: use PER, ORG, LOC or MISC (empty drops the row).")
        try:
            s, t = int(float(start)), int(float(end))
            ok = 0 <= s < t <= len(text) and (not surface or text[s:t] == surface)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            found = resolve_annotations(text, f"{coarse}:{surface}") if surface and surface in text else []
            if not found:
                raise gr.Error(f"{surface!r} is not in the text: fix the row or clear it.")
            out.extend(found)
            continue
        out.append({"text": text[s:t], "start": s, "end": t, "label": coarse, "coarse": coarse})
    return valid_entities(text, out)


def score_models(state, table):
    if not state or not state.get("results"):
        raise gr.Error("Tag a text first, then correct the entities and score.")
    text = state["text"]
    gold = _corrections(text, table)
    rows = []
    for name, ents in state["results"].items():
        s = score([(text, gold, ents)])
        per = s["per_type"]
        rows.append([name, round(s["precision"], 3), round(s["recall"], 3), round(s["f1"], 3), s["support"],
                     s["predicted"]] + [round(per[t]["f1"], 3) if t in per else None for t in EVAL_TYPES])
    return rows


def export(state, table):
    if not state or not state.get("text"):
        raise gr.Error("Tag a text first.")
    ents = _corrections(state["text"], table)
    folder = new_export_folder(EXPORTS)  # one folder per request: never shared
    conll, jsonl = export_files(folder, state["text"], ents)
    return gr.update(value=[str(conll), str(jsonl)], visible=True), f"Exported {len(ents)} entities."


def push(files, repo_id, token):
    if not files:
        raise gr.Error("Export first, then push.")
    try:
        url = push_to_hub(repo_id, token, [Path(f if isinstance(f, str) else f.name) for f in files])
    except ValueError as exc:
        raise gr.Error(str(exc))
    except Exception as exc:  # offline, bad token, no write access: say so without echoing the token
        raise gr.Error(f"Push failed: {type(exc).__name__}. Check the network, the repo name and that the "
                       "token has write access.")
    return f"Pushed to {url}"


def gold_split_choices() -> list[tuple[str, str]]:
    """(label, split) for the gold set's splits: `test` first, then the other held-out ones, then those
    best's typer is fitted on (assets/ner_tagger/SOURCE.md describes each)."""
    sizes = gold_split_sizes()
    order = sorted(sizes, key=lambda s: (s in FITTED_ON, s != "test"))
    return [(f"{s}: {sizes[s]} sentences, " + ("best's typer is fitted on it" if s in FITTED_ON else "held out"), s)
            for s in order]


def gold_scores(split="test", progress=gr.Progress()):
    """Teacher vs student vs best on one split of the shipped gold sentences (PER/ORG/LOC, entity level)."""
    if not (isinstance(split, str) and split in gold_split_sizes()):
        raise gr.Error(f"Unknown gold split {str(split)[:40]!r}: choose one of "
                       f"{', '.join(s for _, s in gold_split_choices())}.")
    return _score_offline_models(load_gold(split), progress)


def gold_split_scores(split="test", progress=gr.Progress()):
    """gold_scores for the UI, with a line saying what was scored: (rows, note)."""
    rows = gold_scores(split, progress)
    return rows, f"{gold_split_sizes()[split]:,} sentences of the shipped gold split **{split}**."


# A user's own gold file: CoNLL-style, a word and a tag per line. Bounded so one upload cannot hold the
# server for long (about 25 sentences/s for best on a laptop CPU).
CONLL_MAX_BYTES, CONLL_MAX_SENTENCES = 2_000_000, 2_000


def conll_scores(path, progress=gr.Progress()):
    """Teacher vs student vs best on the user's own CoNLL-style gold file: (rows, note)."""
    if not path:
        raise gr.Error("Upload a CoNLL file first: one word and its tag per line (O, B-PER, I-ORG...), "
                       "a blank line between sentences.")
    path = Path(path)
    size = path.stat().st_size  # before reading: a huge upload is refused without loading it
    if size > CONLL_MAX_BYTES:
        raise gr.Error(f"The file has {size:,} bytes; upload at most {CONLL_MAX_BYTES:,} "
                       f"(or score a big set from the command line: python bench/ner_tagger.py --conll FILE).")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if b"\x00" in head:
        raise gr.Error("That file is not text (it looks binary). Upload a CoNLL-style .txt or .conll file.")
    try:
        gold = load_conll(path)
    except ValueError as exc:
        raise gr.Error(f"Not a CoNLL file: {exc}".replace(str(path), path.name)) from None
    if not any(e["coarse"] in EVAL_TYPES for g in gold for e in g["entities"]):
        raise gr.Error("No PER, ORG or LOC tag in the file: each line needs the word first and its NER tag "
                       "(O, B-PER, I-ORG...) last.")
    note = f"{len(gold):,} sentences from **{path.name}**, text rebuilt from the tokens."
    if len(gold) > CONLL_MAX_SENTENCES:
        note = (f"The file has {len(gold):,} sentences; these scores are for the first {CONLL_MAX_SENTENCES:,} "
                f"(score all of them with python bench/ner_tagger.py --conll FILE).")
        gold = gold[:CONLL_MAX_SENTENCES]
    return _score_offline_models(gold, progress), note


def _score_offline_models(gold: list[dict], progress) -> list[list]:
    """[model, P, R, F1, sentences/s] of spaCy, the student and best on [{"text", "entities"}]. The
    student's pieces are computed once and reused by best."""
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


def training_curve():
    path = ner_models.student_adapter_dir() / "training_report.json"
    if not path.exists():
        return None, "No training report: run scripts/train_ner_student.py."
    import pandas as pd

    report = json.loads(path.read_text(encoding="utf-8"))
    losses = report["loss_every_step"]
    k = 10
    smooth = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1]) for i in range(len(losses))]
    df = pd.DataFrame({"step": list(range(1, len(losses) + 1)), "loss": smooth})
    about = (f"Trained {report['steps']} steps ({report['epochs']} epochs, batch {report['batch']}) on "
             f"{report['sentences']:,} silver sentences labelled by two teachers ({report['teacher']}): the student "
             f"learned the {report['names_agreed']:,} names both agree on, and the word pieces of the "
             f"{report['names_disputed']:,} names only one gives (or types differently) carry no label, so neither "
             "teacher's private mistakes are learned. LoRA on the top "
             f"{report['top_layers_trained']} encoder layers + a new head; {report['train_seconds']} s on "
             f"{report['threads']} CPU threads; seed {report['seed']}.")
    return df, about


def api_tag(text: str, model: str = "best") -> list | dict:
    """Entities of `text` by `model` (see /models; "best" is the best offline model):
    [{"text", "start", "end", "label", "coarse"}] with char offsets into the input, or {"error": ...}."""
    try:
        return ner_models.tag(text, model)
    except TaggerError as exc:
        return {"error": str(exc)}


def api_models() -> list:
    """The model names /tag accepts."""
    return ner_models.model_names()


TYPER_COLUMNS = ("PER", "ORG", "LOC", "MISC", "O")


def typer_weights(n: int = 20):
    """What best's typer learned: the n pieces of evidence with the largest weights, one column per type."""
    typer = ner_best.load_typer()
    if typer is None:
        return None, "No typer: run scripts/train_ner_best.py."
    strongest = sorted(typer.weights.items(), key=lambda kv: -max(abs(w) for w in kv[1].values()))[:n]
    rows = [[ner_best.why_text(name)] + [round(ws.get(c, 0.0), 2) for c in TYPER_COLUMNS] for name, ws in strongest]
    note = (f"Each candidate starts with +{typer.trust:.2f} for the type its finder proposed; then every piece of "
            f"evidence adds its weight (times its value, 0-1) to each type's score, and the highest score wins "
            f"(O = not a name). The {n} strongest of {len(typer.weights)} learned weights:")
    return rows, note


# ---------------------------------------------------------------- layout
def build_demo() -> gr.Blocks:
    with gr.Blocks(title="NER tagger") as demo:
        header("NER tagger", "Token classification: entities, BIO tags, sub-word alignment, and how models differ "
                             "on the same text, side by side.")
        state = gr.State({})
        with gr.Row():
            with gr.Column(scale=3):
                text = gr.Textbox(label="Text", lines=6, max_lines=14, value=EXAMPLES[0],
                                  placeholder="Paste text here (up to 100,000 characters)…")
                with gr.Row():
                    upload = gr.UploadButton("Upload a .txt file", file_types=UPLOAD_TYPES, type="filepath",
                                             size="sm", scale=0, min_width=180)
                    gr.Markdown(f"Up to {MAX_CHARS:,} characters per run; longer text: split it.",
                                elem_classes=["model-status"])
                gr.Examples(EXAMPLES, inputs=text, label="Examples")
            with gr.Column(scale=2):
                chosen = gr.CheckboxGroup(list(MODELS), value=["best", "spaCy", "student"], label="Models")
                strategy = gr.Dropdown(list(STRATEGIES[1:]), value="max", label="Student's aggregation strategy")
                go = gr.Button("Tag", variant="primary")
                with gr.Accordion("Which models, and why", open=False):
                    models_md = gr.Markdown()
        view = gr.HTML(label="Entities per model")
        with gr.Tabs():
            with gr.Tab("Correct & score"):
                gr.Markdown("Edit the entities (seeded from **best**): fix a type, clear a type to drop a row, "
                            "or add a row with just the text and type. Then score every model against your "
                            "corrections (seqeval, entity level, PER/ORG/LOC) and export.")
                table = gr.Dataframe(headers=ENTITY_COLUMNS, datatype=["str", "str", "number", "number", "str"],
                                     interactive=True, wrap=True, label="Entities (your corrections)",
                                     column_count=5)
                with gr.Row():
                    score_btn = gr.Button("Score models vs corrections")
                    export_btn = gr.Button("Export CoNLL + JSONL")
                scores = gr.Dataframe(headers=["model", "P", "R", "F1", "gold", "predicted", *EVAL_TYPES],
                                      label="P / R / F1 against your corrections", interactive=False)
                files = gr.File(label="Downloads (CoNLL, JSONL)", file_count="multiple", interactive=False, visible=False)
                export_msg = gr.Markdown()
                with gr.Row():
                    repo = gr.Textbox(label="Hub dataset repo", placeholder="your-name/my-ner-corrections", scale=2)
                    token = gr.Textbox(label="HF token (write)", type="password", scale=2)
                    push_btn = gr.Button("Push to Hub", scale=1)
                push_msg = gr.Markdown()
            with gr.Tab("Sub-word view"):
                gr.Markdown("What a transformer tagger sees: the tokenizer's word pieces (`##` marks a piece "
                            "that continues a word), the BIO tag each piece gets, and what each aggregation "
                            "strategy of transformers' pipeline makes of them. Long text runs in windows of 128 "
                            "pieces that overlap by 32: nothing is truncated.")
                with gr.Row():
                    sub_model = gr.Dropdown(["student", "bert-base-NER"], value="student", label="Model")
                    sub_btn = gr.Button("Show pieces")
                sub_note = gr.Markdown()
                strategies = gr.HTML()
                pieces = gr.Dataframe(headers=["#", "piece", "chars", "continues word", "tag", "p", "windows"],
                                      label="Word pieces", interactive=False, wrap=True)
            with gr.Tab("Teacher vs student"):
                gr.Markdown("Distillation: the student (MiniLM + LoRA) learned only the names two spaCy pipelines "
                            "agree on (en_core_web_sm, the teacher scored here, and en_core_web_md, used for "
                            "training only). Score teacher, student and the ensemble on a split of the shipped "
                            "hand-labelled gold sentences.")
                with gr.Row():
                    gold_split = gr.Dropdown(gold_split_choices(), value="test", label="Gold split", scale=3,
                                             info="About a minute per split on a laptop CPU")
                    gold_btn = gr.Button("Score this split", scale=1)
                with gr.Accordion("Or score your own gold file (CoNLL)", open=False):
                    gr.Markdown("One word and its tag per line (`O`, `B-PER`, `I-ORG`... IOB1, IOB2 or IO; the tag in "
                                "the last column), a blank line between sentences: e.g. a CoNLL-2003 file, or the "
                                "CoNLL export of the *Correct & score* tab.")
                    with gr.Row():
                        conll_file = gr.File(label="CoNLL file", file_types=[".conll", ".txt", ".tsv", ".bio"],
                                             type="filepath", scale=3)
                        conll_btn = gr.Button("Score my file", scale=1)
                gold_note = gr.Markdown()
                gold_table = gr.Dataframe(headers=["model", "P", "R", "F1", "sentences/s"], interactive=False)
                curve_note = gr.Markdown()
                curve = gr.LinePlot(x="step", y="loss", title="Student training loss (smoothed)", height=260)
                gr.Markdown("**What `best`'s typer learned** (a logistic regression fitted on hand-labelled "
                            "sentences by scripts/train_ner_best.py)")
                typer_note = gr.Markdown()
                typer_table = gr.Dataframe(headers=["evidence", *TYPER_COLUMNS], interactive=False)

        go.click(run_models, [text, chosen, strategy], [view, state, table, scores], api_visibility="private")
        text.submit(run_models, [text, chosen, strategy], [view, state, table, scores], api_visibility="private")
        upload.upload(read_upload, [upload, text], text, api_visibility="private")
        score_btn.click(score_models, [state, table], scores, api_visibility="private")
        export_btn.click(export, [state, table], [files, export_msg], api_visibility="private")
        push_btn.click(push, [files, repo, token], push_msg, api_visibility="private")
        sub_btn.click(subword_view, [text, sub_model], [pieces, strategies, sub_note], api_visibility="private")
        gold_btn.click(gold_split_scores, gold_split, [gold_table, gold_note], api_visibility="private")
        conll_btn.click(conll_scores, conll_file, [gold_table, gold_note], api_visibility="private")
        demo.load(models_markdown, None, models_md, api_visibility="private")
        demo.load(training_curve, None, [curve, curve_note], api_visibility="private")
        demo.load(typer_weights, None, [typer_table, typer_note], api_visibility="private")
        gr.api(api_tag, api_name="tag")
        gr.api(api_models, api_name="models")
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo)
