"""Memory arithmetic and measurement shared by the labs: parameter bytes, KV-cache bytes,
and the measured footprint of loading something."""
import gc
import math
import os
from dataclasses import dataclass

import psutil

DTYPE_BYTES = {"fp32": 4, "float32": 4, "fp16": 2, "float16": 2, "bf16": 2, "bfloat16": 2,
               "int8": 1, "fp8": 1, "int4": 0.5, "nf4": 0.5}


def dtype_bytes(dtype) -> float:
    """Bytes per element for a torch dtype or a name like 'bf16'."""
    if isinstance(dtype, str):
        return DTYPE_BYTES[dtype.lower()]
    return dtype.itemsize


def param_count(model) -> int:
    """Parameters as the model was defined (a 4-bit packed tensor counts its real elements)."""
    return sum(_elements(p) for p in model.parameters())


def _elements(p) -> int:
    state = getattr(p, "quant_state", None)  # bitsandbytes 4-bit: packed uint8, real shape here
    return state.shape.numel() if state is not None else p.numel()


def param_bytes(model, buffers: bool = True) -> int:
    """Bytes the tensors really take (shared/tied tensors counted once)."""
    seen, total = set(), 0
    tensors = list(model.parameters()) + (list(model.buffers()) if buffers else [])
    for t in tensors:
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def _attr(config, *names, default=None):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def kv_cache_bytes(config, seq_len: int, batch_size: int = 1, bytes_per_value: float = 2) -> int:
    """Keys and values for every layer: 2 x layers x batch x seq x kv_heads x head_dim x bytes.

    Grouped-query attention is what makes kv_heads smaller than the attention heads."""
    config = getattr(config, "text_config", None) or config
    layers = _attr(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _attr(config, "num_attention_heads", "n_head")
    kv_heads = _attr(config, "num_key_value_heads", "n_kv_heads", default=heads)
    hidden = _attr(config, "hidden_size", "n_embd", "d_model")
    head_dim = _attr(config, "head_dim", default=hidden // heads)
    return int(2 * layers * batch_size * seq_len * kv_heads * head_dim * bytes_per_value)


def process_rss() -> int:
    return psutil.Process(os.getpid()).memory_info().rss


@dataclass
class Footprint:
    rss_bytes: int = 0  # change in this process's resident memory
    device_bytes: int = 0  # change in CUDA memory allocated (0 on CPU)
    rss_before: int = 0  # the baseline, to measure growth later (e.g. after first use)


class measure_footprint:
    """`with measure_footprint() as fp: model = load()` -> fp.rss_bytes, fp.device_bytes.

    RSS is noisy (allocator caches, lazily touched pages): read it as an order of magnitude,
    and prefer param_bytes() for the model's own accounting."""

    def __enter__(self) -> Footprint:
        gc.collect()
        return_free_memory()  # freed-but-resident heap pages would otherwise hide new allocations
        self.result = Footprint(rss_before=process_rss())
        self._cuda = _cuda_allocated()
        return self.result

    def __exit__(self, *exc):
        gc.collect()
        self.result.rss_bytes = process_rss() - self.result.rss_before
        self.result.device_bytes = _cuda_allocated() - self._cuda
        return False


def return_free_memory() -> None:
    """Ask glibc to give freed heap pages back to the OS (no-op elsewhere), so the RSS baseline
    does not include memory a later allocation would silently reuse."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _cuda_allocated() -> int:
    import torch

    return torch.cuda.memory_allocated() if torch.cuda.is_available() else 0


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


# ---------------------------------------------------------------- fine-tuning estimates from a config alone
# Added for the LoRA trainer. General: any lab that prices a fine-tune (the quantization lab's
# count_config/training_bytes could build on meta_model/linear_layers/finetune_memory).

def meta_model(config, causal: bool = True, dtype=None):
    """`config`'s model built on the meta device: every shape, no memory. Uses torch.device("meta"),
    which is thread-local (accelerate.init_empty_weights patches nn.Module for every thread, so a model
    loaded at the same moment elsewhere would get meta tensors too). Tied weights are tied (transformers 5
    would count them twice otherwise)."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, MODEL_FOR_CAUSAL_LM_MAPPING

    auto = AutoModelForCausalLM if causal and type(config) in MODEL_FOR_CAUSAL_LM_MAPPING else AutoModel
    with torch.device("meta"):
        model = auto.from_config(config, dtype=dtype) if dtype is not None else auto.from_config(config)
    model.tie_weights()
    return model


def linear_layers(model) -> list[tuple[str, int, int]]:
    """(qualified name, in_features, out_features) of every nn.Linear and GPT-2 Conv1D layer, the
    output head excluded (LoRA and bitsandbytes leave it alone)."""
    import torch.nn as nn

    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        Conv1D = ()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out = []
    for name, module in model.named_modules():
        if module is head:
            continue
        if type(module) is nn.Linear:
            out.append((name, module.in_features, module.out_features))
        elif Conv1D and isinstance(module, Conv1D):
            rows, cols = module.weight.shape  # Conv1D stores (in, out)
            out.append((name, rows, cols))
    return out


def lora_param_count(layers, targets, r: int) -> int:
    """LoRA parameters for `layers` (from linear_layers) whose last name part is in `targets`:
    r x (in + out) per layer (matrices A: r x in and B: out x r)."""
    wanted = set(targets)
    return sum(r * (i + o) for name, i, o in layers if name.rsplit(".", 1)[-1] in wanted)


def nf4_bytes(n_elements: int, double_quant: bool = True) -> int:
    """A bitsandbytes 4-bit weight: packed 4-bit values plus one absmax per 64 values (fp32, or 8-bit
    with a second-level fp32 absmax per 256 when double-quantized)."""
    blocks = math.ceil(n_elements / 64)
    absmax = blocks + 4 * math.ceil(blocks / 256) if double_quant else 4 * blocks
    return math.ceil(n_elements / 2) + absmax


def saved_activation_bytes(model, batch_size: int, seq_len: int) -> int:
    """Bytes autograd keeps for the backward pass after one training forward of `model` (a meta_model,
    adapters already attached, trainable parameters marked) on a (batch_size, seq_len) batch: the
    forward runs on the meta device and every tensor saved for backward is counted once (parameters and
    views of one tensor are not counted twice). Costs no memory and about a second for 100M parameters."""
    import torch

    seen: set[int] = set()
    total = 0

    def pack(t):
        nonlocal total
        if isinstance(t, torch.nn.Parameter):
            return t
        base = t._base if t._base is not None else t
        if isinstance(base, torch.nn.Parameter) or id(base) in seen:
            return t
        seen.add(id(base))
        keep.append(base)  # keeps ids unique while counting
        total += base.numel() * base.element_size()
        return t

    keep: list = []
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    ids = torch.zeros((int(batch_size), int(seq_len)), dtype=torch.long, device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    model.train(was_training)
    return int(total)


def finetune_memory(*, weight_bytes: int, trainable_params: int, activation_bytes: int,
                    workspace_bytes: int = 0, runtime_bytes: int = 0, trainable_bytes: int = 4,
                    grad_bytes: int = 4, optimizer_bytes: int = 8, trainable_label: str = "adapter") -> list[dict]:
    """Peak memory of a training step, part by part: {"part", "bytes", "formula"}. `weight_bytes` are the
    frozen (or full) weights as loaded; trainable parameters add their own copy (when they are not the
    weights themselves, as with LoRA), a gradient each and AdamW's two moments; activations are what
    autograd keeps; workspace is what the loss and backward allocate on top (logit gradients);
    runtime is what the process already holds (interpreter, libraries)."""
    t = int(trainable_params)
    parts = [
        ("weights", weight_bytes, f"as loaded = {fmt_bytes(weight_bytes)}"),
        (trainable_label, t * trainable_bytes, f"{t:,} trainable x {trainable_bytes} B = {fmt_bytes(t * trainable_bytes)}"),
        ("gradients", t * grad_bytes, f"{t:,} x {grad_bytes} B = {fmt_bytes(t * grad_bytes)}"),
        ("optimizer state", t * optimizer_bytes, f"AdamW m and v: {t:,} x {optimizer_bytes} B = "
                                                 f"{fmt_bytes(t * optimizer_bytes)}"),
        ("activations", activation_bytes, f"tensors saved for backward, traced on the meta device = "
                                          f"{fmt_bytes(activation_bytes)}"),
        ("workspace", workspace_bytes, f"loss and backward temporaries = {fmt_bytes(workspace_bytes)}"),
        ("runtime", runtime_bytes, f"this process before training (Python, torch, libraries) = "
                                   f"{fmt_bytes(runtime_bytes)}"),
    ]
    return [{"part": p, "bytes": int(b), "formula": f} for p, b, f in parts if b or p in ("weights", "activations")]


class track_peak_rss:
    """`with track_peak_rss() as peak: work()` -> peak.bytes, the highest resident memory of this process
    seen by a sampler thread (every `interval` s) while the block ran; peak.start is the RSS at entry."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.bytes = 0
        self.start = 0

    def __enter__(self):
        import threading

        self.start = self.bytes = process_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="peak-rss")
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> int:
        self.bytes = max(self.bytes, process_rss())
        return self.bytes

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()
        return False
