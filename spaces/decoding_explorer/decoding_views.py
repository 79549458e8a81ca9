"""HTML and highlighted-text views of the outputs (plain strings and lists; no gradio import)."""
from __future__ import annotations

import html

from decoding_metrics import metrics, token_texts

BUCKETS = [(0.8, "p ≥ 0.8"), (0.5, "0.5–0.8"), (0.2, "0.2–0.5"), (0.05, "0.05–0.2"), (0.0, "p < 0.05")]
COLORS = {"p ≥ 0.8": "#bbf7d0", "0.5–0.8": "#d9f99d", "0.2–0.5": "#fef08a", "0.05–0.2": "#fed7aa",
          "p < 0.05": "#fecaca"}
CSS = """
.dx-cards {display: grid; grid-template-columns: repeat(auto-fit, minmax(250px, 1fr)); gap: .75rem}
.dx-card {border: 1px solid var(--border-color-primary); border-radius: 10px; padding: .6rem .75rem;
  background: var(--background-fill-secondary); display: flex; flex-direction: column}
.dx-card h3 {margin: 0 0 .15rem; font-size: 1rem}
.dx-card .dx-params {font-size: .75rem; color: var(--body-text-color-subdued); margin-bottom: .35rem}
.dx-card .dx-text {white-space: pre-wrap; font-size: .92rem; line-height: 1.4; flex: 1}
.dx-card .dx-foot {font-size: .75rem; color: var(--body-text-color-subdued); margin-top: .4rem}
.dx-card.dx-waiting .dx-text {color: var(--body-text-color-subdued); font-style: italic}
.dx-pipe {border-collapse: collapse; font-size: .8rem; width: 100%}
.dx-pipe th, .dx-pipe td {border: none !important; border-bottom: 1px solid var(--border-color-primary) !important;
  padding: 2px 8px !important; text-align: left; vertical-align: middle; background: transparent !important}
.dx-pipe th {font-weight: 600; font-size: .78rem}
.dx-pipe td.dx-tok {font-family: var(--font-mono); white-space: pre}
.dx-bar {height: 11px; background: var(--color-accent); border-radius: 2px; display: inline-block;
  vertical-align: middle; margin-right: 4px}
.dx-pipe tr.dx-chosen td.dx-tok {font-weight: 700; color: var(--color-accent)}
.dx-pipe .dx-zero {color: var(--body-text-color-subdued)}
.dx-scroll {overflow-x: auto; max-width: 100%}
@media (max-width: 640px) {  /* phones: the settings rows stack instead of squeezing their labels */
  .dx-stack, .dx-stack > .form {flex-direction: column !important; align-items: stretch !important}
  .dx-stack > *, .dx-stack > .form > * {width: 100% !important; min-width: 0 !important}
}
.dx-empty {border: 1px dashed var(--border-color-primary); border-radius: 10px; padding: .8rem 1rem;
  color: var(--body-text-color-subdued)}
.dx-card.dx-stopped {border-color: var(--color-accent)}
.dx-badge {display: inline-block; font-size: .7rem; font-weight: 600; padding: 0 .4rem; border-radius: 6px;
  margin-left: .35rem; vertical-align: middle; background: var(--color-accent-soft); color: var(--color-accent)}
.dx-error {border: 1px solid var(--error-border-color, #ef4444); border-radius: 10px; padding: .6rem .9rem;
  color: var(--error-text-color, #b91c1c)}
"""
STYLE = f"<style>{CSS}</style>"

EMPTY_CARDS = ("Press <b>Generate side by side</b>: one card per ticked strategy appears here and fills in "
               "token by token; then a metrics table, and below it every token to click.")
EMPTY_TOKENS = ("After a run, the tokens of the strategy you pick appear here, each coloured by the probability the "
                "model gave it. Click one to see the alternatives the model considered at that step and the logits "
                "pipeline; pick an alternative and Branch to continue the text from there.")


def bucket(p: float) -> str:
    for floor, name in BUCKETS:
        if p >= floor:
            return name
    return BUCKETS[-1][1]


def empty_html() -> str:
    return f'<div class="dx-empty">{EMPTY_CARDS}</div>'


def waiting_html(message: str) -> str:
    """Before the first token: the queue position, or the model loading."""
    return f'<div class="dx-empty">⏳ {html.escape(message)}</div>'


def error_html(message: str) -> str:
    return f'<div class="dx-error"><b>Not generated:</b> {html.escape(message)}</div>'


def cards_html(outputs, tokenizer) -> str:
    cards = []
    for o in outputs:
        params = html.escape(", ".join(f"{k}={v}" for k, v in o.strategy.params().items()) or "no parameters")
        badge = '<span class="dx-badge">stopped</span>' if o.stopped else ""
        cls = " dx-stopped" if o.stopped else ""
        if o.ids:
            text = html.escape(tokenizer.decode(o.ids, skip_special_tokens=True)) or "<i>(only special tokens)</i>"
            if o.stopped:
                state = "stopped by you: the text so far"
            else:
                state = "done" if o.done else "generating…"
            foot = f"{len(o.ids)} tokens · {o.tokens_per_s:.1f} tokens/s · {state}"
            if o.done and o.stop_reason and not o.stopped:
                foot += f" · stopped: {html.escape(o.stop_reason)}"
            if o.batch_size > 1:
                foot += f" · shared forward passes (up to {o.batch_size} rows)"
        elif o.stopped:
            text, foot, cls = "stopped before its first token.", "0 tokens · stopped by you", cls + " dx-waiting"
        else:
            text, foot, cls = "waiting for its first token…", "", " dx-waiting"
        cards.append(f'<div class="dx-card{cls}"><h3>{html.escape(o.strategy.label)}{badge}</h3>'
                     f'<div class="dx-params">{params}</div><div class="dx-text">{text}</div>'
                     f'<div class="dx-foot">{foot}</div></div>')
    return f'<div class="dx-cards">{"".join(cards)}</div>'


def run_summary(outputs, stopped: bool, notes: list[str]) -> str:
    """The Markdown line above the cards once a run has ended."""
    lines = [f"- {n}" for n in notes]
    if stopped:
        lines.insert(0, "**Stopped.** Each card keeps the text produced before Stop; its tokens, metrics and "
                        "branching work as for a finished run.")
    return "\n".join(lines)


def token_spans(output, tokenizer) -> list[tuple[str, str]]:
    """(token text, probability bucket) pairs for gr.HighlightedText."""
    texts = token_texts(tokenizer, output.ids)
    return [(t, bucket(p)) for t, p in zip(texts, output.probs)]


def alternatives(output, step: int, tokenizer) -> list[tuple[str, int]]:
    """(label, token id) choices at `step`: the model's top tokens, the picked one marked."""
    picked = output.ids[step]
    ids = list(output.top_ids[step])
    probs = list(output.top_probs[step])
    if picked not in ids:
        ids.append(picked)
        probs.append(output.probs[step])
    names = token_texts(tokenizer, ids)
    return [(f"{name!r}  p={p:.3f}" + ("  ← picked" if t == picked else ""), int(t))
            for name, t, p in zip(names, ids, probs)]


def step_summary(output, step: int, tokenizer) -> str:
    token = tokenizer.decode([output.ids[step]])
    picked = output.picked_probs[step] if step < len(output.picked_probs) else float("nan")
    after = f"; after the strategy's processing p={picked:.3f}" if picked == picked else ""
    return (f"**{html.escape(output.strategy.label)}, step {step + 1}:** picked `{token!r}` "
            f"(model p={output.probs[step]:.3f}{after}). Pick an alternative and press **Branch** to "
            "continue the text from there with the same strategy and seed.")


def pipeline_html(result: dict, tokenizer, chosen: int | None = None) -> str:
    """The logits pipeline of one step as a table of bars: one column per stage."""
    names = token_texts(tokenizer, result["token_ids"])
    stages = result["stages"]
    head = "".join(f"<th>{html.escape(s['stage'])}<br><small>{s['kept']:,} tokens left</small></th>" for s in stages)
    rows = []
    for j, (tid, name) in enumerate(zip(result["token_ids"], names)):
        cells = []
        for s in stages:
            p = s["probs"][j]
            if p <= 0:
                cells.append('<td class="dx-zero">removed</td>')
            else:
                cells.append(f'<td><span class="dx-bar" style="width:{max(1, round(p * 120))}px"></span>{p:.3f}</td>')
        cls = ' class="dx-chosen"' if tid == chosen else ""
        rows.append(f'<tr{cls}><td class="dx-tok">{html.escape(repr(name))}</td>{"".join(cells)}</tr>')
    return (f'{STYLE}<div class="dx-scroll"><table class="dx-pipe"><tr><th>token</th>{head}</tr>{"".join(rows)}'
            "</table></div><p><small>Each column is the next-token distribution after one more stage, in the order "
            "transformers' generate applies them. Bold: the token this strategy picked.</small></p>")


def metrics_table(outputs) -> list[list]:
    rows = []
    for o in outputs:
        if not o.ids:
            continue
        m = metrics(o)
        rows.append([m["strategy"], m["tokens"], m["tokens_per_s"], m["mean_logprob"], m["perplexity"],
                     m["distinct_1"], m["distinct_2"], m["repetition_rate"], m["stop"]])
    return rows


METRIC_HEADERS = ["strategy", "tokens", "tokens/s", "mean log-prob", "perplexity", "distinct-1", "distinct-2",
                  "repetition rate", "stopped by"]
# Fixed widths (px): on a phone the table scrolls sideways instead of wrapping one letter per line.
METRIC_WIDTHS = ["220px", "80px", "95px", "135px", "115px", "120px", "120px", "165px", "150px"]


def branch_summary(output, branch, step: int, tokenizer) -> str:
    """Markdown: the branch's numbers, then its text with the forced token marked."""
    before = tokenizer.decode(output.ids[:step], skip_special_tokens=True)
    forced = tokenizer.decode([branch.ids[step]])
    m = metrics(branch)
    return (f"**Branch of {html.escape(output.strategy.label)} at step {step + 1}** with `{forced!r}`: "
            f"{m['tokens']} tokens, mean log-prob {m['mean_logprob']}, perplexity {m['perplexity']}.\n\n"
            f"> {html.escape(before)}<mark><b>{html.escape(forced)}</b></mark>"
            f"{html.escape(tokenizer.decode(branch.ids[step + 1:], skip_special_tokens=True))}")
