"""The "best" tagger's typer: a multinomial logistic regression that reads a candidate span's evidence
(spaCy's label, the student's probabilities, the gazetteer, names, head noun, the words around it) and
says PER, ORG, LOC, MISC or O (no entity).

Features are plain dicts {name: value}; the weights live in a small JSON file
(assets/ner_tagger/best_typer.json) written by scripts/train_ner_best.py. Because the model is linear,
every decision splits exactly into per-feature contributions, which the lab shows as "why".

No model loading and no gradio here; scipy is needed only to fit."""
from __future__ import annotations

import json
import math
from pathlib import Path


# The gold splits (assets/ner_tagger/gold_sentences.tsv) that scripts/train_ner_best.py fits the shipped
# typer on; every other split is held out from fitting.
FITTED_ON = ("dev", "fresh", "wiki", "business")


class Typer:
    """scores[c] = sum(weight[f][c] * value[f]) + (trust if c is the proposed class).

    `proposed` is the type the candidate's finder gave it (spaCy's label mapped to the coarse scheme,
    the student's, the gazetteer's). `trust` is fitted without a penalty and the feature weights with
    one, and there is no free intercept (the finder's one-hot `src=` feature plays that part, penalised
    like the rest). So where the evidence is thin the typer keeps the finder's type instead of drifting
    to the commonest class of its small training set, whose genres are not the user's."""

    def __init__(self, classes, weights: dict, trust: float = 0.0):
        self.classes = tuple(classes)
        self.weights = {f: {c: float(w) for c, w in ws.items()} for f, ws in weights.items()}
        self.trust = float(trust)

    # ------------------------------------------------------------ use
    def scores(self, features: dict, proposed: str | None = None) -> dict[str, float]:
        out = dict.fromkeys(self.classes, 0.0)
        for name, value in features.items():
            for c, w in self.weights.get(name, {}).items():
                out[c] += w * value
        if proposed in out:
            out[proposed] += self.trust
        return out

    def predict(self, features: dict, proposed: str | None = None) -> tuple[str, float]:
        """(class, probability)."""
        s = self.scores(features, proposed)
        top = max(s, key=s.get)
        z = sum(math.exp(v - s[top]) for v in s.values())
        return top, 1.0 / z

    def why(self, features: dict, cls: str, proposed: str | None = None, n: int = 3) -> list[tuple[str, float]]:
        """The n pieces of evidence that added most to `cls`'s score (at least 0.15 each: less is noise);
        the finder's own type counts as the piece named "proposed"."""
        pushes = [(name, value * self.weights.get(name, {}).get(cls, 0.0)) for name, value in features.items()]
        if proposed == cls:
            pushes.append(("proposed", self.trust))
        return sorted((p for p in pushes if p[1] >= 0.15), key=lambda p: -p[1])[:n]

    # ------------------------------------------------------------ store
    def to_json(self) -> dict:
        return {"classes": list(self.classes), "trust": self.trust,
                "weights": {f: self.weights[f] for f in sorted(self.weights)}}

    @classmethod
    def from_json(cls, data: dict) -> "Typer":
        return cls(data["classes"], data["weights"], data.get("trust", 0.0))

    @classmethod
    def load(cls, path: Path) -> "Typer | None":
        return cls.from_json(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else None


def fit(rows: list[tuple[dict, str | None, str]], c: float = 1.0, min_count: int = 3) -> Typer:
    """Fit on (features, proposed class, gold class) rows: softmax cross-entropy, an L2 penalty
    ||W||^2 / 2c on the feature weights (c = 1, as scikit-learn's default; not tuned), none on the
    trust. A feature seen in fewer than `min_count` rows is left out (a context
    word met once says nothing general). L-BFGS from zeros: the same rows give the same typer."""
    import numpy as np
    from scipy.optimize import minimize

    labels = sorted({label for _, _, label in rows})
    if len(labels) < 3:
        raise ValueError("the typer needs examples of at least three classes to fit")
    counts: dict[str, int] = {}
    for features, _, _ in rows:
        for name in features:
            counts[name] = counts.get(name, 0) + 1
    names = sorted(n for n, k in counts.items() if k >= min_count)
    index, col = {n: i for i, n in enumerate(names)}, {k: j for j, k in enumerate(labels)}
    n, f, k = len(rows), len(names), len(labels)
    x, proposed, y = np.zeros((n, f)), np.zeros((n, k)), np.array([col[label] for _, _, label in rows])
    for i, (features, prop, _) in enumerate(rows):
        for name, value in features.items():
            if name in index:
                x[i, index[name]] = value
        if prop in col:
            proposed[i, col[prop]] = 1.0

    def loss(theta):
        w, trust = theta[:-1].reshape(f, k), theta[-1]
        z = x @ w + trust * proposed
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        err = np.exp(log_p)
        err[np.arange(n), y] -= 1.0
        value = -log_p[np.arange(n), y].sum() + (w ** 2).sum() / (2 * c)
        grad = np.concatenate([(x.T @ err + w / c).ravel(), [(err * proposed).sum()]])
        return value, grad

    theta = minimize(loss, np.zeros(f * k + 1), jac=True, method="L-BFGS-B", options={"maxiter": 10000}).x
    w = theta[:-1].reshape(f, k)
    weights = {name: {label: round(float(w[i, j]), 5) for label, j in col.items()} for name, i in index.items()}
    return Typer(labels, weights, round(float(theta[-1]), 5))
