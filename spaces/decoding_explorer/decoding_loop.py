"""The explorer's own decoding loop: every strategy, with the probability and the top
alternatives of each generated token recorded as it goes.

Every strategy of a run, and every run of every user of this process, shares ONE forward pass per
step: a run's strategies are "steppers" handed to the model's continuous-batching engine
(shared.batching). The prompt is prefilled once (batch 1) when the run joins the batch at a token
boundary; its cache row is merged into the running batch (left padding, attention mask, position
ids: other users' rows do not change what it computes beyond float rounding); then at each step
each live stepper says which rows of the previous step's output its rows continue from and which
token each row feeds; the shared cache is reordered once with the concatenated index, one forward
runs over all rows of all runs, and each stepper gets its slice of the logits:

- greedy and sampling strategies (`BatchRows`): one row each, with its own logits processors and
  its own torch.Generator seeded with the run's seed, so each row draws exactly what
  `torch.manual_seed(seed); model.generate(do_sample=True, ...)` draws for that strategy alone;
- beam search (`BeamStepper`): `num_beams` rows, reordered by the beam indices as generate's
  `cache.reorder_cache` does; it follows transformers 5.23's vectorised beam search step by step
  (same top-2k candidates, same finished-beam bookkeeping, same early-stop heuristic, same length
  penalty), so its output equals `model.generate(num_beams=...)` token for token; its per-token
  probabilities come from one teacher-forced pass at the end;
- contrastive search (`ContrastiveStepper`; removed from transformers core in 4.56) is implemented
  here: `k` copies of its kept row feed its top-k candidates, each scored by
  (1-alpha) * p - alpha * max cosine similarity to the context (the forward then also returns the
  last hidden states).

A strategy that finishes drops its rows. Per step only a handful of numbers leave the device.
A run waits in line (its place is reported) while the batch is full (shared.batching.MAX_ROWS).
torch is imported inside the functions so importing this module is cheap."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from decoding_strategies import (MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS, PIPELINE_TOKENS, TOP_ALTERNATIVES, Strategy,
                                 processors)
from shared import batching
from shared.errors import UserError

STOPPED = "Stop button"  # the stop reason of a run the user stopped ("stopped by" column)


class PromptError(UserError, ValueError):
    """A prompt or a choice of strategies we cannot run; the message is for the user."""


@dataclass
class Output:
    """One strategy's generation and what the model thought of each token."""
    strategy: Strategy
    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)  # generated token ids (the EOS token included if produced)
    probs: list[float] = field(default_factory=list)  # model probability of each token (softmax of raw logits)
    picked_probs: list[float] = field(default_factory=list)  # probability after the strategy's processors
    top_ids: list[list[int]] = field(default_factory=list)  # model's top alternatives at each step
    top_probs: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0
    done: bool = False
    stop_reason: str = ""
    batch_size: int = 1  # rows that shared the forward passes
    branched_at: int | None = None

    @property
    def tokens_per_s(self) -> float:
        return len(self.ids) / self.seconds if self.seconds > 0 else 0.0

    @property
    def scored(self) -> bool:
        return len(self.probs) == len(self.ids)

    @property
    def stopped(self) -> bool:
        return self.stop_reason == STOPPED


# ---------------------------------------------------------------- prompt

def context_limit(model) -> int:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def encode_prompt(tokenizer, prompt, chat_template: bool, max_new_tokens: int, limit: int) -> tuple[list[int], list[str]]:
    """Token ids for `prompt` (with the chat template when asked and available), cut to fit the
    model's context; notes say what was changed."""
    if not isinstance(prompt, str):
        raise PromptError("The prompt must be text.")
    if not prompt.strip():
        raise PromptError("The prompt is empty: type something for the model to continue.")
    notes = []
    if len(prompt) > MAX_PROMPT_CHARS:
        notes.append(f"The prompt has {len(prompt):,} characters; only its last {MAX_PROMPT_CHARS:,} were read.")
        prompt = prompt[-MAX_PROMPT_CHARS:]
    if chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        if chat_template:
            notes.append("This model has no chat template; the prompt is used as plain text.")
        ids = tokenizer(prompt)["input_ids"]
    keep = max(8, min(MAX_PROMPT_TOKENS, limit - max_new_tokens))
    if len(ids) > keep:
        notes.append(f"The prompt is {len(ids):,} tokens; kept its last {keep:,} so that prompt + "
                     f"{max_new_tokens} new tokens fit (context {limit:,}, lab limit {MAX_PROMPT_TOKENS:,}).")
        ids = ids[-keep:]
    if not ids:
        raise PromptError("The prompt produced no tokens.")
    return list(ids), notes


def eos_ids(model, tokenizer) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


# ---------------------------------------------------------------- steppers: one per strategy kind
#
# A stepper holds the state of one strategy kind between forward passes. The driver
# (`iter_compare`) asks every live stepper for `rows()`: which rows of the stepper's slice of the
# previous forward's output each of its next rows continues from (local indices), and the token
# each row feeds. After the one shared forward it hands each stepper its slice of the logits (and
# of the last hidden states) through `advance(logits, hidden, batch)`. For the prefill, which runs
# once at batch 1, a stepper's slice is `width` copies of that one row. A stepper that has finished
# sets `live = False` and takes no further rows.

class BatchRows:
    """Greedy and sampling strategies, one row each: each row has its own logits processors and its
    own torch.Generator seeded with the run's seed, so each row draws exactly what
    `torch.manual_seed(seed); model.generate(do_sample=True, ...)` draws for that strategy alone."""

    wants_hidden = False

    def __init__(self, prompt_ids: list[int], strategies: list[Strategy], max_new_tokens: int, seed: int,
                 eos: list[int], device, start: float):
        import torch

        n = len(strategies)
        self.outs = [Output(s, list(prompt_ids)) for s in strategies]
        self.procs = [[p for _, p in processors(s)] for s in strategies]
        self.gens = [torch.Generator(device=device).manual_seed(seed) if s.do_sample else None for s in strategies]
        self.eos_t = torch.tensor(eos or [-1], device=device)
        self.pad = eos[0] if eos else 0
        self.ids = torch.tensor([prompt_ids], device=device).expand(n, -1)  # every row's text so far
        self.alive = [True] * n
        self.fed = list(range(n))  # the strategy row behind each row of the slice advance() gets
        self.tokens = None  # the tokens picked by the last advance(), one per row of its slice
        self.max_new_tokens, self.device, self.start = max_new_tokens, device, start
        self.width = self.max_rows = n
        self.live = True

    def rows(self):
        src = [j for j, i in enumerate(self.fed) if self.alive[i]]
        self.fed = [self.fed[j] for j in src]
        return src, self.tokens[src]

    def advance(self, logits, hidden, batch: int) -> None:
        import torch

        fed, k = self.fed, TOP_ALTERNATIVES
        logp, tokens, picked_p = batching.pick_rows(logits, fed, self.ids, self.procs, self.gens)
        top_p, top_i = logp.topk(k, dim=-1)
        chosen = logp.gather(1, tokens[:, None])
        summary = torch.cat([tokens[:, None].float(), chosen.exp(), torch.stack(picked_p).view(len(fed), 1),
                             top_p.exp(), top_i.float(), torch.isin(tokens, self.eos_t)[:, None].float()], 1).tolist()
        now = time.perf_counter() - self.start
        for i, row in zip(fed, summary):
            o = self.outs[i]
            o.ids.append(int(row[0]))
            o.probs.append(row[1])
            o.picked_probs.append(row[2])
            o.top_probs.append(row[3:3 + k])
            o.top_ids.append([int(t) for t in row[3 + k:3 + 2 * k]])
            o.seconds = now
            o.batch_size = max(o.batch_size, batch)
            if row[-1]:
                self.alive[i], o.done, o.stop_reason = False, True, "end of text"
        column = torch.full((len(self.outs),), self.pad, dtype=self.ids.dtype, device=self.device)
        column[fed] = tokens
        self.ids = torch.cat([self.ids, column[:, None]], dim=1)
        self.tokens = tokens
        if not any(self.alive) or len(self.outs[fed[0]].ids) >= self.max_new_tokens:
            self.live = False
            for o in self.outs:
                if not o.done:
                    o.done, o.stop_reason = True, "max_new_tokens"
                o.seconds = max(o.seconds, 1e-9)


def _gather(tensor, indices):
    """tensor[:, indices, ...] per batch row (transformers' _gather_beams)."""
    import torch

    while indices.dim() < tensor.dim():
        indices = indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, indices, dim=1)


class BeamStepper:
    """Beam search, step for step as transformers 5.23 `_beam_search` does it (batch of one,
    early_stopping=False): `num_beams` rows. Its Output holds the current best running beam while
    it runs; at the end, the best finished beam with its probabilities (one teacher-forced pass)."""

    wants_hidden = False

    def __init__(self, model, prompt_ids: list[int], strategy: Strategy, max_new_tokens: int, eos: list[int],
                 pad_token_id: int | None, start: float):
        import torch

        s = strategy
        device = model.device
        nb = s.num_beams
        self.model, self.s, self.nb, self.eos, self.start = model, s, nb, eos, start
        self.out = Output(s, list(prompt_ids))
        self.outs = [self.out]
        self.procs = [p for _, p in processors(s)]
        self.prompt_len = prompt_len = len(prompt_ids)
        self.max_length = prompt_len + max_new_tokens
        self.eos_t = torch.tensor(eos, device=device) if eos else None
        self.beams_to_keep = max(2, 1 + len(eos)) * nb
        self.top_mask = torch.cat([torch.ones(nb, dtype=torch.bool),
                                   torch.zeros(self.beams_to_keep - nb, dtype=torch.bool)]).to(device)
        fill = (pad_token_id or eos[0]) if eos else -1
        self.running = torch.full((1, nb, self.max_length), fill, dtype=torch.int64, device=device)
        self.running[:, :, :prompt_len] = torch.tensor(prompt_ids, device=device)
        self.sequences = self.running.clone()
        self.running_scores = torch.zeros((1, nb), device=device)
        self.running_scores[:, 1:] = -1e9
        self.beam_scores = torch.full((1, nb), -1e9, device=device)
        self.finished = torch.zeros((1, nb), dtype=torch.bool, device=device)
        self.unsatisfied = torch.ones((1, 1), dtype=torch.bool, device=device)
        self.running_idx = torch.full((1, nb, max_new_tokens), -1, dtype=torch.int32, device=device)
        self.beam_idx_all = self.running_idx.clone()
        self.cur_len = prompt_len
        self.source = None  # the beam each running beam continues (generate's cache.reorder_cache index)
        self.width = self.max_rows = nb
        self.live = True

    def rows(self):
        return self.source.tolist(), self.running[0, :, self.cur_len - 1]

    def advance(self, logits, hidden, batch: int) -> None:
        import torch

        s, nb, prompt_len, cur_len = self.s, self.nb, self.prompt_len, self.cur_len
        self.out.batch_size = max(self.out.batch_size, batch)
        flat = self.running[0, :, :cur_len]
        vocab = logits.shape[-1]
        log_probs = torch.log_softmax(logits, dim=-1)
        for proc in self.procs:
            log_probs = proc(flat, log_probs)
        log_probs = (log_probs.view(1, nb, vocab) + self.running_scores[:, :, None]).reshape(1, -1)
        # c. top 2k continuations over all beams
        topk_log_probs, topk_indices = torch.topk(log_probs, k=self.beams_to_keep)
        topk_beam = topk_indices // vocab
        topk_running_idx = _gather(self.running_idx, topk_beam)
        topk_running = _gather(self.running, topk_beam)
        topk_ids = topk_indices % vocab
        topk_running[:, :, cur_len] = topk_ids
        topk_running_idx[:, :, cur_len - prompt_len] = topk_beam.to(torch.int32)
        # d. which candidates hit a stopping criterion (max length, EOS)
        hits = torch.full_like(topk_ids, cur_len + 1 >= self.max_length, dtype=torch.bool)
        if self.eos_t is not None:
            hits = hits | torch.isin(topk_ids, self.eos_t)
        # e. the best num_beams unfinished candidates keep running
        masked = topk_log_probs + hits.to(torch.float32) * -1.0e9
        keep = torch.topk(masked, k=nb)[1]
        self.running = _gather(topk_running, keep)
        self.running_scores = _gather(masked, keep)
        self.running_idx = _gather(topk_running_idx, keep)
        # f. finished candidates among the top num_beams compete with earlier finished beams
        just_finished = hits & self.top_mask[None, :]
        scored = topk_log_probs / ((cur_len + 1 - prompt_len) ** s.length_penalty)
        scored = scored + (~self.unsatisfied).to(torch.float32) * -1.0e9
        scored = scored + (~just_finished) * -1.0e9
        merged_seq = torch.cat((self.sequences, topk_running), dim=1)
        merged_scores = torch.cat((self.beam_scores, scored), dim=1)
        merged_idx = torch.cat((self.beam_idx_all, topk_running_idx), dim=1)
        merged_fin = torch.cat((self.finished, just_finished), dim=1)
        best = torch.topk(merged_scores, k=nb)[1]
        self.sequences = _gather(merged_seq, best)
        self.beam_scores = _gather(merged_scores, best)
        self.beam_idx_all = _gather(merged_idx, best)
        self.finished = _gather(merged_fin, best)
        # g. the cache rows of the surviving beams (the driver reorders), early-stop heuristic
        self.source = self.running_idx[0, :, cur_len - prompt_len].to(torch.long)
        self.cur_len = cur_len = cur_len + 1
        best_possible = self.running_scores[:, :1] / ((cur_len - prompt_len) ** s.length_penalty)
        worst_finished = torch.where(self.finished, torch.min(self.beam_scores, dim=1, keepdim=True)[0], -1.0e9)
        self.unsatisfied = self.unsatisfied & torch.any(best_possible > worst_finished, dim=-1, keepdim=True)
        go_on = bool(torch.any(self.unsatisfied)) and not bool(torch.all(hits))
        self.out.ids = self.running[0, 0, prompt_len:cur_len].tolist()
        self.out.seconds = time.perf_counter() - self.start
        if not go_on:
            self._finish()

    def _finish(self) -> None:
        out = self.out
        generated = int(((self.beam_idx_all[0, 0] + 1) != 0).sum())
        out.ids = self.sequences[0, 0, self.prompt_len:self.prompt_len + generated].tolist()
        out.seconds = time.perf_counter() - self.start
        out.done = True
        out.stop_reason = "end of text" if out.ids and out.ids[-1] in self.eos else "max_new_tokens"
        score_tokens(self.model, out)  # probabilities under the model, by one teacher-forced pass
        self.live = False


class ContrastiveStepper:
    """Contrastive search (Su et al. 2022), as transformers <= 4.55 ran it: at each step the top-k
    candidates are fed through the model together (k rows continuing the selected row); each is
    scored (1 - alpha) * p(candidate) - alpha * max cosine similarity between its last hidden state
    and those of the context; the best one is kept with its cache row. Its token of step t is
    therefore known only after the forward pass that feeds the candidates of step t."""

    wants_hidden = True

    def __init__(self, prompt_ids: list[int], strategy: Strategy, max_new_tokens: int, eos: list[int], device,
                 start: float):
        import torch

        s = strategy
        self.out = Output(s, list(prompt_ids))
        self.outs = [self.out]
        self.procs = [p for _, p in processors(s)]
        self.alpha, self.k = s.penalty_alpha, max(1, s.contrastive_k)
        self.ids = torch.tensor([prompt_ids], device=device)
        self.context = None  # normalised last hidden states of the text so far
        self.best = 0  # row of the kept candidate in the slice advance() got
        self.max_new_tokens, self.eos, self.start = max_new_tokens, eos, start
        self.width, self.max_rows = 1, self.k
        self.live = True

    def rows(self):
        return [self.best] * self.k, self.cand_i.view(self.k)

    def _candidates(self, logits) -> None:
        import torch

        self.logp = torch.log_softmax(logits, dim=-1)
        scores = logits
        for proc in self.procs:
            scores = proc(self.ids, scores)
        probs = torch.softmax(scores, dim=-1)
        self.cand_p, self.cand_i = probs.topk(self.k, dim=-1)  # (1, k)

    def advance(self, logits, hidden, batch: int) -> None:
        import torch

        out = self.out
        out.batch_size = max(out.batch_size, batch)
        if self.context is None:  # the prefill: the prompt's hidden states are the first context
            context = hidden[0]  # (len, hidden)
            self.context = context / context.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            self._candidates(logits[:1])
            return
        h = hidden[:, -1, :]  # (k, hidden)
        h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        degeneration = (h @ self.context.T).max(dim=-1).values  # (k,)
        score = (1.0 - self.alpha) * self.cand_p[0] - self.alpha * degeneration
        best = int(torch.argmax(score))
        token = self.cand_i[0, best]
        self.context = torch.cat([self.context, h[best:best + 1]], dim=0)
        top_p, top_i = self.logp.topk(TOP_ALTERNATIVES, dim=-1)
        out.ids.append(int(token))
        out.probs.append(float(self.logp[0, token].exp()))
        out.picked_probs.append(float(self.cand_p[0, best]))
        out.top_probs.append(top_p.exp()[0].tolist())
        out.top_ids.append(top_i[0].tolist())
        out.seconds = time.perf_counter() - self.start
        if int(token) in self.eos or len(out.ids) >= self.max_new_tokens:
            out.done, self.live = True, False
            out.stop_reason = "end of text" if int(token) in self.eos else "max_new_tokens"
            out.seconds = max(out.seconds, 1e-9)
            return
        self.ids = torch.cat([self.ids, token.view(1, 1)], dim=1)
        self.best = best
        self._candidates(logits[best:best + 1])


def score_tokens(model, out: Output) -> Output:
    """Fill probs/top alternatives of `out.ids` with one forward pass over prompt + output."""
    import torch

    n = len(out.ids)
    if n == 0:
        return out
    with torch.inference_mode():
        full = torch.tensor([out.prompt_ids + out.ids], device=model.device)
        logits = model(input_ids=full, use_cache=False, logits_to_keep=n + 1).logits[0, :n].float()
        logp = torch.log_softmax(logits, dim=-1)
        chosen = logp.gather(1, full[0, -n:, None]).exp()[:, 0]
        top_p, top_i = logp.topk(TOP_ALTERNATIVES, dim=-1)
        out.probs = chosen.tolist()
        out.top_probs = top_p.exp().tolist()
        out.top_ids = top_i.tolist()
    if len(out.picked_probs) != n:
        out.picked_probs = list(out.probs)
    return out


# ---------------------------------------------------------------- all strategies of one run

def iter_compare(model, tokenizer, prompt_ids: list[int], strategies: list[Strategy], max_new_tokens: int,
                 seed: int, should_stop=None, on_wait=None):
    """Run every strategy; yields the list of Outputs (in the order of `strategies`) after each step.

    The strategies become steppers in the model's shared batch (shared.batching): the prompt is
    prefilled once (batch 1) when the run joins; then each live stepper says which rows of the
    previous output its rows continue from and which token each feeds; the engine reorders the
    shared KV cache once with the concatenated index of every run in the batch (rows may repeat:
    beams that split, contrastive candidates), one forward runs over all rows, and each stepper
    gets its slice of the logits (and last hidden states when contrastive search runs).

    Each yield is a consistent copy of that step's Outputs (none is skipped, whatever the reader's
    pace). `should_stop()` (a job's stop request) ends the run at the next token boundary; closing
    the generator does too. `on_wait(position)` hears the run's place in line while the batch is
    full (1 = next)."""
    eos = eos_ids(model, tokenizer)
    pad = getattr(model.generation_config, "pad_token_id", None)
    device = model.device
    start = time.perf_counter()
    steppers, slots = [], [None] * len(strategies)
    batch = [i for i, s in enumerate(strategies) if s.mode in ("greedy", "sample")]
    if batch:
        rows = BatchRows(prompt_ids, [strategies[i] for i in batch], max_new_tokens, seed, eos, device, start)
        steppers.append(rows)
        for j, i in enumerate(batch):
            slots[i] = (rows, j)
    for i, s in enumerate(strategies):
        if s.mode == "beam":
            stepper = BeamStepper(model, prompt_ids, s, max_new_tokens, eos, pad, start)
        elif s.mode == "contrastive":
            stepper = ContrastiveStepper(prompt_ids, s, max_new_tokens, eos, device, start)
        else:
            continue
        steppers.append(stepper)
        slots[i] = (stepper, 0)

    def snapshot():
        return [copy_output(stepper.outs[j]) for stepper, j in slots]

    ticket = batching.engine_for(model).submit(prompt_ids, steppers, should_stop=should_stop, snapshot=snapshot,
                                               label="decoding explorer")
    try:
        yield from ticket.frames(on_wait=on_wait)
    finally:
        if ticket.state not in batching.FINISHED:  # the reader went away: the run leaves the batch
            ticket.cancel()
            ticket.wait(60)


def copy_output(out: Output) -> Output:
    """A copy of `out` whose lists the engine no longer appends to."""
    return dataclasses.replace(out, prompt_ids=list(out.prompt_ids), ids=list(out.ids), probs=list(out.probs),
                               picked_probs=list(out.picked_probs), top_ids=list(out.top_ids),
                               top_probs=list(out.top_probs))


def finish_stopped(model, outputs: list[Output]) -> list[Output]:
    """A run stopped part-way: every unfinished output is marked stopped and keeps what it produced,
    scored like a finished one (beam search's running best beam gets its probabilities from one
    teacher-forced pass), so that it can be inspected and branched like any other."""
    for out in outputs:
        if out.done:
            continue
        out.done, out.stop_reason = True, STOPPED
        out.seconds = max(out.seconds, 1e-9)
        if not out.scored:
            score_tokens(model, out)
    return outputs


def compare(model, tokenizer, prompt_ids, strategies, max_new_tokens, seed) -> list[Output]:
    last = []
    for last in iter_compare(model, tokenizer, prompt_ids, strategies, max_new_tokens, seed):
        pass
    return last


def continue_from(model, tokenizer, output: Output, step: int, token_id: int, max_new_tokens: int,
                  seed: int) -> Output:
    """Branch: keep output's first `step` tokens, force `token_id` at position `step`, and let the
    same strategy continue (same seed) up to the same total length."""
    if not 0 <= step <= len(output.ids):
        raise IndexError(f"step {step} is outside the output (0..{len(output.ids)}).")
    kept = output.ids[:step] + [int(token_id)]
    eos = eos_ids(model, tokenizer)
    remaining = max(0, max_new_tokens - len(kept))
    branch = Output(output.strategy, list(output.prompt_ids), branched_at=step)
    tail = Output(output.strategy, output.prompt_ids + kept)
    if remaining and int(token_id) not in eos:
        tail = compare(model, tokenizer, output.prompt_ids + kept, [output.strategy], remaining, seed)[0]
    branch.ids = kept + tail.ids
    branch.seconds = tail.seconds
    branch.done, branch.stop_reason = True, tail.stop_reason or "end of text"
    score_tokens(model, branch)
    branch.picked_probs = output.picked_probs[:step] + [float("nan")] + (tail.picked_probs or tail.probs)
    return branch


# ---------------------------------------------------------------- logits pipeline of one step

def pipeline(model, prefix_ids: list[int], strategy: Strategy, top_n: int = PIPELINE_TOKENS) -> dict:
    """The next-token distribution after each processing stage, for the step that follows
    `prefix_ids`: {"token_ids": [...], "stages": [{"stage", "kept", "probs"}]}.

    Tokens shown: the top_n of the raw distribution plus the final stage's top tokens."""
    import torch

    with torch.inference_mode():
        ids = torch.tensor([prefix_ids], device=model.device)
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1, :].float()
        stages = [("raw (softmax of logits)", logits)]
        scores = logits
        if strategy.mode == "beam":
            scores = torch.log_softmax(logits, dim=-1)
        for label, proc in processors(strategy):
            scores = proc(ids, scores)
            stages.append((label, scores))
        probs = [torch.softmax(sc, dim=-1)[0] for _, sc in stages]
        shown = probs[0].topk(top_n).indices.tolist()
        shown += [t for t in probs[-1].topk(min(top_n, 5)).indices.tolist() if t not in shown]
        index = torch.tensor(shown, device=model.device)
        result = {"token_ids": shown, "stages": []}
        for (label, sc), p in zip(stages, probs):
            result["stages"].append({"stage": label, "kept": int(torch.isfinite(sc).sum()),
                                     "probs": p[index].tolist()})
    return result
