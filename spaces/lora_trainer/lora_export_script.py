"""Train a LoRA adapter with trl's SFTTrainer + peft: the script the GenAI Lab Playground's LoRA trainer
exports with a run ("Scale out"). Everything it needs sits beside it:

    sft_config.yaml         the run's settings (trl's config file: SFTConfig + ModelConfig + data files)
    data/train.jsonl        prompt/completion rows (chat messages), the same split as in the lab
    data/eval.jsonl         the eval rows (may be absent)
    accelerate/*.yaml       accelerate configs: one GPU, several GPUs (DDP), DeepSpeed ZeRO-2

Run it on one machine with several GPUs:

    accelerate launch --config_file accelerate/multi_gpu.yaml train.py --config sft_config.yaml

Any setting can be overridden on the command line, e.g. `--max_steps 500 --per_device_train_batch_size 8`.
On a CPU (a smoke test): `accelerate launch --cpu --num_processes 1 train.py --config sft_config.yaml
--use_cpu true --bf16 false --max_steps 2`."""
import os
from dataclasses import dataclass, field

from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config, get_quantization_config


@dataclass
class DataArguments:
    train_file: str = field(default="data/train.jsonl", metadata={"help": "prompt/completion JSONL"})
    eval_file: str = field(default="data/eval.jsonl", metadata={"help": "eval rows (skipped when absent)"})


def main():
    parser = TrlParser((DataArguments, SFTConfig, ModelConfig))
    data_args, training_args, model_args = parser.parse_args_and_config()
    here = os.path.dirname(os.path.abspath(__file__))
    files = {"train": os.path.join(here, data_args.train_file)}
    eval_path = os.path.join(here, data_args.eval_file) if data_args.eval_file else ""
    if eval_path and os.path.isfile(eval_path) and os.path.getsize(eval_path) > 0:
        files["eval"] = eval_path
    else:
        training_args.eval_strategy = "no"
    data = load_dataset("json", data_files=files)

    quantization = get_quantization_config(model_args)
    model_kwargs = dict(revision=model_args.model_revision, dtype=model_args.dtype,
                        attn_implementation=model_args.attn_implementation)
    if quantization is not None:
        from accelerate import PartialState

        # each process loads its own 4-bit copy on its own GPU
        model_kwargs.update(quantization_config=quantization, device_map={"": PartialState().local_process_index})
    model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **model_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    trainer = SFTTrainer(model=model, args=training_args, train_dataset=data["train"],
                         eval_dataset=data.get("eval"), processing_class=tokenizer,
                         peft_config=get_peft_config(model_args))
    trainer.train()
    trainer.save_model(training_args.output_dir)  # the adapter: adapter_model.safetensors + adapter_config.json
    if trainer.accelerator.is_main_process:
        print(f"adapter saved to {training_args.output_dir}")


if __name__ == "__main__":
    main()
