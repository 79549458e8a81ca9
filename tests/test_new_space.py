"""scripts/new_space.py: a lab scaffolded in a temporary copy of the repo passes its own tests at
once, shows up in the README's table (only between the markers), in the all-labs server and in
a dry-run deploy."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
import labkit  # noqa: E402

NAME = "scaffold_probe"
README = ("# Playground\n\nIntro stays.\n\n## The labs\n\n<!-- labs:start -->\nstale table\n<!-- labs:end -->\n\n"
          "## After\n\nTail stays.\n")
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "screenshots", ".gradio")


def run(args, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(GENAI_LAB_OFFLINE="1", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A temporary copy of the repo's code (assets and the venv are not needed) with a README
    that has the labs markers, then the scaffold run in it."""
    copy = tmp_path_factory.mktemp("repo-copy") / "repo"
    copy.mkdir()
    for name in ("shared", "scripts", "spaces", "bench"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, copy / name, ignore=COPY_IGNORE)
    (copy / "tests").mkdir()
    shutil.copy2(ROOT / "tests" / "conftest.py", copy / "tests" / "conftest.py")
    for name in ("pytest.ini", "requirements.txt", "requirements-nodeps.txt"):
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / "assets" / "gpt2_tokenizer", copy / "assets" / "gpt2_tokenizer")  # conftest's tiny GPT-2
    (copy / "README.md").write_text(README)
    proc = run(["scripts/new_space.py", NAME, "--title", "Scaffold Probe", "--emoji", "🔭"], copy)
    assert proc.returncode == 0, proc.stderr
    return copy, proc.stdout


def test_files_follow_the_house_structure(repo):
    copy, out = repo
    for path in (f"spaces/{NAME}/app.py", f"spaces/{NAME}/{NAME}_logic.py", f"spaces/{NAME}/README.md",
                 f"tests/test_{NAME}.py", f"bench/{NAME}.py"):
        assert (copy / path).is_file(), path
        assert path in out
    app = (copy / "spaces" / NAME / "app.py").read_text()
    assert "sys.path" not in app and "global " not in app and "noqa" not in app
    assert "lab_header(__file__)" in app and "TEACHES" not in app  # title and teaches come from the card
    assert "def build_demo() -> gr.Blocks" in app and 'api_name="distribution"' in app
    assert "import gradio" not in (copy / "spaces" / NAME / f"{NAME}_logic.py").read_text()
    lab = labkit.find(NAME, copy)
    assert not lab.error and lab.title == "Scaffold Probe" and lab.emoji == "🔭"
    assert lab.meta["sdk_version"] == labkit.pinned_version("gradio") and len(lab.short_description) <= 60
    assert "## API" in lab.body and "gradio_client" in lab.body and "/distribution" in lab.body


def test_readme_table_changes_only_between_markers(repo):
    copy, _ = repo
    text = (copy / "README.md").read_text()
    before, rest = text.split(labkit.TABLE_START)
    table, after = rest.split(labkit.TABLE_END)
    assert before == README.split(labkit.TABLE_START)[0]
    assert after == README.split(labkit.TABLE_END)[1]
    assert "stale table" not in table and f"[Scaffold Probe](spaces/{NAME}/)" in table
    for lab in labkit.discover(copy):
        assert f"spaces/{lab.name}/" in table


def test_scaffolded_lab_passes_its_own_tests(repo):
    copy, _ = repo
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/test_{NAME}.py"], copy)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    assert (copy / "tests" / "screenshots" / f"{NAME}.png").exists()


def test_bench_measures_against_a_baseline(repo):
    copy, _ = repo
    proc = run([f"bench/{NAME}.py", "--quick"], copy)
    assert proc.returncode == 0, proc.stderr
    assert "| lab (pure Python)" in proc.stdout and "| baseline (numpy)" in proc.stdout


def test_deploy_dry_run_and_served_by_serve_all(repo, tmp_path):
    copy, _ = repo
    proc = run(["scripts/deploy_space.py", NAME, "--dry-run", "--out", str(tmp_path / "bundle")], copy)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "bundle" / "app.py").exists() and (tmp_path / "bundle" / "shared").is_dir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    server = subprocess.Popen([sys.executable, "scripts/serve_all.py", "--port", str(port), "--labs", NAME],
                              cwd=copy, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url, status = f"http://127.0.0.1:{port}", None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/{NAME}/", timeout=5) as r:
                    status = r.status
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200
        with urllib.request.urlopen(url + "/", timeout=5) as r:
            assert f'href="/{NAME}/"' in r.read().decode()
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("name, words", [
    ("Bad-Name", "not a valid lab name"),
    ("class", "not a valid lab name"),
    (NAME, "already exists"),
])
def test_bad_names_are_refused(repo, name, words):
    copy, _ = repo
    proc = run(["scripts/new_space.py", name], copy)
    assert proc.returncode == 2 and words in proc.stderr


def test_readme_without_markers_is_left_alone(tmp_path):
    (tmp_path / "README.md").write_text("# No markers here\n")
    assert labkit.update_readme_table(tmp_path / "README.md", [], tmp_path) is False
    assert (tmp_path / "README.md").read_text() == "# No markers here\n"
