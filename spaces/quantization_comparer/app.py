import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# shared/ sits beside app.py in a deployed Space bundle, two folders up in the repo.
sys.path.insert(0, str(HERE if (HERE / "shared").is_dir() else HERE.parent.parent))
sys.path.insert(0, str(HERE))
from shared.bootstrap import require  # noqa: E402

require("gradio", "torch", "transformers", "accelerate", "bitsandbytes", "pandas", "psutil")
import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from quant_configs import SMOLLM2, choices, resolve_model  # noqa: E402
from quant_estimate import DEVICES, PRECISIONS, EstimateError, estimate, machine_ram  # noqa: E402
from quant_measure import MeasurementBusy, TooLarge, busy, measure, parse_precisions, running_info  # noqa: E402
from shared.launch import launch  # noqa: E402
from shared.look import header  # noqa: E402
from shared.memory import fmt_bytes  # noqa: E402
from shared.models import ModelUnavailable  # noqa: E402

TITLE = "Quantization memory comparer"
TEACHES = ("What precision costs and buys: memory, speed and quality of one model in fp32, fp16, bf16, int8 "
           "and 4-bit NF4, estimated from its config and measured for real, side by side.")
DEFAULT_MEASURE = ["fp32", "bf16", "int8", "nf4", "nf4-dq"]
EXPECTED = (ModelUnavailable, EstimateError, TooLarge, MeasurementBusy, ValueError)


MEASURE_NOTE = ("Each precision loads the model again with bitsandbytes (int8, nf4) or a dtype (fp32, fp16, "
                "bf16) and frees it afterwards. On a CPU, fp16 matmuls are slow: expect 10-60 s per precision "
                "for SmolLM2 (more on a busy machine).")


def _machine_line() -> str:
    from shared.device import pick_device

    total, available = machine_ram()
    return (f"This machine: **{pick_device()}**, {fmt_bytes(total)} RAM ({fmt_bytes(available)} free). "
            "Measurements run here, one at a time.")


def model_info(name: str) -> str:
    try:
        ref = resolve_model(name)
    except EXPECTED as exc:
        return f"**Cannot use this model:** {exc}"
    hub = f" · Hub: `{ref.hub_id}`" if ref.hub_id else ""
    return f"**{ref.name}** · {ref.kind} · source: {ref.source}{hub}  \n{ref.note}"


# ---------------------------------------------------------------- estimate tab
def _estimate_views(data: dict):
    p = data["parameters"]
    parts = ", ".join(f"{k} {v:,}" for k, v in p["unquantized_parts"].items())
    summary = (f"### {data['model']}: {p['total']:,} parameters\n"
               f"- **{p['quantizable']:,}** in {p['quantized_layers']} linear layers that bitsandbytes quantizes\n"
               f"- **{p['unquantized']:,}** stay in 16-bit ({parts})"
               + (" · input and output embeddings are **tied** (stored once)" if p["tied_embeddings"] else "")
               + f"\n- context {data['context_len']:,} tokens × batch {data['batch_size']}")
    for w in data["warnings"]:
        summary += f"\n\n> ⚠️ {w}"
    rows, chart = [], []
    for prec, d in data["precisions"].items():
        rows.append({"precision": prec, "weights": d["weights"],
                     "bits / quantized weight": d["bits_per_quantized_weight"], "KV cache": d["kv_cache"],
                     "weights + KV": d["total"],
                     "naive (fp32 / n)": fmt_bytes(d["naive_bytes"]),
                     "how the weights were computed": d["weights_formula"]})
        chart.append({"precision": prec, "part": "weights", "GB": d["weights_bytes"] / 1e9})
        chart.append({"precision": prec, "part": "KV cache", "GB": d["kv_cache_bytes"] / 1e9})
    kv = data["precisions"]["bf16"]["kv_cache_formula"]
    kv_md = f"**KV cache (16-bit):** {kv}" if data["kind"] == "causal" else f"**KV cache:** {kv}"
    training = pd.DataFrame([{"method": t["method"], "memory": t["human"], "how": t["formula"]}
                             for t in data["training"]])
    marks = {"yes": "✓ yes", "tight": "⚠ tight", "no": "✗ no"}  # plain symbols: no emoji font needed
    fits = pd.DataFrame([{k: marks.get(v, v) for k, v in row.items()} for row in data["fits"]])
    return summary, pd.DataFrame(chart), pd.DataFrame(rows), kv_md, training, fits


def run_estimate(name, context_len, batch_size):
    try:
        data = estimate(resolve_model(name), context_len, batch_size)
    except EXPECTED as exc:
        gr.Warning(str(exc))
        empty = pd.DataFrame()
        return f"**Cannot estimate:** {exc}", empty, empty, "", empty, empty, {"error": str(exc)}
    return (*_estimate_views(data), data)


# ---------------------------------------------------------------- measure tab
def _measure_views(data: dict):
    rows, chart = [], []
    for prec, r in data["results"].items():
        if "error" in r:
            rows.append({"precision": prec, "estimated": fmt_bytes(r["estimated_bytes"]), "measured": "-",
                         "error %": None, "naive error %": None, "RSS delta load → use": "-", "load s": None, "ms / token": None,
                         "perplexity": None, "how": r["error"]})
            continue
        rows.append({"precision": prec, "estimated": fmt_bytes(r["estimated_bytes"]),
                     "measured": fmt_bytes(r["measured_bytes"]), "error %": r["error_pct"],
                     "naive error %": r["naive_error_pct"], "RSS delta load → use": f"{fmt_bytes(r['rss_delta_bytes'])} → {fmt_bytes(r['rss_after_use_bytes'])}",
                     "load s": r["load_s"], "ms / token": r["ms_per_token"], "perplexity": r.get("perplexity"),
                     "how": f"estimate: {r['estimate_formula']} · measured: {r['measured_formula']} · "
                            f"speed: {r['speed_formula']}"})
        for short, kind, value in (("est", "estimate", r["estimated_bytes"]), ("meas", "measured", r["measured_bytes"]),
                                   ("naive", "naive fp32/n", r["naive_bytes"])):
            chart.append({"bar": f"{prec} {short}", "kind": kind, "MB": value / 1e6, "precision": prec})
    lines = [f"### {data['model']} on {data['device']}"]  # its note is in the model line above
    if data.get("prompt"):
        lines.append(f"**Prompt:** _{data['prompt']}_ → {data['new_tokens']} greedy tokens. Differences from the "
                     "highest-precision output: ~~removed~~ **added**.")
        for prec, r in data["results"].items():
            if r.get("continuation") is None:
                continue
            tag = "reference" if prec == r.get("reference_precision") else (
                "identical" if r.get("same_as_reference") else f"{r.get('matching_leading_tokens', 0)} tokens match")
            lines.append(f"- **{prec}** (perplexity {r['perplexity']:.2f}, {tag}): {r.get('diff', r['continuation'])}")
    else:
        lines.append("**Generation:** not applicable. This model is an encoder: it has no next-token head, so it has "
                     "no perplexity and no continuation. Time per token is one forward pass over the reference text.")
    return "\n\n".join(lines), pd.DataFrame(chart), pd.DataFrame(rows)


def run_measure(name, precisions, progress=gr.Progress()):
    empty = pd.DataFrame()
    if busy():
        msg = f"A measurement is already running ({running_info()}). Measurements run one at a time; try again soon."
        gr.Warning(msg)
        return f"**Busy:** {msg}", empty, empty, {"error": msg}
    try:
        data = measure(name, parse_precisions(precisions or []),
                       progress=lambda f, text: progress(f, desc=text))
    except EXPECTED as exc:
        gr.Warning(str(exc))
        return f"**Not measured:** {exc}", empty, empty, {"error": str(exc)}
    except Exception as exc:  # a failed load or forward pass: say so, keep serving
        msg = f"The measurement failed: {type(exc).__name__}: {str(exc)[:300]}"
        gr.Warning(msg)
        return f"**Not measured:** {msg}", empty, empty, {"error": msg}
    return (*_measure_views(data), data)


# ---------------------------------------------------------------- API (JSON in, JSON out)
def estimate_api(model: str, context_len: int = 2048, batch_size: int = 1) -> dict:
    """Estimated memory per precision (weights, KV cache, total, formulas), training memory and
    which devices it fits, for `model` (an embedded model, a shipped config name or a Hub id)."""
    try:
        return estimate(resolve_model(model), context_len, batch_size)
    except EXPECTED as exc:
        return {"error": str(exc)}


def measure_api(model: str, precisions: list[str]) -> dict:
    """Load `model` at each of `precisions` (fp32, fp16, bf16, int8, nf4, nf4-dq) and measure it:
    estimated_bytes, measured_bytes, load_s, ms_per_token and perplexity per precision."""
    try:
        return measure(model, parse_precisions(precisions))
    except EXPECTED as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a failed load or forward pass: say so, keep serving
        return {"error": f"The measurement failed: {type(exc).__name__}: {str(exc)[:300]}"}


def build_demo() -> gr.Blocks:
    with gr.Blocks(title=TITLE) as demo:
        header(TITLE, TEACHES)
        with gr.Row():
            model = gr.Dropdown(choices(), value=SMOLLM2, label="Model", allow_custom_value=True, scale=3,
                                info="Embedded models measure offline; shipped configs estimate offline; "
                                     "or type a Hub id (needs the Hub or the local cache).")
            context = gr.Number(2048, label="Context length (tokens)", precision=0, minimum=1, scale=1)
            batch = gr.Number(1, label="Batch size", precision=0, minimum=1, scale=1)
        # Filled on page load: reading configs imports transformers, which would slow the start-up.
        info = gr.Markdown("Reading the model's config…", elem_classes=["model-status"])
        with gr.Tabs():
            with gr.Tab("Estimate (any model, from its config)"):
                est_btn = gr.Button("Estimate memory", variant="primary")
                est_summary = gr.Markdown()
                est_chart = gr.BarPlot(x="precision", y="GB", color="part", title="Estimated memory: weights + KV cache",
                                       y_title="GB", sort=PRECISIONS, height=300)
                est_table = gr.Dataframe(label="Weights per precision (every number with its formula)",
                                         wrap=True, column_widths=["9%", "9%", "9%", "8%", "9%", "9%", "47%"],
                                         max_height=1200)
                est_kv = gr.Markdown()
                est_train = gr.Dataframe(label="Training memory (weights + gradients + optimizer + activations)",
                                         wrap=True, column_widths=["22%", "10%", "68%"], max_height=800)
                est_fits = gr.Dataframe(label="Does it fit? (yes / tight = over 90% / no; nominal GB, leave ~0.5 GB "
                                              "for the CUDA context)", wrap=True, max_height=1000)
                with gr.Accordion("Raw JSON (what /estimate returns)", open=False):
                    est_json = gr.JSON()
            with gr.Tab("Measure (load it for real)"):
                machine = gr.Markdown(MEASURE_NOTE)
                with gr.Row():
                    precisions = gr.CheckboxGroup(PRECISIONS, value=DEFAULT_MEASURE, label="Precisions", scale=3)
                    meas_btn = gr.Button("Measure", variant="primary", scale=1)
                meas_chart = gr.BarPlot(x="bar", y="MB", color="kind", title="Weight memory: estimate vs measured "
                                        "vs naive (fp32 size / 2, 4, 8)", y_title="MB", x_title="precision",
                                        height=320, x_label_angle=-30)
                meas_table = gr.Dataframe(label="Estimated vs measured (error % = (estimate - measured) / measured; "
                                                "measured = the loaded tensors + quantization state; RSS delta = "
                                                "process growth after loading → after the quality runs: an fp32 "
                                                "checkpoint stays memory-mapped until used, quantizing leaves "
                                                "allocator leftovers)",
                                          wrap=True, column_widths=["9%", "9%", "9%", "7%", "7%", "8%", "6%", "7%",
                                                                    "9%", "29%"], max_height=1200)
                meas_quality = gr.Markdown()
                with gr.Accordion("Raw JSON (what /measure returns)", open=False):
                    meas_json = gr.JSON()
        gr.Markdown("Devices compared: " + ", ".join(f"{n} {g} GB" for n, g in DEVICES) +
                    ". Weights of int8/nf4 models: what bitsandbytes quantizes (linear layers) plus what it leaves "
                    "in bf16 (embeddings, output head, norms, biases) plus its quantization state (absmax, scales).")

        model.change(model_info, model, info, api_visibility="private")
        demo.load(model_info, model, info, api_visibility="private")
        demo.load(lambda: _machine_line() + " " + MEASURE_NOTE, None, machine, api_visibility="private")
        est_outputs = [est_summary, est_chart, est_table, est_kv, est_train, est_fits, est_json]
        est_btn.click(run_estimate, [model, context, batch], est_outputs, api_visibility="private")
        demo.load(run_estimate, [model, context, batch], est_outputs, api_visibility="private")
        meas_btn.click(run_measure, [model, precisions], [meas_quality, meas_chart, meas_table, meas_json],
                       concurrency_limit=1, concurrency_id="measure", api_visibility="private",
                       show_progress_on=[meas_chart])
        gr.api(estimate_api, api_name="estimate")
        gr.api(measure_api, api_name="measure", concurrency_limit=1, concurrency_id="measure_api")
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo)
