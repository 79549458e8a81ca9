"""Diffusion demo's text-to-image path (diffusion_hub.py) end to end on a tiny random Stable Diffusion
pipeline saved to a local folder (what a downloaded sd-turbo is, minus the size): prompt encoding, guidance
against the empty prompt, every scheduler, VAE decoding and the latent view. No network."""
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "diffusion_demo"))

import diffusion_logic as logic  # noqa: E402


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    """A 16x16-pixel Stable Diffusion pipeline (UNet, VAE, CLIP text encoder and tokenizer, DDIM) on disk."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16,
                                        intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
                                        vocab_size=len(vocab), max_position_embeddings=16))
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                norm_num_groups=4, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=(4, 8), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=2, sample_size=16)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    folder = tmp_path_factory.mktemp("tiny_sd")
    pipe.save_pretrained(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield str(folder)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", list(logic.SCHEDULERS))
def test_text_to_image_through_the_lab_loop(tiny_sd, name):
    gen = logic.generate("a red cat", name, 4, 3.0, 5, 2, model=tiny_sd)
    assert gen.images.shape == (2, 3, 16, 16) and gen.parsed.label is None and "a red cat" in gen.parsed.understood
    assert gen.model == Path(tiny_sd).name and gen.seconds > 0 and gen.classified == []
    assert [f.step for f in gen.frames] == [1, 2, 3, 4]  # the latent view: decoded predicted x_0 along the way
    assert all(f.x0.shape == (1, 3, 16, 16) and torch.isfinite(f.x0).all() for f in gen.frames)
    again = logic.generate("a red cat", name, 4, 3.0, 5, 2, model=tiny_sd)
    assert torch.equal(gen.images, again.images)


def test_guidance_and_prompt_change_the_image(tiny_sd):
    base = logic.generate("a red cat", "DDIM", 3, 3.0, 1, 1, model=tiny_sd).images
    assert not torch.equal(base, logic.generate("a lighthouse", "DDIM", 3, 3.0, 1, 1, model=tiny_sd).images)
    assert not torch.equal(base, logic.generate("a red cat", "DDIM", 3, 7.5, 1, 1, model=tiny_sd).images)
    no_cfg = logic.generate("a red cat", "DDIM", 3, 0.5, 1, 1, model=tiny_sd)
    assert "no classifier-free guidance" in no_cfg.note


def test_hub_filmstrip_and_limits(tiny_sd):
    strip = logic.filmstrip("a lighthouse", "Euler", 5, 2, [1, 5], 1.0, model=tiny_sd)
    assert [f.step for f in strip.frames] == [1, 5] and strip.frames[0].x_t.shape == (1, 3, 16, 16)
    with pytest.raises(logic.BadSetting, match="Steps is 500"):
        logic.generate("a cat", "DDIM", 500, 1.0, 0, 1, model=tiny_sd)
    with pytest.raises(logic.BadSetting, match="Number of images is 8"):
        logic.generate("a cat", "DDIM", 2, 1.0, 0, 8, model=tiny_sd)
