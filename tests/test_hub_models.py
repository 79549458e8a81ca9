"""The Hub path through a stand-in Hub (tests/hubstub.py): the picker, a real download with progress
into a temporary HF cache, loading and using each kind of model, and every way it goes wrong
(gated, missing, wrong kind, a dropped connection, a slow Hub, a model too big for the machine)."""
import threading
import time
import types
from pathlib import Path

import pytest

from hubstub import (BERT_NER, EMBEDDER, GATED, GPT2, HUGE, REGISTRY_GPT2, REGISTRY_RERANKER, TOKENIZER_ONLY, UNET,  # noqa: F401
                     forget_hub_models, hub, wait_for)
from shared import hub as shared_hub
from shared import loading
from shared.models import ModelUnavailable, available


def one_sentence(text: str) -> bool:
    body = text.rstrip(".")
    return "\n" not in text and text.endswith(".") and ". " not in body.replace("e.g. ", "")


def label(role: str, name: str) -> str:
    return next(lab for lab, value in available(role) if value == name)


@pytest.fixture
def no_retry_pause(monkeypatch):
    """huggingface_hub pauses 1 s before resuming a dropped download; the tests need not wait."""
    from huggingface_hub import file_download

    monkeypatch.setattr(file_download, "time", types.SimpleNamespace(sleep=lambda s: None))


def test_stand_in_hub_is_seen_as_reachable(hub):
    assert shared_hub.hub_reachable()
    assert label("causal", "gpt2").endswith("· Hub")


def test_picker_says_hub_then_cached_and_the_second_ask_downloads_nothing(hub, tmp_path):
    assert label("causal", "gpt2").endswith("· Hub")
    first = loading.load_causal_lm("gpt2", fallback=False)
    assert first.choice.source == "hub" and first.choice.spec.hub_id == REGISTRY_GPT2
    assert label("causal", "gpt2").endswith("· cached")
    assert (tmp_path / "hf" / "hub" / "models--openai-community--gpt2" / "snapshots").is_dir()
    fetched = len(hub.served(REGISTRY_GPT2))
    again = loading.load_causal_lm("gpt2", fallback=False)
    assert again.model is first.model and again.choice.source == "local cache"
    assert len(hub.served(REGISTRY_GPT2)) == fetched


def test_download_reports_progress_and_fetches_one_weight_format(hub, tmp_path):
    seen = []
    loaded = loading.load_causal_lm(GPT2, fallback=False, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 3
    assert GPT2 in seen[-1][1] and "MB" in seen[-1][1]
    files = {p.name for p in (tmp_path / "hf" / "hub").rglob("*") if p.is_file() and "snapshots" in p.parts}
    assert "model.safetensors" in files and "config.json" in files
    assert shared_hub.download_status(GPT2) == ""  # finished: the UI line goes away
    ids = loaded.tokenizer("The robot", return_tensors="pt")
    out = loaded.model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.input_ids.shape[1] + 4
    assert loaded.choice.source == "hub" and "Hub" in loaded.status


def test_token_classifier_downloads_and_tags(hub):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    def build(where, offline):
        return (AutoModelForTokenClassification.from_pretrained(where, local_files_only=offline).eval(),
                AutoTokenizer.from_pretrained(where, local_files_only=offline))

    hub.prepare(BERT_NER)
    (model, tok), choice = loading.load_pretrained("ner", BERT_NER, build)
    assert choice.source == "hub"
    enc = tok("Ada Lovelace lived in London", return_tensors="pt")
    labels = [model.config.id2label[i] for i in model(**enc).logits.argmax(-1)[0].tolist()]
    assert len(labels) == enc.input_ids.shape[1] and set(labels) == {"B-PER"}  # the stand-in's known answer


def test_embedder_downloads_and_embeds_through_the_rag_lab(hub):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces" / "rag_chat"))
    import rag_index

    hub.prepare(EMBEDDER)
    embedder = rag_index.get_embedder(EMBEDDER)
    vectors = embedder.encode(["a cat sat on the mat", "stock markets fell"])
    assert vectors.shape == (2, 16)
    assert "hub" in embedder.reason


def test_reranker_downloads_and_scores_through_the_rag_lab(hub):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces" / "rag_chat"))
    import rag_index

    hub.prepare(REGISTRY_RERANKER)
    reranker, said = rag_index.get_reranker()
    assert reranker is not None and "Re-ranking with" in said and "hub" in said, said
    scores = rag_index.rerank_scores(reranker, [("who wrote it?", "Ada wrote it."), ("who?", "stocks fell")])
    assert len(scores) == 2
    assert len([r for r in hub.served(REGISTRY_RERANKER) if r[0] == "GET" and r[2] == "model.safetensors"]) == 1
    again, _ = rag_index.get_reranker()
    assert again is reranker  # one copy, from the bounded cache


def test_reranker_refused_is_said_and_retrieval_goes_on(hub, monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces" / "rag_chat"))
    import rag_index

    reranker, said = rag_index.get_reranker(GPT2)  # a causal LM, not a cross-encoder
    assert reranker is None and said.startswith("Re-ranking off:") and "not a cross-encoder" in said, said


def test_diffusers_unet_downloads_and_denoises(hub):
    import torch
    from diffusers import UNet2DModel

    hub.prepare(UNET)
    unet, choice = loading.load_pretrained(
        "unet", UNET, lambda where, offline: UNet2DModel.from_pretrained(where, local_files_only=offline))
    noise = torch.randn(1, 1, 8, 8)
    assert unet(noise, 10).sample.shape == noise.shape and choice.source == "hub"


def test_gated_model_without_a_token_is_explained_before_any_download(hub):
    with pytest.raises(ModelUnavailable) as err:
        loading.load_causal_lm(GATED, fallback=False)
    assert "gated" in str(err.value) and "log in" in str(err.value) and one_sentence(str(err.value))
    assert hub.served(GATED) == []


def test_gated_model_answering_401_is_explained(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_a_token_without_access")
    with pytest.raises(ModelUnavailable) as err:
        loading.load_causal_lm(GATED, fallback=False)
    assert "gated" in str(err.value) and one_sentence(str(err.value))
    assert hub.served(GATED)  # it did ask, and got 401


def test_missing_model_is_explained(hub):
    with pytest.raises(ModelUnavailable, match="not found on the Hub") as err:
        loading.load_causal_lm("nobody-org/no-such-model", fallback=False)
    assert one_sentence(str(err.value)) and hub.served("nobody-org/no-such-model") == []


@pytest.mark.parametrize("repo, expect", [
    (BERT_NER, "is a token-classification model (BertForTokenClassification), not a causal language model"),
    (TOKENIZER_ONLY, "is not a model: it holds a tokenizer"),
])
def test_wrong_kind_is_explained_before_its_weights_are_fetched(hub, repo, expect):
    with pytest.raises(ModelUnavailable, match=expect.replace("(", r"\(").replace(")", r"\)")) as err:
        loading.load_causal_lm(repo, fallback=False)
    assert one_sentence(str(err.value)) and hub.served(repo) == []


def test_connection_dropped_mid_download_resumes(hub, no_retry_pause, monkeypatch):
    from huggingface_hub import constants

    # huggingface_hub writes whole 10 MB chunks; the tiny model is 6.5 MB, so chunks shrink to 64 KB here.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 65536)
    hub.drop(GPT2, "model.safetensors", after_bytes=16 * 65536)
    loaded = loading.load_causal_lm(GPT2, fallback=False)
    gets = [r for r in hub.served(GPT2) if r[0] == "GET" and r[2] == "model.safetensors"]
    assert [r[3] for r in gets] == ["", f"bytes={16 * 65536}-"]  # the second request asked only for the rest
    assert loaded.model.transformer.wte.weight.shape[0] == 50257


def test_connection_that_keeps_dropping_is_explained_and_the_retry_fetches_only_the_rest(hub, no_retry_pause):
    hub.drop(GPT2, "model.safetensors", after_bytes=0, times=20)
    with pytest.raises(ModelUnavailable) as err:
        loading.load_causal_lm(GPT2, fallback=False)
    message = str(err.value)
    assert "stopped at" in message and "model.safetensors" in message and one_sentence(message)
    hub.drops.clear()
    before = len(hub.requests)
    loading.load_causal_lm(GPT2, fallback=False)
    again = [r for r in hub.requests[before:] if r[0] == "GET" and r[1] == GPT2]
    assert [r[2] for r in again] == ["model.safetensors"]  # config and tokenizer were kept


def test_slow_hub_keeps_other_requests_answered(hub):
    """While one download waits on a slow Hub, a model already here loads and a different Hub
    model's metadata is read: nothing is held behind the slow one."""
    loading.load_causal_lm(REGISTRY_GPT2, fallback=False)  # a model that is here already
    release = hub.hold(r"/resolve/.*/model\.safetensors$")
    result = {}

    def slow():
        try:
            result["loaded"] = loading.load_causal_lm(GPT2, fallback=False)
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    worker = threading.Thread(target=slow, daemon=True)
    worker.start()
    try:
        assert wait_for(lambda: hub.held)  # the slow download is in flight
        here = loading.load_causal_lm(REGISTRY_GPT2, fallback=False)
        ids = here.tokenizer("hi", return_tensors="pt")
        assert here.model.generate(**ids, max_new_tokens=2, do_sample=False).shape[1] == ids.input_ids.shape[1] + 2
        with pytest.raises(ModelUnavailable, match="too big"):
            loading.load_causal_lm(HUGE, fallback=False)
        assert hub.held and worker.is_alive() and not result  # all of that while the slow one waited
        assert "Downloading tiny-org/tiny-gpt2" in shared_hub.download_status(GPT2)
    finally:
        release.set()
    worker.join(60)
    assert "loaded" in result, result


def test_huge_model_is_refused_fast_and_nothing_is_fetched(hub):
    start = time.monotonic()
    with pytest.raises(ModelUnavailable) as err:
        loading.load_causal_lm(HUGE, fallback=False)
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert elapsed < 2.0, elapsed
    assert "too big" in message and "1.60 TB" in message and "800.00 GB of files" in message
    assert "at most" in message and one_sentence(message)
    assert hub.served(HUGE) == []
    for loader in (lambda: loading.load_embedder(HUGE, fallback=False),
                   lambda: loading.load_pretrained("ner", HUGE, lambda where, offline: None)):
        with pytest.raises(ModelUnavailable, match="too big"):
            loader()
    assert hub.served(HUGE) == []


def test_disk_limit_is_named_when_the_cache_has_no_room(hub, monkeypatch):
    from shared import hubguard

    monkeypatch.setattr(hubguard, "disk_free", lambda: 1_000_000)
    with pytest.raises(ModelUnavailable, match="disk: its files take .* and the Hugging Face cache has 1.00 MB free"):
        loading.load_causal_lm(GPT2, fallback=False)
    assert not [r for r in hub.served(GPT2) if r[0] == "GET"]


def test_memory_limit_follows_the_budget(hub, monkeypatch):
    monkeypatch.setenv("GENAI_LAB_MODEL_BUDGET_GB", "0.001")  # 1 MB: less than the tiny GPT-2 (6.5 MB at fp32)
    with pytest.raises(ModelUnavailable, match=r"6\.\d\d MB of memory .* at most 1.00 MB"):
        loading.load_causal_lm(GPT2, fallback=False)
    assert hub.served(GPT2) == []


def test_size_of_a_cached_model_is_checked_offline(hub, monkeypatch):
    loading.load_causal_lm(GPT2, fallback=False)
    forget_hub_models()
    monkeypatch.setenv("GENAI_LAB_MODEL_BUDGET_GB", "0.001")
    hub.stop()
    shared_hub.forget()
    with pytest.raises(ModelUnavailable, match=r"too big .* at float32, read from the local cache"):
        loading.load_causal_lm(GPT2, fallback=False)
