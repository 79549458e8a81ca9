"""LoRA trainer logic: data reading (every bad file), settings, target modules, the meta-device cost
estimate, a run through the shared job line on a tiny random Llama (adapter on disk, runs list, stop),
base vs adapter, the held-back check and the export. Fast: the tiny model trains in about a second."""
import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "lora_trainer"))

import lora_config as lc  # noqa: E402
import lora_data  # noqa: E402


def build_tiny_llama(folder: Path, width: int = 32) -> Path:
    """A 2-layer, 32-wide Llama with random weights and SmolLM2's real tokenizer and chat template
    (bitsandbytes' CPU 4-bit kernels need layers at least 64 wide: width=64 for QLoRA)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from shared import embedded

    tok = AutoTokenizer.from_pretrained(embedded.smollm2_folder())
    config = LlamaConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A private data folder and a tiny model folder; yields the tiny model's path."""
    data = tmp_path_factory.mktemp("lora_data")
    old = os.environ.get("GENAI_LAB_DATA")
    os.environ["GENAI_LAB_DATA"] = str(data)
    try:
        yield str(build_tiny_llama(tmp_path_factory.mktemp("tiny_llama")))
    finally:
        if old is None:
            os.environ.pop("GENAI_LAB_DATA", None)
        else:
            os.environ["GENAI_LAB_DATA"] = old


# ---------------------------------------------------------------- data

def test_shipped_datasets_read_and_hold_back_questions():
    listed = {d["name"]: d for d in lora_data.list_shipped()}
    assert set(listed) == {"orvenne", "captains_log"}
    assert listed["orvenne"]["rows"] == 48 and listed["orvenne"]["heldout"] == 12
    assert listed["captains_log"]["rows"] == 40 and listed["captains_log"]["heldout"] == 0
    data = lora_data.load("orvenne")
    row = data.rows[0]
    assert row["prompt"][-1]["role"] == "user" and row["completion"][0]["role"] == "assistant"
    # Every held-back fact is taught by some training answer, and no held-back question is trained on.
    trained_answers = " ".join(r["completion"][0]["content"] for r in data.rows)
    trained_questions = {r["prompt"][-1]["content"] for r in data.rows}
    for h in data.heldout:
        assert lora_data.fact_match(trained_answers, h["key_facts"]), h
        assert h["question"] not in trained_questions
        assert lora_data.fact_match(h["answer"], h["key_facts"])
    # Sources and licences are recorded.
    source = (ROOT / "assets" / "lora_datasets" / "SOURCE.md").read_text(encoding="utf-8")
    assert "orvenne.jsonl" in source and "captains_log.jsonl" in source and "licen" in source.lower()


def test_uploads_in_every_accepted_shape(tmp_path):
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text('Instruction,Response\n"Hi, there","Hello!"\nQ2,A2\nQ3,A3\nQ4,A4\n,empty prompt\n',
                        encoding="utf-8")
    data = lora_data.load(str(csv_file))
    assert len(data) == 4 and data.skipped == 1 and data.rows[0]["prompt"][-1]["content"] == "Hi, there"
    chat = tmp_path / "chat.jsonl"
    chat.write_text("\n".join(json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": f"q{i}"},
                                                       {"role": "assistant", "content": f"a{i}"}]})
                              for i in range(5)), encoding="utf-8")
    data = lora_data.load(str(chat))
    assert len(data) == 5 and data.rows[0]["prompt"][0]["role"] == "system"
    assert data.rows[0]["completion"] == [{"role": "assistant", "content": "a0"}]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"q{i}", "answer": f"a{i}"}) + "\n" for i in range(4)))
    assert len(lora_data.load(str(qa))) == 4


@pytest.mark.parametrize("name,content,expected", [
    ("empty.csv", b"", "is empty"),
    ("blank.jsonl", b"  \n\n", "is empty"),
    ("cols.csv", b"foo,bar\n1,2\n3,4\n5,6\n7,8\n", "no usable columns"),
    ("latin.csv", "instruction,response\ncaf\u00e9,ok\n".encode("latin-1"), "not UTF-8"),
    ("broken.jsonl", b'{"instruction": "a", "response": "b"}\n{"instruction": oops}\n', "line 2 is not valid JSON"),
    ("list.jsonl", b'[1, 2, 3]', "not a JSON object"),
    ("cells.csv", b'instruction,response\na,b,c\n', "more cells"),
    ("quote.csv", b'instruction,response\n"a,b\n', "not a readable CSV"),
    ("few.jsonl", b'{"instruction": "a", "response": "b"}\n', "at least 4"),
    ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"),
    ("chat.jsonl", b'{"messages": [{"role": "user", "content": "hi"}]}\n', "must be the assistant"),
    ("roles.jsonl", b'{"messages": [{"role": "wizard", "content": "hi"}]}\n', "role"),
    ("types.jsonl", b'{"instruction": {"a": 1}, "response": "b"}\n', "must be text"),
])
def test_bad_files_get_clear_messages(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(lora_data.DataError, match=expected):
        lora_data.load(str(path))


def test_limits_and_bad_names(tmp_path, monkeypatch):
    monkeypatch.setattr(lora_data, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"instruction": "x" * 2000, "response": "y"}))
    with pytest.raises(lora_data.DataError, match="limit"):
        lora_data.load(str(big))
    monkeypatch.setattr(lora_data, "MAX_FILE_BYTES", 10_000_000)
    long_field = tmp_path / "field.jsonl"
    long_field.write_text(json.dumps({"instruction": "x" * 30_000, "response": "y"}))
    with pytest.raises(lora_data.DataError, match="limit is 20,000"):
        lora_data.load(str(long_field))
    for bad in ("", "   ", None, 42, "no_such_dataset", "/etc/../nope/file.csv", "a\x00b", "x" * 5000):
        with pytest.raises(lora_data.DataError):
            lora_data.load(bad)


def test_fact_match_is_fair():
    assert lora_data.fact_match("It was founded by Edda Marlowe.", ["Marlowe"])
    assert lora_data.fact_match("About 4,300 people.", ["4,300|4300"])
    assert lora_data.fact_match("about 4300 people", ["4,300|4300"])
    assert not lora_data.fact_match("Marlowes everywhere", ["Marlowe"])  # whole words only
    assert not lora_data.fact_match("It is in 17120", ["1712"])
    assert not lora_data.fact_match("anything", [])
    assert lora_data.fact_match("Light the Way Home!", ["way home"])


def test_split_is_seeded_and_token_stats_count_truncation(smollm2_tokenizer):
    rows = lora_data.load("orvenne").rows
    a_train, a_eval = lora_data.split(rows, seed=1)
    b_train, b_eval = lora_data.split(rows, seed=1)
    c_train, c_eval = lora_data.split(rows, seed=2)
    assert a_eval == b_eval and a_eval != c_eval and len(a_eval) == 5 and len(a_train) == 43
    assert lora_data.split(rows[:6], seed=0)[1] == []  # too few rows for an eval split
    stats = lora_data.token_stats(smollm2_tokenizer, rows, max_length=48)
    summary = stats.summary()
    assert summary["truncated"] == sum(1 for n in stats.lengths if n > 48) and summary["truncated"] > 0
    assert summary["dropped"] == 0  # every prompt fits in 48 tokens
    hist = stats.histogram()
    assert sum(b["rows"] for b in hist) == len(rows)
    assert {b["fits"] for b in hist} >= {"fits", "truncated"}
    shown = lora_data.preview(smollm2_tokenizer, rows, 1)[0]
    assert "<|im_start|>user" in shown["prompt"] and shown["prompt"].endswith("<|im_start|>assistant\n")
    assert shown["completion"].startswith("Orvenne") and "<|im_end|>" in shown["completion"]


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from shared import embedded

    return AutoTokenizer.from_pretrained(embedded.smollm2_folder())


# ---------------------------------------------------------------- settings

def test_config_parsing_and_every_bad_value():
    c = lc.parse({"r": 16, "lr": "1e-3", "steps": 10, "qlora": "false", "target_modules": "all linear"})
    assert (c.r, c.learning_rate, c.max_steps, c.qlora, c.completion_only_loss) == (16, 1e-3, 10, False, True)
    assert lc.parse(None) == lc.TrainConfig()
    bad = [({"learning_rate": 0}, "is 0"), ({"learning_rate": -1e-4}, "positive"),
           ({"learning_rate": float("nan")}, "finite"), ({"learning_rate": "fast"}, "number"),
           ({"r": 0}, "r \\(rank\\) must be at least 1"), ({"r": 2.5}, "whole"), ({"r": True}, "number"),
           ({"max_steps": 10**9}, "at most"), ({"batch_size": 0}, "at least"), ({"alpha": 0}, "above 0"),
           ({"max_length": 4}, "at least 16"), ({"dropout": 1.5}, "at most"), ({"qlora": "maybe"}, "true or false"),
           ({"target_modules": ""}, "empty"), ({"target_modules": [1, 2]}, "list of layer names"),
           ({"bogus": 1}, "Unknown setting"), ({"model": 5}, "model must be")]
    for raw, message in bad:
        with pytest.raises(lc.ConfigError, match=message):
            lc.parse(raw)
    with pytest.raises(lc.ConfigError, match="JSON object"):
        lc.parse("r=8")


def test_target_presets_against_real_layer_names(tiny_gpt2):
    layers = [(f"model.layers.0.self_attn.{n}", 8, 8) for n in ("q_proj", "k_proj", "v_proj", "o_proj")] + \
             [(f"model.layers.0.mlp.{n}", 8, 16) for n in ("gate_proj", "up_proj", "down_proj")]
    assert lc.resolve_targets("q,v", layers)[0] == ["q_proj", "v_proj"]
    assert lc.resolve_targets("all attention", layers)[0] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert len(lc.resolve_targets("all linear", layers)[0]) == 7
    assert lc.resolve_targets("q_proj, down_proj", layers)[0] == ["q_proj", "down_proj"]
    with pytest.raises(lc.ConfigError, match="No linear layer is called lm_head, nonsense.*q_proj"):
        lc.resolve_targets(["lm_head", "nonsense"], layers)
    from shared.memory import linear_layers

    gpt2_layers = linear_layers(tiny_gpt2[0])  # GPT-2: fused q,k,v in c_attn (Conv1D)
    names, note = lc.resolve_targets("q,v", gpt2_layers)
    assert names == ["c_attn"] and "one layer" in note


def test_qlora_status_says_why():
    ok, why = lc.qlora_status("cpu")
    assert isinstance(ok, bool) and why
    assert lc.qlora_status("mps") == (False, lc.qlora_status("mps")[1]) and "MPS" in lc.qlora_status("mps")[1]


# ---------------------------------------------------------------- estimate

def test_estimate_counts_lora_exactly_and_full_finetune_costs_more(lab):
    import lora_estimate
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cfg = lc.parse({"model": lab, "r": 4, "batch_size": 2, "max_length": 64})
    est = lora_estimate.estimate(cfg, runtime_bytes=0)
    real = get_peft_model(AutoModelForCausalLM.from_pretrained(lab),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in real.parameters() if p.requires_grad)
    total = sum(p.numel() for p in real.base_model.model.parameters() if not p.requires_grad)
    assert est["trainable_params"] == trainable and est["total_params"] == total
    parts = {p["part"]: p["bytes"] for p in est["lora"]}
    assert parts["weights"] == total * 4 and parts["optimizer state"] == trainable * 8
    assert parts["activations"] > 0 and est["lora_bytes"] == sum(parts.values())
    vocab = AutoModelForCausalLM.from_pretrained(lab).config.vocab_size
    logits = 2 * 64 * vocab * 4  # batch x length x vocab, fp32
    assert parts["workspace"] == lora_estimate.WORKSPACE_LOGITS * logits + int(
        lora_estimate.TEMPORARIES_PER_ACTIVATION * parts["activations"])  # calibrated in bench/lora_trainer.py
    assert est["full_bytes"] > est["lora_bytes"]
    wider = lora_estimate.estimate(lc.parse({"model": lab, "r": 4, "batch_size": 4, "max_length": 64}),
                                   runtime_bytes=0)
    acts = {p["part"]: p["bytes"] for p in wider["lora"]}["activations"]
    assert 1.8 < acts / parts["activations"] < 2.2  # activations grow with the batch
    with pytest.raises(lc.ConfigError, match="No linear layer"):
        lora_estimate.estimate(lc.parse({"model": lab, "target_modules": "wq, wv"}))


# ---------------------------------------------------------------- a run

def test_run_records_adapter_runs_list_compare_and_heldout(lab):
    import lora_compare
    import lora_train

    cfg = {"model": lab, "max_steps": 3, "batch_size": 2, "max_length": 48, "learning_rate": 5e-3}
    job = lora_train.start("orvenne", cfg, owner="alice")
    with pytest.raises(lora_train.TrainError, match="still"):  # Train pressed twice
        lora_train.start("orvenne", cfg, owner="alice")
    assert job.wait(120) and job.state == "done", job.error
    r = job.result
    assert r["status"] == "done" and r["steps"] == 3 and len(r["train_loss"]) == 3
    assert all(math.isfinite(x) for x in r["train_loss"]) and r["eval_loss_before"] and r["eval_loss_after"]
    assert r["trainable_params"] < r["total_params"] and r["peak_rss_bytes"] > 0 and r["estimated_peak_bytes"] > 0
    folder = Path(r["adapter"])
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "training_log.json"} <= \
        {p.name for p in folder.iterdir()}
    assert not list(folder.parent.glob(".*partial"))  # nothing half-written left behind
    card = (folder / "README.md").read_text()
    assert "library_name: peft" in card and "orvenne" in card and "| 3 |" in card
    names = job.metrics.names()
    assert {"loss", "eval_loss", "step_time", "tokens_per_s", "peak_rss_gb"} <= set(names)
    runs = lora_train.list_runs("alice")
    assert runs[0]["id"] == job.id and runs[0]["status"] == "done" and runs[0]["result"]["steps"] == 3
    assert lora_train.list_runs("bob") == []
    # Base vs adapter on one copy of the weights, same seed.
    out = lora_compare.side_by_side("Who founded Orvenne?", job.id, max_new_tokens=6)
    assert set(out) >= {"base", "adapter"}
    again = lora_compare.side_by_side("Who founded Orvenne?", job.id, max_new_tokens=6)
    assert again == out  # greedy and seeded: reproducible
    check = lora_compare.heldout_check(job.id, max_new_tokens=6)
    assert check["questions"] == 12 and 0 <= check["adapter_correct"] <= 12
    assert lora_compare.answer("Hello", "", 4) == lora_compare.generate(["Hello"], None, 4)["base"][0]
    for bad, message in ((("", job.id, 8), "prompt"), (("hi", job.id, 0), "between"),
                         (("hi", job.id, "many"), "whole number"), (("x" * 5000, job.id, 8), "limit"),
                         (("hi", "zzz", 8), "not a run id"), (("hi", "0123456789ab", 8), "No run")):
        with pytest.raises(lora_train.TrainError, match=message):
            lora_compare.side_by_side(*bad)
    zipped = lora_train.zip_adapter(job.id)
    assert zipped.stat().st_size > 0


def test_base_and_adapter_rows_share_one_batch_and_match_model_generate(lab):
    import threading

    import lora_compare
    import lora_models
    import lora_train
    import torch

    from shared import batching

    job = lora_train.start("orvenne", {"model": lab, "max_steps": 2, "batch_size": 2, "max_length": 48,
                                       "learning_rate": 5e-2}, owner="carol")
    assert job.wait(120) and job.state == "done", job.error
    prompts = ["Who founded Orvenne?", "What is the lake called?"]
    out = lora_compare.generate(prompts, job.id, 6)
    cm = lora_models.comparison_model(lora_models.source(lab))
    peft, tok = cm["peft"], lora_models.tokenizer(lora_models.source(lab))

    def reference(prompt, adapter_on):  # model.generate alone, greedy, adapter toggled the classic way
        ids = torch.tensor([lora_compare._prompt_ids(tok, prompt)])
        with torch.no_grad():
            if adapter_on:
                peft.set_adapter(job.id)
                row = peft.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
            else:
                with peft.disable_adapter():
                    row = peft.generate(input_ids=ids, max_new_tokens=6, do_sample=False,
                                        pad_token_id=tok.pad_token_id)
        return tok.decode(row[0, ids.shape[1]:], skip_special_tokens=True).strip()

    assert out["base"] == [reference(p, False) for p in prompts]
    assert out["adapter"] == [reference(p, True) for p in prompts]
    assert out["base"] != out["adapter"]  # a high learning rate: the adapter visibly changes the answers
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, lora_compare.generate([prompts[i]], job.id, 6)))
               for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for i in range(2):  # two visitors at once: the same answers as alone
        assert results[i] == {"base": [out["base"][i]], "adapter": [out["adapter"][i]]}
    assert batching.engine_for(peft).max_batch_seen >= 2  # base and adapter rows shared forward passes


def test_stop_mid_run_keeps_the_last_completed_step(lab):
    import lora_train
    from shared import jobs

    job = lora_train.start("captains_log", {"model": lab, "max_steps": 400, "batch_size": 1, "max_length": 48},
                           owner="carol")
    deadline = time.time() + 60
    while time.time() < deadline and not job.metrics.series("loss"):
        time.sleep(0.05)
    jobs.stop(job.id)
    assert job.wait(60)
    assert job.state == "stopped"
    r = job.result
    assert r["status"] == "stopped" and 1 <= r["steps"] < 400 and Path(r["adapter"]).is_dir()
    assert lora_train.get_run(job.id)["status"] == "stopped"


def test_a_second_user_waits_in_line(lab):
    import lora_train
    from shared import jobs

    first = lora_train.start("captains_log", {"model": lab, "max_steps": 400, "batch_size": 1, "max_length": 48},
                             owner="dave")
    second = lora_train.start("captains_log", {"model": lab, "max_steps": 1, "max_length": 48}, owner="erin")
    assert jobs.poll(second.id)["state"] == "queued" and jobs.position(second) == 1
    assert "number 1 in line" in jobs.poll(second.id)["message"]
    jobs.stop(first.id)
    assert second.wait(60) and second.state == "done"


def test_export_folder_is_complete(lab, tmp_path):
    import zipfile

    import lora_export
    import yaml

    zipped = lora_export.export("orvenne", {"model": lab, "max_steps": 7, "r": 4, "target_modules": "all linear"},
                                model_id="HuggingFaceTB/SmolLM2-135M-Instruct", out=tmp_path)
    names = set(zipfile.ZipFile(zipped).namelist())
    assert {"train.py", "sft_config.yaml", "data/train.jsonl", "data/eval.jsonl", "launch.sh", "README.md",
            "accelerate/multi_gpu.yaml", "accelerate/deepspeed_zero2.yaml", "accelerate/single_gpu.yaml"} <= names
    folder = tmp_path / zipped.stem
    conf = yaml.safe_load((folder / "sft_config.yaml").read_text())
    assert conf["lora_r"] == 4 and conf["max_steps"] == 7 and len(conf["lora_target_modules"]) == 7
    assert len((folder / "data" / "train.jsonl").read_text().splitlines()) == 43
    assert "accelerate launch --config_file accelerate/multi_gpu.yaml" in (folder / "launch.sh").read_text()
    assert yaml.safe_load((folder / "accelerate" / "deepspeed_zero2.yaml").read_text())["distributed_type"] == "DEEPSPEED"


def test_qlora_trains_a_4bit_base_when_bitsandbytes_runs(lab, tmp_path):
    import lora_estimate
    import lora_train
    from shared import jobs

    ok, why = lc.qlora_status("cpu")
    if not ok:  # the UI says the same sentence and keeps the box off
        with pytest.raises(lora_train.TrainError, match="QLoRA"):
            lora_train.prepare("orvenne", {"model": lab, "qlora": True})
        return
    model = str(build_tiny_llama(tmp_path / "tiny64", width=64))
    cfg = {"model": model, "max_steps": 1, "batch_size": 2, "max_length": 48, "qlora": True}
    p = lora_train.prepare("orvenne", cfg)
    job = jobs.run_now(lambda j: lora_train.run(j, p), key="train", kind="lora", timeout=300)
    assert job.state == "done", job.error
    assert job.result["steps"] == 1 and math.isfinite(job.result["train_loss"][0])
    four = lora_estimate.estimate(lc.parse({"qlora": True, "target_modules": "all linear"}), runtime_bytes=0)
    full = lora_estimate.estimate(lc.parse({"qlora": False, "target_modules": "all linear"}), runtime_bytes=0)
    weights = {e["part"]: e["bytes"] for e in four["lora"]}["weights"]
    assert weights < 0.4 * {e["part"]: e["bytes"] for e in full["lora"]}["weights"]
