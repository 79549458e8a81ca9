"""A sandboxed worker process per session, for model-written and attendee-written Python.

    box = Sandbox()                       # a warm worker from the pool when one is ready
    box.run("import math\\nprint(math.pi)") # RunResult(ok, output, logs, error, reason, value, seconds)
    box.define_tool(source)               # an attendee's @tool: schema back, body runs in the worker
    box.executor()                        # a smolagents PythonExecutor whose code runs in the worker
    box.reset(); box.close()              # variables, tools and files cleared; worker and folder gone

The layers, outermost first (`box.layers` says which are active here; `LAYERS` describes each):
- a separate worker process per session (shared/sandbox_worker.py), never the server process;
- a scrubbed environment: the worker (and bubblewrap, its pid 1) start with PATH and LANG only;
- bubblewrap namespaces when they work: the worker sees only the Python install, read-only, and its
  own folder; no network, its own process table, no new user namespaces;
- a seccomp filter (libseccomp through ctypes): no sockets, no exec, no fork, no ptrace, no signals
  or limits aimed at other processes;
- resource limits: CPU seconds per run, address space, file size, open files; a wall-clock timeout
  after which the host kills the worker; caps on printed output and on the reply size;
- a private temporary folder per session, removed when the session ends; files are read by the host
  only without following links;
- smolagents' LocalPythonExecutor (an AST interpreter with an import allow-list) plus this module's
  guard (no frame, code-object or private attributes, no str.format attribute walks).
A worker killed by a limit is restarted on the next request with the same folder and tools
(variables are lost, and the result says so)."""
from __future__ import annotations

import atexit
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from shared.errors import UserError

WORKER_FILE = Path(__file__).with_name("sandbox_worker.py")
INSIDE_FOLDER = "/session"  # the session folder's path inside the namespaces
INSIDE_WORKER = "/opt/sandbox/sandbox_worker.py"
DEFAULT_IMPORTS = ["math", "statistics", "json", "re", "collections", "itertools", "datetime", "random", "time",
                   "fractions", "decimal", "heapq", "bisect", "textwrap", "unicodedata", "queue", "stat", "csv"]
PROTO_MAX = 8 * 2**20  # bytes of one reply from the worker; more and it is killed (reason "output")
MAX_WORKERS = 48  # live worker processes in this server; the least recently used idle one is stopped first
IDLE_STOP_SECONDS = 900  # a worker idle this long is stopped (its folder stays until the session ends)
REASONS = {
    "import": "blocked import (smolagents' allow-list)",
    "forbidden": "refused by the interpreter or the lab's guard",
    "cpu": "CPU limit: the worker was stopped",
    "timeout": "wall-clock limit: the worker was killed",
    "memory": "memory limit",
    "output": "output limit",
    "file": "file system: outside the folder, read-only or too large",
    "disk": "the session folder went over its size limit",
    "network": "no network in the sandbox",
    "syscall": "system call refused (seccomp)",
    "crash": "the worker crashed",
    "syntax": "syntax error",
    "error": "error in the code",
    "input": "the code was not accepted",
}
LAYERS = {  # layer -> what it stops (shown in the UI and the lab README)
    "process": "a crash or a hang of the code never touches the server process; each session has its own worker",
    "environment": "no secret to read: the worker starts with PATH and LANG only (no HF_TOKEN, no server variables)",
    "namespaces": "bubblewrap: reading the server's or the repository's files, /proc of other processes, "
                  "writes outside the folder, any network",
    "seccomp": "sockets (network), exec and fork (subprocess, fork bombs), ptrace, signals to other processes",
    "rlimits": "CPU, memory and file-size bombs (the kernel stops the worker or refuses the allocation)",
    "wall_clock": "sleeping or blocked code: the host kills the worker after the time limit",
    "output_caps": "print floods and huge replies",
    "folder": "a private temporary folder per session, removed when the session ends; never read through links",
    "interpreter": "smolagents' import allow-list and dunder rules, plus the lab's guard on frames, private "
                   "attributes and format strings",
}


class SandboxError(UserError):
    """A request the sandbox cannot take (too long, worker cannot start...)."""


@dataclass(frozen=True)
class Limits:
    cpu_seconds: float = 5.0  # CPU time per run
    wall_seconds: float = 10.0  # wall-clock time per run, then the host kills the worker
    memory_mb: int = 256  # address space for the code, on top of what Python itself holds
    output_chars: int = 20_000  # printed characters per run
    file_mb: int = 8  # largest file the code may write
    folder_mb: int = 32  # everything in the session folder
    open_files: int = 64
    processes: int = 0  # RLIMIT_NPROC when > 0 (seccomp already refuses fork)
    code_chars: int = 100_000
    lifetime_cpu_seconds: int = 3600  # then the worker is replaced
    start_seconds: float = 30.0  # how long a worker may take to start


@dataclass
class RunResult:
    ok: bool
    output: str = ""  # printed text, then the last value (what /run_code returns)
    logs: str = ""  # printed text alone
    error: str = ""
    reason: str = ""  # a key of REASONS when not ok
    value: Any = None  # the last value, JSON-safe
    final: bool = False  # final_answer() was called
    seconds: float = 0.0
    restarted: bool = False  # the worker died during this run and will restart (variables lost)

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- what this machine offers

def _bwrap_argv(python: str, folder: str) -> list[str]:
    # No --die-with-parent: it fires when the *thread* that started bwrap ends (pool threads do). The worker
    # exits when its pipe from the server closes, and its CPU limit ends a busy one.
    argv = ["bwrap", "--unshare-all", "--new-session", "--hostname", "sandbox"]
    if os.geteuid() == 0:  # root: still run as an unprivileged uid inside a user namespace, with no capabilities
        argv += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    argv += ["--disable-userns", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for extra in ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives"):
        argv += ["--ro-bind-try", extra, extra]
    roots = []
    for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(python).resolve().parent.parent)}:
        p = os.path.realpath(p)
        if not p.startswith("/usr/") and p not in roots:
            roots.append(p)
    for p in sorted(roots, key=len):
        if not any(p.startswith(r + "/") for r in roots if r != p):
            argv += ["--ro-bind", p, p]
    if sys.prefix != os.path.realpath(sys.prefix):  # the venv path as the interpreter knows it
        argv += ["--symlink", os.path.realpath(sys.prefix), sys.prefix]
    argv += ["--proc", "/proc"]
    for dev in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"):  # no writable /dev or /tmp tmpfs
        argv += ["--dev-bind", dev, dev]
    argv += ["--ro-bind", str(WORKER_FILE), INSIDE_WORKER, "--bind", folder, INSIDE_FOLDER,
             "--remount-ro", "/", "--chdir", INSIDE_FOLDER, "--clearenv"]
    for k, v in _clean_env(INSIDE_FOLDER).items():
        argv += ["--setenv", k, v]
    return argv


def _clean_env(home: str) -> dict:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home}


_probe_lock = threading.Lock()
_probe: dict = {}


def namespaces_available() -> tuple[bool, str]:
    """Whether bubblewrap can build the worker's namespaces here (probed once per process)."""
    with _probe_lock:
        if "ns" not in _probe:
            if os.environ.get("GENAI_SANDBOX_NO_NAMESPACES"):
                _probe["ns"] = (False, "turned off by GENAI_SANDBOX_NO_NAMESPACES")
            elif not shutil.which("bwrap"):
                _probe["ns"] = (False, "bubblewrap is not installed (apt-get install bubblewrap)")
            else:
                folder = tempfile.mkdtemp(prefix="genai-sandbox-probe-")
                try:
                    argv = _bwrap_argv(sys.executable, folder) + ["--", sys.executable, "-I", "-c", "pass"]
                    done = subprocess.run(argv, env=_clean_env(folder), capture_output=True, timeout=30)
                    ok = done.returncode == 0
                    why = "" if ok else (done.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
                    _probe["ns"] = (ok, why if not ok else "")
                except (OSError, subprocess.TimeoutExpired) as exc:
                    _probe["ns"] = (False, f"bubblewrap failed: {exc}")
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
        return _probe["ns"]


_protected: list[bool] = []


def _protect_server() -> None:
    """Without namespaces a worker runs as the server's user; marking the server non-dumpable makes
    its /proc/<pid>/environ, mem and maps unreadable to that worker (root ignores this)."""
    if _protected or os.geteuid() == 0:
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0)  # PR_SET_DUMPABLE, 0
        _protected.append(True)
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------------------- text hygiene

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: Any, limit: int | None = None) -> str:
    """Printable, valid UTF-8 text: lone surrogates replaced, control characters shown as \\xNN."""
    text = text if isinstance(text, str) else str(text)
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"\n[... cut: {len(text) - limit:,} more characters]"
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _Dead(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


# ----------------------------------------------------------------------------- the sandbox

class Sandbox:
    """One session's worker process and private folder. Thread-safe; one request at a time."""

    def __init__(self, limits: Limits | None = None, *, imports: list[str] | None = None, interpreter: bool = True,
                 allow_raw: bool = False, file_tools: bool = True, namespaces: bool | None = None,
                 seccomp: bool = True):
        self.limits = limits or Limits()
        self.imports = list(DEFAULT_IMPORTS if imports is None else imports)
        self.interpreter, self.allow_raw, self.file_tools, self.seccomp = interpreter, allow_raw, file_tools, seccomp
        ns_ok, self.namespace_note = namespaces_available()
        self.namespaces = ns_ok if namespaces is None else (namespaces and ns_ok)
        if namespaces is False:
            self.namespace_note = "not asked for"
        self.folder = Path(tempfile.mkdtemp(prefix="genai-sandbox-"))
        if self.namespaces and os.geteuid() == 0:
            os.chmod(self.folder, 0o700)
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._buf = b""
        self._setup: list[dict] = []  # requests replayed after a restart (tools)
        self._tool_sources: dict[str, str] = {}
        self._host_tools: dict[str, Callable] = {}
        self._killed_for = ""
        self.worker_info: dict = {}
        self.restarts = 0
        self.start_seconds = 0.0
        self.last_used = time.time()
        self.closed = False
        _registry.add(self)

    # --- lifecycle
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "Sandbox":
        with self._lock:
            if self.closed:
                raise SandboxError("This sandbox was closed (the session ended); start a new conversation.")
            if not self.alive:
                self._spawn()
        return self

    def _spawn(self) -> None:
        _make_room(self)
        if not self.namespaces:
            _protect_server()
        t0 = time.perf_counter()
        python = sys.executable
        if self.namespaces:
            argv = _bwrap_argv(python, str(self.folder)) + ["--", python, "-I", "-B", INSIDE_WORKER]
            inside = INSIDE_FOLDER
        else:
            argv, inside = [python, "-I", "-B", str(WORKER_FILE)], str(self.folder)
        self._buf = b""
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      env=_clean_env(inside), cwd=str(self.folder), close_fds=True,
                                      start_new_session=True)
        cfg = {"limits": asdict(self.limits), "imports": self.imports, "interpreter": self.interpreter,
               "allow_raw": self.allow_raw, "file_tools": self.file_tools, "folder": inside, "seccomp": self.seccomp}
        try:
            self._write(cfg)
            ready = self._read(time.monotonic() + self.limits.start_seconds)
        except _Dead as exc:
            self._kill()
            raise SandboxError(f"The sandbox worker could not start ({exc}).") from None
        if ready.get("op") != "ready":
            self._kill()
            raise SandboxError("The sandbox worker did not start properly.")
        self.worker_info = ready
        self.start_seconds = time.perf_counter() - t0
        for msg in self._setup:
            self._exchange(msg, self.limits.start_seconds)

    def stop(self) -> None:
        """Stop the worker (the folder stays; the next request starts a new one)."""
        with self._lock:
            self._kill()

    def close(self) -> None:
        """End of the session: the worker is killed and the folder removed."""
        with self._lock:
            self.closed = True
            self._kill()
            shutil.rmtree(self.folder, ignore_errors=True)
        _registry.discard(self)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    # --- protocol
    def _write(self, msg: dict) -> None:
        try:
            self._proc.stdin.write(json.dumps(msg).encode() + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError, AttributeError):
            raise _Dead("crash", "the worker is gone") from None

    def _read(self, deadline: float) -> dict:
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Dead("timeout", "no answer in time")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                if self._proc.poll() is not None:
                    raise _Dead(*self._death_reason())
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self._proc.wait(timeout=5)
                raise _Dead(*self._death_reason())
            self._buf += chunk
            if len(self._buf) > PROTO_MAX:
                raise _Dead("output", f"the reply was over {PROTO_MAX // 2**20} MB")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            raise _Dead("crash", "the worker wrote something that is not a reply") from None
        if not isinstance(msg, dict):
            raise _Dead("crash", "the worker wrote something that is not a reply")
        return msg

    def _death_reason(self) -> tuple[str, str]:
        code = self._proc.returncode if self._proc else None
        sig = -code if code is not None and code < 0 else (code - 128 if code and code > 128 else 0)
        if sig == signal.SIGXCPU:
            return "cpu", f"used more than {self.limits.cpu_seconds:g} s of CPU time"
        if sig == signal.SIGXFSZ:
            return "file", f"wrote a file over {self.limits.file_mb} MB"
        if sig == signal.SIGKILL:
            return "memory", "killed by the system (out of memory?)"
        if sig:
            return "crash", f"killed by signal {signal.Signals(sig).name}"
        return "crash", f"the worker exited (status {code})"

    def _exchange(self, msg: dict, wall: float) -> dict:
        """Send one request and wait for its answer, serving callbacks (which pause the clock)."""
        self._write(msg)
        deadline = time.monotonic() + wall
        while True:
            reply = self._read(deadline)
            if reply.get("op") != "callback":
                return reply
            t0 = time.monotonic()
            fn = self._host_tools.get(str(reply.get("name")))
            try:
                if fn is None:
                    raise RuntimeError(f"no host tool named {reply.get('name')!r}")
                value = fn(*(reply.get("args") or []), **(reply.get("kwargs") or {}))
                answer = {"op": "reply", "ok": True, "value": _jsonable(value)}
            except Exception as exc:  # noqa: BLE001  the code sees the tool's error, the server keeps serving
                answer = {"op": "reply", "ok": False, "error": f"{type(exc).__name__}: {exc}"[:4000]}
            deadline += time.monotonic() - t0
            self._write(answer)

    def request(self, msg: dict, wall: float | None = None) -> dict:
        """Send a request to the worker (starting it if needed); a dead or stuck worker becomes an
        answer {"ok": False, "reason", "error", "restarted": True}."""
        with self._lock:
            self.start()
            self.last_used = time.time()
            try:
                return self._exchange(msg, wall or self.limits.wall_seconds)
            except _Dead as exc:
                self._kill()
                self.restarts += 1
                if exc.reason == "timeout":
                    text = f"stopped after {wall or self.limits.wall_seconds:g} s of wall-clock time"
                else:
                    text = str(exc)
                what = REASONS.get(exc.reason, exc.reason)
                return {"ok": False, "reason": exc.reason, "restarted": True,
                        "error": f"{what[0].upper() + what[1:]}: {text}. The worker was "
                                 "killed and will restart: variables are lost, files and tools are kept."}
            finally:
                self.last_used = time.time()

    # --- what the labs call
    def run(self, code: str, ctx: str = "main", raw: bool = False) -> RunResult:
        if not isinstance(code, str):
            return RunResult(False, error="Code must be text.", reason="input")
        if not code.strip():
            return RunResult(False, error="There is no code to run: type some Python first.", reason="input")
        if len(code) > self.limits.code_chars:
            return RunResult(False, reason="input", error=f"The code is {len(code):,} characters long; the limit is "
                                                          f"{self.limits.code_chars:,}.")
        t0 = time.perf_counter()
        reply = self.request({"op": "run", "ctx": ctx, "code": code, "raw": bool(raw)})
        result = _result(reply, time.perf_counter() - t0)
        over = self._check_folder()
        if over:
            result = replace(result, ok=False, reason="disk", error=over)
        return result

    def call_tool(self, name: str, args: dict) -> RunResult:
        t0 = time.perf_counter()
        return _result(self.request({"op": "call_tool", "name": name, "args": args}), time.perf_counter() - t0)

    def define_tool(self, source: str) -> dict:
        """Check an attendee's @tool source and make the tool available in the worker. Returns
        {"schema", "code_prompt", "tool_calling_prompt"}; raises SandboxError with the reason."""
        if not isinstance(source, str) or not source.strip():
            raise SandboxError("Write a Python function decorated with @tool first.")
        if len(source) > self.limits.code_chars:
            raise SandboxError(f"The tool is {len(source):,} characters long; the limit is {self.limits.code_chars:,}.")
        reply = self.request({"op": "define_tool", "source": source})
        if not reply.get("ok"):
            raise SandboxError(f"The tool was not accepted: {clean_text(reply.get('error', ''), 1000)}")
        name = reply["schema"]["name"]
        self._tool_sources[name] = source
        self._setup = [m for m in self._setup if not (m["op"] == "define_tool" and m.get("name") == name)]
        self._setup.insert(0, {"op": "define_tool", "source": source, "name": name})
        return {k: reply[k] for k in ("schema", "code_prompt", "tool_calling_prompt")}

    def forget_tool(self, name: str) -> None:
        self._tool_sources.pop(name, None)
        self._setup = [m for m in self._setup if not (m["op"] == "define_tool" and m.get("name") == name)]
        if self.alive:
            self.request({"op": "forget_tool", "name": name})

    def tool_sources(self) -> dict[str, str]:
        return dict(self._tool_sources)

    def set_tools(self, ctx: str, worker: list[str] | None, host: dict[str, Callable] | None = None) -> None:
        """Which tools code in `ctx` may call: worker tools by name (None: all of them) and host
        tools (callables run in this process when the code calls them: managed agents, lab tools)."""
        host = dict(host or {})
        self._host_tools.update(host)
        msg = {"op": "tools", "ctx": ctx, "worker": worker, "host": sorted(host)}
        if worker is None:
            msg.pop("worker")
        self._setup = [m for m in self._setup if not (m["op"] == "tools" and m["ctx"] == ctx)] + [msg]
        reply = self.request(msg)
        if not reply.get("ok"):
            raise SandboxError(clean_text(reply.get("error", "could not set the tools")))

    def send_variables(self, ctx: str, variables: dict) -> None:
        if variables:
            self.request({"op": "vars", "ctx": ctx, "vars": _jsonable(variables)})

    def worker_tool_names(self) -> list[str]:
        return list(self.request({"op": "tool_names"}).get("names", []))

    def reset(self) -> None:
        """Forget variables and attendee tools, and empty the folder (New conversation)."""
        with self._lock:
            self._setup = [m for m in self._setup if m["op"] != "define_tool"]
            self._tool_sources.clear()
            if self.alive:
                reply = self.request({"op": "reset"})
                if not reply.get("ok"):
                    self._kill()
            _empty_folder(self.folder)

    def files(self) -> list[dict]:
        """The session folder's files (name, bytes), listed without following any link."""
        rows = []
        for dirpath, dirnames, filenames in os.walk(self.folder, followlinks=False):
            for name in sorted(filenames):
                path = Path(dirpath, name)
                st = path.lstat()
                rows.append({"name": str(path.relative_to(self.folder)), "bytes": st.st_size,
                             "link": os.path.islink(path)})
            if len(rows) >= 1000:
                break
        return rows

    def read_file(self, name: str, limit: int = 200_000) -> str:
        """A file of the session folder as text, opened without following links (a link planted by
        the code must not make the server read its own files)."""
        path = (self.folder / name)
        try:
            path.resolve(strict=True).relative_to(self.folder.resolve())
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except (OSError, ValueError):
            raise SandboxError(f"'{name}' is not a regular file of this session's folder.") from None
        with os.fdopen(fd, "rb") as f:
            return clean_text(f.read(limit).decode("utf-8", "replace"))

    def _check_folder(self) -> str:
        total, count = 0, 0
        for dirpath, dirnames, filenames in os.walk(self.folder, followlinks=False):
            for name in filenames:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
                count += 1
        if total > self.limits.folder_mb * 2**20 or count > 5000:
            _empty_folder(self.folder)
            return (f"The session folder went over its limit ({self.limits.folder_mb} MB, 5,000 files): it was "
                    "emptied.")
        return ""

    def executor(self, ctx: str = "main"):
        """A smolagents PythonExecutor (for CodeAgent(executor=...)) running code in context `ctx`."""
        return _sandbox_executor_class()(self, ctx)

    def tool_proxies(self, names: list[str] | None = None) -> list:
        """smolagents Tools standing for the worker's tools (for a ToolCallingAgent, whose tool calls
        are made by the host): calling one runs the tool in the worker."""
        reply = self.request({"op": "tool_schemas"})
        return [sandbox_tool(self, s) for s in reply.get("schemas", []) if names is None or s["name"] in names]

    @property
    def layers(self) -> dict[str, dict]:
        """Each layer: {"active": bool, "detail": str}."""
        self.start()
        info = self.worker_info.get("layers", {})
        sec = info.get("seccomp", "unknown")
        rl = info.get("rlimits", {})
        root = os.geteuid() == 0
        return {
            "process": {"active": True, "detail": f"worker pid {self._proc.pid if self._proc else '?'}, one per session"},
            "environment": {"active": True, "detail": "variables: " + ", ".join(self.worker_info.get("env", []))},
            "namespaces": {"active": self.namespaces,
                           "detail": ("bubblewrap: own mount, pid, network, ipc, uts and user namespaces"
                                      + ("; runs as uid 65534 with no capabilities" if root else "")
                                      if self.namespaces else self.namespace_note)},
            "seccomp": {"active": sec == "", "detail": "libseccomp filter loaded" if sec == "" else sec},
            "rlimits": {"active": bool(rl), "detail": f"CPU {self.limits.cpu_seconds:g} s per run, memory "
                                                      f"+{self.limits.memory_mb} MB, files {self.limits.file_mb} MB, "
                                                      f"{self.limits.open_files} open files"},
            "wall_clock": {"active": True, "detail": f"killed after {self.limits.wall_seconds:g} s"},
            "output_caps": {"active": True, "detail": f"{self.limits.output_chars:,} printed characters per run"},
            "folder": {"active": True, "detail": f"{self.limits.folder_mb} MB, removed at session end"},
            "interpreter": {"active": self.interpreter,
                            "detail": "LocalPythonExecutor, imports: " + ", ".join(sorted(self.imports))
                            if self.interpreter else "off (raw Python: the OS layers alone)"},
        }


def _result(reply: dict, seconds: float) -> RunResult:
    logs = clean_text(reply.get("logs") or "", 50_000)
    shown = clean_text(reply.get("output") or "", 20_000)
    output = logs + (("\n" if logs and not logs.endswith("\n") else "") + shown if shown else "")
    return RunResult(ok=bool(reply.get("ok")), output=output, logs=logs, error=clean_text(reply.get("error") or "", 4000),
                     reason="" if reply.get("ok") else (reply.get("reason") or "error"), value=reply.get("value"),
                     final=bool(reply.get("final")), seconds=round(seconds, 4), restarted=bool(reply.get("restarted")))


def _jsonable(value, depth: int = 0):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth < 6 and isinstance(value, (list, tuple, set)):
        return [_jsonable(v, depth + 1) for v in value]
    if depth < 6 and isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    return str(value)


def _empty_folder(folder: Path) -> None:
    for child in list(folder.iterdir()) if folder.exists() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            try:
                child.unlink()
            except OSError:
                pass


# ----------------------------------------------------------------------------- smolagents glue

class SandboxRunError(Exception):
    """Raised to the agent loop when code failed in the sandbox; `.result` keeps the details."""

    def __init__(self, result: RunResult):
        super().__init__(result.error)
        self.result = result


class SandboxExecutorMixin:
    """The methods of a smolagents PythonExecutor whose code runs in a Sandbox's worker. The real
    class (this mixin + smolagents' PythonExecutor) is built on first use, so that importing this
    module does not import smolagents; get one with Sandbox.executor(ctx)."""

    def __init__(self, sandbox: Sandbox, ctx: str = "main"):
        self.sandbox, self.ctx = sandbox, ctx
        self.history: list[RunResult] = []  # every run, for the lab's step records

    def send_tools(self, tools: dict) -> None:
        worker = [name for name, t in tools.items() if getattr(t, "sandbox_tool", False) or name == "final_answer"]
        host = {name: _host_call(t) for name, t in tools.items() if name not in worker}
        self.sandbox.set_tools(self.ctx, worker, host)

    def send_variables(self, variables: dict) -> None:
        self.sandbox.send_variables(self.ctx, variables)

    def __call__(self, code_action: str):
        from smolagents.local_python_executor import CodeOutput

        result = self.sandbox.run(code_action, ctx=self.ctx)
        self.history.append(result)
        if not result.ok:
            raise SandboxRunError(result)
        return CodeOutput(output=result.value, logs=result.logs, is_final_answer=result.final)

    def cleanup(self) -> None:
        pass


_executor_cls: list[type] = []


def _sandbox_executor_class() -> type:
    if not _executor_cls:
        from smolagents.local_python_executor import PythonExecutor

        _executor_cls.append(type("SandboxExecutor", (SandboxExecutorMixin, PythonExecutor), {}))
    return _executor_cls[0]


def _host_call(tool):
    def call(*args, **kwargs):
        if args and not kwargs and len(args) == 1 and isinstance(args[0], dict) and not hasattr(tool, "memory"):
            return tool(**args[0])
        return tool(*args, **kwargs)

    return call


def sandbox_tool(sandbox: Sandbox, schema: dict):
    """A smolagents Tool standing for a tool that lives in the worker (calls run there)."""
    from smolagents import Tool

    name = schema["name"]

    def forward(self, *args, **kwargs):
        if args:
            kwargs.update(dict(zip(schema["inputs"], args)))
        result = sandbox.call_tool(name, kwargs)
        if not result.ok:
            raise SandboxRunError(result)
        return result.value

    attrs = {"name": name, "description": schema["description"], "inputs": schema["inputs"],
             "output_type": schema["output_type"], "skip_forward_signature_validation": True, "sandbox_tool": True,
             "forward": forward}
    return type(f"SandboxTool_{name}", (Tool,), attrs)()


# ----------------------------------------------------------------------------- pool and registry

_registry: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()
_pool_lock = threading.Lock()
_spare: list[Sandbox] = []
_reaper: list[threading.Thread] = []


def _make_room(starting: Sandbox) -> None:
    live = [s for s in list(_registry) if s is not starting and s.alive]
    if len(live) < MAX_WORKERS:
        return
    idle = sorted((s for s in live if s._lock.acquire(blocking=False)), key=lambda s: s.last_used)
    for s in idle[1:]:
        s._lock.release()
    if idle:
        try:
            idle[0]._kill()
        finally:
            idle[0]._lock.release()


def new_sandbox(limits: Limits | None = None, **kwargs) -> Sandbox:
    """A started Sandbox, taken from the warm pool when its settings are the defaults (the next
    spare starts in the background), else started now."""
    _ensure_reaper()
    if limits is None and not kwargs:
        with _pool_lock:
            spare = _spare.pop() if _spare else None
        threading.Thread(target=_refill, daemon=True, name="sandbox-spare").start()
        if spare is not None and spare.alive:
            spare.last_used = time.time()
            return spare
    return Sandbox(limits, **kwargs).start()


def _refill() -> None:
    with _pool_lock:
        if _spare:
            return
    try:
        box = Sandbox().start()
    except SandboxError:
        return
    with _pool_lock:
        if _spare:
            box.close()
        else:
            _spare.append(box)


def warm_up() -> None:
    """Start the pool's spare worker now (call once at app start, after the server is up)."""
    _ensure_reaper()
    threading.Thread(target=_refill, daemon=True, name="sandbox-spare").start()


def _ensure_reaper() -> None:
    with _pool_lock:
        if _reaper and _reaper[0].is_alive():
            return
        t = threading.Thread(target=_reap, daemon=True, name="sandbox-reaper")
        _reaper[:] = [t]
        t.start()


def _reap() -> None:
    while True:
        time.sleep(60)
        now = time.time()
        for box in list(_registry):
            if box.alive and now - box.last_used > IDLE_STOP_SECONDS and box not in _spare:
                if box._lock.acquire(blocking=False):
                    try:
                        box._kill()
                    finally:
                        box._lock.release()


@atexit.register
def _close_all() -> None:
    for box in list(_registry):
        try:
            box.close()
        except Exception:  # noqa: BLE001  best effort at exit
            pass
