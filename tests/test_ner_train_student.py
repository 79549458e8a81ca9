"""scripts/train_ner_student.py: the student's training data (two teachers, disputed names unlabelled)
on a tiny sample. Fast."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))
sys.path.insert(0, str(ROOT / "scripts"))

import ner_align  # noqa: E402


def test_training_data_preparation_on_a_tiny_sample():
    import train_ner_student as train
    from transformers import AutoTokenizer

    from shared.embedded import minilm_folder

    xml = ("<mediawiki><page><title>Tiny</title><ns>0</ns><revision><text xml:space=\"preserve\">"
           "{{Infobox|name=x}}\n'''Tiny''' is a village in [[Kent|Kent, England]] visited by "
           "[[Charles Dickens]] in 1840.&lt;ref&gt;A source&lt;/ref&gt; It has a church and a pub and a mill.\n"
           "== History ==\n[[Category:Villages]]</text></revision></page>"
           "<page><title>Redirect</title><ns>0</ns><redirect title=\"Tiny\" /><revision><text>#REDIRECT "
           "[[Tiny]]</text></revision></page></mediawiki>")
    articles = train.wiki_articles(xml)
    assert [t for t, _ in articles] == ["Tiny"]
    paragraphs = train.clean_wikitext(articles[0][1])
    assert paragraphs == ["Tiny is a village in Kent, England visited by Charles Dickens in 1840. "
                          "It has a church and a pub and a mill."]
    # Both teachers (spaCy sm and md) find Dickens and Salomon Brothers; only sm calls Ahold a name.
    news = " Salomon Brothers said on Friday that Ahold plans to buy Stop & Shop."
    rows = train.silver_sentences([("wiki:Tiny", paragraphs[0] + news)])
    assert rows and rows[0]["source"] == "wiki:Tiny"
    found = {e["text"]: e["coarse"] for r in rows for e in r["entities"]}
    assert found.get("Charles Dickens") == "PER" and found.get("Salomon Brothers") == "ORG" and "Ahold" not in found
    assert [rows[-1]["text"][a:b] for a, b in rows[-1]["unsure"]] == ["Ahold"]
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
    items = train.encode(rows, tokenizer)
    assert len(items[0]["input_ids"]) == len(items[0]["labels"])
    assert items[0]["labels"][0] == -100 and ner_align.LABELS.index("B-PER") in items[0]["labels"]
    # the pieces of the disputed name carry no label (no loss); the agreed names keep theirs
    tags = {piece: label for piece, label in zip(tokenizer.convert_ids_to_tokens(items[-1]["input_ids"]),
                                                 items[-1]["labels"])}
    assert tags["ah"] == tags["##old"] == -100
    assert ner_align.LABELS[tags["sal"]] == "B-ORG" and ner_align.LABELS[tags["plans"]] == "O"
    assert set(train.HELDOUT_ARTICLES) >= {"Andre Agassi", "Aruba"}
