"""shared.hubguard's pure parts: which files a download fetches, the size estimate, the kind check."""
from types import SimpleNamespace

import pytest

from shared import hubguard


def info(files: dict[str, int], total=None, config=None, repo="org/model"):
    siblings = [SimpleNamespace(rfilename=n, size=s) for n, s in files.items()]
    return SimpleNamespace(id=repo, siblings=siblings, config=config,
                           safetensors=SimpleNamespace(total=total) if total else None)


def test_one_weight_format_is_fetched_with_the_small_files():
    files = {"config.json": 1, "tokenizer.json": 2, "model.safetensors": 100, "pytorch_model.bin": 100,
             "tf_model.h5": 100, "flax_model.msgpack": 100, "onnx/model.onnx": 100, "README.md": 3}
    assert hubguard.plan(files) == [("README.md", 3), ("config.json", 1), ("tokenizer.json", 2),
                                    ("model.safetensors", 100)]
    assert [n for n, _ in hubguard.plan({"config.json": 1, "pytorch_model.bin": 9})] == ["config.json",
                                                                                        "pytorch_model.bin"]


def test_sharded_weights_and_their_index_are_fetched():
    files = {"config.json": 1, "model.safetensors.index.json": 5, "model-00001-of-00002.safetensors": 50,
             "model-00002-of-00002.safetensors": 50}
    assert sum(size for _, size in hubguard.plan(files)) == 106


def test_diffusers_variants_are_not_counted_twice():
    files = {"model_index.json": 1, "unet/config.json": 1, "unet/diffusion_pytorch_model.safetensors": 400,
             "unet/diffusion_pytorch_model.fp16.safetensors": 200, "vae/diffusion_pytorch_model.safetensors": 40,
             "vae/diffusion_pytorch_model.fp16.safetensors": 20}
    est = hubguard.estimate_from_info(info(files, total=330), 4, "float32")
    assert est.memory_bytes == 440 and est.download_bytes == 442  # the files, not the Hub's count of all variants
    only_fp16 = {"model_index.json": 1, "unet/diffusion_pytorch_model.fp16.safetensors": 200}
    assert hubguard.weight_files(list(only_fp16)) == ["unet/diffusion_pytorch_model.fp16.safetensors"]


def test_parameter_count_decides_memory_at_the_labs_dtype():
    est = hubguard.estimate_from_info(info({"config.json": 1, "model.safetensors": 1000}, total=250), 4, "float32")
    assert (est.memory_bytes, est.parameters, est.download_bytes) == (1000, 250, 1001)
    assert "at float32" in est.basis


@pytest.mark.parametrize("role, archs, ok", [
    ("causal", ["GPT2LMHeadModel"], True), ("causal", ["LlamaForCausalLM"], True),
    ("causal", ["BertForTokenClassification"], False), ("causal", ["BertModel"], False),
    ("chat", ["T5ForConditionalGeneration"], True), ("ner", ["BertForTokenClassification"], True),
    ("ner", ["GPT2LMHeadModel"], False), ("reranker", ["BertForSequenceClassification"], True),
    ("embeddings", ["BertModel"], True), ("causal", None, True)])
def test_kind_follows_the_configs_architectures(role, archs, ok):
    files = {"config.json": 1, "model.safetensors": 10}
    why = hubguard.kind_refusal(info(files, config={"architectures": archs} if archs else None), role)
    assert (why == "") is ok
    if not ok:
        assert why.startswith("org/model is a ") and why.endswith(".") and "\n" not in why


def test_repos_without_a_model_are_named():
    assert "holds a tokenizer" in hubguard.kind_refusal(info({"tokenizer.json": 1, "vocab.json": 1}), "causal")
    assert "has no weights" in hubguard.kind_refusal(info({"config.json": 1, "README.md": 1}), "causal")
    assert hubguard.kind_refusal(info({"README.md": 1}), "unet") == ""  # roles the guard knows nothing about
