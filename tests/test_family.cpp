// The rest of the Muon family (ALGORITHMS.md §4, the published algorithms) against the float64
// trajectories of reference/make_family_reference.py, the reductions that must hold exactly,
// state sizes and option validation. Save → load → continue, dtypes and the non-finite policy are covered for
// every method by the table in test_optim.cpp.
#include "limuon/optim/gluon.h"
#include "limuon/optim/lionmuon.h"
#include "limuon/optim/mimuon.h"
#include "limuon/optim/muon.h"
#include "limuon/optim/muon_mvr.h"
#include "limuon/optim/muoneq.h"
#include "limuon/optim/sumo.h"
#include "test_support.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

using namespace limuon;
using namespace limuon::test;

namespace {

const Reference& family_reference() {
  static const Reference ref = read_reference(std::string(LIMUON_REFERENCE_DIR) + "/family_trajectories.txt");
  return ref;
}

double num(const RefConfig& c, const std::string& k) { return std::stod(c.opts.at(k)); }
int64_t integer(const RefConfig& c, const std::string& k) { return std::stoll(c.opts.at(k)); }
bool boolean(const RefConfig& c, const std::string& k) { return c.opts.at(k) == "True"; }

template <class O>
O shared(O o, const RefConfig& c) {
  o.weight_decay(num(c, "weight_decay"))
      .adjust_lr(parse_adjust_lr(c.opts.at("adjust_lr")))
      .orthogonalizer(parse_orthogonalizer(c.opts.at("orthogonalizer")))
      .rank(integer(c, "rank"))
      .oversample(integer(c, "oversample"))
      .power_iters(integer(c, "power_iters"))
      .seed(static_cast<uint64_t>(integer(c, "seed")));
  return o;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const RefConfig& c, const std::vector<torch::Tensor>& params) {
  const double lr = num(c, "lr");
  if (c.kind == "muoneq")
    return std::make_unique<MuonEq>(params, shared(MuonEqOptions(lr), c)
                                                .momentum(num(c, "momentum"))
                                                .nesterov(boolean(c, "nesterov"))
                                                .equilibrate(parse_equilibrate(c.opts.at("equilibrate")))
                                                .exponent(num(c, "exponent"))
                                                .eps(num(c, "eps"))
                                                .phase(integer(c, "phase")));
  if (c.kind == "mimuon")
    return std::make_unique<MiMuon>(
        params, shared(MiMuonOptions(lr), c).momentum(num(c, "momentum")).nesterov(boolean(c, "nesterov")).tau(num(c, "tau")));
  if (c.kind == "gluon")
    return std::make_unique<Gluon>(params, shared(GluonOptions(lr), c)
                                               .mode(parse_gluon_mode(c.opts.at("mode")))
                                               .beta_schedule(boolean(c, "beta_schedule"))
                                               .momentum(num(c, "momentum"))
                                               .nesterov(boolean(c, "nesterov"))
                                               .step_decay(boolean(c, "step_decay"))
                                               .l0(num(c, "l0"))
                                               .l1(num(c, "l1")));
  if (c.kind == "lionmuon")
    return std::make_unique<LionMuon>(params, shared(LionMuonOptions(lr), c)
                                                  .beta1(num(c, "beta1"))
                                                  .beta2(num(c, "beta2"))
                                                  .period(integer(c, "period"))
                                                  .sign_lr_ratio(num(c, "sign_lr_ratio")));
  if (c.kind == "sumo")
    return std::make_unique<Sumo>(params, shared(SumoOptions(lr), c)
                                              .momentum(num(c, "momentum"))
                                              .update_interval(integer(c, "update_interval"))
                                              .alpha(num(c, "alpha"))
                                              .outer(boolean(c, "outer"))
                                              .growth_limit(num(c, "growth_limit")));
  if (c.kind == "muon_mvr")
    return std::make_unique<MuonMVR>(params, shared(MuonMVROptions(lr), c)
                                                 .momentum(num(c, "momentum"))
                                                 .nesterov(boolean(c, "nesterov"))
                                                 .gamma(num(c, "gamma"))
                                                 .max_norm(num(c, "max_norm"))
                                                 .clip_inputs(boolean(c, "clip_inputs"))
                                                 .zero_prev_init(boolean(c, "zero_prev_init"))
                                                 .variant(parse_mvr_variant(c.opts.at("variant"))));
  throw std::runtime_error("unknown kind " + c.kind);
}

class FamilyTrajectory : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(FamilyTrajectory, MatchesFloat64Reference) {
  const auto& ref = family_reference();
  const RefConfig* cfg = nullptr;
  for (const auto& c : ref.configs)
    if (c.name == GetParam()) cfg = &c;
  ASSERT_NE(cfg, nullptr);
  ASSERT_EQ(ref.calls, reference().calls);
  Problem prob = make_problem(torch::kDouble);
  auto opt = make_optimizer(*cfg, prob.params);
  const char* names[] = {"W1", "W2", "W3"};
  for (int t = 0; t < ref.calls; ++t) {
    prob.batch = t;
    auto loss = opt->step(prob.closure());
    const std::string key = cfg->name + "/" + std::to_string(t);
    EXPECT_NEAR(loss.item<double>(), ref.losses.at(key), 1e-10 * (1 + std::abs(ref.losses.at(key)))) << key;
    for (int k = 0; k < 3; ++k)
      EXPECT_LT(rel_diff(prob.params[k], ref.tensors.at("traj/" + key + "/" + names[k])), 1e-9) << key << " " << names[k];
  }
  EXPECT_GT(rel_diff(prob.params[0], reference().at("init/W1")), 1e-3);
}

const std::vector<std::string> kFamilyConfigs = {
    "muoneq_rows",      "muoneq_cols_svd",      "muoneq_both_pe",
    "muoneq_both_quarter", "muoneq_both_phase", "mimuon_mixed",
    "mimuon_muon",      "gluon_stochastic",     "gluon_stochastic_const_svd",
    "gluon_deterministic_svd", "gluon_deterministic_ns5", "lionmuon_p2",
    "lionmuon_p3_svd",  "sumo_k2",              "sumo_k3_limiter_ns5",
    "sumo_r1_no_outer", "mvr1",                 "mvr1_old_form",
    "mvr1_nocap_svd",   "mvr2",                 "mvr2_nesterov_clip_pe"};

INSTANTIATE_TEST_SUITE_P(Family, FamilyTrajectory, ::testing::ValuesIn(kFamilyConfigs),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(FamilyReferenceFile, EveryConfigurationIsTested) {
  EXPECT_EQ(family_reference().configs.size(), kFamilyConfigs.size());
}

// ---------------------------------------------------------------- reductions

namespace {
// Runs two optimizers side by side on the same batches; returns the worst rel_diff over calls.
double max_divergence(torch::optim::Optimizer& a, Problem& pa, torch::optim::Optimizer& b, Problem& pb, int calls,
                      const std::function<torch::Tensor()>& closure_b = nullptr) {
  double worst = 0;
  for (int t = 0; t < calls; ++t) {
    pa.batch = pb.batch = t;
    a.step(pa.closure());
    b.step(closure_b ? closure_b : pb.closure());
    for (size_t i = 0; i < 3; ++i) worst = std::max(worst, rel_diff(pa.params[i], pb.params[i]));
  }
  return worst;
}

bool bit_identical(const Problem& a, const Problem& b) {
  for (size_t i = 0; i < 3; ++i)
    if (!torch::equal(a.params[i], b.params[i])) return false;
  return true;
}
}  // namespace

TEST(FamilyReduction, MuonEqWithoutEquilibrationIsMuonBitForBit) {
  for (bool nesterov : {true, false}) {
    Problem a = make_problem(torch::kFloat), b = make_problem(torch::kFloat);
    MuonEq eq(a.params, MuonEqOptions(0.05).equilibrate(Equilibrate::none).nesterov(nesterov).weight_decay(0.1)
                            .adjust_lr(AdjustLr::original));
    Muon muon(b.params, MuonOptions(0.05).nesterov(nesterov).weight_decay(0.1));
    max_divergence(eq, a, muon, b, 6);
    EXPECT_TRUE(bit_identical(a, b)) << "nesterov " << nesterov;
  }
  // and equilibration does change the run
  Problem c = make_problem(), d = make_problem();
  MuonEq rows(c.params, MuonEqOptions(0.05));
  Muon muon(d.params, MuonOptions(0.05).adjust_lr(AdjustLr::match_rms_adamw));
  EXPECT_GT(max_divergence(rows, c, muon, d, 6), 1e-4);
}

TEST(FamilyReduction, EquilibrateScalesByPowersOfTheSquaredNorms) {
  auto m = torch::randn({5, 7}, torch::kDouble);
  m[2].zero_();
  const auto rn = m.norm(2, {1}, true), cn = m.norm(2, {0}, true);
  // rows at −½: unit rows; a zero row stays zero
  auto r = equilibrate(m, Equilibrate::rows).norm(2, {1});
  EXPECT_NEAR(r[0].item<double>(), 1.0, 1e-12);
  EXPECT_NEAR(r[4].item<double>(), 1.0, 1e-12);
  EXPECT_EQ(r[2].item<double>(), 0.0) << "a zero row stays zero";
  auto c = equilibrate(m, Equilibrate::cols).norm(2, {0});
  EXPECT_LT((c - 1).abs().max().item<double>(), 1e-12);
  // both at −½ (the authors' default): divided by ‖row‖·‖col‖, both norms of the same input
  auto expect = m / rn.clamp_min(1e-30) / cn;
  EXPECT_LT((equilibrate(m, Equilibrate::both) - expect).abs().max().item<double>(), 1e-14);
  // both at −¼ (the alternative; limuon's earlier `both`): divided by √‖row‖·√‖col‖
  expect = m / rn.clamp_min(1e-30).sqrt() / cn.sqrt();
  EXPECT_LT((equilibrate(m, Equilibrate::both, -0.25) - expect).abs().max().item<double>(), 1e-14);
  // eps enters under the power: rows·(‖row‖² + eps)^−½
  expect = m * (rn.square() + 0.5).pow(-0.5);
  EXPECT_LT((equilibrate(m, Equilibrate::rows, -0.5, 0.5) - expect).abs().max().item<double>(), 1e-14);
  EXPECT_TRUE(torch::equal(equilibrate(m, Equilibrate::none), m));
}

TEST(FamilyReduction, MuonEqPhaseSwitchesBothToRows) {
  // phase = 2: `both` for steps 0 and 1, then `rows`; the same as switching the option by hand.
  Problem a = make_problem(), b = make_problem();
  MuonEq phased(a.params, MuonEqOptions(0.05).equilibrate(Equilibrate::both).phase(2));
  MuonEq by_hand(b.params, MuonEqOptions(0.05).equilibrate(Equilibrate::both));
  for (int t = 0; t < 5; ++t) {
    if (t == 2) static_cast<MuonEqOptions&>(by_hand.param_groups()[0].options()).equilibrate(Equilibrate::rows);
    a.batch = b.batch = t;
    phased.step(a.closure());
    by_hand.step(b.closure());
    for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(a.params[i], b.params[i])) << "step " << t;
  }
  // and it is not `both` throughout
  Problem c = make_problem(), d = make_problem();
  MuonEq phased2(c.params, MuonEqOptions(0.05).equilibrate(Equilibrate::both).phase(2));
  MuonEq both(d.params, MuonEqOptions(0.05).equilibrate(Equilibrate::both));
  EXPECT_GT(max_divergence(phased2, c, both, d, 4), 1e-4);
}

TEST(FamilyReduction, LionMuonWithPeriodOneAndEqualBetasIsMuonBitForBit) {
  Problem a = make_problem(torch::kFloat), b = make_problem(torch::kFloat);
  LionMuon lion(a.params, LionMuonOptions(0.05).period(1).beta1(0.9).beta2(0.9).weight_decay(0.1));
  Muon muon(b.params,
            MuonOptions(0.05).momentum(0.9).nesterov(false).adjust_lr(AdjustLr::match_rms_adamw).weight_decay(0.1));
  max_divergence(lion, a, muon, b, 6);
  EXPECT_TRUE(bit_identical(a, b));
  // With period 2 every other step is a sign step: the runs part.
  Problem c = make_problem(), d = make_problem();
  LionMuon lion2(c.params, LionMuonOptions(0.05).period(2).beta1(0.9).beta2(0.9));
  Muon muon2(d.params, MuonOptions(0.05).momentum(0.9).nesterov(false).adjust_lr(AdjustLr::match_rms_adamw));
  EXPECT_GT(max_divergence(lion2, c, muon2, d, 6), 1e-4);
  EXPECT_EQ(LionMuonOptions().sign_lr_ratio(), 0.05) << "the paper's tuned ratio at 124M/355M";
}

TEST(FamilyReduction, MiMuonWithTauZeroIsMuonWithExactSvd) {
  // Defaults: EMA momentum without Nesterov, no shape scale.
  Problem a = make_problem(), b = make_problem();
  MiMuon mi(a.params, MiMuonOptions(0.05).tau(0.0).weight_decay(0.1));
  Muon muon(b.params, MuonOptions(0.05).orthogonalizer(Orthogonalizer::svd).nesterov(false).adjust_lr(AdjustLr::none)
                          .weight_decay(0.1));
  EXPECT_LT(max_divergence(mi, a, muon, b, 6), 1e-12);
  EXPECT_EQ(mi.momentum_steps(), 0);
  EXPECT_EQ(mi.muon_steps(), 18);
}

TEST(FamilyReduction, MiMuonWithAHugeTauTakesThePlainMomentumStep) {
  // The gap is absolute and these gradients' singular values are below 10: tau = 1e3 always falls
  // back, W ← W − lr·M with M the plain EMA (no Nesterov by default).
  Problem a = make_problem();
  MiMuon mi(a.params, MiMuonOptions(0.05).tau(1e3).momentum(0.8));
  std::vector<torch::Tensor> w, buf;
  for (const auto& p : a.params) {
    w.push_back(p.detach().clone());
    buf.push_back(torch::zeros({p.size(0), p.numel() / p.size(0)}, torch::kDouble));
  }
  Problem g = make_problem();
  for (int t = 0; t < 4; ++t) {
    a.batch = g.batch = t;
    mi.step(a.closure());
    for (size_t i = 0; i < 3; ++i) g.params[i].detach().copy_(w[i]);
    g.closure()();
    for (size_t i = 0; i < 3; ++i) {
      auto gm = g.params[i].grad().reshape(buf[i].sizes());
      buf[i] = 0.2 * gm + 0.8 * buf[i];
      w[i] = w[i] - 0.05 * buf[i].reshape(w[i].sizes());
      EXPECT_LT(rel_diff(a.params[i], w[i]), 1e-12) << "call " << t << " param " << i;
    }
  }
  EXPECT_EQ(mi.muon_steps(), 0);
  EXPECT_EQ(mi.momentum_steps(), 12);
}

TEST(FamilyReduction, MinSpectralGapIsAbsoluteOverAllPairs) {
  auto s = [](std::vector<double> v) { return torch::tensor(v, torch::kDouble); };
  EXPECT_DOUBLE_EQ(min_spectral_gap(s({4.0, 3.0, 1.0}), 1e-12), 1.0);  // absolute, not relative to σ_max
  EXPECT_DOUBLE_EQ(min_spectral_gap(s({1.0, 4.0, 3.5}), 1e-12), 0.5);  // all pairs, in any order
  EXPECT_EQ(min_spectral_gap(s({4.0, 4.0, 2.0, 0.0}), 1e-12), 0.0);    // a repeated value is a zero gap
  EXPECT_EQ(min_spectral_gap(s({2.0, 2.0}), 1e-12), 0.0);
  EXPECT_DOUBLE_EQ(min_spectral_gap(s({4.0, 2.0, 1e-20}), 1e-12), 2.0);  // zero values are not counted
  EXPECT_TRUE(std::isinf(min_spectral_gap(s({3.0, 0.0}), 1e-12)));
  EXPECT_TRUE(std::isinf(min_spectral_gap(s({0.0, 0.0}), 1e-12)));
}

TEST(FamilyReduction, SumoAtFullRankWithIntervalOneIsItsDenseForm) {
  // Q Qᵀ = I at full rank: G_⊥ = 0, Q·polar(Qᵀ M) = polar(M) and the subspace moment is the dense
  // heavy-ball sum, which polar() sees as Muon's EMA up to the factor (1 − μ). With and without
  // the G_⊥ term.
  for (bool outer : {true, false})
    for (double wd : {0.0, 0.1}) {
      Problem a = make_problem(), b = make_problem();
      Sumo sumo(a.params, SumoOptions(0.05).rank(5).oversample(0).update_interval(1).momentum(0.9).weight_decay(wd)
                              .adjust_lr(AdjustLr::original).outer(outer));
      Muon muon(b.params,
                MuonOptions(0.05).orthogonalizer(Orthogonalizer::svd).nesterov(false).momentum(0.9).weight_decay(wd));
      EXPECT_LT(max_divergence(sumo, a, muon, b, 6), 1e-9) << "wd " << wd << " outer " << outer;
      EXPECT_GT(rel_diff(a.params[0], reference().at("init/W1")), 1e-3);
    }
  // At rank 1 it is a different method.
  Problem c = make_problem(), d = make_problem();
  Sumo low(c.params, SumoOptions(0.05).rank(1).update_interval(1).momentum(0.9).adjust_lr(AdjustLr::original));
  Muon muon(d.params, MuonOptions(0.05).orthogonalizer(Orthogonalizer::svd).nesterov(false).momentum(0.9));
  EXPECT_GT(max_divergence(low, c, muon, d, 6), 1e-4);
}

TEST(FamilyReduction, SumoStepAddsTheGradientOutsideTheSubspace) {
  // Block 4: the default step minus the rank-r step is −lr·G_⊥, G_⊥ = G − QQᵀG (or G − GQQᵀ).
  Problem a = make_problem(), b = make_problem(), g = make_problem();
  Sumo full(a.params, SumoOptions(0.05).rank(1).weight_decay(0.1));
  Sumo low(b.params, SumoOptions(0.05).rank(1).weight_decay(0.1).outer(false));
  full.step(a.closure());
  low.step(b.closure());
  g.closure()();
  for (size_t i = 0; i < 3; ++i) {
    const auto& st = static_cast<const FamilyParamState&>(*full.state().at(state_key(a.params[i])));
    const auto q = st.basis();
    const auto grad = g.params[i].grad().reshape({g.params[i].size(0), -1});
    const auto perp = q.size(0) == grad.size(0) ? grad - q.matmul(q.t().matmul(grad)) : grad - grad.matmul(q).matmul(q.t());
    EXPECT_GT(perp.norm().item<double>(), 1e-3) << "param " << i;
    const auto diff = (b.params[i] - a.params[i]).reshape(perp.sizes());
    EXPECT_LT((diff - 0.05 * perp).abs().max().item<double>(), 1e-14) << "param " << i;
  }
}

TEST(FamilyReduction, SumoLimiterCapsTheGrowthOfTheSubspaceStep) {
  // growth_limit 1 with ns5 (‖O‖_F varies): the stored ‖O_t‖ never grows; without it, it does.
  for (double limit : {1.0, 0.0}) {
    Problem p = make_problem();
    Sumo opt(p.params, SumoOptions(0.05).rank(2).oversample(1).power_iters(1).momentum(0.8).update_interval(3)
                           .orthogonalizer(Orthogonalizer::ns5).growth_limit(limit == 0 ? 1e6 : limit));
    std::vector<double> last(3, 0.0);
    bool grew = false;
    for (int t = 0; t < 6; ++t) {
      p.batch = t;
      opt.step(p.closure());
      for (size_t i = 0; i < 3; ++i) {
        const double n = static_cast<const FamilyParamState&>(*opt.state().at(state_key(p.params[i]))).last_norm();
        if (t > 0 && n > last[i] * (1 + 1e-12)) grew = true;
        last[i] = n;
      }
    }
    EXPECT_EQ(grew, limit == 0) << "limit " << limit;
  }
}

TEST(FamilyReduction, GluonStochasticWithConstantMomentumAndNoDecayIsMuonBitForBit) {
  Problem a = make_problem(torch::kFloat), b = make_problem(torch::kFloat);
  Gluon gluon(a.params, GluonOptions(0.05).beta_schedule(false).momentum(0.9).step_decay(false)
                            .adjust_lr(AdjustLr::original).weight_decay(0.1));
  Muon muon(b.params, MuonOptions(0.05).momentum(0.9).nesterov(false).weight_decay(0.1));
  max_divergence(gluon, a, muon, b, 6);
  EXPECT_TRUE(bit_identical(a, b));
}

TEST(FamilyReduction, GluonStochasticScheduleByHand) {
  // β_k = 1 − (k+1)^−½ and step (k+1)^−¾: M_0 = G_0 and M_1 = (1 − 2^−½)·... written out, svd.
  Problem a = make_problem(), g = make_problem();
  Gluon gluon(a.params, GluonOptions(0.1).orthogonalizer(Orthogonalizer::svd).adjust_lr(AdjustLr::none));
  std::vector<torch::Tensor> w, m;
  for (const auto& p : a.params) {
    w.push_back(p.detach().clone().reshape({p.size(0), -1}));
    m.push_back(torch::zeros_like(w.back()));
  }
  for (int k = 0; k < 3; ++k) {
    a.batch = g.batch = k;
    gluon.step(a.closure());
    for (size_t i = 0; i < 3; ++i) g.params[i].detach().copy_(w[i].reshape(g.params[i].sizes()));
    g.closure()();
    const double beta = 1.0 - 1.0 / std::sqrt(k + 1.0);
    for (size_t i = 0; i < 3; ++i) {
      m[i] = beta * m[i] + (1 - beta) * g.params[i].grad().reshape(w[i].sizes());
      auto usv = torch::linalg_svd(m[i], false);
      w[i] = w[i] - 0.1 * std::pow(k + 1.0, -0.75) * torch::matmul(std::get<0>(usv), std::get<2>(usv));
      EXPECT_LT(rel_diff(a.params[i].reshape(w[i].sizes()), w[i]), 1e-12) << "step " << k << " param " << i;
    }
  }
}

TEST(FamilyReduction, GluonDeterministicWithL0ZeroIsMuonWithoutMomentum) {
  // t = ‖G‖/(0 + l1‖G‖) = 1/l1: lr·t = 0.05, Muon with momentum 0 on the current gradient.
  Problem a = make_problem(), b = make_problem();
  Gluon gluon(a.params, GluonOptions(0.1).mode(GluonMode::deterministic).l0(0).l1(2.0).orthogonalizer(Orthogonalizer::svd)
                            .adjust_lr(AdjustLr::original).weight_decay(0.5));
  Muon muon(b.params, MuonOptions(0.05).momentum(0.0).orthogonalizer(Orthogonalizer::svd).weight_decay(1.0));
  EXPECT_LT(max_divergence(gluon, a, muon, b, 6), 1e-12);
  // and with l0 > 0 the step shrinks with the gradient's nuclear norm: t < 1/l1
  Problem c = make_problem(), d = make_problem();
  Gluon damped(c.params, GluonOptions(0.1).mode(GluonMode::deterministic).l0(1.0).l1(2.0).orthogonalizer(Orthogonalizer::svd)
                             .adjust_lr(AdjustLr::original).weight_decay(0.5));
  Muon muon2(d.params, MuonOptions(0.05).momentum(0.0).orthogonalizer(Orthogonalizer::svd).weight_decay(1.0));
  EXPECT_GT(max_divergence(damped, c, muon2, d, 6), 1e-4);
  EXPECT_EQ(damped.state_bytes(), 0) << "the deterministic form keeps no momentum";
}

namespace {
// Muon's closure fed clip(g): every gradient matrix scaled onto the Frobenius ball of radius r.
std::function<torch::Tensor()> clipped_closure(Problem& p, double r) {
  auto inner = p.closure();
  return [&p, inner, r]() {
    auto l = inner();
    torch::NoGradGuard g;
    for (auto& w : p.params) {
      const double n = w.grad().norm().item<double>();
      if (n > r) w.mutable_grad() = w.grad() * (r / n);
    }
    return l;
  };
}
}  // namespace

TEST(FamilyReduction, Mvr1WithGammaZeroIsMuonOnCappedGradients) {
  // gamma = 0: c = cap(g) (with or without the input clip, which is then the same clip).
  for (bool clip_inputs : {false, true}) {
    Problem a = make_problem(), b = make_problem();
    MuonMVR mvr(a.params, MuonMVROptions(0.05).gamma(0.0).max_norm(0.5).clip_inputs(clip_inputs).nesterov(true)
                              .adjust_lr(AdjustLr::original).weight_decay(0.1));
    Muon muon(b.params, MuonOptions(0.05).weight_decay(0.1));
    double worst = 0;
    for (int t = 0; t < 6; ++t) {
      a.batch = b.batch = t;
      mvr.step(a.closure());
      muon.step(clipped_closure(b, 0.5));
      for (size_t i = 0; i < 3; ++i) worst = std::max(worst, rel_diff(a.params[i], b.params[i]));
    }
    EXPECT_LT(worst, 1e-12) << "clip_inputs " << clip_inputs;
  }
  // Without the cap (max_norm = inf) the defaults are Muon without Nesterov at the Moonlight scale, bit for bit.
  Problem c = make_problem(torch::kFloat), d = make_problem(torch::kFloat);
  MuonMVR plain(c.params, MuonMVROptions(0.05).gamma(0.0).max_norm(std::numeric_limits<double>::infinity()));
  Muon muon2(d.params, MuonOptions(0.05).nesterov(false).adjust_lr(AdjustLr::match_rms_adamw));
  max_divergence(plain, c, muon2, d, 6);
  EXPECT_TRUE(bit_identical(c, d));
  // and the correction matters once gamma > 0
  Problem e = make_problem(), f = make_problem();
  MuonMVR corrected(e.params, MuonMVROptions(0.05).gamma(0.5).max_norm(0.5));
  Muon muon3(f.params, MuonOptions(0.05).nesterov(false).adjust_lr(AdjustLr::match_rms_adamw));
  EXPECT_GT(max_divergence(corrected, e, muon3, f, 6, clipped_closure(f, 0.5)), 1e-4);
}

TEST(FamilyReduction, MvrFirstStepStartsFromAZeroPreviousGradient) {
  // c_0 = cap((1 + k)·g_0), k = γμ/(1 − μ): with γ = 0.5, μ = 0.9 (k = 4.5) and a cap of 1, every
  // c_0 here is capped, so B_0 = 0.1·g_0/‖g_0‖ instead of 0.1·cap(g_0) (zero_prev_init false).
  Problem a = make_problem(), g = make_problem();
  MuonMVR mvr(a.params, MuonMVROptions(0.05).momentum(0.9).gamma(0.5).orthogonalizer(Orthogonalizer::svd));
  mvr.step(a.closure());
  g.closure()();
  for (size_t i = 0; i < 3; ++i) {
    const auto grad = g.params[i].grad().reshape({g.params[i].size(0), -1});
    const auto& st = static_cast<const FamilyParamState&>(*mvr.state().at(state_key(a.params[i])));
    const double n = 5.5 * grad.norm().item<double>();
    ASSERT_GT(n, 1.0);
    EXPECT_LT((st.momentum() - 0.1 * 5.5 * grad / n).abs().max().item<double>(), 1e-15) << "param " << i;
    EXPECT_TRUE(torch::equal(st.prev_grad(), grad)) << "g_prev is the raw gradient";
  }
  // With zero_prev_init false the run differs from the second step on.
  Problem b = make_problem(), c = make_problem();
  MuonMVR zero(b.params, MuonMVROptions(0.05).momentum(0.9).gamma(0.5).max_norm(100.0).orthogonalizer(Orthogonalizer::svd));
  MuonMVR plain(c.params, MuonMVROptions(0.05).momentum(0.9).gamma(0.5).max_norm(100.0).orthogonalizer(Orthogonalizer::svd)
                              .zero_prev_init(false));
  EXPECT_LT(max_divergence(zero, b, plain, c, 1), 1e-12) << "orth is scale-invariant: step 0 is the same";
  EXPECT_GT(max_divergence(zero, b, plain, c, 3), 1e-4);
}

TEST(FamilyReduction, MvrDoesNotClipItsInputsByDefault) {
  // Gradients here have norms up to ~1.8; max_norm 0.5 clips them only with clip_inputs.
  Problem a = make_problem(), b = make_problem();
  MuonMVR raw(a.params, MuonMVROptions(0.05).momentum(0.9).gamma(0.5).max_norm(0.5));
  MuonMVR clipped(b.params, MuonMVROptions(0.05).momentum(0.9).gamma(0.5).max_norm(0.5).clip_inputs(true));
  EXPECT_GT(max_divergence(raw, a, clipped, b, 4), 1e-4);
}

TEST(FamilyReduction, Mvr2WithGammaZeroIsMuonOnCappedGradientsOneCallBehind) {
  // Call c ≥ 1 applies orth(U_{c−1}), U_{c−1} formed from ∇f(W_{c−1}; ξ_{c−1}): Muon's step c−1.
  Problem a = make_problem(), b = make_problem();
  MuonMVR mvr(a.params, MuonMVROptions(0.05).gamma(0.0).max_norm(0.5).variant(MvrVariant::mvr2).nesterov(true)
                            .adjust_lr(AdjustLr::original).weight_decay(0.1));
  Muon muon(b.params, MuonOptions(0.05).weight_decay(0.1));
  a.batch = 0;
  mvr.step(a.closure());
  EXPECT_EQ(a.evaluations, 1);
  EXPECT_TRUE(torch::equal(a.params[0], reference().at("init/W1"))) << "the first call only forms U_0";
  for (int c = 1; c < 6; ++c) {
    a.batch = c;
    b.batch = c - 1;
    mvr.step(a.closure());
    muon.step(clipped_closure(b, 0.5));
    EXPECT_EQ(a.evaluations, 1 + 2 * c);
    for (size_t i = 0; i < 3; ++i) EXPECT_LT(rel_diff(a.params[i], b.params[i]), 1e-12) << "call " << c;
  }
  EXPECT_EQ(mvr.evaluations(), 11);
}

TEST(FamilyReduction, Mvr2WithoutClosureIsAClearError) {
  Problem p = make_problem();
  MuonMVR opt(p.params, MuonMVROptions(0.05).variant(MvrVariant::mvr2));
  try {
    opt.step();
    ADD_FAILURE() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("closure"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- memory and options

TEST(FamilyState, BytesMatchTheFormulas) {
  // Per m×n matrix: MuonEq/MiMuon/Gluon (stochastic)/LionMuon mn; MVR1 2mn (B, g_{t−1}); MVR2
  // mn (B), with Nesterov 2mn (B, pending U); SUMO (m + n)·r, r = min(rank, m, n).
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{5, 3}, {4, 5}, {3, 4}};
  auto total = [&](const std::function<int64_t(int64_t, int64_t)>& per) {
    int64_t e = 0;
    for (auto [m, n] : shapes) e += per(m, n);
    return e * 4;
  };
  auto run = [](MuonFamily& opt, Problem& p) {
    for (int t = 0; t < 3; ++t) {
      p.batch = t;
      opt.step(p.closure());
    }
    return opt.state_bytes();
  };
  auto mn = [](int64_t m, int64_t n) { return m * n; };
  {
    Problem p = make_problem(torch::kFloat);
    MuonEq o(p.params);
    EXPECT_EQ(run(o, p), total(mn));
  }
  {
    Problem p = make_problem(torch::kFloat);
    MiMuon o(p.params);
    EXPECT_EQ(run(o, p), total(mn));
  }
  {
    Problem p = make_problem(torch::kFloat);
    Gluon o(p.params);
    EXPECT_EQ(run(o, p), total(mn));
  }
  {
    Problem p = make_problem(torch::kFloat);
    LionMuon o(p.params);
    EXPECT_EQ(run(o, p), total(mn));
  }
  {
    Problem p = make_problem(torch::kFloat);
    MuonMVR o(p.params);
    EXPECT_EQ(run(o, p), total([](int64_t m, int64_t n) { return 2 * m * n; }));
  }
  {
    Problem p = make_problem(torch::kFloat);
    MuonMVR o(p.params, MuonMVROptions().variant(MvrVariant::mvr2));
    EXPECT_EQ(run(o, p), total(mn)) << "the default (no Nesterov) keeps no pending U";
  }
  for (bool nesterov : {true, false}) {
    Problem p = make_problem(torch::kFloat);
    MuonMVR o(p.params, MuonMVROptions().variant(MvrVariant::mvr2).nesterov(nesterov));
    EXPECT_EQ(run(o, p), total([&](int64_t m, int64_t n) { return (nesterov ? 2 : 1) * m * n; }));
  }
  {
    Problem p = make_problem(torch::kFloat);
    Sumo o(p.params, SumoOptions().rank(2).update_interval(2));
    EXPECT_EQ(run(o, p), total([](int64_t m, int64_t n) { return (m + n) * std::min<int64_t>(2, std::min(m, n)); }));
  }
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

TEST(FamilyOptions, BadValuesNameTheOptionAndTheRange) {
  auto w = [] { return std::vector<torch::Tensor>{torch::randn({4, 3}, torch::requires_grad())}; };
  const double inf = std::numeric_limits<double>::infinity();
  expect_invalid([&] { MuonEq(w(), MuonEqOptions(-1.0)); }, {"MuonEq", "lr", "[0, inf)", "-1"});
  expect_invalid([&] { MuonEq(w(), MuonEqOptions(0.1).momentum(1.0)); }, {"MuonEq", "momentum", "[0, 1)"});
  expect_invalid([&] { MiMuon(w(), MiMuonOptions(0.1).tau(-0.5)); }, {"MiMuon", "tau", "[0, inf)", "-0.5"});
  expect_invalid([&] { MiMuon(w(), MiMuonOptions(0.1).orthogonalizer(Orthogonalizer::ns5)); },
                 {"MiMuon", "orthogonalizer", "svd", "ns5"});
  expect_invalid([&] { Gluon(w(), GluonOptions(0.1).l0(-1)); }, {"Gluon", "l0", "[0, inf)"});
  expect_invalid([&] { Gluon(w(), GluonOptions(0.1).l1(inf)); }, {"Gluon", "l1"});
  expect_invalid([&] { Gluon(w(), GluonOptions(0.1).l0(0).l1(0)); }, {"Gluon", "l0", "l1", "both"});
  expect_invalid([&] { MuonEq(w(), MuonEqOptions(0.1).exponent(0.0)); }, {"MuonEq", "exponent"});
  expect_invalid([&] { MuonEq(w(), MuonEqOptions(0.1).eps(-1e-3)); }, {"MuonEq", "eps", "[0, inf)"});
  expect_invalid([&] { MuonEq(w(), MuonEqOptions(0.1).phase(-1)); }, {"MuonEq", "phase", ">= 0"});
  expect_invalid([&] { Sumo(w(), SumoOptions(0.1).growth_limit(0.5)); }, {"SUMO", "growth_limit", "0 (off)", "[1, inf)"});
  expect_invalid([] { parse_gluon_mode("online"); }, {"stochastic, deterministic"});
  expect_invalid([&] { LionMuon(w(), LionMuonOptions(0.1).beta1(1.0)); }, {"LionMuon", "beta1", "[0, 1)"});
  expect_invalid([&] { LionMuon(w(), LionMuonOptions(0.1).beta2(-0.1)); }, {"LionMuon", "beta2"});
  expect_invalid([&] { LionMuon(w(), LionMuonOptions(0.1).period(0)); }, {"LionMuon", "period", ">= 1", "got 0"});
  expect_invalid([&] { LionMuon(w(), LionMuonOptions(0.1).sign_lr_ratio(0)); }, {"sign_lr_ratio", "(0, inf)"});
  expect_invalid([&] { Sumo(w(), SumoOptions(0.1).update_interval(0)); }, {"SUMO", "update_interval", ">= 1"});
  expect_invalid([&] { Sumo(w(), SumoOptions(0.1).rank(0)); }, {"SUMO", "rank", ">= 1"});
  expect_invalid([&] { Sumo(w(), SumoOptions(0.1).alpha(0)); }, {"SUMO", "alpha", "(0, inf)"});
  expect_invalid([&] { MuonMVR(w(), MuonMVROptions(0.1).gamma(1.5)); }, {"MuonMVR", "gamma", "[0, 1]", "1.5"});
  expect_invalid([&] { MuonMVR(w(), MuonMVROptions(0.1).max_norm(0)); }, {"MuonMVR", "max_norm", "(0, inf]"});
  expect_invalid([&] { MuonMVR(w(), MuonMVROptions(0.1).max_norm(std::nan(""))); }, {"max_norm"});
  expect_invalid([&] { MuonMVR(w(), MuonMVROptions(0.1).weight_decay(-1)); }, {"MuonMVR", "weight_decay"});
  expect_invalid([&] { Gluon(std::vector<torch::Tensor>{torch::randn({7}, torch::requires_grad())}); },
                 {"Gluon", "not a matrix", "AdamW"});
  expect_invalid([] { parse_equilibrate("diag"); }, {"none, rows, cols, both"});
  expect_invalid([] { parse_mvr_variant("mvr3"); }, {"mvr1, mvr2"});
}

TEST(FamilyOptions, StateFromBeforeTheLimiterLoads) {
  // An archive without `last_norm` (written before SUMO's limiter existed) loads with 0.
  torch::serialize::OutputArchive out;
  out.write("step", c10::IValue(static_cast<int64_t>(3)));
  out.write("momentum", torch::ones({2, 2}));
  std::stringstream ss;
  out.save_to(ss);
  torch::serialize::InputArchive in;
  in.load_from(ss);
  FamilyParamState s;
  s.last_norm(5.0);
  s.serialize(in);
  EXPECT_EQ(s.step(), 3);
  EXPECT_EQ(s.last_norm(), 0.0);
  EXPECT_TRUE(torch::equal(s.momentum(), torch::ones({2, 2})));
}

TEST(FamilyOptions, NewOptionsRoundTripThroughTheArchive) {
  auto round_trip = [](const auto& o) {
    using O = std::decay_t<decltype(o)>;
    torch::serialize::OutputArchive out;
    o.serialize(out);
    std::stringstream ss;
    out.save_to(ss);
    torch::serialize::InputArchive in;
    in.load_from(ss);
    O back;
    back.serialize(in);
    return back == o;
  };
  EXPECT_TRUE(round_trip(MuonMVROptions(0.1).clip_inputs(true).zero_prev_init(false)));
  EXPECT_TRUE(round_trip(SumoOptions(0.1).outer(false).growth_limit(1.1)));
  EXPECT_TRUE(round_trip(MuonEqOptions(0.1).exponent(-0.25).eps(1e-6).phase(7)));
  EXPECT_TRUE(round_trip(GluonOptions(0.1).mode(GluonMode::deterministic).beta_schedule(false).step_decay(false)));
  EXPECT_FALSE(MuonMVROptions().clip_inputs(true) == MuonMVROptions());
}

TEST(FamilyOptions, LoadingAnotherMethodsStateFails) {
  Problem p = make_problem(torch::kFloat);
  MuonEq eq(p.params);
  eq.step(p.closure());
  std::stringstream ss;
  torch::save(eq, ss);
  Gluon gluon(p.params);
  try {
    torch::load(gluon, ss);
    ADD_FAILURE() << "loaded MuonEq state into Gluon";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'muoneq'"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(gluon.state().empty());
}
