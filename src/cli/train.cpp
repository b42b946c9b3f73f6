// `limuon train | eval | generate | tokenize`: the training program. Reads top to bottom: resolve
// the configuration, build data, model and optimizer, resume if asked, loop (progress, metrics,
// evaluation, atomic checkpoints), then write summary.json and the final weights.
#include "train.h"

#include "family_flags.h"

#include "limuon/optim/rng.h"
#include "limuon/data/images.h"
#include "limuon/dist/data_parallel.h"
#include "limuon/data/text.h"
#include "limuon/optim/hybrid.h"
#include "limuon/io/safetensors.h"
#include "limuon/models/gpt2.h"
#include "limuon/models/vit.h"
#include "limuon/optim/schedule.h"
#include "limuon/train/checkpoint.h"

#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace limuon::cli {

namespace {

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports KiB
}

std::string human_time(double s) {
  char b[32];
  if (s < 60) std::snprintf(b, sizeof(b), "%.0fs", s);
  else if (s < 3600) std::snprintf(b, sizeof(b), "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  else std::snprintf(b, sizeof(b), "%dh%02dm", static_cast<int>(s / 3600), (static_cast<int>(s) % 3600) / 60);
  return b;
}


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
struct Config {
  std::string task, model, data, tokenizer, optimizer, out, device, progress, lowrank_state, storm, orthogonalizer, adjust_lr;
  std::string init_weights;  // safetensors (Hugging Face names) to fine-tune from
  std::string attention = "sdpa";  // sdpa | math (limuon/models/attention.h)
  std::string inject_nonfinite;  // --inject-nonfinite SPEC (testing aid), "" = none
  std::string preset = "practical";  // --preset practical|paper (LiMuon; see apply_preset)
  int64_t steps = 0, batch = 0, accum = 1, block = 0, warmup = 0, eval_interval = 0, eval_batches = 0, seed = 0;
  int64_t checkpoint_interval = 0, stop_after = 0, keep = 3, max_nonfinite = 10, dist_timeout = 300;
  int64_t rank = 32, oversample = 8, power_iters = 0, patch = 4, pad = 0;
  double lr = 0, adamw_lr = 0, weight_decay = 0, adamw_weight_decay = 0, beta = 0.1, momentum = 0.95, gamma = 0.025;
  double min_lr_ratio = 0.1, val_fraction = 0.05, dropout = -1, epochs = 0;
  // --grad-clip C: the global L2 norm of all gradients is clipped to C inside the closure, so both
  // evaluations of a two-evaluation step (LiMuon exact, Muon-MVR2) are clipped alike; 0 = off.
  double grad_clip = 0;
  // LiMuon lowrank_state paper/light with storm exact: the second backward accumulates into the
  // first gradient scaled by −(1 − beta), instead of a stored dense copy (limuon.h). The closure is
  // ours and clears gradients through the optimizer, which is the protocol. On by default, off
  // with --grad-clip (clipping the accumulated sum would clip g − (1 − beta)g̃, not g).
  bool accumulate_second_gradient = true;
  bool resume = false, nesterov = true, augment = false;
  FamilyFlags family;  // the rest of the Muon family (ALGORITHMS.md §4)
  // Budgets besides --steps (limuon compare): 0 = none; the run stops when any is spent.
  int64_t max_samples = 0, max_grad_evals = 0;
  double max_seconds = 0;
  json to_json() const {
    return json{{"task", task},       {"model", model},           {"data", data},
                {"tokenizer", tokenizer}, {"optimizer", optimizer}, {"out", out},
                {"device", device},   {"steps", steps},           {"epochs", epochs}, {"batch_size", batch},
                {"grad_accum", accum}, {"block_size", block},     {"warmup", warmup},
                {"eval_interval", eval_interval}, {"eval_batches", eval_batches}, {"seed", seed},
                {"checkpoint_interval", checkpoint_interval}, {"keep", keep}, {"lr", lr},
                {"adamw_lr", adamw_lr}, {"weight_decay", weight_decay}, {"adamw_weight_decay", adamw_weight_decay},
                {"beta", beta},       {"momentum", momentum},     {"nesterov", nesterov},
                {"gamma", gamma},     {"lowrank_state", lowrank_state}, {"storm", storm},
                {"rank", rank},       {"oversample", oversample}, {"power_iters", power_iters},
                {"orthogonalizer", orthogonalizer}, {"adjust_lr", adjust_lr}, {"min_lr_ratio", min_lr_ratio},
                {"val_fraction", val_fraction}, {"dropout", dropout}, {"attention", attention}, {"patch", patch},
                {"augment", augment}, {"pad", pad}, {"resume", resume}, {"init_weights", init_weights},
                {"max_nonfinite", max_nonfinite}, {"inject_nonfinite", inject_nonfinite}, {"family", family.to_json<json>()}, {"dist_timeout", dist_timeout},
                {"max_samples", max_samples}, {"max_grad_evals", max_grad_evals}, {"max_seconds", max_seconds},
                {"grad_clip", grad_clip}, {"preset", preset}, {"accumulate_second_gradient", accumulate_second_gradient}};
  }
};

// --inject-nonfinite SPEC: a testing aid that poisons chosen steps, so that the non-finite policy
// below can be exercised end to end through the real training loop (every optimizer, checkpoints,
// resume). SPEC is a comma list of KIND:STEP or KIND:FIRST-LAST (steps count from 1), KIND one of
//   grad, grad-nan, grad-inf   fill every gradient with NaN (Inf) after each backward of that step
//                              (both evaluations of a LiMuon exact step)
//   loss, loss-nan, loss-inf   replace the step's loss value by NaN (Inf); the gradients stay finite
struct FaultPlan {
  struct Item {
    bool loss = false;
    double value = NAN;
    int64_t first = 0, last = 0;
  };
  std::vector<Item> items;

  // The value to inject at `step` into the loss (loss = true) or the gradients; none if clean.
  std::optional<double> at(int64_t step, bool loss) const {
    for (const auto& it : items)
      if (it.loss == loss && step >= it.first && step <= it.last) return it.value;
    return std::nullopt;
  }
};

FaultPlan parse_fault_plan(const std::string& spec) {
  FaultPlan plan;
  const std::string expected =
      " (expected KIND:STEP or KIND:FIRST-LAST, steps from 1, KIND one of grad, grad-nan, grad-inf, loss, loss-nan, "
      "loss-inf; e.g. grad:5,loss-inf:7,grad:8-12)";
  for (const auto& item : split_list(spec)) {
    const auto colon = item.find(':');
    if (colon == std::string::npos) throw UsageError("--inject-nonfinite: bad item '" + item + "'" + expected);
    const std::string kind = item.substr(0, colon), range = item.substr(colon + 1);
    FaultPlan::Item f;
    if (kind == "grad" || kind == "grad-nan" || kind == "loss" || kind == "loss-nan") f.value = NAN;
    else if (kind == "grad-inf" || kind == "loss-inf") f.value = INFINITY;
    else throw UsageError("--inject-nonfinite: unknown kind '" + kind + "' in '" + item + "'" + expected);
    f.loss = kind.rfind("loss", 0) == 0;
    auto number = [&](const std::string& text) {
      if (text.empty() || text.size() > 12 || text.find_first_not_of("0123456789") != std::string::npos)
        throw UsageError("--inject-nonfinite: bad step '" + text + "' in '" + item + "'" + expected);
      const int64_t v = std::stoll(text);
      if (v < 1) throw UsageError("--inject-nonfinite: steps count from 1, got '" + text + "' in '" + item + "'");
      return v;
    };
    const auto dash = range.find('-');
    f.first = number(range.substr(0, dash));
    f.last = dash == std::string::npos ? f.first : number(range.substr(dash + 1));
    if (f.last < f.first) throw UsageError("--inject-nonfinite: empty range '" + range + "' in '" + item + "'");
    plan.items.push_back(f);
  }
  if (!spec.empty() && plan.items.empty()) throw UsageError("--inject-nonfinite: no item in '" + spec + "'" + expected);
  return plan;
}

// The global L2 norm of every gradient of `m` (accumulated in float64), after which the gradients
// are scaled by min(1, max_norm / (norm + 1e-6)), the rule of torch.nn.utils.clip_grad_norm_.
// Returns the norm before clipping. A NaN norm leaves the gradients as they are (the optimizers'
// non-finite policy then skips the step).
double clip_grad_norm(torch::nn::Module& m, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> grads, norms;
  for (auto& p : m.parameters())
    if (p.grad().defined()) {
      grads.push_back(p.grad());
      norms.push_back(p.grad().norm(2).to(at::kDouble));
    }
  if (grads.empty()) return 0;
  const double total = at::stack(norms).norm(2).item<double>();
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0)
    for (auto& g : grads) g.mul_(coef);
  return total;
}

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
  parse_fault_plan(c.inject_nonfinite);  // reject a bad SPEC before any work
  return c;
}

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

struct EvalResult {
  double loss = 0, accuracy = -1;
  int64_t count = 0;  // tokens or images
};

// What a task supplies to the training loop.
struct Task {
  virtual ~Task() = default;
  virtual torch::nn::Module& module() = 0;
  virtual void sample_step() = 0;                // draws all micro-batches of the next step
  virtual at::Tensor micro_loss(int64_t a) = 0;  // loss on micro-batch a of the current step
  virtual EvalResult evaluate(int64_t max_batches) = 0;
  virtual int64_t samples_per_micro() const = 0;
  virtual int64_t tokens_per_micro() const = 0;  // tokens (lm) or images
  virtual const char* unit() const = 0;
  virtual void save_position(torch::serialize::OutputArchive& a) const = 0;
  virtual void load_position(torch::serialize::InputArchive& a) = 0;
  virtual std::vector<std::pair<std::string, at::Tensor>> weights() = 0;
  virtual std::string describe() const = 0;
  virtual int64_t train_samples() const = 0;  // samples in one pass over the training data
  // Data parallelism: every rank draws the whole batch (same seed, same order) and computes the
  // loss on its rows only, rank r of w taking rows [r·B/w, (r+1)·B/w). The gradients' mean over the
  // ranks is then the gradient of the whole batch, as with one process.
  int shard_rank = 0, shard_world = 1;
  at::Tensor shard(const at::Tensor& t) const { return shard_world == 1 ? t : t.chunk(shard_world, 0)[shard_rank]; }
};

std::unique_ptr<data::Tokenizer> tokenizer_for(const std::string& name, int64_t vocab) {
  std::string n = name;
  if (n == "auto") n = vocab <= 257 ? "byte" : "gpt2";
  auto tok = data::make_tokenizer(n);
  if (tok->vocab_size() > vocab)
    throw UsageError("--tokenizer: '" + n + "' has " + std::to_string(tok->vocab_size()) + " tokens but the model's vocabulary is " +
                     std::to_string(vocab));
  return tok;
}

struct LmTask : Task {
  models::GPT2 model{nullptr};
  std::unique_ptr<data::Tokenizer> tok;
  data::TokenSplits splits;
  std::unique_ptr<data::WindowSampler> sampler;
  std::vector<std::pair<at::Tensor, at::Tensor>> batches;
  int64_t B, T, A;
  torch::Device device;
  std::string source;

  LmTask(const Config& c, torch::Device dev) : B(c.batch), A(c.accum), device(dev) {
    auto cfg = models::gpt2_config(c.model);
    if (c.dropout >= 0) cfg.dropout = c.dropout;
    cfg.attention = models::attention_from_name(c.attention);
    T = c.block > 0 ? c.block : std::min<int64_t>(cfg.n_ctx, 128);
    if (T > cfg.n_ctx) throw UsageError("--block-size: " + std::to_string(T) + " exceeds the model context " + std::to_string(cfg.n_ctx));
    tok = tokenizer_for(c.tokenizer, cfg.vocab_size);
    auto parts = split_list(c.data);
    if (parts.size() == 2 && parts[0].size() > 4 && parts[0].substr(parts[0].size() - 4) == ".bin") {
      splits = data::load_token_splits(parts[0], parts[1]);
      source = "shards " + parts[0] + ", " + parts[1];
    } else {
      auto docs = c.data == "default" ? data::default_corpus_documents() : data::read_text_documents(parts);
      source = c.data == "default" ? "default corpus (" + std::to_string(docs.size()) + " documents)" : c.data;
      splits = data::build_token_splits(docs, *tok, data::data_dir() + "/cache", c.val_fraction);
    }
    data::check_token_range(splits.train, cfg.vocab_size, splits.train_path.empty() ? "training tokens" : splits.train_path);
    data::check_token_range(splits.val, cfg.vocab_size, splits.val_path.empty() ? "validation tokens" : splits.val_path);
    if (static_cast<int64_t>(splits.val.size()) < T + 1)
      throw UsageError("--data: the validation split has " + std::to_string(splits.val.size()) + " tokens, fewer than --block-size + 1");
    sampler = std::make_unique<data::WindowSampler>(&splits.train, B, T, static_cast<uint64_t>(c.seed));
    model = models::GPT2(cfg);
    if (!c.init_weights.empty()) {
      // Fine-tuning: e.g. a Hugging Face distilgpt2 model.safetensors with --model distilgpt2.
      models::gpt2_from_hf(*model, io::read_safetensors(c.init_weights).tensors);
      source += "; initial weights " + c.init_weights;
    }
    model->to(device);
  }
  torch::nn::Module& module() override { return *model; }
  void sample_step() override {
    batches.clear();
    for (int64_t a = 0; a < A; ++a) {
      auto xy = sampler->next();
      batches.emplace_back(xy.first.to(device), xy.second.to(device));
    }
  }
  at::Tensor micro_loss(int64_t a) override { return model->loss(shard(batches[a].first), shard(batches[a].second)); }
  EvalResult evaluate(int64_t max_batches) override {
    torch::NoGradGuard ng;
    model->eval();
    EvalResult r;
    double total = 0;
    for (auto& xy : data::sequential_batches(splits.val, B, T, max_batches)) {
      const int64_t n = xy.first.numel();
      total += model->loss(xy.first.to(device), xy.second.to(device)).item<double>() * static_cast<double>(n);
      r.count += n;
    }
    model->train();
    r.loss = r.count ? total / static_cast<double>(r.count) : NAN;
    return r;
  }
  int64_t samples_per_micro() const override { return B; }
  int64_t tokens_per_micro() const override { return B * T; }
  int64_t train_samples() const override { return static_cast<int64_t>(splits.train.size()) / T; }
  const char* unit() const override { return "tok"; }
  void save_position(torch::serialize::OutputArchive& a) const override {
    a.write("sampler_step", c10::IValue(sampler->step()));
  }
  void load_position(torch::serialize::InputArchive& a) override {
    c10::IValue v;
    a.read("sampler_step", v);
    sampler->set_step(v.toInt());
  }
  std::vector<std::pair<std::string, at::Tensor>> weights() override {
    auto w = models::gpt2_to_hf(*model);
    for (auto& p : w) p.second = p.second.cpu();
    return w;
  }
  std::string describe() const override {
    std::ostringstream os;
    os << "task lm: " << model->config.name << " (" << model->num_parameters() << " parameters, " << model->config.n_layer << " layers, width "
       << model->config.n_embd << ", " << model->config.n_head << " heads, vocab " << model->config.vocab_size << "), context " << T
       << ", tokenizer " << tok->name() << "; data: " << source << ", " << splits.train.size() << " train / " << splits.val.size()
       << " validation tokens";
    return os.str();
  }
};

struct ImageTask : Task {
  models::ViT model{nullptr};
  data::ImageDataset train, test;
  std::unique_ptr<data::ImageBatcher> batcher;
  std::vector<std::pair<at::Tensor, at::Tensor>> batches;
  int64_t B, A, pad, step_seed = 0;
  bool augment;
  uint64_t seed;
  torch::Device device;
  std::string source;

  ImageTask(const Config& c, torch::Device dev)
      : B(c.batch), A(c.accum), pad(c.pad), augment(c.augment), seed(static_cast<uint64_t>(c.seed)), device(dev) {
    if (c.data == "fashion-mnist") {
      const char* env = std::getenv("LIMUON_FASHION_MNIST_DIR");
      const std::string dir = env && *env ? env : "/usr/share/datasets/fashion-mnist";
      train = data::load_fashion_mnist(dir, "train");
      test = data::load_fashion_mnist(dir, "test");
      source = "Fashion-MNIST (" + dir + ")";
    } else if (c.data.rfind("cifar10:", 0) == 0) {
      const std::string dir = c.data.substr(8);
      train = data::load_cifar10(dir, "train");
      test = data::load_cifar10(dir, "test");
      source = "CIFAR-10 (" + dir + ")";
    } else {
      throw UsageError("--data: unknown image data '" + c.data + "' (valid: fashion-mnist, cifar10:DIR)");
    }
    if (!c.init_weights.empty()) throw UsageError("--init-weights: only supported for --task lm (GPT-2 weights)");
    auto cfg = models::vit_config(c.model, train.images.size(2), train.images.size(1), train.num_classes, c.patch);
    if (c.dropout >= 0) cfg.dropout = c.dropout;
    cfg.attention = models::attention_from_name(c.attention);
    model = models::ViT(cfg);
    model->to(device);
    batcher = std::make_unique<data::ImageBatcher>(&train, B, seed);
  }
  torch::nn::Module& module() override { return *model; }
  at::Tensor prepare(const at::Tensor& u8, bool train_mode) {
    at::Tensor x = data::normalize(u8, train.mean, train.std);
    if (train_mode && augment) x = data::augment(x, pad, true, seed ^ static_cast<uint64_t>(0x9E3779B97F4A7C15ULL * ++step_seed));
    return x.to(device);
  }
  void sample_step() override {
    batches.clear();
    for (int64_t a = 0; a < A; ++a) {
      auto xy = batcher->next();
      batches.emplace_back(prepare(xy.first, true), xy.second.to(device));
    }
  }
  at::Tensor micro_loss(int64_t a) override { return model->loss(shard(batches[a].first), shard(batches[a].second)); }
  EvalResult evaluate(int64_t max_batches) override {
    torch::NoGradGuard ng;
    model->eval();
    EvalResult r;
    double total = 0;
    int64_t correct = 0;
    const int64_t n = test.images.size(0);
    for (int64_t i = 0, b = 0; i < n && b < max_batches; i += B, ++b) {
      const int64_t len = std::min(B, n - i);
      at::Tensor x = prepare(test.images.narrow(0, i, len), false);
      at::Tensor y = test.labels.narrow(0, i, len).to(device);
      at::Tensor logits = model->forward(x);
      total += torch::nn::functional::cross_entropy(logits, y).item<double>() * static_cast<double>(len);
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      r.count += len;
    }
    model->train();
    r.loss = r.count ? total / static_cast<double>(r.count) : NAN;
    r.accuracy = r.count ? static_cast<double>(correct) / static_cast<double>(r.count) : NAN;
    return r;
  }
  int64_t samples_per_micro() const override { return B; }
  int64_t tokens_per_micro() const override { return B; }
  int64_t train_samples() const override { return train.images.size(0); }
  const char* unit() const override { return "img"; }
  void save_position(torch::serialize::OutputArchive& a) const override {
    a.write("batcher_epoch", c10::IValue(batcher->epoch()));
    a.write("batcher_index", c10::IValue(batcher->index()));
    a.write("augment_step", c10::IValue(step_seed));
  }
  void load_position(torch::serialize::InputArchive& a) override {
    c10::IValue e, i, s;
    a.read("batcher_epoch", e);
    a.read("batcher_index", i);
    a.read("augment_step", s);
    batcher->set_position(e.toInt(), i.toInt());
    step_seed = s.toInt();
  }
  std::vector<std::pair<std::string, at::Tensor>> weights() override {
    std::vector<std::pair<std::string, at::Tensor>> w;
    for (const auto& p : model->named_parameters()) w.emplace_back(p.key(), p.value().detach().cpu().contiguous());
    return w;
  }
  std::string describe() const override {
    std::ostringstream os;
    int64_t n = 0;
    for (const auto& p : model->parameters()) n += p.numel();
    os << "task image: " << model->config.name << " (" << n << " parameters, depth " << model->config.depth << ", width "
       << model->config.dim << ", patch " << model->config.patch << "); data: " << source << ", " << train.images.size(0)
       << " train / " << test.images.size(0) << " test images" << (augment ? ", augmented" : "");
    return os.str();
  }
};

// Shapes of every parameter, to refuse a checkpoint written for another model.
std::string model_signature(torch::nn::Module& m, const std::string& name) {
  std::ostringstream os;
  os << name;
  for (const auto& p : m.named_parameters()) os << ";" << p.key() << p.value().sizes();
  return os.str();
}

struct Counters {
  int64_t step = 0, samples = 0, tokens = 0, grad_evals = 0, evaluations = 0;
  int64_t nonfinite_steps = 0;  // steps in which a loss or gradient was NaN/Inf (see cmd_train)
  double wall_s = 0;
};

std::string serialize_checkpoint(Task& task, HybridOptimizer& opt, WarmupCosine& sched, const Counters& c, const Config& cfg,
                                 const std::string& signature) {
  torch::serialize::OutputArchive a;
  a.write("limuon_checkpoint", c10::IValue(int64_t{1}));
  a.write("signature", c10::IValue(signature));
  a.write("config", c10::IValue(cfg.to_json().dump()));
  torch::serialize::OutputArchive m(a.compilation_unit());
  for (const auto& p : task.module().named_parameters()) m.write(p.key(), p.value().detach().cpu());
  for (const auto& b : task.module().named_buffers()) m.write(b.key(), b.value().detach().cpu(), true);
  a.write("model", m);
  torch::serialize::OutputArchive o(a.compilation_unit());
  opt.save(o);
  a.write("optimizer", o);
  torch::serialize::OutputArchive s(a.compilation_unit());
  sched.save(s);
  a.write("schedule", s);
  task.save_position(a);
  {
    // Every default generator: the CPU one as "rng" (as checkpoints always had it), each CUDA
    // device's as "rng_cuda/<i>".
    const GeneratorStates g = capture_generators();
    a.write("rng", g.cpu);
    a.write("rng_cuda_devices", c10::IValue(static_cast<int64_t>(g.cuda.size())));
    for (size_t i = 0; i < g.cuda.size(); ++i) a.write("rng_cuda/" + std::to_string(i), g.cuda[i]);
  }
  for (auto [k, v] : {std::pair<const char*, int64_t>{"step", c.step}, {"samples", c.samples}, {"tokens", c.tokens},
                      {"grad_evals", c.grad_evals}, {"evaluations", c.evaluations}, {"nonfinite_steps", c.nonfinite_steps}})
    a.write(k, c10::IValue(v));
  a.write("wall_s", c10::IValue(c.wall_s));
  std::ostringstream os;
  a.save_to(os);
  return os.str();
}

void load_checkpoint(const std::string& path, Task& task, HybridOptimizer& opt, WarmupCosine& sched, Counters& c,
                     const std::string& signature, const std::string& model_name) {
  torch::serialize::InputArchive a;
  a.load_from(path);
  c10::IValue v;
  if (!a.try_read("limuon_checkpoint", v)) throw std::runtime_error("not a limuon checkpoint");
  a.read("signature", v);
  if (v.toStringRef() != signature) {
    const std::string saved = v.toStringRef().substr(0, v.toStringRef().find(';'));
    // std::invalid_argument: fatal, do not fall back to older checkpoints of the same wrong model.
    throw std::invalid_argument("checkpoint " + path + " was written for model '" + saved + "' with other shapes; this run uses '" +
                                model_name + "'");
  }
  torch::serialize::InputArchive m;
  a.read("model", m);
  torch::NoGradGuard ng;
  for (auto& p : task.module().named_parameters()) {
    at::Tensor t;
    m.read(p.key(), t);
    p.value().copy_(t);
  }
  for (auto& b : task.module().named_buffers()) {
    at::Tensor t;
    m.read(b.key(), t, true);
    b.value().copy_(t);
  }
  torch::serialize::InputArchive o, s;
  a.read("optimizer", o);
  opt.load(o);
  a.read("schedule", s);
  sched.load(s);
  task.load_position(a);
  {
    GeneratorStates g;
    a.read("rng", g.cpu);
    c10::IValue n;
    if (a.try_read("rng_cuda_devices", n)) {  // absent in checkpoints of earlier versions
      if (!n.isInt() || n.toInt() < 0 || n.toInt() > 4096) throw std::runtime_error("checkpoint: bad 'rng_cuda_devices'");
      g.cuda.resize(static_cast<size_t>(n.toInt()));
      for (size_t i = 0; i < g.cuda.size(); ++i) a.read("rng_cuda/" + std::to_string(i), g.cuda[i]);
    }
    restore_generators(g);
  }
  auto get = [&](const char* k) {
    a.read(k, v);
    return v.toInt();
  };
  c.step = get("step");
  c.samples = get("samples");
  c.tokens = get("tokens");
  c.grad_evals = get("grad_evals");
  c.evaluations = get("evaluations");
  // Absent from checkpoints written before the counter existed.
  c.nonfinite_steps = a.try_read("nonfinite_steps", v) ? v.toInt() : 0;
  a.read("wall_s", v);
  c.wall_s = v.toDouble();
}

// The first parameter, buffer or optimizer-state tensor holding NaN/Inf, named, or "" when all are
// finite. A checkpoint is written only when this is "": under the `skip` policy nothing non-finite
// should ever reach the weights or the state, and a checkpoint that did hold it would poison every
// run resumed from it, and push the good ones out (--keep).
std::string first_nonfinite_tensor(torch::nn::Module& module, HybridOptimizer& opt) {
  std::vector<std::pair<std::string, at::Tensor>> all;
  std::map<StateKey, std::string> param_names;  // optimizer state key → parameter name
  for (const auto& p : module.named_parameters()) {
    all.emplace_back("parameter '" + p.key() + "'", p.value());
    param_names.emplace(state_key(p.value()), p.key());
  }
  for (const auto& b : module.named_buffers())
    if (b.value().is_floating_point()) all.emplace_back("buffer '" + b.key() + "'", b.value());
  for (auto* o : opt.optimizers()) {
    if (!o) continue;
    for (const auto& kv : o->state()) {
      const auto it = param_names.find(kv.first);
      const std::string of = " of parameter '" + (it == param_names.end() ? std::string("?") : it->second) + "'";
      auto add = [&](const char* what, const at::Tensor& t) {
        if (t.defined() && t.is_floating_point()) all.emplace_back(std::string("optimizer state ") + what + of, t);
      };
      if (auto* s = dynamic_cast<torch::optim::AdamWParamState*>(kv.second.get())) {
        add("AdamW exp_avg", s->exp_avg());
        add("AdamW exp_avg_sq", s->exp_avg_sq());
        add("AdamW max_exp_avg_sq", s->max_exp_avg_sq());
      } else if (auto* s = dynamic_cast<MuonParamState*>(kv.second.get())) {
        add("Muon momentum_buffer", s->momentum_buffer());
      } else if (auto* s = dynamic_cast<LiMuonParamState*>(kv.second.get())) {
        add("LiMuon momentum", s->momentum());
        add("LiMuon direction", s->direction());
        add("LiMuon factor_u", s->factor_u());
        add("LiMuon factor_s", s->factor_s());
        add("LiMuon factor_v", s->factor_v());
        add("LiMuon prev_grad", s->prev_grad());
      } else if (auto* s = dynamic_cast<FamilyParamState*>(kv.second.get())) {
        for (const auto& nt : s->tensors()) add(nt.first.c_str(), nt.second);
      }
    }
  }
  std::vector<at::Tensor> tensors;
  for (const auto& nt : all) tensors.push_back(nt.second);
  if (all_finite(tensors)) return "";  // one pass over everything in the common case
  for (const auto& nt : all)
    if (!all_finite({nt.second})) return nt.first;
  return "";
}

// The newest checkpoint in `dir` that reads back as a complete limuon checkpoint (an archive
// whose records all parse), with its step; "" when there is none.
std::string newest_readable_checkpoint(const std::string& dir, int64_t& step) {
  auto all = train::list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      torch::serialize::InputArchive a;
      a.load_from(*it);
      c10::IValue v;
      if (!a.try_read("limuon_checkpoint", v) || !a.try_read("step", v)) continue;
      step = v.toInt();
      return *it;
    } catch (const std::exception&) {  // truncated or corrupt: try the previous one
    }
  }
  return "";
}

// What a failed run leaves for the user: where to continue from.
std::string resume_hint(const std::string& dir) {
  int64_t step = 0;
  const std::string good = newest_readable_checkpoint(dir, step);
  if (good.empty()) return "no checkpoint has been written to '" + dir + "' yet, so a new run starts from scratch";
  return "the last good checkpoint is " + good + " (step " + std::to_string(step) + "), intact; continue from it with --resume";
}

// An atomic write killed midway (crash, SIGKILL, power loss) leaves its hidden temporary file
// ".<name>.tmp.XXXXXX" behind. Nothing reads those, but they hold disk space (a checkpoint each),
// so a run that takes the directory over removes the ones its own files would have produced.
std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const auto tmp = name.find(".tmp.");
    if (name.size() < 2 || name[0] != '.' || tmp == std::string::npos || !e.is_regular_file(ec)) continue;
    const std::string target = name.substr(1, tmp - 1);
    // ckpt_<8 digits>.pt, the names train::checkpoint_path gives.
    const bool checkpoint = target.size() == 16 && target.rfind("ckpt_", 0) == 0 && target.compare(13, 3, ".pt") == 0 &&
                            target.find_first_not_of("0123456789", 5) == 13;
    const bool ours = checkpoint || target == "metrics.jsonl" || target == "summary.json" || target == "model.safetensors";
    if (!ours) continue;
    std::error_code rm;
    if (fs::remove(e.path(), rm)) removed.push_back(e.path().string());
  }
  return removed;
}

class Progress {
 public:
  Progress(const std::string& mode, int64_t total) : total_(total) {
    bar_ = mode == "bar" || (mode == "auto" && isatty(STDERR_FILENO));
    silent_ = mode == "none";
    every_ = std::max<int64_t>(1, total / 20);
  }
  void update(int64_t step, double loss, double lr, double rate, const char* unit, double eta_s) {
    if (silent_) return;
    char line[256];
    std::snprintf(line, sizeof(line), "loss %.4f  lr %.3g  %.0f %s/s  ETA %s", loss, lr, rate, unit, human_time(eta_s).c_str());
    if (bar_) {
      const int width = 24;
      const int filled = static_cast<int>(width * step / std::max<int64_t>(1, total_));
      std::string b(filled, '#');
      b.resize(width, '.');
      std::fprintf(stderr, "\r[%s] %lld/%lld  %s   ", b.c_str(), static_cast<long long>(step), static_cast<long long>(total_), line);
      if (step == total_) std::fprintf(stderr, "\n");
    } else if (step % every_ == 0 || step == total_) {
      std::fprintf(stderr, "step %lld/%lld  %s\n", static_cast<long long>(step), static_cast<long long>(total_), line);
    }
    std::fflush(stderr);
  }
  void message(const std::string& m) {
    if (silent_) return;
    if (bar_) std::fprintf(stderr, "\r%-100s\r", "");
    std::fprintf(stderr, "%s\n", m.c_str());
  }

 private:
  int64_t total_, every_;
  bool bar_ = false, silent_ = false;
};

// The step count that spends --max-samples or --max-grad-evals (the smaller), 0 if neither is set.
// A step evaluates the gradient of `per_step` samples once, or twice for LiMuon with exact STORM
// (at the new and the previous weights; once on its first step): the run stops at the first step
// whose total reaches the budget, and the lr schedule ends there.
int64_t steps_for_budget(const Config& c, int64_t per_step) {
  int64_t steps = 0;
  auto take = [&](int64_t s) { steps = steps == 0 ? s : std::min(steps, s); };
  if (c.max_samples > 0) take((c.max_samples + per_step - 1) / per_step);
  if (c.max_grad_evals > 0) {
    const HybridOptions o = hybrid_options(c);
    const bool two_evaluations = (o.method == MatrixMethod::limuon && o.limuon.storm() == Storm::exact) ||
                                 o.method == MatrixMethod::muon_mvr2;
    const int64_t per_later_step = two_evaluations ? 2 : 1;
    const int64_t evaluations = (c.max_grad_evals + per_step - 1) / per_step;
    take(1 + (evaluations - 1 + per_later_step - 1) / per_later_step);
  }
  return steps;
}

torch::Device pick_device(const std::string& d) {
  if (d == "cuda") {
    if (!torch::cuda::is_available()) throw UsageError("--device cuda: CUDA is not available in this build or on this machine");
    return torch::Device(torch::kCUDA);
  }
  return torch::Device(torch::kCPU);
}

}  // namespace

void check_train_options(const std::map<std::string, std::string>& values, const std::string& origin) {
  Args args({"train"}, {});
  args.add_defaults(values, origin);
  if (!args.has("out")) args.add_defaults({{"out", "unused"}}, origin);
  parse_config(args);
  args.finish();
}

void check_train_command(const std::vector<std::string>& argv) {
  Args args(argv);
  args.integer("threads", 0, 0, 4096);  // read by main() before the command runs
  args.flag("json");
  parse_config(args);
  args.finish();
}

int cmd_train(Args& args) {
  Config cfg = parse_config(args);
  args.finish();
  const FaultPlan faults = parse_fault_plan(cfg.inject_nonfinite);
  // Data parallelism (limuon train --nproc N, or torchrun's environment): limuon/dist.h. Rank 0
  // alone writes metrics, checkpoints and the summary, and shows progress.
  dist::Env denv;
  try {
    denv = dist::env_from_environment();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  const bool leader = denv.rank == 0;
  if (!leader) cfg.progress = "none";
  if (denv.distributed() && cfg.batch % denv.world_size != 0)
    throw UsageError("--batch-size " + std::to_string(cfg.batch) + " must be divisible by the number of ranks (" +
                     std::to_string(denv.world_size) + "): each rank takes an equal share of every batch");
  torch::manual_seed(static_cast<uint64_t>(cfg.seed));
  const torch::Device device = pick_device(cfg.device);
  std::error_code ec;
  fs::create_directories(cfg.out, ec);
  if (ec || !fs::is_directory(cfg.out)) throw std::runtime_error("--out: cannot create directory '" + cfg.out + "': " + ec.message());
  // Fail before building data and model (minutes for large ones) rather than at the first write.
  // access() reports a read-only file system (EROFS) even to root.
  if (::access(cfg.out.c_str(), W_OK | X_OK) != 0)
    throw std::runtime_error("--out: cannot write to directory '" + cfg.out + "': " + std::strerror(errno));
  const auto existing = train::list_checkpoints(cfg.out);
  if (!existing.empty() && !cfg.resume)
    throw UsageError("--out: '" + cfg.out + "' already holds checkpoints (" + fs::path(existing.back()).filename().string() +
                     "); pass --resume to continue that run or choose another directory");
  std::unique_ptr<dist::Group> group;
  std::unique_ptr<dist::ShardedOrthogonalization> sharded;
  if (denv.distributed() || std::getenv("WORLD_SIZE")) {  // (a 1-rank job still reports its counters)
    group = std::make_unique<dist::Group>(denv, std::chrono::seconds(cfg.dist_timeout));
    sharded = std::make_unique<dist::ShardedOrthogonalization>(*group);
  }

  std::unique_ptr<Task> task;
  if (cfg.task == "lm") task = std::make_unique<LmTask>(cfg, device);
  else task = std::make_unique<ImageTask>(cfg, device);
  task->shard_rank = denv.rank;
  task->shard_world = denv.world_size;
  const std::string signature = model_signature(task->module(), cfg.model);
  const int64_t budget_steps = steps_for_budget(cfg, task->samples_per_micro() * cfg.accum);
  if (budget_steps > 0 && !args.has("steps")) cfg.steps = budget_steps;
  if (cfg.epochs > 0 || (budget_steps > 0 && !args.has("steps"))) {
    const double per_step = static_cast<double>(task->samples_per_micro() * cfg.accum);
    if (cfg.epochs > 0)
      cfg.steps = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(cfg.epochs * task->train_samples() / per_step)));
    if (!args.has("eval-interval")) cfg.eval_interval = std::max<int64_t>(1, cfg.steps / 5);
    if (!args.has("checkpoint-interval")) cfg.checkpoint_interval = cfg.eval_interval;
    if (!args.has("warmup")) cfg.warmup = std::max<int64_t>(1, cfg.steps / 20);
  }

  auto routing = route_module(task->module());
  HybridOptimizer opt(routing, hybrid_options(cfg));
  WarmupCosine sched(opt.optimizers(), cfg.warmup, cfg.steps, cfg.min_lr_ratio);

  if (leader) {
    std::cout << "limuon train: resolved configuration\n" << cfg.to_json().dump(2) << "\n" << task->describe() << "\n";
    if (group) std::cout << "data parallel: " << group->size() << " ranks (c10d/Gloo), " << cfg.batch / group->size()
                         << " samples per rank per micro-batch\n";
    std::cout << "parameter routing (" << cfg.optimizer << "):\n" << format_routing(routing) << std::flush;
  }

  Counters c;
  Progress progress(cfg.progress, cfg.steps);
  if (leader)
    for (const auto& t : remove_stale_temporaries(cfg.out))
    progress.message("removed " + t + ", left by an interrupted write");
  if (cfg.resume) {
    const std::string loaded = train::load_latest_checkpoint(
        cfg.out, [&](const std::string& p) { load_checkpoint(p, *task, opt, sched, c, signature, cfg.model); },
        [&](const std::string& w) { progress.message("warning: " + w); });
    if (loaded.empty()) progress.message("--resume: no checkpoint in " + cfg.out + ", starting from scratch");
    else progress.message("resumed from " + loaded + " at step " + std::to_string(c.step));
  }

  const std::string metrics_path = (fs::path(cfg.out) / "metrics.jsonl").string();
  double best_val = INFINITY;
  if (leader) {
    // Keep only the metrics of steps the run resumes from (a crash may have logged later ones);
    // their evaluations count towards best_val_loss.
    std::ifstream old(metrics_path);
    std::string line, kept;
    while (old && std::getline(old, line)) {
      try {
        const json row = json::parse(line);
        if (row.value("step", int64_t{0}) > c.step) continue;
        kept += line + "\n";
        if (row.contains("val_loss") && row["val_loss"].is_number()) best_val = std::min(best_val, row["val_loss"].get<double>());
      } catch (const json::exception&) {  // a line cut by a crash
      }
    }
    io::atomic_write_file(metrics_path, kept);
  }
  std::ofstream metrics;
  if (leader) metrics.open(metrics_path, std::ios::app);
  if (leader && !metrics) throw std::runtime_error("cannot write " + metrics_path);
  auto write_metrics = [&](json j) {
    if (!leader) return;
    metrics << j.dump() << "\n";
    metrics.flush();
    // A full disk shows here first (a line per step); errno still holds the failed write's cause.
    if (!metrics)
      throw std::runtime_error("cannot append to " + metrics_path + ": " + std::strerror(errno) + "; " + resume_hint(cfg.out));
  };

  EvalResult last_eval;
  int64_t evals_in_step = 0;
  double last_grad_norm = 0;  // before clipping, of the step's last evaluation (--grad-clip)
  auto fill_gradients = [&](double value) {
    torch::NoGradGuard ng;
    for (auto& p : task->module().parameters())
      if (p.grad().defined()) p.mutable_grad().fill_(value);
  };
  auto closure = [&]() {
    opt.zero_grad(/*set_to_none=*/false);
    ++evals_in_step;
    double total = 0;
    for (int64_t a = 0; a < cfg.accum; ++a) {
      at::Tensor loss = task->micro_loss(a) / static_cast<double>(cfg.accum);
      loss.backward();
      total += loss.item<double>();
    }
    if (group) {  // both evaluations of a LiMuon exact step come through here
      std::vector<at::Tensor> grads;
      for (auto& p : task->module().parameters())
        if (p.grad().defined()) grads.push_back(p.grad());
      group->allreduce_mean(grads);
      total = group->allreduce_sum(total) / group->size();
    }
    // After the all-reduce, so that every rank clips the same averaged gradient by the same factor.
    if (cfg.grad_clip > 0) last_grad_norm = clip_grad_norm(task->module(), cfg.grad_clip);
    const int64_t step = c.step + 1;  // the step this evaluation belongs to, counted from 1
    if (auto v = faults.at(step, /*loss=*/false)) fill_gradients(*v);
    if (auto v = faults.at(step, /*loss=*/true)) total = *v;
    // Policy for a non-finite loss: the step is skipped for every parameter group and counted,
    // exactly as for a non-finite gradient. Its gradients may look finite, but they come from a
    // forward pass that overflowed somewhere, so they are not trusted: they are set to NaN, which
    // sends every group through its optimizer's `skip` path (no step, weights and state as they
    // were, nonfinite_skips counted) instead of a second, trainer-side skip mechanism.
    if (!std::isfinite(total)) fill_gradients(NAN);
    return at::tensor(total);
  };
  auto evaluate = [&](int64_t step) {
    if (!leader) return;  // nothing of the training state depends on it
    last_eval = task->evaluate(cfg.eval_batches);
    best_val = std::min(best_val, last_eval.loss);
    json j{{"step", step}, {"samples", c.samples}, {"grad_evals", c.grad_evals}, {"val_loss", last_eval.loss},
           {"val_ppl", std::exp(last_eval.loss)}, {"wall_s", c.wall_s}};
    if (last_eval.accuracy >= 0) j["val_accuracy"] = last_eval.accuracy;
    write_metrics(j);
    std::ostringstream os;
    os << "step " << step << ": val_loss " << last_eval.loss;
    if (cfg.task == "lm") os << " (ppl " << std::exp(last_eval.loss) << ")";
    else os << ", accuracy " << last_eval.accuracy;
    progress.message(os.str());
  };
  auto checkpoint = [&]() {
    const std::string bad = first_nonfinite_tensor(task->module(), opt);
    if (!bad.empty())
      throw std::runtime_error("refusing to write the checkpoint of step " + std::to_string(c.step) + ": " + bad +
                               " holds NaN/Inf; " + resume_hint(cfg.out));
    if (!leader) return;
    std::string path;
    try {
      path = train::write_checkpoint(cfg.out, c.step, serialize_checkpoint(*task, opt, sched, c, cfg, signature),
                                     static_cast<int>(cfg.keep));
    } catch (const std::exception& e) {
      // write_checkpoint has removed its temporary file and touched no older checkpoint.
      throw std::runtime_error("cannot write the checkpoint of step " + std::to_string(c.step) + " to directory '" + cfg.out +
                               "': " + e.what() + "; " + resume_hint(cfg.out) +
                               " once the directory is writable and has space again");
    }
    progress.message("checkpoint " + path);
  };

  double ema_rate = 0;
  // Non-finite values: the optimizers skip (see closure) and count; a step whose count rose, or
  // whose loss is not finite, is a non-finite step (counted in nonfinite_steps). Such a step does
  // not trigger the periodic checkpoint: the state has not moved (or, for LiMuon exact with only
  // its second gradient bad, merely dropped its estimate), and writing it would only rotate older
  // checkpoints out (--keep), which are the ones wanted if the fault persists. After
  // --max-nonfinite of them in a row the run stops with an error. The streak is not saved in
  // checkpoints: resuming is a decision to try again, and gets the full allowance.
  int64_t streak = 0, last_finite_step = c.step;
  auto budget_spent = [&]() -> const char* {
    if (cfg.max_samples > 0 && c.samples >= cfg.max_samples) return "samples";
    if (cfg.max_grad_evals > 0 && c.grad_evals >= cfg.max_grad_evals) return "grad_evals";
    if (cfg.max_seconds > 0 && c.wall_s >= cfg.max_seconds) return "seconds";
    return c.step >= cfg.steps ? "steps" : nullptr;
  };
  while (!budget_spent()) {
    auto t0 = std::chrono::steady_clock::now();
    // Ranks share the batch order but must not share dropout masks: the global generator (dropout
    // only, by now) gets a seed of (seed, rank, step), which a resumed run recomputes.
    if (denv.distributed())
      torch::manual_seed(static_cast<uint64_t>(cfg.seed) * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(denv.rank) * 1000003ULL +
                         static_cast<uint64_t>(c.step));
    task->sample_step();
    evals_in_step = 0;
    const double lr = opt.optimizers()[opt.matrix_optimizer() ? 0 : 1]->param_groups()[0].options().get_lr();
    const int64_t skips_before = opt.nonfinite_skips();
    const double loss = opt.step(closure).item<double>();
    sched.step();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    // The ranks agree on elapsed time, so a --max-seconds budget stops them all at the same step.
    if (group) ms = group->allreduce_sum(ms) / group->size();
    ++c.step;
    const bool nonfinite = opt.nonfinite_skips() > skips_before || !std::isfinite(loss);
    if (nonfinite) {
      ++c.nonfinite_steps;
      ++streak;
    } else {
      streak = 0;
      last_finite_step = c.step;
    }
    c.samples += task->samples_per_micro() * cfg.accum;
    c.tokens += task->tokens_per_micro() * cfg.accum;
    c.evaluations += evals_in_step;
    c.grad_evals += evals_in_step * task->samples_per_micro() * cfg.accum;
    c.wall_s += ms / 1000.0;
    const double rate = task->tokens_per_micro() * cfg.accum / (ms / 1000.0);
    ema_rate = ema_rate == 0 ? rate : 0.9 * ema_rate + 0.1 * rate;
    json step_metrics{{"step", c.step}, {"samples", c.samples}, {"tokens", c.tokens}, {"grad_evals", c.grad_evals},
                   {"evaluations", c.evaluations}, {"loss", loss}, {"lr", lr}, {"ms_per_step", ms},
                   {std::string(task->unit()) + "_per_s", rate}, {"optimizer_state_bytes", opt.state_bytes()},
                   {"peak_rss_mb", peak_rss_mb()}, {"nonfinite_skips", opt.nonfinite_skips()},
                   {"nonfinite_steps", c.nonfinite_steps}};
    if (cfg.grad_clip > 0) step_metrics["grad_norm"] = last_grad_norm;
    write_metrics(step_metrics);
    const double eta = (cfg.steps - c.step) * (task->tokens_per_micro() * cfg.accum) / std::max(ema_rate, 1e-9);
    progress.update(c.step, loss, lr, ema_rate, task->unit(), eta);
    if (nonfinite) {
      progress.message("warning: step " + std::to_string(c.step) + " had a non-finite loss or gradient (NaN/Inf): skipped (" +
                       std::to_string(streak) + " in a row" +
                       (cfg.max_nonfinite > 0 ? ", --max-nonfinite " + std::to_string(cfg.max_nonfinite) : std::string()) + ")");
      if (cfg.max_nonfinite > 0 && streak >= cfg.max_nonfinite) {
        const std::string bad = first_nonfinite_tensor(task->module(), opt);
        throw std::runtime_error(
            "training stopped at step " + std::to_string(c.step) + ": " + std::to_string(streak) + " consecutive steps (" +
            std::to_string(c.step - streak + 1) + "-" + std::to_string(c.step) +
            ") had non-finite (NaN/Inf) losses or gradients and were skipped (--max-nonfinite " +
            std::to_string(cfg.max_nonfinite) + "); the last step without them was step " + std::to_string(last_finite_step) +
            (bad.empty() ? ", and the weights and optimizer state hold no NaN/Inf; " : ", and " + bad + " holds NaN/Inf; ") +
            resume_hint(cfg.out) + " after fixing the cause (e.g. a lower --lr or the data), or raise --max-nonfinite");
      }
    }
    const bool last = budget_spent() != nullptr;
    if (c.step % cfg.eval_interval == 0 || last) evaluate(c.step);
    const bool stopping = cfg.stop_after > 0 && c.step == cfg.stop_after && !last;
    if ((c.step % cfg.checkpoint_interval == 0 && !nonfinite) || last || stopping) checkpoint();
    if (stopping) {
      std::cout << "stopped after step " << c.step << " (--stop-after); continue with --resume\n";
      return 0;
    }
  }
  if (last_eval.count == 0) evaluate(c.step);
  if (!leader) return 0;

  const std::string weights_path = (fs::path(cfg.out) / "model.safetensors").string();
  io::write_safetensors(weights_path, task->weights(), {{"limuon_model", cfg.model}, {"format", "pt"}});
  json summary{{"final_val_loss", last_eval.loss}, {"best_val_loss", best_val}, {"steps", c.step}, {"samples", c.samples},
               {"tokens", c.tokens}, {"grad_evals", c.grad_evals}, {"evaluations", c.evaluations}, {"wall_s", c.wall_s},
               {"optimizer", cfg.optimizer}, {"optimizer_state_bytes", opt.state_bytes()}, {"peak_rss_mb", peak_rss_mb()},
               {"nonfinite_skips", opt.nonfinite_skips()}, {"nonfinite_steps", c.nonfinite_steps}, {"weights", weights_path},
               {"config", cfg.to_json()}, {"stopped_by", budget_spent()}};
  if (group) {
    const auto& st = group->stats();
    summary["data_parallel"] = {{"world_size", group->size()}, {"allreduce_bytes", st.allreduce_bytes},
                                {"allgather_bytes_received", st.allgather_bytes}, {"collectives", st.collectives},
                                {"orth_local_s", st.orth_local_s}, {"orth_local_matrices", st.orth_local_matrices},
                                {"orth_total_matrices", st.orth_total_matrices}};
  }
  if (cfg.task == "lm") summary["final_val_ppl"] = std::exp(last_eval.loss);
  else summary["final_val_accuracy"] = last_eval.accuracy;
  io::atomic_write_file((fs::path(cfg.out) / "summary.json").string(), summary.dump(2) + "\n");
  std::cout << "done: " << c.step << " steps, " << c.samples << " samples, " << c.evaluations << " gradient evaluations, "
            << human_time(c.wall_s) << "; final val_loss " << last_eval.loss;
  if (cfg.task == "lm") std::cout << " (perplexity " << std::exp(last_eval.loss) << ")";
  else std::cout << ", accuracy " << last_eval.accuracy;
  std::cout << "\nmetrics: " << metrics_path << "\nsummary: " << (fs::path(cfg.out) / "summary.json").string()
            << "\nweights: " << weights_path << "\n";
  return 0;
}

namespace {
// The parameters of the newest checkpoint in `dir` (written by limuon train for `model_name`) into
// `model`; an error names the directory or the model the checkpoint was written for.
void load_weights_from_checkpoint(torch::nn::Module& model, const std::string& dir, const std::string& model_name) {
  auto all = train::list_checkpoints(dir);
  if (all.empty()) throw std::runtime_error("--checkpoint: no checkpoint in '" + dir + "'");
  torch::serialize::InputArchive a;
  a.load_from(all.back());
  c10::IValue sig;
  a.read("signature", sig);
  if (sig.toStringRef() != model_signature(model, model_name))
    throw std::runtime_error("--checkpoint: " + all.back() + " was not written for model '" + model_name + "'");
  torch::serialize::InputArchive m;
  a.read("model", m);
  torch::NoGradGuard ng;
  for (auto& p : model.named_parameters()) {
    at::Tensor t;
    m.read(p.key(), t);
    p.value().copy_(t);
  }
}

// A GPT-2 model from --weights FILE.safetensors (HF names) or --checkpoint DIR.
models::GPT2 load_gpt2(Args& args, const std::string& model_name) {
  const std::string weights = args.str("weights", ""), ckpt = args.str("checkpoint", "");
  if (weights.empty() == ckpt.empty()) throw UsageError("give exactly one of --weights FILE.safetensors or --checkpoint DIR");
  models::GPT2 model(models::gpt2_config(model_name));
  if (!weights.empty()) {
    auto st = io::read_safetensors(weights);
    models::gpt2_from_hf(*model, st.tensors);
  } else {
    load_weights_from_checkpoint(*model, ckpt, model_name);
  }
  model->eval();
  return model;
}
}  // namespace

namespace {
// eval --task image: loss and accuracy of a ViT on the test split, from --checkpoint DIR (written by
// limuon train) or --weights F.safetensors (Hugging Face ViTForImageClassification names, or the
// model.safetensors limuon train writes; see vit_from_hf). --export-hf F.safetensors writes the
// weights under HF names in --export-dtype f32|f16|bf16; --logits-out F.safetensors writes the
// test split's logits (F32 [N, classes]) and labels (I64 [N]).
int eval_image(Args& args) {
  const std::string model_name = args.str("model", "vit-test");
  const std::string ckpt = args.str("checkpoint", ""), weights = args.str("weights", "");
  const std::string data = args.str("data", "fashion-mnist");
  const std::string export_hf = args.str("export-hf", ""), export_dtype = args.str("export-dtype", "f32");
  const std::string logits_out = args.str("logits-out", "");
  const int64_t patch = args.integer("patch", 4, 1, 1024);
  const int64_t batch = args.integer("batch-size", 256, 1, 1 << 20);
  args.finish();
  if (ckpt.empty() == weights.empty())
    throw UsageError("give exactly one of --checkpoint DIR (written by limuon train) or --weights FILE.safetensors for --task image");
  const std::map<std::string, at::ScalarType> dtypes = {{"f32", at::kFloat}, {"f16", at::kHalf}, {"bf16", at::kBFloat16}};
  if (!dtypes.count(export_dtype)) throw UsageError("--export-dtype: '" + export_dtype + "' (valid: f32, f16, bf16)");
  data::ImageDataset test;
  if (data == "fashion-mnist") {
    const char* env = std::getenv("LIMUON_FASHION_MNIST_DIR");  // as limuon train
    test = data::load_fashion_mnist(env && *env ? env : "", "test");
  } else if (data.rfind("cifar10:", 0) == 0) {
    test = data::load_cifar10(data.substr(8), "test");
  } else {
    throw UsageError("--data: unknown image data '" + data + "' (valid: fashion-mnist, cifar10:DIR)");
  }
  models::ViT model(models::vit_config(model_name, test.images.size(2), test.images.size(1), test.num_classes, patch));
  if (!weights.empty()) {
    models::vit_from_hf(*model, io::read_safetensors(weights).tensors);
  } else {
    load_weights_from_checkpoint(*model, ckpt, model_name);
  }
  model->eval();
  if (!export_hf.empty()) {
    auto hf = models::vit_to_hf(*model);
    for (auto& p : hf) p.second = p.second.to(dtypes.at(export_dtype));
    io::write_safetensors(export_hf, hf, {{"format", "pt"}, {"limuon_model", model_name}});
  }
  torch::NoGradGuard ng;
  double total = 0;
  int64_t correct = 0, n = test.images.size(0);
  std::vector<at::Tensor> all_logits;
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t len = std::min(batch, n - i);
    at::Tensor x = data::normalize(test.images.narrow(0, i, len), test.mean, test.std);
    at::Tensor y = test.labels.narrow(0, i, len);
    at::Tensor logits = model->forward(x);
    total += torch::nn::functional::cross_entropy(logits, y).item<double>() * static_cast<double>(len);
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    if (!logits_out.empty()) all_logits.push_back(logits);
  }
  if (!logits_out.empty())
    io::write_safetensors(logits_out, {{"logits", at::cat(all_logits, 0)}, {"labels", test.labels}}, {{"limuon_model", model_name}});
  std::cout << json{{"val_loss", total / static_cast<double>(n)}, {"accuracy", static_cast<double>(correct) / static_cast<double>(n)},
                    {"images", n}, {"model", model_name}}
                   .dump()
            << std::endl;
  return 0;
}
}  // namespace

int cmd_eval(Args& args) {
  if (args.str("task", "lm") == "image") return eval_image(args);
  const std::string model_name = args.str("model", "gpt2-byte-small");
  const std::string text_file = args.str("text-file", "");
  const std::string tok_name = args.str("tokenizer", "auto");
  const int64_t block = args.integer("block-size", 0, 0, 1 << 20);
  const int64_t batch = args.integer("batch-size", 8, 1, 1 << 20);
  const int64_t max_batches = args.integer("max-batches", 1000000, 1, INT64_MAX);
  if (text_file.empty()) throw UsageError("--text-file: required");
  auto model = load_gpt2(args, model_name);
  args.finish();
  auto tok = tokenizer_for(tok_name, model->config.vocab_size);
  auto docs = data::read_text_documents({text_file});
  std::vector<uint16_t> tokens;
  for (int32_t id : tok->encode(docs[0])) tokens.push_back(static_cast<uint16_t>(id));
  const int64_t T = block > 0 ? block : std::min<int64_t>(model->config.n_ctx, 128);
  if (static_cast<int64_t>(tokens.size()) < T + 1)
    throw UsageError("--text-file: '" + text_file + "' has " + std::to_string(tokens.size()) + " tokens, fewer than block size + 1");
  torch::NoGradGuard ng;
  double total = 0;
  int64_t count = 0;
  for (auto& xy : data::sequential_batches(tokens, batch, T, max_batches)) {
    total += model->loss(xy.first, xy.second).item<double>() * static_cast<double>(xy.first.numel());
    count += xy.first.numel();
  }
  const double loss = total / static_cast<double>(count);
  std::cout << json{{"val_loss", loss}, {"ppl", std::exp(loss)}, {"tokens", count}, {"model", model_name}}.dump() << std::endl;
  return 0;
}

int cmd_generate(Args& args) {
  const std::string model_name = args.str("model", "gpt2-byte-small");
  const std::string prompt = args.str("prompt", "\n");
  const std::string tok_name = args.str("tokenizer", "auto");
  const int64_t n = args.integer("max-new-tokens", 100, 1, 1 << 20);
  const double temperature = args.real("temperature", 0.8, 1e-6, 100);
  const int64_t top_k = args.integer("top-k", 40, 0, 1 << 20);
  const int64_t seed = args.integer("seed", 0, 0, INT64_MAX);
  auto model = load_gpt2(args, model_name);
  args.finish();
  auto tok = tokenizer_for(tok_name, model->config.vocab_size);
  std::cout << generate_text(*model, *tok, prompt, n, temperature, top_k, static_cast<uint64_t>(seed)) << std::endl;
  return 0;
}

std::string generate_text(models::GPT2Impl& model, const data::Tokenizer& tok, const std::string& prompt, int64_t n,
                          double temperature, int64_t top_k, uint64_t seed) {
  torch::NoGradGuard ng;
  auto gen = at::detail::createCPUGenerator(seed);
  std::vector<int32_t> ids = tok.encode(prompt);
  if (ids.empty()) ids.push_back(tok.eot());
  const auto device = model.wte->weight.device();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(ids.size()) - model.config.n_ctx);
    std::vector<int64_t> window(ids.begin() + start, ids.end());
    at::Tensor x = at::tensor(window, at::kLong).unsqueeze(0).to(device);
    at::Tensor logits = model.forward(x).select(1, x.size(1) - 1).squeeze(0).to(at::kFloat).cpu() / temperature;
    if (top_k > 0 && top_k < logits.size(0)) {
      auto kth = std::get<0>(logits.topk(top_k)).min();
      logits = logits.masked_fill(logits < kth, -INFINITY);
    }
    at::Tensor probs = at::softmax(logits, -1);
    const int64_t next = at::multinomial(probs, 1, false, gen).item<int64_t>();
    if (next == tok.eot()) break;
    ids.push_back(static_cast<int32_t>(next));
  }
  return tok.decode(ids);
}

int cmd_tokenize(Args& args) {
  // --text-file F: the whole file's bytes instead of --text (token ids with --decode).
  const std::string text_file = args.str("text-file", "");
  if (!text_file.empty() && args.has("text")) throw UsageError("give one of --text or --text-file");
  const std::string text = text_file.empty() ? args.str("text", "") : data::read_text_documents({text_file})[0];
  const std::string tok_name = args.str("tokenizer", "gpt2");
  const bool decode = args.flag("decode");
  args.finish();
  auto tok = data::make_tokenizer(tok_name);
  if (decode) {
    std::vector<int32_t> ids;
    std::istringstream is(text);
    std::string w;
    while (is >> w) {
      try {
        ids.push_back(static_cast<int32_t>(std::stol(w)));
      } catch (const std::exception&) {
        throw UsageError("--text: with --decode, expected token ids separated by spaces, got '" + w + "'");
      }
    }
    std::cout << tok->decode(ids) << std::endl;
    return 0;
  }
  auto ids = tok->encode(text);
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
  std::cout << std::endl;
  return 0;
}

int bench_train_step(Args& args, bool json_out) {
  const std::string task = args.str("task", "lm");
  const std::string name = args.str("model", task == "lm" ? "gpt2-byte-small" : "vit-tiny");
  const int64_t batch = args.integer("batch-size", task == "lm" ? 8 : 64, 1, 1 << 20);
  const int64_t block = args.integer("block-size", 128, 1, 1 << 20);
  const int64_t warmup = args.integer("warmup", 2, 0, 1000);
  const int64_t repeats = args.integer("repeats", 5, 1, 100000);
  args.finish();
  torch::manual_seed(0);
  std::shared_ptr<torch::nn::Module> module;
  std::function<at::Tensor()> loss_fn;
  int64_t units = 0;
  at::Tensor x, y;
  if (task == "lm") {
    auto cfg = models::gpt2_config(name);
    cfg.dropout = 0.0;
    auto m = models::GPT2(cfg);
    module = m.ptr();
    x = torch::randint(0, cfg.vocab_size, {batch, block});
    y = torch::randint(0, cfg.vocab_size, {batch, block});
    loss_fn = [m, &x, &y]() mutable { return m->loss(x, y); };
    units = batch * block;
  } else if (task == "image") {
    auto m = models::ViT(models::vit_config(name, 28, 1, 10, 4));
    module = m.ptr();
    x = torch::randn({batch, 1, 28, 28});
    y = torch::randint(0, 10, {batch});
    loss_fn = [m, &x, &y]() mutable { return m->loss(x, y); };
    units = batch;
  } else {
    throw UsageError("--task: unknown value '" + task + "' (valid: lm, image)");
  }
  torch::optim::AdamW opt(module->parameters(), torch::optim::AdamWOptions(1e-4));
  auto step = [&] {
    opt.zero_grad(/*set_to_none=*/false);
    loss_fn().backward();
    opt.step();
  };
  for (int64_t i = 0; i < warmup; ++i) step();
  std::vector<double> t;
  for (int64_t i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  const double ms = t[t.size() / 2];
  if (json_out)
    std::cout << json{{"bench", "train_step"}, {"impl", "limuon"}, {"task", task}, {"model", name}, {"batch", batch},
                      {"block", task == "lm" ? block : 0}, {"median_ms", ms}, {"units_per_s", units / (ms / 1000.0)},
                      {"threads", at::get_num_threads()}}
                     .dump()
              << std::endl;
  else
    std::printf("%s %s batch %lld: median %.1f ms, %.0f %s/s\n", task.c_str(), name.c_str(), static_cast<long long>(batch), ms,
                units / (ms / 1000.0), task == "lm" ? "tok" : "img");
  return 0;
}

}  // namespace limuon::cli
