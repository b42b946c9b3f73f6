// Vision Transformer (Dosovitskiy et al. 2021): patch embedding (a strided convolution), class
// token, learned position embedding, pre-norm blocks, classification head on the class token.
// Parameter names follow timm (patch_embed.proj, cls_token, pos_embed, blocks.N..., norm, head).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <string>
#include <vector>

namespace limuon::models {

struct ViTConfig {
  std::string name = "vit-tiny";
  int64_t image_size = 28, channels = 1, patch = 4, classes = 10;
  int64_t dim = 192, depth = 12, heads = 3, mlp_ratio = 4;
  double dropout = 0.0;
  double ln_eps = 1e-6;  // timm's ViT LayerNorm eps
};

// vit-test (2×32, tests), vit-tiny (192/12/3), vit-small (384/12/6), vit-base (768/12/12);
// image size, channels, classes and patch are set from the data (patch 4 suits 28×28 and 32×32).
ViTConfig vit_config(const std::string& name, int64_t image_size, int64_t channels, int64_t classes, int64_t patch = 4);
std::vector<std::string> vit_config_names();

struct ViTBlockImpl : torch::nn::Module {
  explicit ViTBlockImpl(const ViTConfig& c);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  torch::nn::Dropout drop{nullptr};
  int64_t heads;
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

}  // namespace limuon::models
