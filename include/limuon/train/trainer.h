// limuon::train — the training loop as a library: a Task (model + data) is trained by a
// HybridOptimizer (Muon-family method on the hidden matrices, AdamW on the rest) under a
// warmup-cosine schedule, until a budget (steps, samples, gradient evaluations, seconds) is spent,
// with atomic checkpoints and resume, JSON-lines metrics, progress, the non-finite policy and,
// optionally, data parallelism. `limuon train` is this plus flag parsing; examples/train_custom.cpp
// trains a user's own model with it.
//
// The closure the optimizer calls (Trainer::closure) clears the gradients through the optimizer,
// runs forward and backward on every micro-batch of the step, averages gradients and loss over the
// ranks, clips the global gradient norm and applies the non-finite policy. Two-evaluation methods
// (LiMuon storm=exact, Muon-MVR2) call it twice per step, on the same batch and with the same
// random generator state (limuon/optim/two_point.h), so both evaluations are treated alike.
#pragma once

#include "limuon/optim/hybrid.h"
#include "limuon/optim/schedule.h"

#include <torch/nn/module.h>
#include <torch/serialize/archive.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace limuon::dist {
class Group;
class StateSharding;
}

namespace limuon::train {

struct EvalResult {
  double loss = 0, accuracy = -1;  // accuracy < 0: not a classification task
  int64_t count = 0;               // tokens or images evaluated
};

// What a model and its data supply to the Trainer.
struct Task {
  virtual ~Task() = default;
  virtual torch::nn::Module& module() = 0;
  virtual void sample_step() = 0;                // draws all micro-batches of the next step
  virtual at::Tensor micro_loss(int64_t a) = 0;  // loss on micro-batch a of the current step
  virtual EvalResult evaluate(int64_t max_batches) = 0;
  virtual int64_t samples_per_micro() const = 0;
  virtual int64_t tokens_per_micro() const { return samples_per_micro(); }  // tokens (lm) or samples
  virtual const char* unit() const { return "samples"; }                    // what tokens_per_micro counts
  // The data position (sampler state), so that a resumed run draws the batches it would have drawn.
  virtual void save_position(torch::serialize::OutputArchive&) const {}
  virtual void load_position(torch::serialize::InputArchive&) {}
  // The weights written to OUT/model.safetensors at the end (default: the named parameters).
  virtual std::vector<std::pair<std::string, at::Tensor>> weights();
  virtual std::string describe() const { return ""; }
  virtual int64_t train_samples() const { return 0; }  // samples in one pass over the data (0: unknown)
  // Data parallelism: every rank draws the whole batch (same seed, same order) and computes the
  // loss on its rows only, rank r of w taking rows [r·B/w, (r+1)·B/w). The gradients' mean over the
  // ranks is then the gradient of the whole batch, as with one process.
  int shard_rank = 0, shard_world = 1;
  at::Tensor shard(const at::Tensor& t) const { return shard_world == 1 ? t : t.chunk(shard_world, 0)[shard_rank]; }
};

// What the run has spent; checkpointed and restored with it.
struct Counters {
  int64_t step = 0, samples = 0, tokens = 0, grad_evals = 0, evaluations = 0;
  int64_t nonfinite_steps = 0;  // steps in which a loss or gradient was NaN/Inf
  double wall_s = 0;            // time in training steps (evaluation and checkpoints excluded)
};

// The run stops as soon as one is spent (0 = not set; `steps` must be set).
struct Budget {
  int64_t steps = 0, max_samples = 0, max_grad_evals = 0;
  double max_seconds = 0;
  // "steps", "samples", "grad_evals" or "seconds" when spent, nullptr otherwise.
  const char* spent(const Counters& c) const;
};

// The step count that spends max_samples or max_grad_evals (the smaller), 0 if neither is set, for
// `per_step` samples per step evaluated once (or twice from the second step when two_evaluations).
int64_t steps_for_budget(const Budget& b, int64_t per_step, bool two_evaluations);

// --inject-nonfinite SPEC (a testing aid): a comma list of KIND:STEP or KIND:FIRST-LAST (steps
// from 1), KIND one of grad|grad-nan|grad-inf (every gradient after each backward of that step) or
// loss|loss-nan|loss-inf (the step's loss value). Throws std::invalid_argument naming the item.
struct FaultPlan {
  struct Item {
    int64_t first, last;
    double value;
    bool loss;
  };
  std::vector<Item> items;
  static FaultPlan parse(const std::string& spec);
  const double* at(int64_t step, bool loss) const;
};

struct TrainerOptions {
  std::string out;                // run directory: metrics.jsonl, ckpt_*.pt, summary.json, model.safetensors
  Budget budget;                  // budget.steps also sets the length of the progress bar
  int64_t grad_accum = 1;         // micro-batches per step
  int64_t eval_interval = 0;      // evaluate every N steps (0: only at the end)
  int64_t eval_batches = 8;       // batches per evaluation
  int64_t checkpoint_interval = 0;  // checkpoint every N steps (0: only at the end)
  int64_t keep = 3;               // checkpoints kept
  int64_t stop_after = 0;         // stop (with a checkpoint) after this step, to be resumed later
  int64_t max_nonfinite = 10;     // consecutive non-finite steps that stop the run (0: never)
  int64_t seed = 0;               // per-rank dropout seeds under data parallelism
  double grad_clip = 0;           // global gradient-norm clip inside the closure (0: off)
  bool resume = false;            // continue from the newest readable checkpoint in `out`
  std::string progress = "auto";  // auto|bar|lines|none, on stderr
  std::string model_name = "model";   // in checkpoint signatures and the weights' metadata
  std::string config_json = "{}";     // the resolved configuration, stored in checkpoints and the summary
  std::string inject_nonfinite;       // FaultPlan spec, "" = none
  bool classification = false;        // summary reports accuracy rather than perplexity
  dist::Group* group = nullptr;       // data parallelism (limuon/dist/data_parallel.h); rank 0 writes files
  dist::StateSharding* sharding = nullptr;  // with group: sharded optimizer state (limuon/dist/sharding.h)
  int rank = 0;
};

struct Summary {
  Counters counters;
  EvalResult final_eval;
  double best_val_loss = 0;
  std::string stopped_by;  // which budget ended the run; "stop_after" when interrupted on purpose
  std::string summary_json;  // what OUT/summary.json holds ("" on ranks other than 0 or when stopped)
};

class Trainer {
 public:
  // The optimizer and schedule must be built over task.module()'s parameters. Validates the
  // options (std::invalid_argument naming the field) and prepares `out` (created; a directory that
  // already holds checkpoints is refused unless resume).
  Trainer(Task& task, HybridOptimizer& opt, WarmupCosine& sched, TrainerOptions options);
  ~Trainer();

  // Resumes if asked, trains until a budget is spent or stop_after, evaluates, checkpoints, and
  // writes metrics.jsonl, summary.json and model.safetensors (rank 0).
  Summary run();

  // One step's closure (see the file comment); each call counts one evaluation.
  std::function<at::Tensor()> closure();
  const Counters& counters() const { return c_; }
  // The checkpoint file that was loaded by run() with resume, or "".
  const std::string& resumed_from() const { return resumed_from_; }
  // Messages (checkpoints, resume, warnings) go here; default: the progress display.
  std::function<void(const std::string&)> on_message;

 private:
  void message(const std::string& m);
  std::string serialize_checkpoint() const;
  void load_checkpoint(const std::string& path);
  void write_checkpoint();
  void evaluate_and_log(int64_t step);
  void write_metrics(const std::string& line);

  Task& task_;
  HybridOptimizer& opt_;
  WarmupCosine& sched_;
  TrainerOptions o_;
  FaultPlan faults_;
  Counters c_;
  std::string signature_, metrics_path_, resumed_from_;
  EvalResult last_eval_;
  double best_val_ = 0;
  int64_t evals_in_step_ = 0;
  double last_grad_norm_ = 0;
  struct Output;
  std::unique_ptr<Output> out_;
};

// Creates `out` if needed and checks it is a writable directory (std::runtime_error naming it), and
// that it holds no checkpoint unless resume (std::invalid_argument). The Trainer's constructor
// calls it; a program can call it first to fail before building its data and model.
void prepare_output(const std::string& out, bool resume);
// The model's name and every parameter's name and shape: a checkpoint loads only into the same.
std::string model_signature(torch::nn::Module& m, const std::string& name);
// "42s", "3m07s", "2h05m".
std::string human_time(double seconds);
// Names of the first parameter, buffer or optimizer-state tensor holding NaN/Inf, or "".
std::string first_nonfinite_tensor(torch::nn::Module& module, HybridOptimizer& opt);
// "the last good checkpoint is ... (step N), intact; continue from it with --resume", or that none exists.
std::string resume_hint(const std::string& dir);
// Removes the hidden temporary files an interrupted atomic write of ours left in `dir`.
std::vector<std::string> remove_stale_temporaries(const std::string& dir);
// FNV-1a hash of the bytes of every parameter, in order: equal iff the weights are (bit for bit).
uint64_t weights_checksum(torch::nn::Module& m);
// Clips the global L2 norm of the module's gradients to max_norm; returns the norm before.
double clip_grad_norm(torch::nn::Module& m, double max_norm);

}  // namespace limuon::train
