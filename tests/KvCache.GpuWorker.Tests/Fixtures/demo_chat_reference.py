#!/usr/bin/python3
"""Reference output of the committed demo chat model (models/demo-chat) for DemoChatModelUnitTests.

Encodes a one-message ChatML conversation with the model's own tokenizer.model (python3-sentencepiece), as the
chat_template in tokenizer_config.json renders it with add_generation_prompt (BOS first, as add_bos_token says), runs
llama_reference.py (float64) on it and greedy-decodes until <|im_end|> or MAX_STEPS tokens. The JSON holds the prompt,
the logits after the prompt (float64 -> 9 significant digits), the greedy tokens with the smallest gap between the
top two logits over the steps (greedy picks are only comparable when that gap is far above f32 error), and the reply
as text, for a reader.

Usage (from the repository root): /usr/bin/python3 tests/KvCache.GpuWorker.Tests/Fixtures/demo_chat_reference.py
"""
import json
import os

import sentencepiece as spm
import torch

import llama_reference

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "..", "..", "models", "demo-chat")
OUT = os.path.join(HERE, "demo-chat.reference.json")
MESSAGE = "Tell me something about computers."
MAX_STEPS = 64


def main():
    sp = spm.SentencePieceProcessor(model_file=os.path.join(MODEL, "tokenizer.model"))
    im_end = sp.piece_to_id("<|im_end|>")
    prompt = [sp.bos_id()] + sp.encode(f"<|im_start|>user\n{MESSAGE}<|im_end|>\n<|im_start|>assistant\n")
    model = llama_reference.Llama(MODEL)
    ids, greedy, margins, first = list(prompt), [], [], None
    while len(greedy) < MAX_STEPS and (not greedy or greedy[-1] != im_end):
        last = model.logits(ids)[-1]
        if first is None:
            first = [float("%.9g" % v) for v in last.tolist()]
        top = torch.topk(last, 2).values
        margins.append(float(top[0] - top[1]))
        token = int(torch.argmax(last))
        greedy.append(token)
        ids.append(token)
    reply = sp.decode([t for t in greedy if t != im_end])
    with open(OUT, "w") as f:
        json.dump({"model": "demo-chat", "torch_version": torch.__version__, "precision": "float64",
                   "message": MESSAGE, "reply": reply, "prompt": prompt, "greedy": greedy,
                   "min_top2_margin": min(margins), "logits_after_prompt": first}, f, separators=(",", ":"))
        f.write("\n")
    print(f"{OUT}: prompt {len(prompt)} tokens, {len(greedy)} greedy tokens, min top-2 margin {min(margins):.4g}\n{reply}")


if __name__ == "__main__":
    main()
