"""Browser test: a preset task in 'be the model' mode and a /run_code escape attempt, both seen in
the timeline; desktop and phone screenshots."""
import re
import shutil

from conftest import ROOT, import_app, running, screenshot


def test_be_the_model_and_an_escape_attempt_in_the_timeline(page):
    app = import_app("agent_sandbox")
    with running(app.demo) as url:
        page.goto(url)
        page.get_by_text("Sandbox layers active here").wait_for(timeout=60_000)
        page.get_by_role("button", name="Run", exact=True).click()
        send = page.get_by_role("button", name="Send step", exact=True)
        for expected in ("Observation", "Answer"):
            page.get_by_text("You are the agent").wait_for(timeout=60_000)
            page.wait_for_function("() => document.querySelector('.cm-content') && "
                                   "document.querySelector('.cm-content').innerText.includes('Thought')")
            send.click()
            page.locator(f".ag-timeline .ag-{expected.lower()}").first.wait_for(timeout=60_000)
        page.locator(".ag-timeline .ag-answer").get_by_text(re.compile(r"mean 141\.43")).wait_for(timeout=30_000)

        page.get_by_role("tab", name="Sandbox").click()
        page.get_by_label("Examples and escape attempts").click()
        page.get_by_role("option", name="Import os and run a shell").click()
        page.get_by_role("button", name="Run in the sandbox").click()
        page.locator("strong:has-text('stopped: import')").wait_for(timeout=60_000)
        page.get_by_role("tab", name="Agent").click()
        page.locator(".ag-timeline .ag-run_code").get_by_text("stopped: import").wait_for(timeout=30_000)
        shot = screenshot(page, "agent_sandbox")
        shutil.copy(shot, ROOT / "assets" / "screenshots" / "agent_sandbox.png")

        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        page.get_by_text("Sandbox layers active here").wait_for(timeout=60_000)
        phone = screenshot(page, "agent_sandbox_phone")
        shutil.copy(phone, ROOT / "assets" / "screenshots" / "agent_sandbox_phone.png")
