"""Entity-level precision / recall / F1 (seqeval) of a tagger against reference entities:
the user's hand corrections in the lab, or the shipped gold set (assets/ner_tagger/gold_sentences.tsv,
hand-labelled sentences from text the student never trained on; see assets/ner_tagger/SOURCE.md).

Both sides are turned into IOB2 tags over the same tokens (word/punctuation tokens, also cut
at every entity boundary of either side), so seqeval's entity match is an exact char-span match
with the same type."""
from __future__ import annotations

import csv
import re
from pathlib import Path

EVAL_TYPES = ("PER", "ORG", "LOC")  # the quality goal's types; MISC is too loosely defined to score
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def gold_path() -> Path:
    from shared.paths import ASSETS

    return ASSETS / "ner_tagger" / "gold_sentences.tsv"


def resolve_annotations(text: str, annotations: str) -> list[dict]:
    """'PER:Brian Greig | ORG:Democrats' -> entities at every whole-word occurrence of each
    string; longer strings are placed first and occurrences overlapping a placed one are skipped."""
    items = []
    for part in (p.strip() for p in annotations.split("|")):
        if not part:
            continue
        label, _, surface = part.partition(":")
        items.append((label.strip(), surface.strip()))
    placed: list[dict] = []
    for label, surface in sorted(items, key=lambda x: -len(x[1])):
        pattern = re.compile(r"(?<!\w)" + re.escape(surface) + r"(?!\w)")
        found = False
        for m in pattern.finditer(text):
            if any(m.start() < e["end"] and e["start"] < m.end() for e in placed):
                continue
            placed.append({"text": m.group(), "start": m.start(), "end": m.end(), "label": label,
                           "coarse": label})
            found = True
        if not found and not any(surface in e["text"] for e in placed):
            raise ValueError(f"annotation {surface!r} not found in {text[:60]!r}")
    return sorted(placed, key=lambda e: e["start"])


def load_gold(split: str | None = None, path: Path | None = None) -> list[dict]:
    """The gold sentences: [{"id", "split", "source", "text", "entities"}] of one split, or all for None."""
    rows = []
    with open(path or gold_path(), encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if split and row["split"] != split:
                continue
            rows.append({"id": row["id"], "split": row["split"], "source": row["source"], "text": row["text"],
                         "entities": resolve_annotations(row["text"], row["entities"] or "")})
    return rows


def gold_split_sizes(path: Path | None = None) -> dict[str, int]:
    """{split: number of sentences}, in the order the splits first appear in the gold file."""
    sizes: dict[str, int] = {}
    with open(path or gold_path(), encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            sizes[row["split"]] = sizes.get(row["split"], 0) + 1
    return sizes


# CoNLL-style files keep punctuation as tokens: "Lara 's outburst ." is written "Lara's outburst." again.
_NO_SPACE_BEFORE = {",", ".", ";", ":", ")", "]", "?", "!", "%", "'s", "'S", "n't", "'", "'re", "'ve", "'ll", "'d",
                    "'m"}
_CONLL_TYPES = {"PER": "PER", "PERSON": "PER", "ORG": "ORG", "LOC": "LOC", "GPE": "LOC", "MISC": "MISC"}


def detokenize(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Tokens -> (text, each token's (start, end) in it), with no space before closing punctuation and
    clitics, nor after an opening bracket or a dollar sign."""
    text, offsets = "", []
    for i, tok in enumerate(tokens):
        if i and tok not in _NO_SPACE_BEFORE and tokens[i - 1] not in ("(", "[", "$"):
            text += " "
        offsets.append((len(text), len(text) + len(tok)))
        text += tok
    return text, offsets


def load_conll(path: Path, min_tokens: int = 1) -> list[dict]:
    """A CoNLL-style file -> [{"text", "entities"}], the text detokenized. One token per line: the word in
    the first column, the tag in the last column that looks like one (O, B-X, I-X: IOB1, IOB2 or IO tags of
    PER/ORG/LOC/MISC, also PERSON and GPE); a blank line between sentences; -DOCSTART- lines skipped.
    Sentences shorter than min_tokens are left out."""
    sentences, rows = [], []

    def flush():
        if len(rows) >= max(min_tokens, 1):
            text, offsets = detokenize([w for w, _ in rows])
            entities, current = [], None
            for (word, tag), (start, end) in zip(rows, offsets):
                prefix, _, kind = tag.partition("-")
                kind = _CONLL_TYPES.get(kind.upper()) if prefix in ("B", "I") else None
                if kind is None:
                    current = None
                elif current and current["coarse"] == kind and prefix == "I":
                    current["end"] = end
                else:
                    current = {"start": start, "end": end, "label": kind, "coarse": kind}
                    entities.append(current)
            for e in entities:
                e["text"] = text[e["start"]:e["end"]]
            sentences.append({"text": text, "entities": entities})
        rows.clear()

    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        cols = line.split()
        if not cols:
            flush()
        elif cols[0] != "-DOCSTART-":
            if len(cols) < 2:
                raise ValueError(f"{path}: a line needs a word and a tag: {line[:60]!r}")
            # the tag is the last column that looks like one (some copies add a column after it)
            rows.append((cols[0], next((c for c in reversed(cols[1:]) if c == "O" or re.match(r"[BI]-", c)), "O")))
    flush()
    return sentences


def _filter(entities, types):
    return [e for e in entities if e.get("coarse") in types]


def bio_pair(text: str, gold: list[dict], pred: list[dict]) -> tuple[list[str], list[str], list[str]]:
    """(tokens, gold tags, predicted tags) in IOB2 over shared tokens."""
    cuts = set()
    for e in gold + pred:
        cuts.update((e["start"], e["end"]))
    tokens = []
    for m in _TOKEN.finditer(text):
        start = m.start()
        for cut in sorted(c for c in cuts if m.start() < c < m.end()):
            tokens.append((start, cut))
            start = cut
        tokens.append((start, m.end()))

    def tags(entities):
        out = ["O"] * len(tokens)
        for e in entities:
            first = True
            for i, (s, t) in enumerate(tokens):
                if s >= e["start"] and t <= e["end"]:
                    out[i] = ("B-" if first else "I-") + e["coarse"]
                    first = False
        return out

    return [text[s:t] for s, t in tokens], tags(gold), tags(pred)


def score(pairs: list[tuple[str, list[dict], list[dict]]], types=EVAL_TYPES) -> dict:
    """pairs of (text, reference entities, predicted entities) -> micro P/R/F1 and per type."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    y_true, y_pred = [], []
    n_true = n_pred = 0
    for text, gold, pred in pairs:
        gold, pred = _filter(gold, types), _filter(pred, types)
        n_true += len(gold)
        n_pred += len(pred)
        _, t, p = bio_pair(text, gold, pred)
        if t:
            y_true.append(t)
            y_pred.append(p)
    if not n_true and not n_pred:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 0, "predicted": 0, "per_type": {}}
    kwargs = dict(zero_division=0)
    report = classification_report(y_true, y_pred, output_dict=True, **kwargs) if y_true else {}
    per_type = {k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"],
                    "support": int(v["support"])} for k, v in report.items() if k in types}
    return {"precision": float(precision_score(y_true, y_pred, **kwargs)),
            "recall": float(recall_score(y_true, y_pred, **kwargs)),
            "f1": float(f1_score(y_true, y_pred, **kwargs)),
            "support": n_true, "predicted": n_pred, "per_type": per_type}


def errors(pairs, types=EVAL_TYPES) -> list[dict]:
    """Missed and spurious entities, for looking at what a model gets wrong."""
    out = []
    for text, gold, pred in pairs:
        g = {(e["start"], e["end"], e["coarse"]) for e in _filter(gold, types)}
        p = {(e["start"], e["end"], e["coarse"]) for e in _filter(pred, types)}
        for s, e, c in sorted(g - p):
            out.append({"kind": "missed", "text": text[s:e], "coarse": c, "sentence": text})
        for s, e, c in sorted(p - g):
            out.append({"kind": "spurious", "text": text[s:e], "coarse": c, "sentence": text})
    return out
