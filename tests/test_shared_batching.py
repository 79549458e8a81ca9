"""shared.batching: the continuous-batching engine. Requests that join and leave mid-generation get
what they get alone (greedy tokens, seeded samples, probabilities to float tolerance), and what
model.generate gives; stop requests, places in line, a failing request failing alone, text
streaming, the model not pinned by an idle engine; the OpenAI-compatible endpoint route through a
loopback stand-in server. Tiny GPT-2 for most, the embedded SmolLM2 for a few tokens."""
import gc
import json
import threading
import weakref
from http.server import BaseHTTPRequestHandler

import pytest

from conftest import loopback, reply_json
from shared import batching as B
from shared.errors import UserError

EOS = [50256]
N = 12
SETTINGS = [B.Sampling(), B.Sampling(do_sample=True, temperature=0.8, top_k=40, seed=3),
            B.Sampling(do_sample=True, top_p=0.9, min_p=0.05, repetition_penalty=1.3, seed=7)]


def generate(model, prompt, sampling, n, eos):
    import torch

    torch.manual_seed(sampling.seed)
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, pad_token_id=eos[0],
                         **sampling.generate_kwargs())
    return out[0, len(prompt):].tolist()


class Gated(B.Rows):
    """Rows that pause inside the engine's thread once its first row has `at` tokens, until released:
    whatever is submitted meanwhile joins the batch at the next token boundary."""

    def __init__(self, *args, at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.at, self.reached, self.go = at, threading.Event(), threading.Event()

    def advance(self, logits, hidden, batch):
        super().advance(logits, hidden, batch)
        if len(self.outs[0].ids) == self.at:
            self.reached.set()
            assert self.go.wait(60)


def paused_at_two(model, prompts):
    """A fresh engine running prompts[0] greedily, paused inside its thread after 2 tokens (release: gate.go)."""
    engine = B.Engine(model)
    gate = Gated(prompts[0], [SETTINGS[0]], N, EOS, at=2)
    t0 = engine.submit(prompts[0], [gate])
    assert gate.reached.wait(60)
    return engine, gate, t0


def same(a, b, tol=1e-4):
    assert a.ids == b.ids
    assert a.top_ids == b.top_ids
    assert len(a.probs) == len(b.probs)
    assert max(abs(x - y) for x, y in zip(a.probs, b.probs)) < tol
    assert max(abs(x - y) for x, y in zip(a.picked_probs, b.picked_probs)) < tol


@pytest.fixture(scope="module")
def tiny(tiny_gpt2):
    model, tok = tiny_gpt2
    prompts = [tok(t)["input_ids"] for t in ["Hello world, this is a much longer prompt with many more words in it",
                                              "Hi", "The quick brown fox"]]
    alone = [B.generate(model, p, s, N, EOS) for p, s in zip(prompts, SETTINGS)]
    return model, tok, prompts, alone


# ---------------------------------------------------------------- equal to alone, equal to generate

def test_alone_equals_generate(tiny):
    model, _, prompts, alone = tiny
    for p, s, a in zip(prompts, SETTINGS, alone):
        assert a.ids == generate(model, p, s, N, EOS)
        assert a.done and a.stop_reason == "max_new_tokens"
        assert len(a.probs) == len(a.top_ids) == N and all(0 < x <= 1 for x in a.probs)
        assert a.batch_size == 1


def test_joining_and_leaving_mid_generation_changes_nothing(tiny):
    """A long prompt runs; at its 4th token a short-prompt greedy row (leaves after 5 tokens) and
    a sampled row join; a third joins later; every row equals its run alone."""
    model, _, prompts, alone = tiny
    engine = B.Engine(model)
    first = Gated(prompts[0], [SETTINGS[0]], N, EOS, at=4)
    t0 = engine.submit(prompts[0], [first])
    assert first.reached.wait(60)
    short = B.Rows(prompts[1], [SETTINGS[1]], 5, EOS)
    late = Gated(prompts[2], [SETTINGS[2]], N, EOS, at=2)
    t1 = engine.submit(prompts[1], [short])
    t2 = engine.submit(prompts[2], [late])
    first.go.set()
    assert late.reached.wait(60)
    assert t1.state in (B.RUNNING, B.DONE)
    late.go.set()
    for t in (t0, t1, t2):
        assert t.wait(60) and t.state == B.DONE
    same(t0.outs[0], alone[0])
    same(t2.outs[0], alone[2])
    assert short.outs[0].ids == alone[1].ids[:5] and short.outs[0].stop_reason == "max_new_tokens"
    assert max(abs(x - y) for x, y in zip(short.outs[0].probs, alone[1].probs)) < 1e-4
    assert t0.outs[0].batch_size == 3 and engine.max_batch_seen == 3  # they did share forward passes


def test_many_rows_of_one_prompt_share_one_prefill(tiny):
    model, _, prompts, alone = tiny
    engine = B.Engine(model)
    rows = B.Rows(prompts[0], SETTINGS, [N, 3, N], EOS)
    ticket = engine.submit(prompts[0], [rows])
    assert ticket.wait(60) and ticket.state == B.DONE
    assert rows.outs[0].ids == alone[0].ids
    assert [len(o.ids) for o in rows.outs] == [N, 3, N]
    assert rows.outs[1].ids == generate(model, prompts[0], SETTINGS[1], 3, EOS)
    assert rows.outs[2].ids == generate(model, prompts[0], SETTINGS[2], N, EOS)


# ---------------------------------------------------------------- stopping, waiting, failing

def test_stop_requests_keep_what_was_made_and_spare_the_others(tiny):
    model, _, prompts, alone = tiny
    engine = B.Engine(model)
    gate = Gated(prompts[0], [SETTINGS[0]], N, EOS, at=3)
    stopper = threading.Event()
    t0 = engine.submit(prompts[0], [gate])
    assert gate.reached.wait(60)
    t1 = engine.submit(prompts[1], [B.Rows(prompts[1], [SETTINGS[1]], N, EOS)], should_stop=stopper.is_set)
    two = B.Rows(prompts[2], [SETTINGS[0], SETTINGS[2]], N, EOS)
    t2 = engine.submit(prompts[2], [two])
    t0.cancel()  # takes effect at the next token boundary
    stopper.set()  # a jobs-style event: t1 never starts
    two.stop_row(0)  # one row of a ticket stops, its other row goes on
    gate.go.set()
    for t in (t0, t1, t2):
        assert t.wait(60)
    assert t0.state == B.STOPPED and t0.outs[0].ids == alone[0].ids[:3]
    assert t0.outs[0].stop_reason == B.STOP_REQUEST
    assert t1.state == B.STOPPED and t1.outs[0].ids == [] and t1.steps == 0
    assert t2.state == B.DONE
    assert two.outs[0].stop_reason == B.STOP_REQUEST and len(two.outs[0].ids) <= 1
    assert two.outs[1].ids == alone[2].ids


def test_waiting_requests_know_their_place(tiny):
    model, _, prompts, _ = tiny
    engine = B.Engine(model, max_rows=1)
    gate = Gated(prompts[0], [SETTINGS[0]], 4, EOS, at=2)
    t0 = engine.submit(prompts[0], [gate])
    assert gate.reached.wait(60)
    t1 = engine.submit(prompts[1], [B.Rows(prompts[1], [SETTINGS[0]], 3, EOS)])
    t2 = engine.submit(prompts[2], [B.Rows(prompts[2], [SETTINGS[0]], 3, EOS)])
    assert (t0.position(), t1.position(), t2.position()) == (0, 1, 2)
    assert (t1.ahead(), t2.ahead()) == (0, 1)
    assert engine.stats()["waiting"] == 2
    gate.go.set()
    assert t2.wait(60) and t1.state == t2.state == B.DONE and t2.position() == 0


def test_a_failing_request_fails_alone(tiny):
    model, tok, prompts, alone = tiny
    engine, gate, t0 = paused_at_two(model, prompts)
    too_long = list(range(300))  # the tiny GPT-2 has 256 positions
    bad = engine.submit(too_long, [B.Rows(too_long, [SETTINGS[0]], 3, EOS)])
    gate.go.set()
    assert bad.wait(60) and bad.state == B.ERROR and "generation failed" in bad.error
    with pytest.raises(RuntimeError):
        list(bad.updates(10))
    assert t0.wait(60) and t0.state == B.DONE and t0.outs[0].ids == alone[0].ids
    with pytest.raises(ValueError):
        engine.submit([], [B.Rows([1], [SETTINGS[0]], 3, EOS)])


def test_a_full_line_is_refused_with_a_message(tiny):
    model, _, prompts, _ = tiny
    engine = B.Engine(model, max_rows=1, max_waiting=1)
    gate = Gated(prompts[0], [SETTINGS[0]], 4, EOS, at=2)
    t0 = engine.submit(prompts[0], [gate])
    assert gate.reached.wait(60)
    engine.submit(prompts[1], [B.Rows(prompts[1], [SETTINGS[0]], 2, EOS)])
    with pytest.raises(B.BatchFull, match="already waiting"):
        engine.submit(prompts[2], [B.Rows(prompts[2], [SETTINGS[0]], 2, EOS)])
    gate.go.set()
    assert t0.wait(60)


def test_stream_text_and_updates(tiny):
    model, tok, prompts, alone = tiny
    pieces = list(B.stream_text(model, tok, prompts[2], SETTINGS[2], N))
    assert "".join(pieces) == tok.decode(alone[2].ids, skip_special_tokens=True)
    ticket = B.submit(model, prompts[1], SETTINGS[0], 5, EOS)
    steps = list(ticket.updates(60))
    assert steps and steps[-1] == ticket.steps == 5 and ticket.state == B.DONE
    assert ticket.outs[0].ids == generate(model, prompts[1], SETTINGS[0], 5, EOS)
    assert B.engine_for(model) is B.engine_for(model)


def test_an_idle_engine_does_not_pin_the_model():
    from conftest import build_tiny_gpt2

    model, tok = build_tiny_gpt2(seed=1)
    engine = B.Engine(model, idle_exit_s=0.2)
    ticket = engine.submit(tok("abc")["input_ids"], [B.Rows(tok("abc")["input_ids"], [B.Sampling()], 3, EOS)])
    assert ticket.wait(60) and len(ticket.outs[0].ids) == 3
    ref = weakref.ref(model)
    del model, ticket
    for _ in range(50):
        gc.collect()
        if ref() is None:
            break
        threading.Event().wait(0.1)
    assert ref() is None


# ---------------------------------------------------------------- the embedded SmolLM2

def test_smollm2_joined_rows_equal_generate(smollm2):
    model, tok = smollm2.model, smollm2.tokenizer
    eos = B.eos_ids(model, tok)

    def chat(text):
        return tok(tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]

    prompts = [chat("Write a poem about the sea."), tok("Hi")["input_ids"]]
    settings = [B.Sampling(), B.Sampling(do_sample=True, temperature=0.8, top_p=0.9, seed=3)]
    n = 4
    alone = [B.generate(model, p, s, n, eos) for p, s in zip(prompts, settings)]
    for p, s, a in zip(prompts, settings, alone):
        assert a.ids == generate(model, p, s, n, eos)
    engine = B.Engine(model)
    gate = Gated(prompts[0], [settings[0]], n, eos, at=1)
    t0 = engine.submit(prompts[0], [gate])
    assert gate.reached.wait(120)
    t1 = engine.submit(prompts[1], [B.Rows(prompts[1], [settings[1]], n, eos)])  # joins after 1 token
    gate.go.set()
    assert t0.wait(300) and t1.wait(300)
    same(t0.outs[0], alone[0], tol=1e-4)
    same(t1.outs[0], alone[1], tol=1e-4)
    assert t1.outs[0].batch_size == 2


# ---------------------------------------------------------------- an OpenAI-compatible endpoint

class Stub(BaseHTTPRequestHandler):
    """vLLM-like /v1/completions with logprobs; an Ollama-like /v1/chat/completions without them."""
    seen: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Stub.seen.append((self.path, body))
        if body.get("model") == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model crashed")
            return
        if body.get("model") == "garbage":
            answer = b"<html>not json"
        elif self.path.endswith("/completions") and "chat" not in self.path:
            answer = json.dumps({"choices": [{"text": " blue sky", "finish_reason": "length", "logprobs": {
                "tokens": [" blue", " sky"], "token_logprobs": [-0.1, -0.7],
                "top_logprobs": [{" blue": -0.1, " red": -2.5}, {" sky": -0.7, " sea": -1.0}]}}]}).encode()
        else:
            answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Hello!"},
                                              "finish_reason": "stop", "logprobs": None}]}).encode()
        reply_json(self, answer)


@pytest.fixture(scope="module")
def stub_url():
    with loopback(Stub) as base:
        yield base


def test_endpoint_with_logprobs(stub_url):
    s = B.Sampling(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, seed=5)
    gen = B.endpoint_generate(stub_url, prompt="The", model="m", sampling=s, max_new_tokens=2)
    path, body = Stub.seen[-1]
    assert path == "/v1/completions"
    assert body == {"max_tokens": 2, "temperature": 0.7, "seed": 5, "model": "m", "top_p": 0.9, "top_k": 20,
                    "prompt": "The", "logprobs": B.TOP_ALTERNATIVES}
    assert gen.text == " blue sky" and gen.tokens == [" blue", " sky"] and gen.stop_reason == "max_new_tokens"
    assert gen.probs == pytest.approx([0.904837, 0.496585], rel=1e-5)
    assert gen.top_ids[0] == [" blue", " red"] and gen.top_probs[1][0] == pytest.approx(0.496585, rel=1e-5)
    assert B.ENDPOINT_LIMITS["probabilities"] not in gen.views_missing
    assert B.ENDPOINT_LIMITS["pipeline"] in gen.views_missing and B.ENDPOINT_LIMITS["beam"] in gen.views_missing


def test_endpoint_without_logprobs_says_what_is_missing(stub_url):
    gen = B.endpoint_generate(stub_url + "/v1/chat/completions", messages=[{"role": "user", "content": "hi"}])
    path, body = Stub.seen[-1]
    assert path == "/v1/chat/completions" and body["logprobs"] is True and body["temperature"] == 0.0
    assert gen.text == "Hello!" and gen.stop_reason == "end of text" and gen.probs == []
    assert B.ENDPOINT_LIMITS["probabilities"] in gen.views_missing


@pytest.mark.parametrize("url, kwargs, match", [
    ("ftp://x", dict(prompt="a"), "must start with http"),
    ("{stub}", dict(), "Give a prompt"),
    ("{stub}", dict(prompt="a", model="broken"), "HTTP 500"),
    ("{stub}", dict(prompt="a", model="garbage"), "not answer with JSON"),
    ("http://127.0.0.1:9", dict(prompt="a"), "did not answer"),
])
def test_endpoint_failures_are_one_clear_line(stub_url, url, kwargs, match):
    with pytest.raises(UserError, match=match):
        B.endpoint_generate(url.format(stub=stub_url), timeout=5, **kwargs)


def test_inline_mode_runs_the_batch_in_the_waiting_thread(tiny):
    """ZeroGPU's mode: no engine thread; whoever waits drives every ticket present (still one batch)."""
    model, _, prompts, alone = tiny
    engine = B.Engine(model, inline=True)
    tickets = [engine.submit(p, [B.Rows(p, [s], N, EOS)]) for p, s in zip(prompts, SETTINGS)]
    assert engine._thread is None and all(t.state == B.WAITING for t in tickets)
    assert tickets[0].wait(60)  # this thread ran the steps, for all three
    for t in tickets:
        assert t.wait(60) and t.state == B.DONE
    for t, a in zip(tickets, alone):
        same(t.outs[0], a)
    assert engine.max_batch_seen == 3 and engine._thread is None
    frames = list(engine.submit(prompts[1], [B.Rows(prompts[1], [SETTINGS[0]], 3, EOS)],
                                snapshot=lambda: "step").frames())
    assert frames == ["step"] * 3


def test_a_long_prompt_waits_while_the_cache_would_grow_too_big(tiny, monkeypatch):
    model, _, prompts, alone = tiny
    monkeypatch.setattr(B, "MAX_CACHE_TOKENS", 40)
    engine = B.Engine(model)
    gate = Gated(prompts[1], [SETTINGS[0]], 4, EOS, at=2)
    t0 = engine.submit(prompts[1], [gate])
    assert gate.reached.wait(60)
    long_prompt = prompts[0] + prompts[0]  # 2 rows x ~30 columns > 40
    t1 = engine.submit(long_prompt, [B.Rows(long_prompt, [SETTINGS[0]], 3, EOS)])
    assert t1.position() == 1
    gate.go.set()
    assert t1.wait(60) and t1.state == B.DONE and t1.outs[0].batch_size == 1  # it ran after, alone
    assert t0.state == B.DONE


# ---------------------------------------------------------------- newcomers prefilled together, prompts seen before

def test_newcomers_at_one_boundary_share_one_prefill(tiny):
    """Three requests that arrive while one runs are prefilled in one forward pass (left padding, a prompt
    prefix reused for one of them, each row with its own positions); each equals its run alone."""
    model, _, prompts, alone = tiny
    engine, gate, t0 = paused_at_two(model, prompts)
    tickets = [engine.submit(p, [B.Rows(p, [s], N, EOS)]) for p, s in zip(prompts, SETTINGS)]
    gate.go.set()
    for t in [t0] + tickets:
        assert t.wait(60) and t.state == B.DONE
    for t, a in zip(tickets, alone):
        same(t.outs[0], a)
    assert engine.prefills == 2  # the first alone, then the three together
    # the repeated prompt could reuse 14 tokens, but beside "Hi" and "The quick brown fox" that would widen every
    # row's cache to 18 columns instead of 15: nothing is reused (see test_one_reuse_length_keeps_rows_narrow)
    assert engine.reused_tokens == 0
    assert all(t.outs[0].batch_size == 4 for t in tickets)


def test_one_reuse_length_keeps_rows_narrow():
    class T:  # a stand-in for a (1, heads, n, dim) tensor: slicing keeps the shape arithmetic
        def __init__(self, n):
            self.n = n

        def __getitem__(self, index):
            return T(min(self.n, index[2].stop))

    def known(*ns):
        return [(n, [(T(n), T(n))]) if n else (0, None) for n in ns]

    assert [n for n, _ in B._common_reuse(known(14, 0, 0), [15, 1, 4])] == [0, 0, 0]  # 15 columns, not 18
    assert [n for n, _ in B._common_reuse(known(24, 24, 0), [40, 35, 30])] == [0, 0, 0]  # 40 columns, not 54
    assert [n for n, _ in B._common_reuse(known(24, 24, 0), [40, 35, 10])] == [24, 24, 0]  # as wide, less work
    assert [n for n, _ in B._common_reuse(known(30, 24, 24), [40, 35, 33])] == [24, 24, 24]  # 40 columns, not 41
    picked = B._common_reuse(known(30, 24, 24), [40, 35, 33])[0][1][0][0]
    assert picked.n == 24  # the longer prefix is cut to the common length
    assert B._common_reuse(known(0, 0), [5, 6]) == known(0, 0)


def test_a_prompt_that_starts_like_an_earlier_one_is_prefilled_from_where_they_part(tiny):
    model, tok, _, _ = tiny
    head = tok("A long preamble that every prompt of this lab starts with, like a chat template's system turn.")["input_ids"]
    first, second = head + tok(" Tell me about cats")["input_ids"], head + tok(" And dogs?")["input_ids"]
    engine = B.Engine(model)
    for prompt, sampling in ((first, SETTINGS[0]), (second, SETTINGS[1])):
        ticket = engine.submit(prompt, [B.Rows(prompt, [sampling], N, EOS)])
        assert ticket.wait(60) and ticket.state == B.DONE
    assert engine.prefills == 2 and engine.reused_tokens == len(head)
    fresh = B.Engine(model)  # nothing to reuse there
    alone = fresh.submit(second, [B.Rows(second, [SETTINGS[1]], N, EOS)])
    assert alone.wait(60) and fresh.reused_tokens == 0
    same(ticket.outs[0], alone.outs[0])
    assert ticket.outs[0].ids == generate(model, second, SETTINGS[1], N, EOS)


def test_changed_weights_or_another_adapter_reuse_nothing():
    """The store is keyed by adapter and emptied when a parameter changes (a training step, a loaded adapter)."""
    import torch

    from conftest import build_tiny_gpt2

    model, tok = build_tiny_gpt2(seed=5)
    prompt = tok("The same long prompt, submitted again after the weights have changed.")["input_ids"]
    engine = B.Engine(model)
    assert engine.submit(prompt, [B.Rows(prompt, [SETTINGS[0]], 4, EOS)]).wait(60)
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight.mul_(1.5)  # in place, as an optimizer step does
    again = engine.submit(prompt, [B.Rows(prompt, [SETTINGS[0]], N, EOS)])
    assert again.wait(60) and engine.reused_tokens == 0
    assert again.outs[0].ids == generate(model, prompt, SETTINGS[0], N, EOS)
    assert engine._prefixes.find(prompt, None)[0] == len(prompt) - 1  # stored again, for these weights
    assert engine._prefixes.find(prompt, "my-adapter") == (0, None)


def test_a_stepper_that_reads_hidden_states_gets_its_whole_prompt(tiny):
    model, _, prompts, _ = tiny

    class Hidden(B.Rows):
        wants_hidden = True
        seen = None

        def advance(self, logits, hidden, batch):
            if self.seen is None:
                self.seen = tuple(hidden.shape)
            super().advance(logits, hidden, batch)

    engine = B.Engine(model)
    assert engine.submit(prompts[0], [B.Rows(prompts[0], [SETTINGS[0]], 2, EOS)]).wait(60)
    gate = Gated(prompts[2], [SETTINGS[0]], N, EOS, at=1)
    t0 = engine.submit(prompts[2], [gate])
    assert gate.reached.wait(60)
    reader = Hidden(prompts[0], [SETTINGS[0]], 3, EOS)
    tickets = [engine.submit(prompts[0], [reader]), engine.submit(prompts[1], [B.Rows(prompts[1], [SETTINGS[0]], 3, EOS)])]
    gate.go.set()
    assert all(t.wait(60) for t in [t0] + tickets)
    assert reader.seen[1] == len(prompts[0])  # every prompt position, no padding, nothing reused for it
    assert engine.reused_tokens == 0


def test_a_bad_request_among_newcomers_fails_alone(tiny):
    model, _, prompts, alone = tiny
    engine, gate, t0 = paused_at_two(model, prompts)
    too_long = list(range(300))  # the tiny GPT-2 has 256 positions: the shared prefill fails, then each alone
    good = engine.submit(prompts[2], [B.Rows(prompts[2], [SETTINGS[2]], N, EOS)])
    bad = engine.submit(too_long, [B.Rows(too_long, [SETTINGS[0]], 3, EOS)])
    gate.go.set()
    assert bad.wait(60) and bad.state == B.ERROR and "generation failed" in bad.error
    assert good.wait(60) and good.state == B.DONE
    same(good.outs[0], alone[2])
    assert t0.wait(60) and t0.outs[0].ids == alone[0].ids


def test_smollm2_room_prefilled_together_equals_alone(smollm2):
    """Chat prompts sharing the template's system turn, arriving at once on the real model: one shared prefill
    (the system turn reused), greedy and seeded sampling as alone and as model.generate."""
    model, tok = smollm2.model, smollm2.tokenizer
    eos = B.eos_ids(model, tok)

    def chat(text):
        return tok(tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]

    prompts = [chat(t) for t in ("Why is the sky blue?", "Name three fruits.", "Describe the sea at night.")]
    settings = [B.Sampling(), B.Sampling(do_sample=True, temperature=0.8, top_p=0.9, seed=3), B.Sampling()]
    n = 6
    engine = B.Engine(model)
    gate = Gated(prompts[0], [settings[0]], n, eos, at=1)
    t0 = engine.submit(prompts[0], [gate])
    assert gate.reached.wait(120)
    tickets = [engine.submit(p, [B.Rows(p, [s], n, eos)]) for p, s in zip(prompts[1:], settings[1:])]
    gate.go.set()
    assert all(t.wait(300) for t in [t0] + tickets)
    assert engine.prefills == 2 and engine.reused_tokens >= 2 * 20  # the system turn, for each newcomer
    for t, p, s in zip(tickets, prompts[1:], settings[1:]):
        assert t.outs[0].ids == generate(model, p, s, n, eos)
        alone = B.Engine(model).submit(p, [B.Rows(p, [s], n, eos)])
        assert alone.wait(300)
        same(t.outs[0], alone.outs[0])


def test_a_stepper_failing_on_its_first_token_fails_alone(tiny):
    model, _, prompts, alone = tiny

    class Broken(B.Rows):
        def advance(self, logits, hidden, batch):
            raise ValueError("broken stepper")

    engine, gate, t0 = paused_at_two(model, prompts)
    good = engine.submit(prompts[2], [B.Rows(prompts[2], [SETTINGS[2]], N, EOS)])
    bad = engine.submit(prompts[1], [Broken(prompts[1], [SETTINGS[0]], 3, EOS)])
    gate.go.set()
    assert bad.wait(60) and bad.state == B.ERROR and "broken stepper" in bad.error
    assert good.wait(60) and good.state == B.DONE
    same(good.outs[0], alone[2])
    assert t0.wait(60) and t0.outs[0].ids == alone[0].ids
