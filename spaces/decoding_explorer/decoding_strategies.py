"""Decoding strategies as data: their parameters, presets, clamps, and the transformers logits
processors each one applies, in the order `model.generate` builds them.

No gradio and no torch at import: the processors are built on demand."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from shared.imports import transformers_ready

# ---------------------------------------------------------------- limits and UI defaults
MAX_NEW_TOKENS = 256  # CPU-friendly ceiling; asking for more is clamped with a note
MAX_BEAMS = 8
MAX_PROMPT_TOKENS = 1024  # prompt tokens kept (the end of the prompt) before generation
MAX_PROMPT_CHARS = 40_000  # cheap character cut before tokenising a huge paste
TOP_ALTERNATIVES = 5  # alternatives recorded per generated token
PIPELINE_TOKENS = 12  # tokens shown in the logits pipeline of one step
DEFAULT_NEW_TOKENS = 64
EXAMPLE_PROMPT = "Write a short story about a robot who learns to paint."
RUN_SLOTS = 16  # generations running at once in one process (they share one forward pass per step through
# shared.batching, which also bounds the rows of one forward); more wait in line with their position
STREAM_EVERY_S = 0.25  # how often the UI redraws the cards of a running generation
DEFAULT_PRESET = "Default (the classics)"
CUSTOM = "Custom"  # what the Preset box shows when the settings match no preset

# (strategy, parameter, slider settings): the knobs shown under "Strategy parameters", in this order.
PARAM_UI = [
    ("temperature", "temperature", dict(minimum=0.05, maximum=2.0, step=0.05)),
    ("top_k", "top_k", dict(minimum=1, maximum=200, step=1)),
    ("top_k", "temperature", dict(minimum=0.05, maximum=2.0, step=0.05)),
    ("top_p", "top_p", dict(minimum=0.05, maximum=1.0, step=0.01)),
    ("top_p", "temperature", dict(minimum=0.05, maximum=2.0, step=0.05)),
    ("min_p", "min_p", dict(minimum=0.0, maximum=0.5, step=0.01)),
    ("min_p", "temperature", dict(minimum=0.05, maximum=2.0, step=0.05)),
    ("typical", "typical_p", dict(minimum=0.05, maximum=1.0, step=0.01)),
    ("beam", "num_beams", dict(minimum=2, maximum=MAX_BEAMS, step=1)),
    ("beam", "length_penalty", dict(minimum=-2.0, maximum=3.0, step=0.1)),
    ("beam", "no_repeat_ngram_size", dict(minimum=0, maximum=6, step=1)),
    ("repetition_penalty", "repetition_penalty", dict(minimum=1.0, maximum=2.5, step=0.05)),
    ("contrastive", "penalty_alpha", dict(minimum=0.0, maximum=1.0, step=0.05)),
    ("contrastive", "contrastive_k", dict(minimum=2, maximum=10, step=1)),
]


@dataclass(frozen=True)
class Strategy:
    """One decoding strategy. A field left at its neutral value adds no processor."""
    name: str
    label: str
    explain: str
    mode: str = "sample"  # "greedy" | "sample" | "beam" | "contrastive"
    temperature: float = 1.0
    top_k: int = 0  # 0 = off (note: generate's own default is 50; we always pass it explicitly)
    top_p: float = 1.0
    min_p: float = 0.0  # 0 = off
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    penalty_alpha: float = 0.6  # contrastive search only
    contrastive_k: int = 4  # contrastive search only: candidates re-ranked per step

    @property
    def do_sample(self) -> bool:
        return self.mode == "sample"

    def params(self) -> dict:
        """The parameters that matter for this strategy (for tables and the API)."""
        d = asdict(self)
        keep = {"greedy": ["repetition_penalty", "no_repeat_ngram_size"],
                "beam": ["num_beams", "length_penalty", "no_repeat_ngram_size", "repetition_penalty"],
                "contrastive": ["penalty_alpha", "contrastive_k", "repetition_penalty"],
                "sample": ["temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
                           "no_repeat_ngram_size"]}[self.mode]
        neutral = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0,
                   "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
        return {k: d[k] for k in keep if not (k in neutral and d[k] == neutral[k])}

    def describe(self) -> str:
        bits = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{self.label} ({bits})" if bits else self.label


DEFAULTS: dict[str, Strategy] = {s.name: s for s in [
    Strategy("greedy", "Greedy", "Always take the single most likely next token.", mode="greedy"),
    Strategy("beam", "Beam search", "Keep the best few partial sequences by total log-probability; return the best.",
             mode="beam", num_beams=4, length_penalty=1.0, no_repeat_ngram_size=3),
    Strategy("temperature", "Temperature sampling",
             "Divide the logits by T, then sample from the whole distribution (T<1 sharper, T>1 flatter).",
             temperature=0.8),
    Strategy("top_k", "Top-k sampling", "Sample only among the k most likely tokens.", top_k=40),
    Strategy("top_p", "Top-p (nucleus) sampling",
             "Sample among the smallest set of tokens whose probabilities add up to p.", top_p=0.9),
    Strategy("min_p", "Min-p sampling",
             "Drop tokens less likely than min_p times the top token's probability, then sample.", min_p=0.1),
    Strategy("typical", "Typical sampling",
             "Keep tokens whose surprise is closest to the distribution's entropy, up to mass p.", typical_p=0.9),
    Strategy("repetition_penalty", "Greedy + repetition penalty",
             "Greedy, but logits of tokens already in the text are divided (or multiplied) by the penalty.",
             mode="greedy", repetition_penalty=1.3),
    Strategy("contrastive", "Contrastive search",
             "Among the top-k tokens, pick the one that is likely AND least similar to the text so far "
             "(score = (1-alpha)*p - alpha*max cosine similarity).", mode="contrastive", penalty_alpha=0.6,
             contrastive_k=4),
]}
NAMES = list(DEFAULTS)

PRESETS: dict[str, dict] = {
    DEFAULT_PRESET: {"strategies": ["greedy", "beam", "top_p", "contrastive"]},
    "All sampling filters": {"strategies": ["temperature", "top_k", "top_p", "min_p", "typical"]},
    "Fight repetition": {"strategies": ["greedy", "repetition_penalty", "beam", "contrastive"]},
    "Creative (hot)": {"strategies": ["temperature", "top_p", "min_p"],
                       "overrides": {"temperature": {"temperature": 1.3}, "top_p": {"temperature": 1.2},
                                     "min_p": {"temperature": 1.5}}},
    "Everything": {"strategies": NAMES},
}
DEFAULT_SELECTION = PRESETS[DEFAULT_PRESET]["strategies"]


def label_of(name: str) -> str:
    """The label a strategy has on its checkbox (what the UI's messages name)."""
    return DEFAULTS[name].label if name in DEFAULTS else name


def default_values() -> list:
    """The slider values of PARAM_UI with every strategy at its defaults."""
    return [getattr(DEFAULTS[name], param) for name, param, _ in PARAM_UI]


def preset_values(preset: str) -> tuple[list[str], list]:
    """(ticked strategies, slider values in PARAM_UI order) of a preset; unknown names give the default."""
    spec = PRESETS.get(preset) or PRESETS[DEFAULT_PRESET]
    values = default_values()
    for i, (name, param, _) in enumerate(PARAM_UI):
        values[i] = (spec.get("overrides", {}).get(name) or {}).get(param, values[i])
    return list(spec["strategies"]), values


def preset_of(selected, values) -> str:
    """The preset these ticks and slider values are, or CUSTOM."""
    chosen = set(selected or [])
    for preset in PRESETS:
        names, expected = preset_values(preset)
        if set(names) == chosen and all(_same(a, b) for a, b in zip(values, expected)):
            return preset
    return CUSTOM


def _same(a, b) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-9
    except (TypeError, ValueError):
        return False


def overrides_from(values) -> dict:
    """{"strategy": {"param": value}} from slider values in PARAM_UI order."""
    out: dict = {}
    for (name, param, _), value in zip(PARAM_UI, values):
        out.setdefault(name, {})[param] = value
    return out

# name -> (min, max, int?) ; what the clamp does is documented in the lab README.
BOUNDS = {
    "temperature": (0.05, 5.0, False),
    "top_k": (0, 1000, True),
    "top_p": (0.01, 1.0, False),
    "min_p": (0.0, 1.0, False),
    "typical_p": (0.01, 1.0, False),
    "repetition_penalty": (0.5, 3.0, False),
    "no_repeat_ngram_size": (0, 10, True),
    "num_beams": (1, MAX_BEAMS, True),
    "length_penalty": (-3.0, 3.0, False),
    "penalty_alpha": (0.0, 1.0, False),
    "contrastive_k": (1, 10, True),
}


def _number(value, default):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value else None  # NaN -> None


def clamp(strategy: Strategy, **changes) -> tuple[Strategy, list[str]]:
    """A copy of `strategy` with `changes` applied inside BOUNDS, and a note for each clamp."""
    notes, clean = [], {}
    for key, raw in changes.items():
        if key not in BOUNDS:
            continue
        lo, hi, is_int = BOUNDS[key]
        value = _number(raw, getattr(strategy, key))
        if value is None:
            notes.append(f"{strategy.label}: {key}={raw!r} is not a number; kept {getattr(strategy, key)}.")
            continue
        fixed = min(max(value, lo), hi)
        if key == "temperature" and value <= 0:
            notes.append(f"{strategy.label}: temperature must be > 0 (0 means greedy: use the Greedy strategy); "
                         f"using {lo}.")
        elif fixed != value:
            notes.append(f"{strategy.label}: {key}={raw} is outside [{lo}, {hi}]; using {fixed:g}.")
        clean[key] = int(round(fixed)) if is_int else float(fixed)
    if strategy.mode == "beam" and clean.get("num_beams", strategy.num_beams) < 2:
        clean["num_beams"] = 2
        notes.append(f"{strategy.label}: beam search needs at least 2 beams; using 2.")
    return replace(strategy, **clean), notes


def resolve(names, overrides: dict | None = None) -> tuple[list[Strategy], list[str]]:
    """Strategies by name (unknown names reported, duplicates dropped) with clamped overrides."""
    if isinstance(names, str):
        names = [n for n in names.replace(";", ",").split(",")]
    notes, chosen = [], []
    for raw in names or []:
        name = str(raw).strip().lower().replace("-", "_").replace(" ", "_")
        if not name:
            continue
        if name not in DEFAULTS:
            notes.append(f"Unknown strategy '{str(raw)[:40]}' (known: {', '.join(NAMES)}); skipped.")
            continue
        if name in [s.name for s in chosen]:
            continue
        strategy, more = clamp(DEFAULTS[name], **((overrides or {}).get(name) or {}))
        chosen.append(strategy)
        notes += more
    return chosen, notes


def clamp_run(max_new_tokens, seed) -> tuple[int, int, list[str]]:
    notes = []
    n = _number(max_new_tokens, 64)
    if n is None:
        n, _ = 64, notes.append(f"max_new_tokens={max_new_tokens!r} is not a number; using 64.")
    if n < 1 or n > MAX_NEW_TOKENS:
        fixed = int(min(max(n, 1), MAX_NEW_TOKENS))
        notes.append(f"max_new_tokens={n:g} is outside [1, {MAX_NEW_TOKENS}]; using {fixed}.")
        n = fixed
    s = _number(seed, 0)
    if s is None:
        s, _ = 0, notes.append(f"seed={seed!r} is not a number; using 0.")
    s = int(abs(s)) % (2**32)
    return int(n), s, notes


def processors(strategy: Strategy) -> list[tuple[str, object]]:
    """(stage label, LogitsProcessor) in the order GenerationMixin._get_logits_processor (transformers
    5.23) appends them: repetition penalty, no-repeat n-gram, then - for sampling only - temperature,
    top-k, top-p, min-p, typical. For beam search they act on log-probabilities, as in generate."""
    transformers_ready()
    from transformers import (MinPLogitsWarper, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor,
                              TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper)

    s = strategy
    out = []
    if s.repetition_penalty != 1.0:
        out.append((f"repetition penalty {s.repetition_penalty:g}", RepetitionPenaltyLogitsProcessor(s.repetition_penalty)))
    if s.no_repeat_ngram_size > 0 and s.mode != "contrastive":
        out.append((f"no-repeat {s.no_repeat_ngram_size}-gram", NoRepeatNGramLogitsProcessor(s.no_repeat_ngram_size)))
    if s.do_sample:
        if s.temperature != 1.0:
            out.append((f"temperature {s.temperature:g}", TemperatureLogitsWarper(s.temperature)))
        if s.top_k:
            out.append((f"top-k {s.top_k}", TopKLogitsWarper(top_k=s.top_k, min_tokens_to_keep=1)))
        if s.top_p < 1.0:
            out.append((f"top-p {s.top_p:g}", TopPLogitsWarper(top_p=s.top_p, min_tokens_to_keep=1)))
        if s.min_p > 0.0:
            out.append((f"min-p {s.min_p:g}", MinPLogitsWarper(min_p=s.min_p, min_tokens_to_keep=1)))
        if s.typical_p < 1.0:
            out.append((f"typical {s.typical_p:g}", TypicalLogitsWarper(mass=s.typical_p, min_tokens_to_keep=1)))
    return out


def generate_kwargs(strategy: Strategy) -> dict:
    """The `model.generate` arguments that reproduce `strategy` (what the tests and bench compare
    against). Contrastive search has no core equivalent in transformers 5."""
    s = strategy
    if s.mode == "contrastive":
        raise ValueError("transformers 5 has no contrastive search in core (it is Hub-only custom code).")
    kw = dict(do_sample=s.do_sample, num_beams=s.num_beams if s.mode == "beam" else 1,
              repetition_penalty=s.repetition_penalty, no_repeat_ngram_size=s.no_repeat_ngram_size)
    if s.mode == "beam":
        kw.update(length_penalty=s.length_penalty, early_stopping=False)
    if s.do_sample:
        kw.update(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                  min_p=s.min_p if s.min_p > 0 else None, typical_p=s.typical_p)
    return kw

