"""The DPO labeler's answers come from the shared batch (shared.batching): seeded per row, so an answer
depends on its prompt, setting and seed, never on which other rows shared its forward passes."""
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "spaces" / "dpo_labeler"))
import dpo_generate as dg  # noqa: E402

from shared import batching  # noqa: E402
from shared.errors import UserError  # noqa: E402

SHORT = dg.Sampling(temperature=0.9, top_p=0.95, max_new_tokens=6)


@pytest.fixture(scope="module")
def smol():
    from shared.loading import load_causal_lm

    loaded = load_causal_lm()
    return loaded.model, loaded.tokenizer


def test_answers_do_not_depend_on_the_batch_and_repeat_with_the_seed(smol):
    model, tok = smol
    prompts = ["What is a lighthouse?", "Name a colour.", "Why is the sky blue?"]
    together = dg.generate(model, tok, prompts, SHORT, seed=11)
    alone = [dg.generate(model, tok, [p], SHORT, seed=11 + i)[0] for i, p in enumerate(prompts)]
    assert together == alone and all(together)
    assert dg.generate(model, tok, prompts, SHORT, seed=11) == together
    assert batching.engine_for(model).max_batch_seen >= 2  # the three rows shared forward passes


def test_two_models_rows_queue_side_by_side(smol):
    model, tok = smol
    queued = [dg.submit(model, tok, ["Say hi."], SHORT, seed=3), dg.submit(model, tok, ["Say bye."], SHORT, seed=3)]
    first, second = (dg.wait_all(rows) for rows in queued)
    assert len(first) == len(second) == 1 and 1 <= len(first[0]) <= 6


@pytest.mark.parametrize("bad", [dg.Sampling(temperature=0), dg.Sampling(top_p=2), dg.Sampling(max_new_tokens=10_000)])
def test_bad_settings_are_refused_before_any_row_is_queued(smol, bad):
    model, tok = smol
    before = batching.engine_for(model).stats()
    with pytest.raises(UserError):
        dg.generate(model, tok, ["Hello?"], bad)
    assert batching.engine_for(model).stats() == before


def test_a_stop_request_ends_the_rows_early(smol):
    model, tok = smol
    out = dg.generate(model, tok, ["Tell me a long story."], dg.Sampling(max_new_tokens=64), should_stop=lambda: True)
    assert len(tok(out[0])["input_ids"]) < 64
