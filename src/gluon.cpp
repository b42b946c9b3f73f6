// Gluon: orthogonalized momentum with a per-layer step size from the (L0, L1) smoothness model (§4).
#include "limuon/gluon.h"

#include "state_io.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace limuon {

namespace {
constexpr const char* kKind = "gluon";
constexpr const char* kName = "Gluon";
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

GluonOptions::GluonOptions(double lr) : lr_(lr) {}
double GluonOptions::get_lr() const { return lr(); }
void GluonOptions::set_lr(const double lr) { this->lr(lr); }

void GluonOptions::validate() const {
  io::validate_shared_options(kName, *this);
  check_range(kName, "momentum", momentum(), 0.0, 1.0, false, true);
  check_range(kName, "l0", l0(), 0.0, kInf, false, true);
  check_range(kName, "l1", l1(), 0.0, kInf, false, true);
  if (l0() == 0.0 && l1() == 0.0)
    throw std::invalid_argument(std::string(kName) + ": l0 and l1 must not both be 0 (the step size would be unbounded)");
}

void GluonOptions::serialize(torch::serialize::OutputArchive& a) const {
  io::put_shared_options(a, *this);
  io::put(a, "momentum", momentum());
  io::put(a, "nesterov", nesterov());
  io::put(a, "l0", l0());
  io::put(a, "l1", l1());
}

void GluonOptions::serialize(torch::serialize::InputArchive& a) {
  io::get_shared_options(a, *this);
  momentum(io::get_double(a, "momentum"));
  nesterov(io::get_bool(a, "nesterov"));
  l0(io::get_double(a, "l0"));
  l1(io::get_double(a, "l1"));
}

bool operator==(const GluonOptions& l, const GluonOptions& r) {
  return io::shared_options_equal(l, r) && l.momentum() == r.momentum() && l.nesterov() == r.nesterov() && l.l0() == r.l0() && l.l1() == r.l1();
}

Gluon::Gluon(std::vector<torch::optim::OptimizerParamGroup> param_groups, GluonOptions defaults)
    : MuonFamily(std::move(param_groups), std::make_unique<GluonOptions>(defaults), kKind, kName) {
  validate_all();
}

Gluon::Gluon(std::vector<at::Tensor> params, GluonOptions defaults)
    : Gluon({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

SharedOptions Gluon::shared(const torch::optim::OptimizerOptions& o) const {
  return shared_options_of(static_cast<const GluonOptions&>(o));
}

void Gluon::validate(const torch::optim::OptimizerOptions& o) const { static_cast<const GluonOptions&>(o).validate(); }

void Gluon::load(torch::serialize::InputArchive& archive) {
  auto c = io::load_optimizer<FamilyParamState, GluonOptions>(archive, *this, kKind);
  evaluations_ = c.calls;
  nonfinite_skips_ = c.nonfinite_skips;
}

std::vector<MuonFamily::Direction> Gluon::directions(const torch::optim::OptimizerOptions& opts,
                                                    std::vector<Item>& items) {
  const auto& o = static_cast<const GluonOptions&>(opts);
  std::vector<Direction> out(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    auto& it = items[i];
    out[i].to_orth = muon_momentum(*it.state, it.grad, o.momentum(), o.nesterov());
    out[i].scale = lr_scale(o.adjust_lr(), it.rows, it.cols);
  }
  return out;
}

at::Tensor Gluon::finish(const torch::optim::OptimizerOptions& opts, const Item& item, const at::Tensor& input,
                         const at::Tensor& orthogonalized, Direction& d) {
  const auto& o = static_cast<const GluonOptions&>(opts);
  // ⟨polar(U), U⟩ = Σσ = ‖U‖_*: the dual of the spectral norm, read off the direction already
  // computed instead of a second SVD.
  const double nuclear = std::max(0.0, (orthogonalized * input).sum().item<double>());
  const double denom = o.l0() + o.l1() * nuclear;
  d.scale *= denom > 0 ? nuclear / denom : 0.0;
  return orthogonalized;
}

}  // namespace limuon
