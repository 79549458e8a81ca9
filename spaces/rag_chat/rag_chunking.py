"""Split documents into chunks: fixed size with overlap, sentence-based, or recursive by
structure (sections -> paragraphs -> sentences -> words).

Every chunk keeps where it came from (file, page, character span, heading path). The text that
is embedded can carry the document title and section heading in front ("context"), which helps
a small embedder a lot. Nothing is ever cut off silently: `fit_to_model` measures each chunk in
the embedder's own tokens and splits the ones over its maximum input length."""
import re
from dataclasses import dataclass, field

STRATEGIES = {
    "sentence": "Sentence-based: whole sentences packed up to the size, a sentence or two of overlap",
    "recursive": "Recursive by structure: sections, then paragraphs, then sentences, then words",
    "fixed": "Fixed size with overlap: every N characters, cut anywhere (the tutorial baseline)",
}
DEFAULTS = {"strategy": "recursive", "size": 1000, "overlap": 200, "context": True}

_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co",
           "no", "fig", "al", "approx", "dept", "est", "gen", "gov", "lt", "col", "sgt", "mt", "ft", "u.s",
           "u.k", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "c", "ca",
           "cf", "vol", "pp", "p", "ch", "sec", "op", "ed", "eds", "rev", "n.b"}
_SENT_END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9À-Ý])")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)


@dataclass
class Chunk:
    doc: str  # file name
    text: str  # the document's own text, exactly (what the user sees and what is cited)
    start: int  # character span in the document
    end: int
    heading: str = ""  # "Section > Subsection"
    title: str = ""
    page: int | None = None
    prefix: str = ""  # context put in front of the text for embedding and keyword search
    id: int = -1  # position in the index
    meta: dict = field(default_factory=dict)

    @property
    def embed_text(self) -> str:
        return self.prefix + self.text

    @property
    def where(self) -> str:
        """Where it came from, for people: page (PDF) or character position, and the section."""
        place = f"p. {self.page}" if self.page else f"chars {self.start:,}–{self.end:,}"
        return f"{place} · {self.heading}" if self.heading else place


@dataclass
class _Unit:
    start: int
    end: int
    section: int  # index into the section list
    para: int


def split_sentences(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Sentence spans (start, end) in `text`, shifted by `offset`. Regex with an abbreviation
    list: good on prose, never drops characters."""
    spans, start = [], 0
    for m in _SENT_END.finditer(text):
        before = text[start:m.start() + 1]
        word = re.search(r"([\w.]+)\.?$", before.rstrip(".!?…\"'”’)]") + ".")
        token = (word.group(1) if word else "").lower().rstrip(".")
        if token in _ABBREV or (len(token) == 1 and token.isalpha()):  # "Dr. No", "J. R. R. Tolkien"
            continue
        end = m.end()
        seg = text[start:end]
        if seg.strip():
            lead = len(seg) - len(seg.lstrip())
            spans.append((offset + start + lead, offset + start + len(seg.rstrip())))
        start = end
    seg = text[start:]
    if seg.strip():
        lead = len(seg) - len(seg.lstrip())
        spans.append((offset + start + lead, offset + start + len(seg.rstrip())))
    return spans


def _structure(text: str) -> tuple[list[str], list[tuple[int, int, int, int]]]:
    """Sections (heading paths) and paragraphs (start, end, section, para id)."""
    sections, paras, path = [""], [], []
    section = 0
    pos = 0
    pid = 0
    fence = False
    for block in re.finditer(r"[^\n]+(?:\n(?!\n)[^\n]*)*", text):  # paragraphs: runs of non-empty lines
        b_start, b_end = block.start(), block.end()
        lines = list(re.finditer(r"[^\n]+", text[b_start:b_end]))
        para_start = None
        for line in lines:
            l_start, l_end = b_start + line.start(), b_start + line.end()
            if line.group(0).lstrip().startswith(("```", "~~~")):
                fence = not fence
            h = None if fence else _HEADING.match(line.group(0))
            is_item = re.match(r"\s*([-*•]|\d+[.)])\s+", line.group(0))
            if h or is_item:
                if para_start is not None:
                    paras.append((para_start, prev_end, section, pid))
                    pid += 1
                    para_start = None
            if h:
                level = len(h.group(1))
                title = h.group(2).strip()
                path = [p for p in path if p[0] < level] + [(level, title)]
                sections.append(" > ".join(t for lv, t in path if lv > 1 or len(path) == 1))
                section = len(sections) - 1
                continue
            if para_start is None:
                para_start = l_start
            prev_end = l_end
            if is_item:  # each list item is its own paragraph
                paras.append((para_start, prev_end, section, pid))
                pid += 1
                para_start = None
        if para_start is not None:
            paras.append((para_start, prev_end, section, pid))
            pid += 1
        pos = b_end
    return sections, paras


def _words(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Split an over-long span at whitespace into pieces of at most `size` characters."""
    pieces, s = [], start
    while end - s > size:
        cut = text.rfind(" ", s + size // 2, s + size)
        cut = cut if cut > s else s + size
        pieces.append((s, cut))
        s = cut
        while s < end and text[s].isspace():
            s += 1
    if end > s:
        pieces.append((s, end))
    return pieces


def _pack(units: list[_Unit], size: int, overlap: int) -> list[list[_Unit]]:
    """Consecutive units of one section packed up to `size` characters; the next chunk starts
    with the previous one's last units covering at most `overlap` characters."""
    groups, cur = [], []
    for u in units:
        if cur and (u.end - cur[0].start > size or u.section != cur[0].section):
            groups.append(cur)
            tail = []
            if u.section == cur[0].section and overlap > 0:
                for v in reversed(cur):
                    if cur[-1].end - v.start <= overlap:
                        tail.insert(0, v)
                    else:
                        break
                if len(tail) == len(cur):
                    tail = tail[1:]
            cur = tail if tail and u.end - tail[0].start <= size else []
        cur.append(u)
    if cur:
        groups.append(cur)
    return groups


def _sentence_units(text, paras, size) -> list[_Unit]:
    units = []
    for p_start, p_end, section, pid in paras:
        for s, e in split_sentences(text[p_start:p_end], p_start):
            for ws, we in _words(text, s, e, size):
                units.append(_Unit(ws, we, section, pid))
    return units


def chunk_document(doc, strategy: str = "sentence", size: int = 600, overlap: int = 120,
                   context: bool = True) -> list[Chunk]:
    """Chunks of one rag_documents.Document."""
    text = doc.text
    size = max(50, int(size))
    overlap = max(0, min(int(overlap), size // 2))
    sections, paras = _structure(text)
    if strategy == "fixed":
        spans, s = [], 0
        while s < len(text):
            e = min(s + size, len(text))
            spans.append((s, e, _section_at(paras, s)))
            if e == len(text):
                break
            s = e - overlap
    elif strategy == "recursive":
        atoms = []
        sec_paras: dict[int, list] = {}
        for p in paras:
            sec_paras.setdefault(p[2], []).append(p)
        for section, plist in sec_paras.items():
            if plist[-1][1] - plist[0][0] <= size:  # the whole section fits
                atoms.append(_Unit(plist[0][0], plist[-1][1], section, plist[0][3]))
                continue
            for p in plist:
                if p[1] - p[0] <= size:
                    atoms.append(_Unit(p[0], p[1], section, p[3]))
                else:
                    atoms.extend(_sentence_units(text, [p], size))
        spans = [(g[0].start, g[-1].end, g[0].section) for g in _pack(atoms, size, overlap)]
    elif strategy == "sentence":
        units = _sentence_units(text, paras, size)
        spans = [(g[0].start, g[-1].end, g[0].section) for g in _pack(units, size, overlap)]
    else:
        raise ValueError(f"unknown chunking strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    title = doc.title or doc.name
    chunks = []
    for s, e, section in spans:
        body = text[s:e]
        lead = len(body) - len(body.lstrip())
        s, body = s + lead, body.strip()
        if not body:
            continue
        heading = sections[section] if section is not None else ""
        if heading == title:
            heading = ""
        prefix = ""
        if context:
            prefix = title + (f" — {heading}" if heading else "") + "\n"
        chunks.append(Chunk(doc.name, body, s, s + len(body), heading, title, doc.page_at(s), prefix))
    return chunks


def _section_at(paras, offset: int) -> int:
    section = 0
    for p_start, _, sec, _ in paras:
        if p_start > offset:
            break
        section = sec
    return section


def chunk_documents(docs, strategy="sentence", size=600, overlap=120, context=True) -> list[Chunk]:
    chunks = []
    for doc in docs:
        chunks.extend(chunk_document(doc, strategy, size, overlap, context))
    for i, c in enumerate(chunks):
        c.id = i
    return chunks


def fit_to_model(chunks: list[Chunk], count_tokens, max_tokens: int) -> tuple[list[Chunk], int]:
    """Split every chunk whose embedded text is longer than `max_tokens` (counted by the
    embedder's tokenizer, special tokens included) until all fit. Returns (chunks, how many
    were split). Nothing is truncated by the embedder afterwards."""
    out, split = [], 0
    todo = list(chunks)
    counts = count_tokens([c.embed_text for c in todo]) if todo else []
    while todo:
        again = []
        for chunk, n in zip(todo, counts):
            if n <= max_tokens or len(chunk.text) < 20:
                out.append(chunk)
                continue
            split += 1
            again.extend(_halve(chunk))
        todo = again
        counts = count_tokens([c.embed_text for c in todo]) if todo else []
    out.sort(key=lambda c: (c.doc, c.start))
    order = {name: i for i, name in enumerate(dict.fromkeys(c.doc for c in chunks))}
    out.sort(key=lambda c: (order[c.doc], c.start))
    for i, c in enumerate(out):
        c.id = i
    return out, split


def _halve(chunk: Chunk) -> list[Chunk]:
    text = chunk.text
    mid = len(text) // 2
    cuts = [s for s, _ in split_sentences(text)][1:]
    cut = min(cuts, key=lambda s: abs(s - mid)) if cuts else None
    if cut is None or abs(cut - mid) > len(text) // 3:
        cut = text.rfind(" ", 0, mid + 1)
        cut = cut if cut > 0 else mid
    parts = []
    for s, e in ((0, cut), (cut, len(text))):
        piece = text[s:e]
        lead = len(piece) - len(piece.lstrip())
        piece = piece.strip()
        if piece:
            start = chunk.start + s + lead
            parts.append(Chunk(chunk.doc, piece, start, start + len(piece), chunk.heading, chunk.title,
                               chunk.page, chunk.prefix, meta={**chunk.meta, "split": True}))
    return parts
