#!/usr/bin/python3
"""Independent float64 reference for the "fourier" codec calibrated by the paper's rule (FourierAttention, arXiv 2506.11886).

1. Calibration: runs the plain Llama model (float64, causal attention, no cache) over CALIBRATION ids and keeps, per
   layer, its keys BEFORE RoPE and its values. For every layer, side (K, V), KV head and dimension it projects the
   values at positions init.. on the codec's basis (period T, 2k functions phi_j(u): j = 0 is 1/sqrt(T), j = 2i is
   sqrt(2/T) cos(2 pi i u / T), j = 2i + 1 is sqrt(2/T) sin(2 pi (i + 1) u / T)) and sums the squared reconstruction
   error. Layer l of L compresses round(d * f * (1 + s * (1 - 2l / (L - 1)))) dims (f the mean share, s the spread,
   half away from zero): the m_l dims with the lowest error (ties by dim), the same m_l for keys and values.
2. Decoding with the codec: every query at position p (n = p + 1 tokens) attends over the first `init` tokens and the
   last W tokens exactly (post-RoPE keys, as cached) and over the middle tokens u = t - init, t in [init, n - W), whose
   uncompressed dims are exact and whose compressed dims are reconstructed x^_u = sum_j c_j phi_j(u mod T) from the
   coefficients c_j = sum_{u' < n - init - W} x_u' phi_j(u' mod T) of every token that has left the window by then.
   Each step recomputes the whole sequence (no state), then greedy-decodes.

Output JSON: the options, calibration ids, key_dims / value_dims [layer][kv_head][m_l], the smallest relative gap
between the last chosen and the first unchosen error of any (layer, side, head) (ranking robustness), the prompt,
logits after the prompt and after each greedy step (the codec's), greedy tokens, and the smallest top-2 margin.

Usage: /usr/bin/python3 fourier_reference.py MODEL_DIR OUT.json [--dims-fraction 0.5] [--layer-spread 0.5] [--k 4]
       [--window 16] [--horizon 236] [--init 4] [--calibration-tokens 128] [--calibration-seed 7] [--prompt-len 72]
       [--steps 16] [--prompt-seed 1]
"""
import argparse
import json
import math
import random

import torch

from llama_reference import load_safetensors, rms_norm, rotate_half


class Model:
    def __init__(self, model_dir):
        with open(f"{model_dir}/config.json") as f:
            self.cfg = json.load(f)
        c = self.cfg
        if (c.get("architectures") or ["LlamaForCausalLM"])[0] != "LlamaForCausalLM" or c.get("kv_compression"):
            raise ValueError("the fourier codec runs on plain Llama models")
        self.w = load_safetensors(f"{model_dir}/model.safetensors")
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        self.layers = c["num_hidden_layers"]
        self.eps = c["rms_norm_eps"]
        self.theta = c.get("rope_theta", 10000.0)
        self.lm_head = self.w["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else self.w["lm_head.weight"]

    def forward(self, ids, attend, capture=None):
        """Logits of every position; attend(layer, q, k, v) -> [heads, t, d] (k post-RoPE); capture gets pre-RoPE k, v."""
        w, t, hd = self.w, len(ids), self.head_dim
        x = w["model.embed_tokens.weight"][torch.tensor(ids)]
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        angles = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq).repeat(1, 2)
        cos, sin = angles.cos(), angles.sin()
        for i in range(self.layers):
            p = f"model.layers.{i}."
            h = rms_norm(x, w[p + "input_layernorm.weight"], self.eps)
            q = (h @ w[p + "self_attn.q_proj.weight"].T).view(t, self.heads, hd).transpose(0, 1)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).view(t, self.kv_heads, hd).transpose(0, 1)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).view(t, self.kv_heads, hd).transpose(0, 1)
            if capture is not None:
                capture.append((k, v))
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            att = attend(i, q, k, v)
            x = x + att.transpose(0, 1).reshape(t, self.heads * hd) @ w[p + "self_attn.o_proj.weight"].T
            h = rms_norm(x, w[p + "post_attention_layernorm.weight"], self.eps)
            x = x + (torch.nn.functional.silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)) \
                @ w[p + "mlp.down_proj.weight"].T
        return rms_norm(x, w["model.norm.weight"], self.eps) @ self.lm_head.T


def basis(count, horizon, length):
    """[length, count] rows phi(u mod T)."""
    u = torch.arange(length, dtype=torch.float64) % horizon
    cols = []
    for j in range(count):
        if j == 0:
            cols.append(torch.full((length,), 1 / math.sqrt(horizon), dtype=torch.float64))
        elif j % 2 == 0:
            cols.append(math.sqrt(2 / horizon) * torch.cos(2 * math.pi * (j // 2) * u / horizon))
        else:
            cols.append(math.sqrt(2 / horizon) * torch.sin(2 * math.pi * (j // 2 + 1) * u / horizon))
    return torch.stack(cols, dim=1)


def exact_attention(heads):
    def attend(layer, q, k, v):
        t = q.shape[1]
        groups = heads // k.shape[0]
        k, v = k.repeat_interleave(groups, 0), v.repeat_interleave(groups, 0)
        mask = torch.triu(torch.full((t, t), float("-inf"), dtype=torch.float64), diagonal=1)
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask, dim=-1) @ v
    return attend


def fourier_attention(heads, key_dims, value_dims, init, window, coefficients, horizon):
    def reconstruct(x, dims, middle, phi):
        """x [t, d] of one KV head: middle tokens' compressed dims replaced by their reconstruction."""
        x = x.clone()
        if middle > 0 and dims:
            seg = x[init:init + middle][:, dims]
            c = phi[:middle].T @ seg                                  # [2k, m]
            x[init:init + middle, dims] = phi[:middle] @ c
        return x

    def attend(layer, q, k, v):
        t, d = q.shape[1], q.shape[2]
        groups = heads // k.shape[0]
        phi = basis(coefficients, horizon, t)
        out = torch.zeros_like(q)
        for pos in range(t):
            n = pos + 1
            middle = max(0, n - init - window)
            for g in range(k.shape[0]):
                kg = reconstruct(k[g, :n], key_dims[layer][g], middle, phi)
                vg = reconstruct(v[g, :n], value_dims[layer][g], middle, phi)
                for h in range(g * groups, (g + 1) * groups):
                    p = torch.softmax(kg @ q[h, pos] / math.sqrt(d), dim=0)
                    out[h, pos] = p @ vg
        return out
    return attend


def layer_counts(layers, head_dim, fraction, spread):
    counts = []
    for l in range(layers):
        share = fraction if layers == 1 else fraction * (1 + spread * (1 - 2.0 * l / (layers - 1)))
        share = min(max(share, 0.0), 1.0)
        counts.append(int(math.floor(share * head_dim + 0.5)))  # half away from zero (shares are non-negative)
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("out")
    parser.add_argument("--dims-fraction", type=float, default=0.5)
    parser.add_argument("--layer-spread", type=float, default=0.5)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--horizon", type=int, default=236)
    parser.add_argument("--init", type=int, default=4)
    parser.add_argument("--calibration-tokens", type=int, default=128)
    parser.add_argument("--calibration-seed", type=int, default=7)
    parser.add_argument("--prompt-len", type=int, default=72)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--prompt-seed", type=int, default=1)
    a = parser.parse_args()

    model = Model(a.model_dir)
    vocab, d, coefficients = model.cfg["vocab_size"], model.head_dim, 2 * a.k
    crng = random.Random(a.calibration_seed)
    calibration = [crng.randrange(vocab) for _ in range(a.calibration_tokens)]
    captured = []
    model.forward(calibration, exact_attention(model.heads), captured)

    middle = a.calibration_tokens - a.init
    phi = basis(coefficients, a.horizon, middle)
    counts = layer_counts(model.layers, d, a.dims_fraction, a.layer_spread)
    key_dims, value_dims, min_gap = [], [], float("inf")
    for layer, (k, v) in enumerate(captured):
        per_side = []
        for x in (k, v):
            heads = []
            for g in range(model.kv_heads):
                seg = x[g, a.init:]                                       # [middle, d], pre-RoPE keys or values
                error = ((seg - phi @ (phi.T @ seg)) ** 2).sum(0)         # per dim
                order = sorted(range(d), key=lambda i: (float(error[i]), i))
                m = counts[layer]
                if 0 < m < d:
                    last, first_out = float(error[order[m - 1]]), float(error[order[m]])
                    min_gap = min(min_gap, (first_out - last) / max(first_out, 1e-300))
                heads.append(sorted(order[:m]))
            per_side.append(heads)
        key_dims.append(per_side[0])
        value_dims.append(per_side[1])

    attend = fourier_attention(model.heads, key_dims, value_dims, a.init, a.window, coefficients, a.horizon)
    prng = random.Random(a.prompt_seed)
    prompt = [prng.randrange(vocab) for _ in range(a.prompt_len)]
    ids, rows, greedy, margins = list(prompt), [], [], []
    for _ in range(a.steps + 1):
        last = model.forward(ids, attend)[-1]
        top = torch.topk(last, 2).values
        margins.append(float(top[0] - top[1]))
        token = int(torch.argmax(last))
        rows.append([float("%.9g" % v) for v in last.tolist()])
        greedy.append(token)
        ids.append(token)

    with open(a.out, "w") as f:
        json.dump({
            "model": a.model_dir.rstrip("/").split("/")[-1],
            "torch_version": torch.__version__,
            "precision": "float64",
            "rule": "pre_rope_layered",
            "dims_fraction": a.dims_fraction,
            "layer_spread": a.layer_spread,
            "frequencies": a.k,
            "window": a.window,
            "horizon": a.horizon,
            "init_tokens": a.init,
            "calibration": calibration,
            "compressed_per_layer": counts,
            "key_dims": key_dims,
            "value_dims": value_dims,
            "min_rank_gap": min_gap,
            "prompt": prompt,
            "steps": a.steps,
            "greedy": greedy,
            "min_top2_margin": min(margins),
            "logits": rows,
        }, f, separators=(",", ":"))
        f.write("\n")
    print(f"{a.out}: m per layer {counts}, min rank gap {min_gap:.3g}, {a.steps} steps, min top-2 margin {min(margins):.4g}")


if __name__ == "__main__":
    main()
