// MuonEq (arXiv 2603.28254): Muon with the momentum equilibrated before orthogonalization (§4; see muoneq.h).
#include "limuon/optim/muoneq.h"

#include "state_io.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace limuon {

namespace {
constexpr const char* kKind = "muoneq";
constexpr const char* kName = "MuonEq";
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

MuonEqOptions::MuonEqOptions(double lr) : lr_(lr) {}
double MuonEqOptions::get_lr() const { return lr(); }
void MuonEqOptions::set_lr(const double lr) { this->lr(lr); }

void MuonEqOptions::validate() const {
  io::validate_shared_options(kName, *this);
  check_range(kName, "momentum", momentum(), 0.0, 1.0, false, true);
  check_range(kName, "exponent", exponent(), -kInf, 0.0, true, true);
  check_range(kName, "eps", eps(), 0.0, kInf, false, true);
  check_at_least(kName, "phase", phase(), 0);
}

void MuonEqOptions::serialize(torch::serialize::OutputArchive& a) const {
  io::put_shared_options(a, *this);
  io::put(a, "momentum", momentum());
  io::put(a, "nesterov", nesterov());
  io::put(a, "equilibrate", to_string(equilibrate()));
  io::put(a, "exponent", exponent());
  io::put(a, "eps", eps());
  io::put(a, "phase", phase());
}

void MuonEqOptions::serialize(torch::serialize::InputArchive& a) {
  io::get_shared_options(a, *this);
  momentum(io::get_double(a, "momentum"));
  nesterov(io::get_bool(a, "nesterov"));
  equilibrate(parse_equilibrate(io::get_string(a, "equilibrate")));
  // Archives from before these options continue the earlier form: `both` at −¼, no eps.
  exponent(io::get_double_or(a, "exponent", equilibrate() == Equilibrate::both ? -0.25 : -0.5));
  eps(io::get_double_or(a, "eps", 0.0));
  phase(io::get_int_or(a, "phase", 0));
}

bool operator==(const MuonEqOptions& l, const MuonEqOptions& r) {
  return io::shared_options_equal(l, r) && l.momentum() == r.momentum() && l.nesterov() == r.nesterov() && l.equilibrate() == r.equilibrate() &&
         l.exponent() == r.exponent() && l.eps() == r.eps() && l.phase() == r.phase();
}

MuonEq::MuonEq(std::vector<torch::optim::OptimizerParamGroup> param_groups, MuonEqOptions defaults)
    : MuonFamily(std::move(param_groups), std::make_unique<MuonEqOptions>(defaults), kKind, kName) {
  validate_all();
}

MuonEq::MuonEq(std::vector<at::Tensor> params, MuonEqOptions defaults)
    : MuonEq({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

SharedOptions MuonEq::shared(const torch::optim::OptimizerOptions& o) const {
  return shared_options_of(static_cast<const MuonEqOptions&>(o));
}

void MuonEq::validate(const torch::optim::OptimizerOptions& o) const { static_cast<const MuonEqOptions&>(o).validate(); }

void MuonEq::load(torch::serialize::InputArchive& archive) {
  auto c = io::load_optimizer<FamilyParamState, MuonEqOptions>(archive, *this, kKind);
  evaluations_ = c.calls;
  nonfinite_skips_ = c.nonfinite_skips;
}

std::vector<MuonFamily::Direction> MuonEq::directions(const torch::optim::OptimizerOptions& opts,
                                                     std::vector<Item>& items) {
  const auto& o = static_cast<const MuonEqOptions&>(opts);
  std::vector<Direction> out(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    auto& it = items[i];
    Equilibrate mode = o.equilibrate();
    if (mode == Equilibrate::both && o.phase() > 0 && it.state->step() >= o.phase()) mode = Equilibrate::rows;
    out[i].to_orth = equilibrate(muon_momentum(*it.state, it.grad, o.momentum(), o.nesterov()), mode, o.exponent(), o.eps());
    out[i].scale = lr_scale(o.adjust_lr(), it.rows, it.cols);
  }
  return out;
}

}  // namespace limuon
