"""Estimate memory from a config alone: weights per precision, KV cache, training, "does it fit".

The model is built on the meta device (accelerate.init_empty_weights: shapes, no memory), its tied
weights are tied, and every parameter is sorted into what bitsandbytes would quantize (the
weights of nn.Linear / GPT-2 Conv1D layers, minus the ones transformers keeps: output head, tied
weights, the last module) and what stays in 16-bit (embeddings, norms, biases, the head). Each
number comes with the formula that produced it. No gradio here."""
import functools
import math
import threading
from dataclasses import dataclass

from shared.errors import UserError
from shared.imports import transformers_ready
from shared.memory import fmt_bytes, kv_cache_bytes

# ---------------------------------------------------------------- limits, UI defaults, layout constants
DEFAULT_CONTEXT = 2048  # tokens, what the page opens with
DEFAULT_BATCH = 1
PRECISIONS = ["fp32", "fp16", "bf16", "int8", "nf4", "nf4-dq"]
QUANTIZED = {"int8", "nf4", "nf4-dq"}
FULL_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
REST_BYTES = 2  # quantized loads keep everything else in bf16 (dtype=torch.bfloat16)
NF4_BLOCK = 64  # bitsandbytes 4-bit blocksize (one absmax per 64 weights)
DQ_BLOCK = 256  # double quantization: one fp32 absmax per 256 8-bit absmax values
NF4_CODE_BYTES = 16 * 4  # the 16-value NF4 code table, fp32, one per layer
DQ_EXTRA_BYTES = 4 + 256 * 4  # offset + the 256-value 8-bit code table of the nested state, per layer
NAIVE_DIVISOR = {"fp32": 1, "fp16": 2, "bf16": 2, "int8": 4, "nf4": 8, "nf4-dq": 8}
MAX_CONTEXT = 10_000_000
MAX_BATCH = 4096
LORA_RANK = 16
GB = 1e9
BUILD_LOCK = threading.Lock()  # held while building on the meta device and while loading real weights

# Nominal memory of common accelerators (decimal GB as sold; the CUDA context takes ~0.5 GB more).
DEVICES = [
    ("T4", 16), ("L4", 24), ("A10G", 24), ("A100 40GB", 40), ("A100 80GB", 80), ("H100", 80),
    # ZeroGPU runs on H200s, each workload gets a 70 GB slice (zero-gpu-explorers README, 2025).
    ("ZeroGPU (H200 slice)", 70),
]


class EstimateError(UserError, ValueError):
    """Bad request for an estimate (the message is for the UI)."""


@dataclass(frozen=True)
class Counts:
    """Parameter counts of one architecture, split the way bitsandbytes splits them."""
    total: int  # unique parameters (tied weights once)
    quantizable: int  # weights of the layers bitsandbytes replaces
    rest: int  # everything else: embeddings, norms, biases, output head
    rest_parts: tuple  # ((category, count), ...) of `rest`
    layers: int  # how many layers get quantized
    packed4: int  # sum over layers of ceil(n / 2): bytes of packed 4-bit weights
    blocks: int  # sum over layers of ceil(n / 64): absmax values
    blocks2: int  # sum over layers of ceil(ceil(n / 64) / 256): nested absmax values
    rows: int  # sum of output features (int8 keeps one fp32 scale per row)
    lora_per_rank: int  # sum over quantizable layers of (in + out): LoRA parameters per unit of rank
    buffer_bytes: int  # buffers (rotary tables, position ids) as built
    tied: bool
    hidden: int
    layers_model: int


def _category(name: str, module) -> str:
    import torch.nn as nn

    if isinstance(module, nn.Embedding):
        return "embeddings"
    if "norm" in type(module).__name__.lower() or "ln" in name.split(".")[-1]:
        return "norms"
    return "other"


def count_config(config, causal: bool = True) -> Counts:
    """Build `config` on the meta device (with its causal-LM head when `causal`) and count;
    cached per config."""
    return _count_cached(config.to_json_string(use_diff=False), bool(causal))


@functools.lru_cache(maxsize=64)
def _count_cached(config_json: str, causal: bool) -> Counts:
    import json

    import torch.nn as nn
    from accelerate import init_empty_weights
    transformers_ready()
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, MODEL_FOR_CAUSAL_LM_MAPPING
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    data = json.loads(config_json)
    config = AutoConfig.for_model(**{k: v for k, v in data.items() if k != "_name_or_path"})
    auto = AutoModelForCausalLM if causal and type(config) in MODEL_FOR_CAUSAL_LM_MAPPING else AutoModel
    # init_empty_weights() patches nn.Module for every thread: a measurement loading a model at the
    # same moment would get meta tensors too, so both hold BUILD_LOCK. (torch.device("meta") is
    # thread-local but 20x slower here: 20 s for a 72B config.)
    with BUILD_LOCK, init_empty_weights():
        model = auto.from_config(config)
    model.tie_weights()  # without it, tied embeddings are counted twice under transformers 5
    skip = list(set(get_keys_to_not_convert(model) + list(getattr(model, "_keep_in_fp32_modules", None) or [])))

    quantized_params = set()
    layers = packed4 = blocks = blocks2 = rows = lora = quantizable = 0
    for name, module in model.named_modules():
        if not (type(module) is nn.Linear or isinstance(module, Conv1D)):
            continue
        if not should_convert_module(name, skip):
            continue
        w = module.weight
        n = w.numel()
        out_features = w.shape[1] if isinstance(module, Conv1D) else w.shape[0]
        in_features = n // out_features
        quantized_params.add(id(w))
        layers += 1
        quantizable += n
        packed4 += math.ceil(n / 2)
        b = math.ceil(n / NF4_BLOCK)
        blocks += b
        blocks2 += math.ceil(b / DQ_BLOCK)
        rows += out_features
        lora += in_features + out_features

    parts: dict[str, int] = {}
    total = 0
    modules = dict(model.named_modules())
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, p in model.named_parameters():  # deduplicated: a tied weight appears once
        total += p.numel()
        if id(p) in quantized_params:
            continue
        owner, _, leaf = name.rpartition(".")
        if leaf == "bias":
            cat = "biases"
        else:
            module = modules.get(owner)
            cat = _category(owner, module) if module is not None else "other"
            if module is not None and module is out_emb:
                cat = "output head"
        parts[cat] = parts.get(cat, 0) + p.numel()
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    inner = getattr(config, "text_config", None) or config
    hidden = getattr(inner, "hidden_size", None) or getattr(inner, "n_embd", 0)
    n_layers = getattr(inner, "num_hidden_layers", None) or getattr(inner, "n_layer", 0)
    tied = bool(getattr(config, "tie_word_embeddings", False)) and auto is AutoModelForCausalLM
    order = ["embeddings", "output head", "norms", "biases", "other"]
    rest_parts = tuple((k, parts[k]) for k in order if parts.get(k))
    return Counts(total, quantizable, total - quantizable, rest_parts, layers, packed4, blocks, blocks2, rows,
                  lora, buffers, tied, int(hidden), int(n_layers))


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _rest_words(c: Counts) -> str:
    return ", ".join(f"{k} {_n(v)}" for k, v in c.rest_parts) or "none"


@dataclass
class WeightEstimate:
    precision: str
    bytes: int
    formula: str
    bits_per_quantized_weight: float
    naive_bytes: int
    naive_formula: str


def weight_bytes(c: Counts, precision: str) -> WeightEstimate:
    """Weight memory at `precision`, exactly as transformers + bitsandbytes lay it out."""
    if precision not in PRECISIONS:
        raise EstimateError(f"Unknown precision '{precision}': use one of {', '.join(PRECISIONS)}.")
    fp32 = c.total * 4 + c.buffer_bytes
    naive = int(fp32 / NAIVE_DIVISOR[precision])
    naive_formula = f"fp32 size {fmt_bytes(fp32)} / {NAIVE_DIVISOR[precision]} = {fmt_bytes(naive)}"
    buf = f" + buffers {fmt_bytes(c.buffer_bytes)}" if c.buffer_bytes else ""
    if precision in FULL_BYTES:
        b = FULL_BYTES[precision]
        total = c.total * b + c.buffer_bytes
        formula = f"{_n(c.total)} params x {b} B{buf} = {fmt_bytes(total)}"
        return WeightEstimate(precision, total, formula, 8 * b, naive, naive_formula)
    rest = c.rest * REST_BYTES
    rest_txt = f"{_n(c.rest)} unquantized ({_rest_words(c)}) x 2 B (bf16) = {fmt_bytes(rest)}"
    q = c.quantizable
    if precision == "int8":
        w, scales = q, c.rows * 4
        total = w + scales + rest + c.buffer_bytes
        formula = (f"{_n(q)} quantized weights x 1 B = {fmt_bytes(w)} + {_n(c.rows)} row scales x 4 B = "
                   f"{fmt_bytes(scales)} + {rest_txt}{buf} = {fmt_bytes(total)}")
        bits = 8 * (w + scales) / max(q, 1)
    elif precision == "nf4":
        w, absmax, codes = c.packed4, c.blocks * 4, c.layers * NF4_CODE_BYTES
        total = w + absmax + codes + rest + c.buffer_bytes
        formula = (f"{_n(q)} quantized weights x 0.5 B = {fmt_bytes(w)} + absmax {_n(c.blocks)} blocks of 64 x 4 B = "
                   f"{fmt_bytes(absmax)} + {c.layers} code tables x 64 B + {rest_txt}{buf} = {fmt_bytes(total)}")
        bits = 8 * (w + absmax + codes) / max(q, 1)
    else:  # nf4-dq
        w, absmax, absmax2, extra = c.packed4, c.blocks, c.blocks2 * 4, c.layers * (NF4_CODE_BYTES + DQ_EXTRA_BYTES)
        total = w + absmax + absmax2 + extra + rest + c.buffer_bytes
        formula = (f"{_n(q)} quantized weights x 0.5 B = {fmt_bytes(w)} + absmax {_n(c.blocks)} x 1 B (8-bit) = "
                   f"{fmt_bytes(absmax)} + {_n(c.blocks2)} second-level absmax x 4 B + {c.layers} x 1,092 B code tables "
                   f"+ {rest_txt}{buf} = {fmt_bytes(total)}")
        bits = 8 * (w + absmax + absmax2 + extra) / max(q, 1)
    return WeightEstimate(precision, int(total), formula, round(bits, 3), naive, naive_formula)


def kv_bytes(config, context_len: int, batch_size: int, bytes_per_value: float) -> tuple[int, str]:
    """KV cache with grouped-query attention; sliding-window layers keep only their window."""
    inner = getattr(config, "text_config", None) or config
    layer_types = list(getattr(inner, "layer_types", None) or [])
    window = getattr(inner, "sliding_window", None)
    full = kv_cache_bytes(inner, context_len, batch_size, bytes_per_value)
    heads = getattr(inner, "num_attention_heads", None) or getattr(inner, "n_head", 1)
    kv_heads = getattr(inner, "num_key_value_heads", None) or heads
    hidden = getattr(inner, "hidden_size", None) or getattr(inner, "n_embd", 0)
    head_dim = getattr(inner, "head_dim", None) or hidden // heads
    n_layers = getattr(inner, "num_hidden_layers", None) or getattr(inner, "n_layer", 0)
    base = (f"2 (K,V) x {n_layers} layers x {batch_size} batch x {_n(context_len)} tokens x {kv_heads} kv heads "
            f"x {head_dim} head dim x {bytes_per_value:g} B")
    sliding = sum(1 for t in layer_types if "sliding" in str(t))
    if window and sliding and window < context_len:
        per_layer_full = full / n_layers
        windowed = kv_cache_bytes(inner, window, batch_size, bytes_per_value) / n_layers
        total = int(per_layer_full * (n_layers - sliding) + windowed * sliding)
        return total, (f"{base}, but {sliding} sliding-window layers keep only {_n(window)} tokens "
                       f"= {fmt_bytes(total)}")
    return int(full), f"{base} = {fmt_bytes(full)}"


def check_request(context_len, batch_size) -> tuple[int, int]:
    """Validate context length and batch size (raises EstimateError with a clear message)."""
    try:
        ctx = int(context_len)
        bs = int(batch_size)
        if ctx != float(context_len) or bs != float(batch_size):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise EstimateError(f"Context length and batch size must be whole numbers (got {context_len!r}, "
                            f"{batch_size!r}).") from None
    if ctx < 1 or bs < 1:
        raise EstimateError("Context length and batch size must be at least 1.")
    if bs > MAX_BATCH:
        raise EstimateError(f"A batch of {bs:,} is beyond this calculator (at most {MAX_BATCH:,}).")
    if ctx > MAX_CONTEXT:
        raise EstimateError(f"A context of {ctx:,} tokens is beyond any model here (this lab accepts up to "
                            f"{MAX_CONTEXT:,}; long-context models today reach about 1-10 million).")
    return ctx, bs


def _max_positions(config) -> int | None:
    inner = getattr(config, "text_config", None) or config
    return getattr(inner, "max_position_embeddings", None) or getattr(inner, "n_positions", None)


def training_bytes(c: Counts, precision_weights: dict, context_len: int, batch_size: int,
                   rank: int = LORA_RANK) -> list[dict]:
    """Full fine-tuning with AdamW vs LoRA vs QLoRA (weights + gradients + optimizer; activations
    with gradient checkpointing as a lower bound)."""
    lora = c.lora_per_rank * rank
    acts = c.layers_model * batch_size * context_len * c.hidden * 2
    acts_txt = (f"activations with gradient checkpointing >= {c.layers_model} layers x {batch_size} x "
                f"{_n(context_len)} tokens x {c.hidden} hidden x 2 B = {fmt_bytes(acts)}")
    full = c.total * 16
    rows = [
        dict(method="Full fine-tune, AdamW (bf16 mixed precision)", bytes=full + acts,
             formula=f"{_n(c.total)} params x 16 B (2 bf16 weight + 2 grad + 4 fp32 master + 8 Adam m,v) = "
                     f"{fmt_bytes(full)} + {acts_txt}"),
    ]
    lora_state = lora * 16
    for label, base_key in (("LoRA r=%d on every linear layer (bf16 base)" % rank, "bf16"),
                            ("QLoRA r=%d (nf4 + double-quant base)" % rank, "nf4-dq")):
        base = precision_weights[base_key]
        rows.append(dict(method=label, bytes=base + lora_state + acts,
                         formula=f"frozen base {fmt_bytes(base)} ({base_key}) + {_n(lora)} LoRA params "
                                 f"(r x (in+out) per layer) x 16 B (fp32 weight, grad, Adam m,v) = "
                                 f"{fmt_bytes(lora_state)} + {acts_txt}"))
    return rows


def machine_ram() -> tuple[int, int]:
    import psutil

    vm = psutil.virtual_memory()
    return int(vm.total), int(vm.available)


def fits_table(rows: list[tuple[str, int]]) -> list[dict]:
    """For each (what, bytes): does it fit on each device and in this machine's RAM."""
    total, available = machine_ram()
    out = []
    for what, need in rows:
        row = {"what": what, "needs": fmt_bytes(need)}
        for name, gb in DEVICES:
            row[f"{name} ({gb} GB)"] = _mark(need, gb * GB)
        row[f"this machine RAM ({total / GB:.0f} GB, {available / GB:.0f} free)"] = _mark(need, available)
        out.append(row)
    return out


def _mark(need: float, have: float) -> str:
    if need <= 0.9 * have:
        return "yes"
    if need <= have:
        return "tight"
    return "no"


def estimate(ref, context_len: int = 2048, batch_size: int = 1) -> dict:
    """Everything the estimate tab shows, as plain data (also the /estimate API answer)."""
    ctx, bs = check_request(context_len, batch_size)
    c = count_config(ref.config, ref.generative)
    warnings = []
    max_pos = _max_positions(ref.config)
    if max_pos and ctx > max_pos:
        warnings.append(f"{ref.name} was trained for at most {max_pos:,} positions; {ctx:,} is beyond it "
                        "(the KV cache is still computed).")
    per = {}
    for p in PRECISIONS:
        w = weight_bytes(c, p)
        if ref.generative:
            kv_b = 4 if p == "fp32" else 2
            kv, kv_formula = kv_bytes(ref.config, ctx, bs, kv_b)
        else:
            kv, kv_formula = 0, "encoder: no KV cache (it reads the whole input at once)"
        per[p] = dict(weights_bytes=w.bytes, weights_formula=w.formula,
                      bits_per_quantized_weight=w.bits_per_quantized_weight,
                      naive_bytes=w.naive_bytes, naive_formula=w.naive_formula,
                      kv_cache_bytes=kv, kv_cache_formula=kv_formula, total_bytes=w.bytes + kv,
                      weights=fmt_bytes(w.bytes), kv_cache=fmt_bytes(kv), total=fmt_bytes(w.bytes + kv))
    training = training_bytes(c, {p: per[p]["weights_bytes"] for p in PRECISIONS}, ctx, bs)
    fit_rows = [(f"inference {p} (weights + KV cache)", per[p]["total_bytes"]) for p in PRECISIONS]
    fit_rows += [(t["method"], t["bytes"]) for t in training]
    return dict(
        model=ref.name, hub_id=ref.hub_id, source=ref.source, kind=ref.kind, note=ref.note,
        context_len=ctx, batch_size=bs,
        parameters=dict(total=c.total, quantizable=c.quantizable, unquantized=c.rest,
                        unquantized_parts=dict(c.rest_parts), quantized_layers=c.layers, tied_embeddings=c.tied),
        precisions=per, training=[dict(t, human=fmt_bytes(t["bytes"])) for t in training],
        fits=fits_table(fit_rows), warnings=warnings,
    )
