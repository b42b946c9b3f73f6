// Command-line flags of the rest of the Muon family (ALGORITHMS.md §4: muon_mvr1/2, sumo, muoneq,
// lionmuon, mimuon, gluon), read the same way by `limuon train` and `limuon bench step`.
#pragma once

#include "args.h"

#include "limuon/hybrid.h"

#include <cstdint>
#include <string>

namespace limuon::cli {

struct FamilyFlags {
  double beta1 = 0.9, beta2 = 0.99, sign_lr_ratio = 0.1;  // lionmuon
  int64_t period = 2;                                      // lionmuon
  std::string equilibrate = "rows";                        // muoneq
  double tau = 1e-3;                                       // mimuon
  double l0 = 1.0, l1 = 1.0;                               // gluon
  int64_t update_interval = 200;                           // sumo (K)
  double alpha = 1.0;                                      // sumo
  double max_norm = 1.0;                                   // muon_mvr1/2; 0 = no clipping
  // --adjust-lr / --orthogonalizer given explicitly: otherwise each method keeps its own default
  // (lionmuon match_rms_adamw, gluon none; sumo and mimuon the svd orthogonalizer).
  bool adjust_lr_given = false, orthogonalizer_given = false;

  // Reads --beta1 --beta2 --period --sign-lr-ratio --equilibrate --tau --l0 --l1
  // --update-interval --alpha --max-norm; throws UsageError naming the flag.
  static FamilyFlags parse(Args& args);
  // Fills o.mvr, o.sumo, o.muoneq, o.lionmuon, o.mimuon and o.gluon from these flags and the
  // settings every method shares, taken from o.muon (lr, momentum, nesterov, weight_decay,
  // adjust_lr, orthogonalizer, rank, oversample, power_iters, seed, nonfinite) and o.limuon (gamma).
  void apply(HybridOptions& o) const;

  template <class Json>
  Json to_json() const {
    return Json{{"beta1", beta1}, {"beta2", beta2}, {"period", period}, {"sign_lr_ratio", sign_lr_ratio},
                {"equilibrate", equilibrate}, {"tau", tau}, {"l0", l0}, {"l1", l1},
                {"update_interval", update_interval}, {"alpha", alpha}, {"max_norm", max_norm}};
  }
};

}  // namespace limuon::cli
