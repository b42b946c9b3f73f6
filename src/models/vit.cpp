// Vision Transformer forward pass (see vit.h).
#include "limuon/models/vit.h"

#include <torch/nn/functional.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>

namespace limuon::models {

namespace F = torch::nn::functional;

ViTConfig vit_config(const std::string& name, int64_t image_size, int64_t channels, int64_t classes, int64_t patch) {
  ViTConfig c;
  c.name = name;
  c.image_size = image_size, c.channels = channels, c.classes = classes, c.patch = patch;
  if (name == "vit-test") c.dim = 32, c.depth = 2, c.heads = 2;
  // vit-mini: our own size, small enough for several epochs of Fashion-MNIST per run on 2 CPU cores
  // (issue 19's vision study); not a published configuration.
  else if (name == "vit-mini") c.dim = 128, c.depth = 4, c.heads = 4;
  else if (name == "vit-tiny") c.dim = 192, c.depth = 12, c.heads = 3;   // ViT-Ti (Touvron et al. 2021)
  else if (name == "vit-small") c.dim = 384, c.depth = 12, c.heads = 6;  // ViT-S
  else if (name == "vit-base") c.dim = 768, c.depth = 12, c.heads = 12;  // ViT-B
  else {
    std::string valid;
    for (const auto& n : vit_config_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw std::invalid_argument("model: unknown ViT config '" + name + "' (valid: " + valid + ")");
  }
  if (patch < 1 || image_size % patch != 0)
    throw std::invalid_argument("model: patch size " + std::to_string(patch) + " must divide the image size " +
                                std::to_string(image_size));
  return c;
}

std::vector<std::string> vit_config_names() { return {"vit-test", "vit-mini", "vit-tiny", "vit-small", "vit-base"}; }

ViTBlockImpl::ViTBlockImpl(const ViTConfig& c) : heads(c.heads), attention(c.attention) {
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
  at::Tensor q = qkv_t[0], k = qkv_t[1], v = qkv_t[2];
  at::Tensor y;  // [B, H, N, hd]
  if (attention == Attention::sdpa) {
    y = at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, is_training() ? drop->options.p() : 0.0);
  } else {
    at::Tensor att = at::softmax(at::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(hd))), -1);  // [B, H, N, N]
    y = at::matmul(drop->forward(att), v);
  }
  at::Tensor h = x + drop->forward(proj->forward(y.transpose(1, 2).reshape({B, N, C})));
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

namespace {
const char* const kQkvParts[3] = {"query", "key", "value"};

// (our name, HF name) of every tensor but the fused qkv, which HF keeps as three (kQkvParts).
std::vector<std::pair<std::string, std::string>> hf_names(const ViTConfig& c) {
  std::vector<std::pair<std::string, std::string>> m = {
      {"patch_embed.weight", "vit.embeddings.patch_embeddings.projection.weight"},
      {"patch_embed.bias", "vit.embeddings.patch_embeddings.projection.bias"},
      {"cls_token", "vit.embeddings.cls_token"},
      {"pos_embed", "vit.embeddings.position_embeddings"},
  };
  for (const std::string wb : {"weight", "bias"}) {
    for (int64_t i = 0; i < c.depth; ++i) {
      const std::string o = "blocks." + std::to_string(i) + ".", h = "vit.encoder.layer." + std::to_string(i) + ".";
      m.emplace_back(o + "norm1." + wb, h + "layernorm_before." + wb);
      m.emplace_back(o + "proj." + wb, h + "attention.output.dense." + wb);
      m.emplace_back(o + "norm2." + wb, h + "layernorm_after." + wb);
      m.emplace_back(o + "fc1." + wb, h + "intermediate.dense." + wb);
      m.emplace_back(o + "fc2." + wb, h + "output.dense." + wb);
    }
    m.emplace_back("norm." + wb, "vit.layernorm." + wb);
    m.emplace_back("head." + wb, "classifier." + wb);
  }
  return m;
}

// "blocks.3.qkv.weight" → ("vit.encoder.layer.3.attention.attention.", ".weight"), or false.
bool qkv_name(const std::string& ours, std::string& hf_prefix, std::string& suffix) {
  const auto dot = ours.find('.', 7);
  if (ours.rfind("blocks.", 0) != 0 || dot == std::string::npos || ours.compare(dot, 5, ".qkv.") != 0) return false;
  hf_prefix = "vit.encoder.layer." + ours.substr(7, dot - 7) + ".attention.attention.";
  suffix = ours.substr(dot + 4);
  return true;
}
}  // namespace

std::vector<std::pair<std::string, at::Tensor>> vit_to_hf(ViTImpl& model) {
  std::map<std::string, std::string> to_hf;
  for (auto& [ours, hf] : hf_names(model.config)) to_hf.emplace(ours, hf);
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : model.named_parameters()) {
    const at::Tensor t = p.value().detach();
    std::string prefix, suffix;
    if (qkv_name(p.key(), prefix, suffix)) {
      auto qkv = t.chunk(3, 0);  // [3·dim, ...] → q, k, v
      for (int j = 0; j < 3; ++j) out.emplace_back(prefix + kQkvParts[j] + suffix, qkv[j].contiguous());
    } else {
      out.emplace_back(to_hf.at(p.key()), t.contiguous());
    }
  }
  return out;
}

void vit_from_hf(ViTImpl& model, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  const std::string who = "ViT model '" + model.config.name + "'";
  // File name → (our name, slot): slot 0..2 picks q/k/v rows of a fused qkv, 3 is the whole tensor.
  std::map<std::string, std::pair<std::string, int>> from_file;
  std::map<std::pair<std::string, int>, std::string> hf_of;  // for messages
  for (auto& [ours, hf] : hf_names(model.config)) {
    from_file[hf] = {ours, 3};
    hf_of[{ours, 3}] = hf;
  }
  auto params = model.named_parameters();
  for (const auto& p : params) {
    std::string prefix, suffix;
    if (!qkv_name(p.key(), prefix, suffix)) continue;
    for (int j = 0; j < 3; ++j) {
      from_file[prefix + kQkvParts[j] + suffix] = {p.key(), j};
      hf_of[{p.key(), j}] = prefix + kQkvParts[j] + suffix;
    }
  }
  bool hf_names_seen = false, own_names_seen = false;
  std::map<std::pair<std::string, int>, at::Tensor> got;
  for (const auto& [name, t] : tensors) {
    if (name.rfind("vit.pooler.", 0) == 0) continue;  // ViTModel's pooler: unused by the classifier
    std::pair<std::string, int> slot;
    if (auto it = from_file.find(name); it != from_file.end()) {
      slot = it->second;
      hf_names_seen = true;
    } else if (params.find(name) != nullptr) {
      slot = {name, 3};
      own_names_seen = true;
    } else {
      throw std::runtime_error("weights: unexpected tensor '" + name + "' for " + who);
    }
    if (!got.emplace(slot, t).second) throw std::runtime_error("weights: tensor '" + name + "' appears twice");
  }
  if (hf_names_seen && own_names_seen)
    throw std::runtime_error("weights: the file mixes Hugging Face names (vit.*, classifier.*) with limuon's own (blocks.*, head.*)");
  // Messages use the file's naming; an empty file is reported in HF names.
  auto file_name = [&](const std::pair<std::string, int>& slot) { return own_names_seen ? slot.first : hf_of.at(slot); };
  auto take = [&](const std::pair<std::string, int>& slot, at::IntArrayRef shape) {
    auto it = got.find(slot);
    if (it == got.end()) throw std::runtime_error("weights: missing tensor '" + file_name(slot) + "' for " + who);
    const at::Tensor& t = it->second;
    if (t.sizes() != shape) {
      std::ostringstream os;
      os << "weights: tensor '" << file_name(slot) << "' has shape " << t.sizes() << ", " << who << " expects " << shape;
      throw std::runtime_error(os.str());
    }
    if (!at::isFloatingType(t.scalar_type()))
      throw std::runtime_error("weights: tensor '" + file_name(slot) + "' is not floating point");
    return t;
  };
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;
  for (const auto& p : params) {
    const at::Tensor& dst = p.value();
    std::string prefix, suffix;
    if (hf_names_seen && qkv_name(p.key(), prefix, suffix)) {
      std::vector<at::Tensor> parts;
      for (int j = 0; j < 3; ++j) parts.push_back(take({p.key(), j}, dst.chunk(3, 0)[j].sizes()));
      copies.emplace_back(dst, at::cat(parts, 0));
    } else {
      copies.emplace_back(dst, take({p.key(), 3}, dst.sizes()));
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
}

}  // namespace limuon::models
