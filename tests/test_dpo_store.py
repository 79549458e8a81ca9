"""DPO labeler store: labels committed and read back, undo keeps rows, overlap serving, bad input,
corrupt and read-only database files."""
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "dpo_labeler"))

import dpo_store  # noqa: E402
from dpo_store import LabelError, Store  # noqa: E402
from shared.store import StoreError  # noqa: E402

S = {"temperature": 0.7, "top_p": 0.9, "top_k": 0, "max_new_tokens": 48}


def _pair(st, prompt="What is AI?", a="Answer one", b="Answer two"):
    return st.add_pair(prompt, a, b, "tiny", S, S, 1)


def test_label_roundtrip_keeps_pair_model_and_settings(tmp_path):
    st = Store(tmp_path)
    pid = _pair(st)
    lid = st.label(pid, "a", "ann")
    row = st.db.query("SELECT * FROM label_rows WHERE label_id = ?", (lid,))[0]
    assert row["annotator"] == "ann" and row["choice"] == "a" and row["text_a"] == "Answer one"
    assert row["model"] == "tiny" and '"temperature": 0.7' in row["setting_a"]
    # a second process (a new connection) sees it: it is committed
    con = sqlite3.connect(tmp_path / dpo_store.DB_NAME)
    assert con.execute("SELECT count(*) FROM labels").fetchone()[0] == 1


def test_hostile_text_is_stored_verbatim(tmp_path):
    st = Store(tmp_path)
    evil = "x'); DROP TABLE labels; -- <script>alert(1)</script>"
    pid = st.add_pair(evil, evil, evil, "tiny", S, S, 2)
    st.label(pid, "tie", evil[:60])
    assert st.pair(pid)["prompt"] == evil
    assert st.labels()[0]["annotator"] == " ".join(evil[:60].split())
    assert st.count("labels") == 1


@pytest.mark.parametrize("pair_id, choice, annotator, words", [
    ("p-unknown", "a", "ann", "Unknown pair"),
    (None, "a", "ann", "No pair id"),
    ("PAIR", "c", "ann", "not a choice"),
    ("PAIR", None, "ann", "not a choice"),
    ("PAIR", "a", "", "Give your name"),
    ("PAIR", "a", "   ", "Give your name"),
    ("PAIR", "a", "x" * 10_000, "at most 64"),
    ("PAIR", "a", 42, "must be text"),
    ("PAIR", "a", "bad\x07name", "control"),
])
def test_bad_labels_are_refused_and_nothing_is_stored(tmp_path, pair_id, choice, annotator, words):
    st = Store(tmp_path)
    pid = _pair(st)
    with pytest.raises(LabelError, match=words):
        st.label(pid if pair_id == "PAIR" else pair_id, choice, annotator)
    assert st.count("labels") == 0


def test_undo_marks_the_newest_label_and_relabel_counts_once(tmp_path):
    st = Store(tmp_path)
    p1, p2 = _pair(st), _pair(st)
    st.label(p1, "a", "ann")
    st.label(p2, "b", "ann")
    undone = st.undo("ann")
    assert undone["pair_id"] == p2
    assert [l["pair_id"] for l in st.labels()] == [p1]
    assert st.count("labels") == 2  # kept, marked
    st.label(p1, "b", "ann")  # changed mind: the newest counts
    assert [(l["pair_id"], l["choice"]) for l in st.labels()] == [(p1, "b")]
    assert st.undo("nobody") is None


def test_pairs_labelled_by_others_are_offered_for_overlap(tmp_path):
    st = Store(tmp_path)
    p1, p2 = _pair(st), _pair(st)
    st.label(p1, "a", "u1")
    assert st.pair_for("u2")["pair_id"] == p1
    st.skip(p1, "u2")
    assert st.pair_for("u2") is None  # p2 is fresh (made < 10 minutes ago for someone else)
    for name in ("u3", "u4"):
        st.label(p1, "a", name)
    assert st.pair_for("u5") is None  # p1 has OVERLAP annotators already
    assert st.pair_for("u1") is None  # u1 labelled it


def test_prompts_uploaded_first_then_shipped_each_once(tmp_path):
    st = Store(tmp_path)
    st.add_shipped([{"prompt": "Shipped one", "category": "x"}, {"prompt": "Shipped two", "category": "x"}])
    st.add_shipped([{"prompt": "ignored: shipped set registered once", "category": "x"}])
    assert st.add_prompts(["Mine", "Mine"], "upload") == 1
    taken = [st.take_prompt()["text"] for _ in range(3)]
    assert taken == ["Mine", "Shipped one", "Shipped two"]
    assert st.take_prompt() is None


def test_concurrent_labels_all_stored_with_unique_ids(tmp_path):
    st = Store(tmp_path)
    pids = [_pair(st) for _ in range(5)]
    ids, errors = [], []

    def worker(k):
        try:
            for i in range(20):
                ids.append(st.label(pids[i % 5], "ab"[i % 2], f"ann{k}"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert len(ids) == len(set(ids)) == 160 and st.label_ids() == set(ids)


def test_corrupt_database_gives_a_clear_message_and_is_not_touched(tmp_path):
    path = tmp_path / dpo_store.DB_NAME
    garbage = b"this is not a database" * 200
    path.write_bytes(garbage)
    with pytest.raises(StoreError, match="cannot be used.*left untouched"):
        Store(tmp_path)
    assert path.read_bytes() == garbage
    assert not (tmp_path / (dpo_store.DB_NAME + "-wal")).exists()


def test_read_only_database_refuses_writes_clearly_and_keeps_rows(tmp_path):
    st = Store(tmp_path)
    pid = _pair(st)
    st.label(pid, "a", "ann")
    st.db.close()
    ro = Store(tmp_path)
    # root ignores file modes, so ask SQLite itself to refuse writes the way a read-only file does
    ro.db.connect().execute("PRAGMA query_only = ON")
    with pytest.raises(StoreError, match="read-only; nothing was saved"):
        ro.label(pid, "b", "ann")
    assert [l["choice"] for l in Store(tmp_path).labels()] == ["a"]
