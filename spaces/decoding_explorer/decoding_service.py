"""What the UI and the API call: pick the model, check and clamp the inputs, run the comparison
(as a shared.jobs job for the UI, so that it streams, queues and stops), and the model line.

Plain Python (no gradio); torch/transformers are imported only when a model is loaded."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import decoding_loop
import decoding_strategies as ds
from decoding_loop import PromptError
from decoding_metrics import output_json
from shared import jobs
from shared.device import gpu
from shared.errors import api

PRELOAD = "preload:causal"  # the job that loads the embedded model once the server is up
RUN = "decode"  # the admission key of generations: ds.RUN_SLOTS at once, the others wait in line


@dataclass
class Run:
    """Everything one comparison needs, checked and clamped."""
    loaded: object  # shared.loading.Loaded
    prompt_ids: list[int]
    strategies: list
    max_new_tokens: int
    seed: int
    notes: list[str] = field(default_factory=list)


@dataclass
class Checked:
    """A request checked without the model: what prepare() then loads and encodes."""
    prompt: str
    strategies: list
    max_new_tokens: int
    seed: int
    chat_template: bool
    model: str | None
    notes: list[str] = field(default_factory=list)


@dataclass
class Live:
    """A generation job's result, filled while it runs: the UI redraws from it."""
    checked: Checked
    run: Run | None = None
    outputs: list = field(default_factory=list)
    steps: int = 0
    position: int = 0  # > 0 while the shared batch is full and the run waits: its place in line (1 = next)


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


# ---------------------------------------------------------------- the model line

def preload() -> jobs.Job:
    """The job loading the embedded model in the background (one per process; a failed one is retried)."""
    for job in jobs.find(kind=PRELOAD):
        if job.state != jobs.ERROR:
            return job
    return jobs.submit(lambda job: load(None), key=PRELOAD, label="Loading the embedded model")


def status_text(model_name: str | None, preload_id: str | None = None) -> str:
    """The "Model in use" line: a picked model loads on Generate; the embedded one shows its load."""
    from shared.models import default

    name = (model_name or "").strip()
    if name and name != default("causal").name:
        return f"Model: **{name}** (loads when you press Generate)."
    job = jobs.get(preload_id)
    if job is not None and job.state == jobs.DONE:
        return "Model in use: " + job.result.status
    if job is not None and job.state == jobs.ERROR:
        return f"⚠️ Could not load the embedded model: {job.error}"
    return "⏳ Loading the embedded model (SmolLM2-135M-Instruct) in the background… you can type meanwhile."


# ---------------------------------------------------------------- checking and running

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


def check(prompt, names, max_new_tokens=ds.DEFAULT_NEW_TOKENS, seed=0, chat_template=True, model=None,
          params=None, ui: bool = False) -> Checked:
    """Everything that can be checked without the model; raises PromptError. `ui` names the
    strategies by their checkbox labels, the API by the names it accepts."""
    overrides, notes = parse_overrides(params)
    strategies, more = ds.resolve(names, overrides)
    notes += more
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("The prompt is empty: type something for the model to continue.")
    if not strategies:
        if ui:
            raise PromptError("Tick at least one strategy under Strategies (for example "
                              + ", ".join(ds.label_of(n) for n in ds.DEFAULT_SELECTION) + ").")
        raise PromptError(" ".join(notes + ["Pick at least one strategy (" + ", ".join(ds.NAMES) + ")."]))
    max_new_tokens, seed, more = ds.clamp_run(max_new_tokens, seed)
    return Checked(prompt, strategies, max_new_tokens, seed, bool(chat_template), model, notes + more)


def prepare(prompt, names, max_new_tokens=ds.DEFAULT_NEW_TOKENS, seed=0, chat_template=True, model=None,
            params=None) -> Run:
    """Check and clamp everything; raises PromptError / ModelUnavailable with a clear message."""
    return load_and_encode(check(prompt, names, max_new_tokens, seed, chat_template, model, params))


def load_and_encode(c: Checked) -> Run:
    loaded = load(c.model)
    notes = list(c.notes)
    max_new_tokens = c.max_new_tokens
    limit = decoding_loop.context_limit(loaded.model)
    if max_new_tokens > limit - 16:
        notes.append(f"max_new_tokens={max_new_tokens} does not fit this model's context of {limit} tokens; "
                     f"using {limit - 16}.")
        max_new_tokens = limit - 16
    prompt_ids, more = decoding_loop.encode_prompt(loaded.tokenizer, c.prompt, c.chat_template, max_new_tokens, limit)
    return Run(loaded, prompt_ids, c.strategies, max_new_tokens, c.seed, notes + more)


def stream(run: Run, should_stop=None, on_wait=None):
    """Yields the list of decoding_loop.Output after every step (the run shares each forward pass
    with every other run of this process; see decoding_loop.iter_compare)."""
    yield from decoding_loop.iter_compare(run.loaded.model, run.loaded.tokenizer, run.prompt_ids, run.strategies,
                                          run.max_new_tokens, run.seed, should_stop=should_stop, on_wait=on_wait)


def waiting_text(position: int) -> str:
    ahead = position - 1
    return (f"waiting: {ahead} ahead" if ahead else "waiting: next") + \
        " (the shared batch is full with other runs; yours joins at the next token boundary with room)"


def start(checked: Checked, owner: str = "") -> jobs.Job:
    """Queue a generation: job.result is a Live that fills as it runs; jobs.stop(job.id) ends it
    after the current step, keeping (and scoring) what each strategy produced."""
    live = Live(checked)

    def work(job):
        job.result = live
        job.report(0.0, "loading the model")
        live.run = run = load_and_encode(checked)
        job.check_stop()
        generate(job, live)
        return live

    return jobs.submit(work, key=RUN, kind="generate", label="Generation", owner=owner, slots=ds.RUN_SLOTS)


@gpu(duration=120)
def generate(job, live: Live) -> None:
    """Run every strategy of `live.run`, publishing each step in `live`; on a stop request,
    finish with what was produced (marked stopped, scored)."""
    run = live.run

    def waiting(position):
        live.position = position
        job.report(0.0, waiting_text(position))

    for outputs in stream(run, on_wait=waiting):  # breaking out closes the stream: the run leaves the batch
        live.outputs, live.steps, live.position = outputs, live.steps + 1, 0
        job.report(live.steps / max(run.max_new_tokens, 1), f"step {live.steps}/{run.max_new_tokens}")
        if job.should_stop():
            decoding_loop.finish_stopped(run.loaded.model, outputs)
            break


@api("Generation")
@gpu(duration=120)
def compare_json(prompt, strategies, max_new_tokens=ds.DEFAULT_NEW_TOKENS, seed=0, chat_template=True, params=None,
                 model=None) -> dict:
    """The /compare endpoint: {"model", "notes", "results": [...]} or {"error": message}."""
    run = prepare(prompt, strategies, max_new_tokens, seed, chat_template, model, params)
    outputs = decoding_loop.compare(run.loaded.model, run.loaded.tokenizer, run.prompt_ids, run.strategies,
                                    run.max_new_tokens, run.seed)
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


# ---------------------------------------------------------------- inspecting one output

@gpu(duration=30)
def step_pipeline(model_name, output, step: int) -> dict:
    """The logits pipeline of `output` at `step` (one forward pass)."""
    loaded = load(model_name)
    return decoding_loop.pipeline(loaded.model, output.prompt_ids + output.ids[:step], output.strategy)


@gpu(duration=120)
def branch(model_name, output, step: int, token_id: int, max_new_tokens: int, seed: int):
    """`output` kept up to `step`, `token_id` forced there, the same strategy continuing."""
    loaded = load(model_name)
    return decoding_loop.continue_from(loaded.model, loaded.tokenizer, output, step, int(token_id), max_new_tokens,
                                       seed)


# ---------------------------------------------------------------- the same comparison on a serving engine

def endpoint_sampling(strategy, seed: int):
    """(shared.batching.Sampling, None) for a strategy an OpenAI-compatible server can run, or
    (None, why not)."""
    from shared import batching

    s = strategy
    if s.mode in ("beam", "contrastive"):
        return None, f"{s.label} is not in the OpenAI protocol"
    if s.typical_p < 1.0 or s.no_repeat_ngram_size:
        return None, f"{s.label}: typical sampling and no-repeat n-gram are not in the OpenAI protocol"
    return batching.Sampling(do_sample=s.do_sample, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                             min_p=s.min_p, repetition_penalty=s.repetition_penalty, seed=seed), ""


@api("Generation through the endpoint")
def compare_endpoint_json(url, prompt, strategies, max_new_tokens=ds.DEFAULT_NEW_TOKENS, seed=0, chat_template=True,
                          params=None, model="", api_key="") -> dict:
    """The /compare_endpoint endpoint: the strategies an OpenAI-compatible server (vLLM, TGI,
    llama.cpp, Ollama) can run, one request each, with each token's probability and alternatives
    where the server returns log-probabilities; `views_missing` says what it did not give."""
    from shared import batching

    c = check(prompt, strategies, max_new_tokens, seed, chat_template, None, params)
    notes, results = list(c.notes), []
    for s in c.strategies:
        sampling, why = endpoint_sampling(s, c.seed)
        if sampling is None:
            notes.append(f"{why}; skipped (run it on the local model).")
            continue
        if c.chat_template:
            gen = batching.endpoint_generate(url, messages=[{"role": "user", "content": c.prompt}], model=model or "",
                                             sampling=sampling, max_new_tokens=c.max_new_tokens, api_key=api_key or "")
        else:
            gen = batching.endpoint_generate(url, prompt=c.prompt, model=model or "", sampling=sampling,
                                             max_new_tokens=c.max_new_tokens, api_key=api_key or "")
        tokens = [{"token": t, "prob": round(gen.probs[i], 6) if i < len(gen.probs) else None,
                   "top": [[a, round(p, 6)] for a, p in zip(gen.top_ids[i], gen.top_probs[i])]
                   if i < len(gen.top_ids) else []} for i, t in enumerate(gen.tokens)]
        results.append({"strategy": s.name, "label": s.label, "params": s.params(), "text": gen.text,
                        "seconds": round(gen.seconds, 3), "stop": gen.stop_reason, "tokens": tokens,
                        "views_missing": gen.views_missing})
    if not results:
        raise PromptError(" ".join(notes + ["None of these strategies can run on an OpenAI-compatible endpoint; "
                                            "pick greedy or a sampling strategy."]))
    return {"endpoint": url, "model": model or "", "seed": c.seed, "max_new_tokens": c.max_new_tokens,
            "notes": notes, "results": results}
