// Parameter routing (ALGORITHMS.md §5) and the hybrid optimizer: hidden weight matrices go to a
// Muon-family method, everything else (embeddings, output head, biases, norm gains, class token,
// position embeddings, anything with fewer than two non-unit dimensions) to torch::optim::AdamW.
#pragma once

#include "limuon/optim/gluon.h"
#include "limuon/optim/limuon.h"
#include "limuon/optim/lionmuon.h"
#include "limuon/optim/mimuon.h"
#include "limuon/optim/muon.h"
#include "limuon/optim/muon_mvr.h"
#include "limuon/optim/muoneq.h"
#include "limuon/optim/sumo.h"

#include <torch/optim/adamw.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}

namespace limuon {

enum class Route { matrix, adamw };

struct NamedParam {
  std::string name;
  at::Tensor param;
  bool is_embedding = false;  // owned by an embedding module (set by route_module)
};

struct RoutingRules {
  // Glob patterns (fnmatch) on the full parameter name; checked first, in this order.
  std::vector<std::string> force_adamw;
  std::vector<std::string> force_matrix;
  // Names treated as embeddings / output heads (AdamW) by default.
  std::vector<std::string> adamw_patterns = {"*wte*",       "*wpe*",           "*embed_tokens*", "*embedding*",
                                             "*lm_head*",   "head.*",          "*.head.*",       "*cls_token*",
                                             "*pos_embed*", "*position_embed*"};
};

struct RoutedParam {
  std::string name;
  at::Tensor param;
  Route route = Route::adamw;
  std::string reason;
};

// Routes named parameters; a tensor listed twice (tied weights) is kept once, under its first
// name, and goes to AdamW if any of its names is an embedding/head. A force_matrix pattern on a
// parameter with fewer than two non-unit dimensions throws std::invalid_argument.
std::vector<RoutedParam> route_parameters(const std::vector<NamedParam>& params, const RoutingRules& rules = {});
// Same, for a module's named parameters; torch::nn::Embedding weights are recognised by type.
std::vector<RoutedParam> route_module(const torch::nn::Module& module, const RoutingRules& rules = {});
// A readable table: one line per parameter with shape, route and reason, then totals.
std::string format_routing(const std::vector<RoutedParam>& routing);

// The matrix method, by the name `--optimizer` takes. muon_mvr1 and muon_mvr2 are limuon::MuonMVR
// with variant mvr1 / mvr2.
enum class MatrixMethod { muon, limuon, adamw, muon_mvr1, muon_mvr2, sumo, muoneq, lionmuon, mimuon, gluon };
std::string to_string(MatrixMethod m);
MatrixMethod parse_matrix_method(const std::string& name);
// Every method, in the order the help text lists them.
const std::vector<MatrixMethod>& all_matrix_methods();

struct HybridOptions {
  MatrixMethod method = MatrixMethod::limuon;
  MuonOptions muon;
  LiMuonOptions limuon;
  // The rest of the family (ALGORITHMS.md §4); `mvr.variant` is set from `method`.
  MuonMVROptions mvr;
  SumoOptions sumo;
  MuonEqOptions muoneq;
  LionMuonOptions lionmuon;
  MiMuonOptions mimuon;
  GluonOptions gluon;
  torch::optim::AdamWOptions adamw = torch::optim::AdamWOptions(3e-4).weight_decay(0.0);
};

// The matrix optimizer `options.method` names, over `params` (null for adamw).
std::unique_ptr<torch::optim::Optimizer> make_matrix_optimizer(const std::vector<at::Tensor>& params,
                                                               const HybridOptions& options);
// Persistent state bytes and non-finite skips of any optimizer make_matrix_optimizer builds.
int64_t matrix_state_bytes(const torch::optim::Optimizer& opt);
int64_t matrix_nonfinite_skips(const torch::optim::Optimizer& opt);
// The non-finite policy of the method `options.method` names (AdamW follows it too).
NonFinitePolicy nonfinite_policy(const HybridOptions& options);

// One object a training loop can step(closure) and zero_grad(). With LiMuon (storm exact), the
// closure runs twice per call (likewise Muon-MVR2) and AdamW steps once, on the gradient of the first evaluation, so
// that the second evaluation of one call and the first of the next see the same parameters. On
// LiMuon's first call (one evaluation, M_0 only) AdamW does not step either.
// method = adamw sends every parameter to AdamW (a baseline).
class HybridOptimizer {
 public:
  HybridOptimizer(const std::vector<RoutedParam>& routing, HybridOptions options);

  at::Tensor step(const std::function<at::Tensor()>& closure);
  // The closure must clear gradients through this zero_grad (not model->zero_grad()) when LiMuon runs
  // with accumulate_second_gradient: between the two evaluations it keeps LiMuon's seeded gradients
  // (see limuon.h) and clears everything else, AdamW's included.
  // Zeroes every gradient (set_to_none = false, the default here and LibTorch 1.13's behaviour) or
  // makes them undefined (true, LibTorch 2.x's Optimizer::zero_grad() default). Zeroing keeps
  // gradient-less parameters in AdamW's step (decoupled decay applies to them) and keeps the set of
  // defined gradients the same on every data-parallel rank, so their all-reduce buckets match.
  void zero_grad(bool set_to_none = false);

  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

  // The underlying optimizers (matrix one may be null), e.g. for a learning-rate schedule.
  std::vector<torch::optim::Optimizer*> optimizers();
  torch::optim::Optimizer* matrix_optimizer() { return matrix_.get(); }
  torch::optim::AdamW* adamw() { return adamw_.get(); }

  int64_t state_bytes() const;
  int64_t nonfinite_skips() const;
  int64_t evaluations() const { return evaluations_; }
  const HybridOptions& options() const { return options_; }

  // Data parallelism with sharded state (limuon/dist/sharding.h). `adamw`: an AdamW over the slices
  // of the AdamW-routed parameters this rank owns, stepped instead of adamw() (which then keeps no
  // state) with adamw()'s current group options (the schedule's lr); its state counts in
  // state_bytes(). `after_update`: called on every rank after each update of the weights (after
  // AdamW's step), where the owners' new weights are shared out. Both unset: the ordinary optimizer.
  struct ShardHooks {
    torch::optim::AdamW* adamw = nullptr;
    std::function<void()> after_update;
  };
  void set_shard_hooks(ShardHooks hooks) { hooks_ = std::move(hooks); }

 private:
  void adamw_step();
  HybridOptions options_;
  std::unique_ptr<torch::optim::Optimizer> matrix_;
  std::unique_ptr<torch::optim::AdamW> adamw_;
  int64_t adamw_skips_ = 0;
  int64_t evaluations_ = 0;
  ShardHooks hooks_;
};

// Persistent optimizer-state bytes of LibTorch's AdamW (exp_avg, exp_avg_sq, max_exp_avg_sq).
int64_t adamw_state_bytes(const torch::optim::AdamW& adamw);

}  // namespace limuon
