"""The lab's sampling loop: any diffusers scheduler, classifier-free guidance, and a record of the
noisy image x_t and the model's predicted clean image x_0 at chosen steps.

One loop serves every tab (Generate, Filmstrip, Grid, Guidance sweep, img2img), the API, the bench and
the training script's evaluation, so what the lab shows is what it measures. It is written the way a
diffusers pipeline drives a scheduler:

    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)             # Euler-type schedulers rescale here
        eps = unet(x_in, t, class_labels).sample              # conditional and null class in one batch
        eps = eps_null + guidance * (eps_class - eps_null)    # classifier-free guidance
        x = scheduler.step(eps, t, x, generator=...).prev_sample

No gradio here; torch and diffusers are imported inside functions."""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from shared.errors import UserError


class UnknownScheduler(UserError):
    pass


_import_lock = threading.Lock()


def diffusers_classes(*names: str) -> tuple:
    """diffusers classes by name. diffusers imports its classes lazily, and two threads resolving two names
    at once (a page load drawing the schedule while a job loads the UNet) can fail with an ImportError;
    the lock makes the first resolution of each name one at a time."""
    with _import_lock:
        import diffusers

        return tuple(getattr(diffusers, name) for name in names)


# name -> (diffusers class, extra config). Each is built with X.from_config(training config, **extra).
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "DDPM": ("DDPMScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "DPM-Solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler ancestral": ("EulerAncestralDiscreteScheduler", {}),
}
SCHEDULER_NOTES = {
    "DDPM": "the original ancestral sampler: adds fresh noise at every step; needs many steps",
    "DDIM": "deterministic; skips steps along the same noise schedule; good at 20-50 steps",
    "DPM-Solver++": "a second-order ODE solver; good images in 10-25 steps",
    "Euler": "Karras-style Euler ODE step in sigma space; uses scale_model_input",
    "Euler ancestral": "Euler plus fresh noise each step: varies more with steps, never settles",
}
_ALIASES = {"ddpm": "DDPM", "ddim": "DDIM", "dpm-solver++": "DPM-Solver++", "dpmsolver++": "DPM-Solver++",
            "dpm++": "DPM-Solver++", "dpm-solver": "DPM-Solver++", "dpmsolver": "DPM-Solver++",
            "dpm solver++": "DPM-Solver++", "dpm++ 2m": "DPM-Solver++", "euler": "Euler",
            "euler ancestral": "Euler ancestral", "euler a": "Euler ancestral", "euler_a": "Euler ancestral",
            "euler-ancestral": "Euler ancestral", "euler_ancestral": "Euler ancestral"}


def scheduler_name(name: str | None, default: str) -> str:
    """The canonical name for `name` ('' -> the default); UnknownScheduler lists the accepted ones."""
    if name is None or not str(name).strip():
        return default
    if not isinstance(name, str):
        raise UnknownScheduler(f"The scheduler must be a name, one of: {', '.join(SCHEDULERS)}.")
    found = _ALIASES.get(name.strip().lower())
    if found is None:
        raise UnknownScheduler(f"Unknown scheduler '{name.strip()[:40]}'. Choose one of: {', '.join(SCHEDULERS)}.")
    return found


def make_scheduler(name: str, base_config: dict):
    """A fresh scheduler of that name built from the model's training schedule (`X.from_config`)."""
    cls_name, extra = SCHEDULERS[name]
    (cls,) = diffusers_classes(cls_name)
    return cls.from_config(dict(base_config), **extra)


@dataclass
class Frame:
    """One recorded step: its 1-based index, the scheduler's timestep, x_t (as the UNet saw it, on the
    variance-preserving scale) and the predicted clean image x_0, both (n, C, H, W) on the CPU."""
    step: int
    timestep: float
    x_t: object
    x0: object


@dataclass
class Run:
    images: object  # (n, C, H, W) float on the CPU, the final x_0 clamped to [-1, 1]
    seconds: float
    steps: int  # denoising steps actually run
    scheduler: str
    frames: list[Frame] = field(default_factory=list)
    start: object = None  # img2img: the noised input the loop started from (variance-preserving scale)
    timesteps: list = field(default_factory=list)  # the scheduler timesteps the loop ran through
    latents: object = None  # the final x_0 unclamped (a latent model's VAE decodes these)


def generators(seed: int, n: int) -> list:
    """One CPU generator per image: image i depends on seed + i only (not on n)."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(seed) + i) for i in range(n)]


def initial_noise(seed: int, n: int, shape: tuple) -> object:
    import torch

    return torch.stack([torch.randn(shape, generator=g) for g in generators(seed, n)])


def denoise(model: Callable, scheduler, *, labels, null_label, guidance: float, steps: int, seed: int,
            shape: tuple, device: str = "cpu", dtype=None, record: tuple[int, ...] = (),
            on_step: Callable[[int, int], None] | None = None, init=None, strength: float = 1.0,
            scheduler_label: str = "") -> Run:
    """Run the reverse process for len(labels) images.

    model(x, t, class_labels) -> noise prediction (a UNet2DModel wrapped, or a test stub).
    labels: class ids (a list of ints; None for unconditional models). guidance 0 = the null class
    only (unconditional), 1 = the class only, >1 pushes away from the null prediction.
    record: 1-based step indices whose x_t and predicted x_0 are kept. on_step(i, total) is called after
    each step (raise from it to stop). init: clean images (n, C, H, W) in [-1, 1] to start from instead of
    pure noise (img2img): they are noised to `strength` of the schedule, then denoised back."""
    import torch

    n = len(labels)
    dtype = dtype or torch.float32
    gens = generators(seed, n)
    noise = torch.stack([torch.randn(shape, generator=g) for g in gens])
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    start_image = None
    if init is None:
        x = noise * scheduler.init_noise_sigma
    else:
        order = getattr(scheduler, "order", 1)
        keep = min(max(int(round(steps * strength)), 1), steps)
        begin = (steps - keep) * order
        timesteps = timesteps[begin:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin)
        x = scheduler.add_noise(init.float().cpu(), noise, timesteps[:1].repeat(n))
        ab = float(scheduler.alphas_cumprod[int(round(float(timesteps[0])))])
        start_image = math.sqrt(ab) * init.float().cpu() + math.sqrt(1 - ab) * noise
    x = x.to(device)
    conditional = labels is not None and labels[0] is not None
    use_cond = conditional and guidance != 0
    use_null = null_label is not None and (not conditional or guidance != 1)
    cond = torch.tensor(labels if conditional else [0] * n, device=device)
    null = torch.full((n,), null_label if null_label is not None else 0, device=device)
    alphas = scheduler.alphas_cumprod
    frames, wanted = [], set(record)
    total = len(timesteps)
    started = time.perf_counter()
    with torch.inference_mode():
        for i, t in enumerate(timesteps, start=1):
            x_in = scheduler.scale_model_input(x, t)
            if use_cond and use_null:
                eps_c, eps_u = model(torch.cat([x_in, x_in]).to(dtype), t, torch.cat([cond, null])).float().chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            elif use_cond:
                eps = model(x_in.to(dtype), t, cond).float()
            else:
                eps = model(x_in.to(dtype), t, null if null_label is not None else None).float()
            out = scheduler.step(eps, t, x, generator=gens if n > 1 else gens[0])
            if i in wanted:
                x0 = getattr(out, "pred_original_sample", None)
                if x0 is None:  # DPM-Solver++ does not return it: x_0 = (x_t - sqrt(1-a) eps) / sqrt(a)
                    a = float(alphas[int(round(float(t)))])
                    x0 = (x_in.float() - math.sqrt(1 - a) * eps) / math.sqrt(a)
                frames.append(Frame(i, float(t), x_in.float().cpu().clone(), x0.float().cpu().clone()))
            x = out.prev_sample
            if on_step is not None:
                on_step(i, total)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    final = x.float().cpu()
    return Run(images=final.clamp(-1, 1), latents=final, seconds=seconds, steps=total,
               scheduler=scheduler_label or type(scheduler).__name__, frames=frames, start=start_image,
               timesteps=[float(t) for t in timesteps])


def unet_model(unet) -> Callable:
    """Wrap a diffusers UNet2DModel as model(x, t, class_labels) -> noise prediction."""
    def call(x, t, class_labels):
        return unet(x, t, class_labels=class_labels).sample
    return call
