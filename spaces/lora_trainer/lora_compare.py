"""Base model vs adapter on the same prompts, same seed: one copy of the base weights in memory, the
runs' adapters loaded onto it by name, and peft's adapter toggle (disable_adapter) for the base answer.
Also the held-back check of a "new knowledge" run. No gradio here."""
from __future__ import annotations

from shared.device import gpu

import lora_data
import lora_models
import lora_train

# ---------------------------------------------------------------- limits and defaults
MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 512
DEFAULT_NEW_TOKENS = 64
HELDOUT_NEW_TOKENS = 40
KEEP_ADAPTERS = 8  # adapters kept loaded on the shared base; the oldest is dropped beyond this


class CompareError(lora_train.TrainError):
    pass


def check_prompt(prompt) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise CompareError("Type a prompt first.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise CompareError(f"The prompt has {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
    return prompt.strip()


def check_tokens(max_new_tokens) -> int:
    try:
        n = int(max_new_tokens)
        if isinstance(max_new_tokens, bool) or n != float(max_new_tokens):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise CompareError(f"max_new_tokens must be a whole number (got {str(max_new_tokens)[:40]!r}).") from None
    if not 1 <= n <= MAX_NEW_TOKENS:
        raise CompareError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS} (got {n}).")
    return n


def _model_of_run(run_id: str | None) -> lora_models.Source:
    if not run_id:
        return lora_models.source("")
    run = lora_train.get_run(run_id)
    return lora_models.source(run["config"].get("model", ""))


def _activate(cm: dict, run_id: str):
    """The shared PeftModel with `run_id`'s adapter loaded and active (call with cm['lock'] held)."""
    from peft import PeftModel

    folder = str(lora_train.adapter_folder(run_id))
    peft = cm.get("peft")
    if peft is None:
        peft = PeftModel.from_pretrained(cm["model"], folder, adapter_name=run_id)
        peft.eval()
        cm["peft"], cm["order"] = peft, [run_id]
    elif run_id not in peft.peft_config:
        peft.load_adapter(folder, adapter_name=run_id)
        cm["order"].append(run_id)
        while len(cm["order"]) > KEEP_ADAPTERS:
            old = cm["order"].pop(0)
            if old != run_id:
                peft.delete_adapter(old)
    peft.set_adapter(run_id)
    return peft


def _encode(tokenizer, prompts: list[str]):
    """Left-padded chat prompts (the model continues right after the last prompt token)."""
    import torch

    ids = []
    for text in prompts:
        messages = [{"role": "user", "content": text}]
        if getattr(tokenizer, "chat_template", None):
            rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            rendered = text + "\n"
        ids.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    return input_ids, mask


def _generate(model, tokenizer, prompts, max_new_tokens, seed, temperature):
    import torch

    input_ids, mask = _encode(tokenizer, prompts)
    device = next(model.parameters()).device
    torch.manual_seed(int(seed))
    kwargs = dict(do_sample=True, temperature=float(temperature), top_p=0.95) if temperature > 0 else \
        dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs)
    return [tokenizer.decode(row[input_ids.shape[1]:], skip_special_tokens=True).strip() for row in out]


@gpu(duration=60)
def generate(prompts: list[str], run_id: str | None, max_new_tokens: int = DEFAULT_NEW_TOKENS, seed: int = 0,
             temperature: float = 0.0, which: tuple = ("base", "adapter")) -> dict:
    """{"base": [...], "adapter": [...]} for `prompts` (greedy when temperature is 0; the same seed
    before each model otherwise). Without a run id only the base answers."""
    src = _model_of_run(run_id)
    tokenizer = lora_models.tokenizer(src)
    cm = lora_models.comparison_model(src)
    out = {}
    with cm["lock"]:
        peft = _activate(cm, run_id) if run_id and "adapter" in which else cm.get("peft")
        if "base" in which:
            if peft is not None:
                with peft.disable_adapter():
                    out["base"] = _generate(peft, tokenizer, prompts, max_new_tokens, seed, temperature)
            else:
                out["base"] = _generate(cm["model"], tokenizer, prompts, max_new_tokens, seed, temperature)
        if run_id and "adapter" in which:
            out["adapter"] = _generate(peft, tokenizer, prompts, max_new_tokens, seed, temperature)
    return out


def side_by_side(prompt: str, run_id: str, max_new_tokens: int = DEFAULT_NEW_TOKENS, seed: int = 0,
                 temperature: float = 0.0) -> dict:
    prompt = check_prompt(prompt)
    n = check_tokens(max_new_tokens)
    if not run_id:
        raise CompareError("Pick a finished run to compare its adapter with the base model.")
    out = generate([prompt], run_id, n, seed, temperature)
    return {"prompt": prompt, "base": out["base"][0], "adapter": out["adapter"][0], "seed": int(seed),
            "temperature": float(temperature)}


def answer(prompt: str, run_id: str = "", max_new_tokens: int = DEFAULT_NEW_TOKENS) -> str:
    """The /generate answer: greedy, from the base model (no run id) or the run's adapter."""
    prompt = check_prompt(prompt)
    n = check_tokens(max_new_tokens)
    which = ("adapter",) if run_id else ("base",)
    out = generate([prompt], run_id or None, n, 0, 0.0, which)
    return out["adapter" if run_id else "base"][0]


def heldout_check(run_id: str, max_new_tokens: int = HELDOUT_NEW_TOKENS) -> dict:
    """The run's dataset's held-back questions through the base model and the adapter (greedy); an
    answer is right when it contains every key fact (lora_data.fact_match)."""
    run = lora_train.get_run(run_id)
    dataset = run["dataset"]
    if dataset not in lora_data.SHIPPED:
        raise CompareError("Held-back questions come with the shipped 'new knowledge' set; this run used "
                           f"'{dataset}'.")
    held = lora_data.load_shipped(dataset).heldout
    if not held:
        raise CompareError(f"The '{dataset}' set has no held-back questions (it teaches a style, not facts).")
    questions = [h["question"] for h in held]
    out = generate(questions, run_id, max_new_tokens, 0, 0.0)
    rows = []
    for h, base, adapted in zip(held, out["base"], out["adapter"]):
        rows.append({"question": h["question"], "expected": h["answer"], "key_facts": h["key_facts"],
                     "base": base, "adapter": adapted, "base_ok": lora_data.fact_match(base, h["key_facts"]),
                     "adapter_ok": lora_data.fact_match(adapted, h["key_facts"])})
    return {"run_id": run_id, "questions": len(rows), "base_correct": sum(r["base_ok"] for r in rows),
            "adapter_correct": sum(r["adapter_ok"] for r in rows),
            "changed": sum(r["base"] != r["adapter"] for r in rows), "rows": rows}
