#!/usr/bin/python3
"""PyTorch (float64) perplexity of held-out text under the trained byte-level model bench/quality/models/llama, for
TextChatIntegrationTests, which computes the same through the API (Append text with prompt_logprobs).

    apt-get install python3-torch
    /usr/bin/python3 tests/KvCache.Gateway.Tests/Fixtures/perplexity_reference.py   # writes perplexity_reference.json

Text: bench/quality/heldout.txt (never trained on), two windows of 1,024 bytes (token id = byte). The model runs
through tests/KvCache.GpuWorker.Tests/Fixtures/llama_reference.py (an independent float64 implementation). A
window's perplexity is exp(-mean log p(token i | tokens < i)) over its tokens 2..N (the first has no context).
"""
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "KvCache.GpuWorker.Tests", "Fixtures"))
from llama_reference import Llama  # noqa: E402

WINDOWS = [(8192, 1024), (65536, 1024)]


def main():
    model = Llama(os.path.join(ROOT, "bench", "quality", "models", "llama"))
    with open(os.path.join(ROOT, "bench", "quality", "heldout.txt"), "rb") as f:
        data = f.read()
    out = []
    for start, length in WINDOWS:
        ids = list(data[start:start + length])
        text = bytes(ids).decode("utf-8")  # the windows are ASCII: the API's text tokenizes to these bytes
        logprobs = torch.log_softmax(model.logits(ids), dim=-1)
        scored = [float(logprobs[i, ids[i + 1]]) for i in range(len(ids) - 1)]
        out.append({"text": text, "perplexity": math.exp(-sum(scored) / len(scored)), "logprobs": [float("%.9g" % v) for v in scored]})
    with open(os.path.join(HERE, "perplexity_reference.json"), "w", encoding="utf-8") as f:
        json.dump({"model": "bench/quality/models/llama", "torch_version": torch.__version__, "precision": "float64",
                   "windows": out}, f, separators=(",", ":"))
        f.write("\n")
    print(", ".join(f"{w['perplexity']:.4f}" for w in out))


if __name__ == "__main__":
    main()
