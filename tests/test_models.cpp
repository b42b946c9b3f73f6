// GPT-2 and ViT against independent float64 forward passes (reference/make_model_reference.py),
// the Hugging Face weight mapping in both directions, and its errors.
#include "limuon/hybrid.h"
#include "limuon/models/gpt2.h"
#include "limuon/models/vit.h"
#include "test_support.h"

#include <gtest/gtest.h>

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
  GPT2 model(gpt2_config("gpt2-tiny"));
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

TEST(Models, VitMatchesIndependentForwardPass) {
  auto cfg = vit_config("vit-test", 8, 1, 3, 4);
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
  EXPECT_THROW(vit_config("vit-test", 28, 1, 10, 5), std::invalid_argument);
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
