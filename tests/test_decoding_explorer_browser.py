"""Decoding explorer in a real browser, on the real embedded SmolLM2: generate side by side,
click a token, see its alternatives and the logits pipeline, branch, take a screenshot."""
from conftest import import_app, running, screenshot


def test_generate_click_token_branch_and_screenshot(page, smollm2):
    app = import_app("decoding_explorer")
    with running(app.demo) as url:
        page.goto(url)
        page.get_by_label("Prompt").fill("Write one sentence about the sea.")
        slider_box = page.locator("input[type=number][aria-label*='Max new tokens']")
        if slider_box.count():
            slider_box.first.fill("16")
            slider_box.first.press("Enter")
        page.get_by_role("button", name="Generate side by side").click()
        page.wait_for_selector(".dx-card", timeout=60_000)
        page.get_by_text("Contrastive search").first.wait_for(timeout=60_000)
        page.wait_for_function("document.querySelectorAll('.dx-card .dx-foot').length >= 4 && "
                               "[...document.querySelectorAll('.dx-card .dx-foot')].every(e => e.textContent.includes('done'))",
                               timeout=180_000)
        page.get_by_text("perplexity").first.wait_for(timeout=30_000)
        cards = page.locator(".dx-card .dx-text").all_inner_texts()
        assert len(cards) == 4 and all(text.strip() for text in cards)
        # per-token view of the top-p output: click the third token, alternatives and the pipeline appear
        page.get_by_label("Top-p (nucleus) sampling").last.check()
        tokens = page.locator("[data-testid='highlighted-text'] .token-container, .textfield .token-container")
        # The token view re-renders for the chosen strategy; on a busy machine that can take a while, and a
        # click before it lands shows the previous strategy's step. Click until the step shown is top-p's.
        for _ in range(30):
            page.wait_for_timeout(1000)
            tokens.nth(2).click()
            page.wait_for_selector(".dx-pipe", timeout=60_000)
            page.wait_for_timeout(500)
            if page.get_by_text("Top-p (nucleus) sampling, step 3:").count():
                break
        page.get_by_text("Top-p (nucleus) sampling, step 3:").first.wait_for(timeout=30_000)
        assert page.get_by_text("← picked").count() >= 1
        page.wait_for_function("document.querySelectorAll('.dx-pipe th').length === 3",
                               timeout=30_000)  # token, raw, top-p 0.9
        page.get_by_role("button", name="Branch: continue with this token").click()
        page.get_by_text("Branch of").first.wait_for(timeout=120_000)
        path = screenshot(page, "decoding_explorer")
    assert path.stat().st_size > 10_000
