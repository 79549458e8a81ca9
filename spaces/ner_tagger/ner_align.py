"""Sub-word pieces, BIO tags and aggregation: what a transformers token classifier really sees.

* bio_for_pieces(): char-offset entities -> one BIO tag per word piece (training labels).
* classify_pieces(): runs a token-classification model over text of any length in overlapping
  windows (stride), never truncating; returns every piece with its offsets and class scores.
* aggregate(): the five aggregation strategies of transformers' TokenClassificationPipeline
  (none, simple, first, average, max), with the same semantics, on those pieces.

No gradio, no model loading here: the caller passes model and tokenizer."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TYPES = ("PER", "ORG", "LOC", "MISC")
LABELS = ["O"] + [f"{bi}-{t}" for t in TYPES for bi in ("B", "I")]
STRATEGIES = ("none", "simple", "first", "average", "max")
WINDOW = 128  # pieces per window, [CLS] and [SEP] included
STRIDE = 32  # pieces shared by two neighbouring windows


# ---------------------------------------------------------------- labels for training
def bio_for_pieces(offsets, entities: list[dict], text: str | None = None) -> list[str | None]:
    """One tag per piece: B-X on the piece where entity X starts, I-X on the other pieces inside
    it, O outside; None for special tokens (offset (0, 0)), which the loss ignores."""
    spans = sorted((e["start"], e["end"], e["coarse"]) for e in entities)
    tags: list[str | None] = []
    for start, end in offsets:
        start, end = int(start), int(end)
        if start == end:
            tags.append(None)
            continue
        tag = "O"
        for e_start, e_end, coarse in spans:
            if e_start <= start < e_end:
                tag = ("B-" if start == e_start or _first_piece_inside(tags, offsets, start, e_start)
                       else "I-") + coarse
                break
        tags.append(tag)
    return tags


def _first_piece_inside(tags, offsets, start, e_start) -> bool:
    """True when the entity starts inside the previous piece (a boundary mid-piece), so that
    this is the first piece that lies within it."""
    for (s, e), tag in zip(reversed(offsets[:len(tags)]), reversed(tags)):
        if tag is None:
            continue
        return int(s) < e_start
    return True


# ---------------------------------------------------------------- running the model
@dataclass
class Piece:
    token: str  # the tokenizer's piece, e.g. "##ssi"
    start: int
    end: int
    index: int  # position in the whole text's piece sequence
    is_subword: bool
    scores: np.ndarray = field(repr=False)  # softmax over the model's labels
    windows: int = 1  # how many windows saw this piece

    @property
    def tag(self) -> str:
        return self._id2label[int(self.scores.argmax())]

    _id2label: dict = field(default_factory=dict, repr=False)


def windows(n: int, window: int = WINDOW, stride: int = STRIDE) -> list[tuple[int, int]]:
    """[start, end) ranges over n pieces, each at most window-2 long (room for [CLS]/[SEP]),
    neighbours sharing `stride` pieces; together they cover every piece."""
    size = window - 2
    if n <= size:
        return [(0, n)]
    step = max(1, size - stride)
    out, start = [], 0
    while True:
        end = min(n, start + size)
        out.append((start, end))
        if end == n:
            return out
        start += step


def classify_pieces(model, tokenizer, text: str, window: int = WINDOW, stride: int = STRIDE,
                    batch_size: int = 16, progress=None) -> list[Piece]:
    """Every word piece of `text` with its class probabilities. Long text runs in overlapping
    windows; a piece seen by two windows gets the mean of their probabilities. `progress(done, total)`
    is called with the windows done after each batch."""
    import torch

    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                    verbose=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if not ids:
        return []
    n_labels = model.config.num_labels
    total = np.zeros((len(ids), n_labels), dtype=np.float64)
    seen = np.zeros(len(ids), dtype=np.int64)
    spans = windows(len(ids), window, stride)
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id or 0
    device = next(model.parameters()).device
    for b in range(0, len(spans), batch_size):
        chunk = spans[b:b + batch_size]
        width = max(e - s for s, e in chunk) + 2
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (s, e) in enumerate(chunk):
            input_ids[row, :e - s + 2] = torch.tensor([cls] + ids[s:e] + [sep])
            mask[row, :e - s + 2] = 1
        with torch.inference_mode():
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        for row, (s, e) in enumerate(chunk):
            total[s:e] += probs[row, 1:e - s + 1]
            seen[s:e] += 1
        if progress is not None:
            progress(min(b + batch_size, len(spans)), len(spans))
    tokens = tokenizer.convert_ids_to_tokens(ids)
    prefix = _continuing_prefix(tokenizer)
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    pieces = []
    for i, (token, (start, end)) in enumerate(zip(tokens, offsets)):
        ref = text[start:end]
        if ids[i] == tokenizer.unk_token_id:
            token, is_subword = ref, False
        elif prefix:
            is_subword = len(token) != len(ref)  # "##ing" vs "ing": the pipeline's own test
        else:
            is_subword = start > 0 and " " not in text[start - 1:start + 1]
        pieces.append(Piece(token, int(start), int(end), i, is_subword, total[i] / seen[i], int(seen[i]),
                            id2label))
    return pieces


def _continuing_prefix(tokenizer) -> str | None:
    backend = getattr(tokenizer, "_tokenizer", None)
    return getattr(getattr(backend, "model", None), "continuing_subword_prefix", None)


# ---------------------------------------------------------------- aggregation (pipeline semantics)
def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("B-"):
        return "B", tag[2:]
    if tag.startswith("I-"):
        return "I", tag[2:]
    return "I", tag


def _join(tokenizer, tokens: list[str]) -> str:
    return tokenizer.convert_tokens_to_string(tokens) if tokenizer is not None else " ".join(tokens)


def _word_entity(group: list[Piece], strategy: str, id2label, tokenizer) -> dict:
    if strategy == "first":
        scores = group[0].scores
        idx = int(scores.argmax())
        score = scores[idx]
    elif strategy == "max":
        best = max(group, key=lambda p: p.scores.max())
        idx = int(best.scores.argmax())
        score = best.scores[idx]
    elif strategy == "average":
        mean = np.nanmean(np.stack([p.scores for p in group]), axis=0)
        idx = int(mean.argmax())
        score = mean[idx]
    else:
        raise ValueError(f"unknown word strategy {strategy!r}")
    return {"entity": id2label[idx], "score": float(score), "word": _join(tokenizer, [p.token for p in group]),
            "start": group[0].start, "end": group[-1].end, "pieces": [p.index for p in group]}


def _group(entities: list[dict], tokenizer) -> list[dict]:
    groups, current = [], []

    def flush():
        if current:
            groups.append({
                "entity_group": current[0]["entity"].split("-", 1)[-1],
                "score": float(np.nanmean([e["score"] for e in current])),
                "word": _join(tokenizer, [e["word"] for e in current]),
                "start": current[0]["start"], "end": current[-1]["end"],
            })

    for entity in entities:
        if current:
            bi, tag = _split(entity["entity"])
            _, last_tag = _split(current[-1]["entity"])
            if tag == last_tag and bi != "B":
                current.append(entity)
                continue
            flush()
        current = [entity]
    flush()
    return groups


def aggregate(pieces: list[Piece], strategy: str = "simple", tokenizer=None, id2label=None) -> list[dict]:
    """The pipeline's output for `strategy`, without "O": for "none" one dict per piece
    {"entity": "B-PER", "score", "word", "start", "end", "index"}, otherwise one per entity
    {"entity_group": "PER", "score", "word", "start", "end"}."""
    strategy = (strategy or "simple").lower()
    if strategy not in STRATEGIES:
        raise ValueError(f"aggregation strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if not pieces:
        return []
    id2label = id2label or pieces[0]._id2label
    if strategy in ("none", "simple"):
        entities = []
        for p in pieces:
            idx = int(p.scores.argmax())
            entities.append({"entity": id2label[idx], "score": float(p.scores[idx]), "index": p.index,
                             "word": p.token, "start": p.start, "end": p.end})
        if strategy == "none":
            return [e for e in entities if e["entity"] != "O"]
    else:
        entities, group = [], []
        for p in pieces:
            if group and not p.is_subword:
                entities.append(_word_entity(group, strategy, id2label, tokenizer))
                group = []
            group.append(p)
        if group:
            entities.append(_word_entity(group, strategy, id2label, tokenizer))
    return [g for g in _group(entities, tokenizer) if g["entity_group"] != "O"]


def word_split_disagreements(pieces: list[Piece]) -> list[int]:
    """Indices of pieces whose predicted type differs from the first piece of their word: the
    places where the word-level strategies (first/average/max) can disagree with "simple"."""
    out, first = [], None
    for p in pieces:
        if not p.is_subword:
            first = p
        elif first is not None and _split(p.tag)[1] != _split(first.tag)[1]:
            out.append(p.index)
    return out
