"""Real text-to-image models (sd-turbo, SDXL-turbo, Stable Diffusion 1.5, or any diffusers Stable Diffusion
pipeline by Hub id or local folder) driven by the lab's own loop, with the same schedulers, steps, guidance
and seeds as the digits model, plus the latent-space view: the latents decoded by the VAE along the way.

Needs the Hub (or the model in the local Hugging Face cache) and, for the big ones, a GPU: offline it says
so at once (shared.models.resolve probes the Hub once, briefly) and never hangs."""
from __future__ import annotations

import json
from pathlib import Path

from shared.device import gpu, pick_device, pick_dtype
from shared.models import Choice, ModelUnavailable, resolve

import diffusion_logic as logic
from diffusion_sampling import Frame, denoise, diffusers_classes, make_scheduler

IMAGE_SIZE = 512  # at most: the UNet's own sample size x the VAE's factor when smaller
LATENT_FRAMES = 4  # decoded latents shown along the way in Generate


def choose(model: str) -> Choice:
    try:
        choice = resolve("diffusion", model, fallback=False)
    except ModelUnavailable as exc:
        raise ModelUnavailable(f"{exc} Real text-to-image models need the Hugging Face Hub (and a GPU for SDXL-turbo "
                               f"and SD 1.5); offline, use the {logic.EMBEDDED_NAME}.") from None
    if choice.spec.needs_gpu and not pick_device().startswith(("cuda", "mps")):
        raise ModelUnavailable(f"{choice.spec.name} needs a GPU: on this CPU one image takes minutes. Use sd-turbo "
                               f"(1-4 steps) or the {logic.EMBEDDED_NAME} here.")
    return choice


def _model_index(choice: Choice) -> dict:
    """The pipeline's model_index.json; ModelUnavailable when the repo is not a diffusers pipeline."""
    where = choice.spec.hub_id
    if choice.source == "local folder":
        path = Path(where) / "model_index.json"
        if not path.is_file():
            raise ModelUnavailable(f"{where} has no model_index.json: it is not a diffusers pipeline folder.")
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(where, "model_index.json", local_files_only=choice.source != "hub")
        except Exception as exc:  # noqa: BLE001  missing repo, missing file, gated: one clear line
            name = type(exc).__name__
            if "EntryNotFound" in name:
                raise ModelUnavailable(f"{where} is not a diffusion model (it has no model_index.json); pick a "
                                       "text-to-image pipeline such as stabilityai/sd-turbo.") from None
            if "RepositoryNotFound" in name:
                raise ModelUnavailable(f"{where} was not found on the Hub (check the spelling).") from None
            if "Gated" in name:
                raise ModelUnavailable(f"{where} is gated: accept its licence on the Hub and log in.") from None
            raise ModelUnavailable(f"Could not read {where}: {name}.") from None
    index = json.loads(Path(path).read_text())
    if not {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index):
        raise ModelUnavailable(f"{where} is a {index.get('_class_name', 'diffusers')} without a UNet, VAE and text "
                               "encoder; this lab drives Stable Diffusion-style text-to-image pipelines.")
    return index


def load(choice: Choice):
    """(pipeline, device): on the lab's device and dtype, from shared.loading's bounded model cache (a Hub
    pipeline's files downloaded first, with the size guard resolve() ran), shared by every session."""
    from shared.loading import cached_model, estimate_bytes, fetch, origin

    device = pick_device()
    dtype = pick_dtype(device)

    def build():
        (DiffusionPipeline,) = diffusers_classes("DiffusionPipeline")
        _model_index(choice)
        where, offline = (choice.spec.hub_id, True) if choice.source == "local folder" else fetch(choice, device)
        try:
            pipe = DiffusionPipeline.from_pretrained(where, dtype=dtype, local_files_only=offline)
        except Exception as exc:  # noqa: BLE001
            raise ModelUnavailable(f"Could not load {choice.spec.hub_id}: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)

    key = ("diffusion", choice.spec.hub_id, origin(choice), device)
    pipe, _ = cached_model(key, build, device, lambda: estimate_bytes(choice, device))
    return pipe, device


def _conditioning(pipe, prompt: str, guided: bool, device: str):
    """model(x, t, idx) for the loop: idx 1 = the prompt, 0 = the empty prompt (guidance's null branch)."""
    import torch

    if hasattr(pipe, "text_encoder_2"):  # SDXL: two text encoders, pooled embeddings and size ids
        embeds, neg, pooled, neg_pooled = pipe.encode_prompt(prompt, device=device, num_images_per_prompt=1,
                                                             do_classifier_free_guidance=True, negative_prompt="")
        table, pooled_table = torch.cat([neg, embeds]), torch.cat([neg_pooled, pooled])
        size = (image_size(pipe),) * 2
        time_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=embeds.dtype,
                                          text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
        time_ids = time_ids.to(device)

        def model(x, t, idx):
            return pipe.unet(x, t, encoder_hidden_states=table[idx],
                             added_cond_kwargs={"text_embeds": pooled_table[idx],
                                                "time_ids": time_ids.repeat(len(idx), 1)}).sample
    else:
        embeds, neg = pipe.encode_prompt(prompt, device, 1, True, negative_prompt="")
        table = torch.cat([neg, embeds])

        def model(x, t, idx):
            return pipe.unet(x, t, encoder_hidden_states=table[idx]).sample
    return model


def image_size(pipe) -> int:
    return min(IMAGE_SIZE, pipe.unet.config.sample_size * pipe.vae_scale_factor)


def _decode(pipe, latents):
    """VAE-decode latents (n, 4, h, w) to images (n, 3, H, W) in [-1, 1] on the CPU."""
    import torch

    vae = pipe.vae
    with torch.inference_mode():
        if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            vae = vae.to(torch.float32)
        images = vae.decode(latents.to(vae.device, vae.dtype) / vae.config.scaling_factor).sample
    return images.float().cpu().clamp(-1, 1)


def _check(model: str, prompt, scheduler, steps, guidance, seed, n):
    if not isinstance(prompt, str) or not prompt.strip():
        raise logic.BadSetting("Type a prompt for the text-to-image model (e.g. 'a lighthouse at dusk, oil painting').")
    if len(prompt) > logic.MAX_PROMPT_CHARS:
        raise logic.BadSetting(f"The prompt is {len(prompt)} characters; at most {logic.MAX_PROMPT_CHARS}.")
    return (logic.check_scheduler(scheduler), logic.check_steps(steps, logic.HUB_MAX_STEPS),
            logic.check_guidance(guidance), logic.check_seed(seed), logic.check_n(n, logic.HUB_MAX_N))


def _sample(model_name, prompt, scheduler, steps, guidance, seed, n, record, on_step):
    scheduler, steps, guidance, seed, n = _check(model_name, prompt, scheduler, steps, guidance, seed, n)
    choice = choose(model_name)
    pipe, device = load(choice)
    guided = guidance > 1  # diffusers' convention for text models: guidance <= 1 means no guidance
    model = _conditioning(pipe, prompt, guided, device)
    latent = image_size(pipe) // pipe.vae_scale_factor
    run = denoise(model, make_scheduler(scheduler, pipe.scheduler.config), labels=[1] * n,
                  null_label=0 if guided else None, guidance=guidance if guided else 1.0, steps=steps, seed=seed,
                  shape=(pipe.unet.config.in_channels, latent, latent), device=device, dtype=pipe.unet.dtype,
                  record=record, on_step=on_step, scheduler_label=scheduler)
    images = _decode(pipe, run.latents)
    frames = [Frame(f.step, f.timestep, _decode(pipe, f.x_t[:1]), _decode(pipe, f.x0[:1])) for f in run.frames]
    note = (f"Classifier-free guidance {guidance:g} against the empty prompt." if guided
            else "Guidance <= 1: the prompt alone, no classifier-free guidance (as turbo models expect).")
    gen = logic.Generation(choice.spec.name, logic.Parsed(None, f"the text prompt '{prompt.strip()[:80]}'"),
                           scheduler, steps, guidance, seed, images, run.seconds, [], note, frames)
    return gen


@gpu(duration=120)
def generate(model, prompt, scheduler, steps, guidance, seed, n, on_step=None):
    steps_checked = logic.check_steps(steps, logic.HUB_MAX_STEPS)
    record = tuple(logic.default_frames(steps_checked, LATENT_FRAMES))
    return _sample(model, prompt, scheduler, steps, guidance, seed, n, record, on_step)


@gpu(duration=120)
def filmstrip(model, prompt, scheduler, steps, seed, at_steps, guidance, on_step=None):
    steps_checked = logic.check_steps(steps, logic.HUB_MAX_STEPS)
    wanted = logic.check_frames(at_steps, steps_checked)
    gen = _sample(model, prompt, scheduler, steps, guidance, seed, 1, tuple(wanted), on_step)
    return logic.Filmstrip(gen, gen.frames)
