// Internal: versioned, shape-checked save/load of limuon optimizers through LibTorch archives.
// Layout: limuon_format, optimizer, counters, then group/<g>/{options, num_params, shape/<i>,
// state/<i>}. State is matched to parameters by (group, position), like LibTorch's own format,
// and loading checks the kind, group sizes and every shape before touching the optimizer.
#pragma once

#include "limuon/optim/common.h"
#include "limuon/kernels/orth.h"
#include "limuon/libtorch_compat.h"

#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace limuon::io {

constexpr int64_t kFormatVersion = 1;

void put(torch::serialize::OutputArchive& a, const std::string& k, double v);
void put(torch::serialize::OutputArchive& a, const std::string& k, int64_t v);
void put(torch::serialize::OutputArchive& a, const std::string& k, bool v);
void put(torch::serialize::OutputArchive& a, const std::string& k, const std::string& v);
void put_tensor(torch::serialize::OutputArchive& a, const std::string& k, const at::Tensor& t);

double get_double(torch::serialize::InputArchive& a, const std::string& k);
int64_t get_int(torch::serialize::InputArchive& a, const std::string& k);
bool get_bool(torch::serialize::InputArchive& a, const std::string& k);
std::string get_string(torch::serialize::InputArchive& a, const std::string& k);
at::Tensor get_tensor_opt(torch::serialize::InputArchive& a, const std::string& k);
// For options added after a format was first written: an archive without the entry keeps `fallback`.
double get_double_or(torch::serialize::InputArchive& a, const std::string& k, double fallback);
int64_t get_int_or(torch::serialize::InputArchive& a, const std::string& k, int64_t fallback);
bool get_bool_or(torch::serialize::InputArchive& a, const std::string& k, bool fallback);

using limuon::state_key;

struct Counters {
  int64_t calls = 0;
  int64_t nonfinite_skips = 0;
};

void save_optimizer(torch::serialize::OutputArchive& archive, const torch::optim::Optimizer& opt,
                    const std::string& kind, const Counters& counters);

// Reads and validates the header and layout; returns the group archives for the caller.
Counters check_layout(torch::serialize::InputArchive& archive, const torch::optim::Optimizer& opt,
                      const std::string& kind, std::vector<torch::serialize::InputArchive>& groups);

// The options every Muon-family optimizer shares (lr, weight_decay, adjust_lr, orthogonalizer,
// rank, oversample, power_iters, seed, nonfinite): written, read and validated in one place.
template <class Options>
void put_shared_options(torch::serialize::OutputArchive& a, const Options& o) {
  put(a, "lr", o.lr());
  put(a, "weight_decay", o.weight_decay());
  put(a, "adjust_lr", to_string(o.adjust_lr()));
  put(a, "orthogonalizer", to_string(o.orthogonalizer()));
  put(a, "rank", o.rank());
  put(a, "oversample", o.oversample());
  put(a, "power_iters", o.power_iters());
  put(a, "seed", static_cast<int64_t>(o.seed()));
  put(a, "nonfinite", to_string(o.nonfinite()));
}

// Every key here is required (get_*, not get_*_or): an archive always names its orthogonalizer, so
// a change of the default (ns5 → gram_ns) never changes what an older archive loads as.
template <class Options>
void get_shared_options(torch::serialize::InputArchive& a, Options& o) {
  o.lr(get_double(a, "lr"));
  o.weight_decay(get_double(a, "weight_decay"));
  o.adjust_lr(parse_adjust_lr(get_string(a, "adjust_lr")));
  o.orthogonalizer(parse_orthogonalizer(get_string(a, "orthogonalizer")));
  o.rank(get_int(a, "rank"));
  o.oversample(get_int(a, "oversample"));
  o.power_iters(get_int(a, "power_iters"));
  o.seed(static_cast<uint64_t>(get_int(a, "seed")));
  o.nonfinite(parse_nonfinite_policy(get_string(a, "nonfinite")));
}

// Upper bounds (the CLI's own): a checkpoint is untrusted input, and without them power_iters = 2^46
// loops for days inside one step and rank + oversample can overflow int64.
constexpr int64_t kMaxRank = int64_t{1} << 20;
constexpr int64_t kMaxOversample = int64_t{1} << 20;
constexpr int64_t kMaxPowerIters = 100;

inline void check_at_most(const char* who, const char* option, int64_t value, int64_t hi) {
  if (value > hi)
    throw std::invalid_argument(std::string(who) + ": " + option + " must be <= " + std::to_string(hi) + ", got " +
                                std::to_string(value));
}

template <class Options>
void validate_shared_options(const char* who, const Options& o) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  check_range(who, "lr", o.lr(), 0.0, inf, false, true);
  check_range(who, "weight_decay", o.weight_decay(), 0.0, inf, false, true);
  check_at_least(who, "rank", o.rank(), 1);
  check_at_most(who, "rank", o.rank(), kMaxRank);
  check_at_least(who, "oversample", o.oversample(), 0);
  check_at_most(who, "oversample", o.oversample(), kMaxOversample);
  check_at_least(who, "power_iters", o.power_iters(), 0);
  check_at_most(who, "power_iters", o.power_iters(), kMaxPowerIters);
}

template <class Options>
bool shared_options_equal(const Options& l, const Options& r) {
  return l.lr() == r.lr() && l.weight_decay() == r.weight_decay() && l.adjust_lr() == r.adjust_lr() &&
         l.orthogonalizer() == r.orthogonalizer() && l.rank() == r.rank() && l.oversample() == r.oversample() &&
         l.power_iters() == r.power_iters() && l.seed() == r.seed() && l.nonfinite() == r.nonfinite();
}

template <class State, class Options>
Counters load_optimizer(torch::serialize::InputArchive& archive, torch::optim::Optimizer& opt,
                        const std::string& kind) {
  std::vector<torch::serialize::InputArchive> groups;
  Counters c = check_layout(archive, opt, kind, groups);
  // Parse everything first so that a failure leaves the optimizer untouched.
  std::vector<std::unique_ptr<Options>> options;
  std::vector<std::vector<std::unique_ptr<State>>> states(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    torch::serialize::InputArchive oa;
    groups[g].read("options", oa);
    auto o = std::make_unique<Options>();
    o->serialize(oa);
    // The optimizer would refuse these options at its next step; refusing them here keeps a
    // corrupt checkpoint from loading at all. runtime_error, not the constructor's
    // invalid_argument: a bad file is not a usage error, and train::load_latest_checkpoint falls
    // back to an older checkpoint only for runtime errors.
    try {
      o->validate();
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error("optimizer checkpoint: group " + std::to_string(g) + " has invalid options: " + e.what());
    }
    options.push_back(std::move(o));
    const auto& params = opt.param_groups()[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      torch::serialize::InputArchive sa;
      if (groups[g].try_read("state/" + std::to_string(i), sa)) {
        auto s = std::make_unique<State>();
        s->serialize(sa);
        states[g].push_back(std::move(s));
      } else {
        states[g].push_back(nullptr);
      }
    }
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& group = opt.param_groups()[g];
    group.set_options(std::move(options[g]));
    for (size_t i = 0; i < group.params().size(); ++i) {
      const auto key = state_key(group.params()[i]);
      if (states[g][i]) opt.state()[key] = std::move(states[g][i]);
      else opt.state().erase(key);
    }
  }
  return c;
}

}  // namespace limuon::io
