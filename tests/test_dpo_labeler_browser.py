"""DPO labeler in Chromium: label pairs with the keyboard (A, B, undo, T), train two DPO steps and
see the five plots and the held-back result, play a blind round with the keyboard and see the win
rate; desktop and phone screenshots.

The model behind the server is the tiny random GPT-2 (with a ChatML template): this test checks the
UI loop; the real SmolLM2 path (/pair, a /train step with the 60 held-back pairs) is tested through
the API in test_dpo_labeler_app.py, and a real run takes minutes on a busy 2-core machine."""
import os
import sys
from pathlib import Path

import pytest

from conftest import SCREENSHOTS, import_app, running, screenshot

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "dpo_labeler"))
S = {"temperature": 0.7, "top_p": 0.9, "top_k": 0, "max_new_tokens": 48}


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tiny():
    from conftest import build_tiny_gpt2

    model, tokenizer = build_tiny_gpt2()
    tokenizer.chat_template = CHATML
    return model, tokenizer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from types import SimpleNamespace

    import dpo_service
    import dpo_train

    model, tokenizer = _tiny()
    writer = SimpleNamespace(model=model, tokenizer=tokenizer, choice=SimpleNamespace(spec=SimpleNamespace(name="tiny")))
    patches = [(dpo_service, "model", lambda: writer), (dpo_train, "fresh_base", lambda requested="": (*_tiny(), "tiny")),
               (dpo_service, "_reference_cache", lambda config: None)]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    for mod, name, value in patches:
        setattr(mod, name, value)
    folder = tmp_path_factory.mktemp("dpo-browser")
    old = os.environ.get("GENAI_LAB_DATA")
    os.environ["GENAI_LAB_DATA"] = str(folder)
    st = dpo_service.store()
    # Pairs another annotator labelled first: the lab offers them before writing new ones (overlap for agreement).
    for i, (q, a, b) in enumerate([
        ("What is a preference pair?", "Two answers to one prompt, one marked better.", "Banana telephone."),
        ("Why hold back evaluation pairs?", "To measure on data the model never trained on.", "Because yes."),
        ("What does beta control in DPO?", "How far the policy may move from the reference.", "The colour."),
        ("What is a LoRA adapter?", "Small low-rank matrices trained on top of frozen weights.", "A router."),
    ]):
        pid = st.add_pair(q, a, b, "SmolLM2-135M-Instruct (embedded)", S, S, 1 + i % 2)
        st.label(pid, "a", "Ada")
    app = import_app("dpo_labeler")
    with running(app.demo) as url:
        yield url
    for mod, name, value in saved:
        setattr(mod, name, value)
    if old is None:
        os.environ.pop("GENAI_LAB_DATA", None)
    else:
        os.environ["GENAI_LAB_DATA"] = old


def test_label_train_and_blind_round(server, page):
    import dpo_service

    page.goto(server)
    page.locator("#dpo-name input, #dpo-name textarea").first.fill("Grace <b>Hopper</b>")
    page.click("#dpo-next")
    page.wait_for_selector("#dpo-prompt", timeout=60_000)
    first = page.inner_text("#dpo-prompt")
    page.evaluate("document.activeElement && document.activeElement.blur()")  # keys act when no text box has the focus
    page.keyboard.press("a")
    page.wait_for_function(f"document.querySelector('#dpo-prompt').innerText !== {first!r}", timeout=60_000)
    second = page.inner_text("#dpo-prompt")
    page.keyboard.press("b")
    page.wait_for_function(f"document.querySelector('#dpo-prompt').innerText !== {second!r}", timeout=60_000)
    page.keyboard.press("u")  # undo the B: the pair comes back
    page.wait_for_function(f"document.querySelector('#dpo-prompt').innerText === {second!r}", timeout=60_000)
    page.keyboard.press("t")
    page.wait_for_function(f"document.querySelector('#dpo-prompt').innerText !== {second!r}", timeout=60_000)
    labels = [l for l in dpo_service.store().labels() if l["annotator"] == "Grace <b>Hopper</b>"]
    assert [l["choice"] for l in labels] == ["a", "tie"]
    assert "Grace &lt;b&gt;Hopper" in page.inner_html(".dpo-counter") and "2 labels" in page.inner_text(".dpo-counter")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOTS / "dpo_labeler_phone.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})

    page.get_by_role("tab", name="Train").click()
    steps = page.locator("#dpo-steps input[type=number]")
    steps.fill("2")
    steps.press("Enter")
    page.click("#dpo-train")
    try:
        page.wait_for_selector("#dpo-train-result table", timeout=300_000)
    except Exception:
        screenshot(page, "dpo_labeler_train_failed")
        raise
    result = page.inner_text("#dpo-train-result")
    assert "implicit reward accuracy" in result and "2 steps" in result
    for name in ("loss", "rewards/margins"):
        assert page.get_by_text(name, exact=True).first.is_visible()
    assert page.locator("canvas, svg.marks").count() >= 5  # the five metric plots are drawn
    screenshot(page, "dpo_labeler_train")

    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#dpo-blind-prompts textarea, #dpo-blind-prompts input").first.fill("What is the sun?\nHow do plants grow?")
    page.click("#dpo-blind-start")
    page.wait_for_selector("#dpo-left", timeout=300_000)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("1")
    page.wait_for_function("document.querySelector('#dpo-blind').innerText.includes('2 of 2')", timeout=60_000)
    page.keyboard.press("2")
    page.wait_for_selector("#dpo-reveal :text('win rate')", timeout=60_000)
    assert "Wilson" in page.inner_text("#dpo-reveal")
    assert len(dpo_service.store().votes()) == 2
    page.get_by_role("tab", name="Label").click()
    screenshot(page, "dpo_labeler")
