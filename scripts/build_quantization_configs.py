"""Write the model config.json files the quantization comparer ships for offline estimates.

There is no Hub access where the project is built, so each config is written from the model's
published architecture numbers (the config.json of its Hub repository): the fields that decide
parameter count and KV-cache size are exact; fields that only change numerics (rope scaling
factors, token ids) are kept where short and left out where long (noted in SOURCES.md).

    python scripts/build_quantization_configs.py   # rewrites assets/quantization_comparer/model_configs/
"""
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "assets" / "quantization_comparer" / "model_configs"


def llama(hidden, inter, layers, heads, kv, vocab, tie, max_pos, rope_theta, head_dim=None, rope_factor=None,
          bos=128000, eos=128001, rms=1e-5):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
           "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
           "tie_word_embeddings": tie, "max_position_embeddings": max_pos, "rms_norm_eps": rms,
           "rope_theta": rope_theta, "attention_bias": False, "mlp_bias": False,
           "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": "bfloat16"}
    if head_dim:
        cfg["head_dim"] = head_dim
    if rope_factor:
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": rope_factor, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    return cfg


def qwen2(hidden, inter, layers, heads, kv, vocab, tie, max_pos=32768):
    return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
            "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
            "tie_word_embeddings": tie, "max_position_embeddings": max_pos, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "use_sliding_window": False, "sliding_window": max_pos,
            "max_window_layers": layers, "bos_token_id": 151643, "eos_token_id": 151645,
            "torch_dtype": "bfloat16"}


def gemma2(hidden, inter, layers, heads, kv, head_dim=256, scalar=256):
    return {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2",
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size": hidden, "intermediate_size": inter,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "head_dim": head_dim, "vocab_size": 256000, "tie_word_embeddings": True,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "query_pre_attn_scalar": scalar, "sliding_window": 4096, "final_logit_softcapping": 30.0,
            "attn_logit_softcapping": 50.0, "attention_bias": False, "bos_token_id": 2, "eos_token_id": 1,
            "pad_token_id": 0, "torch_dtype": "bfloat16"}


def gemma3_text(hidden, inter, layers, heads, kv, max_pos):
    return {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size": hidden, "intermediate_size": inter,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "head_dim": 256, "vocab_size": 262144, "tie_word_embeddings": True,
            "max_position_embeddings": max_pos, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0, "query_pre_attn_scalar": 256, "sliding_window": 512,
            "sliding_window_pattern": 6, "attention_bias": False, "bos_token_id": 2, "eos_token_id": 1,
            "pad_token_id": 0, "torch_dtype": "bfloat16"}


def phi3(max_pos):
    return {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_act": "silu",
            "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32064,
            "tie_word_embeddings": False, "max_position_embeddings": max_pos,
            "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "sliding_window": 2047, "bos_token_id": 1, "eos_token_id": 32000, "pad_token_id": 32000,
            "torch_dtype": "bfloat16"}


def gpt2(n_embd, n_layer, n_head):
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": n_embd, "n_layer": n_layer,
            "n_head": n_head, "n_positions": 1024, "n_ctx": 1024, "vocab_size": 50257,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
            "bos_token_id": 50256, "eos_token_id": 50256, "torch_dtype": "float32"}


# name -> (Hub repository whose config.json the numbers come from, config, published size)
CONFIGS = {
    "Llama-3.2-1B": ("meta-llama/Llama-3.2-1B", llama(2048, 8192, 16, 32, 8, 128256, True, 131072, 500000.0, 64, 32.0), "1.24B"),
    "Llama-3.2-3B": ("meta-llama/Llama-3.2-3B", llama(3072, 8192, 28, 24, 8, 128256, True, 131072, 500000.0, 128, 32.0), "3.21B"),
    "Llama-3.1-8B": ("meta-llama/Llama-3.1-8B", llama(4096, 14336, 32, 32, 8, 128256, False, 131072, 500000.0, 128, 8.0), "8.03B"),
    "Llama-3.1-70B": ("meta-llama/Llama-3.1-70B", llama(8192, 28672, 80, 64, 8, 128256, False, 131072, 500000.0, 128, 8.0), "70.6B"),
    "Mistral-7B-Instruct-v0.3": ("mistralai/Mistral-7B-Instruct-v0.3",
                                 {**llama(4096, 14336, 32, 32, 8, 32768, False, 32768, 1000000.0, 128, bos=1, eos=2),
                                  "architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": None},
                                 "7.25B"),
    "Qwen2.5-0.5B": ("Qwen/Qwen2.5-0.5B", qwen2(896, 4864, 24, 14, 2, 151936, True), "0.49B"),
    "Qwen2.5-1.5B": ("Qwen/Qwen2.5-1.5B", qwen2(1536, 8960, 28, 12, 2, 151936, True), "1.54B"),
    "Qwen2.5-3B": ("Qwen/Qwen2.5-3B", qwen2(2048, 11008, 36, 16, 2, 151936, True), "3.09B"),
    "Qwen2.5-7B": ("Qwen/Qwen2.5-7B", qwen2(3584, 18944, 28, 28, 4, 152064, False, 131072), "7.62B"),
    "Qwen2.5-14B": ("Qwen/Qwen2.5-14B", qwen2(5120, 13824, 48, 40, 8, 152064, False, 131072), "14.8B"),
    "Qwen2.5-32B": ("Qwen/Qwen2.5-32B", qwen2(5120, 27648, 64, 40, 8, 152064, False, 131072), "32.8B"),
    "Qwen2.5-72B": ("Qwen/Qwen2.5-72B", qwen2(8192, 29568, 80, 64, 8, 152064, False, 131072), "72.7B"),
    "gemma-2-2b": ("google/gemma-2-2b", gemma2(2304, 9216, 26, 8, 4), "2.61B"),
    "gemma-2-9b": ("google/gemma-2-9b", gemma2(3584, 14336, 42, 16, 8), "9.24B"),
    "gemma-2-27b": ("google/gemma-2-27b", gemma2(4608, 36864, 46, 32, 16, 128, 144), "27.2B"),
    "gemma-3-270m": ("google/gemma-3-270m", gemma3_text(640, 2048, 18, 4, 1, 32768), "0.27B"),
    "gemma-3-1b-pt": ("google/gemma-3-1b-pt", gemma3_text(1152, 6912, 26, 4, 1, 32768), "1.00B"),
    "Phi-3-mini-4k-instruct": ("microsoft/Phi-3-mini-4k-instruct", phi3(4096), "3.82B"),
    "Phi-3.5-mini-instruct": ("microsoft/Phi-3.5-mini-instruct", phi3(131072), "3.82B"),
    "gpt2": ("openai-community/gpt2", gpt2(768, 12, 12), "124M"),
    "gpt2-medium": ("openai-community/gpt2-medium", gpt2(1024, 24, 16), "355M"),
    "gpt2-large": ("openai-community/gpt2-large", gpt2(1280, 36, 20), "774M"),
    "gpt2-xl": ("openai-community/gpt2-xl", gpt2(1600, 48, 25), "1.56B"),
    "SmolLM2-135M": ("HuggingFaceTB/SmolLM2-135M", llama(576, 1536, 30, 9, 3, 49152, True, 8192, 100000.0, bos=0, eos=0), "135M"),
    "SmolLM2-360M": ("HuggingFaceTB/SmolLM2-360M", llama(960, 2560, 32, 15, 5, 49152, True, 8192, 100000.0, bos=0, eos=0), "362M"),
    "SmolLM2-1.7B": ("HuggingFaceTB/SmolLM2-1.7B", llama(2048, 8192, 24, 32, 32, 49152, True, 8192, 130000.0, bos=0, eos=0), "1.71B"),
}

NOTES = {
    "Phi-3.5-mini-instruct": "its `longrope` rope_scaling factor lists are left out (they change positions, not memory).",
    "Mistral-7B-Instruct-v0.3": "Mistral architecture (Llama layout, 32768-token vocabulary, no sliding window).",
    "gemma-2-27b": "head_dim 128 and query_pre_attn_scalar 144 differ from the smaller Gemma 2 models.",
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    lines = ["# Shipped model configs: sources\n",
             "Each file is the architecture part of the model's `config.json` on the Hugging Face Hub,",
             "written by `scripts/build_quantization_configs.py` from the published numbers (no weights,",
             "no tokenizer). They let the quantization comparer count parameters offline on the meta",
             "device. Config files are architecture facts; the models themselves keep their own licences",
             "(Llama 3 community licence, Gemma terms, Apache-2.0, MIT).\n",
             "| file | Hub repository (config.json) | published size | note |", "|---|---|---|---|"]
    for name, (repo, cfg, size) in CONFIGS.items():
        cfg = {"_name_or_path": repo, **cfg}
        (OUT / f"{name}.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        lines.append(f"| {name}.json | https://huggingface.co/{repo}/blob/main/config.json | {size} | {NOTES.get(name, '')} |")
    (OUT / "SOURCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(CONFIGS)} configs to {OUT}")


if __name__ == "__main__":
    main()
