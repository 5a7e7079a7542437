#!/usr/bin/python3
"""Independent PyTorch reference for the engine's Llama decoder (LlamaForCausalLM semantics).

Reads a model directory (config.json + model.safetensors, F32/F16/BF16) with its own safetensors
parser, runs the forward pass in float64 (RMSNorm, rotate-half RoPE, SwiGLU, grouped-query attention,
optional tied embeddings) on a prompt, then greedy-decodes. Each step recomputes the whole sequence
with a causal mask (no KV cache), so nothing here shares structure with the engine's cached path.

A model converted by SVD-GQA (config.json "kv_compression": {"method": "svd-gqa", "group_size": t,
"rank": d}) runs its own attention from the converted weights: per group g of t KV heads the keys are
c = [R k^1 .. R k^t] Psi_K,g (k_basis.weight holds Psi_K,g^T), queries q~_i = (R q_i) Psi_K,g[slot of head i],
values are v' = x W_V' (rank d per group), and o_proj takes the heads' rank-d outputs.

A YOCO model ("architectures": ["YocoForCausalLM"], "sliding_window": C) runs layers [0, L/2) as the
self-decoder with sliding-window attention (query p sees keys p-C+1 .. p), then K^ = RoPE(RMSNorm(x) Wk^),
V^ = RMSNorm(x) Wv^ from the self-decoder's output x (model.cross_kv.*), and layers [L/2, L) attend causally
over K^, V^ with their own q_proj / o_proj. With "self_decoder": "gated_retention" the self-decoder layers run
gated retention instead (YOCO's gRet, Sun et al. 2024, section 2.1.1), with num_attention_heads heads of head_dim:
q = RoPE(h Wq), k = RoPE(h Wk) / sqrt(head_dim), v = h Wv, per-head decay gamma_n = sigmoid(h_n Wgt)^(1/tau)
(self_attn.gt_proj.weight [heads, hidden], tau = gate_logit_normalizer, default 16), the paper's parallel form
o_n = sum_{m<=n} (q_n . k_m) D_nm v_m with D_nm = prod_{i=m+1..n} gamma_i, then RMSNorm of each head's o (no weight,
eps rms_norm_eps), times swish(h Wg) (self_attn.g_proj.weight), through o_proj. The recurrent form
(S_n = gamma_n S_{n-1} + k_n^T v_n, o_n = q_n S_n) and the chunkwise form (paper eq. 6, chunk 16 here) are implemented
too: the output JSON records how far they lie from the parallel form on the final sequence (float64).
A FusedKV model ("architectures": ["FusedKvForCausalLM"]) runs layers
[0, n = L/2) normally; each layer i >= n has only q_proj / o_proj and attends over K_i = a_i1 * K_1 + a_in * K_n,
V_i = b_i1 * V_1 + b_in * V_n (post-RoPE keys; k_fusion.weight / v_fusion.weight [2, kv_heads * head_dim]), or
with "fusedkv_lite": true over K_i = K_n, V_i = V_1.

With --kv-bf16, every key and value a KV cache would hold (post-RoPE K and V of the cached layers; SVD-GQA's c and v';
YOCO's self-decoder K, V and its global K^, V^)
is rounded f32 -> bf16 (nearest even) before attention, as the engine's bf16 KV cache (KvCacheFormat.Bf16) stores them.

Output JSON: prompt ids, logits after the prompt and after each decode step (steps + 1 rows), and
greedy[i] = argmax(logits[i]) (lowest id on ties); the engine feeds greedy[0 .. steps-1].

Usage: /usr/bin/python3 llama_reference.py MODEL_DIR OUT.json [--prompt-len 72] [--steps 32] [--prompt-seed 1] [--kv-bf16]
"""
import argparse
import json
import math
import random
import struct

import numpy as np
import torch


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin:base + end]
        dtype = info["dtype"]
        if dtype == "F32":
            values = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif dtype == "F16":
            values = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif dtype == "BF16":
            values = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        else:
            raise ValueError(f"unsupported dtype {dtype} for {name}")
        tensors[name] = torch.from_numpy(values.reshape(info["shape"]).copy())
    return tensors


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def retention_parallel(q, k, v, log_gamma):
    """(Q K^T * D) V with D_nm = prod_{i=m+1..n} gamma_i for m <= n, else 0 (q, k, v [heads, t, d]; log_gamma [heads, t])."""
    cum = log_gamma.cumsum(-1)
    t = cum.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    # Above the diagonal the log-decay difference is positive (and masked): clamped so exp cannot overflow there.
    decay = torch.where(causal, (cum[:, :, None] - cum[:, None, :]).clamp(max=0).exp(), torch.zeros((), dtype=q.dtype))
    return (q @ k.transpose(-1, -2) * decay) @ v


def retention_recurrent(q, k, v, log_gamma):
    """S_n = gamma_n S_{n-1} + k_n^T v_n (a d x d state per head), o_n = q_n S_n."""
    heads, t, d = q.shape
    state = torch.zeros(heads, d, v.shape[-1], dtype=q.dtype)
    out = []
    for n in range(t):
        state = log_gamma[:, n, None, None].exp() * state + k[:, n, :, None] * v[:, n, None, :]
        out.append((q[:, n, None, :] @ state)[:, 0])
    return torch.stack(out, dim=1)


def retention_chunkwise(q, k, v, log_gamma, chunk=16):
    """The paper's chunkwise form: inner-chunk (Q K^T * D) V plus the carried state R, decayed into each position."""
    heads, t, d = q.shape
    state = torch.zeros(heads, d, v.shape[-1], dtype=q.dtype)
    out = []
    for s in range(0, t, chunk):
        qc, kc, vc = q[:, s:s + chunk], k[:, s:s + chunk], v[:, s:s + chunk]
        beta = log_gamma[:, s:s + chunk].cumsum(-1)  # log prod of the chunk's gammas up to each position
        out.append(retention_parallel(qc, kc, vc, log_gamma[:, s:s + chunk]) + (qc * beta[..., None].exp()) @ state)
        state = beta[:, -1, None, None].exp() * state + (kc * (beta[:, -1:] - beta).exp()[..., None]).transpose(-1, -2) @ vc
    return torch.cat(out, dim=1)


class Llama:
    def __init__(self, model_dir, kv_bf16=False):
        self.kv_bf16 = kv_bf16
        with open(f"{model_dir}/config.json") as f:
            self.cfg = json.load(f)
        self.w = load_safetensors(f"{model_dir}/model.safetensors")
        c = self.cfg
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        self.eps = c["rms_norm_eps"]
        self.theta = c.get("rope_theta", 10000.0)
        self.lm_head = self.w["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else self.w["lm_head.weight"]
        self.arch = (c.get("architectures") or ["LlamaForCausalLM"])[0]
        if self.arch not in ("LlamaForCausalLM", "YocoForCausalLM", "FusedKvForCausalLM"):
            raise ValueError(f"unsupported architecture {self.arch}")
        self.gret = self.arch == "YocoForCausalLM" and c.get("self_decoder") == "gated_retention"
        self.gate_normalizer = c.get("gate_logit_normalizer", 16)
        self.gret_form = "parallel"
        self.svd = c.get("kv_compression")
        if self.svd is not None and self.svd["method"] != "svd-gqa":
            raise ValueError(f"unsupported kv_compression {self.svd}")

    def logits(self, ids):
        """Logits (float64) of every position of the token sequence `ids`."""
        w, t, hd = self.w, len(ids), self.head_dim
        x = w["model.embed_tokens.weight"][torch.tensor(ids)]
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos(), angles.sin()
        mask = torch.triu(torch.full((t, t), float("-inf"), dtype=torch.float64), diagonal=1)
        layers, half = self.cfg["num_hidden_layers"], self.cfg["num_hidden_layers"] // 2
        if self.arch == "YocoForCausalLM" and not self.gret:
            # Self-decoder: also mask keys more than sliding_window - 1 positions back.
            window_mask = mask + torch.tril(torch.full((t, t), float("-inf"), dtype=torch.float64),
                                            diagonal=-self.cfg["sliding_window"])
        for i in range(layers):
            p = f"model.layers.{i}."
            h = rms_norm(x, w[p + "input_layernorm.weight"], self.eps)
            if self.gret and i < half:
                x = x + self.gated_retention(p, h, cos, sin)
                x = self.mlp(p, x)
                continue
            q = (h @ w[p + "self_attn.q_proj.weight"].T).view(t, self.heads, hd).transpose(0, 1)
            q = q * cos + rotate_half(q) * sin
            width, layer_mask = hd, mask
            if self.arch == "LlamaForCausalLM" or i < half:
                k = (h @ w[p + "self_attn.k_proj.weight"].T).view(t, self.kv_heads, hd).transpose(0, 1)
                k = k * cos + rotate_half(k) * sin
                if self.svd is None:
                    v = (h @ w[p + "self_attn.v_proj.weight"].T).view(t, self.kv_heads, hd).transpose(0, 1)
                else:
                    q, k, v = self.svd_gqa_qkv(p, h, q, k)
                    width = self.svd["rank"]
                if self.kv_bf16:
                    # What a bf16 KV cache holds: each cached element rounded f32 -> bf16 (nearest even).
                    k, v = k.float().to(torch.bfloat16).double(), v.float().to(torch.bfloat16).double()
                if self.arch == "YocoForCausalLM":
                    layer_mask = window_mask
                if i == 0:
                    first_k, first_v = k, v
                if i == half - 1:
                    last_k, last_v = k, v
            elif self.arch == "YocoForCausalLM":
                if i == half:
                    hg = rms_norm(x, w["model.cross_kv.norm.weight"], self.eps)
                    global_k = (hg @ w["model.cross_kv.k_proj.weight"].T).view(t, self.kv_heads, hd).transpose(0, 1)
                    global_k = global_k * cos + rotate_half(global_k) * sin
                    global_v = (hg @ w["model.cross_kv.v_proj.weight"].T).view(t, self.kv_heads, hd).transpose(0, 1)
                    if self.kv_bf16:
                        global_k = global_k.float().to(torch.bfloat16).double()
                        global_v = global_v.float().to(torch.bfloat16).double()
                k, v = global_k, global_v
            elif self.cfg.get("fusedkv_lite"):
                k, v = last_k, first_v
            else:
                a = w[p + "self_attn.k_fusion.weight"].view(2, self.kv_heads, 1, hd)
                b = w[p + "self_attn.v_fusion.weight"].view(2, self.kv_heads, 1, hd)
                k = a[0] * first_k + a[1] * last_k
                v = b[0] * first_v + b[1] * last_v
            groups = self.heads // k.shape[0]
            k = k.repeat_interleave(groups, dim=0)
            v = v.repeat_interleave(groups, dim=0)
            scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + layer_mask
            att = torch.softmax(scores, dim=-1) @ v
            x = x + att.transpose(0, 1).reshape(t, self.heads * width) @ w[p + "self_attn.o_proj.weight"].T
            x = self.mlp(p, x)
        return rms_norm(x, w["model.norm.weight"], self.eps) @ self.lm_head.T

    def mlp(self, p, x):
        w = self.w
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], self.eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        return x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T

    def gated_retention(self, p, h, cos, sin):
        """A gRet self-decoder layer's output (before the residual add) for the normed input h [t, hidden]."""
        w, t, hd, heads = self.w, h.shape[0], self.head_dim, self.heads
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(t, heads, hd).transpose(0, 1)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(t, heads, hd).transpose(0, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(t, heads, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = (k * cos + rotate_half(k) * sin) / math.sqrt(hd)
        # log gamma = log(sigmoid(z)^(1/tau)) = logsigmoid(z) / tau, per head and position: [heads, t]
        log_gamma = (torch.nn.functional.logsigmoid(h @ w[p + "self_attn.gt_proj.weight"].T) / self.gate_normalizer).T
        o = {"parallel": retention_parallel, "recurrent": retention_recurrent, "chunkwise": retention_chunkwise}[self.gret_form](q, k, v, log_gamma)
        o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + self.eps)
        o = o.transpose(0, 1).reshape(t, heads * hd) * torch.nn.functional.silu(h @ w[p + "self_attn.g_proj.weight"].T)
        return o @ w[p + "self_attn.o_proj.weight"].T

    def svd_gqa_qkv(self, p, h, q, k):
        """Rank-d queries [heads, t, d], compressed keys and folded values [groups, t, d] of one layer."""
        t, hd, size, d = h.shape[0], self.head_dim, self.svd["group_size"], self.svd["rank"]
        groups = self.kv_heads // size
        basis = self.w[p + "self_attn.k_basis.weight"].view(groups, d, size * hd)  # Psi_K,g^T
        v = (h @ self.w[p + "self_attn.v_proj.weight"].T).view(t, groups, d).transpose(0, 1)
        k_groups = k.reshape(groups, size, t, hd).permute(0, 2, 1, 3).reshape(groups, t, size * hd)
        c = k_groups @ basis.transpose(-1, -2)
        per_kv = self.heads // self.kv_heads
        q_tilde = []
        for i in range(self.heads):
            j = i // per_kv
            g, slot = j // size, j % size
            q_tilde.append(q[i] @ basis[g][:, slot * hd:(slot + 1) * hd].T)
        return torch.stack(q_tilde), c, v


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("out")
    parser.add_argument("--prompt-len", type=int, default=72)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--prompt-seed", type=int, default=1)
    parser.add_argument("--kv-bf16", action="store_true", help="round every cached key and value to bf16, as a bf16 KV cache does")
    args = parser.parse_args()

    model = Llama(args.model_dir, kv_bf16=args.kv_bf16)
    vocab = model.cfg["vocab_size"]
    rng = random.Random(args.prompt_seed)
    prompt = [rng.randrange(vocab) for _ in range(args.prompt_len)]

    ids, rows, greedy, margins = list(prompt), [], [], []
    for step in range(args.steps + 1):
        last = model.logits(ids)[-1]
        top = torch.topk(last, 2).values
        margins.append(float(top[0] - top[1]))
        token = int(torch.argmax(last))
        rows.append([float("%.9g" % v) for v in last.tolist()])
        greedy.append(token)
        ids.append(token)

    extra = {}
    if model.gret:
        # The paper's three forms of gated retention are one function: measured on the final sequence.
        parallel = model.logits(ids)
        for form in ("recurrent", "chunkwise"):
            model.gret_form = form
            extra[f"gret_{form}_vs_parallel_max_abs"] = float((model.logits(ids) - parallel).abs().max())
        model.gret_form = "parallel"
    with open(args.out, "w") as f:
        json.dump({
            "model": args.model_dir.rstrip("/").split("/")[-1],
            "torch_version": torch.__version__,
            "precision": "float64",
            "kv_cache": "bf16" if args.kv_bf16 else "exact",
            "prompt": prompt,
            "steps": args.steps,
            "greedy": greedy,
            "min_top2_margin": min(margins),
            **extra,
            "logits": rows,
        }, f, separators=(",", ":"))
        f.write("\n")
    print(f"{args.out}: prompt {len(prompt)} tokens, {args.steps} steps, min top-2 margin {min(margins):.4g}")


if __name__ == "__main__":
    main()
