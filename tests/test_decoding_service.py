"""decoding_service: checks before the model (messages in the UI's words), a generation as a
shared.jobs job (streams, stops with what it produced, queues), the model line, the preload job.
Runs on the tiny GPT-2."""
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces" / "decoding_explorer"))

import decoding_loop as dl  # noqa: E402
import decoding_service as svc  # noqa: E402
import decoding_strategies as ds  # noqa: E402
from shared import jobs  # noqa: E402


@pytest.fixture
def tiny_loaded(tiny_gpt2, monkeypatch):
    from shared.loading import Loaded
    from shared.models import Choice, ModelSpec

    model, tok = tiny_gpt2
    loaded = Loaded(model, tok, Choice(ModelSpec("tiny-gpt2 (test fixture)", "test/tiny-gpt2", "causal", True),
                                       "embedded", "test fixture"), "cpu", "float32")
    monkeypatch.setattr(svc, "load", lambda requested=None: loaded)
    return loaded


def test_checks_name_the_checkbox_labels_in_the_ui_and_the_api_names_in_the_api():
    with pytest.raises(dl.PromptError, match="empty"):
        svc.check("  ", ["greedy"], ui=True)
    with pytest.raises(dl.PromptError) as ui:
        svc.check("Hello", [], ui=True)
    text = str(ui.value)
    assert "Greedy" in text and "Top-p (nucleus) sampling" in text
    assert "top_k" not in text and "repetition_penalty" not in text
    with pytest.raises(dl.PromptError) as api:
        svc.check("Hello", [])
    assert "top_k" in str(api.value) and "at least one strategy" in str(api.value)
    from shared.errors import UserError

    assert issubclass(dl.PromptError, UserError)
    checked = svc.check("Hello", ["beam"], 100000, -3, params={"beam": {"num_beams": 64}})
    assert checked.max_new_tokens == ds.MAX_NEW_TOKENS and checked.seed == 3 and len(checked.notes) == 2


def wait(job, timeout=120):
    assert job.wait(timeout), "the job did not finish"
    return job


def test_a_generation_job_equals_compare(tiny_loaded):
    checked = svc.check("Once upon a time", ["greedy", "top_p", "beam", "contrastive"], 8, 4)
    live = wait(svc.start(checked)).result
    expected = dl.compare(tiny_loaded.model, tiny_loaded.tokenizer, live.run.prompt_ids, live.run.strategies, 8, 4)
    assert [o.ids for o in live.outputs] == [o.ids for o in expected]
    assert all(o.done and not o.stopped for o in live.outputs) and live.steps >= 8


def test_stopping_a_generation_keeps_what_it_produced(tiny_loaded, monkeypatch):
    """Stop after the third step: the job ends 'stopped', each strategy keeps its tokens, marked
    stopped and scored (clickable tokens, metrics), and the slot is free for the next run."""
    third, go_on = threading.Event(), threading.Event()
    real = svc.stream

    def slow(run, **kwargs):
        for i, outputs in enumerate(real(run, **kwargs)):
            yield outputs
            if i == 2:
                third.set()
                go_on.wait(30)

    monkeypatch.setattr(svc, "stream", slow)
    job = svc.start(svc.check("Once upon a time", ["greedy", "beam", "contrastive"], 40, 0))
    assert third.wait(60)
    assert jobs.stop(job.id)
    go_on.set()
    live = wait(job).result
    assert job.state == jobs.STOPPED and jobs.poll(job.id)["active"] is False
    assert [len(o.ids) for o in live.outputs] == [4, 4, 3]  # the step running when Stop came ends
    for o in live.outputs:
        assert o.stopped and o.done and o.scored and len(o.top_ids) == len(o.ids)
    import decoding_views as views

    cards = views.cards_html(live.outputs, tiny_loaded.tokenizer)
    assert cards.count("stopped by you") == 3 and "generating" not in cards
    assert len(views.metrics_table(live.outputs)) == 3


def test_generations_queue_with_their_position(tiny_loaded, monkeypatch):
    release = threading.Event()
    real = svc.stream

    def held(run, **kwargs):
        release.wait(30)
        yield from real(run, **kwargs)

    monkeypatch.setattr(svc, "stream", held)
    checked = svc.check("Hi", ["greedy"], 2, 0)
    running = [svc.start(checked) for _ in range(ds.RUN_SLOTS)]
    waiting = svc.start(checked)
    try:
        deadline = time.time() + 30
        while any(j.state != jobs.RUNNING for j in running) and time.time() < deadline:
            time.sleep(0.02)
        poll = jobs.poll(waiting.id)
        assert poll["state"] == jobs.QUEUED and poll["position"] == 1
    finally:
        release.set()
    for job in running + [waiting]:
        assert wait(job).state == jobs.DONE


def test_a_failed_load_is_a_job_error_not_a_crash(monkeypatch):
    from shared.models import ModelUnavailable

    def refuse(requested=None):
        raise ModelUnavailable("nope/model is not in the local cache")

    monkeypatch.setattr(svc, "load", refuse)
    job = wait(svc.start(svc.check("Hi", ["greedy"], 2, 0, model="nope/model")))
    assert job.state == jobs.ERROR and "not in the local cache" in job.error


def test_model_line_and_preload(tiny_loaded):
    assert "loads when you press Generate" in svc.status_text("gpt2")
    assert svc.status_text(None, "no such job").startswith("⏳")
    job = wait(svc.preload())
    assert svc.preload() is job  # one per process
    assert job.state == jobs.DONE and svc.status_text(None, job.id) == "Model in use: " + job.result.status
