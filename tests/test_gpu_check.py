"""scripts/gpu_check.py: on a machine without a GPU it says so and runs its small CPU subset, whose
checks (the explorer's greedy and beam search token for token against model.generate, the ZeroGPU
decorator) must pass; the table has a row per check."""
import subprocess
import sys

from conftest import ROOT


def test_quick_cpu_subset_passes_and_prints_the_table(tmp_path):
    out = tmp_path / "gpu_check.md"
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no GPU here" in proc.stdout
    table = out.read_text()
    assert "| lab | what ran | device | dtype | figure | CPU | result |" in table
    for needle in ("greedy: token for token vs model.generate", "beam: token for token vs model.generate",
                   "@gpu-decorated function"):
        assert needle in table
    assert "FAIL" not in table and table.count("| pass: ") >= 4
