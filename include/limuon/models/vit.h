// Vision Transformer (Dosovitskiy et al. 2021): patch embedding (a strided convolution), class
// token, learned position embedding, pre-norm blocks, classification head on the class token.
// Parameter names after timm's layout (patch_embed, cls_token, pos_embed, blocks.N.{norm1, qkv,
// proj, norm2, fc1, fc2}, norm, head); vit_to_hf / vit_from_hf map them to Hugging Face's.
#pragma once

#include "limuon/models/attention.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <string>
#include <utility>
#include <vector>

namespace limuon::models {

struct ViTConfig {
  std::string name = "vit-tiny";
  int64_t image_size = 28, channels = 1, patch = 4, classes = 10;
  int64_t dim = 192, depth = 12, heads = 3, mlp_ratio = 4;
  double dropout = 0.0;
  double ln_eps = 1e-6;  // timm's ViT LayerNorm eps
  Attention attention = Attention::sdpa;  // attention kernel (attention.h)
};

// vit-test (2×32, tests), vit-mini (128/4/4, CPU studies), vit-tiny (192/12/3), vit-small (384/12/6), vit-base (768/12/12);
// image size, channels, classes and patch are set from the data (patch 4 suits 28×28 and 32×32).
ViTConfig vit_config(const std::string& name, int64_t image_size, int64_t channels, int64_t classes, int64_t patch = 4);
std::vector<std::string> vit_config_names();

struct ViTBlockImpl : torch::nn::Module {
  explicit ViTBlockImpl(const ViTConfig& c);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  torch::nn::Dropout drop{nullptr};  // its p is also the attention dropout (passed to sdpa's kernel)
  int64_t heads;
  Attention attention;
};
TORCH_MODULE(ViTBlock);

struct ViTImpl : torch::nn::Module {
  explicit ViTImpl(ViTConfig c);
  at::Tensor forward(const at::Tensor& images);  // [B, C, H, W] float → logits [B, classes]
  at::Tensor loss(const at::Tensor& images, const at::Tensor& labels);
  ViTConfig config;
  torch::nn::Conv2d patch_embed{nullptr};
  at::Tensor cls_token, pos_embed;
  std::vector<ViTBlock> blocks;
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(ViT);

// Hugging Face transformers' ViTForImageClassification computes the same function when its
// ViTConfig says: hidden_size = dim, num_hidden_layers = depth, num_attention_heads = heads,
// intermediate_size = mlp_ratio·dim, hidden_act = "gelu" (exact erf GELU, as at::gelu),
// layer_norm_eps = ln_eps (1e-6 here; HF's default is 1e-12), qkv_bias = true, image_size,
// patch_size = patch, num_channels = channels, num_labels = classes, dropouts 0 for evaluation.
// Tensors under the names save_pretrained writes (transformers 4.x and 5.x alike), ours → HF:
//   patch_embed.{weight,bias}   → vit.embeddings.patch_embeddings.projection.{weight,bias}
//   cls_token, pos_embed        → vit.embeddings.cls_token, vit.embeddings.position_embeddings
//   blocks.N.norm1 / norm2      → vit.encoder.layer.N.layernorm_before / layernorm_after
//   blocks.N.qkv [3·dim, dim]   → vit.encoder.layer.N.attention.attention.{query,key,value} [dim, dim]
//                                 (rows 0..dim-1 are q, then k, then v; heads are contiguous
//                                 blocks of dim/heads rows in each, as in HF; biases likewise)
//   blocks.N.proj               → vit.encoder.layer.N.attention.output.dense
//   blocks.N.fc1 / fc2          → vit.encoder.layer.N.intermediate.dense / output.dense
//   norm, head                  → vit.layernorm, classifier
// Linear weights are [out, in] on both sides: no transposes.
std::vector<std::pair<std::string, at::Tensor>> vit_to_hf(ViTImpl& model);
// import: the names above (every one exactly once, shapes checked, floating point) or, for a file
// written by `limuon train --task image` (model.safetensors), our own parameter names; not a mix.
// HF's pooler (vit.pooler.*: ViTModel checkpoints carry it, the classifier never uses it) is
// skipped. Everything is checked before anything is copied; errors name the tensor.
void vit_from_hf(ViTImpl& model, const std::vector<std::pair<std::string, at::Tensor>>& tensors);

}  // namespace limuon::models
