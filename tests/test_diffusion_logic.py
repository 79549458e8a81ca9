"""Diffusion demo: the logic with a tiny random UNet (prompts, settings, schedulers, the loop against a
plain diffusers loop, filmstrip, grid, sweep, schedule, img2img, the Hub path offline), and one check of
the shipped digits model."""
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "diffusion_demo"))

import diffusion_logic as logic  # noqa: E402
import diffusion_model as dm  # noqa: E402
import diffusion_sampling as ds  # noqa: E402
from shared.models import ModelUnavailable  # noqa: E402

TINY = dict(block_out_channels=(8, 16, 16), norm_num_groups=8, attention_head_dim=8)


def make_tiny_model(folder: Path) -> Path:
    """A randomly initialised 75k-parameter UNet with the shipped model's shape, saved like the asset."""
    dm.save_unet(dm.build_unet(seed=1, **TINY), folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def tiny_model(tmp_path_factory):
    folder = make_tiny_model(tmp_path_factory.mktemp("tiny_digits_unet"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only waits, and on a busy machine it spins
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENAI_LAB_DIFFUSION_MODEL", str(folder))
        mp.setenv("HF_HUB_OFFLINE", "1")  # the Hub path must say it is offline, never try the network
        yield folder
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- prompts

@pytest.mark.parametrize("prompt,label", [
    ("a handwritten 7", 7), ("seven", 7), ("digit 7", 7), ("7", 7), ("Draw me a ZERO, please", 0),
    ("  nine!  ", 9), ("the number 3.", 3), ("an oh", 0), ("digit 7 (seven)", 7)])
def test_prompt_names_a_digit(prompt, label):
    parsed = logic.parse_prompt(prompt)
    assert parsed.label == label and str(label) in parsed.understood


@pytest.mark.parametrize("prompt", ["", "   ", None, "any digit", "random"])
def test_empty_prompt_is_unconditional_and_says_so(prompt):
    parsed = logic.parse_prompt(prompt)
    assert parsed.unconditional and "unconditional" in parsed.understood


@pytest.mark.parametrize("prompt,words", [
    ("a cat", ["names no digit", "0 (zero)", "9 (nine)"]), ("12", ["not a single digit"]),
    ("3 or 4", ["several digits", "3, 4"]), ("seven or eight", ["several"]), ("x" * 600, ["at most 500"])])
def test_prompt_without_one_known_class_is_refused_clearly(prompt, words):
    with pytest.raises(logic.UserError) as info:
        logic.parse_prompt(prompt)
    for word in words:
        assert word in str(info.value)


def test_prompt_of_the_wrong_type():
    with pytest.raises(logic.BadSetting, match="text"):
        logic.parse_prompt(7)


# ---------------------------------------------------------------- settings

@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0), "Steps is 0"), (dict(steps=10_000), "Steps is 10,000"), (dict(steps=-5), "Steps is -5"),
    (dict(steps=2.5), "whole number"), (dict(steps="many"), "not 'many'"), (dict(steps=True), "Steps must be"),
    (dict(steps=None), "Steps must be"), (dict(guidance=float("nan")), "not nan"),
    (dict(guidance=float("inf")), "not inf"), (dict(guidance=1e12), "Guidance is"), (dict(guidance=-1), "Guidance is"),
    (dict(guidance="nan"), "not nan"), (dict(scheduler="PLMS"), "Unknown scheduler 'PLMS'.*DDPM, DDIM"),
    (dict(scheduler=3), "must be a name"), (dict(n=10_000), "Number of images is 10,000"), (dict(n=0), "Number"),
    (dict(seed=-1), "Seed is -1"), (dict(seed=2**40), "Seed is 1,099,511,627,776"), (dict(seed=1e300), "Seed is"),
    (dict(n=64, steps=1000), "image-steps")])
def test_bad_settings_are_refused_before_any_work(kwargs, match):
    with pytest.raises(logic.UserError, match=match):
        logic.generate(**{"prompt": "7", **kwargs})


def test_scheduler_names_and_aliases():
    assert logic.check_scheduler("") == logic.check_scheduler(None) == logic.DEFAULT_SCHEDULER
    assert logic.check_scheduler("euler a") == "Euler ancestral"
    assert logic.check_scheduler(" dpm++ ") == "DPM-Solver++"
    assert logic.check_scheduler("DDPM") == "DDPM"
    expected = {"DDPM": "DDPMScheduler", "DDIM": "DDIMScheduler", "DPM-Solver++": "DPMSolverMultistepScheduler",
                "Euler": "EulerDiscreteScheduler", "Euler ancestral": "EulerAncestralDiscreteScheduler"}
    for name, cls in expected.items():
        sched = ds.make_scheduler(name, dm.scheduler_config())
        assert type(sched).__name__ == cls
        assert sched.config.num_train_timesteps == 1000 and sched.config.beta_schedule == "linear"


# ---------------------------------------------------------------- the loop

def plain_diffusers_loop(unet, scheduler, label, guidance, steps, seed):
    """What a diffusers user writes by hand (the reference the lab's loop must match)."""
    scheduler.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1, 1, 16, 16), generator=gen) * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t)
            cond = unet(x_in, t, class_labels=torch.tensor([label])).sample
            null = unet(x_in, t, class_labels=torch.tensor([dm.NULL_CLASS])).sample
            x = scheduler.step(null + guidance * (cond - null), t, x).prev_sample
    return x.clamp(-1, 1)


@pytest.mark.parametrize("name", ["DDIM", "DPM-Solver++", "Euler"])
def test_the_lab_loop_matches_a_plain_diffusers_loop(name):
    unet = dm.load_unet()
    lab = logic.generate("3", name, 8, 2.5, 11, 1).images
    plain = plain_diffusers_loop(unet, ds.make_scheduler(name, dm.scheduler_config()), 3, 2.5, 8, 11)
    assert torch.allclose(lab, plain, atol=2e-3)  # one batch of digit + null vs two calls: float rounding only
    other = plain_diffusers_loop(unet, ds.make_scheduler(name, dm.scheduler_config()), 3, 1.5, 8, 11)
    assert not torch.allclose(lab, other, atol=2e-3)


def test_euler_gets_scaled_model_inputs():
    """Euler starts at sigma ~157: without scale_model_input the UNet would see inputs ~157x too large."""
    seen = []

    def spy(x, t, labels):
        seen.append(float(x.abs().max()))
        return x.clone()  # "all of it is noise"

    sched = ds.make_scheduler("Euler", dm.scheduler_config())
    ds.denoise(spy, sched, labels=[1], null_label=10, guidance=2.0, steps=5, seed=0, shape=(1, 16, 16))
    assert float(sched.init_noise_sigma) > 100 and max(seen) < 6, seen


@pytest.mark.parametrize("name", list(logic.SCHEDULERS))
def test_same_seed_same_images_other_seed_other_images(name):
    a = logic.generate("5", name, 6, 2.0, 42, 2)
    b = logic.generate("5", name, 6, 2.0, 42, 2)
    c = logic.generate("5", name, 6, 2.0, 43, 2)
    assert torch.equal(a.images, b.images)
    assert not torch.allclose(a.images, c.images)
    assert a.seeds == [42, 43] and a.images.shape == (2, 1, 16, 16)
    assert a.images.min() >= -1 and a.images.max() <= 1 and a.seconds > 0


def test_image_i_depends_on_seed_plus_i_only():
    pair = logic.generate("2", "Euler ancestral", 5, 2.0, 7, 2).images
    alone = logic.generate("2", "Euler ancestral", 5, 2.0, 8, 1).images
    assert torch.allclose(pair[1], alone[0], atol=1e-5)


def test_guidance_zero_is_the_unconditional_model_and_one_is_the_class_alone():
    zero = logic.generate("4", "DDIM", 5, 0.0, 3, 1)
    uncond = logic.generate("", "DDIM", 5, 2.0, 3, 1)
    assert torch.equal(zero.images, uncond.images)
    assert "unconditional" in zero.note.lower() and "no effect" in uncond.note
    calls = []

    def spy(x, t, labels):
        calls.append(labels.tolist())
        return torch.zeros_like(x)

    ds.denoise(spy, ds.make_scheduler("DDIM", dm.scheduler_config()), labels=[4], null_label=10, guidance=1.0,
               steps=2, seed=0, shape=(1, 16, 16))
    ds.denoise(spy, ds.make_scheduler("DDIM", dm.scheduler_config()), labels=[4], null_label=10, guidance=3.0,
               steps=1, seed=0, shape=(1, 16, 16))
    assert calls == [[4], [4], [4, 10]]  # guidance 1: one pass; otherwise digit and null in one batch


def test_a_stop_request_ends_the_loop():
    class Stop(Exception):
        pass

    done = []

    def on_step(i, total):
        done.append(i)
        if i == 3:
            raise Stop

    with pytest.raises(Stop):
        logic.generate("1", "DDIM", 20, 2.0, 0, 1, on_step=on_step)
    assert done == [1, 2, 3]


def test_sample_runs_on_the_picked_device():
    from shared.device import pick_device

    gen = logic.sample(steps=3, n=2)
    assert gen.images.shape == (2, 1, 16, 16) and gen.images.device.type == "cpu"
    assert pick_device() in ("cpu", "cuda", "mps")


# ---------------------------------------------------------------- filmstrip, grid, sweep

@pytest.mark.parametrize("name", ["DDPM", "DPM-Solver++", "Euler"])
def test_filmstrip_records_x_t_and_x0_at_the_asked_steps(name):
    strip = logic.filmstrip("8", name, 12, 5, "12, 1, 6, 6")
    assert [f.step for f in strip.frames] == [1, 6, 12]
    assert all(f.x_t.shape == f.x0.shape == (1, 1, 16, 16) for f in strip.frames)
    ts = [f.timestep for f in strip.frames]
    assert ts == sorted(ts, reverse=True)
    assert float(strip.frames[0].x_t.std()) > 0.5  # step 1 is (almost) pure noise
    assert torch.isfinite(strip.frames[-1].x0).all()
    again = logic.filmstrip("8", name, 12, 5, [12])
    assert torch.equal(again.generation.images, strip.generation.images)


def test_filmstrip_defaults_and_bad_steps():
    assert logic.default_frames(50) == [1, 8, 15, 22, 29, 36, 43, 50]
    assert logic.default_frames(3) == [1, 2, 3]
    assert len(logic.filmstrip("", "DDIM", 10, 0, None).frames) == 8
    with pytest.raises(logic.BadSetting, match="from 1 to 10"):
        logic.filmstrip("1", "DDIM", 10, 0, [11])
    with pytest.raises(logic.BadSetting, match="at most 16"):
        logic.filmstrip("1", "DDIM", 100, 0, list(range(1, 20)))
    with pytest.raises(logic.BadSetting, match="list of numbers"):
        logic.filmstrip("1", "DDIM", 10, 0, {"a": 1})


def test_grid_runs_every_cell_from_the_same_noise():
    cells = logic.grid("6", ["DDIM", "euler", "DDIM"], "1, 3", seed=9)
    assert [(c.scheduler, c.steps) for c in cells] == [("DDIM", 1), ("DDIM", 3), ("Euler", 1), ("Euler", 3)]
    assert all(c.seconds > 0 and c.classified in range(10) for c in cells)
    alone = logic.generate("6", "Euler", 3, logic.DEFAULT_GUIDANCE, 9, 1)
    assert torch.equal(cells[3].image, alone.images[0])
    with pytest.raises(logic.BadSetting, match="cells"):
        logic.grid("6", list(logic.SCHEDULERS), list(range(1, 8)))
    with pytest.raises(logic.BadSetting, match="denoising steps"):
        logic.grid("6", list(logic.SCHEDULERS), [1000])
    with pytest.raises(logic.UserError, match="Unknown scheduler"):
        logic.grid("6", ["DDIM", "heun"], [2])


def test_guidance_sweep_and_its_summary():
    cells = logic.guidance_sweep("4", "DDIM", 3, 1, "3, 0, 1", 2)
    assert [c.guidance for c in cells] == [0, 0, 1, 1, 3, 3]
    rows = logic.sweep_summary(cells, 4)
    assert [r["guidance"] for r in rows] == [0, 1, 3] and all(r["images"] == 2 for r in rows)
    with pytest.raises(logic.BadSetting, match="needs a digit"):
        logic.guidance_sweep("", "DDIM", 3, 1, [0, 1], 1)
    with pytest.raises(logic.BadSetting, match="Guidance values is 50"):
        logic.guidance_sweep("4", "DDIM", 3, 1, [0, 50], 1)


# ---------------------------------------------------------------- schedule, forward process, img2img

def test_schedule_table():
    wide, long = logic.schedule_table()
    assert len(wide) == 1000 and len(long) == 3000
    ab = wide["alpha_bar_t"].to_numpy()
    assert (ab[1:] < ab[:-1]).all() and ab[0] > 0.999 and ab[-1] < 1e-4
    assert math.isclose(wide["beta_t"].iloc[0], 1e-4, rel_tol=1e-4) and math.isclose(wide["beta_t"].iloc[-1], 0.02,
                                                                                       rel_tol=1e-4)
    assert math.isclose(wide["snr"].iloc[500], ab[500] / (1 - ab[500]), rel_tol=1e-9)
    assert set(long["quantity"]) == {"beta_t", "alpha_bar_t", "sqrt_alpha_bar_t"}
    assert logic.timesteps_of("DDIM", 5) == [800.0, 600.0, 400.0, 200.0, 0.0]


def test_forward_noise_goes_from_the_digit_to_noise():
    rows = logic.forward_noise(3, 0, (0, 500, 999))
    original, _ = logic.real_digit(3, 0)
    assert torch.allclose(rows[0][2], original, atol=0.05)  # sqrt(1 - alpha-bar_0) = 0.01 of noise
    last = rows[-1][2].flatten()
    corr = torch.corrcoef(torch.stack([last, original.flatten()]))[0, 1]
    assert abs(float(corr)) < 0.3 and rows[-1][1] < 1e-4


@pytest.mark.parametrize("name", list(logic.SCHEDULERS))
def test_img2img_starts_part_way(name):
    out = logic.img2img(3, 2, 0.5, "", name, 10)
    assert out.steps_run == 5 and 300 <= out.t_start <= 560
    assert out.original.shape == out.noised.shape == out.result.shape == (1, 16, 16)
    full = logic.img2img(3, 2, 1.0, "an 8", name, 10)
    assert full.steps_run == 10 and full.t_start >= 900


def test_img2img_bad_input():
    with pytest.raises(logic.BadSetting, match="Digit is 12"):
        logic.img2img(12)
    with pytest.raises(logic.BadSetting, match="Example is 999"):
        logic.img2img(3, 999)
    with pytest.raises(logic.BadSetting, match="Strength"):
        logic.img2img(3, 0, 0)


# ---------------------------------------------------------------- Hub path, offline

def test_registry_has_the_embedded_model_and_the_hub_ones():
    from shared.models import default

    assert default("diffusion").name == logic.EMBEDDED_NAME
    ids = {s.hub_id for s in logic.REGISTRY["diffusion"]}
    assert {"stabilityai/sd-turbo", "stabilityai/sdxl-turbo", "stable-diffusion-v1-5/stable-diffusion-v1-5"} <= ids


@pytest.mark.parametrize("model,match", [
    ("sd-turbo", "Hub"), ("stabilityai/sdxl-turbo", "Hub"), ("someone/not-a-model-xyz", "Hub"),
    ("not a model id!!", "not a model name this lab knows")])
def test_hub_models_offline_say_what_they_need(model, match):
    with pytest.raises(ModelUnavailable, match=match):
        logic.generate("a lighthouse at dusk", "", 2, 1.0, 0, 1, model=model)


def test_a_folder_that_is_not_a_pipeline_is_refused(tmp_path):
    with pytest.raises(ModelUnavailable, match="not a diffusers pipeline"):
        logic.generate("a lighthouse", "", 2, 1.0, 0, 1, model=str(tmp_path))
    with pytest.raises(logic.BadSetting, match="Type a prompt"):
        logic.generate("", "", 2, 1.0, 0, 1, model=str(tmp_path))


# ---------------------------------------------------------------- the shipped model

def test_the_shipped_model_draws_the_asked_digit(monkeypatch):
    monkeypatch.delenv("GENAI_LAB_DIFFUSION_MODEL")
    assert (dm.ASSET / dm.WEIGHTS_FILE).is_file(), "assets/diffusion_digits is missing"
    report = dm.training_report()
    assert report["evaluation"]["accuracy"] >= 0.9 and report["parameters"] == 1_164_513
    gen = logic.generate("a handwritten 7", "", logic.DEFAULT_STEPS, logic.DEFAULT_GUIDANCE, 0, 10)
    assert sum(c == 7 for c in gen.classified) >= 8, gen.classified
    back = logic.img2img(5, 0, 0.4)
    assert back.classified == 5
