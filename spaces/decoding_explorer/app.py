"""Decoding-strategy explorer: the Gradio UI. What it computes lives in decoding_*.py.

Run it: python spaces/decoding_explorer/app.py   (or bash scripts/run_lab.sh decoding_explorer)"""
from shared.bootstrap import require

require("gradio", "torch", "transformers", "pandas")

import time

import gradio as gr

import decoding_service as svc
import decoding_strategies as ds
import decoding_views as views
from shared import jobs
from shared.errors import UserError, ui_error
from shared.launch import launch
from shared.look import lab_header, lab_title
from shared.models import REGISTRY, ModelUnavailable, available, default

GENERATE = "Generate side by side"


def compare_api(prompt: str, strategies: list[str], max_new_tokens: int = 64, seed: int = 0,
                chat_template: bool = True, params: str = "", model: str = "") -> dict:
    """Run `prompt` through each named strategy (same seed) and return, per strategy, its text,
    tokens/s and every token with its probability and the model's top alternatives."""
    if isinstance(strategies, str):
        strategies = [strategies]
    return svc.compare_json(prompt, strategies, max_new_tokens, seed, chat_template, params, model or None)


def compare_endpoint_api(url: str, prompt: str, strategies: list[str], max_new_tokens: int = 64, seed: int = 0,
                         chat_template: bool = True, params: str = "", model: str = "", api_key: str = "") -> dict:
    """The same comparison on an OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama) at `url`:
    greedy and sampling strategies only, each token's probability and alternatives where the server
    returns log-probabilities, and `views_missing` for what it does not give."""
    if isinstance(strategies, str):
        strategies = [strategies]
    return svc.compare_endpoint_json(url, prompt, strategies, max_new_tokens, seed, chat_template, params, model,
                                     api_key)


# ---------------------------------------------------------------- settings: prompt, model, strategies

def build_settings() -> dict:
    """Prompt, model, seed, length, the ticked strategies, presets and every strategy's knobs."""
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Prompt", value=ds.EXAMPLE_PROMPT, lines=3, max_lines=8)
            with gr.Row(elem_classes=["dx-stack"]):
                model = gr.Dropdown(choices=[(s.name, s.name) for s in REGISTRY["causal"]], value=default("causal").name,
                                    label="Model", allow_custom_value=True, scale=3, min_width=220,
                                    info="Pick one, or type any causal LM id from the Hub (e.g. gpt2).")
                chat = gr.Checkbox(value=True, label="Chat template", scale=1, min_width=160,
                                   info="Wrap the prompt as a user turn (instruct models).")
            with gr.Row(elem_classes=["dx-stack"]):
                seed = gr.Number(value=0, precision=0, label="Seed", minimum=0, min_width=120)
                max_new = gr.Slider(1, ds.MAX_NEW_TOKENS, value=ds.DEFAULT_NEW_TOKENS, step=1, label="Max new tokens",
                                    min_width=200)
        with gr.Column(scale=2):
            strategies = gr.CheckboxGroup(choices=[(s.label, s.name) for s in ds.DEFAULTS.values()],
                                          value=ds.DEFAULT_SELECTION, label="Strategies")
            with gr.Row():
                preset = gr.Dropdown(choices=list(ds.PRESETS), value=ds.DEFAULT_PRESET, label="Preset", scale=3,
                                     allow_custom_value=True, min_width=200,
                                     info=f"'{ds.CUSTOM}' when your ticks and knobs match no preset.")
                reset = gr.Button("Reset", scale=1, variant="secondary", min_width=80)
    with gr.Accordion("Strategy parameters", open=False):
        by_key = {}
        with gr.Row():
            for name, spec in ds.DEFAULTS.items():
                knobs = [(p, kw) for n, p, kw in ds.PARAM_UI if n == name]
                if not knobs:
                    continue
                with gr.Column(min_width=200):
                    gr.Markdown(f"**{spec.label}**  \n<small>{spec.explain}</small>")
                    for param, kw in knobs:
                        by_key[name, param] = gr.Slider(value=getattr(spec, param), label=param, **kw)
    sliders = [by_key[name, param] for name, param, _ in ds.PARAM_UI]  # in PARAM_UI order

    def apply_preset(data):
        name = data[preset]
        if name not in ds.PRESETS:
            return {preset: ds.preset_of(data[strategies], [data[s] for s in sliders])}
        names, values = ds.preset_values(name)
        return {strategies: names, **dict(zip(sliders, values))}

    def follow_settings(data):
        return {preset: ds.preset_of(data[strategies], [data[s] for s in sliders])}

    def reset_all():
        names, values = ds.preset_values(ds.DEFAULT_PRESET)
        return {strategies: names, preset: ds.DEFAULT_PRESET, **dict(zip(sliders, values))}

    preset.input(apply_preset, {preset, strategies, *sliders}, [preset, strategies, *sliders],
                 api_visibility="private", queue=False)
    gr.on([strategies.input] + [s.input for s in sliders], follow_settings, {strategies, *sliders}, preset,
          api_visibility="private", queue=False, show_progress="hidden")
    reset.click(reset_all, None, [strategies, preset, *sliders], api_visibility="private", queue=False)
    return dict(prompt=prompt, model=model, chat=chat, seed=seed, max_new=max_new, strategies=strategies,
                sliders=sliders)


def build_model_line(demo: gr.Blocks, model: gr.Dropdown) -> None:
    """Which model is in use and why; the embedded one loads in the background after the page opens."""
    status = gr.Markdown(svc.status_text(None, "not started"), elem_classes=["model-status"])
    preload_id = gr.State("")
    timer = gr.Timer(1.0, active=False)

    def on_page_load(model_name):
        job = svc.preload()
        return {model: gr.Dropdown(choices=available("causal"), value=model_name or default("causal").name),
                status: svc.status_text(model_name, job.id), timer: gr.Timer(active=jobs.poll(job.id)["active"]),
                preload_id: job.id}

    def on_tick(model_name, job_id):
        return {status: svc.status_text(model_name, job_id), timer: gr.Timer(active=jobs.poll(job_id)["active"])}

    def on_model_change(model_name, job_id):
        if not model_name or model_name == default("causal").name:
            return svc.status_text(model_name, job_id)
        try:
            loaded = svc.load(model_name)
        except ModelUnavailable as exc:
            gr.Warning(str(exc))
            return f"⚠️ {exc} The previous model stays in use until you pick one that loads."
        return "Model in use: " + loaded.status

    demo.load(on_page_load, model, [model, status, timer, preload_id], api_visibility="private")
    timer.tick(on_tick, [model, preload_id], [status, timer], api_visibility="private", show_progress="hidden")
    model.change(on_model_change, [model, preload_id], status, api_visibility="private")


# ---------------------------------------------------------------- the run: cards, metrics, per-token view

def build_token_view(session: gr.State) -> dict:
    """Every token of one strategy coloured by its probability; click one for its alternatives and
    the logits pipeline of that step; Branch continues from another token."""
    gr.Markdown("### Per-token view")
    hint = gr.Markdown(views.EMPTY_TOKENS)
    with gr.Column(visible=False) as box:
        gr.Markdown("Each token is coloured by the probability the model gave it. Click a token to see the "
                    "alternatives and the logits pipeline of that step; pick an alternative and **Branch** to "
                    "continue from there.")
        pick = gr.Radio(choices=[], label="Strategy", type="value")
        tokens = gr.HighlightedText(label="Tokens (colour = model probability)", color_map=views.COLORS,
                                    show_legend=True, show_inline_category=False, combine_adjacent=False,
                                    interactive=False)
        step_md = gr.Markdown("")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                alts = gr.Radio(choices=[], label="Alternatives at this step (model probability)", visible=False)
                branch_btn = gr.Button("Branch: continue with this token", visible=False)
            with gr.Column(scale=2, min_width=300):
                pipe = gr.HTML("", label="Logits pipeline of this step")
        branch_md = gr.Markdown("")
        branch_hl = gr.HighlightedText(label="Branched output", color_map=views.COLORS, show_legend=False,
                                       show_inline_category=False, interactive=False, visible=False)

    def no_branch() -> dict:
        """A branch belongs to the token it was made at: another token or strategy clears it."""
        return {branch_md: "", branch_hl: gr.HighlightedText(value=None, visible=False)}

    def show_strategy(state, index):
        if not state or index is None:
            return {}
        output = state["outputs"][int(index)]
        tok = svc.load(state["model"]).tokenizer
        return {tokens: views.token_spans(output, tok),
                step_md: "Click a token above to see the alternatives at that step." if output.ids
                else "This strategy produced no token before Stop.",
                alts: gr.Radio(choices=[], value=None, visible=False), pipe: "",
                branch_btn: gr.Button(visible=False), **no_branch()}

    def select_token(state, index, evt: gr.SelectData):
        if not state or index is None:
            return {step_md: "Generate something first."}
        output = state["outputs"][int(index)]
        step = evt.index if isinstance(evt.index, int) else (evt.index[0] if evt.index else 0)
        if not 0 <= step < len(output.ids):
            return {step_md: "Click one of the generated tokens."}
        tok = svc.load(state["model"]).tokenizer
        choices = views.alternatives(output, step, tok)
        result = svc.step_pipeline(state["model"], output, step)
        return {session: dict(state, step=step, index=int(index)),
                step_md: views.step_summary(output, step, tok),
                alts: gr.Radio(choices=choices, visible=True,
                               value=next((v for label, v in choices if "picked" not in label), None)),
                pipe: views.pipeline_html(result, tok, chosen=output.ids[step]),
                branch_btn: gr.Button(visible=True), **no_branch()}

    def branch(state, token_id):
        try:
            if not state or state.get("step") is None:
                raise UserError("Click a token in the per-token view first, then pick an alternative.")
            if token_id is None:
                raise UserError("Pick one of the alternatives first.")
            output = state["outputs"][state["index"]]
            new = svc.branch(state["model"], output, state["step"], int(token_id), state["max_new_tokens"],
                             state["seed"])
        except Exception as exc:
            raise ui_error(exc, "Branching") from None
        tok = svc.load(state["model"]).tokenizer
        return {branch_hl: gr.HighlightedText(value=views.token_spans(new, tok), visible=True),
                branch_md: views.branch_summary(output, new, state["step"], tok)}

    pick.change(show_strategy, [session, pick], [tokens, step_md, alts, pipe, branch_btn, branch_md, branch_hl],
                api_visibility="private")
    tokens.select(select_token, [session, pick], [session, step_md, alts, pipe, branch_btn, branch_md, branch_hl],
                  api_visibility="private")
    branch_btn.click(branch, [session, alts], [branch_hl, branch_md], api_visibility="private")
    return dict(hint=hint, box=box, pick=pick, tokens=tokens, step_md=step_md, alts=alts, pipe=pipe,
                branch_btn=branch_btn, branch_md=branch_md, branch_hl=branch_hl)


def build_run(settings: dict) -> None:
    """Generate and Stop, the cards streamed while the strategies run, the metrics, the token view."""
    with gr.Row():
        go = gr.Button(GENERATE, variant="primary", scale=3)
        stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
    run_id = gr.State("")
    session = gr.State(None)
    notes = gr.Markdown("")
    stale = gr.Markdown("")
    cards = gr.HTML(views.STYLE + views.empty_html(), label="Outputs")
    metrics = gr.Dataframe(headers=views.METRIC_HEADERS, label="Metrics", interactive=False, wrap=False,
                           column_widths=views.METRIC_WIDTHS, visible=False)
    view = build_token_view(session)
    s = settings
    inputs = {s["prompt"], s["strategies"], s["model"], s["chat"], s["seed"], s["max_new"], *s["sliders"]}

    def start(data):
        """Check what needs no model (an error leaves every control as it was), then queue the run."""
        try:
            checked = svc.check(data[s["prompt"]], data[s["strategies"]], data[s["max_new"]], data[s["seed"]],
                                data[s["chat"]], data[s["model"]], ds.overrides_from([data[k] for k in s["sliders"]]),
                                ui=True)
        except UserError as exc:
            raise ui_error(exc) from None
        for note in checked.notes:
            gr.Info(note)
        job = svc.start(checked)
        return {run_id: job.id, go: gr.Button(interactive=False, value="Generating…")}

    def follow(job_id):
        """Redraw the cards while the job runs; when it ends (done, stopped or failed) show everything
        and give the button back."""
        job = jobs.get(job_id)
        if job is None:
            yield {go: gr.Button(interactive=True, value=GENERATE)}
            return
        shown = None
        try:
            while True:
                info = jobs.poll(job_id)
                live = job.result
                outputs = list(live.outputs) if live else []
                key = (info["state"], info["message"], tuple((len(o.ids), o.done) for o in outputs))
                if key != shown and info["active"]:
                    shown = key
                    if outputs:
                        html = views.cards_html(outputs, live.run.loaded.tokenizer)
                    elif info["state"] == jobs.QUEUED:
                        html = views.waiting_html(f"Other generations are running: yours is number {info['position']} "
                                                  "in line and starts by itself.")
                    elif live is not None and live.position:  # the shared batch is full: its place in line
                        html = views.waiting_html(svc.waiting_text(live.position).capitalize() + ".")
                    else:
                        html = views.waiting_html("Loading the model and reading the prompt…")
                    yield {cards: views.STYLE + html}
                if not info["active"]:
                    break
                time.sleep(ds.STREAM_EVERY_S)
        except GeneratorExit:  # the page was closed: free the slot
            jobs.stop(job_id)
            raise
        yield finished(job)

    def finished(job) -> dict:
        live = job.result
        ready = {go: gr.Button(interactive=True, value=GENERATE), stale: ""}
        if job.state == jobs.ERROR or live is None or live.run is None or not live.outputs:
            if job.state == jobs.ERROR:
                gr.Warning(job.error)
                return {**ready, cards: views.STYLE + views.error_html(job.error), notes: ""}
            return {**ready, cards: views.STYLE + views.waiting_html("Stopped before the first token."), notes: ""}
        run, outputs = live.run, live.outputs
        tok = run.loaded.tokenizer
        stopped = any(o.stopped for o in outputs)
        labels = [(o.strategy.label, i) for i, o in enumerate(outputs)]
        return {
            **ready,
            notes: views.run_summary(outputs, stopped, run.notes),
            cards: views.STYLE + views.cards_html(outputs, tok),
            metrics: gr.Dataframe(value=views.metrics_table(outputs), headers=views.METRIC_HEADERS, visible=True),
            session: {"outputs": outputs, "model": live.checked.model, "max_new_tokens": run.max_new_tokens,
                      "seed": run.seed, "step": None},
            view["hint"]: gr.Markdown(visible=False),
            view["box"]: gr.Column(visible=True),
            view["pick"]: gr.Radio(choices=labels, value=0),
            view["tokens"]: views.token_spans(outputs[0], tok),
            view["step_md"]: "Click a token above to see the alternatives the model considered at that step.",
            view["alts"]: gr.Radio(choices=[], value=None, visible=False),
            view["pipe"]: "",
            view["branch_btn"]: gr.Button(visible=False),
            view["branch_hl"]: gr.HighlightedText(value=None, visible=False),
            view["branch_md"]: "",
        }

    shown_by_run = [cards, metrics, notes, stale, session, go] + [view[k] for k in (
        "hint", "box", "pick", "tokens", "step_md", "alts", "pipe", "branch_btn", "branch_hl", "branch_md")]
    go.click(start, inputs, [run_id, go], api_visibility="private", show_progress="hidden",
             concurrency_limit=None).success(
        follow, run_id, shown_by_run, api_visibility="private", show_progress="hidden", concurrency_limit=None)
    def settings_changed(state):
        if not state:
            return ""
        return ("⚠️ The settings changed since this run: the cards, metrics and tokens below are of the previous "
                "settings. Press **Generate side by side** to run again.")

    gr.on([s[k].change for k in ("prompt", "strategies", "model", "chat", "seed", "max_new")]
          + [k.change for k in s["sliders"]], settings_changed, session, stale, queue=False, show_progress="hidden",
          api_visibility="private")

    def stop_run(job_id):
        jobs.stop(job_id)  # the run ends after its current step; follow() then shows what it produced

    stop.click(stop_run, run_id, None, api_visibility="private", queue=False)


def build_demo() -> gr.Blocks:
    with gr.Blocks(title=lab_title(__file__)) as demo:
        lab_header(__file__)
        settings = build_settings()
        build_model_line(demo, settings["model"])
        build_run(settings)
        gr.api(compare_api, api_name="compare", concurrency_limit=ds.RUN_SLOTS)  # runs share forward passes
        gr.api(compare_endpoint_api, api_name="compare_endpoint", concurrency_limit=ds.RUN_SLOTS)
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo, prevent_thread_lock=True)
    svc.preload()  # torch, transformers and the model load once the server answers
    demo.block_thread()
