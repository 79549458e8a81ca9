"""Background work: a job with state, progress, log lines, step metrics, a stop request, a result
or an error; one job at a time per admission key, the others wait in line and know their place.

    job = jobs.submit(train, key="train", kind="lora", label="LoRA on SmolLM2", owner=session_id)
    ...                       # train(job) runs in a thread: job.report(0.3, "step 3/10"),
                              # job.metrics.add(3, loss=1.2), job.check_stop()
    jobs.poll(job.id)         # a dict for a gr.Timer: state, progress, queue position, message
    jobs.stop(job.id)         # the job stops at its next check; its last completed state is kept

Jobs live in this process: they outlive a closed browser tab (keep the id in the session, or find
it again with `find()`), not a restart (what must survive one goes through shared.store)."""
from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from shared.errors import UserError, message
from shared.metrics import Metrics

QUEUED, RUNNING, DONE, STOPPED, ERROR = "queued", "running", "done", "stopped", "error"
FINISHED = (DONE, STOPPED, ERROR)
MAX_LOG_LINES = 500
KEEP_FINISHED = 200  # finished jobs remembered in this process


class Stopped(Exception):
    """Raised by Job.check_stop() when a stop was asked for; the runner marks the job stopped."""


class QueueFull(UserError):
    pass


@dataclass
class Job:
    id: str
    key: str
    kind: str
    label: str
    owner: str = ""
    state: str = QUEUED
    progress: float = 0.0
    message: str = "waiting for its turn"
    result: Any = None
    error: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    metrics: Metrics = field(default_factory=Metrics)
    logs: deque = field(default_factory=lambda: deque(maxlen=MAX_LOG_LINES))
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _fn: Callable | None = field(default=None, repr=False)
    _context: contextvars.Context | None = field(default=None, repr=False)

    # --- called by the work function
    def report(self, progress: float | None = None, message: str | None = None) -> None:
        if progress is not None:
            self.progress = max(0.0, min(1.0, float(progress)))
        if message is not None:
            self.message = message

    def log(self, line: str) -> None:
        self.logs.append(f"{time.strftime('%H:%M:%S')} {line}")

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise Stopped()

    # --- called by anyone
    def request_stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished_ok(self) -> bool:
        return self.state == DONE

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started


class _Line:
    """The jobs of one admission key: `slots` run at once, the others wait in order."""

    def __init__(self, slots: int):
        self.slots = slots
        self.running: list[Job] = []
        self.waiting: deque[Job] = deque()


_lock = threading.Lock()
_jobs: dict[str, Job] = {}
_lines: dict[str, _Line] = {}


def submit(fn: Callable[[Job], Any], *, key: str, kind: str = "", label: str = "", owner: str = "",
           slots: int = 1, max_waiting: int = 64) -> Job:
    """Queue `fn(job)` behind the jobs of the same `key` (at most `slots` of them run at once).
    Its return value becomes job.result; Stopped marks it stopped, UserError and other exceptions
    mark it failed with a one-line error."""
    job = Job(id=uuid.uuid4().hex[:12], key=key, kind=kind or key, label=label or kind or key, owner=owner, _fn=fn,
              _context=contextvars.copy_context())  # the submitter's context (ZeroGPU reads its request there)
    with _lock:
        line = _lines.setdefault(key, _Line(slots))
        if len(line.waiting) >= max_waiting:
            raise QueueFull(f"{len(line.waiting)} jobs are already waiting for '{key}'; try again in a while.")
        _jobs[job.id] = job
        _forget_old()
        line.waiting.append(job)
        _admit(line)
    return job


def _admit(line: _Line) -> None:
    """Start waiting jobs while the line has free slots (called with _lock held)."""
    while line.waiting and len(line.running) < line.slots:
        job = line.waiting.popleft()
        fn, job._fn = job._fn, None
        if job.should_stop():  # stopped while it waited: never starts
            job.state, job.message, job.finished = STOPPED, "stopped before it started", time.time()
            job._done.set()
            continue
        line.running.append(job)
        job.state, job.started, job.message = RUNNING, time.time(), "started"
        context, job._context = job._context or contextvars.copy_context(), None
        threading.Thread(target=context.run, args=(_run, job, fn, line), daemon=True,
                         name=f"job-{job.kind}-{job.id}").start()


def _run(job: Job, fn: Callable, line: _Line) -> None:
    try:
        job.result = fn(job)
        job.state = STOPPED if job.should_stop() else DONE
        job.message = "stopped; the last completed state is kept" if job.state == STOPPED else "done"
        if job.state == DONE:
            job.progress = 1.0
    except Stopped:
        job.state, job.message = STOPPED, "stopped; the last completed state is kept"
    except BaseException as exc:  # noqa: BLE001  a failed job must not take the server down
        job.state, job.error = ERROR, message(exc, job.label or "The job")
        job.message = job.error
        if not isinstance(exc, UserError):
            import logging

            logging.getLogger("genai_lab").exception("job %s (%s) failed", job.id, job.kind, exc_info=exc)
    finally:
        job.finished = time.time()
        with _lock:
            if job in line.running:
                line.running.remove(job)
            _admit(line)
        job._done.set()


def _forget_old() -> None:
    finished = [j for j in _jobs.values() if j.state in FINISHED]
    for job in sorted(finished, key=lambda j: j.finished or 0)[:max(0, len(finished) - KEEP_FINISHED)]:
        _jobs.pop(job.id, None)


def get(job_id: str | None) -> Job | None:
    return _jobs.get(job_id or "")


def find(kind: str = "", owner: str = "") -> list[Job]:
    """Jobs of this process, newest first, filtered by kind and owner when given."""
    with _lock:
        found = [j for j in _jobs.values() if (not kind or j.kind == kind) and (not owner or j.owner == owner)]
    return sorted(found, key=lambda j: -j.created)


def position(job: Job) -> int:
    """0 when running or finished; n >= 1 when n-1 jobs wait ahead of it plus the running ones."""
    with _lock:
        line = _lines.get(job.key)
        if line is None or job not in line.waiting:
            return 0
        return list(line.waiting).index(job) + 1


def stop(job_id: str | None) -> bool:
    job = get(job_id)
    if job is None or job.state in FINISHED:
        return False
    job.request_stop()
    if job.state == QUEUED:
        with _lock:
            line = _lines.get(job.key)
            if line and job in line.waiting:
                line.waiting.remove(job)
                job._fn = None
                job.state, job.message, job.finished = STOPPED, "stopped before it started", time.time()
                job._done.set()
    return True


def poll(job_id: str | None) -> dict:
    """What a gr.Timer shows: {"state", "progress", "message", "position", "elapsed", "error",
    "active"} ("active" is False once the job has finished or when there is no such job)."""
    job = get(job_id)
    if job is None:
        return {"state": "none", "progress": 0.0, "message": "", "position": 0, "elapsed": 0.0, "error": "",
                "active": False}
    pos = position(job)
    text = job.message
    if job.state == QUEUED:
        text = f"waiting: number {pos} in line ({len(_lines[job.key].running)} running)"
    return {"state": job.state, "progress": job.progress, "message": text, "position": pos,
            "elapsed": round(job.elapsed, 1), "error": job.error, "active": job.state not in FINISHED}


def run_now(fn: Callable[[Job], Any], *, key: str, kind: str = "", label: str = "", owner: str = "",
            slots: int = 1, timeout: float | None = None) -> Job:
    """submit() and wait for the end (for API endpoints that block until done)."""
    job = submit(fn, key=key, kind=kind, label=label, owner=owner, slots=slots)
    job.wait(timeout)
    return job


# ---------------------------------------------------------------- adapters

def trainer_callback(job: Job, total_steps: int | None = None):
    """A transformers TrainerCallback that feeds the job: progress per step, every logged number
    into job.metrics, and a stop request ends training at the next step boundary (the trainer
    then finishes cleanly, so the last completed step is kept)."""
    from transformers import TrainerCallback

    class JobCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            total = total_steps or state.max_steps or 1
            job.report(state.global_step / total, f"step {state.global_step}/{total}")
            if job.should_stop():
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            numbers = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float)) and k != "step"}
            if numbers:
                job.metrics.add(state.global_step, **numbers)
            return control

    return JobCallback()


def stopping_criteria(should_stop: Callable[[], bool]):
    """A transformers StoppingCriteria that ends generate() when `should_stop()` turns true
    (pass job.should_stop, or an Event's is_set)."""
    import torch
    from transformers import StoppingCriteria

    class StopWhenAsked(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), should_stop(), dtype=torch.bool, device=input_ids.device)

    return StopWhenAsked()
