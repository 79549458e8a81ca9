"""NER tagger lab in a real browser: Tag, the sub-word view following each Tag (and saying when it is
out of date), a corrected type whose label follows, per-type scores that read n/a, best's reasons in a
column; a desktop and a phone screenshot (390x844: tabs in view, tables scrolling sideways)."""
from conftest import import_app, running, screenshot

NEW_TEXT = "Angela Merkel met Emmanuel Macron in Berlin."


def _cell(table, row_text: str, col: int):
    return table.locator(".virtual-row").filter(has_text=row_text).locator(f"[data-col='{col}']")


def test_tag_follow_correct_and_score(browser):
    app = import_app("ner_tagger")
    with running(app.demo) as url:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(url)
        page.get_by_role("button", name="Tag", exact=True).click()
        page.wait_for_selector(".ner-col mark.ner-ent", timeout=120_000)
        assert page.locator(".ner-col").count() == 3

        # the sub-word view follows the Tag: no button of its own
        page.get_by_role("tab", name="Sub-word view").click()
        pieces = page.locator(".ner-table").filter(has_text="continues word")
        pieces.get_by_text("sydney", exact=True).first.wait_for(timeout=60_000)
        page.get_by_label("Text", exact=True).fill(NEW_TEXT)
        stale = page.get_by_text("Out of date: these word pieces are for the text of your last Tag")
        stale.wait_for(timeout=10_000)
        page.get_by_role("button", name="Tag", exact=True).click()
        pieces.get_by_text("##kel", exact=True).first.wait_for(timeout=60_000)
        stale.wait_for(state="detached", timeout=10_000)
        assert pieces.get_by_text("sydney", exact=True).count() == 0

        # correct a type: the label follows it; best's reason is in a column, not only on hover
        page.get_by_role("tab", name="Correct & score").click()
        table = page.locator(".ner-table").filter(has_text="why (best)")
        _cell(table, "Berlin", 1).get_by_text("LOC").wait_for(timeout=30_000)
        assert _cell(table, "Berlin", 4).inner_text().strip() == "GPE"
        assert _cell(table, "Angela Merkel", 5).inner_text().strip()  # why best said PER
        _cell(table, "Berlin", 1).click()
        page.keyboard.press("Enter")
        table.locator("input, textarea").first.fill("ORG")
        page.keyboard.press("Enter")
        _cell(table, "Berlin", 4).get_by_text("ORG", exact=True).wait_for(timeout=10_000)

        # no LOC left in the corrections: its F1 reads n/a, not 0.0
        page.get_by_role("button", name="Score models vs corrections").click()
        scores = page.locator(".ner-table").filter(has_text="F1 LOC")
        _cell(scores, "spaCy", 8).get_by_text("n/a").wait_for(timeout=30_000)
        assert _cell(scores, "best", 8).inner_text().strip() == "n/a"
        screenshot(page, "ner_tagger")

        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                    device_scale_factor=2).new_page()
        phone.goto(url)
        phone.get_by_role("button", name="Tag", exact=True).click()
        phone.wait_for_selector(".ner-col mark.ner-ent", timeout=120_000)
        for tab in ("Correct & score", "Sub-word view", "Teacher vs student"):  # no tab hidden behind "..."
            assert phone.get_by_role("tab", name=tab).is_visible(), tab
        grid = phone.locator(".ner-table").filter(has_text="why (best)").locator(".virtual-table-viewport").first
        grid.get_by_text("Paul Batchelor").wait_for(timeout=30_000)
        wide, shown = grid.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert wide > shown + 200  # fixed column widths: the table scrolls sideways, never one letter a line
        header = phone.locator(".ner-table").filter(has_text="why (best)").locator("[data-testid=header-0]")
        assert header.evaluate("e => e.getBoundingClientRect().width") >= 140
        screenshot(phone, "ner_tagger_phone")
