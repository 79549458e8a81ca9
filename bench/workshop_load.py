"""Workshop load: simulated attendees against the labs on the loopback address, and one user's
decode step against model.generate (issue 22). Bounded in count and time; not a test.

    python bench/workshop_load.py                      # all three parts
    python bench/workshop_load.py --only explorer      # 10 attendees at once on the decoding explorer
    python bench/workshop_load.py --only room          # 30 attendees through scripts/serve_all.py, mixed labs
    python bench/workshop_load.py --only one-user      # ms per decode step: engine vs model.generate (+ routes)
    ... [--attendees 10] [--room 30] [--tokens 24] [--threads 1] [--compile] [--save bench/results/x.md]

1. Decoding explorer: the lab runs in its own process (`python spaces/decoding_explorer/app.py`);
   each attendee calls /compare (greedy, --tokens new tokens, its own prompt) through gradio's plain
   HTTP API (light on the bench's own CPU, as a browser on another machine is) and then through
   gradio_client (--via picks).
   First one at a time (each request alone), then all at once, in the same run: aggregate tokens/s,
   p50/p95 latency, errors, and how long the server took to answer a trivial HTTP request meanwhile
   (a server frozen by generation would show here).
2. A room through serve_all.py: --room attendees at once, spread over the labs (explorer /compare,
   RAG /ask, NER /tag, quantization /estimate, DPO /pair and /stats, LoRA /estimate, diffusion
   /generate, agent sandbox /run_code): errors, answered, per-lab latency, peak RSS of the server.
3. One user: ms per decode step of the embedded SmolLM2 at batch 1 for model.generate, the shared
   engine, a bare forward loop (DynamicCache), a StaticCache loop, and with --compile a
   torch.compile'd StaticCache loop; greedy tokens compared with model.generate's.

The machine is shared with other jobs: the load average is printed beside every figure."""
from __future__ import annotations

import argparse
import json
import os
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
sys.path.insert(0, str(ROOT))
import shared.bootstrap  # noqa: E402,F401

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain photosynthesis to a ten-year-old.",
    "Give three tips for a job interview.",
    "What is the capital of France, and why is it famous?",
    "Describe the sea at night.",
    "Write a haiku about autumn leaves falling in a quiet park near the river.",
    "How do vaccines work?",
    "List some good names for a black cat.",
    "Why is the sky blue?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
]
LINES: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    LINES.append(str(text))


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[i]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- a server in its own process

class Server:
    """A lab (or serve_all) in a subprocess; its RSS (with children) sampled every 0.5 s."""

    def __init__(self, cmd: list[str], port: int, ready_path: str = "/", threads: int = 0):
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        self.peak_rss = 0
        self._stop = threading.Event()
        self._wait(ready_path)
        threading.Thread(target=self._sample, daemon=True).start()

    def _wait(self, path: str, timeout: float = 600) -> None:
        start = time.time()
        while time.time() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError("server did not start")

    def rss(self) -> int:
        import psutil

        try:
            p = psutil.Process(self.proc.pid)
            return p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
        except psutil.Error:
            return 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.rss())
            time.sleep(0.5)

    def close(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def ping_while(url: str, stop: threading.Event, out: list) -> None:
    """Time a trivial HTTP GET every 0.5 s (is the server still answering while it generates?)."""
    while not stop.is_set():
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                r.read()
            out.append(time.perf_counter() - t)
        except OSError:
            out.append(float("inf"))
        stop.wait(0.5)


# ---------------------------------------------------------------- 1. the decoding explorer

def explorer_call(client, prompt: str, tokens: int) -> tuple[float, int, str]:
    """One attendee's /compare: `client` is a gradio_client.Client, or a base URL for gradio's plain HTTP API
    (POST /gradio_api/call/compare, then read its event stream), which costs the bench's process far less CPU
    (an attendee's browser is not on the server's cores)."""
    t = time.perf_counter()
    args = [prompt, ["greedy"], tokens, 0, True, "", ""]
    try:
        if isinstance(client, str):
            result = http_call(client, "compare", args)
        else:
            result = client.submit(*args, api_name="/compare").result(timeout=900)
    except Exception as exc:  # noqa: BLE001  counted as an error
        return time.perf_counter() - t, 0, f"{type(exc).__name__}: {exc}"[:200]
    if not isinstance(result, dict) or "error" in result:
        return time.perf_counter() - t, 0, str(result)[:200]
    n = sum(len(r.get("tokens", [])) for r in result.get("results", []))
    return time.perf_counter() - t, n, ""


def http_call(url: str, api_name: str, args: list, timeout: float = 900):
    """gradio's plain HTTP API: POST the arguments, then read the event stream until `complete` (or `error`)."""
    import http.client
    from urllib.parse import urlparse

    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("POST", f"/gradio_api/call/{api_name}", json.dumps({"data": args}),
                     {"Content-Type": "application/json"})
        event_id = json.loads(conn.getresponse().read())["event_id"]
        conn.request("GET", f"/gradio_api/call/{api_name}/{event_id}")
        stream, event = conn.getresponse(), ""
        for raw in stream:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                data = json.loads(line[5:].strip() or "null")
                if event == "error":
                    raise RuntimeError(f"server error: {data}")
                return data[0]
        raise RuntimeError("the event stream ended without a result")
    finally:
        conn.close()


def bench_explorer(attendees: int, tokens: int, threads: int, via: str = "http") -> dict:
    from gradio_client import Client

    port = free_port()
    server = Server([sys.executable, "spaces/decoding_explorer/app.py", "--port", str(port)], port, threads=threads)
    try:
        clients = [server.url if via == "http" else Client(server.url + "/", verbose=False) for _ in range(attendees)]
        explorer_call(clients[0], "Warm up.", 4)  # the model loads
        # Each phase its own prompts (the engine reuses the keys and values of a prompt it has seen: the same
        # texts twice would be free the second time); they share only the chat template's system turn, as a
        # room's prompts do.
        prompts = [f"Visitor {i + 1}: {PROMPTS[i % len(PROMPTS)]}" for i in range(attendees)]
        room_prompts = [f"Attendee {i + 1}: {PROMPTS[i % len(PROMPTS)]}" for i in range(attendees)]
        load_alone = load()
        t = time.perf_counter()
        alone = [explorer_call(c, p, tokens) for c, p in zip(clients, prompts)]
        alone_wall = time.perf_counter() - t
        load_room = load()
        results: list = [None] * attendees
        pings: list = []
        stop = threading.Event()
        pinger = threading.Thread(target=ping_while, args=(server.url + "/config", stop, pings), daemon=True)

        def attend(i):
            results[i] = explorer_call(clients[i], room_prompts[i], tokens)

        workers = [threading.Thread(target=attend, args=(i,)) for i in range(attendees)]
        t = time.perf_counter()
        pinger.start()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        room_wall = time.perf_counter() - t
        stop.set()
        return dict(alone=alone, alone_wall=alone_wall, room=results, room_wall=room_wall, pings=pings,
                    load_alone=load_alone, load_room=load_room, load_end=load(), rss=server.peak_rss)
    finally:
        server.close()


def report_explorer(r: dict, attendees: int, tokens: int, via: str = "http") -> None:
    alone_tokens = sum(n for _, n, _ in r["alone"])
    room_tokens = sum(n for _, n, _ in r["room"])
    alone_tps = alone_tokens / r["alone_wall"]
    room_tps = room_tokens / r["room_wall"]
    lat_alone = [s for s, _, e in r["alone"] if not e]
    lat_room = [s for s, _, e in r["room"] if not e]
    errors = [e for _, _, e in r["alone"] + r["room"] if e]
    pings = [p for p in r["pings"] if p != float("inf")]
    how = "gradio's plain HTTP API" if via == "http" else "gradio_client"
    say(f"\n### {attendees} attendees on the decoding explorer (/compare through {how}, greedy, {tokens} new tokens, "
        "own prompts)\n")
    say("| | one at a time | all at once | ratio |")
    say("|---|---|---|---|")
    say(f"| aggregate tokens/s | {alone_tps:.1f} | {room_tps:.1f} | **{room_tps / alone_tps:.2f}x** |")
    say(f"| p50 latency (s) | {pct(lat_alone, .5):.1f} | {pct(lat_room, .5):.1f} | "
        f"{pct(lat_room, .5) / pct(lat_alone, .5):.2f}x |")
    say(f"| p95 latency (s) | {pct(lat_alone, .95):.1f} | {pct(lat_room, .95):.1f} | "
        f"**{pct(lat_room, .95) / pct(lat_alone, .95):.2f}x** |")
    say(f"| all answered after (s) | {r['alone_wall']:.1f} | {r['room_wall']:.1f} | |")
    say(f"| errors | {sum(1 for _, _, e in r['alone'] if e)} | {sum(1 for _, _, e in r['room'] if e)} | |")
    say(f"| load average (1 min) | {r['load_alone']} | {r['load_room']} (end {r['load_end']}) | |")
    say(f"\nThe server answered GET /config in p50 {pct(pings, .5) * 1000:.0f} ms, p95 {pct(pings, .95) * 1000:.0f} ms, "
        f"max {max(pings or [0]) * 1000:.0f} ms ({len(pings)} probes, {len(r['pings']) - len(pings)} failed) while "
        f"the room generated; peak RSS {r['rss'] / 1e9:.2f} GB.")
    for e in errors[:5]:
        say(f"- error: {e}")


# ---------------------------------------------------------------- 2. a room through serve_all

def room_calls():
    """(lab, api_name, args) a simulated attendee calls, in the order attendees are handed them."""
    return [
        ("decoding_explorer", "/compare", ("Tell me a joke about cats.", ["greedy"], 16, 0, True, "", "")),
        ("rag_chat", "/ask", ("What is an algorithm?",)),  # after /ingest of one article (SETUP)
        ("ner_tagger", "/tag", ("Ada Lovelace met Charles Babbage in London in 1833.", "best")),
        ("quantization_comparer", "/estimate", ("gpt2", 1024, 1)),
        ("dpo_labeler", "/pair", ("", "bench")),
        ("decoding_explorer", "/compare", ("Write a haiku about rain.", ["top_p"], 16, 1, True, "", "")),
        ("lora_trainer", "/datasets", ()),
        ("diffusion_demo", "/schedulers", ()),
        ("agent_sandbox", "/run_code", ("print(sum(range(10)))",)),
        ("dpo_labeler", "/stats", ()),
    ]


def setup_calls(lab: str) -> list:
    """Untimed calls an attendee's session makes first (the RAG chat needs documents to ask about)."""
    if lab == "rag_chat":
        from gradio_client import handle_file

        return [("/ingest", ([handle_file(str(ROOT / "assets" / "rag_corpus" / "Algorithm.md"))],))]
    return []


def bench_room(n: int, threads: int, labs: list[str] | None = None) -> dict:
    from gradio_client import Client

    port = free_port()
    cmd = [sys.executable, "scripts/serve_all.py", "--port", str(port)]
    server = Server(cmd, port, ready_path="/healthz", threads=threads)
    try:
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
            import json

            health = json.loads(r.read())
        calls = [c for c in room_calls() if health.get(c[0]) == "ok" and (not labs or c[0] in labs)]
        clients: dict = {}
        results: list = [None] * n
        plan = [calls[i % len(calls)] for i in range(n)]

        def client(lab):
            return Client(f"{server.url}/{lab}/", verbose=False)

        for lab in {c[0] for c in plan}:  # one warm-up call per lab: the models load
            clients[lab] = client(lab)
        for lab, api, args in {c[0]: c for c in plan}.values():
            try:
                for setup, setup_args in setup_calls(lab):
                    clients[lab].submit(*setup_args, api_name=setup).result(timeout=600)
                clients[lab].submit(*args, api_name=api).result(timeout=600)
            except Exception as exc:  # noqa: BLE001
                say(f"- warm-up of {lab}{api} failed: {type(exc).__name__}: {exc}"[:300])
        own = [client(lab) for lab, _, _ in plan]
        for c, (lab, _, _) in zip(own, plan):
            for setup, setup_args in setup_calls(lab):
                c.submit(*setup_args, api_name=setup).result(timeout=600)
        load_start = load()

        def attend(i):
            lab, api, args = plan[i]
            t = time.perf_counter()
            try:
                out = own[i].submit(*args, api_name=api).result(timeout=900)
                err = out["error"] if isinstance(out, dict) and "error" in out else ""
            except Exception as exc:  # noqa: BLE001
                err = f"{type(exc).__name__}: {exc}"[:200]
            results[i] = (lab + api, time.perf_counter() - t, err)

        workers = [threading.Thread(target=attend, args=(i,)) for i in range(n)]
        t = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return dict(results=results, wall=time.perf_counter() - t, rss=server.peak_rss, load_start=load_start,
                    load_end=load(), health=health)
    finally:
        server.close()


def report_room(r: dict, n: int) -> None:
    res = [x for x in r["results"] if x]
    errors = [x for x in res if x[2]]
    say(f"\n### {n} attendees at once through scripts/serve_all.py, mixed over the labs\n")
    say("| call | requests | errors | p50 (s) | max (s) |")
    say("|---|---|---|---|---|")
    for name in sorted({x[0] for x in res}):
        rows = [x for x in res if x[0] == name]
        ok = [x[1] for x in rows if not x[2]]
        say(f"| {name} | {len(rows)} | {len(rows) - len(ok)} | {pct(ok, .5):.1f} | {max(ok or [float('nan')]):.1f} |")
    say(f"\nAnswered {len(res)}/{n}, errors {len(errors)}, all done in {r['wall']:.1f} s; peak RSS of the server "
        f"(with its sandbox workers) {r['rss'] / 1e9:.2f} GB; load average {r['load_start']} at start, "
        f"{r['load_end']} at the end.")
    down = [lab for lab, state in r["health"].items() if state != "ok"]
    if down:
        say(f"Labs that did not import (left out): {', '.join(down)}.")
    for e in errors[:8]:
        say(f"- {e[0]}: {e[2]}")


# ---------------------------------------------------------------- 3. one user, ms per step

def bench_one_user(tokens: int, rounds: int, compile_too: bool, threads: int = 0) -> list:
    """Each route in a fresh process of its own (`--route i`): on 2 cores, a second thread that has run
    torch ops keeps its own OpenMP team, and the two teams' spinning workers slow each other down
    (measured: model.generate 36 ms/step in the main thread, 59 ms once the engine's thread had run;
    the engine alone 39 ms), so timing routes side by side in one process measures that contention."""
    rows = []
    count = 5 if compile_too else 4
    for i in range(count):
        cmd = [sys.executable, __file__, "--only", "one-user", "--route", str(i), "--tokens", str(tokens),
               "--rounds", str(rounds), "--threads", str(threads)] + (["--compile"] if i == 4 else [])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        line = [x for x in done.stdout.splitlines() if x.startswith("ROW ")]
        if not line:
            raise SystemExit(f"one-user route {i} failed:\n{done.stderr[-2000:]}")
        name, ms, same, ld = json.loads(line[-1][4:])
        rows.append((name, ms, same, ld))
    return rows


def one_user_route(index: int, tokens: int, rounds: int, compile_too: bool) -> tuple:
    import torch

    from shared import batching
    from shared.loading import load_causal_lm

    loaded = load_causal_lm()
    model, tok = loaded.model, loaded.tokenizer
    eos = batching.eos_ids(model, tok)
    text = tok.apply_chat_template([{"role": "user", "content": PROMPTS[0]}], tokenize=False, add_generation_prompt=True)
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt])

    def run_generate(n):
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                                 pad_token_id=eos[0], eos_token_id=None)
        return out[0, len(prompt):].tolist()

    def run_engine(n):
        return batching.generate(model, prompt, batching.Sampling(), n, eos=[]).ids

    def run_loop(n, static=False, forward=None):
        from transformers import DynamicCache, StaticCache

        fwd = forward or model.forward
        got = []
        with torch.inference_mode():
            if static:
                cache = StaticCache(config=model.config, max_cache_len=len(prompt) + n + 1)
                out = model(input_ids=ids, past_key_values=cache, use_cache=True,
                            cache_position=torch.arange(len(prompt)), logits_to_keep=1)
            else:
                cache = DynamicCache(config=model.config)
                out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            got.append(int(token))
            for i in range(n - 1):
                kw = dict(cache_position=torch.tensor([len(prompt) + i])) if static else {}
                out = fwd(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1, **kw)
                token = out.logits[:, -1].argmax(-1, keepdim=True)
                got.append(int(token))
        return got

    routes = [("model.generate (baseline)", run_generate), ("shared engine, batch 1", run_engine),
              ("bare forward loop, DynamicCache", lambda n: run_loop(n)),
              ("bare forward loop, StaticCache", lambda n: run_loop(n, static=True))]
    if compile_too:
        compiled = torch.compile(model.forward, dynamic=False)
        t = time.perf_counter()
        run_loop(3, static=True, forward=compiled)
        say(f"torch.compile (inductor, StaticCache): first run incl. compilation {time.perf_counter() - t:.0f} s "
            f"(load {load()})")
        routes.append(("torch.compile'd forward, StaticCache", lambda n: run_loop(n, static=True, forward=compiled)))
    name, fn = routes[index]
    fn(2)  # warm-up
    per_step, outputs = [], []
    for r in range(rounds):
        t = time.perf_counter()
        short = fn(1)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        full = fn(tokens)
        tn = time.perf_counter() - t
        per_step.append((tn - t1) / (tokens - 1))
        outputs.append((short, full))
    ld = load()
    reference = run_generate(tokens)  # after the timing: this process's only other torch thread is then idle
    same = all(full == reference and short == reference[:1] for short, full in outputs)
    return name, statistics.median(per_step) * 1000, same, ld


def report_one_user(rows: list, tokens: int) -> None:
    say(f"\n### One user: one decode step of SmolLM2-135M at batch 1 ({tokens} tokens; (t(n) - t(1)) / (n-1), "
        "median)\n")
    say("| route | ms per step | vs model.generate | greedy tokens = model.generate | load avg |")
    say("|---|---|---|---|---|")
    base = rows[0][1]
    for name, ms, same, ld in rows:
        say(f"| {name} | {ms:.0f} | {ms / base:.2f}x | {'yes' if same else 'NO'} | {ld} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["explorer", "room", "one-user"])
    parser.add_argument("--attendees", type=int, default=10)
    parser.add_argument("--room", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (OMP_NUM_THREADS for the servers); 0 = torch's own choice")
    parser.add_argument("--via", default="http,gradio_client",
                        help="explorer attendees' client: http (gradio's plain HTTP API, light), gradio_client, or both")
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd StaticCache loop")
    parser.add_argument("--labs", help="comma-separated labs for the room (default: every lab that imports)")
    parser.add_argument("--save", metavar="MD")
    parser.add_argument("--route", type=int, help=argparse.SUPPRESS)  # one one-user route, in a child process
    args = parser.parse_args()
    args.attendees = max(1, min(args.attendees, 40))
    args.room = max(1, min(args.room, 60))
    args.tokens = max(2, min(args.tokens, 128))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    say(f"Machine: {os.cpu_count()} CPU cores shared with other jobs, "
        f"{'GPU ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}; torch threads "
        f"{args.threads or torch.get_num_threads()}; load average at start {load()}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}.")
    if args.route is not None:
        print("ROW " + json.dumps(one_user_route(args.route, args.tokens, args.rounds, args.compile)), flush=True)
        return
    if args.only in (None, "one-user"):
        report_one_user(bench_one_user(args.tokens, args.rounds, args.compile, args.threads), args.tokens)
    if args.only in (None, "explorer"):
        for via in args.via.split(","):
            report_explorer(bench_explorer(args.attendees, args.tokens, args.threads, via), args.attendees, args.tokens,
                            via)
    if args.only in (None, "room"):
        labs = [x.strip() for x in args.labs.split(",")] if args.labs else None
        report_room(bench_room(args.room, args.threads, labs), args.room)
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text("\n".join(LINES) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
