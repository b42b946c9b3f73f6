// Command-line flags of the rest of the Muon family (ALGORITHMS.md §4: muon_mvr1/2, sumo, muoneq,
// lionmuon, mimuon, gluon), read the same way by `limuon train` and `limuon bench step`.
#pragma once

#include "args.h"

#include "limuon/optim/hybrid.h"

#include <cstdint>
#include <string>

namespace limuon::cli {

struct FamilyFlags {
  double beta1 = 0.9, beta2 = 0.99, sign_lr_ratio = 0.05;  // lionmuon
  int64_t period = 2;                                       // lionmuon
  std::string equilibrate = "rows";                         // muoneq
  double eq_exponent = -0.5, eq_eps = 1e-12;                // muoneq
  int64_t eq_phase = 0;                                     // muoneq; 0 = never
  double tau = 1e-6;                                        // mimuon
  std::string gluon_mode = "stochastic";                    // gluon
  bool gluon_constant_momentum = false, gluon_no_decay = false;  // gluon (stochastic mode)
  double l0 = 0.0, l1 = 70.0;                               // gluon (deterministic mode)
  int64_t update_interval = 200;                            // sumo (K)
  double alpha = 1.0;                                       // sumo
  bool sumo_no_outer = false;                               // sumo: drop G_⊥
  double sumo_limiter = 0.0;                                // sumo: Block 3's γ; 0 = off
  double max_norm = 1.0;                                    // muon_mvr1/2 cap on c; 0 = none
  bool mvr_clip_inputs = false;                             // muon_mvr1/2
  std::string mvr_first_step = "zero-prev";                 // muon_mvr1/2: zero-prev | plain
  // Given explicitly: otherwise each method keeps its own published default (--momentum: MVR,
  // SUMO, MuonEq, MiMuon, and Gluon's constant momentum; --nesterov / --no-nesterov: MVR, MuonEq,
  // MiMuon, Gluon; --adjust-lr / --orthogonalizer: every method).
  bool momentum_given = false, nesterov_given = false, nesterov = false;
  bool adjust_lr_given = false, orthogonalizer_given = false;

  // Reads --beta1 --beta2 --period --sign-lr-ratio --equilibrate --eq-exponent --eq-eps --eq-phase
  // --tau --gluon-mode --gluon-constant-momentum --gluon-no-decay --l0 --l1 --update-interval
  // --alpha --sumo-no-outer --sumo-limiter --max-norm --mvr-clip-inputs --mvr-first-step
  // --nesterov (and notes --momentum, --no-nesterov, --adjust-lr, --orthogonalizer); throws
  // UsageError naming the flag.
  static FamilyFlags parse(Args& args);
  // Fills o.mvr, o.sumo, o.muoneq, o.lionmuon, o.mimuon and o.gluon from these flags and the
  // settings every method shares, taken from o.muon (lr, weight_decay, rank, oversample,
  // power_iters, seed, nonfinite; momentum, adjust_lr and orthogonalizer only when given).
  void apply(HybridOptions& o) const;

  template <class Json>
  Json to_json() const {
    return Json{{"beta1", beta1},
                {"beta2", beta2},
                {"period", period},
                {"sign_lr_ratio", sign_lr_ratio},
                {"equilibrate", equilibrate},
                {"eq_exponent", eq_exponent},
                {"eq_eps", eq_eps},
                {"eq_phase", eq_phase},
                {"tau", tau},
                {"gluon_mode", gluon_mode},
                {"gluon_constant_momentum", gluon_constant_momentum},
                {"gluon_no_decay", gluon_no_decay},
                {"l0", l0},
                {"l1", l1},
                {"update_interval", update_interval},
                {"alpha", alpha},
                {"sumo_no_outer", sumo_no_outer},
                {"sumo_limiter", sumo_limiter},
                {"max_norm", max_norm},
                {"mvr_clip_inputs", mvr_clip_inputs},
                {"mvr_first_step", mvr_first_step},
                {"momentum_given", momentum_given},
                {"nesterov_given", nesterov_given},
                {"nesterov", nesterov},
                {"adjust_lr_given", adjust_lr_given},
                {"orthogonalizer_given", orthogonalizer_given}};
  }
};

}  // namespace limuon::cli
