"""The lab's actions as plain functions, driven alike by the UI, the API, the tests and the bench:
make a pair, label it, count, export, train (through shared.jobs), evaluate blind."""
from __future__ import annotations

import random
import secrets
import time
import uuid
from pathlib import Path

import dpo_data as data
import dpo_stats as stats
from dpo_generate import BLIND, SETTING_1, SETTING_2, Sampling, check_prompt, submit, wait_all
from dpo_store import Store, check_annotator, open_store
from shared.device import gpu
from shared.errors import UserError

TRAIN_KEY = "train"  # one training at a time in this process, across labs: the others wait in line
BLIND_PROMPTS = 4
MAX_BLIND_PROMPTS = 8


def store(folder: str | Path | None = None) -> Store:
    """The lab's store, with the shipped prompts registered on first open."""
    s = open_store(folder)
    s.add_shipped(data.shipped_prompts())
    return s


def model():
    from shared.loading import load_causal_lm

    return load_causal_lm()


@gpu(duration=60)
def _two_answers(prompt: str, s1: Sampling, s2: Sampling, seed: int) -> tuple[str, str, str]:
    loaded = model()
    rows = submit(loaded.model, loaded.tokenizer, [prompt], s1, seed=seed) + \
        submit(loaded.model, loaded.tokenizer, [prompt], s2, seed=seed + 1)  # both in one shared batch
    first, second = (loaded.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in wait_all(rows))
    return first, second, loaded.choice.spec.name


def new_pair(st: Store, prompt: str = "", s1: Sampling = SETTING_1, s2: Sampling = SETTING_2, created_by: str = "") -> dict:
    """Two answers to `prompt` (empty: the next uploaded or shipped prompt), stored, A/B in random order."""
    prompt_id = None
    if isinstance(prompt, str) and prompt.strip():
        prompt = check_prompt(prompt)
    elif prompt not in (None, ""):
        raise UserError("The prompt must be text.")
    else:
        row = st.take_prompt()
        if row is None:
            raise UserError("Every shipped and uploaded prompt has a pair already: type a prompt or upload more.")
        prompt, prompt_id = row["text"], row["id"]
    s1, s2 = s1.check(), s2.check()
    first, second, name = _two_answers(prompt, s1, s2, seed=secrets.randbelow(2**31))
    a_is = 1 + secrets.randbelow(2)  # which setting is shown as A: hidden from the annotator
    text_a, text_b = (first, second) if a_is == 1 else (second, first)
    set_a, set_b = (s1, s2) if a_is == 1 else (s2, s1)
    pair_id = st.add_pair(prompt, text_a, text_b, name, set_a.as_dict(), set_b.as_dict(), a_is, prompt_id, created_by)
    return {"pair_id": pair_id, "prompt": prompt, "a": text_a, "b": text_b}


def next_pair(st: Store, annotator: str = "", prompt: str = "", s1: Sampling = SETTING_1,
              s2: Sampling = SETTING_2) -> dict:
    """A pair for this annotator: one others labelled first (so agreement can be measured), else a new one."""
    if annotator and not (isinstance(prompt, str) and prompt.strip()):
        found = st.pair_for(check_annotator(annotator))
        if found:
            return {"pair_id": found["pair_id"], "prompt": found["prompt"], "a": found["text_a"], "b": found["text_b"]}
    return new_pair(st, prompt, s1, s2, created_by=annotator if isinstance(annotator, str) else "")


def label(st: Store, pair_id, choice, annotator) -> dict:
    return {"ok": True, "label_id": st.label(pair_id, choice, annotator)}


def summary(st: Store) -> dict:
    labels = st.labels()
    pairs = {p["pair_id"]: p for p in st.pairs()}
    prefs, left_out = data.preferences(labels, pairs)
    return {"pairs": len(pairs), "labels": len(labels), "labels_stored": st.count("labels"),
            "annotators": len({l["annotator"] for l in labels}),
            "per_annotator": stats.per_annotator(labels, st.skips()),
            "per_choice": {c: sum(l["choice"] == c for l in labels) for c in stats.CHOICES},
            "agreement": stats.agreement(labels), "preferences": len(prefs), "left_out": left_out,
            "length": {k: v for k, v in stats.length_bias(prefs).items() if k not in ("chosen", "rejected")},
            "settings": stats.setting_wins(labels, pairs), "prompts_left": st.prompts_left()}


def label_preferences(st: Store) -> tuple[list[dict], dict]:
    return data.preferences(st.labels(), {p["pair_id"]: p for p in st.pairs()})


def export(st: Store) -> Path:
    prefs, left_out = label_preferences(st)
    labels = st.labels()
    return data.export(data.trl_rows(prefs), left_out, len(labels), len({l["annotator"] for l in labels}))


# ---------------------------------------------------------------- training

def training_rows(st: Store, dataset: str) -> list[dict]:
    if dataset == "seed":
        return data.seed_rows("train")
    prefs, _ = label_preferences(st)
    return data.trl_rows(prefs)


def _reference_cache(config):
    """The held-back pairs' reference log-probs depend only on the base model and max_length: computed once."""
    if config.model:
        return None

    def get():
        from shared.loading import once
        from dpo_train import pair_logps

        def build():
            loaded = model()
            return pair_logps(loaded.model, loaded.tokenizer, data.seed_rows("heldout"), config.max_length)

        return once(("dpo_heldout_ref", config.max_length), build)

    return get


def submit_training(st: Store, config, owner: str = ""):
    """Queue a DPO run (shared.jobs, key "train"); returns the job. Its result is the API's dict."""
    from dpo_train import MIN_ROWS, TrainError, parse_config, train
    from shared import jobs

    cfg = parse_config(config)
    rows = training_rows(st, cfg.dataset)
    if len(rows) < MIN_ROWS:
        raise TrainError(f"Only {len(rows)} labelled pair(s) have a majority for A or B; at least {MIN_ROWS} are "
                         "needed to train on your labels. Label more, or train on the seed set.")
    heldout = data.seed_rows("heldout")

    @gpu(duration=300)
    def work(job):
        import torch

        if torch.get_num_threads() > 2 and not torch.cuda.is_available():
            torch.set_num_threads(2)
        result = train(job, cfg, rows, heldout, reference_cache=_reference_cache(cfg))
        st.add_run(result["run_id"], cfg.as_dict(), {k: v for k, v in result.items() if k != "adapter"},
                   result["adapter"])
        return result

    return jobs.submit(work, key=TRAIN_KEY, kind="dpo", label="DPO training", owner=owner)


def busy() -> str:
    """A sentence when a training run is running or waiting in this process, else ''."""
    from shared import jobs

    active = [j for j in jobs.find() if j.key == TRAIN_KEY and j.state in (jobs.QUEUED, jobs.RUNNING)]
    if not active:
        return ""
    return (f"Another training run ({active[-1].label}) is in progress; {len(active) - 1} more waiting. "
            "Try again when it ends, or ask to queue with {\"queue\": true}.")


# ---------------------------------------------------------------- blind round

@gpu(duration=120)
def blind_round(policy, tokenizer, prompts: list[str] | None = None, n: int = BLIND_PROMPTS, seed: int | None = None) -> dict:
    """The same prompts answered by the base model and by the trained policy (same sampling and seed), each
    pair shown in a random left/right order. Returns {"round_id", "items": [{prompt, left, right, left_is}]}."""
    if prompts:
        prompts = [check_prompt(p) for p in prompts][:MAX_BLIND_PROMPTS]
    else:
        pool = [r["prompt"] for r in data.seed_pairs("heldout")]
        prompts = random.Random(seed).sample(pool, min(n, len(pool)))
    seed = secrets.randbelow(2**31) if seed is None else seed
    loaded = model()
    queued = [submit(loaded.model, loaded.tokenizer, prompts, BLIND, seed=seed),  # both models' rows queued first:
              submit(policy, tokenizer, prompts, BLIND, seed=seed)]  # each model's batch, run side by side
    base, trained = ([tok.decode(ids, skip_special_tokens=True).strip() for ids in wait_all(rows)]
                     for tok, rows in zip((loaded.tokenizer, tokenizer), queued))
    items = []
    for prompt, b, t in zip(prompts, base, trained):
        left_is = "trained" if secrets.randbelow(2) else "base"
        left, right = (t, b) if left_is == "trained" else (b, t)
        items.append({"prompt": prompt, "left": left, "right": right, "left_is": left_is, "base": b, "trained": t})
    return {"round_id": uuid.uuid4().hex[:10], "items": items, "created": time.time()}


def vote(st: Store, round_: dict, index: int, choice: str, run_id: str, annotator: str = "") -> dict:
    item = round_["items"][index]
    st.add_vote(round_["round_id"], run_id, item["prompt"], item["base"], item["trained"], item["left_is"], choice,
                annotator or "anonymous")
    item["vote"] = choice
    return stats.win_rate(st.votes(run_id))
