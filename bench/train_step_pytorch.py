#!/usr/bin/env python3
"""The same GPT-2 and ViT as limuon's C++ models, written as ordinary PyTorch modules, timed for
one training step (forward, backward, AdamW) on random data. bench/train_suite.py runs this and
`limuon bench train-step` in the same run to compare throughput at equal threads and shapes.
"""
import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

GPT2 = {"gpt2-tiny": (257, 64, 32, 2, 2), "gpt2-byte-small": (257, 256, 256, 4, 4), "gpt2-mini": (50257, 256, 256, 4, 4),
        "distilgpt2": (50257, 1024, 768, 6, 12), "gpt2": (50257, 1024, 768, 12, 12)}
VIT = {"vit-test": (32, 2, 2), "vit-tiny": (192, 12, 3), "vit-small": (384, 12, 6), "vit-base": (768, 12, 12)}


class GptBlock(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(c, eps=1e-5), nn.LayerNorm(c, eps=1e-5)
        self.c_attn, self.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.c_fc, self.mlp_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, 2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.h)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        x = x + self.c_proj((att @ v).transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab, ctx, c, layers, heads):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, c), nn.Embedding(ctx, c)
        self.h = nn.ModuleList(GptBlock(c, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(c, eps=1e-5)

    def forward(self, idx, tgt):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), tgt.view(-1))


class VitBlock(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, N, 3, self.h, C // self.h).permute(2, 0, 3, 1, 4)
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(C // self.h)).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(B, N, C))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Vit(nn.Module):
    def __init__(self, d, depth, heads, img=28, ch=1, patch=4, classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(ch, d, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, d) * 0.02)
        self.blocks = nn.ModuleList(VitBlock(d, heads) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(d, eps=1e-6), nn.Linear(d, classes)

    def forward(self, x, y):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], 1, -1), x], 1) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        return F.cross_entropy(self.head(self.norm(x[:, 0])), y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="lm")
    ap.add_argument("--model", default="gpt2-byte-small")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads if a.threads > 0 else os.cpu_count())
    torch.manual_seed(0)
    if a.task == "lm":
        vocab = GPT2[a.model][0]
        model = Gpt(*GPT2[a.model])
        x, y = torch.randint(0, vocab, (a.batch_size, a.block_size)), torch.randint(0, vocab, (a.batch_size, a.block_size))
        units = a.batch_size * a.block_size
    else:
        model = Vit(*VIT[a.model])
        x, y = torch.randn(a.batch_size, 1, 28, 28), torch.randint(0, 10, (a.batch_size,))
        units = a.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad()
        model(x, y).backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    print(json.dumps({"bench": "train_step", "impl": "pytorch", "task": a.task, "model": a.model, "batch": a.batch_size,
                      "median_ms": ms, "units_per_s": units / (ms / 1e3), "threads": torch.get_num_threads(),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
