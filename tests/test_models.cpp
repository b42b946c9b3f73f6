// GPT-2 and ViT against independent float64 forward passes (reference/make_model_reference.py)
// under both attention kernels, sdpa against math, the Hugging Face weight mappings in both
// directions, and their errors.
#include "limuon/optim/hybrid.h"
#include "limuon/models/gpt2.h"
#include "limuon/models/vit.h"
#include "test_support.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

using namespace limuon;
using namespace limuon::models;

namespace {
const std::map<std::string, torch::Tensor>& model_ref() {
  static const auto m = test::read_tensor_file(std::string(LIMUON_REFERENCE_DIR) + "/model_reference.txt");
  return m;
}
std::vector<std::pair<std::string, at::Tensor>> with_prefix(const std::string& prefix) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [k, v] : model_ref())
    if (k.rfind(prefix, 0) == 0) out.emplace_back(k.substr(prefix.size()), v);
  return out;
}
}  // namespace

TEST(Models, Gpt2MatchesIndependentForwardPass) {
  for (Attention attention : {Attention::sdpa, Attention::math}) {
    SCOPED_TRACE(attention_name(attention));
    auto cfg = gpt2_config("gpt2-tiny");
    cfg.attention = attention;
    GPT2 model(cfg);
    model->to(torch::kDouble);
    gpt2_from_hf(*model, with_prefix("gpt2/"));
    model->eval();
    auto idx = model_ref().at("gpt2_in/idx").to(torch::kLong);
    auto tgt = model_ref().at("gpt2_in/tgt").to(torch::kLong);
    auto logits = model->forward(idx);
    EXPECT_LT(test::rel_diff(logits, model_ref().at("gpt2_out/logits")), 1e-12);
    EXPECT_NEAR(model->loss(idx, tgt).item<double>(), model_ref().at("gpt2_out/loss").item<double>(), 1e-12);
    // fp32 agrees to fp32 rounding
    model->to(torch::kFloat);
    EXPECT_LT(test::rel_diff(model->forward(idx), model_ref().at("gpt2_out/logits")), 1e-4);
  }
}

TEST(Models, Gpt2IsCausal) {
  torch::manual_seed(0);
  GPT2 model(gpt2_config("gpt2-tiny"));
  model->eval();
  auto a = torch::randint(0, 257, {1, 12});
  auto b = a.clone();
  b[0][8] = (b[0][8].item<int64_t>() + 1) % 257;  // change a later token
  auto la = model->forward(a), lb = model->forward(b);
  EXPECT_TRUE(torch::allclose(la.narrow(1, 0, 8), lb.narrow(1, 0, 8)));
  EXPECT_FALSE(torch::allclose(la.narrow(1, 8, 1), lb.narrow(1, 8, 1)));
}

TEST(Models, Gpt2HfExportRoundTripsAndConv1DIsTransposed) {
  torch::manual_seed(1);
  GPT2 a(gpt2_config("gpt2-tiny")), b(gpt2_config("gpt2-tiny"));
  auto hf = gpt2_to_hf(*a);
  bool saw_conv = false;
  for (const auto& [k, v] : hf) {
    EXPECT_EQ(k.rfind("transformer.", 0), 0u) << k;
    EXPECT_NE(k, "lm_head.weight");
    if (k == "transformer.h.0.attn.c_attn.weight") {
      EXPECT_EQ(v.sizes(), (std::vector<int64_t>{32, 96}));  // Conv1D [in, out]
      saw_conv = true;
    }
  }
  EXPECT_TRUE(saw_conv);
  gpt2_from_hf(*b, hf);
  auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));
  // unprefixed names, mask buffers and a tied lm_head are accepted too
  std::vector<std::pair<std::string, at::Tensor>> plain;
  for (const auto& [k, v] : hf) plain.emplace_back(k.substr(12), v);
  plain.emplace_back("h.0.attn.bias", torch::ones({1, 1, 64, 64}));
  plain.emplace_back("lm_head.weight", a->wte->weight.detach().clone());
  GPT2 c(gpt2_config("gpt2-tiny"));
  gpt2_from_hf(*c, plain);
  EXPECT_TRUE(torch::equal(c->wte->weight, a->wte->weight));
}

TEST(Models, Gpt2ImportErrorsNameTheTensorAndChangeNothing) {
  torch::manual_seed(2);
  GPT2 a(gpt2_config("gpt2-tiny"));
  auto good = gpt2_to_hf(*a);
  auto expect_error = [&](std::vector<std::pair<std::string, at::Tensor>> w, const std::string& needle) {
    GPT2 m(gpt2_config("gpt2-tiny"));
    auto before = m->wte->weight.detach().clone();
    try {
      gpt2_from_hf(*m, w);
      ADD_FAILURE() << "accepted bad weights, expected '" << needle << "'";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_TRUE(torch::equal(m->wte->weight, before)) << "a failed import modified the model";
  };
  auto missing = good;
  missing.erase(missing.begin() + 3);
  expect_error(missing, "missing tensor");
  auto wrong = good;
  wrong[5].second = torch::zeros({7, 7});
  expect_error(wrong, "has shape");
  auto extra = good;
  extra.emplace_back("transformer.h.9.mlp.c_fc.weight", torch::zeros({2}));
  expect_error(extra, "unexpected tensor");
  auto untied = good;
  untied.emplace_back("lm_head.weight", torch::zeros({257, 32}));
  expect_error(untied, "tied");
  // a DistilGPT2 checkpoint into a gpt2-tiny model
  GPT2 small(gpt2_config("gpt2-tiny"));
  EXPECT_THROW(gpt2_config("gpt3"), std::invalid_argument);
}

namespace {
void check_vit_reference(const ViTConfig& cfg) {
  ViT model(cfg);
  model->to(torch::kDouble);
  {
    torch::NoGradGuard g;
    auto ref = with_prefix("vit/");
    std::map<std::string, at::Tensor> byname(ref.begin(), ref.end());
    auto params = model->named_parameters();
    ASSERT_EQ(params.size(), byname.size());
    for (auto& p : params) p.value().copy_(byname.at(p.key()));
  }
  model->eval();
  auto logits = model->forward(model_ref().at("vit_in/images"));
  EXPECT_LT(test::rel_diff(logits, model_ref().at("vit_out/logits")), 1e-12);
  EXPECT_NEAR(model->loss(model_ref().at("vit_in/images"), model_ref().at("vit_in/labels").to(torch::kLong)).item<double>(),
              model_ref().at("vit_out/loss").item<double>(), 1e-12);
  EXPECT_THROW(model->forward(torch::zeros({1, 3, 8, 8}, torch::kDouble)), std::invalid_argument);
}
}  // namespace

TEST(Models, VitMatchesIndependentForwardPass) {
  for (Attention attention : {Attention::sdpa, Attention::math}) {
    SCOPED_TRACE(attention_name(attention));
    auto cfg = vit_config("vit-test", 8, 1, 3, 4);
    cfg.attention = attention;
    check_vit_reference(cfg);
  }
  EXPECT_THROW(vit_config("vit-test", 28, 1, 10, 5), std::invalid_argument);
}

TEST(Models, VitNamedConfigsHaveTheirSizes) {
  // Parameter counts from the architecture (pre-norm blocks with a 4x MLP, class token, learned
  // positions, patch projection, head), written out here rather than read from the model.
  struct Named { const char* name; int64_t dim, depth, heads; };
  for (const Named& n : {Named{"vit-test", 32, 2, 2}, Named{"vit-mini", 128, 4, 4}, Named{"vit-tiny", 192, 12, 3}}) {
    SCOPED_TRACE(n.name);
    const int64_t patch = 7, tokens = (28 / patch) * (28 / patch) + 1, d = n.dim;
    auto cfg = vit_config(n.name, 28, 1, 10, patch);
    EXPECT_EQ(cfg.dim, n.dim);
    EXPECT_EQ(cfg.depth, n.depth);
    EXPECT_EQ(cfg.heads, n.heads);
    const int64_t block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d);
    const int64_t expected = (patch * patch * d + d) + d + tokens * d + n.depth * block + 2 * d + (10 * d + 10);
    ViT vit(cfg);
    int64_t count = 0;
    for (const auto& p : vit->parameters()) count += p.numel();
    EXPECT_EQ(count, expected);
  }
  EXPECT_THROW(vit_config("vit-huge", 28, 1, 10), std::invalid_argument);
}

TEST(Models, RoutingOfRealModels) {
  GPT2 gpt(gpt2_config("gpt2-tiny"));
  int matrices = 0;
  for (const auto& r : route_module(*gpt)) {
    const bool hidden = r.name.find(".weight") != std::string::npos && r.name.find("ln_") == std::string::npos &&
                        r.name.find("wte") == std::string::npos && r.name.find("wpe") == std::string::npos;
    EXPECT_EQ(r.route == Route::matrix, hidden) << r.name;
    matrices += r.route == Route::matrix;
  }
  EXPECT_EQ(matrices, 8);  // 4 per block
  ViT vit(vit_config("vit-test", 28, 1, 10));
  for (const auto& r : route_module(*vit)) {
    if (r.name == "cls_token" || r.name == "pos_embed" || r.name == "head.weight") EXPECT_EQ(r.route, Route::adamw) << r.name;
    if (r.name == "patch_embed.weight" || r.name == "blocks.0.qkv.weight") EXPECT_EQ(r.route, Route::matrix) << r.name;
  }
}

namespace {
// Weights far from initialisation (N(0, 0.3), LayerNorm gains around 1), so attention is peaked
// and a wrong mask, scale or softmax axis would show.
void scramble(torch::nn::Module& m, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard g;
  for (auto& p : m.named_parameters())
    if (p.key().find("norm") != std::string::npos || p.key().find("ln_") != std::string::npos) p.value().uniform_(0.5, 1.5);
    else p.value().normal_(0.0, 0.3);
}

// Every Dropout module of `m` set to p = 0 (sdpa reads p from them too), so train mode is deterministic.
void no_dropout_modules(torch::nn::Module& m) {
  for (auto& sub : m.modules())
    if (auto* d = sub->as<torch::nn::DropoutImpl>()) d->options.p(0.0);
}

// Logits in eval mode (dropout 0.1 configured, so this checks that neither path applies it), then
// the loss's gradient in train mode with dropout off, under sdpa and math on the same weights.
template <typename Model, typename SetAttention, typename NoDropout, typename Loss>
void expect_paths_agree(const char* what, Model& model, SetAttention set, NoDropout no_dropout, Loss loss,
                        const torch::Tensor& input, torch::ScalarType dtype, double tol) {
  model->to(dtype);
  std::vector<torch::Tensor> out, g;
  model->eval();
  for (Attention a : {Attention::sdpa, Attention::math}) {
    set(a);
    out.push_back(model->forward(input).detach());
  }
  no_dropout();
  model->train();
  for (Attention a : {Attention::sdpa, Attention::math}) {
    set(a);
    model->zero_grad();
    loss().backward();
    std::vector<torch::Tensor> flat;
    for (auto& p : model->parameters()) flat.push_back(p.grad().flatten());
    g.push_back(torch::cat(flat));
  }
  EXPECT_GT(out[0].abs().max().item<double>(), 1.0);  // logits are not all near zero
  const double d_out = test::rel_diff(out[0], out[1]), d_grad = test::rel_diff(g[0], g[1]);
  std::printf("[ measured ] sdpa vs math, %s %s: logits %.1e, gradients %.1e (tolerance %.0e)\n", what,
              c10::toString(dtype), d_out, d_grad, tol);
  EXPECT_LT(d_out, tol);
  EXPECT_LT(d_grad, tol);
}
}  // namespace

TEST(Models, SdpaAndMathAttentionAgree) {
  for (auto [dtype, tol] : {std::pair{torch::kFloat, 1e-5}, std::pair{torch::kDouble, 1e-12}}) {
    SCOPED_TRACE(c10::toString(dtype));
    {
      auto cfg = gpt2_config("gpt2-tiny");
      cfg.dropout = 0.1;
      GPT2 model(cfg);
      scramble(*model, 7);
      torch::manual_seed(8);
      auto idx = torch::randint(0, 257, {3, 40}), tgt = torch::randint(0, 257, {3, 40});
      expect_paths_agree(
          "gpt2-tiny", model, [&](Attention a) { for (auto& b : model->h) b->attn->attention = a; },
          [&] { no_dropout_modules(*model); },
          [&] { return model->loss(idx, tgt); }, idx, dtype, tol);
    }
    {
      auto cfg = vit_config("vit-test", 28, 1, 10, 4);
      cfg.dropout = 0.1;
      ViT model(cfg);
      scramble(*model, 9);
      auto images = torch::randn({5, 1, 28, 28}, dtype), labels = torch::randint(0, 10, {5});
      expect_paths_agree(
          "vit-test", model, [&](Attention a) { for (auto& b : model->blocks) b->attention = a; },
          [&] { no_dropout_modules(*model); },
          [&] { return model->loss(images, labels); }, images, dtype, tol);
    }
  }
  EXPECT_EQ(attention_from_name("math"), Attention::math);
  EXPECT_THROW(attention_from_name("flash"), std::invalid_argument);
}

TEST(Models, VitHfExportSplitsQkvAndRoundTrips) {
  auto cfg = vit_config("vit-test", 28, 1, 10, 4);
  ViT a(cfg), b(cfg);
  scramble(*a, 3);
  auto hf = vit_to_hf(*a);
  std::map<std::string, torch::Tensor> byname(hf.begin(), hf.end());
  ASSERT_EQ(byname.size(), hf.size());
  // 4 embedding tensors, 2·(5 + 3) per block (qkv split in three), norm and classifier
  EXPECT_EQ(hf.size(), 4u + 2 * 16 + 4);
  EXPECT_TRUE(torch::equal(byname.at("vit.encoder.layer.1.attention.attention.key.weight"), a->blocks[1]->qkv->weight.narrow(0, 32, 32)));
  EXPECT_TRUE(torch::equal(byname.at("vit.encoder.layer.1.attention.attention.value.bias"), a->blocks[1]->qkv->bias.narrow(0, 64, 32)));
  EXPECT_TRUE(torch::equal(byname.at("vit.embeddings.position_embeddings"), a->pos_embed));
  EXPECT_TRUE(torch::equal(byname.at("classifier.weight"), a->head->weight));
  EXPECT_EQ(byname.at("vit.embeddings.patch_embeddings.projection.weight").sizes(), (std::vector<int64_t>{32, 1, 4, 4}));
  auto with_pooler = hf;
  with_pooler.emplace_back("vit.pooler.dense.weight", torch::zeros({32, 32}));  // ignored
  vit_from_hf(*b, with_pooler);
  auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
  a->eval(), b->eval();
  auto x = torch::randn({2, 1, 28, 28});
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
  // the names limuon train writes load as well
  ViT c(cfg);
  std::vector<std::pair<std::string, at::Tensor>> own;
  for (const auto& p : a->named_parameters()) own.emplace_back(p.key(), p.value().detach().clone());
  vit_from_hf(*c, own);
  EXPECT_TRUE(torch::equal(a->forward(x), c->forward(x)));
}

TEST(Models, VitImportErrorsNameTheTensorAndChangeNothing) {
  auto cfg = vit_config("vit-test", 28, 1, 10, 4);
  ViT a(cfg);
  auto good = vit_to_hf(*a);
  auto expect_error = [&](std::vector<std::pair<std::string, at::Tensor>> w, const std::string& needle) {
    ViT m(cfg);
    auto before = m->pos_embed.detach().clone();
    try {
      vit_from_hf(*m, w);
      ADD_FAILURE() << "accepted bad weights, expected '" << needle << "'";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_TRUE(torch::equal(m->pos_embed, before)) << "a failed import modified the model";
  };
  auto drop = [&](const std::string& name) {
    auto w = good;
    w.erase(std::find_if(w.begin(), w.end(), [&](const auto& p) { return p.first == name; }));
    return w;
  };
  expect_error(drop("vit.encoder.layer.0.attention.attention.value.weight"),
               "missing tensor 'vit.encoder.layer.0.attention.attention.value.weight'");
  auto wrong = good;
  for (auto& [k, v] : wrong)
    if (k == "vit.encoder.layer.1.attention.attention.query.weight") v = torch::zeros({96, 32});
  expect_error(wrong, "'vit.encoder.layer.1.attention.attention.query.weight' has shape [96, 32]");
  auto extra = good;
  extra.emplace_back("vit.encoder.layer.2.output.dense.bias", torch::zeros({32}));  // vit-test has 2 layers
  expect_error(extra, "unexpected tensor 'vit.encoder.layer.2.output.dense.bias'");
  auto twice = good;
  twice.push_back(good.front());
  expect_error(twice, "appears twice");
  auto mixed = drop("classifier.weight");
  mixed.emplace_back("head.weight", a->head->weight.detach());
  expect_error(mixed, "mixes");
  auto ints = good;
  for (auto& [k, v] : ints)
    if (k == "vit.layernorm.bias") v = torch::zeros({32}, torch::kLong);
  expect_error(ints, "'vit.layernorm.bias' is not floating point");
}
