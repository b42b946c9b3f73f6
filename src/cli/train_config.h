// `limuon train`'s configuration: the flags (and --config file) resolved into one Config, and what
// it implies for the optimizer (hybrid_options) and the budget. Shared by train, compare and the
// tasks that build our models and data from it.
#pragma once

#include "args.h"
#include "family_flags.h"

#include "limuon/data/text.h"
#include "limuon/optim/hybrid.h"
#include "limuon/train/trainer.h"

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>

namespace limuon::cli {

using json = nlohmann::json;

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
  // Data parallelism: ZeRO-1 sharded optimizer state. "auto" (default): sharded where the
  // configuration allows it, else replicated with a note; "on" (--shard-state): sharded or an error;
  // "off" (--no-shard-state): every rank keeps the whole state.
  std::string shard_state = "auto";
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
                {"max_nonfinite", max_nonfinite}, {"inject_nonfinite", inject_nonfinite}, {"family", family.to_json<json>()}, {"dist_timeout", dist_timeout}, {"shard_state", shard_state},
                {"max_samples", max_samples}, {"max_grad_evals", max_grad_evals}, {"max_seconds", max_seconds},
                {"grad_clip", grad_clip}, {"preset", preset}, {"accumulate_second_gradient", accumulate_second_gradient}};
  }
};

// The flags of `limuon train` (and a --config file) as a Config; throws UsageError naming the flag.
Config parse_config(Args& args);
// The optimizer the configuration asks for.
HybridOptions hybrid_options(const Config& c);
// Whether a step of the configured method evaluates the gradient twice (LiMuon exact, Muon-MVR2).
bool two_evaluations(const Config& c);
train::Budget budget_of(const Config& c);
// The tokenizer named by --tokenizer (auto: byte for vocabularies up to 257, else gpt2), checked
// against the model's vocabulary.
std::unique_ptr<data::Tokenizer> tokenizer_for(const std::string& name, int64_t vocab);
// Our models on our data: the language-model task (GPT-2 family on text) or the image task (ViT).
std::unique_ptr<train::Task> make_task(const Config& c, torch::Device device);

}  // namespace limuon::cli
