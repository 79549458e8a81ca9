"""Diffusion demo: what the lab computes, as plain functions the app, the API, the tests and the bench call.

Offline the model is the project's own class-conditional digits UNet (assets/diffusion_digits/): the prompt
is parsed to a digit class ("a handwritten 7", "seven", "digit 7"; empty = unconditional). With the Hub or a
GPU, real text-to-image pipelines (sd-turbo, SDXL-turbo, Stable Diffusion 1.5) run through the same loop
(diffusion_sampling.denoise), with the same schedulers, steps, guidance and seeds, and a view of their
latents decoded along the way (diffusion_hub.py).

Every feature is one function returning a result object: generate(), filmstrip(), grid(), guidance_sweep(),
schedule_table(), img2img(); sample() is generate() on the device shared.device.pick_device() returns (the
GPU check calls it). Bad input raises a UserError subclass with a sentence the user can act on."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

from shared.device import gpu, pick_device
from shared.errors import UserError
from shared.models import REGISTRY

import diffusion_model as dm
from diffusion_sampling import (SCHEDULER_NOTES, SCHEDULERS, UnknownScheduler, denoise,  # noqa: F401
                                diffusers_classes, make_scheduler, scheduler_name, unet_model)

# ---------------------------------------------------------------- limits and defaults (one block)
DEFAULT_SCHEDULER = "DDIM"
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 1.5  # measured best for the digits UNet (bench/results/diffusion_demo.md): above ~2 the
# digits wash out (grey backgrounds), at 1 they are less typical
DEFAULT_SEED = 0
DEFAULT_N = 8
MAX_STEPS = 1000  # the number of training timesteps: no sampler can take more distinct steps
MAX_N = 64  # images per request
MAX_IMAGE_STEPS = 16_000  # n x steps per request (64 digits x 250 steps, 16 x 1000): about a minute here
MAX_SEED = 2**32 - 1  # image i of a request uses seed + i
MAX_GUIDANCE = 20.0
MAX_FRAMES = 16  # filmstrip frames
DEFAULT_FRAMES = 8
MAX_GRID_CELLS = 30
MAX_GRID_STEPS = 4000  # sum of the steps of all grid cells
DEFAULT_GRID_STEPS = (5, 10, 25, 50)
MAX_SWEEP_VALUES = 10
DEFAULT_SWEEP = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
MAX_SWEEP_N = 8
DEFAULT_SWEEP_N = 4
MAX_PROMPT_CHARS = 500
HUB_MAX_STEPS = 100
HUB_MAX_N = 4

EMBEDDED_NAME = REGISTRY["diffusion"][0].name  # the registry (shared.models) lists this lab's models


class BadSetting(UserError):
    pass


class UnknownClass(UserError):
    pass


# ---------------------------------------------------------------- prompts

NUMBER_WORDS = {name: i for i, name in enumerate(dm.CLASS_NAMES)}
NUMBER_WORDS["oh"] = 0
UNCONDITIONAL_WORDS = ("any digit", "a digit", "random digit", "any", "random", "unconditional", "anything")
CLASS_LIST = ", ".join(f"{i} ({name})" for i, name in enumerate(dm.CLASS_NAMES))


@dataclass(frozen=True)
class Parsed:
    label: int | None  # None: unconditional (the null class)
    understood: str  # what the lab says it understood

    @property
    def unconditional(self) -> bool:
        return self.label is None


def parse_prompt(prompt) -> Parsed:
    """The digit a prompt asks for: 'a handwritten 7', 'seven', 'digit 7', '7'. An empty prompt (or
    'any digit') means unconditional. A prompt naming no digit, or several, raises UnknownClass."""
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise BadSetting("The prompt must be text.")
    text = prompt.strip().lower()
    if len(text) > MAX_PROMPT_CHARS:
        raise BadSetting(f"The prompt is {len(text)} characters; at most {MAX_PROMPT_CHARS}.")
    if not text or text.strip(" .!?") in UNCONDITIONAL_WORDS:
        return Parsed(None, "no digit asked for: unconditional sampling (the null class), any digit may come")
    numbers = re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])|\d+", text)
    words = [w for w in re.findall(r"[a-z]+", text) if w in NUMBER_WORDS]
    found = {int(n) for n in numbers if n.isdigit() and len(n) == 1} | {NUMBER_WORDS[w] for w in words}
    too_big = [n for n in numbers if not (n.isdigit() and len(n) == 1)]
    if too_big and not found:
        raise UnknownClass(f"'{too_big[0][:12]}' is not a single digit. This model draws one digit: {CLASS_LIST}.")
    if len(found) > 1:
        raise UnknownClass(f"The prompt names several digits ({', '.join(map(str, sorted(found)))}); "
                           "ask for one at a time.")
    if not found:
        raise UnknownClass(f"'{prompt.strip()[:60]}' names no digit this model knows. It was trained on handwritten "
                           f"digits only: {CLASS_LIST}. Try 'a handwritten 7', 'seven' or 'digit 7'; leave the "
                           "prompt empty for an unconditional digit, or pick a Hub model for free text.")
    label = found.pop()
    return Parsed(label, f"digit {label} ({dm.CLASS_NAMES[label]})")


# ---------------------------------------------------------------- settings

def number(value, name: str, lo: float, hi: float, integer: bool = False):
    """`value` as an int or float within [lo, hi]; BadSetting with the allowed range otherwise."""
    def show(v: float) -> str:
        return f"{int(v):,}" if integer and float(v).is_integer() and abs(v) < 1e18 else f"{v:g}"

    allowed = f"{'a whole number' if integer else 'a number'} from {show(lo)} to {show(hi)}"
    if isinstance(value, bool) or value is None:
        raise BadSetting(f"{name} must be {allowed}.")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise BadSetting(f"{name} must be {allowed}, not '{value.strip()[:20]}'.") from None
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadSetting(f"{name} must be {allowed}.") from None
    if not math.isfinite(value):
        raise BadSetting(f"{name} must be {allowed}, not {value}.")
    if integer and not value.is_integer():
        raise BadSetting(f"{name} must be {allowed}, not {value:g}.")
    if not lo <= value <= hi:
        raise BadSetting(f"{name} is {show(value)}; it must be {allowed}.")
    return int(value) if integer else value


def check_steps(steps, hi: int = MAX_STEPS) -> int:
    return number(steps, "Steps", 1, hi, integer=True)


def check_guidance(guidance) -> float:
    return number(guidance, "Guidance", 0, MAX_GUIDANCE)


def check_seed(seed) -> int:
    return number(seed, "Seed", 0, MAX_SEED, integer=True)


def check_n(n, hi: int = MAX_N) -> int:
    return number(n, "Number of images", 1, hi, integer=True)


def check_scheduler(name) -> str:
    return scheduler_name(name, DEFAULT_SCHEDULER)


def check_work(n: int, steps: int) -> None:
    if n * steps > MAX_IMAGE_STEPS:
        raise BadSetting(f"{n} images x {steps} steps is {n * steps:,} image-steps; this lab allows "
                         f"{MAX_IMAGE_STEPS:,} per request. Ask for fewer images or fewer steps.")


def int_list(values, name: str, lo: float, hi: float, integer: bool = True, max_len: int = 32) -> list:
    """A list of numbers from a list or a comma-separated string ('1, 10, 25'), checked one by one."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [v for v in re.split(r"[,\s;]+", values.strip()) if v]
    if not isinstance(values, (list, tuple)):
        raise BadSetting(f"{name} must be a list of numbers like 1, 10, 25.")
    if len(values) > max_len:
        raise BadSetting(f"{name} has {len(values)} values; at most {max_len}.")
    return [number(v, name, lo, hi, integer) for v in values]


# ---------------------------------------------------------------- the model

def model_status() -> str:
    report = dm.training_report()
    evaluation = report.get("evaluation", {})
    acc = f"; {evaluation['accuracy']:.1%} of its digits read as the asked class" if "accuracy" in evaluation else ""
    steps = f", {report['steps']} training steps" if "steps" in report else ""
    return f"**{EMBEDDED_NAME}** · offline · 1.16M parameters{steps}{acc}"


def preload() -> None:
    """Load the digits UNet and fit the digit classifier (a few seconds): called in the background when a
    page opens, so the first Generate does not wait for them."""
    _digits(None)
    dm.digit_classifier()


def _digits(device: str | None):
    """(model callable, unet, device). The digits UNet stays fp32 on every device: it is tiny, and
    bf16 would only cost accuracy."""
    device = device or pick_device()
    unet = dm.load_unet(device=device)
    return unet_model(unet), unet, device


def _run(parsed: Parsed, scheduler: str, steps: int, guidance: float, seed: int, n: int, *, record=(),
         device=None, on_step=None, init=None, strength: float = 1.0):
    model, _, device = _digits(device)
    return denoise(model, make_scheduler(scheduler, dm.scheduler_config()),
                   labels=[parsed.label] * n if parsed.label is not None else [None] * n,
                   null_label=dm.NULL_CLASS, guidance=guidance, steps=steps, seed=seed,
                   shape=(1, dm.IMAGE_SIZE, dm.IMAGE_SIZE), device=device, record=record, on_step=on_step,
                   init=init, strength=strength, scheduler_label=scheduler)


# ---------------------------------------------------------------- generate

@dataclass
class Generation:
    model: str
    parsed: Parsed
    scheduler: str
    steps: int
    guidance: float
    seed: int
    images: object  # (n, C, H, W) in [-1, 1]
    seconds: float
    classified: list[int] = field(default_factory=list)  # the real-digit classifier's reading (digits model)
    note: str = ""
    frames: list = field(default_factory=list)  # Hub models: decoded latents along the way (image 0)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(len(self.images))]


def _hub_model(model) -> str | None:
    """The Hub model or folder asked for, or None for the embedded digits UNet."""
    if model is None or model == "":
        return None
    if not isinstance(model, str):
        raise BadSetting("The model must be a name or a Hub id like 'stabilityai/sd-turbo'.")
    return None if model.strip() in ("", EMBEDDED_NAME) else model.strip()


def _guidance_note(parsed: Parsed, guidance: float) -> str:
    if parsed.unconditional:
        return "Unconditional: the null class alone, so guidance has no effect."
    if guidance == 0:
        return "Guidance 0: the null class alone (unconditional), the asked digit is ignored."
    if guidance == 1:
        return "Guidance 1: the class prediction alone, no classifier-free guidance."
    return f"Classifier-free guidance {guidance:g}: eps = eps(null) + {guidance:g} x (eps(digit) - eps(null))."


@gpu(duration=60)
def generate(prompt: str = "", scheduler: str = "", steps=DEFAULT_STEPS, guidance=DEFAULT_GUIDANCE,
             seed=DEFAULT_SEED, n=DEFAULT_N, *, model: str = "", device: str | None = None,
             on_step: Callable[[int, int], None] | None = None) -> Generation:
    """n images for the prompt; image i uses seed + i, so the same settings give the same images."""
    if _hub_model(model):
        import diffusion_hub

        return diffusion_hub.generate(_hub_model(model), prompt, scheduler, steps, guidance, seed, n, on_step=on_step)
    scheduler = check_scheduler(scheduler)
    steps, guidance, seed, n = check_steps(steps), check_guidance(guidance), check_seed(seed), check_n(n)
    check_work(n, steps)
    parsed = parse_prompt(prompt)
    run = _run(parsed, scheduler, steps, guidance, seed, n, device=device, on_step=on_step)
    return Generation(EMBEDDED_NAME, parsed, scheduler, steps, guidance, seed, run.images, run.seconds,
                      dm.classify(run.images), _guidance_note(parsed, guidance))


def sample(prompt: str = "a handwritten 7", scheduler: str = DEFAULT_SCHEDULER, steps: int = DEFAULT_STEPS,
           guidance: float = DEFAULT_GUIDANCE, seed: int = DEFAULT_SEED, n: int = DEFAULT_N,
           device: str | None = None) -> Generation:
    """The lab's main path on `device` (default: shared.device.pick_device()): for scripts/gpu_check.py."""
    return generate(prompt, scheduler, steps, guidance, seed, n, device=device or pick_device())


# ---------------------------------------------------------------- filmstrip

@dataclass
class Filmstrip:
    generation: Generation
    frames: list  # diffusion_sampling.Frame, for image 0 only


def default_frames(steps: int, count: int = DEFAULT_FRAMES) -> list[int]:
    """`count` steps spread from the first to the last (1-based)."""
    if steps <= count:
        return list(range(1, steps + 1))
    return sorted({1 + round(i * (steps - 1) / (count - 1)) for i in range(count)})


@gpu(duration=60)
def filmstrip(prompt: str = "", scheduler: str = "", steps=DEFAULT_STEPS, seed=DEFAULT_SEED, at_steps=None,
              guidance=DEFAULT_GUIDANCE, *, model: str = "", device: str | None = None,
              on_step=None) -> Filmstrip:
    """One image, with x_t and the predicted x_0 kept at the 1-based steps `at_steps` (default: 8 spread out)."""
    if _hub_model(model):
        import diffusion_hub

        return diffusion_hub.filmstrip(_hub_model(model), prompt, scheduler, steps, seed, at_steps, guidance,
                                       on_step=on_step)
    scheduler = check_scheduler(scheduler)
    steps, guidance, seed = check_steps(steps), check_guidance(guidance), check_seed(seed)
    wanted = check_frames(at_steps, steps)
    parsed = parse_prompt(prompt)
    run = _run(parsed, scheduler, steps, guidance, seed, 1, record=tuple(wanted), device=device, on_step=on_step)
    gen = Generation(EMBEDDED_NAME, parsed, scheduler, steps, guidance, seed, run.images, run.seconds,
                     dm.classify(run.images), _guidance_note(parsed, guidance))
    return Filmstrip(gen, run.frames)


def check_frames(at_steps, steps: int) -> list[int]:
    wanted = int_list(at_steps, "Filmstrip steps", 1, steps, max_len=MAX_FRAMES * 4)
    wanted = sorted(set(wanted)) or default_frames(steps)
    if len(wanted) > MAX_FRAMES:
        raise BadSetting(f"{len(wanted)} filmstrip steps asked for; at most {MAX_FRAMES}.")
    return wanted


# ---------------------------------------------------------------- scheduler x steps grid

@dataclass
class Cell:
    scheduler: str
    steps: int
    guidance: float
    image: object  # (C, H, W)
    seconds: float
    classified: int | None = None


@gpu(duration=120)
def grid(prompt: str = "", schedulers=None, steps_list=None, seed=DEFAULT_SEED, guidance=DEFAULT_GUIDANCE, *,
         device: str | None = None, on_cell: Callable[[int, int], None] | None = None) -> list[Cell]:
    """One image per (scheduler, steps) cell, all from the same seed (the same starting noise)."""
    names = [check_scheduler(s) for s in (schedulers or list(SCHEDULERS))]
    names = list(dict.fromkeys(names))
    steps_list = int_list(steps_list, "Grid steps", 1, MAX_STEPS) if steps_list else list(DEFAULT_GRID_STEPS)
    steps_list = sorted(set(steps_list))
    seed, guidance = check_seed(seed), check_guidance(guidance)
    if len(names) * len(steps_list) > MAX_GRID_CELLS:
        raise BadSetting(f"{len(names)} schedulers x {len(steps_list)} step counts is {len(names) * len(steps_list)} "
                         f"cells; at most {MAX_GRID_CELLS}.")
    if len(names) * sum(steps_list) > MAX_GRID_STEPS:
        raise BadSetting(f"The grid would run {len(names) * sum(steps_list):,} denoising steps; at most "
                         f"{MAX_GRID_STEPS:,}. Use fewer or smaller step counts.")
    parsed = parse_prompt(prompt)
    cells, total = [], len(names) * len(steps_list)
    for name in names:
        for steps in steps_list:
            run = _run(parsed, name, steps, guidance, seed, 1, device=device)
            cells.append(Cell(name, steps, guidance, run.images[0], run.seconds, dm.classify(run.images)[0]))
            if on_cell is not None:
                on_cell(len(cells), total)
    return cells


# ---------------------------------------------------------------- guidance sweep

@gpu(duration=120)
def guidance_sweep(prompt: str = "a handwritten 7", scheduler: str = "", steps=DEFAULT_STEPS, seed=DEFAULT_SEED,
                   guidances=None, n=DEFAULT_SWEEP_N, *, device: str | None = None,
                   on_cell: Callable[[int, int], None] | None = None) -> list[Cell]:
    """The same seeds at each guidance scale (0 = unconditional); n images per scale."""
    scheduler = check_scheduler(scheduler)
    steps, seed, n = check_steps(steps), check_seed(seed), check_n(n, MAX_SWEEP_N)
    values = int_list(guidances, "Guidance values", 0, MAX_GUIDANCE, integer=False,
                      max_len=MAX_SWEEP_VALUES) if guidances else list(DEFAULT_SWEEP)
    values = sorted(set(values))
    check_work(n * len(values), steps)
    parsed = parse_prompt(prompt)
    if parsed.unconditional:
        raise BadSetting("A guidance sweep needs a digit to guide towards: type one (e.g. 'a handwritten 7').")
    cells = []
    for g in values:
        run = _run(parsed, scheduler, steps, g, seed, n, device=device)
        readings = dm.classify(run.images)
        for i in range(n):
            cells.append(Cell(scheduler, steps, g, run.images[i], run.seconds / n, readings[i]))
        if on_cell is not None:
            on_cell(len(cells) // n, len(values))
    return cells


def sweep_summary(cells: list[Cell], label: int) -> list[dict]:
    """Per guidance value: how many images the classifier reads as the asked digit, and the time."""
    rows: dict[float, dict] = {}
    for c in cells:
        row = rows.setdefault(c.guidance, {"guidance": c.guidance, "images": 0, "read as asked": 0, "seconds": 0.0})
        row["images"] += 1
        row["read as asked"] += int(c.classified == label)
        row["seconds"] += c.seconds
    return [dict(r, seconds=round(r["seconds"], 3)) for r in rows.values()]


# ---------------------------------------------------------------- the schedule and img2img

def schedule_table():
    """beta_t, alpha-bar_t and log10 SNR for every training timestep, long form for gr.LinePlot
    (columns t, quantity, value) plus the wide frame (t, beta_t, alpha_bar_t, sqrt_alpha_bar_t, snr,
    log10_snr)."""
    import pandas as pd
    import torch

    (DDPMScheduler,) = diffusers_classes("DDPMScheduler")
    sched = DDPMScheduler(**dm.scheduler_config())
    ab = sched.alphas_cumprod.double()
    snr = ab / (1 - ab)
    wide = pd.DataFrame({"t": range(len(ab)), "beta_t": sched.betas.double().numpy(), "alpha_bar_t": ab.numpy(),
                         "sqrt_alpha_bar_t": ab.sqrt().numpy(), "snr": snr.numpy(),
                         "log10_snr": torch.log10(snr).numpy()})
    long = wide.melt(id_vars="t", value_vars=["beta_t", "alpha_bar_t", "sqrt_alpha_bar_t"],
                     var_name="quantity", value_name="value")
    return wide, long


def timesteps_of(scheduler: str, steps) -> list[float]:
    """The training timesteps a sampler visits with that many steps (what the filmstrip's t values are)."""
    sched = make_scheduler(check_scheduler(scheduler), dm.scheduler_config())
    sched.set_timesteps(check_steps(steps))
    return [float(t) for t in sched.timesteps]


def real_digit(digit, index=0):
    """(image (1, 16, 16) in [-1, 1], position in sklearn's set): the index-th real example of that digit."""
    digit = number(digit, "Digit", 0, 9, integer=True)
    images, labels = dm.load_digits_16()
    positions = (labels == digit).nonzero().flatten().tolist()
    index = number(index, "Example", 0, len(positions) - 1, integer=True)
    return images[positions[index]], positions[index]


@dataclass
class Img2Img:
    original: object  # (C, H, W)
    noised: object  # x_t at the start, on the variance-preserving scale
    result: object
    t_start: float
    alpha_bar: float
    steps_run: int
    seconds: float
    classified: int
    position: int  # in sklearn's digits


@gpu(duration=60)
def img2img(digit=3, index=0, strength=0.6, prompt: str = "", scheduler: str = "", steps=DEFAULT_STEPS,
            guidance=DEFAULT_GUIDANCE, seed=DEFAULT_SEED, *, device: str | None = None) -> Img2Img:
    """Noise a real digit part of the way (strength 0..1 of the schedule), then denoise it back; with a
    prompt naming another digit, guidance pulls it towards that one."""
    scheduler = check_scheduler(scheduler)
    steps, guidance, seed = check_steps(steps), check_guidance(guidance), check_seed(seed)
    strength = number(strength, "Strength", 0.01, 1.0)
    digit = number(digit, "Digit", 0, 9, integer=True)
    image, position = real_digit(digit, index)
    parsed = parse_prompt(prompt) if (prompt or "").strip() else Parsed(digit, f"digit {digit}")
    run = _run(parsed, scheduler, steps, guidance, seed, 1, device=device, init=image.unsqueeze(0),
               strength=strength)
    t0 = run.timesteps[0]
    ab = float(make_scheduler(scheduler, dm.scheduler_config()).alphas_cumprod[int(round(t0))])
    return Img2Img(image, run.start[0].clamp(-3, 3), run.images[0], t0, ab, run.steps, run.seconds,
                   dm.classify(run.images)[0], position)


def forward_noise(digit=3, index=0, timesteps=(0, 100, 250, 500, 750, 999), seed=DEFAULT_SEED):
    """x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps for one real digit at several t (one eps)."""
    import torch

    (DDPMScheduler,) = diffusers_classes("DDPMScheduler")
    ts = int_list(list(timesteps), "Timesteps", 0, dm.TRAIN_TIMESTEPS - 1, max_len=12)
    image, _ = real_digit(digit, index)
    eps = torch.randn(image.shape, generator=torch.Generator().manual_seed(check_seed(seed)))
    ab = DDPMScheduler(**dm.scheduler_config()).alphas_cumprod
    return [(t, float(ab[t]), ab[t].sqrt() * image + (1 - ab[t]).sqrt() * eps) for t in ts]


__all__ = ["BadSetting", "UnknownClass", "UnknownScheduler", "SCHEDULERS", "generate", "sample", "filmstrip",
           "grid", "guidance_sweep", "schedule_table", "img2img", "forward_noise", "parse_prompt"]
