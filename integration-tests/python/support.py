"""Shared helpers for the Python tests: paths, starting servers, an independent scorer."""

import math
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SECONDPASS_SHARED_DIR", ROOT.parent / "shared"))
MODEL = SHARED / "models" / "cranfield-minilm-l6-ce"
TARGET = ROOT / "target" / "debug"


def start(cmd, prefix):
    """Starts a server that prints one line starting with `prefix` once bound."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith(prefix):
            return proc, line.strip()
    proc.kill()
    raise RuntimeError(f"{cmd[0]} exited before it was listening (code {proc.wait()})")


def start_secondpass(config_path):
    """Starts target/debug/secondpass; returns the process and its addresses by name."""
    proc, line = start([str(TARGET / "secondpass"), "serve", "--config", str(config_path)], "secondpass listening")
    return proc, dict(kv.split("=", 1) for kv in line.split()[2:])


def base_config(upstream="http://127.0.0.1:1", grpc_upstream="http://127.0.0.1:1"):
    """TOML for a secondpass on ephemeral ports with the shared model as `local`."""
    return f"""
[server]
rest_listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
grpc_url = "{grpc_upstream}"
[rerankers.local]
kind = "onnx"
model_dir = "{MODEL}"
runtime_path = "{ROOT / '.local/onnxruntime/lib/libonnxruntime.so'}"
max_length = 128
"""


def model_scores(query, docs):
    """sigmoid(logit) for each (query, doc), independently of secondpass."""
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    session = onnxruntime.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    encs = [tok.encode(query, d) for d in docs]  # the file's own only_second truncation at 128
    width = max(len(e.ids) for e in encs)

    def pad(rows):
        return np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64)

    feeds = {
        "input_ids": pad([e.ids for e in encs]),
        "attention_mask": pad([e.attention_mask for e in encs]),
        "token_type_ids": pad([e.type_ids for e in encs]),
    }
    logits = session.run(None, feeds)[0][:, 0]
    return [1 / (1 + math.exp(-x)) for x in logits]


