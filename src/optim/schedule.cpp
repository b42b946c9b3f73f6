// Linear warm-up + cosine decay over the param-group lrs of any optimizer.
#include "limuon/optim/schedule.h"

#include "state_io.h"

#include <cmath>
#include <stdexcept>

namespace limuon {

WarmupCosine::WarmupCosine(std::vector<torch::optim::Optimizer*> optimizers, int64_t warmup_steps,
                           int64_t total_steps, double min_ratio)
    : opts_(std::move(optimizers)), warmup_(warmup_steps), total_(total_steps), min_ratio_(min_ratio) {
  if (warmup_steps < 0) throw std::invalid_argument("WarmupCosine: warmup_steps must be >= 0, got " + std::to_string(warmup_steps));
  if (total_steps < 1) throw std::invalid_argument("WarmupCosine: total_steps must be >= 1, got " + std::to_string(total_steps));
  if (!(min_ratio >= 0.0 && min_ratio <= 1.0))
    throw std::invalid_argument("WarmupCosine: min_ratio must be in [0, 1], got " + std::to_string(min_ratio));
  for (auto* o : opts_)
    if (o)
      for (auto& g : o->param_groups()) base_.push_back(g.options().get_lr());
  apply();
}

double WarmupCosine::factor(int64_t t) const {
  if (t < warmup_) return static_cast<double>(t + 1) / static_cast<double>(warmup_);
  const double span = static_cast<double>(std::max<int64_t>(1, total_ - warmup_));
  const double p = std::min(1.0, static_cast<double>(t - warmup_) / span);
  return min_ratio_ + (1.0 - min_ratio_) * 0.5 * (1.0 + std::cos(M_PI * p));
}

void WarmupCosine::apply() {
  const double f = factor(t_);
  size_t k = 0;
  for (auto* o : opts_)
    if (o)
      for (auto& g : o->param_groups()) g.options().set_lr(base_.at(k++) * f);
}

void WarmupCosine::step() {
  ++t_;
  apply();
}

void WarmupCosine::save(torch::serialize::OutputArchive& a) const {
  io::put(a, "t", t_);
  io::put(a, "warmup", warmup_);
  io::put(a, "total", total_);
  io::put(a, "min_ratio", min_ratio_);
  a.write("base_lrs", at::tensor(base_, at::TensorOptions().dtype(at::kDouble)));
}

void WarmupCosine::load(torch::serialize::InputArchive& a) {
  at::Tensor base;
  a.read("base_lrs", base);
  if (base.scalar_type() != at::kDouble || base.dim() != 1)
    throw std::runtime_error("WarmupCosine: checkpoint entry 'base_lrs' is not a 1-D float64 tensor");
  base = base.contiguous();  // the archive keeps strides; the copy below reads numel() in a row
  if (base.numel() != static_cast<int64_t>(base_.size()))
    throw std::runtime_error("WarmupCosine: checkpoint has " + std::to_string(base.numel()) +
                             " parameter groups, schedule drives " + std::to_string(base_.size()));
  const int64_t t = io::get_int(a, "t");
  const int64_t warmup = io::get_int(a, "warmup");
  const int64_t total = io::get_int(a, "total");
  const double min_ratio = io::get_double(a, "min_ratio");
  // The constructor's conditions, and a step count that step() can still increment: factor()
  // computes t - warmup and total - warmup, which overflow for values no run can reach.
  constexpr int64_t kMaxSteps = int64_t{1} << 62;
  auto bad = [](const std::string& what) {
    throw std::runtime_error("WarmupCosine: checkpoint entry " + what);
  };
  if (t < 0 || t > kMaxSteps) bad("'t' = " + std::to_string(t) + " is not in [0, 2^62]");
  if (warmup < 0 || warmup > kMaxSteps) bad("'warmup' = " + std::to_string(warmup) + " is not in [0, 2^62]");
  if (total < 1 || total > kMaxSteps) bad("'total' = " + std::to_string(total) + " is not in [1, 2^62]");
  if (!(min_ratio >= 0.0 && min_ratio <= 1.0)) bad("'min_ratio' = " + std::to_string(min_ratio) + " is not in [0, 1]");
  const double* b = base.data_ptr<double>();
  for (int64_t i = 0; i < base.numel(); ++i)
    if (!(b[i] >= 0.0) || !std::isfinite(b[i]))
      bad("'base_lrs' holds " + std::to_string(b[i]) + " at index " + std::to_string(i) +
          ", not a finite learning rate >= 0");
  warmup_ = warmup;
  total_ = total;
  min_ratio_ = min_ratio;
  base_.assign(b, b + base.numel());
  t_ = t;
  apply();
}

}  // namespace limuon
