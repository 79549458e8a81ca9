"""Answers from a causal LM through its chat template: the two sides of a preference pair, and the
base vs trained answers of the blind round. No gradio here."""
from __future__ import annotations

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


def generate(model, tokenizer, prompts: list[str], sampling: Sampling, seed: int = 0, should_stop=None,
             batch_size: int = 16) -> list[str]:
    """One answer per prompt with `sampling` (seeded, so a run can be repeated); batched, left-padded."""
    import torch
    from transformers import GenerationConfig

    from shared.jobs import stopping_criteria

    sampling.check()
    answers: list[str] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        batch = [chat_ids(tokenizer, p) for p in prompts[start:start + batch_size]]
        width = max(len(ids) for ids in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device)
        config = GenerationConfig(do_sample=True, temperature=float(sampling.temperature), top_p=float(sampling.top_p),
                                  top_k=int(sampling.top_k) or None, max_new_tokens=int(sampling.max_new_tokens),
                                  pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        torch.manual_seed(seed + start)
        kwargs = {}
        if should_stop is not None:
            kwargs["stopping_criteria"] = [stopping_criteria(should_stop)]
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config, **kwargs)
        for row in out[:, width:]:
            answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return answers
