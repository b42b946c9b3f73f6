// LiMuon: orthogonalized STORM momentum, exact (two gradients per call) or approx (one), with
// optional low-rank state (ALGORITHMS.md §3). See limuon.h for the recursion.
#include "limuon/optim/limuon.h"

#include "limuon/optim/two_point.h"
#include "state_io.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <limits>
#include <stdexcept>

namespace limuon {

namespace {
constexpr const char* kKind = "limuon";

// Sketch seeds: the rsvd that compresses M_t uses stream 2i, the orthogonalization of M_t uses
// stream 2i + 1, both at call t (see derive_seed).
uint64_t compress_seed(const LiMuonOptions& o, int64_t index, int64_t t) {
  return derive_seed(o.seed(), 2 * static_cast<uint64_t>(index), static_cast<uint64_t>(t));
}
uint64_t orth_seed(const LiMuonOptions& o, int64_t index, int64_t t) {
  return derive_seed(o.seed(), 2 * static_cast<uint64_t>(index) + 1, static_cast<uint64_t>(t));
}

at::ScalarType state_dtype(const at::Tensor& p) {
  return (p.scalar_type() == at::kHalf || p.scalar_type() == at::kBFloat16) ? at::kFloat : p.scalar_type();
}

at::Tensor grad_matrix(const at::Tensor& p) { return as_matrix(p.grad()).to(state_dtype(p)); }

void store_factors(LiMuonParamState& s, const LowRank& f) {
  s.factor_u(f.U.contiguous());
  s.factor_s(f.S.contiguous());
  s.factor_v(f.V.contiguous());
}

LowRank factors_of(const LiMuonParamState& s) { return LowRank{s.factor_u(), s.factor_s(), s.factor_v()}; }

LowRank compress(const at::Tensor& m, const LiMuonOptions& o, int64_t index, int64_t t) {
  return rsvd(m, o.rank(), o.oversample(), o.power_iters(), compress_seed(o, index, t));
}

double scale_of(const LiMuonOptions& o, const at::Tensor& p) {
  auto s = matrix_shape(p, "LiMuon");
  return lr_scale(o.adjust_lr(), s.first, s.second);
}

// W ← W(1 − lr·wd) − lr·scale·U Vᵀ without forming U Vᵀ when the layout allows.
void apply_lowrank_update(at::Tensor& p, const LowRank& f, double lr, double scale, double wd) {
  if (p.scalar_type() == f.U.scalar_type() && (p.dim() == 2 || p.is_contiguous())) {
    at::Tensor wm = as_matrix(p);  // a view of p
    wm.addmm_(f.U, f.V.t(), 1.0 - lr * wd, -lr * scale);
  } else {
    apply_update(p, f.polar().to(p.scalar_type()), lr, scale, wd);
  }
}

void clear_estimate(LiMuonParamState& s) {
  s.has_estimate(false);
  s.momentum(at::Tensor());
  s.direction(at::Tensor());
  s.factor_u(at::Tensor());
  s.factor_s(at::Tensor());
  s.factor_v(at::Tensor());
  s.prev_grad(at::Tensor());
}

bool same_tensor(const at::Tensor& a, const at::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  return !a.defined() || (a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && at::equal(a, b));
}
}  // namespace

std::string to_string(LowRankState s) {
  switch (s) {
    case LowRankState::none: return "none";
    case LowRankState::paper: return "paper";
    case LowRankState::light: return "light";
  }
  return "?";
}

LowRankState parse_lowrank_state(const std::string& name) {
  if (name == "none") return LowRankState::none;
  if (name == "paper") return LowRankState::paper;
  if (name == "light") return LowRankState::light;
  throw std::invalid_argument("lowrank_state: unknown value '" + name + "' (valid: none, paper, light)");
}

std::string to_string(Storm s) { return s == Storm::exact ? "exact" : "approx"; }

Storm parse_storm(const std::string& name) {
  if (name == "exact") return Storm::exact;
  if (name == "approx") return Storm::approx;
  throw std::invalid_argument("storm: unknown value '" + name + "' (valid: exact, approx)");
}

LiMuonOptions::LiMuonOptions(double lr) : lr_(lr) {}

LiMuonOptions LiMuonOptions::paper(double lr) {
  // Algorithm 1 of arXiv 2509.14562: O_t from the exact SVD of M_t, W_{t+1} = W_t − η·O_t with no
  // shape factor and no weight decay, both gradients of a step on the same sample.
  return LiMuonOptions(lr)
      .orthogonalizer(Orthogonalizer::svd)
      .adjust_lr(AdjustLr::none)
      .weight_decay(0.0)
      .storm(Storm::exact);
}

const std::vector<std::string>& LiMuonOptions::preset_names() {
  static const std::vector<std::string> names = {"practical", "paper"};
  return names;
}

LiMuonOptions LiMuonOptions::preset(const std::string& name, double lr) {
  if (name == "practical") return LiMuonOptions(lr);
  if (name == "paper") return paper(lr);
  throw std::invalid_argument("LiMuon: unknown preset '" + name + "' (valid: practical, paper)");
}
double LiMuonOptions::get_lr() const { return lr(); }
void LiMuonOptions::set_lr(const double lr) { this->lr(lr); }

void LiMuonOptions::validate() const {
  io::validate_shared_options("LiMuon", *this);
  check_range("LiMuon", "beta", beta(), 0.0, 1.0, true, false);
  check_range("LiMuon", "gamma", gamma(), 0.0, 1.0, false, false);
}

void LiMuonOptions::serialize(torch::serialize::OutputArchive& a) const {
  io::put_shared_options(a, *this);
  io::put(a, "beta", beta());
  io::put(a, "lowrank_state", to_string(lowrank_state()));
  io::put(a, "storm", to_string(storm()));
  io::put(a, "gamma", gamma());
  io::put(a, "accumulate_second_gradient", accumulate_second_gradient());
}

void LiMuonOptions::serialize(torch::serialize::InputArchive& a) {
  io::get_shared_options(a, *this);
  beta(io::get_double(a, "beta"));
  lowrank_state(parse_lowrank_state(io::get_string(a, "lowrank_state")));
  storm(parse_storm(io::get_string(a, "storm")));
  gamma(io::get_double(a, "gamma"));
  // Added later; an archive without it was written by a run that kept the copy of g̃.
  accumulate_second_gradient(io::get_bool_or(a, "accumulate_second_gradient", false));
}

bool operator==(const LiMuonOptions& l, const LiMuonOptions& r) {
  return io::shared_options_equal(l, r) && l.beta() == r.beta() && l.lowrank_state() == r.lowrank_state() &&
         l.storm() == r.storm() && l.gamma() == r.gamma() &&
         l.accumulate_second_gradient() == r.accumulate_second_gradient();
}

void LiMuonParamState::serialize(torch::serialize::OutputArchive& a) const {
  io::put(a, "step", step());
  io::put(a, "has_estimate", has_estimate());
  io::put_tensor(a, "momentum", momentum());
  io::put_tensor(a, "direction", direction());
  io::put_tensor(a, "factor_u", factor_u());
  io::put_tensor(a, "factor_s", factor_s());
  io::put_tensor(a, "factor_v", factor_v());
  io::put_tensor(a, "prev_grad", prev_grad());
}

void LiMuonParamState::serialize(torch::serialize::InputArchive& a) {
  step(io::get_int(a, "step"));
  has_estimate(io::get_bool(a, "has_estimate"));
  momentum(io::get_tensor_opt(a, "momentum"));
  direction(io::get_tensor_opt(a, "direction"));
  factor_u(io::get_tensor_opt(a, "factor_u"));
  factor_s(io::get_tensor_opt(a, "factor_s"));
  factor_v(io::get_tensor_opt(a, "factor_v"));
  prev_grad(io::get_tensor_opt(a, "prev_grad"));
}

bool operator==(const LiMuonParamState& l, const LiMuonParamState& r) {
  return l.step() == r.step() && l.has_estimate() == r.has_estimate() && same_tensor(l.momentum(), r.momentum()) &&
         same_tensor(l.direction(), r.direction()) && same_tensor(l.factor_u(), r.factor_u()) &&
         same_tensor(l.factor_s(), r.factor_s()) && same_tensor(l.factor_v(), r.factor_v()) &&
         same_tensor(l.prev_grad(), r.prev_grad());
}

int64_t LiMuonParamState::bytes() const {
  int64_t total = 0;
  for (const auto* t : {&momentum(), &direction(), &factor_u(), &factor_s(), &factor_v(), &prev_grad()})
    if (t->defined()) total += t->numel() * t->element_size();
  return total;
}

LiMuon::LiMuon(std::vector<torch::optim::OptimizerParamGroup> param_groups, LiMuonOptions defaults)
    : torch::optim::Optimizer(param_groups, std::make_unique<LiMuonOptions>(defaults)) {
  keep_group_options(param_groups_, param_groups);
  defaults.validate();
  for (auto& g : param_groups_) static_cast<const LiMuonOptions&>(g.options()).validate();
  check_params();
}

LiMuon::LiMuon(std::vector<at::Tensor> params, LiMuonOptions defaults)
    : LiMuon({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

void LiMuon::check_params() const {
  for (const auto& g : param_groups_)
    for (const auto& p : g.params()) matrix_shape(p, "LiMuon");
}

std::vector<LiMuon::Item> LiMuon::group_items(size_t group, bool create_state) {
  int64_t index = 0;
  for (size_t g = 0; g < group; ++g) index += static_cast<int64_t>(param_groups_[g].params().size());
  std::vector<Item> items;
  for (auto& p : param_groups_[group].params()) {
    const int64_t my_index = index++;
    if (!p.grad().defined()) continue;
    matrix_shape(p, "LiMuon");
    auto key = io::state_key(p);
    auto it = state_.find(key);
    if (it == state_.end()) {
      if (!create_state) continue;
      it = state_.emplace(key, std::make_unique<LiMuonParamState>()).first;
    }
    items.push_back({p, static_cast<LiMuonParamState*>(it->second.get()), my_index});
  }
  return items;
}

bool LiMuon::group_finite_or_raise(const std::vector<Item>& items, const LiMuonOptions& o) {
  std::vector<at::Tensor> grads;
  for (const auto& it : items) grads.push_back(it.param.grad());
  if (all_finite(grads)) return true;
  if (o.nonfinite() == NonFinitePolicy::raise)
    throw std::runtime_error("LiMuon: non-finite gradient in a parameter group (nonfinite=raise)");
  ++nonfinite_skips_;
  return false;
}

bool LiMuon::evaluates_twice() const {
  for (const auto& g : param_groups_)
    if (static_cast<const LiMuonOptions&>(g.options()).storm() == Storm::exact) return true;
  return false;
}

bool LiMuon::needs_old_point_gradient() const {
  for (const auto& g : param_groups_) {
    if (static_cast<const LiMuonOptions&>(g.options()).storm() != Storm::exact) continue;
    for (const auto& p : g.params()) {
      auto it = state_.find(io::state_key(p));
      if (it != state_.end() && static_cast<const LiMuonParamState&>(*it->second).has_estimate()) return true;
    }
  }
  return false;
}

void LiMuon::after_old_point_gradient() {
  at::NoGradGuard no_grad;
  abandon_call();  // a call starts with nothing kept
  group_skipped_.assign(param_groups_.size(), false);
  for (size_t g = 0; g < param_groups_.size(); ++g) {
    const auto& o = static_cast<const LiMuonOptions&>(param_groups_[g].options());
    if (o.storm() != Storm::exact) continue;
    std::vector<Item> items;
    for (auto& it : group_items(g, /*create_state=*/false))
      if (it.state->has_estimate()) items.push_back(it);
    if (items.empty()) continue;
    if (!group_finite_or_raise(items, o)) {
      group_skipped_[g] = true;
      continue;
    }
    const double keep = 1.0 - o.beta();
    if (o.lowrank_state() == LowRankState::none) {
      // Direction from the full M_t (batched by shape), then M ← (1 − β)(M_t − g̃) in place.
      std::vector<at::Tensor> ms;
      std::vector<uint64_t> seeds;
      for (auto& it : items) {
        ms.push_back(it.state->momentum());
        seeds.push_back(orth_seed(o, it.index, it.state->step() - 1));
      }
      auto dirs = orthogonalize_many(ms, orth_spec_of(o), seeds);
      for (size_t i = 0; i < items.size(); ++i) {
        auto& it = items[i];
        apply_update(it.param, dirs[i].to(it.param.scalar_type()), o.lr(), scale_of(o, it.param), o.weight_decay());
        it.state->momentum().sub_(grad_matrix(it.param)).mul_(keep);
        pending_[io::state_key(it.param)] = at::Tensor();
      }
    } else {
      for (auto& it : items) {
        const LowRank f = factors_of(*it.state);
        if (o.lowrank_state() == LowRankState::paper)
          apply_update(it.param, it.state->direction().to(it.param.scalar_type()), o.lr(), scale_of(o, it.param),
                       o.weight_decay());
        else
          apply_lowrank_update(it.param, f, o.lr(), scale_of(o, it.param), o.weight_decay());
        const auto key = io::state_key(it.param);
        const at::Tensor& grad = it.param.grad();
        if (o.accumulate_second_gradient() && grad.scalar_type() == state_dtype(it.param) && grad.is_contiguous()) {
          // .grad ← −(1 − β)·g̃, left for the second backward to accumulate into (limuon.h).
          it.param.mutable_grad().mul_(-keep);
          seeded_[key] = Seed{it.param, grad.data_ptr()};
          pending_[key] = at::Tensor();
        } else {
          // Keep g̃ until the new-point gradient arrives (the closure will zero .grad()).
          pending_[key] = grad_matrix(it.param).clone();
        }
      }
    }
  }
}

void LiMuon::new_point_group(size_t g) {
  const auto& o = static_cast<const LiMuonOptions&>(param_groups_[g].options());
  std::vector<Item> fresh, active;
  for (auto& it : group_items(g, /*create_state=*/true)) {
    if (!it.state->has_estimate()) fresh.push_back(it);
    else if (pending_.count(io::state_key(it.param))) active.push_back(it);
  }
  std::vector<Item> all = fresh;
  all.insert(all.end(), active.begin(), active.end());
  if (all.empty()) return;
  if (!group_finite_or_raise(all, o)) {
    // W already took its (finite) step; the estimate cannot be formed, so restart it from the
    // next call's fresh gradient, as at the first call.
    for (auto& it : active) clear_estimate(*it.state);
    return;
  }
  // M_{t+1} = g + (1 − β)(M̂_t − g̃) = D + (1 − β)·U diag(σ) Vᵀ with D = g − (1 − β)·g̃. It is
  // formed densely except for light, whose rsvd applies the low-rank part through its factors.
  const double keep = 1.0 - o.beta();
  std::vector<at::Tensor> dense(all.size());
  std::vector<LowRank> light_factors(all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    auto& it = all[i];
    at::Tensor gm = grad_matrix(it.param);
    if (!it.state->has_estimate()) {
      dense[i] = gm.clone();
    } else if (o.lowrank_state() == LowRankState::none) {
      dense[i] = it.state->momentum().add_(gm);
    } else {
      // D = g − (1 − β)·g̃: accumulated in .grad by the second backward (seeded), or formed in g̃'s buffer.
      const bool seeded = seeded_.count(io::state_key(it.param)) > 0;
      at::Tensor& pend = pending_[io::state_key(it.param)];
      at::Tensor d = seeded ? gm : at::add_out(pend, gm, pend, -keep);
      const LowRank f = factors_of(*it.state);
      if (o.lowrank_state() == LowRankState::light)
        light_factors[i] = rsvd_plus_low_rank(d, f, keep, o.rank(), o.oversample(), o.power_iters(),
                                              compress_seed(o, it.index, it.state->step()));
      else
        dense[i] = d.addmm_(f.U * f.S.unsqueeze(0), f.V.t(), 1.0, keep);
    }
  }
  std::vector<at::Tensor> dirs;
  if (o.lowrank_state() == LowRankState::paper) {
    std::vector<uint64_t> seeds;
    for (auto& it : all) seeds.push_back(orth_seed(o, it.index, it.state->step()));
    dirs = orthogonalize_many(dense, orth_spec_of(o), seeds);
  }
  for (size_t i = 0; i < all.size(); ++i) {
    auto& s = *all[i].state;
    switch (o.lowrank_state()) {
      case LowRankState::none: s.momentum(dense[i]); break;
      case LowRankState::paper:
        s.direction(dirs[i].contiguous());
        store_factors(s, compress(dense[i], o, all[i].index, s.step()));
        break;
      case LowRankState::light:
        store_factors(s, dense[i].defined() ? compress(dense[i], o, all[i].index, s.step()) : light_factors[i]);
        break;
    }
    s.has_estimate(true);
    s.step(s.step() + 1);
  }
}

void LiMuon::approx_group(size_t g) {
  const auto& o = static_cast<const LiMuonOptions&>(param_groups_[g].options());
  auto items = group_items(g, /*create_state=*/true);
  if (items.empty() || !group_finite_or_raise(items, o)) return;
  const double keep = 1.0 - o.beta();
  const double k = o.gamma() * keep / o.beta();
  std::vector<at::Tensor> to_orth;
  std::vector<uint64_t> seeds;
  std::vector<size_t> orth_items;
  for (size_t i = 0; i < items.size(); ++i) {
    auto& it = items[i];
    auto& s = *it.state;
    at::Tensor gm = grad_matrix(it.param);
    at::Tensor m;
    if (!s.has_estimate()) {
      m = gm.clone();  // M_0 = g_0
    } else {
      // c = g + k·(g − g_prev);  M = (1 − β)·M̂ + β·c
      at::Tensor c = at::add(gm, gm - s.prev_grad(), k);
      if (o.lowrank_state() == LowRankState::none) {
        m = s.momentum().mul_(keep).add_(c, o.beta());
      } else if (o.lowrank_state() == LowRankState::paper) {
        m = at::addmm(c, s.factor_u() * s.factor_s().unsqueeze(0), s.factor_v().t(), o.beta(), keep);
      } else {
        m = c.mul_(o.beta());  // light: M = β·c + (1 − β)·U diag(σ) Vᵀ, low-rank part kept factored
      }
    }
    if (s.prev_grad().defined()) s.prev_grad().copy_(gm);
    else s.prev_grad(gm.clone());
    const double scale = scale_of(o, it.param);
    switch (o.lowrank_state()) {
      case LowRankState::none:
        s.momentum(m);
        to_orth.push_back(m);
        seeds.push_back(orth_seed(o, it.index, s.step()));
        orth_items.push_back(i);
        break;
      case LowRankState::paper:
        store_factors(s, compress(m, o, it.index, s.step()));
        to_orth.push_back(m);
        seeds.push_back(orth_seed(o, it.index, s.step()));
        orth_items.push_back(i);
        break;
      case LowRankState::light: {
        LowRank f = s.has_estimate() ? rsvd_plus_low_rank(m, factors_of(s), keep, o.rank(), o.oversample(),
                                                          o.power_iters(), compress_seed(o, it.index, s.step()))
                                     : compress(m, o, it.index, s.step());
        store_factors(s, f);
        apply_lowrank_update(it.param, f, o.lr(), scale, o.weight_decay());
        break;
      }
    }
    s.has_estimate(true);
  }
  auto dirs = orthogonalize_many(to_orth, orth_spec_of(o), seeds);
  for (size_t j = 0; j < orth_items.size(); ++j) {
    auto& it = items[orth_items[j]];
    apply_update(it.param, dirs[j].to(it.param.scalar_type()), o.lr(), scale_of(o, it.param), o.weight_decay());
  }
  for (auto& it : items) it.state->step(it.state->step() + 1);
}

void LiMuon::check_seeds(const char* when) const {
  for (const auto& kv : seeded_) {
    const at::Tensor& g = kv.second.param.grad();
    if (!g.defined() || g.data_ptr() != kv.second.data)
      throw std::runtime_error(
          std::string("LiMuon (accumulate_second_gradient): a gradient seeded with −(1 − beta)·g̃ after the first "
                      "evaluation was ") +
          (g.defined() ? "reallocated" : "dropped (set to none)") + " " + when +
          "; the closure must clear gradients only through the optimizer's zero_grad() (LiMuon or HybridOptimizer), "
          "not model->zero_grad() or by hand");
  }
}

void LiMuon::abandon_call() {
  pending_.clear();
  seeded_.clear();
  seed_zero_grad_seen_ = false;
  group_skipped_.clear();
}

void LiMuon::zero_grad(bool set_to_none) {
  if (!seeded_.empty()) {
    check_seeds("before the second evaluation's zero_grad()");
    seed_zero_grad_seen_ = true;
  }
  for (auto& g : param_groups_)
    for (auto& p : g.params()) {
      if (!p.mutable_grad().defined() || seeded_.count(io::state_key(p))) continue;
      p.mutable_grad().detach_();
      if (set_to_none) p.mutable_grad().reset();
      else p.mutable_grad().zero_();
    }
}

void LiMuon::after_new_point_gradient() {
  at::NoGradGuard no_grad;
  if (!seeded_.empty()) {
    try {
      if (!seed_zero_grad_seen_)
        throw std::runtime_error(
            "LiMuon (accumulate_second_gradient): the closure did not call the optimizer's zero_grad() before the "
            "second evaluation; it must clear gradients only through LiMuon::zero_grad() or "
            "HybridOptimizer::zero_grad() (model->zero_grad() would silently drop the −(1 − beta)·g̃ term)");
      check_seeds("during the second evaluation");
    } catch (...) {
      abandon_call();
      throw;
    }
  }
  if (group_skipped_.size() != param_groups_.size()) group_skipped_.assign(param_groups_.size(), false);
  for (size_t g = 0; g < param_groups_.size(); ++g) {
    const auto& o = static_cast<const LiMuonOptions&>(param_groups_[g].options());
    o.validate();
    if (o.storm() == Storm::approx) approx_group(g);
    else if (!group_skipped_[g]) new_point_group(g);
  }
  abandon_call();  // the call is complete: nothing is kept to the next
  group_skipped_.assign(param_groups_.size(), false);
}

at::Tensor LiMuon::step(LossClosure closure) {
  if (evaluates_twice() && !closure)
    throw std::invalid_argument(
        "LiMuon::step: storm=exact needs a closure (zero grads, forward, backward, return loss); it is "
        "evaluated twice per step on the same batch, at the old and the new weights");
  auto evaluate = [&]() {
    at::AutoGradMode enable(true);
    ++evaluations_;
    return closure();
  };
  if (evaluates_twice()) return two_point_step(*this, evaluate);
  at::Tensor loss;
  if (closure) loss = evaluate();
  after_new_point_gradient();
  return loss;
}

int64_t LiMuon::state_bytes() const {
  int64_t total = 0;
  for (const auto& kv : state_) total += static_cast<const LiMuonParamState&>(*kv.second).bytes();
  return total;
}

void LiMuon::save(torch::serialize::OutputArchive& archive) const {
  io::save_optimizer(archive, *this, kKind, {evaluations_, nonfinite_skips_});
}

void LiMuon::load(torch::serialize::InputArchive& archive) {
  auto c = io::load_optimizer<LiMuonParamState, LiMuonOptions>(archive, *this, kKind);
  evaluations_ = c.calls;
  nonfinite_skips_ = c.nonfinite_skips;
  abandon_call();
}

}  // namespace limuon
