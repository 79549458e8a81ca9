"""Diffusion demo in a real browser on the shipped digits UNet: generate, the filmstrip, the scheduler x steps
grid and the guidance sweep, with a desktop and a phone screenshot."""
import pytest

from conftest import SCREENSHOTS, import_app, running, screenshot


@pytest.fixture(scope="module")
def url():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the server runs in this process; on a busy 2-core machine 2 threads spin
    app = import_app("diffusion_demo")
    with running(app.demo) as address:
        yield address
    torch.set_num_threads(threads)


def wait_gallery(page, label: str, count: int, timeout=180_000):
    """Wait until the gallery or image whose label contains `label` shows `count` loaded images."""
    page.wait_for_function(
        """([label, count]) => [...document.querySelectorAll('.block')].some(b => b.textContent.includes(label)
             && [...b.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0).length >= count)""",
        arg=[label, count], timeout=timeout)


def test_generate_filmstrip_grid_sweep_and_screenshots(page, url):
    page.goto(url)
    page.get_by_text("Digits UNet (embedded)").first.wait_for(timeout=120_000)
    # Generate: the default prompt, 8 digits, the seed range and the classifier's reading are shown
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("Understood:").first.wait_for(timeout=180_000)
    wait_gallery(page, "Generated images", 8)
    status = page.get_by_text("Generated 8 images").first.inner_text()
    assert "seeds 0-7" in status and "DDIM, 50 steps, guidance 1.5" in status
    assert "digit 7 (seven)" in page.get_by_text("Understood:").first.inner_text()
    assert page.get_by_text("seed 7 · reads as").count() >= 1
    screenshot(page, "diffusion_demo")
    # a prompt with no digit: a clear message, and the button comes back
    page.get_by_label("Prompt").first.fill("a cat")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("names no digit this model knows").first.wait_for(timeout=30_000)
    # Filmstrip: 8 frames of x_t and 8 of predicted x_0
    page.get_by_role("tab", name="Filmstrip").click()
    page.get_by_role("button", name="Run the filmstrip").click()
    wait_gallery(page, "x_t: what the model sees", 8)
    wait_gallery(page, "predicted x_0", 8)
    assert page.get_by_text("step 50/50").count() >= 1
    page.screenshot(path=str(SCREENSHOTS / "diffusion_demo_filmstrip.png"), full_page=True)
    # Grid: five schedulers x two step counts, each cell with its time
    page.get_by_role("tab", name="Grid").click()
    page.get_by_label("Step counts").fill("5, 20")
    page.get_by_role("button", name="Run the grid").click()
    page.get_by_text("10 cells in").first.wait_for(timeout=180_000)
    wait_gallery(page, "Scheduler x steps", 1)
    page.get_by_text("Euler ancestral").last.wait_for()  # the time-per-cell table
    page.screenshot(path=str(SCREENSHOTS / "diffusion_demo_grid.png"), full_page=True)
    # Guidance sweep: two values x 4 seeds, and the per-value reading table
    page.get_by_role("tab", name="Guidance sweep").click()
    page.get_by_label("Guidance values").fill("0, 3")
    page.get_by_role("button", name="Run the sweep").click()
    wait_gallery(page, "Rows: guidance values", 1)
    page.get_by_text("read as asked").first.wait_for(timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "diffusion_demo_sweep.png"), full_page=True)
    # Schedule & img2img: the curves and a real digit noised and brought back
    page.get_by_role("tab", name="Schedule & img2img").click()
    page.get_by_role("button", name="Noise it and denoise it back").click()
    page.get_by_text("the classifier reads").first.wait_for(timeout=120_000)
    page.screenshot(path=str(SCREENSHOTS / "diffusion_demo_schedule.png"), full_page=True)
    # phone
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("tab", name="Generate").click()
    page.wait_for_timeout(800)
    screenshot(page, "diffusion_demo_phone")
