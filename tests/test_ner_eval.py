"""ner_eval: annotations placed in text, seqeval entity scores, the shipped gold set, CoNLL files. Fast."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))

import ner_eval  # noqa: E402


def test_resolve_annotations_and_seqeval_scores():
    text = "Brian Greig met Greig's rival in Perth, Western Australia."
    gold = ner_eval.resolve_annotations(text, "PER:Brian Greig | PER:Greig | LOC:Perth | LOC:Western Australia")
    assert [e["text"] for e in gold] == ["Brian Greig", "Greig", "Perth", "Western Australia"]
    assert ner_eval.score([(text, gold, gold)])["f1"] == 1.0
    pred = [gold[0], dict(gold[2], coarse="ORG"), {"start": 40, "end": 47, "coarse": "LOC"}]  # wrong type, wrong span
    s = ner_eval.score([(text, gold, pred)])
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        ner_eval.resolve_annotations(text, "PER:Nobody")


def test_gold_set_is_consistent():
    gold = ner_eval.load_gold()
    assert len(gold) >= 250
    assert {g["split"] for g in gold} == {"dev", "test", "fresh", "speeches", "speeches2", "speeches3", "business", "wiki"}
    n = 0
    for g in gold:
        for e in g["entities"]:
            assert g["text"][e["start"]:e["end"]] == e["text"]
            n += e["coarse"] in ner_eval.EVAL_TYPES
    assert n >= 450


def test_conll_files_load_as_detokenized_sentences_with_entities(tmp_path):
    import ner_eval

    path = tmp_path / "sample.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\n"
                    "Lloyd NNP I-PER\ndid VBD O\nnot RB O\nthank VB O\nLara NNP I-PER\n's POS O\nWest NNP I-LOC\n"
                    "Indies NNP I-LOC\n( ( O\nWI NNP B-ORG\n) ) O\nin IN O\nMay NNP B-DATE\n. . O\n\n"
                    "Paris B-LOC 0\nBerlin B-LOC 0\n\nShort O\n", encoding="utf-8")
    first, second, third = ner_eval.load_conll(path)
    assert first["text"] == "Lloyd did not thank Lara's West Indies (WI) in May."
    assert [(e["text"], e["coarse"]) for e in first["entities"]] == [
        ("Lloyd", "PER"), ("Lara", "PER"), ("West Indies", "LOC"), ("WI", "ORG")]  # IOB1 or IOB2; no DATE
    # B- starts a new name even right after one of the same type; a trailing extra column is no tag
    assert [e["text"] for e in second["entities"]] == ["Paris", "Berlin"]
    assert third["entities"] == [] and len(ner_eval.load_conll(path, min_tokens=3)) == 1
    assert all(first["text"][e["start"]:e["end"]] == e["text"] for e in first["entities"])
    (tmp_path / "empty.conll").write_text("", encoding="utf-8")
    assert ner_eval.load_conll(tmp_path / "empty.conll") == []
    (tmp_path / "bad.conll").write_text("onlyaword\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs a word and a tag"):
        ner_eval.load_conll(tmp_path / "bad.conll")
