"""Diffusion demo through its API (gradio_client): /generate, /filmstrip and /schedulers JSON, same seed ->
same images, every bad input answered with {"error": ...} while the server keeps serving. The app runs on a
tiny random UNet here (the shipped model is checked in test_diffusion_logic.py and the browser test)."""
import base64
import io
import math

import pytest

from conftest import import_app, running
from test_diffusion_logic import make_tiny_model


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    import torch

    folder = make_tiny_model(tmp_path_factory.mktemp("tiny_digits_unet_app"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only waits
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENAI_LAB_DIFFUSION_MODEL", str(folder))
        mp.setenv("HF_HUB_OFFLINE", "1")  # Hub model ids must never download, even where the Hub is up
        app = import_app("diffusion_demo")
        with running(app.demo) as url:
            yield Client(url, verbose=False)
    torch.set_num_threads(threads)


def generate(client, prompt="a handwritten 7", scheduler="", steps=4, guidance=2.0, seed=3, n=2, model=""):
    return client.predict(prompt, scheduler, steps, guidance, seed, n, model, api_name="/generate")


def png_size(uri: str) -> tuple[int, int]:
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size


def test_schedulers(client):
    r = client.predict(api_name="/schedulers")
    assert r["schedulers"] == ["DDPM", "DDIM", "DPM-Solver++", "Euler", "Euler ancestral"]
    assert r["default"] == "DDIM" and set(r["notes"]) == set(r["schedulers"])


def test_generate_json_and_same_seed_same_images(client):
    a = generate(client)
    assert set(a) >= {"model", "class", "images", "seconds"}
    assert a["model"] == "Digits UNet (embedded)" and a["class"] == 7 and a["seeds"] == [3, 4]
    assert len(a["images"]) == 2 and all(png_size(uri) == (16, 16) for uri in a["images"])
    assert a["seconds"] > 0 and a["scheduler"] == "DDIM" and len(a["classifier_reads"]) == 2
    assert generate(client)["images"] == a["images"]
    assert generate(client, seed=4)["images"][0] == a["images"][1]  # image i uses seed + i
    assert generate(client, seed=5)["images"] != a["images"]
    b = generate(client, scheduler="Euler ancestral", steps="3", n=1.0)  # numbers given as text or floats
    assert len(b["images"]) == 1 and b["scheduler"] == "Euler ancestral"


def test_empty_prompt_is_unconditional(client):
    r = generate(client, prompt="", n=1)
    assert r["class"] is None and "unconditional" in r["understood"]


def test_filmstrip(client):
    r = client.predict("digit 2", "DPM-Solver++", 6, 1, [1, 3, 6], 2.0, "", api_name="/filmstrip")
    assert r["class"] == 2 and [f["step"] for f in r["frames"]] == [1, 3, 6]
    assert all(png_size(f["x_t"]) == png_size(f["x0"]) == (16, 16) for f in r["frames"])
    assert r["frames"][0]["timestep"] > r["frames"][-1]["timestep"] and png_size(r["image"]) == (16, 16)
    default = client.predict("", "", 10, 0, [], api_name="/filmstrip")
    assert len(default["frames"]) == 8 and default["class"] is None


@pytest.mark.parametrize("kwargs,words", [
    (dict(steps=0), "Steps is 0"), (dict(steps=10_000), "Steps is 10,000"), (dict(steps=-3), "Steps is -3"),
    (dict(steps="lots"), "not 'lots'"), (dict(guidance="nan"), "not nan"), (dict(guidance=1e300), "Guidance is"),
    (dict(scheduler="PNDM"), "Unknown scheduler"), (dict(n=10_000), "Number of images is 10,000"),
    (dict(seed=-1), "Seed is -1"), (dict(seed=2**63), "Seed is"), (dict(prompt="a cat"), "names no digit"),
    (dict(prompt="x" * 100_000), "at most 500"), (dict(prompt="<script>alert('x')</script>"), "names no digit"),
    (dict(model="stabilityai/sd-turbo", prompt="a lighthouse"), "Hub"),
    (dict(model="/etc", prompt="a lighthouse"), "not a diffusers pipeline"),
    (dict(model="../../no/such/folder", prompt="a lighthouse"), "not a model name"),
    (dict(model="no such model !!", prompt="a lighthouse"), "not a model name"),
    (dict(model=["x"]), "must be a name"), (dict(prompt=["seven"]), "must be text")])
def test_bad_requests_get_a_clear_error(client, kwargs, words):
    r = generate(client, **kwargs)
    assert set(r) == {"error"} and words in r["error"], r


def test_bad_filmstrip_requests(client):
    r = client.predict("7", "", 10, 0, [0, 11], api_name="/filmstrip")
    assert "from 1 to 10" in r["error"]
    r = client.predict("7", "", 10, 0, "one, two", api_name="/filmstrip")
    assert "not 'one'" in r["error"]
    r = client.predict("7", "", 10, 0, list(range(1, 11)) * 10, api_name="/filmstrip")
    assert "at most" in r["error"]
    assert math.isfinite(generate(client, n=1)["seconds"])  # still serving
