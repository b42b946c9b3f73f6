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
  f.eq_exponent = args.real("eq-exponent", f.eq_exponent, -1e6, 0);
  if (!(f.eq_exponent < 0)) throw UsageError("--eq-exponent: must be < 0 (the authors: -0.5; -0.25 the alternative)");
  f.eq_eps = args.real("eq-eps", f.eq_eps, 0, 1e6);
  f.eq_phase = args.integer("eq-phase", f.eq_phase, 0, INT64_MAX);
  f.tau = args.real("tau", f.tau, 0, 1e12);
  f.gluon_mode = args.str("gluon-mode", f.gluon_mode);
  f.gluon_constant_momentum = args.flag("gluon-constant-momentum");
  f.gluon_no_decay = args.flag("gluon-no-decay");
  f.l0 = args.real("l0", f.l0, 0, 1e12);
  f.l1 = args.real("l1", f.l1, 0, 1e12);
  if (f.l0 == 0 && f.l1 == 0) throw UsageError("--l0, --l1: must not both be 0 (the step size would be unbounded)");
  f.update_interval = args.integer("update-interval", f.update_interval, 1, 1 << 30);
  f.alpha = args.real("alpha", f.alpha, 0, 1e6);
  f.sumo_no_outer = args.flag("sumo-no-outer");
  f.sumo_limiter = args.real("sumo-limiter", f.sumo_limiter, 0, 1e6);
  if (f.sumo_limiter != 0 && f.sumo_limiter < 1)
    throw UsageError("--sumo-limiter: must be 0 (off) or >= 1 (the paper: 1.1), got " + std::to_string(f.sumo_limiter));
  f.max_norm = args.real("max-norm", f.max_norm, 0, 1e12);
  f.mvr_clip_inputs = args.flag("mvr-clip-inputs");
  f.mvr_first_step = args.str("mvr-first-step", f.mvr_first_step);
  if (f.mvr_first_step != "zero-prev" && f.mvr_first_step != "plain")
    throw UsageError("--mvr-first-step: unknown value '" + f.mvr_first_step + "' (valid: zero-prev, plain)");
  f.momentum_given = args.has("momentum");
  if (args.has("nesterov") && args.has("no-nesterov")) throw UsageError("--nesterov and --no-nesterov: give one of them");
  f.nesterov_given = args.has("nesterov") || args.has("no-nesterov");
  f.nesterov = args.has("nesterov") ? args.flag("nesterov") : !args.flag("no-nesterov");
  f.adjust_lr_given = args.has("adjust-lr");
  f.orthogonalizer_given = args.has("orthogonalizer");
  try {
    parse_equilibrate(f.equilibrate);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--") + e.what());
  }
  try {
    parse_gluon_mode(f.gluon_mode);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--gluon-") + e.what());
  }
  return f;
}

namespace {
// The settings every family member shares with Muon; adjust_lr and the orthogonalizer only when
// given (each method has its own published default).
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
  // --momentum / --nesterov / --no-nesterov reach a method only when given: train's defaults
  // (0.95, Nesterov on) are Muon's, and MVR, MiMuon and Gluon publish no Nesterov.
  auto momentum_of = [&](auto opts) {
    if (momentum_given) opts.momentum(m.momentum());
    return opts;
  };
  auto nesterov_of = [&](auto opts) {
    if (nesterov_given) opts.nesterov(nesterov);
    return opts;
  };
  o.mvr = nesterov_of(momentum_of(from_muon(MuonMVROptions(), m, a, r)))
              .gamma(o.limuon.gamma())
              .max_norm(max_norm > 0 ? max_norm : std::numeric_limits<double>::infinity())
              .clip_inputs(mvr_clip_inputs)
              .zero_prev_init(mvr_first_step == "zero-prev");
  o.sumo = momentum_of(from_muon(SumoOptions(), m, a, r))
               .update_interval(update_interval)
               .alpha(alpha)
               .outer(!sumo_no_outer)
               .growth_limit(sumo_limiter);
  o.muoneq = nesterov_of(momentum_of(from_muon(MuonEqOptions(), m, a, r)))
                 .equilibrate(parse_equilibrate(equilibrate))
                 .exponent(eq_exponent)
                 .eps(eq_eps)
                 .phase(eq_phase);
  o.lionmuon = from_muon(LionMuonOptions(), m, a, r).beta1(beta1).beta2(beta2).period(period).sign_lr_ratio(sign_lr_ratio);
  o.mimuon = nesterov_of(momentum_of(from_muon(MiMuonOptions(), m, a, r))).tau(tau);
  o.gluon = nesterov_of(momentum_of(from_muon(GluonOptions(), m, a, r)))
                .mode(parse_gluon_mode(gluon_mode))
                .beta_schedule(!gluon_constant_momentum)
                .step_decay(!gluon_no_decay)
                .l0(l0)
                .l1(l1);
}

}  // namespace limuon::cli
