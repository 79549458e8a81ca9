"""DPO labeler benchmark, three parts:

1. speed: the lab's DPO run (dpo_train.train through shared.jobs: the job callback, step timer and RSS
   sampler attached) against a plain trl DPOTrainer of the same config (SmolLM2-135M-Instruct, LoRA q,v
   r=8, batch 4, max_length 128), side by side, alternating, seconds per step and peak RSS;
2. quality: the seed set's held-back implicit-reward accuracy after a run of at most --budget seconds,
   for up to three configurations (variants), each a fresh LoRA;
3. load: N annotators labelling at once through the API of a lab server on 127.0.0.1 (a subprocess),
   M labels in all: every acknowledged label stored, none twice, label latency p50/p95/p99; through the plain
   JSON route (POST /api/label) and through gradio_client (/label), one after the other.

    python bench/dpo_labeler.py [--speed-steps 8] [--rounds 2] [--variants all] [--budget 180]
                                [--annotators 20] [--labels 1000] [--via json,gradio] [--only speed,quality,load]

Prints markdown tables (copy them into bench/results/dpo_labeler.md)."""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "dpo_labeler"))
import shared.bootstrap  # noqa: E402,F401

# Quality variants, recorded in bench/results/dpo_labeler.md whatever they give.
VARIANTS = {
    "v1 lr 5e-4, beta 0.1, r 8, 30 steps": dict(learning_rate=5e-4, beta=0.1, r=8, max_steps=30),
    "v2 lr 1e-3, beta 0.1, r 8, 30 steps": dict(learning_rate=1e-3, beta=0.1, r=8, max_steps=30),
    "v3 lr 1e-3, beta 0.5, r 16, 30 steps": dict(learning_rate=1e-3, beta=0.5, r=16, max_steps=30),
    # after one malloc arena per process (shared.bootstrap) made a step ~3.7 s instead of ~4.7 s: v2's settings
    # with the steps that now fit the same 3 minutes
    "v4 lr 1e-3, beta 0.1, r 8, 45 steps": dict(learning_rate=1e-3, beta=0.1, r=8, max_steps=45),
}


class PeakRSS:
    def __enter__(self):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()

        def loop():
            while not self._stop.is_set():
                self.peak = max(self.peak, self.proc.memory_info().rss)
                self._stop.wait(0.2)

        self._t = threading.Thread(target=loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def plain_trl(config, rows):
    """The baseline: what a user writes with trl alone (same DPOConfig and LoraConfig, no lab code in the loop)."""
    import dpo_train as dt
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOTrainer

    model, tokenizer, _ = dt.fresh_base()
    with tempfile.TemporaryDirectory() as tmp, PeakRSS() as rss:
        trainer = DPOTrainer(model=model, args=dt.dpo_config(config, tmp, use_cpu=True),
                             train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                             peft_config=dt.lora_config(config, model))
        trainer.remove_callback(PrinterCallback)
        out = trainer.train()
    return out.metrics["train_runtime"] / config.max_steps, rss.peak


def lab_run(config, rows, heldout):
    import dpo_train as dt
    from shared import jobs

    with tempfile.TemporaryDirectory() as tmp:
        job = jobs.run_now(lambda j: dt.train(j, config, rows, heldout, adapter_root=Path(tmp)), key="bench",
                           kind="dpo")
    if job.state != jobs.DONE:
        raise RuntimeError(job.error or job.message)
    return job.result


def speed_child(which: str, steps: int) -> None:
    """One speed run in this (fresh) process; prints its figures as the last line, in JSON."""
    import dpo_data
    import dpo_train as dt

    config = dt.TrainConfig(max_steps=steps)
    rows, heldout = dpo_data.seed_rows("train"), dpo_data.seed_rows("heldout")[:8]
    if which == "lab":
        res = lab_run(config, rows, heldout)
        out = {"s_per_step": res["train_seconds"] / res["steps"], "peak_rss": res["peak_rss_bytes"]}
    else:
        s, peak = plain_trl(config, rows)
        out = {"s_per_step": s, "peak_rss": peak}
    print(json.dumps(out), flush=True)


def bench_speed(steps: int, rounds: int, threads: int):
    """Each run in its own process, as each runs for real: a user's plain script in its main thread, the lab's
    run in a shared.jobs thread of the server. (In one process, once the main thread has run torch ops, a
    second thread's OpenMP team makes the other slower on 2 cores: the lab measured 1.1-1.2x plain that way.)"""
    lab, plain, lab_rss, plain_rss = [], [], [], []
    for r in range(rounds):
        order = ("lab", "plain") if r % 2 == 0 else ("plain", "lab")
        for which in order:
            done = subprocess.run([sys.executable, __file__, "--speed-child", which, "--speed-steps", str(steps),
                                   "--threads", str(threads)], capture_output=True, text=True, timeout=1800)
            if done.returncode:
                raise RuntimeError(f"{which} run failed:\n{done.stderr[-2000:]}")
            res = json.loads(done.stdout.strip().splitlines()[-1])
            (lab if which == "lab" else plain).append(res["s_per_step"])
            (lab_rss if which == "lab" else plain_rss).append(res["peak_rss"])
            print(f"  round {r + 1} {which}: {res['s_per_step']:.2f} s/step", flush=True)
    ml, mp = statistics.median(lab), statistics.median(plain)
    print(f"\n| run ({steps} steps x {rounds} rounds, each in its own process, median) | s/step | peak RSS (GB) |\n|---|---|---|")
    print(f"| plain trl DPOTrainer + LoRA (main thread) | {mp:.2f} | {max(plain_rss) / 2**30:.2f} |")
    print(f"| the lab (a shared.jobs thread: job callback, step timer, RSS sampler) | {ml:.2f} | {max(lab_rss) / 2**30:.2f} |")
    print(f"| ratio lab / plain | **{ml / mp:.3f}x** | |")
    print(f"all rounds: lab {[round(x, 2) for x in lab]}, plain {[round(x, 2) for x in plain]}")


def bench_quality(names: list[str], budget: float):
    import dpo_data
    import dpo_train as dt

    rows, heldout = dpo_data.seed_rows("train"), dpo_data.seed_rows("heldout")
    print(f"\n| variant | steps | train s | s/step | held-back acc before -> after | margin after | "
          f"within {budget:.0f} s |\n|---|---|---|---|---|---|---|")
    for name in names:
        config = dt.TrainConfig(**VARIANTS[name])
        res = lab_run(config, rows, heldout)
        ok = "yes" if res["train_seconds"] <= budget else "no"
        print(f"| {name} | {res['steps']} | {res['train_seconds']:.0f} | {res['s_per_step']:.2f} | "
              f"{res['heldout_accuracy_before']:.2f} -> **{res['heldout_accuracy_after']:.3f}** | "
              f"{res['heldout_margin_after']:.2f} | {ok} |", flush=True)
        print(f"    losses {[round(x, 3) for x in res['loss']][::5]} margins {[round(x, 2) for x in res['margins']][::5]}; "
              f"base model already prefers chosen on {res['heldout_base_prefers_chosen']:.2f}", flush=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gradio_labeler(port):
    """One annotator's /label through gradio_client (gradio's queue-less HTTP call, then its event stream)."""
    from gradio_client import Client

    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    return lambda pid, choice, who: client.predict(pid, choice, who, api_name="/label")


def _json_labeler(port):
    """One annotator's POST /api/label on a kept-alive connection (the plain JSON route beside gradio's)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def label(pid, choice, who):
        conn.request("POST", "/api/label", json.dumps({"pair_id": pid, "choice": choice, "annotator": who}),
                     {"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())
    return label


CLIENTS = {"json": (_json_labeler, "POST /api/label, kept-alive http.client"),
           "gradio": (_gradio_labeler, "gradio_client /label")}


def bench_load(annotators: int, labels: int, via: str, pairs: int = 50):
    from dpo_store import Store

    S = {"temperature": 0.7, "top_p": 0.9, "top_k": 0, "max_new_tokens": 48}
    connect, how = CLIENTS[via]
    with tempfile.TemporaryDirectory() as data:
        st = Store(Path(data) / "dpo_labeler")
        pids = [st.add_pair(f"Bench question {i}?", f"Answer A {i}", f"Answer B {i}", "bench", S, S, 1)
                for i in range(pairs)]
        st.db.close()
        port = _free_port()
        env = dict(os.environ, GENAI_LAB_DATA=data)
        server = subprocess.Popen([sys.executable, str(ROOT / "spaces" / "dpo_labeler" / "app.py"), "--port", str(port)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/api/stats", b"{}",
                                                                  {"Content-Type": "application/json"}), timeout=2)
                    break
                except OSError:
                    time.sleep(0.2)
            per = labels // annotators
            latencies, acked, errors = [], [], []
            lock = threading.Lock()
            barrier = threading.Barrier(annotators)

            def annotate(k):
                label = connect(port)
                barrier.wait()
                for i in range(per):
                    t0 = time.perf_counter()
                    out = label(pids[(k * 7 + i) % pairs], ("a", "b", "tie", "both_bad")[(k + i) % 4], f"annotator-{k:02d}")
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        (acked if out.get("ok") else errors).append(out.get("label_id", out))

            t0 = time.perf_counter()
            threads = [threading.Thread(target=annotate, args=(k,)) for k in range(annotators)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            wall = time.perf_counter() - t0
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        stored = Store(Path(data) / "dpo_labeler").label_ids()
        q = statistics.quantiles(latencies, n=100)
        print(f"\n| {annotators} annotators x {per} labels, {how} | value |\n|---|---|")
        print(f"| labels acknowledged / stored / distinct ids | {len(acked)} / {len(stored)} / {len(set(acked))} |")
        print(f"| all acknowledged stored, none twice | {set(acked) <= stored and len(stored) == len(acked)} |")
        print(f"| errors | {len(errors)} |")
        print(f"| latency p50 / p95 / p99 (ms, client round trip) | {q[49] * 1000:.0f} / **{q[94] * 1000:.0f}** / "
              f"{q[98] * 1000:.0f} |")
        print(f"| throughput | {len(acked) / wall:.0f} labels/s ({wall:.1f} s) |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed-steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="all", help="comma-separated variant numbers (1,2,3) or all")
    parser.add_argument("--budget", type=float, default=180.0)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--only", default="speed,quality,load")
    parser.add_argument("--via", default="json,gradio", help="load clients: json (POST /api/label), gradio (gradio_client)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-child", choices=["lab", "plain"], help=argparse.SUPPRESS)  # one run, in a child
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.speed_child:
        speed_child(args.speed_child, args.speed_steps)
        return
    print(f"# DPO labeler bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch threads {args.threads}, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    parts = args.only.split(",")
    if "speed" in parts:
        bench_speed(args.speed_steps, args.rounds, args.threads)
    if "quality" in parts:
        names = list(VARIANTS)
        if args.variants != "all":
            names = [names[int(i) - 1] for i in args.variants.split(",")]
        bench_quality(names, args.budget)
    if "load" in parts:
        for via in args.via.split(","):
            bench_load(args.annotators, args.labels, via)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
