"""LoRA trainer: the Gradio UI. What it computes lives in lora_*.py."""
from shared.bootstrap import require

require("gradio", "torch", "transformers", "trl", "peft", "datasets", "pandas")

import uuid

import gradio as gr

import lora_config as lc
import lora_data
import lora_views as views
from shared import jobs
from shared.errors import api, message, ui_error
from shared.launch import launch
from shared.look import lab_header

UPLOAD = "upload"
DATASET_CHOICES = [(f"{s.name}: {s.description.split(':')[0]}", s.name) for s in lora_data.SHIPPED.values()] + \
                  [("your own file (CSV or JSONL, upload below)", UPLOAD)]
TARGET_CHOICES = [(f"{k}: {v}", k) for k, v in lc.PRESETS.items()] + [("custom list (type layer names)", "custom")]
PLOT_METRICS = ["loss", "eval_loss"]
D = lc.TrainConfig()

# (config key, component factory): the Config tab's knobs, in order; collect() maps values back by position.
KNOBS = [
    ("r", lambda: gr.Slider(1, 64, value=D.r, step=1, label="rank r", info="width of the low-rank update")),
    ("alpha", lambda: gr.Number(value=D.alpha, label="alpha", info="update scaled by alpha / r", minimum=0.001)),
    ("dropout", lambda: gr.Slider(0, 0.5, value=D.dropout, step=0.01, label="LoRA dropout")),
    ("learning_rate", lambda: gr.Number(value=D.learning_rate, label="learning rate",
                                        info="~5e-4 moves a LoRA in tens of steps")),
    ("max_steps", lambda: gr.Number(value=D.max_steps, precision=0, label="steps", minimum=1)),
    ("epochs", lambda: gr.Number(value=D.epochs, label="epochs (0 = use steps)", minimum=0)),
    ("batch_size", lambda: gr.Slider(1, 16, value=D.batch_size, step=1, label="batch size")),
    ("grad_accum", lambda: gr.Slider(1, 16, value=D.grad_accum, step=1, label="gradient accumulation")),
    ("max_length", lambda: gr.Slider(32, 1024, value=D.max_length, step=16, label="max length (tokens)")),
    ("seed", lambda: gr.Number(value=D.seed, precision=0, label="seed (split, init, order)")),
    ("eval_fraction", lambda: gr.Slider(0, 0.5, value=D.eval_fraction, step=0.05, label="eval share")),
    ("completion_only_loss", lambda: gr.Checkbox(value=D.completion_only_loss, label="loss on the answer tokens only",
                                                       info="prompt tokens are masked out of the loss")),
]


def dataset_spec(choice: str, upload) -> str:
    if choice == UPLOAD:
        if not upload:
            raise lora_data.DataError("Upload a CSV or JSONL file first (or pick a shipped dataset).")
        return upload if isinstance(upload, str) else getattr(upload, "name", "")
    return choice


def collect(model, targets, custom, qlora, *values) -> dict:
    cfg = {key: value for (key, _), value in zip(KNOBS, values)}
    cfg["model"] = model or ""
    cfg["target_modules"] = custom if targets == "custom" else targets
    cfg["qlora"] = bool(qlora)
    return cfg


def new_session() -> dict:
    return {"job": None, "probe": None, "probe_result": None, "est": None, "run": None}


def _s(state) -> dict:
    return state if isinstance(state, dict) else new_session()


# ---------------------------------------------------------------- API (JSON in, JSON out)

TRAIN_KEYS = ("run_id", "status", "steps", "train_loss", "eval_loss_before", "eval_loss_after", "trainable_params",
              "total_params", "s_per_step", "peak_rss_bytes", "estimated_peak_bytes", "perplexity_before",
              "perplexity_after", "note")


@api("Training")
def train_api(dataset: str, config: dict) -> dict:
    """Train a LoRA adapter; blocks until the run ends (it waits in the machine's training line first)."""
    import lora_train

    job = lora_train.start(dataset, config, owner="")
    job.wait()
    if job.state == jobs.ERROR:
        return {"error": job.error, "run_id": job.id, "status": "error"}
    result = job.result or {"run_id": job.id, "status": "stopped", "steps": 0, "train_loss": [],
                            "note": "stopped before it started"}
    return {k: result.get(k) for k in TRAIN_KEYS if k in result}


@api("Generation")
def generate_api(prompt: str, run_id: str = "", max_new_tokens: int = 64) -> dict:
    """Greedy answer of the base model (run_id empty) or of that run's adapter."""
    import lora_compare

    return {"text": lora_compare.answer(prompt, (run_id or "").strip(), max_new_tokens)}


@api("Listing datasets")
def datasets_api() -> list:
    """The shipped datasets: [{"name", "rows", "description", ...}]."""
    return lora_data.list_shipped()


@api("The estimate")
def estimate_api(dataset: str, config: dict) -> dict:
    """Trainable parameters and the peak-memory estimate of a run, without training."""
    import lora_estimate
    import lora_train

    p = lora_train.prepare(dataset, config)
    return lora_estimate.estimate(p.cfg, seq_len=p.longest)


# ---------------------------------------------------------------- Data tab

def build_data_tab(state):
    import lora_models

    gr.Markdown("Pick what the model should learn. The preview shows rows **exactly as the model sees them** "
                "(its chat template applied); the histogram shows token lengths against the max length.")
    with gr.Row():
        with gr.Column(scale=3):
            dataset = gr.Radio(DATASET_CHOICES, value=lora_data.DEFAULT_DATASET, label="Dataset", elem_id="lora-dataset")
            upload = gr.File(label="Your CSV/JSONL: instruction + response columns (or prompt/completion, "
                                   "question/answer), or chat 'messages'", file_types=[".csv", ".jsonl", ".json", ".tsv"],
                             type="filepath", height=140)
        with gr.Column(scale=2):
            model = gr.Dropdown(lora_models.choices(), value="", label="Base model", elem_id="lora-model",
                                info="SmolLM2-135M-Instruct is embedded and runs offline; Hub models load when the "
                                     "Hub or your cache has them (7B ones need a GPU).", allow_custom_value=True)
            summary = gr.Markdown(elem_id="lora-data-summary")
    with gr.Row():
        hist = gr.BarPlot(x="tokens", y="rows", color="fits", title="Tokens per row", height=240, sort=None,
                          x_label_angle=-30, scale=2)
        preview = gr.HTML(elem_id="lora-preview")
    return dataset, upload, model, summary, hist, preview


def show_data(choice, upload, model, max_length, seed, eval_fraction, completion_only):
    import pandas as pd

    import lora_models

    try:
        data = lora_data.load(dataset_spec(choice, upload))
        tok = lora_models.tokenizer(lora_models.source(model))
        max_length = int(max_length)
        stats = lora_data.token_stats(tok, data.rows, max_length)
        train, evals = lora_data.split(data.rows, int(seed or 0), float(eval_fraction))
    except Exception as exc:  # noqa: BLE001  shown in place, the rest of the page keeps working
        return {"summary": f"⚠️ {message(exc, 'Reading the data')}", "hist": None,
                "preview": views.preview_html([])}
    return {"summary": views.data_summary_md(data, stats.summary(), len(train), len(evals), int(seed or 0)),
            "hist": pd.DataFrame(stats.histogram()),
            "preview": views.preview_html(lora_data.preview(tok, data.rows), bool(completion_only))}


# ---------------------------------------------------------------- Config tab

def build_config_tab():
    from shared.device import pick_device

    qlora_ok, qlora_why = lc.qlora_status(pick_device())
    gr.Markdown("Each choice has a cost: the panel on the right prices this run **before** you train "
                "(from the model's config on the meta device, no weights touched) next to a full fine-tune.")
    with gr.Row():
        with gr.Column(scale=3):
            knobs = {}
            with gr.Row():
                for key, make in KNOBS[:4]:
                    knobs[key] = make()
            targets = gr.Radio(TARGET_CHOICES, value="q,v", label="Target modules", elem_id="lora-targets")
            custom = gr.Textbox(label="Custom layer names (comma-separated; checked against the model)",
                                placeholder="q_proj, v_proj, down_proj", visible=False)
            with gr.Row():
                for key, make in KNOBS[4:8]:
                    knobs[key] = make()
            with gr.Row():
                for key, make in KNOBS[8:-1]:
                    knobs[key] = make()
            key, make = KNOBS[-1]
            knobs[key] = make()
            qlora = gr.Checkbox(value=False, label="4-bit QLoRA (bitsandbytes NF4 base)", interactive=qlora_ok,
                                info=qlora_why)
        with gr.Column(scale=4):
            cost = gr.HTML(views.cost_html(None), elem_id="lora-cost")
            probe_btn = gr.Button("Probe 2 steps (measure time per step)", size="sm", elem_id="lora-probe")
    targets.change(lambda t: gr.Textbox(visible=t == "custom"), targets, custom, api_visibility="private")
    return knobs, targets, custom, qlora, cost, probe_btn


# ---------------------------------------------------------------- Train tab

def build_train_tab():
    gr.Markdown("Training runs in the background with trl's SFTTrainer + peft: close or reload the page and "
                "find it again in **Your runs**. One training job runs per machine; others wait in line.")
    with gr.Row():
        train_btn = gr.Button("Train", variant="primary", elem_id="lora-train")
        stop_btn = gr.Button("Stop", variant="stop", elem_id="lora-stop")
    live = gr.HTML(views.live_html({}, None), elem_id="lora-live")
    plot = gr.LinePlot(x="step", y="value", color="metric", title="Loss: train every step, eval before, after (and 5 times in runs of 10+ steps)",
                       height=280, elem_id="lora-curve", x_title="step", y_title="loss",
                       color_map={"loss": "#6366f1", "eval_loss": "#f59e0b"})
    with gr.Row():
        runs = gr.Dataframe(headers=views.RUN_COLUMNS, value=[], label="Your runs (click one to open it)",
                            interactive=False, elem_id="lora-runs", scale=3)
    return train_btn, stop_btn, live, plot, runs


# ---------------------------------------------------------------- Compare tab

def build_compare_tab():
    import lora_compare

    gr.Markdown("The same prompt through the base model and the adapter, on **one copy of the weights** "
                "(peft's adapter toggle), same seed.")
    with gr.Row():
        run_pick = gr.Dropdown([], label="Run", elem_id="lora-run-pick", scale=2)
        result = gr.HTML(views.result_html(None), elem_id="lora-result")
    with gr.Row():
        prompt = gr.Textbox(value="Who founded Orvenne?", label="Prompt", max_length=lora_compare.MAX_PROMPT_CHARS,
                            scale=4, elem_id="lora-prompt")
        max_new = gr.Slider(8, 256, value=32, step=8, label="max new tokens")
        temperature = gr.Slider(0, 1.5, value=0, step=0.05, label="temperature (0 = greedy)")
        seed = gr.Number(value=0, precision=0, label="seed")
    with gr.Row():
        compare_btn = gr.Button("Compare", variant="primary", elem_id="lora-compare")
        heldout_btn = gr.Button("Check the held-back questions", elem_id="lora-heldout")
    side = gr.HTML(views.side_by_side_html(None), elem_id="lora-side")
    heldout = gr.HTML(elem_id="lora-heldout-result")
    with gr.Accordion("Download and share", open=False):
        with gr.Row():
            zip_btn = gr.Button("Adapter (.zip: safetensors, adapter_config.json, model card)", size="sm")
            merge_btn = gr.Button("Merged model (.zip, base + adapter)", size="sm")
        files = gr.File(label="Files", interactive=False)
        token_md = gr.Markdown()
        with gr.Row():
            repo = gr.Textbox(label="Hub repo id", placeholder="your-name/orvenne-lora", scale=3)
            push_btn = gr.Button("Push the adapter to the Hub", size="sm")
        push_md = gr.Markdown()
    return dict(run_pick=run_pick, result=result, prompt=prompt, max_new=max_new, temperature=temperature, seed=seed,
                compare_btn=compare_btn, heldout_btn=heldout_btn, side=side, heldout=heldout, zip_btn=zip_btn,
                merge_btn=merge_btn, files=files, token_md=token_md, repo=repo, push_btn=push_btn, push_md=push_md)


# ---------------------------------------------------------------- Scale-out tab

def build_export_tab():
    gr.Markdown("Take the same run to a multi-GPU machine: trl's training script, its config file, the data split "
                "and accelerate configs (DDP, DeepSpeed ZeRO-2). The script is tested on a CPU for 2 steps.")
    with gr.Row():
        gpus = gr.Slider(1, 16, value=8, step=1, label="GPUs")
        model_id = gr.Textbox(label="Model on the big machine (Hub id; empty = the run's model)",
                              placeholder="meta-llama/Llama-3.2-1B-Instruct", scale=2)
        export_btn = gr.Button("Export", variant="primary", elem_id="lora-export")
    command = gr.Code(language="shell", label="Run it there", interactive=False)
    export_file = gr.File(label="Export (.zip)", interactive=False)
    return gpus, model_id, export_btn, command, export_file


# ---------------------------------------------------------------- the page

def build_demo() -> gr.Blocks:
    import lora_compare
    import lora_export
    import lora_train

    with gr.Blocks(title="LoRA trainer") as demo:
        lab_header(__file__)
        state = gr.State(new_session())
        owner = gr.BrowserState("", storage_key="lora_trainer_owner")
        timer = gr.Timer(1.0, active=False)
        with gr.Tabs():
            with gr.Tab("1 · Data"):
                dataset, upload, model, summary, hist, preview = build_data_tab(state)
            with gr.Tab("2 · Config and cost"):
                knobs, targets, custom, qlora, cost, probe_btn = build_config_tab()
            with gr.Tab("3 · Train"):
                train_btn, stop_btn, live, plot, runs = build_train_tab()
            with gr.Tab("4 · Base vs adapter"):
                c = build_compare_tab()
            with gr.Tab("5 · Scale out"):
                gpus, model_id, export_btn, command, export_file = build_export_tab()
        knob_list = list(knobs.values())
        config_inputs = [model, targets, custom, qlora, *knob_list]

        # --- data
        data_inputs = [dataset, upload, model, knobs["max_length"], knobs["seed"], knobs["eval_fraction"],
                       knobs["completion_only_loss"]]

        def on_data(*values):
            out = show_data(*values)
            return {summary: out["summary"], hist: out["hist"], preview: out["preview"]}

        gr.on([dataset.change, upload.change, model.change, knobs["max_length"].change, knobs["seed"].change,
               knobs["eval_fraction"].change, knobs["completion_only_loss"].change],
              on_data, data_inputs, [summary, hist, preview], trigger_mode="always_last", show_progress="hidden",
              api_visibility="private")

        # --- cost
        def on_estimate(choice, up, st, *cfg_values):
            import lora_estimate
            import psutil

            s = _s(st)
            try:
                p = lora_train.prepare(dataset_spec(choice, up), collect(*cfg_values))
                s["est"] = lora_estimate.estimate(p.cfg, seq_len=p.longest)
            except Exception as exc:  # noqa: BLE001
                return {cost: f"<p class='lora-no'>⚠️ {views.e(message(exc, 'The estimate'))}</p>", state: s}
            return {cost: views.cost_html(s["est"], s.get("probe_result"), psutil.virtual_memory().available),
                    state: s}

        cost_inputs = [dataset, upload, state, *config_inputs]
        gr.on([dataset.change, upload.change, model.change, targets.change, custom.submit, qlora.change,
               *[k.change for k in knob_list]],
              on_estimate, cost_inputs, [cost, state], trigger_mode="always_last", show_progress="hidden",
              api_visibility="private")

        def on_probe(choice, up, st, who, *cfg_values):
            s = _s(st)
            try:
                job = lora_train.probe(dataset_spec(choice, up), collect(*cfg_values), owner=who or "")
            except Exception as exc:  # noqa: BLE001
                raise ui_error(exc, "The probe") from None
            s["probe"] = job.id
            gr.Info("Probing 2 steps: the time per step appears in the cost panel in a few seconds.")
            return {state: s, timer: gr.Timer(active=True)}

        probe_btn.click(on_probe, [dataset, upload, state, owner, *config_inputs], [state, timer], api_visibility="private")

        # --- train
        def on_train(choice, up, st, who, *cfg_values):
            s = _s(st)
            try:
                job = lora_train.start(dataset_spec(choice, up), collect(*cfg_values), owner=who or "")
            except Exception as exc:  # noqa: BLE001
                raise ui_error(exc, "Training") from None
            s["job"] = job.id
            pos = jobs.position(job)
            if pos:
                gr.Info(f"Another training job is running on this machine: yours is number {pos} in line.")
            return {state: s, timer: gr.Timer(active=True), live: views.live_html(jobs.poll(job.id), job.metrics),
                    runs: views.runs_rows(lora_train.list_runs(who or ""))}

        train_btn.click(on_train, [dataset, upload, state, owner, *config_inputs], [state, timer, live, runs],
                        api_visibility="private")

        def on_stop(st):
            s = _s(st)
            if not s.get("job") or not jobs.stop(s["job"]):
                gr.Info("No run of yours is running.")
            return views.live_html(jobs.poll(s.get("job")), getattr(jobs.get(s.get("job")), "metrics", None))

        stop_btn.click(on_stop, state, live, api_visibility="private")

        def runs_update(who):
            rows = lora_train.list_runs(who or "")
            finished = [(f"{r['id']} · {r['dataset']} · {r['status']}", r["id"]) for r in rows if r.get("adapter")]
            return rows, finished

        def on_tick(st, who, pick):
            s = _s(st)
            out = {}
            job = jobs.get(s.get("job"))
            active = False
            if job is not None:
                poll = jobs.poll(job.id)
                out[live] = views.live_html(poll, job.metrics)
                table = job.metrics.table(PLOT_METRICS)
                out[plot] = table if len(table) else None  # an empty float 'metric' column breaks the colours
                active = poll["active"]
                if not active and s.get("shown") != job.id:  # just finished: refresh the runs and the run picker
                    s["shown"] = job.id
                    rows, finished = runs_update(who)
                    out[runs] = views.runs_rows(rows)
                    if job.state == jobs.DONE or (job.result or {}).get("adapter"):
                        out[c["run_pick"]] = gr.Dropdown(choices=finished, value=job.id)
                    elif job.state == jobs.ERROR:
                        gr.Warning(job.error)
            probe = jobs.get(s.get("probe"))
            if probe is not None:
                if probe.state in jobs.FINISHED:
                    if probe.state == jobs.DONE and s.get("probe_result") is not probe.result:
                        s["probe_result"] = probe.result
                        import psutil

                        out[cost] = views.cost_html(s.get("est"), probe.result, psutil.virtual_memory().available)
                    elif probe.state == jobs.ERROR:
                        gr.Warning(probe.error)
                    s["probe"] = None
                else:
                    active = True
            out[state] = s
            out[timer] = gr.Timer(active=active)
            return out

        timer.tick(on_tick, [state, owner, c["run_pick"]], [live, plot, runs, c["run_pick"], cost, state, timer],
                   show_progress="hidden", api_visibility="private")

        def on_load(st, who):
            s = _s(st)
            who = who or uuid.uuid4().hex
            rows, finished = runs_update(who)
            mine = [j for j in jobs.find(lora_train.KIND, who) if j.state in (jobs.QUEUED, jobs.RUNNING)]
            if mine:  # a reload while training: pick the run up again
                s["job"] = mine[0].id
            data = show_data(lora_data.DEFAULT_DATASET, None, "", D.max_length, D.seed, D.eval_fraction,
                             D.completion_only_loss)
            return {owner: who, state: s, runs: views.runs_rows(rows),
                    c["run_pick"]: gr.Dropdown(choices=finished, value=finished[0][1] if finished else None),
                    timer: gr.Timer(active=bool(mine)), summary: data["summary"], hist: data["hist"],
                    preview: data["preview"]}

        demo.load(on_load, [state, owner], [owner, state, runs, c["run_pick"], timer, summary, hist, preview],
                  api_visibility="private")
        demo.load(on_estimate, cost_inputs, [cost, state], show_progress="hidden", api_visibility="private")

        def on_pick_row(evt: gr.SelectData, table):
            try:
                run_id = table.iloc[evt.index[0], 0] if hasattr(table, "iloc") else table[evt.index[0]][0]
            except (IndexError, KeyError, TypeError):
                return gr.Dropdown()
            return gr.Dropdown(value=run_id)

        runs.select(on_pick_row, runs, c["run_pick"], api_visibility="private")

        # --- compare
        def on_run(run_id, st):
            s = _s(st)
            s["run"] = run_id
            try:
                run = lora_train.get_run(run_id) if run_id else None
            except Exception as exc:  # noqa: BLE001
                return {c["result"]: f"⚠️ {views.e(message(exc))}", state: s}
            return {c["result"]: views.result_html(run), state: s, c["heldout"]: ""}

        c["run_pick"].change(on_run, [c["run_pick"], state], [c["result"], state, c["heldout"]],
                             api_visibility="private")

        def on_compare(prompt, run_id, max_new, seed, temperature):
            try:
                return views.side_by_side_html(lora_compare.side_by_side(prompt, run_id, int(max_new), int(seed or 0),
                                                                         float(temperature)))
            except Exception as exc:  # noqa: BLE001
                raise ui_error(exc, "Generation") from None

        c["compare_btn"].click(on_compare, [c["prompt"], c["run_pick"], c["max_new"], c["seed"], c["temperature"]],
                               c["side"], api_visibility="private")
        c["prompt"].submit(on_compare, [c["prompt"], c["run_pick"], c["max_new"], c["seed"], c["temperature"]],
                           c["side"], api_visibility="private")

        def on_heldout(run_id):
            try:
                if not run_id:
                    raise lora_compare.CompareError("Pick a finished run first.")
                return views.heldout_html(lora_compare.heldout_check(run_id))
            except Exception as exc:  # noqa: BLE001
                raise ui_error(exc, "The held-back check") from None

        c["heldout_btn"].click(on_heldout, c["run_pick"], c["heldout"], api_visibility="private")

        def on_zip(run_id):
            try:
                return str(lora_train.zip_adapter(run_id or ""))
            except Exception as exc:  # noqa: BLE001
                raise ui_error(exc, "The download") from None

        c["zip_btn"].click(on_zip, c["run_pick"], c["files"], api_visibility="private")

        def on_merge(run_id):
            try:
                return str(lora_train.merge(run_id or ""))
            except Exception as exc:  # noqa: BLE001
                raise ui_error(exc, "Merging") from None

        c["merge_btn"].click(on_merge, c["run_pick"], c["files"], api_visibility="private")

        def on_push(run_id, repo_id):
            try:
                return f"✅ Pushed: {lora_train.push(run_id or '', repo_id)}"
            except Exception as exc:  # noqa: BLE001
                return f"⚠️ {message(exc, 'Pushing')}"

        c["push_btn"].click(on_push, [c["run_pick"], c["repo"]], c["push_md"], api_visibility="private")

        def token_status():
            from shared.store import hub_token

            return ("A Hugging Face token is available on this server (from `hf auth login` or HF_TOKEN); it is never "
                    "shown." if hub_token() else "No Hugging Face token on this server: run `hf auth login` (or set "
                    "HF_TOKEN) where the lab runs to push. The lab never asks for a token in the page.")

        demo.load(token_status, None, c["token_md"], api_visibility="private")

        # --- export
        def on_export(choice, up, gpu_count, hub_id, *cfg_values):
            try:
                zipped = lora_export.export(dataset_spec(choice, up), collect(*cfg_values), (hub_id or "").strip() or None,
                                            int(gpu_count))
            except Exception as exc:  # noqa: BLE001
                raise ui_error(exc, "The export") from None
            return {export_file: str(zipped), command: f"unzip {zipped.name} -d {zipped.stem} && cd {zipped.stem}\n"
                                                       + lora_export.command(int(gpu_count))}

        export_btn.click(on_export, [dataset, upload, gpus, model_id, *config_inputs], [export_file, command],
                         api_visibility="private")

        gr.api(train_api, api_name="train", concurrency_limit=16)
        gr.api(generate_api, api_name="generate")
        gr.api(datasets_api, api_name="datasets")
        gr.api(estimate_api, api_name="estimate")
    return demo


demo = build_demo()

if __name__ == "__main__":
    launch(demo)
