"""NER tagger lab: the "best" tagger's typer (a logistic regression over named evidence), its
explanations, its stored weights, and the script that fits it. The last test runs the real
embedded models over the gold set (about 30 s)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))
sys.path.insert(0, str(ROOT / "scripts"))

import ner_best  # noqa: E402
import ner_models  # noqa: E402
import ner_typer  # noqa: E402

# Evidence as BestTagger names it: spaCy's label, census name, head noun; the finder's proposed type.
# Rows are made up so that each class has one clear cue; the typer must learn the cue, not the row.
ROWS = ([({"sp=PERSON": 1.0, "census": 1.0}, "PER", "PER")] * 8
        + [({"sp=ORG": 1.0, "head_ORG": 1.0}, "ORG", "ORG")] * 8
        + [({"sp=GPE": 1.0}, "LOC", "LOC")] * 8
        + [({"sp=ORG": 1.0, "prev=chief": 1.0}, "ORG", "O")] * 6
        + [({"sp=ORG": 1.0, "census": 1.0}, "ORG", "PER")] * 4
        + [({"sp=GPE": 1.0, "prev=in": 1.0}, "LOC", "LOC")] * 3 + [({"rare": 1.0}, "LOC", "LOC")])


def test_fit_learns_each_cue_and_explains_it():
    typer = ner_typer.fit(ROWS)
    assert set(typer.classes) == {"O", "PER", "ORG", "LOC"}
    assert typer.predict({"sp=PERSON": 1.0, "census": 1.0}, "PER")[0] == "PER"
    assert typer.predict({"sp=GPE": 1.0}, "LOC")[0] == "LOC"
    assert typer.predict({"sp=ORG": 1.0, "head_ORG": 1.0}, "ORG")[0] == "ORG"
    assert typer.predict({"sp=ORG": 1.0, "prev=chief": 1.0}, "ORG")[0] == "O"  # dropped: not a name
    cls, prob = typer.predict({"sp=ORG": 1.0, "census": 1.0}, "ORG")
    assert cls == "PER" and 0.25 < prob <= 1.0  # the census name outvotes spaCy's ORG
    assert typer.why({"sp=ORG": 1.0, "census": 1.0}, "PER", "ORG")[0][0] == "census"
    assert "rare" not in typer.weights  # seen once: left out (min_count=3)


def test_with_no_evidence_the_finders_type_stands():
    typer = ner_typer.fit(ROWS)
    assert typer.trust > 0
    for proposed in ("PER", "ORG", "LOC"):
        assert typer.predict({"never-seen": 1.0}, proposed)[0] == proposed
    assert ("proposed", typer.trust) in typer.why({}, "LOC", "LOC")


def test_scores_are_the_sum_of_the_contributions():
    typer = ner_typer.fit(ROWS)
    feats = {"sp=ORG": 1.0, "head_ORG": 1.0, "census": 0.5}
    scores = typer.scores(feats, "ORG")
    for c in typer.classes:
        assert scores[c] == pytest.approx((typer.trust if c == "ORG" else 0.0) + sum(
            v * typer.weights.get(n, {}).get(c, 0.0) for n, v in feats.items()))


def test_json_round_trip_and_missing_file(tmp_path):
    typer = ner_typer.fit(ROWS)
    path = tmp_path / "typer.json"
    path.write_text(json.dumps(typer.to_json()), encoding="utf-8")
    again = ner_typer.Typer.load(path)
    feats = {"sp=ORG": 1.0, "census": 1.0}
    assert again.predict(feats, "ORG") == typer.predict(feats, "ORG")
    assert ner_typer.Typer.load(tmp_path / "missing.json") is None


def test_fit_needs_three_classes():
    with pytest.raises(ValueError, match="three classes"):
        ner_typer.fit([({"a": 1.0}, "PER", "PER"), ({"a": 1.0}, "PER", "O")] * 3)


def test_why_text_reads_like_words():
    assert ner_best.why_text("sp=ORG") == "spaCy label ORG"
    assert ner_best.why_text("mass_PER") == "student leans PER"
    assert ner_best.why_text("src=spacy") == "found by spaCy"
    assert ner_best.why_text("prev=in") == "after 'in'"
    assert ner_best.why_text("head_ORG") == "head noun ORG"
    assert ner_best.why_text("census") == "census name"


def test_features_name_the_evidence():
    text = "Later, Veronica met staff of the University of Balochistan in Quetta."
    best = ner_models.BEST
    cands = best.candidates(text)
    by_text = {text[c["start"]:c["end"]]: c for c in cands}
    assert "Veronica" in by_text and "University of Balochistan" in by_text
    f = best.features(text, by_text["Veronica"])
    assert f["census"] == 1.0 and f["src=spacy"] == 1.0 and f["prev=later"] == 1.0 and f["next=met"] == 1.0
    f = best.features(text, by_text["University of Balochistan"])
    assert f["head_ORG"] == 1.0 and f["after_the"] == 1.0 and f["nw=3"] == 1.0


def test_shipped_typer_is_what_the_script_fits():
    """scripts/train_ner_best.py on the shipped gold set, spaCy and student gives the shipped weights."""
    import train_ner_best

    shipped = ner_typer.Typer.load(ner_best.typer_path())
    assert shipped is not None, "assets/ner_tagger/best_typer.json is missing: run scripts/train_ner_best.py"
    refit = train_ner_best.fit([s for split in train_ner_best.TRAIN_SPLITS for s in train_ner_best.rows_for(split)])
    assert set(refit.weights) == set(shipped.weights)
    assert refit.trust == pytest.approx(shipped.trust, abs=2e-3)
    for name, ws in shipped.weights.items():
        for c, w in ws.items():
            assert refit.weights[name][c] == pytest.approx(w, abs=2e-3), (name, c)
