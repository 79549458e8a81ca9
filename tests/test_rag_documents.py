"""rag_documents: files to text with one clear status line per file (every bad-file case), upload and
session limits. Fast: no model."""
import io
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "rag_chat"))

import rag_documents as rd  # noqa: E402


def make_pdf(pages_text, password=None) -> bytes:
    """A real PDF with a Helvetica text layer per page (empty string = a page with no text)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    w = PdfWriter()
    for text in pages_text:
        page = w.add_blank_page(612, 792)
        if text:
            font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                     NameObject("/BaseFont"): NameObject("/Helvetica")})
            page[NameObject("/Resources")] = DictionaryObject(
                {NameObject("/Font"): DictionaryObject({NameObject("/F1"): w._add_object(font)})})
            stream = DecodedStreamObject()
            stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
            page[NameObject("/Contents")] = w._add_object(stream)
    if password:
        w.encrypt(password, algorithm="RC4-128")
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def make_docx(paragraphs) -> bytes:
    def para(style, text):
        props = '<w:pPr><w:pStyle w:val="%s"/></w:pPr>' % style if style else ""
        return f"<w:p>{props}<w:r><w:t>{text}</w:t></w:r></w:p>"

    body = "".join(para(style, text) for style, text in paragraphs)
    xml = ('<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
           f'wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("word/document.xml", xml)
    return buf.getvalue()


@pytest.fixture
def bad_files(tmp_path):
    files = {
        "good.txt": b"The Zorblax protocol was invented in 1987 by Mira Quell.",
        "report.pdf": make_pdf(["Page one talks about apples.", "Page two talks about pears."]),
        "corrupt.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage garbage",
        "renamed.pdf": b"just some text, not a pdf",
        "locked.pdf": make_pdf(["Top secret text"], password="hunter2"),
        "scanned.pdf": make_pdf(["", ""]),
        "binary.txt": bytes(range(256)) * 40,
        "empty.txt": b"",
        "latin1.txt": "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade.".encode("cp1252"),
        "page.html": b"<html><head><title>T</title><script>alert(1)</script></head><body><h1>Title</h1>"
                     b"<p>Hello <b>world</b>.</p><style>p{}</style></body></html>",
        "memo.docx": make_docx([("Title", "Memo"), ("Heading1", "Budget"), (None, "We spend 5 euros.")]),
        "broken.docx": b"PK not really a zip",
        "sheet.xlsx": b"PK\x03\x04 whatever",
        "whitespace.md": b"   \n\n  \t ",
    }
    paths = {}
    for name, data in files.items():
        p = tmp_path / name
        p.write_bytes(data)
        paths[name] = p
    return paths


def test_every_bad_file_gets_its_own_clear_message_and_the_rest_works(bad_files):
    docs, statuses = rd.read_files(list(bad_files.values()))
    by = {s.name: s for s in statuses}
    assert len(statuses) == len(bad_files)
    assert by["good.txt"].ok and by["report.pdf"].ok and by["page.html"].ok and by["memo.docx"].ok
    assert by["report.pdf"].pages == 2
    assert "corrupt PDF" in by["corrupt.pdf"].message
    assert "not a PDF" in by["renamed.pdf"].message
    assert "encrypted" in by["locked.pdf"].message and "password" in by["locked.pdf"].message
    assert "no text layer" in by["scanned.pdf"].message and "OCR" in by["scanned.pdf"].message
    assert "binary" in by["binary.txt"].message
    assert "empty" in by["empty.txt"].message
    assert by["latin1.txt"].ok and "not UTF-8" in by["latin1.txt"].message
    assert "corrupt DOCX" in by["broken.docx"].message
    assert "unsupported" in by["sheet.xlsx"].message
    assert "no text" in by["whitespace.md"].message
    texts = {d.name: d.text for d in docs}
    assert "Café crème" in texts["latin1.txt"]
    assert "alert" not in texts["page.html"] and "Hello world." in texts["page.html"]
    assert texts["memo.docx"].startswith("# Memo") and "## Budget" in texts["memo.docx"]
    pdf = next(d for d in docs if d.name == "report.pdf")
    assert pdf.page_at(pdf.text.index("pears")) == 2


def test_too_large_file(tmp_path, monkeypatch):
    monkeypatch.setattr(rd, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big.txt"
    big.write_text("word " * 1000)
    _, statuses = rd.read_files([big])
    assert not statuses[0].ok and "too large" in statuses[0].message


def test_500_files_at_once(tmp_path):
    paths = []
    for i in range(500):
        p = tmp_path / f"f{i:03}.txt"
        p.write_text(f"File number {i} mentions the token t{i}.")
        paths.append(p)
    docs, statuses = rd.read_files(paths)
    assert len(statuses) == 500
    assert len(docs) == rd.MAX_FILES
    skipped = [s for s in statuses if not s.ok]
    assert len(skipped) == 500 - rd.MAX_FILES and all("too many files" in s.message for s in skipped)


def test_session_character_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(rd, "MAX_SESSION_CHARS", 100)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("x " * 40)
    b.write_text("y " * 40)
    docs, statuses = rd.read_files([a, b])
    assert statuses[0].ok and not statuses[1].ok and "limit" in statuses[1].message


def test_rst_headings_become_structure():
    text = rd.underlined_headings("Title\n=====\n\nIntro.\n\nUsage\n-----\n\nUse it.")
    assert text.splitlines()[0] == "# Title" and "## Usage" in text
