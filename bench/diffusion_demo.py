"""Diffusion demo benchmark: the shipped digits UNet's quality and the lab loop's speed, side by side with a
plain diffusers loop in the same run.

    python bench/diffusion_demo.py                      # ~5 min on 2 idle CPU cores
    python bench/diffusion_demo.py --per-class 20 --repeats 1 --no-write   # a quick look

1. Quality: `per_class` digits of each class with the lab's defaults (DDIM, 50 steps, guidance 1.5), read by an
   SVC trained on real digits (assets/diffusion_digits was trained to make >= 97% of them the asked class);
   also at guidance 1 (no guidance) and 3, and for each scheduler at its own default step count.
2. Speed: 100 digits with a 50-step DDIM, the lab's loop (diffusion_sampling.denoise, with its per-image
   generators, recording and callbacks) against the loop a diffusers user writes by hand, interleaved,
   median of `repeats`; with guidance (digit and null class in one batch of 200) and without (batch 100).
Writes bench/results/diffusion_demo.md unless --no-write."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "diffusion_demo"))

import diffusion_logic as logic  # noqa: E402
import diffusion_model as dm  # noqa: E402
from diffusion_sampling import denoise, make_scheduler, unet_model  # noqa: E402

SCHEDULER_STEPS = {"DDPM": 200, "DDIM": 50, "DPM-Solver++": 20, "Euler": 50, "Euler ancestral": 50}


def accuracy(unet, scheduler: str, steps: int, guidance: float, per_class: int, seed0: int = 10_000) -> dict:
    model = unet_model(unet)
    per = {}
    started = time.perf_counter()
    for digit in range(dm.NUM_CLASSES):
        run = denoise(model, make_scheduler(scheduler, dm.scheduler_config()), labels=[digit] * per_class,
                      null_label=dm.NULL_CLASS, guidance=guidance, steps=steps, seed=seed0 + 1000 * digit,
                      shape=(1, dm.IMAGE_SIZE, dm.IMAGE_SIZE))
        per[digit] = sum(p == digit for p in dm.classify(run.images)) / per_class
    return {"per_class": per, "accuracy": sum(per.values()) / len(per), "seconds": time.perf_counter() - started}


def plain_loop(unet, labels, guidance: float, steps: int, seed: int):
    """A hand-written diffusers loop: one generator, DDIM from the model's config, CFG in one batch."""
    import torch
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(dm.scheduler_config())
    scheduler.set_timesteps(steps)
    n = len(labels)
    x = torch.randn((n, 1, dm.IMAGE_SIZE, dm.IMAGE_SIZE), generator=torch.Generator().manual_seed(seed))
    cond = torch.tensor(labels)
    null = torch.full((n,), dm.NULL_CLASS)
    started = time.perf_counter()
    with torch.inference_mode():
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t)
            if guidance == 1:
                eps = unet(x_in, t, class_labels=cond).sample
            else:
                eps_c, eps_u = unet(torch.cat([x_in, x_in]), t, class_labels=torch.cat([cond, null])).sample.chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            x = scheduler.step(eps, t, x).prev_sample
    return time.perf_counter() - started, x.clamp(-1, 1)


def lab_loop(unet, labels, guidance: float, steps: int, seed: int):
    run = denoise(unet_model(unet), make_scheduler("DDIM", dm.scheduler_config()), labels=labels,
                  null_label=dm.NULL_CLASS, guidance=guidance, steps=steps, seed=seed,
                  shape=(1, dm.IMAGE_SIZE, dm.IMAGE_SIZE), record=(1, steps // 2, steps),
                  on_step=lambda i, total: None)
    return run.seconds, run.images


def speed(unet, guidance: float, repeats: int) -> dict:
    labels = [i % 10 for i in range(100)]
    lab_loop(unet, labels, guidance, 3, 0)  # warm-up at the full batch (the first call of a shape is slower)
    plain_loop(unet, labels, guidance, 3, 0)
    wall = {lab_loop: [], plain_loop: []}
    cpu = {lab_loop: [], plain_loop: []}
    for r in range(repeats):  # alternate which goes first, so a change in the machine's load hits both
        for loop in ((lab_loop, plain_loop) if r % 2 == 0 else (plain_loop, lab_loop)):
            started = time.process_time()
            wall[loop].append(loop(unet, labels, guidance, 50, r)[0])
            cpu[loop].append(time.process_time() - started)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {"lab": med[lab_loop], "plain": med[plain_loop], "ratio": med[lab_loop] / med[plain_loop],
            "lab_cpu": med_cpu[lab_loop], "plain_cpu": med_cpu[plain_loop],
            "ratio_cpu": med_cpu[lab_loop] / med_cpu[plain_loop]}


def main(argv=None):
    import torch

    p = argparse.ArgumentParser(description="Diffusion demo benchmark")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-schedulers", action="store_true", help="skip the per-scheduler accuracy")
    p.add_argument("--scheduler-per-class", type=int, default=100, help="digits per class for the other schedulers")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--no-quality", action="store_true", help="only the speed table")
    p.add_argument("--guidances", type=lambda text: [float(v) for v in text.split(",")],
                   default=[logic.DEFAULT_GUIDANCE, 1.0, 2.0, 3.0], help="guidance values for the DDIM rows")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    unet = dm.load_unet()
    report = dm.training_report()
    _, real = dm.digit_classifier()
    lines = [f"torch threads: {args.threads}; classifier accuracy on real held-out digits: {real:.3f}", ""]

    def show(text=""):
        print(text, flush=True)
        lines.append(text)

    show("## Speed: 100 digits, 50-step DDIM (median of %d, interleaved)" % args.repeats)
    show("")
    show("Wall seconds move with the other jobs on a shared machine; CPU seconds of this process (one torch "
         "thread) do not, so the ratio is read from them.")
    show("")
    show("| guidance | lab loop wall (s) | plain loop wall (s) | lab CPU (s) | plain CPU (s) | lab / plain (CPU) |")
    show("|---|---|---|---|---|---|")
    for g in (logic.DEFAULT_GUIDANCE, 1.0):
        s = speed(unet, g, args.repeats)
        show(f"| {g:g}{' (default: digit + null in one batch of 200)' if g != 1 else ' (no guidance: batch of 100)'} "
             f"| {s['lab']:.2f} | {s['plain']:.2f} | {s['lab_cpu']:.2f} | {s['plain_cpu']:.2f} | {s['ratio_cpu']:.3f} |")
    show("")
    if args.no_quality:
        return
    show(f"## Quality: {args.per_class} digits per class read by the real-digit SVC")
    show("")
    rows = [(logic.DEFAULT_SCHEDULER, logic.DEFAULT_STEPS, g, "defaults" if g == logic.DEFAULT_GUIDANCE else
             ("no guidance" if g == 1 else ""), args.per_class) for g in args.guidances]
    if not args.no_schedulers:
        rows += [(name, steps, logic.DEFAULT_GUIDANCE, "", args.scheduler_per_class)
                 for name, steps in SCHEDULER_STEPS.items() if name != logic.DEFAULT_SCHEDULER]
    show("| scheduler | steps | guidance | per class | " + " | ".join(str(d) for d in range(10)) + " | all | seconds |")
    show("|---|---|---|---|" + "---|" * 12)
    for name, steps, g, note, per_class in rows:
        a = accuracy(unet, name, steps, g, per_class)
        show(f"| {name}{' (' + note + ')' if note else ''} | {steps} | {g:g} | {per_class} | "
             + " | ".join(f"{a['per_class'][d]:.2f}" for d in range(10))
             + f" | **{a['accuracy']:.3f}** | {a['seconds']:.1f} |")
    if not args.no_write:
        training = (f"Model: assets/diffusion_digits, {report.get('parameters', 0):,} parameters, "
                    f"{report.get('steps')} training steps in {report.get('minutes')} min "
                    f"(batch {report.get('batch')}, EMA {report.get('ema_decay')}); the training script's own "
                    f"evaluation: {report.get('evaluation', {}).get('accuracy')}.")
        text = ("# Diffusion demo: benchmark\n\n"
                f"Measured {time.strftime('%Y-%m-%d')} on the project's 2-core CPU machine (shared with other "
                "jobs: read the seconds as rough). Reproduce: `python bench/diffusion_demo.py`.\n\n"
                + training + "\n\n" + "\n".join(lines) + "\n")
        out = ROOT / "bench" / "results" / "diffusion_demo.md"
        marker = "\n## Training runs"  # a hand-kept record of the training variants tried: kept as is
        old = out.read_text() if out.is_file() else ""
        if marker in old:
            text += old[old.index(marker):]
        out.write_text(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
