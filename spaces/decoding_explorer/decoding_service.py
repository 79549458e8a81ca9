"""What the UI and the API call: pick the model, check and clamp the inputs, run the comparison.

Plain Python (no gradio); torch/transformers are imported only when a model is loaded."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import decoding_loop
import decoding_strategies as ds
from decoding_loop import PromptError
from decoding_metrics import metrics, output_json


@dataclass
class Run:
    """Everything one comparison needs, checked and clamped."""
    loaded: object  # shared.loading.Loaded
    prompt_ids: list[int]
    strategies: list
    max_new_tokens: int
    seed: int
    notes: list[str] = field(default_factory=list)


def load(requested: str | None = None):
    """The model for a run: the embedded default, or the one picked/typed. Raises
    shared.models.ModelUnavailable (with a message for the user) when it cannot be used here:
    we do not silently swap a model the user explicitly asked for."""
    from shared.loading import load_causal_lm
    from shared.models import default

    requested = (requested or "").strip()
    if not requested or requested == default("causal").name:
        return load_causal_lm()
    return load_causal_lm(requested, fallback=False)


def parse_overrides(params) -> tuple[dict, list[str]]:
    """{"strategy": {"param": value}} from a dict or JSON text; anything else is reported."""
    if params in (None, "", {}):
        return {}, []
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as exc:
            return {}, [f"params is not valid JSON ({exc.msg}); ignored."]
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        return {}, ['params must look like {"top_p": {"top_p": 0.8}}; ignored.']
    return params, []


def prepare(prompt, names, max_new_tokens=64, seed=0, chat_template=True, model=None, params=None) -> Run:
    """Check and clamp everything; raises PromptError / ModelUnavailable with a clear message."""
    overrides, notes = parse_overrides(params)
    strategies, more = ds.resolve(names, overrides)
    notes += more
    if not strategies:
        raise PromptError(" ".join(notes + ["Pick at least one strategy (" + ", ".join(ds.NAMES) + ")."]))
    max_new_tokens, seed, more = ds.clamp_run(max_new_tokens, seed)
    notes += more
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("The prompt is empty: type something for the model to continue.")
    loaded = load(model)
    limit = decoding_loop.context_limit(loaded.model)
    if max_new_tokens > limit - 16:
        notes.append(f"max_new_tokens={max_new_tokens} does not fit this model's context of {limit} tokens; "
                     f"using {limit - 16}.")
        max_new_tokens = limit - 16
    prompt_ids, more = decoding_loop.encode_prompt(loaded.tokenizer, prompt, bool(chat_template), max_new_tokens,
                                                   limit)
    return Run(loaded, prompt_ids, strategies, max_new_tokens, seed, notes + more)


def stream(run: Run):
    """Yields the list of decoding_loop.Output after every step."""
    yield from decoding_loop.iter_compare(run.loaded.model, run.loaded.tokenizer, run.prompt_ids, run.strategies,
                                          run.max_new_tokens, run.seed)


def compare_json(prompt, strategies, max_new_tokens=64, seed=0, chat_template=True, params=None, model=None) -> dict:
    """The /compare endpoint: {"model", "notes", "results": [...]} or {"error": message}."""
    from shared.models import ModelUnavailable

    try:
        run = prepare(prompt, strategies, max_new_tokens, seed, chat_template, model, params)
        outputs = decoding_loop.compare(run.loaded.model, run.loaded.tokenizer, run.prompt_ids, run.strategies,
                                        run.max_new_tokens, run.seed)
    except (PromptError, ModelUnavailable) as exc:
        return {"error": str(exc)}
    except Exception as exc:  # never a traceback for the caller; the server keeps serving
        return {"error": f"Generation failed: {type(exc).__name__}: {str(exc)[:300]}"}
    tok = run.loaded.tokenizer
    return {
        "model": run.loaded.choice.spec.hub_id,
        "model_status": run.loaded.status,
        "prompt_tokens": len(run.prompt_ids),
        "max_new_tokens": run.max_new_tokens,
        "seed": run.seed,
        "notes": run.notes,
        "results": [output_json(o, tok) for o in outputs],
    }


def metrics_rows(outputs) -> list[dict]:
    return [metrics(o) for o in outputs if o.ids]
