// Muon-MVR1/MVR2 (arXiv 2509.15816): Muon fed a capped, STORM-corrected gradient (ALGORITHMS.md §4); see muon_mvr.h.
#include "limuon/optim/muon_mvr.h"

#include "limuon/optim/two_point.h"
#include "state_io.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace limuon {

namespace {
constexpr const char* kKind = "muon_mvr";
constexpr const char* kName = "MuonMVR";
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

MuonMVROptions::MuonMVROptions(double lr) : lr_(lr) {}
double MuonMVROptions::get_lr() const { return lr(); }
void MuonMVROptions::set_lr(const double lr) { this->lr(lr); }

void MuonMVROptions::validate() const {
  io::validate_shared_options(kName, *this);
  check_range(kName, "momentum", momentum(), 0.0, 1.0, false, true);
  check_range(kName, "gamma", gamma(), 0.0, 1.0, false, false);
  if (!(max_norm() > 0.0))  // +inf allowed: no clipping
    throw std::invalid_argument(std::string(kName) + ": max_norm must be in (0, inf], got " + std::to_string(max_norm()));
}

void MuonMVROptions::serialize(torch::serialize::OutputArchive& a) const {
  io::put_shared_options(a, *this);
  io::put(a, "momentum", momentum());
  io::put(a, "nesterov", nesterov());
  io::put(a, "gamma", gamma());
  io::put(a, "max_norm", max_norm());
  io::put(a, "variant", to_string(variant()));
  io::put(a, "clip_inputs", clip_inputs());
  io::put(a, "zero_prev_init", zero_prev_init());
}

void MuonMVROptions::serialize(torch::serialize::InputArchive& a) {
  io::get_shared_options(a, *this);
  momentum(io::get_double(a, "momentum"));
  nesterov(io::get_bool(a, "nesterov"));
  gamma(io::get_double(a, "gamma"));
  max_norm(io::get_double(a, "max_norm"));
  variant(parse_mvr_variant(io::get_string(a, "variant")));
  // Archives from before these options continue the earlier form: inputs clipped, c_0 = g_0.
  clip_inputs(io::get_bool_or(a, "clip_inputs", true));
  zero_prev_init(io::get_bool_or(a, "zero_prev_init", false));
}

bool operator==(const MuonMVROptions& l, const MuonMVROptions& r) {
  return io::shared_options_equal(l, r) && l.momentum() == r.momentum() && l.nesterov() == r.nesterov() && l.gamma() == r.gamma() && l.max_norm() == r.max_norm() && l.variant() == r.variant() &&
         l.clip_inputs() == r.clip_inputs() && l.zero_prev_init() == r.zero_prev_init();
}

MuonMVR::MuonMVR(std::vector<torch::optim::OptimizerParamGroup> param_groups, MuonMVROptions defaults)
    : MuonFamily(std::move(param_groups), std::make_unique<MuonMVROptions>(defaults), kKind, kName) {
  validate_all();
}

MuonMVR::MuonMVR(std::vector<at::Tensor> params, MuonMVROptions defaults)
    : MuonMVR({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

SharedOptions MuonMVR::shared(const torch::optim::OptimizerOptions& o) const {
  return shared_options_of(static_cast<const MuonMVROptions&>(o));
}

void MuonMVR::validate(const torch::optim::OptimizerOptions& o) const { static_cast<const MuonMVROptions&>(o).validate(); }

void MuonMVR::load(torch::serialize::InputArchive& archive) {
  auto c = io::load_optimizer<FamilyParamState, MuonMVROptions>(archive, *this, kKind);
  evaluations_ = c.calls;
  nonfinite_skips_ = c.nonfinite_skips;
  old_grads_.clear();
  group_skipped_.clear();
}

std::string to_string(MvrVariant v) { return v == MvrVariant::mvr1 ? "mvr1" : "mvr2"; }

MvrVariant parse_mvr_variant(const std::string& name) {
  if (name == "mvr1") return MvrVariant::mvr1;
  if (name == "mvr2") return MvrVariant::mvr2;
  throw std::invalid_argument("variant: unknown value '" + name + "' (valid: mvr1, mvr2)");
}

namespace {
// The gradient as the correction sees it: clipped per matrix only with clip_inputs.
at::Tensor input(const at::Tensor& g, const MuonMVROptions& o) { return o.clip_inputs() ? clip_norm(g, o.max_norm()) : g; }

// c = cap(g + k·(g − g_prev)), k = gamma·μ/(1 − μ); without g_prev (first step, or a restart)
// g_prev = 0 (zero_prev_init: c = cap((1 + k)·g)) or g (c = cap(g)).
at::Tensor corrected(const at::Tensor& g, const at::Tensor& g_prev, const MuonMVROptions& o) {
  const double k = o.gamma() * o.momentum() / (1.0 - o.momentum());
  if (!g_prev.defined()) return clip_norm(o.zero_prev_init() ? g * (1.0 + k) : g, o.max_norm());
  return clip_norm(at::add(g, g - g_prev, k), o.max_norm());
}

// B ← μB + (1 − μ)c (B created at zero), returns U; keeps U in `pending` when it is not B itself.
at::Tensor momentum_and_input(FamilyParamState& s, const at::Tensor& c, const MuonMVROptions& o, bool keep_pending) {
  at::Tensor u = muon_momentum(s, c, o.momentum(), o.nesterov());
  if (keep_pending) s.pending(o.nesterov() ? u : at::Tensor());
  return u;
}
}  // namespace

std::vector<MuonFamily::Direction> MuonMVR::directions(const torch::optim::OptimizerOptions& opts,
                                                      std::vector<Item>& items) {
  // mvr1: g_prev is the previous call's gradient.
  const auto& o = static_cast<const MuonMVROptions&>(opts);
  std::vector<Direction> out(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    auto& it = items[i];
    auto& s = *it.state;
    at::Tensor g = input(it.grad, o);
    at::Tensor c = corrected(g, s.prev_grad(), o);
    out[i].to_orth = momentum_and_input(s, c, o, /*keep_pending=*/false);
    out[i].scale = lr_scale(o.adjust_lr(), it.rows, it.cols);
    // Reuse the buffer: g may alias .grad(), which the next closure zeroes.
    if (s.prev_grad().defined()) s.prev_grad().copy_(g);
    else s.prev_grad(g.clone());
  }
  return out;
}

bool MuonMVR::evaluates_twice() const {
  for (const auto& g : param_groups_)
    if (static_cast<const MuonMVROptions&>(g.options()).variant() == MvrVariant::mvr2) return true;
  return false;
}

bool MuonMVR::needs_old_point_gradient() const {
  for (const auto& g : param_groups_) {
    if (static_cast<const MuonMVROptions&>(g.options()).variant() != MvrVariant::mvr2) continue;
    for (const auto& p : g.params()) {
      auto it = state_.find(io::state_key(p));
      if (it != state_.end() && static_cast<const FamilyParamState&>(*it->second).momentum().defined()) return true;
    }
  }
  return false;
}

void MuonMVR::after_old_point_gradient() {
  at::NoGradGuard no_grad;
  old_grads_.clear();
  group_skipped_.assign(param_groups_.size(), false);
  for (size_t g = 0; g < param_groups_.size(); ++g) {
    const auto& o = static_cast<const MuonMVROptions&>(param_groups_[g].options());
    if (o.variant() != MvrVariant::mvr2) continue;
    o.validate();
    std::vector<Item> items;
    for (auto& it : group_items(g, /*create_state=*/false))
      if (it.state->momentum().defined()) items.push_back(it);
    if (items.empty()) continue;
    const SharedOptions s = shared(o);
    if (!group_finite_or_raise(items, s)) {
      group_skipped_[g] = true;
      continue;
    }
    // Apply the pending orth(U_t) (formed by the previous call), then keep g̃ until the
    // new-point gradient arrives (the closure will zero .grad()).
    std::vector<Direction> dirs(items.size());
    std::vector<int64_t> seed_steps;
    for (size_t i = 0; i < items.size(); ++i) {
      auto& st = *items[i].state;
      dirs[i].to_orth = st.pending().defined() ? st.pending() : st.momentum();
      dirs[i].scale = lr_scale(o.adjust_lr(), items[i].rows, items[i].cols);
      seed_steps.push_back(st.step() - 1);
      at::Tensor old = input(items[i].grad, o);
      old_grads_[io::state_key(items[i].param)] = old.is_same(items[i].grad) ? old.clone() : old;
    }
    apply_directions(s, o, items, dirs, seed_steps);
  }
}

void MuonMVR::new_point_group(size_t g) {
  const auto& o = static_cast<const MuonMVROptions&>(param_groups_[g].options());
  std::vector<Item> items;
  for (auto& it : group_items(g, /*create_state=*/true))
    if (!it.state->momentum().defined() || old_grads_.count(io::state_key(it.param))) items.push_back(it);
  if (items.empty()) return;
  if (!group_finite_or_raise(items, shared(o))) {
    // W already took its (finite) step; the estimate cannot be formed, so restart it from the
    // next call's fresh gradient, as at the first call.
    for (auto& it : items) {
      it.state->momentum(at::Tensor());
      it.state->pending(at::Tensor());
    }
    return;
  }
  for (auto& it : items) {
    auto& s = *it.state;
    const auto old = old_grads_.find(io::state_key(it.param));
    at::Tensor c = corrected(input(it.grad, o), old == old_grads_.end() ? at::Tensor() : old->second, o);
    if (!s.momentum().defined()) s.pending(at::Tensor());
    momentum_and_input(s, c, o, /*keep_pending=*/true);
    s.step(s.step() + 1);
  }
}

void MuonMVR::after_new_point_gradient() {
  at::NoGradGuard no_grad;
  if (group_skipped_.size() != param_groups_.size()) group_skipped_.assign(param_groups_.size(), false);
  for (size_t g = 0; g < param_groups_.size(); ++g) {
    const auto& o = static_cast<const MuonMVROptions&>(param_groups_[g].options());
    o.validate();
    if (o.variant() == MvrVariant::mvr1) step_group(g);
    else if (!group_skipped_[g]) new_point_group(g);
  }
  old_grads_.clear();
  group_skipped_.assign(param_groups_.size(), false);
}

at::Tensor MuonMVR::step(LossClosure closure) {
  if (!evaluates_twice()) return MuonFamily::step(closure);
  if (!closure)
    throw std::invalid_argument(
        "MuonMVR::step: variant=mvr2 needs a closure (zero grads, forward, backward, return loss); it is "
        "evaluated twice per step on the same batch, at the old and the new weights");
  return two_point_step(*this, [&] { return evaluate(closure); });
}

}  // namespace limuon
