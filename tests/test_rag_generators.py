"""rag_generators: the OpenAI-compatible endpoint against a local fake server, and the choice of
generator by the registry's capability fields. Fast: no model is loaded."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "rag_chat"))

import rag_answer as ra  # noqa: E402
from test_rag_answer import _hits  # noqa: E402


class _FakeOpenAI(BaseHTTPRequestHandler):
    """Just enough of the OpenAI chat-completions protocol (streaming) for the client."""
    seen = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeOpenAI.seen.append((self.path, body))
        words = ["The ", "museum ", "opens ", "at ", "9am ", "[1]."]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for w in words:
            event = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body.get("model") or "fake",
                     "system_fingerprint": "fake", "choices": [{"index": 0, "delta": {"role": "assistant", "content": w},
                                                                 "logprobs": None, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


def test_openai_compatible_endpoint_against_a_local_fake_server():
    from rag_generators import EndpointGenerator, GeneratorError, normalize_base_url

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        gen = EndpointGenerator(url, model="my-model")
        messages = ra.build_messages("When does it open?", _hits(["The museum opens at 9am."]))
        text = "".join(gen.stream(messages, max_new_tokens=30))
        assert text == "The museum opens at 9am [1]."
        path, body = _FakeOpenAI.seen[-1]
        assert path == "/v1/chat/completions" and body["model"] == "my-model" and body["stream"] is True
        assert body["messages"][0]["content"] == ra.SYSTEM_RULES
        assert "### system" in gen.prompt_text(messages)
    finally:
        server.shutdown()
    dead = EndpointGenerator(url, timeout=2)
    with pytest.raises(GeneratorError, match="failed"):
        list(dead.stream(messages))
    with pytest.raises(GeneratorError, match="http"):
        normalize_base_url("localhost:8000")
    assert normalize_base_url("http://h:1/v1/chat/completions") == "http://h:1/v1"


def test_a_model_that_needs_a_gpu_is_refused_on_a_cpu_from_the_registry(monkeypatch):
    """The registry says which models need a GPU (spec.needs_gpu), not their display names."""
    import dataclasses

    import rag_generators
    import shared.device
    from shared import models
    from rag_generators import GeneratorError, LocalGenerator

    monkeypatch.setattr(shared.device, "pick_device", lambda: "cpu")
    big = next(s for s in models.REGISTRY["chat"] if s.needs_gpu)
    with pytest.raises(GeneratorError, match="needs a GPU"):
        LocalGenerator(big.name)
    renamed = dataclasses.replace(big, name="A big model")  # no "(GPU)" in its name: still refused
    monkeypatch.setitem(models.REGISTRY, "chat", [*models.REGISTRY["chat"], renamed])
    with pytest.raises(GeneratorError, match="needs a GPU"):
        LocalGenerator("A big model")
    assert rag_generators.make_generator(rag_generators.EXTRACTIVE).kind == "extractive"


def test_a_stop_request_ends_generation_at_the_next_token(tiny_gpt2):
    """The chat's Stop goes through a shared job: its should_stop ends model.generate (shared.jobs'
    stopping criterion), and the text written so far is kept."""
    from types import SimpleNamespace

    from rag_generators import LocalGenerator

    model, tokenizer = tiny_gpt2
    gen = object.__new__(LocalGenerator)
    gen.loaded = SimpleNamespace(model=model, tokenizer=tokenizer)
    messages = [{"role": "user", "content": "Tell me a long story about the sea."}]
    full = "".join(gen.stream(messages, max_new_tokens=40))
    asked = []

    def should_stop():  # a stop requested before the first token: generate ends after one
        asked.append(1)
        return True

    stopped = "".join(gen.stream(messages, max_new_tokens=40, should_stop=should_stop))
    assert asked and len(stopped) < len(full)
    assert len(tokenizer(stopped)["input_ids"]) <= 2 < len(tokenizer(full)["input_ids"])
