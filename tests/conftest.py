"""Fixtures every lab's tests share: a tiny random GPT-2 with the real GPT-2 BPE, a way to
import and launch a lab's app in-process, and a headless Chromium driven by Playwright."""
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

import shared.bootstrap  # noqa: F401  (quiet defaults before gradio is imported)
from labkit import import_app  # noqa: F401  (scripts/ is on pytest's pythonpath, see pytest.ini)

ROOT = Path(__file__).resolve().parent.parent

SCREENSHOTS = ROOT / "tests" / "screenshots"


def build_tiny_gpt2(seed: int = 0):
    """A 2-layer, 32-wide GPT-2 with random weights and the real 50257-token GPT-2 BPE."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = ROOT / "assets" / "gpt2_tokenizer"
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split(" ")) for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
              if line]
    # transformers 5: vocab_file=/merges_file= silently builds a one-token tokenizer.
    tokenizer = GPT2TokenizerFast(vocab=vocab, merges=merges, unk_token="<|endoftext|>",
                                  bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(vocab), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=50256, eos_token_id=50256, pad_token_id=50256)
    return GPT2LMHeadModel(config).eval(), tokenizer


@pytest.fixture(scope="session")
def tiny_gpt2():
    return build_tiny_gpt2()


@pytest.fixture(scope="session")
def smollm2():
    """The real embedded default (SmolLM2-135M-Instruct), loaded once for the whole run."""
    from shared.loading import load_causal_lm

    return load_causal_lm()


@contextmanager
def running(demo):
    """Launch `demo` on a free local port with the labs' own launch(); yield its URL."""
    from shared.launch import launch

    launch(demo, argv=[], prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


@contextmanager
def loopback(handler):
    """An http.server with `handler` on a free 127.0.0.1 port, in a thread; yields its base URL."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def reply_json(handler, data: bytes, status: int = 200) -> None:
    """Answer the request `handler` is serving with JSON bytes."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium under Playwright (never `playwright install`: it downloads a browser)."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        pytest.fail("Chromium is missing: run `bash scripts/setup.sh --browser` (installs Debian's chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, lab: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{lab}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
