"""What a LoRA run will cost, before training: trainable parameters and their share, peak memory part
by part (weights, adapter, gradients, optimizer state, activations, workspace, runtime) next to a full
fine-tune of the same model, from the model's config alone (shared.memory's meta-device estimator).
The time per step comes from a real 2-step probe (lora_train.probe). No gradio here."""
from __future__ import annotations

import functools

from shared import memory
from shared.device import pick_device, pick_dtype

import lora_config as lc
import lora_models

# Loss and backward temporaries, in logit-sized tensors (batch x length x vocab): the gradient of the
# logits and the softmax buffer of the cross-entropy backward (trl's entropy/accuracy metrics are freed
# by then). Checked against measured peaks in bench/lora_trainer.py.
WORKSPACE_LOGITS = 2
# What a training step holds beyond the tensors autograd saves: backward's gradient buffers, forward
# temporaries and the blocks the allocator keeps after they are freed, as a share of the saved
# activations. Measured on this CPU without gradient checkpointing (bench/lora_trainer.py and
# bench/results/lora_trainer.md): the peak RSS minus every other part was 0.75-0.83x the traced
# activations for q,v and all-linear, batch 4 x 128 and 8 x 64.
TEMPORARIES_PER_ACTIVATION = 0.8


@functools.lru_cache(maxsize=32)
def _traced(config_json: str, dtype_name: str, targets: tuple, r: int, dropout: float, batch: int, seq: int,
            full: bool) -> tuple[int, int, int]:
    """(total params, trainable params, activation bytes) traced on the meta device."""
    import json

    import torch
    from transformers import AutoConfig

    data = json.loads(config_json)
    config = AutoConfig.for_model(**{k: v for k, v in data.items() if k != "_name_or_path"})
    dtype = getattr(torch, dtype_name)
    model = memory.meta_model(config, dtype=dtype)
    total = sum(p.numel() for p in model.parameters())
    if full:
        model.requires_grad_(True)
        return total, total, memory.saved_activation_bytes(model, batch, seq)
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=dropout,
                                            target_modules=list(targets), task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    return total, trainable, memory.saved_activation_bytes(peft, batch, seq)


def estimate(cfg: lc.TrainConfig, seq_len: int | None = None, device: str | None = None,
             runtime_bytes: int | None = None) -> dict:
    """Everything the 'Before you train' panel shows, as plain data. `seq_len` is the padded batch
    length (the longest row, capped at max_length; max_length when unknown)."""
    src = lora_models.source(cfg.model)
    config = lora_models.config(src)
    device = device or pick_device()
    dtype = pick_dtype(device)
    dtype_name = str(dtype).removeprefix("torch.")
    seq = int(min(cfg.max_length, seq_len or cfg.max_length))
    layers = memory.linear_layers(memory.meta_model(config, dtype=dtype))
    targets, note = lc.resolve_targets(cfg.target_modules, layers)
    config_json = config.to_json_string(use_diff=False)
    total, trainable, acts = _traced(config_json, dtype_name, tuple(targets), cfg.r, cfg.dropout,
                                     cfg.batch_size, seq, False)
    _, _, full_acts = _traced(config_json, dtype_name, (), 0, 0.0, cfg.batch_size, seq, True)
    width = memory.dtype_bytes(dtype)
    vocab = getattr(getattr(config, "text_config", None) or config, "vocab_size", 0)
    logits = cfg.batch_size * seq * vocab * 4  # logits are upcast to fp32 for the loss
    workspace = WORKSPACE_LOGITS * logits + int(TEMPORARIES_PER_ACTIVATION * acts)
    full_workspace = WORKSPACE_LOGITS * logits + int(TEMPORARIES_PER_ACTIVATION * full_acts)
    workspace_note = (f"loss and backward temporaries: {WORKSPACE_LOGITS} x the fp32 logits "
                      f"({memory.fmt_bytes(logits)} each) + {TEMPORARIES_PER_ACTIVATION:g} x the activations "
                      "(gradient buffers and the allocator's retained blocks, measured on a CPU)")
    if runtime_bytes is None:
        import lora_train

        lora_train.import_training_stack()  # a run imports trl, peft and datasets before it starts
        runtime = memory.process_rss()
    else:
        runtime = runtime_bytes
    if cfg.qlora:
        linear = sum(i * o for _, i, o in layers)
        weights = sum(memory.nf4_bytes(i * o) for _, i, o in layers) + (total - linear) * width
        weights_note = "4-bit NF4 linear layers (double-quantized absmax) + the rest at " + dtype_name
    else:
        weights = total * width
        weights_note = f"{total:,} params x {width:g} B ({dtype_name})"
    lora_parts = memory.finetune_memory(weight_bytes=weights, trainable_params=trainable, activation_bytes=acts,
                                        workspace_bytes=workspace, runtime_bytes=runtime)
    lora_parts[0]["formula"] = f"{weights_note} = {memory.fmt_bytes(weights)}"
    full_parts = memory.finetune_memory(weight_bytes=total * width, trainable_params=total, trainable_bytes=0,
                                        activation_bytes=full_acts, workspace_bytes=full_workspace, runtime_bytes=runtime,
                                        grad_bytes=int(width), trainable_label="(weights train in place)")
    for parts, size in ((lora_parts, workspace), (full_parts, full_workspace)):
        for part in parts:
            if part["part"] == "workspace":
                part["formula"] = f"{workspace_note} = {memory.fmt_bytes(size)}"
    lora_total = sum(p["bytes"] for p in lora_parts)
    full_total = sum(p["bytes"] for p in full_parts)
    notes = [f"Target modules: {note}."]
    if cfg.qlora:
        notes.append("QLoRA activations are traced on the unquantized layout (the 4-bit layers save the same inputs).")
    if seq < cfg.max_length:
        notes.append(f"Batches are padded to the longest row ({seq} tokens), shorter than max_length "
                     f"{cfg.max_length}.")
    return {
        "model": src.choice.spec.name, "device": device, "dtype": dtype_name,
        "targets": targets, "target_note": note,
        "total_params": int(total), "trainable_params": int(trainable),
        "trainable_share": trainable / total if total else 0.0,
        "batch_size": cfg.batch_size, "seq_len": seq,
        "lora": lora_parts, "lora_bytes": int(lora_total),
        "full": full_parts, "full_bytes": int(full_total),
        "notes": notes,
    }


def model_layers(model_name: str = "") -> list[str]:
    """The linear-layer names of a model, for the free target-module list."""
    src = lora_models.source(model_name)
    config = lora_models.config(src)
    return lc.module_names(memory.linear_layers(memory.meta_model(config)))
