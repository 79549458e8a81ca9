"""shared/cards.py: a lab's README card is the one source of its title and what it teaches."""
import pytest

import labkit
from shared.cards import CardError, first_paragraph, read_card, title_and_teaches


def test_every_lab_header_comes_from_its_card():
    for lab in labkit.discover():
        title, teaches = title_and_teaches(lab.folder / "app.py")
        assert title == lab.title and teaches and len(teaches) > 20, lab.name


def test_teaches_falls_back_to_the_first_paragraph(tmp_path):
    (tmp_path / "README.md").write_text("---\ntitle: Toy\n---\n\n# Toy\n\nTeaches **toys** with [links](x).\n\nMore.\n")
    assert title_and_teaches(tmp_path / "app.py") == ("Toy", "Teaches toys with links.")
    assert first_paragraph("```\ncode\n```\n\n| a |\n\nProse here.") == "Prose here."


@pytest.mark.parametrize("text, words", [
    ("# no front matter\n", "no YAML front matter"),
    ("---\ntitle: [unclosed\n---\n", "does not parse"),
    ("---\n- a list\n---\n", "must be a mapping"),
])
def test_broken_cards_say_what_to_fix(tmp_path, text, words):
    (tmp_path / "README.md").write_text(text)
    with pytest.raises(CardError, match=words):
        read_card(tmp_path / "README.md")
