#!/usr/bin/python3
"""Trains the embedded default's chat model, demo-chat: a SentencePiece tokenizer and a small Llama on Debian's fortunes.

Corpus: every fortune of Debian's `fortunes` package (/usr/share/games/fortunes, BSD licence; ascii-art is left out,
it is pictures, and so is translate-me, which is Latin), files in sorted order, each fortune's lines stripped of their
indentation (tabs would cost a byte token each) and fortunes over MAX_FORTUNE_CHARS dropped (a reply should be short).
Each fortune becomes one chat turn: a user message (a plain request, a request on the fortune file's topic, or the
fortune's first words to finish; see prompts()) and the fortune as the assistant's reply. Turns are shuffled and grouped
into conversations of 1 to 3 turns, each conversation a document: BOS, then the turns in ChatML
(<|im_start|>role\\n...<|im_end|>\\n), the layout the chat_template in tokenizer_config.json renders.

Tokenizer: Debian's spm_train, BPE, vocab 4096 (Llama 2's layout: <unk> 0, <s> 1, </s> 2), the ChatML markers as
user-defined symbols (matched in text, so a rendered template encodes to them), byte fallback (any UTF-8 text
round-trips), no normalisation, and no dummy prefix: text is encoded exactly as written, so encoding a rendered
conversation at once or piece by piece between the markers gives the same ids.

Model: LlamaForCausalLM, hidden 256, 4 layers, 8 heads, 4 KV heads (GQA), head dim 32, FFN 688, tied embeddings,
rope theta 10000, RMSNorm eps 1e-5: 3.9M parameters. AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), lr 3e-3
with linear warm-up and cosine decay to a tenth; --steps steps of 16 windows of 256 tokens, each window starting at a
conversation's BOS (later conversations follow in the window, so the model also sees several conversations in one
context). One thread and fixed seeds: the same run gives the same bits. Saved as bf16 (model.safetensors), with
config.json, tokenizer.model, tokenizer_config.json (chat_template), special_tokens_map.json and
generation_config.json; then checked against tests/KvCache.GpuWorker.Tests/Fixtures/llama_reference.py, and a few
replies are sampled.

Needs Debian's python3-torch, sentencepiece (spm_train), python3-sentencepiece, fortunes, libopenblas0-pthread and
libjemalloc2 (see bench/quality/train.py for why the last two). Run time: see tools/demo-model/README.md.
Usage (from the repository root): /usr/bin/python3 tools/demo-model/train.py [--steps N] [--out models/demo-chat]
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import sentencepiece as spm
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "KvCache.GpuWorker.Tests", "Fixtures"))
import llama_reference  # noqa: E402  (the independent float64 implementation the engine is tested against)

FORTUNES = "/usr/share/games/fortunes"
SKIPPED_FILES = {"ascii-art", "translate-me"}
MAX_FORTUNE_CHARS = 600
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VOCAB = 4096
SHAPE = dict(vocab_size=VOCAB, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, head_dim=32, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
             tie_word_embeddings=True)
SEQ, BATCH = 256, 16
SEED = 20250611
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                 "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"

GENERIC = ["Tell me a fortune.", "Give me a fortune cookie.", "Tell me something.", "Say something wise.",
           "Do you have a quote for me?", "Tell me a saying.", "What is my fortune today?", "Share a thought.",
           "Hi! Tell me something interesting.", "Hello!", "What do you have for me today?", "Make me smile.",
           "Tell me something I don't know.", "Any words of wisdom?", "Surprise me."]
# What a user asks for to get a fortune of that file; files without a topic get only the generic requests.
TOPICS = {"art": "art", "computers": "computers", "debian": "Debian", "definitions": "a definition",
          "drugs": "drugs", "education": "education", "ethnic": "people and places", "food": "food",
          "goedel": "logic", "humorists": "something funny", "kids": "kids", "law": "the law", "linux": "Linux",
          "linuxcookie": "Linux", "literature": "literature", "love": "love", "magic": "magic",
          "medicine": "medicine", "men-women": "men and women", "news": "the news", "paradoxum": "a paradox",
          "people": "people", "perl": "Perl", "pets": "pets", "platitudes": "a platitude", "politics": "politics",
          "pratchett": "Terry Pratchett", "riddles": "a riddle", "science": "science", "songs-poems": "a poem",
          "sports": "sports", "startrek": "Star Trek", "tao": "the Tao", "wisdom": "wisdom", "work": "work",
          "zippy": "Zippy the Pinhead"}
TOPIC_REQUESTS = ["Tell me something about {}.", "Give me a quote about {}.", "What can you say about {}?",
                  "I'd like something on {}, please."]
CONTINUE_REQUESTS = ["Finish this: {}", "Complete the saying: {}", "How does it go? {}"]


def load_fortunes():
    """(file name, text) of every kept fortune, in file order then file position."""
    out = []
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if "." in name or name in SKIPPED_FILES or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        for block in raw.split("\n%\n"):
            text = "\n".join(line.strip().replace("\t", " ") for line in block.strip("%\n").split("\n")).strip()
            if text and len(text) <= MAX_FORTUNE_CHARS:
                out.append((name, text))
    return out


def prompts(rng, name, text):
    """The user message asking for this fortune."""
    words = text.split()
    kind = rng.random()
    if kind < 0.25 and len(words) >= 8:
        return rng.choice(CONTINUE_REQUESTS).format(" ".join(words[:rng.randint(3, 5)]))
    if kind < 0.55 and name in TOPICS:
        return rng.choice(TOPIC_REQUESTS).format(TOPICS[name])
    return rng.choice(GENERIC)


def turn(role, content):
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def conversations(fortunes):
    """Chat documents (rendered text without BOS), shuffled, 1 to 3 turns each."""
    rng = random.Random(SEED)
    turns = [turn("user", prompts(rng, name, text)) + turn("assistant", text) for name, text in fortunes]
    rng.shuffle(turns)
    docs, i = [], 0
    while i < len(turns):
        n = rng.randint(1, 3)
        docs.append("".join(turns[i:i + n]))
        i += n
    return docs


def train_tokenizer(docs, out_dir):
    """spm_train on the corpus's lines (spm trains on lines: newlines become the byte token <0x0A>)."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            for doc in docs:
                for line in doc.replace(IM_START, "\n").replace(IM_END, "\n").split("\n"):
                    if line:
                        f.write(line + "\n")
        # Relative paths, run in the temporary folder: tokenizer.model records them, and a random folder name would
        # make every run's file differ.
        subprocess.run(["spm_train", "--input=corpus.txt", "--model_prefix=tokenizer", "--model_type=bpe",
                        f"--vocab_size={VOCAB}", "--byte_fallback=true", "--split_digits=true",
                        "--normalization_rule_name=identity", "--remove_extra_whitespaces=false",
                        "--add_dummy_prefix=false", "--allow_whitespace_only_pieces=true",
                        f"--user_defined_symbols={IM_START},{IM_END}", "--unk_id=0", "--bos_id=1", "--eos_id=2",
                        "--pad_id=-1", "--character_coverage=0.9999", "--num_threads=1", "--minloglevel=1"],
                       check=True, cwd=tmp)
        shutil.copy(os.path.join(tmp, "tokenizer.model"), os.path.join(out_dir, "tokenizer.model"))
    return spm.SentencePieceProcessor(model_file=os.path.join(out_dir, "tokenizer.model"))


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Llama(torch.nn.Module):
    """Parameter names are the checkpoint's tensor names with '.' -> '__' (the maths of llama_reference.py)."""

    def __init__(self):
        super().__init__()
        c = SHAPE
        h, hd, heads, kv, ffn, n = (c["hidden_size"], c["head_dim"], c["num_attention_heads"],
                                    c["num_key_value_heads"], c["intermediate_size"], c["num_hidden_layers"])
        self.p = torch.nn.ParameterDict()

        def lin(name, out_dim, in_dim, scale=1.0):
            self.p[name.replace(".", "__")] = torch.nn.Parameter(torch.randn(out_dim, in_dim) * scale / math.sqrt(in_dim))

        self.p["model__embed_tokens__weight"] = torch.nn.Parameter(torch.randn(c["vocab_size"], h) * 0.02)
        for i in range(n):
            pre = f"model.layers.{i}."
            self.p[(pre + "input_layernorm.weight").replace(".", "__")] = torch.nn.Parameter(torch.ones(h))
            self.p[(pre + "post_attention_layernorm.weight").replace(".", "__")] = torch.nn.Parameter(torch.ones(h))
            lin(pre + "self_attn.q_proj.weight", heads * hd, h)
            lin(pre + "self_attn.k_proj.weight", kv * hd, h)
            lin(pre + "self_attn.v_proj.weight", kv * hd, h)
            # Residual branches scaled down by depth, so the stream's variance stays put at initialisation.
            lin(pre + "self_attn.o_proj.weight", h, heads * hd, 1 / math.sqrt(2 * n))
            lin(pre + "mlp.gate_proj.weight", ffn, h)
            lin(pre + "mlp.up_proj.weight", ffn, h)
            lin(pre + "mlp.down_proj.weight", h, ffn, 1 / math.sqrt(2 * n))
        self.p["model__norm__weight"] = torch.nn.Parameter(torch.ones(h))

    def w(self, name):
        return self.p[name.replace(".", "__")]

    def forward(self, ids):
        c = SHAPE
        b, t = ids.shape
        heads, kv, hd, eps = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["rms_norm_eps"]
        x = self.w("model.embed_tokens.weight")[ids]
        inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        mask = torch.triu(torch.full((t, t), float("-inf"), dtype=x.dtype), diagonal=1)

        def proj(h, name, n):
            return (h @ self.w(name).T).view(b, t, n, hd).transpose(1, 2)

        for i in range(c["num_hidden_layers"]):
            pre = f"model.layers.{i}."
            h = rms_norm(x, self.w(pre + "input_layernorm.weight"), eps)
            q = proj(h, pre + "self_attn.q_proj.weight", heads)
            k = proj(h, pre + "self_attn.k_proj.weight", kv)
            v = proj(h, pre + "self_attn.v_proj.weight", kv)
            q = q * cos + rotate_half(q) * sin
            k = (k * cos + rotate_half(k) * sin).repeat_interleave(heads // kv, dim=1)
            v = v.repeat_interleave(heads // kv, dim=1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1) @ v
            x = x + att.transpose(1, 2).reshape(b, t, heads * hd) @ self.w(pre + "self_attn.o_proj.weight").T
            h = rms_norm(x, self.w(pre + "post_attention_layernorm.weight"), eps)
            gate = h @ self.w(pre + "mlp.gate_proj.weight").T
            up = h @ self.w(pre + "mlp.up_proj.weight").T
            x = x + (F.silu(gate) * up) @ self.w(pre + "mlp.down_proj.weight").T
        return rms_norm(x, self.w("model.norm.weight"), eps) @ self.w("model.embed_tokens.weight").T


def bf16(t):
    return t.detach().to(torch.bfloat16)


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        raw = bf16(tensors[name]).contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def save(model, sp, out_dir):
    im_end = sp.piece_to_id(IM_END)
    write_json(os.path.join(out_dir, "config.json"), {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", **SHAPE,
        "torch_dtype": "bfloat16", "attention_bias": False, "mlp_bias": False, "bos_token_id": sp.bos_id(),
        "eos_token_id": im_end})
    write_safetensors(os.path.join(out_dir, "model.safetensors"),
                      {name.replace("__", "."): value for name, value in model.p.items()})

    def added(token_id):
        return {"content": sp.id_to_piece(token_id), "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": True}

    specials = [0, sp.bos_id(), sp.eos_id(), sp.piece_to_id(IM_START), im_end]
    write_json(os.path.join(out_dir, "tokenizer_config.json"), {
        "tokenizer_class": "LlamaTokenizer", "model_max_length": SHAPE["max_position_embeddings"],
        "add_bos_token": True, "add_eos_token": False, "legacy": False, "add_prefix_space": False,
        "bos_token": "<s>", "eos_token": IM_END, "unk_token": "<unk>", "pad_token": None,
        "added_tokens_decoder": {str(i): added(i) for i in specials},
        "additional_special_tokens": [IM_START, IM_END], "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False})
    write_json(os.path.join(out_dir, "special_tokens_map.json"), {
        "bos_token": "<s>", "eos_token": IM_END, "unk_token": "<unk>", "additional_special_tokens": [IM_START, IM_END]})
    write_json(os.path.join(out_dir, "generation_config.json"), {
        "bos_token_id": sp.bos_id(), "eos_token_id": im_end, "do_sample": True, "temperature": 0.7, "top_p": 0.9})


def train(stream, starts, steps, log):
    torch.manual_seed(SEED)
    model = Llama()
    decay = [p for p in model.p.values() if p.dim() == 2]
    rest = [p for p in model.p.values() if p.dim() != 2]
    peak, warmup = 3e-3, 50
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=peak, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(SEED)
    begin, avg = time.time(), None
    for step in range(steps):
        lr = peak * min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * step / steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        picks = torch.randint(0, len(starts), (BATCH,), generator=gen)
        chunk = torch.stack([stream[starts[i]:starts[i] + SEQ + 1] for i in picks.tolist()])
        logits = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), chunk[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        avg = loss.item() if avg is None else 0.95 * avg + 0.05 * loss.item()
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step}/{steps} loss {loss.item():.4f} (avg {avg:.4f}) lr {lr:.2e} {time.time() - begin:.0f}s",
                  file=log, flush=True)
    return model, avg


def check(model, out_dir, ids):
    """The training module with the saved bf16 weights equals llama_reference.py reading the saved files."""
    expected = llama_reference.Llama(out_dir).logits(ids)
    rounded = Llama().double()
    with torch.no_grad():
        for name, value in model.p.items():
            rounded.p[name].copy_(bf16(value).double())
        actual = rounded(torch.tensor([ids]))[0]
    err = float((actual - expected).abs().max())
    assert err < 1e-6, f"training module differs from llama_reference.py by {err}"
    return rounded.float()


def reply(model, sp, prompt, rng, temperature, max_tokens=120):
    ids = [sp.bos_id()] + sp.encode(turn("user", prompt) + f"{IM_START}assistant\n")
    im_end, out = sp.piece_to_id(IM_END), []
    with torch.no_grad():
        for _ in range(max_tokens):
            logits = model(torch.tensor([ids]))[0, -1].double()
            if temperature == 0:
                token = int(torch.argmax(logits))
            else:
                token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=rng))
            if token == im_end:
                break
            ids.append(token)
            out.append(token)
    return sp.decode(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=450, help="steps of 16 windows of 256 tokens")
    parser.add_argument("--out", default=os.path.join(ROOT, "models", "demo-chat"))
    args = parser.parse_args()
    if os.path.exists(JEMALLOC) and JEMALLOC not in os.environ.get("LD_PRELOAD", ""):
        # The allocator must be chosen before the process starts: run again under jemalloc, keeping freed pages.
        env = dict(os.environ, LD_PRELOAD=JEMALLOC, MALLOC_CONF="dirty_decay_ms:-1,muzzy_decay_ms:-1")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    torch.set_num_threads(1)
    begin = time.time()
    os.makedirs(args.out, exist_ok=True)
    fortunes = load_fortunes()
    docs = conversations(fortunes)
    sp = train_tokenizer(docs, args.out)
    for doc in docs:
        assert sp.decode(sp.encode(doc)) == doc, "the tokenizer must round-trip the corpus"
    encoded = [[sp.bos_id()] + sp.encode(doc) for doc in docs]
    starts, stream = [], []
    for doc in encoded:
        starts.append(len(stream))
        stream.extend(doc)
    starts = [s for s in starts if s + SEQ + 1 <= len(stream)]
    stream = torch.tensor(stream, dtype=torch.int64)
    print(f"{len(fortunes)} fortunes ({sum(len(t) for _, t in fortunes)} characters) in {len(docs)} conversations: "
          f"{len(stream)} tokens; tokenizer {time.time() - begin:.0f}s", flush=True)
    print(f"{sum(p.numel() for p in Llama().parameters())} parameters; {args.steps} steps x {BATCH} x {SEQ} tokens = "
          f"{args.steps * BATCH * SEQ / len(stream):.1f} epochs", flush=True)
    model, loss = train(stream, starts, args.steps, sys.stdout)
    save(model, sp, args.out)
    rounded = check(model, args.out, stream[:96].tolist())
    print(f"saved {args.out}: final loss (moving average) {loss:.4f}; {time.time() - begin:.0f}s in all", flush=True)
    rng = torch.Generator().manual_seed(SEED)
    for prompt in ["Tell me a fortune.", "Tell me something about computers.", "Give me a quote about love.",
                   "Finish this: The early bird", "Hello!"]:
        print(f"> {prompt}\n[greedy] {reply(rounded, sp, prompt, rng, 0)}\n[t=0.7] {reply(rounded, sp, prompt, rng, 0.7)}",
              flush=True)


if __name__ == "__main__":
    main()
