// Gluon (arXiv 2505.13416): the stochastic (momentum, decaying step) and deterministic ((L0, L1)
// step size) layer-wise LMO methods (§4; see gluon.h).
#include "limuon/optim/gluon.h"

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

std::string to_string(GluonMode m) { return m == GluonMode::stochastic ? "stochastic" : "deterministic"; }

GluonMode parse_gluon_mode(const std::string& name) {
  if (name == "stochastic") return GluonMode::stochastic;
  if (name == "deterministic") return GluonMode::deterministic;
  throw std::invalid_argument("mode: unknown value '" + name + "' (valid: stochastic, deterministic)");
}

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
  io::put(a, "mode", to_string(mode()));
  io::put(a, "beta_schedule", beta_schedule());
  io::put(a, "momentum", momentum());
  io::put(a, "nesterov", nesterov());
  io::put(a, "step_decay", step_decay());
  io::put(a, "l0", l0());
  io::put(a, "l1", l1());
}

void GluonOptions::serialize(torch::serialize::InputArchive& a) {
  io::get_shared_options(a, *this);
  // The earlier Gluon (momentum fed to the (L0, L1) rule) is neither of the paper's forms: its
  // checkpoints cannot be continued.
  c10::IValue probe;
  if (!a.try_read("mode", probe))
    throw std::runtime_error(
        "optimizer checkpoint: Gluon options without 'mode' were written by limuon's earlier Gluon, whose step "
        "rule was replaced by the paper's two forms (arXiv 2505.13416); it cannot be continued");
  mode(parse_gluon_mode(io::get_string(a, "mode")));
  beta_schedule(io::get_bool(a, "beta_schedule"));
  momentum(io::get_double(a, "momentum"));
  nesterov(io::get_bool(a, "nesterov"));
  step_decay(io::get_bool(a, "step_decay"));
  l0(io::get_double(a, "l0"));
  l1(io::get_double(a, "l1"));
}

bool operator==(const GluonOptions& l, const GluonOptions& r) {
  return io::shared_options_equal(l, r) && l.mode() == r.mode() && l.beta_schedule() == r.beta_schedule() &&
         l.momentum() == r.momentum() && l.nesterov() == r.nesterov() && l.step_decay() == r.step_decay() &&
         l.l0() == r.l0() && l.l1() == r.l1();
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
    const double s = lr_scale(o.adjust_lr(), it.rows, it.cols);
    if (o.mode() == GluonMode::deterministic) {
      // Algorithm 2: t_k = ‖G‖_dual/(L0 + L1‖G‖_dual) with the exact nuclear norm of the current G.
      const double dual = s * at::linalg_svdvals(it.grad).sum().item<double>();
      const double denom = o.l0() + o.l1() * dual;
      out[i].to_orth = it.grad;
      out[i].scale = s * (dual > 0 && denom > 0 ? dual / denom : 0.0);
    } else {
      // Algorithm 1: β_k = 1 − (k + 1)^−½ (β_0 = 0: M_0 = G_0), step (k + 1)^−¾.
      const double k1 = static_cast<double>(it.state->step() + 1);
      const double beta = o.beta_schedule() ? 1.0 - 1.0 / std::sqrt(k1) : o.momentum();
      out[i].to_orth = muon_momentum(*it.state, it.grad, beta, o.nesterov());
      out[i].scale = o.step_decay() ? s * std::pow(k1, -0.75) : s;
    }
  }
  return out;
}

}  // namespace limuon
