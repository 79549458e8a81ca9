"""Memory arithmetic and measurement shared by the labs: parameter bytes, KV-cache bytes,
and the measured footprint of loading something."""
import gc
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
