"""Numbers about the labels: counts per annotator and choice, agreement between annotators on the
pairs they share (percent agreement and Cohen's kappa), the length of chosen vs rejected answers,
which sampling setting wins, and the blind round's win rate with a Wilson interval."""
from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict

CHOICES = ("a", "b", "tie", "both_bad")


def cohen_kappa(x: list[str], y: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when it is undefined (fewer than
    one item, or both raters always gave one and the same label, so chance agreement is 1)."""
    n = len(x)
    if n == 0 or n != len(y):
        return None
    observed = sum(a == b for a, b in zip(x, y)) / n
    cx, cy = Counter(x), Counter(y)
    expected = sum(cx[k] * cy[k] for k in set(cx) | set(cy)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def agreement(labels: list[dict]) -> dict:
    """Pairwise agreement on shared pairs. `labels` are the active labels (one per annotator and pair).

    percent: share of (annotator pair, shared item) comparisons that agree, pooled;
    kappa: mean of the defined pairwise Cohen's kappas (Light's kappa), weighted by shared items."""
    by_annotator: dict[str, dict[str, str]] = defaultdict(dict)
    for label in labels:
        by_annotator[label["annotator"]][label["pair_id"]] = label["choice"]
    rows, agree, total, kappa_sum, kappa_n = [], 0, 0, 0.0, 0
    for u, v in itertools.combinations(sorted(by_annotator), 2):
        shared = sorted(set(by_annotator[u]) & set(by_annotator[v]))
        if not shared:
            continue
        x = [by_annotator[u][p] for p in shared]
        y = [by_annotator[v][p] for p in shared]
        same = sum(a == b for a, b in zip(x, y))
        k = cohen_kappa(x, y)
        rows.append({"a": u, "b": v, "shared": len(shared), "percent": round(100 * same / len(shared), 1),
                     "kappa": None if k is None else round(k, 3)})
        agree, total = agree + same, total + len(shared)
        if k is not None:
            kappa_sum, kappa_n = kappa_sum + k * len(shared), kappa_n + len(shared)
    pairs_shared = sum(1 for p in {l["pair_id"] for l in labels}
                       if sum(p in d for d in by_annotator.values()) >= 2)
    return {"pairs_shared": pairs_shared, "comparisons": total,
            "percent": round(100 * agree / total, 1) if total else None,
            "kappa": round(kappa_sum / kappa_n, 3) if kappa_n else None, "by_pair": rows}


def kappa_words(kappa: float | None) -> str:
    """Landis & Koch's usual reading of a kappa."""
    if kappa is None:
        return "not defined yet"
    for bound, word in ((0.0, "worse than chance"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"),
                        (0.8, "substantial")):
        if kappa < bound:
            return word
    return "almost perfect"


def per_annotator(labels: list[dict], skips: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for label in labels:
        row = out.setdefault(label["annotator"], {"labels": 0, **{c: 0 for c in CHOICES}, "skips": 0})
        row["labels"] += 1
        row[label["choice"]] += 1
    for skip in skips:
        out.setdefault(skip["annotator"], {"labels": 0, **{c: 0 for c in CHOICES}, "skips": 0})["skips"] += 1
    return out


def length_bias(prefs: list[dict]) -> dict:
    """Characters of chosen vs rejected answers, and how often the chosen one is the longer: the length
    bias that reward models and DPO readily learn."""
    if not prefs:
        return {"pairs": 0, "chosen_mean": None, "rejected_mean": None, "chosen_longer": None}
    c = [len(p["chosen"]) for p in prefs]
    r = [len(p["rejected"]) for p in prefs]
    longer = sum(a > b for a, b in zip(c, r)) / len(prefs)
    return {"pairs": len(prefs), "chosen_mean": round(sum(c) / len(c), 1), "rejected_mean": round(sum(r) / len(r), 1),
            "chosen_longer": round(longer, 3), "chosen": c, "rejected": r}


def setting_wins(labels: list[dict], pairs: dict[str, dict]) -> dict:
    """Which sampling setting the annotators preferred (A/B unmasked after the fact)."""
    wins: Counter = Counter()
    names = {}
    for label in labels:
        pair = pairs.get(label["pair_id"])
        if pair is None or label["choice"] not in ("a", "b"):
            wins[label["choice"]] += 1 if label["choice"] in ("tie", "both_bad") else 0
            continue
        setting = pair["a_is"] if label["choice"] == "a" else 3 - pair["a_is"]
        wins[f"setting {setting}"] += 1
        text = pair["setting_a"] if label["choice"] == "a" else pair["setting_b"]
        names.setdefault(f"setting {setting}", json.loads(text))
    return {"wins": dict(wins), "settings": names}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default); None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def win_rate(votes: list[dict]) -> dict:
    """The trained model's win rate over decisive votes (ties reported apart), with its Wilson 95% interval."""
    wins = sum(v["winner"] == "trained" for v in votes)
    losses = sum(v["winner"] == "base" for v in votes)
    ties = sum(v["winner"] == "tie" for v in votes)
    n = wins + losses
    interval = wilson(wins, n)
    return {"votes": len(votes), "trained": wins, "base": losses, "ties": ties,
            "win_rate": round(wins / n, 3) if n else None,
            "ci95": [round(interval[0], 3), round(interval[1], 3)] if interval else None}
