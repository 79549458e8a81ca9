"""Decoding explorer benchmark: its own decoding loop (which records every token's probability
and top alternatives) against plain `model.generate`, on the embedded SmolLM2-135M-Instruct, in
the same run; the cost of comparing 4 strategies against 1; and start-up time to the first HTTP
200 against a bare gradio hello-world app.

    python bench/decoding_explorer.py [--tokens 48] [--rounds 3] [--no-startup] [--mix-only]

Prints a markdown table (paste into bench/results/decoding_explorer.md). Rounds alternate
explorer/baseline so that load from other jobs hits both alike; medians are reported."""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "spaces" / "decoding_explorer"))
import shared.bootstrap  # noqa: E402,F401

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
HELLO = """import gradio as gr
demo = gr.Interface(lambda name: "Hello " + name, "text", "text")
demo.launch(server_name="127.0.0.1", server_port={port})
"""


def median(xs):
    return statistics.median(xs)


def bench_loop(tokens: int, rounds: int, mix_only: bool = False):
    import torch

    import decoding_loop as dl
    import decoding_strategies as ds
    from shared.loading import load_causal_lm

    loaded = load_causal_lm()
    model, tok = loaded.model, loaded.tokenizer
    prompt, _ = dl.encode_prompt(tok, PROMPT, True, tokens, dl.context_limit(model))
    dl.compare(model, tok, prompt, [ds.DEFAULTS["greedy"]], 4, 0)  # warm-up
    rows = [] if mix_only else bench_vs_generate(model, tok, prompt, tokens, rounds)
    return loaded.status, rows, bench_mix(model, tok, prompt, tokens, rounds)


def bench_vs_generate(model, tok, prompt, tokens: int, rounds: int):
    import torch

    import decoding_loop as dl
    import decoding_strategies as ds

    ids = torch.tensor([prompt])
    pad = model.generation_config.pad_token_id
    pad = pad if pad is not None else dl.eos_ids(model, tok)[0]
    rows = []
    cases = [("greedy", ds.DEFAULTS["greedy"]), ("top-p 0.9", ds.DEFAULTS["top_p"]),
             ("beam search, 4 beams", ds.clamp(ds.DEFAULTS["beam"], num_beams=4, no_repeat_ngram_size=0)[0])]
    for label, strategy in cases:
        ours, theirs, same = [], [], True
        for r in range(rounds):
            def run_ours():
                t = time.perf_counter()
                o = dl.compare(model, tok, prompt, [strategy], tokens, seed=r)[0]
                ours.append(len(o.ids) / (time.perf_counter() - t))
                return o

            def run_theirs():
                torch.manual_seed(r)
                t = time.perf_counter()
                with torch.inference_mode():
                    gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                                         pad_token_id=pad, **ds.generate_kwargs(strategy))
                g = gen[0, len(prompt):].tolist()
                theirs.append(len(g) / (time.perf_counter() - t))
                return g

            if r % 2 == 0:  # alternate who goes first, so load from other jobs hits both alike
                out = run_ours()
                gen_ids = run_theirs()
            else:
                gen_ids = run_theirs()
                out = run_ours()
            same &= gen_ids == out.ids
        rows.append((label, median(ours), median(theirs), same, len(out.ids)))
    return rows


def bench_mix(model, tok, prompt, tokens: int, rounds: int):
    """Wall time of top-p alone, 4 sampling strategies, and the classics (greedy, 4-beam search,
    top-p, contrastive k=4); the order rotates each round so that load from other jobs hits all
    three alike."""
    import decoding_loop as dl
    import decoding_strategies as ds

    runs = {"one": [ds.DEFAULTS["top_p"]], "many": ds.resolve(["greedy", "top_p", "top_k", "min_p"])[0],
            "mixed": ds.resolve(["greedy", "beam", "top_p", "contrastive"])[0]}
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % 3:] + names[:r % 3]:
            t = time.perf_counter()
            dl.compare(model, tok, prompt, runs[name], tokens, r)
            times[name].append(time.perf_counter() - t)
    return median(times["one"]), median(times["many"]), median(times["mixed"]), forward_cost(model, len(prompt), rounds)


def forward_cost(model, prompt_len: int, rounds: int, batches=(1, 10)):
    """Median seconds of one decode-step forward pass (KV cache of prompt_len + 16 tokens) at each
    batch size: the floor of a mixed run's cost is the batch-10 forward (greedy + top-p + 4 beams
    + 4 contrastive candidates) against the batch-1 forward of a strategy alone."""
    import torch

    times = {b: [] for b in batches}
    with torch.inference_mode():
        for r in range(rounds):
            for b in (batches if r % 2 == 0 else batches[::-1]):
                cache = model(input_ids=torch.zeros(b, prompt_len + 16, dtype=torch.long, device=model.device),
                              use_cache=True, logits_to_keep=1).past_key_values
                step = torch.zeros(b, 1, dtype=torch.long, device=model.device)
                t = time.perf_counter()
                for _ in range(4):
                    model(input_ids=step, past_key_values=cache, use_cache=True, logits_to_keep=1)
                    cache.crop(-1)
                times[b].append((time.perf_counter() - t) / 4)
    return {b: median(ts) for b, ts in times.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_200(cmd, port, timeout=120.0) -> float:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tempfile.gettempdir())
    try:
        while time.perf_counter() - start < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(" ".join(cmd))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_startup(rounds: int):
    hello = Path(tempfile.mkdtemp()) / "hello_app.py"
    ours, bare = [], []
    app = ROOT / "spaces" / "decoding_explorer" / "app.py"
    for r in range(rounds):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):  # alternate who starts first
            port = free_port()
            if which == 0:
                hello.write_text(HELLO.format(port=port))
                bare.append(first_200([sys.executable, str(hello)], port))
            else:
                ours.append(first_200([sys.executable, str(app), "--port", str(port)], port))
    return median(ours), median(bare)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--startup-rounds", type=int, default=5)
    parser.add_argument("--no-startup", action="store_true")
    parser.add_argument("--mix-only", action="store_true",
                        help="only the strategy-mix table (4 strategies vs one); no model.generate table, no start-up")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (default: torch's own choice); 1 is steadier on a CPU shared with other jobs")
    parser.add_argument("--save", metavar="MD", help="also write the tables (with the machine) to this file")
    args = parser.parse_args()
    lines: list[str] = []
    import builtins
    real_print = builtins.print

    def print(text=""):  # noqa: A001  (echo and keep every line for --save)
        real_print(text, flush=True)
        lines.append(str(text))

    load_before = os.getloadavg()
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    status, rows, (one, many, mixed, forward) = bench_loop(args.tokens, args.rounds, args.mix_only)
    print(f"Model: {status.replace('**', '')}; torch threads: {torch.get_num_threads()}; "
          f"{args.tokens} new tokens, median of {args.rounds} alternating rounds.\n")
    if rows:
        print("| strategy | explorer loop (tokens/s) | model.generate (tokens/s) | ratio | same tokens |")
        print("|---|---|---|---|---|")
        for label, ours, theirs, same, n in rows:
            print(f"| {label} ({n} tokens) | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x | "
                  f"{'yes' if same else 'NO'} |")
    print("\n| comparison | wall time (s) | vs one strategy |")
    print("|---|---|---|")
    print(f"| top-p alone | {one:.2f} | 1.00x |")
    print(f"| 4 strategies in one batch (greedy, top-p, top-k, min-p) | {many:.2f} | {many / one:.2f}x |")
    print(f"| the classics in one batch (greedy, top-p, 4-beam search, contrastive k=4) | {mixed:.2f} | "
          f"{mixed / one:.2f}x |")
    print(f"\nOne decode-step forward pass: {forward[1] * 1000:.0f} ms at batch 1, {forward[10] * 1000:.0f} ms at "
          f"batch 10 ({forward[10] / forward[1]:.2f}x): the floor of the classics' ratio, which run 10 rows per step.")
    if not (args.no_startup or args.mix_only):
        ours, bare = bench_startup(args.startup_rounds)
        print(f"\n| start-up (median of {args.startup_rounds}, alternating) | first HTTP 200 (s) | ratio |")
        print("|---|---|---|")
        print(f"| bare gradio hello-world | {bare:.2f} | 1.00x |")
        print(f"| `python spaces/decoding_explorer/app.py` | {ours:.2f} | {ours / bare:.2f}x |")
    load_after = os.getloadavg()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"\nMachine: {os.cpu_count()}-core CPU, {gpu}, shared with other jobs (load average "
          f"{load_before[0]:.1f} at start, {load_after[0]:.1f} at the end).")
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
