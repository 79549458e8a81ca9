"""LoRA trainer benchmark: the lab's run (shared job, callbacks, live metrics, eval, adapter + card) vs a
plain trl SFTTrainer + peft script of the same configuration, side by side in one invocation, each in a
fresh process so its peak RSS is its own; the pre-training memory estimate vs the measured peak; and a
30-step run on the "new knowledge" set with the held-back questions before/after.

    python bench/lora_trainer.py              # full run (about 10 minutes on an idle 2-core machine)
    python bench/lora_trainer.py --steps 4    # quicker, fewer timed steps

SmolLM2-135M-Instruct (embedded), batch 4, every row 128 tokens (long rows built from the Orvenne answers
and truncated at max_length 128), r=8. Seconds per step are the mean of steps 2..N (step 1 pays warm-up)."""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "spaces" / "lora_trainer"
RESULTS = ROOT / "bench" / "results" / "lora_trainer.md"
TARGETS = {"qv": ["q_proj", "v_proj"], "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"]}


def long_rows_file(folder: Path) -> Path:
    """JSONL rows of at least 128 tokens: each answer is four Orvenne answers joined."""
    sys.path.insert(0, str(LAB))
    import lora_data

    rows = lora_data.load("orvenne").rows
    path = folder / "long_rows.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i, row in enumerate(rows):
            answer = " ".join(rows[(i + k) % len(rows)]["completion"][0]["content"] for k in range(5))
            handle.write(json.dumps({"instruction": row["prompt"][-1]["content"], "response": answer}) + "\n")
    return path


# ---------------------------------------------------------------- one measured run (in a child process)

def child(mode: str, targets: str, steps: int, dataset: str, extra: dict) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    sys.path.insert(0, str(LAB))
    from shared import jobs
    from shared.memory import process_rss

    cfg = {"r": extra.get("r", 8), "alpha": 2 * extra.get("r", 8), "dropout": 0.05, "target_modules": TARGETS[targets],
           "learning_rate": extra.get("lr", 5e-4), "max_steps": steps, "batch_size": 4, "max_length": 128, "seed": 0}
    if mode == "lab":
        import lora_train

        p = lora_train.prepare(dataset, cfg)
        job = jobs.run_now(lambda j: lora_train.run(j, p), key="train", kind="lora")
        if job.state != jobs.DONE:
            raise SystemExit(f"lab run failed: {job.error}")
        r = job.result
        out = {"s_per_step": r["s_per_step"], "estimated_peak_bytes": r["estimated_peak_bytes"],
               "train_loss": r["train_loss"], "run_id": job.id, "eval_before": r["eval_loss_before"],
               "eval_after": r["eval_loss_after"], "estimate": r["estimate"], "train_seconds": r["train_seconds"]}
        if extra.get("heldout"):
            import lora_compare

            t = time.perf_counter()
            check = lora_compare.heldout_check(job.id)
            out["heldout"] = {k: check[k] for k in ("questions", "base_correct", "adapter_correct", "changed")}
            out["heldout_rows"] = [{k: row[k] for k in ("question", "base", "adapter", "base_ok", "adapter_ok")}
                                   for row in check["rows"]]
            out["heldout_seconds"] = round(time.perf_counter() - t, 1)
    else:  # the plain script a tutorial would write
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
        from trl import SFTConfig, SFTTrainer

        import lora_data
        from shared import embedded

        folder = embedded.smollm2_folder()
        rows = lora_data.load(dataset).rows
        train_rows, _ = lora_data.split(rows, 0)
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        times = []

        class Clock(TrainerCallback):  # the same per-step clock as the lab's
            def on_step_begin(self, *a, **k):
                self.t = time.perf_counter()

            def on_step_end(self, *a, **k):
                times.append(time.perf_counter() - self.t)

        args = SFTConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, gradient_checkpointing=False,
                         max_length=128, per_device_train_batch_size=4, max_steps=steps, learning_rate=cfg["learning_rate"],
                         logging_steps=1, save_strategy="no", report_to=[], seed=0, disable_tqdm=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_rows), processing_class=tok,
                             peft_config=LoraConfig(r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=0.05,
                                                    target_modules=cfg["target_modules"], task_type="CAUSAL_LM"),
                             callbacks=[Clock()])
        trainer.train()
        rest = times[1:] if len(times) > 2 else times
        out = {"s_per_step": sum(rest) / len(rest)}
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["rss_end"] = process_rss()
    return out


def run_child(mode, targets, steps, dataset, extra=None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--targets", targets, "--steps", str(steps), "--dataset",
           dataset, "--extra", json.dumps(extra or {})]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    if done.returncode != 0:
        raise SystemExit(f"{mode}/{targets} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["wall_seconds"] = round(time.perf_counter() - t, 1)
    print(f"  {mode:5s} {targets:3s}: {out['s_per_step']:.3f} s/step, peak RSS {out['peak_rss_bytes'] / 1e9:.2f} GB"
          + (f", estimate {out['estimated_peak_bytes'] / 1e9:.2f} GB" if "estimated_peak_bytes" in out else ""),
          flush=True)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--targets", default="qv")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--dataset", default="")
    parser.add_argument("--extra", default="{}")
    parser.add_argument("--knowledge-steps", type=int, default=30)
    parser.add_argument("--parallel", action="store_true",
                        help="run the 30-step knowledge run alongside the speed runs (saves time; inflates both)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.targets, args.steps, args.dataset, json.loads(args.extra))))
        return
    os.environ.setdefault("GENAI_LAB_DATA", tempfile.mkdtemp(prefix="lora-bench-"))
    folder = Path(tempfile.mkdtemp(prefix="lora-bench-rows-"))
    rows = str(long_rows_file(folder))
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.1f}", flush=True)
    knowledge = ("lab", "all", args.knowledge_steps, "orvenne", {"heldout": True, "r": 16, "lr": 1e-3})
    pool = None
    if args.parallel:  # a busy shared machine: the knowledge run alongside the (alternating) speed runs
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1)
        know_future = pool.submit(run_child, *knowledge)
    speed = {}
    for targets in ("qv", "all"):
        for mode in ("lab", "plain"):
            speed[(mode, targets)] = run_child(mode, targets, args.steps, rows)
    print("30-step run on the new-knowledge set:", flush=True)
    know = know_future.result() if pool else run_child(*knowledge)
    load_end = os.getloadavg()
    write_results(speed, know, args, started, load, load_end)
    if pool:
        pool.shutdown()


def write_results(speed, know, args, started, load, load_end):
    gb = 1e9
    lines = [
        "# LoRA trainer benchmark", "",
        f"Run {started} with `python bench/lora_trainer.py --steps {args.steps}` on the project machine (2 CPU cores, "
        f"no GPU), load average {load[0]:.1f} at start and {load_end[0]:.1f} at the end, on 2 cores (other jobs "
        "inflate absolute seconds; the lab/plain ratio, measured in one invocation, is the comparable figure). Each run is a fresh process "
        "(peak RSS = its ru_maxrss)." + (" The 30-step knowledge run ran alongside the speed runs (`--parallel`)."
                                          if args.parallel else ""), "",
        "SmolLM2-135M-Instruct (embedded, fp32), batch 4, every row 128 tokens, LoRA r=8 alpha 16, "
        f"{args.steps} steps, seconds per step = mean of steps 2..N (the same per-step clock in both).", "",
        "| targets | lab s/step | plain trl+peft s/step | lab / plain | lab peak RSS | plain peak RSS | lab estimate | "
        "estimate / measured |", "|---|---|---|---|---|---|---|---|"]
    for targets, label in (("qv", "q,v"), ("all", "all linear")):
        lab, plain = speed[("lab", targets)], speed[("plain", targets)]
        lines.append(f"| {label} | {lab['s_per_step']:.2f} | {plain['s_per_step']:.2f} | "
                     f"{lab['s_per_step'] / plain['s_per_step']:.3f} | {lab['peak_rss_bytes'] / gb:.2f} GB | "
                     f"{plain['peak_rss_bytes'] / gb:.2f} GB | {lab['estimated_peak_bytes'] / gb:.2f} GB | "
                     f"{lab['estimated_peak_bytes'] / lab['peak_rss_bytes']:.2f} |")
    est = speed[("lab", "qv")]["estimate"]
    lines += ["", "The estimate's parts (q,v): " + ", ".join(f"{p['part']} {p['bytes'] / gb:.3f} GB" for p in est) + ".",
              "The lab's peak includes what the plain script does not do: the eval passes before/after and every "
              "fifth step, the adapter and model card written to disk.", ""]
    h = know["heldout"]
    lines += ["## 30-step run on the new-knowledge set (Orvenne)", "",
              f"All linear layers, r=16, lr 1e-3, batch 4, {args.knowledge_steps} steps: trained in "
              f"{know['train_seconds']:.0f} s ({know['s_per_step']:.2f} s/step, whole process {know['wall_seconds']:.0f} s "
              f"including model load, evals and the held-back check); eval loss {know['eval_before']:.3f} → "
              f"{know['eval_after']:.3f}.", "",
              f"Held-back questions (never trained on, facts asked in new words) answered correctly: base "
              f"**{h['base_correct']}/{h['questions']}**, adapter **{h['adapter_correct']}/{h['questions']}**; "
              f"{h['changed']} of {h['questions']} answers changed.", "",
              "| question | base | adapter |", "|---|---|---|"]
    for row in know["heldout_rows"]:
        def cell(text, ok):
            return ("✓ " if ok else "✗ ") + text.replace("|", "/").replace("\n", " ")[:90]
        lines.append(f"| {row['question']} | {cell(row['base'], row['base_ok'])} | {cell(row['adapter'], row['adapter_ok'])} |")
    lines += ["", "Reproduce: `python bench/lora_trainer.py` (add `--steps 4` for a quicker check)."]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
