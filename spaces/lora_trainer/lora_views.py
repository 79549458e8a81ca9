"""HTML and tables of the LoRA trainer: the chat-template preview, the cost panel (memory bars, LoRA vs
a full fine-tune), the live training numbers, the runs list, base vs adapter and the held-back check."""
from __future__ import annotations

import html
import math

from shared.memory import fmt_bytes

PART_COLOURS = {"weights": "#6366f1", "adapter": "#f59e0b", "gradients": "#ef4444", "optimizer state": "#10b981",
                "activations": "#0ea5e9", "workspace": "#a855f7", "runtime": "#94a3b8",
                "(weights train in place)": "#f59e0b"}

CSS = """
.lora-pre {white-space: pre-wrap; font-family: var(--font-mono); font-size: .82rem; border: 1px solid
  var(--border-color-primary); border-radius: 6px; padding: .5rem; margin: .3rem 0; overflow-wrap: anywhere}
.lora-pre .ans {background: rgba(245, 158, 11, .22); border-radius: 3px}
.lora-pre .noloss {opacity: .7}
.lora-bar {display: flex; height: 22px; border-radius: 4px; overflow: hidden; margin: .15rem 0 .5rem}
.lora-bar span {display: block; height: 100%}
.lora-legend span {display: inline-block; margin-right: .8rem; font-size: .8rem}
.lora-legend i {display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; margin-right: .25rem;
  vertical-align: -1px}
.lora-table {border-collapse: collapse; font-size: .85rem; width: 100%}
.lora-table td, .lora-table th {border-bottom: 1px solid var(--border-color-primary); padding: .2rem .4rem;
  text-align: left; vertical-align: top}
.lora-big {font-size: 1.35rem; font-weight: 600}
.lora-stats {display: flex; flex-wrap: wrap; gap: .4rem}
.lora-stats div {border: 1px solid var(--border-color-primary); border-radius: 6px; padding: .3rem .6rem;
  min-width: 6.5rem}
.lora-stats small {display: block; color: var(--body-text-color-subdued); font-size: .72rem}
.lora-progress {height: 12px; background: var(--border-color-primary); border-radius: 6px; overflow: hidden}
.lora-progress span {display: block; height: 100%; background: var(--color-accent)}
.lora-side {display: grid; grid-template-columns: 1fr 1fr; gap: .6rem}
@media (max-width: 700px) {.lora-side {grid-template-columns: 1fr}}
.lora-side h4 {margin: 0 0 .2rem}
.lora-ok {color: #059669; font-weight: 600}
.lora-no {color: #dc2626}
"""
STYLE = f"<style>{CSS}</style>"


def e(x) -> str:
    return html.escape(str(x))


def preview_html(rows: list[dict], completion_only: bool = True) -> str:
    if not rows:
        return STYLE + "<p>No rows.</p>"
    note = ("Highlighted: the answer tokens, the only ones the loss is computed on (answer-only loss)."
            if completion_only else "Answer-only loss is off: the loss covers every token, prompt included.")
    blocks = "".join(f'<div class="lora-pre"><span class="{"noloss" if completion_only else ""}">{e(r["prompt"])}</span>'
                     f'<span class="ans">{e(r["completion"])}</span></div>' for r in rows)
    return f"{STYLE}<p><small>{e(note)} This is exactly the text the model trains on, chat template applied.</small></p>{blocks}"


def data_summary_md(data, stats: dict, n_train: int, n_eval: int, seed: int) -> str:
    lines = [f"**{len(data.rows)} training rows** ({e(data.fmt)})" + (f", {data.skipped} skipped (an empty side)"
                                                                       if data.skipped else "")
             + (f", **{len(data.heldout)} held-back questions** kept out for the after-training check"
                if data.heldout else "") + ".",
             f"Split with seed {seed}: **{n_train} train / {n_eval} eval** rows.",
             f"Tokens per row (chat template applied): min {stats['min']}, median {stats['median']}, "
             f"max {stats['max']}."]
    if stats["truncated"]:
        lines.append(f"⚠️ **{stats['truncated']} rows are longer than max length {stats['max_length']}**: their end is "
                     "cut off (counted, never silently)." + (f" {stats['dropped']} of them lose every answer token "
                                                             "and are dropped by the trainer." if stats["dropped"]
                                                             else ""))
    else:
        lines.append(f"Every row fits in max length {stats['max_length']}.")
    return "\n\n".join(lines)


def _bar(parts: list[dict], scale: float) -> str:
    spans = "".join(f'<span title="{e(p["part"])}: {fmt_bytes(p["bytes"])}" style="width:{100 * p["bytes"] / scale:.2f}%;'
                    f'background:{PART_COLOURS.get(p["part"], "#64748b")}"></span>' for p in parts)
    return f'<div class="lora-bar">{spans}</div>'


def cost_html(est: dict | None, probe: dict | None = None, available_ram: int | None = None) -> str:
    if not est:
        return STYLE + "<p>Pick a dataset and settings to see the cost.</p>"
    share = 100 * est["trainable_share"]
    lora, full = est["lora_bytes"], est["full_bytes"]
    scale = max(lora, full)
    legend = "".join(f'<span><i style="background:{c}"></i>{e(k)}</span>' for k, c in PART_COLOURS.items()
                     if k != "(weights train in place)")
    rows = "".join(f"<tr><td>{e(p['part'])}</td><td>{fmt_bytes(p['bytes'])}</td><td><small>{e(p['formula'])}</small>"
                   f"</td></tr>" for p in est["lora"])
    if probe and probe.get("s_per_step"):
        timing = (f"<div><small>time per step (2-step probe)</small><span class='lora-big'>{probe['s_per_step']:.2f} s"
                  f"</span><br><small>≈ {probe['eta_seconds']:.0f} s for {probe['total_steps']} steps</small></div>")
    else:
        timing = "<div><small>time per step</small><span class='lora-big'>?</span><br><small>press <b>Probe 2 steps</b>" \
                 "</small></div>"
    fits = ""
    if available_ram:
        fits = (f"<p><small>This machine has {fmt_bytes(available_ram)} of RAM free: LoRA "
                f"{'fits' if lora < 0.9 * available_ram else '<b>may not fit</b>'}, a full fine-tune "
                f"{'fits' if full < 0.9 * available_ram else '<b>does not fit</b>'}.</small></p>")
    notes = "".join(f"<li>{e(n)}</li>" for n in est.get("notes", []))
    return f"""{STYLE}
<div class="lora-stats">
 <div><small>trainable parameters</small><span class="lora-big">{est['trainable_params']:,}</span><br>
  <small>{share:.3f}% of {est['total_params']:,}</small></div>
 <div><small>estimated peak memory, LoRA</small><span class="lora-big">{fmt_bytes(lora)}</span><br>
  <small>batch {est['batch_size']} × {est['seq_len']} tokens, {e(est['dtype'])} on {e(est['device'])}</small></div>
 <div><small>full fine-tune of the same model</small><span class="lora-big">{fmt_bytes(full)}</span><br>
  <small>{full / max(lora, 1):.1f}× the LoRA run</small></div>
 {timing}
</div>
<p style="margin:.6rem 0 .1rem"><b>LoRA</b> ({e(est['model'])})</p>{_bar(est['lora'], scale)}
<p style="margin:.1rem 0 .1rem"><b>Full fine-tune</b> (every weight trains: gradients and AdamW state for all
 {est['total_params']:,})</p>{_bar(est['full'], scale)}
<div class="lora-legend">{legend}</div>{fits}
<details><summary>How each part is computed</summary><table class="lora-table">{rows}</table></details>
<ul><small>{notes}</small></ul>"""


def live_html(poll: dict, metrics, total: int | None = None) -> str:
    """The progress bar and the numbers under the curves, from jobs.poll() and the job's metrics."""
    if poll.get("state") in (None, "none"):
        return STYLE + "<p>No run yet: press <b>Train</b>. Your runs are listed below, also after a reload.</p>"
    pct = 100 * poll.get("progress", 0.0)
    loss = metrics.last("loss") if metrics is not None else None
    eval_loss = metrics.last("eval_loss") if metrics is not None else None
    step_time = metrics.last("step_time") if metrics is not None else None
    rate = metrics.last("tokens_per_s") if metrics is not None else None
    peak = metrics.last("peak_rss_gb") if metrics is not None else None
    eta = metrics.last("eta_s") if metrics is not None else None

    def cell(label, value):
        return f"<div><small>{label}</small>{value}</div>"

    fmt = (lambda v, f: "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f.format(v))
    state = e(poll.get("state", ""))
    message = e(poll.get("message", ""))
    if poll.get("error"):
        message = f"<span class='lora-no'>{e(poll['error'])}</span>"
    return f"""{STYLE}<p><b>{state}</b> · {message}</p>
<div class="lora-progress"><span style="width:{pct:.1f}%"></span></div>
<div class="lora-stats" style="margin-top:.5rem">
{cell('train loss', fmt(loss, '{:.4f}'))}{cell('eval loss', fmt(eval_loss, '{:.4f}'))}
{cell('s / step', fmt(step_time, '{:.2f}'))}{cell('tokens / s', fmt(rate, '{:.0f}'))}
{cell('peak memory', fmt(peak, '{:.2f} GB'))}{cell('ETA', fmt(eta, '{:.0f} s'))}
{cell('elapsed', fmt(poll.get('elapsed'), '{:.0f} s'))}</div>"""


def result_html(run: dict | None) -> str:
    if not run:
        return STYLE + "<p>Pick a finished run.</p>"
    r = run.get("result") or {}
    if not r:
        return STYLE + f"<p>Run {e(run['id'])}: {e(run['status'])} {e(run.get('error', ''))}</p>"

    def f(x, spec="{:.4f}"):
        return "–" if x is None else spec.format(x)

    est, peak = r.get("estimated_peak_bytes"), r.get("peak_rss_bytes")
    ratio = f" ({est / peak:.2f}× measured)" if est and peak else ""
    return f"""{STYLE}<table class="lora-table">
<tr><th>run</th><td>{e(run['id'])} · {e(r.get('status'))} · {r.get('steps')} steps · {e(run['dataset'])} ·
 {e(run['model'])}</td></tr>
<tr><th>eval loss before → after</th><td>{f(r.get('eval_loss_before'))} → {f(r.get('eval_loss_after'))}</td></tr>
<tr><th>perplexity before → after</th><td>{f(r.get('perplexity_before'), '{:.2f}')} →
 {f(r.get('perplexity_after'), '{:.2f}')}</td></tr>
<tr><th>trainable parameters</th><td>{r.get('trainable_params', 0):,} of {r.get('total_params', 0):,}</td></tr>
<tr><th>seconds per step</th><td>{f(r.get('s_per_step'), '{:.2f}')}</td></tr>
<tr><th>peak memory measured / estimated</th><td>{fmt_bytes(peak or 0)} / {fmt_bytes(est or 0)}{ratio}</td></tr>
</table>{('<p><small>' + e(r['note']) + '</small></p>') if r.get('note') else ''}"""


def runs_rows(runs: list[dict]) -> list[list]:
    import datetime

    out = []
    for run in runs:
        r, c = run.get("result") or {}, run.get("config") or {}
        when = datetime.datetime.fromtimestamp(run["created"]).strftime("%m-%d %H:%M")
        loss = r.get("eval_loss_after")
        out.append([run["id"], when, run["status"], run["dataset"], f"r={c.get('r')} · {c.get('target_modules')}",
                    r.get("steps", ""), "" if loss is None else round(loss, 4)])
    return out


RUN_COLUMNS = ["run", "started", "status", "dataset", "LoRA", "steps", "eval loss after"]


def side_by_side_html(out: dict | None) -> str:
    if not out:
        return STYLE + "<p>Type a prompt and press <b>Compare</b>.</p>"
    how = "greedy" if not out.get("temperature") else f"sampled at temperature {out['temperature']}, seed {out['seed']}"
    return f"""{STYLE}<p><small>Same prompt, same weights in memory, {e(how)}: only the adapter differs.</small></p>
<div class="lora-side"><div><h4>Base model (adapter off)</h4><div class="lora-pre" id="lora-base-answer">{e(out['base'])}</div></div>
<div><h4>With the adapter</h4><div class="lora-pre" id="lora-adapter-answer">{e(out['adapter'])}</div></div></div>"""


def heldout_html(check: dict | None) -> str:
    if not check:
        return ""
    rows = "".join(
        f"<tr><td>{e(r['question'])}<br><small>key facts: {e(', '.join(r['key_facts']))}</small></td>"
        f"<td class='{'lora-ok' if r['base_ok'] else 'lora-no'}'>{'✓' if r['base_ok'] else '✗'}</td><td>{e(r['base'])}</td>"
        f"<td class='{'lora-ok' if r['adapter_ok'] else 'lora-no'}'>{'✓' if r['adapter_ok'] else '✗'}</td>"
        f"<td>{e(r['adapter'])}</td></tr>" for r in check["rows"])
    return f"""{STYLE}<p class="lora-big">Held-back questions answered correctly: base {check['base_correct']} /
 {check['questions']}, adapter {check['adapter_correct']} / {check['questions']}</p>
<p><small>Never trained on: each asks a taught fact in new words. Right = the answer contains every key fact
 (whole words, case and punctuation ignored). {check['changed']} of {check['questions']} answers changed.</small></p>
<table class="lora-table"><tr><th>question</th><th></th><th>base</th><th></th><th>adapter</th></tr>{rows}</table>"""
