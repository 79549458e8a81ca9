"""Train the diffusion demo lab's offline model: a 1.16M-parameter class-conditional UNet2DModel on the
1,797 handwritten digits scikit-learn ships (8x8, upscaled to 16x16), written to assets/diffusion_digits/.

    python scripts/train_diffusion_digits.py                 # ~15-20 min on 2 CPU cores
    python scripts/train_diffusion_digits.py --steps 200 --out /tmp/digits --eval-per-class 10   # a smoke run
    python scripts/train_diffusion_digits.py --eval-only     # re-measure the shipped weights

What it does: DDPM training (linear noise schedule, epsilon prediction, MSE) with labels dropped to an
extra "null" class 10% of the time, so one network learns p(x | digit) and p(x) and the lab can do
classifier-free guidance; AdamW with warm-up and cosine decay; an exponential moving average (EMA) of
the weights, which is what ships. Then it judges the EMA model the way bench/diffusion_demo.py does:
100 digits per class with the lab's default sampler, classified by an SVC trained on real digits.
The folder (config.json, fp32 safetensors, training_report.json, SOURCE.md) is replaced atomically.
Fixed seed and torch on 1 thread, so a rerun on the same machine gives the same weights."""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "spaces" / "diffusion_demo"))

import diffusion_logic as logic  # noqa: E402
import diffusion_model as dm  # noqa: E402
from diffusion_sampling import denoise, make_scheduler, unet_model  # noqa: E402
from shared.paths import cache_dir  # noqa: E402
from shared.store import atomic_folder, atomic_write  # noqa: E402

SOURCE = """# assets/diffusion_digits

A 1.16M-parameter class-conditional `diffusers.UNet2DModel` (16x16, one channel, 10 digit classes plus a
"null" class for classifier-free guidance), EMA weights in fp32 safetensors, trained from scratch by
`scripts/train_diffusion_digits.py` (see `training_report.json` for steps, minutes, loss and the
generated digits' accuracy).

Data: the 1,797 8x8 handwritten digits that ship with scikit-learn (`sklearn.datasets.load_digits`,
a copy of the UCI ML "Optical Recognition of Handwritten Digits" test set), distributed under
scikit-learn's BSD-3-Clause licence. The trained weights are released under the project's licence.
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--label-dropout", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared 2-core machine, 2 threads ran 7x slower than 1)")
    p.add_argument("--checkpoint-every", type=int, default=250,
                   help="also write the EMA weights so far to ~/.cache/genai-lab/checkpoints/diffusion_digits/ "
                        "every N steps (0: never)")
    p.add_argument("--seed", type=int, default=dm.SEED)
    p.add_argument("--out", type=Path, default=dm.ASSET)
    p.add_argument("--eval-per-class", type=int, default=100)
    p.add_argument("--eval-only", action="store_true", help="re-measure the weights in --out, rewrite the report")
    return p.parse_args(argv)


def train(args):
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    torch.manual_seed(args.seed)
    images, labels = dm.load_digits_16()
    unet = dm.build_unet(args.seed).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    params = sum(p.numel() for p in unet.parameters())
    noise_schedule = DDPMScheduler(**dm.scheduler_config())
    alphas = noise_schedule.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)

    def lr_at(step):
        if step < args.warmup:
            return (step + 1) / args.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - args.warmup) / max(1, args.steps - args.warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(args.seed)
    losses, started = [], time.time()
    print(f"training {params:,} parameters for {args.steps} steps, batch {args.batch}", flush=True)
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(images), (args.batch,), generator=gen)
        x0, y = images[idx], labels[idx].clone()
        y[torch.rand(args.batch, generator=gen) < args.label_dropout] = dm.NULL_CLASS
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, dm.TRAIN_TIMESTEPS, (args.batch,), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(unet(xt, t, class_labels=y).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.steps:
            with atomic_folder(cache_dir("checkpoints", "diffusion_digits")) as folder:
                dm.save_unet(ema, folder)
                (folder / "step.txt").write_text(str(step))
        if step % 50 == 0 or step == args.steps:
            recent = sum(losses[-50:]) / len(losses[-50:])
            rate = step / (time.time() - started)
            print(f"step {step}/{args.steps} loss {recent:.4f} {rate:.2f} steps/s "
                  f"eta {(args.steps - step) / rate / 60:.1f} min", flush=True)
    minutes = (time.time() - started) / 60
    curve = [{"step": s, "loss": round(sum(losses[max(0, s - 50):s]) / len(losses[max(0, s - 50):s]), 4)}
             for s in range(50, args.steps + 1, 50)]
    return ema, {"parameters": params, "steps": args.steps, "batch": args.batch, "lr": args.lr,
                 "warmup": args.warmup, "ema_decay": args.ema_decay, "label_dropout": args.label_dropout,
                 "seed": args.seed, "threads": args.threads, "minutes": round(minutes, 2),
                 "steps_per_second": round(args.steps / (minutes * 60), 3),
                 "loss_first_50": curve[0]["loss"] if curve else None,
                 "loss_last_50": curve[-1]["loss"] if curve else None,
                 "loss_curve_every_50": curve}


def evaluate(unet, per_class: int) -> dict:
    """Accuracy of the real-digit classifier on `per_class` generated digits per class, lab defaults."""
    import torch

    svc, real_accuracy = dm.digit_classifier()
    model = unet_model(unet)
    per, started = {}, time.time()
    for digit in range(dm.NUM_CLASSES):
        scheduler = make_scheduler(logic.DEFAULT_SCHEDULER, dm.scheduler_config())
        run = denoise(model, scheduler, labels=[digit] * per_class, null_label=dm.NULL_CLASS,
                      guidance=logic.DEFAULT_GUIDANCE, steps=logic.DEFAULT_STEPS, seed=1000 * digit,
                      shape=(1, dm.IMAGE_SIZE, dm.IMAGE_SIZE))
        predicted = dm.classify(run.images)
        per[str(digit)] = round(sum(p == digit for p in predicted) / per_class, 3)
        print(f"  digit {digit}: {per[str(digit)]:.2f}", flush=True)
    total = round(sum(per.values()) / len(per), 4)
    return {"accuracy": total, "per_class": per, "per_class_n": per_class,
            "scheduler": logic.DEFAULT_SCHEDULER, "steps": logic.DEFAULT_STEPS, "guidance": logic.DEFAULT_GUIDANCE,
            "classifier": "sklearn SVC(gamma=0.001, C=10) on 75% of the real 8x8 digits",
            "classifier_accuracy_on_real_test_digits": round(real_accuracy, 4),
            "minutes": round((time.time() - started) / 60, 2), "torch_threads": torch.get_num_threads()}


def main(argv=None):
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.eval_only:
        unet = dm.load_unet(args.out)
        report = dm.training_report(args.out)
        report["evaluation"] = evaluate(unet, args.eval_per_class)
        atomic_write(args.out / dm.REPORT_FILE, json.dumps(report, indent=1))
        print(json.dumps(report["evaluation"], indent=1))
        return
    ema, report = train(args)
    given = argv if argv is not None else sys.argv[1:]
    report["command"] = "python scripts/train_diffusion_digits.py " + " ".join(given)
    with atomic_folder(args.out) as folder:  # the weights first: an evaluation that fails loses nothing
        dm.save_unet(ema, folder)
        (folder / dm.REPORT_FILE).write_text(json.dumps(report, indent=1))
        (folder / "SOURCE.md").write_text(SOURCE)
    args.out.chmod(0o755)  # the staging folder was private; the asset is for everyone
    for path in args.out.iterdir():
        path.chmod(0o644)
    print("evaluating the EMA weights ...", flush=True)
    report["evaluation"] = evaluate(ema, args.eval_per_class)
    atomic_write(args.out / dm.REPORT_FILE, json.dumps(report, indent=1))
    print(json.dumps(report["evaluation"], indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
