"""The agent sandbox's API through gradio_client: /run_code, /run_task (against a loopback
OpenAI-compatible endpoint: a scripted good one, one that returns garbage, one that is down), /reset,
bad input, and sessions that never see each other."""
import json
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import pytest
from conftest import import_app, loopback, reply_json, running

STEPS = [
    "Thought: compute it.\n<code>\nimport math\nwrite_file('out.txt', str(math.factorial(5)))\nprint('saved')\n</code>",
    "Thought: done.\n<code>\nfinal_answer(int(read_file('out.txt')) + 1)\n</code>",
]


class _Endpoint(BaseHTTPRequestHandler):
    mode = "good"
    seen: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Endpoint.seen.append(body)
        if _Endpoint.mode == "garbage":
            data = b"<html>definitely not JSON</html>"
        else:
            step = STEPS[min(len(body["messages"]) // 2 - 1, 1)]
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": step}}],
                               "usage": {"prompt_tokens": 100, "completion_tokens": 20}}).encode()
        reply_json(self, data)


@pytest.fixture(scope="module")
def endpoint():
    with loopback(_Endpoint) as base:
        yield base + "/v1"


@pytest.fixture(scope="module")
def url():
    app = import_app("agent_sandbox")
    with running(app.demo) as u:
        yield u


def client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def test_run_code_answers_ok_output_error(url):
    c = client(url)
    out = c.predict("import statistics\nprint(statistics.mean([1, 2, 3]))\n'done'", api_name="/run_code")
    assert out["ok"] is True and out["output"] == "2\ndone" and out["error"] == ""
    out = c.predict("import os\nos.system('id')", api_name="/run_code")
    assert out["ok"] is False and out["reason"] == "import" and "not allowed" in out["error"]


@pytest.mark.parametrize("code,reason", [
    ("", "input"), ("x = 1\n" * 200_000, "input"), ("def f(:", "syntax"), ("1/0", "error"),
    ("blob = 'x' * (10 ** 10)", "memory"), ("for i in range(10**8):\n    print(i)", "output"),
])
def test_bad_code_gets_a_clear_message(url, code, reason):
    out = client(url).predict(code, api_name="/run_code")
    assert out["ok"] is False and out["reason"] == reason and out["error"]


def test_binary_output_comes_back_as_text(url):
    out = client(url).predict("print(''.join(chr(i) for i in range(32)))", api_name="/run_code")
    assert out["ok"] and "\\x00" in out["output"]


def test_run_task_drives_a_code_agent_through_an_endpoint(url, endpoint):
    _Endpoint.mode = "good"
    c = client(url)
    out = c.predict("Compute 5! + 1 using the folder", "code", f"openai:{endpoint}|scripted", api_name="/run_task")
    assert out["error"] == "" and out["answer"] == "121"
    kinds = [s["kind"] for s in out["steps"]]
    assert kinds[:2] == ["code", "observation"] and "final_answer" in kinds
    assert out["steps"][0]["tokens_in"] == 100 and out["steps"][0]["tokens_out"] == 20
    assert all(set(s) >= {"kind", "content", "tokens_in", "tokens_out", "seconds"} for s in out["steps"])
    assert _Endpoint.seen[-1]["model"] == "scripted"
    assert "final_answer" in _Endpoint.seen[0]["messages"][0]["content"][0]["text"]  # the real system prompt


def test_run_task_with_a_garbage_or_down_endpoint_says_so(url, endpoint):
    c = client(url)
    _Endpoint.mode = "garbage"
    out = c.predict("Anything", "tool_calling", f"openai:{endpoint}|m", api_name="/run_task")
    assert "not an OpenAI-style chat completion" in out["error"]
    out = c.predict("Anything", "code", "openai:http://127.0.0.1:9|m", api_name="/run_task")
    assert "Could not reach the endpoint" in out["error"]
    _Endpoint.mode = "good"


@pytest.mark.parametrize("task,agent,model,words", [
    ("", "code", "smollm2", "non-empty"),
    ("x" * 100_000, "code", "hf:some/model", "100,000 characters"),
    ("hi", "nonsense", "smollm2", "agent must be"),
    ("hi", "code", "human", "interactive"),
    ("hi", "code", "banana", "Unknown model"),
    ("hi", "code", "openai:not-a-url|m", "http://"),
])
def test_run_task_bad_input(url, task, agent, model, words):
    out = client(url).predict(task, agent, model, api_name="/run_task")
    assert words in out["error"] and out["answer"] == ""


def test_reset_clears_memory_and_files(url):
    c = client(url)
    assert c.predict("write_file('a.txt', 'x')\nkeep = 1", api_name="/run_code")["ok"]
    out = c.predict(api_name="/reset")
    assert out == {"ok": True, "files": [], "tools": []}
    assert not c.predict("keep", api_name="/run_code")["ok"]
    assert "empty" in c.predict("list_files()", api_name="/run_code")["output"]


def test_sessions_are_isolated_and_a_cpu_bomb_does_not_block_others(url):
    bomb, *others = [client(url) for _ in range(4)]
    for n, c in enumerate(others):
        c.predict(f"write_file('mine.txt', 'session {n}')\nsecret = {n}", api_name="/run_code")
    with ThreadPoolExecutor(4) as pool:
        bombing = pool.submit(bomb.predict, "x = 0\nwhile True:\n    x += 1", api_name="/run_code")
        answers = list(pool.map(lambda c: c.predict("read_file('mine.txt') + ' ' + str(secret)",
                                                    api_name="/run_code"), others))
        assert bombing.result()["reason"] in ("cpu", "timeout")
    assert [a["output"] for a in answers] == [f"session {n} {n}" for n in range(3)]
    assert "empty" in bomb.predict("list_files()", api_name="/run_code")["output"]
