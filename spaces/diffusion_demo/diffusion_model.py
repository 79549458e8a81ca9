"""The diffusion lab's own model: a small class-conditional UNet on scikit-learn's handwritten digits.

Everything the training script, the lab, the tests and the benchmark share about it lives here: the
data (1,797 8x8 digits upscaled to 16x16, pixels in [-1, 1]), the UNet and noise-schedule configs,
loading the shipped weights from assets/diffusion_digits/, and the judge of generated digits (an SVC
trained on real digits, fed 16x16 images pooled back to 8x8). No gradio here; torch is imported inside
functions so importing this module stays cheap."""
from __future__ import annotations

import json
import os
from pathlib import Path

from shared.errors import UserError
from shared.paths import ASSETS

ASSET = ASSETS / "diffusion_digits"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
REPORT_FILE = "training_report.json"
IMAGE_SIZE = 16  # the 8x8 digits are upscaled 2x (bilinear) so the UNet has three resolutions to work at
NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES  # the extra "no class" label: classifier-free guidance's unconditional branch
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_TIMESTEPS = 1000
SEED = 0


def unet_config() -> dict:
    """A 1.16M-parameter UNet2DModel: 16x16 -> 8x8 -> 4x4, self-attention at the two low resolutions,
    one embedding per class plus the null class added to the time embedding."""
    return dict(
        sample_size=IMAGE_SIZE, in_channels=1, out_channels=1,
        block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=32, norm_num_groups=32,
        num_class_embeds=NUM_CLASSES + 1,
    )


def scheduler_config() -> dict:
    """The training noise schedule (DDPM: 1000 steps, linear betas 1e-4..0.02, the model predicts the noise
    epsilon; alpha-bar ends at 4e-5, a sigma of 157 for the Euler-type samplers; a cosine schedule would end
    at a sigma of 20,000, which the Euler samplers cannot start from).
    Every sampler of the lab is built from it with X.from_config(), so they all agree with training."""
    return dict(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
                prediction_type="epsilon", clip_sample=True, clip_sample_range=1.0)


def build_unet(seed: int = SEED, **overrides):
    """A freshly initialised UNet (the training script's start; tests pass smaller sizes)."""
    import torch

    from diffusion_sampling import diffusers_classes

    (UNet2DModel,) = diffusers_classes("UNet2DModel")
    torch.manual_seed(seed)
    return UNet2DModel(**{**unet_config(), **overrides})


# ---------------------------------------------------------------- data

def load_digits_16():
    """(images, labels): all 1,797 sklearn digits as a float tensor (N, 1, 16, 16) in [-1, 1] and a
    long tensor of labels (N,)."""
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # 0..1, 8x8
    return upscale(small) * 2 - 1, torch.tensor(digits.target, dtype=torch.long)


def upscale(small):
    """(N, 1, 8, 8) in [0, 1] -> (N, 1, 16, 16), bilinear."""
    import torch.nn.functional as F

    return F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False).clamp(0, 1)


def to_features(images):
    """(N, 1, 16, 16) in [-1, 1] -> (N, 64) numpy in sklearn's 0..16 digit scale (2x2 average pooling)."""
    import torch.nn.functional as F

    pooled = F.avg_pool2d(images.detach().float().cpu().clamp(-1, 1), 2)
    return ((pooled + 1) / 2 * 16).reshape(len(images), -1).numpy()


def digit_classifier():
    """(SVC, accuracy on held-out real digits): an RBF SVC fitted on 75% of the real 8x8 digits,
    scored on the other 25% after the same 8->16->8 round trip generated digits go through."""
    from shared.loading import once

    def build():
        import numpy as np
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        from sklearn.svm import SVC

        digits = load_digits()
        x_train, x_test, y_train, y_test = train_test_split(digits.data, digits.target, test_size=0.25,
                                                            random_state=SEED, stratify=digits.target)
        svc = SVC(gamma=0.001, C=10).fit(x_train, y_train)
        import torch

        round_trip = to_features(upscale(torch.tensor(x_test, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16) * 2 - 1)
        accuracy = float(np.mean(svc.predict(round_trip) == y_test))
        return svc, accuracy

    return once(("diffusion_digits", "svc"), build)


def classify(images) -> list[int]:
    """The real-digit classifier's verdict on (N, 1, 16, 16) images in [-1, 1]."""
    svc, _ = digit_classifier()
    return [int(v) for v in svc.predict(to_features(images))]


# ---------------------------------------------------------------- the shipped weights

class ModelMissing(UserError):
    pass


def load_unet(folder: str | Path | None = None, device: str = "cpu"):
    """The shipped UNet (EMA weights), loaded once per folder and device, in eval mode.
    GENAI_LAB_DIFFUSION_MODEL names another folder of the same shape (one you trained, or a test's)."""
    from shared.loading import once

    folder = Path(folder or os.environ.get("GENAI_LAB_DIFFUSION_MODEL") or ASSET)

    def build():
        from safetensors.torch import load_file

        from diffusion_sampling import diffusers_classes

        (UNet2DModel,) = diffusers_classes("UNet2DModel")

        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelMissing(f"The digits UNet is missing ({weights}); train it with "
                               "`python scripts/train_diffusion_digits.py` (about 15 minutes on 2 CPU cores).")
        config = json.loads((folder / "config.json").read_text())
        unet = UNet2DModel(**{k: v for k, v in config.items() if not k.startswith("_")})
        state = load_file(str(weights))
        unet.load_state_dict({k: v.float() for k, v in state.items()})
        return unet.to(device).eval().requires_grad_(False)

    return once(("diffusion_digits", str(folder.resolve()), device), build)


def save_unet(unet, folder: Path) -> None:
    """config.json + fp32 safetensors into `folder` (the caller makes it atomic)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in unet.config.items() if not k.startswith("_")}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    save_file({k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}, str(folder / WEIGHTS_FILE))


def training_report(folder: str | Path | None = None) -> dict:
    path = Path(folder or os.environ.get("GENAI_LAB_DIFFUSION_MODEL") or ASSET) / REPORT_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
