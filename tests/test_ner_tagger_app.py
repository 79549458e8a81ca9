"""NER tagger lab through its API (gradio_client against the running app): /tag and /models, hostile
and huge text, unknown and unavailable models, and a bad request that leaves the server serving."""
import pytest

from conftest import import_app, running

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


def test_api_wrong_types_get_one_line_not_a_traceback(client):
    for text in (12, ["a", "list"], {"text": "Paris"}):
        out = client.predict(text, "best", api_name="/tag")
        assert set(out) == {"error"} and "string" in out["error"] and "Traceback" not in out["error"]
    _offsets_ok(SENTENCE, client.predict(SENTENCE, "spaCy", api_name="/tag"))


def test_the_title_and_what_it_teaches_come_from_the_card(app):
    from shared.cards import title_and_teaches

    title, teaches = title_and_teaches(app.__file__)
    assert title == "NER tagger" and "BIO tags" in teaches
    assert app.demo.title == title
