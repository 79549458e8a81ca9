"""The RAG chat's local generator on the shared batch (shared.batching): an answer equals
model.generate's (greedy, repetition penalty 1.1) alone and when other users' answers are
generated in the same forward passes. Tiny GPT-2, and the embedded SmolLM2 for a few tokens."""
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces" / "rag_chat"))

from rag_generators import LocalGenerator  # noqa: E402
from shared import batching as B  # noqa: E402


def generate_text(model, tok, prompt: str, n: int) -> str:
    import torch

    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, repetition_penalty=1.1,
                             pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


class Gated(B.Rows):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reached, self.go = threading.Event(), threading.Event()

    def advance(self, logits, hidden, batch):
        super().advance(logits, hidden, batch)
        if len(self.outs[0].ids) == 2:
            self.reached.set()
            assert self.go.wait(60)


def local(model, tok):
    gen = object.__new__(LocalGenerator)
    gen.loaded = SimpleNamespace(model=model, tokenizer=tok)
    return gen


@pytest.fixture(scope="module")
def questions():
    return [[{"role": "user", "content": "Context: the museum opens at 9am.\n\nQuestion: when does it open?"}],
            [{"role": "user", "content": "Why is the sky blue?"}]]


def test_answers_of_several_users_in_one_batch_equal_generate(tiny_gpt2, questions):
    model, tok = tiny_gpt2
    gen = local(model, tok)
    n = 12
    expected = [generate_text(model, tok, gen.prompt_text(m), n) for m in questions]
    assert "".join(gen.stream(questions[0], max_new_tokens=n)) == expected[0]  # alone
    held_prompt = tok("Another attendee's question")["input_ids"]
    gate = Gated(held_prompt, [B.Sampling()], 30, [50256])
    other = B.engine_for(model).submit(held_prompt, [gate])
    assert gate.reached.wait(60)
    answers = [None, None]

    def ask(i):
        answers[i] = "".join(gen.stream(questions[i], max_new_tokens=n))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    while B.engine_for(model).stats()["waiting"] < 2:
        threading.Event().wait(0.01)
    gate.go.set()
    for t in threads:
        t.join(120)
    assert answers == expected and other.wait(60)
    assert gate.outs[0].batch_size == 3  # the three shared forward passes


def test_smollm2_answer_equals_generate(smollm2, questions):
    gen = LocalGenerator()
    assert gen.loaded.model is smollm2.model
    text = "".join(gen.stream(questions[0], max_new_tokens=5))
    assert text == generate_text(smollm2.model, smollm2.tokenizer, gen.prompt_text(questions[0]), 5)
