#!/usr/bin/python3
"""Trains the quality-bench models: a plain Llama, two YOCO models (sliding-window and gated-retention self-decoders),
a FusedKV and a FusedKV-Lite model of the same size, same data, same budget.

Tokenizer: byte-level, vocab 256 (token id = byte value). The service takes token ids, so no tokenizer ships;
a client of these models sends the bytes of its UTF-8 text as ids.

Data (exists on any Debian machine with python3.11): every top-level /usr/lib/python3.11/*.py in sorted order,
except HELD_OUT, concatenated with a 0x00 byte between files (about 4.6 MB). HELD_OUT (not trained on) is
written to bench/quality/heldout.txt for the bench, the first 16 KiB of the training stream to
bench/quality/calibration.txt (SVD-GQA and Fourier calibrate on text the model was trained on), and the exact list
and sizes of the training files to bench/quality/models/train-files.txt.

Each model: hidden 128, 4 layers, 8 heads, 4 KV heads (GQA), head dim 16, FFN 384, tied embeddings, rope theta
10000, RMSNorm eps 1e-5. AdamW (lr 4e-3, betas 0.9/0.95, weight decay 0.1 on matrices), linear warm-up then
cosine decay; --steps1 steps of 8 windows of 256 tokens, then --steps2 steps of 1 window of 2048 tokens (2048
tokens a step throughout) so that the 2k context of the bench is trained, not extrapolated. Seeds are fixed (the
same initialisation seed and the same batches for every model). The YOCO models differ only in their self-decoder:
"yoco" attends over a sliding window of 128 positions, "yoco-gret" runs gated retention (YOCO's default gRet: 8 heads
of 16 with a d x d state each, a per-head data-dependent decay sigmoid(x Wgt)^(1/16), RMSNorm per head, swish output
gate), trained in the paper's chunkwise form (chunks of 256). "fusedkv" learns its per-channel fusion weights with the
rest; "fusedkv-lite" is trained as its own model whose upper layers reuse the last lower layer's K and the first's V. The modules below mirror tests/KvCache.GpuWorker.Tests/Fixtures/llama_reference.py (tensor names and
maths); after training each model is saved as config.json + model.safetensors (F16) and checked against that
reference, which also writes reference logits the bench compares with the engine's.

Needs Debian's python3-torch, libopenblas0-pthread (the default reference BLAS is about 7x slower) and libjemalloc2
(glibc hands large freed tensors back to the OS, and re-faulting fresh pages made every step 10x slower).
Budget: 180 steps x 2048 tokens = 368,640 tokens per model. Measured on the 2-core development machine (shared with
other builds): three 1-thread processes (--only NAME --threads 1) side by side, 18 minutes wall in all.
SVD-GQA recovery (--only svd-gqa-ft, or after the others): models/llama converted by the engine's converter at
ratios 1/2 and 1/4 exactly as the bench converts it, then every weight of the converted model fine-tuned for
--recovery-steps windows of 2048 tokens of the training stream to match the plain model's next-token distributions
(distillation: KL(plain || converted), AdamW lr 5e-4), saved as models/svd-gqa-r{0.5,0.25}-ft and checked against
llama_reference.py's converted-attention mode.
Usage (from the repository root): /usr/bin/python3 bench/quality/train.py [--steps1 N] [--steps2 N] [--only NAME]
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "bench", "quality")
sys.path.insert(0, os.path.join(ROOT, "tests", "KvCache.GpuWorker.Tests", "Fixtures"))
import llama_reference  # noqa: E402  (the independent float64 implementation the engine is tested against)

SOURCE_DIR = "/usr/lib/python3.11"
HELD_OUT = ["argparse.py", "shutil.py"]
SHAPE = dict(vocab_size=256, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, head_dim=16, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
             tie_word_embeddings=True)
SLIDING_WINDOW = 128
GATE_LOGIT_NORMALIZER = 16  # gRet's temperature tau: gamma = sigmoid(x Wgt)^(1/tau), as in YOCO's code
RETENTION_CHUNK = 256
CALIBRATION_BYTES = 16384  # the start of the training stream, kept for the bench's SVD-GQA and Fourier calibration
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def training_files():
    names = sorted(n for n in os.listdir(SOURCE_DIR) if n.endswith(".py") and n not in HELD_OUT)
    return [os.path.join(SOURCE_DIR, n) for n in names]


def load_data():
    files = training_files()
    chunks = []
    for path in files:
        with open(path, "rb") as f:
            chunks.append(f.read())
    data = b"\x00".join(chunks)
    os.makedirs(os.path.join(HERE, "models"), exist_ok=True)
    with open(os.path.join(HERE, "models", "train-files.txt"), "w") as f:
        f.write(f"# {len(files)} files, {len(data)} bytes joined by 0x00 (python3.11 {sys.version.split()[0]})\n")
        for path, chunk in zip(files, chunks):
            f.write(f"{path}\t{len(chunk)}\n")
    with open(os.path.join(HERE, "calibration.txt"), "wb") as f:
        f.write(data[:CALIBRATION_BYTES])
    held = b"\x00".join(open(os.path.join(SOURCE_DIR, n), "rb").read() for n in HELD_OUT)
    with open(os.path.join(HERE, "heldout.txt"), "wb") as f:
        f.write(held)
    return torch.tensor(np.frombuffer(data, dtype=np.uint8).astype(np.int64)), held


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def gated_retention(q, k, v, log_gamma, chunk=RETENTION_CHUNK):
    """YOCO's gRet in the paper's chunkwise form: q, k, v [b, heads, t, d] (k already scaled), log_gamma [b, heads, t].

    Within a chunk (Q K^T * D) V with D_nm = prod_{i=m+1..n} gamma_i; across chunks a d x d state per head, decayed
    into each position. llama_reference.py computes the same function in the parallel form (float64)."""
    b, heads, t, d = q.shape
    state = q.new_zeros(b, heads, d, v.shape[-1])
    out = []
    for s in range(0, t, chunk):
        qc, kc, vc = q[..., s:s + chunk, :], k[..., s:s + chunk, :], v[..., s:s + chunk, :]
        beta = log_gamma[..., s:s + chunk].cumsum(-1)
        n = beta.shape[-1]
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        decay = (beta[..., :, None] - beta[..., None, :]).masked_fill(~causal, float("-inf")).exp()
        out.append((qc @ kc.transpose(-1, -2) * decay) @ vc + (qc * beta[..., None].exp()) @ state)
        state = beta[..., -1, None, None].exp() * state + (kc * (beta[..., -1:] - beta).exp()[..., None]).transpose(-1, -2) @ vc
    return torch.cat(out, dim=-2)


class Model(torch.nn.Module):
    """arch: "llama", "yoco", "yoco-gret", "fusedkv" or "fusedkv-lite"; parameter names are the checkpoint's tensor names with '.' -> '__'."""

    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        c = SHAPE
        h, hd, heads, kv, ffn = c["hidden_size"], c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"]
        self.layers, self.half = c["num_hidden_layers"], c["num_hidden_layers"] // 2
        self.p = torch.nn.ParameterDict()

        def lin(name, out_dim, in_dim):
            self.p[name.replace(".", "__")] = torch.nn.Parameter(torch.randn(out_dim, in_dim) / math.sqrt(in_dim))

        def ones(name, n):
            self.p[name.replace(".", "__")] = torch.nn.Parameter(torch.ones(n))

        self.p["model__embed_tokens__weight"] = torch.nn.Parameter(torch.randn(c["vocab_size"], h) * 0.02)
        for i in range(self.layers):
            pre = f"model.layers.{i}."
            ones(pre + "input_layernorm.weight", h)
            ones(pre + "post_attention_layernorm.weight", h)
            lin(pre + "self_attn.q_proj.weight", heads * hd, h)
            lin(pre + "self_attn.o_proj.weight", h, heads * hd)
            self.p[(pre + "self_attn.o_proj.weight").replace(".", "__")].data /= math.sqrt(2 * self.layers)
            if arch == "yoco-gret" and i < self.half:
                lin(pre + "self_attn.k_proj.weight", heads * hd, h)
                lin(pre + "self_attn.v_proj.weight", heads * hd, h)
                lin(pre + "self_attn.g_proj.weight", heads * hd, h)
                lin(pre + "self_attn.gt_proj.weight", heads, h)
            elif arch == "llama" or i < self.half:
                lin(pre + "self_attn.k_proj.weight", kv * hd, h)
                lin(pre + "self_attn.v_proj.weight", kv * hd, h)
            elif arch == "fusedkv":
                # Key weights are shared by the two channels of each rotate-half pair (stored duplicated), so fusing
                # post-RoPE keys equals RoPE of fused keys, as the engine requires.
                self.p[f"fuse_k_{i}"] = torch.nn.Parameter(torch.full((2, kv, hd // 2), 0.5))
                self.p[f"fuse_v_{i}"] = torch.nn.Parameter(torch.full((2, kv * hd), 0.5))
            lin(pre + "mlp.gate_proj.weight", ffn, h)
            lin(pre + "mlp.up_proj.weight", ffn, h)
            lin(pre + "mlp.down_proj.weight", h, ffn)
            self.p[(pre + "mlp.down_proj.weight").replace(".", "__")].data /= math.sqrt(2 * self.layers)
        if arch in ("yoco", "yoco-gret"):
            ones("model.cross_kv.norm.weight", h)
            lin("model.cross_kv.k_proj.weight", kv * hd, h)
            lin("model.cross_kv.v_proj.weight", kv * hd, h)
        ones("model.norm.weight", h)

    def w(self, name):
        return self.p[name.replace(".", "__")]

    def k_fusion(self, i):
        a = self.p[f"fuse_k_{i}"]
        return torch.cat((a, a), dim=-1).reshape(2, -1)

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
        window_mask = mask + torch.tril(torch.full((t, t), float("-inf"), dtype=x.dtype), diagonal=-SLIDING_WINDOW)

        def proj(h, name, n):
            return (h @ self.w(name).T).view(b, t, n, hd).transpose(1, 2)

        for i in range(self.layers):
            pre = f"model.layers.{i}."
            h = rms_norm(x, self.w(pre + "input_layernorm.weight"), eps)
            q = proj(h, pre + "self_attn.q_proj.weight", heads)
            q = q * cos + rotate_half(q) * sin
            layer_mask = mask
            if self.arch == "yoco-gret" and i < self.half:
                k = proj(h, pre + "self_attn.k_proj.weight", heads)
                k = (k * cos + rotate_half(k) * sin) / math.sqrt(hd)
                v = proj(h, pre + "self_attn.v_proj.weight", heads)
                log_gamma = (F.logsigmoid(h @ self.w(pre + "self_attn.gt_proj.weight").T) / GATE_LOGIT_NORMALIZER).transpose(1, 2)
                o = gated_retention(q, k, v, log_gamma)
                o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + eps)
                o = o.transpose(1, 2).reshape(b, t, heads * hd) * F.silu(h @ self.w(pre + "self_attn.g_proj.weight").T)
                x = x + o @ self.w(pre + "self_attn.o_proj.weight").T
                h = rms_norm(x, self.w(pre + "post_attention_layernorm.weight"), eps)
                x = x + (F.silu(h @ self.w(pre + "mlp.gate_proj.weight").T) * (h @ self.w(pre + "mlp.up_proj.weight").T)) \
                    @ self.w(pre + "mlp.down_proj.weight").T
                continue
            if self.arch == "llama" or i < self.half:
                k = proj(h, pre + "self_attn.k_proj.weight", kv)
                k = k * cos + rotate_half(k) * sin
                v = proj(h, pre + "self_attn.v_proj.weight", kv)
                if self.arch == "yoco":
                    layer_mask = window_mask
                if i == 0:
                    first_k, first_v = k, v
                if i == self.half - 1:
                    last_k, last_v = k, v
            elif self.arch == "fusedkv-lite":
                k, v = last_k, first_v
            elif self.arch in ("yoco", "yoco-gret"):
                if i == self.half:
                    hg = rms_norm(x, self.w("model.cross_kv.norm.weight"), eps)
                    gk = proj(hg, "model.cross_kv.k_proj.weight", kv)
                    gk = gk * cos + rotate_half(gk) * sin
                    gv = proj(hg, "model.cross_kv.v_proj.weight", kv)
                k, v = gk, gv
            else:
                a = self.k_fusion(i).view(2, 1, kv, 1, hd)
                bb = self.p[f"fuse_v_{i}"].view(2, 1, kv, 1, hd)
                k = a[0] * first_k + a[1] * last_k
                v = bb[0] * first_v + bb[1] * last_v
            k = k.repeat_interleave(heads // kv, dim=1)
            v = v.repeat_interleave(heads // kv, dim=1)
            scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + layer_mask
            att = torch.softmax(scores, dim=-1) @ v
            x = x + att.transpose(1, 2).reshape(b, t, heads * hd) @ self.w(pre + "self_attn.o_proj.weight").T
            h = rms_norm(x, self.w(pre + "post_attention_layernorm.weight"), eps)
            gate = h @ self.w(pre + "mlp.gate_proj.weight").T
            up = h @ self.w(pre + "mlp.up_proj.weight").T
            x = x + (F.silu(gate) * up) @ self.w(pre + "mlp.down_proj.weight").T
        return rms_norm(x, self.w("model.norm.weight"), eps) @ self.w("model.embed_tokens.weight").T

    def checkpoint(self):
        """Tensor name -> tensor, as the engine and llama_reference.py read them."""
        out = {}
        for name, value in self.p.items():
            if name.startswith("fuse_"):
                continue
            out[name.replace("__", ".")] = value.detach()
        if self.arch == "fusedkv":
            for i in range(self.half, self.layers):
                out[f"model.layers.{i}.self_attn.k_fusion.weight"] = self.k_fusion(i).detach()
                out[f"model.layers.{i}.self_attn.v_fusion.weight"] = self.p[f"fuse_v_{i}"].detach()
        return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        raw = tensors[name].to(torch.float16).contiguous().numpy().astype("<f2").tobytes()
        header[name] = {"dtype": "F16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def save(model, name):
    out_dir = os.path.join(HERE, "models", name)
    os.makedirs(out_dir, exist_ok=True)
    config = {"architectures": [{"llama": "LlamaForCausalLM", "yoco": "YocoForCausalLM", "yoco-gret": "YocoForCausalLM",
                                 "fusedkv": "FusedKvForCausalLM", "fusedkv-lite": "FusedKvForCausalLM"}[model.arch]],
              "model_type": {"llama": "llama", "yoco": "yoco", "yoco-gret": "yoco", "fusedkv": "fusedkv", "fusedkv-lite": "fusedkv"}[model.arch],
              "hidden_act": "silu",
              **SHAPE, "torch_dtype": "float16", "attention_bias": False, "mlp_bias": False}
    tensors = model.checkpoint()
    if model.arch == "yoco":
        config["sliding_window"] = SLIDING_WINDOW
    if model.arch == "yoco-gret":
        config["self_decoder"] = "gated_retention"
        config["gate_logit_normalizer"] = GATE_LOGIT_NORMALIZER
    if model.arch in ("fusedkv", "fusedkv-lite"):
        config["fusedkv_lite"] = model.arch == "fusedkv-lite"
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors)
    return out_dir


def check_and_reference(model, out_dir, held):
    """Asserts the training module equals llama_reference.py on the saved weights; writes reference.json."""
    ids = list(held[:96])
    ref = llama_reference.Llama(out_dir)
    expected = ref.logits(ids)
    rounded = Model(model.arch).double()
    with torch.no_grad():
        for name, value in model.p.items():
            rounded.p[name].copy_(value.to(torch.float16).double())
        actual = rounded(torch.tensor([ids]))[0]
    err = float((actual - expected).abs().max())
    assert err < 1e-6, f"{out_dir}: training module differs from llama_reference.py by {err}"
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump({"ids": ids, "logits": [[float("%.9g" % v) for v in row] for row in expected[-4:].tolist()]},
                  f, separators=(",", ":"))
        f.write("\n")


class SvdGqaModel(torch.nn.Module):
    """A plain model converted by `kvcache-convert convert-svd-gqa`, for its recovery fine-tune.

    Its attention is llama_reference.py's converted-attention mode: per group g of t KV heads the cached keys are
    c = [RoPE(k^1) .. RoPE(k^t)] Psi_K,g (k_basis.weight holds Psi_K,g^T), queries q~_i = RoPE(q_i) Psi_K,g[slot of head i],
    values v' = x W_V' (rank d per group), and o_proj takes the heads' rank-d outputs. Every tensor is trained."""

    def __init__(self, model_dir):
        super().__init__()
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        self.svd = self.cfg["kv_compression"]
        tensors = llama_reference.load_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.p = torch.nn.ParameterDict({n.replace(".", "__"): torch.nn.Parameter(t.float()) for n, t in tensors.items()})

    def w(self, name):
        return self.p[name.replace(".", "__")]

    def forward(self, ids):
        c = self.cfg
        b, t = ids.shape
        heads, kv, hd, eps = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["rms_norm_eps"]
        size, d = self.svd["group_size"], self.svd["rank"]
        groups, per_kv = kv // size, heads // kv
        group_of = [(i // per_kv) // size for i in range(heads)]
        slot_of = [(i // per_kv) % size for i in range(heads)]
        x = self.w("model.embed_tokens.weight")[ids]
        inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        angles = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq).repeat(1, 2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        mask = torch.triu(torch.full((t, t), float("-inf"), dtype=x.dtype), diagonal=1)
        for i in range(c["num_hidden_layers"]):
            pre = f"model.layers.{i}."
            h = rms_norm(x, self.w(pre + "input_layernorm.weight"), eps)
            q = (h @ self.w(pre + "self_attn.q_proj.weight").T).view(b, t, heads, hd).transpose(1, 2)
            k = (h @ self.w(pre + "self_attn.k_proj.weight").T).view(b, t, kv, hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            basis = self.w(pre + "self_attn.k_basis.weight").view(groups, d, size * hd)
            keys = k.reshape(b, groups, size, t, hd).permute(0, 1, 3, 2, 4).reshape(b, groups, t, size * hd) @ basis.transpose(-1, -2)
            values = (h @ self.w(pre + "self_attn.v_proj.weight").T).view(b, t, groups, d).transpose(1, 2)
            head_basis = torch.stack([basis[group_of[j], :, slot_of[j] * hd:(slot_of[j] + 1) * hd] for j in range(heads)])
            queries = torch.einsum("bhte,hde->bhtd", q, head_basis)
            scores = queries @ keys[:, group_of].transpose(-1, -2) / math.sqrt(hd) + mask
            att = torch.softmax(scores, dim=-1) @ values[:, group_of]
            x = x + att.transpose(1, 2).reshape(b, t, heads * d) @ self.w(pre + "self_attn.o_proj.weight").T
            h = rms_norm(x, self.w(pre + "post_attention_layernorm.weight"), eps)
            x = x + (F.silu(h @ self.w(pre + "mlp.gate_proj.weight").T) * (h @ self.w(pre + "mlp.up_proj.weight").T)) \
                @ self.w(pre + "mlp.down_proj.weight").T
        head = self.w("lm_head.weight") if "lm_head__weight" in self.p else self.w("model.embed_tokens.weight")
        return rms_norm(x, self.w("model.norm.weight"), eps) @ head.T


def load_plain(model_dir):
    """The plain Llama checkpoint as a training module (float32), to serve as the recovery's teacher."""
    model = Model("llama")
    tensors = llama_reference.load_safetensors(os.path.join(model_dir, "model.safetensors"))
    with torch.no_grad():
        for name, value in tensors.items():
            model.p[name.replace(".", "__")].copy_(value.float())
    return model


def recover_svd_gqa(ratio, data, held, steps, log):
    """Converts models/llama with the engine's converter as the bench does, then distils the plain model into every
    weight of the converted one: KL(plain || converted) of the next-token distributions at every position of
    2048-token windows of the training stream (AdamW lr 5e-4, warm-up 5, cosine; its own batches). Saves
    models/svd-gqa-rR-ft."""
    with tempfile.TemporaryDirectory() as tmp:
        converted = os.path.join(tmp, "converted")
        subprocess.run(["dotnet", "run", "-c", "Release", "--project", os.path.join(ROOT, "tools", "KvCache.Convert"), "--",
                        "convert-svd-gqa", "--model", os.path.join(HERE, "models", "llama"), "--out", converted,
                        "--ratio", str(ratio), "--calibration-file", os.path.join(HERE, "calibration.txt"),
                        "--calibration-tokens", str(CALIBRATION_BYTES), "--sequence-length", "2048"], check=True, stdout=log)
        model = SvdGqaModel(converted)
    teacher = load_plain(os.path.join(HERE, "models", "llama"))
    opt = torch.optim.AdamW(list(model.p.values()), lr=5e-4, betas=(0.9, 0.95), weight_decay=0.0)
    warmup, seq = 5, 2048
    gen = torch.Generator().manual_seed(2024)
    start = time.time()
    for step in range(steps):
        lr = 5e-4 * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr
        s0 = int(torch.randint(0, len(data) - seq, (1,), generator=gen))
        ids = data[s0:s0 + seq].unsqueeze(0)
        with torch.no_grad():
            target = F.log_softmax(teacher(ids), dim=-1)
        loss = F.kl_div(F.log_softmax(model(ids), dim=-1), target, log_target=True, reduction="batchmean") / seq
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 5 == 0 or step == steps - 1:
            print(f"svd-gqa r{ratio} recovery step {step}/{steps} KL {loss.item():.5f} nats/token lr {lr:.2e} {time.time() - start:.0f}s",
                  file=log, flush=True)
    out_dir = os.path.join(HERE, "models", f"svd-gqa-r{ratio}-ft")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(dict(model.cfg, torch_dtype="float16"), f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(out_dir, "model.safetensors"), {n.replace("__", "."): p.detach() for n, p in model.p.items()})
    ids = list(held[:96])
    expected = llama_reference.Llama(out_dir).logits(ids)
    rounded = SvdGqaModel(out_dir).double()
    with torch.no_grad():
        err = float((rounded(torch.tensor([ids]))[0] - expected).abs().max())
    assert err < 1e-6, f"{out_dir}: recovery module differs from llama_reference.py by {err}"
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump({"ids": ids, "logits": [[float("%.9g" % v) for v in row] for row in expected[-4:].tolist()]},
                  f, separators=(",", ":"))
        f.write("\n")
    return out_dir


def train(arch, data, steps1, steps2, log):
    torch.manual_seed(1234)
    model = Model(arch)
    decay = [p for n, p in model.p.items() if p.dim() == 2 and not n.startswith("fuse_")]
    rest = [p for n, p in model.p.items() if not (p.dim() == 2 and not n.startswith("fuse_"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=4e-3, betas=(0.9, 0.95))
    total, warmup = steps1 + steps2, 20
    gen = torch.Generator().manual_seed(99)  # same batches for every architecture
    start = time.time()
    for step in range(total):
        seq, batch = (256, 8) if step < steps1 else (2048, 1)
        lr = 4e-3 * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
        chunk = torch.stack([data[s:s + seq + 1] for s in starts.tolist()])
        logits = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), chunk[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0 or step == total - 1:
            print(f"{arch} step {step}/{total} seq {seq} loss {loss.item():.4f} ({loss.item() / math.log(2):.3f} bits/byte) "
                  f"lr {lr:.2e} {time.time() - start:.0f}s", file=log, flush=True)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps1", type=int, default=150, help="steps of 8 x 256 tokens")
    parser.add_argument("--steps2", type=int, default=30, help="then steps of 1 x 2048 tokens")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["llama", "yoco", "yoco-gret", "fusedkv", "fusedkv-lite", "svd-gqa-ft"])
    parser.add_argument("--recovery-steps", type=int, default=40, help="SVD-GQA recovery: steps of one 2048-token window")
    args = parser.parse_args()
    if os.path.exists(JEMALLOC) and JEMALLOC not in os.environ.get("LD_PRELOAD", ""):
        # The allocator must be chosen before the process starts: run again under jemalloc, keeping freed pages.
        env = dict(os.environ, LD_PRELOAD=JEMALLOC, MALLOC_CONF="dirty_decay_ms:-1,muzzy_decay_ms:-1")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    torch.set_num_threads(args.threads)
    data, held = load_data()
    for arch in ["llama", "yoco", "yoco-gret", "fusedkv", "fusedkv-lite"]:
        if args.only and arch != args.only:
            continue
        model = train(arch, data, args.steps1, args.steps2, sys.stdout)
        out_dir = save(model, arch)
        check_and_reference(model, out_dir, held)
        print(f"{arch}: saved {out_dir}", flush=True)
    if args.only in (None, "svd-gqa-ft"):
        # After the plain model: its SVD-GQA conversions at 1/2 and 1/4 of the cache, each with a short recovery fine-tune.
        for ratio in (0.5, 0.25):
            print(f"svd-gqa r{ratio}: saved {recover_svd_gqa(ratio, data, held, args.recovery_steps, sys.stdout)}", flush=True)


if __name__ == "__main__":
    main()
