"""RAG chat lab in a real browser: asking before any document says so in plain words, upload a file, ask,
see a cited answer with its checked sources, which answer mode answered and why, the supporting sentence and
its key span highlighted, and the explanations on the page; the chat's title does not
float over the messages; a phone (390x844) opens at the header, sees every tab, and the Evaluate tables
have titles and scroll sideways. Saves a desktop and a phone screenshot."""
import re

from conftest import import_app, running, screenshot

LIGHTHOUSE = ("# Lighthouse notes\n\n## History\n\nThe Storvik lighthouse was built in 1872 by the engineer Hanna Berg. "
              "Its light could be seen 18 nautical miles away.\n\n## Today\n\nThe lighthouse became a museum in 1994. "
              "Visitors climb 112 steps to reach the lamp room.\n")


def test_upload_ask_and_see_a_cited_answer(browser, tmp_path):
    doc = tmp_path / "lighthouse_notes.md"
    doc.write_text(LIGHTHOUSE)
    app = import_app("rag_chat")
    with running(app.demo) as url:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(url)
        box = page.get_by_placeholder("Ask about your documents…")
        # before any document: a clean sentence, not Markdown, and the controls stay usable
        box.fill("Who built the Storvik lighthouse?")
        page.get_by_role("button", name="Ask", exact=True).click()
        toast = page.get_by_text('Upload documents (or press "Load sample corpus") before asking.')
        toast.wait_for(timeout=30_000)
        assert "**" not in page.locator(".toast-body").first.inner_text()
        for close in page.locator(".toast-close").all():  # out of the way of the screenshot
            close.click()

        page.locator("input[type=file]").first.set_input_files(str(doc))
        page.get_by_role("button", name="Add files").click()
        page.get_by_text("1 document →").first.wait_for(timeout=90_000)
        assert page.get_by_text(re.compile(r"\d+ chunk\(s\) embedded now")).first.is_visible()  # said, not guessed
        box.fill("Who built the Storvik lighthouse?")
        page.get_by_role("button", name="Ask", exact=True).click()
        page.locator(".rag-src").first.wait_for(timeout=90_000)
        bot = page.locator("[data-testid=bot]").last
        bot.get_by_text("Answered in").wait_for(timeout=180_000)  # the answer, then which mode answered and why
        chat = bot.inner_text()
        assert "[1]" in chat and "Hanna Berg" in chat
        assert "Answered in extractive mode" in chat and "auto" in chat  # the embedded 135M model: extractive
        assert "Hanna Berg" in page.locator(".rag-src mark").first.inner_text()  # the supporting sentence
        assert page.locator(".rag-src mark b.rag-key").first.inner_text() == "Hanna Berg"  # and its key span
        assert page.get_by_text("Grounded decoding", exact=False).first.is_visible()  # the modes are explained
        assert page.get_by_text("it is not a probability").is_visible()  # rank score explained on the page
        # the chat's title sits above the messages, not over them
        chatbot = page.locator(".bubble-wrap").first
        assert chatbot.locator("[data-testid=block-label]").count() == 0
        title = page.get_by_text("answers cite their sources as [n]").bounding_box()
        assert title["y"] + title["height"] <= chatbot.bounding_box()["y"] + 1
        page.get_by_text("View the exact prompt sent to the model").click()
        page.wait_for_timeout(500)
        screenshot(page, "rag_chat")

        # the answer modes side by side: free-form, grounded decoding and extractive on the same sources
        page.get_by_role("tab", name="Answer modes side by side").click()
        page.get_by_placeholder("One question, answered in each mode…").fill("When did the lighthouse become a museum?")
        page.get_by_role("button", name="Answer in each mode").click()
        for m in ("free", "grounded", "extractive"):  # the default choice (the short prompt is not ticked)
            page.locator(f"#rag-side-{m}").get_by_text("Answered in").wait_for(timeout=240_000)
        assert "not chosen" in page.locator("#rag-side-short").inner_text()
        assert "copying" in page.locator("#rag-side-grounded").inner_text()
        assert "1994" in page.locator("#rag-side-extractive").inner_text()
        assert page.locator(".rag-src mark b.rag-key").count() >= 1
        page.wait_for_timeout(300)
        screenshot(page, "rag_chat_modes")

        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                    device_scale_factor=2).new_page()
        phone.goto(url)
        phone.get_by_text("RAG chat", exact=True).first.wait_for(timeout=30_000)
        phone.wait_for_timeout(1000)
        assert phone.evaluate("window.scrollY") == 0  # opens at its header, not scrolled to the question
        for tab in ("Chat", "Chunks", "Answer modes side by side", "No-RAG vs RAG", "Evaluate retrieval"):  # no "..."
            assert phone.get_by_role("tab", name=tab).is_visible(), tab
        phone.get_by_role("tab", name="Evaluate retrieval").click()
        detail = phone.locator(".rag-table").filter(has_text="Per question")
        detail.wait_for(timeout=10_000)
        assert phone.get_by_text("Scores: hit@k").is_visible()
        grid = detail.locator(".table-wrap").first
        wide, shown = grid.evaluate("e => { const v = e.querySelector('.virtual-table-viewport') || e;"
                                    " return [v.scrollWidth, v.clientWidth]; }")
        assert wide > shown  # fixed column widths: it scrolls sideways instead of wrapping a letter a line
        phone.get_by_role("tab", name="Chat").click()
        phone.locator("input[type=file]").first.set_input_files(str(doc))
        phone.get_by_role("button", name="Add files").click()
        phone.get_by_text("1 document →").first.wait_for(timeout=90_000)
        phone.get_by_placeholder("Ask about your documents…").fill("When did the lighthouse become a museum?")
        phone.get_by_role("button", name="Ask", exact=True).click()
        phone.locator("[data-testid=bot]").last.get_by_text("Answered in").wait_for(timeout=180_000)
        assert phone.locator(".rag-src mark b.rag-key").first.inner_text() == "1994"
        phone.locator("[data-testid=bot]").last.scroll_into_view_if_needed()
        phone.wait_for_timeout(500)
        screenshot(phone, "rag_chat_phone")
