"""HTML for the agent sandbox: the step timeline (a tree for managed agents), run summaries, the
sandbox layers table and the model's inbox."""
from __future__ import annotations

import html

from shared.sandbox import LAYERS, REASONS

KIND_LABEL = {"task": "Task", "code": "Thought + code", "tool_call": "Tool call", "observation": "Observation",
              "error": "Error", "plan": "Plan", "final_answer": "final_answer()", "answer": "Answer",
              "delegate": "Hands work to", "run_code": "/run_code"}
CSS = """
.ag-timeline {display: flex; flex-direction: column; gap: .35rem; font-size: .88rem}
.ag-step {border: 1px solid var(--border-color-primary); border-left: 5px solid #94a3b8; border-radius: 8px;
          padding: .3rem .55rem; background: var(--background-fill-secondary)}
.ag-step pre {white-space: pre-wrap; word-break: break-word; margin: .25rem 0 0; font-size: .82rem; max-height: 14rem;
              overflow-y: auto}
.ag-step .meta {color: var(--body-text-color-subdued); font-size: .75rem; float: right}
.ag-depth-1 {margin-left: 2rem; border-left-color: #a78bfa}
.ag-task {border-left-color: #6366f1} .ag-code, .ag-tool_call, .ag-plan {border-left-color: #0ea5e9}
.ag-observation {border-left-color: #22c55e} .ag-error {border-left-color: #ef4444}
.ag-answer, .ag-final_answer {border-left-color: #f59e0b} .ag-run_code {border-left-color: #64748b}
.ag-delegate {border-left-color: #a78bfa; font-style: italic}
.ag-reason {background: #ef4444; color: white; border-radius: 6px; padding: 0 .35rem; font-size: .72rem; margin-left: .3rem}
.ag-ok {background: #22c55e; color: white; border-radius: 6px; padding: 0 .35rem; font-size: .72rem; margin-left: .3rem}
.ag-layers td, .ag-layers th {padding: .2rem .45rem; font-size: .82rem; vertical-align: top}
.ag-on {color: #16a34a; font-weight: 600} .ag-off {color: #dc2626; font-weight: 600}
.ag-summary {font-size: .9rem}
.ag-waiting {border: 2px dashed var(--color-accent); border-radius: 8px; padding: .4rem .6rem}
"""


def _badge(rec: dict) -> str:
    if rec.get("reason"):
        return (f"<span class='ag-reason' title='{html.escape(REASONS.get(rec['reason'], ''))}'>"
                f"stopped: {html.escape(rec['reason'])}</span>")
    if rec["kind"] == "run_code" and rec.get("ok"):
        return "<span class='ag-ok'>ok</span>"
    return ""


def timeline_html(events: list[dict], upto: int | None = None) -> str:
    """Every event of the session (tasks, model steps, observations, errors, /run_code calls), the
    managed agent's steps indented under the planner; `upto` replays only the first n events."""
    if not events:
        return ("<div class='ag-timeline'><p><i>Nothing yet: start a task, or run code in the Sandbox tab. Every "
                "step will appear here as it happens.</i></p></div>")
    shown = events if upto is None else events[:max(0, int(upto))]
    parts = []
    for n, rec in enumerate(shown, 1):
        kind = rec["kind"]
        label = KIND_LABEL.get(kind, kind)
        who = html.escape(str(rec.get("agent", "")))
        meta = []
        if rec.get("tokens_in") or rec.get("tokens_out"):
            meta.append(f"{rec['tokens_in']:,} tokens in · {rec['tokens_out']:,} out")
        if rec.get("seconds"):
            meta.append(f"{rec['seconds']:.2f} s")
        body = rec["content"]
        if kind == "run_code":
            body = rec["content"] + ("\n── output ──\n" + rec["output"] if rec.get("output") else "") + \
                ("\n── error ──\n" + rec["error"] if rec.get("error") else "")
        depth = min(1, int(rec.get("depth", 0)))
        parts.append(f"<div class='ag-step ag-{kind} ag-depth-{depth}' data-kind='{kind}'><span class='meta'>"
                     f"#{n} · {' · '.join(meta)}</span><b>{html.escape(label)}</b> <small>{who}</small>{_badge(rec)}"
                     f"<pre>{html.escape(body)}</pre></div>")
    return "<div class='ag-timeline'>" + "".join(parts) + "</div>"


def summary_html(run, title: str = "") -> str:
    if run is None:
        return f"<div class='ag-summary'><b>{html.escape(title)}</b> <i>not started</i></div>"
    t = run.totals()
    state = {"waiting": "waiting for your step", "stopping": "stopping…"}.get(run.state, run.state)
    if run.waiting is not None:
        state = f"waiting for you (as the {run.waiting['agent']})"
    answer = (f"<br><b>Answer:</b> {html.escape(run.answer[:1500])}" if run.answer else "")
    error = f"<br><b style='color:#dc2626'>Error:</b> {html.escape(run.error)}" if run.error else ""
    return (f"<div class='ag-summary'><b>{html.escape(title)}</b> · {html.escape(state)} · {t['steps']} model steps · "
            f"{t['tokens_in']:,} tokens in · {t['tokens_out']:,} out · {t['seconds']:.1f} s{answer}{error}</div>")


def layers_html(layers: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class='{'ag-on' if v['active'] else 'ag-off'}'>"
        f"{'active' if v['active'] else 'off'}</td><td>{html.escape(LAYERS.get(name, ''))}</td>"
        f"<td>{html.escape(v['detail'])}</td></tr>" for name, v in layers.items())
    return ("<table class='ag-layers'><tr><th>layer</th><th>here</th><th>stops</th><th>detail</th></tr>"
            f"{rows}</table>")


def inbox_markdown(run) -> str:
    """What the attendee (as the model) receives: the latest messages, newest last."""
    waiting = run.waiting if run else None
    if waiting is None:
        if run is not None and run.state in ("running", "starting"):
            return "*The agent is running your step in the sandbox…*"
        return "*When a run with **Be the model** waits for you, the messages you receive as the model show here.*"
    msgs = waiting["messages"]
    last = msgs[-1]["content"] if msgs else ""
    return (f"**You are the {waiting['agent']}.** You received {len(msgs)} messages (the system prompt, the task and "
            f"every earlier step; all are under *Exact system prompt and messages*). The latest one:\n\n"
            f"```text\n{last[-3000:]}\n```")
