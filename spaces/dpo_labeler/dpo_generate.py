"""Answers from a causal LM through its chat template: the two sides of a preference pair, and the
base vs trained answers of the blind round. No gradio here."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

from shared.errors import UserError

# ---------------------------------------------------------------- limits and defaults
MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 64  # the UI's ceiling; SmolLM2 on a CPU writes ~20 tokens/s
DEFAULT_NEW_TOKENS = 48


@dataclass(frozen=True)
class Sampling:
    """One sampling setting; stored with every pair so a label always says how its texts were made."""
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0
    max_new_tokens: int = DEFAULT_NEW_TOKENS

    def check(self) -> "Sampling":
        if not 0.05 <= float(self.temperature) <= 2.5:
            raise UserError(f"temperature must be between 0.05 and 2.5 (got {self.temperature}).")
        if not 0.05 <= float(self.top_p) <= 1.0:
            raise UserError(f"top_p must be between 0.05 and 1 (got {self.top_p}).")
        if not 0 <= int(self.top_k) <= 1000:
            raise UserError(f"top_k must be between 0 (off) and 1000 (got {self.top_k}).")
        if not 1 <= int(self.max_new_tokens) <= MAX_NEW_TOKENS:
            raise UserError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS} (got {self.max_new_tokens}).")
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        return f"T={self.temperature:g}, top-p={self.top_p:g}" + (f", top-k={self.top_k}" if self.top_k else "")


# The two settings a pair is made with: a careful one and a loose one, so the answers differ.
SETTING_1 = Sampling(temperature=0.7, top_p=0.9)
SETTING_2 = Sampling(temperature=1.2, top_p=0.95)
BLIND = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=48)


def check_prompt(prompt) -> str:
    if not isinstance(prompt, str):
        raise UserError("The prompt must be text.")
    text = prompt.strip()
    if not text:
        raise UserError("The prompt is empty.")
    if len(text) > MAX_PROMPT_CHARS:
        raise UserError(f"The prompt has {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
    return text


def chat_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt as the model sees it (its chat template, generation prompt added): the same rendering
    trl's DPOTrainer uses for conversational rows."""
    messages = [{"role": "user", "content": prompt}]
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def generate(model, tokenizer, prompts: list[str], sampling: Sampling, seed: int = 0, should_stop=None) -> list[str]:
    """One answer per prompt with `sampling`. Each prompt is a row in the model's shared batch
    (shared.batching: other visitors' pairs and blind rounds join the same forward passes) and draws
    from its own generator seeded `seed + i`, so an answer depends on its seed, never on who else was
    in the batch."""
    return [tokenizer.decode(ids, skip_special_tokens=True).strip()
            for ids in wait_all(submit(model, tokenizer, prompts, sampling, seed, should_stop))]


def submit(model, tokenizer, prompts: list[str], sampling: Sampling, seed: int = 0, should_stop=None) -> list:
    """The rows of generate(), queued without waiting (submit two models' rows, then wait_all both)."""
    from shared import batching

    sampling.check()
    rows = batching.Sampling(do_sample=True, temperature=float(sampling.temperature), top_p=float(sampling.top_p),
                             top_k=int(sampling.top_k))
    eos = batching.eos_ids(model, tokenizer)
    return [batching.submit(model, chat_ids(tokenizer, p), dataclasses.replace(rows, seed=seed + i),
                            int(sampling.max_new_tokens), eos, should_stop, top_alternatives=0)
            for i, p in enumerate(prompts)]


def wait_all(tickets: list) -> list[list[int]]:
    """The generated ids of each ticket, in order; a failed generation is one clear error."""
    out = []
    for ticket in tickets:
        try:
            for _ in ticket.updates():
                pass
        except RuntimeError as exc:
            for other in tickets:
                other.cancel()
            raise UserError(f"Generating the answers failed: {exc}") from None
        out.append(ticket.outs[0].ids)
    return out
