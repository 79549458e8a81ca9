"""Deploy a lab as a Hugging Face Space (or write the bundle and upload nothing).

    python scripts/deploy_space.py rag_chat --repo you/rag-chat          # create or update the Space
    python scripts/deploy_space.py rag_chat --dry-run --out out/rag_chat # bundle only; no network
    python scripts/deploy_space.py --all --namespace you                 # every lab, as you/genai-lab-<lab>
    python scripts/deploy_space.py rag_chat --repo you/rag-chat --hardware zero-a10g \\
        --secret OPENAI_API_KEY --var GENAI_LAB_OFFLINE=0

The bundle is self-contained: the lab folder, shared/ beside app.py, only the assets/ folders the
lab declares (README front matter `assets:`, see scripts/labkit.py), requirements.txt (the repo's
pinned lines of the common core and of the packages the card lists under `requirements:`, so a NER
Space does not install diffusers or faiss), requirements-nodeps.txt when the lab needs such a package
(installed with --no-deps by shared.nodeps on the Space) and a Space README whose YAML card is built from the lab's own front matter.
Copied anywhere, `python app.py` starts the lab.

The token comes from HF_TOKEN or your `hf auth login`, never from a flag, and is never printed.
Secrets are read from environment variables named on the command line, never typed there."""
from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import labkit
from labkit import Lab, LabError
from shared.models import valid_repo_id

ROOT = labkit.ROOT
DEFAULT_PREFIX = "genai-lab-"
PYTHON_VERSION = "3.11"
DEV_ONLY = {"pytest", "playwright"}  # in requirements.txt for the tests; a Space does not need them
HF_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
SHORT_DESCRIPTION_MAX = 60  # the Hub's limit for short_description
# Never copied into a bundle, and never uploaded (the same list is passed to upload_folder).
IGNORED_NAMES = ["__pycache__", "*.pyc", "*.pyo", ".env", ".env.*", "*.env", ".git", ".venv", "venv",
                 ".cache", ".gradio", "flagged", ".pytest_cache", ".ipynb_checkpoints", ".mypy_cache",
                 ".ruff_cache", ".DS_Store", "*.log", "*.lock", "*.partial", "*.tmp", "*.swp", "node_modules",
                 ".hf_token", "token", "*.pem", "*.key"]
UPLOAD_IGNORE = sorted({p for name in IGNORED_NAMES for p in (name, f"{name}/**", f"**/{name}", f"**/{name}/**")})
# On update, remote files under these patterns that the bundle no longer has are deleted
# (.gitattributes is never deleted by huggingface_hub).
DELETE_PATTERNS = ["*.py", "shared/**", "assets/**", "requirements*.txt", "packages.txt"]


class DeployError(Exception):
    """A failure with a message for the user (already free of any token)."""


def log(msg: str) -> None:
    print(f"[deploy] {msg}", flush=True)


# --- building the bundle -------------------------------------------------------------------

def ignored(rel: Path) -> bool:
    return any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in IGNORED_NAMES)


def project_files(folder: Path, root: Path) -> list[Path]:
    """Files under `folder` to ship: those git tracks or would track (.gitignore honoured) when
    root is a git checkout, every file otherwise; IGNORED_NAMES always left out."""
    files = None
    if (root / ".git").exists() and shutil.which("git"):
        proc = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard", "--", str(folder.relative_to(root))],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            files = sorted({root / p for p in proc.stdout.split("\0") if p and (root / p).is_file()})
    if files is None:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [p for p in files if not ignored(p.relative_to(folder))]


def _copy_tree(src: Path, dst: Path, root: Path) -> int:
    total = 0
    for path in project_files(src, root):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        total += path.stat().st_size
    return total


CORE = {"torch", "transformers", "huggingface-hub", "gradio", "gradio-client", "spaces"}  # every lab


def _pinned_lines(path: Path) -> dict[str, str]:
    """{canonical name: requirement line} of a requirements file (comments dropped)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    lines = {}
    if not path.exists():
        return lines
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise DeployError(f"{path.name}: '{line}' is not a valid requirement: {exc}") from exc
        lines[canonicalize_name(req.name)] = line
    return lines


def lab_requirements(lab: Lab) -> set[str]:
    """The lab's pip packages: the common core plus its card's `requirements:` list (canonical names)."""
    from packaging.utils import canonicalize_name

    wanted = lab.meta.get("requirements") or []
    if isinstance(wanted, str):
        wanted = [wanted]
    if not isinstance(wanted, list) or not all(isinstance(w, str) and w.strip() for w in wanted):
        raise DeployError(f"spaces/{lab.name}/README.md: 'requirements' must be a list of pip package names.")
    return {canonicalize_name(n) for n in CORE} | {canonicalize_name(w.strip()) for w in wanted}


def bundle_requirements(root: Path, lab: Lab) -> tuple[str, str]:
    """(requirements.txt, requirements-nodeps.txt) for a Space: the repo's pinned lines of the packages the
    lab needs (the core plus its card's `requirements:`), test tools left out."""
    wanted = lab_requirements(lab)
    main, nodeps = _pinned_lines(root / "requirements.txt"), _pinned_lines(root / "requirements-nodeps.txt")
    unknown = sorted(wanted - set(main) - set(nodeps))
    if unknown:
        raise DeployError(f"spaces/{lab.name}/README.md asks for {', '.join(unknown)}, which requirements.txt "
                          "does not pin: add it there first (one pinned set for every lab).")
    head = ["# Generated by scripts/deploy_space.py from the repo's requirements.txt (do not edit here):",
            f"# the common core plus what spaces/{lab.name}/README.md lists under `requirements:`."]
    lines = [line for name, line in main.items() if name in wanted and name not in DEV_ONLY]
    extra = [line for name, line in nodeps.items() if name in wanted]
    if extra:
        head.append("# requirements-nodeps.txt beside this file is installed with --no-deps by shared/nodeps.py.")
    nodeps_text = "# Installed with --no-deps by shared/nodeps.py at start-up.\n" + "\n".join(extra) + "\n"
    return "\n".join(head + lines) + "\n", nodeps_text if extra else ""


def space_card(lab: Lab, root: Path, warnings: list[str]) -> dict:
    """The Space's YAML front matter: the lab's own card, completed and checked."""
    if lab.error:
        raise DeployError(lab.error)
    meta = {k: v for k, v in lab.meta.items() if k not in labkit.PROJECT_KEYS}
    gradio = labkit.pinned_version("gradio", root)
    if not gradio:
        raise DeployError("requirements.txt must pin gradio exactly (gradio==X.Y.Z): the Space's sdk_version "
                          "is taken from it.")
    if meta.get("sdk_version") and str(meta["sdk_version"]) != gradio:
        warnings.append(f"README sdk_version {meta['sdk_version']} differs from the pinned gradio {gradio}; "
                        f"the Space gets {gradio}.")
    card = {
        "title": lab.title,
        "emoji": lab.emoji,
        "colorFrom": meta.get("colorFrom", "indigo"),
        "colorTo": meta.get("colorTo", "yellow"),
        "sdk": "gradio",
        "sdk_version": gradio,
        "app_file": "app.py",
        "python_version": str(meta.get("python_version") or PYTHON_VERSION),
        "suggested_hardware": meta.get("suggested_hardware", "cpu-basic"),
        "license": meta.get("license", "apache-2.0"),
        "short_description": lab.short_description or lab.title,
        "models": list(meta.get("models") or []),
    }
    for key, value in meta.items():  # anything else the lab sets (tags, pinned, datasets...) passes through
        card.setdefault(key, value)
    card["sdk"], card["app_file"], card["sdk_version"] = "gradio", "app.py", gradio
    for key in ("colorFrom", "colorTo"):
        if card[key] not in HF_COLORS:
            warnings.append(f"{key} '{card[key]}' is not one the Hub accepts ({', '.join(sorted(HF_COLORS))}); "
                            "using indigo.")
            card[key] = "indigo"
    if len(card["short_description"]) > SHORT_DESCRIPTION_MAX:
        warnings.append(f"short_description is {len(card['short_description'])} characters; the Hub allows "
                        f"{SHORT_DESCRIPTION_MAX}: it was shortened (lab owner: shorten it in the README).")
        card["short_description"] = card["short_description"][: SHORT_DESCRIPTION_MAX - 1].rstrip() + "…"
    bad = [m for m in card["models"] if not (isinstance(m, str) and valid_repo_id(m))]
    if bad:
        raise DeployError(f"spaces/{lab.name}/README.md: 'models' must list Hub ids like 'owner/name'; "
                          f"not: {bad[:3]}.")
    hw = card["suggested_hardware"]
    if hw not in hardware_choices():
        warnings.append(f"suggested_hardware '{hw}' is not a Space hardware name; using cpu-basic.")
        card["suggested_hardware"] = "cpu-basic"
    return card


def hardware_choices() -> list[str]:
    from huggingface_hub import SpaceHardware

    return [h.value for h in SpaceHardware]


def write_readme(path: Path, card: dict, lab: Lab) -> None:
    import yaml

    front = yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=1000).strip()
    body = lab.body.lstrip("\n")
    footer = (f"\n\n---\n<sub>Part of the GenAI Lab Playground (lab `{lab.name}`), deployed with "
              "`scripts/deploy_space.py`. Runs offline on CPU with its embedded default model.</sub>\n")
    path.write_text(f"---\n{front}\n---\n\n{body.rstrip()}{footer}", encoding="utf-8")


def asset_mentions(lab: Lab, root: Path) -> set[str]:
    """assets/ folders the lab's code names in a string (docstrings and comments ignored), e.g.
    ASSETS / "rag_corpus" or "assets/rag_corpus/x.md": a need the card may have forgotten."""
    import ast

    assets = root / "assets"
    if not assets.is_dir():
        return set()
    names = {p.name for p in assets.iterdir() if p.is_dir()}
    strings: set[str] = set()
    for path in lab.folder.rglob("*.py"):
        if ignored(path.relative_to(lab.folder)):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        strings |= {n.value for n in ast.walk(tree)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings}
    return {n for n in names if any(s == n or s.startswith(n + "/") or f"assets/{n}" in s for s in strings)}


def build_bundle(lab: Lab, out: Path, root: Path = ROOT) -> dict:
    """Write the self-contained Space folder for `lab` into `out` (emptied first)."""
    warnings: list[str] = []
    card = space_card(lab, root, warnings)
    try:
        assets = lab.asset_names(root)
    except LabError as exc:
        raise DeployError(str(exc)) from exc
    undeclared = asset_mentions(lab, root) - set(assets)
    if undeclared:  # shipped anyway (a Space without them would break), and the owner is told
        warnings.append(f"the lab's code uses assets/{', assets/'.join(sorted(undeclared))}, which its README "
                        f"front matter does not declare: shipped anyway; add `assets: "
                        f"{sorted(set(assets) | undeclared)}` to spaces/{lab.name}/README.md.")
        assets = sorted(set(assets) | undeclared)
    if out.exists():
        if out.resolve() in (root.resolve(), *root.resolve().parents) or (out / ".git").exists():
            raise DeployError(f"refusing to empty {out}: choose a new folder for --out.")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    size = _copy_tree(lab.folder, out, root)
    if (out / "shared").exists() or (out / "assets").exists():
        raise DeployError(f"spaces/{lab.name} has its own shared/ or assets/ folder, which would clash with "
                          "the bundle's: rename it.")
    size += _copy_tree(root / "shared", out / "shared", root)
    for name in assets:
        src = root / "assets" / name
        if src.is_dir():
            size += _copy_tree(src, out / "assets" / name, root)
        else:
            (out / "assets").mkdir(exist_ok=True)
            shutil.copy2(src, out / "assets" / name)
            size += src.stat().st_size
    requirements, nodeps = bundle_requirements(root, lab)
    (out / "requirements.txt").write_text(requirements, encoding="utf-8")
    if nodeps:
        (out / "requirements-nodeps.txt").write_text(nodeps, encoding="utf-8")
    apt = lab.meta.get("apt_packages") or []
    if not isinstance(apt, list) or not all(isinstance(a, str) and a.strip() and " " not in a.strip() for a in apt):
        raise DeployError(f"spaces/{lab.name}/README.md: 'apt_packages' must be a list of Debian package names.")
    if apt:  # the Space installs these with apt before the app starts
        (out / "packages.txt").write_text("\n".join(a.strip() for a in apt) + "\n", encoding="utf-8")
    write_readme(out / "README.md", card, lab)
    big = [p for p in out.rglob("*") if p.is_file() and p.stat().st_size > 20_000_000]
    for p in big:
        warnings.append(f"{p.relative_to(out)} is {p.stat().st_size / 1e6:.0f} MB (stored with Git LFS/Xet).")
    return {"lab": lab.name, "out": out, "card": card, "assets": assets, "bytes": size, "warnings": warnings}


# --- talking to the Hub --------------------------------------------------------------------

def get_token() -> str | None:
    from huggingface_hub import get_token as hf_get_token

    return os.environ.get("HF_TOKEN") or hf_get_token()


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _is_network(exc: BaseException) -> bool:
    if _status(exc) is not None:
        return _status(exc) >= 500
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"TransportError", "NetworkError", "TimeoutException", "ConnectError", "ConnectionError",
                         "Timeout", "TimeoutError", "RequestError", "OfflineModeIsEnabled", "ProtocolError"}) \
        or isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError))


def explain(exc: BaseException, step: str, repo_id: str, api=None) -> str:
    """One clear message for a failed Hub call."""
    code = _status(exc)
    url = f"https://huggingface.co/spaces/{repo_id}"
    if code == 401:
        return (f"{step}: the Hub rejected your token (401: invalid or expired). Log in again with "
                "`hf auth login`, or set a fresh HF_TOKEN.")
    if code == 402:
        return (f"{step}: payment required (402). This hardware needs billing on your account (ZeroGPU "
                "'zero-a10g' needs a PRO account or an organization). Deploy without --hardware to use cpu-basic.")
    if code in (403, 409):
        owner = repo_id.split("/")[0]
        if api is not None and _space_exists(api, repo_id):
            return (f"{step}: the name is taken: {url} already exists and your token cannot write to it "
                    f"({code}). Choose another --repo, or ask '{owner}' to add you.")
        return (f"{step}: no permission ({code}) to create or write Spaces under '{owner}'. Use your own user "
                "name or an organization you can write to, and a token with write access "
                "(https://huggingface.co/settings/tokens).")
    if code == 404:
        return f"{step}: {url} was not found (404). Create it first (run without --hardware) or check --repo."
    if _is_network(exc):
        return (f"{step}: network failure ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})."
                f" Nothing is lost: re-run the same command to finish (uploads are idempotent and resume).")
    return f"{step} failed: {type(exc).__name__}: {str(exc)[:300]}. Re-run to finish once it is fixed."


def _space_exists(api, repo_id: str) -> bool:
    try:
        api.repo_info(repo_id, repo_type="space")
        return True
    except Exception:
        return False


def deploy(bundle: dict, repo_id: str, api, hardware: str | None, secrets: dict[str, str],
           variables: dict[str, str], private: bool) -> str:
    """Create or update the Space and configure it; returns its URL."""
    lab = bundle["lab"]

    def call(step, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  every failure becomes one message
            raise DeployError(explain(exc, f"{lab}: {step}", repo_id, api)) from None

    log(f"{lab}: creating or updating the Space {repo_id}")
    call("create the Space", api.create_repo, repo_id, repo_type="space", space_sdk="gradio", exist_ok=True,
         private=private or None)
    log(f"{lab}: uploading {bundle['out']} ({bundle['bytes'] / 1e6:.1f} MB)")
    call("upload", api.upload_folder, repo_id=repo_id, repo_type="space", folder_path=str(bundle["out"]),
         commit_message=f"Deploy lab {lab} from the GenAI Lab Playground", ignore_patterns=UPLOAD_IGNORE,
         delete_patterns=DELETE_PATTERNS)
    for key, value in secrets.items():
        call(f"set secret {key}", api.add_space_secret, repo_id, key, value)
        log(f"{lab}: secret {key} set (value not shown)")
    for key, value in variables.items():
        call(f"set variable {key}", api.add_space_variable, repo_id, key, value)
        log(f"{lab}: variable {key}={value}")
    if hardware:
        call(f"request hardware {hardware}", api.request_space_hardware, repo_id, hardware)
        log(f"{lab}: hardware {hardware} requested")
    return f"https://huggingface.co/spaces/{repo_id}"


# --- command line ---------------------------------------------------------------------------

def space_name(lab: str, prefix: str) -> str:
    return f"{prefix}{lab}".replace("_", "-")


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LabError(f"{flag} expects KEY=VALUE, got '{item}'.")
        out[key.strip()] = value
    return out


def read_secrets(items: list[str]) -> dict[str, str]:
    """--secret NAME (value from $NAME) or --secret NAME=ENVVAR (value from $ENVVAR)."""
    out = {}
    for item in items or []:
        key, _, env = item.partition("=")
        env = env or key
        if env not in os.environ:
            raise LabError(f"--secret {item}: set the environment variable {env} first (the value is read from "
                           "the environment so it never lands in your shell history).")
        out[key] = os.environ[env]
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Bundle a lab and deploy it as a Hugging Face Space.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("lab", nargs="?", help="lab folder name under spaces/ (or use --all)")
    p.add_argument("--all", action="store_true", help="every lab in spaces/")
    p.add_argument("--repo", help="Space id user/name (default: <you>/genai-lab-<lab>)")
    p.add_argument("--namespace", help="user or organization for --all (default: the logged-in user)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"Space name prefix (default {DEFAULT_PREFIX})")
    p.add_argument("--dry-run", action="store_true", help="write the bundle, upload nothing")
    p.add_argument("--out", type=Path, help="bundle folder (default: out/spaces/<lab>; with --all, one "
                                            "sub-folder per lab)")
    p.add_argument("--hardware", help="request Space hardware: cpu-basic, cpu-upgrade, zero-a10g (ZeroGPU), "
                                      "t4-small, ...; 'suggested' uses the card's suggested_hardware")
    p.add_argument("--secret", action="append", metavar="NAME[=ENVVAR]",
                   help="set a Space secret from an environment variable (repeatable)")
    p.add_argument("--var", action="append", metavar="KEY=VALUE", help="set a Space variable (repeatable)")
    p.add_argument("--private", action="store_true", help="create the Space as private")
    return p


def main(argv=None, root: Path = ROOT) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.all == bool(args.lab):
            raise LabError("Name one lab, or pass --all. Labs: "
                           + (", ".join(lab.name for lab in labkit.discover(root)) or "(none yet)"))
        if args.all and args.repo:
            raise LabError("--repo names one Space; with --all use --namespace (and --prefix).")
        if args.repo and args.repo.count("/") > 1:
            raise LabError(f"--repo '{args.repo}' must look like user/name.")
        labs = labkit.discover(root) if args.all else [labkit.find(args.lab, root)]
        if not labs:
            raise LabError("No labs found under spaces/.")
        hardware = args.hardware
        if hardware and hardware != "suggested" and hardware not in hardware_choices():
            raise LabError(f"--hardware '{hardware}' is not a Space hardware. Choose from: "
                           f"{', '.join(hardware_choices())}, or 'suggested'.")
        secrets = read_secrets(args.secret)
        variables = parse_pairs(args.var, "--var")
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    token = api = namespace = None
    if not args.dry_run:
        token = get_token()
        if not token:
            print("error: no Hugging Face token found. Log in once with `hf auth login` (stored, never shown), or "
                  "export HF_TOKEN in your shell. Tokens are never accepted as a command-line flag.",
                  file=sys.stderr)
            return 2
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        namespace = args.namespace or (args.repo.split("/")[0] if args.repo and "/" in args.repo else None)
        if namespace is None:
            try:
                namespace = api.whoami()["name"]
            except Exception as exc:  # noqa: BLE001
                print(f"error: {scrub(explain(exc, 'check who you are', '<you>/<space>'), token)}", file=sys.stderr)
                return 1

    failures = []
    scratch = None
    for lab in labs:
        try:
            if args.out:
                out = args.out / lab.name if args.all else args.out
            elif args.dry_run:
                out = root / "out" / "spaces" / lab.name
            else:
                scratch = scratch or Path(tempfile.mkdtemp(prefix="genai-lab-deploy-"))
                out = scratch / lab.name
            bundle = build_bundle(lab, out, root)
            for w in bundle["warnings"]:
                log(f"{lab.name}: warning: {w}")
            log(f"{lab.name}: bundle ready in {out} ({bundle['bytes'] / 1e6:.1f} MB; assets: "
                f"{', '.join(bundle['assets']) or 'none'})")
            if args.dry_run:
                log(f"{lab.name}: dry run, nothing uploaded. Try it: cd {out} && python app.py")
                continue
            repo = args.repo if args.repo and "/" in args.repo else \
                f"{namespace}/{args.repo or space_name(lab.name, args.prefix)}"
            hw = bundle["card"]["suggested_hardware"] if hardware == "suggested" else hardware
            url = deploy(bundle, repo, api, hw, secrets, variables, args.private)
            log(f"{lab.name}: done: {url}")
        except (DeployError, LabError) as exc:
            print(f"error: {scrub(str(exc), token)}", file=sys.stderr)
            failures.append(lab.name)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    if failures:
        print(f"error: {len(failures)} of {len(labs)} failed ({', '.join(failures)}). Fix the cause above and "
              "re-run the same command" + ("." if args.dry_run else " to finish."), file=sys.stderr)
        return 1
    return 0


def scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


if __name__ == "__main__":
    sys.exit(main())
