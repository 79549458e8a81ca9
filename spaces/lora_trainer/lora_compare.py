"""Base model vs adapter on the same prompts, same seed: one copy of the base weights in memory, the
runs' adapters loaded onto it by name, and every visitor's base and adapter rows in one shared batch
(shared.batching with peft's per-row adapter names; "__base__" runs without LoRA). Also the held-back
check of a "new knowledge" run. No gradio here."""
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

    from shared import batching

    folder = str(lora_train.adapter_folder(run_id))
    peft = cm.get("peft")
    if peft is None:  # nothing runs on the base model now: its rows are waited for under cm['lock']
        peft = PeftModel.from_pretrained(cm["model"], folder, adapter_name=run_id)
        peft.eval()
        cm["peft"], cm["order"] = peft, [run_id]
        return peft
    engine = batching.engine_for(peft)
    with engine.exclusive():  # between two steps of the shared batch: layers change here
        if run_id not in peft.peft_config:
            peft.load_adapter(folder, adapter_name=run_id)
            peft.eval()
            cm["order"].append(run_id)
        busy = engine.adapters_in_use() | {run_id}
        for old in [a for a in cm["order"] if a not in busy][:max(0, len(cm["order"]) - KEEP_ADAPTERS)]:
            cm["order"].remove(old)  # the oldest adapters no row is using
            peft.delete_adapter(old)
    return peft


def _prompt_ids(tokenizer, text: str) -> list[int]:
    """The chat prompt as the model sees it (the model continues right after its last token)."""
    messages = [{"role": "user", "content": text}]
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        rendered = text + "\n"
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


def _submit(model, tokenizer, prompts, max_new_tokens, seed, temperature, adapter):
    """Each prompt a row of the model's shared batch (shared.batching), with its own seeded generator:
    greedy when temperature is 0; the same seed for the base and the adapter rows."""
    from shared import batching

    sampling = batching.Sampling(do_sample=True, temperature=float(temperature), top_p=0.95, seed=int(seed)) \
        if temperature > 0 else batching.Sampling(seed=int(seed))
    eos = batching.eos_ids(model, tokenizer)
    return [batching.submit(model, _prompt_ids(tokenizer, p), sampling, max_new_tokens, eos, top_alternatives=0,
                            adapter=adapter) for p in prompts]


def _texts(tokenizer, tickets) -> list[str]:
    out = []
    for ticket in tickets:
        try:
            for _ in ticket.updates():
                pass
        except RuntimeError as exc:
            for other in tickets:
                other.cancel()
            raise CompareError(f"Generation failed: {exc}") from None
        out.append(tokenizer.decode(ticket.outs[0].ids, skip_special_tokens=True).strip())
    return out


@gpu(duration=60)
def generate(prompts: list[str], run_id: str | None, max_new_tokens: int = DEFAULT_NEW_TOKENS, seed: int = 0,
             temperature: float = 0.0, which: tuple = ("base", "adapter")) -> dict:
    """{"base": [...], "adapter": [...]} for `prompts` (greedy when temperature is 0; the same seed
    before each model otherwise). Without a run id only the base answers."""
    src = _model_of_run(run_id)
    tokenizer = lora_models.tokenizer(src)
    cm = lora_models.comparison_model(src)
    with cm["lock"]:  # adapters load and unload one caller at a time
        peft = _activate(cm, run_id) if run_id and "adapter" in which else cm.get("peft")
        if peft is None:  # no adapter on the shared copy yet: the base model's own batch, waited for here
            return {"base": _texts(tokenizer, _submit(cm["model"], tokenizer, prompts, max_new_tokens, seed,
                                                      temperature, None))}
        # Base and adapter rows of every visitor share the PeftModel's batch (peft's mixed-adapter
        # batches); queued under the lock so no adapter they use is unloaded before they finish.
        queued = {name: _submit(peft, tokenizer, prompts, max_new_tokens, seed, temperature, adapter)
                  for name, adapter in (("base", "__base__"), ("adapter", run_id))
                  if name in which and (name == "base" or run_id)}
    return {name: _texts(tokenizer, tickets) for name, tickets in queued.items()}


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
