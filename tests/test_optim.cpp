// Optimizer behaviour: the identities of ALGORITHMS.md §3, closure counts, save → load → continue
// bit-identity and generic behaviour for every configuration, option validation, non-finite policy.
#include "limuon/optim/gluon.h"
#include "limuon/optim/limuon.h"
#include "limuon/optim/lionmuon.h"
#include "limuon/optim/mimuon.h"
#include "limuon/optim/muon.h"
#include "limuon/optim/muon_mvr.h"
#include "limuon/optim/muoneq.h"
#include "limuon/optim/sumo.h"
#include "test_support.h"

#include <gtest/gtest.h>

#include <optional>
#include <sstream>

using namespace limuon;
using namespace limuon::test;

namespace {

using Factory = std::function<std::unique_ptr<torch::optim::Optimizer>(const std::vector<torch::Tensor>&, double)>;

struct Config {
  std::string name;
  Factory make;
};
// Shown by GoogleTest/CTest in place of the raw bytes of the parameter.
void PrintTo(const Config& c, std::ostream* os) { *os << c.name; }

LiMuonOptions li(double lr, LowRankState s, Storm storm, Orthogonalizer o = Orthogonalizer::ns5) {
  return LiMuonOptions(lr).beta(0.3).rank(2).oversample(1).lowrank_state(s).storm(storm).orthogonalizer(o).gamma(0.2).weight_decay(0.01).seed(3);
}

std::vector<Config> all_configs() {
  std::vector<Config> out;
  for (auto o : {Orthogonalizer::ns5, Orthogonalizer::svd, Orthogonalizer::polar_express, Orthogonalizer::rsvd})
    out.push_back({"muon_" + to_string(o), [o](const std::vector<torch::Tensor>& p, double lr) {
                     return std::make_unique<Muon>(p, MuonOptions(lr).orthogonalizer(o).rank(2).oversample(1).weight_decay(0.01));
                   }});
  out.push_back({"muon_plain", [](const std::vector<torch::Tensor>& p, double lr) {
                   return std::make_unique<Muon>(p, MuonOptions(lr).nesterov(false).adjust_lr(AdjustLr::match_rms_adamw));
                 }});
  for (auto s : {LowRankState::none, LowRankState::paper, LowRankState::light})
    for (auto st : {Storm::exact, Storm::approx})
      out.push_back({"limuon_" + to_string(s) + "_" + to_string(st), [s, st](const std::vector<torch::Tensor>& p, double lr) {
                       return std::make_unique<LiMuon>(p, li(lr, s, st));
                     }});
  out.push_back({"limuon_none_exact_rsvd", [](const std::vector<torch::Tensor>& p, double lr) {
                   return std::make_unique<LiMuon>(p, li(lr, LowRankState::none, Storm::exact, Orthogonalizer::rsvd));
                 }});
  out.push_back({"limuon_paper_exact_pe", [](const std::vector<torch::Tensor>& p, double lr) {
                   return std::make_unique<LiMuon>(p, li(lr, LowRankState::paper, Storm::exact, Orthogonalizer::polar_express));
                 }});
  // The rest of the family (ALGORITHMS.md §4).
  for (auto v : {MvrVariant::mvr1, MvrVariant::mvr2})
    out.push_back({"muon_" + to_string(v), [v](const std::vector<torch::Tensor>& p, double lr) {
                     return std::make_unique<MuonMVR>(p, MuonMVROptions(lr).variant(v).gamma(0.3).max_norm(0.5).weight_decay(0.01));
                   }});
  out.push_back({"muon_mvr2_plain_rsvd", [](const std::vector<torch::Tensor>& p, double lr) {
                   return std::make_unique<MuonMVR>(p, MuonMVROptions(lr).variant(MvrVariant::mvr2).nesterov(false)
                                                           .orthogonalizer(Orthogonalizer::rsvd).rank(2).oversample(1).seed(5));
                 }});
  out.push_back({"sumo", [](const std::vector<torch::Tensor>& p, double lr) {
                   return std::make_unique<Sumo>(p, SumoOptions(lr).rank(2).oversample(1).update_interval(2).weight_decay(0.01).seed(3));
                 }});
  for (auto e : {Equilibrate::rows, Equilibrate::both})
    out.push_back({"muoneq_" + to_string(e), [e](const std::vector<torch::Tensor>& p, double lr) {
                     return std::make_unique<MuonEq>(p, MuonEqOptions(lr).equilibrate(e).weight_decay(0.01));
                   }});
  out.push_back({"lionmuon", [](const std::vector<torch::Tensor>& p, double lr) {
                   return std::make_unique<LionMuon>(p, LionMuonOptions(lr).period(2).weight_decay(0.01));
                 }});
  out.push_back({"mimuon", [](const std::vector<torch::Tensor>& p, double lr) {
                   return std::make_unique<MiMuon>(p, MiMuonOptions(lr).tau(0.15).weight_decay(0.01));
                 }});
  out.push_back({"gluon", [](const std::vector<torch::Tensor>& p, double lr) {
                   return std::make_unique<Gluon>(p, GluonOptions(lr).l0(0.5).l1(1.0).weight_decay(0.01));
                 }});
  return out;
}

class EveryConfig : public ::testing::TestWithParam<Config> {};

std::vector<torch::Tensor> snapshot(const std::vector<torch::Tensor>& ps) {
  std::vector<torch::Tensor> out;
  for (const auto& p : ps) out.push_back(p.detach().clone());
  return out;
}

bool any_nonfinite_state(const torch::optim::Optimizer& opt) {
  for (const auto& kv : opt.state()) {
    std::vector<torch::Tensor> ts;
    if (auto* m = dynamic_cast<const MuonParamState*>(kv.second.get())) ts = {m->momentum_buffer()};
    if (auto* l = dynamic_cast<const LiMuonParamState*>(kv.second.get()))
      ts = {l->momentum(), l->direction(), l->factor_u(), l->factor_s(), l->factor_v(), l->prev_grad()};
    if (auto* f = dynamic_cast<const FamilyParamState*>(kv.second.get()))
      for (const auto& nt : f->tensors()) ts.push_back(nt.second);
    for (const auto& t : ts)
      if (t.defined() && !torch::isfinite(t).all().item<bool>()) return true;
  }
  return false;
}

bool states_equal(const torch::optim::Optimizer& a, const torch::optim::Optimizer& b) {
  const auto& pa = a.param_groups()[0].params();
  const auto& pb = b.param_groups()[0].params();
  for (size_t i = 0; i < pa.size(); ++i) {
    auto ia = a.state().find(state_key(pa[i]));
    auto ib = b.state().find(state_key(pb[i]));
    if ((ia == a.state().end()) != (ib == b.state().end())) return false;
    if (ia == a.state().end()) continue;
    if (auto* m = dynamic_cast<const MuonParamState*>(ia->second.get())) {
      if (!(*m == static_cast<const MuonParamState&>(*ib->second))) return false;
    } else if (auto* f = dynamic_cast<const FamilyParamState*>(ia->second.get())) {
      if (!(*f == static_cast<const FamilyParamState&>(*ib->second))) return false;
    } else if (!(static_cast<const LiMuonParamState&>(*ia->second) ==
                 static_cast<const LiMuonParamState&>(*ib->second))) {
      return false;
    }
  }
  return true;
}

}  // namespace

TEST_P(EveryConfig, SaveLoadContinueIsBitIdentical) {
  const Config& cfg = GetParam();
  Problem a = make_problem(torch::kFloat);
  auto opt_a = cfg.make(a.params, 0.05);
  for (int t = 0; t < 2; ++t) {
    a.batch = t;
    opt_a->step(a.closure());
  }
  std::stringstream ss;
  torch::save(*opt_a, ss);
  // A fresh run built with a different lr: load must restore the saved one.
  Problem b = make_problem(torch::kFloat);
  for (size_t i = 0; i < b.params.size(); ++i) {
    torch::NoGradGuard g;
    b.params[i].copy_(a.params[i]);
  }
  auto opt_b = cfg.make(b.params, 0.5);
  torch::load(*opt_b, ss);
  EXPECT_DOUBLE_EQ(opt_b->param_groups()[0].options().get_lr(), 0.05);
  EXPECT_TRUE(states_equal(*opt_a, *opt_b));
  for (int t = 2; t < 5; ++t) {
    a.batch = b.batch = t;
    auto la = opt_a->step(a.closure());
    auto lb = opt_b->step(b.closure());
    EXPECT_TRUE(torch::equal(la, lb)) << "call " << t;
    for (size_t i = 0; i < a.params.size(); ++i)
      ASSERT_TRUE(torch::equal(a.params[i], b.params[i])) << cfg.name << " call " << t << " param " << i;
  }
  EXPECT_TRUE(states_equal(*opt_a, *opt_b));
}

TEST_P(EveryConfig, KeepsDtypeSkipsUndefinedGradsAndWritesNoNaN) {
  const Config& cfg = GetParam();
  for (auto dt : {torch::kFloat, torch::kDouble}) {
    Problem p = make_problem(dt);
    auto opt = cfg.make(p.params, 0.05);
    auto w3_before = p.params[2].detach().clone();
    auto w1_before = p.params[0].detach().clone();
    auto inner = p.closure();
    auto closure = [&]() {
      auto l = inner();
      p.params[2].mutable_grad() = torch::Tensor();  // W3 gets no gradient
      return l;
    };
    for (int t = 0; t < 3; ++t) {
      p.batch = t;
      opt->step(closure);
    }
    for (const auto& w : p.params) EXPECT_EQ(w.scalar_type(), dt);
    EXPECT_TRUE(torch::equal(p.params[2], w3_before)) << "a parameter without gradient moved";
    EXPECT_GT((p.params[0] - w1_before).abs().max().item<double>(), 1e-4) << "W1 did not move";
    for (const auto& kv : opt->state()) {
      if (auto* l = dynamic_cast<const LiMuonParamState*>(kv.second.get()))
        for (const auto& t : {l->momentum(), l->factor_u(), l->prev_grad(), l->direction()})
          if (t.defined()) EXPECT_EQ(t.scalar_type(), dt);
      if (auto* m = dynamic_cast<const MuonParamState*>(kv.second.get())) EXPECT_EQ(m->momentum_buffer().scalar_type(), dt);
      if (auto* f = dynamic_cast<const FamilyParamState*>(kv.second.get()))
        for (const auto& nt : f->tensors()) EXPECT_EQ(nt.second.scalar_type(), dt) << nt.first;
    }
    EXPECT_FALSE(any_nonfinite_state(*opt));
  }
}

TEST_P(EveryConfig, NonFiniteGradientSkipsTheGroupAndCountsIt) {
  const Config& cfg = GetParam();
  Problem p = make_problem(torch::kFloat);
  auto opt = cfg.make(p.params, 0.05);
  auto inner = p.closure();
  int poison_at = -1, evals = 0;
  auto closure = [&]() {
    auto l = inner();
    if (evals++ == poison_at) p.params[1].mutable_grad()[0][0] = std::numeric_limits<float>::quiet_NaN();
    return l;
  };
  for (int t = 0; t < 3; ++t) {
    p.batch = t;
    opt->step(closure);
  }
  // Poison the first evaluation of the next call (the only one for Muon and approx; the old-point
  // gradient for exact): nothing may move, nothing may become NaN.
  auto before = snapshot(p.params);
  poison_at = evals;
  p.batch = 3;
  auto count = [&]() {
    if (auto* m = dynamic_cast<Muon*>(opt.get())) return m->nonfinite_skips();
    if (auto* f = dynamic_cast<MuonFamily*>(opt.get())) return f->nonfinite_skips();
    return dynamic_cast<LiMuon*>(opt.get())->nonfinite_skips();
  };
  opt->step(closure);
  EXPECT_EQ(count(), 1);
  for (size_t i = 0; i < p.params.size(); ++i) {
    EXPECT_TRUE(torch::isfinite(p.params[i]).all().item<bool>());
    EXPECT_TRUE(torch::equal(p.params[i], before[i])) << "param " << i << " moved on a skipped step";
  }
  EXPECT_FALSE(any_nonfinite_state(*opt));
  // Training goes on.
  poison_at = -1;
  for (int t = 4; t < 7; ++t) {
    p.batch = t % 7;
    opt->step(closure);
  }
  for (const auto& w : p.params) EXPECT_TRUE(torch::isfinite(w).all().item<bool>());
  EXPECT_FALSE(any_nonfinite_state(*opt));
}

INSTANTIATE_TEST_SUITE_P(Optim, EveryConfig, ::testing::ValuesIn(all_configs()),
                         [](const ::testing::TestParamInfo<Config>& i) { return i.param.name; });

TEST(LiMuonIdentity, BetaOneIsMomentumFreeMuonOnTheFreshGradient) {
  const auto& ref = reference();
  Problem a = make_problem(), b = make_problem();
  LiMuon lim(a.params, LiMuonOptions(0.05).beta(1.0).weight_decay(0.1));
  Muon muon(b.params, MuonOptions(0.05).momentum(0.0).weight_decay(0.1));
  // LiMuon call c (c ≥ 1) applies orth(M_{c−1}) with M_{c−1} = ∇f(W_{c−1}; ξ_{c−1}): Muon's step c−1.
  a.batch = 0;
  lim.step(a.closure());
  for (int c = 1; c < ref.calls; ++c) {
    a.batch = c;
    b.batch = c - 1;
    lim.step(a.closure());
    muon.step(b.closure());
    for (size_t i = 0; i < 3; ++i) EXPECT_LT(rel_diff(a.params[i], b.params[i]), 1e-12) << "call " << c;
  }
}

TEST(LiMuonIdentity, LightAtFullRankEqualsOptionOneWithSvd) {
  const auto& ref = reference();
  Problem a = make_problem(), b = make_problem();
  LiMuon light(a.params, LiMuonOptions(0.05).beta(0.3).lowrank_state(LowRankState::light).rank(5).oversample(0));
  LiMuon dense(b.params, LiMuonOptions(0.05).beta(0.3).orthogonalizer(Orthogonalizer::svd));
  for (int t = 0; t < ref.calls; ++t) {
    a.batch = b.batch = t;
    light.step(a.closure());
    dense.step(b.closure());
    for (size_t i = 0; i < 3; ++i) EXPECT_LT(rel_diff(a.params[i], b.params[i]), 1e-9) << "call " << t;
  }
  EXPECT_GT(rel_diff(a.params[0], ref.at("init/W1")), 1e-3);
}

TEST(LiMuonIdentity, ExactEvaluatesTheClosureTwicePerStepOnceOnTheFirst) {
  for (auto s : {LowRankState::none, LowRankState::paper, LowRankState::light}) {
    Problem p = make_problem();
    LiMuon opt(p.params, LiMuonOptions(0.05).lowrank_state(s).rank(2));
    opt.step(p.closure());
    EXPECT_EQ(p.evaluations, 1);
    for (int t = 1; t < 4; ++t) {
      p.batch = t;
      opt.step(p.closure());
      EXPECT_EQ(p.evaluations, 1 + 2 * t);
    }
    EXPECT_EQ(opt.evaluations(), 7);
  }
  Problem q = make_problem();
  LiMuon approx(q.params, LiMuonOptions(0.05).storm(Storm::approx));
  for (int t = 0; t < 3; ++t) approx.step(q.closure());
  EXPECT_EQ(q.evaluations, 3);
}

TEST(LiMuonIdentity, ApproxWithGammaOneCollapsesToTheBareGradient) {
  // With gamma = 1 the approx recursion gives M_t = g_t: LiMuon is then momentum-free Muon,
  // whatever beta is. This is why gamma = 1 must never be the default.
  const auto& ref = reference();
  Problem a = make_problem(), b = make_problem();
  LiMuon lim(a.params, LiMuonOptions(0.05).beta(0.3).gamma(1.0).storm(Storm::approx));
  Muon muon(b.params, MuonOptions(0.05).momentum(0.0));
  for (int t = 0; t < ref.calls; ++t) {
    a.batch = b.batch = t;
    lim.step(a.closure());
    muon.step(b.closure());
    for (size_t i = 0; i < 3; ++i) EXPECT_LT(rel_diff(a.params[i], b.params[i]), 1e-9) << "call " << t;
  }
  // and the default damping does not collapse
  Problem c = make_problem(), d = make_problem();
  LiMuon damped(c.params, LiMuonOptions(0.05).beta(0.3).storm(Storm::approx));
  Muon bare(d.params, MuonOptions(0.05).momentum(0.0));
  for (int t = 0; t < ref.calls; ++t) {
    c.batch = d.batch = t;
    damped.step(c.closure());
    bare.step(d.closure());
  }
  EXPECT_GT(rel_diff(c.params[0], d.params[0]), 1e-4);
}

TEST(LiMuonIdentity, StateBytesMatchTheFormulas) {
  // ALGORITHMS.md §6 per m×n matrix, r = min(rank, m, n): none mn; paper mn + (m+n)r + r;
  // light (m+n)r + r. approx adds g_{t−1} (mn) and, having no lag, paper keeps no direction there.
  std::vector<std::pair<int64_t, int64_t>> shapes = {{5, 3}, {4, 5}, {3, 4}};
  for (auto s : {LowRankState::none, LowRankState::paper, LowRankState::light})
    for (auto st : {Storm::exact, Storm::approx}) {
      Problem p = make_problem(torch::kFloat);
      LiMuon opt(p.params, LiMuonOptions(0.05).lowrank_state(s).storm(st).rank(2));
      for (int t = 0; t < 3; ++t) opt.step(p.closure());
      int64_t elems = 0;
      for (auto [m, n] : shapes) {
        const int64_t r = std::min<int64_t>(2, std::min(m, n)), lowrank = (m + n) * r + r;
        const bool keeps_direction = s == LowRankState::paper && st == Storm::exact;
        elems += s == LowRankState::none ? m * n : keeps_direction ? m * n + lowrank : lowrank;
        if (st == Storm::approx) elems += m * n;
      }
      EXPECT_EQ(opt.state_bytes(), elems * 4) << to_string(s) << "/" << to_string(st);
    }
  Problem p = make_problem(torch::kFloat);
  Muon muon(p.params, MuonOptions(0.05));
  muon.step(p.closure());
  EXPECT_EQ(muon.state_bytes(), (15 + 20 + 12) * 4);
}

namespace {
void expect_invalid(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(Options, BadValuesNameTheOptionAndTheRange) {
  auto w = [] { return std::vector<torch::Tensor>{torch::randn({4, 3}, torch::requires_grad())}; };
  expect_invalid([&] { Muon(w(), MuonOptions(-1.0)); }, {"Muon", "lr", "[0, inf)", "-1"});
  expect_invalid([&] { Muon(w(), MuonOptions(0.1).momentum(1.0)); }, {"momentum", "[0, 1)"});
  expect_invalid([&] { Muon(w(), MuonOptions(0.1).weight_decay(-0.1)); }, {"weight_decay"});
  expect_invalid([&] { LiMuon(w(), LiMuonOptions(-0.5)); }, {"LiMuon", "lr", "[0, inf)"});
  expect_invalid([&] { LiMuon(w(), LiMuonOptions(0.1).rank(0)); }, {"rank", ">= 1", "got 0"});
  expect_invalid([&] { LiMuon(w(), LiMuonOptions(0.1).beta(0.0)); }, {"beta", "(0, 1]", "got 0"});
  expect_invalid([&] { LiMuon(w(), LiMuonOptions(0.1).beta(1.5)); }, {"beta", "(0, 1]", "1.5"});
  expect_invalid([&] { LiMuon(w(), LiMuonOptions(0.1).gamma(2.0)); }, {"gamma", "[0, 1]"});
  expect_invalid([&] { LiMuon(w(), LiMuonOptions(0.1).oversample(-1)); }, {"oversample", ">= 0"});
  expect_invalid([&] { LiMuon(w(), LiMuonOptions(0.1).power_iters(-2)); }, {"power_iters", ">= 0"});
  expect_invalid([&] { Muon(std::vector<torch::Tensor>{torch::randn({7}, torch::requires_grad())}); },
                 {"Muon", "not a matrix", "AdamW"});
  expect_invalid([&] { LiMuon(std::vector<torch::Tensor>{torch::randn({7}, torch::requires_grad())}); },
                 {"LiMuon", "not a matrix"});
  expect_invalid([] { parse_lowrank_state("tiny"); }, {"none, paper, light"});
  expect_invalid([] { parse_storm("fast"); }, {"exact, approx"});
  expect_invalid([] { parse_adjust_lr("auto"); }, {"original, match_rms_adamw, spectral, none"});
}

TEST(Options, ExactStepWithoutClosureIsAClearError) {
  Problem p = make_problem();
  LiMuon opt(p.params, LiMuonOptions(0.05));
  expect_invalid([&] { opt.step(); }, {"closure", "twice"});
  // approx runs on the gradients already there
  LiMuon approx(p.params, LiMuonOptions(0.05).storm(Storm::approx));
  auto before = p.params[0].detach().clone();
  p.closure()();
  approx.step();
  EXPECT_GT((p.params[0] - before).abs().max().item<double>(), 1e-4);
}

TEST(Options, LoadingIntoTheWrongOptimizerOrShapeFails) {
  Problem p = make_problem(torch::kFloat);
  Muon muon(p.params, MuonOptions(0.05));
  muon.step(p.closure());
  std::stringstream ss;
  torch::save(muon, ss);
  LiMuon lim(p.params, LiMuonOptions(0.05));
  try {
    torch::load(lim, ss);
    ADD_FAILURE() << "loaded Muon state into LiMuon";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'muon'"), std::string::npos) << e.what();
  }
  std::stringstream ss2;
  torch::save(muon, ss2);
  std::vector<torch::Tensor> other = {torch::randn({5, 3}), torch::randn({4, 6}), torch::randn({3, 2, 2})};
  Muon wrong(other, MuonOptions(0.05));
  try {
    torch::load(wrong, ss2);
    ADD_FAILURE() << "loaded state for a different shape";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
    EXPECT_TRUE(wrong.state().empty()) << "a failed load must leave the optimizer untouched";
  }
}

TEST(NonFinite, NewPointGradientResetsTheEstimateWithoutNaN) {
  for (auto s : {LowRankState::none, LowRankState::paper, LowRankState::light}) {
    Problem p = make_problem(torch::kFloat);
    LiMuon opt(p.params, LiMuonOptions(0.05).lowrank_state(s).rank(2));
    auto inner = p.closure();
    int evals = 0, poison_at = -1;
    auto closure = [&]() {
      auto l = inner();
      if (evals++ == poison_at) p.params[0].mutable_grad().fill_(std::numeric_limits<float>::infinity());
      return l;
    };
    for (int t = 0; t < 3; ++t) opt.step(closure);
    auto before = snapshot(p.params);
    poison_at = evals + 1;  // the new-point gradient of this call
    opt.step(closure);
    EXPECT_EQ(opt.nonfinite_skips(), 1);
    // The pending direction was finite and was applied; the estimate is restarted.
    EXPECT_GT((p.params[0] - before[0]).abs().max().item<double>(), 1e-5);
    EXPECT_FALSE(opt.needs_old_point_gradient());
    EXPECT_FALSE(any_nonfinite_state(opt));
    const int e0 = evals;
    opt.step(closure);  // re-initialisation call: one evaluation
    EXPECT_EQ(evals - e0, 1);
    opt.step(closure);
    EXPECT_EQ(evals - e0, 3);
    for (const auto& w : p.params) EXPECT_TRUE(torch::isfinite(w).all().item<bool>());
  }
}

TEST(NonFinite, RaisePolicyThrows) {
  Problem p = make_problem(torch::kFloat);
  Muon opt(p.params, MuonOptions(0.05).nonfinite(NonFinitePolicy::raise));
  auto inner = p.closure();
  auto closure = [&]() {
    auto l = inner();
    p.params[0].mutable_grad()[0][0] = std::numeric_limits<float>::quiet_NaN();
    return l;
  };
  EXPECT_THROW(opt.step(closure), std::runtime_error);
}

// LibTorch 2.x's Optimizer constructor and add_param_group replace a group's options by the
// defaults for any optimizer that is not one of LibTorch's own; limuon's keep them.
TEST(Options, PerGroupOptionsSurviveConstructionAndAddParamGroup) {
  auto a = torch::randn({4, 3}, torch::requires_grad());
  auto b = torch::randn({5, 2}, torch::requires_grad());
  auto c = torch::randn({3, 3}, torch::requires_grad());
  {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<torch::Tensor>{a}, std::make_unique<MuonOptions>(MuonOptions(0.5).momentum(0.8)));
    groups.emplace_back(std::vector<torch::Tensor>{b});
    Muon opt(groups, MuonOptions(0.02));
    const auto& g0 = static_cast<const MuonOptions&>(opt.param_groups()[0].options());
    EXPECT_EQ(g0.lr(), 0.5);
    EXPECT_EQ(g0.momentum(), 0.8);
    EXPECT_EQ(opt.param_groups()[1].options().get_lr(), 0.02);
    add_param_group(opt, torch::optim::OptimizerParamGroup({c}, std::make_unique<MuonOptions>(MuonOptions(0.3))));
    EXPECT_EQ(opt.param_groups()[2].options().get_lr(), 0.3);
  }
  {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<torch::Tensor>{a},
                        std::make_unique<LiMuonOptions>(LiMuonOptions(0.4).beta(0.5).storm(Storm::approx)));
    LiMuon opt(groups, LiMuonOptions(0.02));
    const auto& g0 = static_cast<const LiMuonOptions&>(opt.param_groups()[0].options());
    EXPECT_EQ(g0.lr(), 0.4);
    EXPECT_EQ(g0.beta(), 0.5);
    EXPECT_EQ(g0.storm(), Storm::approx);
  }
  {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<torch::Tensor>{a}, std::make_unique<SumoOptions>(SumoOptions(0.7).rank(2)));
    Sumo opt(groups, SumoOptions(0.02));
    const auto& g0 = static_cast<const SumoOptions&>(opt.param_groups()[0].options());
    EXPECT_EQ(g0.lr(), 0.7);
    EXPECT_EQ(g0.rank(), 2);
  }
}

// STORM's two evaluations of one call see the same random draws (dropout masks, torch::rand), and
// the generators then continue from where the second evaluation left them.
namespace {
struct DropoutProblem {
  torch::nn::Linear l1{nullptr}, l2{nullptr};
  torch::nn::Dropout drop{nullptr};
  torch::Tensor x, y;
  std::vector<torch::Tensor> draws, grads, states_after;
  DropoutProblem() {
    torch::manual_seed(11);
    l1 = torch::nn::Linear(6, 8);
    l2 = torch::nn::Linear(8, 3);
    drop = torch::nn::Dropout(0.1);
    drop->train();
    x = torch::randn({16, 6});
    y = torch::randint(0, 3, {16});
  }
  std::vector<torch::Tensor> matrices() { return {l1->weight, l2->weight}; }
  std::function<torch::Tensor()> closure(torch::optim::Optimizer& opt) {
    return [this, &opt] {
      opt.zero_grad(false);
      draws.push_back(torch::rand({5}));
      auto loss = torch::nn::functional::cross_entropy(l2->forward(drop->forward(torch::relu(l1->forward(x)))), y);
      loss.backward();
      grads.push_back(l1->weight.grad().clone());
      states_after.push_back(at::detail::getDefaultCPUGenerator().get_state());
      return loss.detach();
    };
  }
};

// Calls 2.. evaluate twice: evaluations (1, 2), (3, 4), ... of each call must match; the first
// call's single evaluation (0) and consecutive calls must not.
void expect_shared_randomness(DropoutProblem& p, int calls) {
  ASSERT_EQ(p.draws.size(), static_cast<size_t>(2 * calls - 1));
  for (int c = 1; c < calls; ++c) {
    const size_t a = 2 * c - 1, b = 2 * c;
    EXPECT_TRUE(torch::equal(p.draws[a], p.draws[b])) << "call " << c << ": torch::rand differs between the evaluations";
    EXPECT_TRUE(torch::equal(p.grads[a], p.grads[b])) << "call " << c << ": dropout masks differ (weights did not move)";
    EXPECT_FALSE(torch::equal(p.draws[a - 1], p.draws[a])) << "call " << c << " repeated the previous call's draws";
  }
  // After the call, the generator continues as after its second evaluation.
  EXPECT_TRUE(torch::equal(at::detail::getDefaultCPUGenerator().get_state(), p.states_after.back()));
}
}  // namespace

TEST(SharedRandomness, LiMuonExactBothEvaluationsDrawTheSame) {
  DropoutProblem p;
  LiMuon opt(p.matrices(), LiMuonOptions(0.0).beta(0.5));  // lr 0: the weights do not move
  auto c = p.closure(opt);
  for (int t = 0; t < 3; ++t) opt.step(c);
  expect_shared_randomness(p, 3);
}

TEST(SharedRandomness, MuonMvr2BothEvaluationsDrawTheSame) {
  DropoutProblem p;
  MuonMVR opt(p.matrices(), MuonMVROptions(0.0).variant(MvrVariant::mvr2));
  auto c = p.closure(opt);
  for (int t = 0; t < 3; ++t) opt.step(c);
  expect_shared_randomness(p, 3);
}

TEST(SharedRandomness, MovingWeightsStillShareTheMasks) {
  // With a real step the two gradients of a call differ (the weights moved), but the draws are
  // still the same.
  DropoutProblem p;
  LiMuon opt(p.matrices(), LiMuonOptions(0.05).beta(0.5));
  auto c = p.closure(opt);
  for (int t = 0; t < 3; ++t) opt.step(c);
  for (int call = 1; call < 3; ++call) {
    EXPECT_TRUE(torch::equal(p.draws[2 * call - 1], p.draws[2 * call]));
    EXPECT_FALSE(torch::equal(p.grads[2 * call - 1], p.grads[2 * call])) << "the weights moved between the evaluations";
  }
}

// ------------------------------------------------------------------ the paper preset (item 3)
TEST(LiMuonPreset, PaperIsExactSvdUnscaledUndecayedTwoGradient) {
  const LiMuonOptions p = LiMuonOptions::paper(0.01);
  EXPECT_EQ(p.lr(), 0.01);
  EXPECT_EQ(p.orthogonalizer(), Orthogonalizer::svd);
  EXPECT_EQ(p.adjust_lr(), AdjustLr::none);
  EXPECT_EQ(p.weight_decay(), 0.0);
  EXPECT_EQ(p.storm(), Storm::exact);
  EXPECT_EQ(p.beta(), LiMuonOptions().beta());
  EXPECT_TRUE(LiMuonOptions::preset("paper", 0.01) == p);
  EXPECT_TRUE(LiMuonOptions::preset("practical", 0.01) == LiMuonOptions(0.01));
  EXPECT_FALSE(LiMuonOptions::preset("practical", 0.01) == p);
  try {
    LiMuonOptions::preset("fast");
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("paper"), std::string::npos) << e.what();
  }
}

TEST(LiMuonPreset, PaperMovesByLrTimesTheExactPolarFactor) {
  // beta = 1: call 0 sets M_0 = g(W_0); call 1 moves W by exactly lr·U Vᵀ of M_0, with no shape
  // factor (the practical default would scale the tall 5×3 W1 by sqrt(5/3)).
  Problem p = make_problem();
  const double lr = 0.05;
  LiMuon opt(p.params, LiMuonOptions::paper(lr).beta(1.0));
  opt.step(p.closure());
  auto w0 = snapshot(p.params);
  std::vector<torch::Tensor> g0;
  for (const auto& w : p.params) g0.push_back(w.grad().detach().reshape({w.size(0), -1}).clone());
  opt.step(p.closure());
  for (size_t i = 0; i < p.params.size(); ++i) {
    auto moved = (w0[i] - p.params[i].detach()).reshape({w0[i].size(0), -1});
    auto [u, s, vh] = torch::linalg_svd(g0[i], /*full_matrices=*/false);
    EXPECT_LT((moved - lr * torch::mm(u, vh)).abs().max().item<double>(), 1e-12) << "W" << i + 1;
  }
}

// ------------------------------------------------------------------ accumulate_second_gradient (item 4b)
namespace {
// The protocol's closure: gradients cleared through the optimizer, then forward and backward.
std::function<torch::Tensor()> optimizer_closure(Problem& p, LiMuon& opt) {
  return [&p, &opt]() {
    opt.zero_grad(/*set_to_none=*/false);
    ++p.evaluations;
    auto l = p.loss();
    l.backward();
    return l.detach();
  };
}

LiMuonOptions acc_opts(LowRankState s, bool acc) {
  return LiMuonOptions(0.05).beta(0.3).rank(2).oversample(1).seed(3).weight_decay(0.01).lowrank_state(s)
      .accumulate_second_gradient(acc);
}
}  // namespace

TEST(LiMuonAccumulate, MatchesTheStoredCopyUpToRoundingAlsoThroughNonFiniteSkips) {
  for (auto s : {LowRankState::paper, LowRankState::light}) {
    Problem a = make_problem(), b = make_problem();
    LiMuon acc(a.params, acc_opts(s, true)), ref(b.params, acc_opts(s, false));
    auto ca = optimizer_closure(a, acc), cb = optimizer_closure(b, ref);
    // Poison W2's gradient in the old-point evaluation of call 3 and the new-point one of call 5.
    auto poisoned = [](Problem& p, std::function<torch::Tensor()> inner, int& evals) {
      return [&p, inner, &evals]() {
        auto l = inner();
        ++evals;
        if (evals == 6 || evals == 11) p.params[1].mutable_grad()[0][0] = std::numeric_limits<double>::quiet_NaN();
        return l;
      };
    };
    int ea = 0, eb = 0;
    auto pa = poisoned(a, ca, ea), pb = poisoned(b, cb, eb);
    for (int t = 0; t < 9; ++t) {
      a.batch = b.batch = t % 4;
      acc.step(pa);
      ref.step(pb);
      for (size_t i = 0; i < 3; ++i)
        ASSERT_LT(rel_diff(a.params[i], b.params[i]), 1e-10) << to_string(s) << " call " << t << " W" << i + 1;
    }
    EXPECT_EQ(acc.nonfinite_skips(), ref.nonfinite_skips());
    EXPECT_EQ(acc.nonfinite_skips(), 2);
    EXPECT_EQ(acc.state_bytes(), ref.state_bytes());
    EXPECT_EQ(acc.evaluations(), ref.evaluations());
    EXPECT_GT(rel_diff(a.params[0], make_problem().params[0]), 1e-3);
  }
}

TEST(LiMuonAccumulate, SaveLoadContinueIsBitIdentical) {
  for (auto s : {LowRankState::paper, LowRankState::light}) {
    Problem a = make_problem(torch::kFloat), b = make_problem(torch::kFloat);
    LiMuon opt_a(a.params, acc_opts(s, true));
    auto ca = optimizer_closure(a, opt_a);
    for (int t = 0; t < 3; ++t) {
      a.batch = t;
      opt_a.step(ca);
    }
    std::stringstream buf;
    {
      torch::serialize::OutputArchive out;
      opt_a.save(out);
      out.save_to(buf);
    }
    for (size_t i = 0; i < 3; ++i) b.params[i].detach().copy_(a.params[i].detach());
    LiMuon opt_b(b.params, acc_opts(s, false));  // the checkpoint's options win
    torch::serialize::InputArchive in;
    in.load_from(buf);
    opt_b.load(in);
    EXPECT_TRUE(static_cast<const LiMuonOptions&>(opt_b.param_groups()[0].options()).accumulate_second_gradient());
    auto cb = optimizer_closure(b, opt_b);
    for (int t = 3; t < 6; ++t) {
      a.batch = b.batch = t;
      opt_a.step(ca);
      opt_b.step(cb);
      for (size_t i = 0; i < 3; ++i) ASSERT_TRUE(torch::equal(a.params[i], b.params[i])) << to_string(s) << " call " << t;
    }
    EXPECT_TRUE(states_equal(opt_a, opt_b));
  }
}

TEST(LiMuonAccumulate, AClosureThatBypassesZeroGradIsRefusedAndTheOptimizerRecovers) {
  for (auto s : {LowRankState::paper, LowRankState::light}) {
    Problem p = make_problem();
    LiMuon opt(p.params, acc_opts(s, true));
    opt.step(p.closure());  // one evaluation: nothing is seeded on the first call
    // Problem::closure zeroes .grad by hand: the seed would be silently lost.
    try {
      opt.step(p.closure());
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("zero_grad"), std::string::npos) << e.what();
    }
    // Dropping a seeded gradient (set to none) is named as such, even through the optimizer's zero_grad.
    auto dropping = [&]() {
      p.params[0].mutable_grad().reset();
      opt.zero_grad(false);
      auto l = p.loss();
      l.backward();
      return l.detach();
    };
    try {
      opt.step(dropping);
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("dropped"), std::string::npos) << e.what();
    }
    // After a refused call the next call is an ordinary one, with every gradient cleared first.
    auto good = optimizer_closure(p, opt);
    Problem q = make_problem();
    for (size_t i = 0; i < 3; ++i) q.params[i].detach().copy_(p.params[i].detach());
    for (int t = 0; t < 3; ++t) opt.step(good);
    for (const auto& w : p.params) EXPECT_TRUE(torch::isfinite(w).all().item<bool>());
    EXPECT_GT(rel_diff(p.params[0], q.params[0]), 1e-6);
  }
}

TEST(LiMuonAccumulate, LeavesOtherModesAndTheFirstCallAlone) {
  // none keeps no copy of g̃ (its M is updated in place) and approx evaluates once: the option is
  // accepted and changes nothing, bit for bit.
  for (auto st : {Storm::exact, Storm::approx})
    for (auto s : {LowRankState::none, LowRankState::paper, LowRankState::light}) {
      if (st == Storm::exact && s != LowRankState::none) continue;
      Problem a = make_problem(), b = make_problem();
      LiMuon acc(a.params, acc_opts(s, true).storm(st)), ref(b.params, acc_opts(s, false).storm(st));
      auto ca = optimizer_closure(a, acc), cb = optimizer_closure(b, ref);
      for (int t = 0; t < 4; ++t) {
        a.batch = b.batch = t;
        acc.step(ca);
        ref.step(cb);
      }
      for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(a.params[i], b.params[i])) << to_string(s) << "/" << to_string(st);
    }
}

// ------------------------------------------------------------------ the default orthogonalizer (issue 16 item 4)
// Every optimizer that orthogonalizes with Newton–Schulz defaults to gram_ns: ns5's iteration on the
// Gram matrix, the same map up to rounding (and ns5 bit for bit below aspect ratio 1.5). SUMO and
// MiMuon keep svd, the paper preset svd.
TEST(DefaultOrthogonalizer, IsGramNsForEveryNewtonSchulzOptimizer) {
  EXPECT_EQ(MuonOptions().orthogonalizer(), Orthogonalizer::gram_ns);
  EXPECT_EQ(LiMuonOptions().orthogonalizer(), Orthogonalizer::gram_ns);
  EXPECT_EQ(LiMuonOptions::preset("practical").orthogonalizer(), Orthogonalizer::gram_ns);
  EXPECT_EQ(MuonMVROptions().orthogonalizer(), Orthogonalizer::gram_ns);
  EXPECT_EQ(MuonEqOptions().orthogonalizer(), Orthogonalizer::gram_ns);
  EXPECT_EQ(LionMuonOptions().orthogonalizer(), Orthogonalizer::gram_ns);
  EXPECT_EQ(GluonOptions().orthogonalizer(), Orthogonalizer::gram_ns);
  EXPECT_EQ(LiMuonOptions::paper().orthogonalizer(), Orthogonalizer::svd);
  EXPECT_EQ(SumoOptions().orthogonalizer(), Orthogonalizer::svd);
  EXPECT_EQ(MiMuonOptions().orthogonalizer(), Orthogonalizer::svd);
  // and with gram_ns's own defaults: the ns5 schedule, no fp32 restarts, the 1.5 crossover
  const OrthSpec s = orth_spec_of(MuonOptions());
  EXPECT_EQ(s.method, Orthogonalizer::gram_ns);
  EXPECT_EQ(s.gram_coefficients, GramCoefficients::ns5);
  EXPECT_EQ(s.ns_coefficients, kNs5Coefficients);
  EXPECT_EQ(s.ns_steps, kNs5Steps);
  EXPECT_EQ(s.ns_eps, kNs5Eps);
  EXPECT_FALSE(s.gram_restarts.has_value());
  EXPECT_EQ(s.gram_min_aspect, kGramNsMinAspect);
}

namespace {
// ‖a − b‖_F / ‖b‖_F
double rel_fro(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

// One fp32 weight of `shape` and its displacement after `calls` steps of the optimizer `make`
// builds, on loss ½‖W − T‖²_F (its gradient W − T moves with W, so LiMuon's two evaluations differ).
template <class Make>
torch::Tensor displacement(const std::vector<int64_t>& shape, int calls, Make make) {
  torch::manual_seed(11);
  auto w0 = torch::randn(shape, torch::kFloat);
  auto target = torch::randn(shape, torch::kFloat);
  auto w = w0.clone().set_requires_grad(true);
  auto opt = make(std::vector<torch::Tensor>{w});
  auto closure = [&] {
    opt->zero_grad();
    auto loss = 0.5 * (w - target).pow(2).sum();
    loss.backward();
    return loss.detach();
  };
  for (int t = 0; t < calls; ++t) opt->step(closure);
  return (w.detach() - w0).contiguous();
}
}  // namespace

TEST(DefaultOrthogonalizer, StepEqualsExplicitGramNsAndMatchesNs5ToRounding) {
  // 64×256 (aspect 4: the Gram form) and its transpose, and 64×80 (aspect 1.25: the plain loop).
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{64, 256}, {256, 64}, {64, 80}}) {
    const bool gram_form = std::max(shape[0], shape[1]) >= kGramNsMinAspect * std::min(shape[0], shape[1]);
    const std::string label = std::to_string(shape[0]) + "x" + std::to_string(shape[1]);
    auto muon = [](std::optional<Orthogonalizer> o) {
      return [o](const std::vector<torch::Tensor>& p) {
        MuonOptions opts(0.02);
        if (o) opts.orthogonalizer(*o);
        return std::make_unique<Muon>(p, opts);
      };
    };
    auto limuon = [](std::optional<Orthogonalizer> o) {  // storm exact: three calls, two moves
      return [o](const std::vector<torch::Tensor>& p) {
        LiMuonOptions opts(0.02);
        if (o) opts.orthogonalizer(*o);
        return std::make_unique<LiMuon>(p, opts);
      };
    };
    const auto m_default = displacement(shape, 3, muon(std::nullopt));
    const auto m_gram = displacement(shape, 3, muon(Orthogonalizer::gram_ns));
    const auto m_ns5 = displacement(shape, 3, muon(Orthogonalizer::ns5));
    EXPECT_TRUE(torch::equal(m_default, m_gram)) << "Muon " << label;
    EXPECT_GT(m_ns5.norm().item<double>(), 0.01) << label;
    EXPECT_LT(rel_fro(m_default, m_ns5), 1e-5) << "Muon " << label;
    const auto l_default = displacement(shape, 3, limuon(std::nullopt));
    const auto l_gram = displacement(shape, 3, limuon(Orthogonalizer::gram_ns));
    const auto l_ns5 = displacement(shape, 3, limuon(Orthogonalizer::ns5));
    EXPECT_TRUE(torch::equal(l_default, l_gram)) << "LiMuon " << label;
    EXPECT_GT(l_ns5.norm().item<double>(), 0.01) << label;
    EXPECT_LT(rel_fro(l_default, l_ns5), 1e-5) << "LiMuon " << label;
    // Below the crossover gram_ns is ns5 bit for bit; above it, a different rounding of the same map.
    EXPECT_EQ(torch::equal(m_default, m_ns5), !gram_form) << label;
    EXPECT_EQ(torch::equal(l_default, l_ns5), !gram_form) << label;
  }
}

TEST(DefaultOrthogonalizer, AnArchiveKeepsTheOrthogonalizerItWasWrittenWith) {
  // Archives written while ns5 was the default hold "orthogonalizer": "ns5" explicitly; loading one
  // into an optimizer built with today's defaults runs ns5, and continues bit for bit.
  auto check = [](const std::string& name, auto make_saved, auto make_default, auto orth_of) {
    Problem a = make_problem(torch::kFloat), b = make_problem(torch::kFloat);
    auto saved = make_saved(a.params);
    for (int t = 0; t < 2; ++t) {
      a.batch = t;
      saved->step(a.closure());
    }
    std::stringstream ss;
    torch::save(*saved, ss);
    for (size_t i = 0; i < b.params.size(); ++i) {
      torch::NoGradGuard g;
      b.params[i].copy_(a.params[i]);
    }
    auto loaded = make_default(b.params);
    EXPECT_EQ(orth_of(*loaded), Orthogonalizer::gram_ns) << name;
    torch::load(*loaded, ss);
    EXPECT_EQ(orth_of(*loaded), Orthogonalizer::ns5) << name;
    for (int t = 2; t < 4; ++t) {
      a.batch = b.batch = t;
      saved->step(a.closure());
      loaded->step(b.closure());
      for (size_t i = 0; i < a.params.size(); ++i)
        EXPECT_TRUE(torch::equal(a.params[i], b.params[i])) << name << " call " << t << " param " << i;
    }
  };
  using P = std::vector<torch::Tensor>;
  check("Muon", [](const P& p) { return std::make_unique<Muon>(p, MuonOptions(0.05).orthogonalizer(Orthogonalizer::ns5)); },
        [](const P& p) { return std::make_unique<Muon>(p, MuonOptions(0.05)); },
        [](const Muon& o) { return static_cast<const MuonOptions&>(o.param_groups()[0].options()).orthogonalizer(); });
  check("LiMuon",
        [](const P& p) { return std::make_unique<LiMuon>(p, LiMuonOptions(0.05).orthogonalizer(Orthogonalizer::ns5)); },
        [](const P& p) { return std::make_unique<LiMuon>(p, LiMuonOptions(0.05)); },
        [](const LiMuon& o) { return static_cast<const LiMuonOptions&>(o.param_groups()[0].options()).orthogonalizer(); });
  check("MuonEq",
        [](const P& p) { return std::make_unique<MuonEq>(p, MuonEqOptions(0.05).orthogonalizer(Orthogonalizer::ns5)); },
        [](const P& p) { return std::make_unique<MuonEq>(p, MuonEqOptions(0.05)); },
        [](const MuonEq& o) { return static_cast<const MuonEqOptions&>(o.param_groups()[0].options()).orthogonalizer(); });

  // An options archive without the key is refused, not read with today's default.
  torch::serialize::OutputArchive full;
  MuonOptions(0.05).orthogonalizer(Orthogonalizer::ns5).serialize(full);
  std::stringstream full_bytes;
  full.save_to(full_bytes);
  torch::serialize::InputArchive full_in;
  full_in.load_from(full_bytes);
  torch::serialize::OutputArchive without;
  for (const auto& key : full_in.keys()) {
    if (key == "orthogonalizer") continue;
    c10::IValue v;
    ASSERT_TRUE(full_in.try_read(key, v)) << key;
    without.write(key, v);
  }
  std::stringstream without_bytes;
  without.save_to(without_bytes);
  torch::serialize::InputArchive in;
  in.load_from(without_bytes);
  MuonOptions o;
  try {
    o.serialize(in);
    ADD_FAILURE() << "an archive without the orthogonalizer loaded";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("orthogonalizer"), std::string::npos) << e.what();
  }
}
