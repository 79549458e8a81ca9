"""shared.memory: the arithmetic later labs build on."""
import mmap

import pytest
import torch
from transformers import GPT2Config, LlamaConfig

from shared import memory


def test_kv_cache_is_grouped_query_aware():
    # Llama-3-8B: 32 layers, 8 KV heads of 128 dims -> 128 KiB per token in 16-bit.
    llama = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8)
    assert memory.kv_cache_bytes(llama, seq_len=1, batch_size=1, bytes_per_value=2) == 131072
    assert memory.kv_cache_bytes(llama, 8192, 4, 2) == 131072 * 8192 * 4
    # Without GQA the cache is 4x larger.
    mha = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32)
    assert memory.kv_cache_bytes(mha, 1, 1, 2) == 4 * 131072


def test_kv_cache_reads_gpt2_names():
    gpt2 = GPT2Config()  # 12 layers, 12 heads, 768 wide
    assert memory.kv_cache_bytes(gpt2, 1024, 1, 4) == 2 * 12 * 1024 * 768 * 4


def test_tied_weights_are_counted_once(tiny_gpt2):
    model, _ = tiny_gpt2
    naive = sum(p.numel() * p.element_size() for _, p in model.named_parameters(remove_duplicate=False))
    counted = memory.param_bytes(model, buffers=False)
    embedding = model.transformer.wte.weight
    assert counted == naive - embedding.numel() * 4
    assert memory.param_count(model) == counted // 4


def test_measured_footprint_sees_an_allocation():
    # Fresh anonymous pages, written to: the process's resident memory really grows by 100 MB
    # (a torch/numpy block could reuse pages an earlier test freed).
    with memory.measure_footprint() as fp:
        block = mmap.mmap(-1, 100_000_000)
        block.write(b"\x01" * 100_000_000)
    assert fp.rss_bytes > 80_000_000
    assert fp.device_bytes == 0
    block.close()


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1500, "1.50 KB"), (2.5e9, "2.50 GB")])
def test_fmt_bytes(n, text):
    assert memory.fmt_bytes(n) == text


def test_dtype_bytes_accepts_names_and_dtypes():
    assert memory.dtype_bytes("bf16") == 2 and memory.dtype_bytes("nf4") == 0.5
    assert memory.dtype_bytes(torch.float32) == 4
