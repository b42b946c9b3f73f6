// Flags of the rest of the Muon family, shared by `limuon train` and `limuon bench step`.
#include "family_flags.h"

#include <limits>
#include <stdexcept>

namespace limuon::cli {

FamilyFlags FamilyFlags::parse(Args& args) {
  FamilyFlags f;
  f.beta1 = args.real("beta1", f.beta1, 0, 1);
  f.beta2 = args.real("beta2", f.beta2, 0, 1);
  f.period = args.integer("period", f.period, 1, 1 << 20);
  f.sign_lr_ratio = args.real("sign-lr-ratio", f.sign_lr_ratio, 0, 1e6);
  f.equilibrate = args.str("equilibrate", f.equilibrate);
  f.tau = args.real("tau", f.tau, 0, 1e6);
  f.l0 = args.real("l0", f.l0, 0, 1e12);
  f.l1 = args.real("l1", f.l1, 0, 1e12);
  f.update_interval = args.integer("update-interval", f.update_interval, 1, 1 << 30);
  f.alpha = args.real("alpha", f.alpha, 0, 1e6);
  f.max_norm = args.real("max-norm", f.max_norm, 0, 1e12);
  f.adjust_lr_given = args.has("adjust-lr");
  f.orthogonalizer_given = args.has("orthogonalizer");
  try {
    parse_equilibrate(f.equilibrate);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--") + e.what());
  }
  return f;
}

namespace {
// The settings every family member shares with Muon.
template <class Options>
Options from_muon(Options o, const MuonOptions& m, bool adjust_lr_given, bool orthogonalizer_given) {
  o.lr(m.lr()).weight_decay(m.weight_decay()).rank(m.rank()).oversample(m.oversample()).power_iters(m.power_iters());
  o.seed(m.seed()).nonfinite(m.nonfinite());
  if (adjust_lr_given) o.adjust_lr(m.adjust_lr());
  if (orthogonalizer_given) o.orthogonalizer(m.orthogonalizer());
  return o;
}
}  // namespace

void FamilyFlags::apply(HybridOptions& o) const {
  const auto& m = o.muon;
  const bool a = adjust_lr_given, r = orthogonalizer_given;
  o.mvr = from_muon(MuonMVROptions(), m, a, r)
              .momentum(m.momentum())
              .nesterov(m.nesterov())
              .gamma(o.limuon.gamma())
              .max_norm(max_norm > 0 ? max_norm : std::numeric_limits<double>::infinity());
  o.sumo = from_muon(SumoOptions(), m, a, r).momentum(m.momentum()).update_interval(update_interval).alpha(alpha);
  o.muoneq = from_muon(MuonEqOptions(), m, a, r)
                 .momentum(m.momentum())
                 .nesterov(m.nesterov())
                 .equilibrate(parse_equilibrate(equilibrate));
  o.lionmuon = from_muon(LionMuonOptions(), m, a, r).beta1(beta1).beta2(beta2).period(period).sign_lr_ratio(sign_lr_ratio);
  o.mimuon = from_muon(MiMuonOptions(), m, a, r).momentum(m.momentum()).nesterov(m.nesterov()).tau(tau);
  o.gluon = from_muon(GluonOptions(), m, a, r).momentum(m.momentum()).nesterov(m.nesterov()).l0(l0).l1(l1);
}

}  // namespace limuon::cli
