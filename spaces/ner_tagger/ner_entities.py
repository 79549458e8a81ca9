"""What every tagger of the NER tagger lab shares: the entity record, the coarse scheme (PER / ORG / LOC / MISC)
and each model's native labels mapped to it, span tidying, the Tagger interface and the input check.

An entity is a dict {"text", "start", "end", "label", "coarse"} with character offsets into the input
(text[start:end] == entity text), the model's own ("native") label and its coarse type."""
from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import UserError

MAX_CHARS = 100_000  # per request; longer text gets a clear message (split it), never a silent cut

# spaCy's OntoNotes labels -> the coarse CoNLL-style scheme (None: not a named entity here).
COARSE = {
    "PERSON": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC",
    "NORP": "MISC", "EVENT": "MISC", "WORK_OF_ART": "MISC", "LAW": "MISC", "PRODUCT": "MISC",
    "LANGUAGE": "MISC",
    "DATE": None, "TIME": None, "PERCENT": None, "MONEY": None, "QUANTITY": None, "ORDINAL": None,
    "CARDINAL": None,
}
# CoNLL/dslim labels and GLiNER's default label names -> coarse.
HUB_COARSE = {"PER": "PER", "ORG": "ORG", "LOC": "LOC", "MISC": "MISC", "person": "PER",
              "organization": "ORG", "location": "LOC", "misc": "MISC"}


class TaggerError(UserError):
    """A message for the user: unknown model, text too long, model unavailable."""


def entity(text: str, start: int, end: int, label: str, coarse: str, score: float | None = None) -> dict:
    out = {"text": text[start:end], "start": int(start), "end": int(end), "label": label, "coarse": coarse}
    if score is not None:
        out["score"] = round(float(score), 4)
    return out


# ---------------------------------------------------------------- span clean-up (general rules)
_LEADING = re.compile(r"^(?:the|a|an)\s+", re.I)
_TRAILING = re.compile(r"(?:['\u2019]s?|\s)+$")
_EDGE_PUNCT = "\"'\u201c\u201d\u2018\u2019()[]{}<>,.;:!?-\u2013\u2014 \t\n"


def tidy_span(text: str, start: int, end: int, keep_leading_the: bool = False) -> tuple[int, int]:
    """Shrink [start, end) to the name itself: no leading article, no possessive 's, no edge
    punctuation or white space (a trailing '.' stays when it ends an abbreviation like 'Inc.')."""
    changed = True
    while changed and start < end:
        changed = False
        span = text[start:end]
        m = _LEADING.match(span)
        if m and not keep_leading_the and end - start > m.end():
            start += m.end()
            changed = True
            continue
        m = _TRAILING.search(span)
        if m and m.start() > 0 and (span[m.start():].strip() in ("'s", "\u2019s", "'", "\u2019", "")):
            if m.start() < len(span):
                end = start + m.start()
                changed = True
                continue
        while start < end and text[start] in _EDGE_PUNCT:
            start += 1
            changed = True
        while start < end and text[end - 1] in _EDGE_PUNCT:
            if text[end - 1] == "." and re.search(r"(?:\b[A-Z][a-z]{0,3}|\b[A-Z])\.$", text[start:end]):
                break  # Inc. / Co. / U.S.
            end -= 1
            changed = True
    return start, end


def has_capital(s: str) -> bool:
    return any(ch.isupper() for ch in s)


# ---------------------------------------------------------------- the taggers
@dataclass
class ModelInfo:
    name: str
    kind: str  # "embedded" | "hub" | "ensemble"
    native: str  # what its own labels are
    why: str  # one line for the UI


class Tagger:
    info: ModelInfo

    def status(self) -> tuple[bool, str]:
        """(usable now, why) without loading anything heavy."""
        return True, "offline, embedded"

    def tag(self, text: str) -> list[dict]:
        """The entities of `text`: every tagger of the lab defines this (the interface, not a stub)."""
        raise NotImplementedError


def check_text(text) -> str:
    """The text to tag, or a TaggerError with a message a person can act on."""
    if text is None:
        raise TaggerError("No text given: paste or upload some text first.")
    if isinstance(text, bytes):
        raise TaggerError("Send the text as a string, not bytes.")
    if not isinstance(text, str):
        raise TaggerError(f"Text must be a string, not {type(text).__name__}.")
    if len(text) > MAX_CHARS:
        raise TaggerError(f"The text has {len(text):,} characters; this lab tags at most {MAX_CHARS:,} per "
                          "request (about 30 pages). Split it and tag the parts: nothing is cut silently.")
    return text
