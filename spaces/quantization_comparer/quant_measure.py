"""Really load a model at each precision and measure it: footprint, load time, time per token,
perplexity on a fixed text and the greedy continuation of a fixed prompt.

Each model is freed before the next one is loaded. One measurement at a time is the app's job
(a shared.jobs admission key): callers here are not serialised. No gradio here."""
import difflib
import gc
import logging
import time
from dataclasses import dataclass

from quant_configs import ModelRef, reference_text, resolve_model, weights_available
from quant_estimate import BUILD_LOCK, PRECISIONS, QUANTIZED, count_config, machine_ram, weight_bytes
from shared import jobs
from shared.device import gpu
from shared.errors import UserError
from shared.imports import transformers_ready
from shared.loading import reserve
from shared.memory import fmt_bytes, measure_footprint, param_bytes, process_rss, return_free_memory
from shared.models import ModelUnavailable

# ---------------------------------------------------------------- limits and UI defaults
DEFAULT_PRECISIONS = ["fp32", "bf16", "int8", "nf4", "nf4-dq"]  # ticked when the page opens
PROMPT = "The most useful thing to know about lighthouses is"
NEW_TOKENS = 16
REFERENCE_TOKENS = 256
LOAD_HEADROOM = 1.5  # loading can briefly hold a second copy of a layer's weights and the file pages
QUALITY_ORDER = ["fp32", "fp16", "bf16", "int8", "nf4", "nf4-dq"]  # highest precision first
GPU_SECONDS = 300  # ZeroGPU time asked for one measurement (several loads of the model)
STOPPED_ROW = "not measured: the measurement was stopped before this precision."
JOB_KEY = "measure"  # one measurement at a time per process; the others wait in line with their position


class PrecisionError(UserError, ValueError):
    """Precision names that are not a list of known names."""


class TooLarge(UserError):
    """Refused before loading: the estimate says it does not fit in this machine's memory."""


class NotGenerative(UserError, ValueError):
    """Generation asked of an encoder-only model."""


def parse_precisions(precisions) -> list[str]:
    """A list (or comma-separated string) of precision names, validated, in canonical order."""
    if isinstance(precisions, str):
        precisions = [p for p in precisions.replace(" ", ",").split(",") if p]
    if not isinstance(precisions, (list, tuple)):
        raise PrecisionError(f"precisions must be a list of names from {', '.join(PRECISIONS)}.")
    names = []
    for p in precisions:
        if not isinstance(p, str) or p.strip().lower() not in PRECISIONS:
            raise PrecisionError(f"Unknown precision {str(p)[:40]!r}: use names from {', '.join(PRECISIONS)}.")
        names.append(p.strip().lower())
    if not names:
        raise PrecisionError(f"Pick at least one precision ({', '.join(PRECISIONS)}).")
    return [p for p in PRECISIONS if p in names]


def _quiet():
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as tlog

    tlog.disable_progress_bar()
    tlog.set_verbosity_error()


def load_kwargs(precision: str, device: str) -> dict:
    import torch
    transformers_ready()
    from transformers import BitsAndBytesConfig

    if precision in ("fp32", "fp16", "bf16"):
        kw = dict(dtype={"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision])
    else:
        if device == "mps":
            raise ModelUnavailable("bitsandbytes does not run on Apple mps: int8/nf4 need a CUDA GPU or the CPU.")
        if precision == "int8":
            q = BitsAndBytesConfig(load_in_8bit=True)
        else:
            q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                                   bnb_4bit_use_double_quant=precision == "nf4-dq")
        kw = dict(dtype=torch.bfloat16, quantization_config=q)
    if device == "cuda":
        kw["device_map"] = {"": 0}
    return kw


def load_at(ref: ModelRef, precision: str, device: str, where: str, offline: bool = True):
    """The model loaded at `precision` from `where` (weights_folder()), not moved afterwards:
    bnb places its own weights."""
    transformers_ready()
    from transformers import AutoModel, AutoModelForCausalLM

    _quiet()
    auto = AutoModelForCausalLM if ref.generative else AutoModel
    try:
        with BUILD_LOCK:  # never while an estimate has nn.Module patched for the meta device
            model = auto.from_pretrained(where, local_files_only=offline, **load_kwargs(precision, device))
    except ModelUnavailable:
        raise
    except Exception as exc:
        from shared.loading import explain

        raise ModelUnavailable(explain(ref.hub_id or ref.name, exc)) from exc
    if device not in ("cpu", "cuda") and precision not in QUANTIZED:
        model.to(device)
    return model.eval()


def quant_state_bytes(model) -> int:
    """Bytes bitsandbytes keeps beside the weights and outside parameters(): 4-bit absmax and code
    tables (and the nested state of double quantization), 8-bit per-row scales (SCB)."""
    import torch

    seen, total = set(), 0

    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()

    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            add(qs.absmax)
            add(qs.code)
            if getattr(qs, "nested", False):
                add(qs.offset)
                add(qs.state2.absmax)
                add(qs.state2.code)
        add(getattr(p, "SCB", None))
    return total


def _tokenizer(ref: ModelRef, where: str, offline: bool = True):
    transformers_ready()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(where, local_files_only=offline)
    except Exception as exc:
        from shared.loading import explain

        raise ModelUnavailable(explain(ref.hub_id or ref.name, exc)) from exc


def perplexity(model, tokenizer, text: str, device: str, max_tokens: int = REFERENCE_TOKENS) -> tuple[float, int, float]:
    """exp(mean next-token loss) over the first `max_tokens` tokens -> (ppl, tokens, seconds)."""
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids[:, :max_tokens].to(device)
    start = time.perf_counter()
    with torch.no_grad():
        loss = model(ids, labels=ids).loss
    return float(torch.exp(loss.float())), ids.shape[1], time.perf_counter() - start


def continue_text(ref: ModelRef, model, tokenizer, device: str, prompt: str = PROMPT,
                  new_tokens: int = NEW_TOKENS) -> tuple[str, list[int], float]:
    """Greedy continuation -> (text, token ids, seconds)."""
    import torch

    if not ref.generative:
        raise NotGenerative(f"{ref.name} is an encoder ({ref.config.model_type}): it turns text into vectors and "
                            "has no next-token head, so it cannot generate. Perplexity and continuations apply "
                            "to causal language models such as SmolLM2.")
    enc = tokenizer(prompt, return_tensors="pt").to(device)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    seconds = time.perf_counter() - start
    new = out[0][enc.input_ids.shape[1]:].tolist()
    return tokenizer.decode(new, skip_special_tokens=True), new, seconds


def encode_speed(model, tokenizer, text: str, device: str) -> tuple[int, float]:
    import torch

    enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=REFERENCE_TOKENS).to(device)
    start = time.perf_counter()
    with torch.no_grad():
        model(**enc)
    return enc.input_ids.shape[1], time.perf_counter() - start


def word_diff(reference: str, other: str) -> str:
    """Markdown: words only in the reference struck through, words only in `other` in bold."""
    a, b = reference.split(), other.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(" ".join(a[i1:i2]))
        else:
            if i2 > i1:
                out.append("~~" + " ".join(a[i1:i2]) + "~~")
            if j2 > j1:
                out.append("**" + " ".join(b[j1:j2]) + "**")
    return " ".join(out)


def _free(model=None):
    import torch

    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return_free_memory()  # so the next RSS delta starts clean


@dataclass
class Plan:
    ref: ModelRef
    precisions: list
    estimates: dict
    refused: dict
    source: str


def plan(model_name, precisions) -> Plan:
    """Resolve and check everything before loading: the estimate decides what fits in RAM."""
    names = parse_precisions(precisions)
    ref = resolve_model(model_name)
    counts = count_config(ref.config, ref.generative)
    estimates = {p: weight_bytes(counts, p) for p in names}
    _, available = machine_ram()
    refused = {}
    for p in names:
        need = estimates[p].bytes * LOAD_HEADROOM
        if need > available:
            refused[p] = (f"refused before loading: the estimate for {ref.name} at {p} is {fmt_bytes(estimates[p].bytes)} "
                          f"(x{LOAD_HEADROOM} while loading = {fmt_bytes(need)}), more than this machine's free "
                          f"memory ({fmt_bytes(available)}).")
    if len(refused) == len(names):
        smallest = min(names, key=lambda p: estimates[p].bytes)
        raise TooLarge(f"{ref.name} does not fit here: even at {smallest} the estimate is "
                       f"{fmt_bytes(estimates[smallest].bytes)} of weights (x{LOAD_HEADROOM} while loading), and this "
                       f"machine has {fmt_bytes(available)} of memory free. Nothing was loaded. The Estimate tab "
                       "shows where it would fit.")
    ok, source = weights_available(ref)
    if not ok:
        raise ModelUnavailable(source)
    if source in ("hub", "local cache"):  # a shared server loads only its list (shared.hubguard)
        from quant_configs import shipped
        from shared import hubguard
        from shared.models import registered_ids

        listed = ref.hub_id in registered_ids() or any(d.get("_name_or_path") == ref.hub_id for d in shipped().values())
        if why := hubguard.policy_refusal(_spec(ref), listed):
            raise ModelUnavailable(why)
    return Plan(ref, names, estimates, refused, source)


def _spec(ref: ModelRef):
    from shared.models import ModelSpec

    return ModelSpec(ref.name, ref.hub_id or ref.name, "causal" if ref.generative else "encoder")


def weights_folder(ref: ModelRef, source: str, device: str, progress=None) -> tuple[str, bool]:
    """(where, local_files_only) for from_pretrained: the embedded folder, or the Hub model's files
    downloaded first with progress (only those a load reads) by shared.loading, like every lab."""
    if ref.folder is not None:
        return str(ref.folder), True
    from shared.loading import fetch
    from shared.models import Choice

    return fetch(Choice(_spec(ref), source, ""), device,
                 progress and (lambda fraction, text: progress(0.05 * fraction, text)))


@gpu(duration=GPU_SECONDS)
def measure(model_name, precisions, progress=None, device: str | None = None, new_tokens: int = NEW_TOKENS,
            reference_tokens: int = REFERENCE_TOKENS, should_stop=None) -> dict:
    """Load `model_name` at each precision in turn and measure it (see the module docstring).

    progress(fraction, text) is called along the way; when should_stop() turns true, the precisions
    not yet started are skipped (marked in their rows) and data["stopped"] is True. Raises
    TooLarge, ModelUnavailable or PrecisionError with a message for the UI."""
    from shared.device import pick_device

    progress = progress or (lambda *_: None)
    should_stop = should_stop or (lambda: False)
    p = plan(model_name, precisions)
    ref = p.ref
    device = device or pick_device()
    where, offline = weights_folder(ref, p.source, device, progress)
    progress(0.05, f"Loading the tokenizer of {ref.name}")
    tokenizer = _tokenizer(ref, where, offline)
    text = reference_text()
    results, steps, stopped = {}, len(p.precisions), False
    for i, prec in enumerate(p.precisions):
        est = p.estimates[prec]
        row = dict(precision=prec, estimated_bytes=est.bytes, estimate_formula=est.formula,
                   naive_bytes=est.naive_bytes, naive_formula=est.naive_formula)
        stopped = stopped or should_stop()
        if prec in p.refused or stopped:
            row["error"] = STOPPED_ROW if stopped else p.refused[prec]
            results[prec] = row
            continue
        progress(i / steps, f"{prec}: loading {ref.name} ({i + 1}/{steps})")
        _free()
        # Room in the server's model budget (shared.modelcache) for this load, other labs' models
        # unloaded first if need be; held while the model is measured, then freed.
        with reserve(("quantization", ref.hub_id or ref.name, prec), device, est.bytes):
            start = time.perf_counter()
            with measure_footprint() as fp:
                model = load_at(ref, prec, device, where, offline)
            load_s = time.perf_counter() - start
            params = param_bytes(model)
            qstate = quant_state_bytes(model)
            measured = params + qstate
            row.update(measured_bytes=measured, params_buffers_bytes=params, quant_state_bytes=qstate,
                       get_memory_footprint=int(model.get_memory_footprint()), rss_delta_bytes=int(fp.rss_bytes),
                       device_delta_bytes=int(fp.device_bytes), load_s=round(load_s, 3),
                       error_pct=round(100 * (est.bytes - measured) / measured, 3),
                       naive_error_pct=round(100 * (est.naive_bytes - measured) / measured, 2),
                       measured_formula=(f"parameters + buffers {fmt_bytes(params)} (model.get_memory_footprint()) "
                                         f"+ quantization state {fmt_bytes(qstate)} (absmax/scales outside parameters) "
                                         f"= {fmt_bytes(measured)}"))
            progress((i + 0.5) / steps, f"{prec}: perplexity and generation")
            if ref.generative:
                ppl, n_tok, _ = perplexity(model, tokenizer, text, device, reference_tokens)
                cont, ids, secs = continue_text(ref, model, tokenizer, device, PROMPT, new_tokens)
                row.update(perplexity=round(ppl, 4), perplexity_tokens=n_tok, continuation=cont, continuation_ids=ids,
                           ms_per_token=round(1000 * secs / max(len(ids), 1), 2),
                           speed_formula=f"greedy generate of {len(ids)} new tokens took {secs:.2f} s / {len(ids)}")
            else:
                n_tok, secs = encode_speed(model, tokenizer, text, device)
                row.update(perplexity=None, continuation=None, ms_per_token=round(1000 * secs / max(n_tok, 1), 3),
                           speed_formula=f"one encoder forward pass over {n_tok} tokens took {secs:.3f} s / {n_tok}",
                           generation="not applicable: " + ref.name + " is an encoder (no next-token head).")
            # Weights loaded from safetensors can stay memory-mapped until first touched, so the RSS
            # delta right after loading can be far below the model's size; after use it is not.
            row["rss_after_use_bytes"] = int(process_rss() - fp.rss_before)
            del model
            _free()
            results[prec] = row
    _compare_quality(results)
    progress(1.0, "done")
    return dict(model=ref.name, hub_id=ref.hub_id, source=p.source, kind=ref.kind, device=device, note=ref.note,
                prompt=PROMPT if ref.generative else None, new_tokens=new_tokens if ref.generative else 0,
                results=results, stopped=stopped)


def start_measurement(model_name, precisions, owner: str = "", **options) -> jobs.Job:
    """Check the request at once (raises TooLarge, ModelUnavailable, PrecisionError), then queue
    the measurement behind any other: job.report carries its progress, jobs.stop ends it after
    the current precision, job.result is measure()'s dict."""
    plan(model_name, precisions)

    def work(job):
        return measure(model_name, precisions, progress=job.report, should_stop=job.should_stop, **options)

    return jobs.submit(work, key=JOB_KEY, kind="measure", label="The measurement", owner=owner)


def _compare_quality(results: dict) -> None:
    done = [p for p in QUALITY_ORDER if p in results and results[p].get("continuation") is not None]
    if not done:
        return
    base = results[done[0]]
    for p in done:
        r = results[p]
        same = 0
        for a, b in zip(base["continuation_ids"], r["continuation_ids"]):
            if a != b:
                break
            same += 1
        r.update(reference_precision=done[0], same_as_reference=r["continuation_ids"] == base["continuation_ids"],
                 matching_leading_tokens=same, diff=word_diff(base["continuation"], r["continuation"]),
                 perplexity_change_pct=round(100 * (r["perplexity"] - base["perplexity"]) / base["perplexity"], 2))
