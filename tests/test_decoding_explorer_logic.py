"""Decoding explorer logic: its own decoding loop against model.generate, token for token, on
the tiny GPT-2 and on the embedded SmolLM2; clamps, metrics, branching, the logits pipeline."""
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces" / "decoding_explorer"))

import decoding_loop as dl  # noqa: E402
import decoding_metrics as dm  # noqa: E402
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


def test_processors_are_the_ones_generate_builds_in_the_same_order(tiny):
    """Capture generate's own LogitsProcessorList (custom_generate receives it) and compare."""
    import torch

    model, tok, prompt = tiny
    captured = {}

    def capture(model_, input_ids, logits_processor=None, **kwargs):
        captured["procs"] = list(logits_processor)
        return input_ids

    strategy, _ = ds.clamp(ds.DEFAULTS["top_p"], temperature=0.7, top_k=20, top_p=0.8, min_p=0.05,
                           typical_p=0.9, repetition_penalty=1.2, no_repeat_ngram_size=3)
    ids = torch.tensor([prompt])
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, custom_generate=capture,
                   pad_token_id=50256, **ds.generate_kwargs(strategy))
    theirs = captured["procs"]
    ours = [p for _, p in ds.processors(strategy)]
    assert [type(p).__name__ for p in ours] == [type(p).__name__ for p in theirs]
    assert [type(p).__name__ for p in ours] == [
        "RepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor", "TemperatureLogitsWarper",
        "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper", "TypicalLogitsWarper"]
    scores = torch.randn(1, 50257)
    seq = torch.tensor([prompt])
    a = b = scores
    for p in ours:
        a = p(seq, a)
    for p in theirs:
        b = p(seq, b)
    assert torch.equal(a, b)


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


# ---------------------------------------------------------------- prompt, clamps, metrics

def test_prompt_checks_and_truncation(tiny):
    model, tok, _ = tiny
    with pytest.raises(dl.PromptError):
        dl.encode_prompt(tok, "   ", True, 10, 256)
    ids, notes = dl.encode_prompt(tok, "word " * 300_000, False, 10, 256)
    assert len(ids) == 246 and any("characters" in n for n in notes) and any("kept its last" in n for n in notes)
    ids, notes = dl.encode_prompt(tok, "hello", True, 10, 256)
    assert ids == tok("hello")["input_ids"] and "no chat template" in notes[0]


@pytest.mark.parametrize("name,changes,field,expected", [
    ("top_p", {"top_p": 0}, "top_p", 0.01),
    ("top_p", {"top_p": 1.5}, "top_p", 1.0),
    ("temperature", {"temperature": 0}, "temperature", 0.05),
    ("temperature", {"temperature": -3}, "temperature", 0.05),
    ("beam", {"num_beams": 64}, "num_beams", ds.MAX_BEAMS),
    ("beam", {"num_beams": 1}, "num_beams", 2),
    ("top_k", {"top_k": "lots"}, "top_k", 40),
])
def test_clamps_have_notes(name, changes, field, expected):
    strategy, notes = ds.clamp(ds.DEFAULTS[name], **changes)
    assert getattr(strategy, field) == expected and len(notes) == 1


def test_run_clamps_and_unknown_strategies():
    assert ds.clamp_run(100000, -5)[:2] == (ds.MAX_NEW_TOKENS, 5)
    assert ds.clamp_run(0, "x")[0] == 1
    chosen, notes = ds.resolve(["Greedy", "beam", "greedy", "nonsense"])
    assert [s.name for s in chosen] == ["greedy", "beam"] and "nonsense" in notes[0]


def test_metrics():
    assert dm.distinct_n([1, 2, 3, 1, 2], 1) == 0.6
    assert dm.distinct_n([1, 2, 3, 1, 2], 2) == 0.75
    assert dm.repetition_rate([1, 2, 3, 1, 2, 3, 1]) == pytest.approx(2 / 5)
    assert dm.repetition_rate([1, 2]) == 0.0
    out = dl.Output(ds.DEFAULTS["greedy"], [0], ids=[5, 6], probs=[0.5, 0.25], seconds=0.5)
    m = dm.metrics(out)
    assert m["tokens"] == 2 and m["tokens_per_s"] == 4.0
    assert m["mean_logprob"] == pytest.approx((math.log(0.5) + math.log(0.25)) / 2, abs=1e-3)
    assert m["perplexity"] == pytest.approx(1 / math.sqrt(0.125), abs=0.01)


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
