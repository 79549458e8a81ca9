"""shared/sandbox.py: the per-session worker, its protocol, tools, callbacks and the smolagents executor.
(The escape attempts are in tests/test_agent_escapes.py.)"""
import pytest

from shared.sandbox import Limits, Sandbox, SandboxError, clean_text, new_sandbox

LIMITS = Limits(cpu_seconds=2, wall_seconds=5, memory_mb=128)

ADD_TOOL = '''
@tool
def add_numbers(a: int, b: int = 2) -> int:
    """Adds two whole numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b
'''


@pytest.fixture(scope="module")
def box():
    b = Sandbox(LIMITS).start()
    yield b
    b.close()


def test_run_prints_and_returns_the_last_value(box):
    r = box.run("import statistics, json\nprint(statistics.mean([1, 2, 3]))\njson.dumps({'a': 1})")
    assert r.ok and r.logs == "2\n" and r.value == '{"a": 1}' and r.output == '2\n{"a": 1}'


def test_variables_persist_between_runs_and_contexts_are_separate(box):
    assert box.run("counter = 41").ok
    assert box.run("counter + 1").value == 42
    other = box.run("counter", ctx="other")
    assert not other.ok and "not defined" in other.error


def test_ordinary_python_from_the_issue_works(box):
    code = ("import math, statistics, json, re, collections, itertools, datetime, random\n"
            "random.seed(0)\n"
            "c = collections.Counter('abracadabra').most_common(1)\n"
            "d = datetime.date(2024, 1, 31) + datetime.timedelta(days=1)\n"
            "[math.factorial(5), statistics.median([3, 1, 2]), re.findall(r'\\d+', 'a1b22'), c[0][0],"
            " list(itertools.islice(itertools.count(), 3)), d.isoformat()]")
    r = box.run(code)
    assert r.ok, r.error
    assert r.value == [120, 2, ["1", "22"], "a", [0, 1, 2], "2024-02-01"]


@pytest.mark.parametrize("code,reason", [("", "input"), ("   \n", "input"), (None, "input"), (123, "input"),
                                         ("def f(:\n  pass", "syntax"), ("x" * 200_000, "input")])
def test_bad_code_gets_a_clear_reason(box, code, reason):
    r = box.run(code)
    assert not r.ok and r.reason == reason and r.error


def test_binary_and_odd_output_is_made_printable(box):
    r = box.run("print(''.join(chr(i) for i in range(0, 40)) + chr(0xdcff))")
    assert r.ok
    assert "\\x00" in r.output and "\x00" not in r.output
    r.output.encode("utf-8")  # valid UTF-8 (no lone surrogate)
    assert clean_text("a\x07b\ud800") == "a\\x07b?"


def test_an_attendee_tool_gets_a_schema_and_runs_in_the_worker(box):
    info = box.define_tool(ADD_TOOL)
    assert info["schema"]["name"] == "add_numbers"
    assert info["schema"]["inputs"]["a"] == {"type": "integer", "description": "the first number"}
    assert info["schema"]["inputs"]["b"]["nullable"] is True
    assert info["schema"]["output_type"] == "integer"
    assert info["code_prompt"].startswith("def add_numbers(a: integer, b: integer) -> integer:")
    assert "Takes inputs" in info["tool_calling_prompt"]
    assert box.run("add_numbers(40, 2)").value == 42
    assert box.call_tool("add_numbers", {"a": 1, "b": 5}).value == 6
    assert "add_numbers" in box.worker_tool_names()


def test_a_tool_body_is_interpreted_and_a_raising_tool_is_reported(box):
    box.define_tool('@tool\ndef sneaky() -> str:\n    """Tries to import os."""\n    import os\n    return "x"\n')
    r = box.call_tool("sneaky", {})
    assert not r.ok and r.reason == "import"
    box.define_tool('@tool\ndef fails(x: str) -> str:\n    """Always fails.\n\n    Args:\n        x: anything\n    """\n'
                    '    raise ValueError("the tool broke: " + x)\n')
    r = box.run("fails('on purpose')")
    assert not r.ok and "the tool broke: on purpose" in r.error and r.reason == "error"


@pytest.mark.parametrize("source,words", [
    ("", "Write a Python function"),
    ("def f(x: int) -> int:\n    '''Doc.\n\n    Args:\n        x: y\n    '''\n    return x", "@tool"),
    ("@tool\ndef f(x: int) -> int:\n    return x", "docstring"),
    ("@tool\ndef f(x: __import__('os').system('id')) -> str:\n    '''D.\n\n    Args:\n        x: y\n    '''\n", "type hint"),
    ("@tool\ndef f(x: int = print('hi')) -> str:\n    '''D.\n\n    Args:\n        x: y\n    '''\n", "not accepted"),
    ("import os\nos.system('id')\n@tool\ndef f() -> str:\n    '''D.'''\n", "exactly one function"),
    ("@tool\ndef list_files() -> str:\n    '''Shadows a built-in.'''\n    return ''\n", "built-in"),
])
def test_bad_tools_are_refused_with_a_reason(box, source, words):
    with pytest.raises(SandboxError) as err:
        box.define_tool(source)
    assert words in str(err.value)


def test_host_tools_are_called_back_with_the_clock_paused(box):
    calls = []

    def double(x):
        calls.append(x)
        return {"twice": 2 * x}

    def broken(**kwargs):
        raise RuntimeError("host side failed")

    box.set_tools("cb", None, {"double": double, "broken": broken})
    r = box.run("r = double(21)\nr['twice']", ctx="cb")
    assert r.ok and r.value == 42 and calls == [21]
    r = box.run("broken()", ctx="cb")
    assert not r.ok and "host side failed" in r.error


def test_reset_clears_variables_tools_and_files(box):
    box.define_tool(ADD_TOOL)
    assert box.run("write_file('notes/a.txt', 'hello')\nkept = 1").ok
    assert [f["name"] for f in box.files()] == ["notes/a.txt"]
    assert box.read_file("notes/a.txt") == "hello"
    box.reset()
    assert box.files() == []
    assert not box.run("kept").ok
    assert not box.run("add_numbers(1, 2)").ok
    assert box.tool_sources() == {}


def test_a_killed_worker_restarts_with_its_files_and_tools():
    b = Sandbox(Limits(cpu_seconds=2, wall_seconds=2)).start()
    try:
        b.define_tool(ADD_TOOL)
        assert b.run("write_file('keep.txt', 'x')\nv = 1").ok
        r = b.run("import time\ntime.sleep(30)")
        assert r.reason == "timeout" and r.restarted and "restart" in r.error
        assert b.run("add_numbers(1, 1)").value == 2
        assert b.run("read_file('keep.txt')").value == "x"
        assert not b.run("v").ok  # variables are lost, as the message says
        assert b.restarts == 1
    finally:
        b.close()


def test_sessions_see_only_their_own_folder():
    a, b = Sandbox(LIMITS).start(), Sandbox(LIMITS).start()
    try:
        a.run("write_file('mine.txt', 'A')")
        assert b.run("list_files()").value == "(the folder is empty)"
        assert not b.run("read_file('mine.txt')").ok
        assert a.folder != b.folder
    finally:
        folder = a.folder
        a.close()
        b.close()
    assert not folder.exists()


def test_the_pool_hands_out_started_sandboxes():
    first = new_sandbox()
    try:
        assert first.alive and first.run("print(1)").output == "1\n"
    finally:
        first.close()


def test_layers_are_reported(box):
    layers = box.layers
    for name in ("process", "environment", "namespaces", "seccomp", "rlimits", "wall_clock", "interpreter"):
        assert set(layers[name]) == {"active", "detail"}
    assert layers["interpreter"]["active"] and layers["process"]["active"]
    assert "HF_TOKEN" not in layers["environment"]["detail"]


class _ScriptedModel:
    """Builds a smolagents Model that answers with the given steps (no model weights involved)."""

    @staticmethod
    def make(steps):
        from smolagents.models import ChatMessage, MessageRole, Model

        class Scripted(Model):
            def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kw):
                return ChatMessage(role=MessageRole.ASSISTANT, content=steps.pop(0))

        return Scripted(model_id="scripted")


def test_a_code_agent_runs_its_code_in_the_worker(box):
    from smolagents import CodeAgent

    box.reset()
    model = _ScriptedModel.make([
        "Thought: compute.\n<code>\nimport os\n</code>",
        "Thought: no os then.\n<code>\nimport math\nwrite_file('r.txt', str(math.factorial(6)))\nprint('saved')\n</code>",
        "Thought: done.\n<code>\nfinal_answer(int(read_file('r.txt')) + 1)\n</code>",
    ])
    executor = box.executor("agent")
    agent = CodeAgent(tools=box.tool_proxies(), model=model, executor=executor, max_steps=4, verbosity_level=0)
    assert agent.run("Compute 6! + 1") == 721
    assert [r.ok for r in executor.history] == [False, True, True]
    assert executor.history[0].reason == "import"
    assert box.read_file("r.txt") == "720"
