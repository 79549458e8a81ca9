"""DPO labeler numbers: Cohen's kappa against hand-computed values, pooled agreement, length bias,
which sampling setting wins, the Wilson interval."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "dpo_labeler"))

import dpo_stats as st  # noqa: E402


def test_cohen_kappa_textbook_example():
    # 2x2 example: 50 items, raters agree yes on 20, no on 15; p_o = .7, p_e = .5 -> kappa = .4
    x = ["a"] * 25 + ["b"] * 25
    y = ["a"] * 20 + ["b"] * 5 + ["a"] * 10 + ["b"] * 15
    assert st.cohen_kappa(x, y) == pytest.approx(0.4)
    assert st.cohen_kappa(x, x) == pytest.approx(1.0)
    assert st.cohen_kappa(["a", "a"], ["a", "a"]) is None  # chance agreement is 1: undefined
    assert st.cohen_kappa([], []) is None


def test_agreement_on_shared_pairs_only():
    labels = [{"annotator": "u", "pair_id": p, "choice": c} for p, c in [("1", "a"), ("2", "b"), ("3", "tie"), ("4", "a")]]
    labels += [{"annotator": "v", "pair_id": p, "choice": c} for p, c in [("1", "a"), ("2", "a"), ("3", "tie"), ("9", "b")]]
    out = st.agreement(labels)
    assert out["pairs_shared"] == 3 and out["comparisons"] == 3
    assert out["percent"] == pytest.approx(66.7)
    assert out["kappa"] == pytest.approx(st.cohen_kappa(["a", "b", "tie"], ["a", "a", "tie"]), abs=1e-3)
    assert out["by_pair"][0]["shared"] == 3
    assert st.agreement(labels[:4])["percent"] is None  # one annotator: nothing to compare


def test_length_bias_and_setting_wins():
    prefs = [{"chosen": "x" * 10, "rejected": "y" * 4}, {"chosen": "x" * 2, "rejected": "y" * 8}]
    out = st.length_bias(prefs)
    assert out["chosen_mean"] == 6 and out["rejected_mean"] == 6 and out["chosen_longer"] == 0.5
    pairs = {"p": {"a_is": 2, "setting_a": '{"temperature": 1.2}', "setting_b": '{"temperature": 0.7}'}}
    wins = st.setting_wins([{"pair_id": "p", "choice": "a"}, {"pair_id": "p", "choice": "b"},
                            {"pair_id": "p", "choice": "tie"}], pairs)
    assert wins["wins"] == {"setting 2": 1, "setting 1": 1, "tie": 1}
    assert wins["settings"]["setting 2"]["temperature"] == 1.2


def test_wilson_interval_and_win_rate():
    low, high = st.wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert st.wilson(0, 0) is None
    votes = [{"winner": w} for w in ["trained"] * 3 + ["base"] + ["tie"] * 2]
    out = st.win_rate(votes)
    assert out["win_rate"] == 0.75 and out["ties"] == 2 and out["votes"] == 6
    assert out["ci95"][0] < 0.75 < out["ci95"][1]


def test_kappa_words():
    assert st.kappa_words(None) == "not defined yet"
    assert st.kappa_words(0.5) == "moderate" and st.kappa_words(-0.1) == "worse than chance"
