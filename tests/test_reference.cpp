// The C++ optimizers against float64 trajectories from the independent Python reference
// (reference/make_reference.py): every Muon and LiMuon configuration there, every call.
#include "limuon/optim/limuon.h"
#include "limuon/optim/muon.h"
#include "test_support.h"

#include <gtest/gtest.h>

using namespace limuon;
using namespace limuon::test;

namespace {

double num(const RefConfig& c, const std::string& k) { return std::stod(c.opts.at(k)); }
int64_t integer(const RefConfig& c, const std::string& k) { return std::stoll(c.opts.at(k)); }

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const RefConfig& c, const std::vector<torch::Tensor>& params) {
  if (c.kind == "muon") {
    MuonOptions o(num(c, "lr"));
    o.momentum(num(c, "momentum"))
        .nesterov(c.opts.at("nesterov") == "True")
        .weight_decay(num(c, "weight_decay"))
        .adjust_lr(parse_adjust_lr(c.opts.at("adjust_lr")))
        .orthogonalizer(parse_orthogonalizer(c.opts.at("orthogonalizer")))
        .rank(integer(c, "rank"))
        .oversample(integer(c, "oversample"))
        .power_iters(integer(c, "power_iters"))
        .seed(static_cast<uint64_t>(integer(c, "seed")));
    return std::make_unique<Muon>(params, o);
  }
  LiMuonOptions o(num(c, "lr"));
  o.beta(num(c, "beta"))
      .gamma(num(c, "gamma"))
      .weight_decay(num(c, "weight_decay"))
      .adjust_lr(parse_adjust_lr(c.opts.at("adjust_lr")))
      .orthogonalizer(parse_orthogonalizer(c.opts.at("orthogonalizer")))
      .rank(integer(c, "rank"))
      .oversample(integer(c, "oversample"))
      .power_iters(integer(c, "power_iters"))
      .lowrank_state(parse_lowrank_state(c.opts.at("lowrank_state")))
      .storm(parse_storm(c.opts.at("storm")))
      .seed(static_cast<uint64_t>(integer(c, "seed")));
  return std::make_unique<LiMuon>(params, o);
}

class ReferenceTrajectory : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(ReferenceTrajectory, MatchesFloat64Reference) {
  const auto& ref = reference();
  const RefConfig* cfg = nullptr;
  for (const auto& c : ref.configs)
    if (c.name == GetParam()) cfg = &c;
  ASSERT_NE(cfg, nullptr);
  Problem prob = make_problem(torch::kDouble);
  auto opt = make_optimizer(*cfg, prob.params);
  const char* names[] = {"W1", "W2", "W3"};
  for (int t = 0; t < ref.calls; ++t) {
    prob.batch = t;
    auto loss = opt->step(prob.closure());
    const std::string key = cfg->name + "/" + std::to_string(t);
    EXPECT_NEAR(loss.item<double>(), ref.losses.at(key), 1e-10 * (1 + std::abs(ref.losses.at(key)))) << key;
    for (int k = 0; k < 3; ++k) {
      const auto& expect = ref.at("traj/" + key + "/" + names[k]);
      EXPECT_LT(rel_diff(prob.params[k], expect), 1e-9) << key << " " << names[k];
    }
  }
  // The weights moved: a trajectory test on a run that never moves would prove nothing.
  EXPECT_GT(rel_diff(prob.params[0], ref.at("init/W1")), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(
    Reference, ReferenceTrajectory,
    ::testing::Values("muon_ns5", "muon_svd_plain", "muon_pe_spectral", "muon_rsvd", "limuon_none_ns5",
                      "limuon_none_svd", "limuon_none_pe", "limuon_none_rsvd", "limuon_paper_ns5",
                      "limuon_paper_svd_q1", "limuon_light", "limuon_light_q2", "limuon_approx_none",
                      "limuon_approx_paper", "limuon_approx_light"),
    [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(Reference, EveryConfigurationIsTested) {
  // Adding a configuration to the generator without listing it above must fail.
  EXPECT_EQ(reference().configs.size(), 15u);
}
