"""NER tagger: the Gradio UI. What it computes lives in ner_*.py (ner_service is what the UI calls)."""
from shared.bootstrap import require

require("gradio", "torch", "transformers", "peft", "spacy", "seqeval", "numpy")

import gradio as gr

from shared.cards import title_and_teaches
from shared.errors import ui_error
from shared.launch import launch
from shared.look import lab_header

import ner_models
import ner_service as svc
import ner_views as views
from ner_align import STRATEGIES
from ner_entities import MAX_CHARS


# ---------------------------------------------------------------- text, models, Tag, the side-by-side view
def build_tagger(state: gr.State):
    """The input and the side-by-side view. Returns the text box and Tag's event, which the tabs
    below follow."""
    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            text = gr.Textbox(label="Text", lines=6, max_lines=14, value=svc.EXAMPLES[0],
                              placeholder=f"Paste text here (up to {MAX_CHARS:,} characters)…")
            with gr.Row():
                upload = gr.UploadButton("Upload a .txt file", file_types=svc.UPLOAD_TYPES, type="filepath",
                                         size="sm", scale=0, min_width=180)
                gr.Markdown(f"Up to {MAX_CHARS:,} characters per run; longer text: split it.",
                            elem_classes=["model-status"])
            gr.Examples(svc.EXAMPLES, inputs=text, label="Examples")
        with gr.Column(scale=2, min_width=280):
            chosen = gr.CheckboxGroup(list(ner_models.MODELS), value=svc.DEFAULT_MODELS, label="Models",
                                      elem_classes=["ner-models"])
            strategy = gr.Dropdown(list(STRATEGIES[1:]), value=svc.DEFAULT_STRATEGY,
                                   label="Student's aggregation strategy")
            go = gr.Button("Tag", variant="primary")
            with gr.Accordion("Which models, and why", open=False):
                gr.Markdown(lambda: views.models_markdown(ner_models.models_status()))
    stale = gr.HTML()
    view = gr.HTML('<div class="ner-note">Press <b>Tag</b>: each model\'s entities appear here side by side, '
                   "with the spans they disagree on outlined.</div>", label="Entities per model")

    def read_upload(path, current):
        new, warning = svc.read_upload(path, current)
        if warning:
            gr.Warning(warning)
        return new

    upload.upload(read_upload, [upload, text], text, api_visibility="private")

    def tag_text(text_value, models, strat, progress=gr.Progress()):
        try:
            run = svc.tag_models(text_value, models, strat, progress)
        except Exception as exc:  # noqa: BLE001  shown as one line; the controls stay usable
            raise ui_error(exc, "Tagging") from None
        shown = views.side_by_side(run["text"], run["results"], run["timings"], run["loads"])
        return {view: shown, state: run, stale: ""}

    tagged = gr.on([go.click, text.submit], tag_text, [text, chosen, strategy], [view, state, stale],
                   api_visibility="private")

    def mark_stale(text_value, models, strat, run):
        if not svc.is_stale(run, text_value, models, strat):
            return ""
        return views.stale_note("these entities are for the text and models of your last Tag",
                                "Press Tag to tag what is above.")

    gr.on([text.change, chosen.change, strategy.change], mark_stale, [text, chosen, strategy, state], stale,
          api_visibility="private", queue=False, trigger_mode="always_last")
    return text, tagged


# ---------------------------------------------------------------- Correct & score
def build_correct_tab(state: gr.State, tagged):
    with gr.Tab("Correct & score"):
        gr.Markdown("Edit the entities (seeded from **best**): fix a type, clear a type to drop a row, or add a "
                    "row with just the text and type. Then score every model against your corrections "
                    "(seqeval, entity level, PER/ORG/LOC) and export. The last column says why **best** chose "
                    "each type.")
        table = gr.Dataframe(headers=views.ENTITY_COLUMNS, datatype=["str", "str", "number", "number", "str", "str"],
                             interactive=True, wrap=True, label="Entities (your corrections)", column_count=6,
                             column_widths=[160, 70, 70, 70, 110, 480], elem_classes=["ner-table"])
        with gr.Row(elem_classes=["ner-actions"]):
            score_btn = gr.Button("Score models vs corrections")
            export_btn = gr.Button("Export CoNLL + JSONL")
        press_score = ('<div class="ner-note">Press <b>Score models vs corrections</b>: each model\'s precision, '
                       "recall and F1 against the table above appear here.</div>")
        scores_note = gr.HTML(press_score)
        scores = gr.Dataframe(headers=views.SCORE_COLUMNS, label="P / R / F1 against your corrections (n/a: no "
                              "entity of that type in your corrections)", interactive=False,
                              column_widths=[120, 70, 70, 70, 70, 100, 80, 80, 80], elem_classes=["ner-table"])
        files = gr.File(label="Downloads (CoNLL, JSONL)", file_count="multiple", interactive=False, visible=False)
        export_msg = gr.Markdown()
        folder = gr.State("")
        gr.Markdown("**Push to a Hub dataset repo** with the Hugging Face login of the machine that runs the lab: "
                    "run `hf auth login` there (or set `HF_TOKEN`), then push. No token is typed here.")
        with gr.Row(elem_classes=["ner-actions"]):
            repo = gr.Textbox(label="Hub dataset repo", placeholder="your-name/my-ner-corrections", scale=3,
                              min_width=260)
            push_btn = gr.Button("Push to Hub", scale=1, min_width=160)
        push_msg = gr.Markdown()

    def seed(run):
        return {table: views.entity_rows(svc.reference(run)), scores: [], scores_note: press_score,  # old scores go
                files: gr.File(value=None, visible=False), export_msg: "", folder: ""}

    tagged.success(seed, state, [table, scores, scores_note, files, export_msg, folder], api_visibility="private")

    def follow(rows, current_scores):
        note = (views.stale_note("these scores are for your corrections before the last edit",
                                 "Press Score to score the table as it is now.") if len(current_scores) else "")
        return {table: svc.follow_types(rows), scores_note: note}

    table.input(follow, [table, scores], [table, scores_note], api_visibility="private")

    def score(run, rows):
        try:
            return {scores: views.score_rows(svc.score_corrections(run, rows)), scores_note: ""}
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Scoring") from None

    score_btn.click(score, [state, table], [scores, scores_note], api_visibility="private")

    def export(run, rows):
        try:
            where, paths, n = svc.export(run, rows)
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Export") from None
        return {files: gr.File(value=[str(p) for p in paths], visible=True), export_msg: f"Exported {n} entities.",
                folder: str(where)}

    export_btn.click(export, [state, table], [files, export_msg, folder], api_visibility="private")

    def push(where, repo_id):
        try:
            return f"Pushed to {svc.push(where, repo_id)}"
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Push") from None

    push_btn.click(push, [folder, repo], push_msg, api_visibility="private")


# ---------------------------------------------------------------- Sub-word view
def build_subword_tab(state: gr.State, text: gr.Textbox, tagged):
    with gr.Tab("Sub-word view"):
        gr.Markdown("What a transformer tagger sees: the tokenizer's word pieces (`##` marks a piece that continues "
                    "a word), the BIO tag each piece gets, and what each aggregation strategy of transformers' "
                    "pipeline makes of them. Long text runs in windows of 128 pieces that overlap by 32: nothing "
                    "is truncated. The view follows each **Tag** and the model picked here.")
        sub_model = gr.Dropdown(svc.SUBWORD_MODELS, value="student", label="Model")
        stale = gr.HTML()
        note = gr.Markdown("*Press **Tag**: the word pieces of the text appear here, with what each strategy "
                           "makes of them.*")
        strategies = gr.HTML()
        pieces = gr.Dataframe(headers=views.PIECE_COLUMNS, label="Word pieces", interactive=False, wrap=True,
                              column_widths=[50, 110, 90, 90, 70, 60, 80], elem_classes=["ner-table"])

    def show(run, name, progress=gr.Progress()):
        if not run or not run.get("text"):
            return {stale: "", note: "*Press **Tag** first: the word pieces of the text appear here.*",
                    strategies: "", pieces: []}
        try:
            out = svc.subword(run["text"], name, pieces=run.get("pieces") if name == "student" else None,
                              progress=lambda k, n: progress(k / n, desc=f"window {k} of {n}"))
        except Exception as exc:  # noqa: BLE001  e.g. bert-base-NER offline: said in the view, not a toast
            from shared.errors import message

            return {stale: "", note: message(exc, "The sub-word view"), strategies: "", pieces: []}
        return {stale: "", note: out["note"], strategies: views.strategies_table(out["by_strategy"]),
                pieces: views.pieces_rows(out["pieces"], svc.PIECES_SHOWN)}

    tagged.success(show, [state, sub_model], [stale, note, strategies, pieces], api_visibility="private")
    sub_model.change(show, [state, sub_model], [stale, note, strategies, pieces], api_visibility="private")

    def mark_stale(text_value, run):
        if not run or run.get("text") == text_value:
            return ""
        return views.stale_note("these word pieces are for the text of your last Tag", "Press Tag to see the "
                                "pieces of what is above.")

    text.change(mark_stale, [text, state], stale, api_visibility="private", queue=False, trigger_mode="always_last")


# ---------------------------------------------------------------- Teacher vs student
def build_teacher_tab():
    with gr.Tab("Teacher vs student"):
        gr.Markdown("Distillation: the student (MiniLM + LoRA) learned only the names two spaCy pipelines agree on "
                    "(en_core_web_sm, the teacher scored here, and en_core_web_md, used for training only). Score "
                    "teacher, student and the ensemble on a split of the shipped hand-labelled gold sentences.")
        with gr.Row(elem_classes=["ner-actions"]):
            split = gr.Dropdown(svc.gold_split_choices(), value="test", label="Gold split", scale=3,
                                info="About a minute per split on a laptop CPU")
            gold_btn = gr.Button("Score this split", scale=1)
        with gr.Accordion("Or score your own gold file (CoNLL)", open=False):
            gr.Markdown("One word and its tag per line (`O`, `B-PER`, `I-ORG`... IOB1, IOB2 or IO; the tag in the last "
                        "column), a blank line between sentences: e.g. a CoNLL-2003 file, or the CoNLL export of the "
                        "*Correct & score* tab.")
            with gr.Row():
                conll_file = gr.File(label="CoNLL file", file_types=[".conll", ".txt", ".tsv", ".bio"],
                                     type="filepath", scale=3)
                conll_btn = gr.Button("Score my file", scale=1)
        note = gr.Markdown("*Press **Score this split**: precision, recall and F1 of spaCy, the student and best "
                           "appear here.*")
        table = gr.Dataframe(headers=views.GOLD_COLUMNS, interactive=False, label="Scores on gold sentences",
                             column_widths=[220, 70, 70, 70, 110], elem_classes=["ner-table"])
        curve_df, about = svc.training_curve()
        gr.Markdown(about)
        gr.LinePlot(curve_df, x="step", y="smoothed", color="metric", title="Student training loss (smoothed)",
                    height=260)
        gr.Markdown("**What `best`'s typer learned** (a logistic regression fitted on hand-labelled sentences by "
                    "scripts/train_ner_best.py)")
        weights, weights_note = svc.typer_weights()
        gr.Markdown(weights_note)
        gr.Dataframe(weights, headers=["evidence", *svc.TYPER_COLUMNS], interactive=False, label="Typer weights",
                     column_widths=[200, 70, 70, 70, 70, 70], elem_classes=["ner-table"])

    def score_split(name, progress=gr.Progress()):
        try:
            rows, text = svc.gold_scores(name, progress)
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Scoring the gold split") from None
        return {table: rows, note: text}

    gold_btn.click(score_split, split, [table, note], api_visibility="private")

    def score_file(path, progress=gr.Progress()):
        try:
            rows, text = svc.conll_scores(path, progress)
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Scoring your file") from None
        return {table: rows, note: text}

    conll_btn.click(score_file, conll_file, [table, note], api_visibility="private")


# ---------------------------------------------------------------- the page
def build_demo() -> gr.Blocks:
    with gr.Blocks(title=title_and_teaches(__file__)[0]) as demo:
        gr.HTML(f"<style>{views.PAGE_CSS}</style>")
        lab_header(__file__)
        state = gr.State({})
        text, tagged = build_tagger(state)
        with gr.Tabs(overflow_behavior="wrap"):
            build_correct_tab(state, tagged)
            build_subword_tab(state, text, tagged)
            build_teacher_tab()
        gr.api(svc.api_tag, api_name="tag")
        gr.api(svc.api_models, api_name="models")
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo)
