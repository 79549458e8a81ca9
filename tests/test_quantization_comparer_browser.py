"""Quantization comparer in a real browser: the estimate follows the model picker in one unit,
an unknown model id gives one message and no empty tables, a refused Measure leaves nothing
stale for the next run, then a real measurement of the embedded SmolLM2 with its explanations;
a desktop and a phone screenshot."""
import functools
import os

import pytest

from conftest import import_app, running, screenshot

LAB = "quantization_comparer"
UNKNOWN = "someone/unknown-model-xyz"
BADGES = """[...document.querySelectorAll('.error')].filter(e => e.offsetParent !== null
    && !e.closest('.toast-wrap, .toast-body') && e.textContent.trim() === 'Error').length"""


@pytest.fixture(scope="module")
def url():
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    app = import_app(LAB)
    try:
        with running(app.demo) as address:
            yield address
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def pick(page, name: str):
    box = page.get_by_label("Model")
    box.click()
    box.fill(name)
    box.press("Enter")


def shown_outside_toasts(page, text: str) -> int:
    """Visible elements, toasts excluded, whose own text contains `text`."""
    return page.evaluate("""text => [...document.querySelectorAll('body *')].filter(e => e.offsetParent !== null
        && !e.closest('.toast-wrap, .toast-body') && e.childElementCount === 0
        && e.textContent.includes(text)).length""", text)


def visible_numbered_headers(page) -> int:
    """Table headers reading 1, 2, 3 (what an empty gr.Dataframe shows)."""
    return page.evaluate("""[...document.querySelectorAll('th')].filter(th => th.offsetParent !== null
        && /^\\s*[0-9]+\\s*$/.test(th.textContent)).length""")


def test_estimate_follows_the_picker_and_one_message_for_an_unknown_model(page, url):
    page.goto(url)
    page.get_by_text("SmolLM2-135M-Instruct (embedded): ").first.wait_for(timeout=240_000)
    assert page.get_by_text("every size below in MB").is_visible()
    pick(page, "Llama-3.1-8B")  # no button to press: the estimate follows
    page.get_by_text("Llama-3.1-8B: 8,030,261,248 parameters").wait_for(timeout=240_000)
    assert page.get_by_text("every size below in GB").is_visible()
    assert page.get_by_text("SmolLM2-135M-Instruct (embedded): ").count() == 0
    charts = page.locator(".vega-embed:visible")
    assert charts.count() == 1 and "GB" in charts.first.inner_text()
    pick(page, UNKNOWN)
    page.get_by_text("Cannot use this model").first.wait_for(timeout=120_000)
    page.wait_for_timeout(1000)
    assert page.get_by_text("not in the local Hugging Face cache").count() == 1  # once: no toast, no panel copy
    assert page.locator(".toast-body").count() == 0 and page.evaluate(BADGES) == 0
    assert page.get_by_text("Llama-3.1-8B: 8,030,261,248").count() == 0  # the old estimate is gone
    assert page.get_by_text("No estimate").is_visible()
    assert page.locator(".vega-embed:visible").count() == 0 and visible_numbered_headers(page) == 0
    page.get_by_role("tab", name="Measure").click()
    page.get_by_text("Press Measure: the chart and the table").wait_for(timeout=30_000)
    assert visible_numbered_headers(page) == 0


def test_measure_smollm2_with_explanations_and_screenshots(page, url, monkeypatch):
    import quant_measure as qm

    # A shorter reference text and continuation keep this fast on a busy CPU (the app uses 256 / 16).
    monkeypatch.setattr(qm, "measure", functools.partial(qm.measure, new_tokens=6, reference_tokens=64))
    page.goto(url)
    page.get_by_text("SmolLM2-135M-Instruct (embedded): ").first.wait_for(timeout=240_000)
    page.get_by_role("tab", name="Measure").click()
    for name in ("fp32", "bf16", "int8", "nf4", "nf4-dq"):
        page.get_by_label(name, exact=True).uncheck()
    button = page.get_by_role("button", name="Measure", exact=True)
    button.click()  # nothing ticked: refused, and the button stays usable
    page.get_by_text("Pick at least one precision").first.wait_for(timeout=30_000)
    assert button.is_enabled() and page.evaluate(BADGES) == 0
    for name in ("fp32", "nf4-dq"):
        page.get_by_label(name, exact=True).check()
    button.click()
    page.get_by_text("⏳").first.wait_for(timeout=60_000)  # its progress line...
    page.wait_for_timeout(500)
    assert shown_outside_toasts(page, "Pick at least one precision") == 0  # no refusal left from before
    assert shown_outside_toasts(page, "Not measured") == 0
    try:
        page.get_by_text("Prompt:").or_(page.get_by_text("Not measured:")).first.wait_for(timeout=600_000)
    finally:
        page.wait_for_timeout(1500)  # let the chart draw
        path = screenshot(page, LAB)
    assert page.get_by_text("Prompt:").count() == 1, page.get_by_text("Not measured:").all_inner_texts()
    assert path.exists() and path.stat().st_size > 10_000
    assert page.get_by_text("Negative = the naive rule").is_visible()
    assert page.get_by_text("how much this whole process grew").is_visible()
    assert "MB" in page.locator(".vega-embed:visible").first.inner_text()
    assert button.is_enabled()
    pick(page, "gpt2-xl")
    page.get_by_text("These measurements are of").wait_for(timeout=60_000)  # the picker moved on: said
    # a phone: tabs visible, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(1000)
    assert page.get_by_role("tab", name="Estimate").is_visible() and page.get_by_role("tab", name="Measure").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.evaluate("window.scrollTo(0, 0)")
    assert screenshot(page, f"{LAB}_phone").stat().st_size > 10_000
