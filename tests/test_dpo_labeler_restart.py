"""Kill and restart: the lab server runs in a subprocess, 8 threads send labels through the API, the
server is SIGKILLed in the middle of the load and restarted on the same GENAI_LAB_DATA; every label
that was acknowledged is in the database, none twice."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "dpo_labeler"))

S = {"temperature": 0.7, "top_p": 0.9, "top_k": 0, "max_new_tokens": 48}
THREADS, PER_THREAD, KILL_AFTER = 8, 25, 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(data: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, GENAI_LAB_DATA=str(data), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, str(ROOT / "spaces" / "dpo_labeler" / "app.py"), "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the lab server exited at start-up")
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the lab server did not answer within 120 s")


def test_acknowledged_labels_survive_sigkill_and_restart(tmp_path):
    from gradio_client import Client

    from dpo_store import Store

    st = Store(tmp_path / "dpo_labeler")
    pids = [st.add_pair(f"Question {i}?", f"Answer A {i}", f"Answer B {i}", "fixture", S, S, 1) for i in range(10)]
    st.db.close()
    port = _free_port()
    server = _start(tmp_path, port)
    acked: list[int] = []
    lock = threading.Lock()
    killed = threading.Event()

    def annotate(k: int):
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for i in range(PER_THREAD):
            if killed.is_set():
                return
            try:
                out = client.predict(pids[(k + i) % len(pids)], "abt"[i % 3].replace("t", "tie"), f"annotator-{k}",
                                     api_name="/label")
            except Exception:  # noqa: BLE001  the server died under us: this label was never acknowledged
                return
            if out.get("ok"):
                with lock:
                    acked.append(out["label_id"])

    threads = [threading.Thread(target=annotate, args=(k,)) for k in range(THREADS)]
    try:
        [t.start() for t in threads]
        deadline = time.time() + 120
        while len(acked) < KILL_AFTER and time.time() < deadline and any(t.is_alive() for t in threads):
            time.sleep(0.01)
        os.killpg(server.pid, signal.SIGKILL)  # mid-load: other labels are in flight right now
        killed.set()
        server.wait(timeout=30)
        [t.join(timeout=60) for t in threads]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert len(acked) >= KILL_AFTER, f"only {len(acked)} labels acknowledged before the kill"
    restarted = _start(tmp_path, port)
    try:
        stats = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(api_name="/stats")
        stored = Store(tmp_path / "dpo_labeler").label_ids()
        assert set(acked) <= stored, f"lost {len(set(acked) - stored)} acknowledged labels"
        assert len(acked) == len(set(acked))
        assert stats["labels_stored"] == len(stored) >= len(acked)
        assert len(stored) <= THREADS * PER_THREAD  # nothing written twice
    finally:
        os.killpg(restarted.pid, signal.SIGKILL)
        restarted.wait(timeout=30)
