"""Random decoder rerankers for benchmarks (weights do not change the speed):
a Qwen3-Reranker-0.6B-shaped Qwen3 (28 layers, hidden 1024, 16/8 heads, vocab 151936,
tied embeddings), exported by scripts/llm/export.py (fp32 and int8) with the test
fixtures' tokenizer into OUT (default .local/bench-models/qwen3-0.6b-random).
Needs the dev venv (scripts/setup --llm); about 2.4 GB fp32 + 0.6 GB int8 on disk.

    .local/llm-venv/bin/python scripts/bench/llm_models.py [OUT]
"""

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts/llm"))

import export as exporter  # noqa: E402


def main():
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".local/bench-models/qwen3-0.6b-random"
    tokenizer = AutoTokenizer.from_pretrained(ROOT / "tests/fixtures/llm/qwen3-tiny")
    config = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                         num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                         rope_theta=1_000_000.0, tie_word_embeddings=True, rms_norm_eps=1e-6,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="sp-llm-bench-"))
    Qwen3ForCausalLM(config).eval().save_pretrained(work)
    tokenizer.save_pretrained(work)
    exporter.export(work, out, "qwen3-reranker", ("fp32", "int8"))
    shutil.rmtree(work)
    print(f"bench model: {out}")


if __name__ == "__main__":
    main()
