// Learning-rate schedule: linear warm-up then cosine decay, driving the param-group lrs of any
// torch::optim::Optimizer (LibTorch 1.13 ships only StepLR).
#pragma once

#include <torch/optim/optimizer.h>

#include <cstdint>
#include <vector>

namespace limuon {

class WarmupCosine {
 public:
  // Records each group's current lr as its base lr and sets the lrs for step 0.
  // factor(t) = (t + 1)/warmup for t < warmup, then
  // min_ratio + (1 − min_ratio)·½(1 + cos(π·min(1, (t − warmup)/(total − warmup)))).
  WarmupCosine(std::vector<torch::optim::Optimizer*> optimizers, int64_t warmup_steps, int64_t total_steps,
               double min_ratio = 0.1);

  // Advances one step and sets the lrs for it.
  void step();
  double factor(int64_t t) const;
  int64_t current_step() const { return t_; }
  const std::vector<double>& base_lrs() const { return base_; }

  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

 private:
  void apply();
  std::vector<torch::optim::Optimizer*> opts_;
  std::vector<double> base_;
  int64_t warmup_, total_;
  double min_ratio_;
  int64_t t_ = 0;
};

}  // namespace limuon
