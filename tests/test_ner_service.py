"""ner_service: what the NER lab's UI and API call, on the real embedded models: a Tag with several
models (shared stages run once, progress that moves), the sub-word view, corrections and their scores
(n/a for a type with no gold), labels that follow a changed type, export, the gold-set and CoNLL scores,
the training curve and the typer's weights."""
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))

import ner_eval  # noqa: E402
import ner_models  # noqa: E402
import ner_service as svc  # noqa: E402
import ner_views as views  # noqa: E402
from ner_entities import TaggerError  # noqa: E402

SENTENCE = "Chief executive Paul Batchelor said AMP will open an office in Sydney, Australia."
quiet = dict(progress=lambda *a, **k: None)


@pytest.fixture(scope="module")
def speeches2():
    """One gold split scored once for the tests that read it (about 100 sentences through three models)."""
    return svc.gold_scores("speeches2", **quiet)


# ---------------------------------------------------------------- a Tag
def test_tag_runs_every_model_with_each_shared_stage_once(monkeypatch):
    calls = {"doc": 0, "pieces": 0}
    real_doc, real_pieces = ner_models.SPACY.doc, ner_models.STUDENT.pieces

    def doc(text):
        calls["doc"] += text == SENTENCE
        return real_doc(text)

    def pieces(text, progress=None):
        calls["pieces"] += text == SENTENCE
        return real_pieces(text, progress)

    monkeypatch.setattr(ner_models.SPACY, "doc", doc)
    monkeypatch.setattr(ner_models.STUDENT, "pieces", pieces)
    run = svc.tag_models(SENTENCE, ["best", "spaCy", "student"], "max", **quiet)
    assert calls == {"doc": 1, "pieces": 1}
    assert list(run["results"]) == ["best", "spaCy", "student"]
    monkeypatch.undo()
    for name in ("best", "spaCy", "student"):  # the same entities as each model on its own
        alone = ner_models.get_tagger(name).tag(SENTENCE) if name != "student" else \
            ner_models.STUDENT.tag(SENTENCE, "max")
        assert [(e["start"], e["end"], e["coarse"]) for e in run["results"][name]] == \
               [(e["start"], e["end"], e["coarse"]) for e in alone], name
    with pytest.raises(TaggerError, match="Paste some text"):
        svc.tag_models("   ", ["best"], "max", **quiet)


def test_a_long_run_reports_progress_all_along():
    """Issue 25: a 31 s run of long text showed 0.0% for most of its time (progress moved once per model).
    Now the bar moves within spaCy's stage, with each batch of the student's windows and best's candidates."""
    text = " ".join(g["text"] for g in ner_eval.load_gold("test"))[:12_000]
    seen = []
    svc.tag_models(text, ["best", "spaCy", "student"], "max",
                   progress=lambda fraction, desc=None: seen.append((round(fraction, 4), desc)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    inside = [f for f in fractions if 0.0 < f < 1.0]
    assert len(set(inside)) >= 8, seen  # many steps between the start and the end, not a jump at the end
    assert any(d and d.startswith("student: window") for _, d in seen)
    assert any(d and d.startswith("best: typing candidate") for _, d in seen)


def test_first_run_times_loading_apart_from_tagging(monkeypatch):
    """A model's first run in a process loads it; the card says how long loading took, apart from
    the tagging time, and later runs show only the tagging time."""
    import time

    from shared import loading

    real_tag = ner_models.SPACY.tag

    def slow_first_load(text):  # stands in for a model that is not in memory yet
        if text == "Loading.":
            time.sleep(svc.LOAD_SHOWN_FROM_S + 0.1)
        return real_tag(text)

    monkeypatch.delitem(loading._cache, ("ner", "warm", "spaCy"), raising=False)  # as in a fresh process
    monkeypatch.setattr(ner_models.SPACY, "tag", slow_first_load)
    first = svc.tag_models(SENTENCE, ["spaCy"], "max", **quiet)
    again = svc.tag_models(SENTENCE, ["spaCy"], "max", **quiet)
    first = views.side_by_side(first["text"], first["results"], first["timings"], first["loads"])
    again = views.side_by_side(again["text"], again["results"], again["timings"], again["loads"])
    assert re.search(r"\d+ ms \(first run: \+\d+\.\d s to load\)", first)
    assert re.search(r"\d+ ms", again) and "to load" not in again


def test_a_view_is_out_of_date_when_its_inputs_change():
    run = {"text": SENTENCE, "models": ["best"], "strategy": "max"}
    assert not svc.is_stale(run, SENTENCE, ["best"], "max")
    assert svc.is_stale(run, SENTENCE + " More.", ["best"], "max")
    assert svc.is_stale(run, SENTENCE, ["best", "spaCy"], "max")
    assert svc.is_stale(run, SENTENCE, ["best"], "first")
    assert not svc.is_stale({}, "anything", [], "max")  # nothing tagged yet: nothing to be out of date


# ---------------------------------------------------------------- the sub-word view
def test_subword_view_notes_windows_and_reuses_a_tags_pieces():
    out = svc.subword(SENTENCE, "student")
    pieces = views.pieces_rows(out["pieces"])
    assert any(str(p[1]).startswith("##") for p in pieces) and "average" in views.strategies_table(out["by_strategy"])
    assert "one window of 128 holds them all" in out["note"]
    out = svc.subword(" ".join([SENTENCE] * 12), "student")
    assert "overlapping windows of 128" in out["note"] and max(p[-1] for p in views.pieces_rows(out["pieces"])) == 2
    run = svc.tag_models(SENTENCE, ["student"], "max", **quiet)
    assert svc.subword(SENTENCE, "student", pieces=run["pieces"])["pieces"] is run["pieces"]
    with pytest.raises(TaggerError, match="student or bert-base-NER"):
        svc.subword(SENTENCE, "spaCy")


# ---------------------------------------------------------------- corrections
def test_ui_flow_tag_correct_score_export(tmp_path):
    run = svc.tag_models(SENTENCE, ["best", "spaCy", "student"], "max", **quiet)
    html = views.side_by_side(run["text"], run["results"], run["timings"], run["loads"])
    assert "ner-grid" in html and "Batchelor" in html and 'title="' in html
    assert set(svc.tagged(run)) == {"best", "spaCy", "student"}
    rows = views.entity_rows(svc.reference(run))
    rows = [r for r in rows if r[0] != "AMP"] + [["AMP", "ORG", None, None, "", ""]]  # a correction by text only
    scores = svc.score_corrections(run, rows)
    assert {s["model"] for s in scores} == {"best", "spaCy", "student"}
    folder, files, n = svc.export(run, rows, parent=tmp_path)
    conll = files[0].read_text()
    assert "AMP B-ORG" in conll and "Batchelor I-PER" in conll and n == len(rows)
    with pytest.raises(TaggerError):
        svc.score_corrections(run, [["Nobody", "PER", None, None, ""]])
    with pytest.raises(TaggerError, match="PER, ORG, LOC or MISC"):
        svc.score_corrections(run, [["AMP", "COMPANY", None, None, ""]])
    with pytest.raises(TaggerError, match="Tag a text first"):
        svc.score_corrections({}, rows)


def test_the_why_of_best_is_a_column_of_the_entity_table():
    """Issue 25: why best chose a type was only in hover text, which phones do not have."""
    run = svc.tag_models("Later, Veronica called her lawyer from the station.", ["best"], "max", **quiet)
    [row] = views.entity_rows(svc.reference(run))
    assert views.ENTITY_COLUMNS[-1].startswith("why") and "census name" in row[-1]


def test_a_type_with_no_gold_entity_left_scores_n_a_not_zero():
    """Issue 25: change a correction's type and score: a type with no gold entity left read F1 = 0.0."""
    run = svc.tag_models(SENTENCE, ["spaCy"], "max", **quiet)
    rows = [[e["text"], "ORG" if e["coarse"] == "LOC" else e["coarse"], e["start"], e["end"], e["label"], ""]
            for e in svc.reference(run)]  # every place corrected to an organisation: no LOC left in the gold
    [scores] = views.score_rows(svc.score_corrections(run, rows))
    per_type = dict(zip(views.SCORE_COLUMNS[-3:], scores[-3:]))
    assert per_type["F1 LOC"] == "n/a" and isinstance(per_type["F1 PER"], float)
    assert 0.0 < per_type["F1 ORG"] < 1.0  # gold ORG now: AMP found, the two places not (a real score)


def test_the_label_follows_a_changed_type():
    """Issue 25: the label column kept the old label when the type was changed."""
    rows = [["Paul Batchelor", "ORG", 16, 30, "PERSON", "why"], ["Sydney", "LOC", 63, 69, "GPE", ""],
            ["AMP", "ORG", 36, 39, "ORG", ""], ["Kiwi", "MISC", None, None, "", ""]]
    followed = svc.follow_types(rows)
    assert [r[4] for r in followed] == ["ORG", "GPE", "ORG", "MISC"]  # GPE is a LOC label: kept
    assert followed[0][5] == "why"


def test_upload_that_is_not_text_is_refused(tmp_path):
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    text, warning = svc.read_upload(str(binary), "keep me")
    assert text == "keep me" and "not text" in warning
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 in Paris".encode("latin-1"))
    text, warning = svc.read_upload(str(latin), "keep me")
    assert text == "keep me" and "UTF-8" in warning
    good = tmp_path / "news.txt"
    good.write_text(SENTENCE, encoding="utf-8")
    assert svc.read_upload(str(good), "") == (SENTENCE, "")


def test_push_is_off_on_a_hosted_space(monkeypatch, tmp_path):
    monkeypatch.setenv("SPACE_ID", "someone/ner")
    with pytest.raises(TaggerError, match="hosted Space"):
        svc.push(str(tmp_path), "me/data")
    with pytest.raises(TaggerError, match="Export first"):
        svc.push("", "me/data")


# ---------------------------------------------------------------- gold sets, curve, typer
def test_gold_scores_on_a_chosen_split(speeches2):
    """The Teacher vs student tab scores any split of the gold set; an unknown split says which exist."""
    rows, note = speeches2
    f1 = {row[0]: row[3] for row in rows}
    assert list(f1)[:2] == ["spaCy", "student"] and len(rows) == 3
    assert f1[rows[-1][0]] > f1["spaCy"]  # best
    assert note == "99 sentences of the shipped gold split **speeches2**."  # the button says what it scored
    choices = svc.gold_split_choices()
    assert [value for _, value in choices][0] == "test"
    assert {value for _, value in choices} == {g["split"] for g in ner_eval.load_gold()}  # every split
    with pytest.raises(TaggerError, match="choose one of test, speeches"):
        svc.gold_scores("<script>", **quiet)


def test_scores_on_the_users_own_conll_file(tmp_path):
    """Teacher vs student vs best on an uploaded CoNLL file; bad files get a clear message."""
    good = tmp_path / "mine.conll"
    good.write_text("-DOCSTART- -X- -X- O\n\n"
                    "Angela NNP B-PER\nMerkel NNP I-PER\nmet VBD O\nEmmanuel NNP B-PER\nMacron NNP I-PER\n"
                    "in IN O\nBerlin NNP B-LOC\n. . O\n\n"
                    "The DT O\nEuropean NNP B-ORG\nUnion NNP I-ORG\nmet VBD O\nin IN O\nBrussels NNP B-LOC\n. . O\n",
                    encoding="utf-8")
    rows, note = svc.conll_scores(str(good), **quiet)
    assert [r[0] for r in rows][:2] == ["spaCy", "student"] and len(rows) == 3
    assert all(0.0 <= r[3] <= 1.0 for r in rows) and rows[-1][3] > 0.5  # best finds these plain names
    assert note.startswith("2 sentences from **mine.conll**")
    # the lab's own CoNLL export scores as gold: a round trip
    from ner_export import to_conll

    text = "Tim Cook told reporters in Cupertino."
    exported = tmp_path / "export.conll"
    exported.write_text(to_conll(text, [{"start": 0, "end": 8, "coarse": "PER"}, {"start": 27, "end": 36, "coarse": "LOC"}]),
                        encoding="utf-8")
    rows, _ = svc.conll_scores(str(exported), **quiet)
    assert rows[-1][3] == 1.0

    bad = {"empty.conll": b"", "binary.conll": b"\x00\x01PK\x03" * 100, "page.conll": b"<html><script>alert(1)</script>",
           "words.conll": b"no tags at all here\njust words in columns\n", "huge.conll": b"a O\n" * 600_000}
    messages = {"empty.conll": "No PER, ORG or LOC tag", "binary.conll": "not text", "page.conll": "Not a CoNLL file",
                "words.conll": "No PER, ORG or LOC tag", "huge.conll": "upload at most"}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(TaggerError, match=messages[name]):
            svc.conll_scores(str(tmp_path / name), **quiet)
    for nothing in (None, ""):
        with pytest.raises(TaggerError, match="Upload a CoNLL file first"):
            svc.conll_scores(nothing, **quiet)


def test_training_curve_shows_the_loss_and_what_the_two_teachers_agreed_on():
    import json

    report = json.loads((ner_models.student_adapter_dir() / "training_report.json").read_text())
    df, about = svc.training_curve()
    assert len(df) == report["steps"] == len(report["loss_every_step"])
    assert list(df["value"]) == pytest.approx(report["loss_every_step"])  # the raw loss, every step
    assert df["smoothed"].iloc[-1] < df["smoothed"].iloc[0]  # the smoothed loss fell during training
    assert 0 < report["names_disputed"] < report["names_agreed"]
    assert (f"learned the {report['names_agreed']:,} names both agree on" in about
            and f"of the {report['names_disputed']:,} names only one gives" in about)


def test_typer_weights_table_reads_in_words():
    rows, note = svc.typer_weights(n=10)
    assert len(rows) == 10 and "proposed" in note
    assert all(isinstance(r[0], str) and "=" not in r[0] and len(r) == 6 for r in rows)
    assert any(r[0] == "census name" and r[1] > 0 for r in svc.typer_weights(n=200)[0])  # a census name leans PER
