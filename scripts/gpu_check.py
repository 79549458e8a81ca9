"""Run each lab's main path on the GPU and print one table: lab, what ran, device, dtype, figure,
the same on the CPU where cheap, and pass/fail with the reason.

    python scripts/gpu_check.py              # on a GPU machine: every check (about 3 minutes on one GPU)
    python scripts/gpu_check.py --quick      # the small CPU subset (what CI runs as a smoke test)
    python scripts/gpu_check.py --out gpu_check.md

Only the embedded models and the shipped assets are used: a lent GPU machine has no Hub access either.
Without a GPU the script says so and runs the CPU subset. Each check runs on its own; one failing check
is reported and the others still run. Exit code 1 when a check failed."""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import shared.bootstrap  # noqa: F401  (quiet defaults)

ROOT = Path(__file__).resolve().parent.parent
LABS = ROOT / "spaces"
PROMPT = "Explain in two sentences why the sky is blue."
NEW_TOKENS = 32
NER_TEXTS = ["Angela Merkel met Emmanuel Macron in Paris on Tuesday to discuss Airbus and the European Union.",
             "Apple opened a new office in Nairobi, Kenya, and hired engineers from Google and Microsoft."]


@dataclass
class Row:
    lab: str
    what: str
    device: str = ""
    dtype: str = ""
    figure: str = ""
    cpu: str = ""
    ok: bool = False
    reason: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def lab_path(*labs: str) -> None:
    """Lab folders are not packages: put their modules on the import path (as the apps do)."""
    for lab in labs:
        folder = str(LABS / lab)
        if folder not in sys.path:
            sys.path.insert(0, folder)


def cuda_peak() -> str:
    import torch

    if not torch.cuda.is_available():
        return ""
    return f"peak GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def on_cpu_twin(worker: str, timeout: int = 240) -> dict:
    """Run `worker` in a fresh process forced to the CPU (GENAI_LAB_DEVICE=cpu); its JSON result."""
    env = dict(os.environ, GENAI_LAB_DEVICE="cpu", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, __file__, "--worker", worker], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"CPU twin '{worker}' failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- decoding explorer

def check_decoding(device: str, quick: bool) -> list[Row]:
    import torch

    lab_path("decoding_explorer")
    import decoding_loop
    import decoding_strategies as ds

    from shared.loading import load_causal_lm

    loaded = load_causal_lm(device=device)
    model, tok = loaded.model, loaded.tokenizer
    new = 12 if quick else NEW_TOKENS
    ids, _ = decoding_loop.encode_prompt(tok, PROMPT, True, new, decoding_loop.context_limit(model))
    prompt = torch.tensor([ids], device=model.device)
    rows = []
    for name in ("greedy", "beam"):
        strategies, _ = ds.resolve([name], {"beam": {"num_beams": 4}})
        gen_kwargs = ds.generate_kwargs(strategies[0])  # the generate() arguments that reproduce the strategy
        reset_peak()
        start = time.perf_counter()
        out = decoding_loop.compare(model, tok, ids, strategies, new, 0)[0]
        sync()
        lab_s = time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            ref = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new, min_new_tokens=0,
                                 pad_token_id=tok.pad_token_id, **gen_kwargs)
        sync()
        gen_s = time.perf_counter() - start
        ref_ids = ref[0, len(ids):].tolist()
        eos = set(decoding_loop.eos_ids(model, tok))
        ref_ids = ref_ids[:next((i + 1 for i, t in enumerate(ref_ids) if t in eos), len(ref_ids))]
        same = out.ids == ref_ids
        rows.append(Row("decoding_explorer", f"{name}: token for token vs model.generate ({len(out.ids)} tokens)",
                        loaded.device, loaded.dtype,
                        f"lab {len(out.ids) / lab_s:.1f} tok/s, generate {len(ref_ids) / gen_s:.1f} tok/s; {cuda_peak()}",
                        ok=same, reason="identical" if same else
                        f"differ at token {next((i for i, (a, b) in enumerate(zip(out.ids, ref_ids)) if a != b), 0)}"))
    if not quick:
        names = ["greedy", "top_k", "top_p", "min_p", "beam"]
        strategies, _ = ds.resolve(names)
        reset_peak()
        start = time.perf_counter()
        outs = decoding_loop.compare(model, tok, ids, strategies, new, 0)
        sync()
        secs = time.perf_counter() - start
        total = sum(len(o.ids) for o in outs)
        alone = decoding_loop.compare(model, tok, ids, ds.resolve(["greedy"])[0], new, 0)[0]
        same = outs[0].ids == alone.ids
        rows.append(Row("decoding_explorer", f"shared forward: {', '.join(names)} in one run", loaded.device,
                        loaded.dtype, f"{total / secs:.1f} tok/s over {len(names)} strategies; {cuda_peak()}",
                        ok=all(o.ids for o in outs),
                        reason="greedy in the mix = greedy alone" if same else
                        "greedy in the mix differs from greedy alone (batched half-precision numerics)"))
    return rows


# ---------------------------------------------------------------- quantization comparer

def check_quantization(device: str, quick: bool) -> list[Row]:
    lab_path("quantization_comparer")
    import quant_configs
    import quant_measure

    from shared.device import pick_dtype

    half = str(pick_dtype(device)).removeprefix("torch.")
    precisions = ["fp32", "int8"] if quick else ["fp32", half, "int8", "nf4", "nf4-dq"]
    if device == "cpu" and quick:
        precisions = ["fp32"]
    reset_peak()
    result = quant_measure.measure(quant_configs.SMOLLM2, precisions, device=device, new_tokens=8,
                                   reference_tokens=64 if quick else 256)
    rows = []
    for prec, r in result["results"].items():
        if "error" in r:
            rows.append(Row("quantization_comparer", f"{prec}: load, perplexity, generate", device, prec,
                            ok=False, reason=r["error"][:120]))
            continue
        ok = abs(r["error_pct"]) < 10 and r.get("perplexity") is not None and r["perplexity"] < 1e4
        rows.append(Row("quantization_comparer", f"{prec}: estimate vs measured, perplexity", device, prec,
                        f"measured {r['measured_bytes'] / 2**20:.0f} MiB (estimate {r['error_pct']:+.1f}%), "
                        f"ppl {r['perplexity']:.2f}, {r['ms_per_token']:.1f} ms/token",
                        ok=ok, reason="estimate within 10%, finite perplexity" if ok else
                        f"estimate off by {r['error_pct']:.1f}% or perplexity {r.get('perplexity')}"))
    return rows


# ---------------------------------------------------------------- RAG chat

def rag_answer(quick: bool) -> dict:
    lab_path("rag_chat")
    import rag_generators
    import rag_pipeline

    session = rag_pipeline.RagSession()
    start = time.perf_counter()
    session.load_sample()
    session.rebuild()
    index_s = time.perf_counter() - start
    chunks = len(getattr(session, "chunks", []) or [])
    start = time.perf_counter()
    result = session.ask("When did Apollo 11 land on the Moon?", rag_generators.make_generator("local"))
    return {"chunks": chunks, "index_s": index_s, "answer_s": time.perf_counter() - start,
            "answer": str(result.get("answer", ""))[:200], "sources": len(result.get("sources", []) or [])}


def check_rag(device: str, quick: bool) -> list[Row]:
    reset_peak()
    r = rag_answer(quick)
    ok = bool(r["answer"].strip()) and r["sources"] > 0
    return [Row("rag_chat", "index the sample corpus, answer one question", device, "",
                f"{r['chunks']} chunks in {r['index_s']:.1f} s, answer in {r['answer_s']:.1f} s; {cuda_peak()}",
                ok=ok, reason=f"{r['sources']} sources, answer: {r['answer'][:60]!r}" if ok else "empty answer")]


# ---------------------------------------------------------------- NER tagger

def ner_entities() -> dict:
    lab_path("ner_tagger")
    import ner_models

    out = {}
    for name in ("student", "best"):
        start = time.perf_counter()
        out[name] = [[(e["text"], e["coarse"]) for e in ner_models.tag(t, name)] for t in NER_TEXTS]
        out[name + "_s"] = time.perf_counter() - start
    return out


def check_ner(device: str, quick: bool) -> list[Row]:
    reset_peak()
    here = ner_entities()
    cpu = on_cpu_twin("ner") if device != "cpu" else here
    rows = []
    for name in ("student", "best"):
        same = [list(map(tuple, x)) for x in here[name]] == [list(map(tuple, x)) for x in cpu[name]]
        found = sum(len(x) for x in here[name])
        rows.append(Row("ner_tagger", f"{name}: tag {len(NER_TEXTS)} sentences", device, "",
                        f"{found} entities in {here[name + '_s']:.2f} s; {cuda_peak()}", f"{cpu[name + '_s']:.2f} s",
                        ok=same and found > 0, reason="same entities as on the CPU" if same else
                        f"differs from the CPU: {here[name]} vs {cpu[name]}"[:160]))
    return rows


# ---------------------------------------------------------------- the ZeroGPU shim

def check_zerogpu_shim(device: str, quick: bool) -> list[Row]:
    import torch

    from shared.device import gpu, on_zerogpu
    from shared.loading import load_causal_lm

    @gpu(duration=30)
    def next_token_probs(text: str):
        loaded = load_causal_lm(device=device)
        ids = loaded.tokenizer(text, return_tensors="pt").input_ids.to(loaded.model.device)
        with torch.no_grad():
            logits = loaded.model(ids).logits[0, -1].float()
        return torch.softmax(logits, -1).cpu(), str(loaded.model.device)

    probs, ran_on = next_token_probs("The capital of France is")
    ok = probs.device.type == "cpu" and abs(float(probs.sum()) - 1) < 1e-3 and ran_on.startswith(device)
    rows = [Row("shared.device", "a @gpu-decorated function runs on the device and returns to the CPU", ran_on, "",
                f"top token p={float(probs.max()):.3f}", ok=ok,
                reason=("spaces.GPU active (ZeroGPU)" if on_zerogpu() else "no-op decorator off ZeroGPU")
                + ("" if ok else f"; result on {probs.device}, ran on {ran_on}"))]
    try:
        import spaces

        wrapped = spaces.GPU(duration=10)(lambda x: x * 2)
        rows.append(Row("shared.device", "spaces.GPU(duration=...) wraps a function off ZeroGPU", device, "",
                        ok=wrapped(21) == 42, reason="spaces package imports and passes calls through"))
    except Exception as exc:  # noqa: BLE001
        rows.append(Row("shared.device", "spaces.GPU wraps a function", device, "", ok=False,
                        reason=f"{type(exc).__name__}: {exc}"[:160]))
    return rows


# ---------------------------------------------------------------- diffusion demo

def check_diffusion(device: str, quick: bool) -> list[Row]:
    lab_path("diffusion_demo")
    import diffusion_logic

    n = 20 if quick else 100
    reset_peak()
    gen = diffusion_logic.sample("a handwritten 7", n=n, device=device)
    hits = sum(c == 7 for c in gen.classified)
    ok = hits >= 0.8 * n
    return [Row("diffusion_demo", f"{n} digits '7', {gen.scheduler} {gen.steps} steps, guidance {gen.guidance:g}",
                device, "float32", f"{gen.seconds:.2f} s; the real-digit classifier reads {hits}/{n} as 7; {cuda_peak()}",
                ok=ok, reason="readable digits of the asked class" if ok else f"only {hits}/{n} read as 7")]


# ---------------------------------------------------------------- LoRA trainer

def check_lora(device: str, quick: bool) -> list[Row]:
    import tempfile

    lab_path("lora_trainer")
    os.environ.setdefault("GENAI_LAB_DATA", tempfile.mkdtemp(prefix="gpu_check_data_"))
    import lora_train

    from shared import jobs

    rows = []
    variants = [("LoRA q,v r=8", False)] + ([] if device == "cpu" else [("QLoRA 4-bit q,v r=8", True)])
    for label, qlora in variants:
        config = {"r": 8, "alpha": 16, "target_modules": "q,v", "learning_rate": 5e-4, "max_steps": 3,
                  "batch_size": 4, "max_length": 128, "seed": 0, "qlora": qlora}
        reset_peak()
        prepared = lora_train.prepare("orvenne", config)
        job = jobs.run_now(lambda job, p=prepared: lora_train.run(job, p), key="gpu_check_train", kind="gpu_check")
        result = job.result or {}
        ok = job.state == jobs.DONE and result.get("steps") == 3 and all(map(math.isfinite, result["train_loss"]))
        rows.append(Row("lora_trainer", f"{label}: 3 SFT steps on the embedded SmolLM2", device,
                        "4-bit nf4 base" if qlora else "", f"{result.get('s_per_step')} s/step, loss "
                        f"{result.get('train_loss')}; {cuda_peak()}", ok=ok,
                        reason="trained and saved the adapter" if ok else (job.error or str(result))[:160]))
    return rows


# ---------------------------------------------------------------- DPO labeler

def check_dpo(device: str, quick: bool) -> list[Row]:
    import tempfile

    lab_path("dpo_labeler")
    os.environ.setdefault("GENAI_LAB_DATA", tempfile.mkdtemp(prefix="gpu_check_data_"))
    import dpo_data
    import dpo_train

    from shared import jobs

    config = dpo_train.parse_config({"max_steps": 2, "batch_size": 4, "max_length": 128})
    rows, heldout = dpo_data.seed_rows("train")[:16], dpo_data.seed_rows("heldout")[:8]
    reset_peak()
    job = jobs.run_now(lambda job: dpo_train.train(job, config, rows, heldout), key="gpu_check_train",
                       kind="gpu_check")
    result = job.result or {}
    ok = job.state == jobs.DONE and result.get("steps") == 2
    return [Row("dpo_labeler", "2 DPO steps with LoRA on the embedded SmolLM2, held-back scoring", device, "",
                f"{result.get('s_per_step')} s/step, held-back accuracy {result.get('heldout_accuracy_before')} -> "
                f"{result.get('heldout_accuracy_after')}; {cuda_peak()}", ok=ok,
                reason="trained, metrics logged" if ok else (job.error or str(result))[:160])]


CHECKS = {  # name: (function, runs in --quick)
    "decoding": (check_decoding, True),
    "zerogpu": (check_zerogpu_shim, True),
    "quantization": (check_quantization, False),
    "rag": (check_rag, False),
    "ner": (check_ner, False),
    "diffusion": (check_diffusion, False),
    "lora": (check_lora, False),
    "dpo": (check_dpo, False),
}
WORKERS = {"ner": ner_entities}


def run(device: str, quick: bool, only: list[str] | None = None) -> list[Row]:
    rows = []
    for name, (fn, in_quick) in CHECKS.items():
        if (only and name not in only) or (quick and not in_quick and not only):
            continue
        start = time.perf_counter()
        try:
            got = fn(device, quick)
        except Exception as exc:  # noqa: BLE001  one failing check must not hide the others
            traceback.print_exc(file=sys.stderr)
            got = [Row(name, "the check itself", device, ok=False, reason=f"{type(exc).__name__}: {exc}"[:200])]
        secs = time.perf_counter() - start
        for row in got:
            row.seconds = secs / len(got)
        rows.extend(got)
        print(f"[gpu_check] {name}: {sum(r.ok for r in got)}/{len(got)} passed in {secs:.1f} s", flush=True)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| lab | what ran | device | dtype | figure | CPU | result |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cell = lambda s: str(s).replace("|", "/").replace("\n", " ")  # noqa: E731
        lines.append(f"| {r.lab} | {cell(r.what)} | {r.device} | {r.dtype} | {cell(r.figure)} | {cell(r.cpu)} | "
                     f"{'pass' if r.ok else 'FAIL'}: {cell(r.reason)} |")
    return "\n".join(lines)


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"no GPU ({os.cpu_count()} CPU cores), torch {torch.__version__}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small CPU subset (CI's smoke test)")
    parser.add_argument("--only", default="", help=f"comma-separated checks: {', '.join(CHECKS)}")
    parser.add_argument("--out", help="also write the table (Markdown) to this file")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # a CPU twin: print one JSON line
        print(json.dumps(WORKERS[args.worker]()))
        return 0
    import torch

    from shared.device import pick_device

    device = pick_device()
    quick = args.quick
    if not device.startswith("cuda"):
        print(f"[gpu_check] no GPU here ({machine()}): running the CPU subset on '{device}'.", flush=True)
        quick = True
    start = time.perf_counter()
    rows = run(device, quick, [c for c in args.only.split(",") if c] or None)
    text = (f"gpu_check on {machine()}, {time.strftime('%Y-%m-%d')}, {time.perf_counter() - start:.0f} s"
            f"{' (quick CPU subset)' if quick else ''}\n\n" + table(rows))
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    del torch
    return 0 if rows and all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
