"""HTML, tables and texts of the DPO labeler's UI. Every user or model text is escaped here."""
from __future__ import annotations

import html

CSS = """
.dpo-prompt {font-size: 1.05rem; padding: .6rem .8rem; border-radius: 8px; background: var(--background-fill-secondary);
             border: 1px solid var(--border-color-primary); white-space: pre-wrap}
.dpo-answers {display: grid; grid-template-columns: 1fr 1fr; gap: .8rem; margin-top: .6rem}
@media (max-width: 700px) {.dpo-answers {grid-template-columns: 1fr}}
.dpo-answer {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6rem .8rem; min-height: 5rem}
.dpo-answer h4 {margin: 0 0 .3rem; font-size: .85rem; letter-spacing: .05em; color: var(--color-accent)}
.dpo-answer div {white-space: pre-wrap}
.dpo-counter {font-size: .92rem}
.dpo-bar {height: 12px; border-radius: 6px; background: var(--background-fill-secondary); overflow: hidden;
          border: 1px solid var(--border-color-primary)}
.dpo-bar > div {height: 100%; background: var(--color-accent); transition: width .4s}
.dpo-caption {font-size: .82rem; color: var(--body-text-color-subdued); margin: -.2rem 0 .6rem}
.dpo-keys kbd {border: 1px solid var(--border-color-primary); border-radius: 4px; padding: 0 .3rem; font-size: .8rem;
               background: var(--background-fill-secondary)}
.dpo-result td, .dpo-result th {padding: .2rem .6rem; text-align: right}
.dpo-result td:first-child, .dpo-result th:first-child {text-align: left}
"""

KEYS_JS = """
() => {
  if (window.__dpoKeys) return;
  window.__dpoKeys = true;
  const map = {a: 'dpo-btn-a', b: 'dpo-btn-b', t: 'dpo-btn-tie', x: 'dpo-btn-both_bad', s: 'dpo-btn-skip',
               u: 'dpo-btn-undo', '1': 'dpo-vote-left', '2': 'dpo-vote-right', '0': 'dpo-vote-tie'};
  document.addEventListener('keydown', (e) => {
    const tag = (e.target && e.target.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || tag === 'select' || e.target.isContentEditable) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const id = map[e.key.toLowerCase()];
    if (!id) return;
    const el = document.getElementById(id);
    if (!el || el.offsetParent === null || el.disabled) return;
    e.preventDefault();
    el.click();
  });
}
"""

CAPTIONS = {
    "loss": "DPO loss: -log sigmoid(margin), averaged over the batch. Starts at log 2 = 0.693 (policy = reference) "
            "and falls as the policy separates chosen from rejected.",
    "rewards/chosen": "Implicit reward of the chosen answers: beta x (log pi - log pi_ref). Above 0: the policy made "
                      "them more likely than the reference does.",
    "rewards/rejected": "Implicit reward of the rejected answers. DPO mostly pushes these down: it usually falls "
                        "faster than the chosen reward rises.",
    "rewards/accuracies": "Share of the batch where the chosen reward beats the rejected one. Reads 0 at step 1 "
                          "(all rewards tie at 0) and saturates fast: watch the margins too.",
    "rewards/margins": "Mean chosen minus rejected reward: how far apart the policy holds them. Keeps growing "
                       "after the accuracy hits 1.",
}

SEED_NOTE = ("**The seed set** (shipped, so you can train before labelling): 300 questions from the chatterbot "
             "corpus (BSD-3). *chosen* = the corpus's own answer to the question; *rejected* = the corpus's answer "
             "to a different question from another topic (fluent, human-written, but not an answer to this one). "
             "240 pairs train, 60 are held back for evaluation and never trained on. The rule is mechanical, not a "
             "human judgement: it teaches the model to prefer the answer that fits the question.")

RLHF_MD = """
**RLHF (the InstructGPT recipe)** takes three stages: (1) **SFT** on demonstrations; (2) a **reward model**
trained on human preference pairs to score answers; (3) **PPO**: the policy samples answers, the reward model
scores them, and an RL update raises the reward while a KL penalty keeps the policy near the SFT model. Four
models are in play (policy, reference, reward, value) and sampling runs inside the training loop.

**DPO** skips the reward model and the RL loop. For the same KL-regularised objective the best policy has a
closed form, so the reward can be written with the policy itself: **r(x, y) = beta * log(pi(y|x) / pi_ref(y|x))**
(the *implicit reward*). Plugging it into the Bradley-Terry preference model gives one classification-style loss
on the labelled pairs:

**loss = -log sigmoid( beta * [ (log pi(y_c) - log pi_ref(y_c)) - (log pi(y_r) - log pi_ref(y_r)) ] )**

No sampling during training, two models (here one: the reference is the policy with its LoRA adapter off).
The table computes every term on your own labelled pairs with your trained policy (or, before any training,
with the policy = the reference: every log-ratio is 0, the margin 0, sigmoid 0.5, loss log 2 = 0.693).
"""


def esc(text) -> str:
    return html.escape(str(text if text is not None else ""))


def pair_html(pair: dict | None) -> str:
    if not pair:
        return ("<div class='dpo-prompt'>Give your name, then press <b>Next pair</b>: the model writes two answers "
                "to a prompt and you pick the better one.</div>")
    return (f"<div class='dpo-prompt' id='dpo-prompt'>{esc(pair['prompt'])}</div><div class='dpo-answers'>"
            f"<div class='dpo-answer' id='dpo-answer-a'><h4>ANSWER A</h4><div>{esc(pair['a']) or '<i>(empty)</i>'}</div></div>"
            f"<div class='dpo-answer' id='dpo-answer-b'><h4>ANSWER B</h4><div>{esc(pair['b']) or '<i>(empty)</i>'}</div></div>"
            "</div>")


def counter_md(mine: int, total: int, pairs: int, annotator: str = "", note: str = "") -> str:
    who = f"<b>{esc(annotator)}</b>: {mine} label{'s' if mine != 1 else ''}" if annotator else "No name yet"
    return f"<div class='dpo-counter'>{who} · all annotators: {total} labels on {pairs} pairs{' · ' + esc(note) if note else ''}</div>"


KEYS_HTML = ("<div class='dpo-keys'>Keys: <kbd>A</kbd> A is better · <kbd>B</kbd> B is better · <kbd>T</kbd> tie · "
             "<kbd>X</kbd> both bad · <kbd>S</kbd> skip · <kbd>U</kbd> undo (not while typing in a box)</div>")


def progress_html(poll: dict) -> str:
    pct = int(round(100 * float(poll.get("progress") or 0)))
    state = poll.get("state", "none")
    if state == "none":
        return "<div class='dpo-bar'><div style='width:0%'></div></div>"
    text = esc(poll.get("error") or poll.get("message") or "")
    return (f"<div class='dpo-bar' role='progressbar' aria-valuenow='{pct}'><div style='width:{pct}%'></div></div>"
            f"<small>{esc(state)} · {pct}% · {text} · {poll.get('elapsed', 0)} s</small>")


def result_html(res: dict | None) -> str:
    if not res:
        return "<i>No training run yet in this session.</i>"
    fmt = lambda v, d=3: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    rss = res.get("peak_rss_bytes") or 0
    return (f"<table class='dpo-result'><tr><th>held-back pairs ({res.get('heldout_pairs', '?')})</th><th>before</th>"
            f"<th>after</th></tr><tr><td>implicit reward accuracy</td><td>{fmt(res.get('heldout_accuracy_before'))}</td>"
            f"<td><b>{fmt(res.get('heldout_accuracy_after'))}</b></td></tr><tr><td>mean reward margin</td>"
            f"<td>{fmt(res.get('heldout_margin_before'))}</td><td><b>{fmt(res.get('heldout_margin_after'))}</b></td></tr>"
            f"</table><small>Run {esc(res.get('run_id'))}: {esc(res.get('status'))}, {res.get('steps')} steps on "
            f"{res.get('pairs')} pairs, {fmt(res.get('s_per_step'), 2)} s/step, peak memory {rss / 2**30:.2f} GB. "
            f"Before training the policy <i>is</i> the reference (LoRA starts at zero): every implicit reward is 0, "
            f"so accuracy is chance (a tie counts half). The base model itself already gives the chosen answer the "
            f"higher log-probability on {fmt(res.get('heldout_base_prefers_chosen'), 2)} of these pairs; DPO's "
            f"implicit reward measures what training <i>changed</i>.</small>")


def blind_html(round_: dict | None, index: int) -> str:
    if not round_:
        return "<i>Train a model first (or finish a run), then start a blind round.</i>"
    items = round_["items"]
    if index >= len(items):
        return "<b>Round finished.</b> See the reveal below."
    item = items[index]
    return (f"<div><small>Prompt {index + 1} of {len(items)}: which answer is better? (keys <kbd>1</kbd> left, "
            f"<kbd>2</kbd> right, <kbd>0</kbd> tie)</small></div><div class='dpo-prompt'>{esc(item['prompt'])}</div>"
            f"<div class='dpo-answers'><div class='dpo-answer' id='dpo-left'><h4>LEFT</h4><div>{esc(item['left'])}</div></div>"
            f"<div class='dpo-answer' id='dpo-right'><h4>RIGHT</h4><div>{esc(item['right'])}</div></div></div>")


def reveal_md(round_: dict | None, rate: dict | None) -> str:
    if not round_:
        return ""
    lines = []
    for i, item in enumerate(round_["items"], 1):
        if "vote" not in item:
            continue
        won = "tie" if item["vote"] == "tie" else (item["left_is"] if item["vote"] == "left" else
                                                   ("base" if item["left_is"] == "trained" else "trained"))
        lines.append(f"{i}. left was **{item['left_is']}**: your vote went to **{won}**")
    text = "\n".join(lines)
    if rate and rate.get("win_rate") is not None:
        lo, hi = rate["ci95"]
        text += (f"\n\n**Trained model win rate: {rate['win_rate']:.0%}** over {rate['trained'] + rate['base']} decisive "
                 f"votes (95% Wilson interval {lo:.0%}–{hi:.0%}; {rate['ties']} ties left out), all votes on this run "
                 "so far. An interval that spans 50% means the votes cannot tell the models apart yet.")
    elif rate:
        text += "\n\nNo decisive vote yet (ties only)."
    return text


def loss_rows(terms: list[dict]) -> list[list]:
    return [[t["prompt"][:60], round(t["chosen_logratio"], 3), round(t["rejected_logratio"], 3), round(t["margin"], 3),
             round(t["sigmoid"], 3), round(t["loss"], 3)] for t in terms]


LOSS_HEADERS = ["prompt", "log π/π_ref (chosen)", "log π/π_ref (rejected)", "margin β·Δ", "sigmoid", "loss"]
PAIR_HEADERS = ["pair", "prompt", "A", "B", "labels", "annotators", "model"]
ANNOTATOR_HEADERS = ["annotator", "labels", "A", "B", "tie", "both bad", "skips"]
AGREEMENT_HEADERS = ["annotator 1", "annotator 2", "shared pairs", "agreement %", "Cohen's kappa"]
