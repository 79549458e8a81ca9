"""ner_entities: span tidying, the input check and its messages. Fast."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))

import ner_best  # noqa: E402
import ner_entities  # noqa: E402
import ner_models  # noqa: E402


def test_tidy_span_drops_articles_possessives_and_punctuation():
    text = "the United Nations' plan and Obasanjo's speech at the U.S. embassy (Inc.)"
    s = text.index("the United")
    assert text.__getitem__(slice(*ner_entities.tidy_span(text, s, s + len("the United Nations'")))) == "United Nations"
    s = text.index("Obasanjo")
    assert text.__getitem__(slice(*ner_entities.tidy_span(text, s, s + len("Obasanjo's")))) == "Obasanjo"
    s = text.index("U.S.")
    assert text.__getitem__(slice(*ner_entities.tidy_span(text, s, s + 4))) == "U.S."
    t = "Hunan province remained"
    assert t.__getitem__(slice(*ner_best.strip_trailing_lowercase(t, 0, 14))) == "Hunan"
    t = "Osama bin Laden"
    assert ner_best.strip_trailing_lowercase(t, 0, len(t)) == (0, len(t))
    t = "The University of Balochistan and Apple"  # spaCy's span ended on 'and'
    assert t.__getitem__(slice(*ner_best.strip_trailing_lowercase(t, 4, 33))) == "University of Balochistan"


def test_check_text_messages():
    assert ner_entities.check_text("") == ""
    for bad in (None, b"bytes", 12):
        with pytest.raises(ner_entities.TaggerError):
            ner_entities.check_text(bad)
    with pytest.raises(ner_entities.TaggerError, match="at most"):
        ner_entities.check_text("a" * (ner_entities.MAX_CHARS + 1))
    with pytest.raises(ner_entities.TaggerError, match="Unknown model"):
        ner_models.get_tagger("gpt-7")
    assert ner_models.get_tagger("SPACY") is ner_models.SPACY


def test_a_tagger_error_is_a_user_error_shown_as_is():
    from shared.errors import UserError, api_error, message

    exc = ner_entities.TaggerError("Paste some text first.")
    assert isinstance(exc, UserError)
    assert message(exc) == "Paste some text first." and api_error(exc) == {"error": "Paste some text first."}
