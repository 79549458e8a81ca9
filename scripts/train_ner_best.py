"""Fit the NER tagger lab's "best" typer: the logistic regression that starts from the type each
candidate name's finder proposed, reads its evidence (spaCy's label, the student's probabilities,
the gazetteer, US Census names, the head noun, the words around it) and picks PER / ORG / LOC /
MISC or no entity.

Training rows: every candidate that BestTagger.candidates() proposes on the hand-labelled gold
sentences of the splits named in ner_typer.FITTED_ON (`dev`, `fresh`, `wiki`, `business` of
assets/ner_tagger/gold_sentences.tsv: news, business news, and Wikipedia on many topics); its class is the gold type of
the exact same span, or O. Every other split is never fitted on: they are the held-out checks.

    python scripts/train_ner_best.py            # about 45 s on 2 CPU cores
    python scripts/train_ner_best.py --check    # held-out scores only, writes nothing

Writes assets/ner_tagger/best_typer.json (a few hundred readable weights). Deterministic: the same
spaCy, student and gold set give the same file."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))  # the lab's own modules (shared is installed)

import shared.bootstrap  # noqa: E402,F401
import ner_best  # noqa: E402
import ner_eval  # noqa: E402
import ner_models  # noqa: E402
import ner_typer  # noqa: E402

TRAIN_SPLITS = ner_typer.FITTED_ON
CHECK_SPLITS = tuple(s for s in ner_eval.gold_split_sizes() if s not in TRAIN_SPLITS)  # never fitted on


def rows_for(split: str) -> list[dict]:
    """One record per gold sentence: its text, gold entities and (candidate, features, proposed class,
    gold class) rows."""
    best = ner_models.BEST
    out = []
    for g in ner_eval.load_gold(split):
        text = g["text"]
        pieces = ner_models.STUDENT.pieces(text) if ner_models.STUDENT.status()[0] else None
        gold = {(e["start"], e["end"]): e["coarse"] for e in g["entities"]}
        rows = [(c, best.features(text, c, pieces), best.proposed(c), gold.get((c["start"], c["end"]), "O"))
                for c in best.candidates(text, pieces)]
        out.append({"text": text, "entities": g["entities"], "rows": rows})
    return out


def fit(sentences: list[dict]) -> ner_typer.Typer:
    return ner_typer.fit([(f, p, y) for s in sentences for _, f, p, y in s["rows"]])


def f1(typer: ner_typer.Typer, sentences: list[dict]) -> float:
    """Entity F1 of `best` with this typer: the lab's own decision path, on the precomputed features."""
    pairs = [(s["text"], s["entities"], ner_best.BestTagger.decide(s["text"], [(c, f) for c, f, _, _ in s["rows"]],
                                                                      typer))
             for s in sentences]
    return ner_eval.score(pairs)["f1"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print held-out scores, write nothing")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    data = {split: rows_for(split) for split in TRAIN_SPLITS + CHECK_SPLITS}
    print("held-out checks (entity-level F1, PER/ORG/LOC):")
    for left_out in TRAIN_SPLITS:  # each training split scored by a typer fitted on the others
        others = fit([s for split in TRAIN_SPLITS if split != left_out for s in data[split]])
        print(f"  fit without {left_out:6} -> {left_out} {f1(others, data[left_out]):.3f}")
    typer = fit([s for split in TRAIN_SPLITS for s in data[split]])
    print(f"  fit on {' + '.join(TRAIN_SPLITS)} -> " + ", ".join(f"{split} {f1(typer, data[split]):.3f}" for split in CHECK_SPLITS)
          + "   (the shipped typer)")
    if args.check:
        return
    path = ner_best.typer_path()
    path.write_text(json.dumps(typer.to_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    n_rows = sum(len(s["rows"]) for split in TRAIN_SPLITS for s in data[split])
    print(f"wrote {path.relative_to(ROOT)}: {len(typer.weights)} features x {len(typer.classes)} classes, "
          f"trust in the finder's type {typer.trust:.2f}, fitted on {n_rows} candidates")


if __name__ == "__main__":
    main()
