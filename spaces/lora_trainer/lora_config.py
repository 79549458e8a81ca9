"""The LoRA trainer's settings: one dataclass with every knob, its limits, checked the same way for the
UI and the API; target-module presets resolved against the model's own layer names; whether 4-bit
QLoRA can run here. No gradio here."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from shared.errors import UserError

# ---------------------------------------------------------------- limits and defaults
MAX_RANK = 256
MAX_ALPHA = 4096
MAX_STEPS = 5000
MAX_EPOCHS = 50
MAX_BATCH = 64
MAX_ACCUM = 64
MIN_LENGTH, MAX_LENGTH = 16, 8192
MAX_LR = 1.0
PRESETS = {
    "q,v": "query and value projections (the LoRA paper's choice)",
    "all attention": "every linear layer of the attention blocks",
    "all linear": "every linear layer but the output head (QLoRA paper's choice)",
}
QV_NAMES = ("q_proj", "v_proj", "query", "value", "q", "v")
FUSED_ATTENTION = ("c_attn", "qkv_proj", "query_key_value", "Wqkv", "qkv")


class ConfigError(UserError):
    """A setting out of range or of the wrong kind; the message names it."""


@dataclass
class TrainConfig:
    model: str = ""  # "" = the embedded SmolLM2-135M-Instruct
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | list = "q,v"  # a preset name or a list / comma-separated layer names
    learning_rate: float = 5e-4
    max_steps: int = 30  # used when epochs is 0
    epochs: float = 0.0  # > 0: train this many passes over the data instead of max_steps
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 128
    seed: int = 0
    completion_only_loss: bool = True
    qlora: bool = False
    eval_fraction: float = 0.1
    warmup_ratio: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def keys() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def _number(name, value, kind, lo, hi, *, lo_open=False):
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigError(f"{name} must be a number (got {value!r}).")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number (got {str(value)[:40]!r}).") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number (got {value!r}).")
    if kind is int:
        if number != int(number):
            raise ConfigError(f"{name} must be a whole number (got {value!r}).")
        number = int(number)
    if number < lo or (lo_open and number <= lo) or number > hi:
        low = f"above {lo:g}" if lo_open else f"at least {lo:g}"
        raise ConfigError(f"{name} must be {low} and at most {hi:g} (got {value!r}).")
    return number


def _flag(name, value) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise ConfigError(f"{name} must be true or false (got {str(value)[:40]!r}).")


def parse(raw: dict | None) -> TrainConfig:
    """A TrainConfig from a dict of settings (unknown keys and bad values raise ConfigError). `lr` is
    accepted for learning_rate, `steps` for max_steps."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config must be a JSON object of settings, not {type(raw).__name__}.")
    raw = dict(raw)
    for alias, name in (("lr", "learning_rate"), ("steps", "max_steps"), ("rank", "r"), ("lora_alpha", "alpha")):
        if alias in raw and name not in raw:
            raw[name] = raw.pop(alias)
    unknown = sorted(set(raw) - set(keys()))
    if unknown:
        raise ConfigError(f"Unknown setting(s): {', '.join(map(str, unknown))[:200]}. Known: {', '.join(keys())}.")
    c = TrainConfig()
    if "model" in raw:
        if raw["model"] is not None and not isinstance(raw["model"], str):
            raise ConfigError("model must be a model name or Hub id (text).")
        c.model = (raw["model"] or "").strip()[:300]
    c.r = _number("r (rank)", raw.get("r", c.r), int, 1, MAX_RANK)
    c.alpha = _number("alpha", raw.get("alpha", c.alpha), float, 0, MAX_ALPHA, lo_open=True)
    c.dropout = _number("dropout", raw.get("dropout", c.dropout), float, 0, 0.9)
    lr = raw.get("learning_rate", c.learning_rate)
    try:
        lr_value = float(lr) if not isinstance(lr, bool) else None
    except (TypeError, ValueError):
        lr_value = None
    if lr_value == 0:
        raise ConfigError("learning_rate is 0: the adapter would not change at all. Try 5e-4 for LoRA.")
    if lr_value is not None and lr_value < 0:
        raise ConfigError(f"learning_rate must be positive (got {lr}); a negative rate climbs the loss.")
    c.learning_rate = _number("learning_rate", lr, float, 0, MAX_LR, lo_open=True)
    c.max_steps = _number("max_steps", raw.get("max_steps", c.max_steps), int, 1, MAX_STEPS)
    c.epochs = _number("epochs", raw.get("epochs", c.epochs), float, 0, MAX_EPOCHS)
    c.batch_size = _number("batch_size", raw.get("batch_size", c.batch_size), int, 1, MAX_BATCH)
    c.grad_accum = _number("grad_accum", raw.get("grad_accum", c.grad_accum), int, 1, MAX_ACCUM)
    c.max_length = _number("max_length", raw.get("max_length", c.max_length), int, MIN_LENGTH, MAX_LENGTH)
    c.seed = _number("seed", raw.get("seed", c.seed), int, 0, 2**31 - 1)
    c.completion_only_loss = _flag("completion_only_loss", raw.get("completion_only_loss", c.completion_only_loss))
    c.qlora = _flag("qlora", raw.get("qlora", c.qlora))
    c.eval_fraction = _number("eval_fraction", raw.get("eval_fraction", c.eval_fraction), float, 0, 0.5)
    c.warmup_ratio = _number("warmup_ratio", raw.get("warmup_ratio", c.warmup_ratio), float, 0, 0.5)
    targets = raw.get("target_modules", c.target_modules)
    if isinstance(targets, str):
        if not targets.strip():
            raise ConfigError("target_modules is empty: pick a preset (q,v / all attention / all linear) or name "
                              "the layers.")
        c.target_modules = targets.strip()
    elif isinstance(targets, list) and targets and all(isinstance(t, str) and t.strip() for t in targets):
        c.target_modules = [t.strip() for t in targets]
    else:
        raise ConfigError("target_modules must be a preset name or a list of layer names.")
    return c


# ---------------------------------------------------------------- target modules

def module_names(layers) -> list[str]:
    """The distinct last name parts of the model's linear layers (what peft's target_modules matches)."""
    seen: dict[str, None] = {}
    for name, _, _ in layers:
        seen[name.rsplit(".", 1)[-1]] = None
    return list(seen)


def resolve_targets(target_modules, layers) -> tuple[list[str], str]:
    """(layer names, note) for a preset or a free list, checked against the model's linear layers."""
    names = module_names(layers)
    if isinstance(target_modules, str) and target_modules.strip().lower() in PRESETS:
        preset = target_modules.strip().lower()
        if preset == "all linear":
            return names, f"all linear: {', '.join(names)}"
        attention = [n for n in names if any(("attn" in q or "attention" in q) and q.endswith("." + n)
                                             for q, _, _ in layers)]
        if preset == "all attention":
            if not attention:
                raise ConfigError("This model has no layers under an attention block by name; list the layers.")
            return attention, f"all attention: {', '.join(attention)}"
        qv = [n for n in names if n in QV_NAMES]
        if len(qv) >= 2:
            return qv, f"q,v: {', '.join(qv)}"
        fused = [n for n in names if n in FUSED_ATTENTION]
        if fused:
            return fused, f"q,v: this model computes q, k and v in one layer ({fused[0]}), so LoRA goes on it"
        raise ConfigError("This model has no separate query/value layers; use 'all attention' or list the layers.")
    wanted = target_modules if isinstance(target_modules, list) else \
        [t.strip() for t in str(target_modules).replace(";", ",").split(",") if t.strip()]
    if not wanted:
        raise ConfigError("target_modules is empty.")
    missing = [t for t in wanted if t not in names]
    if missing:
        raise ConfigError(f"No linear layer is called {', '.join(missing)[:120]} in this model. Its linear layers: "
                          f"{', '.join(names)}.")
    return wanted, f"custom: {', '.join(wanted)}"


# ---------------------------------------------------------------- QLoRA

def qlora_status(device: str) -> tuple[bool, str]:
    """(can run, why) for 4-bit QLoRA on `device`."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return False, "bitsandbytes is not installed (pip install bitsandbytes), so 4-bit QLoRA is off."
    if device == "mps":
        return False, "bitsandbytes has no 4-bit kernels for Apple's MPS, so 4-bit QLoRA is off here."
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001  a broken native library
        return False, f"bitsandbytes does not load here ({type(exc).__name__}), so 4-bit QLoRA is off."
    if device == "cpu":
        return True, ("bitsandbytes runs 4-bit on this CPU: the base weights take ~4x less memory, but each step "
                      "is slower than plain LoRA (weights are de-quantized on the fly). It pays off on a GPU.")
    return True, "4-bit NF4 base with double quantization; the adapter trains in 16/32-bit."
