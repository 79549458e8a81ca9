"""decoding_metrics: distinct-n, repetition rate, mean log-prob and perplexity of one output."""
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spaces" / "decoding_explorer"))

import decoding_loop as dl  # noqa: E402
import decoding_metrics as dm  # noqa: E402
import decoding_strategies as ds  # noqa: E402


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
