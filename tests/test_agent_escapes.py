"""Escape attempts against the agent sandbox (shared/sandbox.py), run in CI.

Part 1 goes through the front door, the way /run_code and the agents run code: smolagents' interpreter
plus every OS layer. Each attempt must be stopped, and the reason class says which layer stopped it.
Part 2 skips the interpreter (raw Python in the worker: what an interpreter escape would get) to check
that the OS layers stand on their own. Attempts share one warm worker per part."""
import os

import pytest

from shared.sandbox import Limits, Sandbox, namespaces_available

SECRET = "hf_escape_suite_secret_value_123"
LIMITS = Limits(cpu_seconds=2, wall_seconds=6, memory_mb=128, output_chars=5000)


@pytest.fixture(scope="module")
def box():
    os.environ["HF_TOKEN"] = SECRET  # the server holds a secret; no attempt may see it
    b = Sandbox(LIMITS).start()
    yield b
    b.close()


def stopped(box, code, *reasons):
    result = box.run(code)
    assert not result.ok, f"not stopped: {code!r} -> {result.output!r}"
    assert result.reason in reasons, f"{code!r}: reason {result.reason!r} ({result.error})"
    assert SECRET not in result.output + result.error
    return result


IMPORTS = ["import os", "import sys", "import subprocess", "import socket", "import ctypes", "import pickle",
           "import importlib", "import builtins", "import posix", "import shutil", "import io", "import pathlib",
           "import multiprocessing", "import urllib.request", "import http.client", "from os import system",
           "from subprocess import Popen", "import marshal", "import gc", "import inspect", "import operator",
           "import string", "import types", "import threading", "import signal", "import resource"]


@pytest.mark.parametrize("code", IMPORTS)
def test_imports_outside_the_allow_list(box, code):
    stopped(box, code, "import")


@pytest.mark.parametrize("code", [
    "().__class__.__bases__[0].__subclasses__()",
    "getattr((), '__class__')",
    "getattr(getattr, '__self__')",
    "type(1).mro()",
    "(lambda: 0).__globals__",
    "f = lambda: 0\nf.__code__",
    "[].__class__",
    "import random\nrandom._os",
    "import random\nrandom.__dict__",
    "import statistics\nstatistics.sys",
    "import json\njson.codecs",
    "setattr(type, '__module__', 'x')",
    "getattr(1, '__cla' + 'ss__', None)",
    "import collections\ncollections._sys",
])
def test_dunder_and_private_attribute_walks(box, code):
    stopped(box, code, "forbidden", "import")


@pytest.mark.parametrize("code", [
    "eval('1+1')", "exec('x = 1')", "open('/etc/passwd').read()", "compile('1', 'x', 'eval')", "globals()",
    "locals()", "vars()", "__import__('os')", "breakpoint()", "input()", "dir()", "memoryview(b'x')",
    "(1).__class__.__subclasses__()", "help()", "exit()",
])
def test_builtins_that_are_not_tools(box, code):
    stopped(box, code, "forbidden")


@pytest.mark.parametrize("code", [
    "g = (x for x in [1])\ng.gi_frame.f_globals",
    "g = (x for x in [1])\ngetattr(g, 'gi_' + 'frame')",
    "try:\n    1/0\nexcept Exception as e:\n    e.__traceback__.tb_frame.f_globals",
    "try:\n    1/0\nexcept Exception as e:\n    t = e.with_traceback(None)",
    "def f():\n    yield 1\nf().gi_code",
])
def test_frames_and_code_objects(box, code):
    stopped(box, code, "forbidden")


@pytest.mark.parametrize("code", [
    "'{0.__class__.__mro__}'.format(1)",
    "'{0.__globals__}'.format(final_answer)",
    "fmt = '{0.' + '_' * 2 + 'globals__}'\nfmt.format(final_answer)",
    "'{0[0]}'.format(['x'])",
    "'{x.real}'.format_map({'x': 1})",
    "f = str.format\nf('{0.__class__}', 1)",
    "getattr('{0}', 'format')",
])
def test_format_string_attribute_walks(box, code):
    stopped(box, code, "forbidden")


def test_plain_format_strings_still_work(box):
    result = box.run("x = 3.14159\nprint('{:.2f} and {}'.format(x, 'ok'), f'{x:.1f}')")
    assert result.ok and "3.14 and ok 3.1" in result.output


@pytest.mark.parametrize("code", [
    "import pickle\npickle.loads(b'cos\\nsystem\\n(S\"id\"\\ntR.')",
    "import copyreg", "import shelve", "import marshal\nmarshal.loads(b'')",
])
def test_pickle_and_friends(box, code):
    stopped(box, code, "import")


@pytest.mark.parametrize("code", [
    "import ctypes\nctypes.CDLL(None).system(b'id')",
    "from ctypes import CDLL", "import _ctypes", "import cffi",
])
def test_ctypes(box, code):
    stopped(box, code, "import")


@pytest.mark.parametrize("code", [
    "import socket\nsocket.create_connection(('127.0.0.1', 80))",
    "import urllib.request\nurllib.request.urlopen('http://127.0.0.1')",
    "import http.client", "import requests", "import httpx", "import asyncio",
])
def test_network(box, code):
    stopped(box, code, "import")


def test_cpu_bomb_is_stopped(box):
    stopped(box, "x = 0\nwhile True:\n    x += 1", "cpu", "timeout")


def test_big_power_is_stopped(box):
    stopped(box, "10 ** (10 ** 10)", "cpu", "memory", "timeout")


def test_memory_bomb_is_stopped(box):
    stopped(box, "x = [0] * (10 ** 9)", "memory")
    stopped(box, "s = 'a' * (10 ** 10)", "memory")


def test_output_flood_is_capped(box):
    result = stopped(box, "for i in range(10 ** 8):\n    print('flood', i)", "output")
    assert len(result.output) <= LIMITS.output_chars + 500


def test_sleeping_code_is_killed_by_the_wall_clock(box):
    result = stopped(box, "import time\ntime.sleep(120)", "timeout")
    assert result.restarted
    assert box.run("print('still here')").output == "still here\n"  # a fresh worker answers


@pytest.mark.parametrize("code", [
    "import os\nos.fork()", "import multiprocessing", "import subprocess\nsubprocess.Popen(['sh'])",
    "import threading",
])
def test_fork_and_processes(box, code):
    stopped(box, code, "import")


@pytest.mark.parametrize("code", [
    "write_file('../outside.txt', 'x')", "write_file('/etc/evil', 'x')", "write_file('/tmp/evil', 'x')",
    "read_file('/proc/1/environ')", "read_file('../../../../proc/self/environ')", "read_file('/etc/passwd')",
    "delete_file('../x')", "write_file('a/../../b', 'x')",
])
def test_files_outside_the_folder(box, code):
    stopped(box, code, "file")


def test_a_big_file_is_refused(box):
    stopped(box, "write_file('big.txt', 'x' * (9 * 2 ** 20))", "file", "memory")


def test_server_environment_and_files_are_out_of_reach(box):
    for code in ("import os\nos.environ", "import sys\nsys.modules", "read_file('/work/main/shared/sandbox.py')",
                 "import json\njson.loads(read_file('/proc/self/environ'))"):
        stopped(box, code, "import", "file", "forbidden")


def test_host_files_are_never_read_through_a_link(box, tmp_path):
    """A link planted in the folder must not make the server open its target."""
    target = tmp_path / "server-secret.txt"
    target.write_text(SECRET)
    os.symlink(target, box.folder / "planted")
    with pytest.raises(Exception):
        box.read_file("planted")
    stopped(box, "read_file('planted')", "file")
    os.unlink(box.folder / "planted")


# ----------------------------------------------------------------------------- part 2: the OS layers alone

needs_namespaces = pytest.mark.skipif(not namespaces_available()[0],
                                      reason=f"bubblewrap namespaces unavailable here: {namespaces_available()[1]}")


@pytest.fixture(scope="module")
def raw():
    os.environ["HF_TOKEN"] = SECRET
    b = Sandbox(LIMITS, allow_raw=True).start()
    yield b
    b.close()


def raw_stopped(raw, code, *reasons):
    result = raw.run(code, raw=True)
    assert not result.ok, f"not stopped without the interpreter: {code!r} -> {result.output!r}"
    assert result.reason in reasons, f"{code!r}: reason {result.reason!r} ({result.error})"
    assert SECRET not in result.output + result.error
    return result


def test_raw_mode_needs_the_host_to_allow_it(box):
    stopped(box, "print(1)", "forbidden") if False else None
    result = box.run("print(1)", raw=True)
    assert not result.ok and result.reason == "forbidden"


def test_seccomp_is_active(raw):
    assert raw.layers["seccomp"]["active"], raw.layers["seccomp"]["detail"]


@pytest.mark.parametrize("code", [
    "import socket\nsocket.socket()",
    "import os\nos.fork()",
    "import subprocess\nsubprocess.run(['id'])",
    "import os\nos.execv('/bin/sh', ['sh'])",
    "import os\nos.kill(os.getppid() or 1, 9)",
])
def test_seccomp_refuses_sockets_processes_and_signals(raw, code):
    raw_stopped(raw, code, "syscall", "network")


def test_os_system_cannot_start_a_shell(raw):
    result = raw.run("import os\nos.system('echo pwned > pwned.txt')\nos.path.exists('pwned.txt')", raw=True)
    assert result.ok and result.value is False


def test_the_worker_environment_holds_no_secret(raw):
    result = raw.run("import os\nsorted(os.environ)", raw=True)
    assert set(result.value) <= {"PATH", "LANG", "HOME", "TMPDIR", "PWD", "LC_CTYPE"}
    for path in ("/proc/self/environ", "/proc/1/environ"):
        out = raw.run(f"open({path!r}).read()", raw=True)
        assert SECRET not in out.output + out.error


def test_memory_and_file_size_limits_hold_without_the_interpreter(raw):
    raw_stopped(raw, "x = bytearray(2 * 1024 ** 3)", "memory")
    raw_stopped(raw, "open('big', 'wb').write(b'x' * (20 * 2 ** 20))", "file")


def test_cpu_limit_kills_the_worker(raw):
    raw_stopped(raw, "while True:\n    pass", "cpu", "timeout")


@needs_namespaces
def test_namespaces_hide_the_server(raw):
    assert raw.layers["namespaces"]["active"]
    out = raw.run("import os\nos.getppid(), sorted(p for p in os.listdir('/proc') if p.isdigit())", raw=True)
    assert out.ok and len(out.value[1]) <= 3  # bwrap and the worker: no server process in sight
    out = raw.run("open(f'/proc/{__import__(\"os\").getppid()}/environ').read()", raw=True)
    assert SECRET not in out.output
    raw_stopped(raw, "open('/work/main/shared/sandbox.py').read()", "file")
    raw_stopped(raw, f"open({str(__file__)!r}).read()", "file")


@needs_namespaces
@pytest.mark.parametrize("path", ["/etc/evil", "/usr/evil", "/tmp/evil", "/dev/shm/evil", "/evil", "/opt/sandbox/x"])
def test_namespaces_make_everything_but_the_folder_read_only(raw, path):
    raw_stopped(raw, f"open({path!r}, 'w').write('x')", "file")


@needs_namespaces
def test_no_network_even_without_seccomp():
    b = Sandbox(LIMITS, allow_raw=True, seccomp=False).start()
    try:
        assert not b.layers["seccomp"]["active"]
        result = b.run("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)", raw=True)
        assert not result.ok and result.reason in ("network", "error")
        assert "unreachable" in result.error.lower() or "timed out" in result.error.lower()
    finally:
        b.close()
