// GPT-2 forward pass and Hugging Face weight mapping (see gpt2.h).
#include "limuon/models/gpt2.h"

#include <torch/nn/functional.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cmath>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

namespace limuon::models {

namespace F = torch::nn::functional;

GPT2Config gpt2_config(const std::string& name) {
  GPT2Config c;
  c.name = name;
  if (name == "gpt2-tiny") {
    c.vocab_size = 257, c.n_ctx = 64, c.n_embd = 32, c.n_layer = 2, c.n_head = 2, c.dropout = 0.0;
  } else if (name == "gpt2-byte-small") {
    c.vocab_size = 257, c.n_ctx = 256, c.n_embd = 256, c.n_layer = 4, c.n_head = 4;
  } else if (name == "gpt2-mini") {
    c.vocab_size = 50257, c.n_ctx = 256, c.n_embd = 256, c.n_layer = 4, c.n_head = 4;
  } else if (name == "distilgpt2") {
    // Sanh et al. 2019 / HF distilgpt2: GPT-2 with 6 layers.
    c.n_layer = 6;
  } else if (name == "gpt2") {
    // GPT-2 small (124M): 12 layers, width 768, 12 heads, context 1024, vocab 50257.
  } else {
    std::string valid;
    for (const auto& n : gpt2_config_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw std::invalid_argument("model: unknown GPT-2 config '" + name + "' (valid: " + valid + ")");
  }
  return c;
}

std::vector<std::string> gpt2_config_names() { return {"gpt2-tiny", "gpt2-byte-small", "gpt2-mini", "distilgpt2", "gpt2"}; }

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const GPT2Config& c)
    : n_head(c.n_head), attention(c.attention) {
  if (c.n_embd % c.n_head != 0)
    throw std::invalid_argument("GPT-2: n_embd (" + std::to_string(c.n_embd) + ") must be divisible by n_head (" +
                                std::to_string(c.n_head) + ")");
  c_attn = register_module("c_attn", torch::nn::Linear(c.n_embd, 3 * c.n_embd));
  c_proj = register_module("c_proj", torch::nn::Linear(c.n_embd, c.n_embd));
  attn_dropout = register_module("attn_dropout", torch::nn::Dropout(c.dropout));
  resid_dropout = register_module("resid_dropout", torch::nn::Dropout(c.dropout));
}

at::Tensor CausalSelfAttentionImpl::forward(const at::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), hd = C / n_head;
  auto qkv = c_attn->forward(x).split(C, 2);  // 3 × [B, T, C]
  auto heads = [&](const at::Tensor& t) { return t.view({B, T, n_head, hd}).transpose(1, 2); };  // [B, H, T, hd]
  at::Tensor q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);
  at::Tensor y;  // [B, H, T, hd]
  if (attention == Attention::sdpa) {
    // Default scale 1/√hd and a top-left-aligned causal mask (T_q = T_k here): the math below.
    y = at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, is_training() ? attn_dropout->options.p() : 0.0,
                                         /*is_causal=*/true);
  } else {
    at::Tensor att = at::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(hd)));  // [B, H, T, T]
    at::Tensor mask = at::ones({T, T}, x.options().dtype(at::kBool)).triu(1);
    att = att.masked_fill(mask, -std::numeric_limits<float>::infinity());
    att = attn_dropout->forward(at::softmax(att, -1));
    y = at::matmul(att, v);
  }
  return resid_dropout->forward(c_proj->forward(y.transpose(1, 2).contiguous().view({B, T, C})));
}

MLPImpl::MLPImpl(const GPT2Config& c) {
  c_fc = register_module("c_fc", torch::nn::Linear(c.n_embd, 4 * c.n_embd));
  c_proj = register_module("c_proj", torch::nn::Linear(4 * c.n_embd, c.n_embd));
  dropout = register_module("dropout", torch::nn::Dropout(c.dropout));
}

at::Tensor MLPImpl::forward(const at::Tensor& x) {
  // GPT-2 uses the tanh approximation of GELU ("gelu_new" in HF).
  return dropout->forward(c_proj->forward(at::gelu(c_fc->forward(x), "tanh")));
}

BlockImpl::BlockImpl(const GPT2Config& c) {
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.n_embd}).eps(c.ln_eps)));
  attn = register_module("attn", CausalSelfAttention(c));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.n_embd}).eps(c.ln_eps)));
  mlp = register_module("mlp", MLP(c));
}

at::Tensor BlockImpl::forward(const at::Tensor& x) {
  at::Tensor y = x + attn->forward(ln_1->forward(x));
  return y + mlp->forward(ln_2->forward(y));
}

GPT2Impl::GPT2Impl(GPT2Config c) : config(std::move(c)) {
  if (config.vocab_size < 1 || config.n_ctx < 1 || config.n_layer < 1 || config.n_embd < 1 || config.n_head < 1)
    throw std::invalid_argument("GPT-2 config '" + config.name + "': sizes must be positive");
  wte = register_module("wte", torch::nn::Embedding(config.vocab_size, config.n_embd));
  wpe = register_module("wpe", torch::nn::Embedding(config.n_ctx, config.n_embd));
  drop = register_module("drop", torch::nn::Dropout(config.dropout));
  torch::nn::ModuleList list;
  for (int64_t i = 0; i < config.n_layer; ++i) {
    h.push_back(Block(config));
    list->push_back(h.back());
  }
  register_module("h", list);
  ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.n_embd}).eps(config.ln_eps)));
  // GPT-2 initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by
  // 1/√(2·n_layer) (Radford et al. 2019, §2.3).
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    const std::string& n = p.key();
    if (n.size() >= 5 && n.compare(n.size() - 5, 5, ".bias") == 0) p.value().zero_();
    else if (n.find("ln_") != std::string::npos) p.value().fill_(1.0);
    else p.value().normal_(0.0, 0.02);
  }
  for (auto& b : h) {
    b->attn->c_proj->weight.normal_(0.0, 0.02 / std::sqrt(2.0 * config.n_layer));
    b->mlp->c_proj->weight.normal_(0.0, 0.02 / std::sqrt(2.0 * config.n_layer));
  }
}

at::Tensor GPT2Impl::forward(const at::Tensor& idx) {
  const int64_t T = idx.size(1);
  if (T > config.n_ctx)
    throw std::invalid_argument("GPT-2: sequence length " + std::to_string(T) + " exceeds the context " +
                                std::to_string(config.n_ctx));
  at::Tensor pos = at::arange(T, idx.options().dtype(at::kLong));
  at::Tensor x = drop->forward(wte->forward(idx) + wpe->forward(pos));
  for (auto& b : h) x = b->forward(x);
  x = ln_f->forward(x);
  return at::matmul(x, wte->weight.t());  // tied output head
}

at::Tensor GPT2Impl::loss(const at::Tensor& idx, const at::Tensor& targets) {
  at::Tensor logits = forward(idx);
  return F::cross_entropy(logits.view({-1, logits.size(-1)}), targets.reshape(-1));
}

int64_t GPT2Impl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

namespace {
// Our Linear layers store [out, in]; HF's Conv1D stores [in, out].
bool is_conv1d_weight(const std::string& n) {
  auto ends = [&](const char* s) {
    const std::string suf(s);
    return n.size() >= suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0;
  };
  return ends("attn.c_attn.weight") || ends("attn.c_proj.weight") || ends("mlp.c_fc.weight") || ends("mlp.c_proj.weight");
}
}  // namespace

std::vector<std::pair<std::string, at::Tensor>> gpt2_to_hf(GPT2Impl& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : model.named_parameters()) {
    at::Tensor t = p.value().detach();
    if (is_conv1d_weight(p.key())) t = t.t();
    out.emplace_back("transformer." + p.key(), t.contiguous());
  }
  return out;
}

void gpt2_from_hf(GPT2Impl& model, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::map<std::string, at::Tensor> byname;
  at::Tensor lm_head;
  for (const auto& [raw, t] : tensors) {
    std::string n = raw.rfind("transformer.", 0) == 0 ? raw.substr(12) : raw;
    if (n == "lm_head.weight") {
      lm_head = t;
      continue;
    }
    const auto tail = [&](const std::string& s) { return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
    if (tail(".attn.bias") || tail(".attn.masked_bias")) continue;  // causal-mask buffers, not parameters
    if (!byname.emplace(n, t).second) throw std::runtime_error("weights: tensor '" + raw + "' appears twice");
  }
  auto params = model.named_parameters();
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;
  for (const auto& p : params) {
    auto it = byname.find(p.key());
    if (it == byname.end())
      throw std::runtime_error("weights: missing tensor 'transformer." + p.key() + "' for model '" + model.config.name + "'");
    at::Tensor src = is_conv1d_weight(p.key()) ? it->second.t() : it->second;
    if (src.sizes() != p.value().sizes()) {
      std::ostringstream os;
      os << "weights: tensor 'transformer." << p.key() << "' has shape " << it->second.sizes() << ", model '"
         << model.config.name << "' expects " << (is_conv1d_weight(p.key()) ? p.value().t().sizes() : p.value().sizes());
      throw std::runtime_error(os.str());
    }
    if (!at::isFloatingType(src.scalar_type()))
      throw std::runtime_error("weights: tensor 'transformer." + p.key() + "' is not floating point");
    copies.emplace_back(p.value(), src);
    byname.erase(it);
  }
  if (!byname.empty()) throw std::runtime_error("weights: unexpected tensor '" + byname.begin()->first + "' for model '" + model.config.name + "'");
  if (lm_head.defined()) {
    const at::Tensor& wte = model.wte->weight;
    at::Tensor wte_src;
    for (const auto& c : copies)
      if (c.first.is_same(wte)) wte_src = c.second;
    if (lm_head.sizes() != wte.sizes() || !at::equal(lm_head.to(at::kFloat), wte_src.to(at::kFloat)))
      throw std::runtime_error("weights: lm_head.weight differs from wte.weight; only tied heads are supported");
  }
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
}

}  // namespace limuon::models
