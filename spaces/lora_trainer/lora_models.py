"""Which base model the LoRA trainer uses and how it is loaded: through shared.models' registry (the
embedded SmolLM2-135M-Instruct offline; Hub models when the Hub or the local cache has them; a local
folder when running locally). Tokenizers and configs are loaded once; a training run gets its own
fresh copy of the weights (LoRA layers are injected into it), the comparison model is shared."""
from __future__ import annotations

from dataclasses import dataclass

from shared import embedded
from shared.device import pick_device, pick_dtype
from shared.imports import transformers_ready
from shared.loading import cached_model, estimate_bytes, explain, fetch, once, origin
from shared.models import REGISTRY, Choice, ModelUnavailable, resolve

ROLE = "chat"


@dataclass(frozen=True)
class Source:
    choice: Choice
    where: str  # a folder or a Hub id for from_pretrained
    local_only: bool

    @property
    def key(self) -> str:
        return self.where


def source(name: str | None) -> Source:
    """Resolve a model name, Hub id or local folder ("" = the embedded default) without loading it."""
    choice = resolve(ROLE, name or None, fallback=False)
    if choice.source == "embedded":
        return Source(choice, str(embedded.smollm2_folder()), True)
    if choice.spec.needs_gpu and pick_device() == "cpu":
        raise ModelUnavailable(f"{choice.spec.name} needs a GPU (tens of GB and minutes per step on a CPU). Run "
                               "this lab on a GPU Space, or export the run (Scale out) for a GPU machine.")
    return Source(choice, choice.spec.hub_id, choice.source != "hub")


def choices() -> list[tuple[str, str]]:
    """(label, value) for the model picker; the value "" is the embedded default."""
    out = []
    for spec in REGISTRY[ROLE]:
        label = spec.name + (" · needs a GPU" if spec.needs_gpu else "")
        out.append((label, "" if spec.embedded else spec.hub_id))
    return out


def tokenizer(src: Source):
    def build():
        transformers_ready()
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(src.where, local_files_only=src.local_only)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok

    return once(("lora_tokenizer", src.key), build)


def config(src: Source):
    def build():
        transformers_ready()
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(src.where, local_files_only=src.local_only)

    return once(("lora_config", src.key), build)


def weights(src: Source, device: str, progress=None) -> tuple[str, bool]:
    """(where, local_files_only): a Hub model's files are downloaded first, with progress, by
    shared.loading (only those a load reads); the embedded model, a folder or a cached one as they are."""
    if src.choice.source != "hub":
        return src.where, src.local_only
    return fetch(src.choice, device, progress)


def load_for_training(src: Source, qlora: bool = False, device: str | None = None, progress=None):
    """A fresh copy of the base model for one run (fp32 on a CPU, bf16/fp16 on a GPU; 4-bit NF4 with
    double quantization when `qlora`). `progress(fraction, message)` hears about a Hub download."""
    transformers_ready()
    import torch
    from transformers import AutoModelForCausalLM

    device = device or pick_device()
    dtype = pick_dtype(device)
    kwargs = dict(local_files_only=src.local_only, dtype=dtype)
    if qlora:
        from transformers import BitsAndBytesConfig

        compute = dtype if dtype != torch.float16 else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute)
        kwargs["device_map"] = {"": device if device != "cuda" else 0}
    where, kwargs["local_files_only"] = weights(src, device, progress)
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except Exception as exc:  # noqa: BLE001  missing, gated, corrupt: one line
        raise ModelUnavailable(explain(src.choice.spec.hub_id, exc)) from exc
    if not qlora:
        model.to(device)
    return model


def comparison_model(src: Source):
    """The one shared copy of the base weights used to compare base and adapters (peft's adapter
    toggle switches between them), with a lock so one generation runs on it at a time. It lives in
    shared.loading's bounded model cache: unloaded when unused and other models need the room."""
    import threading

    device = pick_device()

    def build():
        model = load_for_training(src, device=device)
        model.eval()
        return {"model": model, "lock": threading.Lock(), "adapters": set()}

    key = ("lora_compare", src.choice.spec.hub_id, origin(src.choice), device)
    bundle, _ = cached_model(key, build, device, lambda: estimate_bytes(src.choice, device))
    return bundle
