"""What the quantization lab shows: the model line, the estimate and measurement tables and charts
(one unit per view, MB or GB), empty states, the measurement's progress line. Plain strings and
pandas frames; no gradio."""
from __future__ import annotations

import html

import pandas as pd

from quant_estimate import DEVICES

CSS = """
@media (max-width: 640px) {  /* phones: the model row stacks instead of squeezing its labels */
  .qc-stack, .qc-stack > .form {flex-direction: column !important; align-items: stretch !important}
  .qc-stack > *, .qc-stack > .form > * {width: 100% !important; min-width: 0 !important}
}
.qc-empty {border: 1px dashed var(--border-color-primary); border-radius: 10px; padding: .8rem 1rem;
  color: var(--body-text-color-subdued)}
"""
STYLE = f"<style>{CSS}</style>"

EMPTY_ESTIMATE = ("The estimate appears here as soon as a model is picked: its parameters, a chart of weights + KV "
                  "cache per precision, and tables with every number's formula.")
NO_ESTIMATE = "No estimate: the line above says why this model cannot be read. Pick another model or fix the id."
EMPTY_MEASURE = ("Press <b>Measure</b>: the chart and the table of estimated against measured memory appear here, "
                 "one row per precision, then the perplexity and the continuation of each precision.")
MEASURING = "The chart and the table of this measurement appear here when it ends (its progress is above)."
MEASURE_NOTE = ("Each precision loads the model again with bitsandbytes (int8, nf4) or a dtype (fp32, fp16, "
                "bf16) and frees it afterwards. On a CPU, fp16 matmuls are slow: expect 10-60 s per precision "
                "for SmolLM2 (more on a busy machine). One measurement runs at a time; others wait in line.")
MEASURE_LEGEND = (
    "- **error %** = (estimate − measured) / measured: how far this lab's estimate is from what loading measured.\n"
    "- **naive error %**: the same for the naive rule (fp32 size / 2, 4 or 8). **Negative = the naive rule "
    "promises less memory than the model takes**: it forgets the embeddings, head and norms that stay 16-bit "
    "and the 4-bit block scales.\n"
    "- **RSS load → use**: how much this whole process grew right after loading → after running the model. "
    "The first can be small (an fp32 file stays memory-mapped until read); a quantized load can leave allocator "
    "slack behind. Noisy; *measured* is the tensors' own bytes.")
DEVICES_NOTE = ("Devices compared: " + ", ".join(f"{n} {g} GB" for n, g in DEVICES) +
                ". Weights of int8/nf4 models: what bitsandbytes quantizes (linear layers) plus what it leaves in "
                "bf16 (embeddings, output head, norms, biases) plus its quantization state (absmax, scales).")

# Fixed column widths (px): tables scroll sideways on a phone instead of wrapping a letter per line.
ESTIMATE_WIDTHS = ["100px", "100px", "105px", "100px", "110px", "120px", "460px"]
TRAINING_WIDTHS = ["300px", "95px", "560px"]
MEASURE_WIDTHS = ["100px", "105px", "105px", "80px", "100px", "180px", "75px", "90px", "115px", "460px"]
FIT_FIRST_WIDTHS = ["280px", "95px"]  # then one column per device
FIT_DEVICE_WIDTH = "120px"
MARKS = {"yes": "✓ yes", "tight": "⚠ tight", "no": "✗ no"}  # plain symbols: no emoji font needed


def fits_widths(n_columns: int) -> list[str]:
    return FIT_FIRST_WIDTHS + [FIT_DEVICE_WIDTH] * max(0, n_columns - len(FIT_FIRST_WIDTHS))


UNITS = ("MB", "GB")


def unit_for(largest_bytes: float) -> tuple[str, float]:
    """One unit for a whole view: GB when its largest number reaches 1 GB, else MB."""
    return ("GB", 1e9) if largest_bytes >= 1e9 else ("MB", 1e6)


def in_unit(n: float | None, unit: tuple[str, float]) -> str:
    if n is None:
        return "-"
    return f"{n / unit[1]:,.2f} {unit[0]}"


def empty_html(text: str) -> str:
    return f'{STYLE}<div class="qc-empty">{text}</div>'


# ---------------------------------------------------------------- the model line

def model_line(ref) -> str:
    hub = f" · Hub: `{ref.hub_id}`" if ref.hub_id else ""
    return f"**{ref.name}** · {ref.kind} · source: {ref.source}{hub}  \n{ref.note}"


def model_problem(message: str) -> str:
    return f"**Cannot use this model:** {message}"


# ---------------------------------------------------------------- estimate

def estimate_views(data: dict) -> dict:
    """{"summary", "unit", "chart", "table", "kv", "training", "fits"} for the Estimate tab (the chart's
    sizes in column "memory", in `unit`, like every size in the tables)."""
    p = data["parameters"]
    precisions = data["precisions"]
    unit = unit_for(max(d["total_bytes"] for d in precisions.values()))
    parts = ", ".join(f"{k} {v:,}" for k, v in p["unquantized_parts"].items())
    summary = (f"### {data['model']}: {p['total']:,} parameters\n"
               f"- **{p['quantizable']:,}** in {p['quantized_layers']} linear layers that bitsandbytes quantizes\n"
               f"- **{p['unquantized']:,}** stay in 16-bit ({parts})"
               + (" · input and output embeddings are **tied** (stored once)" if p["tied_embeddings"] else "")
               + f"\n- context {data['context_len']:,} tokens × batch {data['batch_size']} · every size below in "
                 f"**{unit[0]}**")
    for w in data["warnings"]:
        summary += f"\n\n> ⚠️ {w}"
    rows, chart = [], []
    for prec, d in precisions.items():
        rows.append({"precision": prec, "weights": in_unit(d["weights_bytes"], unit),
                     "bits / quantized weight": d["bits_per_quantized_weight"],
                     "KV cache": in_unit(d["kv_cache_bytes"], unit), "weights + KV": in_unit(d["total_bytes"], unit),
                     "naive (fp32 / n)": in_unit(d["naive_bytes"], unit),
                     "how the weights were computed": d["weights_formula"]})
        chart.append({"precision": prec, "part": "weights", "memory": d["weights_bytes"] / unit[1]})
        chart.append({"precision": prec, "part": "KV cache", "memory": d["kv_cache_bytes"] / unit[1]})
    kv = precisions["bf16"]["kv_cache_formula"]
    kv_md = f"**KV cache (16-bit):** {kv}" if data["kind"] == "causal" else f"**KV cache:** {kv}"
    training = pd.DataFrame([{"method": t["method"], "memory": in_unit(t["bytes"], unit), "how": t["formula"]}
                             for t in data["training"]])
    fits = pd.DataFrame([{k: MARKS.get(v, v) for k, v in row.items()} for row in data["fits"]])
    return dict(summary=summary, unit=unit[0], chart=pd.DataFrame(chart), table=pd.DataFrame(rows), kv=kv_md,
                training=training, fits=fits)


# ---------------------------------------------------------------- measure

def measure_views(data: dict) -> dict:
    """{"quality", "unit", "chart", "table"} for the Measure tab."""
    results = data["results"]
    unit = unit_for(max(max(r.get("measured_bytes") or 0, r["estimated_bytes"]) for r in results.values()))
    rows, chart = [], []
    for prec, r in results.items():
        if "error" in r:
            rows.append({"precision": prec, "estimated": in_unit(r["estimated_bytes"], unit), "measured": "-",
                         "error %": None, "naive error %": None, "RSS load → use": "-", "load s": None,
                         "ms / token": None, "perplexity": None, "how": r["error"]})
            continue
        rows.append({"precision": prec, "estimated": in_unit(r["estimated_bytes"], unit),
                     "measured": in_unit(r["measured_bytes"], unit), "error %": r["error_pct"],
                     "naive error %": r["naive_error_pct"],
                     "RSS load → use": f"{in_unit(r['rss_delta_bytes'], unit)} → {in_unit(r['rss_after_use_bytes'], unit)}",
                     "load s": r["load_s"], "ms / token": r["ms_per_token"], "perplexity": r.get("perplexity"),
                     "how": f"estimate: {r['estimate_formula']} · measured: {r['measured_formula']} · "
                            f"speed: {r['speed_formula']}"})
        for short, kind, value in (("est", "estimate", r["estimated_bytes"]), ("meas", "measured", r["measured_bytes"]),
                                   ("naive", "naive fp32/n", r["naive_bytes"])):
            chart.append({"bar": f"{prec} {short}", "kind": kind, "memory": value / unit[1], "precision": prec})
    lines = [f"### {data['model']} on {data['device']}"]  # its note is in the model line above
    if data.get("stopped"):
        lines.append("**Stopped.** The precisions measured before Stop are shown; the others say so in their row.")
    if data.get("prompt"):
        lines.append(f"**Prompt:** _{data['prompt']}_ → {data['new_tokens']} greedy tokens. Differences from the "
                     "highest-precision output: ~~removed~~ **added**.")
        for prec, r in results.items():
            if r.get("continuation") is None:
                continue
            tag = "reference" if prec == r.get("reference_precision") else (
                "identical" if r.get("same_as_reference") else f"{r.get('matching_leading_tokens', 0)} tokens match")
            lines.append(f"- **{prec}** (perplexity {r['perplexity']:.2f}, {tag}): {r.get('diff', r['continuation'])}")
    else:
        lines.append("**Generation:** not applicable. This model is an encoder: it has no next-token head, so it has "
                     "no perplexity and no continuation. Time per token is one forward pass over the reference text.")
    return dict(quality="\n\n".join(lines), unit=unit[0], chart=pd.DataFrame(chart), table=pd.DataFrame(rows))


def job_line(poll: dict, model: str) -> str:
    """The Measure tab's progress line for a shared.jobs poll()."""
    if poll["state"] == "queued":
        return (f"⏳ Waiting for the machine: your measurement of **{html.escape(model)}** is number "
                f"{poll['position']} in line and starts by itself (one measurement at a time).")
    if poll["state"] == "running":
        return f"⏳ **{poll['progress']:.0%}** · {poll['message']} · {poll['elapsed']:.0f} s"
    if poll["state"] == "error":
        return f"**Not measured:** {poll['error']}"
    if poll["state"] == "stopped":
        return f"**Stopped** after {poll['elapsed']:.0f} s."
    if poll["state"] == "done":
        return f"Measured in {poll['elapsed']:.0f} s."
    return ""


def stale_line(measured_model: str | None, picked: str | None) -> str:
    """Said above the measurement when the picker no longer shows the model it measured."""
    if measured_model and picked and measured_model != picked:
        return (f"⚠️ These measurements are of **{html.escape(measured_model)}**; the picker now shows "
                f"**{html.escape(picked)}**. Press Measure to measure it.")
    return ""
