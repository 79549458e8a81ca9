"""Export corrected entities: CoNLL (token TAG per line, IOB2) and JSONL (one record per
paragraph, char offsets), written atomically, with a dataset card; and push the folder to a Hub
dataset repo with the token of `hf auth login` (or HF_TOKEN) where the lab runs."""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from ner_entities import TaggerError

from shared.store import atomic_write, push_folder

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_SENT_END = {".", "!", "?"}


def valid_entities(text: str, entities: list[dict]) -> list[dict]:
    """Entities that fit the text, sorted, without overlaps (the earlier/longer one wins)."""
    out: list[dict] = []
    for e in sorted(entities, key=lambda e: (int(e["start"]), -int(e["end"]))):
        s, t = int(e["start"]), int(e["end"])
        if not (0 <= s < t <= len(text)) or (out and s < out[-1]["end"]):
            continue
        out.append({"text": text[s:t], "start": s, "end": t, "label": e.get("label") or e["coarse"],
                    "coarse": e["coarse"]})
    return out


def tokens_with_tags(text: str, entities: list[dict]) -> list[list[tuple[str, str, int, int]]]:
    """Sentences of (token, IOB2 tag, start, end); tokens are also cut at entity boundaries."""
    entities = valid_entities(text, entities)
    cuts = {c for e in entities for c in (e["start"], e["end"])}
    sentences, current = [], []
    for m in _TOKEN.finditer(text):
        pieces, start = [], m.start()
        for cut in sorted(c for c in cuts if m.start() < c < m.end()):
            pieces.append((start, cut))
            start = cut
        pieces.append((start, m.end()))
        for s, t in pieces:
            tag = "O"
            for e in entities:
                if e["start"] <= s and t <= e["end"]:
                    tag = ("B-" if s == e["start"] else "I-") + e["coarse"]
                    break
            current.append((text[s:t], tag, s, t))
        gap = text[m.end():m.end() + 2]
        if (m.group() in _SENT_END and (not gap or gap[0].isspace())) or "\n" in gap[:1]:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def to_conll(text: str, entities: list[dict]) -> str:
    """CoNLL-2003 style: `token TAG` per line, a blank line between sentences."""
    blocks = ["\n".join(f"{tok} {tag}" for tok, tag, _, _ in sent) for sent in tokens_with_tags(text, entities)]
    return "\n\n".join(blocks) + "\n" if blocks else ""


def to_jsonl(text: str, entities: list[dict], source: str = "ner_tagger lab") -> str:
    """One JSON record per paragraph: {"text", "entities": [{"text","start","end","label","coarse"}],
    "source"}; offsets are relative to the record's text."""
    entities = valid_entities(text, entities)
    lines, pos = [], 0
    for para in re.split(r"(\n\s*\n)", text):
        start, end = pos, pos + len(para)
        pos = end
        if not para.strip():
            continue
        ents = [dict(e, start=e["start"] - start, end=e["end"] - start) for e in entities
                if e["start"] >= start and e["end"] <= end]
        lines.append(json.dumps({"text": para, "entities": ents, "source": source}, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")


def new_export_folder(parent: Path, keep_s: float = 86_400) -> Path:
    """A fresh folder of its own for one export, under `parent`. Export folders older than `keep_s` (a day)
    are removed first: a Space that serves a workshop for weeks would otherwise keep every download."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - keep_s
    for old in parent.glob("export_*"):
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # another request removed it first
            pass
    return Path(tempfile.mkdtemp(prefix="export_", dir=parent))


DATASET_CARD = ("---\ntask_categories:\n- token-classification\n---\n# NER corrections\n\nMade with the GenAI Lab "
                "Playground's NER tagger lab: `*.conll` (token TAG, IOB2, PER/ORG/LOC/MISC) and `*.jsonl` "
                "(text + char-offset entities).\n")


def export_files(folder: Path, text: str, entities: list[dict], stem: str = "ner_corrected") -> tuple[Path, Path]:
    """The CoNLL and JSONL files in `folder` (and the dataset card a push uploads with them)."""
    folder = Path(folder)
    conll = atomic_write(folder / f"{stem}.conll", to_conll(text, entities))
    jsonl = atomic_write(folder / f"{stem}.jsonl", to_jsonl(text, entities))
    atomic_write(folder / "README.md", DATASET_CARD)
    return conll, jsonl


def push_to_hub(repo_id: str, folder: Path, private: bool = True) -> str:
    """Upload an export folder to a Hub dataset repo; returns its URL. The token is the one of
    `hf auth login` (or HF_TOKEN) on the machine that runs the lab: never typed, shown or stored here."""
    repo_id = (repo_id or "").strip()
    if "/" not in repo_id:
        raise TaggerError("The dataset repo must look like 'your-name/my-ner-data'.")
    if not Path(folder).is_dir():
        raise TaggerError("Export first, then push.")
    return push_folder(folder, repo_id, "dataset", private=private, message="NER corrections from the NER tagger lab")
