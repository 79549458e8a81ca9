"""HTML views of the NER lab (no gradio here): entities highlighted per model side by side with
disagreements marked, the sub-word table, and the aggregation-strategy comparison."""
from __future__ import annotations

import html

COLORS = {"PER": "#dbeafe", "ORG": "#fde68a", "LOC": "#bbf7d0", "MISC": "#e9d5ff"}
BORDERS = {"PER": "#2563eb", "ORG": "#d97706", "LOC": "#16a34a", "MISC": "#9333ea"}
MAX_RENDER_CHARS = 20_000  # beyond this the page would crawl: the view says so and shows the start

STYLE = """<style>
.ner-grid {display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px}
.ner-col {border: 1px solid var(--border-color-primary, #ddd); border-radius: 8px; padding: 10px 12px;
  background: var(--block-background-fill, #fff)}
.ner-col h4 {margin: 0 0 6px; font-size: .95rem; display: flex; justify-content: space-between; gap: 8px}
.ner-col h4 small {font-weight: normal; color: var(--body-text-color-subdued, #666)}
.ner-text {white-space: pre-wrap; line-height: 2.0; font-size: .95rem; overflow-wrap: anywhere}
.ner-ent {border-radius: 4px; padding: 1px 3px; border-bottom: 2px solid; color: #111}
.ner-ent .ner-tag {font-size: .62rem; font-weight: 700; margin-left: 3px; vertical-align: 1px; opacity: .75}
.ner-ent.ner-diff {outline: 2px dashed #dc2626; outline-offset: 1px}
.ner-legend {font-size: .85rem; margin: 6px 0 10px; display: flex; flex-wrap: wrap; gap: 10px; align-items: center}
.ner-legend span.sw {display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin-right: 4px;
  vertical-align: -1px}
.ner-err {color: #b91c1c; font-size: .9rem}
.ner-note {color: var(--body-text-color-subdued, #666); font-size: .85rem}
.ner-strat {border-collapse: collapse; width: 100%; font-size: .9rem}
.ner-strat td, .ner-strat th {border-bottom: 1px solid var(--border-color-primary, #ddd); padding: 4px 6px;
  text-align: left; vertical-align: top}
.ner-chip {display: inline-block; margin: 2px 4px 2px 0; padding: 0 5px; border-radius: 4px; border-bottom: 2px solid;
  color: #111}
</style>"""


def legend() -> str:
    items = "".join(f'<span><span class="sw" style="background:{COLORS[t]};border:1px solid {BORDERS[t]}"></span>{t}</span>'
                    for t in COLORS)
    return (f'<div class="ner-legend">{items}<span><span class="sw" style="outline:2px dashed #dc2626"></span>'
            "models disagree (span or type)</span><span class='ner-note'>hover an entity for the model's own "
            "label (for best: why)</span></div>")


def _key(e) -> tuple:
    return (e["start"], e["end"], e["coarse"])


def disagreements(results: dict[str, list[dict]]) -> set[tuple]:
    """(start, end, coarse) entities that not every model that ran agrees on."""
    sets = [{_key(e) for e in ents} for ents in results.values() if isinstance(ents, list)]
    if len(sets) < 2:
        return set()
    everyone = set.intersection(*sets)
    return set.union(*sets) - everyone


def highlight(text: str, entities: list[dict], diff: set[tuple] = frozenset()) -> str:
    shown = text[:MAX_RENDER_CHARS]
    out, pos = [], 0
    for e in sorted(entities, key=lambda e: (e["start"], -e["end"])):
        s, t = e["start"], e["end"]
        if s < pos or t > len(shown):
            continue
        out.append(html.escape(shown[pos:s]))
        coarse = e["coarse"]
        cls = "ner-ent ner-diff" if _key(e) in diff else "ner-ent"
        label = e.get("label", coarse)
        title = coarse if label == coarse else f"{label} → {coarse}"
        if "score" in e:
            title += f" · score {e['score']:.2f}"
        if e.get("why"):
            title += f" · why: {e['why']}"
        out.append(f'<mark class="{cls}" style="background:{COLORS.get(coarse, "#eee")};border-color:'
                   f'{BORDERS.get(coarse, "#999")}" title="{html.escape(title)}">{html.escape(shown[s:t])}'
                   f'<span class="ner-tag">{html.escape(coarse)}</span></mark>')
        pos = t
    out.append(html.escape(shown[pos:]))
    more = (f'<div class="ner-note">Showing the first {MAX_RENDER_CHARS:,} of {len(text):,} characters; the whole text '
            "was tagged (see the entity table and the export).</div>") if len(text) > MAX_RENDER_CHARS else ""
    return f'<div class="ner-text">{"".join(out)}</div>{more}'


def side_by_side(text: str, results: dict[str, list[dict] | str], timings: dict[str, float] | None = None,
                 loads: dict[str, float] | None = None) -> str:
    """One column per model; `results[name]` is a list of entities or an error message."""
    if not results:
        return STYLE + '<div class="ner-note">Choose at least one model.</div>'
    diff = disagreements(results)
    cols = []
    for name, ents in results.items():
        if isinstance(ents, str):
            body = f'<div class="ner-err">{html.escape(ents)}</div>'
            meta = "not run"
        else:
            body = highlight(text, ents, diff)
            n_diff = sum(1 for e in ents if _key(e) in diff)
            meta = f"{len(ents)} entities · {n_diff} disputed"
            if timings and name in timings:
                meta += f" · {timings[name] * 1000:.0f} ms"
            if loads and name in loads:
                meta += f" (first run: +{loads[name]:.1f} s to load)"
        cols.append(f'<div class="ner-col"><h4><span>{html.escape(name)}</span><small>{meta}</small></h4>{body}</div>')
    summary = f'<div class="ner-note">{len(diff)} entity spans are not shared by every model.</div>' if len(results) > 1 else ""
    return STYLE + legend() + summary + f'<div class="ner-grid">{"".join(cols)}</div>'


def pieces_rows(pieces, limit: int = 400) -> list[list]:
    rows = []
    for p in pieces[:limit]:
        rows.append([p.index, p.token, f"{p.start}-{p.end}", "yes" if p.is_subword else "", p.tag,
                     round(float(p.scores.max()), 3), p.windows])
    return rows


def strategies_table(results: dict[str, list[dict]]) -> str:
    """One row per aggregation strategy with the entities it gives."""
    rows = []
    for strategy, ents in results.items():
        chips = []
        for e in ents:
            t = e.get("entity_group") or e.get("entity", "")
            coarse = t.split("-", 1)[-1]
            chips.append(f'<span class="ner-chip" style="background:{COLORS.get(coarse, "#eee")};border-color:'
                         f'{BORDERS.get(coarse, "#999")}" title="{e["start"]}-{e["end"]} · score {e["score"]:.2f}">'
                         f'{html.escape(e["word"])} <b>{html.escape(t)}</b></span>')
        rows.append(f"<tr><th>{html.escape(strategy)}</th><td>{len(ents)}</td><td>{''.join(chips) or '—'}</td></tr>")
    return (STYLE + '<table class="ner-strat"><tr><th>strategy</th><th>n</th><th>entities (word, label; hover for '
            f'offsets and score)</th></tr>{"".join(rows)}</table>')
