"""shared/jobs.py: admission per key with queue positions, progress, metrics, stop, errors, and the
TrainerCallback / stopping-criterion adapters."""
import threading
import time
from types import SimpleNamespace

import pytest

from shared import jobs
from shared.errors import UserError


def gated(release: threading.Event, steps: int = 3):
    """A work function that reports each step and waits for `release` before finishing."""
    def work(job):
        for i in range(steps):
            job.check_stop()
            job.metrics.add(i, loss=1.0 / (i + 1))
            job.report((i + 1) / steps, f"step {i + 1}/{steps}")
            job.log(f"step {i + 1}")
        release.wait(10)
        job.check_stop()
        return {"steps": steps}
    return work


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_one_job_per_key_and_the_others_know_their_place():
    release = threading.Event()
    key = "test-train"
    first = jobs.submit(gated(release), key=key, kind="t", owner="alice")
    second = jobs.submit(gated(release), key=key, kind="t", owner="bob")
    third = jobs.submit(gated(release), key=key, kind="t", owner="carol")
    other = jobs.submit(gated(release), key="another-key", kind="t")
    assert wait_until(lambda: first.progress == 1.0)
    assert first.state == jobs.RUNNING and other.state == jobs.RUNNING  # another key is not held up
    assert (jobs.position(first), jobs.position(second), jobs.position(third)) == (0, 1, 2)
    polled = jobs.poll(third.id)
    assert polled["state"] == "queued" and polled["position"] == 2 and "number 2 in line" in polled["message"]
    release.set()
    for job in (first, second, third, other):
        assert job.wait(10)
        assert job.state == jobs.DONE and job.result == {"steps": 3} and job.progress == 1.0
    assert first.finished <= second.started and second.finished <= third.started  # one at a time
    assert jobs.poll(first.id)["active"] is False
    assert [j.id for j in jobs.find(kind="t", owner="bob")] == [second.id]


def test_stop_keeps_the_last_completed_state_and_a_queued_job_never_starts():
    release = threading.Event()
    running = jobs.submit(gated(release, steps=2), key="test-stop")
    waiting = jobs.submit(gated(release, steps=2), key="test-stop")
    assert wait_until(lambda: running.progress == 1.0)
    assert jobs.stop(waiting.id) and waiting.wait(2)
    assert waiting.state == jobs.STOPPED and waiting.started is None
    assert jobs.stop(running.id)
    release.set()
    assert running.wait(5)
    assert running.state == jobs.STOPPED and "last completed state" in running.message
    assert running.metrics.series("loss") == [(0, 1.0), (1, 0.5)]  # what it did before the stop is kept
    assert jobs.stop(running.id) is False  # already finished
    assert jobs.stop("no-such-job") is False


def test_errors_become_one_line_and_the_line_moves_on():
    def user_mistake(job):
        raise UserError("The learning rate must be positive.")

    def crash(job):
        raise ZeroDivisionError("division by zero")

    a = jobs.run_now(user_mistake, key="test-errors", label="Training")
    b = jobs.run_now(crash, key="test-errors", label="Training")
    c = jobs.run_now(lambda job: 42, key="test-errors")
    assert a.state == jobs.ERROR and a.error == "The learning rate must be positive."
    assert b.state == jobs.ERROR and b.error == "Training failed: ZeroDivisionError: division by zero"
    assert "Traceback" not in b.error
    assert c.state == jobs.DONE and c.result == 42


def test_queue_is_bounded():
    release = threading.Event()
    first = jobs.submit(gated(release), key="test-bounded", max_waiting=1)
    jobs.submit(gated(release), key="test-bounded", max_waiting=1)
    with pytest.raises(jobs.QueueFull, match="already waiting"):
        jobs.submit(gated(release), key="test-bounded", max_waiting=1)
    release.set()
    assert first.wait(5)


def test_poll_of_an_unknown_job_is_inactive():
    assert jobs.poll(None) == {"state": "none", "progress": 0.0, "message": "", "position": 0, "elapsed": 0.0,
                               "error": "", "active": False}


def test_trainer_callback_feeds_progress_metrics_and_stop():
    job = jobs.Job(id="x", key="k", kind="k", label="k")
    callback = jobs.trainer_callback(job, total_steps=4)
    state, control = SimpleNamespace(global_step=1, max_steps=4), SimpleNamespace(should_training_stop=False)
    callback.on_log(None, state, control, logs={"loss": 2.5, "learning_rate": 1e-3, "note": "text"})
    callback.on_step_end(None, state, control)
    assert job.progress == 0.25 and job.message == "step 1/4" and not control.should_training_stop
    assert job.metrics.rows() == [{"step": 1, "loss": 2.5, "learning_rate": 1e-3}]
    job.request_stop()
    callback.on_step_end(None, SimpleNamespace(global_step=2, max_steps=4), control)
    assert control.should_training_stop is True


def test_stopping_criterion_ends_generate(tiny_gpt2):
    import torch

    model, tokenizer = tiny_gpt2
    ids = tokenizer("Hello there", return_tensors="pt").input_ids
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] >= 3

    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=20, do_sample=False, min_new_tokens=0,
                             stopping_criteria=[jobs.stopping_criteria(should_stop)], pad_token_id=50256)
    assert out.shape[1] - ids.shape[1] == 3  # stopped after the third token, not the twentieth


def test_the_work_runs_in_the_submitters_context():
    """spaces.GPU (ZeroGPU) finds the visitor's request in a context variable: the job must see it."""
    import contextvars

    request = contextvars.ContextVar("request", default=None)
    request.set("visitor-42")
    job = jobs.run_now(lambda job: request.get(), key="test-context")
    assert job.result == "visitor-42"
