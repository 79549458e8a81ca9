"""shared.imports: the first import of transformers happens once, even when request threads race.

Before the guard, a page load of the quantization lab (model line, estimate) racing a Measure
click failed in a fresh process with "cannot import name 'BitsAndBytesConfig' from
'transformers'" (seen in the browser test run alone)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RACE = """
import sys, threading
sys.path[:0] = ["spaces/quantization_comparer"]
import shared.bootstrap
import quant_configs as qc, quant_estimate as qe, quant_measure as qm
barrier, errors = threading.Barrier(4), []
jobs = [lambda: qc.resolve_model(qc.SMOLLM2), lambda: qe.estimate(qc.resolve_model(qc.MINILM), 2048, 1),
        lambda: qm.load_kwargs("nf4", "cpu"), lambda: qc.resolve_model("gpt2")]
def run(job):
    barrier.wait()
    try:
        job()
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
[t.start() for t in threads]
[t.join() for t in threads]
print("errors:", errors)
"""


def test_first_uses_racing_in_a_fresh_process_all_succeed():
    # A fresh interpreter, so transformers is not imported yet (as in a just-started app).
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", RACE], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "errors: []" in done.stdout, done.stdout
