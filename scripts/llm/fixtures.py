"""Builds the decoder-reranker test fixtures (committed under tests/fixtures/llm, so
that CI needs no torch):

  qwen3-tiny/            a tiny random Qwen3 causal LM shaped like Qwen3-Reranker, exported by
                         scripts/llm/export.py: model.onnx (fp32), model_fp16.onnx, model_int8.onnx
  qwen3-tiny-community/  the same weights exported by optimum (`text-generation-with-past`): the
                         community layout (position_ids, empty past_key_values.*, full logits)
  mxbai-tiny/            a tiny random Qwen2 causal LM shaped like mxbai-rerank-v2 (model.onnx)
  reference.json         what the authors' own methods score on the same weights: Qwen3-Reranker's
                         model-card code (QwenLM/Qwen3-Embedding README, "Transformers Usage":
                         format_instruction, process_inputs, compute_logits) re-done here step by
                         step, and mixedbread's `mxbai-rerank` package (MxbaiRerankV2.predict) run
                         as published; with the token ids each prompt had

Each model folder has the tokenizer: a byte-level BPE in Qwen's style (Qwen2's pre-tokenizer
pattern, NFC), trained here on the Cranfield abstracts (../shared/eval), with the templates'
special tokens (<|endoftext|>, <|im_start|>, <|im_end|>, <think>, </think>) and the answer
tokens yes / no / 1 / 0 as single tokens.

Run with the dev venv (scripts/setup --llm):
    .local/llm-venv/bin/python scripts/llm/fixtures.py [OUT_DIR]
Deterministic: the same corpus and seeds give the same tokenizer and weights.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import export as exporter  # noqa: E402

QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and "
    'the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_TASK = "Given a web search query, retrieve relevant passages that answer the query"
INSTRUCTION = "Given a question about aeronautics, find the abstract that answers it"


def corpus():
    path = ROOT.parent / "shared/eval/cranfield-train"
    if not (path / "corpus.jsonl").is_file():
        sys.exit(f"fixtures: {path}/corpus.jsonl is missing (the Cranfield set in ../shared/eval)")
    docs = [json.loads(line) for line in open(path / "corpus.jsonl")]
    queries = [json.loads(line)["text"] for line in open(path / "queries.jsonl")]
    return [d["text"] for d in docs], queries


def tokenizer(texts):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # The answers at the start of a line (as the model would write them), and the
    # templates' words, so that they become tokens of their own.
    prompts = [QWEN3_PREFIX, QWEN3_SUFFIX, "<Instruct>: <Query>: <Document>: instruction: query: document:"]
    answers = ["yes\nno\n1\n0\nyes\nno\n"] * 200
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        show_progress=False,
    )
    tok.train_from_iterator(texts + prompts * 50 + answers, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>")])
    for word in ("yes", "no", "1", "0"):
        assert tok.token_to_id(word) is not None, f"`{word}` is not a token"
    return tok


def hf_tokenizer(tok):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=32768,
    )


def tiny(kind, vocab, pad, eos, seed):
    """A random causal LM with the family's architecture, weights scaled up so that
    scores spread (at the default init every prompt scores about the same)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    shape = dict(vocab_size=vocab, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                 rope_theta=1_000_000.0, tie_word_embeddings=True, pad_token_id=pad, eos_token_id=eos,
                 bos_token_id=None, initializer_range=0.2)
    torch.manual_seed(seed)
    if kind == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=16, **shape))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**shape))
    return model.eval()


def qwen3_reference(checkpoint, query, documents, instruction, max_length):
    """Qwen3-Reranker's model-card method, step by step, on a checkpoint folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    prefix = tok.encode(QWEN3_PREFIX, add_special_tokens=False)
    suffix = tok.encode(QWEN3_SUFFIX, add_special_tokens=False)
    task = instruction if instruction is not None else QWEN3_TASK
    pairs = [f"<Instruct>: {task}\n<Query>: {query}\n<Document>: {d}" for d in documents]
    inputs = tok(pairs, padding=False, truncation="longest_first", return_attention_mask=False,
                 max_length=max_length - len(prefix) - len(suffix))
    for i, ele in enumerate(inputs["input_ids"]):
        inputs["input_ids"][i] = prefix + ele + suffix
    ids = [list(x) for x in inputs["input_ids"]]
    inputs = tok.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
    with torch.no_grad():
        last = model(**inputs).logits[:, -1, :]
    two = torch.nn.functional.log_softmax(torch.stack([last[:, no], last[:, yes]], dim=1), dim=1)
    return two[:, 1].exp().tolist(), ids


def mxbai_reference(checkpoint, query, documents, instruction, max_length):
    """mixedbread's own package on a checkpoint folder. Its `max_length` is the body's;
    secondpass's is the whole prompt's, so the template's tokens are taken off."""
    import torch
    from mxbai_rerank import MxbaiRerankV2

    def load(n):
        return MxbaiRerankV2(str(checkpoint), device="cpu", torch_dtype=torch.float32, max_length=n)

    fixed = load(8192).predefined_length
    r = load(max_length - fixed)
    scores = r.predict([query] * len(documents), documents, instruction=instruction).tolist()
    batch = r.prepare_inputs([query] * len(documents), documents, instruction=instruction)
    ids = [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids"], batch["attention_mask"])]
    return scores, ids


def fixed_tokens(family, tok):
    """Tokens of the family's prompt outside the body (prefix, task, suffix)."""
    n = lambda text: len(tok.encode(text, add_special_tokens=False))  # noqa: E731
    if family == "qwen3-reranker":
        return n(QWEN3_PREFIX) + n(QWEN3_SUFFIX)
    from mxbai_rerank import MxbaiRerankV2 as M

    return n(M.chat_template["prefix"]) + n(M.sep) + n(M.task_prompt) + n(M.chat_template["suffix"])


def cases(docs, queries, fixed):
    """Batches mixing short and long documents (long ones cut at max_length), with the
    family's default instruction and with one of the request's. `fixed`: the prompt's
    tokens outside the body, so that every family gets the same room for the body."""
    short = ["wing", "A short note on drag.", "", "boundary layer transition at hypersonic speeds"]
    long = sorted(docs, key=len)[-3:]
    mid = [d for d in docs if 300 < len(d) < 600][:3]
    batch = [long[0], short[0], mid[0], short[1], long[1], mid[1], short[2], short[3], mid[2], long[2]]
    return [
        dict(name="mixed", query=queries[0], instruction=None, documents=batch, max_length=fixed + 96),
        dict(name="instruction", query=queries[1], instruction=INSTRUCTION, documents=batch,
             max_length=fixed + 96),
        dict(name="roomy", query=queries[2], instruction=None, documents=batch[:6], max_length=fixed + 448),
        dict(name="long-query", query=" ".join(queries[3:6]), instruction=INSTRUCTION, documents=batch[:5],
             max_length=fixed + 80),
    ]


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests/fixtures/llm"
    texts, queries = corpus()
    tok = tokenizer(texts)
    hf = hf_tokenizer(tok)
    pad, eos = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")
    work = Path(tempfile.mkdtemp(prefix="sp-llm-fixtures-"))
    reference = {"generated_by": "scripts/llm/fixtures.py", "models": {}}
    specs = [("qwen3-tiny", "qwen3", "qwen3-reranker", 7, ("fp32", "fp16", "int8")),
             ("mxbai-tiny", "qwen2", "mxbai-rerank-v2", 11, ("fp32",))]
    for name, kind, family, seed, variants in specs:
        checkpoint = work / name
        tiny(kind, tok.get_vocab_size(), pad, eos, seed).save_pretrained(checkpoint)
        hf.save_pretrained(checkpoint)
        dest = out / name
        shutil.rmtree(dest, ignore_errors=True)
        exporter.export(checkpoint, dest, family, variants)
        refer = qwen3_reference if family == "qwen3-reranker" else mxbai_reference
        rows = []
        for case in cases(texts, queries, fixed_tokens(family, hf)):
            scores, ids = refer(checkpoint, case["query"], case["documents"], case["instruction"],
                                case["max_length"])
            rows.append(dict(case, scores=scores, token_ids=ids))
            print(f"{name} {case['name']}: scores {min(scores):.3f}..{max(scores):.3f}, "
                  f"lengths {min(map(len, ids))}..{max(map(len, ids))}")
        reference["models"][name] = dict(family=family, cases=rows)
        if kind == "qwen3":
            community(checkpoint, out / f"{name}-community")
    (out / "reference.json").write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")
    for stray in out.rglob("*"):
        if stray.name in ("generation_config.json", "chat_template.jinja"):
            stray.unlink()
    shutil.rmtree(work)
    print(f"fixtures: wrote {out}")


def community(checkpoint, dest):
    """The same weights as optimum exports a causal LM for generation (the layout of
    most community ONNX exports)."""
    from optimum.exporters.onnx import main_export

    shutil.rmtree(dest, ignore_errors=True)
    main_export(model_name_or_path=str(checkpoint), output=str(dest), task="text-generation-with-past",
                device="cpu", do_validation=False)
    for extra in ("vocab.txt", "merges.txt", "vocab.json", "added_tokens.json", "special_tokens_map.json"):
        (dest / extra).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
