"""A LoRA (or QLoRA) run: trl's SFTTrainer + peft in a shared job (one training job per machine, the
others wait in line), live metrics through shared.jobs.trainer_callback, eval loss before and after,
the adapter written atomically with its model card, and every run recorded in SQLite so it can be
found again after a page reload. Also the 2-step time probe. No gradio here."""
from __future__ import annotations

import contextlib
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from shared import jobs, memory, store
from shared.errors import UserError
from shared.loading import once, reserve

import lora_config as lc
import lora_data
import lora_estimate
import lora_models

# ---------------------------------------------------------------- limits and defaults
JOB_KEY = "train"  # one training job per machine (probes wait in the same line)
KIND = "lora"
PROBE_STEPS = 2
EVAL_POINTS = 5  # eval loss this many times during a run
RUN_ID = re.compile(r"^[0-9a-f]{12}$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL DEFAULT '', created REAL NOT NULL, finished REAL,
    status TEXT NOT NULL, model TEXT NOT NULL DEFAULT '', dataset TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL DEFAULT '{}', adapter TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS runs_owner ON runs(owner, created);
"""


class TrainError(UserError):
    pass


# ---------------------------------------------------------------- records

def data_root() -> Path:
    return store.data_dir("lora_trainer")


def db() -> store.Database:
    def build():
        database = store.Database(data_root() / "runs.sqlite", SCHEMA)
        # Runs that were running when the server stopped can never finish: say so.
        database.write("UPDATE runs SET status='interrupted', error='the server stopped during this run' "
                       "WHERE status IN ('queued', 'running')")
        return database

    return once(("lora_runs_db", str(data_root())), build)


def run_folder(run_id: str) -> Path:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise TrainError(f"'{str(run_id)[:40]}' is not a run id (12 hex characters, from the runs list).")
    return data_root() / "runs" / run_id


def get_run(run_id: str) -> dict:
    run_folder(run_id)
    rows = db().query("SELECT * FROM runs WHERE id=?", (run_id,))
    if not rows:
        raise TrainError(f"No run {run_id} on this server.")
    row = rows[0]
    row["config"] = json.loads(row["config"] or "{}")
    row["result"] = json.loads(row["result"] or "{}")
    return row


def list_runs(owner: str | None = None, limit: int = 50) -> list[dict]:
    """Newest first; the live state of a run still in this process comes from its job."""
    if owner is None:
        rows = db().query("SELECT * FROM runs ORDER BY created DESC LIMIT ?", (limit,))
    else:
        rows = db().query("SELECT * FROM runs WHERE owner=? ORDER BY created DESC LIMIT ?", (owner, limit))
    for row in rows:
        row["config"] = json.loads(row["config"] or "{}")
        row["result"] = json.loads(row["result"] or "{}")
        job = jobs.get(row["id"])
        if job is not None and row["status"] in ("queued", "running"):
            row["status"] = job.state
            row["progress"] = job.progress
    return rows


def _record(run_id: str, **values) -> None:
    sets = ", ".join(f"{k}=?" for k in values)
    db().write(f"UPDATE runs SET {sets} WHERE id=?", (*values.values(), run_id))


# ---------------------------------------------------------------- the run

@dataclass
class Prepared:
    data: lora_data.Dataset
    cfg: lc.TrainConfig
    src: lora_models.Source
    targets: list[str]
    train_rows: list[dict]
    eval_rows: list[dict]
    truncated: int = 0  # training rows longer than max_length (their end is cut)
    dropped: int = 0  # training rows whose prompt alone fills max_length (trl drops them)
    longest: int = 0  # the longest training row in tokens, capped at max_length (the padded batch length)


def prepare(dataset: str, config: dict | lc.TrainConfig) -> Prepared:
    """Check everything a run needs before it waits in line: the data, the settings, the model's layer
    names, QLoRA on this device. Raises a UserError with the reason."""
    cfg = config if isinstance(config, lc.TrainConfig) else lc.parse(config)
    data = lora_data.load(dataset)
    src = lora_models.source(cfg.model)
    layers = memory.linear_layers(memory.meta_model(lora_models.config(src)))
    targets, _ = lc.resolve_targets(cfg.target_modules, layers)
    if cfg.qlora:
        from shared.device import pick_device

        ok, why = lc.qlora_status(pick_device())
        if not ok:
            raise TrainError(why)
    train_rows, eval_rows = lora_data.split(data.rows, cfg.seed, cfg.eval_fraction)
    tok = lora_models.tokenizer(src)
    stats = lora_data.token_stats(tok, train_rows, cfg.max_length)
    if stats.dropped == len(train_rows):
        raise TrainError(f"max_length {cfg.max_length} is too short: every prompt (with the chat template) fills it, "
                         f"so no answer token is left to learn from. The shortest prompt has "
                         f"{min(stats.prompt_lengths)} tokens.")
    # trl drops rows with no answer token left; an eval row like that would make an empty eval set.
    eval_stats = lora_data.token_stats(tok, eval_rows, cfg.max_length)
    eval_rows = [r for r, n in zip(eval_rows, eval_stats.prompt_lengths) if n < cfg.max_length]
    return Prepared(data, cfg, src, targets, train_rows, eval_rows, stats.truncated, stats.dropped,
                    min(cfg.max_length, max(stats.lengths)))


def total_steps(p: Prepared) -> int:
    if p.cfg.epochs > 0:
        per_epoch = math.ceil(len(p.train_rows) / (p.cfg.batch_size * p.cfg.grad_accum))
        return max(1, math.ceil(per_epoch * p.cfg.epochs))
    return p.cfg.max_steps


def start(dataset: str, config: dict | lc.TrainConfig, owner: str = "") -> jobs.Job:
    """Queue a run (it starts when the machine's training line is free) and record it."""
    p = prepare(dataset, config)
    if owner:
        mine = [j for j in jobs.find(KIND, owner) + jobs.find("probe", owner) if j.state in (jobs.QUEUED, jobs.RUNNING)]
        if mine:
            raise TrainError(f"Your run {mine[0].id} is still {mine[0].state}: stop it or wait for it before "
                             "training again.")
    label = f"LoRA r={p.cfg.r} on {p.src.choice.spec.name} · {p.data.name}"
    job = jobs.submit(lambda job: run(job, p), key=JOB_KEY, kind=KIND, label=label, owner=owner)
    db().write("INSERT OR IGNORE INTO runs (id, owner, created, status, model, dataset, config) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)",
               (job.id, owner, time.time(), "queued", p.src.choice.spec.name, p.data.name,
                json.dumps(p.cfg.to_dict())))
    return job


def _sft_config(p: Prepared, out_dir: Path, steps: int, eval_steps: int | None):
    from trl import SFTConfig
    from shared.device import pick_device

    device = pick_device()
    gpu = device.startswith("cuda")
    import torch

    bf16 = gpu and torch.cuda.is_bf16_supported()
    return SFTConfig(
        output_dir=str(out_dir), use_cpu=device == "cpu", bf16=bf16, fp16=gpu and not bf16,
        gradient_checkpointing=False, max_length=p.cfg.max_length, per_device_train_batch_size=p.cfg.batch_size,
        per_device_eval_batch_size=p.cfg.batch_size, gradient_accumulation_steps=p.cfg.grad_accum,
        max_steps=steps, learning_rate=p.cfg.learning_rate, warmup_steps=p.cfg.warmup_ratio,
        lr_scheduler_type="linear", logging_steps=1, save_strategy="no", report_to=[], seed=p.cfg.seed,
        data_seed=p.cfg.seed, completion_only_loss=p.cfg.completion_only_loss,
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps, dataloader_num_workers=0,
        disable_tqdm=True, dataset_num_proc=None, remove_unused_columns=True)


def _lora_config(p: Prepared):
    from peft import LoraConfig

    return LoraConfig(r=p.cfg.r, lora_alpha=p.cfg.alpha, lora_dropout=p.cfg.dropout, target_modules=p.targets,
                      bias="none", task_type="CAUSAL_LM")


def _datasets(p: Prepared):
    from datasets import Dataset

    train = Dataset.from_list(p.train_rows)
    evals = Dataset.from_list(p.eval_rows) if p.eval_rows else None
    return train, evals


def build_trainer(p: Prepared, out_dir: Path, steps: int, callbacks=(), with_eval: bool = True, progress=None):
    """An SFTTrainer for `p` (a fresh copy of the base model; LoRA attached by trl through peft_config).
    `progress(fraction, message)` hears about a Hub model's download."""
    from datasets.utils.logging import disable_progress_bar
    from transformers import PrinterCallback
    from trl import SFTTrainer

    disable_progress_bar()  # the job's progress is the lab's progress bar
    model = lora_models.load_for_training(p.src, qlora=p.cfg.qlora, progress=progress)
    tokenizer = lora_models.tokenizer(p.src)
    train, evals = _datasets(p)
    # Eval during training EVAL_POINTS times on runs long enough for a curve; short runs: before and after only.
    eval_steps = steps // EVAL_POINTS if (evals is not None and with_eval and steps >= 2 * EVAL_POINTS) else None
    trainer = SFTTrainer(model=model, args=_sft_config(p, out_dir, steps, eval_steps), train_dataset=train,
                         eval_dataset=evals if with_eval else None, processing_class=tokenizer,
                         peft_config=_lora_config(p), callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to the server's console
    return trainer


def _step_callback(job: jobs.Job, peak: memory.track_peak_rss, total: int):
    """Step time, tokens/s, peak memory and ETA into the job's metrics and message."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.t0 = None
            self.tokens = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self.t0 is not None:
                self.times.append(time.perf_counter() - self.t0)
            recent = self.times[-10:]
            per = sum(recent) / len(recent) if recent else 0.0
            eta = per * max(0, total - state.global_step)
            job.report(message=f"step {state.global_step}/{total} · {per:.2f} s/step · ETA {eta:.0f} s"
                       + (" · stopping after this step" if job.should_stop() else ""))

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs or not self.times:
                return
            step_time = self.times[-1]
            tokens = float(logs.get("num_tokens", 0.0))
            rate = (tokens - self.tokens) / step_time if tokens and step_time else 0.0
            self.tokens = tokens or self.tokens
            recent = self.times[-10:]
            job.metrics.add(state.global_step, step_time=step_time, tokens_per_s=rate,
                            peak_rss_gb=peak.sample() / 1e9,
                            eta_s=sum(recent) / len(recent) * max(0, total - state.global_step))

    return StepClock()


def run(job: jobs.Job, p: Prepared) -> dict:
    """The body of a training job (also called directly by tests and the bench)."""
    run_id = job.id
    folder = run_folder(run_id)
    steps = total_steps(p)
    db().write("INSERT OR IGNORE INTO runs (id, owner, created, status, model, dataset, config) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)", (run_id, job.owner, time.time(), "running",
                                                p.src.choice.spec.name, p.data.name, json.dumps(p.cfg.to_dict())))
    _record(run_id, status="running")
    result = {"run_id": run_id, "status": "error", "steps": 0, "train_loss": [], "eval_loss_before": None,
              "eval_loss_after": None}
    try:
        import_training_stack()  # its memory belongs to the runtime, not to this run
        with memory.track_peak_rss() as peak, contextlib.ExitStack() as held:
            runtime = peak.start
            est = lora_estimate.estimate(p.cfg, seq_len=p.longest, runtime_bytes=runtime)
            # The run's memory counts in the server's model budget (other labs' unused models make room).
            held.enter_context(reserve(("lora_train", run_id), est["device"], est["lora_bytes"] - runtime))
            job.report(0.0, "loading the model")
            job.check_stop()
            clock = _step_callback(job, peak, steps)
            trainer = build_trainer(p, folder / "work", steps, [jobs.trainer_callback(job, steps), clock],
                                    progress=lambda _fraction, text: job.report(None, text))
            job.check_stop()
            if p.eval_rows:
                job.report(0.0, "eval loss before training")
                result["eval_loss_before"] = _finite(trainer.evaluate().get("eval_loss"))  # logged at step 0
            job.check_stop()
            job.report(0.0, f"step 0/{steps}")
            t0 = time.perf_counter()
            trainer.train()
            train_seconds = time.perf_counter() - t0
            done_steps = trainer.state.global_step
            stopped = job.should_stop()
            if p.eval_rows and done_steps and not stopped:
                job.report(None, "eval loss after training")
                result["eval_loss_after"] = _finite(trainer.evaluate().get("eval_loss"))
        losses = [round(v, 5) for _, v in job.metrics.series("loss")]
        result.update(
            status="stopped" if stopped else "done", steps=done_steps, train_loss=losses,
            trainable_params=est["trainable_params"], total_params=est["total_params"],
            s_per_step=round(_mean_step(clock.times), 4) if clock.times else None,
            train_seconds=round(train_seconds, 2), peak_rss_bytes=int(peak.bytes),
            estimated_peak_bytes=int(est["lora_bytes"]), estimate=est["lora"], targets=p.targets,
            train_rows=len(p.train_rows), eval_rows=len(p.eval_rows), heldout=len(p.data.heldout),
            truncated_rows=p.truncated, dropped_rows=p.dropped,
            model=p.src.choice.spec.name, dataset=p.data.name)
        for key in ("eval_loss_before", "eval_loss_after"):
            if result[key] is not None:
                result[key.replace("eval_loss", "perplexity")] = round(math.exp(min(result[key], 50)), 3)
        if done_steps:
            job.report(None, "saving the adapter")
            save_adapter(trainer, p, result, job.metrics.rows(), folder / "adapter")
            result["adapter"] = str(folder / "adapter")
        else:
            result["note"] = "stopped before the first step finished: no adapter was saved"
        _record(run_id, status=result["status"], finished=time.time(), result=json.dumps(result),
                adapter=result.get("adapter", ""))
        return result
    except jobs.Stopped:
        result["status"] = "stopped"
        result["note"] = "stopped before training began: no adapter was saved"
        _record(run_id, status="stopped", finished=time.time(), result=json.dumps(result))
        raise
    except BaseException as exc:
        from shared.errors import message

        _record(run_id, status="error", finished=time.time(), error=message(exc, "Training"))
        raise
    finally:
        import shutil

        shutil.rmtree(folder / "work", ignore_errors=True)


def import_training_stack() -> None:
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import trl  # noqa: F401


def _finite(x) -> float | None:
    return round(float(x), 5) if x is not None and math.isfinite(float(x)) else None


def _mean_step(times: list[float]) -> float:
    """Mean step time without the first step (it pays one-off warm-up costs) when there are more."""
    rest = times[1:] if len(times) > 2 else times
    return sum(rest) / len(rest)


# ---------------------------------------------------------------- the adapter on disk

def save_adapter(trainer, p: Prepared, result: dict, metric_rows: list[dict], path: Path) -> Path:
    """adapter_model.safetensors + adapter_config.json + README.md (the model card: data, config,
    results, curves) + training_log.json, written into a temporary folder and renamed into place."""
    with store.atomic_folder(path) as tmp:
        trainer.model.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "training_log.json").write_text(json.dumps({"result": result, "metrics": metric_rows}, indent=1),
                                               encoding="utf-8")
        (tmp / "README.md").write_text(model_card(p, result, metric_rows), encoding="utf-8")
    return path


def model_card(p: Prepared, result: dict, metric_rows: list[dict]) -> str:
    spec = lora_data.SHIPPED.get(p.data.name)
    data_line = (f"`{spec.name}` from the GenAI Lab Playground ({spec.source}, {spec.licence}): {spec.description}"
                 if spec else f"an uploaded file `{p.data.name}` ({p.data.fmt})")
    cfg = p.cfg.to_dict()
    cfg_rows = "\n".join(f"| {k} | {v} |" for k, v in cfg.items())
    losses = [(r["step"], r["loss"]) for r in metric_rows if "loss" in r]
    evals = {r["step"]: r["eval_loss"] for r in metric_rows if "eval_loss" in r}
    every = max(1, len(losses) // 20)
    curve = "\n".join(f"| {s} | {v:.4f} | {f'{evals[s]:.4f}' if s in evals else ''} |" for s, v in losses[::every])

    def fmt(x):
        return "n/a" if x is None else f"{x:.4f}"

    return f"""---
base_model: {p.src.choice.spec.hub_id}
library_name: peft
pipeline_tag: text-generation
tags: [lora, sft, trl, peft, genai-lab-playground]
---

# LoRA adapter for {p.src.choice.spec.name}

Trained with the GenAI Lab Playground's LoRA trainer (trl SFTTrainer + peft), run `{result['run_id']}`.

## Data

{data_line}. {len(p.train_rows)} training rows, {len(p.eval_rows)} eval rows (split with seed {p.cfg.seed});
loss on the answer tokens only: {p.cfg.completion_only_loss}.

## Configuration

| setting | value |
|---|---|
{cfg_rows}
| target layers | {', '.join(p.targets)} |

## Results

| | value |
|---|---|
| status | {result['status']} |
| steps | {result['steps']} |
| eval loss before / after | {fmt(result.get('eval_loss_before'))} / {fmt(result.get('eval_loss_after'))} |
| trainable parameters | {result.get('trainable_params', 0):,} of {result.get('total_params', 0):,} |
| seconds per step | {result.get('s_per_step')} |

## Loss curve

| step | train loss | eval loss |
|---|---|---|
{curve}

## Use it

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{p.src.choice.spec.hub_id}")
model = PeftModel.from_pretrained(base, "path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("{p.src.choice.spec.hub_id}")
```
"""


def adapter_folder(run_id: str) -> Path:
    path = run_folder(run_id) / "adapter"
    if not (path / "adapter_config.json").is_file():
        run = get_run(run_id)
        raise TrainError(f"Run {run_id} has no adapter ({run['status']}"
                         + (f": {run['error']}" if run.get("error") else "") + ").")
    return path


def zip_adapter(run_id: str) -> Path:
    """The adapter folder as one zip (for download), written atomically beside it."""
    import shutil

    folder = adapter_folder(run_id)
    target = folder.parent / f"lora-adapter-{run_id}.zip"
    if not target.exists() or target.stat().st_mtime < (folder / "adapter_config.json").stat().st_mtime:
        staging = folder.parent / f".zip-{run_id}"
        made = shutil.make_archive(str(staging), "zip", folder)
        Path(made).replace(target)
    return target


def merge(run_id: str) -> Path:
    """The base model with this adapter merged in (plain transformers weights, no peft needed), as a folder
    written atomically and a zip of it."""
    import shutil

    from peft import PeftModel

    run = get_run(run_id)
    src = lora_models.source(run["config"].get("model", ""))
    folder = adapter_folder(run_id)
    target = folder.parent / "merged"
    base = lora_models.load_for_training(src)
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    with store.atomic_folder(target) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        lora_models.tokenizer(src).save_pretrained(str(tmp))
    zipped = folder.parent / f"merged-{run_id}.zip"
    made = shutil.make_archive(str(folder.parent / f".merged-{run_id}"), "zip", target)
    Path(made).replace(zipped)
    return zipped


def push(run_id: str, repo_id: str) -> str:
    """Push the adapter folder (with its model card) to a Hub model repo; the token comes from
    `hf auth login` or HF_TOKEN, never from the page."""
    folder = adapter_folder(run_id)
    return store.push_folder(folder, (repo_id or "").strip(), "model",
                             message=f"LoRA adapter from the GenAI Lab Playground (run {run_id})")


# ---------------------------------------------------------------- the 2-step probe

def probe(dataset: str, config: dict | lc.TrainConfig, owner: str = "") -> jobs.Job:
    """Queue a 2-step training probe in the training line: seconds per step of this exact
    configuration on this machine, without keeping anything."""
    p = prepare(dataset, config)

    def work(job: jobs.Job) -> dict:
        import tempfile

        job.report(0.0, "loading the model for a 2-step probe")
        with memory.track_peak_rss() as peak, tempfile.TemporaryDirectory(prefix="lora-probe-") as tmp:
            clock = _step_callback(job, peak, PROBE_STEPS)
            trainer = build_trainer(p, Path(tmp), PROBE_STEPS, [clock], with_eval=False)
            job.check_stop()
            trainer.train()
        times = clock.times
        per = times[-1] if times else None
        return {"steps": len(times), "step_seconds": [round(t, 3) for t in times],
                "s_per_step": round(per, 3) if per else None, "total_steps": total_steps(p),
                "eta_seconds": round(per * total_steps(p), 1) if per else None,
                "peak_rss_bytes": int(peak.bytes)}

    return jobs.submit(work, key=JOB_KEY, kind="probe", label="2-step probe", owner=owner)
