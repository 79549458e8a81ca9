"""LoRA trainer in a real browser: the cost panel appears before training, Train runs 3 real steps of
the embedded SmolLM2 with live curves, a reload finds the run again, and base vs adapter answer side by
side; desktop and phone screenshots."""
import os
import shutil

from conftest import ROOT, import_app, running, screenshot


def _set_number(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True).first
    box.fill(str(value))
    box.press("Enter")


def _wait_text(page, selector: str, text: str, timeout: int = 30_000) -> None:
    page.wait_for_function("([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
                           arg=[selector, text], timeout=timeout)


def test_train_a_few_steps_and_compare(page, tmp_path):
    old = os.environ.get("GENAI_LAB_DATA")
    os.environ["GENAI_LAB_DATA"] = str(tmp_path)
    try:
        app = import_app("lora_trainer")
        with running(app.demo) as url:
            page.goto(url)
            page.locator("#lora-data-summary").get_by_text("training rows").wait_for(timeout=90_000)
            page.locator("#lora-preview .ans").first.wait_for(timeout=30_000)
            page.get_by_role("tab", name="2 · Config and cost").click()
            page.locator("#lora-cost").get_by_text("trainable parameters").wait_for(timeout=90_000)
            _set_number(page, "steps", 2)
            _set_number(page, "learning rate", 0.002)
            # The fewest FLOPs that still train the real model: batch 1, no eval split.
            _set_number(page, "number input for batch size", 1)
            _set_number(page, "number input for eval share", 0)
            page.locator("#lora-cost").get_by_text("batch 1 ×").wait_for(timeout=120_000)
            page.get_by_role("tab", name="3 · Train").click()
            page.get_by_role("button", name="Train", exact=True).click()
            page.locator("#lora-live").get_by_text("done", exact=True).wait_for(timeout=600_000)
            page.locator("#lora-curve canvas, #lora-curve svg").first.wait_for(timeout=30_000)
            _wait_text(page, "#lora-runs", "done")
            train_shot = screenshot(page, "lora_trainer_train")

            # A reload keeps the browser's id: the run is still listed.
            page.reload()
            page.get_by_role("tab", name="3 · Train").click()
            _wait_text(page, "#lora-runs", "done", 60_000)

            page.get_by_role("tab", name="4 · Base vs adapter").click()
            page.locator("#lora-result").get_by_text("eval loss before").wait_for(timeout=60_000)
            _set_number(page, "number input for max new tokens", 8)
            page.get_by_role("button", name="Compare", exact=True).click()
            page.locator("#lora-adapter-answer").wait_for(timeout=300_000)
            base = page.locator("#lora-base-answer").inner_text()
            adapted = page.locator("#lora-adapter-answer").inner_text()
            assert base.strip() and adapted.strip()
            desktop = screenshot(page, "lora_trainer")
            shutil.copy(desktop, ROOT / "assets" / "screenshots" / "lora_trainer.png")
            shutil.copy(train_shot, ROOT / "assets" / "screenshots" / "lora_trainer_train.png")

            page.set_viewport_size({"width": 390, "height": 844})  # the side-by-side stacks on a phone
            page.wait_for_timeout(1000)
            phone = screenshot(page, "lora_trainer_phone")
            shutil.copy(phone, ROOT / "assets" / "screenshots" / "lora_trainer_phone.png")
    finally:
        if old is None:
            os.environ.pop("GENAI_LAB_DATA", None)
        else:
            os.environ["GENAI_LAB_DATA"] = old
