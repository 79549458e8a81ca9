"""How the diffusion lab's results look: images (PIL for the UI, PNG data URIs for the API), captions,
status lines and tables. No gradio here."""
from __future__ import annotations

import base64
import html
import io

UI_SCALE = 8  # a 16x16 digit is shown at 128x128, nearest neighbour (the pixels stay visible)


def to_pil(image, scale: int = 1, lo: float = -1.0, hi: float = 1.0):
    """(C, H, W) tensor with values in [lo, hi] -> PIL image (grey for one channel, RGB for three), scaled
    `scale` times with nearest-neighbour so every pixel stays a crisp square."""
    import numpy as np
    from PIL import Image

    arr = image.detach().float().cpu().clamp(lo, hi)
    arr = ((arr - lo) / (hi - lo) * 255).round().to(dtype=__import__("torch").uint8).numpy()
    if arr.shape[0] == 1:
        pil = Image.fromarray(arr[0], mode="L")
    else:
        pil = Image.fromarray(np.transpose(arr[:3], (1, 2, 0)), mode="RGB")
    if scale != 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    return pil


def ui_image(image, scale: int = UI_SCALE):
    """What the UI shows for one image: digits upscaled, big images as they are."""
    return to_pil(image, scale if image.shape[-1] <= 64 else 1)


def data_uri(image) -> str:
    """One image (C, H, W) in [-1, 1] as a PNG data URI at its own resolution (16x16 for the digits)."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def status_markdown(gen, what: str = "Generated") -> str:
    """The line under the images: model, class understood, seeds, settings, time, classifier reading."""
    seeds = f"seed {gen.seed}" if len(gen.images) == 1 else f"seeds {gen.seed}-{gen.seed + len(gen.images) - 1}"
    lines = [f"{what} **{len(gen.images)}** image{'s' if len(gen.images) != 1 else ''} in **{gen.seconds:.2f} s** "
             f"· {gen.model} · {gen.scheduler}, {gen.steps} steps, guidance {gen.guidance:g} · {seeds}",
             f"Understood: **{gen.parsed.understood}**. {gen.note}"]
    if gen.classified:
        if gen.parsed.label is not None:
            hits = sum(c == gen.parsed.label for c in gen.classified)
            lines.append(f"A classifier trained on real digits reads **{hits}/{len(gen.classified)}** as "
                         f"{gen.parsed.label} (it reads: {' '.join(map(str, gen.classified))}).")
        else:
            lines.append(f"A classifier trained on real digits reads them as: {' '.join(map(str, gen.classified))}.")
    return "\n\n".join(lines)


def gallery_items(gen) -> list:
    """(image, caption) pairs for a gr.Gallery: every image with its own seed."""
    items = []
    for i, image in enumerate(gen.images):
        reading = f" · reads as {gen.classified[i]}" if gen.classified else ""
        items.append((ui_image(image), f"seed {gen.seed + i}{reading}"))
    return items


def filmstrip_items(strip, which: str) -> list:
    """(image, caption) pairs for one row of the filmstrip: which = 'x_t' or 'x0'."""
    items = []
    for frame in strip.frames:
        image = frame.x_t[0] if which == "x_t" else frame.x0[0]
        items.append((ui_image(image), f"step {frame.step}/{strip.generation.steps} · t={frame.timestep:.0f}"))
    return items


def latent_items(frames, steps: int) -> list:
    """A latent model's decoded predicted x_0 at the recorded steps."""
    return [(ui_image(f.x0[0]), f"step {f.step}/{steps} · t={f.timestep:.0f}") for f in frames]


def grid_items(cells) -> list:
    return [(ui_image(c.image), f"{c.scheduler} · {c.steps} steps · {c.seconds:.2f} s"
             + (f" · reads {c.classified}" if c.classified is not None else "")) for c in cells]


def grid_table(cells):
    import pandas as pd

    return pd.DataFrame([{"scheduler": c.scheduler, "steps": c.steps, "seconds": round(c.seconds, 3),
                          "ms per step": round(1000 * c.seconds / c.steps, 1), "classifier reads": c.classified}
                         for c in cells])


def sweep_items(cells) -> list:
    return [(ui_image(c.image), f"guidance {c.guidance:g} · reads {c.classified}") for c in cells]


def img2img_items(result) -> list:
    return [(ui_image(result.original), "real digit x_0"),
            (ui_image(result.noised), f"noised to t={result.t_start:.0f} (alpha-bar {result.alpha_bar:.3f})"),
            (ui_image(result.result), f"denoised back in {result.steps_run} steps · reads {result.classified}")]


def forward_items(rows) -> list:
    return [(ui_image(x), f"t={t} · alpha-bar {ab:.4f}") for t, ab, x in rows]


def schedule_note(wide, scheduler: str, timesteps: list[float]) -> str:
    """A few numbers of the schedule, and the timesteps the chosen sampler visits."""
    def at(t):
        row = wide.iloc[int(t)]
        return f"t={int(t)}: beta {row.beta_t:.5f}, alpha-bar {row.alpha_bar_t:.4f}, SNR {row.snr:.3g}"

    shown = ", ".join(f"{t:.0f}" for t in timesteps[:12]) + (" ..." if len(timesteps) > 12 else "")
    return ("Training schedule: 1000 steps, betas rising linearly from 0.0001 to 0.02. "
            f"{at(0)} · {at(250)} · {at(500)} · {at(999)}.\n\n"
            f"**{scheduler}** with {len(timesteps)} steps visits t = {html.escape(shown)}.")


def labelled_grid(images, rows: list[str], cols: list[str], captions: list[str] | None = None, cell: int = 96):
    """One PNG-ready PIL image: `images` (row-major, len(rows) x len(cols)) with row labels on the left,
    column labels on top and a small caption under each cell (e.g. its time): an X/Y plot."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=11)
    left = 12 + max(int(font.getlength(r)) for r in rows)
    top, gap, under = 24, 6, 16 if captions else 0
    width = left + len(cols) * (cell + gap) + gap
    height = top + len(rows) * (cell + under + gap) + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(cols):
        x = left + gap + j * (cell + gap)
        draw.text((x + cell / 2, top / 2), label, fill="#1e293b", font=font, anchor="mm")
    for i, label in enumerate(rows):
        y = top + i * (cell + under + gap)
        draw.text((left - 6, y + cell / 2), label, fill="#1e293b", font=font, anchor="rm")
        for j in range(len(cols)):
            k = i * len(cols) + j
            if k >= len(images):
                continue
            x = left + gap + j * (cell + gap)
            tile = to_pil(images[k])
            tile = tile.resize((cell, cell), Image.NEAREST if tile.width <= 64 else Image.LANCZOS).convert("RGB")
            canvas.paste(tile, (x, y))
            if captions:
                draw.text((x + cell / 2, y + cell + under / 2 + 1), captions[k], fill="#475569", font=small,
                          anchor="mm")
    return canvas


def grid_image(cells):
    """The scheduler x steps X/Y plot: rows = schedulers, columns = step counts, each cell with its time."""
    rows = list(dict.fromkeys(c.scheduler for c in cells))
    cols = sorted({c.steps for c in cells})
    by = {(c.scheduler, c.steps): c for c in cells}
    ordered = [by[r, s] for r in rows for s in cols]
    return labelled_grid([c.image for c in ordered], rows, [f"{s} steps" for s in cols],
                         [f"{c.seconds:.2f} s · reads {c.classified}" for c in ordered])


def sweep_image(cells, seed: int):
    """The guidance sweep: rows = guidance values, columns = seeds."""
    values = list(dict.fromkeys(c.guidance for c in cells))
    n = len(cells) // len(values)
    return labelled_grid([c.image for c in cells], [f"guidance {g:g}" for g in values],
                         [f"seed {seed + i}" for i in range(n)], [f"reads {c.classified}" for c in cells])
