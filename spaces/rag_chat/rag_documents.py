"""Turn uploaded files into plain text, with one clear status line per file.

PDF (pypdf), plain text, Markdown, HTML (stdlib html.parser) and DOCX (stdlib zipfile + XML:
a .docx is a zip of XML parts, so no extra library is needed). Every failure becomes a
message for that file only; the rest of the upload goes on."""
import bisect
import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

MAX_FILE_BYTES = 20 * 1024 * 1024  # per file
MAX_FILES = 100  # per upload; the rest are listed as skipped
MAX_SESSION_CHARS = 5_000_000  # per session: ~10k chunks, a few minutes of CPU embedding
TEXT_TYPES = {".txt", ".text", ".md", ".markdown", ".rst", ".csv", ".log"}
HTML_TYPES = {".html", ".htm", ".xhtml"}
SUPPORTED = ".pdf, .txt, .md, .html, .docx"


@dataclass
class Document:
    name: str  # file name as uploaded
    text: str
    kind: str  # pdf | text | markdown | html | docx
    page_starts: list[int] = field(default_factory=list)  # char offset where each PDF page starts
    title: str = ""
    note: str = ""  # e.g. "not UTF-8: decoded as cp1252"
    sample: bool = False  # from the shipped sample corpus

    def page_at(self, offset: int) -> int | None:
        """1-based PDF page holding character `offset` (None for other kinds)."""
        if not self.page_starts:
            return None
        return bisect.bisect_right(self.page_starts, offset)


@dataclass
class FileStatus:
    name: str
    ok: bool
    message: str
    chars: int = 0
    pages: int | None = None

    def as_dict(self) -> dict:
        out = {"file": self.name, "ok": self.ok, "message": self.message, "chars": self.chars}
        if self.pages is not None:
            out["pages"] = self.pages
        return out


class Unreadable(Exception):
    """A file we cannot use; the message is shown to the user as is."""


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def read_files(paths, already_chars: int = 0, names=None) -> tuple[list[Document], list[FileStatus]]:
    """Read every path; never raises. `names` overrides the displayed names (uploads are temp
    files); `already_chars` counts text the session already holds, against MAX_SESSION_CHARS."""
    paths = [str(p) for p in (paths or [])]
    names = list(names) if names else [display_name(p) for p in paths]
    docs, statuses = [], []
    total = already_chars
    for i, (path, name) in enumerate(zip(paths, names)):
        if i >= MAX_FILES:
            statuses.append(FileStatus(name, False, f"skipped: too many files in one upload (limit {MAX_FILES}); "
                                                    "upload the rest in another batch"))
            continue
        try:
            doc = read_file(path, name)
        except Unreadable as exc:
            statuses.append(FileStatus(name, False, str(exc)))
            continue
        except Exception as exc:  # anything unexpected stays this file's problem
            statuses.append(FileStatus(name, False, f"could not read: {type(exc).__name__}: {str(exc)[:160]}"))
            continue
        if total + len(doc.text) > MAX_SESSION_CHARS:
            statuses.append(FileStatus(name, False, f"skipped: this session already holds {total:,} characters "
                                                    f"(limit {MAX_SESSION_CHARS:,}); clear documents first"))
            continue
        total += len(doc.text)
        docs.append(doc)
        pages = len(doc.page_starts) if doc.page_starts else None
        message = f"ok: {len(doc.text):,} characters" + (f", {pages} pages" if pages else "")
        if doc.note:
            message += f" ({doc.note})"
        statuses.append(FileStatus(name, True, message, len(doc.text), pages))
    return docs, statuses


def display_name(path: str) -> str:
    return Path(path).name


def read_file(path, name: str | None = None) -> Document:
    """One file -> Document, or Unreadable with the reason."""
    path = str(path)
    name = name or display_name(path)
    if not os.path.isfile(path):
        raise Unreadable("not a file")
    size = os.path.getsize(path)
    if size == 0:
        raise Unreadable("empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise Unreadable(f"too large: {_size(size)} (limit {_size(MAX_FILE_BYTES)} per file); split it into parts")
    with open(path, "rb") as fh:
        data = fh.read()
    ext = Path(name).suffix.lower()
    if ext == ".pdf" or (not ext and data[:5] == b"%PDF-"):
        doc = _read_pdf(data, name)
    elif ext == ".docx":
        doc = _read_docx(data, name)
    elif ext in HTML_TYPES:
        text, note = decode_text(data)
        doc = Document(name, html_to_text(text), "html", note=note)
    elif ext in TEXT_TYPES or not ext:
        text, note = decode_text(data)
        kind = "markdown" if ext in (".md", ".markdown") else "text"
        doc = Document(name, underlined_headings(normalize(text)), kind, note=note)
    elif ext in (".doc", ".ppt", ".pptx", ".xls", ".xlsx", ".odt", ".rtf", ".epub"):
        raise Unreadable(f"unsupported type {ext}: save it as PDF, DOCX or plain text ({SUPPORTED})")
    else:
        raise Unreadable(f"unsupported type {ext or '(none)'}: this lab reads {SUPPORTED}")
    if not doc.text.strip():
        raise Unreadable("no text: the file holds only whitespace or markup")
    doc.title = doc.title or _title(doc)
    return doc


def looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 text has NULs but is text
        return False
    if b"\x00" in head:
        return True
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return control > 0.05 * max(len(head), 1)


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, note). UTF-8 first; otherwise a best guess, with a note saying so."""
    if looks_binary(data):
        raise Unreadable("looks like a binary file, not text (is it renamed?); upload the original "
                         f"document ({SUPPORTED})")
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(codec, errors="replace"), ("" if codec == "utf-8-sig" else "UTF-16 text")
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        pass
    guess = None
    try:  # a statistical guess needs text to work on; short snippets go to cp1252 (Western Windows)
        if len(data) < 2000:
            raise ValueError("too short to guess")
        from charset_normalizer import from_bytes

        best = from_bytes(data[:200_000]).best()
        guess = best.encoding if best else None
    except Exception:
        guess = None
    for codec in [c for c in (guess, "cp1252", "latin-1") if c]:
        try:
            return data.decode(codec), f"not UTF-8: decoded as {codec}; check accented letters"
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("utf-8", errors="replace"), "not UTF-8: undecodable bytes replaced"


def normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = text.replace("\u00a0", " ").replace("\u00ad", "")
    text = re.sub(r"[ \t\f\v]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_UNDERLINE = re.compile(r"^([=\-~^*+#\"'`])\1{2,}\s*$")


def underlined_headings(text: str) -> str:
    """reStructuredText / setext headings ("Title" over a line of ==== or ----) become Markdown
    "# Title" lines, so chunking sees the document's structure. Levels follow the order in
    which underline characters first appear, as in reST."""
    lines = text.split("\n")
    levels: dict[str, int] = {}
    out, i, fence = [], 0, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fence = not fence
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        m = _UNDERLINE.match(nxt)
        if (not fence and m and line.strip() and not _UNDERLINE.match(line) and len(nxt.strip()) >= 0.7 * len(line.strip())
                and len(line.strip()) < 100 and not re.match(r"\s*([-*+]|\d+[.)])\s", line)
                and (i == 0 or not lines[i - 1].strip() or _UNDERLINE.match(lines[i - 1]))):
            level = levels.setdefault(m.group(1), min(len(levels) + 1, 6))
            if out and _UNDERLINE.match(out[-1]):  # an overline above the title
                out.pop()
            out.append("#" * level + " " + line.strip())
            i += 2
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _title(doc: Document) -> str:
    first = re.match(r"\s*#\s+(.+)", doc.text)
    if first:
        return first.group(1).strip()[:120]
    return Path(doc.name).stem.replace("_", " ")


# ---------------------------------------------------------------- PDF
def _read_pdf(data: bytes, name: str) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if b"%PDF-" not in data[:1024]:
        raise Unreadable("not a PDF: the file does not start with a PDF header (corrupt, or another type renamed .pdf)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception as exc:  # e.g. AES without the cryptography package
                raise Unreadable("encrypted PDF: it cannot be opened without its password "
                                 f"({type(exc).__name__}); remove the protection and upload it again") from exc
            if not opened:
                raise Unreadable("encrypted PDF: it needs a password; remove the protection and upload it again")
        pages = []
        for page in reader.pages:
            try:
                pages.append(normalize(page.extract_text() or ""))
            except Exception:
                pages.append("")
    except Unreadable:
        raise
    except (PdfReadError, Exception) as exc:
        raise Unreadable(f"corrupt PDF: {type(exc).__name__}: {str(exc)[:120]}") from exc
    if not pages:
        raise Unreadable("corrupt PDF: no pages found")
    if sum(len(p) for p in pages) < 20:
        raise Unreadable(f"no text layer in {len(pages)} page(s): probably a scan or images; "
                         "run OCR first (e.g. ocrmypdf) and upload the result")
    starts, parts, offset = [], [], 0
    for text in pages:
        starts.append(offset)
        parts.append(text)
        offset += len(text) + 2
    doc = Document(name, "\n\n".join(parts), "pdf", page_starts=starts)
    empty = sum(1 for p in pages if not p.strip())
    if empty:
        doc.note = f"{empty} page(s) without text skipped"
    return doc


# ---------------------------------------------------------------- HTML
class _HtmlText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "svg", "head", "nav", "footer", "form"}
    BLOCK = {"p", "div", "br", "li", "tr", "section", "article", "blockquote", "pre", "table", "ul", "ol",
             "dd", "dt", "header", "main", "aside", "figure", "figcaption", "hr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip, self.title, self._in_title = [], 0, "", False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCK:
            self.out.append("\n- " if tag == "li" else "\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n")
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self.skip:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    text = normalize("\n".join(lines))
    title = parser.title.strip()
    if title and not text.startswith("#"):
        text = f"# {title}\n\n{text}"
    return text


# ---------------------------------------------------------------- DOCX
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _read_docx(data: bytes, name: str) -> Document:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            xml = zf.read("word/document.xml")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise Unreadable("corrupt DOCX: not a Word document package (is it an old .doc renamed?)") from exc
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise Unreadable(f"corrupt DOCX: {exc}") from exc
    paragraphs = []
    for p in root.iter(_W + "p"):
        text = "".join(t.text or "" for t in p.iter() if t.tag in (_W + "t", _W + "tab") and (t.text or t.tag == _W + "tab"))
        if not text.strip():
            continue
        style = p.find(f"{_W}pPr/{_W}pStyle")
        level = re.match(r"(?:Heading|heading)\s*(\d)", style.get(_W + "val", "")) if style is not None else None
        if style is not None and style.get(_W + "val", "") == "Title":
            paragraphs.append("# " + text.strip())
        elif level:
            paragraphs.append("#" * min(6, int(level.group(1)) + 1) + " " + text.strip())
        else:
            paragraphs.append(text.strip())
    return Document(name, normalize("\n\n".join(paragraphs)), "docx")


def sample_corpus_files(folder) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*.md") if p.name != "SOURCE.md")
