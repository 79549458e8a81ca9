"""The "best" tagger's typer: a multinomial logistic regression that reads a candidate span's evidence
(spaCy's label, the student's probabilities, the lexicon, names, head noun, the words around it) and
says PER, ORG, LOC, MISC or O (no entity).

Features are plain dicts {name: value}; the weights live in a small JSON file
(assets/ner_tagger/best_typer.json) written by scripts/train_ner_best.py. Because the model is linear,
every decision splits exactly into per-feature contributions, which the lab shows as "why".

No model loading and no gradio here; scikit-learn is needed only to fit."""
from __future__ import annotations

import json
import math
from pathlib import Path

CLASSES = ("O", "PER", "ORG", "LOC", "MISC")


class Typer:
    def __init__(self, classes, intercept: dict, weights: dict):
        self.classes = tuple(classes)
        self.intercept = {c: float(intercept[c]) for c in self.classes}
        self.weights = {f: {c: float(w) for c, w in ws.items()} for f, ws in weights.items()}

    # ------------------------------------------------------------ use
    def scores(self, features: dict) -> dict[str, float]:
        out = dict(self.intercept)
        for name, value in features.items():
            for c, w in self.weights.get(name, {}).items():
                out[c] += w * value
        return out

    def predict(self, features: dict) -> tuple[str, float]:
        """(class, probability)."""
        s = self.scores(features)
        top = max(s, key=s.get)
        z = sum(math.exp(v - s[top]) for v in s.values())
        return top, 1.0 / z

    def why(self, features: dict, cls: str, n: int = 3) -> list[tuple[str, float]]:
        """The n features that pushed hardest towards `cls` against the runner-up class."""
        s = self.scores(features)
        rival = max((c for c in self.classes if c != cls), key=s.get)
        pushes = [(name, value * (self.weights.get(name, {}).get(cls, 0.0) -
                                  self.weights.get(name, {}).get(rival, 0.0)))
                  for name, value in features.items()]
        return sorted((p for p in pushes if p[1] > 0), key=lambda p: -p[1])[:n]

    # ------------------------------------------------------------ store
    def to_json(self) -> dict:
        return {"classes": list(self.classes), "intercept": self.intercept,
                "weights": {f: self.weights[f] for f in sorted(self.weights)}}

    @classmethod
    def from_json(cls, data: dict) -> "Typer":
        return cls(data["classes"], data["intercept"], data["weights"])

    @classmethod
    def load(cls, path: Path) -> "Typer | None":
        return cls.from_json(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else None


def fit(rows: list[tuple[dict, str]], c: float = 1.0, min_count: int = 2) -> Typer:
    """Fit on (features, gold class) rows. A feature seen in fewer than `min_count` rows is left out
    (a context word met once says nothing general). C=1 is scikit-learn's default, not tuned."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    counts: dict[str, int] = {}
    for features, _ in rows:
        for name in features:
            counts[name] = counts.get(name, 0) + 1
    names = sorted(n for n, k in counts.items() if k >= min_count)
    index = {n: i for i, n in enumerate(names)}
    x = np.zeros((len(rows), len(names)))
    for i, (features, _) in enumerate(rows):
        for name, value in features.items():
            if name in index:
                x[i, index[name]] = value
    y = [label for _, label in rows]
    if len(set(y)) < 3:
        raise ValueError("the typer needs examples of at least three classes to fit")
    model = LogisticRegression(C=c, max_iter=5000).fit(x, y)
    classes = [str(k) for k in model.classes_]
    weights = {n: {k: round(float(model.coef_[j, i]), 5) for j, k in enumerate(classes)}
               for n, i in index.items()}
    intercept = {k: round(float(model.intercept_[j]), 5) for j, k in enumerate(classes)}
    return Typer(classes, intercept, weights)
