// `limuon train`: flags to a Config (train_config.cpp), our model and data as a task (tasks.cpp),
// then limuon::train::Trainer (limuon/train/trainer.h) runs it. eval, generate, tokenize and
// bench train-step live in model_commands.cpp.
#include "train.h"
#include "train_config.h"

#include "limuon/dist/data_parallel.h"
#include "limuon/dist/sharding.h"
#include "limuon/optim/hybrid.h"
#include "limuon/optim/schedule.h"
#include "limuon/train/trainer.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace limuon::cli {

namespace {

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
  // Data parallelism (limuon train --nproc N, or torchrun's environment): limuon/dist/data_parallel.h.
  // Rank 0 alone writes metrics, checkpoints and the summary, and shows progress.
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
  // Fail before building data and model (minutes for large ones) rather than at the first write.
  try {
    train::prepare_output(cfg.out, cfg.resume);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  std::unique_ptr<dist::Group> group;
  std::unique_ptr<dist::ShardedOrthogonalization> sharded;
  if (denv.distributed() || std::getenv("WORLD_SIZE")) {  // (a 1-rank job still reports its counters)
    group = std::make_unique<dist::Group>(denv, std::chrono::seconds(cfg.dist_timeout));
    sharded = std::make_unique<dist::ShardedOrthogonalization>(*group);
  }

  std::unique_ptr<train::Task> task = make_task(cfg, device);
  task->shard_rank = denv.rank;
  task->shard_world = denv.world_size;
  const int64_t budget_steps = train::steps_for_budget(budget_of(cfg), task->samples_per_micro() * cfg.accum, two_evaluations(cfg));
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
  // Sharded optimizer state (the default under data parallelism where the configuration allows it:
  // measured never slower, never more traffic, never more state; README "Data-parallel training").
  std::unique_ptr<dist::StateSharding> state_sharding;
  if (cfg.shard_state != "off" && group && group->size() > 1) {
    try {
      state_sharding = std::make_unique<dist::StateSharding>(*group, opt, routing);
    } catch (const std::invalid_argument& e) {
      if (cfg.shard_state == "on") throw UsageError(e.what());
      if (leader) std::cout << "note: optimizer state replicated on every rank: " << e.what() << "\n";
    }
    // With sharded state each owner orthogonalizes its own matrices (timed); otherwise they are shared out.
    if (state_sharding) {
      sharded.reset();  // first: its destructor restores the executor it replaced
      sharded = std::make_unique<dist::ShardedOrthogonalization>(*group, /*share=*/false);
    }
  }
  WarmupCosine sched(opt.optimizers(), cfg.warmup, cfg.steps, cfg.min_lr_ratio);

  if (leader) {
    std::cout << "limuon train: resolved configuration\n" << cfg.to_json().dump(2) << "\n" << task->describe() << "\n";
    if (group) std::cout << "data parallel: " << group->size() << " ranks (c10d/Gloo), " << cfg.batch / group->size()
                         << " samples per rank per micro-batch"
                         << (state_sharding ? ", optimizer state sharded (rank 0 owns " +
                                                  std::to_string(state_sharding->owned_elements()) + " parameter elements)"
                                            : std::string())
                         << "\n";
    std::cout << "parameter routing (" << cfg.optimizer << "):\n" << format_routing(routing) << std::flush;
  }

  train::TrainerOptions o;
  o.out = cfg.out;
  o.budget = budget_of(cfg);
  o.grad_accum = cfg.accum;
  o.eval_interval = cfg.eval_interval;
  o.eval_batches = cfg.eval_batches;
  o.checkpoint_interval = cfg.checkpoint_interval;
  o.keep = cfg.keep;
  o.stop_after = cfg.stop_after;
  o.max_nonfinite = cfg.max_nonfinite;
  o.seed = cfg.seed;
  o.grad_clip = cfg.grad_clip;
  o.resume = cfg.resume;
  o.progress = cfg.progress;
  o.model_name = cfg.model;
  o.config_json = cfg.to_json().dump();
  o.inject_nonfinite = cfg.inject_nonfinite;
  o.classification = cfg.task != "lm";
  o.group = group.get();
  o.sharding = state_sharding.get();
  o.rank = denv.rank;
  train::Trainer trainer(*task, opt, sched, o);
  const train::Summary s = trainer.run();
  if (s.stopped_by == "stop_after") {
    std::cout << "stopped after step " << s.counters.step << " (--stop-after); continue with --resume\n";
    return 0;
  }
  if (!leader) return 0;
  const fs::path out(cfg.out);
  std::cout << "done: " << s.counters.step << " steps, " << s.counters.samples << " samples, " << s.counters.evaluations
            << " gradient evaluations, " << train::human_time(s.counters.wall_s) << "; final val_loss " << s.final_eval.loss;
  if (cfg.task == "lm") std::cout << " (perplexity " << std::exp(s.final_eval.loss) << ")";
  else std::cout << ", accuracy " << s.final_eval.accuracy;
  std::cout << "\nmetrics: " << (out / "metrics.jsonl").string() << "\nsummary: " << (out / "summary.json").string()
            << "\nweights: " << (out / "model.safetensors").string() << "\n";
  return 0;
}

}  // namespace limuon::cli
