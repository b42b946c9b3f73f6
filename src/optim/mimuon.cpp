// MiMuon (arXiv 2605.19619): the Muon step when the momentum's spectral gaps reach tau, else the
// momentum step (§4; see mimuon.h).
#include "limuon/optim/mimuon.h"

#include "state_io.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace limuon {

namespace {
constexpr const char* kKind = "mimuon";
constexpr const char* kName = "MiMuon";
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

MiMuonOptions::MiMuonOptions(double lr) : lr_(lr) {}
double MiMuonOptions::get_lr() const { return lr(); }
void MiMuonOptions::set_lr(const double lr) { this->lr(lr); }

void MiMuonOptions::validate() const {
  io::validate_shared_options(kName, *this);
  check_range(kName, "momentum", momentum(), 0.0, 1.0, false, true);
  check_range(kName, "tau", tau(), 0.0, kInf, false, true);
  if (orthogonalizer() != Orthogonalizer::svd)
    throw std::invalid_argument(std::string(kName) + ": orthogonalizer must be svd (the gap test needs the exact singular values), got " +
                                to_string(orthogonalizer()));
}

void MiMuonOptions::serialize(torch::serialize::OutputArchive& a) const {
  io::put_shared_options(a, *this);
  io::put(a, "momentum", momentum());
  io::put(a, "nesterov", nesterov());
  io::put(a, "tau", tau());
}

void MiMuonOptions::serialize(torch::serialize::InputArchive& a) {
  io::get_shared_options(a, *this);
  momentum(io::get_double(a, "momentum"));
  nesterov(io::get_bool(a, "nesterov"));
  tau(io::get_double(a, "tau"));
}

bool operator==(const MiMuonOptions& l, const MiMuonOptions& r) {
  return io::shared_options_equal(l, r) && l.momentum() == r.momentum() && l.nesterov() == r.nesterov() && l.tau() == r.tau();
}

MiMuon::MiMuon(std::vector<torch::optim::OptimizerParamGroup> param_groups, MiMuonOptions defaults)
    : MuonFamily(std::move(param_groups), std::make_unique<MiMuonOptions>(defaults), kKind, kName) {
  validate_all();
}

MiMuon::MiMuon(std::vector<at::Tensor> params, MiMuonOptions defaults)
    : MiMuon({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

SharedOptions MiMuon::shared(const torch::optim::OptimizerOptions& o) const {
  return shared_options_of(static_cast<const MiMuonOptions&>(o));
}

void MiMuon::validate(const torch::optim::OptimizerOptions& o) const { static_cast<const MiMuonOptions&>(o).validate(); }

void MiMuon::load(torch::serialize::InputArchive& archive) {
  auto c = io::load_optimizer<FamilyParamState, MiMuonOptions>(archive, *this, kKind);
  evaluations_ = c.calls;
  nonfinite_skips_ = c.nonfinite_skips;
}

std::vector<MuonFamily::Direction> MiMuon::directions(const torch::optim::OptimizerOptions& opts,
                                                     std::vector<Item>& items) {
  const auto& o = static_cast<const MiMuonOptions&>(opts);
  std::vector<Direction> out(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    auto& it = items[i];
    at::Tensor u = muon_momentum(*it.state, it.grad, o.momentum(), o.nesterov());
    // One SVD serves both the gap test and the Muon step (orth_svd's U Vᵀ, same operations).
    auto usv = at::linalg_svd(u, /*full_matrices=*/false);
    const at::Tensor& sv = std::get<1>(usv);
    const double rtol = static_cast<double>(std::max(it.rows, it.cols)) *
                        (u.scalar_type() == at::kDouble ? std::numeric_limits<double>::epsilon()
                                                        : static_cast<double>(std::numeric_limits<float>::epsilon()));
    // A zero momentum has no polar factor (the SVD's would be arbitrary): its momentum step is none.
    if (sv.max().item<double>() > 0 && min_spectral_gap(sv, rtol) >= o.tau()) {
      out[i].direction = at::matmul(std::get<0>(usv), std::get<2>(usv));
      out[i].scale = lr_scale(o.adjust_lr(), it.rows, it.cols);
      ++muon_steps_;
    } else {
      out[i].direction = u;  // crowded spectrum: U Vᵀ is ill-determined, take the momentum step
      ++momentum_steps_;
    }
  }
  return out;
}

}  // namespace limuon
