"""DPO labeler training on a tiny random GPT-2 (fast): config checks, trl's tokenisation reproduced,
the policy equals the reference before training, a 2-step DPOTrainer run through shared.jobs with
live metrics, a saved adapter that reloads, Stop, and the loss-panel terms."""
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "dpo_labeler"))

import dpo_train as dt  # noqa: E402
from conftest import build_tiny_gpt2  # noqa: E402
from shared import jobs  # noqa: E402

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny():
    model, tokenizer = build_tiny_gpt2(seed=1)
    tokenizer.chat_template = CHATML
    return model, tokenizer


def rows(n, offset=0):
    import dpo_data

    return [dpo_data.conversational(f"Question {i}?", f"A good short answer {i}.", f"zq xv {i} !! random words")
            for i in range(offset, offset + n)]


@pytest.mark.parametrize("config, words", [
    ("{bad json", "not valid JSON"), ([1, 2], "JSON object"), ({"lr": 1}, "Unknown config key"),
    ({"beta": "high"}, "must be a float"), ({"max_steps": 2.5}, "must be a int"), ({"max_steps": 0}, "between 1"),
    ({"learning_rate": float("nan")}, "must be a float"), ({"dataset": "mine"}, "one of seed, labels"),
    ({"r": True}, "must be a int"), ({"max_steps": 10_000}, "between 1 and 500"),
])
def test_bad_configs_are_refused(config, words):
    with pytest.raises(dt.TrainError, match=words):
        dt.parse_config(config)


def test_config_defaults_and_json_text():
    cfg = dt.parse_config('{"max_steps": 3, "beta": 0.2}')
    assert cfg.max_steps == 3 and cfg.beta == 0.2 and cfg.learning_rate == dt.DEFAULTS["learning_rate"]
    assert dt.parse_config(None) == dt.TrainConfig()


def test_tokenisation_matches_trl():
    from trl.trainer.dpo_trainer import DPOTrainer  # noqa: F401  (import check)
    _, tokenizer = tiny()
    row = rows(1)[0]
    prompt, chosen, rejected = dt.tokenize_row(tokenizer, row, 128)
    full = tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tokenize=True)
    full = list(full["input_ids"] if hasattr(full, "keys") else full)
    assert prompt + chosen == full and tokenizer.decode(chosen).startswith("A good")


def test_policy_is_the_reference_at_init_and_loss_is_log2():
    from peft import get_peft_model

    model, tokenizer = tiny()
    cfg = dt.TrainConfig(max_length=64)
    policy = get_peft_model(model, dt.lora_config(cfg, model))
    data = rows(3)
    pol = dt.pair_logps(policy, tokenizer, data, 64)
    ref = dt.reference_logps(policy, tokenizer, data, 64)
    assert pol == ref
    scored = dt.implicit_rewards(pol, ref, 0.1)
    assert scored["accuracy"] == 0.5 and scored["margin"] == 0
    terms = dt.loss_terms(policy, tokenizer, data, beta=0.1, max_length=64)
    assert all(t["margin"] == 0 and t["loss"] == pytest.approx(math.log(2)) for t in terms)
    assert terms[0]["logp_chosen"] < 0


def test_two_step_run_through_jobs_saves_an_adapter(tmp_path):
    model, tokenizer = tiny()
    cfg = dt.TrainConfig(max_steps=2, batch_size=2, max_length=48, learning_rate=1e-2, beta=0.5)
    job = jobs.run_now(lambda j: dt.train(j, cfg, rows(6), rows(4, offset=10), base=(model, tokenizer, "tiny"),
                                          adapter_root=tmp_path), key="test-dpo-train", kind="dpo")
    assert job.state == jobs.DONE, job.error
    res = job.result
    assert res["status"] == "done" and res["steps"] == 2 and len(res["loss"]) == 2 and len(res["margins"]) == 2
    assert res["heldout_accuracy_before"] == 0.5 and res["heldout_margin_before"] == 0
    assert 0 <= res["heldout_accuracy_after"] <= 1 and res["heldout_margin_after"] != 0
    assert res["s_per_step"] > 0 and res["peak_rss_bytes"] > 10**7
    assert {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"} <= set(job.metrics.names())
    assert (Path(res["adapter"]) / "adapter_config.json").exists()
    from peft import PeftModel

    again = PeftModel.from_pretrained(tiny()[0], res["adapter"])  # reloads and scores the same
    held = rows(4, offset=10)
    scored = dt.implicit_rewards(dt.pair_logps(again, tokenizer, held, 48), dt.pair_logps(tiny()[0], tokenizer, held, 48),
                                 cfg.beta)
    assert scored["accuracy"] == res["heldout_accuracy_after"]
    assert scored["margin"] == pytest.approx(res["heldout_margin_after"], abs=1e-3)


def test_stop_ends_the_run_early_and_keeps_what_was_done(tmp_path):
    model, tokenizer = tiny()
    cfg = dt.TrainConfig(max_steps=200, batch_size=2, max_length=48)

    def work(job):
        from transformers import TrainerCallback  # noqa: F401
        job.request_stop()  # asked before the first step ends: the trainer stops at the next step boundary
        return dt.train(job, cfg, rows(6), rows(2, offset=10), base=(model, tokenizer, "tiny"), adapter_root=tmp_path)

    job = jobs.run_now(work, key="test-dpo-stop", kind="dpo")
    assert job.state == jobs.STOPPED
    assert job.result["status"] == "stopped" and 1 <= job.result["steps"] < 200
    assert Path(job.result["adapter"]).exists()


def test_too_few_rows_is_a_clear_error():
    model, tokenizer = tiny()
    job = jobs.run_now(lambda j: dt.train(j, dt.TrainConfig(), rows(2), rows(2), base=(model, tokenizer, "t")),
                       key="test-dpo-few", kind="dpo")
    assert job.state == jobs.ERROR and "at least 4 are needed" in job.error
