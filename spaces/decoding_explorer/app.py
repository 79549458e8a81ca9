"""Decoding-strategy explorer: one prompt, many decoding strategies, side by side, same seed."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# shared/ sits beside app.py in a deployed Space bundle, two folders up in the repo.
sys.path.insert(0, str(HERE if (HERE / "shared").is_dir() else HERE.parent.parent))
sys.path.insert(0, str(HERE))
from shared.bootstrap import require  # noqa: E402

require("gradio", "torch", "transformers", "pandas")

import html  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import gradio as gr  # noqa: E402

import decoding_strategies as ds  # noqa: E402
import decoding_views as views  # noqa: E402
from decoding_loop import PromptError, continue_from, pipeline  # noqa: E402
import decoding_service as svc  # noqa: E402
from shared.launch import launch  # noqa: E402
from shared.look import header  # noqa: E402
from shared.models import REGISTRY, ModelUnavailable, available, default  # noqa: E402

TITLE = "Decoding-strategy explorer"
TEACHES = ("The same model and prompt give very different text depending on how the next token is picked: "
           "compare greedy, beam search, sampling filters and contrastive search side by side, see each "
           "token's probability, the logits pipeline of any step, and branch the text at any token.")
STYLE = f"<style>{views.CSS}</style>"
STREAM_EVERY_S = 0.25

# (strategy, parameter, slider settings): the knobs shown in "Strategy parameters".
PARAM_UI = [
    ("temperature", "temperature", dict(minimum=0.05, maximum=2.0, step=0.05)),
    ("top_k", "top_k", dict(minimum=1, maximum=200, step=1)),
    ("top_k", "temperature", dict(minimum=0.05, maximum=2.0, step=0.05)),
    ("top_p", "top_p", dict(minimum=0.05, maximum=1.0, step=0.01)),
    ("top_p", "temperature", dict(minimum=0.05, maximum=2.0, step=0.05)),
    ("min_p", "min_p", dict(minimum=0.0, maximum=0.5, step=0.01)),
    ("min_p", "temperature", dict(minimum=0.05, maximum=2.0, step=0.05)),
    ("typical", "typical_p", dict(minimum=0.05, maximum=1.0, step=0.01)),
    ("beam", "num_beams", dict(minimum=2, maximum=ds.MAX_BEAMS, step=1)),
    ("beam", "length_penalty", dict(minimum=-2.0, maximum=3.0, step=0.1)),
    ("beam", "no_repeat_ngram_size", dict(minimum=0, maximum=6, step=1)),
    ("repetition_penalty", "repetition_penalty", dict(minimum=1.0, maximum=2.5, step=0.05)),
    ("contrastive", "penalty_alpha", dict(minimum=0.0, maximum=1.0, step=0.05)),
    ("contrastive", "contrastive_k", dict(minimum=2, maximum=10, step=1)),
]
EXAMPLE = "Write a short story about a robot who learns to paint."


def _overrides(values) -> dict:
    out: dict = {}
    for (name, param, _), value in zip(PARAM_UI, values):
        out.setdefault(name, {})[param] = value
    return out


def _default_values() -> list:
    return [getattr(ds.DEFAULTS[name], param) for name, param, _ in PARAM_UI]


def _model_choices() -> list[tuple[str, str]]:
    """Picker entries without touching the network (the availability labels come on page load)."""
    return [(spec.name, spec.name) for spec in REGISTRY["causal"]]


# ---------------------------------------------------------------- background model load

_preload = {"state": "idle", "message": ""}


def preload_default() -> None:
    """Import torch/transformers and load the embedded model after the server is up."""
    if _preload["state"] != "idle":
        return
    _preload["state"] = "loading"

    def work():
        try:
            loaded = svc.load(None)
            _preload.update(state="ready", message=loaded.status)
        except Exception as exc:  # shown in the status line
            _preload.update(state="failed", message=f"Could not load the embedded model: {exc}")

    threading.Thread(target=work, daemon=True, name="decoding-explorer-preload").start()


def status_text(model_name: str | None) -> str:
    from shared.loading import is_loaded

    name = (model_name or "").strip()
    if name and name != default("causal").name:
        return f"Model: **{name}** (loads when you press Generate)."
    if _preload["state"] == "ready" or is_loaded("causal"):
        return "Model in use: " + (_preload["message"] or svc.load(None).status)
    if _preload["state"] == "failed":
        return _preload["message"]
    return "⏳ Loading the embedded model (SmolLM2-135M-Instruct) in the background… you can type meanwhile."


# ---------------------------------------------------------------- event handlers

def on_page_load(model_name):
    preload_default()
    labels = available("causal")
    return (gr.Dropdown(choices=labels, value=model_name or default("causal").name),
            status_text(model_name), gr.Timer(active=_preload["state"] == "loading"))


def on_tick(model_name):
    return status_text(model_name), gr.Timer(active=_preload["state"] == "loading")


def on_model_change(model_name):
    try:
        loaded = svc.load(model_name)
    except ModelUnavailable as exc:
        gr.Warning(str(exc))
        return f"⚠️ {exc} The previous model stays in use until you pick one that loads."
    return "Model in use: " + loaded.status


def apply_preset(preset):
    spec = ds.PRESETS.get(preset) or {}
    values = _default_values()
    for i, (name, param, _) in enumerate(PARAM_UI):
        values[i] = (spec.get("overrides", {}).get(name) or {}).get(param, values[i])
    return [gr.CheckboxGroup(value=spec.get("strategies", ds.DEFAULT_SELECTION))] + values


def reset_all():
    return [gr.CheckboxGroup(value=ds.DEFAULT_SELECTION), gr.Dropdown(value=None)] + _default_values()


def run_compare(prompt, selected, model_name, chat, seed, max_new, *values):
    """Stream every selected strategy side by side; ends with metrics and the per-token view."""
    try:
        run = svc.prepare(prompt, selected, max_new, seed, chat, model_name, _overrides(values))
    except (PromptError, ModelUnavailable) as exc:
        raise gr.Error(str(exc)) from None
    for note in run.notes:
        gr.Info(note)
    tok = run.loaded.tokenizer
    notes = "\n".join(f"- {n}" for n in run.notes)
    status = "Model in use: " + run.loaded.status
    yield {notes_md: notes, status_md: status, cards: STYLE + views.cards_html([], tok)}
    last, outputs = 0.0, []
    for outputs in svc.stream(run):
        if time.monotonic() - last >= STREAM_EVERY_S:
            last = time.monotonic()
            yield {cards: STYLE + views.cards_html(outputs, tok)}
    session = {"outputs": outputs, "model": model_name, "max_new_tokens": run.max_new_tokens, "seed": run.seed,
               "step": None}
    labels = [(o.strategy.label, i) for i, o in enumerate(outputs)]
    yield {
        cards: STYLE + views.cards_html(outputs, tok),
        metrics_df: gr.Dataframe(value=views.metrics_table(outputs), headers=views.METRIC_HEADERS),
        state: session,
        view_pick: gr.Radio(choices=labels, value=0),
        tokens_hl: views.token_spans(outputs[0], tok),
        step_md: "Click a token above to see the alternatives the model considered at that step.",
        alt_pick: gr.Radio(choices=[], value=None),
        pipe_html: "",
        branch_hl: None,
        branch_md: "",
    }


def show_strategy(session, index):
    if not session or index is None:
        return None, "", gr.Radio(choices=[], value=None), ""
    tok = svc.load(session["model"]).tokenizer
    output = session["outputs"][int(index)]
    return (views.token_spans(output, tok), "Click a token above to see the alternatives at that step.",
            gr.Radio(choices=[], value=None), "")


def select_token(session, index, evt: gr.SelectData):
    """A token was clicked: its alternatives, and the logits pipeline of that step."""
    if not session or index is None:
        return session, "Generate something first.", gr.Radio(choices=[]), ""
    loaded = svc.load(session["model"])
    output = session["outputs"][int(index)]
    step = evt.index if isinstance(evt.index, int) else (evt.index[0] if evt.index else 0)
    if not 0 <= step < len(output.ids):
        return session, "Click one of the generated tokens.", gr.Radio(choices=[]), ""
    session = dict(session, step=step, index=int(index))
    choices = views.alternatives(output, step, loaded.tokenizer)
    result = pipeline(loaded.model, output.prompt_ids + output.ids[:step], output.strategy)
    return (session, views.step_summary(output, step, loaded.tokenizer),
            gr.Radio(choices=choices, value=next((v for label, v in choices if "picked" not in label), None)),
            STYLE + views.pipeline_html(result, loaded.tokenizer, chosen=output.ids[step]))


def branch(session, token_id):
    if not session or session.get("step") is None:
        raise gr.Error("Click a token in the per-token view first, then pick an alternative.")
    if token_id is None:
        raise gr.Error("Pick one of the alternatives first.")
    loaded = svc.load(session["model"])
    output = session["outputs"][session["index"]]
    step = session["step"]
    new = continue_from(loaded.model, loaded.tokenizer, output, step, int(token_id), session["max_new_tokens"],
                        session["seed"])
    tok = loaded.tokenizer
    before = tok.decode(output.ids[:step], skip_special_tokens=True)
    forced = tok.decode([int(token_id)])
    m = views.metrics(new)
    text = (f"**Branch of {output.strategy.label} at step {step + 1}** with `{forced!r}`: "
            f"{m['tokens']} tokens, mean log-prob {m['mean_logprob']}, perplexity {m['perplexity']}.\n\n"
            f"> {html.escape(before)}<mark><b>{html.escape(forced)}</b></mark>"
            f"{html.escape(tok.decode(new.ids[step + 1:], skip_special_tokens=True))}")
    return views.token_spans(new, tok), text


def compare_api(prompt: str, strategies: list[str], max_new_tokens: int = 64, seed: int = 0,
                chat_template: bool = True, params: str = "", model: str = "") -> dict:
    """Run `prompt` through each named strategy (same seed) and return, per strategy, its text,
    tokens/s and every token with its probability and the model's top alternatives."""
    if isinstance(strategies, str):
        strategies = [strategies]
    return svc.compare_json(prompt, strategies, max_new_tokens, seed, chat_template, params, model or None)


# ---------------------------------------------------------------- layout

def build_demo() -> gr.Blocks:
    global cards, metrics_df, state, view_pick, tokens_hl, step_md, alt_pick, pipe_html, branch_hl, branch_md
    global notes_md, status_md
    with gr.Blocks(title=TITLE) as demo:
        header(TITLE, TEACHES)
        gr.HTML(STYLE, padding=False)
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", value=EXAMPLE, lines=3, max_lines=8)
                with gr.Row():
                    model = gr.Dropdown(choices=_model_choices(), value=default("causal").name, label="Model",
                                        allow_custom_value=True, scale=3,
                                        info="Pick one, or type any causal LM id from the Hub (e.g. gpt2).")
                    chat = gr.Checkbox(value=True, label="Chat template", scale=1,
                                       info="Wrap the prompt as a user turn (instruct models).")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
                    max_new = gr.Slider(1, ds.MAX_NEW_TOKENS, value=64, step=1, label="Max new tokens")
            with gr.Column(scale=2):
                strategies = gr.CheckboxGroup(choices=[(s.label, s.name) for s in ds.DEFAULTS.values()],
                                              value=ds.DEFAULT_SELECTION, label="Strategies")
                with gr.Row():
                    preset = gr.Dropdown(choices=list(ds.PRESETS), value=None, label="Preset", scale=3)
                    reset = gr.Button("Reset", scale=1, variant="secondary")
        with gr.Accordion("Strategy parameters", open=False):
            by_key = {}
            with gr.Row():
                for name, spec in ds.DEFAULTS.items():
                    knobs = [(p, kw) for n, p, kw in PARAM_UI if n == name]
                    if not knobs:
                        continue
                    with gr.Column(min_width=200):
                        gr.Markdown(f"**{spec.label}**  \n<small>{spec.explain}</small>")
                        for param, kw in knobs:
                            by_key[name, param] = gr.Slider(value=getattr(spec, param), label=param, **kw)
            sliders = [by_key[name, param] for name, param, _ in PARAM_UI]  # the order _overrides() expects
        with gr.Row():
            go = gr.Button("Generate side by side", variant="primary", scale=3)
            stop = gr.Button("Stop", variant="stop", scale=1)
        status_md = gr.Markdown(status_text(None), elem_classes=["model-status"])
        notes_md = gr.Markdown("")
        cards = gr.HTML("", label="Outputs")
        metrics_df = gr.Dataframe(headers=views.METRIC_HEADERS, label="Metrics", interactive=False, wrap=True)
        gr.Markdown("### Per-token view\nEach token is coloured by the probability the model gave it. "
                    "Click a token to see the alternatives and the logits pipeline of that step; "
                    "pick an alternative and **Branch** to continue from there.")
        view_pick = gr.Radio(choices=[], label="Strategy", type="value")
        tokens_hl = gr.HighlightedText(label="Tokens (colour = model probability)", color_map=views.COLORS,
                                       show_legend=True, show_inline_category=False, combine_adjacent=False,
                                       interactive=False)
        step_md = gr.Markdown("")
        with gr.Row():
            with gr.Column(scale=1):
                alt_pick = gr.Radio(choices=[], label="Alternatives at this step (model probability)")
                branch_btn = gr.Button("Branch: continue with this token")
            with gr.Column(scale=2):
                pipe_html = gr.HTML("", label="Logits pipeline of this step")
        branch_md = gr.Markdown("")
        branch_hl = gr.HighlightedText(label="Branched output", color_map=views.COLORS, show_legend=False,
                                       show_inline_category=False, interactive=False)
        timer = gr.Timer(1.0, active=False)

        inputs = [prompt, strategies, model, chat, seed, max_new] + sliders
        outputs = [cards, metrics_df, state, view_pick, tokens_hl, step_md, alt_pick, pipe_html, branch_hl,
                   branch_md, notes_md, status_md]
        disable = go.click(lambda: gr.Button(interactive=False, value="Generating…"), None, go, queue=False,
                           api_visibility="private")
        run_event = disable.then(run_compare, inputs, outputs, api_name="run", concurrency_limit=2)
        run_event.then(lambda: gr.Button(interactive=True, value="Generate side by side"), None, go,
                       api_visibility="private")
        stop.click(lambda: gr.Button(interactive=True, value="Generate side by side"), None, go, cancels=[run_event],
                   queue=False, api_visibility="private")
        preset.input(apply_preset, preset, [strategies] + sliders, api_visibility="private")
        reset.click(reset_all, None, [strategies, preset] + sliders, api_visibility="private")
        model.change(on_model_change, model, status_md, api_visibility="private")
        view_pick.change(show_strategy, [state, view_pick], [tokens_hl, step_md, alt_pick, pipe_html],
                         api_visibility="private")
        tokens_hl.select(select_token, [state, view_pick], [state, step_md, alt_pick, pipe_html],
                         api_visibility="private")
        branch_btn.click(branch, [state, alt_pick], [branch_hl, branch_md], api_visibility="private")
        demo.load(on_page_load, model, [model, status_md, timer], api_visibility="private")
        timer.tick(on_tick, model, [status_md, timer], api_visibility="private")
        gr.api(compare_api, api_name="compare", concurrency_limit=2)
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo, prevent_thread_lock=True)
    preload_default()  # torch, transformers and the model load once the server answers
    demo.block_thread()
