"""Load a model chosen by shared.models.resolve(), once per process.

Models are shared read-only between sessions; a lock per model makes concurrent first
requests wait for one load instead of starting several."""
import threading
from dataclasses import dataclass
from typing import Any

from shared import embedded
from shared.device import pick_device, pick_dtype
from shared.imports import transformers_ready
from shared.models import Choice, ModelUnavailable, resolve


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    choice: Choice
    device: str
    dtype: str

    @property
    def status(self) -> str:
        """One line for the UI: which model, from where, on what, and why."""
        return f"**{self.choice.spec.name}** · {self.choice.source} · {self.device} / {self.dtype} · {self.choice.reason}"


_cache: dict[tuple, Any] = {}
_locks: dict[tuple, threading.Lock] = {}
_guard = threading.Lock()


def once(key: tuple, build):
    """build() the first time `key` is asked for, then the same object; concurrent first calls wait for
    one build. Labs use it for their own models and data too."""
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]


def is_loaded(key_prefix: str) -> bool:
    return any(k[0] == key_prefix for k in _cache)


def load_causal_lm(requested: str | None = None, fallback: bool = True, device: str | None = None) -> Loaded:
    """A causal LM and its tokenizer: the embedded SmolLM2 unless another model is asked for."""
    choice = resolve("causal", requested, fallback)
    device = device or pick_device()
    dtype = pick_dtype(device)
    model, tokenizer = once(("causal", choice.spec.hub_id, choice.source, device),
                             lambda: _load_causal(choice, device, dtype))
    return Loaded(model, tokenizer, choice, device, str(dtype).removeprefix("torch."))


def _load_causal(choice: Choice, device: str, dtype):
    transformers_ready()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    if choice.source == "embedded":
        where, offline = str(embedded.smollm2_folder()), True
        dtype = dtype if device != "cpu" else None
    else:
        where, offline = choice.spec.hub_id, choice.source != "hub"
    try:
        config = AutoConfig.from_pretrained(where, local_files_only=offline)
        if not _is_causal(config, MODEL_FOR_CAUSAL_LM_MAPPING):
            raise ModelUnavailable(f"{choice.spec.hub_id} is a '{config.model_type}' model, not a causal "
                                   "language model (text generation needs one, e.g. gpt2).")
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, local_files_only=offline)
    except ModelUnavailable:
        raise
    except Exception as exc:  # gated, missing, corrupt: one clear line for the UI
        raise ModelUnavailable(_explain(choice.spec.hub_id, exc)) from exc
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _is_causal(config, mapping) -> bool:
    # BERT-like configs have a causal-LM class too, so the checkpoint's own architectures decide.
    causal_heads = ("ForCausalLM", "LMHeadModel")
    archs = getattr(config, "architectures", None) or []
    return type(config) in mapping and (not archs or any(a.endswith(causal_heads) for a in archs))


def _explain(model_id: str, exc: Exception) -> str:
    name = type(exc).__name__
    if "Gated" in name or "401" in str(exc) or "403" in str(exc):
        return (f"{model_id} is gated: accept its licence on the Hub and log in "
                "(`hf auth login` or HF_TOKEN) to use it.")
    if "RepositoryNotFound" in name or "404" in str(exc):
        return f"{model_id} was not found on the Hub (check the spelling, or log in if it is private)."
    return f"Could not load {model_id}: {name}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def load_embedder(requested: str | None = None, fallback: bool = True, device: str | None = None):
    """(SentenceTransformer, Choice): the embedded MiniLM unless another model is asked for."""
    choice = resolve("embeddings", requested, fallback)
    device = device or pick_device()

    def build():
        from sentence_transformers import SentenceTransformer

        where = str(embedded.minilm_folder()) if choice.source == "embedded" else choice.spec.hub_id
        try:
            return SentenceTransformer(where, device=device, local_files_only=choice.source != "hub")
        except Exception as exc:
            raise ModelUnavailable(_explain(choice.spec.hub_id, exc)) from exc

    return once(("embeddings", choice.spec.hub_id, choice.source, device), build), choice


def load_spacy():
    """spaCy's embedded en_core_web_sm pipeline."""
    def build():
        import spacy

        return spacy.load(embedded.spacy_model())

    return once(("spacy", embedded.SPACY_MODEL), build)
