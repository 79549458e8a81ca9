"""Numbers that describe one generation, and its JSON form for the /compare endpoint.

- tokens/s: generated tokens / wall-clock seconds from the start of the run to the strategy's last
  token (every strategy of a run shares its forward passes, so each figure is honest about what
  the shared batch cost);
- mean log-prob: average natural log of the model's own probability (softmax of the raw logits,
  before any strategy processing) of each generated token; perplexity = exp(-mean log-prob);
- distinct-n: unique n-grams / all n-grams of the generated token ids (1.0 = no repeats);
- repetition rate: share of generated 3-grams that already appeared earlier in the same output."""
from __future__ import annotations

import math

REPEAT_N = 3


def distinct_n(ids: list[int], n: int) -> float:
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(ids: list[int], n: int = REPEAT_N) -> float:
    seen, repeats, total = set(), 0, 0
    for i in range(len(ids) - n + 1):
        gram = tuple(ids[i:i + n])
        total += 1
        repeats += gram in seen
        seen.add(gram)
    return repeats / total if total else 0.0


def mean_logprob(probs: list[float]) -> float:
    if not probs:
        return float("nan")
    return sum(math.log(max(p, 1e-45)) for p in probs) / len(probs)


def metrics(output) -> dict:
    """One row of the metrics table for an Output (decoding_loop.Output)."""
    ids = output.ids
    mlp = mean_logprob(output.probs) if output.scored else float("nan")
    return {
        "strategy": output.strategy.label,
        "tokens": len(ids),
        "tokens_per_s": round(output.tokens_per_s, 2),
        "mean_logprob": round(mlp, 3) if mlp == mlp else None,
        "perplexity": round(math.exp(-mlp), 2) if mlp == mlp else None,
        "distinct_1": round(distinct_n(ids, 1), 3),
        "distinct_2": round(distinct_n(ids, 2), 3),
        "repetition_rate": round(repetition_rate(ids), 3),
        "stop": output.stop_reason,
    }


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """Each token decoded on its own (a character split over two tokens shows as �)."""
    return [tokenizer.decode([int(i)]) for i in ids]


def output_json(output, tokenizer, top: int | None = None) -> dict:
    """The /compare record of one strategy."""
    texts = token_texts(tokenizer, output.ids)
    alternatives = {i for row in output.top_ids for i in row[:top]}
    names = dict(zip(alternatives, token_texts(tokenizer, list(alternatives))))
    tokens = []
    for i, text in enumerate(texts):
        tokens.append({
            "token": text,
            "id": output.ids[i],
            "prob": round(output.probs[i], 6) if i < len(output.probs) else None,
            "top": [[names[t], round(p, 6)] for t, p in zip(output.top_ids[i][:top], output.top_probs[i][:top])]
            if i < len(output.top_ids) else [],
        })
    m = metrics(output)
    return {
        "strategy": output.strategy.name,
        "label": output.strategy.label,
        "params": output.strategy.params(),
        "text": tokenizer.decode(output.ids, skip_special_tokens=True),
        "tokens_per_s": m["tokens_per_s"],
        "metrics": {k: v for k, v in m.items() if k not in ("strategy", "tokens_per_s")},
        "tokens": tokens,
    }
