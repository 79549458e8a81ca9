"""DPO preference labeler: the Gradio UI. What it computes lives in dpo_*.py."""
from shared.bootstrap import require

require("gradio", "torch", "transformers", "trl", "peft", "datasets", "pandas", "pyarrow")

import gradio as gr

import dpo_data as data
import dpo_service as svc
import dpo_stats as stats
import dpo_views as views
from dpo_generate import SETTING_1, SETTING_2, Sampling
from dpo_train import DEFAULTS, LIMITS
from shared import jobs
from shared.errors import api, ui_error
from shared.launch import json_api, launch
from shared.look import lab_header

PLOTS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"]
SESSION_TTL = 4 * 3600


def new_session() -> dict:
    return {"annotator": "", "pair": None, "job": None, "run": None, "policy": None, "blind": None, "blind_index": 0}


def _s(state) -> dict:
    return state if isinstance(state, dict) else new_session()


def _sampling(t1, p1, t2, p2) -> tuple[Sampling, Sampling]:
    return (Sampling(float(t1), float(p1), 0, SETTING_1.max_new_tokens),
            Sampling(float(t2), float(p2), 0, SETTING_2.max_new_tokens))


def _counter(st, s: dict, note: str = "") -> str:
    name = s["annotator"]
    return views.counter_md(st.done_by(name) if name else 0, len(st.labels()), st.count("pairs"), name, note)


# ------------------------------------------------------------------ Label tab
def build_label_tab(state):
    gr.Markdown("Give your name once, press **Next pair**, and pick the better answer. Which sampling setting wrote "
                "A or B is hidden and shuffled per pair; both are stored with your label. Pairs other annotators "
                "labelled are offered to you first (up to 3 annotators per pair), so agreement can be measured.")
    with gr.Row(equal_height=True):
        name = gr.Textbox(label="Your name (annotator)", max_length=200, scale=2, min_width=220, elem_id="dpo-name")
        own = gr.Textbox(label="Your own prompt (optional; empty = the next shipped or uploaded one)", scale=3,
                         max_length=3000, min_width=280, elem_id="dpo-own-prompt")
        next_btn = gr.Button("Next pair", variant="primary", scale=1, elem_id="dpo-next")
    counter = gr.HTML(views.counter_md(0, 0, 0))
    pair_view = gr.HTML(views.pair_html(None), elem_id="dpo-pair")
    with gr.Row():
        btn_a = gr.Button("A is better", elem_id="dpo-btn-a", variant="primary")
        btn_b = gr.Button("B is better", elem_id="dpo-btn-b", variant="primary")
        btn_tie = gr.Button("Tie", elem_id="dpo-btn-tie")
        btn_bad = gr.Button("Both bad", elem_id="dpo-btn-both_bad")
        btn_skip = gr.Button("Skip", elem_id="dpo-btn-skip", size="sm")
        btn_undo = gr.Button("Undo", elem_id="dpo-btn-undo", size="sm")
    gr.HTML(views.KEYS_HTML)
    with gr.Accordion("Sampling settings and prompt uploads", open=False):
        gr.Markdown("Each pair is written twice by the same model with two sampling settings.")
        with gr.Row():
            t1 = gr.Slider(0.05, 2.5, value=SETTING_1.temperature, step=0.05, label="Setting 1: temperature")
            p1 = gr.Slider(0.05, 1.0, value=SETTING_1.top_p, step=0.01, label="Setting 1: top-p")
            t2 = gr.Slider(0.05, 2.5, value=SETTING_2.temperature, step=0.05, label="Setting 2: temperature")
            p2 = gr.Slider(0.05, 1.0, value=SETTING_2.top_p, step=0.01, label="Setting 2: top-p")
        with gr.Row():
            upload = gr.File(label="Upload prompts (.txt one per line, .jsonl, .json, .csv with a 'prompt' column)",
                             file_types=[".txt", ".jsonl", ".json", ".csv"], height=110)
            upload_md = gr.Markdown()
        gr.Markdown(f"Shipped prompts: {len(data.shipped_prompts())} questions from chatterbot-corpus 1.3.3 (BSD-3). "
                    "Model: SmolLM2-135M-Instruct, embedded: small, so many answers are weak: that is what you label.")

    def show_next(name_text, own_text, a, b, c, d, state_value, note=""):
        s = _s(state_value)
        try:
            st = svc.store()
            s["annotator"] = svc.check_annotator(name_text)
            pair = svc.next_pair(st, s["annotator"], own_text or "", *_sampling(a, b, c, d))
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Making a pair") from None
        s["pair"] = pair
        return {pair_view: views.pair_html(pair), counter: _counter(st, s, note), own: "", state: s}

    def choose(choice):
        def handler(name_text, own_text, a, b, c, d, state_value):
            s = _s(state_value)
            if not s.get("pair"):
                raise gr.Error("Press Next pair first.")
            try:
                st = svc.store()
                s["annotator"] = svc.check_annotator(name_text)
                if choice == "skip":
                    st.skip(s["pair"]["pair_id"], s["annotator"])
                    note = "skipped"
                else:
                    label_id = st.label(s["pair"]["pair_id"], choice, s["annotator"])
                    note = f"saved label #{label_id} ({choice.replace('_', ' ')})"
            except Exception as exc:  # noqa: BLE001
                raise ui_error(exc, "Saving the label") from None
            return show_next(name_text, own_text, a, b, c, d, s, note)
        return handler

    def undo(name_text, state_value):
        s = _s(state_value)
        try:
            st = svc.store()
            s["annotator"] = svc.check_annotator(name_text)
            undone = st.undo(s["annotator"])
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Undo") from None
        if undone is None:
            gr.Warning("Nothing to undo: you have no labels yet.")
            return {counter: _counter(st, s), state: s}
        pair = st.pair(undone["pair_id"])
        s["pair"] = {"pair_id": pair["pair_id"], "prompt": pair["prompt"], "a": pair["text_a"], "b": pair["text_b"]}
        return {pair_view: views.pair_html(s["pair"]), state: s,
                counter: _counter(st, s, f"undid label #{undone['label_id']} ({undone['choice']}): label it again")}

    def add_upload(file):
        if not file:
            return ""
        try:
            prompts = data.parse_prompt_file(file if isinstance(file, str) else file.name)
            added = svc.store().add_prompts(prompts, "upload")
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Reading the upload") from None
        return f"{added} new prompt(s) queued ({len(prompts) - added} already there); they come before the shipped ones."

    inputs = [name, own, t1, p1, t2, p2, state]
    outputs = [pair_view, counter, own, state]
    common = dict(api_visibility="private", concurrency_id="dpo_pair", concurrency_limit=2)
    next_btn.click(show_next, inputs, outputs, **common)
    own.submit(show_next, inputs, outputs, **common)
    for btn, choice in ((btn_a, "a"), (btn_b, "b"), (btn_tie, "tie"), (btn_bad, "both_bad"), (btn_skip, "skip")):
        btn.click(choose(choice), inputs, outputs, **common)
    btn_undo.click(undo, [name, state], [pair_view, counter, state], api_visibility="private")
    upload.upload(add_upload, upload, upload_md, api_visibility="private")


# ------------------------------------------------------------------ Data tab
def build_data_tab():
    with gr.Row():
        refresh = gr.Button("Refresh", variant="primary", scale=0)
        who = gr.Dropdown(["(all)"], value="(all)", label="Filter: annotator", scale=1, allow_custom_value=False)
        which = gr.Dropdown(["(all)", "a", "b", "tie", "both_bad"], value="(all)", label="Filter: label", scale=1)
        text = gr.Textbox(label="Filter: text in prompt or answers", scale=2, max_length=200)
    overview = gr.Markdown()
    with gr.Row():
        annotators = gr.Dataframe(headers=views.ANNOTATOR_HEADERS, label="Labels per annotator", interactive=False,
                                  scale=3)
        lengths = gr.BarPlot(x="side", y="characters", title="Length: chosen vs rejected (mean characters)",
                             scale=2, height=230)
    agreement = gr.Dataframe(headers=views.AGREEMENT_HEADERS, label="Agreement on shared pairs", interactive=False)
    pairs = gr.Dataframe(headers=views.PAIR_HEADERS, label="Pairs (newest first, up to 300)", interactive=False,
                         wrap=True, max_height=420)
    with gr.Row():
        export_btn = gr.Button("Export TRL dataset (JSONL + Parquet)", scale=1)
        repo = gr.Textbox(label="Hub dataset repo (push uses `hf auth login` / HF_TOKEN)",
                          placeholder="your-name/my-preferences", scale=2, max_length=120)
        push_btn = gr.Button("Push to the Hub", scale=1)
    export_md = gr.Markdown()
    files = gr.File(label="Exported files", file_count="multiple", interactive=False, height=90)

    def show(who_value, which_value, text_value):
        import pandas as pd

        try:
            st = svc.store()
            info = svc.summary(st)
            labels = st.labels()
            all_pairs = st.pairs()
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Reading the labels") from None
        agree = info["agreement"]
        length = info["length"]
        wins = info["settings"]["wins"]
        overview_text = (
            f"**{info['pairs']} pairs · {info['labels']} labels** (current ones; {info['labels_stored']} stored with "
            f"undone and changed ones) **· {info['annotators']} annotators.** Labels: "
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in info["per_choice"].items())
            + f".  \n**Agreement**: {agree['pairs_shared']} pairs labelled by 2+ annotators; "
            f"{'–' if agree['percent'] is None else str(agree['percent']) + '%'} agreement, Cohen's kappa "
            f"{'–' if agree['kappa'] is None else agree['kappa']} ({stats.kappa_words(agree['kappa'])}; kappa "
            "corrects agreement for chance: 0 = chance, 1 = perfect).  \n"
            f"**Preferences** for training: {info['preferences']} pairs with a majority for A or B "
            f"(left out: {', '.join(f'{k} {v}' for k, v in info['left_out'].items()) or 'none'}). "
            + (f"Chosen answers average {length['chosen_mean']} characters vs {length['rejected_mean']} rejected; the "
               f"chosen one is the longer in {length['chosen_longer']:.0%} of pairs (length bias: DPO learns it too)."
               if length["pairs"] else "")
            + (f"  \n**Sampling settings** (unmasked): " + ", ".join(f"{k} won {v}" for k, v in wins.items()) + ". "
               + "; ".join(f"{k} = T {v.get('temperature')}, top-p {v.get('top_p')}"
                           for k, v in sorted(info["settings"]["settings"].items())) if wins else ""))
        per = [[n, r["labels"], r["a"], r["b"], r["tie"], r["both_bad"], r["skips"]] for n, r in
               sorted(info["per_annotator"].items())]
        agree_rows = [[r["a"], r["b"], r["shared"], r["percent"], "–" if r["kappa"] is None else r["kappa"]]
                      for r in agree["by_pair"]]
        bars = pd.DataFrame({"side": ["chosen", "rejected"],
                             "characters": [length["chosen_mean"] or 0, length["rejected_mean"] or 0]})
        by_pair: dict[str, list] = {}
        for l in labels:
            by_pair.setdefault(l["pair_id"], []).append(l)
        needle = (text_value or "").strip().lower()
        rows = []
        for p in reversed(all_pairs):
            mine = by_pair.get(p["pair_id"], [])
            if who_value not in (None, "(all)") and not any(l["annotator"] == who_value for l in mine):
                continue
            if which_value not in (None, "(all)") and not any(l["choice"] == which_value for l in mine):
                continue
            if needle and needle not in (p["prompt"] + p["text_a"] + p["text_b"]).lower():
                continue
            rows.append([p["pair_id"], p["prompt"], p["text_a"], p["text_b"],
                         ", ".join(l["choice"] for l in mine), ", ".join(l["annotator"] for l in mine), p["model"]])
            if len(rows) >= 300:
                break
        names = ["(all)"] + sorted(info["per_annotator"])
        return {overview: overview_text, annotators: per, agreement: agree_rows, lengths: bars, pairs: rows,
                who: gr.Dropdown(choices=names, value=who_value if who_value in names else "(all)")}

    def do_export():
        try:
            path = svc.export(svc.store())
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Export") from None
        n = sum(1 for _ in open(path, encoding="utf-8"))
        return {export_md: f"Exported {n} rows to `{path.parent}` (train.jsonl, train.parquet, README.md).",
                files: [str(path), str(path.with_suffix(".parquet"))]}

    def do_push(repo_id):
        try:
            path = svc.export(svc.store())
            url = data.push(path.parent, repo_id)
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Push") from None
        return f"Pushed to [{url}]({url})."

    filters = [who, which, text]
    outs = [overview, annotators, agreement, lengths, pairs, who]
    refresh.click(show, filters, outs, api_visibility="private")
    which.change(show, filters, outs, api_visibility="private")
    who.input(show, filters, outs, api_visibility="private")
    text.submit(show, filters, outs, api_visibility="private")
    export_btn.click(do_export, None, [export_md, files], api_visibility="private")
    push_btn.click(do_push, repo, export_md, api_visibility="private")
    return refresh, show, filters, outs


# ------------------------------------------------------------------ Train tab
def build_train_tab(state):
    gr.Markdown(views.SEED_NOTE)
    with gr.Row():
        dataset = gr.Radio([("Seed set (240 pairs)", "seed"), ("My labels (majority per pair)", "labels")],
                           value="seed", label="Train on")
        beta = gr.Slider(*LIMITS["beta"], value=DEFAULTS["beta"], step=0.01, label="beta (KL strength)")
        lr = gr.Number(DEFAULTS["learning_rate"], label="learning rate", minimum=LIMITS["learning_rate"][0],
                       maximum=LIMITS["learning_rate"][1])
        steps = gr.Slider(1, 200, value=DEFAULTS["max_steps"], step=1, label="steps (batch of 4 pairs)",
                          elem_id="dpo-steps")
        rank = gr.Dropdown([4, 8, 16, 32], value=DEFAULTS["r"], label="LoRA rank r")
    gr.Markdown("<small>SmolLM2-135M-Instruct on a quiet 2-core CPU: about 3.5-4 s per step (batch 4), so the default "
                "30 steps take about 2 minutes; a busy machine is slower. With a GPU, or a Hub model via the API's `model`, it "
                "is the same code. trl's own DPO default learning rate (1e-6) barely moves a LoRA in tens of steps: 5e-4 does "
                "(1e-3 held back 0.88 of the seed set's held-back pairs here, against 0.83).</small>")
    with gr.Row():
        train_btn = gr.Button("Train with DPO", variant="primary", elem_id="dpo-train")
        stop_btn = gr.Button("Stop", variant="stop", elem_id="dpo-stop")
    bar = gr.HTML(views.progress_html({"state": "none"}))
    plots = []
    with gr.Row():
        for name in PLOTS[:3]:
            with gr.Column(min_width=260):
                plots.append(gr.LinePlot(x="step", y="smoothed", title=name, height=220,
                                         x_title="step", y_title=name.split("/")[-1]))
                gr.HTML(f"<div class='dpo-caption'>{views.CAPTIONS[name]}</div>")
    with gr.Row():
        for name in PLOTS[3:]:
            with gr.Column(min_width=260):
                plots.append(gr.LinePlot(x="step", y="smoothed", title=name, height=220,
                                         x_title="step", y_title=name.split("/")[-1]))
                gr.HTML(f"<div class='dpo-caption'>{views.CAPTIONS[name]}</div>")
    result = gr.HTML(views.result_html(None), elem_id="dpo-train-result")
    timer = gr.Timer(1.0, active=False)

    def start(dataset_value, beta_value, lr_value, steps_value, r_value, state_value):
        s = _s(state_value)
        job = jobs.get(s.get("job"))
        if job is not None and job.state in (jobs.QUEUED, jobs.RUNNING):
            raise gr.Error("Your training run is still going: stop it first or wait for it to end.")
        config = {"dataset": dataset_value, "beta": beta_value, "learning_rate": lr_value, "max_steps": steps_value,
                  "r": r_value}
        try:
            job = svc.submit_training(svc.store(), config, owner=str(id(s)))
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Training") from None
        s["job"] = job.id
        return {state: s, timer: gr.Timer(active=True), bar: views.progress_html(jobs.poll(job.id))}

    def tick(state_value):
        s = _s(state_value)
        job = jobs.get(s.get("job"))
        poll = jobs.poll(s.get("job"))
        out = {bar: views.progress_html(poll)}
        if job is not None:
            for name, plot in zip(PLOTS, plots):
                out[plot] = job.metrics.table([name])
        if not poll["active"]:
            out[timer] = gr.Timer(active=False)
            if job is not None and isinstance(job.result, dict):
                s["run"], s["policy"], s["blind"] = job.result, None, None
                out[result] = views.result_html(job.result)
            elif job is not None and job.error:
                out[result] = f"<b>Training failed:</b> {views.esc(job.error)}"
            out[state] = s
        return out

    def stop(state_value):
        s = _s(state_value)
        if not jobs.stop(s.get("job")):
            gr.Info("No run of yours is going.")

    train_btn.click(start, [dataset, beta, lr, steps, rank, state], [state, timer, bar], api_visibility="private")
    timer.tick(tick, state, [bar, *plots, timer, result, state], api_visibility="private")
    stop_btn.click(stop, state, None, api_visibility="private")
    return result


# ------------------------------------------------------------------ Evaluate tab
def build_eval_tab(state):
    gr.Markdown("**Held-back pairs**: 60 seed pairs never trained on, scored with the implicit reward before and "
                "after training (the Train tab's run). **Blind round**: the same prompts answered by the base model "
                "and by your trained model with the same sampling and seed, shown left/right in random order. Vote; "
                "the reveal and the win rate come after.")
    held = gr.HTML(views.result_html(None))
    with gr.Row():
        prompts = gr.Textbox(label="Blind-round prompts (optional, one per line; empty = 4 held-back questions)",
                             lines=2, max_length=8000, scale=3, elem_id="dpo-blind-prompts")
        start_btn = gr.Button("Start a blind round", variant="primary", scale=1, elem_id="dpo-blind-start")
    item = gr.HTML(views.blind_html(None, 0), elem_id="dpo-blind")
    with gr.Row():
        left = gr.Button("Left is better", elem_id="dpo-vote-left")
        right = gr.Button("Right is better", elem_id="dpo-vote-right")
        tie = gr.Button("Tie", elem_id="dpo-vote-tie")
    reveal = gr.Markdown(elem_id="dpo-reveal")

    def start(prompt_text, state_value):
        s = _s(state_value)
        run = s.get("run")
        if not run:
            raise gr.Error("Train a model first (Train tab); the blind round compares it with the base model.")
        try:
            if s.get("policy") is None:
                from dpo_train import load_policy

                s["policy"] = load_policy(run["adapter"], run["config"].get("model", ""))
            lines = [l for l in (prompt_text or "").splitlines() if l.strip()]
            s["blind"] = svc.blind_round(*s["policy"], prompts=lines or None)
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "The blind round") from None
        s["blind_index"] = 0
        return {item: views.blind_html(s["blind"], 0), reveal: "", state: s, held: views.result_html(run)}

    def cast(choice):
        def handler(state_value):
            s = _s(state_value)
            round_ = s.get("blind")
            if not round_ or s["blind_index"] >= len(round_["items"]):
                raise gr.Error("Start a blind round first.")
            try:
                rate = svc.vote(svc.store(), round_, s["blind_index"], choice, s["run"]["run_id"], s["annotator"])
            except Exception as exc:  # noqa: BLE001
                raise ui_error(exc, "Saving the vote") from None
            s["blind_index"] += 1
            done = s["blind_index"] >= len(round_["items"])
            return {item: views.blind_html(round_, s["blind_index"]), state: s,
                    reveal: views.reveal_md(round_, rate) if done else f"{s['blind_index']} of {len(round_['items'])} voted."}
        return handler

    start_btn.click(start, [prompts, state], [item, reveal, state, held], api_visibility="private",
                    concurrency_id="dpo_pair")
    for btn, choice in ((left, "left"), (right, "right"), (tie, "tie")):
        btn.click(cast(choice), state, [item, reveal, state], api_visibility="private")
    return held


# ------------------------------------------------------------------ RLHF vs DPO tab
def build_rlhf_tab(state):
    gr.Markdown(views.RLHF_MD)
    beta = gr.Slider(*LIMITS["beta"], value=DEFAULTS["beta"], step=0.01, label="beta")
    go = gr.Button("Compute the DPO loss on my pairs", variant="primary")
    note = gr.Markdown()
    table = gr.Dataframe(headers=views.LOSS_HEADERS, interactive=False, wrap=True)

    def compute(beta_value, state_value):
        from dpo_train import loss_terms

        s = _s(state_value)
        try:
            prefs, _ = svc.label_preferences(svc.store())
            rows = data.trl_rows(prefs[-8:])
            source = f"your {len(rows)} newest labelled pairs" if rows else None
            if not rows:
                rows = data.seed_rows("heldout")[:8]
                source = "8 held-back seed pairs (you have no pair with a majority for A or B yet)"
            if s.get("run"):
                if s.get("policy") is None:
                    from dpo_train import load_policy

                    s["policy"] = load_policy(s["run"]["adapter"], s["run"]["config"].get("model", ""))
                policy, tokenizer = s["policy"]
                who = f"your trained policy (run {s['run']['run_id']})"
            else:
                loaded = svc.model()
                policy, tokenizer = loaded.model, loaded.tokenizer
                who = "the base model as policy (no run yet: policy = reference)"
            terms = loss_terms(policy, tokenizer, rows, float(beta_value))
        except Exception as exc:  # noqa: BLE001
            raise ui_error(exc, "Computing the loss") from None
        mean = sum(t["loss"] for t in terms) / len(terms)
        return {note: f"On {source}, with {who}: mean loss **{mean:.3f}** (log 2 = 0.693 is chance).",
                table: views.loss_rows(terms), state: s}

    go.click(compute, [beta, state], [note, table, state], api_visibility="private", concurrency_id="dpo_pair")


# ------------------------------------------------------------------ API
@api("Making a pair")
def api_pair(prompt: str = "", annotator: str = "") -> dict:
    """Two answers for `prompt` (empty: an overlap pair for `annotator`, else the next shipped prompt):
    {"pair_id", "prompt", "a", "b"}."""
    return svc.next_pair(svc.store(), annotator or "", prompt or "")


@api("Saving the label")
def api_label(pair_id: str, choice: str, annotator: str) -> dict:
    """choice: a, b, tie or both_bad. {"ok": true, "label_id"} once the label is committed to the database."""
    return svc.label(svc.store(), pair_id, choice, annotator)


@api("Counting")
def api_stats() -> dict:
    """{"pairs", "labels", "annotators", "per_annotator", "agreement", ...}."""
    return svc.summary(svc.store())


@api("Export")
def api_export() -> dict:
    """Writes the TRL-ready dataset: {"jsonl": its path, "parquet": the Parquet copy, "folder", "rows": n}.
    (Not "path": gradio_client would take a dict with a "path" key for a file to download.)"""
    path = svc.export(svc.store())
    return {"jsonl": str(path), "parquet": str(path.with_suffix(".parquet")), "folder": str(path.parent),
            "rows": sum(1 for _ in open(path, encoding="utf-8"))}


@api("Training")
def api_train(config: dict) -> dict:
    """config: beta, learning_rate, max_steps, r, dataset ("seed" | "labels"), optional "queue": true to wait
    behind a running job instead of being refused. Blocks until the run ends; returns its figures."""
    config = dict(config) if isinstance(config, dict) else config
    queue = bool(config.pop("queue", False)) if isinstance(config, dict) else False
    if not queue and svc.busy():
        return {"error": svc.busy()}
    job = svc.submit_training(svc.store(), config, owner="api")
    job.wait()
    if job.state == jobs.ERROR:
        return {"error": job.error}
    return job.result or {"error": job.message}


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="DPO preference labeler · GenAI Lab Playground") as demo:
        gr.HTML(f"<style>{views.CSS}</style>")
        lab_header(__file__)
        state = gr.State(None, time_to_live=SESSION_TTL)
        with gr.Tabs():
            with gr.Tab("Label", id="label"):
                build_label_tab(state)
            with gr.Tab("Data", id="data"):
                refresh, show, filters, outs = build_data_tab()
            with gr.Tab("Train", id="train"):
                train_result = build_train_tab(state)
            with gr.Tab("Evaluate", id="evaluate"):
                held = build_eval_tab(state)
            with gr.Tab("RLHF vs DPO", id="rlhf"):
                build_rlhf_tab(state)
        train_result.change(lambda html: html, train_result, held, api_visibility="private")
        demo.load(None, js=views.KEYS_JS)
        demo.load(show, filters, outs, api_visibility="private")
        gr.api(api_pair, api_name="pair", concurrency_limit=2, concurrency_id="dpo_pair")
        # No queue for a label: one short SQLite commit; the SSE queue round trip cost more than the write.
        gr.api(api_label, api_name="label", queue=False)
        gr.api(api_stats, api_name="stats", concurrency_limit=4)
        gr.api(api_export, api_name="export")
        gr.api(api_train, api_name="train", concurrency_limit=4, concurrency_id="dpo_train_api")
    # The quick calls also as plain JSON (POST /api/label {"pair_id", "choice", "annotator"}): one HTTP round
    # trip, no queue or event stream, for scripted annotators and a room labelling at once.
    json_api(demo, label=api_label, stats=api_stats)
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo)
