#!/usr/bin/env python3
"""Independent float64 forward passes of GPT-2 (Hugging Face layout, Conv1D weights [in, out]) and
ViT, written from the published math with plain tensor ops (manual LayerNorm, tanh-GELU, softmax
attention, patches by reshaping): no torch.nn modules. Writes random weights, inputs and the
expected logits/loss to model_reference.txt for tests/test_models.cpp.

Run: .venv/bin/python tests/reference/make_model_reference.py
"""
import math
import os

import torch

torch.set_default_dtype(torch.float64)
g = torch.Generator().manual_seed(1234)


def rnd(*shape, scale=0.2):
    return torch.randn(*shape, generator=g) * scale


def layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def attention(q, k, v, causal):
    hd = q.shape[-1]
    att = q @ k.transpose(-2, -1) / math.sqrt(hd)
    if causal:
        T = att.shape[-1]
        att = att.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    att = torch.exp(att - att.max(-1, keepdim=True).values)
    return (att / att.sum(-1, keepdim=True)) @ v


def split_heads(t, H):
    B, T, C = t.shape
    return t.reshape(B, T, H, C // H).transpose(1, 2)


def merge_heads(t):
    B, H, T, hd = t.shape
    return t.transpose(1, 2).reshape(B, T, H * hd)


# gpt2-tiny: vocab 257, context 64, width 32, 2 layers, 2 heads
V, CTX, C, L, H = 257, 64, 32, 2, 2
W = {"transformer.wte.weight": rnd(V, C), "transformer.wpe.weight": rnd(CTX, C)}
for l in range(L):
    p = f"transformer.h.{l}."
    W[p + "ln_1.weight"] = 1 + rnd(C, scale=0.1)
    W[p + "ln_1.bias"] = rnd(C, scale=0.1)
    W[p + "attn.c_attn.weight"] = rnd(C, 3 * C)  # Conv1D: [in, out]
    W[p + "attn.c_attn.bias"] = rnd(3 * C, scale=0.1)
    W[p + "attn.c_proj.weight"] = rnd(C, C)
    W[p + "attn.c_proj.bias"] = rnd(C, scale=0.1)
    W[p + "ln_2.weight"] = 1 + rnd(C, scale=0.1)
    W[p + "ln_2.bias"] = rnd(C, scale=0.1)
    W[p + "mlp.c_fc.weight"] = rnd(C, 4 * C)
    W[p + "mlp.c_fc.bias"] = rnd(4 * C, scale=0.1)
    W[p + "mlp.c_proj.weight"] = rnd(4 * C, C)
    W[p + "mlp.c_proj.bias"] = rnd(C, scale=0.1)
W["transformer.ln_f.weight"] = 1 + rnd(C, scale=0.1)
W["transformer.ln_f.bias"] = rnd(C, scale=0.1)

idx = torch.randint(0, V, (2, 11), generator=g)
tgt = torch.randint(0, V, (2, 11), generator=g)
x = W["transformer.wte.weight"][idx] + W["transformer.wpe.weight"][: idx.shape[1]]
for l in range(L):
    p = f"transformer.h.{l}."
    h = layernorm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], 1e-5)
    qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
    q, k, v = (split_heads(t, H) for t in qkv.split(C, -1))
    x = x + merge_heads(attention(q, k, v, True)) @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
    h = layernorm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], 1e-5)
    x = x + gelu_tanh(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"]) @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
x = layernorm(x, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], 1e-5)
gpt_logits = x @ W["transformer.wte.weight"].T
logp = gpt_logits - torch.logsumexp(gpt_logits, -1, keepdim=True)
gpt_loss = -logp.gather(-1, tgt.unsqueeze(-1)).mean()

# vit-test on 1×8×8 images, patch 4: width 32, 2 blocks, 2 heads, 3 classes
D, P, IMG, NC, VH = 32, 4, 8, 3, 2
VW = {"patch_embed.weight": rnd(D, 1, P, P), "patch_embed.bias": rnd(D, scale=0.1),
      "cls_token": rnd(1, 1, D), "pos_embed": rnd(1, (IMG // P) ** 2 + 1, D),
      "norm.weight": 1 + rnd(D, scale=0.1), "norm.bias": rnd(D, scale=0.1),
      "head.weight": rnd(NC, D), "head.bias": rnd(NC, scale=0.1)}
for i in range(2):
    p = f"blocks.{i}."
    VW[p + "norm1.weight"] = 1 + rnd(D, scale=0.1)
    VW[p + "norm1.bias"] = rnd(D, scale=0.1)
    VW[p + "qkv.weight"] = rnd(3 * D, D)  # nn.Linear layout [out, in]
    VW[p + "qkv.bias"] = rnd(3 * D, scale=0.1)
    VW[p + "proj.weight"] = rnd(D, D)
    VW[p + "proj.bias"] = rnd(D, scale=0.1)
    VW[p + "norm2.weight"] = 1 + rnd(D, scale=0.1)
    VW[p + "norm2.bias"] = rnd(D, scale=0.1)
    VW[p + "fc1.weight"] = rnd(4 * D, D)
    VW[p + "fc1.bias"] = rnd(4 * D, scale=0.1)
    VW[p + "fc2.weight"] = rnd(D, 4 * D)
    VW[p + "fc2.bias"] = rnd(D, scale=0.1)
imgs = torch.randn(3, 1, IMG, IMG, generator=g)
labels = torch.tensor([0, 2, 1])
B = imgs.shape[0]
# patches in row-major patch order, each flattened as (channel, row, col) to match the conv weight
patches = imgs.reshape(B, 1, IMG // P, P, IMG // P, P).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, P * P)
x = patches @ VW["patch_embed.weight"].reshape(D, -1).T + VW["patch_embed.bias"]
x = torch.cat([VW["cls_token"].expand(B, 1, D), x], 1) + VW["pos_embed"]
for i in range(2):
    p = f"blocks.{i}."
    h = layernorm(x, VW[p + "norm1.weight"], VW[p + "norm1.bias"], 1e-6)
    qkv = h @ VW[p + "qkv.weight"].T + VW[p + "qkv.bias"]
    q, k, v = (split_heads(t, VH) for t in qkv.split(D, -1))
    x = x + merge_heads(attention(q, k, v, False)) @ VW[p + "proj.weight"].T + VW[p + "proj.bias"]
    h = layernorm(x, VW[p + "norm2.weight"], VW[p + "norm2.bias"], 1e-6)
    x = x + gelu_erf(h @ VW[p + "fc1.weight"].T + VW[p + "fc1.bias"]) @ VW[p + "fc2.weight"].T + VW[p + "fc2.bias"]
x = layernorm(x, VW["norm.weight"], VW["norm.bias"], 1e-6)
vit_logits = x[:, 0] @ VW["head.weight"].T + VW["head.bias"]
vit_loss = -(vit_logits - torch.logsumexp(vit_logits, -1, keepdim=True)).gather(-1, labels.unsqueeze(-1)).mean()


def fmt(key, t):
    t = t.to(torch.float64)
    return f"tensor {key} {t.dim()} " + " ".join(str(d) for d in t.shape) + " " + " ".join(repr(float(v)) for v in t.reshape(-1).tolist())


lines = ["# Independent GPT-2 / ViT forward references; generated by make_model_reference.py. Do not edit."]
lines += [fmt("gpt2/" + k, v) for k, v in W.items()]
lines += [fmt("gpt2_in/idx", idx), fmt("gpt2_in/tgt", tgt), fmt("gpt2_out/logits", gpt_logits), fmt("gpt2_out/loss", gpt_loss.reshape(1))]
lines += [fmt("vit/" + k, v) for k, v in VW.items()]
lines += [fmt("vit_in/images", imgs), fmt("vit_in/labels", labels), fmt("vit_out/logits", vit_logits), fmt("vit_out/loss", vit_loss.reshape(1))]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_reference.txt")
open(out, "w").write("\n".join(lines) + "\n")
print("wrote", out)
