"""Quantization memory comparer: the Gradio UI. What it computes lives in quant_*.py.

Run it: python spaces/quantization_comparer/app.py   (or bash scripts/run_lab.sh quantization_comparer)"""
from shared.bootstrap import require

require("gradio", "torch", "transformers", "accelerate", "bitsandbytes", "pandas", "psutil")

import gradio as gr

import quant_configs as configs
import quant_estimate as est
import quant_measure as meas
import quant_views as views
from shared import jobs
from shared.errors import UserError, api, message, ui_error
from shared.launch import launch
from shared.look import lab_header, lab_title
from shared.memory import fmt_bytes


@api("The estimate")
def estimate_api(model: str, context_len: int = est.DEFAULT_CONTEXT, batch_size: int = est.DEFAULT_BATCH) -> dict:
    """Estimated memory per precision (weights, KV cache, total, formulas), training memory and
    which devices it fits, for `model` (an embedded model, a shipped config name or a Hub id)."""
    return est.estimate(configs.resolve_model(model), context_len, batch_size)


@api("The measurement")
def measure_api(model: str, precisions: list[str]) -> dict:
    """Load `model` at each of `precisions` (fp32, fp16, bf16, int8, nf4, nf4-dq) and measure it:
    estimated_bytes, measured_bytes, load_s, ms_per_token and perplexity per precision. Waits its
    turn behind other measurements (the UI's included)."""
    job = meas.start_measurement(model, precisions)
    job.wait()
    return job.result if job.state == jobs.DONE else {"error": job.error or "The measurement was stopped."}


def build_model_row() -> dict:
    """The model picker, context and batch, and the line that says what the model is (or why not)."""
    with gr.Row(elem_classes=["qc-stack"]):
        model = gr.Dropdown(configs.choices(), value=configs.SMOLLM2, label="Model", allow_custom_value=True,
                            scale=3, min_width=240,
                            info="Embedded models measure offline; shipped configs estimate offline; "
                                 "or type a Hub id (needs the Hub or the local cache).")
        context = gr.Number(est.DEFAULT_CONTEXT, label="Context length (tokens)", precision=0, minimum=1, scale=1,
                            min_width=150)
        batch = gr.Number(est.DEFAULT_BATCH, label="Batch size", precision=0, minimum=1, scale=1, min_width=120)
    # Filled on page load: reading configs imports transformers, which would slow the start-up.
    info = gr.Markdown("Reading the model's config…", elem_classes=["model-status"])
    return dict(model=model, context=context, batch=batch, info=info)


def build_estimate_tab(demo: gr.Blocks, row: dict) -> None:
    """The estimate of the picked model, redrawn whenever the model, context or batch changes."""
    gr.Markdown("From the model's config alone, on the meta device: no weights are downloaded.")
    summary = gr.Markdown()
    empty = gr.HTML(views.empty_html(views.EMPTY_ESTIMATE))
    # One chart per unit: gradio 6 redraws a plot's data only when its axis title is left alone.
    charts = {unit: gr.BarPlot(x="precision", y="memory", color="part", title="Weights + KV cache",
                               y_title=unit, sort=est.PRECISIONS, height=300, visible=False) for unit in views.UNITS}
    table = gr.Dataframe(label="Weights per precision (every number with its formula)", wrap=True,
                         column_widths=views.ESTIMATE_WIDTHS, max_height=1200, visible=False)
    kv = gr.Markdown()
    training = gr.Dataframe(label="Training memory (weights + gradients + optimizer + activations)", wrap=True,
                            column_widths=views.TRAINING_WIDTHS, max_height=800, visible=False)
    fits = gr.Dataframe(label="Does it fit? (yes / tight = over 90% / no; nominal GB, leave ~0.5 GB for the CUDA "
                              "context)", wrap=True, max_height=1000, visible=False)
    with gr.Accordion("Raw JSON (what /estimate returns)", open=False):
        raw = gr.JSON()
    shown = [summary, empty, *charts.values(), table, kv, training, fits, raw]

    def nothing(text: str) -> dict:
        """One message in one place: the estimate area says there is none, and why."""
        return {summary: "", empty: gr.HTML(views.empty_html(text), visible=True),
                **{c: gr.BarPlot(visible=False) for c in charts.values()},
                table: gr.Dataframe(visible=False), kv: "", training: gr.Dataframe(visible=False),
                fits: gr.Dataframe(visible=False), raw: None}

    def update(name, context_len, batch_size):
        try:
            ref = configs.resolve_model(name)
        except Exception as exc:  # the model line is the one place that says why
            return {row["info"]: views.model_problem(message(exc, "Reading the model")), **nothing(views.NO_ESTIMATE)}
        line = {row["info"]: views.model_line(ref)}
        try:
            data = est.estimate(ref, context_len, batch_size)
        except Exception as exc:
            return {**line, **nothing("No estimate: " + message(exc, "The estimate"))}
        v = views.estimate_views(data)
        return {**line, summary: v["summary"], empty: gr.HTML(visible=False),
                **{c: gr.BarPlot(value=v["chart"], visible=True) if unit == v["unit"] else gr.BarPlot(visible=False)
                   for unit, c in charts.items()},
                table: gr.Dataframe(value=v["table"], visible=True), kv: v["kv"],
                training: gr.Dataframe(value=v["training"], visible=True),
                fits: gr.Dataframe(value=v["fits"], visible=True,
                                   column_widths=views.fits_widths(len(v["fits"].columns))), raw: data}

    inputs = [row["model"], row["context"], row["batch"]]
    gr.on([row["model"].change, row["context"].change, row["batch"].change], update, inputs, [row["info"], *shown],
          api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    demo.load(update, inputs, [row["info"], *shown], api_visibility="private")


def build_measure_tab(demo: gr.Blocks, row: dict) -> None:
    """Load the model for real at each precision, as a shared.jobs job followed by a timer; Stop
    ends it after the current precision; a second user waits in line and sees their place."""
    machine = gr.Markdown(views.MEASURE_NOTE)
    with gr.Row():
        precisions = gr.CheckboxGroup(est.PRECISIONS, value=meas.DEFAULT_PRECISIONS, label="Precisions", scale=3,
                                      min_width=240)
        with gr.Column(scale=1, min_width=140):
            go = gr.Button("Measure", variant="primary")
            stop = gr.Button("Stop", variant="stop")
    status = gr.Markdown("")
    stale = gr.Markdown("")
    empty = gr.HTML(views.empty_html(views.EMPTY_MEASURE))
    charts = {unit: gr.BarPlot(x="bar", y="memory", color="kind", title="Weights: estimate, measured, naive",
                               y_title=unit, x_title="precision", height=320, x_label_angle=-30,
                               visible=False) for unit in views.UNITS}  # one per unit, as in the Estimate tab
    table = gr.Dataframe(label="Estimated vs measured (measured = the loaded tensors + quantization state)",
                         wrap=True, column_widths=views.MEASURE_WIDTHS, max_height=1200, visible=False)
    legend = gr.Markdown(views.MEASURE_LEGEND, visible=False)
    quality = gr.Markdown()
    with gr.Accordion("Raw JSON (what /measure returns)", open=False):
        raw = gr.JSON()
    job_id = gr.State("")
    measured_for = gr.State("")  # the picker's name of the measurement shown (or running)
    timer = gr.Timer(1.0, active=False)

    def clear():
        return {status: "", stale: ""}

    def start(name, names):
        try:
            job = meas.start_measurement(name, names)
        except UserError as exc:
            raise ui_error(exc) from None
        return {job_id: job.id, measured_for: name, timer: gr.Timer(active=True),
                go: gr.Button(interactive=False, value="Measuring…")}

    def set_aside():
        """A new measurement is under way: the last one's results give way to it."""
        return {empty: gr.HTML(views.empty_html(views.MEASURING), visible=True), quality: "", raw: None,
                **{c: gr.BarPlot(visible=False) for c in charts.values()}, table: gr.Dataframe(visible=False),
                legend: gr.Markdown(visible=False)}

    def follow(jid, name):
        poll = jobs.poll(jid)
        if poll["active"]:
            return {status: views.job_line(poll, name)}
        ready = {timer: gr.Timer(active=False), go: gr.Button(interactive=True, value="Measure"),
                 status: views.job_line(poll, name)}
        data = (jobs.get(jid).result if jobs.get(jid) else None)
        if not isinstance(data, dict) or not data.get("results"):
            return ready
        v = views.measure_views(data)
        return {**ready, empty: gr.HTML(visible=False), quality: v["quality"], raw: data,
                **{c: gr.BarPlot(value=v["chart"], visible=True) if unit == v["unit"] else gr.BarPlot(visible=False)
                   for unit, c in charts.items()},
                table: gr.Dataframe(value=v["table"], visible=True), legend: gr.Markdown(visible=True)}

    def stop_measuring(jid):
        jobs.stop(jid)  # the job ends after the precision it is measuring; the timer then shows it

    def machine_line():
        from shared.device import pick_device

        total, available = est.machine_ram()
        return (f"This machine: **{pick_device()}**, {fmt_bytes(total)} RAM ({fmt_bytes(available)} free). "
                + views.MEASURE_NOTE)

    go.click(clear, None, [status, stale], queue=False, api_visibility="private").then(
        start, [row["model"], precisions], [job_id, measured_for, timer, go], api_visibility="private",
        show_progress="hidden", concurrency_limit=None).success(
        set_aside, None, [empty, quality, raw, *charts.values(), table, legend], queue=False, api_visibility="private")
    timer.tick(follow, [job_id, measured_for],
               [status, timer, go, empty, quality, raw, *charts.values(), table, legend], api_visibility="private",
               show_progress="hidden")
    stop.click(stop_measuring, job_id, None, queue=False, api_visibility="private")
    row["model"].change(views.stale_line, [measured_for, row["model"]], stale, queue=False, api_visibility="private")
    demo.load(machine_line, None, machine, api_visibility="private")


def build_demo() -> gr.Blocks:
    with gr.Blocks(title=lab_title(__file__)) as demo:
        lab_header(__file__)
        row = build_model_row()
        with gr.Tabs():
            with gr.Tab("Estimate"):
                build_estimate_tab(demo, row)
            with gr.Tab("Measure"):
                build_measure_tab(demo, row)
        gr.Markdown(views.DEVICES_NOTE)
        gr.api(estimate_api, api_name="estimate")
        gr.api(measure_api, api_name="measure", concurrency_limit=4)
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo)
