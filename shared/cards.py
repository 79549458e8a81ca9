"""A lab's README card: YAML front matter (the Space card, and the lab's one source for its title,
what it teaches and what it needs) and the Markdown body. Imports nothing heavy."""
from __future__ import annotations

import re
from pathlib import Path

from shared.errors import UserError

_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", re.S)


class CardError(UserError):
    """A README card that cannot be read; the message says what to fix."""


def read_card(path: str | Path) -> tuple[dict, str]:
    """(front matter dict, body) of a README.md; raises CardError on missing or broken YAML."""
    import yaml

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    match = _FRONT.match(text)
    if not match:
        raise CardError(f"{path} has no YAML front matter (a block between '---' lines at the top).")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise CardError(f"{path}: the YAML front matter does not parse: {exc}") from exc
    if not isinstance(meta, dict):
        raise CardError(f"{path}: the YAML front matter must be a mapping of keys to values.")
    return meta, match.group(2)


def first_paragraph(markdown: str) -> str:
    """The first prose paragraph of a Markdown body (headings, images, tables, code skipped)."""
    para: list[str] = []
    in_code = False
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            if para:
                break
            continue
        if in_code:
            continue
        if not stripped:
            if para:
                break
            continue
        if stripped.startswith(("#", "!", "|", "<", ">", "---")) and not para:
            continue
        para.append(stripped)
    text = " ".join(para)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)  # links -> their text
    return re.sub(r"[*_`]", "", text).strip()


def title_and_teaches(app_file: str | Path) -> tuple[str, str]:
    """The title and the one sentence on what the lab teaches, from the README beside `app_file`."""
    folder = Path(app_file).resolve().parent
    meta, body = read_card(folder / "README.md")
    title = str(meta.get("title") or folder.name.replace("_", " ").capitalize())
    teaches = str(meta.get("teaches") or first_paragraph(body) or meta.get("short_description") or "")
    return title, teaches
