"""shared.launch and shared.bootstrap: how every lab starts, and what it says when it cannot."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from shared import launch

ROOT = Path(__file__).resolve().parent.parent


def test_local_default_is_loopback(monkeypatch):
    for var in ("SPACE_ID", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(var, raising=False)
    args = launch.parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", None)


def test_space_listens_on_all_interfaces(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.setenv("SPACE_ID", "someone/decoding")
    assert launch.parse_args([]).host == "0.0.0.0"


def test_host_and_port_flags():
    args = launch.parse_args(["--host", "0.0.0.0", "--port", "9001"])
    assert (args.host, args.port) == ("0.0.0.0", 9001)


def test_bad_port_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        launch.parse_args(["--port", "http"])
    assert "invalid int value" in capsys.readouterr().err


def test_launch_kwargs_are_safe():
    kwargs = launch.launch_kwargs(launch.parse_args([]))
    assert kwargs["max_file_size"] == launch.MAX_FILE_SIZE
    assert kwargs["theme"] is not None and kwargs["css"]



def test_prepare_queues_and_cleans_up_cached_files_after_a_day():
    import gradio as gr

    with gr.Blocks() as demo:
        gr.Markdown("hello")
    assert launch.prepare(demo) is demo
    assert demo.delete_cache == launch.CACHE_CLEANUP == (3600, 86_400)
    assert demo._queue.max_size == launch.QUEUE_MAX_SIZE
    with gr.Blocks(delete_cache=(60, 600)) as own:  # a lab that chose its own keeps it
        gr.Markdown("hello")
    assert launch.prepare(own).delete_cache == (60, 600)

def test_missing_package_message_names_the_command():
    code = "import shared.bootstrap as b; b.require('json', 'no_such_package_xyz')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "no_such_package_xyz" in proc.stderr and "bash scripts/setup.sh" in proc.stderr
    assert "Traceback" not in proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http_200(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app exited with {proc.returncode}:\n{proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"no HTTP 200 from {url} within {timeout} s")


def start(app: Path, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": ""}  # prove app.py finds shared/ by itself
    proc = subprocess.Popen([sys.executable, str(app), "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("layout", ["repo, other working directory", "bundle with shared/ beside app.py"])
def test_app_starts_from_anywhere(layout, tmp_path):
    lab = ROOT / "spaces" / "decoding_explorer"
    if not lab.is_dir():
        pytest.fail("spaces/decoding_explorer is missing")
    app = lab / "app.py"
    if layout.startswith("bundle"):
        import shutil

        bundle = tmp_path / "bundle"
        shutil.copytree(lab, bundle, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "shared", bundle / "shared", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "assets", bundle / "assets")
        app = bundle / "app.py"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc, url = start(app, cwd)
    try:
        wait_for_http_200(url, proc)
    finally:
        proc.terminate()
        proc.wait(10)


def test_launch_on_a_network_address_applies_the_public_server_policy(monkeypatch):
    """`python app.py --host 0.0.0.0` serves strangers: the same rules as serve_all on the LAN."""
    from shared import hubguard, launch

    launched = {}

    class FakeDemo:
        delete_cache = (1, 1)

        def queue(self, **kw):
            return self

        def launch(self, **kw):
            launched.update(kw)

        def block_thread(self):
            launched["blocked"] = True

    monkeypatch.setenv(hubguard.PUBLIC_VAR, "0")  # restored (unset) after the test, whatever launch() sets
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    launch.launch(FakeDemo(), argv=["--host", "127.0.0.1"])
    assert launched["server_name"] == "127.0.0.1" and not hubguard.public_server()
    assert launched["blocked"]  # launched from `python app.py`, the server keeps the process running
    launch.launch(FakeDemo(), argv=["--host", "0.0.0.0"])
    assert hubguard.public_server()


# ------------------------------------------------------------------ plain JSON routes (json_api)
def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    import json
    import urllib.error

    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def json_server():
    import gradio as gr

    from conftest import running
    from shared.errors import UserError, api

    @api("Adding")
    def add(a: int, b: int = 1) -> dict:
        if not isinstance(a, int) or not isinstance(b, int):
            raise UserError("a and b must be whole numbers.")
        return {"sum": a + b}

    with gr.Blocks() as demo:
        gr.Markdown("hello")
        gr.api(add, api_name="add")
    launch.json_api(demo, add=add)
    with running(demo) as url:
        yield url.rstrip("/")


@pytest.mark.parametrize("body, status, expected", [
    (b'{"a": 2, "b": 3}', 200, {"sum": 5}),
    (b'{"a": 2}', 200, {"sum": 3}),  # defaults apply
    (b'{"a": "two"}', 400, "whole numbers"),  # the function's own error, as {"error"}
    (b"", 400, "missing a required argument: 'a'"),
    (b'{"a": 1, "c": 2}', 400, "unexpected keyword argument 'c'"),
    (b"[1, 2]", 400, "not a list"),
    (b"not json {", 400, "not JSON"),
    (b"\xff\xfe\x00garbage", 400, "not JSON"),
    (b'{"a": "' + b"x" * 1_100_000 + b'"}', 413, "at most 1,000,000"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "not JSON"),  # nested past the parser's recursion limit
])
def test_json_api_answers_and_refuses_clearly(json_server, body, status, expected):
    got_status, out = _post(json_server + "/api/add", body)
    assert got_status == status
    if isinstance(expected, dict):
        assert out == expected
    else:
        assert set(out) == {"error"} and expected in out["error"], out


def test_json_api_sits_beside_gradio(json_server):
    from gradio_client import Client

    assert Client(json_server, verbose=False).predict(4, 5, api_name="/add") == {"sum": 9}
    with urllib.request.urlopen(json_server + "/", timeout=30) as r:
        assert r.status == 200  # the page itself
    assert _post(json_server + "/api/nope", b"{}")[0] in (404, 405)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_json_api_takes_only_json_bodies(json_server, content_type):
    """A web page can post text/plain or a form anywhere without a CORS preflight; those are refused unread."""
    status, out = _post(json_server + "/api/add", b'{"a": 1}', content_type)
    assert status == 415 and "application/json" in out["error"]


def test_one_malloc_arena_on_glibc(monkeypatch):
    """shared.bootstrap asks glibc for one malloc arena (worker threads then keep big blocks as the main thread
    does); a MALLOC_ARENA_MAX the user set is left alone."""
    import platform

    from shared import bootstrap

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert bootstrap.one_malloc_arena() is glibc
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert bootstrap.one_malloc_arena() is False
