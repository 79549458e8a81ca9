"""RAG chat lab in a real browser: upload a file, ask, see a cited answer; saves a screenshot."""
from conftest import import_app, running, screenshot


def test_upload_ask_and_see_a_cited_answer(page, tmp_path):
    doc = tmp_path / "lighthouse_notes.md"
    doc.write_text(
        "# Lighthouse notes\n\n## History\n\nThe Storvik lighthouse was built in 1872 by the engineer Hanna Berg. "
        "Its light could be seen 18 nautical miles away.\n\n## Today\n\nThe lighthouse became a museum in 1994. "
        "Visitors climb 112 steps to reach the lamp room.\n")
    app = import_app("rag_chat")
    with running(app.demo) as url:
        page.goto(url)
        page.locator("input[type=file]").first.set_input_files(str(doc))
        page.get_by_role("button", name="Add files").click()
        page.get_by_text("1 document →").first.wait_for(timeout=90_000)
        box = page.get_by_placeholder("Ask about your documents…")
        box.fill("Who built the Storvik lighthouse?")
        page.get_by_role("button", name="Ask", exact=True).click()
        page.locator(".rag-src").first.wait_for(timeout=90_000)
        page.get_by_text("Evidence").first.wait_for(timeout=120_000)  # after the streamed answer
        chat = page.locator("[data-testid=bot]").last.inner_text()
        assert "[1]" in chat
        assert "Hanna Berg" in page.locator(".rag-src mark").first.inner_text()
        page.get_by_text("View the exact prompt sent to the model").click()
        page.wait_for_timeout(500)
        path = screenshot(page, "rag_chat")
    assert path.exists()
