"""NER tagger lab: sub-word alignment, aggregation (checked against transformers' own pipeline on
a tiny random BERT with the real MiniLM word-piece vocabulary), windows, scoring, export, the gold
set and the training script's data preparation. No trained model needed: fast."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))
sys.path.insert(0, str(ROOT / "scripts"))

import ner_align  # noqa: E402
import ner_best  # noqa: E402
import ner_entities  # noqa: E402
import ner_eval  # noqa: E402
import ner_export  # noqa: E402
import ner_models  # noqa: E402


@pytest.fixture(scope="module")
def tiny_bert():
    """A 2-layer, 32-wide BERT token classifier with random weights and the real uncased vocab."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from shared.embedded import minilm_folder

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=160, num_labels=len(ner_align.LABELS),
                        id2label=dict(enumerate(ner_align.LABELS)),
                        label2id={l: i for i, l in enumerate(ner_align.LABELS)})
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():  # make the random tags varied but not uniform
        model.classifier.weight.mul_(40)
    return model, tokenizer


TEXT = "Andre Agassi met Steffi Graf in Las Vegas; Kournikova's coach flew to Tbilisi."


def test_bio_for_pieces_marks_first_piece_b_and_the_rest_i():
    text = "Agassi visited Tbilisi."
    offsets = [(0, 0), (0, 3), (3, 6), (7, 14), (15, 17), (17, 22), (22, 23), (0, 0)]
    ents = [{"start": 0, "end": 6, "coarse": "PER"}, {"start": 15, "end": 22, "coarse": "LOC"}]
    tags = ner_align.bio_for_pieces(offsets, ents, text)
    assert tags == [None, "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", None]


def test_windows_cover_everything_with_overlap():
    assert ner_align.windows(10, window=128) == [(0, 10)]
    spans = ner_align.windows(1000, window=128, stride=32)
    covered = set()
    for s, e in spans:
        assert e - s <= 126
        covered.update(range(s, e))
    assert covered == set(range(1000))
    assert all(spans[i][1] - spans[i + 1][0] == 32 for i in range(len(spans) - 2))


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_aggregation_matches_transformers_pipeline(tiny_bert, strategy):
    from transformers import pipeline

    model, tokenizer = tiny_bert
    ours = ner_align.aggregate(ner_align.classify_pieces(model, tokenizer, TEXT), strategy, tokenizer)
    theirs = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy,
                      device="cpu")(TEXT)
    key = "entity" if strategy == "none" else "entity_group"
    assert [(e[key], e["start"], e["end"], e["word"]) for e in ours] == \
           [(e[key], e["start"], e["end"], e["word"]) for e in theirs]
    for a, b in zip(ours, theirs):
        assert a["score"] == pytest.approx(float(b["score"]), abs=1e-4)


def test_long_text_runs_in_windows_and_keeps_offsets(tiny_bert):
    model, tokenizer = tiny_bert
    text = " ".join([TEXT] * 40)  # ~700 pieces: several windows
    pieces = ner_align.classify_pieces(model, tokenizer, text, window=64, stride=16)
    assert max(p.windows for p in pieces) == 2  # the overlaps were seen twice
    assert [p.index for p in pieces] == list(range(len(pieces)))
    assert pieces[-1].end == len(text.rstrip("."))+1 or pieces[-1].end == len(text)
    for e in ner_align.aggregate(pieces, "simple", tokenizer):
        assert 0 <= e["start"] < e["end"] <= len(text)
    whole = ner_align.classify_pieces(model, tokenizer, TEXT, window=512)
    windowed = ner_align.classify_pieces(model, tokenizer, TEXT, window=8, stride=3)
    assert [(p.start, p.end) for p in whole] == [(p.start, p.end) for p in windowed]


def test_unknown_strategy_is_refused(tiny_bert):
    with pytest.raises(ValueError):
        ner_align.aggregate([], "mean")


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


def test_titles_and_post_nominals_are_not_part_of_a_name():
    for span, name in (("Mr Reid", "Reid"), ("Spokeswoman Anne Stringer", "Anne Stringer"), ("Ross Ray QC", "Ross Ray"),
                       ("Vice President Al Gore", "Al Gore"), ("Dr. Jane Goodall", "Jane Goodall"),
                       ("Prince Harry", "Harry"), ("President", "President"), ("Mr smith", "Mr smith"),
                       ("John Major", "John Major"), ("Major", "Major")):
        assert span.__getitem__(slice(*ner_best.strip_title(span, 0, len(span)))) == name


def test_student_groups_broken_at_a_connector_are_joined():
    text = "Seas include the Gulf of Saint Lawrence and Bay of Fundy, said Smith and Jones."
    groups = [{"start": text.index(w), "end": text.index(w) + len(w), "entity_group": t}
              for w, t in (("Gulf of", "LOC"), ("Saint Lawrence", "LOC"), ("Bay of", "LOC"), ("Fundy", "ORG"),
                           ("Smith", "PER"), ("Jones", "PER"))]
    joined = [(text[g["start"]:g["end"]], g["entity_group"]) for g in ner_best.join_connected(text, groups)]
    # a connector at the end of a group joins it to the next; 'and' between two whole names joins nothing
    assert joined == [("Gulf of Saint Lawrence", "LOC"), ("Bay of Fundy", "LOC"), ("Smith", "PER"), ("Jones", "PER")]


def test_a_name_after_head_noun_of_takes_it_in():
    for text, found, name in (("ships in the Gulf of Maine today", "Maine", "Gulf of Maine"),
                              ("the Treaty of Versailles was signed", "Versailles", "Treaty of Versailles"),
                              ("In Republic of Korea, the vote", "Korea", "Republic of Korea"),
                              ("the Democratic Republic of the Congo", "Congo", "Democratic Republic of the Congo"),
                              ("the President of France", "France", "France"),  # not a head noun of a name
                              ("the rest of Europe", "Europe", "Europe")):
        start = text.index(found)
        assert text[ner_best.extend_head_of(text, start):start + len(found)] == name
    # two names already found stay two: 'Brahui Language Board' of 'University of Balochistan'
    text = "It was developed by the Brahui Language Board of the University of Balochistan in Quetta."
    names = [text[c["start"]:c["end"]] for c in ner_models.BEST.candidates(text)]
    assert "Brahui Language Board" in names and "University of Balochistan" in names


def test_a_name_holds_no_half_bracket_and_no_leading_common_word():
    for span, coarse, name in (("Organisation of the Islamic Conference (OIC", "ORG", "Organisation of the Islamic Conference"),
                               ("OIC) Jakarta", "LOC", "Jakarta"), ("west Japan", "LOC", "Japan"),
                               ("de Gaulle", "PER", "de Gaulle"), ("née Brende Mendelssohn", "PER", "Brende Mendelssohn"),
                               ("iPhone X", "MISC", "iPhone X"), ("Johor Bahru (Malaysia)", "LOC", "Johor Bahru"),
                               ("Chelsea 2-1", "ORG", "Chelsea"), ("Apollo 11", "MISC", "Apollo 11"),
                               ("Boeing 737-800", "MISC", "Boeing 737-800")):
        assert span.__getitem__(slice(*ner_best.name_span(span, 0, len(span), coarse))) == name


def test_a_common_noun_next_to_a_name_describes_it():
    for text, name, kind in (("the cryptocurrency exchange FTX collapsed", "FTX", "ORG"),
                             ("the carmaker Rivian delayed it", "Rivian", "ORG"),
                             ("Revolut, the London-based digital bank, reported", "Revolut", "ORG"),
                             ("Fastly, a cloud service provider based in San Francisco", "Fastly", "ORG"),
                             ("Smith, the company's founder, said", "Smith", "PER"),
                             ("Kenyan runner Faith Kipyegon won", "Faith Kipyegon", "PER"),
                             ("people in Ethiopia's Tigray region", "Tigray", "LOC"),
                             ("in the town of Tisbury on Monday", "Tisbury", "LOC"),
                             ("the region Tigray", "Tigray", None),  # a place noun says so after the name, or with 'of'
                             ("Paris is large", "Paris", None), ("Paris, the capital, is large", "Paris", None)):
        start = text.index(name)
        assert ner_best.described_as(text, start, start + len(name)) == kind, text


def test_an_organisation_or_place_does_not_end_in_a_role():
    for span, coarse, name in (("State Department Spokesperson", "ORG", "State Department"),
                               ("NASA Administrator", "ORG", "NASA"), ("Kremlin Chief", "LOC", "Kremlin"),
                               ("Chief", "ORG", "Chief"),  # nothing left: stays as it is
                               ("Ministry of Defence", "ORG", "Ministry of Defence"),
                               ("Anne Director", "PER", "Anne Director")):  # a person's surname may be a role word
        assert span.__getitem__(slice(*ner_best.name_span(span, 0, len(span), coarse))) == name


def test_a_name_found_in_part_by_one_finder_and_whole_by_the_other_is_whole():
    text = "Kim Do Hoon scored in Johor Bahru, said US President Bill Clinton."
    at = lambda w: (text.index(w), text.index(w) + len(w))  # noqa: E731
    groups = [at("Kim Do Hoon"), at("Johor Bahru"), at("US President Bill Clinton")]
    assert text.__getitem__(slice(*ner_best.whole_name(text, at("Kim"), groups))) == "Kim Do Hoon"
    assert text.__getitem__(slice(*ner_best.whole_name(text, at("Bahru"), groups))) == "Johor Bahru"
    # a title or a listed place is no part of the name
    assert text.__getitem__(slice(*ner_best.whole_name(text, at("Bill Clinton"), groups))) == "Bill Clinton"
    assert ner_best.whole_name(text, at("scored"), groups) == at("scored")


def test_capitalised_common_nouns_are_no_names():
    text = "We can be proud of our Nation's record, and the Federal Government will help all our States."
    assert [text[c["start"]:c["end"]] for c in ner_models.BEST.candidates(text)] == []


def test_census_names_and_head_nouns_say_a_type():
    gazetteer = ner_best.load_gazetteer()
    assert ner_best.looks_like_person(["Veronica"], gazetteer)
    assert ner_best.looks_like_person(["Lincoln", "Burrows"], gazetteer)
    assert ner_best.looks_like_person(["Slayton"], gazetteer)  # a census surname alone
    assert not ner_best.looks_like_person(["Georgia"], gazetteer)  # a place in the gazetteer
    assert not ner_best.looks_like_person(["Goldman", "Sachs"], gazetteer)  # no given name first
    assert not ner_best.looks_like_person([], gazetteer)
    assert not ner_best.looks_like_person(["Apple"], gazetteer)  # a listed company, only a surname
    assert ner_best.looks_like_person(["Dana"], gazetteer)  # a listed company too, but a given name
    assert ner_best.head_type("University of Balochistan".split()) == "ORG"
    assert ner_best.head_type("Academy Award for Best Production Design".split()) == "MISC"
    assert ner_best.head_type("Puerto Rico Trench".split()) == "LOC"
    assert ner_best.head_type("Salomon Brothers".split()) == "ORG"  # a company-name ending
    assert ner_best.head_type("Angela Merkel".split()) is None
    assert ner_best.head_type("Deseret News".split()) == "ORG"  # a newspaper
    assert ner_best.head_type("Grand Mosque".split()) == "LOC"  # a building
    assert ner_best.head_type("Intel Science Fair".split()) == "MISC"  # an event
    assert ner_best.head_type([]) is None


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


def test_offline_hub_models_say_why(monkeypatch):
    monkeypatch.setenv("GENAI_LAB_OFFLINE", "1")
    ok, why = ner_models.BERT.status()
    assert not ok and "offline" in why
    ok, why = ner_models.GLINER.status()
    assert not ok and why
    with pytest.raises(ner_entities.TaggerError):
        ner_models.tag("Paris", "bert-base-NER")


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


def test_each_export_gets_its_own_folder_and_those_a_day_old_are_removed(tmp_path):
    old, recent = tmp_path / "export_old", tmp_path / "export_recent"
    for folder in (old, recent):
        folder.mkdir()
        (folder / "ner_corrected.conll").write_text("Paris B-LOC\n")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(old, (two_days_ago, two_days_ago))
    unrelated = tmp_path / "notes"  # not an export: never touched
    unrelated.mkdir()
    os.utime(unrelated, (two_days_ago, two_days_ago))
    first = ner_export.new_export_folder(tmp_path)
    second = ner_export.new_export_folder(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    assert not old.exists()
    assert (recent / "ner_corrected.conll").exists() and unrelated.exists()


def test_export_conll_jsonl_and_atomic_write(tmp_path):
    text = "Angela Merkel visited Paris.\nShe met Macron."
    ents = [{"start": 0, "end": 13, "coarse": "PER"}, {"start": 22, "end": 27, "coarse": "LOC"},
            {"start": 37, "end": 43, "coarse": "PER"}, {"start": 5, "end": 9, "coarse": "ORG"}]  # overlap dropped
    conll = ner_export.to_conll(text, ents)
    assert conll.splitlines()[:3] == ["Angela B-PER", "Merkel I-PER", "visited O"]
    assert "\n\nShe O\n" in conll
    records = [json.loads(l) for l in ner_export.to_jsonl(text, ents).splitlines()]
    assert len(records) == 1 and len(records[0]["entities"]) == 3
    for e in records[0]["entities"]:
        assert records[0]["text"][e["start"]:e["end"]] == e["text"]
    conll_path, jsonl_path = ner_export.export_files(tmp_path, text, ents)
    assert conll_path.read_text() == conll and not list(tmp_path.glob(".*partial"))
    with pytest.raises(ValueError):
        ner_export.push_to_hub("me/data", "", [conll_path])
    with pytest.raises(ValueError):
        ner_export.push_to_hub("not a repo", "hf_x", [conll_path])


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


def test_an_acronym_in_brackets_takes_the_type_of_the_name_it_abbreviates():
    text = "Ministers of the Organisation of the Islamic Conference (OIC) met the Labour Party (ALP)."
    org = ner_entities.entity(text, text.index("Organisation"), text.index(" (OIC"), "ORG", "ORG")
    labour = ner_entities.entity(text, text.index("Labour"), text.index(" (ALP"), "ORG", "ORG")
    got = ner_best.BestTagger._acronyms_in_brackets(text, [org, labour])
    # OIC are the initials of the name before it; ALP are not the initials of 'Labour Party'
    assert [(e["text"], e["coarse"]) for e in got] == [("Organisation of the Islamic Conference", "ORG"),
                                                        ("Labour Party", "ORG"), ("OIC", "ORG")]
    assert got[-1]["why"] == "the initials of 'Organisation of the Islamic Conference'"


def test_a_name_holds_no_comma_unless_an_abbreviation_follows_nor_a_spaced_slash_or_dash():
    for span, parts in (("Goa, Panaji", ["Goa", "Panaji"]), ("Tieck, Schelling", ["Tieck", "Schelling"]),
                        ("Washington, D.C.", ["Washington, D.C."]), ("Acme, Inc.", ["Acme, Inc."]),
                        ("Paris", ["Paris"]), ("British Airways / American", ["British Airways", "American"]),
                        ("FEATURE - Singapore", ["FEATURE", "Singapore"]), ("Oslo \u2013 Bergen", ["Oslo", "Bergen"]),
                        ("Dallas-Fort Worth", ["Dallas-Fort Worth"]), ("AC/DC", ["AC/DC"])):
        assert [span[a:b] for a, b in ner_best.split_at_separators(span, 0, len(span))] == parts


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
