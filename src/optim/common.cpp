// Shared optimizer pieces: lr scaling, matrix views, the decoupled update, finiteness, seeds.
#include "limuon/optim/common.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace limuon {

std::string to_string(AdjustLr a) {
  switch (a) {
    case AdjustLr::original: return "original";
    case AdjustLr::match_rms_adamw: return "match_rms_adamw";
    case AdjustLr::spectral: return "spectral";
    case AdjustLr::none: return "none";
  }
  return "?";
}

AdjustLr parse_adjust_lr(const std::string& name) {
  if (name == "original") return AdjustLr::original;
  if (name == "match_rms_adamw" || name == "match-rms-adamw") return AdjustLr::match_rms_adamw;
  if (name == "spectral") return AdjustLr::spectral;
  if (name == "none") return AdjustLr::none;
  throw std::invalid_argument("adjust_lr: unknown value '" + name +
                              "' (valid: original, match_rms_adamw, spectral, none)");
}

double lr_scale(AdjustLr a, int64_t rows, int64_t cols) {
  const double m = static_cast<double>(rows), n = static_cast<double>(cols);
  switch (a) {
    case AdjustLr::original: return std::sqrt(std::max(1.0, m / n));
    case AdjustLr::match_rms_adamw: return 0.2 * std::sqrt(std::max(m, n));
    case AdjustLr::spectral: return std::sqrt(m / n);
    case AdjustLr::none: return 1.0;
  }
  return 1.0;
}

std::string to_string(NonFinitePolicy p) { return p == NonFinitePolicy::skip ? "skip" : "raise"; }

NonFinitePolicy parse_nonfinite_policy(const std::string& name) {
  if (name == "skip") return NonFinitePolicy::skip;
  if (name == "raise") return NonFinitePolicy::raise;
  throw std::invalid_argument("nonfinite: unknown value '" + name + "' (valid: skip, raise)");
}

at::Tensor as_matrix(const at::Tensor& t) {
  return t.dim() == 2 ? t : t.reshape({t.size(0), -1});
}

std::pair<int64_t, int64_t> matrix_shape(const at::Tensor& t, const std::string& who) {
  if (t.dim() < 2) {
    std::ostringstream os;
    os << who << ": parameter of shape " << t.sizes()
       << " is not a matrix (needs >= 2 dimensions); route it to AdamW (see limuon::route_parameters)";
    throw std::invalid_argument(os.str());
  }
  return {t.size(0), t.numel() / std::max<int64_t>(1, t.size(0))};
}

void apply_update(at::Tensor& w, const at::Tensor& direction, double lr, double scale, double weight_decay) {
  if (weight_decay != 0.0) w.mul_(1.0 - lr * weight_decay);
  w.add_(direction.reshape(w.sizes()), -lr * scale);
}

bool all_finite(const std::vector<at::Tensor>& tensors) {
  // A sum is finite only if every element is (Inf and NaN propagate, Inf − Inf is NaN), so one
  // reduction pass decides the common case; at::isfinite costs three passes (abs, eq, ne) and was
  // a third of a low-rank LiMuon step. A non-finite sum may still be an overflow of finite
  // values: only then is the exact element-wise check run.
  std::vector<at::Tensor> sums;
  std::vector<const at::Tensor*> live;
  sums.reserve(tensors.size());
  for (const auto& t : tensors)
    if (t.defined() && t.numel() > 0) {
      sums.push_back(t.sum());
      live.push_back(&t);
    }
  if (sums.empty()) return true;
  if (at::isfinite(at::stack(sums)).all().item<bool>()) return true;
  std::vector<at::Tensor> flags;
  for (const auto* t : live) flags.push_back(at::isfinite(*t).all());
  return at::stack(flags).all().item<bool>();
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t derive_seed(uint64_t seed, uint64_t param_index, uint64_t step) {
  return splitmix64(splitmix64(splitmix64(seed) ^ param_index) ^ step) & 0x7FFFFFFFFFFFFFFFULL;
}

void check_range(const char* who, const char* option, double value, double lo, double hi, bool lo_open,
                 bool hi_open) {
  const bool ok = std::isfinite(value) && (lo_open ? value > lo : value >= lo) && (hi_open ? value < hi : value <= hi);
  if (!ok) {
    std::ostringstream os;
    os << who << ": " << option << " must be in " << (lo_open ? "(" : "[") << lo << ", ";
    if (std::isinf(hi)) os << "inf)"; else os << hi << (hi_open ? ")" : "]");
    os << ", got " << value;
    throw std::invalid_argument(os.str());
  }
}

void check_at_least(const char* who, const char* option, int64_t value, int64_t lo) {
  if (value < lo)
    throw std::invalid_argument(std::string(who) + ": " + option + " must be >= " + std::to_string(lo) +
                                ", got " + std::to_string(value));
}

}  // namespace limuon
