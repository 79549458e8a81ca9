"""The LoRA trainer's "Scale out" export really runs: `accelerate launch` of the exported trl script
trains the embedded SmolLM2-135M-Instruct for 2 steps on the CPU and writes an adapter."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "lora_trainer"))


def test_exported_accelerate_script_trains_two_steps_on_cpu(tmp_path):
    import lora_export

    from shared import embedded

    model = str(embedded.smollm2_folder())
    zipped = lora_export.export("orvenne", {"max_steps": 30, "batch_size": 2, "max_length": 64, "r": 4},
                                model_id=model, gpus=8, out=tmp_path)
    folder = tmp_path / "run"
    zipfile.ZipFile(zipped).extractall(folder)
    accelerate = Path(sys.executable).with_name("accelerate")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # The shipped command targets 8 GPUs; on this CPU the same script and config run with one process, 2 steps.
    cmd = [str(accelerate), "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "train.py", "--config", "sft_config.yaml", "--use_cpu", "true", "--bf16", "false",
           "--dtype", "float32", "--max_steps", "2", "--eval_strategy", "no", "--gradient_checkpointing", "false"]
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    adapter = folder / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and set(config["target_modules"]) == {"q_proj", "v_proj"}
    assert "'train_loss'" in done.stdout + done.stderr or "train_loss" in done.stdout + done.stderr
