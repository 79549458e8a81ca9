"""Rebuild the documents of bench/data/rag_eval_facts/ (the answer-accuracy sets of the RAG chat lab)
from text that is already on this machine: licence texts from Debian's common-licenses, Python's own
LICENSE.txt and language-reference topics (pydoc_data), and package READMEs (the long description in
each installed package's METADATA). Nothing is downloaded. The questions and key facts in each set's
questions.json were written by hand; this script only copies the documents.

    .venv/bin/python scripts/build_rag_eval_facts.py
"""
import email
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "data" / "rag_eval_facts"
LICENSES = Path("/usr/share/common-licenses")

# set -> {file name: how to get its text}
SETS = {
    "tuning": {
        "MPL-2.0.txt": ("license", "MPL-2.0"),
        "Python_LICENSE.txt": ("python", "LICENSE.txt"),
        "pytz_README.rst": ("readme", "pytz"),
        "semantic_version_README.rst": ("readme", "semantic_version"),
        "psutil_README.rst": ("readme", "psutil"),
    },
    "blind": {
        "GPL-3.0.txt": ("license", "GPL-3"),
        "python_integers_and_floats.txt": ("topics", ["integers", "floating", "imaginary", "numbers"]),
        "python_strings.txt": ("topics", ["strings", "formatstrings"]),
        "python_statements.txt": ("topics", ["with", "try", "import", "assert", "lambda", "truth"]),
    },
}


def readme(dist: str) -> str:
    meta = metadata.distribution(dist).read_text("METADATA")
    msg = email.message_from_string(meta)
    body = msg.get_payload()
    if not body or not body.strip():
        body = msg.get("Description", "")
    return body.strip() + "\n"


def topics(names: list[str]) -> str:
    from pydoc_data.topics import topics as t

    return "\n\n".join(t[n].strip() for n in names) + "\n"


def text_of(kind: str, what) -> str:
    if kind == "license":
        return (LICENSES / what).read_text(encoding="utf-8")
    if kind == "python":
        return (Path(sysconfig.get_paths()["stdlib"]) / what).read_text(encoding="utf-8")
    if kind == "readme":
        return readme(what)
    if kind == "topics":
        return topics(what)
    raise ValueError(kind)


def main() -> int:
    for name, files in SETS.items():
        folder = OUT / name
        folder.mkdir(parents=True, exist_ok=True)
        for fname, (kind, what) in files.items():
            text = text_of(kind, what)
            (folder / fname).write_text(text, encoding="utf-8")
            print(f"{name}/{fname}: {len(text):,} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
