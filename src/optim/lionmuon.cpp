// LionMuon (arXiv 2605.19811): Lion's momentum with a Muon step every `period` steps and sign steps in between (§4).
#include "limuon/optim/lionmuon.h"

#include "state_io.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace limuon {

namespace {
constexpr const char* kKind = "lionmuon";
constexpr const char* kName = "LionMuon";
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

LionMuonOptions::LionMuonOptions(double lr) : lr_(lr) {}
double LionMuonOptions::get_lr() const { return lr(); }
void LionMuonOptions::set_lr(const double lr) { this->lr(lr); }

void LionMuonOptions::validate() const {
  io::validate_shared_options(kName, *this);
  check_range(kName, "beta1", beta1(), 0.0, 1.0, false, true);
  check_range(kName, "beta2", beta2(), 0.0, 1.0, false, true);
  check_at_least(kName, "period", period(), 1);
  check_range(kName, "sign_lr_ratio", sign_lr_ratio(), 0.0, kInf, true, true);
}

void LionMuonOptions::serialize(torch::serialize::OutputArchive& a) const {
  io::put_shared_options(a, *this);
  io::put(a, "beta1", beta1());
  io::put(a, "beta2", beta2());
  io::put(a, "period", period());
  io::put(a, "sign_lr_ratio", sign_lr_ratio());
}

void LionMuonOptions::serialize(torch::serialize::InputArchive& a) {
  io::get_shared_options(a, *this);
  beta1(io::get_double(a, "beta1"));
  beta2(io::get_double(a, "beta2"));
  period(io::get_int(a, "period"));
  sign_lr_ratio(io::get_double(a, "sign_lr_ratio"));
}

bool operator==(const LionMuonOptions& l, const LionMuonOptions& r) {
  return io::shared_options_equal(l, r) && l.beta1() == r.beta1() && l.beta2() == r.beta2() && l.period() == r.period() && l.sign_lr_ratio() == r.sign_lr_ratio();
}

LionMuon::LionMuon(std::vector<torch::optim::OptimizerParamGroup> param_groups, LionMuonOptions defaults)
    : MuonFamily(std::move(param_groups), std::make_unique<LionMuonOptions>(defaults), kKind, kName) {
  validate_all();
}

LionMuon::LionMuon(std::vector<at::Tensor> params, LionMuonOptions defaults)
    : LionMuon({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

SharedOptions LionMuon::shared(const torch::optim::OptimizerOptions& o) const {
  return shared_options_of(static_cast<const LionMuonOptions&>(o));
}

void LionMuon::validate(const torch::optim::OptimizerOptions& o) const { static_cast<const LionMuonOptions&>(o).validate(); }

void LionMuon::load(torch::serialize::InputArchive& archive) {
  auto c = io::load_optimizer<FamilyParamState, LionMuonOptions>(archive, *this, kKind);
  evaluations_ = c.calls;
  nonfinite_skips_ = c.nonfinite_skips;
}

std::vector<MuonFamily::Direction> LionMuon::directions(const torch::optim::OptimizerOptions& opts,
                                                       std::vector<Item>& items) {
  const auto& o = static_cast<const LionMuonOptions&>(opts);
  std::vector<Direction> out(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    auto& it = items[i];
    auto& s = *it.state;
    if (!s.momentum().defined()) s.momentum(at::zeros(it.grad.sizes(), it.grad.options()));
    // lerp, as Muon's buffer update, so that β1 = β2 reproduces Muon's momentum bit for bit.
    at::Tensor u = s.momentum().lerp(it.grad, 1.0 - o.beta1());
    if (s.step() % o.period() == 0) {
      out[i].to_orth = u;
      out[i].scale = lr_scale(o.adjust_lr(), it.rows, it.cols);
    } else {
      out[i].direction = u.sign();
      out[i].lr_factor = o.sign_lr_ratio();
    }
    s.momentum().lerp_(it.grad, 1.0 - o.beta2());
  }
  return out;
}

}  // namespace limuon
