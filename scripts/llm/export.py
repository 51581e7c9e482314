"""Exports a decoder ("LLM") reranker checkpoint to the ONNX graph secondpass runs.

The graph is one forward pass with no KV cache:

    inputs   input_ids       int64 [batch, sequence]
             attention_mask  int64 [batch, sequence]   1 for real tokens (left or right padding)
             score_token_ids int64 [2]                 the answer tokens (secondpass feeds the
                                                       ids it looked up in the tokenizer)
    output   score_logits    float [batch, 2]          those tokens' logits at each row's last
                                                       real position

Positions count real tokens only (cumsum of the mask), so left and right padding give
the same scores. Nothing over the vocabulary leaves the graph: the full logits of a
batch ([16, 1024, 151669] fp32 is ~10 GB) are never made. The lm_head rows of the two
tokens are gathered inside the graph from the runtime input, so one export serves any
pair of answer tokens.

Writes OUT/model.onnx (fp32; weights in model.onnx.data when over 2 GB), and with the
default variants model_fp16.onnx (for GPUs) and model_int8.onnx (dynamic int8, for
CPUs), plus the tokenizer and config.json. Checks the fp32 graph against the
checkpoint's own logits (transformers) on a padded batch before it returns.

Used by scripts/export-llm-reranker (the command) and scripts/llm/fixtures.py (the
test fixtures).
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

TWO_GB = 2**31 - 1

# Answer tokens of the families secondpass knows (the graph takes any two).
FAMILY_TOKENS = {
    "qwen3-reranker": ("yes", "no"),
    "mxbai-rerank-v2": ("1", "0"),
}


def scorer(model):
    """The causal LM reduced to the answer tokens' logits at the last real position."""
    import torch

    class Scorer(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.decoder = lm.get_decoder()
            self.head = lm.get_output_embeddings()

        def forward(self, input_ids, attention_mask, score_token_ids):
            positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            hidden = self.decoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=positions,
                use_cache=False,
            ).last_hidden_state
            steps = torch.arange(input_ids.shape[1], device=input_ids.device)
            last = (attention_mask * steps).argmax(-1)
            rows = torch.arange(input_ids.shape[0], device=input_ids.device)
            h = hidden[rows, last]
            logits = h @ self.head.weight[score_token_ids].T
            if getattr(self.head, "bias", None) is not None:
                logits = logits + self.head.bias[score_token_ids]
            return logits

    return Scorer(model).eval()


def load(checkpoint):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        checkpoint, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    for key in ("final_logit_softcapping", "logit_scale"):
        if getattr(model.config, key, None):
            sys.exit(f"export: {key} is set in the model's config; this graph does not apply it")
    return model, tokenizer


def sample(tokenizer, answer):
    """A left-padded batch of two prompts of different lengths, and the answer ids."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = [
        tokenizer("query: what is a wing?\ndocument: a lifting surface", add_special_tokens=False)["input_ids"],
        tokenizer("query: drag\ndocument: skin friction", add_special_tokens=False)["input_ids"][:6],
    ]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask, torch.tensor(answer)


def answer_ids(tokenizer, family):
    """The family's answer token ids; for others any two tokens do for the check."""
    words = FAMILY_TOKENS.get(family)
    return [answer_id(tokenizer, w) for w in words] if words else [0, 1]


def answer_id(tokenizer, word):
    """As secondpass looks it up: the vocabulary entry, else the single token it encodes to."""
    vocab = tokenizer.get_vocab()
    if word in vocab:
        return vocab[word]
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        sys.exit(f"export: answer `{word}` is {len(ids)} tokens for this tokenizer, not one")
    return ids[0]


def weight_bytes(model_proto):
    """Bytes of the weights held in the proto (protobuf cannot even size one past 2 GB)."""
    return sum(len(t.raw_data) for t in model_proto.graph.initializer)


def save_onnx(model_proto, path):
    """Saves, moving the weights to PATH.data when the file would pass protobuf's 2 GB."""
    import onnx

    data = Path(str(path) + ".data")
    if data.exists():
        data.unlink()
    if weight_bytes(model_proto) > TWO_GB - 2**26:
        onnx.save(model_proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name)
    else:
        onnx.save(model_proto, str(path))


def export_fp32(model, tokenizer, out, answer, exporter="dynamo", opset=18, log=print):
    import onnx
    import torch

    s = scorer(model)
    ids, mask, answer = sample(tokenizer, answer)
    tmp = out / "export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = dict(input_names=["input_ids", "attention_mask", "score_token_ids"], output_names=["score_logits"])
    if exporter == "dynamo":
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
        shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}, "score_token_ids": None}
        torch.onnx.export(s, (ids, mask, answer), str(tmp / "model.onnx"), dynamic_shapes=shapes, dynamo=True,
                          external_data=True, opset_version=opset, **names)
    else:
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                "score_logits": {0: "batch"}}
        torch.onnx.export(s, (ids, mask, answer), str(tmp / "model.onnx"), dynamic_axes=axes, dynamo=False,
                          opset_version=opset, **names)
    files = {f.name for f in tmp.iterdir()}
    if files <= {"model.onnx", "model.onnx.data"}:
        # Already one graph file and at most one weights file, named as secondpass expects.
        for f in files:
            shutil.move(str(tmp / f), str(out / f))
        if "model.onnx.data" not in files:
            Path(str(out / "model.onnx") + ".data").unlink(missing_ok=True)
    else:
        proto = onnx.load(str(tmp / "model.onnx"))  # reads the weights, wherever the exporter put them
        save_onnx(proto, out / "model.onnx")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"export: wrote {out / 'model.onnx'} ({exporter} exporter, opset {opset})")


def check(model, tokenizer, out, answer, file="model.onnx", tolerance=1e-3, log=print):
    """The graph's answer logits against the checkpoint's own at the last position."""
    import numpy as np
    import onnxruntime
    import torch

    ids, mask, answer = sample(tokenizer, answer)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits[:, -1, :]
    want = full[:, answer].numpy()
    session = onnxruntime.InferenceSession(str(out / file), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "score_token_ids": answer.numpy()}
    got = session.run(None, feeds)[0].astype(np.float32)
    diff = float(np.abs(got - want).max())
    log(f"export: {file}: answer logits differ from transformers' by at most {diff:.2e}")
    if diff > tolerance:
        sys.exit(f"export: {file} does not match the checkpoint (max difference {diff} > {tolerance})")
    return diff


def fp16(out, log=print):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load(str(out / "model.onnx"))
    half = convert_float_to_float16(proto, keep_io_types=True)
    save_onnx(half, out / "model_fp16.onnx")
    log(f"export: wrote {out / 'model_fp16.onnx'}")


def int8(out, log=print):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = out / "model.onnx"
    large = Path(str(src) + ".data").exists()
    quantize_dynamic(model_input=str(src), model_output=str(out / "model_int8.onnx"), per_channel=True,
                     weight_type=QuantType.QInt8, use_external_data_format=large)
    log(f"export: wrote {out / 'model_int8.onnx'}")


def export(checkpoint, out, family=None, variants=("fp32", "fp16", "int8"), exporter="dynamo", opset=18,
           log=print):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load(checkpoint)
    answer = answer_ids(tokenizer, family)
    try:
        export_fp32(model, tokenizer, out, answer, exporter, opset, log)
    except Exception as e:  # noqa: BLE001 - the other exporter may manage
        if exporter != "dynamo":
            raise
        log(f"export: the dynamo exporter failed ({e}); trying the TorchScript exporter")
        export_fp32(model, tokenizer, out, answer, "torchscript", opset, log)
    check(model, tokenizer, out, answer, log=log)
    if "fp16" in variants:
        fp16(out, log)
    if "int8" in variants:
        int8(out, log)
    tokenizer.save_pretrained(str(out))
    model.config.save_pretrained(str(out))
    return out


def config_snippet(out, family):
    files = [f for f in ("model_int8.onnx", "model_fp16.onnx") if (Path(out) / f).exists()]
    return f"""[rerankers.llm]
kind = "onnx"
model_dir = "{Path(out).resolve()}"
{f'model_file = "{files[0]}"   # CPU; "model_fp16.onnx" with device = "cuda"' if files else ''}
family = "{family or 'custom'}"
max_length = 1024
"""


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="scripts/export-llm-reranker",
        description="Export a decoder reranker checkpoint (Qwen3-Reranker, mxbai-rerank-v2, ...) "
        "to the one-pass ONNX scorer secondpass runs.",
    )
    p.add_argument("checkpoint", help="a local Hugging Face checkpoint folder (or a hub name, when online)")
    p.add_argument("out", help="output folder")
    p.add_argument("--family", choices=["qwen3-reranker", "mxbai-rerank-v2", "custom"],
                   help="for the check's answer tokens and the printed config")
    p.add_argument("--variants", default="fp32,fp16,int8", help="comma-separated: fp32 is always written")
    p.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo")
    p.add_argument("--opset", type=int, default=18)
    a = p.parse_args(argv)
    out = export(a.checkpoint, a.out, a.family, a.variants.split(","), a.exporter, a.opset)
    mb = lambda f: sum(os.path.getsize(x) for x in out.glob(f + "*")) / 2**20  # noqa: E731
    for f in ("model.onnx", "model_fp16.onnx", "model_int8.onnx"):
        if (out / f).exists():
            print(f"  {f}: {mb(f):.1f} MiB")
    print("\nConfiguration for secondpass (see docs/llm-rerankers.md):\n")
    print(config_snippet(out, a.family))


if __name__ == "__main__":
    main()
