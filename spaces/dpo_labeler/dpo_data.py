"""The lab's data: shipped prompts and the seed preference set (assets/dpo_prompts/), uploaded
prompt files, and the labels turned into a TRL-ready preference dataset (prompt / chosen /
rejected, conversational) written as JSONL and Parquet."""
from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from shared.errors import UserError
from shared.paths import ASSETS
from shared.store import atomic_folder, data_dir, push_folder

# ---------------------------------------------------------------- limits
MAX_UPLOAD_BYTES = 2_000_000
MAX_UPLOAD_PROMPTS = 1000
PROMPTS_FILE = ASSETS / "dpo_prompts" / "prompts.jsonl"
SEED_FILE = ASSETS / "dpo_prompts" / "seed.jsonl"
MIN_TRAIN_PAIRS = 4


class DataError(UserError):
    pass


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def shipped_prompts() -> list[dict]:
    """The shipped questions (chatterbot-corpus 1.3.3, BSD-3): {"id", "category", "prompt", "answer"}."""
    from shared.loading import once

    return once(("dpo_prompts", str(PROMPTS_FILE)), lambda: _jsonl(PROMPTS_FILE))


def seed_pairs(split: str | None = None) -> list[dict]:
    """The seed preference set: {"id", "split" (train | heldout), "prompt", "chosen", "rejected", ...}."""
    from shared.loading import once

    rows = once(("dpo_seed", str(SEED_FILE)), lambda: _jsonl(SEED_FILE))
    return [r for r in rows if split is None or r["split"] == split]


def conversational(prompt: str, chosen: str, rejected: str) -> dict:
    """One TRL preference row in the conversational format."""
    return {"prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def seed_rows(split: str = "train") -> list[dict]:
    return [conversational(r["prompt"], r["chosen"], r["rejected"]) for r in seed_pairs(split)]


# ---------------------------------------------------------------- uploads

def parse_prompt_file(path: str | Path) -> list[str]:
    """Prompts from an uploaded .txt (one per line), .jsonl/.json (strings or objects with "prompt") or
    .csv (a "prompt" column). Raises DataError with what is wrong."""
    from dpo_generate import MAX_PROMPT_CHARS

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"Cannot read the uploaded file: {exc.strerror or exc}.") from exc
    if size == 0:
        raise DataError(f"{path.name} is empty.")
    if size > MAX_UPLOAD_BYTES:
        raise DataError(f"{path.name} is {size / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB.")
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path.name} is not a text file (prompts: .txt, .jsonl, .json or .csv).")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path.name} is not valid JSON ({exc.msg}, line {exc.lineno}).") from exc
        if isinstance(data, dict) and isinstance(data.get("prompts"), list):
            data = data["prompts"]
        if not isinstance(data, list):
            raise DataError(f"{path.name}: expected a JSON list of prompts (strings or objects with \"prompt\").")
        items = data
    elif suffix == ".jsonl":
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path.name} line {n} is not JSON ({exc.msg}).") from exc
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "prompt" not in fields:
            raise DataError(f"{path.name}: the CSV needs a 'prompt' column (found: {', '.join(fields[:8]) or 'none'}).")
        key = (reader.fieldnames or [])[fields.index("prompt")]
        items = [row.get(key) or "" for row in reader]
    elif suffix in (".txt", ".md", ""):
        items = text.splitlines()
    else:
        raise DataError(f"{path.name}: upload prompts as .txt (one per line), .jsonl, .json or .csv.")
    prompts = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("prompt")
            if isinstance(item, list):  # conversational: the first user message
                item = next((m.get("content") for m in item if isinstance(m, dict) and m.get("role") == "user"), None)
        if not isinstance(item, str):
            raise DataError(f"{path.name}: every entry must be a prompt string or an object with a \"prompt\" string.")
        item = item.strip()
        if item and len(item) <= MAX_PROMPT_CHARS:
            prompts.append(item)
    if not prompts:
        raise DataError(f"{path.name} has no usable prompts (empty lines and prompts over "
                        f"{MAX_PROMPT_CHARS:,} characters are left out).")
    if len(prompts) > MAX_UPLOAD_PROMPTS:
        raise DataError(f"{path.name} has {len(prompts):,} prompts; at most {MAX_UPLOAD_PROMPTS:,} per upload.")
    return list(dict.fromkeys(prompts))


# ---------------------------------------------------------------- labels -> dataset

def preferences(labels: list[dict], pairs: dict[str, dict]) -> tuple[list[dict], dict]:
    """One preference per pair: the choice most annotators made, kept when it is uniquely 'a' or 'b'
    (ties, 'both bad' and split votes give no chosen/rejected). Returns (rows, counts of what was left out)."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for label in labels:
        votes[label["pair_id"]][label["choice"]] += 1
    rows, left_out = [], Counter()
    for pair_id, count in votes.items():
        pair = pairs.get(pair_id)
        if pair is None:
            continue
        top = count.most_common()
        if len(top) > 1 and top[0][1] == top[1][1]:
            left_out["split vote"] += 1
            continue
        winner = top[0][0]
        if winner not in ("a", "b"):
            left_out[winner] += 1
            continue
        chosen, rejected = (pair["text_a"], pair["text_b"]) if winner == "a" else (pair["text_b"], pair["text_a"])
        rows.append({"pair_id": pair_id, "prompt": pair["prompt"], "chosen": chosen, "rejected": rejected,
                     "votes": dict(count)})
    return rows, dict(left_out)


def trl_rows(prefs: list[dict]) -> list[dict]:
    return [conversational(p["prompt"], p["chosen"], p["rejected"]) for p in prefs]


def parquet_bytes(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema([("prompt", message), ("chosen", message), ("rejected", message)])
    table = pa.Table.from_pylist(rows, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def export(rows: list[dict], left_out: dict, labels: int, annotators: int, folder: Path | None = None) -> Path:
    """Write train.jsonl, train.parquet and a README card into a new export folder (whole or not at all);
    returns the JSONL's path."""
    if not rows:
        raise DataError("Nothing to export yet: no pair has a majority for A or B (ties and 'both bad' are left out).")
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
    folder = folder or data_dir("dpo_labeler", "exports") / stamp
    with atomic_folder(folder) as tmp:
        (tmp / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
        (tmp / "train.parquet").write_bytes(parquet_bytes(rows))
        left = ", ".join(f"{k}: {v}" for k, v in sorted(left_out.items())) or "none"
        (tmp / "README.md").write_text(
            "---\nlicense: other\ntask_categories: [text-generation]\ntags: [dpo, preference, trl]\n---\n\n"
            "# Preference pairs from the GenAI Lab Playground DPO labeler\n\n"
            f"{len(rows)} prompt/chosen/rejected rows (TRL conversational format) from {labels} labels by "
            f"{annotators} annotator(s). One row per pair: the choice most annotators made; pairs without a "
            f"majority for A or B were left out ({left}).\n\n"
            "```python\nfrom datasets import load_dataset\nds = load_dataset('json', data_files='train.jsonl')\n"
            "# trl.DPOTrainer(..., train_dataset=ds['train'])\n```\n", "utf-8")
    return folder / "train.jsonl"


def push(folder: Path, repo_id: str) -> str:
    """Push an export folder as a Hub dataset (token from `hf auth login` or HF_TOKEN only)."""
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise DataError("Give a dataset repo id like 'your-name/my-preferences'.")
    return push_folder(folder, repo_id.strip(), repo_type="dataset")
