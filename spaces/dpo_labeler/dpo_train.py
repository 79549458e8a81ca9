"""DPO with LoRA through trl's DPOTrainer, the implicit-reward evaluation on held-back pairs, and the
DPO loss terms of a few pairs (the "RLHF vs DPO" panel). No gradio here.

The policy is a fresh copy of the base model with a LoRA adapter; with peft_config, DPOTrainer's
reference model is that same model with the adapter switched off, so only one copy is in memory.
The implicit reward of an answer y is  r(y) = beta * (log pi(y|x) - log pi_ref(y|x)); a held-back pair
is ranked right when r(chosen) > r(rejected)."""
from __future__ import annotations

import math
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from shared.errors import UserError

# ---------------------------------------------------------------- limits and defaults
# Defaults chosen by bench/dpo_labeler.py (see bench/results/dpo_labeler.md): trl's own DPO default
# learning rate (1e-6) barely moves a LoRA in tens of steps.
DEFAULTS = dict(beta=0.1, learning_rate=5e-4, max_steps=30, r=8, dataset="seed", batch_size=4, max_length=128,
                seed=0)
LIMITS = dict(beta=(0.01, 2.0), learning_rate=(1e-7, 1e-2), max_steps=(1, 500), r=(1, 64), batch_size=(1, 16),
              max_length=(32, 1024))
DATASETS = ("seed", "labels")
EVAL_BATCH = 16
LOSS_PANEL_PAIRS = 8


class TrainError(UserError):
    pass


@dataclass(frozen=True)
class TrainConfig:
    beta: float = DEFAULTS["beta"]
    learning_rate: float = DEFAULTS["learning_rate"]
    max_steps: int = DEFAULTS["max_steps"]
    r: int = DEFAULTS["r"]
    dataset: str = DEFAULTS["dataset"]
    batch_size: int = DEFAULTS["batch_size"]
    max_length: int = DEFAULTS["max_length"]
    seed: int = DEFAULTS["seed"]
    model: str = ""  # "" = the embedded SmolLM2-135M-Instruct; else a registry name or Hub id

    def as_dict(self) -> dict:
        return asdict(self)


def parse_config(config) -> TrainConfig:
    """A TrainConfig from a JSON object (dict, or its text); unknown keys and bad values are refused."""
    import json

    if config is None or config == "":
        config = {}
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise TrainError(f"The config is not valid JSON ({exc.msg}).") from exc
    if not isinstance(config, dict):
        raise TrainError("The config must be a JSON object like {\"max_steps\": 10, \"dataset\": \"seed\"}.")
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = [str(k)[:30] for k in config if k not in known]
    if unknown:
        raise TrainError(f"Unknown config key(s): {', '.join(unknown)}. Known: {', '.join(known)}.")
    values = {}
    for key, value in config.items():
        kind = known[key].type
        try:
            if kind in ("float", float):
                if isinstance(value, bool):
                    raise ValueError
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError
            elif kind in ("int", int):
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                value = int(value)
            elif not isinstance(value, str):
                raise ValueError
        except (TypeError, ValueError):
            raise TrainError(f"'{key}' must be a {kind} (got {str(value)[:30]!r}).") from None
        if key in LIMITS and not LIMITS[key][0] <= value <= LIMITS[key][1]:
            low, high = LIMITS[key]
            raise TrainError(f"'{key}' must be between {low:g} and {high:g} (got {value:g}).")
        values[key] = value
    if values.get("dataset", "seed") not in DATASETS:
        raise TrainError(f"'dataset' must be one of {', '.join(DATASETS)} (got {str(values['dataset'])[:30]!r}).")
    return TrainConfig(**values)


# ---------------------------------------------------------------- log-probabilities

def tokenize_row(tokenizer, row: dict, max_length: int) -> tuple[list[int], list[int], list[int]]:
    """(prompt ids, chosen ids, rejected ids) exactly as trl's DPOTrainer cuts a conversational row."""
    def ids(messages, **kw):
        out = tokenizer.apply_chat_template(messages, tokenize=True, **kw)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    prompt = ids(row["prompt"], add_generation_prompt=True)
    with_chosen = ids(row["prompt"] + row["chosen"])
    with_rejected = ids(row["prompt"] + row["rejected"])

    def common(a, b):
        n = 0
        for x, y in zip(a, b):
            if x != y:
                break
            n += 1
        return n

    cut = min(common(prompt, with_chosen), common(prompt, with_rejected))
    return prompt[:cut], with_chosen[cut:], with_rejected[cut:]


def sequence_logps(model, sequences: list[tuple[list[int], list[int]]], max_length: int, pad_id: int,
                   batch_size: int = EVAL_BATCH) -> list[float]:
    """Sum of log p(completion token) for each (prompt ids, completion ids), truncated like trl (keep_start)."""
    import torch

    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        seqs = [(p + c)[:max_length] for p, c in chunk]
        masks = [([0] * len(p) + [1] * len(c))[:max_length] for p, c in chunk]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], device=device)
        att = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
        comp = torch.tensor([m + [0] * (width - len(m)) for m in masks], device=device, dtype=torch.float32)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        out.extend((logp * comp[:, 1:]).sum(dim=1).tolist())
    return out


def pair_logps(model, tokenizer, rows: list[dict], max_length: int) -> tuple[list[float], list[float]]:
    """(log pi(chosen|x), log pi(rejected|x)) per row."""
    cut = [tokenize_row(tokenizer, r, max_length) for r in rows]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    logps = sequence_logps(model, [(p, c) for p, c, _ in cut] + [(p, r) for p, _, r in cut], max_length, pad)
    return logps[:len(rows)], logps[len(rows):]


def reference_logps(model, tokenizer, rows, max_length):
    """Log-probs under the reference: the adapter switched off when the model carries one."""
    import contextlib

    off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with off:
        return pair_logps(model, tokenizer, rows, max_length)


def implicit_rewards(policy: tuple[list, list], reference: tuple[list, list], beta: float) -> dict:
    """Accuracy (r_chosen > r_rejected; a tie counts half, so an untrained policy scores 0.5, chance) and
    mean margin r_chosen - r_rejected; plus the base model's own preference (log pi_ref(chosen) >
    log pi_ref(rejected)), which DPO does not need but which shows what the pairs ask for."""
    pc, pr = policy
    rc, rr = reference
    chosen = [beta * (a - b) for a, b in zip(pc, rc)]
    rejected = [beta * (a - b) for a, b in zip(pr, rr)]
    n = len(chosen)
    if n == 0:
        return {"accuracy": None, "margin": None, "reward_chosen": None, "reward_rejected": None, "pairs": 0}
    right = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected))
    return {"accuracy": round(right / n, 4), "margin": round(sum(c - r for c, r in zip(chosen, rejected)) / n, 4),
            "reward_chosen": round(sum(chosen) / n, 4), "reward_rejected": round(sum(rejected) / n, 4),
            "base_prefers_chosen": round(sum(a > b for a, b in zip(rc, rr)) / n, 4), "pairs": n}


def loss_terms(policy, tokenizer, rows: list[dict], beta: float, max_length: int = DEFAULTS["max_length"]) -> list[dict]:
    """The DPO loss of each pair, term by term: log-ratios of chosen and rejected under policy vs reference,
    the margin beta * (chosen log-ratio - rejected log-ratio), its sigmoid and the loss -log sigmoid."""
    pc, pr = pair_logps(policy, tokenizer, rows, max_length)
    rc, rr = reference_logps(policy, tokenizer, rows, max_length)
    out = []
    for row, a, b, c, d in zip(rows, pc, pr, rc, rr):
        chosen_ratio, rejected_ratio = a - c, b - d
        margin = beta * (chosen_ratio - rejected_ratio)
        sig = 1 / (1 + math.exp(-margin))
        out.append({"prompt": row["prompt"][0]["content"], "logp_chosen": a, "logp_ref_chosen": c,
                    "logp_rejected": b, "logp_ref_rejected": d, "chosen_logratio": chosen_ratio,
                    "rejected_logratio": rejected_ratio, "margin": margin, "sigmoid": sig,
                    "loss": -math.log(max(sig, 1e-300))})
    return out


# ---------------------------------------------------------------- models

def lora_targets(model) -> list[str]:
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    if {"q_proj", "v_proj"} <= names:
        return ["q_proj", "v_proj"]
    if "c_attn" in names:  # GPT-2
        return ["c_attn"]
    raise TrainError("This model has neither q_proj/v_proj nor c_attn layers; the lab does not know where to put LoRA.")


def fresh_base(requested: str = ""):
    """(model, tokenizer, name) : a private, trainable copy of the base model (the shared one that writes the
    pairs is never modified). The embedded SmolLM2 reloads from its cached safetensors copy in about a second."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shared import embedded
    from shared.device import pick_device
    from shared.errors import UserError
    from shared.loading import explain, fetch
    from shared.models import resolve

    choice = resolve("causal", requested or None)
    device = pick_device()
    try:
        # A Hub model's files come through shared.loading (policy and size checked by resolve, download
        # with progress into the HF cache); then it loads from there like the embedded one.
        where, offline = (str(embedded.smollm2_folder()), True) if choice.source == "embedded" \
            else fetch(choice, device)
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(where, local_files_only=offline)
    except Exception as exc:  # noqa: BLE001
        raise TrainError(f"Could not load {choice.spec.hub_id} for training: {exc}" if isinstance(exc, UserError)
                         else explain(choice.spec.hub_id, exc)) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device != "cpu":
        from shared.device import pick_dtype

        model = model.to(device, dtype=pick_dtype(device))
    return model, tokenizer, choice.spec.name


def load_policy(adapter: str | Path, requested: str = ""):
    """A trained policy again from its saved adapter: (PeftModel, tokenizer)."""
    from peft import PeftModel

    model, tokenizer, _ = fresh_base(requested)
    try:
        policy = PeftModel.from_pretrained(model, str(adapter))
    except Exception as exc:  # noqa: BLE001
        raise TrainError(f"The adapter in {adapter} cannot be loaded: {type(exc).__name__}.") from exc
    return policy.eval(), tokenizer


# ---------------------------------------------------------------- training

class _Timing:
    """Seconds per optimizer step and the peak resident memory of the process while training."""

    def __init__(self):
        self.steps: list[float] = []
        self.peak_rss = 0
        self._begin = 0.0
        self._stop = threading.Event()

    def callback(self):
        from transformers import TrainerCallback

        timing = self

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timing._begin = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timing.steps.append(time.perf_counter() - timing._begin)

        return StepTimer()

    def __enter__(self):
        import psutil

        proc = psutil.Process()

        def sample():
            while not self._stop.is_set():
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
                self._stop.wait(0.2)

        self.peak_rss = proc.memory_info().rss
        self._thread = threading.Thread(target=sample, daemon=True, name="dpo-rss")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)


def dpo_config(config: TrainConfig, output_dir: str, use_cpu: bool):
    from trl import DPOConfig

    return DPOConfig(output_dir=output_dir, per_device_train_batch_size=config.batch_size, max_steps=config.max_steps,
                     learning_rate=config.learning_rate, beta=config.beta, max_length=config.max_length,
                     logging_steps=1, save_strategy="no", report_to=[], use_cpu=use_cpu, bf16=False,
                     gradient_checkpointing=False, lr_scheduler_type="constant", warmup_steps=0, seed=config.seed,
                     dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False)


def lora_config(config: TrainConfig, model):
    from peft import LoraConfig

    return LoraConfig(r=config.r, lora_alpha=2 * config.r, lora_dropout=0.0, target_modules=lora_targets(model),
                      task_type="CAUSAL_LM")


def train(job, config: TrainConfig, rows: list[dict], heldout: list[dict], base=None, adapter_root: Path | None = None,
          reference_cache=None) -> dict:
    """Run DPO on `rows` (TRL conversational rows) and score `heldout` before and after.

    `job` is a shared.jobs.Job (progress, metrics, Stop). `base` is (model, tokenizer, name) or None for a fresh
    copy of config.model. Returns the API's result dict (JSON-able) with "adapter" (the saved folder) and "run_id"."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOTrainer

    from shared.jobs import trainer_callback
    from shared.store import atomic_folder, data_dir

    if len(rows) < MIN_ROWS:
        raise TrainError(f"Only {len(rows)} preference pair(s) to train on; at least {MIN_ROWS} are needed "
                         "(label more pairs with A or B, or train on the seed set).")
    job.report(0.0, "loading a trainable copy of the model")
    model, tokenizer, name = base or fresh_base(config.model)
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    job.report(0.0, f"scoring {len(heldout)} held-back pairs under the reference")
    ref = reference_cache() if reference_cache else None
    if ref is None:
        ref = pair_logps(model, tokenizer, heldout, config.max_length)
    # Before training the policy IS the reference (LoRA's B matrices start at zero), so every implicit reward is 0.
    before = implicit_rewards(ref, ref, config.beta)
    use_cpu = next(model.parameters()).device.type == "cpu"
    with tempfile.TemporaryDirectory(prefix="dpo-run-") as tmp, _Timing() as timing:
        trainer = DPOTrainer(model=model, args=dpo_config(config, tmp, use_cpu), train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=lora_config(config, model),
                             callbacks=[trainer_callback(job, config.max_steps), timing.callback()])
        trainer.remove_callback(PrinterCallback)  # the job's metrics carry the numbers; keep the server log quiet
        job.report(0.0, f"training: {len(rows)} pairs, {config.max_steps} steps of {config.batch_size}")
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
    policy = trainer.model.eval()
    steps = len(timing.steps)
    job.report(None, f"scoring {len(heldout)} held-back pairs with the trained policy")
    after = implicit_rewards(pair_logps(policy, tokenizer, heldout, config.max_length), ref, config.beta)
    folder = (adapter_root or data_dir("dpo_labeler", "adapters")) / run_id
    with atomic_folder(folder) as staging:
        policy.save_pretrained(str(staging))
    series = job.metrics
    result = {
        "status": "stopped" if job.should_stop() else "done", "run_id": run_id, "model": name, "steps": steps,
        "pairs": len(rows), "config": config.as_dict(),
        "loss": [v for _, v in series.series("loss")], "margins": [v for _, v in series.series("rewards/margins")],
        "accuracies": [v for _, v in series.series("rewards/accuracies")],
        "heldout_pairs": len(heldout),
        "heldout_accuracy_before": before["accuracy"], "heldout_accuracy_after": after["accuracy"],
        "heldout_margin_before": before["margin"], "heldout_margin_after": after["margin"],
        "heldout_base_prefers_chosen": after.get("base_prefers_chosen"),
        "s_per_step": round(sum(timing.steps) / steps, 3) if steps else None,
        "train_seconds": round(train_seconds, 1), "peak_rss_bytes": int(timing.peak_rss), "adapter": str(folder),
    }
    return result


MIN_ROWS = 4
