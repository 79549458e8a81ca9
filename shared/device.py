"""Device and dtype choice, and the one GPU decorator every lab uses.

cuda, then mps, then cpu; bf16 (or fp16) on a GPU, fp32 on the CPU. GENAI_LAB_DEVICE
overrides the choice (e.g. "cpu" on a GPU machine to compare)."""
import functools
import os


@functools.cache
def pick_device() -> str:
    import torch

    wanted = os.environ.get("GENAI_LAB_DEVICE")
    if wanted:
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str | None = None):
    import torch

    device = device or pick_device()
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def on_zerogpu() -> bool:
    """True on Hugging Face ZeroGPU hardware, where GPU work must run inside spaces.GPU."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def gpu(duration: int = 60):
    """`spaces.GPU(duration=...)` on ZeroGPU Spaces, a no-op decorator everywhere else."""

    def wrap(fn):
        if on_zerogpu():
            import spaces

            return spaces.GPU(duration=duration)(fn)
        return fn

    return wrap
