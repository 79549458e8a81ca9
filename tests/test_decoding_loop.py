"""decoding_loop: the explorer's own decoding loop against model.generate, token for token, on
the tiny GPT-2 and on the embedded SmolLM2; one forward per step, branching, a stopped run, the
logits pipeline, prompt checks."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces" / "decoding_explorer"))

import decoding_loop as dl  # noqa: E402
import decoding_strategies as ds  # noqa: E402

N = 16
GENERATE_EQUIVALENT = [n for n in ds.NAMES if n != "contrastive"]


def generate(model, prompt_ids, strategy, n, seed=0):
    import torch

    torch.manual_seed(seed)
    ids = torch.tensor([prompt_ids])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                         pad_token_id=model.generation_config.eos_token_id, **ds.generate_kwargs(strategy))
    return out[0, len(prompt_ids):].tolist()


@pytest.fixture(scope="module")
def tiny(tiny_gpt2):
    model, tok = tiny_gpt2
    return model, tok, tok("The quick brown fox jumps over the lazy dog because")["input_ids"]


# ---------------------------------------------------------------- equal to generate

def test_every_strategy_in_one_batch_equals_generate(tiny):
    model, tok, prompt = tiny
    strategies, _ = ds.resolve(GENERATE_EQUIVALENT)
    outputs = dl.compare(model, tok, prompt, strategies, N, seed=5)
    for s, out in zip(strategies, outputs):
        assert out.ids == generate(model, prompt, s, N, seed=5), s.name
        assert out.scored and len(out.top_ids[0]) == ds.TOP_ALTERNATIVES


@pytest.mark.parametrize("changes", [
    dict(num_beams=5, length_penalty=0.3, no_repeat_ngram_size=2),
    dict(num_beams=3, length_penalty=2.0, repetition_penalty=1.2),
])
def test_beam_search_equals_generate(tiny, changes):
    model, tok, prompt = tiny
    strategy, notes = ds.clamp(ds.DEFAULTS["beam"], **changes)
    assert not notes
    assert dl.compare(model, tok, prompt, [strategy], N, 0)[0].ids == generate(model, prompt, strategy, N)


@pytest.mark.parametrize("changes", [
    {"temperature": {"temperature": 1.7}, "top_k": {"top_k": 3, "temperature": 0.5},
     "top_p": {"top_p": 0.5, "temperature": 1.5, "repetition_penalty": 1.4}},
    {"min_p": {"min_p": 0.3, "temperature": 2.0}, "typical": {"typical_p": 0.3, "no_repeat_ngram_size": 2}},
])
def test_sampling_with_settings_equals_generate_same_seed(tiny, changes):
    model, tok, prompt = tiny
    strategies, notes = ds.resolve(list(changes), changes)
    assert not notes
    for seed in (0, 123):
        for s, out in zip(strategies, dl.compare(model, tok, prompt, strategies, N, seed)):
            assert out.ids == generate(model, prompt, s, N, seed), (s.name, seed)


# ---------------------------------------------------------------- contrastive search

def test_contrastive_with_alpha_zero_is_greedy(tiny):
    model, tok, prompt = tiny
    contrastive, _ = ds.clamp(ds.DEFAULTS["contrastive"], penalty_alpha=0.0)
    assert dl.compare(model, tok, prompt, [contrastive], N, 0)[0].ids == generate(model, prompt, ds.DEFAULTS["greedy"], N)


def test_contrastive_is_deterministic_and_penalises_similarity(tiny):
    model, tok, prompt = tiny
    a = dl.compare(model, tok, prompt, [ds.DEFAULTS["contrastive"]], N, 0)[0]
    b = dl.compare(model, tok, prompt, [ds.DEFAULTS["contrastive"]], N, 99)[0]
    assert a.ids == b.ids and len(a.ids) == N
    greedy = generate(model, prompt, ds.DEFAULTS["greedy"], N)
    assert a.ids != greedy  # alpha 0.6 changes the choice somewhere
    # every pick is one of the model's top-k candidates after processing
    assert all(p > 0 for p in a.picked_probs)


# ---------------------------------------------------------------- every strategy shares one forward per step

MIXED = ["greedy", "top_p", "beam", "contrastive"]


def alone(model, tok, prompt, strategies, n, seed):
    return [dl.compare(model, tok, prompt, [s], n, seed)[0] for s in strategies]


def test_mixed_run_equals_each_strategy_alone_and_generate(tiny):
    """greedy + top-p + 4-beam search + contrastive k=4 in ONE compare call (one forward per step
    for all 10 rows): each strategy gives exactly the tokens it gives when run alone, and
    greedy/top-p/beam equal model.generate."""
    model, tok, prompt = tiny
    strategies, _ = ds.resolve(MIXED + ["repetition_penalty", "min_p"])
    for seed in (5, 77):
        mixed = dl.compare(model, tok, prompt, strategies, N, seed)
        assert [o.strategy.name for o in mixed] == [s.name for s in strategies]
        for s, m, a in zip(strategies, mixed, alone(model, tok, prompt, strategies, N, seed)):
            assert m.ids == a.ids and len(m.ids) == N, (s.name, seed)
            assert m.top_ids == a.top_ids and m.stop_reason == a.stop_reason, (s.name, seed)
            assert m.probs == pytest.approx(a.probs, rel=1e-4, abs=1e-7), (s.name, seed)
            assert m.picked_probs == pytest.approx(a.picked_probs, rel=1e-4, abs=1e-7), (s.name, seed)
            if s.mode != "contrastive":
                assert m.ids == generate(model, prompt, s, N, seed), (s.name, seed)
            assert m.done and m.scored
            assert m.batch_size == 4 + 4 + 4  # greedy, top-p, rep. penalty, min-p rows + 4 beams + 4 candidates


def test_mixed_run_is_one_forward_per_step(tiny, monkeypatch):
    """Count the model's forward passes and their batch sizes in a mixed run."""
    model, tok, prompt = tiny
    strategies, _ = ds.resolve(MIXED)
    calls = []
    real = type(model).forward

    def counting(self, *args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        calls.append(tuple(ids.shape))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", counting)
    outputs = dl.compare(model, tok, prompt, strategies, N, 0)
    assert all(len(o.ids) == N for o in outputs)
    p = len(prompt)
    # prefill once (batch 1); N-1 shared steps of 1 + 1 + 4 + 4 rows; beam search's one scoring
    # pass over its finished beam; contrastive search's last step (its k candidates of token N)
    assert calls == [(1, p)] + [(10, 1)] * (N - 1) + [(1, p + N), (4, 1)]


def test_mixed_run_with_early_end_of_text_drops_finished_rows(tiny, monkeypatch):
    """Strategies that hit the end-of-text token early drop out of the shared batch; the others
    go on and still give exactly what they give alone (and what generate gives)."""
    model, tok, prompt = tiny
    greedy = dl.compare(model, tok, prompt, [ds.DEFAULTS["greedy"]], N, 0)[0]
    monkeypatch.setattr(model.generation_config, "eos_token_id", greedy.ids[3])
    strategies, _ = ds.resolve(MIXED + ["top_k"], {"top_k": {"top_k": 2}, "beam": {"num_beams": 3}})
    for seed in (1, 2):
        mixed = dl.compare(model, tok, prompt, strategies, N, seed)
        assert mixed[0].stop_reason == "end of text" and len(mixed[0].ids) < N
        for s, m, a in zip(strategies, mixed, alone(model, tok, prompt, strategies, N, seed)):
            assert (m.ids, m.stop_reason) == (a.ids, a.stop_reason), (s.name, seed)
            if s.mode != "contrastive":
                assert m.ids == generate(model, prompt, s, N, seed), (s.name, seed)


def test_iter_compare_streams_every_strategy_together(tiny):
    model, tok, prompt = tiny
    strategies, _ = ds.resolve(MIXED)
    snapshots = [[(len(o.ids), o.done) for o in outs]
                 for outs in dl.iter_compare(model, tok, prompt, strategies, 6, 0)]
    assert snapshots[0] == [(1, False), (1, False), (1, False), (0, False)]  # after the prefill
    assert snapshots[2] == [(3, False), (3, False), (3, False), (2, False)]  # all advance together
    assert snapshots[-1] == [(6, True)] * 4


def test_a_stopped_run_keeps_and_scores_what_each_strategy_produced(tiny):
    """Stop after a few steps: every strategy keeps its tokens so far (greedy and sampling a prefix
    of the full run), marked stopped, with probabilities and alternatives for each token (beam
    search's running best beam scored by one pass), so it can be inspected like a finished run."""
    model, tok, prompt = tiny
    strategies, _ = ds.resolve(MIXED)
    for i, outputs in enumerate(dl.iter_compare(model, tok, prompt, strategies, N, 0)):
        if i == 3:
            break
    assert not any(o.done for o in outputs)
    dl.finish_stopped(model, outputs)
    full = dl.compare(model, tok, prompt, strategies, N, 0)
    assert [len(o.ids) for o in outputs] == [4, 4, 4, 3]  # contrastive's token lags one forward behind
    for o, f in zip(outputs, full):
        assert o.done and o.stopped and o.stop_reason == dl.STOPPED, o.strategy.name
        assert o.scored and len(o.top_ids) == len(o.ids) == len(o.picked_probs), o.strategy.name
        if o.strategy.mode != "beam":  # beams reorder: the running best is not a prefix of the final one
            assert o.ids == f.ids[:len(o.ids)], o.strategy.name
            assert o.probs == pytest.approx(f.probs[:len(o.ids)], rel=1e-4, abs=1e-7), o.strategy.name
    assert dl.finish_stopped(model, full) == full and not any(o.stopped for o in full)  # finished ones untouched


# ---------------------------------------------------------------- branching, pipeline

def test_branch_keeps_prefix_forces_token_and_continues_like_the_strategy(tiny):
    model, tok, prompt = tiny
    greedy = dl.compare(model, tok, prompt, [ds.DEFAULTS["greedy"]], N, 0)[0]
    step = 5
    alt = greedy.top_ids[step][1]
    branch = dl.continue_from(model, tok, greedy, step, alt, N, 0)
    assert branch.ids[:step] == greedy.ids[:step] and branch.ids[step] == alt and len(branch.ids) == N
    expected = generate(model, prompt + greedy.ids[:step] + [alt], ds.DEFAULTS["greedy"], N - step - 1)
    assert branch.ids[step + 1:] == expected
    assert branch.probs[step] == pytest.approx(greedy.top_probs[step][1], rel=1e-4)


def test_pipeline_stages_follow_generate_order_and_filter(tiny):
    model, tok, prompt = tiny
    strategy, _ = ds.clamp(ds.DEFAULTS["top_p"], temperature=0.5, top_k=50, top_p=0.5, min_p=0.2)
    result = dl.pipeline(model, prompt, strategy, top_n=10)
    labels = [s["stage"] for s in result["stages"]]
    assert labels[0].startswith("raw") and [lab.split()[0] for lab in labels[1:]] == ["temperature", "top-k",
                                                                                    "top-p", "min-p"]
    kept = [s["kept"] for s in result["stages"]]
    assert kept[0] == 50257 and kept[2] == 50 and kept[1] >= kept[2] >= kept[3] >= kept[4] >= 1
    assert all(len(s["probs"]) == len(result["token_ids"]) for s in result["stages"])


# ---------------------------------------------------------------- prompt

def test_prompt_checks_and_truncation(tiny):
    model, tok, _ = tiny
    with pytest.raises(dl.PromptError):
        dl.encode_prompt(tok, "   ", True, 10, 256)
    ids, notes = dl.encode_prompt(tok, "word " * 300_000, False, 10, 256)
    assert len(ids) == 246 and any("characters" in n for n in notes) and any("kept its last" in n for n in notes)
    ids, notes = dl.encode_prompt(tok, "hello", True, 10, 256)
    assert ids == tok("hello")["input_ids"] and "no chat template" in notes[0]


def test_eos_stops_every_strategy_like_generate(tiny, monkeypatch):
    """Make a token the greedy text reaches the end-of-text token: every strategy (beam search's
    finished-beam bookkeeping included) must stop exactly where generate stops."""
    model, tok, prompt = tiny
    greedy = dl.compare(model, tok, prompt, [ds.DEFAULTS["greedy"]], N, 0)[0]
    monkeypatch.setattr(model.generation_config, "eos_token_id", greedy.ids[3])
    strategies, _ = ds.resolve(["greedy", "beam", "top_k"], {"top_k": {"top_k": 2}})
    for s, out in zip(strategies, dl.compare(model, tok, prompt, strategies, N, 1)):
        assert out.ids == generate(model, prompt, s, N, 1), s.name
    first = dl.compare(model, tok, prompt, strategies[:1], N, 0)[0]
    stop = greedy.ids.index(greedy.ids[3]) + 1
    assert first.ids == greedy.ids[:stop] and first.stop_reason == "end of text"


# ---------------------------------------------------------------- the real embedded model

@pytest.fixture(scope="module")
def smol(smollm2):
    prompt, _ = dl.encode_prompt(smollm2.tokenizer, "Name three colours.", True, 16, dl.context_limit(smollm2.model))
    return smollm2.model, smollm2.tokenizer, prompt


def test_smollm2_greedy_beam_and_top_p_equal_generate(smol):
    model, tok, prompt = smol
    strategies, _ = ds.resolve(["greedy", "top_p", "beam"], {"beam": {"num_beams": 2}})
    outputs = dl.compare(model, tok, prompt, strategies, 8, seed=11)
    for s, out in zip(strategies, outputs):
        assert out.ids == generate(model, prompt, s, 8, seed=11), s.name
    assert tok.decode(outputs[0].ids).strip()


def test_smollm2_mixed_run_equals_each_strategy_alone_and_generate(smol):
    model, tok, prompt = smol
    strategies, _ = ds.resolve(MIXED)
    mixed = dl.compare(model, tok, prompt, strategies, 8, seed=3)
    for s, m, a in zip(strategies, mixed, alone(model, tok, prompt, strategies, 8, 3)):
        assert m.ids == a.ids, s.name
        if s.mode != "contrastive":
            assert m.ids == generate(model, prompt, s, 8, seed=3), s.name
