"""One continuous-batching generation engine per model: the requests of every user of a process
share one forward pass per token.

    from shared import batching
    engine = batching.engine_for(model)                        # one per model object, process-wide
    gen = batching.generate(model, prompt_ids, batching.Sampling(do_sample=True, temperature=0.8, seed=3),
                            max_new_tokens=48, eos=[2], should_stop=job.should_stop)
    gen.ids, gen.probs, gen.top_ids, gen.top_probs, gen.stop_reason

How it works (as vLLM and TGI do it, in plain PyTorch on top of transformers' DynamicCache):
- A request ("ticket") holds one or more *steppers* that continue one prompt. At a token boundary
  the engine's thread prefills the newcomers together in one forward pass (left-padded, an
  attention mask marking the padding, each row with its own position ids), then merges their KV
  caches into the running batch, padded the same way, so a newcomer computes what it would
  compute alone (to float rounding: see below). The keys and values of recent prompts are kept
  (PREFIX_CACHE_BYTES per engine, keyed by tokens and adapter, emptied when the model's parameters
  change): a prompt that starts like one seen before (every chat prompt starts with the
  template's system turn) is prefilled from where they part. The batch's cache appends each
  step in place into reserved columns instead of concatenating every row's cache per layer.
- Then one forward pass per step runs over every row of every ticket. Each stepper says which of
  its previous rows each of its next rows continues (beam search reorders, contrastive search
  feeds k candidates of one row) and which token each row feeds; the cache is reordered once
  with the concatenated index (rows of finished or stopped tickets drop out), the columns that
  are padding in every row are trimmed, and each stepper gets its slice of the logits (and of the
  last hidden states when it asks for them).
- Stopping is per row and per ticket: end of text, max_new_tokens, a stop request
  (`ticket.cancel()`, or a `should_stop()` callable such as a shared.jobs job's, checked at every
  token boundary). A stopped ticket leaves the batch at the next boundary, keeping what it made.
- The built-in stepper `Rows` runs greedy and sampling rows, each with its own sampling settings
  (repetition penalty, no-repeat n-gram, temperature, top-k, top-p, min-p, typical, as transformers
  logits processors in generate's order) and its own torch.Generator seeded per request, so a
  seeded run draws exactly what `torch.manual_seed(seed); model.generate(do_sample=True, ...)`
  draws alone, whoever else is in the batch. It records, per token, the model's probability
  (softmax of raw logits), the probability after the row's processors and the top alternatives.
  Any object with the same small protocol (`width`, `live`, `rows()`, `advance()`; see `Rows`)
  can ride the batch too: the decoding explorer's beam search and contrastive search do.
- Waiting is visible: a ticket admitted when the batch has room (MAX_ROWS rows, and MAX_CACHE_TOKENS
  rows x padded length, which bounds the KV cache when prompts are long) runs at the next token
  boundary; beyond that it waits in line and `ticket.position()` says its place (1 = next).

Results do not depend on the batch: greedy picks the same tokens, a seeded sample draws the same
tokens, and probabilities agree to float rounding (a batched matrix product and a masked
attention sum in another order than batch 1: about 1e-6 relative; tests/test_shared_batching.py
checks all three on the tiny GPT-2 and on the embedded SmolLM2, with requests joining and leaving
mid-generation). Caches with sliding-window or other special layers cannot be padded and merged:
such a model's tickets run one at a time through the same engine (`engine.joinable` says which).

Threads and the GIL: the engine runs in one daemon thread per model that sleeps on a condition
when there is no work (it never spins) and drops its reference to the model when idle, so the
bounded model cache can still unload it. Callers block on a condition too (`ticket.wait()`,
`ticket.updates()`), which releases the GIL, and torch releases it inside every kernel, so a
gradio server on the same process keeps answering while the engine generates. On ZeroGPU (where
the GPU exists only inside a `spaces.GPU` call) the engine has no thread: `inline` mode, in which
whoever waits for a ticket runs the engine's steps in its own thread, so callers wrap their wait in
shared.device.gpu as usual (they still share the batch with the tickets present in that process).

When a room outgrows one machine
--------------------------------
Point the labs at an existing serving engine instead (design rule 10: no home-made cluster):
vLLM (`vllm serve HuggingFaceTB/SmolLM2-1.7B-Instruct`), TGI, llama.cpp's server or Ollama all
speak the OpenAI protocol. `endpoint_generate(url, prompt, ...)` asks `/v1/completions` (plain
text prompts, what the explorer needs) or `/v1/chat/completions` (messages) with
`logprobs`/`top_logprobs` and returns the same `Generation` record: text, tokens, each token's
probability and the top alternatives where the server offers them (vLLM, TGI and llama.cpp do;
Ollama's OpenAI layer and many hosted APIs return no log-probabilities, and then `probs` stay
empty and `Generation.views_missing` lists what the explorer cannot show). Sampling settings go
as `temperature`/`top_p`/`seed` (OpenAI fields) plus `top_k`/`min_p`/`repetition_penalty`
(accepted by vLLM and llama.cpp, ignored or refused by others). What is lost against a local model
(`ENDPOINT_LIMITS`): the model's probability of a token the server did not return among its top
alternatives, the logits pipeline of a step (the processors run inside the server), branching at a
token from the server's own state (a branch is a new request with the kept text as prompt), beam
search and contrastive search (not in the OpenAI protocol; vLLM's beam search is a separate
API), and exact seeds across servers (a seed is reproducible only on the same server and
version). tests/test_shared_batching.py drives it against a loopback stand-in server; the
decoding explorer exposes it as /compare_endpoint, and the RAG chat's endpoint generator streams
through the same protocol.

Who rides the batch: the decoding explorer (every strategy of every run, spaces/decoding_explorer/
decoding_loop.py) and the RAG chat's local generator (spaces/rag_chat/rag_generators.py); a lab
that generates with a local model calls `generate()` / `stream_text()` or submits its own
steppers. Figures (10 and 30 simulated attendees, one user's ms per step by route, with the load
average of each run): bench/workshop_load.py, bench/results/workshop_load.md."""
from __future__ import annotations

import functools
import itertools
import threading
import time
import weakref
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from shared.errors import UserError

# ---------------------------------------------------------------- limits
MAX_ROWS = 48  # rows in one forward pass; tickets beyond it wait in line (one is always admitted)
MAX_CACHE_TOKENS = 48 * 512  # rows x padded length at admission: bounds the KV cache when prompts are long
MAX_WAITING = 256  # tickets waiting per engine; more are refused with a clear message
TOP_ALTERNATIVES = 5  # alternatives recorded per generated token
IDLE_EXIT_S = 30.0  # the engine's thread ends after this long without work (a new ticket starts it again)

WAITING, RUNNING, DONE, STOPPED, ERROR = "waiting", "running", "done", "stopped", "error"
FINISHED = (DONE, STOPPED, ERROR)
STOP_REQUEST = "stop request"  # the stop reason of a row that a stop request ended


class BatchFull(UserError):
    """Too many requests wait for this model; the message is for the user."""


# ---------------------------------------------------------------- what one row produced

@dataclass
class Generation:
    """One row's generation and what the model thought of each token."""
    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)  # generated token ids (the EOS token included if produced)
    probs: list[float] = field(default_factory=list)  # model probability of each token (softmax of raw logits)
    picked_probs: list[float] = field(default_factory=list)  # probability after the row's processors
    top_ids: list[list[int]] = field(default_factory=list)  # the model's top alternatives at each step
    top_probs: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0
    done: bool = False
    stop_reason: str = ""
    batch_size: int = 1  # the most rows that shared one of its forward passes
    text: str = ""  # filled by endpoint_generate (a local caller decodes ids itself)
    tokens: list[str] = field(default_factory=list)  # an endpoint's token strings (its top_ids are strings too)
    views_missing: list[str] = field(default_factory=list)  # what an endpoint did not give

    @property
    def tokens_per_s(self) -> float:
        return len(self.ids) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Sampling:
    """One row's decoding settings; a field at its neutral value adds no logits processor."""
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    seed: int = 0

    def processors(self) -> list:
        """transformers logits processors in the order GenerationMixin builds them (5.23)."""
        from transformers import (MinPLogitsWarper, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor,
                                  TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper)

        out = []
        if self.repetition_penalty != 1.0:
            out.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.no_repeat_ngram_size > 0:
            out.append(NoRepeatNGramLogitsProcessor(self.no_repeat_ngram_size))
        if self.do_sample:
            if self.temperature != 1.0:
                out.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k:
                out.append(TopKLogitsWarper(top_k=self.top_k, min_tokens_to_keep=1))
            if self.top_p < 1.0:
                out.append(TopPLogitsWarper(top_p=self.top_p, min_tokens_to_keep=1))
            if self.min_p > 0.0:
                out.append(MinPLogitsWarper(min_p=self.min_p, min_tokens_to_keep=1))
            if self.typical_p < 1.0:
                out.append(TypicalLogitsWarper(mass=self.typical_p, min_tokens_to_keep=1))
        return out

    def generate_kwargs(self) -> dict:
        """The model.generate arguments that draw the same tokens (with torch.manual_seed(seed))."""
        kw = dict(do_sample=self.do_sample, repetition_penalty=self.repetition_penalty,
                  no_repeat_ngram_size=self.no_repeat_ngram_size)
        if self.do_sample:
            kw.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                      min_p=self.min_p if self.min_p > 0 else None, typical_p=self.typical_p)
        return kw


def eos_ids(model, tokenizer=None) -> list[int]:
    """The end-of-text ids of a model (its generation config, else the tokenizer's)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None and tokenizer is not None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


# ---------------------------------------------------------------- the built-in stepper

def pick_rows(logits, fed, ids, procs, gens):
    """The next token of each fed row: row j of `logits` belongs to row fed[j], whose logits processors
    (procs[i]) run on its own ids, then it samples with its own generator (gens[i]) or takes the argmax.
    Returns (log-softmax of the raw logits, the tokens, each token's probability after processing)."""
    import torch

    logp = torch.log_softmax(logits, dim=-1)
    picks, picked_p = [], []
    for j, i in enumerate(fed):
        scores = logits[j:j + 1]
        for proc in procs[i]:
            scores = proc(ids[i:i + 1], scores)
        probs = torch.softmax(scores, dim=-1)
        if gens[i] is not None:
            token = torch.multinomial(probs, num_samples=1, generator=gens[i]).squeeze(1)
        else:
            token = torch.argmax(scores, dim=-1)
        picks.append(token)
        picked_p.append(probs[0, token])
    return logp, torch.cat(picks), picked_p


class Rows:
    """Greedy and sampling rows continuing one prompt: each row has its own settings (logits
    processors), its own torch.Generator seeded with its seed, its own max_new_tokens and may be
    stopped alone (`stop_row(i)`).

    The stepper protocol the engine drives (the decoding explorer's beam and contrastive steppers
    follow it too):
    - `width`: rows at the prefill (the prompt's one prefilled row stands for each of them);
      `max_rows`: the most rows it feeds in one step (what admission counts; default `width`);
    - `live`: False once finished (it takes no more rows);
    - `wants_hidden`: True if advance() needs the last hidden states;
    - `rows()` -> (src, tokens): for each of its next rows, which row of its slice of the previous
      forward it continues (local indices) and the token it feeds;
    - `advance(logits, hidden, batch)`: its slice of the last forward's logits (rows x vocab, float),
      the matching last hidden states or None, and how many rows that forward ran in all;
    - `outs`: what it produced (Generation-like records), read by the caller;
    - `start` (optional): set by the engine to time.perf_counter() when the ticket is admitted."""

    wants_hidden = False

    def __init__(self, prompt_ids: list[int], samplings: list[Sampling], max_new_tokens, eos: list[int],
                 device="cpu", processors: list[list] | None = None, top_alternatives: int = TOP_ALTERNATIVES,
                 outs: list | None = None):
        import torch

        n = len(samplings)
        if n == 0:
            raise ValueError("Rows needs at least one row.")
        limits = list(max_new_tokens) if isinstance(max_new_tokens, (list, tuple)) else [int(max_new_tokens)] * n
        self.outs = outs if outs is not None else [Generation(list(prompt_ids)) for _ in range(n)]
        self.procs = processors if processors is not None else [s.processors() for s in samplings]
        self.gens = [torch.Generator(device=device).manual_seed(int(s.seed)) if s.do_sample else None
                     for s in samplings]
        self.eos_t = torch.tensor(eos or [-1], device=device)
        self.pad = eos[0] if eos else 0
        self.ids = torch.tensor([prompt_ids], device=device).expand(n, -1)  # every row's text so far
        self.limits = [max(1, int(m)) for m in limits]
        self.alive = [True] * n
        self._stop = [False] * n
        self.fed = list(range(n))  # the row behind each row of the slice advance() gets
        self.tokens = None
        self.k = int(top_alternatives)
        self.device, self.start = device, time.perf_counter()
        self.width = self.max_rows = n
        self.live = True

    def stop_row(self, i: int) -> None:
        """Row i ends at the next token boundary, keeping what it produced."""
        self._stop[i] = True

    def rows(self):
        for i in range(len(self.outs)):
            if self.alive[i] and self._stop[i]:
                self._end(i, STOP_REQUEST)
        src = [j for j, i in enumerate(self.fed) if self.alive[i]]
        self.fed = [self.fed[j] for j in src]
        return src, self.tokens[src]

    def _end(self, i: int, reason: str) -> None:
        o = self.outs[i]
        self.alive[i] = False
        o.done, o.stop_reason = True, reason
        o.seconds = max(o.seconds, 1e-9)
        if not any(self.alive):
            self.live = False

    def stop_all(self, reason: str = STOP_REQUEST) -> None:
        for i in range(len(self.outs)):
            if self.alive[i]:
                self._end(i, reason)
        self.live = False

    def advance(self, logits, hidden, batch: int) -> None:
        import torch

        fed, k = self.fed, self.k
        logp, tokens, picked_p = pick_rows(logits, fed, self.ids, self.procs, self.gens)
        chosen = logp.gather(1, tokens[:, None])
        parts = [tokens[:, None].float(), chosen.exp(), torch.stack(picked_p).view(len(fed), 1)]
        if k:
            top_p, top_i = logp.topk(k, dim=-1)
            parts += [top_p.exp(), top_i.float()]
        parts.append(torch.isin(tokens, self.eos_t)[:, None].float())
        summary = torch.cat(parts, 1).tolist()  # one trip off the device per step
        now = time.perf_counter() - self.start
        for i, row in zip(fed, summary):
            o = self.outs[i]
            o.ids.append(int(row[0]))
            o.probs.append(row[1])
            o.picked_probs.append(row[2])
            if k:
                o.top_probs.append(row[3:3 + k])
                o.top_ids.append([int(t) for t in row[3 + k:3 + 2 * k]])
            o.seconds = now
            o.batch_size = max(o.batch_size, batch)
            if row[-1]:
                self._end(i, "end of text")
            elif len(o.ids) >= self.limits[i]:
                self._end(i, "max_new_tokens")
        column = torch.full((len(self.outs),), self.pad, dtype=self.ids.dtype, device=self.device)
        column[fed] = tokens
        self.ids = torch.cat([self.ids, column[:, None]], dim=1)
        self.tokens = tokens  # one per row of this slice, in the order of self.fed
        if not any(self.alive):
            self.live = False


# ---------------------------------------------------------------- a request

class Ticket:
    """One request in an engine: its steppers, its state, its place in line, its stop request."""

    _ids = itertools.count(1)

    def __init__(self, engine: "Engine", prompt_ids: list[int], steppers: list, should_stop=None, label: str = "",
                 snapshot: Callable[[], Any] | None = None, adapter: str | None = None):
        self.id = next(self._ids)
        self.adapter = adapter  # a peft model's adapter for these rows ("__base__" = none); None = as loaded
        self.snapshot = snapshot
        self._frames: deque = deque()
        self.engine = engine
        self.prompt_ids = list(prompt_ids)
        self.steppers = list(steppers)
        self.should_stop = should_stop
        self.label = label
        self.state = WAITING
        self.error = ""
        self.steps = 0  # forward passes it took part in (its prefill included)
        self.batch_rows = 0  # rows of the last forward it took part in
        self.submitted = time.perf_counter()
        self.started: float | None = None
        self.finished: float | None = None
        self._cancel = threading.Event()
        self._done = threading.Event()

    @property
    def rows_needed(self) -> int:
        return sum(getattr(st, "max_rows", st.width) for st in self.steppers)

    @property
    def outs(self) -> list:
        return [o for st in self.steppers for o in st.outs]

    def position(self) -> int:
        """0 once it runs (or has finished); n >= 1 while it waits for room: n-1 tickets wait before it."""
        return self.engine.position(self)

    def ahead(self) -> int:
        """Tickets waiting before this one (0 when it runs or is next)."""
        return max(0, self.position() - 1)

    def cancel(self) -> None:
        """Stop at the next token boundary (or never start), keeping what was produced."""
        self._cancel.set()
        self.engine._wake()

    def stop_requested(self) -> bool:
        if self._cancel.is_set():
            return True
        if self.should_stop is not None:
            try:
                return bool(self.should_stop())
            except Exception:  # noqa: BLE001  a broken callback must not stop the engine
                return False
        return False

    def wait(self, timeout: float | None = None) -> bool:
        if not self.engine.inline:
            return self._done.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set() and (deadline is None or time.monotonic() < deadline):
            self._idle(lambda: self._done.is_set(), 0.05)
        return self._done.is_set()

    @property
    def finished_ok(self) -> bool:
        return self.state == DONE

    def _idle(self, ready: Callable[[], bool], seconds: float) -> None:
        """Let the engine work: in inline mode run one of its steps in this thread; else sleep on the
        condition until something changes (or `seconds` pass)."""
        if self.engine._pump():
            return
        with self.engine._cond:
            if not ready():
                self.engine._cond.wait(seconds)

    def _check(self, deadline, timeout) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"generation did not finish within {timeout:.0f} s")

    def frames(self, on_wait: Callable[[int], None] | None = None, timeout: float | None = None):
        """Yields what `snapshot()` returned after each step this ticket took part in (its prefill
        first), every one in order, until it finishes; `on_wait(position)` is called about every
        0.5 s while it waits for room in the batch; raises on an engine error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.engine._cond:
                batch = list(self._frames)
                self._frames.clear()
                state = self.state
                position = self.engine.position(self) if on_wait is not None and state == WAITING else 0
            if batch:
                yield from batch
                continue
            if state in FINISHED:
                if state == ERROR:
                    raise RuntimeError(self.error)
                return
            if position:
                on_wait(position)
            self._check(deadline, timeout)
            self._idle(lambda: bool(self._frames) or self.state in FINISHED, 0.5 if position else 1.0)

    def updates(self, timeout: float | None = None):
        """Yields the step count each time this ticket's rows advanced (steps may be merged when the
        reader is slower than the engine), until it finishes; raises on an engine error."""
        seen = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.engine._cond:
                steps, state = self.steps, self.state
            if steps != seen:
                seen = steps
                yield steps
            if state in FINISHED:
                if state == ERROR:
                    raise RuntimeError(self.error)
                return
            self._check(deadline, timeout)
            self._idle(lambda: self.steps != seen or self.state in FINISHED, 1.0)


# ---------------------------------------------------------------- the engine

class Engine:
    """Continuous batching for one model (see the module docstring). Thread-safe."""

    def __init__(self, model, max_rows: int = MAX_ROWS, max_waiting: int = MAX_WAITING,
                 idle_exit_s: float = IDLE_EXIT_S, inline: bool | None = None):
        from shared.device import on_zerogpu

        self._model = weakref.ref(model)
        # inline: no thread of its own; whoever waits for a ticket runs the engine's steps in its own
        # thread (on ZeroGPU the GPU exists only inside a spaces.GPU call, i.e. inside the caller)
        self.inline = on_zerogpu() if inline is None else bool(inline)
        self._drive = threading.Lock()
        self.max_rows, self.max_waiting, self.idle_exit_s = int(max_rows), int(max_waiting), float(idle_exit_s)
        self._cond = threading.Condition()
        self._waiting: deque[Ticket] = deque()
        self._running: list[Ticket] = []
        self._thread: threading.Thread | None = None
        self.joinable = True  # False for caches that cannot be padded and merged (one ticket at a time)
        self.forwards = 0  # decode forward passes run (for tests and benches)
        self.prefills = 0  # prefill forward passes run (newcomers at one token boundary share one)
        self.reused_tokens = 0  # prompt tokens not computed: their keys and values came from a prompt seen before
        self.max_batch_seen = 0
        self.last_batch = 0
        self._cache = None
        self._mask = None  # (rows, columns) 1 = real token, 0 = left padding
        self._where: dict[tuple[int, int], list[int]] = {}  # (ticket id, stepper index) -> cache rows
        self._steps = threading.RLock()  # held for each step: exclusive() changes the model between steps
        self._merged_once = False  # a prefill cache merged: the model's cache is known to be joinable
        self._prefixes = _Prefixes()

    # --- asked by anyone
    def submit(self, prompt_ids: list[int], steppers: list, should_stop: Callable[[], bool] | None = None,
               label: str = "", snapshot: Callable[[], Any] | None = None, adapter: str | None = None) -> Ticket:
        """Queue `steppers` (all continuing `prompt_ids`); `should_stop()` is asked at every token
        boundary; `snapshot()`, called in the engine's thread after each step of this ticket, feeds
        ticket.frames() (a consistent copy per step for a reader that must not miss one). `adapter`
        names the peft LoRA adapter these rows run with ("__base__": none), so rows of different
        adapters of one model share its forward passes (peft's mixed-adapter batches)."""
        if not prompt_ids:
            raise ValueError("an empty prompt cannot be prefilled")
        ticket = Ticket(self, prompt_ids, steppers, should_stop, label, snapshot, adapter)
        with self._cond:
            if len(self._waiting) >= self.max_waiting:
                raise BatchFull(f"{len(self._waiting)} requests are already waiting for this model; "
                                "try again in a minute.")
            self._waiting.append(ticket)
            if not self.inline and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._loop, daemon=True, name="batching-engine")
                self._thread.start()
            self._cond.notify_all()
        return ticket

    def position(self, ticket: Ticket) -> int:
        with self._cond:
            try:
                return list(self._waiting).index(ticket) + 1
            except ValueError:
                return 0

    def stats(self) -> dict:
        with self._cond:
            return {"running": len(self._running), "waiting": len(self._waiting),
                    "rows": 0 if self._mask is None else int(self._mask.shape[0]), "forwards": self.forwards,
                    "max_batch_seen": self.max_batch_seen, "joinable": self.joinable, "prefills": self.prefills,
                    "reused_tokens": self.reused_tokens}

    @contextmanager
    def exclusive(self):
        """The model to yourself between two steps (e.g. to load or delete a peft adapter); rows wait."""
        with self._steps:
            yield

    def adapters_in_use(self) -> set:
        """The adapters of the rows waiting or running (not to be deleted now)."""
        with self._cond:
            return {t.adapter for t in list(self._waiting) + self._running if t.adapter}

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # --- the engine's thread
    def _loop(self) -> None:
        import torch

        idle_since = time.monotonic()
        while True:
            with self._cond:
                while not self._waiting and not self._running:
                    left = self.idle_exit_s - (time.monotonic() - idle_since)
                    if left <= 0:
                        self._thread = None
                        return
                    self._cond.wait(left)
            model = self._model()
            if model is None:  # the model was unloaded: nothing can run
                self._fail_all("the model was unloaded")
                continue
            try:
                with torch.inference_mode():
                    self._serve(model)
            except Exception as exc:  # noqa: BLE001  a failed step fails its tickets, never the process
                import logging

                logging.getLogger("genai_lab").exception("batching engine step failed")
                self._fail_all(_failure(exc))
            del model
            idle_since = time.monotonic()

    def _fail_all(self, why: str) -> None:
        with self._cond:
            for t in list(self._running) + list(self._waiting):
                t.state, t.error, t.finished = ERROR, why, time.perf_counter()
                t._done.set()
            self._running.clear()
            self._waiting.clear()
            self._cache = self._mask = None
            self._where.clear()
            self._cond.notify_all()

    def _finish(self, ticket: Ticket, state: str) -> None:
        """Called with the condition held."""
        ticket.state, ticket.finished = state, time.perf_counter()
        if ticket in self._running:
            self._running.remove(ticket)
        for i in range(len(ticket.steppers)):
            self._where.pop((ticket.id, i), None)
        ticket._done.set()

    def _serve(self, model) -> None:
        """Steps until nobody is left."""
        while self._tick(model):
            pass

    def _tick(self, model) -> bool:
        """One token boundary and one step; False once nobody is left."""
        with self._steps:
            return self._tick_now(model)

    def _tick_now(self, model) -> bool:
        self._drop_stopped()
        self._admit(model)
        with self._cond:
            if not self._running:
                if not self._waiting:
                    self._cache = self._mask = None
                    return False
                return True
        self._step(model)
        return True

    def _pump(self) -> bool:
        """Inline mode: run one step in the calling thread (one caller at a time); True if it ran."""
        if not self.inline or not self._drive.acquire(timeout=0.05):
            return False
        try:
            import torch

            model = self._model()
            if model is None:
                self._fail_all("the model was unloaded")
                return True
            try:
                with torch.inference_mode():
                    self._tick(model)
            except Exception as exc:  # noqa: BLE001  as in the thread: fail the tickets, not the caller
                import logging

                logging.getLogger("genai_lab").exception("batching engine step failed")
                self._fail_all(_failure(exc))
            del model
            return True
        finally:
            self._drive.release()

    def _drop_stopped(self) -> None:
        with self._cond:
            for t in list(self._waiting):
                if t.stop_requested():
                    self._waiting.remove(t)
                    for st in t.steppers:
                        _stop_stepper(st)
                    self._finish(t, STOPPED)
            for t in list(self._running):
                if t.stop_requested():
                    for st in t.steppers:
                        _stop_stepper(st)
                    self._finish(t, STOPPED)
            self._cond.notify_all()

    def _rows_now(self) -> int:
        return sum(t.rows_needed for t in self._running)

    def _admit(self, model) -> None:
        """Take the waiting tickets the batch has room for, prefill them together in one forward pass and
        merge them into the batch (one at a time until the model's cache is known to merge)."""
        while True:
            newcomers = self._take_newcomers()
            if not newcomers:
                return
            try:
                done = self._prefill_forward(model, newcomers)
            except Exception as exc:  # noqa: BLE001  one bad request fails alone
                if len(newcomers) == 1:
                    self._fail_prefill(newcomers, exc)
                    continue
                for ticket in newcomers:  # which one? each alone, so the others run
                    try:
                        self._prefill_rows(model, [ticket], *self._prefill_forward(model, [ticket]))
                    except Exception as exc:  # noqa: BLE001
                        self._fail_prefill([ticket], exc)
                continue
            try:
                self._prefill_rows(model, newcomers, *done)
            except Exception as exc:  # noqa: BLE001  a stepper failed on its first token
                self._fail_prefill(newcomers, exc)

    def _take_newcomers(self) -> list:
        with self._cond:
            taken: list[Ticket] = []
            width = 0 if self._mask is None else int(self._mask.shape[1])
            busy = self._rows_now()
            while self._waiting:
                ticket = self._waiting[0]
                width = max(width, len(ticket.prompt_ids))
                need = busy + ticket.rows_needed
                if (self._running or taken) and (need > self.max_rows or not self.joinable or not self._merged_once
                                                 or need * width > MAX_CACHE_TOKENS):
                    break
                self._waiting.popleft()
                busy = need
                if not self._running:  # rows left by finished tickets are dropped, not padded to
                    self._cache = self._mask = None
                    self._where.clear()
                ticket.state, ticket.started = RUNNING, time.perf_counter()
                for st in ticket.steppers:  # a stepper's clock starts when it runs, not while it waits
                    if hasattr(st, "start"):
                        st.start = ticket.started
                self._running.append(ticket)
                taken.append(ticket)
            return taken

    def _fail_prefill(self, tickets: list, exc: BaseException) -> None:
        import logging

        logging.getLogger("genai_lab").exception("prefill failed", exc_info=exc)
        with self._cond:
            for ticket in tickets:
                if ticket.state not in FINISHED:
                    ticket.error = _failure(exc)
                    self._finish(ticket, ERROR)
            self._cond.notify_all()

    def _prefill_forward(self, model, tickets: list) -> tuple:
        """One forward pass over the prompts of `tickets` (left-padded to a common length; each row with its
        own positions), reusing the keys and values of a prompt prefix seen before (the shared chat-template
        head of every prompt). Returns (output, cache, mask, where each row's prompt starts in the output)."""
        import torch

        device = model.device
        hidden = [any(getattr(st, "wants_hidden", False) for st in t.steppers) for t in tickets]
        # a stepper that reads the prompt's hidden states (contrastive search) needs them all: no prefix reuse
        reuse = self.joinable and self._merged_once
        if reuse:
            self._prefixes.forget_if_changed(model)
        keys = _effective_adapters(tickets)
        known = [self._prefixes.find(t.prompt_ids, key) if reuse and not h else (0, None)
                 for t, key, h in zip(tickets, keys, hidden)]
        known = _common_reuse(known, [len(t.prompt_ids) for t in tickets])
        if len(tickets) == 1 and not known[0][0]:  # the plain case: one prompt, nothing to reuse
            ids = torch.tensor([tickets[0].prompt_ids], device=device)
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1, output_hidden_states=hidden[0],
                        **_adapter_kwargs([tickets[0].adapter]))
            return out, out.past_key_values, torch.ones_like(ids), [0], known
        from transformers.cache_utils import DynamicCache

        # row r: [padding, its reused prefix | padding, the rest of its prompt]; the mask marks the padding
        plen = [n for n, _ in known]
        slen = [len(t.prompt_ids) - n for t, n in zip(tickets, plen)]
        past, width = max(plen), max(slen)
        pad = self._pad_id(tickets)
        ids = torch.tensor([[pad] * (width - m) + t.prompt_ids[n:] for t, n, m in zip(tickets, plen, slen)],
                           device=device)
        mask = torch.tensor([[0] * (past - n) + [1] * n + [0] * (width - m) + [1] * m for n, m in zip(plen, slen)],
                            device=device)
        kwargs = {}
        if past:
            cache = DynamicCache()
            cache.layers = [_roomy(k, v) for k, v in self._prefixes.stack(known, past)]
            kwargs["past_key_values"] = cache
        out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)[:, past:],
                    use_cache=True, logits_to_keep=1, output_hidden_states=any(hidden),
                    **kwargs, **_adapter_kwargs([t.adapter for t in tickets]))
        return out, out.past_key_values, mask, [width - m for m in slen], known

    def _prefill_rows(self, model, tickets: list, out, cache, mask, cut: list, known: list) -> None:
        """Each ticket's steppers take their first token (a ticket whose stepper fails fails alone); the rows
        that go on join the batch."""
        import logging

        import torch

        hidden = [any(getattr(st, "wants_hidden", False) for st in t.steppers) for t in tickets]
        self.prefills += 1
        self.reused_tokens += sum(n for n, _ in known)
        logits = out.logits[:, -1, :].float()
        last = out.hidden_states[-1] if any(hidden) else None
        failed, frames = {}, {}
        for r, ticket in enumerate(tickets):
            try:
                h = last[r:r + 1, cut[r]:] if hidden[r] else None
                for st in ticket.steppers:
                    for o in st.outs:
                        o.batch_size = max(getattr(o, "batch_size", 1), len(tickets))
                    st.advance(logits[r:r + 1].expand(st.width, -1),
                               None if h is None else h.expand(st.width, -1, -1), len(tickets))
                frames[r] = ticket.snapshot() if ticket.snapshot is not None else None
            except Exception as exc:  # noqa: BLE001  its first token failed: it fails alone
                logging.getLogger("genai_lab").exception("first token failed", exc_info=exc)
                failed[r] = _failure(exc)
        if self.joinable and _mergeable(cache):
            try:
                self._prefixes.remember(model, [(t.prompt_ids, key) for t, key in zip(tickets, _effective_adapters(tickets))],
                                        cache, mask)
            except Exception:  # noqa: BLE001  only a saving for later prompts
                logging.getLogger("genai_lab").exception("keeping the prompts' keys and values failed")
        live = [r for r, t in enumerate(tickets) if r not in failed and any(st.live for st in t.steppers)]
        rows = []
        if live:  # the cache is the engine thread's alone: merged outside the lock, published under it
            if len(live) < len(tickets):
                index = torch.tensor(live, device=mask.device)
                for layer in cache.layers:
                    _hold(layer, layer.keys.index_select(0, index), layer.values.index_select(0, index))
                mask = mask.index_select(0, index)
            rows = self._merge(cache, mask)
        with self._cond:
            for r, ticket in enumerate(tickets):
                if r in failed:
                    ticket.error = failed[r]
                    self._finish(ticket, ERROR)
                    continue
                ticket.steps += 1
                ticket.batch_rows = len(tickets)
                if ticket.snapshot is not None:
                    ticket._frames.append(frames[r])
                if r not in live:
                    self._finish(ticket, DONE)
            for r, row in zip(live, rows):
                for i, st in enumerate(tickets[r].steppers):
                    self._where[tickets[r].id, i] = [row] * st.width
            self._cond.notify_all()

    @staticmethod
    def _pad_id(tickets) -> int:
        for t in tickets:
            for st in t.steppers:
                if getattr(st, "pad", None) is not None:
                    return int(st.pad)
        return 0

    def _merge(self, cache, mask) -> list[int]:
        """Append the rows of a prefill cache (with their mask: 0 = padding) to the batch, left-padding the
        shorter side to a common length; returns the batch rows they became."""
        import torch

        layers = cache.layers
        if not _mergeable(cache):
            self.joinable = False
        if self._cache is None:
            if self.joinable:
                cache.layers = [layer if hasattr(layer, "hold") else _roomy(layer.keys, layer.values) for layer in layers]
                self._merged_once = True
            self._cache, self._mask = cache, mask
            return list(range(mask.shape[0]))
        if not self.joinable:
            raise RuntimeError("this model's cache cannot hold two requests at once")
        old_len, new_len = self._mask.shape[1], mask.shape[1]
        width = max(old_len, new_len)
        merged = [(torch.cat([_left_pad(mine.keys, width - old_len), _left_pad(theirs.keys, width - new_len)], 0),
                   torch.cat([_left_pad(mine.values, width - old_len), _left_pad(theirs.values, width - new_len)], 0))
                  for mine, theirs in zip(self._cache.layers, layers)]  # all built before anything changes
        first = self._mask.shape[0]
        new_mask = torch.cat([_left_pad_mask(self._mask, width - old_len), _left_pad_mask(mask, width - new_len)], 0)
        try:
            for mine, (keys, values) in zip(self._cache.layers, merged):
                mine.hold(keys, values)
        except BaseException:  # out of memory half-way: the layers no longer match the mask
            self._fail_all("generation failed: out of memory while merging a newcomer into the batch")
            raise
        self._mask = new_mask
        return list(range(first, self._mask.shape[0]))

    def _step(self, model) -> None:
        """One forward pass over every live row of every running ticket."""
        import torch

        index, feed, parts, adapters = [], [], [], []
        with self._cond:
            running = list(self._running)
        for t in running:
            for i, st in enumerate(t.steppers):
                if not st.live:
                    continue
                src, tokens = st.rows()
                if not st.live or not len(src):  # it ended while choosing its rows (a row stop)
                    continue
                at = self._where[t.id, i]
                index += [at[r] for r in src]
                adapters += [t.adapter] * len(src)
                feed.append(tokens.reshape(-1))
                parts.append((t, i, st, len(src)))
        if not parts:
            with self._cond:
                for t in running:
                    if not any(st.live for st in t.steppers):
                        self._finish(t, STOPPED if t.stop_requested() else DONE)
                self._cond.notify_all()
            return
        device = model.device
        rows = self._mask.shape[0]
        if index != list(range(rows)):
            self._select(torch.tensor(index, dtype=torch.long, device=device))
        n = len(index)
        mask = torch.cat([self._mask, torch.ones((n, 1), dtype=self._mask.dtype, device=device)], 1)
        padded = bool((self._mask == 0).any())
        hidden_on = any(getattr(st, "wants_hidden", False) for _, _, st, _ in parts)
        kwargs = {}
        if padded:
            kwargs = dict(attention_mask=mask, position_ids=(mask.sum(1, keepdim=True) - 1))
        out = model(input_ids=torch.cat(feed)[:, None], past_key_values=self._cache, use_cache=True,
                    logits_to_keep=1, output_hidden_states=hidden_on, **kwargs, **_adapter_kwargs(adapters))
        self._mask = mask
        logits = out.logits[:, -1, :].float()
        hidden = out.hidden_states[-1] if hidden_on else None
        offset = 0
        for t, i, st, m in parts:
            st.advance(logits[offset:offset + m], None if hidden is None else hidden[offset:offset + m], n)
            self._where[t.id, i] = list(range(offset, offset + m))
            offset += m
        frames = {t.id: t.snapshot() for t in running if t.snapshot is not None and t.state not in FINISHED}
        with self._cond:
            self.forwards += 1
            self.last_batch = n
            self.max_batch_seen = max(self.max_batch_seen, n)
            for t in running:
                if t.state in FINISHED:
                    continue
                t.steps += 1
                t.batch_rows = n
                if t.id in frames:
                    t._frames.append(frames[t.id])
                if not any(st.live for st in t.steppers):
                    self._finish(t, DONE)
            self._cond.notify_all()

    def _select(self, index) -> None:
        """Keep/reorder/repeat cache rows by `index`; trim columns that are padding in every row."""
        self._mask = self._mask.index_select(0, index)
        used = self._mask.any(0).nonzero()  # rows may have holes (a reused prompt prefix), not only left padding
        trim = int(used[0]) if len(used) else 0
        for layer in self._cache.layers:
            keys, values = layer.keys.index_select(0, index), layer.values.index_select(0, index)
            if trim > 0:
                keys, values = keys[:, :, trim:, :], values[:, :, trim:, :]
            _hold(layer, keys, values)
        if trim > 0:
            self._mask = self._mask[:, trim:]



# ---------------------------------------------------------------- the batch's KV cache

CACHE_ROOM = 64  # token columns reserved ahead in the batch's cache: a step writes in place, no torch.cat


@functools.cache
def _roomy_type():
    """The class, built once on first use (transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class Roomy(DynamicLayer):
        """A DynamicLayer that appends each step's keys and values in place, into a buffer with CACHE_ROOM
        columns to spare, instead of concatenating the whole cache per token (transformers' DynamicLayer).
        Same values, same shapes seen by the attention (a view of the buffer); what it saves is a copy of
        every row's cache per layer and step, which at batch 10 on a 2-core CPU cost about a third of a
        step (each copy large enough for the OpenMP team, waking it between the matrix products)."""

        @classmethod
        def holding(cls, keys, values):
            layer = cls()
            layer.dtype, layer.device, layer.is_initialized = keys.dtype, keys.device, True
            layer.hold(keys, values)
            return layer

        def hold(self, keys, values) -> None:
            """Take `keys`/`values` (batch, heads, length, dim) as the cache, with room to grow."""
            b, h, n, d = keys.shape
            self._k = keys.new_empty((b, h, n + CACHE_ROOM, d))
            self._v = values.new_empty((b, values.shape[1], n + CACHE_ROOM, values.shape[3]))
            self._k[:, :, :n].copy_(keys)
            self._v[:, :, :n].copy_(values)
            self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized or self.keys is None:  # after reset()
                self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
                self.hold(key_states, value_states)
                return self.keys, self.values
            n, new = self.keys.shape[-2], key_states.shape[-2]
            if n + new > self._k.shape[-2] or key_states.shape[0] != self._k.shape[0]:
                import torch

                self.hold(torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2))
                return self.keys, self.values
            self._k[:, :, n:n + new].copy_(key_states)
            self._v[:, :, n:n + new].copy_(value_states)
            self.keys, self.values = self._k[:, :, :n + new], self._v[:, :, :n + new]
            return self.keys, self.values

        def batch_select_indices(self, indices) -> None:
            self.hold(self.keys[indices, ...], self.values[indices, ...])

        def batch_repeat_interleave(self, repeats: int) -> None:
            self.hold(self.keys.repeat_interleave(repeats, dim=0), self.values.repeat_interleave(repeats, dim=0))

        def crop(self, tokens_to_remove: int) -> None:
            super().crop(tokens_to_remove)
            self.hold(self.keys, self.values)

    return Roomy


def _roomy(keys, values):
    """A cache layer holding `keys`/`values`, appending in place."""
    return _roomy_type().holding(keys, values)


def _mergeable(cache) -> bool:
    """Plain full-attention layers only: sliding-window and other special caches cannot be padded and merged."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) in (DynamicLayer, _roomy_type()) for layer in layers)



# ---------------------------------------------------------------- prompts seen before

PREFIX_CACHE_BYTES = 64 * 2**20  # keys and values of recent prompts kept per engine
MIN_PREFIX = 8  # shorter shared prefixes are computed again (not worth the bookkeeping)


class _Prefixes:
    """The keys and values of recent prompts (least recently used dropped beyond PREFIX_CACHE_BYTES), so a
    prompt that starts like one seen before (the chat template's system turn heads every chat prompt) is
    prefilled from where they part. Keyed by the tokens and the adapter the rows ran with; emptied when the
    model's parameters change (which tensors, where, their dtype and version counters: a training step, an
    adapter loaded or deleted, weights replaced or cast) or its active adapters do."""

    def __init__(self, max_bytes: int = PREFIX_CACHE_BYTES):
        from collections import OrderedDict

        self.max_bytes = max_bytes
        self.entries: "OrderedDict[tuple, list]" = OrderedDict()  # (adapter, ids) -> [(keys, values)] per layer
        self.bytes = 0
        self._fingerprint = None

    def forget_if_changed(self, model) -> None:
        """Empties the store if the model's parameters changed since it was filled."""
        fingerprint = (tuple((id(p), p.data_ptr(), p.dtype, p._version) for p in model.parameters()),
                       repr(getattr(model, "active_adapters", None)))
        if fingerprint != self._fingerprint:
            self.entries.clear()
            self.bytes, self._fingerprint = 0, fingerprint

    def find(self, ids: list[int], adapter) -> tuple[int, list | None]:
        """(n, keys and values of the first n tokens) for the longest prefix of `ids` (less its last token,
        whose logits the prefill must compute) stored; (0, None) if under MIN_PREFIX."""
        best, entry = 0, None
        for (who, seen), kv in self.entries.items():
            if who != adapter:
                continue
            n = _common_prefix(seen, ids, len(ids) - 1)
            if n > best:
                best, entry = n, (who, seen)
        if best < MIN_PREFIX:
            return 0, None
        self.entries.move_to_end(entry)
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in self.entries[entry]]

    def stack(self, known: list, past: int) -> list:
        """Per layer, the rows' reused keys and values left-padded to `past` columns (zeros for a row that
        reuses nothing)."""
        import torch

        sample = next(kv for n, kv in known if n)
        out = []
        for layer, (k0, v0) in enumerate(sample):
            ks, vs = [], []
            for n, kv in known:
                if n:
                    ks.append(_left_pad(kv[layer][0], past - n))
                    vs.append(_left_pad(kv[layer][1], past - n))
                else:
                    ks.append(k0.new_zeros(1, k0.shape[1], past, k0.shape[3]))
                    vs.append(v0.new_zeros(1, v0.shape[1], past, v0.shape[3]))
            out.append((torch.cat(ks, 0), torch.cat(vs, 0)))
        return out

    def remember(self, model, prompts: list, cache, mask) -> None:
        """Store each row's prompt keys and values (its real columns) unless that prompt is stored already."""
        self.forget_if_changed(model)
        for r, (ids, adapter) in enumerate(prompts):
            key = (adapter, tuple(ids))
            if key in self.entries or len(ids) <= MIN_PREFIX:
                continue
            real = mask[r].nonzero().squeeze(1)
            kv = [(layer.keys[r:r + 1].index_select(2, real), layer.values[r:r + 1].index_select(2, real))
                  for layer in cache.layers]
            size = sum(k.nelement() * k.element_size() + v.nelement() * v.element_size() for k, v in kv)
            if size > self.max_bytes:
                continue
            self.entries[key] = kv
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self.entries.popitem(last=False)
                self.bytes -= sum(k.nelement() * k.element_size() + v.nelement() * v.element_size() for k, v in old)


def _effective_adapters(tickets) -> list:
    """The adapter each ticket's rows run with in this forward pass (see _adapter_kwargs): no adapter is the
    base model in a batch where another row names one, else the model as loaded."""
    mixed = any(t.adapter for t in tickets)
    return [t.adapter or ("__base__" if mixed else None) for t in tickets]


def _common_reuse(known: list, lengths: list) -> list:
    """One reuse length P for a shared prefill, the one that keeps the rows narrowest: each row reuses
    min(its prefix, P) and computes the rest, so the cache is P + the longest rest wide (never wider than the
    longest prompt: P = 0 is a candidate) and no row carries a hole wider than it saves."""
    if not any(n for n, _ in known):
        return known
    best = min({0} | {n for n, _ in known},
               key=lambda p: (p + max(m - min(n, p) for (n, _), m in zip(known, lengths)), -p))
    out = []
    for n, kv in known:
        keep = min(n, best)
        out.append((keep, [(k[:, :, :keep], v[:, :, :keep]) for k, v in kv]) if keep else (0, None))
    return out


def _common_prefix(a, b, limit: int) -> int:
    n = 0
    for x, y in zip(a, b):
        if n >= limit or x != y:
            break
        n += 1
    return n


def _hold(layer, keys, values) -> None:
    if hasattr(layer, "hold"):
        layer.hold(keys, values)
    else:
        layer.keys, layer.values = keys, values


def _failure(exc: BaseException) -> str:
    """The one line a failed request reports."""
    return f"generation failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def _adapter_kwargs(adapters: list) -> dict:
    """peft's per-row adapter names, when any row asked for one ("__base__" runs without LoRA)."""
    if not any(adapters):
        return {}
    return {"adapter_names": [a or "__base__" for a in adapters]}


def _stop_stepper(st) -> None:
    stop = getattr(st, "stop_all", None)
    if stop is not None:
        stop()
    else:
        st.live = False


def _left_pad(x, n: int):
    if n <= 0:
        return x
    import torch

    return torch.cat([x.new_zeros(x.shape[0], x.shape[1], n, x.shape[3]), x], dim=2)


def _left_pad_mask(mask, n: int):
    if n <= 0:
        return mask
    import torch

    return torch.cat([mask.new_zeros(mask.shape[0], n), mask], dim=1)


# ---------------------------------------------------------------- one engine per model

_engines: "weakref.WeakKeyDictionary[Any, Engine]" = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


def engine_for(model) -> Engine:
    """The process's engine for `model` (made on first use; forgotten with the model)."""
    with _engines_lock:
        engine = _engines.get(model)
        if engine is None:
            engine = _engines[model] = Engine(model)
        return engine


def submit(model, prompt_ids: list[int], sampling: Sampling | None = None, max_new_tokens: int = 64,
           eos: list[int] | None = None, should_stop: Callable[[], bool] | None = None,
           top_alternatives: int = TOP_ALTERNATIVES, label: str = "", adapter: str | None = None) -> Ticket:
    """One row (greedy by default) in the model's shared batch; ticket.outs[0] fills as it runs.
    `adapter`: the peft adapter the row runs with ("__base__": none), see Engine.submit."""
    rows = Rows(prompt_ids, [sampling or Sampling()], max_new_tokens, eos if eos is not None else eos_ids(model),
                model.device, top_alternatives=top_alternatives)
    return engine_for(model).submit(prompt_ids, [rows], should_stop=should_stop, label=label, adapter=adapter)


def generate(model, prompt_ids: list[int], sampling: Sampling | None = None, max_new_tokens: int = 64,
             eos: list[int] | None = None, should_stop: Callable[[], bool] | None = None,
             top_alternatives: int = TOP_ALTERNATIVES, timeout: float | None = None) -> Generation:
    """submit() and wait: the finished (or stopped) Generation."""
    ticket = submit(model, prompt_ids, sampling, max_new_tokens, eos, should_stop, top_alternatives)
    for _ in ticket.updates(timeout):
        pass
    return ticket.outs[0]


def stream_text(model, tokenizer, prompt_ids: list[int], sampling: Sampling | None = None,
                max_new_tokens: int = 64, should_stop: Callable[[], bool] | None = None,
                on_wait: Callable[[int], None] | None = None):
    """Text pieces as the shared batch writes them (special tokens skipped; a piece that would end in
    the middle of a multi-byte character waits for the next token). `on_wait(n)` hears its place in
    line (1 = next) while it waits for room in the batch."""
    ticket = submit(model, prompt_ids, sampling, max_new_tokens, eos_ids(model, tokenizer), should_stop,
                    top_alternatives=0)
    if on_wait is not None:
        n = ticket.position()
        while n and not ticket.wait(0.25):
            on_wait(n)
            n = ticket.position()
    out = ticket.outs[0]
    shown = ""
    try:
        for _ in ticket.updates():
            text = tokenizer.decode(out.ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                continue
            if len(text) > len(shown) and text.startswith(shown):
                yield text[len(shown):]
                shown = text
        text = tokenizer.decode(out.ids, skip_special_tokens=True)
        if len(text) > len(shown) and text.startswith(shown):
            yield text[len(shown):]
    finally:
        if ticket.state not in FINISHED:  # the reader went away: free the row
            ticket.cancel()


# ---------------------------------------------------------------- an OpenAI-compatible endpoint instead

ENDPOINT_LIMITS = {
    "probabilities": "each token's probability and the top alternatives (only where the server returns "
                     "logprobs/top_logprobs: vLLM, TGI and llama.cpp do; Ollama and many hosted APIs do not)",
    "pipeline": "the logits pipeline of a step (the processors run inside the server)",
    "branch": "branching from the server's own state (a branch is a new request with the kept text as prompt)",
    "beam": "beam search (not in the OpenAI protocol)",
    "contrastive": "contrastive search (not in the OpenAI protocol)",
}


def endpoint_generate(url: str, prompt=None, messages=None, model: str = "", sampling: Sampling | None = None,
                      max_new_tokens: int = 64, top_alternatives: int = TOP_ALTERNATIVES, api_key: str = "",
                      timeout: float = 60.0) -> Generation:
    """One generation by an OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama, ...): a plain
    `prompt` goes to /v1/completions, `messages` to /v1/chat/completions, asking for
    log-probabilities. Returns a Generation with `text`; `ids` stay empty (the server's token ids
    are not in the protocol), `probs`/`top_probs` hold what the server returned and
    `views_missing` what it did not. Raises UserError with one clear line on any failure."""
    import json
    import math
    import urllib.error
    import urllib.request

    s = sampling or Sampling()
    base = (url or "").strip().rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    if not base.startswith(("http://", "https://")):
        raise UserError("The endpoint URL must start with http:// or https:// (e.g. http://localhost:8000/v1).")
    if not base.endswith("/v1"):
        base += "/v1"
    body: dict = {"max_tokens": int(max_new_tokens), "temperature": float(s.temperature) if s.do_sample else 0.0,
                  "seed": int(s.seed)}
    if model:
        body["model"] = model
    if s.do_sample:
        if s.top_p < 1.0:
            body["top_p"] = float(s.top_p)
        if s.top_k:
            body["top_k"] = int(s.top_k)  # vLLM / llama.cpp extension
        if s.min_p > 0:
            body["min_p"] = float(s.min_p)  # vLLM / llama.cpp extension
    if s.repetition_penalty != 1.0:
        body["repetition_penalty"] = float(s.repetition_penalty)  # vLLM / TGI extension
    if messages is not None:
        path = "/chat/completions"
        body.update(messages=list(messages), logprobs=True, top_logprobs=int(top_alternatives))
    elif isinstance(prompt, str) and prompt:
        path = "/completions"
        body.update(prompt=prompt, logprobs=int(top_alternatives))
    else:
        raise UserError("Give a prompt (text) or chat messages for the endpoint.")
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:200]
        raise UserError(f"The endpoint {base} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise UserError(f"The endpoint {base} did not answer ({type(exc).__name__}: "
                        f"{getattr(exc, 'reason', exc)}). Is the server running?") from exc
    except ValueError as exc:
        raise UserError(f"The endpoint {base} did not answer with JSON.") from exc
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError) as exc:
        raise UserError(f"The endpoint {base} answered without choices: {str(data)[:200]}") from exc
    gen = Generation(prompt_ids=[], seconds=time.perf_counter() - start, done=True)
    gen.text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
    gen.stop_reason = {"stop": "end of text", "length": "max_new_tokens"}.get(choice.get("finish_reason"),
                                                                               str(choice.get("finish_reason") or ""))
    lp = choice.get("logprobs") or {}
    tokens: list[str] = []
    if isinstance(lp, dict) and isinstance(lp.get("content"), list):  # chat: [{token, logprob, top_logprobs}]
        for item in lp["content"]:
            tokens.append(item.get("token", ""))
            gen.probs.append(math.exp(item.get("logprob", -math.inf)))
            tops = item.get("top_logprobs") or []
            gen.top_probs.append([math.exp(t.get("logprob", -math.inf)) for t in tops])
            gen.top_ids.append([t.get("token", "") for t in tops])
    elif isinstance(lp, dict) and isinstance(lp.get("tokens"), list):  # completions: parallel lists
        tokens = list(lp["tokens"])
        gen.probs = [math.exp(x) if x is not None else float("nan") for x in lp.get("token_logprobs") or []]
        for tops in lp.get("top_logprobs") or []:
            pairs = sorted((tops or {}).items(), key=lambda kv: -kv[1])
            gen.top_probs.append([math.exp(v) for _, v in pairs])
            gen.top_ids.append([k for k, _ in pairs])
    gen.tokens = tokens
    gen.views_missing = [] if gen.probs else [ENDPOINT_LIMITS["probabilities"]]
    gen.views_missing += [ENDPOINT_LIMITS[k] for k in ("pipeline", "branch", "beam", "contrastive")]
    return gen
