"""Rebuild assets/rag_corpus/: the RAG chat lab's sample corpus (English Wikipedia articles,
cleaned from wikitext to Markdown), reproducibly and without installing anything.

Source: the 106-article Wikipedia excerpt that ships as test data inside the gensim 4.3.3 wheel
(`gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2`).
The wheel is fetched with `pip download --no-deps` (gensim itself is never installed) unless a
wheel is given with --wheel.

    python scripts/build_rag_corpus.py              # download the wheel, rebuild the folder
    python scripts/build_rag_corpus.py --wheel gensim-4.3.3-....whl
    python scripts/build_rag_corpus.py --vectors-only   # only re-embed (after changing chunk defaults)

It also writes minilm_vectors.npz: the all-MiniLM-L6-v2 embeddings (float16) of the corpus chunked
with the lab's default settings, keyed by the SHA-1 of the embedded text, so "Load sample corpus"
is instant. The lab embeds any chunk it does not find there, so a stale file only costs time.
"""
import argparse
import bz2
import html
import re
import sys
import zipfile
from pathlib import Path

from shared.paths import pypi_file

ROOT = Path(__file__).resolve().parent.parent

TARGET = ROOT / "assets" / "rag_corpus"
MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
# A spread of subjects (science, history, people, places, culture, computing); ~0.5 MB of text
# so that indexing the whole sample on a laptop CPU takes seconds, not minutes.
ARTICLES = [
    "Albert Einstein", "Aristotle", "Apollo 11", "Alchemy", "Amphibian", "Abacus", "ASCII",
    "Atlantic Ocean", "Animal Farm", "Algorithm", "International Atomic Time", "Aardvark",
    "Andorra", "Albedo", "Aikido", "Arithmetic mean",
]
DROP_SECTIONS = {"references", "external links", "see also", "further reading", "notes",
                 "bibliography", "sources", "footnotes", "citations", "notes and references"}


def _strip_nested(text: str, opener: str, closer: str, keep=None) -> str:
    """Remove (or replace via `keep`) balanced opener...closer spans, innermost first."""
    out, stack = [], []
    i = 0
    buf = [""]
    while i < len(text):
        if text.startswith(opener, i):
            stack.append(len(buf))
            buf.append("")
            i += len(opener)
        elif text.startswith(closer, i) and stack:
            inner = buf.pop()
            stack.pop()
            buf[-1] += keep(inner) if keep else ""
            i += len(closer)
        else:
            buf[-1] += text[i]
            i += 1
    while len(buf) > 1:  # unbalanced: keep the text
        inner = buf.pop()
        buf[-1] += opener + inner
    out.append(buf[0])
    return "".join(out)


def _link(inner: str) -> str:
    target, _, label = inner.partition("|")
    prefix = target.split(":", 1)[0].strip().lower() if ":" in target else ""
    if prefix in ("file", "image", "category", "media") or re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", prefix):
        return ""
    return (label.split("|")[-1] if label else target).strip()


def _template(inner: str) -> str:
    name, _, rest = inner.partition("|")
    name = name.strip().lower()
    parts = [re.sub(r"^\w+\s*=\s*", "", p.strip()) if re.match(r"^\d+\s*=", p.strip()) else p.strip()
             for p in rest.split("|")] if rest else []
    if name in ("lang", "transl") and len(parts) >= 2:
        return parts[-1]
    if name in ("convert", "cvt") and len(parts) >= 2:
        return f"{parts[0]} {parts[1]}"
    if name in ("nowrap", "nobr", "small", "sic", "math", "mvar", "em") and parts:
        return parts[0]
    if name in ("sc", "smallcaps") and parts:  # {{sc|ad}} 292 -> AD 292
        return parts[0].upper()
    return REMOVED


# What a template that renders nothing here leaves behind for a moment: a parenthesis that held only
# such templates and a few words ("({{age|1969|07|20}} years ago)", "({{IPAc-en|...}} {{respell|...}})")
# is removed whole, so the text does not read "( years ago)" or "ASCII ( ),"; one with a number stays.
REMOVED = "\x00"
_EMPTIED = re.compile(r"[ \t]?\(([^()\n]*\x00[^()\n]*)\)")


def _drop_emptied_brackets(text: str) -> str:
    def drop(m):
        rest = m.group(1).replace(REMOVED, "").strip(" ,;:")
        return "" if len(rest) <= 12 and not any(ch.isdigit() for ch in rest) else m.group(0)  # keeps "(c. 780-850)"

    return _EMPTIED.sub(drop, text).replace(REMOVED, "")


def clean_wikitext(text: str) -> str:
    text = html.unescape(html.unescape(text))  # the dump escapes entities twice (&amp;nbsp;)
    text = text.replace("\u00a0", " ")
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = re.sub(r"<(gallery|math|timeline|imagemap|score)[^>]*>.*?</\1>", "", text, flags=re.S)
    text = _drop_emptied_brackets(_strip_nested(text, "{{", "}}", _template))
    text = _strip_nested(text, "{|", "|}")  # tables
    text = _strip_nested(text, "[[", "]]", _link)
    text = re.sub(r"\[https?://\S+\s+([^\]]+)\]", r"\1", text)
    text = re.sub(r"\[https?://\S+\]", "", text)
    text = re.sub(r"<br\s*/?>", "\n", text)
    text = re.sub(r"</?[a-zA-Z][^>]*>", "", text)
    text = re.sub(r"'{2,}", "", text)
    lines, skipping = [], False
    for line in text.splitlines():
        line = line.rstrip()
        heading = re.fullmatch(r"(={2,6})\s*(.*?)\s*\1", line)
        if heading:
            title = heading.group(2).strip()
            skipping = title.lower() in DROP_SECTIONS
            if not skipping:
                lines += ["", "#" * len(heading.group(1)) + " " + title, ""]
            continue
        if skipping:
            continue
        line = re.sub(r"^[*#]+\s*", "- ", line)
        line = re.sub(r"^[:;]+\s*", "", line)
        if line.startswith("__") or line.strip() in ("-", "()", "|}", "{|"):
            continue
        line = re.sub(r"\((\s*[,;]\s*)*\)\s?", "", line)  # "(; )" left behind by removed templates
        line = re.sub(r"\((\s*[,;])+\s*", "(", line)
        line = re.sub(r" {2,}", " ", line).replace(" ,", ",").replace(" .", ".")
        lines.append(line)
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    # Drop headings left with nothing under them.
    out = re.sub(r"(^#+ .*\n\n)(?=#+ )", "", out, flags=re.M)
    return out + "\n"


def slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_")


def build(wheel: Path) -> list[tuple[str, int, str, int]]:
    with zipfile.ZipFile(wheel) as zf:
        xml = bz2.decompress(zf.read(MEMBER)).decode("utf-8")
    pages = {}
    for page in re.findall(r"<page>.*?</page>", xml, flags=re.S):
        title = html.unescape(re.search(r"<title>(.*?)</title>", page).group(1))
        rev = re.search(r"<revision>\s*<id>(\d+)</id>", page)
        body = re.search(r"<text[^>]*>(.*?)</text>", page, flags=re.S)
        pages[title] = (rev.group(1) if rev else "?", body.group(1) if body else "")
    TARGET.mkdir(parents=True, exist_ok=True)
    for old in TARGET.glob("*.md"):
        if old.name != "SOURCE.md":
            old.unlink()
    rows = []
    for title in ARTICLES:
        rev, body = pages[title]
        text = f"# {title}\n\n" + clean_wikitext(body)
        name = slug(title) + ".md"
        (TARGET / name).write_text(text, encoding="utf-8")
        rows.append((title, int(rev), name, len(text)))
    return rows


def write_source(rows) -> None:
    lines = [
        "# Sample corpus: English Wikipedia articles", "",
        "Cleaned to Markdown by `scripts/build_rag_corpus.py` from the Wikipedia excerpt that ships as",
        "test data in the gensim 4.3.3 wheel (`" + MEMBER + "`), a 2016 dump.",
        "Templates, tables, references and the References/External links/See also sections were removed.", "",
        "Licence: the text is from Wikipedia, by Wikipedia contributors, under the Creative Commons",
        "Attribution-ShareAlike licence (CC BY-SA 3.0, https://creativecommons.org/licenses/by-sa/3.0/).",
        "It was modified (cleaned of markup and shortened). Reuse it under the same licence, with attribution.", "",
        "| article | revision | file | characters |", "|---|---|---|---|",
    ]
    for title, rev, name, size in rows:
        url = "https://en.wikipedia.org/w/index.php?oldid=" + str(rev)
        lines.append(f"| [{title}]({url}) | {rev} | {name} | {size:,} |")
    (TARGET / "SOURCE.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_vectors() -> None:
    import numpy as np

    sys.path.insert(0, str(ROOT / "spaces" / "rag_chat"))
    import shared.bootstrap  # noqa: F401
    from rag_pipeline import SAMPLE_VECTORS, RagSession, text_key

    session = RagSession()
    session.shipped = False  # embed every chunk: do not reuse the old file
    session.load_sample()
    keys = [text_key(c.embed_text) for c in session.chunks]
    vectors = np.stack([session._vectors[k] for k in keys]).astype(np.float16)
    np.savez_compressed(TARGET / SAMPLE_VECTORS, keys=np.array(keys), vectors=vectors)
    print(f"{len(keys)} chunk vectors -> {TARGET / SAMPLE_VECTORS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a local gensim-4.3.3 wheel (default: pip download it)")
    parser.add_argument("--vectors-only", action="store_true", help="only rebuild minilm_vectors.npz")
    args = parser.parse_args()
    if args.vectors_only:
        write_vectors()
        return
    wheel = args.wheel or pypi_file("gensim==4.3.3", "gensim-4.3.3-*.whl", "--only-binary=:all:",
                                    "--python-version", "3.11", "--platform", "manylinux2014_x86_64")
    rows = build(wheel)
    write_source(rows)
    print(f"{len(rows)} articles, {sum(r[3] for r in rows):,} characters -> {TARGET}")
    write_vectors()


if __name__ == "__main__":
    main()
