"""shared/store.py: the data folder, atomic files and folders, SQLite in WAL mode that keeps every
acknowledged row through a SIGKILL, clear messages for corrupt and read-only databases, Hub pushes."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from shared import store
from shared.errors import UserError

SCHEMA = "CREATE TABLE IF NOT EXISTS labels(id INTEGER PRIMARY KEY, who TEXT NOT NULL, choice TEXT NOT NULL);"


def test_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path / "data"))
    assert store.data_dir("lab", "runs") == tmp_path / "data" / "lab" / "runs"
    assert (tmp_path / "data" / "lab" / "runs").is_dir()
    monkeypatch.delenv("GENAI_LAB_DATA")
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store.data_dir() == tmp_path / "home" / ".cache" / "genai-lab" / "data"


def test_data_dir_that_cannot_be_made_says_so(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path / "file"))
    with pytest.raises(store.StoreError, match="Set GENAI_LAB_DATA"):
        store.data_dir("lab")


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = store.atomic_write(tmp_path / "a" / "labels.jsonl", "one\n")
    store.atomic_write(path, b"two\n")
    assert path.read_text() == "two\n" and os.listdir(path.parent) == ["labels.jsonl"]


def test_atomic_folder_keeps_the_old_one_when_writing_fails(tmp_path):
    target = tmp_path / "adapter"
    with store.atomic_folder(target) as folder:
        (folder / "weights.bin").write_bytes(b"v1")
    with pytest.raises(RuntimeError):
        with store.atomic_folder(target) as folder:
            (folder / "weights.bin").write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert (target / "weights.bin").read_bytes() == b"v1"
    assert sorted(os.listdir(tmp_path)) == ["adapter"]  # no partial folder left behind
    with store.atomic_folder(target) as folder:
        (folder / "weights.bin").write_bytes(b"v2")
    assert (target / "weights.bin").read_bytes() == b"v2" and sorted(os.listdir(tmp_path)) == ["adapter"]


def test_database_is_wal_and_all_or_nothing(tmp_path):
    db = store.Database(tmp_path / "labels.db", SCHEMA)
    assert db.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
    db.write("INSERT INTO labels(who, choice) VALUES (?, ?)", ("ann", "a"))
    with pytest.raises(store.StoreError, match="nothing was saved"):
        db.write_many([("INSERT INTO labels(who, choice) VALUES (?, ?)", ("bob", "b")),
                       ("INSERT INTO labels(who, choice) VALUES (?, ?)", ("bob", None))])  # NOT NULL fails
    assert [r["who"] for r in db.query("SELECT who FROM labels")] == ["ann"]
    hostile = "x'); DROP TABLE labels; --<script>"
    db.write("INSERT INTO labels(who, choice) VALUES (?, ?)", (hostile, "b"))
    assert db.query("SELECT who FROM labels WHERE choice = 'b'")[0]["who"] == hostile


def test_corrupt_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "labels.db"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(store.StoreError, match="left untouched"):
        store.Database(path, SCHEMA)
    assert path.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_read_only_database_says_nothing_was_saved(tmp_path):
    db = store.Database(tmp_path / "labels.db", SCHEMA)
    db.close()
    os.chmod(tmp_path / "labels.db", 0o444)
    with pytest.raises(store.StoreError):
        store.Database(tmp_path / "labels.db", SCHEMA).write("INSERT INTO labels(who, choice) VALUES ('a', 'b')")


def test_read_only_connection_says_nothing_was_saved(tmp_path):
    db = store.Database(tmp_path / "labels.db", SCHEMA)
    db.connect().execute("PRAGMA query_only = ON")  # what a read-only file looks like to SQLite, even as root
    with pytest.raises(store.StoreError, match="read-only; nothing was saved"):
        db.write("INSERT INTO labels(who, choice) VALUES ('a', 'b')")


def test_every_acknowledged_row_survives_sigkill(tmp_path):
    """A writer prints each id after write() returns; we SIGKILL it mid-stream and count the rows."""
    script = textwrap.dedent(f"""
        import sys, threading
        from shared import store
        db = store.Database(sys.argv[1], {SCHEMA!r})
        out = threading.Lock()
        def writer(k):
            for i in range(100000):
                row = db.write("INSERT INTO labels(who, choice) VALUES (?, ?)", (f"w{{k}}", str(i)))
                with out:  # one whole line per acknowledgement
                    sys.stdout.write(f"{{row}}\\n")
                    sys.stdout.flush()
        for k in range(4):
            threading.Thread(target=writer, args=(k,), daemon=True).start()
        threading.Event().wait()
    """)
    path = tmp_path / "labels.db"
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL)  # its threads die of a broken pipe once we stop reading
    acked = []
    for line in proc.stdout:
        if not line.strip():
            continue
        acked.append(int(line))
        if len(acked) >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    ids = {r["id"] for r in store.Database(path, SCHEMA).query("SELECT id FROM labels")}
    assert len(acked) >= 300 and set(acked) <= ids


def test_push_needs_a_token_and_a_valid_repo(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "hub_token", lambda: None)
    with pytest.raises(UserError, match="hf auth login"):
        store.push_folder(tmp_path, "me/adapter")
    monkeypatch.setattr(store, "hub_token", lambda: "hf_x")
    with pytest.raises(UserError, match="not a Hub repo id"):
        store.push_folder(tmp_path, "../../etc")


def test_push_uploads_through_huggingface_hub(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class Recorder:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw["repo_type"], kw["private"]))

        def upload_folder(self, **kw):
            calls.append(("upload", kw["repo_id"], kw["folder_path"]))

    monkeypatch.setattr(store, "hub_token", lambda: "hf_secret")
    monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
    url = store.push_folder(tmp_path, "me/labels", repo_type="dataset")
    assert url == "https://huggingface.co/datasets/me/labels"
    assert calls == [("token", "hf_secret"), ("create", "me/labels", "dataset", True),
                     ("upload", "me/labels", str(tmp_path))]
