"""Who may load which model here, and whether it fits: checked before anything is downloaded.

Policy. A server that strangers use (a Hugging Face Space, or a lab served on a non-loopback
address such as `serve_all.py --host 0.0.0.0`) loads only the models in the registry
(shared.models.REGISTRY) and never a folder of its own disk. Its owner widens that with variables:
  GENAI_LAB_ALLOW_ANY_MODEL=1        any Hub id a visitor types (the size guard still applies)
  GENAI_LAB_ALLOWED_MODELS=a/b,c/d   these Hub ids as well as the registry's
  GENAI_LAB_PUBLIC=1                 treat this server as public even on a loopback address

Size. Before a download, the model's size comes from the Hub's metadata (the safetensors
parameter count, else the weight files' sizes) or from the files already in the local cache; it
is compared with what this machine can hold: the memory at the lab's dtype (free RAM, or free GPU
memory, plus the models the bounded cache may unload, within its budget) and the free disk of the
Hugging Face cache. Too big: one sentence naming the size and the limit, and nothing is fetched.

Kind. A repo that is not the kind of model the lab asked for (a BERT tagger asked to generate text,
a tokenizer-only repo) is refused from the same metadata, before its weights are fetched."""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from shared import hub
from shared.memory import fmt_bytes

ALLOW_ANY_VAR = "GENAI_LAB_ALLOW_ANY_MODEL"
ALLOWED_VAR = "GENAI_LAB_ALLOWED_MODELS"
PUBLIC_VAR = "GENAI_LAB_PUBLIC"
DISK_RESERVE_BYTES = 2_000_000_000  # left free on the cache's disk after a download
RAM_RESERVE_BYTES = 1_000_000_000  # left free in RAM after a load (Python, gradio, the visitors' data)

# Weight formats, best first: a transformers / sentence-transformers / diffusers load reads one of them.
WEIGHT_FORMATS = (("*.safetensors", "*.safetensors.index.json"), ("*.bin", "*.bin.index.json"),
                  ("*.pt", "*.pth", "*.ckpt"))
OTHER_WEIGHTS = ("*.h5", "*.msgpack", "*.onnx", "*.onnx_data", "*.ot", "*.tflite", "*.gguf", "*.mlmodel",
                 "*.pb", "*.nemo", "*.keras", "onnx/*", "openvino/*", "coreml/*", "*.bin", "*.pt", "*.pth",
                 "*.ckpt", "*.safetensors")
# What the architectures listed in a repo's config must end with, per role (roles not named: any).
KIND = {
    "causal": (("ForCausalLM", "LMHeadModel", "ForConditionalGeneration"), "a causal language model",
               "text generation needs one, e.g. openai-community/gpt2"),
    "chat": (("ForCausalLM", "LMHeadModel", "ForConditionalGeneration"), "a causal language model",
             "chat needs one, e.g. HuggingFaceTB/SmolLM2-360M-Instruct"),
    "ner": (("ForTokenClassification",), "a token classifier", "tagging needs one, e.g. dslim/bert-base-NER"),
    "reranker": (("ForSequenceClassification",), "a cross-encoder",
                 "re-ranking needs one, e.g. cross-encoder/ms-marco-MiniLM-L-6-v2"),
}
HEAD_NAMES = {"ForTokenClassification": "token-classification", "ForSequenceClassification": "text-classification",
              "ForMaskedLM": "masked-language", "ForQuestionAnswering": "question-answering",
              "ForImageClassification": "image-classification", "Model": "bare encoder"}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------- policy

def is_loopback(host: str | None) -> bool:
    """True for addresses only this machine can reach (127.x, ::1, localhost)."""
    host = (host or "").strip().strip("[]")
    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name that is not localhost: the LAN or the internet can reach it


def public_server() -> bool:
    """True when strangers can reach this server: a Space, GENAI_LAB_PUBLIC=1, or GRADIO_SERVER_NAME
    naming a non-loopback address (serve_all.py sets GENAI_LAB_PUBLIC when bound to one)."""
    return (bool(os.environ.get("SPACE_ID")) or _truthy(PUBLIC_VAR)
            or not is_loopback(os.environ.get("GRADIO_SERVER_NAME")))


def mark_public(host: str) -> bool:
    """Called by a server about to listen on `host`: a non-loopback address makes the policy of a
    public server apply to this process. Returns whether it does."""
    if not is_loopback(host):
        os.environ[PUBLIC_VAR] = "1"
        return True
    return public_server()


def allow_any() -> bool:
    return _truthy(ALLOW_ANY_VAR)


def extra_allowed() -> set[str]:
    return {part.strip() for part in os.environ.get(ALLOWED_VAR, "").split(",") if part.strip()}


def folders_allowed() -> bool:
    """A public server never loads a folder of its own disk that a visitor names."""
    return not public_server()


def policy_refusal(spec, registered: bool) -> str:
    """'' when `spec` may load here, else the sentence that says why not."""
    if registered or not public_server() or allow_any() or spec.hub_id in extra_allowed():
        return ""
    where = "This Space" if os.environ.get("SPACE_ID") else "This shared server"
    return (f"{where} loads only the models in its list, not {spec.hub_id[:96]}: its owner can allow any Hub "
            f"model with the variable {ALLOW_ANY_VAR}=1 (or list ids in {ALLOWED_VAR}).")


# ---------------------------------------------------------------- size

@dataclass
class Estimate:
    """What a model will take: memory at the lab's dtype and bytes still to download."""
    repo_id: str
    memory_bytes: int
    download_bytes: int
    dtype: str
    parameters: int | None = None  # from the safetensors metadata, when the Hub gives it
    files: list[tuple[str, int]] = field(default_factory=list)  # what a download fetches: (name, size)
    basis: str = ""  # where the numbers come from, for the sentence


VARIANT = re.compile(r"\.(fp16|bf16|fp32|non_ema|ema)(?=\.)")


def weight_files(names: list[str]) -> list[str]:
    """The weight files a load reads: the first format present (safetensors, then .bin, then .pt),
    without the variants beside the plain file (diffusers repos ship x.fp16.safetensors next to x.safetensors)."""
    for patterns in WEIGHT_FORMATS:
        chosen = [n for n in names if any(fnmatch(Path(n).name, p) for p in patterns)
                  and not _other_runtime(n)]
        plain = {n for n in chosen if not VARIANT.search(n)}
        chosen = [n for n in chosen if not VARIANT.search(n) or VARIANT.sub("", n) not in plain]
        if any(not n.endswith(".json") for n in chosen):
            return chosen
    return []


def _other_runtime(name: str) -> bool:
    return any(fnmatch(name, p) for p in ("onnx/*", "openvino/*", "coreml/*"))


def plan(files: dict[str, int]) -> list[tuple[str, int]]:
    """The files to download, [(name, size)]: the chosen weights and every small file beside them,
    never the other weight formats (a repo often ships .bin, .h5 and ONNX copies as well)."""
    names = list(files)
    weights = set(weight_files(names))
    out = [(n, files[n]) for n in names if n in weights
           or not any(fnmatch(n, p) or fnmatch(Path(n).name, p) for p in OTHER_WEIGHTS)]
    return sorted(out, key=lambda item: (item[0] in weights, item[0]))  # small files first: a quick failure


def estimate_from_info(info, dtype_bytes: float, dtype: str) -> Estimate:
    files = {s.rfilename: int(s.size or 0) for s in (info.siblings or [])}
    chosen = plan(files)
    weights = sum(size for name, size in chosen if name in set(weight_files(list(files))))
    params = getattr(getattr(info, "safetensors", None), "total", None)
    if "model_index.json" in files:  # a diffusers pipeline: the Hub's count includes every variant
        params = None
    if params:
        memory, basis = int(params * dtype_bytes), f"{params / 1e6:,.0f}M parameters at {dtype}"
    else:
        memory, basis = weights, "its weight files"
    return Estimate(info.id or "", memory, sum(size for _, size in chosen), dtype, params, chosen, basis)


def cached_folder(repo_id: str) -> Path | None:
    """The snapshot folder of `repo_id` in the local HF cache when a model is complete there (its
    config and every weight file it names), else None: a download that stopped half-way is not a
    cached model."""
    from huggingface_hub import try_to_load_from_cache

    folder = None
    for marker in ("config.json", "modules.json", "model_index.json"):
        try:
            found = try_to_load_from_cache(repo_id, marker)
        except Exception:  # noqa: BLE001  malformed ids: nothing cached
            return None
        if isinstance(found, str):
            folder = Path(found).parent
            break
    if folder is None:
        return None
    names = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
    weights = weight_files(names)
    if not any(not n.endswith(".json") for n in weights):
        return None
    for index in (n for n in weights if n.endswith(".index.json")):
        import json

        try:
            shards = set(json.loads((folder / index).read_text()).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            return None
        base = Path(index).parent
        if any(str(base / shard) not in names and shard not in names for shard in shards):
            return None
    return folder


def estimate_from_cache(repo_id: str, dtype_bytes: float, dtype: str) -> Estimate | None:
    """From the weight files already in the local HF cache (no network); None if none are there."""
    folder = cached_folder(repo_id)
    if folder is None:
        return None
    names = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
    weights = weight_files(names)
    if not weights:
        return None
    params = [safetensors_parameters(folder / n) for n in weights if n.endswith(".safetensors")]
    if params and all(p is not None for p in params):
        total = sum(params)
        return Estimate(repo_id, int(total * dtype_bytes), 0, dtype, total, [],
                        f"{total / 1e6:,.0f}M parameters at {dtype}, read from the local cache")
    stored = sum((folder / n).stat().st_size for n in weights)
    # The stored dtype is unknown here: fp16/bf16 files load at twice their size in fp32.
    memory = int(stored * max(1.0, dtype_bytes / 2))
    return Estimate(repo_id, memory, 0, dtype, None, [], "its weight files in the local cache")


def safetensors_parameters(path: Path) -> int | None:
    """The parameter count in a safetensors file's header (its first bytes; no tensor is read)."""
    import json
    import struct

    try:
        with open(path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            if size > 100_000_000:
                return None
            header = json.loads(f.read(size))
        total = 0
        for key, tensor in header.items():
            if key != "__metadata__":
                count = 1
                for dim in tensor["shape"]:
                    count *= int(dim)
                total += count
        return total
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def memory_limit(device: str) -> tuple[int, int, str]:
    """(most, now, what) for a new model on `device`: `most` bytes it could ever get here (the cache's
    budget, or the free memory plus every model the cache holds, whichever is less), `now` what it
    can get at once (models in use by other requests stay), and the kind of memory."""
    from shared.loading import model_cache
    from shared.modelcache import budget_bytes

    cache = model_cache()
    budget = budget_bytes(device)
    resident, evictable = cache.resident_bytes(device), cache.evictable_bytes(device)
    if str(device).startswith("cuda"):
        import torch

        free, what = torch.cuda.mem_get_info(torch.device(device))[0], "GPU memory"
    else:
        import psutil

        free, what = psutil.virtual_memory().available - RAM_RESERVE_BYTES, "memory"
    most = max(0, min(budget, free + resident))
    now = max(0, min(budget - (resident - evictable), free + evictable))
    return most, now, what


def disk_free() -> int:
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free - DISK_RESERVE_BYTES


def size_refusal(est: Estimate, device: str) -> str:
    """'' when the model fits here, else one sentence with its size and the limit."""
    most, now, what = memory_limit(device)
    if est.memory_bytes > most:
        files = f"; {fmt_bytes(est.download_bytes)} of files" if est.download_bytes else ""
        return (f"{est.repo_id} is too big for this server: it needs about {fmt_bytes(est.memory_bytes)} of "
                f"{what} ({est.basis}{files}), and this server can give a model at most {fmt_bytes(most)}.")
    if est.memory_bytes > now:
        return (f"{est.repo_id} needs about {fmt_bytes(est.memory_bytes)} of {what}, and only {fmt_bytes(now)} is "
                "free while other visitors' models are in use: try again in a minute.")
    if est.download_bytes:
        free = disk_free()
        if est.download_bytes > free:
            return (f"{est.repo_id} is too big for this server's disk: its files take {fmt_bytes(est.download_bytes)} "
                    f"and the Hugging Face cache has {fmt_bytes(max(free, 0))} free.")
    return ""


# ---------------------------------------------------------------- kind

def kind_refusal(info, role: str) -> str:
    """'' when the repo holds the kind of model `role` needs (or its metadata cannot tell), else why not."""
    names = [s.rfilename for s in (info.siblings or [])]
    top = {n for n in names if "/" not in n}
    repo = info.id or "this repo"
    config_names = {"config.json", "modules.json", "model_index.json", "gliner_config.json", "params.json"}
    if role in KIND and not top & config_names:
        holds = "a tokenizer" if any(n.startswith("tokenizer") or n in ("vocab.json", "vocab.txt") for n in top) \
            else "no model files"
        return f"{repo} is not a model: it holds {holds} ({', '.join(sorted(top)[:4]) or 'nothing'}), no config.json."
    if role in KIND and not weight_files(names) and not any(n.endswith(".gguf") for n in names):
        return f"{repo} has no weights in a format this lab loads (safetensors, .bin or .pt)."
    config = getattr(info, "config", None) or {}
    archs = [a for a in (config.get("architectures") or []) if isinstance(a, str)]
    if role not in KIND or not archs:
        return ""
    endings, what, example = KIND[role]
    if any(a.endswith(endings) for a in archs):
        return ""
    head = next((label for suffix, label in HEAD_NAMES.items() if archs[0].endswith(suffix)), "")
    kind = f"a {head} model ({archs[0]})" if head else f"a {archs[0]} model"
    return f"{repo} is {kind}, not {what}: {example}."


# ---------------------------------------------------------------- the check resolve() runs

def check(spec, role: str, source: str, device: str | None = None) -> Estimate | None:
    """Raise ModelUnavailable when `spec` (about to load from `source`: 'hub' or 'local cache') is of
    the wrong kind or too big for this machine; returns the estimate (None when unknown). Metadata
    errors (missing, gated) are explained in one sentence too."""
    from shared.models import ModelUnavailable

    device = device or _device()
    dtype_bytes, dtype = (4, "float32") if device == "cpu" else (2, "16-bit")
    if source == "local cache":
        est = estimate_from_cache(spec.hub_id, dtype_bytes, dtype)
        if est is not None and not _resident(spec.hub_id) and (why := size_refusal(est, device)):
            raise ModelUnavailable(why)
        return est
    try:
        info = hub.repo_info(spec.hub_id)
    except Exception as exc:  # noqa: BLE001
        from shared.loading import explain

        refusal = ModelUnavailable(explain(spec.hub_id, exc))
        status = getattr(getattr(exc, "response", None), "status_code", 0) or 0
        refusal.no_answer = type(exc).__name__ in hub.DOWNLOAD_CONNECTION_ERRORS or status >= 500
        raise refusal from exc
    est = estimate_from_info(info, dtype_bytes, dtype)
    est.repo_id = spec.hub_id
    why = size_refusal(est, device) or kind_refusal(info, role)
    if not why and getattr(info, "gated", False) and not _has_token():
        why = (f"{spec.hub_id} is gated: accept its licence on the Hub and log in (`hf auth login` or HF_TOKEN) "
               "to use it.")
    if why:
        raise ModelUnavailable(why)
    return est


def estimate(spec, source: str, device: str) -> Estimate | None:
    """The same numbers without refusing (remembered metadata: no new request after check())."""
    dtype_bytes, dtype = (4, "float32") if device == "cpu" else (2, "16-bit")
    if source == "local cache":
        return estimate_from_cache(spec.hub_id, dtype_bytes, dtype)
    if source != "hub":
        return None
    try:
        est = estimate_from_info(hub.repo_info(spec.hub_id), dtype_bytes, dtype)
    except Exception:  # noqa: BLE001
        return None
    est.repo_id = spec.hub_id
    return est


def _resident(hub_id: str) -> bool:
    """Already loaded: asking for it again shares it, it takes no new memory."""
    from shared.loading import model_cache

    return any(len(key) > 1 and key[1] == hub_id for key in model_cache().keys())


def _device() -> str:
    from shared.device import pick_device

    return pick_device()


def _has_token() -> bool:
    from shared.store import hub_token

    return bool(hub_token())
