// Muon: EMA momentum + Nesterov + orthogonalized update (ALGORITHMS.md §2).
#include "limuon/optim/muon.h"

#include "state_io.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace limuon {

namespace {
constexpr const char* kKind = "muon";
// Upper bound on ns_steps: a checkpoint is untrusted input (as for power_iters in state_io.h).
constexpr int64_t kMaxNsSteps = 100;
constexpr const char* kNsKeys[3] = {"ns_a", "ns_b", "ns_c"};

}  // namespace

MuonOptions::MuonOptions(double lr) : lr_(lr) {}

double MuonOptions::get_lr() const { return lr(); }
void MuonOptions::set_lr(const double lr) { this->lr(lr); }

void MuonOptions::validate() const {
  io::validate_shared_options("Muon", *this);
  check_range("Muon", "momentum", momentum(), 0.0, 1.0, false, true);
  for (size_t i = 0; i < 3; ++i)
    if (!std::isfinite(ns_coefficients()[i]))
      throw std::invalid_argument("Muon: ns_coefficients must be finite, got ns_coefficients[" + std::to_string(i) +
                                  "] = " + std::to_string(ns_coefficients()[i]));
  check_at_least("Muon", "ns_steps", ns_steps(), 1);
  io::check_at_most("Muon", "ns_steps", ns_steps(), kMaxNsSteps);
  check_range("Muon", "eps", eps(), 0.0, std::numeric_limits<double>::infinity(), true, true);
}

void MuonOptions::serialize(torch::serialize::OutputArchive& a) const {
  io::put_shared_options(a, *this);
  io::put(a, "momentum", momentum());
  io::put(a, "nesterov", nesterov());
  for (size_t i = 0; i < 3; ++i) io::put(a, kNsKeys[i], ns_coefficients()[i]);
  io::put(a, "ns_steps", ns_steps());
  io::put(a, "eps", eps());
}

void MuonOptions::serialize(torch::serialize::InputArchive& a) {
  io::get_shared_options(a, *this);
  momentum(io::get_double(a, "momentum"));
  nesterov(io::get_bool(a, "nesterov"));
  NsCoefficients c = kNs5Coefficients;
  for (size_t i = 0; i < 3; ++i) c[i] = io::get_double_or(a, kNsKeys[i], c[i]);
  ns_coefficients(c);
  ns_steps(io::get_int_or(a, "ns_steps", kNs5Steps));
  eps(io::get_double_or(a, "eps", kNs5Eps));
}

bool operator==(const MuonOptions& l, const MuonOptions& r) {
  return io::shared_options_equal(l, r) && l.momentum() == r.momentum() && l.nesterov() == r.nesterov() &&
         l.ns_coefficients() == r.ns_coefficients() && l.ns_steps() == r.ns_steps() && l.eps() == r.eps();
}

void MuonParamState::serialize(torch::serialize::OutputArchive& a) const {
  io::put(a, "step", step());
  io::put_tensor(a, "momentum_buffer", momentum_buffer());
}

void MuonParamState::serialize(torch::serialize::InputArchive& a) {
  step(io::get_int(a, "step"));
  momentum_buffer(io::get_tensor_opt(a, "momentum_buffer"));
}

bool operator==(const MuonParamState& l, const MuonParamState& r) {
  return l.step() == r.step() && l.momentum_buffer().defined() == r.momentum_buffer().defined() &&
         (!l.momentum_buffer().defined() || at::equal(l.momentum_buffer(), r.momentum_buffer()));
}

Muon::Muon(std::vector<torch::optim::OptimizerParamGroup> param_groups, MuonOptions defaults)
    : torch::optim::Optimizer(param_groups, std::make_unique<MuonOptions>(defaults)) {
  keep_group_options(param_groups_, param_groups);
  defaults.validate();
  for (auto& g : param_groups_) static_cast<const MuonOptions&>(g.options()).validate();
  check_params();
}

Muon::Muon(std::vector<at::Tensor> params, MuonOptions defaults)
    : Muon({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

void Muon::check_params() const {
  for (const auto& g : param_groups_)
    for (const auto& p : g.params()) matrix_shape(p, "Muon");
}

at::Tensor Muon::step(LossClosure closure) {
  at::NoGradGuard no_grad;
  at::Tensor loss;
  if (closure) {
    at::AutoGradMode enable(true);
    loss = closure();
  }
  int64_t index = 0;  // position of the parameter in the whole optimizer (for sketch seeds)
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const MuonOptions&>(group.options());
    o.validate();
    std::vector<at::Tensor> params, grads;
    std::vector<uint64_t> seeds;
    for (auto& p : group.params()) {
      const int64_t my_index = index++;
      if (!p.grad().defined()) continue;
      matrix_shape(p, "Muon");
      params.push_back(p);
      grads.push_back(p.grad());
      auto it = state_.find(io::state_key(p));
      const int64_t step = it == state_.end() ? 0 : static_cast<MuonParamState&>(*it->second).step();
      seeds.push_back(derive_seed(o.seed(), 2 * my_index + 1, step));
    }
    if (params.empty()) continue;
    if (!all_finite(grads)) {
      if (o.nonfinite() == NonFinitePolicy::raise)
        throw std::runtime_error("Muon: non-finite gradient in a parameter group (nonfinite=raise)");
      ++nonfinite_skips_;
      continue;
    }
    std::vector<at::Tensor> updates;
    updates.reserve(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      auto& p = params[i];
      auto& slot = state_[io::state_key(p)];
      if (!slot) {
        auto s = std::make_unique<MuonParamState>();
        // fp32 momentum for half-precision weights.
        const auto dt = (p.scalar_type() == at::kHalf || p.scalar_type() == at::kBFloat16) ? at::kFloat : p.scalar_type();
        s->momentum_buffer(at::zeros(as_matrix(p).sizes(), p.options().dtype(dt)));
        slot = std::move(s);
      }
      auto& st = static_cast<MuonParamState&>(*slot);
      auto& buf = st.momentum_buffer();
      at::Tensor g = as_matrix(grads[i]).to(buf.scalar_type());
      buf.lerp_(g, 1.0 - o.momentum());
      updates.push_back(o.nesterov() ? g.lerp(buf, o.momentum()) : buf);
    }
    auto dirs = orthogonalize_many(updates, orth_spec_of(o), seeds);
    for (size_t i = 0; i < params.size(); ++i) {
      auto& p = params[i];
      auto& st = static_cast<MuonParamState&>(*state_[io::state_key(p)]);
      const auto shape = matrix_shape(p, "Muon");
      apply_update(p, dirs[i], o.lr(), lr_scale(o.adjust_lr(), shape.first, shape.second), o.weight_decay());
      st.step(st.step() + 1);
    }
  }
  return loss;
}

int64_t Muon::state_bytes() const {
  int64_t total = 0;
  for (const auto& kv : state_) {
    const auto& s = static_cast<const MuonParamState&>(*kv.second);
    if (s.momentum_buffer().defined()) total += s.momentum_buffer().numel() * s.momentum_buffer().element_size();
  }
  return total;
}

void Muon::save(torch::serialize::OutputArchive& archive) const {
  io::save_optimizer(archive, *this, kKind, {0, nonfinite_skips_});
}

void Muon::load(torch::serialize::InputArchive& archive) {
  auto c = io::load_optimizer<MuonParamState, MuonOptions>(archive, *this, kKind);
  nonfinite_skips_ = c.nonfinite_skips;
}

}  // namespace limuon
