"""NER tagger lab: the real embedded models (spaCy, the shipped student, the ensemble), the
/tag and /models API through gradio_client, bad input, the UI's event functions, and one
browser test with a screenshot."""
import re
import sys
from pathlib import Path

import pytest

from conftest import import_app, running, screenshot

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))

SENTENCE = "Chief executive Paul Batchelor said AMP will open an office in Sydney, Australia."


@pytest.fixture(scope="module")
def app():
    return import_app("ner_tagger")


@pytest.fixture(scope="module")
def server(app):
    """One running copy of the lab for the API and browser tests (a Blocks launches once)."""
    with running(app.demo) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def _offsets_ok(text, ents):
    assert isinstance(ents, list)
    for e in ents:
        assert set(e) == {"text", "start", "end", "label", "coarse"}
        assert text[e["start"]:e["end"]] == e["text"]
        assert e["coarse"] in ("PER", "ORG", "LOC", "MISC")


def best_names(text):
    """(text, coarse) of each entity `best` finds in `text` (the tests using it load the app first)."""
    import ner_models

    return [(e["text"], e["coarse"]) for e in ner_models.BEST.tag(text)]


# ---------------------------------------------------------------- models, direct
def test_offline_models_tag_with_char_offsets(app):
    import ner_models

    for name in ner_models.OFFLINE:
        ents = ner_models.tag(SENTENCE, name)
        _offsets_ok(SENTENCE, ents)
        found = {(e["text"], e["coarse"]) for e in ents}
        assert ("Paul Batchelor", "PER") in found, (name, found)
        assert ("Sydney", "LOC") in found, (name, found)


def test_student_folder_loads_in_a_plain_transformers_pipeline(app):
    from transformers import pipeline

    import ner_align
    import ner_models

    plain = pipeline("token-classification", model=str(ner_models.student_folder()), aggregation_strategy="simple",
                     device="cpu")(SENTENCE)
    model, tokenizer = ner_models.STUDENT.load()
    ours = ner_align.aggregate(ner_models.STUDENT.pieces(SENTENCE), "simple", tokenizer)
    assert [(e["start"], e["end"], e["entity_group"]) for e in plain] == \
           [(e["start"], e["end"], e["entity_group"]) for e in ours]


def test_best_beats_plain_spacy_on_the_held_out_test_split(app):
    """The test split: sentences the typer (fitted on dev + fresh + wiki + business) never learned from."""
    import ner_eval
    import ner_models

    gold = ner_eval.load_gold("test")
    spacy_f1 = ner_eval.score([(g["text"], g["entities"], ner_models.SPACY.tag(g["text"])) for g in gold])["f1"]
    best_f1 = ner_eval.score([(g["text"], g["entities"], ner_models.BEST.tag(g["text"])) for g in gold])["f1"]
    assert best_f1 > spacy_f1 + 0.1


def test_gold_scores_on_a_chosen_split(app):
    """The Teacher vs student tab scores any split of the gold set; an unknown split says which exist."""
    import gradio as gr

    rows = app.gold_scores("speeches2", progress=lambda *a, **k: None)
    f1 = {row[0]: row[3] for row in rows}
    assert list(f1)[:2] == ["spaCy", "student"] and len(rows) == 3
    assert f1[rows[-1][0]] > f1["spaCy"]  # best
    import ner_eval

    choices = app.gold_split_choices()
    assert [value for _, value in choices][0] == "test"
    assert {value for _, value in choices} == {g["split"] for g in ner_eval.load_gold()}  # every split
    with pytest.raises(gr.Error, match="choose one of test, speeches"):
        app.gold_scores("<script>", progress=lambda *a, **k: None)


def test_scores_on_the_users_own_conll_file(app, tmp_path):
    """Teacher vs student vs best on an uploaded CoNLL file; bad files get a clear message."""
    import gradio as gr

    quiet = dict(progress=lambda *a, **k: None)
    good = tmp_path / "mine.conll"
    good.write_text("-DOCSTART- -X- -X- O\n\n"
                    "Angela NNP B-PER\nMerkel NNP I-PER\nmet VBD O\nEmmanuel NNP B-PER\nMacron NNP I-PER\n"
                    "in IN O\nBerlin NNP B-LOC\n. . O\n\n"
                    "The DT O\nEuropean NNP B-ORG\nUnion NNP I-ORG\nmet VBD O\nin IN O\nBrussels NNP B-LOC\n. . O\n",
                    encoding="utf-8")
    rows, note = app.conll_scores(str(good), **quiet)
    assert [r[0] for r in rows][:2] == ["spaCy", "student"] and len(rows) == 3
    assert all(0.0 <= r[3] <= 1.0 for r in rows) and rows[-1][3] > 0.5  # best finds these plain names
    assert note.startswith("2 sentences from **mine.conll**")
    # the lab's own CoNLL export scores as gold: a round trip
    from ner_export import to_conll

    text = "Tim Cook told reporters in Cupertino."
    exported = tmp_path / "export.conll"
    exported.write_text(to_conll(text, [{"start": 0, "end": 8, "coarse": "PER"}, {"start": 27, "end": 36, "coarse": "LOC"}]),
                        encoding="utf-8")
    rows, _ = app.conll_scores(str(exported), **quiet)
    assert rows[-1][3] == 1.0

    bad = {"empty.conll": b"", "binary.conll": b"\x00\x01PK\x03" * 100, "page.conll": b"<html><script>alert(1)</script>",
           "words.conll": b"no tags at all here\njust words in columns\n", "huge.conll": b"a O\n" * 600_000}
    messages = {"empty.conll": "No PER, ORG or LOC tag", "binary.conll": "not text", "page.conll": "Not a CoNLL file",
                "words.conll": "No PER, ORG or LOC tag", "huge.conll": "upload at most"}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(gr.Error, match=messages[name]):
            app.conll_scores(str(tmp_path / name), **quiet)
    for nothing in (None, ""):
        with pytest.raises(gr.Error, match="Upload a CoNLL file first"):
            app.conll_scores(nothing, **quiet)
    rows, note = app.gold_split_scores("speeches3", **quiet)  # the split button says what it scored
    assert note == "100 sentences of the shipped gold split **speeches3**." and len(rows) == 3


def test_training_curve_shows_the_loss_and_what_the_two_teachers_agreed_on(app):
    import json

    import ner_models

    report = json.loads((ner_models.student_adapter_dir() / "training_report.json").read_text())
    df, about = app.training_curve()
    assert len(df) == report["steps"] == len(report["loss_every_step"])
    assert df["loss"].iloc[-1] < df["loss"].iloc[0]  # the smoothed loss fell during training
    assert 0 < report["names_disputed"] < report["names_agreed"]
    assert (f"learned the {report['names_agreed']:,} names both agree on" in about
            and f"of the {report['names_disputed']:,} names only one gives" in about)


def test_typer_weights_table_reads_in_words(app):
    rows, note = app.typer_weights(n=10)
    assert len(rows) == 10 and "proposed" in note
    assert all(isinstance(r[0], str) and "=" not in r[0] and len(r) == 6 for r in rows)
    assert any(r[0] == "census name" and r[1] > 0 for r in app.typer_weights(n=200)[0])  # a census name leans PER


def test_best_keeps_listed_companies_organisations(app):
    """'Apple' is a US Census surname (no person vote for a listed company that is only a surname), and
    the typer, fitted on few companies, would call a one-word company MISC: a listed company that its
    finder called ORG stays ORG, and says why."""
    import ner_models

    text = "Apple is looking at buying a U.K. startup for $1 billion, Tim Cook told reporters in Cupertino, California."
    assert [(e["text"], e["coarse"]) for e in ner_models.BEST.tag(text)] == [
        ("Apple", "ORG"), ("U.K.", "LOC"), ("Tim Cook", "PER"), ("Cupertino", "LOC"), ("California", "LOC")]
    ents = ner_models.BEST.tag("The deal between Boeing and Airbus was announced in Paris.")
    assert [(e["text"], e["coarse"]) for e in ents] == [("Boeing", "ORG"), ("Airbus", "ORG"), ("Paris", "LOC")]
    airbus = next(e for e in ents if e["text"] == "Airbus")
    assert airbus["why"]  # "listed company, spaCy agrees (typer said MISC)": the typer has seen few companies


def test_best_knows_well_known_organisations_named_on_their_own(app):
    """Brands and charities that no stock index lists: the uncased student reads 'Oxfam said' as a person and
    drops 'Google' after 'Shares of'; the gazetteer's organisations stand on their own."""
    import ner_best
    import ner_models

    for text, name in (("Oxfam said on Monday that aid had reached the camps.", "Oxfam"),
                       ("Shares of Google rose 3% after the report.", "Google"),
                       ("The deal was announced by Disney in London.", "Disney")):
        got = {e["text"]: e for e in ner_models.BEST.tag(text)}
        assert got[name]["coarse"] == "ORG", (text, got)
    # a place that is also a person's name still needs a second source ("Victoria", "Georgia")
    assert ner_best.BestTagger.listed_type("Victoria") == ("LOC", "gazetteer LOC")


def test_best_keeps_a_type_that_spacy_and_the_gazetteer_agree_on(app):
    """spaCy says GPE and the gazetteer says LOC: a typer that leans PER on a possessive does not overrule
    both. A curated list plus one more source (the finder, or the student) outvote the typer."""
    import ner_best
    import ner_models

    from ner_typer import Typer

    text = "The company welcomes the tax package offered by East Timor's Council of Ministers."
    got = {e["text"]: e["coarse"] for e in ner_models.BEST.tag(text)}
    assert got == {"East Timor": "LOC", "Council of Ministers": "ORG"}
    # a typer that calls every possessive a person: spaCy + gazetteer still win, and the hover says so
    leans_per = Typer(["LOC", "MISC", "O", "ORG", "PER"], {"poss": {"PER": 5.0}}, trust=1.0)
    cands = ner_models.BEST.candidates(text)
    typed = [(c, ner_models.BEST.features(text, c)) for c in cands]
    [timor] = [e for e in ner_best.BestTagger.decide(text, typed, leans_per) if e["text"] == "East Timor"]
    assert timor["coarse"] == "LOC" and timor["why"] == "gazetteer LOC, spaCy agrees (typer said PER)"
    # spaCy calls Tesla a person; the company list and the student both say ORG: two against one
    text = "Elon Musk said Tesla would open a factory in Mexico."
    assert {e["text"]: e["coarse"] for e in ner_models.BEST.tag(text)} == {"Elon Musk": "PER", "Tesla": "ORG",
                                                                          "Mexico": "LOC"}
    typed = [(c, ner_models.BEST.features(text, c, ner_models.STUDENT.pieces(text)))
             for c in ner_models.BEST.candidates(text, ner_models.STUDENT.pieces(text))]
    [tesla] = [e for e in ner_best.BestTagger.decide(text, typed, leans_per) if e["text"] == "Tesla"]
    assert tesla["coarse"] == "ORG" and tesla["why"].startswith("listed company, student agrees")
    assert ner_best.BestTagger.listed_type("East Timor") == ("LOC", "gazetteer LOC")
    # an organisation the gazetteer names needs no second source; a place that is also a person's name does
    text = "Xinhua said Victoria had won."
    typed = [({"start": 0, "end": 6, "source": "spacy", "label": "PERSON"}, {}),
             ({"start": 12, "end": 20, "source": "spacy", "label": "PERSON"}, {})]
    got = {e["text"]: (e["label"], e["coarse"], e.get("why", ""))
           for e in ner_best.BestTagger.decide(text, typed, leans_per)}
    # best's label is the type it chose, not spaCy's overruled PERSON; the hover still says what spaCy found
    assert got == {"Xinhua": ("ORG", "ORG", "gazetteer ORG, an organisation named on its own (typer said PER); "
                                            "found as PERSON"),
                   "Victoria": ("PERSON", "PER", "spaCy proposed PER")}
    assert ner_best.BestTagger.listed_type("Airbus") == ("ORG", "listed company")
    assert ner_best.BestTagger.listed_type("Tim Cook") is None
    text = "This weekend I will meet Boris Yeltsin of the Russian Federation."  # a formal name: not an ORG
    assert {e["text"]: e["coarse"] for e in ner_models.BEST.tag(text)}["Russian Federation"] == "LOC"
    # an institution named on its own: the typer learned that a bare head noun ("Government") is no name
    text = "Narendra Modi visited Washington, where he addressed a joint session of Congress."
    assert {e["text"]: e["coarse"] for e in ner_models.BEST.tag(text)} == {
        "Narendra Modi": "PER", "Washington": "LOC", "Congress": "ORG"}


def test_best_says_why_and_falls_back_to_spacy_without_its_typer(app, monkeypatch):
    import ner_best
    import ner_models

    text = "Later, Veronica called her lawyer from the station."
    [veronica] = ner_models.BEST.tag(text)
    assert "census name" in veronica["why"] and 0.0 < veronica["score"] <= 1.0
    monkeypatch.setattr(ner_best, "load_typer", lambda: None)
    assert [(e["text"], e["coarse"]) for e in ner_models.BEST.tag(text)] == [("Veronica", "ORG")]
    assert "typer missing" in ner_models.BEST.status()[1]


def test_best_knows_a_given_name_that_spacy_calls_an_organisation(app):
    import ner_models

    text = "Later, Veronica called her lawyer from the station."
    assert [(e["text"], e["coarse"]) for e in ner_models.SPACY.tag(text)] == [("Veronica", "ORG")]
    assert best_names(text) == [("Veronica", "PER")]


def test_best_splits_names_at_a_spaced_slash_or_dash_and_keeps_no_title_or_lowercase_word(app):
    # spaCy gives "British Airways / American" as one organisation; they are two
    assert ("British Airways", "ORG") in best_names("Regulators said British Airways / American must give up slots.")
    # the student splits "Fr" off the priest's name: a title alone is no name
    assert best_names("Fr Francisco Sousa documented the religious importance of the island.") == [
        ("Francisco Sousa", "PER")]
    assert ("Brende Mendelssohn", "PER") in best_names("He married Dorothea, née Brende Mendelssohn, in Berlin.")


def test_best_reads_a_city_before_its_state_and_a_currency_prefix(app):
    import ner_models

    # the student and the census list say 'Irving' is a person; a place spaCy saw, followed by its state, is a place
    [irving, texas] = ner_models.BEST.tag("A teenager from Irving, Texas, built the clock himself.")
    assert (irving["text"], irving["coarse"]) == ("Irving", "LOC") and "followed by ', Texas'" in irving["why"]
    assert (texas["text"], texas["coarse"]) == ("Texas", "LOC")
    # the student marks 'US' in 'US$' as the country
    assert ner_models.BEST.tag("He was freed on US$ 50,000 bond on Monday.") == []


def test_best_reads_what_a_name_is_called_and_that_a_storm_is_no_person(app):
    import ner_models

    # without the apposition 'the ... bank', best drops the unknown company name
    assert ("Revolut", "ORG") in best_names("Revolut, the London-based digital bank, reported its first annual profit.")
    # spaCy says PERSON; the storm's name is an event (MISC), never a person
    assert best_names("Typhoon Haiyan killed more than 6,000 people in the Philippines.") == [
        ("Typhoon Haiyan", "MISC"), ("Philippines", "LOC")]
    [storm] = [e for e in ner_models.BEST.tag("Cyclone Idai made landfall near Beira.") if "Idai" in e["text"]]
    assert storm["coarse"] == "MISC" and "a named storm" in storm["why"]


# ---------------------------------------------------------------- API and bad input
def test_api_models_and_tag(client):
    names = client.predict(api_name="/models")
    assert {"best", "spaCy", "student", "bert-base-NER", "GLiNER"} <= set(names)
    for model in ("best", "spaCy", "student"):
        _offsets_ok(SENTENCE, client.predict(SENTENCE, model, api_name="/tag"))


@pytest.mark.parametrize("text", [
    "",
    "   \n\t ",
    "Emoji 🎉 from Barack Obama 👋🏽 in Paris 🇫🇷 and Zoë Ångström in Malmö.",
    "Arabic: محمد يعيش في القاهرة. Hebrew: דוד גר בירושלים. Then John Smith arrived in London.",
    "Control\x00chars\x07 and\x1b[31m escapes: Angela Merkel\u200b met\r\nEmmanuel Macron in Berlin.",
    "<script>alert('x')</script><b>Microsoft</b> hired <i>Satya Nadella</i> in <a href='x'>Redmond</a>.",
    "x" * 10_000,
    "Supercalifragilistic" * 500 + " Paris",
])
def test_api_tag_survives_hostile_text(client, text):
    out = client.predict(text, "best", api_name="/tag")
    _offsets_ok(text, out)
    if not text.strip():
        assert out == []


def test_api_tag_refuses_huge_text_and_unknown_model_clearly(client):
    out = client.predict("Paris is nice. " * 70_000, "best", api_name="/tag")  # ~1 MB
    assert "error" in out and "at most" in out["error"]
    out = client.predict(SENTENCE, "gpt-7", api_name="/tag")
    assert "error" in out and "Unknown model" in out["error"]
    # still serving
    _offsets_ok(SENTENCE, client.predict(SENTENCE, "spaCy", api_name="/tag"))


def test_api_hub_model_offline_says_why(client, monkeypatch):
    monkeypatch.setenv("GENAI_LAB_OFFLINE", "1")  # the server runs in this process
    out = client.predict(SENTENCE, "bert-base-NER", api_name="/tag")
    assert "error" in out and "not available" in out["error"]


# ---------------------------------------------------------------- UI event functions
def test_first_run_times_loading_apart_from_tagging(app, monkeypatch):
    """A model's first run in a process loads it; the card says how long loading took, apart from
    the tagging time, and later runs show only the tagging time."""
    import time

    import ner_models

    real_tag = ner_models.SPACY.tag

    def slow_first_load(text):  # stands in for a model that is not in memory yet
        if text == "Loading." and "spaCy" not in app._WARM:
            time.sleep(app.LOAD_SHOWN_FROM_S + 0.1)
        return real_tag(text)

    monkeypatch.setattr(app, "_WARM", set())
    monkeypatch.setattr(ner_models.SPACY, "tag", slow_first_load)
    quiet = dict(progress=lambda *a, **k: None)
    first = app.run_models(SENTENCE, ["spaCy"], "max", **quiet)[0]
    again = app.run_models(SENTENCE, ["spaCy"], "max", **quiet)[0]
    assert re.search(r"\d+ ms \(first run: \+\d+\.\d s to load\)", first)
    assert re.search(r"\d+ ms", again) and "to load" not in again


def test_ui_flow_tag_correct_score_export(app, tmp_path):
    import gradio as gr

    html, state, rows, _ = app.run_models(SENTENCE, ["best", "spaCy", "student"], "max", progress=lambda *a, **k: None)
    assert "ner-grid" in html and "Batchelor" in html and 'title="' in html
    assert set(state["results"]) == {"best", "spaCy", "student"}
    rows = [r for r in rows if r[0] != "AMP"] + [["AMP", "ORG", None, None, ""]]  # a correction by text only
    scores = app.score_models(state, rows)
    assert {r[0] for r in scores} == {"best", "spaCy", "student"}
    files, msg = app.export(state, rows)
    conll = Path(files["value"][0]).read_text()
    assert "AMP B-ORG" in conll and "Batchelor I-PER" in conll
    with pytest.raises(gr.Error):
        app.score_models(state, [["Nobody", "PER", None, None, ""]])
    with pytest.raises(gr.Error):
        app.run_models("", ["best"], "first", progress=lambda *a, **k: None)
    pieces, strategies, note = app.subword_view(SENTENCE, "student")
    assert any(str(p[1]).startswith("##") for p in pieces) and "average" in strategies
    assert "one window of 128 holds them all" in note
    pieces, _, note = app.subword_view(" ".join([SENTENCE] * 12), "student")
    assert "overlapping windows of 128" in note and max(p[-1] for p in pieces) == 2


def test_upload_that_is_not_text_is_refused(app, tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(app.gr, "Warning", lambda msg: warnings.append(msg))
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    assert app.read_upload(str(binary), "keep me") == "keep me" and "not text" in warnings[-1]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 in Paris".encode("latin-1"))
    assert app.read_upload(str(latin), "keep me") == "keep me" and "UTF-8" in warnings[-1]
    good = tmp_path / "news.txt"
    good.write_text(SENTENCE, encoding="utf-8")
    assert app.read_upload(str(good), "") == SENTENCE


# ---------------------------------------------------------------- browser
def test_browser_tag_and_screenshot(server, page):
    page.goto(server)
    page.get_by_role("button", name="Tag", exact=True).click()
    page.wait_for_selector(".ner-col mark.ner-ent", timeout=120_000)
    page.get_by_role("button", name="Score models vs corrections").click()
    page.wait_for_timeout(1500)
    page.get_by_role("tab", name="Sub-word view").click()
    page.get_by_role("button", name="Show pieces").click()
    page.wait_for_selector(".ner-strat", timeout=60_000)
    page.get_by_role("tab", name="Correct & score").click()
    page.wait_for_timeout(500)
    assert page.locator(".ner-col").count() == 3
    path = screenshot(page, "ner_tagger")
    assert path.exists()
