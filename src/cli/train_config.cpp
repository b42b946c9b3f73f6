// `limuon train`'s configuration (see train_config.h).
#include "train_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

namespace limuon::cli {

namespace {

void load_config_file(Args& args) {
  const std::string path = args.str("config", "");
  if (path.empty()) return;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("--config: cannot read '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  args.add_defaults(parse_config_json(text.str(), path), path);
}

// Everything the run needs, resolved from flags, config file and defaults.

// The lr a method gets without --lr: its class default (AdamW 1e-3; Muon and LiMuon 0.02; the
// family methods whose step carries Moonlight's 0.2·√max(m, n) an AdamW-like 1e-3; Gluon 1/L1).
double default_lr(const std::string& optimizer) {
  try {
    switch (parse_matrix_method(optimizer)) {
      case MatrixMethod::adamw: return 1e-3;
      case MatrixMethod::muon: return MuonOptions().lr();
      case MatrixMethod::limuon: return LiMuonOptions().lr();
      case MatrixMethod::muon_mvr1:
      case MatrixMethod::muon_mvr2: return MuonMVROptions().lr();
      case MatrixMethod::sumo: return SumoOptions().lr();
      case MatrixMethod::muoneq: return MuonEqOptions().lr();
      case MatrixMethod::lionmuon: return LionMuonOptions().lr();
      case MatrixMethod::mimuon: return MiMuonOptions().lr();
      case MatrixMethod::gluon: return GluonOptions().lr();
    }
  } catch (const std::invalid_argument&) {
    // an unknown --optimizer is reported with the valid names below
  }
  return 0.02;
}

// --preset paper: LiMuon as the paper's algorithm states it (Huang, Luo, Chen, arXiv 2509.14562,
// Algorithm 1 and its analysis): exact SVD orthogonalization, no shape scale on the step, and a
// constant lr (no warm-up, no decay); beta is constant in every preset. The settings enter as
// defaults, so flags and the config file still override each one. `practical` (the default) keeps
// gram_ns, adjust_lr original and the warm-up + cosine schedule.
void apply_preset(Args& args, const std::string& preset, const std::string& optimizer) {
  if (preset == "practical") return;
  if (preset != "paper") throw UsageError("--preset: unknown value '" + preset + "' (valid: practical, paper)");
  if (optimizer != "limuon")
    throw UsageError("--preset paper: defined for --optimizer limuon only (got '" + optimizer + "')");
  args.add_defaults({{"orthogonalizer", "svd"}, {"adjust-lr", "none"}, {"warmup", "0"}, {"min-lr-ratio", "1"}},
                    "--preset paper");
}

}  // namespace

Config parse_config(Args& args) {
  load_config_file(args);
  Config c;
  c.task = args.str("task", "lm");
  if (c.task != "lm" && c.task != "image") throw UsageError("--task: unknown value '" + c.task + "' (valid: lm, image)");
  c.model = args.str("model", c.task == "lm" ? "gpt2-byte-small" : "vit-test");
  c.data = args.str("data", c.task == "lm" ? "default" : "fashion-mnist");
  c.tokenizer = args.str("tokenizer", "auto");
  c.optimizer = args.str("optimizer", "limuon");
  c.preset = args.str("preset", "practical");
  apply_preset(args, c.preset, c.optimizer);
  c.out = args.str("out", "");
  c.init_weights = args.str("init-weights", "");
  if (c.out.empty()) throw UsageError("--out: required (the run's output directory)");
  c.device = args.str("device", "cpu");
  c.progress = args.str("progress", "auto");
  c.steps = args.integer("steps", 200, 1, 100000000);
  // --epochs (passes over the training set) replaces --steps once the data size is known.
  c.epochs = args.real("epochs", 0, 0, 1e6);
  if (c.epochs > 0 && args.has("steps")) throw UsageError("--epochs and --steps: give one of them");
  c.batch = args.integer("batch-size", c.task == "lm" ? 8 : 64, 1, 1 << 20);
  c.accum = args.integer("grad-accum", 1, 1, 1 << 16);
  c.block = args.integer("block-size", 0, 0, 1 << 20);
  c.warmup = args.integer("warmup", std::max<int64_t>(1, c.steps / 20), 0, 100000000);
  c.eval_interval = args.integer("eval-interval", std::max<int64_t>(1, c.steps / 5), 1, 100000000);
  c.eval_batches = args.integer("eval-batches", 20, 1, 1 << 20);
  c.seed = args.integer("seed", 0, 0, INT64_MAX);
  c.checkpoint_interval = args.integer("checkpoint-interval", c.eval_interval, 1, 100000000);
  c.keep = args.integer("keep", 3, 1, 1000);
  // Stop (after a checkpoint) once this many steps are done, as an interrupted run would.
  c.stop_after = args.integer("stop-after", 0, 0, 100000000);
  // Stop once this many samples / gradient evaluations (of one sample each) / seconds of training
  // steps are spent, with a final evaluation and checkpoint. Without --steps, the first two also
  // set the step count (the lr schedule's length). Seconds budgets are not reproducible.
  c.max_samples = args.integer("max-samples", 0, 0, INT64_MAX);
  c.max_grad_evals = args.integer("max-grad-evals", 0, 0, INT64_MAX);
  c.max_seconds = args.real("max-seconds", 0, 0, 1e9);
  // Stop with an error after this many consecutive steps with non-finite values (0: never).
  c.max_nonfinite = args.integer("max-nonfinite", 10, 0, 100000000);
  // Data-parallel runs: seconds a rank waits for the others (rendezvous, each collective).
  c.dist_timeout = args.integer("dist-timeout", 300, 1, 86400);
  c.inject_nonfinite = args.str("inject-nonfinite", "");
  c.grad_clip = args.real("grad-clip", 0, 0, 1e12);
  if (args.has("accumulate-second-gradient")) {
    c.accumulate_second_gradient = args.flag("accumulate-second-gradient");
    if (c.accumulate_second_gradient && c.grad_clip > 0)
      throw UsageError(
          "--accumulate-second-gradient and --grad-clip: give one of them (the second evaluation would clip "
          "g - (1 - beta)·g_old instead of g)");
  } else {
    c.accumulate_second_gradient = c.grad_clip == 0;
  }
  c.lr = args.real("lr", default_lr(c.optimizer), 0, 1e6);
  c.adamw_lr = args.real("adamw-lr", 1e-3, 0, 1e6);
  c.weight_decay = args.real("weight-decay", 0.0, 0, 1e6);
  c.adamw_weight_decay = args.real("adamw-weight-decay", 0.0, 0, 1e6);
  c.beta = args.real("beta", 0.1, 0, 1);
  c.momentum = args.real("momentum", 0.95, 0, 1);
  c.gamma = args.real("gamma", 0.025, 0, 1);
  c.lowrank_state = args.str("lowrank-state", "none");
  c.storm = args.str("storm", "exact");
  c.rank = args.integer("rank", 32, 1, 1 << 20);
  c.oversample = args.integer("oversample", 8, 0, 1 << 20);
  c.power_iters = args.integer("power-iters", 0, 0, 100);
  c.orthogonalizer = args.str("orthogonalizer", "gram_ns");
  c.adjust_lr = args.str("adjust-lr", "original");
  c.family = FamilyFlags::parse(args);
  // Muon's Nesterov: on unless --no-nesterov (or --nesterov=false); the family methods keep their
  // published defaults unless one of the two flags is given (FamilyFlags).
  c.nesterov = c.family.nesterov_given ? c.family.nesterov : true;
  c.min_lr_ratio = args.real("min-lr-ratio", 0.1, 0, 1);
  c.val_fraction = args.real("val-fraction", 0.05, 1e-6, 0.5);
  c.dropout = args.real("dropout", -1, -1, 1);
  c.attention = args.str("attention", "sdpa");
  if (c.attention != "sdpa" && c.attention != "math")
    throw UsageError("--attention: unknown value '" + c.attention + "' (valid: sdpa, math)");
  c.patch = args.integer("patch", 4, 1, 1024);
  c.augment = args.flag("augment");
  c.pad = args.integer("pad", c.augment ? 2 : 0, 0, 64);
  c.resume = args.flag("resume");
  if (args.has("shard-state") && args.has("no-shard-state"))
    throw UsageError("--shard-state and --no-shard-state: give one of them");
  if (args.has("shard-state")) c.shard_state = args.flag("shard-state") ? "on" : "off";
  if (args.has("no-shard-state")) c.shard_state = args.flag("no-shard-state") ? "off" : "on";
  if (c.device != "cpu" && c.device != "cuda") throw UsageError("--device: unknown value '" + c.device + "' (valid: cpu, cuda)");
  if (c.progress != "auto" && c.progress != "bar" && c.progress != "lines" && c.progress != "none")
    throw UsageError("--progress: unknown value '" + c.progress + "' (valid: auto, bar, lines, none)");
  try {
    parse_matrix_method(c.optimizer);
    parse_lowrank_state(c.lowrank_state);
    parse_storm(c.storm);
    parse_orthogonalizer(c.orthogonalizer);
    parse_adjust_lr(c.adjust_lr);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  try {
    train::FaultPlan::parse(c.inject_nonfinite);  // reject a bad SPEC before any work
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return c;
}

namespace {

// The options Muon and LiMuon share, set from the run's configuration.
template <class Options>
Options with_shared(Options o, const Config& c) {
  o.weight_decay(c.weight_decay)
      .adjust_lr(parse_adjust_lr(c.adjust_lr))
      .orthogonalizer(parse_orthogonalizer(c.orthogonalizer))
      .rank(c.rank)
      .oversample(c.oversample)
      .power_iters(c.power_iters)
      .seed(static_cast<uint64_t>(c.seed));
  return o;
}

}  // namespace

HybridOptions hybrid_options(const Config& c) {
  HybridOptions o;
  o.method = parse_matrix_method(c.optimizer);
  o.muon = with_shared(MuonOptions(c.lr).momentum(c.momentum).nesterov(c.nesterov), c);
  o.limuon = with_shared(LiMuonOptions(c.lr)
                             .beta(c.beta)
                             .gamma(c.gamma)
                             .lowrank_state(parse_lowrank_state(c.lowrank_state))
                             .storm(parse_storm(c.storm))
                             .accumulate_second_gradient(c.accumulate_second_gradient),
                         c);
  c.family.apply(o);  // muon_mvr1/2, sumo, muoneq, lionmuon, mimuon, gluon
  const double adamw_lr = c.optimizer == "adamw" ? c.lr : c.adamw_lr;
  o.adamw = torch::optim::AdamWOptions(adamw_lr).betas(std::make_tuple(0.9, 0.95)).weight_decay(c.adamw_weight_decay);
  return o;
}

using train::EvalResult;
using train::Task;

// A step of these methods evaluates the gradient twice (at the new and the previous weights).
bool two_evaluations(const Config& c) {
  const HybridOptions o = hybrid_options(c);
  return (o.method == MatrixMethod::limuon && o.limuon.storm() == Storm::exact) || o.method == MatrixMethod::muon_mvr2;
}

train::Budget budget_of(const Config& c) {
  train::Budget b;
  b.steps = c.steps;
  b.max_samples = c.max_samples;
  b.max_grad_evals = c.max_grad_evals;
  b.max_seconds = c.max_seconds;
  return b;
}

}  // namespace limuon::cli
