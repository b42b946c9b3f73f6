// SUMO (arXiv 2505.24749): momentum in a refreshed rank-r gradient subspace, orthogonalized there,
// plus the gradient outside the subspace (ALGORITHMS.md §4; see sumo.h).
#include "limuon/optim/sumo.h"

#include "state_io.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace limuon {

namespace {
constexpr const char* kKind = "sumo";
constexpr const char* kName = "SUMO";
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

SumoOptions::SumoOptions(double lr) : lr_(lr) {}
double SumoOptions::get_lr() const { return lr(); }
void SumoOptions::set_lr(const double lr) { this->lr(lr); }

void SumoOptions::validate() const {
  io::validate_shared_options(kName, *this);
  check_range(kName, "momentum", momentum(), 0.0, 1.0, false, true);
  check_at_least(kName, "update_interval", update_interval(), 1);
  check_range(kName, "alpha", alpha(), 0.0, kInf, true, true);
  if (!(growth_limit() == 0.0 || (growth_limit() >= 1.0 && std::isfinite(growth_limit()))))
    throw std::invalid_argument(std::string(kName) + ": growth_limit must be 0 (off) or in [1, inf), got " +
                                std::to_string(growth_limit()));
}

void SumoOptions::serialize(torch::serialize::OutputArchive& a) const {
  io::put_shared_options(a, *this);
  io::put(a, "momentum", momentum());
  io::put(a, "update_interval", update_interval());
  io::put(a, "alpha", alpha());
  io::put(a, "outer", outer());
  io::put(a, "growth_limit", growth_limit());
}

void SumoOptions::serialize(torch::serialize::InputArchive& a) {
  io::get_shared_options(a, *this);
  momentum(io::get_double(a, "momentum"));
  update_interval(io::get_int(a, "update_interval"));
  alpha(io::get_double(a, "alpha"));
  // Archives from before these options continue the earlier rank-r form.
  outer(io::get_bool_or(a, "outer", false));
  growth_limit(io::get_double_or(a, "growth_limit", 0.0));
}

bool operator==(const SumoOptions& l, const SumoOptions& r) {
  return io::shared_options_equal(l, r) && l.momentum() == r.momentum() && l.update_interval() == r.update_interval() && l.alpha() == r.alpha() &&
         l.outer() == r.outer() && l.growth_limit() == r.growth_limit();
}

Sumo::Sumo(std::vector<torch::optim::OptimizerParamGroup> param_groups, SumoOptions defaults)
    : MuonFamily(std::move(param_groups), std::make_unique<SumoOptions>(defaults), kKind, kName) {
  validate_all();
}

Sumo::Sumo(std::vector<at::Tensor> params, SumoOptions defaults)
    : Sumo({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

SharedOptions Sumo::shared(const torch::optim::OptimizerOptions& o) const {
  return shared_options_of(static_cast<const SumoOptions&>(o));
}

void Sumo::validate(const torch::optim::OptimizerOptions& o) const { static_cast<const SumoOptions&>(o).validate(); }

void Sumo::load(torch::serialize::InputArchive& archive) {
  auto c = io::load_optimizer<FamilyParamState, SumoOptions>(archive, *this, kKind);
  evaluations_ = c.calls;
  nonfinite_skips_ = c.nonfinite_skips;
}

namespace {
// SUMO works on the shorter side: Q spans columns of G (left, rows <= cols) or rows of G (right).
bool left_side(int64_t rows, int64_t cols) { return rows <= cols; }
}  // namespace

std::vector<MuonFamily::Direction> Sumo::directions(const torch::optim::OptimizerOptions& opts,
                                                   std::vector<Item>& items) {
  const auto& o = static_cast<const SumoOptions&>(opts);
  std::vector<Direction> out(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    auto& it = items[i];
    auto& s = *it.state;
    const bool left = left_side(it.rows, it.cols);
    if (s.step() % o.update_interval() == 0) {
      LowRank f = rsvd(it.grad, o.rank(), o.oversample(), o.power_iters(), basis_seed(o.seed(), it.index, s.step()));
      at::Tensor q = (left ? f.U : f.V).contiguous();  // [rows, r] or [cols, r]
      if (s.momentum().defined()) {
        // Carry the moment into the new basis: M ← (Q_newᵀ Q_old) M, or M (Q_oldᵀ Q_new).
        at::Tensor rot = at::matmul(q.t(), s.basis());  // [r_new, r_old]
        s.momentum(left ? at::matmul(rot, s.momentum()) : at::matmul(s.momentum(), rot.t()));
      }
      s.basis(q);
    }
    at::Tensor projected = left ? at::matmul(s.basis().t(), it.grad) : at::matmul(it.grad, s.basis());
    if (s.momentum().defined()) s.momentum().mul_(o.momentum()).add_(projected);
    else s.momentum(projected);
    out[i].to_orth = s.momentum();
    out[i].scale = o.alpha() * lr_scale(o.adjust_lr(), it.rows, it.cols);
  }
  return out;
}

at::Tensor Sumo::finish(const torch::optim::OptimizerOptions& opts, const Item& item, const at::Tensor& input,
                        const at::Tensor& orthogonalized, Direction& d) {
  const auto& o = static_cast<const SumoOptions&>(opts);
  auto& s = *item.state;
  at::Tensor O = orthogonalized;
  if (o.growth_limit() > 0) {
    // Block 3: ‖O_t‖ ≤ γ‖O_{t−1}‖ (Frobenius), the previous norm taken after its own limiting.
    const double norm = O.norm().item<double>();
    const double bound = o.growth_limit() * s.last_norm();
    if (s.last_norm() > 0 && norm > bound) {
      O = O * (bound / norm);
      s.last_norm(bound);
    } else {
      s.last_norm(norm);
    }
  }
  const at::Tensor& q = s.basis();
  const bool left = left_side(item.rows, item.cols);
  at::Tensor qo = left ? at::matmul(q, O) : at::matmul(O, q.t());
  if (!o.outer()) return qo;  // W −= lr·alpha·scale·Q·O
  // Block 4: G_⊥ + alpha·scale·Q·O, applied with scale 1 (the factors belong to Q·O only).
  const at::Tensor& g = item.grad;
  at::Tensor perp = left ? g - at::matmul(q, at::matmul(q.t(), g)) : g - at::matmul(at::matmul(g, q), q.t());
  at::Tensor dir = perp.add(qo, d.scale);
  d.scale = 1.0;
  return dir;
}

}  // namespace limuon
