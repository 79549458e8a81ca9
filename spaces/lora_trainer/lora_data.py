"""Training data for the LoRA trainer: the shipped datasets and uploaded CSV/JSONL files, read into
prompt/completion rows, previewed with the model's chat template, measured in tokens, split with a
seed. No gradio here.

Every row becomes {"prompt": [chat messages], "completion": [one assistant message]}: trl's
SFTTrainer applies the chat template and, with completion_only_loss, puts the loss on the answer
tokens only."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import UserError
from shared.paths import ASSETS

# ---------------------------------------------------------------- limits and defaults
MAX_FILE_BYTES = 10_000_000  # an uploaded CSV/JSONL
MAX_ROWS = 20_000
MIN_ROWS = 4  # fewer rows cannot make a batch and an eval split
MAX_FIELD_CHARS = 20_000
EVAL_FRACTION = 0.1
MAX_EVAL_ROWS = 200
PREVIEW_ROWS = 3
HIST_BINS = 12
DATASETS_DIR = ASSETS / "lora_datasets"
FILE_TYPES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson")

# Column names accepted for the two sides of a row (case-insensitive), first match wins.
PROMPT_COLUMNS = ("instruction", "prompt", "question", "input", "query")
ANSWER_COLUMNS = ("response", "completion", "answer", "output", "target")
ROLES = {"system", "user", "assistant"}


class DataError(UserError):
    """A dataset that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Shipped:
    name: str
    file: str
    description: str
    source: str
    licence: str


SHIPPED = {
    "orvenne": Shipped(
        "orvenne", "orvenne.jsonl",
        "New knowledge: 48 questions and answers about Orvenne, a fictional lakeside town (founder, mayor, "
        "festival, dish...), plus 12 held-back questions that ask the same facts in new words. The base model "
        "cannot know any of it, so what training changes is plain to see.",
        "written for this project", "CC0-1.0"),
    "captains_log": Shipped(
        "captains_log", "captains_log.jsonl",
        "Style: 40 everyday questions answered in a fixed persona and format (\"Captain's log: ... End of "
        "entry.\"). Teaches a format, not facts: a few dozen steps make every answer take the shape.",
        "written for this project", "CC0-1.0"),
}
DEFAULT_DATASET = "orvenne"


@dataclass
class Dataset:
    """Rows ready for trl, the held-back check questions (if any) and what reading them found."""
    name: str
    rows: list[dict]  # {"prompt": [...], "completion": [...]}
    heldout: list[dict] = field(default_factory=list)  # {"question", "answer", "key_facts": [...]}
    skipped: int = 0  # rows with an empty side
    fmt: str = ""  # what the file looked like: "instruction/response columns", "chat messages"...
    description: str = ""

    def __len__(self) -> int:
        return len(self.rows)


# ---------------------------------------------------------------- reading

def list_shipped() -> list[dict]:
    """The /datasets answer: name, rows (training rows), description."""
    out = []
    for spec in SHIPPED.values():
        data = load_shipped(spec.name)
        out.append({"name": spec.name, "rows": len(data.rows), "heldout": len(data.heldout),
                    "description": spec.description, "source": spec.source, "licence": spec.licence})
    return out


def load_shipped(name: str) -> Dataset:
    spec = SHIPPED.get(name)
    if spec is None:
        raise DataError(f"No shipped dataset is called '{str(name)[:60]}'; pick one of {', '.join(SHIPPED)} "
                        "or upload a CSV/JSONL file.")
    data = parse_bytes((DATASETS_DIR / spec.file).read_bytes(), spec.file)
    data.name, data.description = spec.name, spec.description
    return data


def load(dataset: str) -> Dataset:
    """A shipped dataset by name, or an uploaded CSV/JSONL file by path."""
    if not isinstance(dataset, str) or not dataset.strip():
        raise DataError("No dataset given: pick a shipped dataset or upload a CSV/JSONL file.")
    dataset = dataset.strip()
    if dataset in SHIPPED:
        return load_shipped(dataset)
    if len(dataset) > 4096 or "\x00" in dataset:
        raise DataError("That is neither a shipped dataset's name nor a file path.")
    path = Path(dataset)
    if path.suffix.lower() not in FILE_TYPES:
        raise DataError(f"'{dataset[:80]}' is neither a shipped dataset ({', '.join(SHIPPED)}) nor a CSV/JSONL file "
                        f"({', '.join(FILE_TYPES)}).")
    if os.environ.get("SPACE_ID") and not _uploaded(path):
        raise DataError("On a hosted Space, upload the file through the page (or gradio_client's handle_file); "
                        "other server paths are not readable.")
    try:
        is_file = path.is_file()
    except OSError:
        is_file = False
    if not is_file:
        raise DataError(f"'{dataset[:80]}' is neither a shipped dataset ({', '.join(SHIPPED)}) nor an uploaded "
                        "file.")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path.name} is {size / 1e6:.1f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB. "
                        "Train on a sample of it.")
    with path.open("rb") as handle:
        raw = handle.read(MAX_FILE_BYTES + 1)
    return parse_bytes(raw, path.name)


def _uploaded(path: Path) -> bool:
    """True when `path` is inside gradio's upload folder (where a Space's uploads land)."""
    import tempfile

    root = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def parse_bytes(raw: bytes, filename: str) -> Dataset:
    """CSV (a header row) or JSONL (one JSON object per line) into prompt/completion rows."""
    if len(raw) > MAX_FILE_BYTES:
        raise DataError(f"{filename} is over the {MAX_FILE_BYTES / 1e6:.0f} MB limit.")
    if not raw.strip():
        raise DataError(f"{filename} is empty.")
    if b"\x00" in raw[:4096] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{filename} looks like a binary file, not CSV or JSONL text.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{filename} is not UTF-8 text (byte {exc.start} cannot be read). Save it as UTF-8 "
                        "and upload it again.") from None
    lower = filename.lower()
    if lower.endswith((".jsonl", ".json", ".ndjson")) or text.lstrip().startswith(("{", "[")):
        records = _read_jsonl(text, filename)
        fmt = "JSONL"
    elif lower.endswith((".csv", ".tsv", ".txt")) or "," in text.splitlines()[0]:
        records = _read_csv(text, filename, "\t" if lower.endswith(".tsv") else ",")
        fmt = "CSV"
    else:
        raise DataError(f"{filename}: upload a .csv (with a header row) or a .jsonl file (one JSON object a line).")
    return rows_from_records(records, filename, fmt)


def _read_jsonl(text: str, filename: str) -> list[dict]:
    stripped = text.strip()
    if stripped.startswith("["):  # a JSON array of objects is accepted too
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(f"{filename} is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
        if not isinstance(data, list):
            raise DataError(f"{filename}: expected a list of objects.")
        records = data
    else:
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{filename}, line {number} is not valid JSON ({exc.msg}). Each line must be one "
                                "JSON object.") from None
            if len(records) > MAX_ROWS:
                break
    for number, rec in enumerate(records[:MAX_ROWS + 1], 1):
        if not isinstance(rec, dict):
            raise DataError(f"{filename}, row {number} is a {type(rec).__name__}, not a JSON object with "
                            "fields like instruction/response or messages.")
    return records


def _read_csv(text: str, filename: str, delimiter: str) -> list[dict]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        if not reader.fieldnames:
            raise DataError(f"{filename} has no header row.")
        records = []
        for rec in reader:
            if None in rec:  # more cells than header columns
                raise DataError(f"{filename}, line {reader.line_num} has more cells than the header has columns.")
            records.append(rec)
            if len(records) > MAX_ROWS:
                break
    except csv.Error as exc:
        raise DataError(f"{filename} is not a readable CSV file ({exc}).") from None
    return records


def _field(rec: dict, names: tuple[str, ...]):
    lowered = {str(k).strip().lower(): v for k, v in rec.items()}
    for name in names:
        if name in lowered:
            return name, lowered[name]
    return None, None


def rows_from_records(records: list, filename: str, fmt: str) -> Dataset:
    if not records:
        raise DataError(f"{filename} has a header but no rows.")
    if len(records) > MAX_ROWS:
        raise DataError(f"{filename} has more than {MAX_ROWS:,} rows; train on a sample of it.")
    first_keys = sorted(str(k) for k in records[0])
    is_chat = any(str(k).strip().lower() == "messages" for k in records[0])
    if not is_chat and (_field(records[0], PROMPT_COLUMNS)[0] is None or _field(records[0], ANSWER_COLUMNS)[0] is None):
        raise DataError(f"{filename}: no usable columns. Found {', '.join(first_keys)[:200] or 'none'}; expected "
                        "instruction and response (or prompt/completion, question/answer), or a chat 'messages' "
                        "list.")
    rows, heldout, skipped = [], [], 0
    for number, rec in enumerate(records, 1):
        if is_chat:
            row = _chat_row(rec, number, filename)
        else:
            row = _pair_row(rec, number, filename)
        if row is None:
            skipped += 1
            continue
        split = str(rec.get("split") or "train").strip().lower()
        if split in ("heldout", "held-out", "test"):
            heldout.append({"question": row["prompt"][-1]["content"], "answer": row["completion"][0]["content"],
                            "key_facts": _key_facts(rec, number, filename)})
        else:
            rows.append(row)
    if len(rows) < MIN_ROWS:
        raise DataError(f"{filename} has {len(rows)} usable training rows; at least {MIN_ROWS} are needed"
                        + (f" ({skipped} rows had an empty side)." if skipped else "."))
    kind = "chat messages" if is_chat else "instruction/response columns"
    return Dataset(Path(filename).stem, rows, heldout, skipped, f"{fmt}, {kind}")


def _text(value, number: int, filename: str, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise DataError(f"{filename}, row {number}: the {what} must be text, not {type(value).__name__}.")
    text = str(value).strip()
    if len(text) > MAX_FIELD_CHARS:
        raise DataError(f"{filename}, row {number}: the {what} has {len(text):,} characters; the limit is "
                        f"{MAX_FIELD_CHARS:,}.")
    return text


def _pair_row(rec: dict, number: int, filename: str) -> dict | None:
    _, prompt = _field(rec, PROMPT_COLUMNS)
    _, answer = _field(rec, ANSWER_COLUMNS)
    prompt, answer = _text(prompt, number, filename, "instruction"), _text(answer, number, filename, "response")
    if not prompt or not answer:
        return None
    messages = []
    _, system = _field(rec, ("system",))
    system = _text(system, number, filename, "system prompt")
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    return {"prompt": messages, "completion": [{"role": "assistant", "content": answer}]}


def _chat_row(rec: dict, number: int, filename: str) -> dict | None:
    _, messages = _field(rec, ("messages",))
    if isinstance(messages, str):  # a CSV cell holding JSON
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            raise DataError(f"{filename}, row {number}: 'messages' is not a JSON list.") from None
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{filename}, row {number}: 'messages' must be a non-empty list of "
                        "{{\"role\", \"content\"}} objects.")
    clean = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise DataError(f"{filename}, row {number}: each message needs a role (system, user or assistant) "
                            "and a content.")
        clean.append({"role": m["role"], "content": _text(m.get("content"), number, filename, "message")})
    if clean[-1]["role"] != "assistant":
        raise DataError(f"{filename}, row {number}: the last message must be the assistant's answer (it is what "
                        "the model learns).")
    if not clean[-1]["content"] or not any(m["role"] == "user" for m in clean[:-1]):
        return None
    return {"prompt": clean[:-1], "completion": clean[-1:]}


def _key_facts(rec: dict, number: int, filename: str) -> list[str]:
    facts = rec.get("key_facts") or []
    if isinstance(facts, str):
        facts = [facts]
    if not isinstance(facts, list) or not all(isinstance(f, str) and f.strip() for f in facts):
        raise DataError(f"{filename}, row {number}: key_facts must be a list of short texts.")
    return [f.strip() for f in facts]


# ---------------------------------------------------------------- checking answers

def _norm(text: str) -> str:
    import re

    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 4,300 -> 4300
    return " " + re.sub(r"[^a-z0-9']+", " ", text).strip() + " "


def fact_match(answer: str, key_facts: list[str]) -> bool:
    """True when every key fact appears in `answer` as whole words (case, punctuation and thousands
    separators ignored); a fact may list alternatives as 'a|b'. Without key facts, nothing matches."""
    if not key_facts:
        return False
    said = _norm(answer)
    return all(any(_norm(alt) in said for alt in fact.split("|") if alt.strip()) for fact in key_facts)


# ---------------------------------------------------------------- splitting, tokens, preview

def split(rows: list[dict], seed: int, fraction: float = EVAL_FRACTION) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows: shuffled with `seed`; eval gets `fraction` of them (at least 1 row when there
    are 10 or more, none below that, at most MAX_EVAL_ROWS)."""
    order = list(range(len(rows)))
    random.Random(int(seed)).shuffle(order)
    n_eval = 0 if len(rows) < 10 or fraction <= 0 else min(MAX_EVAL_ROWS, max(1, round(len(rows) * fraction)))
    eval_idx = set(order[:n_eval])
    train = [rows[i] for i in order if i not in eval_idx]
    return train, [rows[i] for i in sorted(eval_idx)]


def render(tokenizer, row: dict) -> tuple[str, str]:
    """(prompt text, completion text) as the model sees them, chat template applied."""
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        completion = full[len(prompt):] if full.startswith(prompt) else row["completion"][0]["content"]
        return prompt, completion
    # No template (a base model): the plain concatenation trl uses for such tokenizers.
    prompt = "\n".join(m["content"] for m in row["prompt"]) + "\n"
    return prompt, row["completion"][0]["content"] + (tokenizer.eos_token or "")


@dataclass
class TokenStats:
    lengths: list[int]  # prompt + completion tokens per row
    prompt_lengths: list[int]
    max_length: int

    @property
    def truncated(self) -> int:
        """Rows longer than max_length: their end is cut off."""
        return sum(1 for n in self.lengths if n > self.max_length)

    @property
    def dropped(self) -> int:
        """Rows whose prompt alone fills max_length: no answer token is left, trl drops them."""
        return sum(1 for n in self.prompt_lengths if n >= self.max_length)

    def histogram(self, bins: int = HIST_BINS) -> list[dict]:
        """[{"tokens": "lo-hi", "rows": n, "fits": "fits" | "truncated"}] for a bar chart."""
        if not self.lengths:
            return []
        top = max(max(self.lengths), self.max_length)
        width = max(1, math.ceil(top / bins))
        counts: dict[int, int] = {}
        for n in self.lengths:
            counts[n // width] = counts.get(n // width, 0) + 1
        out = []
        for b in range(top // width + 1):
            lo, hi = b * width, (b + 1) * width - 1
            where = "fits" if hi <= self.max_length else ("truncated" if lo > self.max_length else "some truncated")
            out.append({"tokens": f"{lo}-{hi}", "rows": counts.get(b, 0), "fits": where})
        return out

    def summary(self) -> dict:
        s = sorted(self.lengths)
        return {"rows": len(s), "min": s[0] if s else 0, "median": s[len(s) // 2] if s else 0,
                "max": s[-1] if s else 0, "mean": round(sum(s) / len(s), 1) if s else 0,
                "max_length": self.max_length, "truncated": self.truncated, "dropped": self.dropped}


def token_stats(tokenizer, rows: list[dict], max_length: int) -> TokenStats:
    lengths, prompt_lengths = [], []
    for row in rows:
        prompt, completion = render(tokenizer, row)
        p = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        c = len(tokenizer(completion, add_special_tokens=False)["input_ids"])
        lengths.append(p + c)
        prompt_lengths.append(p)
    return TokenStats(lengths, prompt_lengths, int(max_length))


def preview(tokenizer, rows: list[dict], n: int = PREVIEW_ROWS) -> list[dict]:
    """The first rows as the model sees them: prompt and completion text after the chat template."""
    out = []
    for row in rows[:n]:
        prompt, completion = render(tokenizer, row)
        out.append({"prompt": prompt, "completion": completion})
    return out
