// Parameter routing, the hybrid optimizer's evaluation/AdamW ordering, the warm-up + cosine
// schedule, and hybrid save → load → continue with learning rates restored.
#include "limuon/optim/hybrid.h"
#include "limuon/optim/schedule.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>

using namespace limuon;

namespace {

// A miniature GPT-2-like module with Hugging Face-style names.
struct TinyLM : torch::nn::Module {
  TinyLM() {
    wte = register_module("wte", torch::nn::Embedding(11, 6));
    wpe = register_parameter("wpe", torch::randn({5, 6}) * 0.1);
    attn = register_module("attn", torch::nn::Linear(6, 18));
    proj = register_module("proj", torch::nn::Linear(6, 6));
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 3, 2)));
    ln = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({6})));
    gain = register_parameter("gain", torch::ones({1, 6}));
  }
  torch::Tensor forward(const torch::Tensor& idx) {
    auto h = wte->forward(idx) + wpe.narrow(0, 0, idx.size(1));
    auto qkv = attn->forward(h);
    h = h + proj->forward(torch::tanh(qkv.narrow(-1, 0, 6) * qkv.narrow(-1, 6, 6)));
    h = ln->forward(h) * gain;
    auto img = h.reshape({idx.size(0), 2, -1, 3});
    auto c = conv->forward(img).mean();
    return torch::matmul(h, wte->weight.t()) + c;  // tied output head
  }
  torch::nn::Embedding wte{nullptr};
  torch::Tensor wpe, gain;
  torch::nn::Linear attn{nullptr}, proj{nullptr};
  torch::nn::Conv2d conv{nullptr};
  torch::nn::LayerNorm ln{nullptr};
};

const RoutedParam& find(const std::vector<RoutedParam>& r, const std::string& name) {
  for (const auto& p : r)
    if (p.name == name) return p;
  throw std::runtime_error("no routed parameter " + name);
}

}  // namespace

TEST(Routing, SendsOnlyHiddenMatricesToTheMatrixOptimizer) {
  torch::manual_seed(0);
  TinyLM m;
  auto r = route_module(m);
  EXPECT_EQ(find(r, "wte.weight").route, Route::adamw);
  EXPECT_NE(find(r, "wte.weight").reason.find("embedding"), std::string::npos);
  EXPECT_EQ(find(r, "wpe").route, Route::adamw);
  EXPECT_EQ(find(r, "attn.weight").route, Route::matrix);
  EXPECT_EQ(find(r, "attn.bias").route, Route::adamw);
  EXPECT_EQ(find(r, "proj.weight").route, Route::matrix);
  EXPECT_EQ(find(r, "conv.weight").route, Route::matrix);  // 4-D, flattened
  EXPECT_EQ(find(r, "ln_f.weight").route, Route::adamw);
  EXPECT_EQ(find(r, "gain").route, Route::adamw);  // [1, 6]: one non-unit dim
  const std::string table = format_routing(r);
  EXPECT_NE(table.find("attn.weight"), std::string::npos);
  EXPECT_NE(table.find("3 tensors"), std::string::npos) << table;
}

TEST(Routing, TiedHeadAndOverrides) {
  auto emb = torch::randn({10, 4});
  std::vector<NamedParam> ps = {{"h.0.mlp.c_fc.weight", torch::randn({16, 4})},
                                {"tok.weight", emb},
                                {"lm_head.weight", emb},  // tied: same tensor
                                {"h.0.mlp.c_proj.weight", torch::randn({4, 16})},
                                {"h.0.mlp.c_proj.bias", torch::randn({4})}};
  auto r = route_parameters(ps);
  ASSERT_EQ(r.size(), 4u);  // the tied tensor appears once
  EXPECT_EQ(find(r, "tok.weight").route, Route::adamw);
  EXPECT_NE(find(r, "tok.weight").reason.find("tied with lm_head.weight"), std::string::npos);
  EXPECT_EQ(find(r, "h.0.mlp.c_fc.weight").route, Route::matrix);
  RoutingRules rules;
  rules.force_adamw = {"*c_proj*"};
  auto r2 = route_parameters(ps, rules);
  EXPECT_EQ(find(r2, "h.0.mlp.c_proj.weight").route, Route::adamw);
  EXPECT_EQ(find(r2, "h.0.mlp.c_fc.weight").route, Route::matrix);
  RoutingRules bad;
  bad.force_matrix = {"*bias"};
  EXPECT_THROW(route_parameters(ps, bad), std::invalid_argument);
  RoutingRules embed_to_matrix;
  embed_to_matrix.force_matrix = {"tok.weight"};
  EXPECT_EQ(find(route_parameters(ps, embed_to_matrix), "tok.weight").route, Route::matrix);
}

namespace {
struct HybridRun {
  uint64_t seed;
  TinyLM model;
  torch::Tensor idx, target;
  int evals = 0;
  std::vector<torch::Tensor> seen;  // flattened parameter vector at each evaluation
  // The comma expression seeds the generator before the model's parameters are drawn.
  explicit HybridRun(uint64_t s) : seed((torch::manual_seed(s), s)), model() {
    idx = torch::randint(0, 11, {2, 5});
    target = torch::randint(0, 11, {2, 5});
  }
  std::function<torch::Tensor()> closure(HybridOptimizer& opt, bool record = false) {
    return [this, &opt, record]() {
      opt.zero_grad();
      ++evals;
      if (record) {
        std::vector<torch::Tensor> flat;
        for (const auto& p : model.parameters()) flat.push_back(p.detach().reshape(-1).clone());
        seen.push_back(torch::cat(flat));
      }
      auto logits = model.forward(idx);
      auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, 11}), target.reshape(-1));
      loss.backward();
      return loss.detach();
    };
  }
};
}  // namespace

TEST(Hybrid, LiMuonExactStepsAdamWBetweenTheTwoEvaluations) {
  HybridRun run(1);
  HybridOptions o;
  o.method = MatrixMethod::limuon;
  o.limuon = LiMuonOptions(0.02).beta(0.2);
  HybridOptimizer opt(route_module(run.model), o);
  auto c = run.closure(opt, /*record=*/true);
  opt.step(c);
  EXPECT_EQ(run.evals, 1);
  EXPECT_EQ(opt.adamw()->state().size(), 0u) << "AdamW must not step on LiMuon's first (M_0) call";
  for (int t = 1; t < 4; ++t) opt.step(c);
  EXPECT_EQ(run.evals, 7);
  // Every AdamW parameter has stepped 3 times (once per two-evaluation call).
  for (const auto& kv : opt.adamw()->state())
    EXPECT_EQ(static_cast<const torch::optim::AdamWParamState&>(*kv.second).step(), 3);
  // The second evaluation of call k and the first of call k + 1 see the same full parameters.
  ASSERT_EQ(run.seen.size(), 7u);
  EXPECT_TRUE(torch::equal(run.seen[0], run.seen[1]));  // call 0's only eval; call 1 eval 1
  for (int k = 1; k < 3; ++k) EXPECT_TRUE(torch::equal(run.seen[2 * k], run.seen[2 * k + 1])) << "call " << k;
  // Within a call the parameters differ (both the matrices and the AdamW group moved).
  EXPECT_FALSE(torch::equal(run.seen[1], run.seen[2]));
}

TEST(Hybrid, MuonMvr2StepsAdamWBetweenTheTwoEvaluations) {
  HybridRun run(1);
  HybridOptions o;
  o.method = MatrixMethod::muon_mvr2;
  HybridOptimizer opt(route_module(run.model), o);
  ASSERT_NE(dynamic_cast<MuonMVR*>(opt.matrix_optimizer()), nullptr);
  auto c = run.closure(opt, /*record=*/true);
  opt.step(c);
  EXPECT_EQ(run.evals, 1);
  EXPECT_EQ(opt.adamw()->state().size(), 0u) << "AdamW must not step on MVR2's first (U_0) call";
  for (int t = 1; t < 4; ++t) opt.step(c);
  EXPECT_EQ(run.evals, 7);
  for (const auto& kv : opt.adamw()->state())
    EXPECT_EQ(static_cast<const torch::optim::AdamWParamState&>(*kv.second).step(), 3);
  for (int k = 1; k < 3; ++k) EXPECT_TRUE(torch::equal(run.seen[2 * k], run.seen[2 * k + 1])) << "call " << k;
  EXPECT_FALSE(torch::equal(run.seen[1], run.seen[2]));
}

TEST(Hybrid, MethodNamesRoundTrip) {
  EXPECT_EQ(all_matrix_methods().size(), 10u);
  for (auto m : all_matrix_methods()) EXPECT_EQ(parse_matrix_method(to_string(m)), m);
  try {
    parse_matrix_method("lion");
    ADD_FAILURE() << "accepted an unknown method";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("muon_mvr2, sumo, muoneq, lionmuon, mimuon, gluon"), std::string::npos) << e.what();
  }
}

TEST(Hybrid, MuonAndAdamWBaselinesStepOncePerCall) {
  for (auto method : {MatrixMethod::muon, MatrixMethod::adamw, MatrixMethod::muon_mvr1, MatrixMethod::sumo,
                      MatrixMethod::muoneq, MatrixMethod::lionmuon, MatrixMethod::mimuon, MatrixMethod::gluon}) {
    HybridRun run(2);
    HybridOptions o;
    o.method = method;
    o.sumo = SumoOptions(0.02).rank(2).update_interval(5);
    HybridOptimizer opt(route_module(run.model), o);
    if (method == MatrixMethod::adamw) EXPECT_EQ(opt.matrix_optimizer(), nullptr);
    auto c = run.closure(opt);
    auto first = opt.step(c).item<double>();
    for (int t = 0; t < 20; ++t) opt.step(c);
    EXPECT_EQ(run.evals, 21);
    EXPECT_LT(opt.step(c).item<double>(), first) << to_string(method) << " did not reduce the loss on a fixed batch";
  }
}

TEST(Schedule, WarmupThenCosineDrivesEveryGroup) {
  auto w = std::vector<torch::Tensor>{torch::randn({4, 3}, torch::requires_grad())};
  auto b = std::vector<torch::Tensor>{torch::randn({3}, torch::requires_grad())};
  Muon muon(w, MuonOptions(0.02));
  torch::optim::AdamW adamw(b, torch::optim::AdamWOptions(1e-3));
  WarmupCosine sched({&muon, &adamw}, 10, 110, 0.1);
  auto lr_m = [&] { return muon.param_groups()[0].options().get_lr(); };
  auto lr_a = [&] { return adamw.param_groups()[0].options().get_lr(); };
  EXPECT_NEAR(lr_m(), 0.02 * 0.1, 1e-15);  // t = 0: 1/10 of the way up
  EXPECT_NEAR(lr_a(), 1e-3 * 0.1, 1e-15);
  for (int t = 1; t <= 9; ++t) sched.step();
  EXPECT_NEAR(lr_m(), 0.02, 1e-15);  // t = 9: peak
  sched.step();
  EXPECT_NEAR(lr_m(), 0.02, 1e-15);  // t = 10: cosine starts at 1
  for (int t = 11; t <= 60; ++t) sched.step();
  EXPECT_NEAR(lr_m(), 0.02 * 0.55, 1e-12);  // halfway: 0.1 + 0.9 · 0.5
  for (int t = 61; t <= 110; ++t) sched.step();
  EXPECT_NEAR(lr_m(), 0.02 * 0.1, 1e-15);
  sched.step();
  EXPECT_NEAR(lr_a(), 1e-3 * 0.1, 1e-15);  // stays at the floor past the end
  std::stringstream ss;
  {
    torch::serialize::OutputArchive a;
    sched.save(a);
    a.save_to(ss);
  }
  Muon muon2(w, MuonOptions(0.02));
  torch::optim::AdamW adamw2(b, torch::optim::AdamWOptions(1e-3));
  WarmupCosine sched2({&muon2, &adamw2}, 10, 110, 0.1);
  torch::serialize::InputArchive in;
  in.load_from(ss);
  sched2.load(in);
  EXPECT_EQ(sched2.current_step(), 111);
  EXPECT_NEAR(muon2.param_groups()[0].options().get_lr(), 0.02 * 0.1, 1e-15);
  EXPECT_THROW(WarmupCosine({&muon}, -1, 10), std::invalid_argument);
  EXPECT_THROW(WarmupCosine({&muon}, 1, 0), std::invalid_argument);
}

TEST(Hybrid, SaveLoadContinueRestoresLearningRatesAndIsBitIdentical) {
  for (auto method : all_matrix_methods()) {
    HybridRun a(3), b(3);
    HybridOptions o;
    o.method = method;
    o.limuon = LiMuonOptions(0.02).lowrank_state(LowRankState::light).rank(2);
    o.sumo = SumoOptions(0.02).rank(2).update_interval(2);
    HybridOptimizer oa(route_module(a.model), o), ob(route_module(b.model), o);
    WarmupCosine sa(oa.optimizers(), 5, 20), sb(ob.optimizers(), 5, 20);
    auto ca = a.closure(oa), cb = b.closure(ob);
    for (int t = 0; t < 3; ++t) {
      oa.step(ca);
      sa.step();
    }
    std::stringstream ss;
    {
      torch::serialize::OutputArchive ar;
      oa.save(ar);
      torch::serialize::OutputArchive sched;
      sa.save(sched);
      ar.write("schedule", sched);
      ar.save_to(ss);
    }
    {
      torch::NoGradGuard g;
      auto pa = a.model.parameters(), pb = b.model.parameters();
      for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
    }
    torch::serialize::InputArchive in;
    in.load_from(ss);
    ob.load(in);
    // The hybrid restores lrs itself (before, and independently of, the schedule).
    ASSERT_NE(ob.adamw(), nullptr);
    const double saved_lr = oa.adamw()->param_groups()[0].options().get_lr();
    EXPECT_DOUBLE_EQ(ob.adamw()->param_groups()[0].options().get_lr(), saved_lr);
    EXPECT_NEAR(saved_lr, 3e-4 * 0.8, 1e-15) << "warm-up step 3 of 5";
    if (ob.matrix_optimizer())
      EXPECT_DOUBLE_EQ(ob.matrix_optimizer()->param_groups()[0].options().get_lr(),
                       oa.matrix_optimizer()->param_groups()[0].options().get_lr());
    torch::serialize::InputArchive sched;
    in.read("schedule", sched);
    sb.load(sched);
    for (int t = 0; t < 3; ++t) {
      EXPECT_TRUE(torch::equal(oa.step(ca), ob.step(cb)));
      sa.step();
      sb.step();
    }
    auto pa = a.model.parameters(), pb = b.model.parameters();
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << to_string(method) << " param " << i;
    EXPECT_EQ(oa.state_bytes(), ob.state_bytes());
    EXPECT_EQ(oa.evaluations(), ob.evaluations());
  }
}

TEST(Hybrid, NonFiniteAdamWGradientIsSkippedNotWritten) {
  HybridRun run(4);
  HybridOptions o;
  o.method = MatrixMethod::muon;
  HybridOptimizer opt(route_module(run.model), o);
  auto inner = run.closure(opt);
  bool poison = false;
  auto c = [&]() {
    auto l = inner();
    if (poison) run.model.ln->weight.mutable_grad()[0] = std::numeric_limits<float>::quiet_NaN();
    return l;
  };
  opt.step(c);
  poison = true;
  auto ln_before = run.model.ln->weight.detach().clone();
  opt.step(c);
  EXPECT_TRUE(torch::equal(run.model.ln->weight, ln_before));
  EXPECT_EQ(opt.nonfinite_skips(), 1);
  for (const auto& kv : opt.adamw()->state()) {
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*kv.second);
    EXPECT_TRUE(torch::isfinite(s.exp_avg()).all().item<bool>());
  }
}

namespace {
// The hybrid checkpoint of format 1, as builds before format 2 wrote it: AdamW's state in
// LibTorch's own AdamW archive layout (torch/optim/serialize.h: pytorch_version "1.5.0",
// state/<key>, param_groups/<g>/params/<i> holding the same key text). `hex` spells the keys the
// way LibTorch 1.13 did ("0x..."), which LibTorch 2.x's own loader cannot parse; otherwise in
// decimal, as LibTorch 2.x writes them.
void write_format1(torch::serialize::OutputArchive& ar, HybridOptimizer& opt, bool hex) {
  auto& adamw = *opt.adamw();
  auto key_text = [&](const torch::Tensor& p) {
    std::ostringstream os;
    if (hex) os << static_cast<const void*>(p.unsafeGetTensorImpl());
    else os << reinterpret_cast<std::uintptr_t>(p.unsafeGetTensorImpl());
    return os.str();
  };
  torch::serialize::OutputArchive a(ar.compilation_unit()), state(ar.compilation_unit()), pgs(ar.compilation_unit());
  a.write("pytorch_version", c10::IValue("1.5.0"));
  const auto& groups = adamw.param_groups();
  pgs.write("param_groups/size", torch::tensor(static_cast<int64_t>(groups.size())));
  for (size_t g = 0; g < groups.size(); ++g) {
    torch::serialize::OutputArchive pg(ar.compilation_unit()), po(ar.compilation_unit());
    const auto& ps = groups[g].params();
    pg.write("params/size", torch::tensor(static_cast<int64_t>(ps.size())));
    for (size_t i = 0; i < ps.size(); ++i) {
      pg.write("params/" + std::to_string(i), c10::IValue(key_text(ps[i])));
      auto it = adamw.state().find(state_key(ps[i]));
      if (it == adamw.state().end()) continue;
      torch::serialize::OutputArchive sa(ar.compilation_unit());
      it->second->serialize(sa);
      state.write(key_text(ps[i]), sa);
    }
    groups[g].options().serialize(po);
    pg.write("options", po);
    pgs.write("param_groups/" + std::to_string(g), pg);
  }
  a.write("state", state);
  a.write("param_groups", pgs);
  ar.write("limuon_format", c10::IValue(int64_t{1}));
  ar.write("hybrid_method", c10::IValue(to_string(opt.options().method)));
  ar.write("evaluations", c10::IValue(opt.evaluations()));
  ar.write("adamw_skips", c10::IValue(int64_t{0}));
  ar.write("adamw", a);
  auto dbl = torch::TensorOptions().dtype(torch::kDouble);
  const auto& o = static_cast<const torch::optim::AdamWOptions&>(groups[0].options());
  ar.write("adamw_lr", torch::tensor(std::vector<double>{o.lr()}, dbl));
  ar.write("adamw_weight_decay", torch::tensor(std::vector<double>{o.weight_decay()}, dbl));
  ar.write("adamw_beta1", torch::tensor(std::vector<double>{std::get<0>(o.betas())}, dbl));
  ar.write("adamw_beta2", torch::tensor(std::vector<double>{std::get<1>(o.betas())}, dbl));
  ar.write("adamw_eps", torch::tensor(std::vector<double>{o.eps()}, dbl));
}
}  // namespace

TEST(Hybrid, LoadsFormat1AdamWStateWrittenBy113And2x) {
  for (bool hex : {true, false}) {
    SCOPED_TRACE(hex ? "1.13 keys (hex)" : "2.x keys (decimal)");
    HybridOptions o;
    o.method = MatrixMethod::adamw;
    o.adamw = torch::optim::AdamWOptions(1e-2).weight_decay(0.1);
    HybridRun a(3), b(3);
    HybridOptimizer oa(route_module(a.model), o), ob(route_module(b.model), o);
    auto ca = a.closure(oa);
    for (int t = 0; t < 3; ++t) oa.step(ca);
    torch::serialize::OutputArchive ar;
    write_format1(ar, oa, hex);
    std::stringstream ss;
    ar.save_to(ss);
    torch::serialize::InputArchive in;
    in.load_from(ss);
    {
      torch::NoGradGuard ng;  // b continues from a's weights
      auto pa = a.model.parameters(), pb = b.model.parameters();
      for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
    }
    ob.load(in);
    ASSERT_EQ(ob.adamw()->state().size(), oa.adamw()->state().size());
    for (const auto& p : b.model.parameters()) {
      auto it = ob.adamw()->state().find(state_key(p));
      ASSERT_NE(it, ob.adamw()->state().end()) << "a parameter lost its AdamW state";
      EXPECT_EQ(static_cast<const torch::optim::AdamWParamState&>(*it->second).step(), 3);
    }
    auto cb = b.closure(ob);
    for (int t = 0; t < 2; ++t) {
      oa.step(ca);
      ob.step(cb);
    }
    auto pa = a.model.parameters(), pb = b.model.parameters();
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
  }
}

TEST(Hybrid, RefusesAnUnknownFormatByNumberAndChangesNothing) {
  HybridOptions o;
  o.method = MatrixMethod::adamw;
  HybridRun a(4);
  HybridOptimizer opt(route_module(a.model), o);
  auto c = a.closure(opt);
  opt.step(c);
  const auto before = opt.adamw()->state().size();
  torch::serialize::OutputArchive ar;
  ar.write("limuon_format", c10::IValue(int64_t{7}));
  std::stringstream ss;
  ar.save_to(ss);
  torch::serialize::InputArchive in;
  in.load_from(ss);
  try {
    opt.load(in);
    FAIL() << "format 7 loaded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("format 7"), std::string::npos) << e.what();
  }
  EXPECT_EQ(opt.adamw()->state().size(), before);
  EXPECT_EQ(opt.evaluations(), 1);
}

TEST(Hybrid, BothEvaluationsOfACallDrawTheSameDropoutMasks) {
  torch::manual_seed(5);
  torch::nn::Sequential net(torch::nn::Linear(6, 8), torch::nn::ReLU(), torch::nn::Dropout(0.1), torch::nn::Linear(8, 3));
  net->train();
  auto x = torch::randn({16, 6});
  auto y = torch::randint(0, 3, {16});
  for (auto method : {MatrixMethod::limuon, MatrixMethod::muon_mvr2}) {
    SCOPED_TRACE(to_string(method));
    HybridOptions o;
    o.method = method;
    o.limuon = LiMuonOptions(0.0);  // nothing moves: the two gradients of a call must be bitwise equal
    o.mvr = MuonMVROptions(0.0);
    o.adamw = torch::optim::AdamWOptions(0.0);
    HybridOptimizer opt(route_module(*net), o);
    std::vector<torch::Tensor> grads;
    auto closure = [&] {
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
      loss.backward();
      std::vector<torch::Tensor> flat;
      for (const auto& p : net->parameters()) flat.push_back(p.grad().reshape(-1).clone());
      grads.push_back(torch::cat(flat));
      return loss.detach();
    };
    for (int t = 0; t < 3; ++t) opt.step(closure);
    ASSERT_EQ(grads.size(), 5u);
    EXPECT_TRUE(torch::equal(grads[1], grads[2]));
    EXPECT_TRUE(torch::equal(grads[3], grads[4]));
    EXPECT_FALSE(torch::equal(grads[2], grads[3])) << "consecutive calls must draw new masks";
  }
}

TEST(Hybrid, AccumulatedSecondGradientMatchesTheStoredCopyAndClearsAdamWGradients) {
  // AdamW steps between LiMuon's two evaluations and its gradients must be cleared before the
  // second; LiMuon's seeded ones must survive HybridOptimizer::zero_grad there.
  for (auto s : {LowRankState::paper, LowRankState::light}) {
    HybridRun a(5), b(5);
    HybridOptions o;
    o.method = MatrixMethod::limuon;
    o.limuon = LiMuonOptions(0.02).beta(0.2).rank(2).oversample(1).lowrank_state(s);
    HybridOptimizer ref(route_module(b.model), o);
    o.limuon.accumulate_second_gradient(true);
    HybridOptimizer acc(route_module(a.model), o);
    auto ca = a.closure(acc), cb = b.closure(ref);
    for (int t = 0; t < 5; ++t) {
      acc.step(ca);
      ref.step(cb);
    }
    EXPECT_EQ(a.evals, 9);
    auto pa = a.model.named_parameters(), pb = b.model.named_parameters();
    for (const auto& kv : pa) {
      // TinyLM's conv output enters every logit as one constant shift, which cross-entropy ignores:
      // conv.* gradients are pure rounding noise, and orthogonalized (or Adam-normalised) noise
      // takes full-size steps in unrelated directions. Every other parameter must agree.
      if (kv.key().rfind("conv.", 0) == 0) continue;
      const double diff = (kv.value() - pb[kv.key()]).abs().max().item<double>();
      EXPECT_LT(diff, 1e-5) << to_string(s) << " " << kv.key();
    }
    EXPECT_GT((pa["attn.weight"] - HybridRun(5).model.named_parameters()["attn.weight"]).abs().max().item<double>(), 1e-3);
  }
}

TEST(Hybrid, AccumulatedSecondGradientSurvivesAnAdamWRaiseBetweenTheEvaluations) {
  // nonfinite=raise in the AdamW step between the evaluations: the call is abandoned, and the
  // next call starts clean (its old-point gradient is not polluted by a stale seed).
  HybridRun a(2);
  HybridOptions o;
  o.method = MatrixMethod::limuon;
  o.limuon = LiMuonOptions(0.02).beta(0.2).rank(2).oversample(1).lowrank_state(LowRankState::light)
                 .nonfinite(NonFinitePolicy::raise).accumulate_second_gradient(true);
  HybridOptimizer acc(route_module(a.model), o);
  auto clean = a.closure(acc);
  bool poison = false;
  auto poisoned = [&]() {
    auto l = clean();
    if (poison) {
      a.model.gain.mutable_grad().fill_(std::numeric_limits<float>::quiet_NaN());
      poison = false;
    }
    return l;
  };
  acc.step(poisoned);
  acc.step(poisoned);
  poison = true;  // the old-point evaluation of this call: AdamW raises after LiMuon seeded
  EXPECT_THROW(acc.step(poisoned), std::runtime_error);
  // The trainer's next closure: HybridOptimizer::zero_grad must now clear the matrix gradients too
  // (a stale seed would add −(1 − β)·g̃ to the next old-point gradient).
  clean();
  const auto g_next = a.model.attn->weight.grad().clone();
  for (auto& p : a.model.parameters())
    if (p.grad().defined()) p.mutable_grad().zero_();
  auto logits = a.model.forward(a.idx);
  torch::nn::functional::cross_entropy(logits.reshape({-1, 11}), a.target.reshape(-1)).backward();
  EXPECT_TRUE(torch::equal(g_next, a.model.attn->weight.grad()));
  acc.step(poisoned);
  acc.step(poisoned);
  for (const auto& p : a.model.parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
}
