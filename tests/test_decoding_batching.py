"""The decoding explorer on the shared batch (shared.batching): runs of different users that are in
the batch together (joining mid-generation, with other prompts and strategies, beam search and
contrastive search included) give exactly what each gives alone; a run that finds the batch full
shows its place in line and then runs; the same comparison on an OpenAI-compatible server
(/compare_endpoint) through a loopback stand-in. Tiny GPT-2."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces" / "decoding_explorer"))

import decoding_loop as dl  # noqa: E402
import decoding_service as svc  # noqa: E402
import decoding_strategies as ds  # noqa: E402
from shared import batching as B  # noqa: E402
from shared import jobs  # noqa: E402
from conftest import loopback, reply_json

N = 10


class Gated(B.Rows):
    """A row that holds the engine's thread after its `at`-th token until released."""

    def __init__(self, *args, at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.at, self.reached, self.go = at, threading.Event(), threading.Event()

    def advance(self, logits, hidden, batch):
        super().advance(logits, hidden, batch)
        if len(self.outs[0].ids) == self.at:
            self.reached.set()
            assert self.go.wait(60)


@pytest.fixture(scope="module")
def tiny(tiny_gpt2):
    model, tok = tiny_gpt2
    return model, tok


def hold(model, tok, at=2, rows=1):
    """A ticket of another 'user' that pauses the engine: runs submitted meanwhile join together."""
    prompt = tok("Somebody else is already generating here")["input_ids"]
    gate = Gated(prompt, [B.Sampling()] * rows, 3 * N, [50256], at=at)
    ticket = B.engine_for(model).submit(prompt, [gate])
    assert gate.reached.wait(60)
    return gate, ticket


def test_runs_of_different_users_in_one_batch_equal_each_alone(tiny):
    model, tok = tiny
    users = [(tok("The quick brown fox jumps over the lazy dog because")["input_ids"],
              ds.resolve(["greedy", "top_p", "beam", "contrastive"])[0], 5),
             (tok("Once")["input_ids"], ds.resolve(["top_k", "repetition_penalty", "min_p"])[0], 9)]
    alone = [dl.compare(model, tok, p, s, N, seed) for p, s, seed in users]
    gate, other = hold(model, tok)
    results = [None, None]

    def user(i):
        p, s, seed = users[i]
        results[i] = dl.compare(model, tok, p, s, N, seed)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    engine = B.engine_for(model)
    while engine.stats()["waiting"] < 2:  # both runs are in line behind the held step
        threading.Event().wait(0.01)
    gate.go.set()
    for t in threads:
        t.join(120)
    assert other.wait(60)
    for got, want, (_, strategies, _) in zip(results, alone, users):
        for g, w, s in zip(got, want, strategies):
            assert g.ids == w.ids and g.top_ids == w.top_ids and g.stop_reason == w.stop_reason, s.name
            assert g.probs == pytest.approx(w.probs, rel=1e-4, abs=1e-7), s.name
            assert g.picked_probs == pytest.approx(w.picked_probs, rel=1e-4, abs=1e-7), s.name
            assert g.done and g.scored
    # they did share forward passes: the other user's row + 1+1+4+4 rows + 3 rows
    assert max(o.batch_size for o in results[0]) == 1 + 10 + 3 == max(o.batch_size for o in results[1])


def test_a_run_that_finds_the_batch_full_shows_its_place_then_runs(tiny, monkeypatch):
    model, tok = tiny
    from shared.loading import Loaded
    from shared.models import Choice, ModelSpec

    loaded = Loaded(model, tok, Choice(ModelSpec("tiny-gpt2 (test fixture)", "test/tiny-gpt2", "causal", True),
                                       "embedded", "test fixture"), "cpu", "float32")
    monkeypatch.setattr(svc, "load", lambda requested=None: loaded)
    engine = B.engine_for(model)
    monkeypatch.setattr(engine, "max_rows", 3)
    gate, other = hold(model, tok, rows=2)
    job = svc.start(svc.check("Hello there", ["greedy", "beam"], 4, 0))  # 1 + 4 rows: no room beside 2
    for _ in range(600):
        if job.result is not None and job.result.position:
            break
        threading.Event().wait(0.05)
    live = job.result
    assert live.position == 1 and not live.outputs
    assert jobs.poll(job.id)["message"].startswith("waiting: next")
    gate.go.set()
    assert job.wait(120) and job.state == jobs.DONE and other.wait(60)
    expected = dl.compare(model, tok, live.run.prompt_ids, live.run.strategies, 4, 0)
    assert [o.ids for o in live.outputs] == [o.ids for o in expected] and live.position == 0


def test_closing_the_stream_takes_the_run_out_of_the_batch(tiny):
    model, tok = tiny
    prompt = tok("Stop me after two steps")["input_ids"]
    stream = dl.iter_compare(model, tok, prompt, ds.resolve(["greedy", "beam"])[0], 40, 0)
    for i, outputs in enumerate(stream):
        if i == 2:
            break
    stream.close()
    assert [len(o.ids) for o in outputs] == [3, 3]
    engine = B.engine_for(model)
    for _ in range(200):
        if engine.stats()["running"] == 0:
            break
        threading.Event().wait(0.05)
    assert engine.stats()["running"] == 0


# ---------------------------------------------------------------- the same comparison on a serving engine

class Server(BaseHTTPRequestHandler):
    """A loopback stand-in for vLLM: /v1/completions with log-probabilities, /v1/chat/completions without."""
    bodies: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Server.bodies.append((self.path, body))
        if self.path == "/v1/completions":
            answer = {"choices": [{"text": " a cat", "finish_reason": "length", "logprobs": {
                "tokens": [" a", " cat"], "token_logprobs": [-0.5, -1.5],
                "top_logprobs": [{" a": -0.5, " the": -1.0}, {" cat": -1.5, " dog": -1.6}]}}]}
        else:
            answer = {"choices": [{"message": {"content": "A cat."}, "finish_reason": "stop"}]}
        data = json.dumps(answer).encode()
        reply_json(self, data)


@pytest.fixture(scope="module")
def vllm_url():
    with loopback(Server) as base:
        yield base + "/v1"


def test_compare_on_an_endpoint_with_and_without_logprobs(vllm_url):
    r = svc.compare_endpoint_json(vllm_url, "Once", ["greedy", "beam", "top_p"], 2, 7, chat_template=False,
                                  params={"top_p": {"top_p": 0.8}}, model="served")
    assert [x["strategy"] for x in r["results"]] == ["greedy", "top_p"]
    assert any("Beam search is not in the OpenAI protocol" in n for n in r["notes"])
    greedy, top_p = r["results"]
    assert greedy["text"] == " a cat" and [t["token"] for t in greedy["tokens"]] == [" a", " cat"]
    assert greedy["tokens"][1]["prob"] == pytest.approx(0.22313, rel=1e-4)
    assert greedy["tokens"][1]["top"][1][0] == " dog" and "pipeline" in " ".join(greedy["views_missing"])
    bodies = [b for p, b in Server.bodies[-2:]]
    assert bodies[0]["temperature"] == 0.0 and bodies[0]["model"] == "served" and bodies[0]["prompt"] == "Once"
    assert bodies[1]["top_p"] == 0.8 and bodies[1]["seed"] == 7 and bodies[1]["logprobs"] == 5
    chat = svc.compare_endpoint_json(vllm_url, "Once", ["greedy"], 2, 0)
    assert Server.bodies[-1][0] == "/v1/chat/completions" and chat["results"][0]["text"] == "A cat."
    assert chat["results"][0]["tokens"] == [] and "probability" in chat["results"][0]["views_missing"][0]
    assert "error" in svc.compare_endpoint_json(vllm_url, "Once", ["beam", "contrastive"], 2, 0)
    assert "did not answer" in svc.compare_endpoint_json("http://127.0.0.1:9/v1", "Once", ["greedy"], 2, 0)["error"]
