"""decoding_strategies: the processors are the ones generate builds, in its order; clamps with
notes; unknown names; presets and what the Preset box shows."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces" / "decoding_explorer"))

import decoding_strategies as ds  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_gpt2):
    model, tok = tiny_gpt2
    return model, tok, tok("The quick brown fox jumps over the lazy dog because")["input_ids"]


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


def test_presets_round_trip_and_the_box_follows_the_settings():
    names, values = ds.preset_values(ds.DEFAULT_PRESET)
    assert names == ds.DEFAULT_SELECTION and values == ds.default_values()
    assert ds.preset_of(ds.DEFAULT_SELECTION, ds.default_values()) == ds.DEFAULT_PRESET  # what the page opens with
    assert ds.preset_of(list(reversed(ds.DEFAULT_SELECTION)), values) == ds.DEFAULT_PRESET  # order does not matter
    for preset in ds.PRESETS:
        assert ds.preset_of(*ds.preset_values(preset)) == preset
    hot_names, hot = ds.preset_values("Creative (hot)")
    assert hot != ds.default_values() and ds.preset_of(hot_names, ds.default_values()) == ds.CUSTOM
    assert ds.preset_of([], values) == ds.CUSTOM
    moved = list(values)
    moved[0] += 0.1
    assert ds.preset_of(ds.DEFAULT_SELECTION, moved) == ds.CUSTOM
    assert ds.preset_values("no such preset") == ds.preset_values(ds.DEFAULT_PRESET)


def test_overrides_follow_the_param_table():
    values = ds.default_values()
    overrides = ds.overrides_from(values)
    assert overrides["top_k"] == {"top_k": 40, "temperature": 1.0} and overrides["beam"]["num_beams"] == 4
    chosen, notes = ds.resolve(ds.NAMES, overrides)
    assert not notes and [s.name for s in chosen] == ds.NAMES
    assert {name for name, _, _ in ds.PARAM_UI} <= set(ds.NAMES)
    assert ds.label_of("top_k") == "Top-k sampling" and ds.label_of("nope") == "nope"
