// Vision Transformer forward pass (see vit.h).
#include "limuon/models/vit.h"

#include <torch/nn/functional.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cmath>
#include <stdexcept>

namespace limuon::models {

namespace F = torch::nn::functional;

ViTConfig vit_config(const std::string& name, int64_t image_size, int64_t channels, int64_t classes, int64_t patch) {
  ViTConfig c;
  c.name = name;
  c.image_size = image_size, c.channels = channels, c.classes = classes, c.patch = patch;
  if (name == "vit-test") c.dim = 32, c.depth = 2, c.heads = 2;
  else if (name == "vit-tiny") c.dim = 192, c.depth = 12, c.heads = 3;   // ViT-Ti (Touvron et al. 2021)
  else if (name == "vit-small") c.dim = 384, c.depth = 12, c.heads = 6;  // ViT-S
  else if (name == "vit-base") c.dim = 768, c.depth = 12, c.heads = 12;  // ViT-B
  else throw std::invalid_argument("model: unknown ViT config '" + name + "' (valid: vit-test, vit-tiny, vit-small, vit-base)");
  if (patch < 1 || image_size % patch != 0)
    throw std::invalid_argument("model: patch size " + std::to_string(patch) + " must divide the image size " +
                                std::to_string(image_size));
  return c;
}

std::vector<std::string> vit_config_names() { return {"vit-test", "vit-tiny", "vit-small", "vit-base"}; }

ViTBlockImpl::ViTBlockImpl(const ViTConfig& c) : heads(c.heads) {
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.dim}).eps(c.ln_eps)));
  qkv = register_module("qkv", torch::nn::Linear(c.dim, 3 * c.dim));
  proj = register_module("proj", torch::nn::Linear(c.dim, c.dim));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.dim}).eps(c.ln_eps)));
  fc1 = register_module("fc1", torch::nn::Linear(c.dim, c.mlp_ratio * c.dim));
  fc2 = register_module("fc2", torch::nn::Linear(c.mlp_ratio * c.dim, c.dim));
  drop = register_module("drop", torch::nn::Dropout(c.dropout));
}

at::Tensor ViTBlockImpl::forward(const at::Tensor& x) {
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2), hd = C / heads;
  at::Tensor qkv_t = qkv->forward(norm1->forward(x)).view({B, N, 3, heads, hd}).permute({2, 0, 3, 1, 4});  // [3, B, H, N, hd]
  at::Tensor att = at::softmax(at::matmul(qkv_t[0], qkv_t[1].transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(hd))), -1);
  at::Tensor y = at::matmul(drop->forward(att), qkv_t[2]).transpose(1, 2).reshape({B, N, C});
  at::Tensor h = x + drop->forward(proj->forward(y));
  return h + drop->forward(fc2->forward(at::gelu(fc1->forward(norm2->forward(h)))));
}

ViTImpl::ViTImpl(ViTConfig c) : config(std::move(c)) {
  if (config.dim % config.heads != 0) throw std::invalid_argument("ViT: dim must be divisible by heads");
  const int64_t n = (config.image_size / config.patch) * (config.image_size / config.patch);
  patch_embed = register_module(
      "patch_embed", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.channels, config.dim, config.patch).stride(config.patch)));
  cls_token = register_parameter("cls_token", at::zeros({1, 1, config.dim}));
  pos_embed = register_parameter("pos_embed", at::randn({1, n + 1, config.dim}) * 0.02);
  torch::nn::ModuleList list;
  for (int64_t i = 0; i < config.depth; ++i) {
    blocks.push_back(ViTBlock(config));
    list->push_back(blocks.back());
  }
  register_module("blocks", list);
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.dim}).eps(config.ln_eps)));
  head = register_module("head", torch::nn::Linear(config.dim, config.classes));
  // timm-style init: truncated-normal-like N(0, 0.02) for linear weights, zero biases.
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    const std::string& k = p.key();
    if (k.find("norm") != std::string::npos) continue;
    if (k.size() >= 5 && k.compare(k.size() - 5, 5, ".bias") == 0) p.value().zero_();
    else if (k.find("fc") != std::string::npos || k.find("qkv") != std::string::npos || k.find("proj.weight") != std::string::npos ||
             k == "head.weight")
      p.value().normal_(0.0, 0.02);
  }
  cls_token.normal_(0.0, 1e-6);
}

at::Tensor ViTImpl::forward(const at::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != config.channels || images.size(2) != config.image_size ||
      images.size(3) != config.image_size)
    throw std::invalid_argument("ViT: expected images [B, " + std::to_string(config.channels) + ", " +
                                std::to_string(config.image_size) + ", " + std::to_string(config.image_size) + "]");
  const int64_t B = images.size(0);
  at::Tensor x = patch_embed->forward(images).flatten(2).transpose(1, 2);  // [B, N, D]
  x = at::cat({cls_token.expand({B, 1, config.dim}), x}, 1) + pos_embed;
  for (auto& b : blocks) x = b->forward(x);
  return head->forward(norm->forward(x.select(1, 0)));
}

at::Tensor ViTImpl::loss(const at::Tensor& images, const at::Tensor& labels) {
  return F::cross_entropy(forward(images), labels);
}

}  // namespace limuon::models
