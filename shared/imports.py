"""torch and transformers, imported for the first time by one thread only.

transformers resolves its names lazily. When two request threads make their first
`from transformers import AutoConfig` at the same moment (a page load fills several panels at
once while the user clicks), one of them can see a half-initialised module and fail with
"cannot import name 'AutoConfig'". Every first use goes through `transformers_ready()`, which
does that import once, under a lock; later calls return at once."""
import threading

_lock = threading.Lock()
_ready = False
# The names the labs import; resolving them here imports their lazy submodules in this thread.
_NAMES = ("AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForTokenClassification", "AutoTokenizer",
          "MODEL_FOR_CAUSAL_LM_MAPPING", "BitsAndBytesConfig", "TextIteratorStreamer", "StoppingCriteria",
          "LogitsProcessorList")


def transformers_ready() -> None:
    global _ready
    if _ready:
        return
    with _lock:
        if not _ready:
            import torch  # noqa: F401
            import transformers

            for name in _NAMES:
                getattr(transformers, name)
            _ready = True
