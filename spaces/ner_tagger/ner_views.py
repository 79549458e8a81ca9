"""Views of the NER lab (no gradio here): entities highlighted per model side by side with
disagreements marked, the tables (entities with best's reasons, scores, word pieces), the
aggregation-strategy comparison, and the notes that say a view is out of date."""
from __future__ import annotations

import html

COLORS = {"PER": "#dbeafe", "ORG": "#fde68a", "LOC": "#bbf7d0", "MISC": "#e9d5ff"}
BORDERS = {"PER": "#2563eb", "ORG": "#d97706", "LOC": "#16a34a", "MISC": "#9333ea"}
MAX_RENDER_CHARS = 20_000  # beyond this the page would crawl: the view says so and shows the start

PAGE_CSS = """
.ner-table table {table-layout: fixed}
@media (max-width: 640px) {
  .ner-actions button {min-width: 0 !important; flex: 1 1 45% !important}
  .ner-models label {white-space: normal}
}
"""  # the page's own rules (gradio components); STYLE travels with each HTML view

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
.ner-scroll {overflow-x: auto}
.ner-stale {color: #92400e; background: #fef3c7; border-radius: 6px; padding: 4px 8px; font-size: .9rem}
.ner-chip {display: inline-block; margin: 2px 4px 2px 0; padding: 0 5px; border-radius: 4px; border-bottom: 2px solid;
  color: #111}
</style>"""


def legend() -> str:
    items = "".join(f'<span><span class="sw" style="background:{COLORS[t]};border:1px solid {BORDERS[t]}"></span>{t}</span>'
                    for t in COLORS)
    return (f'<div class="ner-legend">{items}<span><span class="sw" style="outline:2px dashed #dc2626"></span>'
            "models disagree (span or type)</span><span class='ner-note'>each entity's own label and, for best, "
            "why it chose the type: the table under <b>Correct &amp; score</b></span></div>")


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
                         f'{BORDERS.get(coarse, "#999")}">{html.escape(e["word"])} <b>{html.escape(t)}</b> '
                         f'<small>{e["score"]:.2f}</small></span>')
        rows.append(f"<tr><th>{html.escape(strategy)}</th><td>{len(ents)}</td><td>{''.join(chips) or '—'}</td></tr>")
    return (STYLE + '<div class="ner-scroll"><table class="ner-strat"><tr><th>strategy</th><th>n</th><th>entities '
            f'(word, label, score)</th></tr>{"".join(rows)}</table></div>')


# ---------------------------------------------------------------- tables
ENTITY_COLUMNS = ["text", "type", "start", "end", "label", "why (best)"]
SCORE_COLUMNS = ["model", "P", "R", "F1", "gold", "predicted", "F1 PER", "F1 ORG", "F1 LOC"]
PIECE_COLUMNS = ["#", "piece", "chars", "continues word", "tag", "p", "windows"]
GOLD_COLUMNS = ["model", "P", "R", "F1", "sentences/s"]


def entity_rows(entities: list[dict]) -> list[list]:
    """The correction table: text, type, offsets, the model's own label and, for best, why it chose the type
    (what the hover of the side-by-side view says, readable on a phone)."""
    return [[e["text"], e["coarse"], e["start"], e["end"], e.get("label", e["coarse"]), e.get("why", "")]
            for e in entities]


def score_rows(scores: list[dict]) -> list[list]:
    """P/R/F1 per model; a type's F1 reads n/a when the corrections hold no entity of that type."""
    return [[s["model"], round(s["precision"], 3), round(s["recall"], 3), round(s["f1"], 3), s["gold"],
             s["predicted"]] + ["n/a" if f1 is None else round(f1, 3) for f1 in s["per_type"].values()]
            for s in scores]


def models_markdown(rows: list[dict]) -> str:
    lines = ["| model | available | why / what it is |", "|---|---|---|"]
    for row in rows:
        mark = "yes" if row["available"] else "no"
        lines.append(f"| **{row['name']}** ({row['kind']}) | {mark} | {row['why']}. {row['about']} |")
    return "\n".join(lines)


def stale_note(what: str, how: str) -> str:
    """A line over a view whose input changed: it says what it still shows and what brings it up to date."""
    return f'<div class="ner-stale">Out of date: {html.escape(what)}. {html.escape(how)}</div>'
