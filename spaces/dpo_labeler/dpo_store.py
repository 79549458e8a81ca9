"""The DPO labeler's records: prompts, generated pairs, labels, skips, blind votes and training runs,
in one SQLite file (WAL, synchronous=FULL) under the data folder. A label is acknowledged only
after its transaction is committed, so an acknowledged label survives a crash.

Every text is stored as given (parameters, never string-built SQL) and escaped only when shown."""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

from shared.errors import UserError
from shared.store import Database, data_dir

# ---------------------------------------------------------------- limits
CHOICES = ("a", "b", "tie", "both_bad")
MAX_ANNOTATOR_CHARS = 64
OVERLAP = 3  # a pair is offered to up to this many annotators, so agreement can be measured
DB_NAME = "labels.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    source TEXT NOT NULL,            -- shipped | upload | typed
    category TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0, -- 1 once a pair was made from it
    UNIQUE (text, source)
);
CREATE TABLE IF NOT EXISTS pairs (
    pair_id TEXT PRIMARY KEY,
    prompt TEXT NOT NULL,
    prompt_id INTEGER,
    text_a TEXT NOT NULL,
    text_b TEXT NOT NULL,
    model TEXT NOT NULL,
    setting_a TEXT NOT NULL,         -- JSON sampling settings that wrote A
    setting_b TEXT NOT NULL,
    a_is INTEGER NOT NULL,           -- 1 or 2: which of the two settings is shown as A (hidden from annotators)
    created REAL NOT NULL,
    created_by TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS labels (
    label_id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id TEXT NOT NULL REFERENCES pairs(pair_id),
    annotator TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
    created REAL NOT NULL,
    undone REAL                      -- set by undo; the row is kept
);
CREATE INDEX IF NOT EXISTS labels_pair ON labels (pair_id);
CREATE INDEX IF NOT EXISTS labels_annotator ON labels (annotator);
CREATE TABLE IF NOT EXISTS skips (
    annotator TEXT NOT NULL,
    pair_id TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (annotator, pair_id)
);
CREATE TABLE IF NOT EXISTS blind_votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    round_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    base_text TEXT NOT NULL,
    trained_text TEXT NOT NULL,
    left_is TEXT NOT NULL,           -- base | trained
    vote TEXT NOT NULL,              -- left | right | tie
    winner TEXT NOT NULL,            -- base | trained | tie
    annotator TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    config TEXT NOT NULL,
    result TEXT NOT NULL,
    adapter TEXT NOT NULL
);
CREATE VIEW IF NOT EXISTS label_rows AS
    SELECT l.label_id, l.annotator, l.choice, l.created, l.undone, p.pair_id, p.prompt, p.text_a, p.text_b,
           p.model, p.setting_a, p.setting_b, p.a_is
    FROM labels l JOIN pairs p ON p.pair_id = l.pair_id;
"""

# The newest label of each annotator on each pair, undone ones left out.
ACTIVE = """
    SELECT l.* FROM labels l
    JOIN (SELECT annotator, pair_id, max(label_id) AS last FROM labels WHERE undone IS NULL
          GROUP BY annotator, pair_id) m ON m.last = l.label_id
"""


class LabelError(UserError):
    pass


def check_annotator(name) -> str:
    if not isinstance(name, str):
        raise LabelError("The annotator name must be text.")
    text = " ".join(name.split())
    if not text:
        raise LabelError("Give your name first (any name; it tells your labels from other annotators').")
    if len(text) > MAX_ANNOTATOR_CHARS:
        raise LabelError(f"The annotator name has {len(text):,} characters; at most {MAX_ANNOTATOR_CHARS}, please.")
    if any(ord(c) < 32 for c in text):
        raise LabelError("The annotator name contains control characters.")
    return text


def check_choice(choice) -> str:
    value = str(choice).strip().lower() if isinstance(choice, str) else None
    if value not in CHOICES:
        shown = str(choice)[:40]
        raise LabelError(f"'{shown}' is not a choice: use one of {', '.join(CHOICES)}.")
    return value


def check_pair_id(pair_id) -> str:
    if not isinstance(pair_id, str) or not pair_id.strip():
        raise LabelError("No pair id given: ask for a pair with /pair first.")
    if len(pair_id) > 64:
        raise LabelError("That pair id is not one this lab made (too long).")
    return pair_id.strip()


class Store:
    """The lab's database: one per data folder, shared by every session (labels are meant to be pooled)."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder else data_dir("dpo_labeler")
        self.db = Database(self.folder / DB_NAME, SCHEMA)
        self._cursor_lock = threading.Lock()

    # ------------------------------------------------------------ prompts
    def add_prompts(self, texts: list[str], source: str, category: str = "") -> int:
        """Insert prompts not stored yet; returns how many were new."""
        before = self.db.query("SELECT count(*) AS n FROM prompts")[0]["n"]
        now = time.time()
        self.db.write_many([("INSERT OR IGNORE INTO prompts (text, source, category, added) VALUES (?, ?, ?, ?)",
                             (t, source, category, now)) for t in texts])
        return self.db.query("SELECT count(*) AS n FROM prompts")[0]["n"] - before

    def add_shipped(self, rows: list[dict]) -> None:
        if self.db.query("SELECT 1 FROM prompts WHERE source = 'shipped' LIMIT 1"):
            return
        now = time.time()
        self.db.write_many([("INSERT OR IGNORE INTO prompts (text, source, category, added) VALUES (?, 'shipped', ?, ?)",
                             (r["prompt"], r.get("category", ""), now)) for r in rows])

    def take_prompt(self) -> dict | None:
        """The next unused prompt (uploaded ones first, then shipped in order), marked used."""
        with self._cursor_lock:
            found = self.db.query("SELECT * FROM prompts WHERE used = 0 ORDER BY source = 'shipped', id LIMIT 1")
            if not found:
                return None
            self.db.write("UPDATE prompts SET used = 1 WHERE id = ?", (found[0]["id"],))
            return found[0]

    def prompts_left(self) -> dict:
        rows = self.db.query("SELECT source, count(*) AS n FROM prompts WHERE used = 0 GROUP BY source")
        return {r["source"]: r["n"] for r in rows}

    # ------------------------------------------------------------ pairs
    def add_pair(self, prompt: str, text_a: str, text_b: str, model: str, setting_a: dict, setting_b: dict,
                 a_is: int, prompt_id: int | None = None, created_by: str = "") -> str:
        pair_id = "p-" + uuid.uuid4().hex[:12]
        self.db.write("INSERT INTO pairs (pair_id, prompt, prompt_id, text_a, text_b, model, setting_a, setting_b, a_is,"
                      " created, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (pair_id, prompt, prompt_id, text_a, text_b, model, json.dumps(setting_a), json.dumps(setting_b),
                       int(a_is), time.time(), created_by))
        return pair_id

    def pair(self, pair_id: str) -> dict | None:
        found = self.db.query("SELECT * FROM pairs WHERE pair_id = ?", (pair_id,))
        return found[0] if found else None

    def pair_for(self, annotator: str) -> dict | None:
        """An existing pair another annotator labelled, that this one has neither labelled nor skipped and that
        has fewer than OVERLAP annotators: shared pairs are what agreement is measured on."""
        found = self.db.query(
            f"""SELECT p.*, count(DISTINCT a.annotator) AS n FROM pairs p JOIN ({ACTIVE}) a ON a.pair_id = p.pair_id
                WHERE p.pair_id NOT IN (SELECT pair_id FROM labels WHERE annotator = ?)
                  AND p.pair_id NOT IN (SELECT pair_id FROM skips WHERE annotator = ?)
                GROUP BY p.pair_id HAVING n < ? ORDER BY n DESC, p.created LIMIT 1""",
            (annotator, annotator, OVERLAP))
        if found:
            return found[0]
        # A pair nobody labelled yet (made for someone who then left), not skipped by this annotator.
        found = self.db.query(
            """SELECT p.* FROM pairs p WHERE p.pair_id NOT IN (SELECT pair_id FROM labels)
                 AND p.pair_id NOT IN (SELECT pair_id FROM skips WHERE annotator = ?)
                 AND p.created < ? ORDER BY p.created LIMIT 1""", (annotator, time.time() - 600))
        return found[0] if found else None

    # ------------------------------------------------------------ labels
    def label(self, pair_id, choice, annotator) -> int:
        """Store one label; returns its id once committed to disk."""
        pair_id, choice, annotator = check_pair_id(pair_id), check_choice(choice), check_annotator(annotator)
        if not self.db.query("SELECT 1 FROM pairs WHERE pair_id = ?", (pair_id,)):
            raise LabelError(f"Unknown pair id '{pair_id[:64]}': ask for a pair with /pair first.")
        return self.db.write("INSERT INTO labels (pair_id, annotator, choice, created) VALUES (?, ?, ?, ?)",
                             (pair_id, annotator, choice, time.time()))

    def undo(self, annotator) -> dict | None:
        """Mark the annotator's newest label undone (kept, never deleted); returns it, or None."""
        annotator = check_annotator(annotator)
        found = self.db.query("SELECT * FROM labels WHERE annotator = ? AND undone IS NULL ORDER BY label_id DESC "
                              "LIMIT 1", (annotator,))
        if not found:
            return None
        self.db.write("UPDATE labels SET undone = ? WHERE label_id = ?", (time.time(), found[0]["label_id"]))
        return found[0]

    def skip(self, pair_id, annotator) -> None:
        pair_id, annotator = check_pair_id(pair_id), check_annotator(annotator)
        self.db.write("INSERT OR REPLACE INTO skips (annotator, pair_id, created) VALUES (?, ?, ?)",
                      (annotator, pair_id, time.time()))

    def labels(self, active_only: bool = True) -> list[dict]:
        if active_only:
            return self.db.query(f"SELECT * FROM ({ACTIVE}) ORDER BY label_id")
        return self.db.query("SELECT * FROM labels ORDER BY label_id")

    def label_ids(self) -> set[int]:
        return {r["label_id"] for r in self.db.query("SELECT label_id FROM labels")}

    def pairs(self) -> list[dict]:
        return self.db.query("SELECT * FROM pairs ORDER BY created")

    def count(self, table: str) -> int:
        assert table in ("pairs", "labels", "skips", "prompts", "blind_votes", "runs")
        return self.db.query(f"SELECT count(*) AS n FROM {table}")[0]["n"]

    def skips(self) -> list[dict]:
        return self.db.query("SELECT * FROM skips")

    def done_by(self, annotator: str) -> int:
        return self.db.query(f"SELECT count(*) AS n FROM ({ACTIVE}) WHERE annotator = ?", (annotator,))[0]["n"]

    # ------------------------------------------------------------ blind votes, runs
    def add_vote(self, round_id: str, run_id: str, prompt: str, base_text: str, trained_text: str, left_is: str,
                 vote: str, annotator: str) -> int:
        if vote not in ("left", "right", "tie"):
            raise LabelError(f"'{str(vote)[:20]}' is not a vote: left, right or tie.")
        winner = "tie" if vote == "tie" else (left_is if vote == "left" else ("base" if left_is == "trained" else "trained"))
        return self.db.write("INSERT INTO blind_votes (round_id, run_id, prompt, base_text, trained_text, left_is, vote,"
                             " winner, annotator, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (round_id, run_id, prompt, base_text, trained_text, left_is, vote, winner, annotator,
                              time.time()))

    def votes(self, run_id: str | None = None) -> list[dict]:
        if run_id:
            return self.db.query("SELECT * FROM blind_votes WHERE run_id = ? ORDER BY id", (run_id,))
        return self.db.query("SELECT * FROM blind_votes ORDER BY id")

    def add_run(self, run_id: str, config: dict, result: dict, adapter: str) -> None:
        self.db.write("INSERT OR REPLACE INTO runs (run_id, created, config, result, adapter) VALUES (?, ?, ?, ?, ?)",
                      (run_id, time.time(), json.dumps(config), json.dumps(result), adapter))

    def runs(self) -> list[dict]:
        return self.db.query("SELECT * FROM runs ORDER BY created DESC")


def open_store(folder: str | Path | None = None) -> Store:
    """The store of this data folder, opened once per process (a corrupt file raises StoreError every
    time it is asked for, with the same clear message, and is never written to)."""
    from shared.loading import once

    folder = Path(folder) if folder else data_dir("dpo_labeler")
    return once(("dpo_store", str(folder.resolve())), lambda: Store(folder))
