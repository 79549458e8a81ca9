"""What the contributor scripts know about labs, all of it read from the labs themselves.

A lab is a folder `spaces/<name>/` holding `app.py` and `README.md`. Its README's YAML front
matter is the Space card and the single source of truth for everything the scripts need:

    title, emoji, colorFrom, colorTo, short_description, license, models, suggested_hardware,
    python_version, ...   -> the deployed Space's card (sdk/sdk_version/app_file are filled in)
    assets: [gpt2_tokenizer, rag_corpus]
                          -> project-only key: the folders of assets/ the lab needs at run time.
                             Missing key: assets/<name>/ if it exists, else nothing.
                             `assets: []` means none.
    teaches: "..."        -> project-only key (optional): one sentence for the lab's header and the
                             all-labs index; without it, the first paragraph of the README body.
    requirements: [trl, peft]
                          -> project-only key: pip packages the lab needs beyond the common core
                             (gradio, torch, transformers, huggingface-hub, spaces); a deployed
                             Space installs only those, with the versions requirements.txt pins.
    apt_packages: [bubblewrap]
                          -> project-only key: Debian packages the lab needs (the Space's packages.txt;
                             scripts/setup.sh installs them locally).

Project-only keys are removed from the card a Space receives. Used by deploy_space.py,
new_space.py and serve_all.py; imports nothing heavy."""
from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from shared import cards
from shared.cards import first_paragraph  # noqa: F401  (part of labkit's interface for the scripts)

ROOT = Path(__file__).resolve().parent.parent
PROJECT_KEYS = ("assets", "teaches", "requirements", "apt_packages")  # front-matter keys for this project's scripts, not the Hub
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


class LabError(Exception):
    """A problem with a lab the user should fix; the message says what and how."""


def read_card(path: Path) -> tuple[dict, str]:
    """(front matter dict, body) of a README.md; raises LabError on missing or broken YAML."""
    try:
        return cards.read_card(path)
    except cards.CardError as exc:
        raise LabError(str(exc)) from None


@dataclass
class Lab:
    name: str
    folder: Path
    meta: dict = field(default_factory=dict)
    body: str = ""
    error: str = ""  # set when README.md cannot be read; the lab is still listed

    @property
    def title(self) -> str:
        return str(self.meta.get("title") or self.name.replace("_", " ").title())

    @property
    def emoji(self) -> str:
        return str(self.meta.get("emoji") or "🧪")

    @property
    def short_description(self) -> str:
        return str(self.meta.get("short_description") or "")

    @property
    def teaches(self) -> str:
        text = self.meta.get("teaches") or first_paragraph(self.body) or self.short_description
        text = str(text)
        return text if len(text) <= 300 else text[:297].rsplit(" ", 1)[0] + "..."

    def asset_names(self, root: Path) -> list[str]:
        """Folders of assets/ the lab declares (or assets/<lab> by convention)."""
        declared = self.meta.get("assets")
        if declared is None:
            return [self.name] if (root / "assets" / self.name).is_dir() else []
        if isinstance(declared, str):
            declared = [declared]
        if not isinstance(declared, list) or not all(isinstance(a, str) and a for a in declared):
            raise LabError(f"spaces/{self.name}/README.md: 'assets' must be a list of folder names in assets/.")
        names = []
        for item in declared:
            item = item.strip().strip("/").removeprefix("assets/")
            if not item or ".." in Path(item).parts or Path(item).is_absolute():
                raise LabError(f"spaces/{self.name}/README.md: asset '{item}' must be a folder name inside assets/.")
            if not (root / "assets" / item).exists():
                raise LabError(f"spaces/{self.name}/README.md declares asset '{item}', but assets/{item} does not "
                               "exist (build it with its script in scripts/, or fix the name).")
            names.append(item)
        return names


def is_lab(folder: Path) -> bool:
    return (folder.is_dir() and not folder.name.startswith((".", "_"))
            and (folder / "app.py").is_file() and (folder / "README.md").is_file())


def load_lab(folder: Path) -> Lab:
    lab = Lab(folder.name, folder)
    try:
        lab.meta, lab.body = read_card(folder / "README.md")
    except (LabError, OSError, UnicodeDecodeError) as exc:
        lab.error = str(exc)
    return lab


def discover(root: Path = ROOT) -> list[Lab]:
    """Every lab under root/spaces, sorted by name."""
    spaces = root / "spaces"
    if not spaces.is_dir():
        return []
    return [load_lab(f) for f in sorted(spaces.iterdir()) if is_lab(f)]


def find(name: str, root: Path = ROOT) -> Lab:
    folder = root / "spaces" / name
    if not NAME_RE.match(name or "") or not is_lab(folder):
        known = ", ".join(lab.name for lab in discover(root)) or "(none yet)"
        raise LabError(f"Unknown lab '{name}'. A lab is a folder spaces/<name>/ with app.py and README.md. "
                       f"Labs here: {known}.")
    return load_lab(folder)


def pinned_version(package: str, root: Path = ROOT) -> str | None:
    """The exact version `package` is pinned to (==) in root/requirements.txt, if it is."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    for req in parse_requirements(root / "requirements.txt"):
        if canonicalize_name(req.name) == canonicalize_name(package):
            pins = [s.version for s in Requirement(str(req)).specifier if s.operator == "=="]
            return pins[0] if pins else None
    return None


def parse_requirements(path: Path):
    """packaging Requirements of a plain requirements file (comments and blank lines skipped)."""
    from packaging.requirements import Requirement

    reqs = []
    if not path.exists():
        return reqs
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            reqs.append(Requirement(line))
    return reqs


def import_app(lab: Lab | str, root: Path = ROOT):
    """Import spaces/<lab>/app.py as module '<lab>_app' (as tests/conftest.py does): lab folders
    are not packages, and logic module names are unique across labs, so all labs share one process."""
    name = lab.name if isinstance(lab, Lab) else lab
    module_name = f"{name}_app"
    if module_name in sys.modules:
        return sys.modules[module_name]
    folder = root / "spaces" / name
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(module_name, folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


# --- the README's table of labs ------------------------------------------------------------

TABLE_START = "<!-- labs:start -->"
TABLE_END = "<!-- labs:end -->"


def labs_table(labs: list[Lab], root: Path = ROOT) -> str:
    """The Markdown table of labs for the top-level README (generated; edit the labs' cards)."""
    rows = ["| Lab | What it teaches | Run it |", "|---|---|---|"]
    for lab in labs:
        shot = root / "assets" / "screenshots" / f"{lab.name}.png"
        shot = shot if shot.exists() else None
        teaches = (lab.teaches or lab.short_description).replace("|", "\\|").replace("\n", " ")
        cell = f"{lab.emoji} [{lab.title}](spaces/{lab.name}/)"
        if shot:
            cell += f"<br>![{lab.title}]({shot.relative_to(root).as_posix()})"
        rows.append(f"| {cell} | {teaches} | `bash scripts/run_lab.sh {lab.name}` |")
    return "\n".join(rows)


def update_readme_table(readme: Path, labs: list[Lab], root: Path = ROOT) -> bool:
    """Rewrite only what lies between the labs markers of `readme`. False if the markers are missing."""
    if not readme.exists():
        return False
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        return False
    new = text[: start + len(TABLE_START)] + "\n" + labs_table(labs, root) + "\n" + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return True
