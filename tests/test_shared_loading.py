"""shared.loading: the embedded model loads once per process; bad models give one clear line."""
import threading

import pytest

from shared import loading
from shared.models import ModelUnavailable


def test_embedded_default_loads_and_generates(smollm2):
    assert smollm2.choice.source == "embedded"
    assert "SmolLM2" in smollm2.status and "cpu" in smollm2.status
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt")
    out = smollm2.model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in smollm2.tokenizer.decode(out[0, ids.input_ids.shape[1]:])


def test_loaded_once_even_when_asked_concurrently(smollm2):
    results = []
    threads = [threading.Thread(target=lambda: results.append(loading.load_causal_lm())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {id(r.model) for r in results} == {id(smollm2.model)}


def test_non_causal_model_folder_is_refused(tmp_path):
    from transformers import BertConfig

    # Like dslim/bert-base-NER: a BERT checkpoint with a token-classification head.
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
               architectures=["BertForTokenClassification"]).save_pretrained(tmp_path)
    with pytest.raises(ModelUnavailable, match="not a causal language model"):
        loading.load_causal_lm(str(tmp_path))


def test_corrupt_model_folder_is_one_clear_line(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelUnavailable, match="Could not load"):
        loading.load_causal_lm(str(tmp_path))


@pytest.mark.parametrize("name, text, expect", [
    ("GatedRepoError", "403 Client Error", "gated"),
    ("RepositoryNotFoundError", "404 Client Error", "not found"),
    ("OSError", "disk full", "Could not load"),
])
def test_errors_are_explained(name, text, expect):
    exc = type(name, (Exception,), {})(text)
    assert expect in loading.explain("org/model", exc)


def test_embedded_embedder_loads(tmp_path):
    model, choice = loading.load_embedder()
    assert choice.source == "embedded"
    assert model.encode(["hello world"]).shape == (1, 384)


def test_explain_reads_the_error_class_and_status_not_stray_digits():
    """The Hub stand-in listens on a random port: a URL with port 40123 or 40312 is not a 401 or a 403."""
    from types import SimpleNamespace

    from shared.loading import explain

    class RepositoryNotFoundError(Exception):
        pass

    class GatedRepoError(Exception):
        pass

    class HfHubHTTPError(Exception):
        def __init__(self, text, status):
            super().__init__(text)
            self.response = SimpleNamespace(status_code=status)

    url = "http://127.0.0.1:40312/api/models/nobody-org/no-such-model/revision/main"
    cases = [(RepositoryNotFoundError(f"401 Client Error. Repository Not Found for url: {url}"), "not found"),
             (HfHubHTTPError(f"404 Client Error for url: {url}", 404), "not found"),
             (OSError("404 Client Error: Not Found for url: http://127.0.0.1:40123/x"), "not found"),
             (GatedRepoError(f"Access to {url} is restricted"), "is gated"),
             (HfHubHTTPError("Forbidden for url: http://127.0.0.1:40404/x", 403), "is gated"),
             (ValueError("bad header at http://127.0.0.1:40312/x"), "Could not load")]
    for exc, words in cases:
        assert words in explain("nobody-org/no-such-model", exc), (exc, explain("nobody-org/no-such-model", exc))
