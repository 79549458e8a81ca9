"""The explorer's own decoding loop: every strategy, with the probability and the top
alternatives of each generated token recorded as it goes.

- greedy and sampling strategies run as ONE batch (one row per strategy, same prompt, so no
  padding): one forward pass per step serves every row; each row has its own logits processors
  and its own torch.Generator seeded with the run's seed, so each row draws exactly what
  `torch.manual_seed(seed); model.generate(do_sample=True, ...)` draws for that strategy alone;
- beam search follows transformers 5.23's vectorised beam search step by step (same top-2k
  candidates, same finished-beam bookkeeping, same early-stop heuristic, same length penalty), so
  its output equals `model.generate(num_beams=...)` token for token;
- contrastive search (removed from transformers core in 4.56) is implemented here: top-k
  candidates scored by (1-alpha) * p - alpha * max cosine similarity to the context.

All of them use the KV cache; per step only a handful of numbers leave the device.
torch is imported inside the functions so importing this module is cheap."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from decoding_strategies import (MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS, TOP_ALTERNATIVES, Strategy,
                                 processors)


class PromptError(ValueError):
    """A prompt we cannot run; the message is for the user."""


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


# ---------------------------------------------------------------- greedy + sampling, batched

def _forward(model, ids, cache, **extra):
    out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1, **extra)
    return out


def iter_batch(model, prompt_ids: list[int], strategies: list[Strategy], max_new_tokens: int, seed: int,
               eos: list[int]):
    """Greedy and sampling strategies as one batch. Yields the list of Outputs after every step."""
    import torch

    device = model.device
    rows = len(strategies)
    outs = [Output(s, list(prompt_ids), batch_size=rows) for s in strategies]
    procs = [[p for _, p in processors(s)] for s in strategies]
    gens = [torch.Generator(device=device).manual_seed(seed) if s.do_sample else None for s in strategies]
    eos_t = torch.tensor(eos or [-1], device=device)
    pad = eos[0] if eos else 0
    k = TOP_ALTERNATIVES
    start = time.perf_counter()
    with torch.inference_mode():
        prompt = torch.tensor([prompt_ids], device=device)
        out = _forward(model, prompt, None)  # prefill once; the cache is copied per row below
        cache = out.past_key_values
        logits = out.logits[:, -1, :].float()
        if rows > 1:
            cache.batch_repeat_interleave(rows)
            logits = logits.expand(rows, -1)
        ids = prompt.expand(rows, -1)
        alive = [True] * rows
        for step in range(max_new_tokens):
            logp = torch.log_softmax(logits, dim=-1)
            picks, picked_p = [], []
            for i in range(rows):
                if not alive[i]:
                    picks.append(torch.tensor([pad], device=device))
                    picked_p.append(torch.zeros(1, device=device))
                    continue
                scores = logits[i:i + 1]
                row_ids = ids[i:i + 1]
                for proc in procs[i]:
                    scores = proc(row_ids, scores)
                probs = torch.softmax(scores, dim=-1)
                if gens[i] is not None:
                    token = torch.multinomial(probs, num_samples=1, generator=gens[i]).squeeze(1)
                else:
                    token = torch.argmax(scores, dim=-1)
                picks.append(token)
                picked_p.append(probs[0, token])
            tokens = torch.cat(picks)
            top_p, top_i = logp.topk(k, dim=-1)
            chosen = logp.gather(1, tokens[:, None])
            summary = torch.cat([tokens[:, None].float(), chosen.exp(), torch.stack(picked_p).view(rows, 1),
                                 top_p.exp(), top_i.float(), torch.isin(tokens, eos_t)[:, None].float()], 1).tolist()
            now = time.perf_counter() - start
            for i, row in enumerate(summary):
                if not alive[i]:
                    continue
                o = outs[i]
                o.ids.append(int(row[0]))
                o.probs.append(row[1])
                o.picked_probs.append(row[2])
                o.top_probs.append(row[3:3 + k])
                o.top_ids.append([int(t) for t in row[3 + k:3 + 2 * k]])
                o.seconds = now
                if row[-1]:
                    alive[i], o.done, o.stop_reason = False, True, "end of text"
            if not any(alive) or step == max_new_tokens - 1:
                break
            yield outs
            ids = torch.cat([ids, tokens[:, None]], dim=1)
            out = _forward(model, tokens[:, None], cache)
            logits = out.logits[:, -1, :].float()
    for o in outs:
        if not o.done:
            o.done, o.stop_reason = True, "max_new_tokens"
        o.seconds = max(o.seconds, 1e-9)
    yield outs


# ---------------------------------------------------------------- beam search

def _gather(tensor, indices):
    """tensor[:, indices, ...] per batch row (transformers' _gather_beams)."""
    import torch

    while indices.dim() < tensor.dim():
        indices = indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, indices, dim=1)


def iter_beam(model, prompt_ids: list[int], strategy: Strategy, max_new_tokens: int, eos: list[int],
              pad_token_id: int | None = None):
    """Beam search, step for step as transformers 5.23 `_beam_search` does it (batch of one,
    early_stopping=False). Yields the Output (current best running beam) after every step; the
    final Output holds the best finished beam with its probabilities."""
    import torch

    s = strategy
    device = model.device
    nb = s.num_beams
    out_obj = Output(s, list(prompt_ids), batch_size=nb)
    procs = [p for _, p in processors(s)]
    prompt_len = len(prompt_ids)
    max_length = prompt_len + max_new_tokens
    eos_t = torch.tensor(eos, device=device) if eos else None
    beams_to_keep = max(2, 1 + len(eos)) * nb
    top_mask = torch.cat([torch.ones(nb, dtype=torch.bool), torch.zeros(beams_to_keep - nb, dtype=torch.bool)]).to(device)
    fill = (pad_token_id or eos[0]) if eos else -1
    running = torch.full((1, nb, max_length), fill, dtype=torch.int64, device=device)
    running[:, :, :prompt_len] = torch.tensor(prompt_ids, device=device)
    sequences = running.clone()
    running_scores = torch.zeros((1, nb), device=device)
    running_scores[:, 1:] = -1e9
    beam_scores = torch.full((1, nb), -1e9, device=device)
    finished = torch.zeros((1, nb), dtype=torch.bool, device=device)
    unsatisfied = torch.ones((1, 1), dtype=torch.bool, device=device)
    running_idx = torch.full((1, nb, max_new_tokens), -1, dtype=torch.int32, device=device)
    beam_idx_all = running_idx.clone()
    cur_len = prompt_len
    start = time.perf_counter()
    with torch.inference_mode():
        flat = running[0, :, :cur_len]
        out = _forward(model, flat, None)
        cache = out.past_key_values
        while True:
            logits = out.logits[:, -1, :].float()
            vocab = logits.shape[-1]
            log_probs = torch.log_softmax(logits, dim=-1)
            for proc in procs:
                log_probs = proc(flat, log_probs)
            log_probs = (log_probs.view(1, nb, vocab) + running_scores[:, :, None]).reshape(1, -1)
            # c. top 2k continuations over all beams
            topk_log_probs, topk_indices = torch.topk(log_probs, k=beams_to_keep)
            topk_beam = topk_indices // vocab
            topk_running_idx = _gather(running_idx, topk_beam)
            topk_running = _gather(running, topk_beam)
            topk_ids = topk_indices % vocab
            topk_running[:, :, cur_len] = topk_ids
            topk_running_idx[:, :, cur_len - prompt_len] = topk_beam.to(torch.int32)
            # d. which candidates hit a stopping criterion (max length, EOS)
            hits = torch.full_like(topk_ids, cur_len + 1 >= max_length, dtype=torch.bool)
            if eos_t is not None:
                hits = hits | torch.isin(topk_ids, eos_t)
            # e. the best num_beams unfinished candidates keep running
            masked = topk_log_probs + hits.to(torch.float32) * -1.0e9
            keep = torch.topk(masked, k=nb)[1]
            running = _gather(topk_running, keep)
            running_scores = _gather(masked, keep)
            running_idx = _gather(topk_running_idx, keep)
            # f. finished candidates among the top num_beams compete with earlier finished beams
            just_finished = hits & top_mask[None, :]
            scored = topk_log_probs / ((cur_len + 1 - prompt_len) ** s.length_penalty)
            scored = scored + (~unsatisfied).to(torch.float32) * -1.0e9
            scored = scored + (~just_finished) * -1.0e9
            merged_seq = torch.cat((sequences, topk_running), dim=1)
            merged_scores = torch.cat((beam_scores, scored), dim=1)
            merged_idx = torch.cat((beam_idx_all, topk_running_idx), dim=1)
            merged_fin = torch.cat((finished, just_finished), dim=1)
            best = torch.topk(merged_scores, k=nb)[1]
            sequences = _gather(merged_seq, best)
            beam_scores = _gather(merged_scores, best)
            beam_idx_all = _gather(merged_idx, best)
            finished = _gather(merged_fin, best)
            # g. reorder the cache for the surviving beams, early-stop heuristic
            cache.reorder_cache(running_idx[0, :, cur_len - prompt_len].to(torch.long))
            cur_len += 1
            best_possible = running_scores[:, :1] / ((cur_len - prompt_len) ** s.length_penalty)
            worst_finished = torch.where(finished, torch.min(beam_scores, dim=1, keepdim=True)[0], -1.0e9)
            unsatisfied = unsatisfied & torch.any(best_possible > worst_finished, dim=-1, keepdim=True)
            go_on = bool(torch.any(unsatisfied)) and not bool(torch.all(hits))
            out_obj.ids = running[0, 0, prompt_len:cur_len].tolist()
            out_obj.seconds = time.perf_counter() - start
            if not go_on:
                break
            yield out_obj
            flat = running[0, :, :cur_len]
            out = _forward(model, flat[:, -1:], cache)
        generated = int(((beam_idx_all[0, 0] + 1) != 0).sum())
        out_obj.ids = sequences[0, 0, prompt_len:prompt_len + generated].tolist()
    out_obj.seconds = time.perf_counter() - start
    out_obj.done = True
    out_obj.stop_reason = "end of text" if out_obj.ids and out_obj.ids[-1] in eos else "max_new_tokens"
    score_tokens(model, out_obj)  # probabilities under the model, by one teacher-forced pass
    yield out_obj


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


# ---------------------------------------------------------------- contrastive search

def iter_contrastive(model, prompt_ids: list[int], strategy: Strategy, max_new_tokens: int, eos: list[int]):
    """Contrastive search (Su et al. 2022), as transformers <= 4.55 ran it: at each step the top-k
    candidates are fed through the model together (one batched forward with the cache repeated k
    times); each is scored (1 - alpha) * p(candidate) - alpha * max cosine similarity between its
    last hidden state and those of the context; the best one is kept with its cache row."""
    import torch

    s = strategy
    device = model.device
    out_obj = Output(s, list(prompt_ids), batch_size=s.contrastive_k)
    procs = [p for _, p in processors(s)]
    alpha, k = s.penalty_alpha, max(1, s.contrastive_k)
    start = time.perf_counter()
    with torch.inference_mode():
        ids = torch.tensor([prompt_ids], device=device)
        out = model(input_ids=ids, use_cache=True, output_hidden_states=True, logits_to_keep=1)
        cache = out.past_key_values
        context = out.hidden_states[-1][0]  # (len, hidden)
        context = context / context.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        logits = out.logits[:, -1, :].float()
        for _step in range(max_new_tokens):
            logp = torch.log_softmax(logits, dim=-1)
            scores = logits
            for proc in procs:
                scores = proc(ids, scores)
            probs = torch.softmax(scores, dim=-1)
            cand_p, cand_i = probs.topk(k, dim=-1)  # (1, k)
            cache.batch_repeat_interleave(k)
            step_out = model(input_ids=cand_i.view(k, 1), past_key_values=cache, use_cache=True,
                             output_hidden_states=True, logits_to_keep=1)
            hidden = step_out.hidden_states[-1][:, -1, :]  # (k, hidden)
            hidden = hidden / hidden.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            degeneration = (hidden @ context.T).max(dim=-1).values  # (k,)
            score = (1.0 - alpha) * cand_p[0] - alpha * degeneration
            best = int(torch.argmax(score))
            token = cand_i[0, best]
            cache.batch_select_indices(torch.tensor([best], device=device))
            context = torch.cat([context, hidden[best:best + 1]], dim=0)
            logits = step_out.logits[best:best + 1, -1, :].float()
            top_p, top_i = logp.topk(TOP_ALTERNATIVES, dim=-1)
            out_obj.ids.append(int(token))
            out_obj.probs.append(float(logp[0, token].exp()))
            out_obj.picked_probs.append(float(cand_p[0, best]))
            out_obj.top_probs.append(top_p.exp()[0].tolist())
            out_obj.top_ids.append(top_i[0].tolist())
            out_obj.seconds = time.perf_counter() - start
            if int(token) in eos:
                out_obj.stop_reason = "end of text"
                break
            yield out_obj
            ids = torch.cat([ids, token.view(1, 1)], dim=1)
    out_obj.done = True
    out_obj.stop_reason = out_obj.stop_reason or "max_new_tokens"
    out_obj.seconds = max(time.perf_counter() - start, 1e-9)
    yield out_obj


# ---------------------------------------------------------------- all strategies of one run

def iter_compare(model, tokenizer, prompt_ids: list[int], strategies: list[Strategy], max_new_tokens: int,
                 seed: int):
    """Run every strategy; yields the list of Outputs (in the order of `strategies`) after each step.

    Greedy/sampling rows share one batch; beam search and contrastive search run after it."""
    eos = eos_ids(model, tokenizer)
    pad = getattr(model.generation_config, "pad_token_id", None)
    outs: list[Output | None] = [None] * len(strategies)
    batch = [i for i, s in enumerate(strategies) if s.mode in ("greedy", "sample")]
    placeholders = {i: Output(s, list(prompt_ids)) for i, s in enumerate(strategies)}

    def snapshot():
        return [outs[i] if outs[i] is not None else placeholders[i] for i in range(len(strategies))]

    if batch:
        for rows in iter_batch(model, prompt_ids, [strategies[i] for i in batch], max_new_tokens, seed, eos):
            for i, row in zip(batch, rows):
                outs[i] = row
            yield snapshot()
    for i, s in enumerate(strategies):
        if s.mode == "beam":
            steps = iter_beam(model, prompt_ids, s, max_new_tokens, eos, pad)
        elif s.mode == "contrastive":
            steps = iter_contrastive(model, prompt_ids, s, max_new_tokens, eos)
        else:
            continue
        for o in steps:
            outs[i] = o
            yield snapshot()


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

def pipeline(model, prefix_ids: list[int], strategy: Strategy, top_n: int = 12) -> dict:
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
