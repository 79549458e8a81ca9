"""scripts/serve_all.py: every lab under one server, an index page at / that links them."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
import labkit  # noqa: E402
import serve_all  # noqa: E402

LABS = [lab.name for lab in labkit.discover()]
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve_all") / "serve_all.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(GENAI_LAB_OFFLINE="1", HF_HUB_OFFLINE="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve_all.py"), "--port", str(port)],
                                cwd=tmp_path_factory.getbasetemp(), env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None and get(url + "/")[0] != 200:
            time.sleep(0.5)
        try:
            yield url, proc, log_path
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_index_lists_every_lab(server):
    url, proc, log = server
    status, page = get(url + "/")
    assert status == 200, f"serve_all did not start:\n{log.read_text()[-3000:]}"
    for name in LABS:
        lab = labkit.find(name)
        assert f'href="/{name}/"' in page, f"{name} is not linked (import error?):\n{log.read_text()[-3000:]}"
        assert lab.title.replace("&", "&amp;") in page


@pytest.mark.parametrize("lab", LABS)
def test_each_lab_answers(server, lab):
    url, _, log = server
    status, health = get(url + "/healthz")
    assert status == 200 and json.loads(health).get(lab) == "ok", f"{lab}: {health}\n{log.read_text()[-2000:]}"
    assert get(f"{url}/{lab}/")[0] == 200
    assert get(f"{url}/{lab}/config")[0] == 200  # the Gradio app itself, not just a page


def test_browser_index_and_back_link(server, page):
    from conftest import screenshot

    url, _, _ = server
    page.set_default_timeout(90_000)  # busy CI machines; no timing is asserted
    page.goto(url + "/")
    page.get_by_role("heading", name="All labs").wait_for()
    screenshot(page, "serve_all")
    if LABS:
        page.locator(f'a[href="/{LABS[0]}/"]').click()
        page.locator(".all-labs-link").click()  # added to every lab page by serve_all
        page.get_by_role("heading", name="All labs").wait_for()


def test_index_page_escapes_and_reports_broken_labs():
    good = labkit.Lab("good_lab", Path("."), {"title": "<b>Good</b>", "short_description": "a & b"}, "Teaches x.")
    bad = labkit.Lab("bad_lab", Path("."), {"title": "Bad"}, "")
    page = serve_all.index_html([{"lab": good, "error": ""}, {"lab": bad, "error": "ImportError: <oops>"}])
    assert "&lt;b&gt;Good&lt;/b&gt;" in page and "a &amp; b" in page and 'href="/good_lab/"' in page
    assert 'href="/bad_lab/"' not in page and "Not available: ImportError: &lt;oops&gt;" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from the internet


def test_unknown_lab_subset_is_a_clear_error(capsys):
    assert serve_all.main(["--labs", "no_such_lab"]) == 2
    assert "Unknown lab(s): no_such_lab" in capsys.readouterr().err


def test_plain_json_routes_are_mounted_under_each_lab(server):
    """A lab's json_api routes answer under its prefix (added before the gradio mount, which would answer first)."""
    url, _, log = server
    request = urllib.request.Request(f"{url}/dpo_labeler/api/stats", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200 and "labels_stored" in json.loads(r.read()), log.read_text()[-2000:]
    request = urllib.request.Request(f"{url}/dpo_labeler/api/label", data=b'{"pair_id": "p-nope", "choice": "a", '
                                     b'"annotator": "bob"}', method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400 and "Unknown pair id" in json.loads(refused.value.read())["error"]
