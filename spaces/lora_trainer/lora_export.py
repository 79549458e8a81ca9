"""Scale out: the same run as files an instructor can take to a multi-GPU machine: trl's training
script, its config file (SFTConfig + ModelConfig + data), the data split, accelerate configs (one GPU,
DDP on several GPUs, DeepSpeed ZeRO-2) and the `accelerate launch` command. No gradio here."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from shared import store

import lora_train

SCRIPT = Path(__file__).resolve().parent / "lora_export_script.py"
GPUS = 8


def _accelerate(kind: str, gpus: int) -> dict:
    base = {"compute_environment": "LOCAL_MACHINE", "debug": False, "downcast_bf16": "no", "machine_rank": 0,
            "main_training_function": "main", "mixed_precision": "bf16", "num_machines": 1,
            "rdzv_backend": "static", "same_network": True, "use_cpu": False}
    if kind == "single_gpu":
        return {**base, "distributed_type": "NO", "num_processes": 1, "gpu_ids": "0"}
    if kind == "multi_gpu":
        return {**base, "distributed_type": "MULTI_GPU", "num_processes": gpus, "gpu_ids": "all"}
    return {**base, "distributed_type": "DEEPSPEED", "num_processes": gpus,
            "deepspeed_config": {"deepspeed_multinode_launcher": "standard", "offload_optimizer_device": "none",
                                 "offload_param_device": "none", "zero3_init_flag": False, "zero_stage": 2}}


def sft_yaml(p: lora_train.Prepared, model_id: str, gpus: int = GPUS) -> dict:
    """trl's config file for the exported script: the lab's settings under trl's own names."""
    c = p.cfg
    steps = lora_train.total_steps(p)
    # The lab's batch is per step on one device; keep the global batch the same on `gpus` devices when it divides.
    per_device, accum = c.batch_size, c.grad_accum
    return {
        "model_name_or_path": model_id, "dtype": "bfloat16",
        "use_peft": True, "lora_r": c.r, "lora_alpha": c.alpha, "lora_dropout": c.dropout,
        "lora_target_modules": list(p.targets), "load_in_4bit": bool(c.qlora), "bnb_4bit_quant_type": "nf4",
        "use_bnb_nested_quant": bool(c.qlora),
        "train_file": "data/train.jsonl", "eval_file": "data/eval.jsonl" if p.eval_rows else "",
        "output_dir": "adapter", "max_steps": steps, "learning_rate": c.learning_rate,
        "lr_scheduler_type": "linear", "warmup_steps": c.warmup_ratio,
        "per_device_train_batch_size": per_device, "per_device_eval_batch_size": per_device,
        "gradient_accumulation_steps": accum, "max_length": c.max_length, "seed": c.seed, "data_seed": c.seed,
        "completion_only_loss": c.completion_only_loss, "gradient_checkpointing": True, "bf16": True,
        "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        "eval_strategy": "steps" if p.eval_rows else "no",
        "eval_steps": max(1, steps // lora_train.EVAL_POINTS),
    }


def command(gpus: int = GPUS, config: str = "accelerate/multi_gpu.yaml") -> str:
    return f"accelerate launch --config_file {config} --num_processes {gpus} train.py --config sft_config.yaml"


def export(dataset: str, config: dict, model_id: str | None = None, gpus: int = GPUS,
           out: Path | None = None) -> Path:
    """Write the export folder (atomically) and a zip of it; returns the zip. `model_id` defaults to the
    run's model as a Hub id (the embedded SmolLM2's origin for the embedded one)."""
    p = lora_train.prepare(dataset, config)
    model_id = model_id or p.src.choice.spec.hub_id
    out = out or store.data_dir("lora_trainer", "exports")
    name = f"lora-{p.data.name}-r{p.cfg.r}-seed{p.cfg.seed}"
    folder = out / name
    with store.atomic_folder(folder) as tmp:
        shutil.copyfile(SCRIPT, tmp / "train.py")
        (tmp / "data").mkdir()
        for split, rows in (("train", p.train_rows), ("eval", p.eval_rows)):
            if rows:
                (tmp / "data" / f"{split}.jsonl").write_text(
                    "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        (tmp / "sft_config.yaml").write_text(
            "# trl config file: read by train.py (TrlParser); command-line flags override it.\n"
            + yaml.safe_dump(sft_yaml(p, model_id, gpus), sort_keys=False), encoding="utf-8")
        (tmp / "accelerate").mkdir()
        for kind in ("single_gpu", "multi_gpu", "deepspeed_zero2"):
            (tmp / "accelerate" / f"{kind}.yaml").write_text(yaml.safe_dump(_accelerate(kind, gpus), sort_keys=False),
                                                            encoding="utf-8")
        (tmp / "launch.sh").write_text(
            "#!/usr/bin/env bash\n# Multi-GPU (DDP). For DeepSpeed ZeRO-2 use accelerate/deepspeed_zero2.yaml;\n"
            "# for one GPU accelerate/single_gpu.yaml with --num_processes 1.\nset -euo pipefail\n"
            'cd "$(dirname "$0")"\npip install "trl>=1.16" "peft>=0.21" "accelerate>=1.15" datasets'
            + (" bitsandbytes" if p.cfg.qlora else "") + "\n"
            + command(gpus) + ' "$@"\n', encoding="utf-8")
        (tmp / "launch.sh").chmod(0o755)
        (tmp / "README.md").write_text(
            f"# LoRA run exported from the GenAI Lab Playground\n\nModel `{model_id}`, data `{p.data.name}` "
            f"({len(p.train_rows)} train / {len(p.eval_rows)} eval rows), LoRA r={p.cfg.r} alpha={p.cfg.alpha} on "
            f"{', '.join(p.targets)}.\n\n```bash\n{command(gpus)}\n```\n\nDeepSpeed ZeRO-2 (pip install deepspeed):"
            f"\n\n```bash\n{command(gpus, 'accelerate/deepspeed_zero2.yaml')}\n```\n\nThe global batch is "
            f"per_device_train_batch_size x gradient_accumulation_steps x GPUs; the lab trained with "
            f"{p.cfg.batch_size} x {p.cfg.grad_accum} on one device, so divide the per-device batch by the number "
            "of GPUs to keep the same optimisation (or raise the learning rate with a bigger batch).\n",
            encoding="utf-8")
    zipped = out / f"{name}.zip"
    made = shutil.make_archive(str(out / f".{name}"), "zip", folder)
    Path(made).replace(zipped)
    return zipped
