"""The sandboxed worker process (the inside half of shared/sandbox.py; read that module first).

Started by the host as `python -I sandbox_worker.py` inside whatever OS layers the host could set up
(bubblewrap namespaces when they work), with a scrubbed environment. It imports only the standard
library and smolagents, so it runs where neither `shared` nor the repository is visible. It then
locks itself down (resource limits, a seccomp filter when libseccomp loads) BEFORE it reads any
untrusted code, and serves one JSON request per line on a private pipe:

    run          execute code in a named context with smolagents' LocalPythonExecutor (its import
                 allow-list, plus the guards below); `raw` skips the interpreter (tests of the OS layers)
    tools        which tools a context's code may call (worker tools, and host tools as callbacks)
    define_tool  an attendee's `@tool` function: schema derived without running it, body interpreted
    call_tool    call a worker tool (for ToolCallingAgent, whose tool calls come from the host)
    vars, reset, files, read_file, ping

While code runs, a call to a host tool (a managed agent, the lab's retrieval) is sent up as a
`callback` line and the worker waits for the `reply`, serving nested requests meanwhile."""
from __future__ import annotations

import ast
import json
import os
import resource
import signal
import sys
import time

PROTO_MAX = 8 * 2**20  # bytes of one request line
EXTRA_ALLOWED_PRIVATE = {"_asdict", "_replace", "_fields", "_make"}
# Attribute names the interpreter layer refuses on top of smolagents' dunder rule: frames, code objects,
# generator internals and the format-string doors (str.format walks attributes in C, out of the AST's sight).
DENIED_ATTRIBUTES = {
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "ag_await",
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "co_code", "co_consts",
    "co_names", "func_globals", "func_code", "mro", "format", "format_map", "with_traceback", "im_func",
}


class Refused(Exception):
    """The lab's guard refused the code before it ran (reason class 'forbidden')."""


# ----------------------------------------------------------------------------- OS layers (inside)

def apply_limits(limits: dict) -> dict:
    """Resource limits for this process; returns what was set."""
    done = {}
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, key, scale in (("RLIMIT_FSIZE", "file_mb", 2**20), ("RLIMIT_NOFILE", "open_files", 1)):
        value = int(limits[key] * scale)
        resource.setrlimit(getattr(resource, name), (value, value))
        done[name] = value
    # Memory: what the process holds now (Python + smolagents) plus the budget for the code.
    with open("/proc/self/statm") as f:
        vsz = int(f.read().split()[0]) * resource.getpagesize()
    mem = vsz + int(limits["memory_mb"] * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    done["RLIMIT_AS"] = mem
    # CPU: a hard cap on the worker's lifetime; each run lowers the soft limit to now + its budget.
    life = int(limits["lifetime_cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (life, life))
    done["RLIMIT_CPU"] = life
    nproc = int(limits.get("processes") or 0)
    if nproc:
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            done["RLIMIT_NPROC"] = nproc
        except (ValueError, OSError):
            pass
    # A file over RLIMIT_FSIZE: an OSError for the code (EFBIG), not a dead worker.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return done


def apply_seccomp() -> str:
    """A seccomp-BPF filter through libseccomp (ctypes, no pip package): no sockets, no exec, no new
    processes (threads stay allowed), no ptrace or cross-process memory access, no signals or limits
    aimed at other processes, no namespaces or mounts. Returns '' when active, else why not."""
    import ctypes
    import errno

    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return "libseccomp.so.2 is not installed"
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]

    class ArgCmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    allow, ne, masked_eq = 0x7FFF0000, 1, 7

    def errno_action(code):
        return 0x00050000 | (code & 0xFFFF)

    ctx = lib.seccomp_init(allow)
    if not ctx:
        return "seccomp_init failed"

    def rule(name, action, *cmps):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return
        arr = (ArgCmp * max(1, len(cmps)))(*cmps)
        rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr)
        if rc < 0:
            raise OSError(-rc, f"seccomp rule for {name}")

    deny = errno_action(errno.EPERM)
    try:
        for name in ("socket", "socketpair", "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv",
                     "process_vm_writev", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "bpf",
                     "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "kexec_load",
                     "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff",
                     "acct", "io_uring_setup", "kill", "tkill", "setpriority", "sched_setaffinity", "pidfd_open",
                     "pidfd_send_signal", "pidfd_getfd", "memfd_create", "name_to_handle_at", "open_by_handle_at"):
            rule(name, deny)
        rule("clone3", errno_action(errno.ENOSYS))  # glibc falls back to clone(), checked below
        rule("clone", deny, ArgCmp(0, masked_eq, 0x00010000, 0))  # no CLONE_THREAD: a new process
        rule("tgkill", deny, ArgCmp(0, ne, os.getpid(), 0))  # signals to itself only
        rule("prlimit64", deny, ArgCmp(0, ne, 0, 0))  # its own limits only
        if lib.seccomp_load(ctx) < 0:
            return "seccomp_load failed (the platform may forbid it)"
    except OSError as exc:
        return f"seccomp rules failed: {exc}"
    return ""


# ----------------------------------------------------------------------------- output

class OutputLimit(Exception):
    """Printed more than the output cap (reason class 'output')."""


def capped_print_container(cap: int):
    """smolagents' PrintContainer with a cap: a print flood stops at `cap` characters instead of
    growing until memory runs out."""
    from smolagents import local_python_executor as lpe

    class CappedPrintContainer(lpe.PrintContainer):
        def append(self, text):
            if len(self.value) + len(text) > cap:
                self.value += text[:max(0, cap - len(self.value))]
                raise OutputLimit(f"output limit: more than {cap:,} characters printed")
            self.value += text
            return self

        def __iadd__(self, other):
            return self.append(str(other))

    return CappedPrintContainer


def jsonable(value, depth: int = 0):
    """A JSON-safe copy of `value` (containers kept, anything else as its repr)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and value != value:
            return repr(value)
        return value
    if depth < 6 and isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in list(value)[:1000]]
    if depth < 6 and isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in list(value.items())[:1000]}
    try:
        return repr(value)[:20_000]
    except Exception as exc:  # noqa: BLE001  a hostile __repr__
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


# ----------------------------------------------------------------------------- the lab's guard

def guard(code: str) -> None:
    """Refuse, before running, what the interpreter would let through to dangerous places:
    frame/code/generator internals, private attributes, and str.format's attribute walk."""
    import string

    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = node.attr
            if name in DENIED_ATTRIBUTES and not (name in ("format", "format_map") and _literal_format(node)):
                raise Refused(f"attribute '{name}' is off limits in the sandbox")
            if name.startswith("_") and name not in EXTRA_ALLOWED_PRIVATE and not (
                    name.startswith("__") and name.endswith("__")):
                raise Refused(f"private attribute '{name}' is off limits in the sandbox")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "{" in node.value:
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(node.value) if f]
            except ValueError:
                continue
            if any("." in f or "[" in f for f in fields):
                raise Refused("format fields with attribute or index access ('{0.x}', '{0[k]}') are off limits")


def _literal_format(node: ast.Attribute) -> bool:
    """`'...'.format(...)` on a string literal: allowed (its fields are checked by guard())."""
    return isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def safe_getattr(obj, name, *default):
    if not isinstance(name, str):
        raise TypeError("attribute name must be a string")
    if name in DENIED_ATTRIBUTES or (name.startswith("_") and name not in EXTRA_ALLOWED_PRIVATE):
        raise Refused(f"attribute '{name}' is off limits in the sandbox")
    return getattr(obj, name, *default)


def safe_setattr(obj, name, value):
    if not isinstance(name, str) or name.startswith("_") or name in DENIED_ATTRIBUTES:
        raise Refused(f"setting attribute '{name}' is off limits in the sandbox")
    return setattr(obj, name, value)


def safe_hasattr(obj, name):
    try:
        safe_getattr(obj, name)
        return True
    except (AttributeError, Refused):
        return False


# ----------------------------------------------------------------------------- files (worker tools)

def _inside(path: str) -> str:
    """The absolute path of `path` inside the session folder (the working directory), refusing
    anything that leaves it, goes through a symbolic link, or names a special file."""
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise ValueError("give a file name inside the session folder, e.g. 'notes.txt'")
    root = os.getcwd()
    full = os.path.normpath(os.path.join(root, path))
    if full != root and not full.startswith(root + os.sep):
        raise PermissionError(f"'{path}' is outside the session folder")
    probe = root
    for part in os.path.relpath(full, root).split(os.sep):
        probe = os.path.join(probe, part)
        if os.path.islink(probe):
            raise PermissionError(f"'{path}' goes through a symbolic link; not allowed")
    return full


def make_file_tools(limits: dict) -> dict:
    from smolagents import tool

    max_bytes = int(limits["file_mb"] * 2**20)
    folder_bytes = int(limits["folder_mb"] * 2**20)

    @tool
    def list_files() -> str:
        """Lists the files in this session's private folder, with their sizes in bytes."""
        rows = []
        for dirpath, dirnames, filenames in os.walk(".", followlinks=False):
            for name in sorted(filenames):
                p = os.path.join(dirpath, name)[2:]
                st = os.lstat(p)
                rows.append(f"{p}\t{st.st_size}")
            if len(rows) > 500:
                break
        return "\n".join(rows) if rows else "(the folder is empty)"

    @tool
    def read_file(path: str) -> str:
        """Reads a text file from this session's private folder.

        Args:
            path: the file name, relative to the session folder, e.g. 'notes.txt'.
        """
        full = _inside(path)
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            data = f.read(max_bytes + 1)
        text = data[:200_000].decode("utf-8", errors="replace")
        return text + ("\n[... cut at 200,000 characters]" if len(data) > 200_000 else "")

    @tool
    def write_file(path: str, content: str) -> str:
        """Writes (replaces) a text file in this session's private folder.

        Args:
            path: the file name, relative to the session folder, e.g. 'notes.txt'; sub-folders are created.
            content: the text to write.
        """
        full = _inside(path)
        data = str(content).encode("utf-8", errors="replace")
        if len(data) > max_bytes:
            raise OSError(27, f"File too large: {len(data):,} bytes is over the {max_bytes:,}-byte file limit")
        used = sum(os.lstat(os.path.join(d, n)).st_size for d, _, names in os.walk(".") for n in names)
        if used + len(data) > folder_bytes:
            raise OSError(27, f"File too large: the session folder would go over {folder_bytes // 2**20} MB")
        os.makedirs(os.path.dirname(full), exist_ok=True)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return f"wrote {len(data)} bytes to {os.path.relpath(full)}"

    @tool
    def delete_file(path: str) -> str:
        """Deletes a file from this session's private folder.

        Args:
            path: the file name, relative to the session folder.
        """
        full = _inside(path)
        if os.path.isdir(full):
            raise IsADirectoryError(f"'{path}' is a folder")
        os.unlink(full)
        return f"deleted {os.path.relpath(full)}"

    return {t.name: t for t in (list_files, read_file, write_file, delete_file)}


# ----------------------------------------------------------------------------- attendee tools

SAFE_ANNOTATION_NAMES = {"int", "float", "str", "bool", "list", "dict", "tuple", "Any", "Optional", "Union", "None",
                         "List", "Dict", "Tuple"}


def tool_schema(source: str):
    """Parse an attendee's tool source: one function decorated with @tool (plus imports). Returns
    (function node, schema dict) without running any of the code: the schema comes from a stub with
    the same signature and docstring, whose annotations and defaults were checked to be plain."""
    import typing

    from smolagents._function_type_hints_utils import get_json_schema

    tree = ast.parse(source)
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    others = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.Import, ast.ImportFrom))
              and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    if len(funcs) != 1 or others:
        raise ValueError("write exactly one function decorated with @tool (imports above it are fine)")
    fn = funcs[0]
    if [d.id for d in fn.decorator_list if isinstance(d, ast.Name)] != ["tool"] or len(fn.decorator_list) != 1:
        raise ValueError("decorate the function with @tool (and nothing else)")
    for node in [*(a.annotation for a in fn.args.args + fn.args.kwonlyargs), fn.returns]:
        for sub in ast.walk(node) if node is not None else []:
            if isinstance(sub, ast.Name) and sub.id not in SAFE_ANNOTATION_NAMES:
                raise ValueError(f"type hint '{sub.id}' is not supported; use int, float, str, bool, list, dict, Any")
            if not isinstance(sub, (ast.Name, ast.Subscript, ast.Tuple, ast.List, ast.BinOp, ast.BitOr, ast.Constant,
                                    ast.Load)):
                raise ValueError("type hints must be plain types such as int, list[str] or str | None")
    for default in fn.args.defaults + [d for d in fn.args.kw_defaults if d is not None]:
        ast.literal_eval(default)  # ValueError for anything but a literal
    if fn.args.vararg or fn.args.kwarg:
        raise ValueError("*args and **kwargs are not supported in tools")
    stub_def = _without_decorators(fn)
    stub_def.body = [ast.Pass()]
    module = ast.fix_missing_locations(ast.Module(body=[stub_def], type_ignores=[]))
    names = {"Any": typing.Any, "Optional": typing.Optional, "Union": typing.Union, "List": typing.List,
             "Dict": typing.Dict, "Tuple": typing.Tuple, "int": int, "float": float, "str": str, "bool": bool,
             "list": list, "dict": dict, "tuple": tuple, "__builtins__": {}}
    exec(compile(module, "<tool stub>", "exec"), names)  # noqa: S102  a def with checked hints and literal defaults
    stub = names[fn.name]
    stub.__doc__ = ast.get_docstring(fn)
    if not stub.__doc__:
        raise ValueError("add a docstring: a description, then 'Args:' with one line per argument")
    schema = get_json_schema(stub)["function"]
    if "return" not in schema:
        if schema["parameters"]["properties"]:
            raise ValueError("add a return type hint, e.g. '-> str'")
        schema["return"] = {"type": "null"}
    return fn, {"name": schema["name"], "description": schema["description"],
                "inputs": schema["parameters"]["properties"], "output_type": schema["return"]["type"]}


# ----------------------------------------------------------------------------- the worker

class Worker:
    def __init__(self, reader, writer, cfg: dict):
        from smolagents import local_python_executor as lpe
        from smolagents.default_tools import FinalAnswerTool

        self.lpe = lpe
        self.reader, self.writer, self.cfg = reader, writer, cfg
        self.limits = cfg["limits"]
        self.imports = list(cfg.get("imports") or [])
        self.interpreter = bool(cfg.get("interpreter", True))
        lpe.PrintContainer = capped_print_container(int(self.limits["output_chars"]))
        self.contexts: dict[str, object] = {}
        self.ctx_tools: dict[str, tuple[list, list]] = {}
        self.worker_tools = dict(make_file_tools(self.limits)) if cfg.get("file_tools", True) else {}
        self.worker_tools["final_answer"] = FinalAnswerTool()
        self.user_tools: set[str] = set()
        self.cpu_budget = float(self.limits["cpu_seconds"])

    # --- protocol
    def send(self, msg: dict) -> None:
        self.writer.write(json.dumps(msg, ensure_ascii=True).encode() + b"\n")
        self.writer.flush()

    def receive(self) -> dict | None:
        line = self.reader.readline(PROTO_MAX + 1)
        if not line:
            return None
        return json.loads(line)

    def serve(self) -> None:
        while True:
            msg = self.receive()
            if msg is None:
                return
            self.send(self.handle(msg))

    def handle(self, msg: dict) -> dict:
        op = msg.get("op")
        try:
            if op == "run":
                return self.run(msg.get("ctx", "main"), msg["code"], bool(msg.get("raw")))
            if op == "tools":
                self.ctx_tools[msg.get("ctx", "main")] = (list(msg.get("worker", [])), list(msg.get("host", [])))
                self._install_tools(msg.get("ctx", "main"))
                return {"ok": True}
            if op == "define_tool":
                return self.define_tool(msg["source"])
            if op == "forget_tool":
                self.worker_tools.pop(msg["name"], None)
                self.user_tools.discard(msg["name"])
                return {"ok": True}
            if op == "call_tool":
                return self.call_tool(msg["name"], msg.get("args") or {})
            if op == "vars":
                self.executor(msg.get("ctx", "main")).send_variables(dict(msg.get("vars") or {}))
                return {"ok": True}
            if op == "reset":
                self.contexts.clear()
                for name in list(self.user_tools):
                    self.worker_tools.pop(name, None)
                self.user_tools.clear()
                return {"ok": True}
            if op == "tool_schemas":
                return {"ok": True, "schemas": [{"name": t.name, "description": t.description, "inputs": t.inputs,
                                                 "output_type": t.output_type}
                                                for n, t in sorted(self.worker_tools.items()) if n != "final_answer"]}
            if op == "tool_names":
                return {"ok": True, "names": sorted(self.worker_tools)}
            if op == "ping":
                return {"ok": True, "pid": os.getpid()}
            return {"ok": False, "error": f"unknown request {op!r}", "reason": "error"}
        except Exception as exc:  # noqa: BLE001  the worker answers every request
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "reason": classify(exc)}

    # --- contexts and tools
    def executor(self, ctx: str):
        ex = self.contexts.get(ctx)
        if ex is None:
            ex = self.lpe.LocalPythonExecutor(
                additional_authorized_imports=self.imports, max_print_outputs_length=int(self.limits["output_chars"]),
                additional_functions={"getattr": safe_getattr, "setattr": safe_setattr, "hasattr": safe_hasattr},
                timeout_seconds=None)  # the host's wall clock kills instead: a stuck thread would live on
            self.contexts[ctx] = ex
            self._install_tools(ctx)
        return ex

    def _install_tools(self, ctx: str) -> None:
        ex = self.contexts.get(ctx)
        if ex is None:
            return
        worker_names, host_names = self.ctx_tools.get(ctx, (None, []))
        if worker_names is None:
            tools = dict(self.worker_tools)
        else:
            tools = {n: self.worker_tools[n] for n in worker_names if n in self.worker_tools}
            tools.setdefault("final_answer", self.worker_tools["final_answer"])
        for name in host_names:
            tools[name] = self._host_proxy(name)
        ex.send_tools(tools)

    def _host_proxy(self, name: str):
        def call_host(*args, **kwargs):
            self.send({"op": "callback", "name": name, "args": jsonable(list(args)), "kwargs": jsonable(kwargs)})
            while True:  # serve nested requests (a managed agent's code) until the reply comes
                msg = self.receive()
                if msg is None:
                    raise SystemExit(0)
                if msg.get("op") == "reply":
                    if not msg.get("ok"):
                        raise RuntimeError(msg.get("error") or f"{name} failed")
                    return msg.get("value")
                self.send(self.handle(msg))

        call_host.__name__ = name
        return call_host

    def define_tool(self, source: str) -> dict:
        from smolagents import Tool

        if self.interpreter:
            guard(source)
        fn_node, schema = tool_schema(source)
        name = schema["name"]
        if name in self.worker_tools and name not in self.user_tools:
            raise ValueError(f"'{name}' is a built-in tool's name; choose another")
        # The body runs in its own interpreter context (import allow-list and guards), never as real Python.
        body_source = ast.unparse(ast.Module(body=[*[n for n in ast.parse(source).body if n is not fn_node and
                                                     isinstance(n, (ast.Import, ast.ImportFrom))],
                                                   _without_decorators(fn_node)], type_ignores=[]))
        ctx = f"tool:{name}"
        self.contexts.pop(ctx, None)
        ex = self.executor(ctx)
        ex(body_source)
        func = ex.custom_tools.get(name) or ex.state[name]
        attrs = {"name": name, "description": schema["description"], "inputs": schema["inputs"],
                 "output_type": schema["output_type"], "skip_forward_signature_validation": True,
                 "forward": lambda self, *a, **k: func(*a, **k)}
        tool = type(f"UserTool_{name}", (Tool,), attrs)()
        self.worker_tools[name] = tool
        self.user_tools.add(name)
        for c in list(self.contexts):
            self._install_tools(c)
        return {"ok": True, "schema": schema, "code_prompt": tool.to_code_prompt(),
                "tool_calling_prompt": tool.to_tool_calling_prompt()}

    def call_tool(self, name: str, args: dict) -> dict:
        tool = self.worker_tools.get(name)
        if tool is None:
            return {"ok": False, "error": f"no tool named {name!r} in the sandbox", "reason": "error"}
        self._cpu_window()
        start = time.perf_counter()
        value = tool(**args) if isinstance(args, dict) else tool(args)
        return {"ok": True, "value": jsonable(value), "output": _short(value), "seconds": time.perf_counter() - start}

    # --- running code
    def _cpu_window(self) -> None:
        used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (min(hard, int(used + self.cpu_budget) + 1), hard))

    def run(self, ctx: str, code: str, raw: bool) -> dict:
        self._cpu_window()
        start = time.perf_counter()
        if raw and not self.cfg.get("allow_raw"):
            return {"ok": False, "error": "raw mode is not enabled for this sandbox", "reason": "forbidden"}
        if raw or not self.interpreter:
            return self._run_raw(code, start)
        ex = self.executor(ctx)
        try:
            compile(code, "<code>", "exec", flags=ast.PyCF_ONLY_AST)
        except SyntaxError as exc:
            return {"ok": False, "error": f"SyntaxError: {exc.msg} (line {exc.lineno})", "reason": "syntax",
                    "logs": "", "seconds": time.perf_counter() - start}
        try:
            guard(code)
            out = ex(code)
        except BaseException as exc:  # noqa: BLE001  MemoryError and the interpreter's own errors included
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                raise
            logs = str(ex.state.get("_print_outputs", ""))
            return {"ok": False, "error": _error_text(exc), "reason": classify(exc), "logs": logs,
                    "seconds": time.perf_counter() - start}
        return {"ok": True, "value": jsonable(out.output), "output": _short(out.output), "logs": out.logs,
                "final": bool(out.is_final_answer), "seconds": time.perf_counter() - start}

    def _run_raw(self, code: str, start: float) -> dict:
        """Plain Python, no interpreter layer: only the OS layers stand (used to test them)."""
        import contextlib
        import io

        buf = io.StringIO()
        ns = self.contexts.setdefault("raw", {"__name__": "__main__"})
        value = None
        try:
            tree = ast.parse(code)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                exec(compile(tree, "<raw>", "exec"), ns)  # noqa: S102  deliberately unprotected by the interpreter
                if last is not None:
                    value = eval(compile(ast.Expression(last.value), "<raw>", "eval"), ns)  # noqa: S307
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            return {"ok": False, "error": _error_text(exc), "reason": classify(exc),
                    "logs": buf.getvalue()[: int(self.limits["output_chars"])], "seconds": time.perf_counter() - start}
        logs = buf.getvalue()
        cap = int(self.limits["output_chars"])
        if len(logs) > cap:
            return {"ok": False, "error": f"output limit: more than {cap:,} characters printed", "reason": "output",
                    "logs": logs[:cap], "seconds": time.perf_counter() - start}
        return {"ok": True, "value": jsonable(value), "output": _short(value), "logs": logs, "final": False,
                "seconds": time.perf_counter() - start}


def _without_decorators(fn: ast.FunctionDef) -> ast.FunctionDef:
    import copy

    fn = copy.deepcopy(fn)
    fn.decorator_list = []
    return fn


def _short(value) -> str:
    if value is None:
        return ""
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception as exc:  # noqa: BLE001
        text = f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
    return text[:20_000]


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:4000]


def classify(exc: BaseException) -> str:
    """The reason class of a failure (the lesson: which layer stopped it)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OutputLimit) or "output limit" in text:
        return "output"
    if isinstance(exc, MemoryError) or "MemoryError" in text:
        return "memory"
    if isinstance(exc, Refused) or "off limits in the sandbox" in text:
        return "forbidden"
    if "Import of " in text or "Import from " in text or "Forbidden access to module" in text:
        return "import"
    if any(s in text for s in ("Forbidden access", "Forbidden function", "Forbidden call", "is not supported",
                               "Invoking a builtin function", "not among the explicitly allowed tools",
                               "Cannot assign to name")):
        return "forbidden"
    if "Reached the max number of operations" in text or "Maximum number of" in text or "iterations in While" in text:
        return "cpu"
    if isinstance(exc, SyntaxError) or "Code parsing failed" in text:
        return "syntax"
    if isinstance(exc, OSError) and getattr(exc, "errno", None) in (1, 38):  # EPERM, ENOSYS: seccomp said no
        return "syscall"
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 101:  # ENETUNREACH: an empty network namespace
        return "network"
    if isinstance(exc, OSError) and getattr(exc, "errno", None) in (2, 13, 21, 27, 30):  # ENOENT EACCES EISDIR EFBIG EROFS
        return "file"
    if isinstance(exc, PermissionError) or "outside the session folder" in text or "Read-only file system" in text \
            or "File too large" in text or "symbolic link" in text:
        return "file"
    return "error"


def main() -> None:
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    reader, writer = os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")
    cfg = json.loads(reader.readline(PROTO_MAX))
    os.chdir(cfg["folder"])
    sys.setrecursionlimit(2000)
    from smolagents import local_python_executor  # noqa: F401  (import before the limits tighten)

    layers = {"rlimits": apply_limits(cfg["limits"])}
    layers["seccomp"] = apply_seccomp() if cfg.get("seccomp", True) else "not asked for"
    worker = Worker(reader, writer, cfg)
    worker.send({"op": "ready", "pid": os.getpid(), "uid": os.getuid(), "layers": layers,
                 "folder": os.getcwd(), "env": sorted(os.environ)})
    worker.serve()


if __name__ == "__main__":
    main()
