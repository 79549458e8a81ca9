"""Load a model chosen by shared.models.resolve(), shared by every session of the process.

Models are shared read-only between sessions; a lock per model makes concurrent first
requests wait for one load instead of starting several. Models live in a bounded cache
(shared.modelcache: a byte budget sized from the machine, least recently used unloaded first,
never one in use); a Hub model is checked by shared.hubguard, then downloaded with progress,
then loaded from the local cache. once() keeps the labs' own data (never unloaded)."""
import dataclasses
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

from shared import embedded, hub, hubguard
from shared.device import pick_device, pick_dtype
from shared.imports import transformers_ready
from shared.modelcache import CacheFull, ModelCache
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


def forget(key: tuple) -> bool:
    """Drop a once() entry (its next use builds it again); True if there was one."""
    with _guard:
        return _cache.pop(key, None) is not None


def is_loaded(key_prefix: str) -> bool:
    return any(k[0] == key_prefix for k in list(_cache) + _models.keys())


# ---------------------------------------------------------------- the bounded model cache

_models = ModelCache()


def model_cache() -> ModelCache:
    """The process's bounded model cache (resident models, budget, what was unloaded)."""
    return _models


def cached_model(key: tuple, build: Callable[[], Any], device: str = "cpu",
                 estimate: int | Callable[[], int] = 0) -> tuple[Any, bool]:
    """(value, reloaded): like once(), for a model, within the memory budget: it may be unloaded when
    unused and other models need the room, and then loads again (reloaded=True says so).
    `estimate` (bytes) lets large loads wait for each other and make room before they start."""
    try:
        return _models.get(key, build, device=device, estimate=estimate)
    except CacheFull as exc:
        raise ModelUnavailable(str(exc)) from exc


@contextmanager
def reserve(key: tuple, device: str = "cpu", estimate: int = 0):
    """Room in the budget for a model loaded, used and freed inside the block (not kept)."""
    try:
        room = _models.reserve(key, device, estimate)
        room.__enter__()
    except CacheFull as exc:
        raise ModelUnavailable(str(exc)) from exc
    try:
        yield
    finally:
        room.__exit__(None, None, None)


def unload(match: Callable[[tuple], bool] | None = None) -> int:
    """Drop cached models whose key matches (all when None); returns how many."""
    return _models.unload(match)


def origin(choice: Choice) -> str:
    # A Hub model is the same model whether it came from the Hub a minute ago or from the cache now.
    return choice.source if choice.source in ("embedded", "local folder") else "hub"


def _note(choice: Choice, reloaded: bool, key: tuple) -> Choice:
    if not reloaded:
        return choice
    return dataclasses.replace(choice, reason=f"{choice.reason}; loaded again: it had been unloaded to make room "
                                               "for other models within this server's memory budget")


def estimate_bytes(choice: Choice, device: str) -> int:
    if choice.source in ("embedded", "local folder"):
        return 0
    est = hubguard.estimate(choice.spec, choice.source, device)
    return est.memory_bytes if est else 0


def fetch(choice: Choice, device: str | None = None, progress=None) -> tuple[str, bool]:
    """(where, local_files_only) for from_pretrained: a Hub model's files are downloaded here first,
    only the ones a load reads, with progress, into the Hugging Face cache; then loaded from there."""
    if choice.source != "hub":
        return choice.spec.hub_id, True
    est = hubguard.estimate(choice.spec, "hub", device or pick_device())
    if est is None or not est.files:
        return choice.spec.hub_id, False
    try:
        return hub.download(choice.spec.hub_id, est.files, progress), True
    except ModelUnavailable:
        raise
    except Exception as exc:  # gated (401), removed meanwhile: one line for the UI
        raise ModelUnavailable(explain(choice.spec.hub_id, exc)) from exc


def load_causal_lm(requested: str | None = None, fallback: bool = True, device: str | None = None,
                   progress=None) -> Loaded:
    """A causal LM and its tokenizer: the embedded SmolLM2 unless another model is asked for.
    `progress(fraction, message)` hears about a Hub download."""
    choice = resolve("causal", requested, fallback)
    device = device or pick_device()
    dtype = pick_dtype(device)
    key = ("causal", choice.spec.hub_id, origin(choice), device)
    (model, tokenizer), reloaded = cached_model(key, lambda: _load_causal(choice, device, dtype, progress),
                                                device, lambda: estimate_bytes(choice, device))
    return Loaded(model, tokenizer, _note(choice, reloaded, key), device, str(dtype).removeprefix("torch."))


def _load_causal(choice: Choice, device: str, dtype, progress=None):
    transformers_ready()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    if choice.source == "embedded":
        where, offline = str(embedded.smollm2_folder()), True
        dtype = dtype if device != "cpu" else None
    else:
        where, offline = fetch(choice, device, progress)
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
        raise ModelUnavailable(explain(choice.spec.hub_id, exc)) from exc
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _is_causal(config, mapping) -> bool:
    # BERT-like configs have a causal-LM class too, so the checkpoint's own architectures decide.
    causal_heads = ("ForCausalLM", "LMHeadModel")
    archs = getattr(config, "architectures", None) or []
    return type(config) in mapping and (not archs or any(a.endswith(causal_heads) for a in archs))


def explain(model_id: str, exc: Exception) -> str:
    name = type(exc).__name__
    if name in hub.DOWNLOAD_CONNECTION_ERRORS:
        return (f"The Hugging Face Hub did not answer about {model_id} ({name}); try again in a minute, or pick "
                "a model that is already here.")
    # the exception's class first, then its HTTP status; a bare "401" anywhere in the text is not enough (the
    # message holds URLs, whose port can be 40123)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is None:
        found = re.search(r"\b(40[134]) Client Error\b", str(exc))
        status = int(found.group(1)) if found else None
    not_found = f"{model_id} was not found on the Hub (check the spelling, or log in if it is private)."
    gated = f"{model_id} is gated: accept its licence on the Hub and log in (`hf auth login` or HF_TOKEN) to use it."
    if "Gated" in name:
        return gated
    if "RepositoryNotFound" in name:
        return not_found
    if status in (401, 403):
        return gated
    if status == 404:
        return not_found
    return f"Could not load {model_id}: {name}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def load_embedder(requested: str | None = None, fallback: bool = True, device: str | None = None,
                  progress=None):
    """(SentenceTransformer, Choice): the embedded MiniLM unless another model is asked for."""
    choice = resolve("embeddings", requested, fallback)
    device = device or pick_device()

    def build():
        from sentence_transformers import SentenceTransformer

        if choice.source == "embedded":
            where, offline = str(embedded.minilm_folder()), True
        else:
            where, offline = fetch(choice, device, progress)
        try:
            return SentenceTransformer(where, device=device, local_files_only=offline)
        except Exception as exc:
            raise ModelUnavailable(explain(choice.spec.hub_id, exc)) from exc

    key = ("embeddings", choice.spec.hub_id, origin(choice), device)
    model, reloaded = cached_model(key, build, device, lambda: estimate_bytes(choice, device))
    return model, _note(choice, reloaded, key)


def load_pretrained(role: str, requested: str, build: Callable[[str, bool], Any], fallback: bool = False,
                    device: str | None = None, progress=None) -> tuple[Any, Choice]:
    """(model, Choice) for any other kind of Hub model (a token classifier, a diffusers UNet, a
    cross-encoder): the same policy, size guard, download with progress and bounded cache as
    load_causal_lm. `build(where, local_files_only)` loads it, e.g.
    `lambda where, offline: AutoModelForTokenClassification.from_pretrained(where, local_files_only=offline)`.
    An embedded default has no generic loader: the lab loads its own."""
    choice = resolve(role, requested, fallback)
    if choice.source == "embedded":
        raise ModelUnavailable(f"{choice.spec.name} is this lab's embedded model: {choice.reason}.")
    device = device or pick_device()

    def load():
        where, offline = fetch(choice, device, progress)
        try:
            return build(where, offline)
        except ModelUnavailable:
            raise
        except Exception as exc:
            raise ModelUnavailable(explain(choice.spec.hub_id, exc)) from exc

    key = (role, choice.spec.hub_id, origin(choice), device)
    model, reloaded = cached_model(key, load, device, lambda: estimate_bytes(choice, device))
    return model, _note(choice, reloaded, key)


def load_spacy():
    """spaCy's embedded en_core_web_sm pipeline."""
    def build():
        import spacy

        return spacy.load(embedded.spacy_model())

    return once(("spacy", embedded.SPACY_MODEL), build)
