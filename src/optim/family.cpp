// The Muon family's shared skeleton and stateless pieces (see family.h).
#include "limuon/optim/family.h"

#include "state_io.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace limuon {

at::Tensor clip_norm(const at::Tensor& x, double max_norm) {
  if (std::isinf(max_norm)) return x;
  const double norm = x.norm().item<double>();
  return norm > max_norm ? x * (max_norm / norm) : x;
}

std::string to_string(Equilibrate e) {
  switch (e) {
    case Equilibrate::none: return "none";
    case Equilibrate::rows: return "rows";
    case Equilibrate::cols: return "cols";
    case Equilibrate::both: return "both";
  }
  return "?";
}

Equilibrate parse_equilibrate(const std::string& name) {
  if (name == "none") return Equilibrate::none;
  if (name == "rows") return Equilibrate::rows;
  if (name == "cols" || name == "columns") return Equilibrate::cols;
  if (name == "both") return Equilibrate::both;
  throw std::invalid_argument("equilibrate: unknown value '" + name + "' (valid: none, rows, cols, both)");
}

at::Tensor equilibrate(const at::Tensor& m, Equilibrate mode, double exponent, double eps) {
  if (mode == Equilibrate::none) return m;
  // The floor keeps a zero row/column at 0 instead of 0·inf when eps = 0; 1e-30 is a normal
  // number in float32 as well.
  constexpr double kFloor = 1e-30;
  const at::Tensor sq = m.square();
  auto factor = [&](int64_t dim) { return (sq.sum({dim}, /*keepdim=*/true) + eps).clamp_min(kFloor).pow(exponent); };
  switch (mode) {
    case Equilibrate::rows: return m * factor(1);                 // [rows, 1]
    case Equilibrate::cols: return m * factor(0);                 // [1, cols]
    case Equilibrate::both: return m * factor(1) * factor(0);     // both from the same m
    case Equilibrate::none: break;
  }
  return m;
}

double min_spectral_gap(const at::Tensor& singular_values, double rtol) {
  at::Tensor s = std::get<0>(singular_values.to(at::kDouble).flatten().sort(/*stable=*/false, 0, /*descending=*/true));
  s = s.contiguous().cpu();
  const double* v = s.data_ptr<double>();
  const int64_t n = s.numel();
  if (n == 0 || !(v[0] > 0)) return std::numeric_limits<double>::infinity();
  const double zero = rtol * v[0];
  // Over sorted values the minimum over all pairs is the minimum over neighbours.
  double gap = std::numeric_limits<double>::infinity();
  for (int64_t i = 1; i < n && v[i] > zero; ++i) gap = std::min(gap, v[i - 1] - v[i]);
  return gap;
}


// ---------------------------------------------------------------- state

void FamilyParamState::serialize(torch::serialize::OutputArchive& a) const {
  io::put(a, "step", step());
  io::put_tensor(a, "momentum", momentum());
  io::put_tensor(a, "prev_grad", prev_grad());
  io::put_tensor(a, "pending", pending());
  io::put_tensor(a, "basis", basis());
  io::put(a, "last_norm", last_norm());
}

void FamilyParamState::serialize(torch::serialize::InputArchive& a) {
  step(io::get_int(a, "step"));
  momentum(io::get_tensor_opt(a, "momentum"));
  prev_grad(io::get_tensor_opt(a, "prev_grad"));
  pending(io::get_tensor_opt(a, "pending"));
  basis(io::get_tensor_opt(a, "basis"));
  last_norm(io::get_double_or(a, "last_norm", 0.0));
}

namespace {
bool same_tensor(const at::Tensor& a, const at::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  return !a.defined() || (a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && at::equal(a, b));
}
}  // namespace

bool operator==(const FamilyParamState& l, const FamilyParamState& r) {
  return l.step() == r.step() && same_tensor(l.momentum(), r.momentum()) && same_tensor(l.prev_grad(), r.prev_grad()) &&
         same_tensor(l.pending(), r.pending()) && same_tensor(l.basis(), r.basis()) &&
         l.last_norm() == r.last_norm();
}

std::vector<std::pair<std::string, at::Tensor>> FamilyParamState::tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& nt : std::vector<std::pair<std::string, at::Tensor>>{
           {"momentum", momentum()}, {"prev_grad", prev_grad()}, {"pending", pending()}, {"basis", basis()}})
    if (nt.second.defined()) out.push_back(nt);
  return out;
}

int64_t FamilyParamState::bytes() const {
  int64_t total = 0;
  for (const auto& nt : tensors()) total += nt.second.numel() * nt.second.element_size();
  return total;
}

// ---------------------------------------------------------------- skeleton

at::Tensor muon_momentum(FamilyParamState& s, const at::Tensor& g, double momentum, bool nesterov) {
  if (!s.momentum().defined()) s.momentum(at::zeros(g.sizes(), g.options()));
  auto& buf = s.momentum();
  buf.lerp_(g, 1.0 - momentum);
  return nesterov ? g.lerp(buf, momentum) : buf;
}

uint64_t orth_seed(uint64_t seed, int64_t index, int64_t step) {
  return derive_seed(seed, 2 * static_cast<uint64_t>(index) + 1, static_cast<uint64_t>(step));
}

uint64_t basis_seed(uint64_t seed, int64_t index, int64_t step) {
  return derive_seed(seed, 2 * static_cast<uint64_t>(index), static_cast<uint64_t>(step));
}

MuonFamily::MuonFamily(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                       std::unique_ptr<torch::optim::OptimizerOptions> defaults, std::string kind, std::string name)
    : torch::optim::Optimizer(param_groups, std::move(defaults)),
      kind_(std::move(kind)),
      name_(std::move(name)) {
  keep_group_options(param_groups_, param_groups);
  for (const auto& g : param_groups_)
    for (const auto& p : g.params()) matrix_shape(p, name_);
}

void MuonFamily::validate_all() const {
  validate(*defaults_);
  for (const auto& g : param_groups_) validate(g.options());
}

std::vector<MuonFamily::Item> MuonFamily::group_items(size_t group, bool create_state) {
  int64_t index = 0;
  for (size_t g = 0; g < group; ++g) index += static_cast<int64_t>(param_groups_[g].params().size());
  std::vector<Item> items;
  for (auto& p : param_groups_[group].params()) {
    const int64_t my_index = index++;
    if (!p.grad().defined()) continue;
    const auto shape = matrix_shape(p, name_);
    const auto key = io::state_key(p);
    auto it = state_.find(key);
    if (it == state_.end()) {
      if (!create_state) continue;
      it = state_.emplace(key, std::make_unique<FamilyParamState>()).first;
    }
    // fp32 state for half-precision weights, as in Muon.
    const auto dt = (p.scalar_type() == at::kHalf || p.scalar_type() == at::kBFloat16) ? at::kFloat : p.scalar_type();
    items.push_back({p, static_cast<FamilyParamState*>(it->second.get()), my_index, as_matrix(p.grad()).to(dt),
                     shape.first, shape.second});
  }
  return items;
}

bool MuonFamily::group_finite_or_raise(const std::vector<Item>& items, const SharedOptions& s) {
  std::vector<at::Tensor> grads;
  for (const auto& it : items) grads.push_back(it.param.grad());
  if (all_finite(grads)) return true;
  if (s.nonfinite == NonFinitePolicy::raise)
    throw std::runtime_error(name_ + ": non-finite gradient in a parameter group (nonfinite=raise)");
  ++nonfinite_skips_;
  return false;
}

void MuonFamily::apply_directions(const SharedOptions& s, const torch::optim::OptimizerOptions& o,
                                  std::vector<Item>& items, std::vector<Direction>& dirs,
                                  const std::vector<int64_t>& seed_steps) {
  std::vector<at::Tensor> inputs;
  std::vector<uint64_t> seeds;
  std::vector<size_t> which;
  for (size_t i = 0; i < items.size(); ++i)
    if (dirs[i].to_orth.defined()) {
      inputs.push_back(dirs[i].to_orth);
      seeds.push_back(orth_seed(s.seed, items[i].index, seed_steps[i]));
      which.push_back(i);
    }
  auto orthed = orthogonalize_many(inputs, s.orth, seeds);
  for (size_t j = 0; j < which.size(); ++j) {
    const size_t i = which[j];
    dirs[i].direction = finish(o, items[i], inputs[j], orthed[j], dirs[i]);
  }
  for (size_t i = 0; i < items.size(); ++i) {
    auto& it = items[i];
    const double lr = s.lr * dirs[i].lr_factor;
    apply_update(it.param, dirs[i].direction.to(it.param.scalar_type()), lr, dirs[i].scale, s.weight_decay);
  }
}

void MuonFamily::step_group(size_t group) {
  const auto& o = param_groups_[group].options();
  validate(o);
  const SharedOptions s = shared(o);
  auto items = group_items(group, /*create_state=*/true);
  if (items.empty() || !group_finite_or_raise(items, s)) return;
  std::vector<int64_t> seed_steps;
  for (const auto& it : items) seed_steps.push_back(it.state->step());
  auto dirs = directions(o, items);
  apply_directions(s, o, items, dirs, seed_steps);
  for (auto& it : items) it.state->step(it.state->step() + 1);
}

at::Tensor MuonFamily::evaluate(const LossClosure& closure) {
  at::AutoGradMode enable(true);
  ++evaluations_;
  return closure();
}

at::Tensor MuonFamily::step(LossClosure closure) {
  at::NoGradGuard no_grad;
  at::Tensor loss;
  if (closure) loss = evaluate(closure);
  for (size_t g = 0; g < param_groups_.size(); ++g) step_group(g);
  return loss;
}

int64_t MuonFamily::state_bytes() const {
  int64_t total = 0;
  for (const auto& kv : state_) total += static_cast<const FamilyParamState&>(*kv.second).bytes();
  return total;
}

void MuonFamily::save(torch::serialize::OutputArchive& archive) const {
  io::save_optimizer(archive, *this, kind_, {evaluations_, nonfinite_skips_});
}

}  // namespace limuon
