// GPT-2 family (Radford et al. 2019) with the Hugging Face module layout: same math (GELU tanh,
// LayerNorm eps 1e-5, learned positions, tied token embedding / output head, causal attention,
// dropout) and parameter names, so HF checkpoints load and exports load back into HF.
#pragma once

#include "limuon/models/attention.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <string>
#include <utility>
#include <vector>

namespace limuon::models {

struct GPT2Config {
  std::string name = "gpt2";
  int64_t vocab_size = 50257;
  int64_t n_ctx = 1024;
  int64_t n_embd = 768;
  int64_t n_layer = 12;
  int64_t n_head = 12;
  double dropout = 0.1;  // embedding, attention and residual dropout (HF defaults)
  double ln_eps = 1e-5;
  Attention attention = Attention::sdpa;  // causal attention kernel (attention.h)
};

// Named configs: gpt2-tiny (tests), gpt2-byte-small (byte vocabulary, 4×256, CPU),
// gpt2-mini (GPT-2 vocabulary, 4×256, context 256, CPU), distilgpt2 (6×768), gpt2 (12×768).
GPT2Config gpt2_config(const std::string& name);
std::vector<std::string> gpt2_config_names();

struct CausalSelfAttentionImpl : torch::nn::Module {
  explicit CausalSelfAttentionImpl(const GPT2Config& c);
  at::Tensor forward(const at::Tensor& x);  // [B, T, C] → [B, T, C]
  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};
  // attn_dropout: applied as a module on the math path; sdpa passes its p to the fused kernel
  torch::nn::Dropout attn_dropout{nullptr}, resid_dropout{nullptr};
  int64_t n_head;
  Attention attention;
};
TORCH_MODULE(CausalSelfAttention);

struct MLPImpl : torch::nn::Module {
  explicit MLPImpl(const GPT2Config& c);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(MLP);

struct BlockImpl : torch::nn::Module {
  explicit BlockImpl(const GPT2Config& c);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  MLP mlp{nullptr};
};
TORCH_MODULE(Block);

struct GPT2Impl : torch::nn::Module {
  explicit GPT2Impl(GPT2Config c);
  // idx [B, T] int64 → logits [B, T, vocab]
  at::Tensor forward(const at::Tensor& idx);
  // mean cross-entropy of next-token prediction
  at::Tensor loss(const at::Tensor& idx, const at::Tensor& targets);
  int64_t num_parameters() const;
  GPT2Config config;
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::Dropout drop{nullptr};
  std::vector<Block> h;
  torch::nn::LayerNorm ln_f{nullptr};
};
TORCH_MODULE(GPT2);

// Hugging Face tensors ("transformer.h.0.attn.c_attn.weight", Conv1D weights stored [in, out]).
// export: every parameter under its HF name, Conv1D weights transposed, no lm_head (tied).
std::vector<std::pair<std::string, at::Tensor>> gpt2_to_hf(GPT2Impl& model);
// import: accepts names with or without the "transformer." prefix, ignores the attention-mask
// buffers (attn.bias, attn.masked_bias), accepts lm_head.weight only if equal to wte (tied).
// Checks that every parameter is present exactly once with the right shape before copying
// anything; errors name the tensor.
void gpt2_from_hf(GPT2Impl& model, const std::vector<std::pair<std::string, at::Tensor>>& tensors);

}  // namespace limuon::models
