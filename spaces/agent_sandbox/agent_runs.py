"""Agent runs: task presets, the lab's tools, CodeAgent / ToolCallingAgent / planner + writer built on
the session's sandbox, and a step record for everything that happens (no gradio here).

An AgentSession belongs to one browser session (or one gradio_client Client): its sandbox worker and
folder, its attendee tools, its agents' memory, its runs and its timeline. New conversation (reset)
clears all of them."""
from __future__ import annotations

import importlib.util
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from shared import jobs
from shared.errors import UserError
from shared.sandbox import SandboxError, SandboxRunError, clean_text, new_sandbox

import agent_models as models

# ----------------------------------------------------------------------------- limits and defaults
MAX_TASK_CHARS = 4_000
MAX_STEPS = 6
MAX_STEPS_LIMIT = 12
API_TIMEOUT = 900  # seconds an API /run_task may take
TIMELINE_KEEP = 400  # events kept per session
AGENTS = {"code": "CodeAgent", "tool_calling": "ToolCallingAgent", "planner": "Planner + writer (managed agents)"}
DOCS = Path(__file__).resolve().parents[2] / "assets" / "agent_sandbox" / "docs"


class AgentError(UserError):
    pass


@dataclass
class Preset:
    name: str
    task: str
    agent: str
    code_steps: list[str]  # suggested steps for 'be the model' with a CodeAgent (the planner, for that preset)
    tool_steps: list[str]  # ... with a ToolCallingAgent
    writer_steps: list[str] = field(default_factory=list)  # ... for the writer managed by the planner


PRESETS = {p.name: p for p in [
    Preset("Compute with data (Python tool)",
           "Daily visitors to the lab last week were 120, 135, 150, 110, 160, 175 and 140. What are the mean, the "
           "median and the standard deviation (sample), rounded to 2 decimals?", "code",
           ["Thought: I will compute the three numbers with the statistics module.\n<code>\nimport statistics\n"
            "v = [120, 135, 150, 110, 160, 175, 140]\nstats = (round(statistics.mean(v), 2), statistics.median(v), "
            "round(statistics.stdev(v), 2))\nprint(stats)\n</code>",
            "Thought: I have the numbers from the observation.\n<code>\nfinal_answer(f'mean {stats[0]}, median "
            "{stats[1]}, standard deviation {stats[2]}')\n</code>"],
           ['Action:\n{"name": "python_interpreter", "arguments": {"code": "import statistics\\nv = [120, 135, 150, '
            '110, 160, 175, 140]\\nprint(round(statistics.mean(v), 2), statistics.median(v), '
            'round(statistics.stdev(v), 2))"}}',
            'Action:\n{"name": "final_answer", "arguments": {"answer": "mean 141.43, median 140, standard deviation '
            '22.49"}}']),
    Preset("Answer from the lab's docs (retrieval tool)",
           "Which layer of this lab's sandbox stops a fork bomb, and why is smolagents' interpreter not enough on "
           "its own? Answer from the lab's docs.", "code",
           ["Thought: I will search the lab's docs.\n<code>\nprint(search_lab_docs('fork bomb seccomp interpreter "
            "security boundary'))\n</code>",
            "Thought: The docs say the seccomp filter refuses fork, and the interpreter has had escapes.\n<code>\n"
            "final_answer('The seccomp filter: it refuses fork, so a fork bomb fails with Operation not permitted. "
            "The interpreter alone is not a security boundary: it has had escapes.')\n</code>"],
           ['Action:\n{"name": "search_lab_docs", "arguments": {"query": "fork bomb seccomp interpreter"}}',
            'Action:\n{"name": "final_answer", "arguments": {"answer": "The seccomp filter stops it (fork is refused); '
            'the interpreter is not a security boundary on its own: it has had escapes."}}']),
    Preset("Manage files in the session folder",
           "Create notes.txt with three ideas for a workshop on agents, one per line, then list the folder and "
           "read the file back.", "code",
           ["Thought: I will write the file, then list and read it.\n<code>\nideas = ['Build a tool', 'Race two "
            "agents', 'Break the sandbox']\nprint(write_file('notes.txt', '\\n'.join(ideas)))\nprint(list_files())\n"
            "print(read_file('notes.txt'))\n</code>",
            "Thought: The file is there.\n<code>\nfinal_answer(read_file('notes.txt'))\n</code>"],
           ['Action:\n{"name": "write_file", "arguments": {"path": "notes.txt", "content": "Build a tool\\nRace two '
            'agents\\nBreak the sandbox"}}',
            'Action:\n{"name": "list_files", "arguments": {}}',
            'Action:\n{"name": "final_answer", "arguments": {"answer": "notes.txt holds three ideas."}}']),
    Preset("Plan and write a short blog post (planner + writer)",
           "Plan a three-paragraph blog post on why agents need sandboxes, and have the writer draft it into "
           "post.md.", "planner",
           ["Thought: I will hand the drafting to the writer.\n<code>\nreport = writer(task='Draft a three-paragraph "
            "blog post on why agents need sandboxes and save it to post.md')\nprint(report)\n</code>",
            "Thought: The writer reports the post is saved; I return it.\n<code>\nfinal_answer(report)\n</code>"],
           [],
           ["Thought: I draft the post and save it.\n<code>\npost = 'Agents write code.\\n\\nCode can be hostile."
            "\\n\\nSo run it in a sandbox.'\nprint(write_file('post.md', post))\n</code>",
            "Thought: Saved; I report back to the planner.\n<code>\nfinal_answer('post.md saved: ' + "
            "read_file('post.md'))\n</code>"]),
]}
CUSTOM = "Type your own task"


# ----------------------------------------------------------------------------- the lab's own tools (host side)

def _doc_passages() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DOCS.glob("*.md")):
        for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            if para.strip() and not para.startswith("#"):
                out.append((path.name, " ".join(para.split())))
    return out


def search_docs(query: str, k: int = 3) -> list[tuple[str, str, float]]:
    """BM25 over the paragraphs of the lab's docs: [(file, passage, score)] best first."""
    import math

    passages = _doc_passages()
    words = [re.findall(r"[a-z0-9]+", p.lower()) for _, p in passages]
    terms = set(re.findall(r"[a-z0-9]+", (query or "").lower()))
    avg = sum(map(len, words)) / max(1, len(words))
    scored = []
    for (name, text), ws in zip(passages, words):
        score = 0.0
        for t in terms:
            tf = ws.count(t)
            df = sum(1 for w in words if t in w)
            if tf:
                idf = math.log(1 + (len(words) - df + 0.5) / (df + 0.5))
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(ws) / avg))
        scored.append((name, text, round(score, 3)))
    return sorted([s for s in scored if s[2] > 0], key=lambda s: -s[2])[:k]


def lab_tools() -> list:
    from smolagents import tool

    @tool
    def search_lab_docs(query: str) -> str:
        """Searches this lab's own documentation (the ReAct loop, agent types, the sandbox layers, the API) and
        returns the best matching passages with their file names.

        Args:
            query: keywords to look for, e.g. 'seccomp fork bomb'.
        """
        hits = search_docs(query)
        if not hits:
            return "No passage matches those words; try other keywords."
        return "\n\n".join(f"[{name}] {text}" for name, text, _ in hits)

    return [search_lab_docs]


def python_tool(session: "AgentSession", ctx: str, run: "Run"):
    """For a ToolCallingAgent: a `python_interpreter` tool whose code runs in the session's sandbox."""
    from smolagents import Tool

    class SandboxPython(Tool):
        name = "python_interpreter"
        description = ("Runs Python code in this session's sandbox and returns what it prints and its last value. "
                       f"Allowed imports: {', '.join(session.sandbox.imports)}.")
        inputs = {"code": {"type": "string", "description": "the Python code to run"}}
        output_type = "string"

        def forward(self, code: str) -> str:
            result = session.sandbox.run(code, ctx=ctx)
            run.sandbox_results.append(result)
            if not result.ok:
                raise SandboxRunError(result)
            return result.output or "(no output)"

    return SandboxPython()


def remote_executors() -> list[str]:
    """smolagents' remote executors that are configured on this machine (never used in tests)."""
    found = []
    if os.environ.get("E2B_API_KEY") and importlib.util.find_spec("e2b_code_interpreter"):
        found.append("e2b")
    if importlib.util.find_spec("docker") and os.path.exists("/var/run/docker.sock"):
        found.append("docker")
    if importlib.util.find_spec("modal") and (os.environ.get("MODAL_TOKEN_ID") or Path.home().joinpath(".modal.toml").exists()):
        found.append("modal")
    return found


# ----------------------------------------------------------------------------- runs

@dataclass
class Run:
    id: str
    slot: str
    task: str
    agent: str
    model: str
    state: str = "starting"  # starting, running, waiting (for you), done, error, stopped
    steps: list[dict] = field(default_factory=list)
    answer: str = ""
    error: str = ""
    system_prompt: str = ""
    messages: list[dict] = field(default_factory=list)  # what the model received at its latest step
    started: float = field(default_factory=time.time)
    finished: float | None = None
    humans: list = field(default_factory=list)
    sandbox_results: list = field(default_factory=list)
    agents: list = field(default_factory=list)
    job_id: str = ""
    max_steps: int = MAX_STEPS

    @property
    def waiting(self) -> dict | None:
        for h in self.humans:
            if h.waiting is not None:
                return {**h.waiting, "agent": getattr(h, "agent_name", "agent")}
        return None

    def totals(self) -> dict:
        model_steps = [s for s in self.steps if s["kind"] in ("code", "tool_call", "plan", "model")]
        return {"steps": len(model_steps), "tokens_in": sum(s["tokens_in"] for s in self.steps),
                "tokens_out": sum(s["tokens_out"] for s in self.steps),
                "seconds": round((self.finished or time.time()) - self.started, 2)}

    def as_api(self) -> dict:
        return {"answer": self.answer, "error": self.error,
                "steps": [{k: s[k] for k in ("kind", "content", "tokens_in", "tokens_out", "seconds")} |
                          ({"reason": s["reason"]} if s.get("reason") else {}) |
                          ({"agent": s["agent"]} if s.get("depth") else {}) for s in self.steps],
                "totals": self.totals()}


def _record(run: Run, kind: str, content, agent: str, depth: int, tokens_in=0, tokens_out=0, seconds=0.0,
            reason: str = "") -> dict:
    rec = {"kind": kind, "content": clean_text(content if isinstance(content, str) else str(content), 20_000),
           "tokens_in": int(tokens_in or 0), "tokens_out": int(tokens_out or 0), "seconds": round(seconds or 0.0, 3),
           "agent": agent, "depth": depth, "run": run.id, "time": time.time()}
    if reason:
        rec["reason"] = reason
    run.steps.append(rec)
    return rec


def _step_callback(run: Run, agent_name: str, depth: int, is_code: bool, session: "AgentSession"):
    def callback(step, agent=None):
        from smolagents.memory import ActionStep, PlanningStep

        before = len(run.steps)
        usage = getattr(step, "token_usage", None)
        t_in, t_out = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
        seconds = step.timing.duration or 0.0 if getattr(step, "timing", None) else 0.0
        if getattr(step, "model_input_messages", None):
            run.messages = models.plain_messages(step.model_input_messages)
        if isinstance(step, PlanningStep):
            _record(run, "plan", step.plan, agent_name, depth, t_in, t_out, seconds)
        elif isinstance(step, ActionStep):
            if step.model_output is not None or usage:
                kind = "code" if is_code else "tool_call"
                text = step.model_output if isinstance(step.model_output, str) else str(step.model_output or "")
                if not is_code and step.tool_calls:
                    text = (text + "\n" if text else "") + "\n".join(
                        f"→ {tc.name}({tc.arguments})" for tc in step.tool_calls)
                _record(run, kind, text, agent_name, depth, t_in, t_out, seconds)
            if step.error is not None:
                failed = [r for r in run.sandbox_results[session._seen.get(run.id, 0):] if not r.ok]
                reason = failed[-1].reason if failed else "agent"
                _record(run, "error", str(step.error), agent_name, depth, reason=reason)
            elif step.observations:
                _record(run, "observation", step.observations, agent_name, depth)
            if step.is_final_answer and step.action_output is not None:
                _record(run, "final_answer", step.action_output, agent_name, depth)
            session._seen[run.id] = len(run.sandbox_results)
        for rec in run.steps[before:]:
            session._add_timeline(rec)
        if run.state == "stopping":
            for a in run.agents:
                a.interrupt()

    return callback


class AgentSession:
    """Everything one visitor owns. Kept in gr.State; closed (worker killed, folder removed) at the end."""

    def __init__(self):
        self.id = uuid.uuid4().hex[:12]
        self._sandbox = None
        self._lock = threading.RLock()
        self.runs: dict[str, Run] = {}
        self.agents: dict[str, object] = {}  # slot -> agent whose memory continues the conversation
        self.timeline: list[dict] = []
        self._seen: dict[str, int] = {}

    # --- sandbox
    @property
    def sandbox(self):
        with self._lock:
            if self._sandbox is None or self._sandbox.closed:
                self._sandbox = new_sandbox()
            return self._sandbox

    def _add_timeline(self, rec: dict | None) -> None:
        if rec is not None:
            self.timeline.append(rec)
            del self.timeline[:-TIMELINE_KEEP]

    def run_code(self, code) -> dict:
        """/run_code: the same sandbox and executor the agents use. {"ok", "output", "error", "reason", ...}."""
        if not isinstance(code, str):
            return {"ok": False, "output": "", "error": "Code must be text.", "reason": "input"}
        result = self.sandbox.run(code, ctx="main")
        rec = {"kind": "run_code", "content": clean_text(code, 4000), "tokens_in": 0, "tokens_out": 0,
               "seconds": result.seconds, "agent": "you", "depth": 0, "run": "sandbox", "time": time.time(),
               "ok": result.ok, "output": result.output[:4000], "error": result.error}
        if not result.ok:
            rec["reason"] = result.reason
        self._add_timeline(rec)
        return {"ok": result.ok, "output": result.output, "error": result.error, "reason": result.reason,
                "seconds": result.seconds, "restarted": result.restarted}

    def define_tool(self, source: str) -> dict:
        return self.sandbox.define_tool(source)

    def forget_tool(self, name: str) -> None:
        self.sandbox.forget_tool(name)

    def user_tools(self) -> list[str]:
        return sorted(self.sandbox.tool_sources()) if self._sandbox else []

    # --- agents
    def _build(self, run: Run, agent_kind: str, model_factory, executor_type: str):
        from smolagents import CodeAgent, ToolCallingAgent

        box = self.sandbox
        worker_tools = box.tool_proxies()  # file tools and the attendee's tools, running in the worker
        common = dict(max_steps=run.max_steps, verbosity_level=0)

        def code_agent(name, depth, tools, managed=(), description=None):
            model = model_factory(name)
            kwargs = dict(common, name=name, description=description, managed_agents=list(managed),
                          additional_authorized_imports=box.imports,
                          step_callbacks=[_step_callback(run, name, depth, True, self)])
            if executor_type and executor_type != "sandbox":
                agent = CodeAgent(tools=tools, model=model, executor_type=executor_type, **kwargs)
            else:
                executor = box.executor(ctx=f"{run.slot}:{name}")
                executor.history = run.sandbox_results
                agent = CodeAgent(tools=tools, model=model, executor=executor, **kwargs)
            run.agents.append(agent)
            return agent

        if agent_kind == "code":
            return code_agent("agent", 0, worker_tools + lab_tools())
        if agent_kind == "tool_calling":
            model = model_factory("agent")
            agent = ToolCallingAgent(tools=[python_tool(self, f"{run.slot}:agent", run)] + worker_tools + lab_tools(),
                                     model=model, name="agent", step_callbacks=[_step_callback(run, "agent", 0, False, self)],
                                     **common)
            run.agents.append(agent)
            return agent
        if agent_kind == "planner":
            writer = code_agent("writer", 1, worker_tools,
                                description="Writes and saves text (drafts, posts, notes) in the session folder. "
                                            "Give it one clear writing task.")
            _announce_delegation(run, writer, self)
            return code_agent("planner", 0, lab_tools(), managed=[writer])
        raise AgentError(f"Unknown agent {agent_kind!r}: use {', '.join(AGENTS)}.")

    def start_run(self, slot: str, task: str, agent_kind: str, model_choice: str, model_id: str = "", url: str = "",
                  api_key: str = "", max_steps: int = MAX_STEPS, executor_type: str = "sandbox",
                  keep_memory: bool = True) -> Run:
        task = (task or "").strip() if isinstance(task, str) else ""
        if not task:
            raise AgentError("Type a task first (or pick a preset).")
        if len(task) > MAX_TASK_CHARS:
            raise AgentError(f"The task is {len(task):,} characters long; the limit is {MAX_TASK_CHARS:,}. "
                             "Shorten it (an agent re-reads the task at every step).")
        if agent_kind not in AGENTS:
            raise AgentError(f"Unknown agent {agent_kind!r}: use {', '.join(AGENTS)}.")
        old = self.runs.get(slot)
        if old is not None and old.state in ("starting", "running", "waiting"):
            raise AgentError("A run is already going in this panel: stop it or wait for it to finish.")
        probe = None if model_choice == models.HUMAN else models.make_model(model_choice, model_id, url, api_key)
        run = Run(id=uuid.uuid4().hex[:8], slot=slot, task=task, agent=agent_kind, model=model_choice,
                  max_steps=max(1, min(MAX_STEPS_LIMIT, int(max_steps or MAX_STEPS))))
        models_made = []

        def factory(name):
            if model_choice == models.HUMAN:
                human = models.human_model()
                human.agent_name = name
                run.humans.append(human)
                return human
            m = probe if not models_made else models.make_model(model_choice, model_id, url, api_key)
            models_made.append(m)
            return m

        agent = self._build(run, agent_kind, factory, executor_type)
        previous = self.agents.get(slot) if keep_memory else None
        if previous is not None and type(previous) is type(agent) and getattr(previous, "name", "") == agent.name \
                and agent_kind != "planner":
            agent.memory = previous.memory  # the conversation continues: earlier steps stay in the prompt
        self.agents[slot] = agent
        run.system_prompt = agent.system_prompt if hasattr(agent, "system_prompt") else ""
        self.runs[slot] = run
        self._seen[run.id] = 0
        self._add_timeline({"kind": "task", "content": task, "tokens_in": 0, "tokens_out": 0, "seconds": 0.0,
                            "agent": AGENTS[agent_kind], "depth": 0, "run": run.id, "time": time.time(),
                            "model": model_choice})
        reset_memory = previous is None or agent.memory is not getattr(previous, "memory", None)

        def work(job):
            run.state = "running"
            try:
                answer = agent.run(task, reset=reset_memory)
                run.answer = clean_text(answer if isinstance(answer, str) else str(answer), 20_000)
                run.state = "stopped" if run.state == "stopping" else "done"
                if run.state == "done":
                    self._add_timeline(_record(run, "answer", run.answer, agent.name, 0))
            except models.Stopped as exc:
                run.state, run.error = "stopped", f"Stopped: {exc}."
            except Exception as exc:  # noqa: BLE001  the run fails with one line; the server keeps serving
                cause = exc.__cause__ if isinstance(exc.__cause__, UserError) else exc
                run.state, run.error = ("stopped", "Stopped.") if run.state == "stopping" else (
                    "error", clean_text(f"{type(cause).__name__}: {cause}" if not isinstance(cause, UserError)
                                        else str(cause), 2000))
            finally:
                run.finished = time.time()
                run.system_prompt = agent.memory.system_prompt.system_prompt if agent.memory.system_prompt else ""
            return run.answer

        key = "agent-embedded" if model_choice == models.EMBEDDED else f"agent-{self.id}-{slot}"
        job = jobs.submit(work, key=key, kind="agent", label=f"{AGENTS[agent_kind]} run", owner=self.id)
        run.job_id = job.id
        return run

    def send_step(self, slot: str, text: str) -> None:
        run = self.runs.get(slot)
        if run is None or run.state not in ("running", "waiting", "starting"):
            raise AgentError("No run is waiting for a step here: start one first.")
        if not (text or "").strip():
            raise AgentError("Write the step first: a Thought and a code block (or an Action for tool calling).")
        if len(text) > 100_000:
            raise AgentError("That step is over 100,000 characters; keep it shorter.")
        for h in run.humans:
            if h.send(text):
                return
        raise AgentError("The agent is not waiting for you right now (it is running your last step).")

    def stop(self, slot: str) -> None:
        run = self.runs.get(slot)
        if run is None or run.state in ("done", "error", "stopped"):
            return
        run.state = "stopping"
        for h in run.humans:
            h.stop()
        for a in run.agents:
            a.interrupt()
        jobs.stop(run.job_id)

    def wait(self, slot: str, timeout: float | None = None) -> Run:
        run = self.runs[slot]
        job = jobs.get(run.job_id)
        if job is not None:
            job.wait(timeout)
        return run

    def reset(self) -> None:
        """New conversation: stop runs, forget agents' memory, tools, variables, files and the timeline."""
        for slot in list(self.runs):
            self.stop(slot)
        self.runs.clear()
        self.agents.clear()
        self.timeline.clear()
        self._seen.clear()
        if self._sandbox is not None and not self._sandbox.closed:
            self._sandbox.reset()

    def close(self) -> None:
        for slot in list(self.runs):
            self.stop(slot)
        if self._sandbox is not None:
            self._sandbox.close()


def _announce_delegation(run: Run, writer, session: AgentSession) -> None:
    """Mark in the timeline when the planner hands work to the writer (the tree's branch point)."""
    original = writer.__call__

    class Announcing(type(writer)):
        def __call__(self, task, **kwargs):
            session._add_timeline(_record(run, "delegate", f"planner → writer: {task}", "planner", 0))
            return original(task, **kwargs)

    writer.__class__ = Announcing


def run_task_blocking(session: AgentSession, task, agent: str, model: str, max_steps: int = MAX_STEPS) -> dict:
    """/run_task: run an agent to the end and return {"answer", "steps", "error", ...}."""
    if not isinstance(task, str) or not task.strip():
        raise AgentError("Give a task: a non-empty string.")
    if agent not in ("code", "tool_calling", "planner"):
        raise AgentError("agent must be 'code' or 'tool_calling' (or 'planner').")
    choice, model_id, url = models.parse_api_model(model if isinstance(model, str) else "")
    run = session.start_run("api", task, agent, choice, model_id, url, max_steps=max_steps, keep_memory=True)
    session.wait("api", API_TIMEOUT)
    if run.state not in ("done", "error", "stopped"):
        session.stop("api")
        session.wait("api", 10)
        run.error = run.error or f"Stopped after {API_TIMEOUT} s."
    return run.as_api()


def suggestion(run: Run | None, preset_name: str, agent_kind: str) -> str:
    """The next step to suggest to an attendee playing the model (from the preset), or a template."""
    preset = PRESETS.get(preset_name)
    waiting = run.waiting if run else None
    who = waiting["agent"] if waiting else ("planner" if agent_kind == "planner" else "agent")
    done = len([s for s in (run.steps if run else []) if s["kind"] in ("code", "tool_call") and s["agent"] == who])
    if preset and preset.agent == agent_kind or preset and agent_kind != "planner" and preset.agent != "planner":
        steps = (preset.writer_steps if who == "writer" else
                 preset.tool_steps if agent_kind == "tool_calling" else preset.code_steps)
        if done < len(steps):
            return steps[done]
    if agent_kind == "tool_calling":
        return 'Action:\n{"name": "final_answer", "arguments": {"answer": "..."}}'
    return "Thought: what I know and what I will do next.\n<code>\nprint('hello')\n</code>"


def tool_prompts(session: AgentSession) -> dict:
    """How every tool of the session appears in each agent's system prompt."""
    tools = session.sandbox.tool_proxies() + lab_tools()
    return {"code": "\n\n".join(t.to_code_prompt() for t in tools),
            "tool_calling": "\n\n".join(t.to_tool_calling_prompt() for t in tools)}


__all__ = ["AgentSession", "AgentError", "PRESETS", "CUSTOM", "AGENTS", "run_task_blocking", "suggestion",
           "search_docs", "remote_executors", "SandboxError"]
