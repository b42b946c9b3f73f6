// Sharded optimizer state for data parallelism (ZeRO stage 1; Rajbhandari et al., "ZeRO: Memory
// Optimizations Toward Training Trillion Parameter Models", arXiv 1910.02054, §5.1, as distributed
// Muon implementations do it for whole matrices).
//
// Every hidden matrix has one owner rank (largest orthogonalization cost first to the least loaded
// rank, as Group::assign does); the AdamW-routed parameters, which AdamW updates element by element,
// are laid end to end and cut into contiguous slices that fill each rank up to 1/N of all
// parameters. Per evaluation, the gradients go through one reduce-scatter: each rank receives the
// mean gradient of what it owns and nothing else. Only the owner keeps state and computes the update
// of a matrix (its other ranks' gradients are made undefined, so the matrix optimizer skips them and
// keeps no state for them); each rank's AdamW runs over its slices only (HybridOptimizer::ShardHooks).
// After each update the new weights are shared out by one all-gather, so every rank ends every step
// with bit-identical weights. Bytes on the wire per evaluation and update: one reduce-scatter plus
// one all-gather of the parameters, which is what one ring all-reduce moves.
//
// Checkpoints keep the ordinary (unsharded) format: before a checkpoint, every rank's state is
// gathered to rank 0, which writes it and drops what it does not own again; after a load, every rank
// keeps what it owns. So a checkpoint resumes on any number of ranks, sharded or not. The price:
// rank 0 holds the whole state while it writes a checkpoint.
#pragma once

#include "limuon/optim/hybrid.h"

#include <torch/optim/adamw.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace limuon::dist {

class Group;

class StateSharding {
 public:
  // `routing`: what `opt` was built from, identical on every rank. Installs its hooks in `opt`.
  // Throws std::invalid_argument when the parameters are not all of one dtype, or when the matrix
  // method evaluates twice per step and there are fewer hidden matrices than ranks (a rank without
  // a matrix could not tell when the second evaluation is due).
  StateSharding(Group& group, HybridOptimizer& opt, const std::vector<RoutedParam>& routing);
  ~StateSharding();
  StateSharding(const StateSharding&) = delete;
  StateSharding& operator=(const StateSharding&) = delete;

  // In the closure, after backward, on every rank: agrees on the loss (returns the mean over the
  // ranks of `local_loss`) and on non-finite gradients (when any rank's gradients of the matrix or
  // AdamW group hold NaN/Inf, every owner's do, so every rank skips that group, as one process
  // would), then reduce-scatters the gradients to their owners.
  double reduce_gradients(double local_loss);
  // In the closure, after the optimizer's zero_grad() and before backward: notes the gradients
  // LiMuon left seeded (accumulate_second_gradient), which only their owner holds; the reduce
  // averages the rest and adds the seed back once.
  void note_seeds();
  // Clips the global L2 norm of the (owned, reduced) gradients to max_norm; returns the norm before.
  double clip_gradients(double max_norm);
  // Every rank receives the owners' current weights (HybridOptimizer calls it after each update).
  void gather_weights();

  // Checkpoints: every rank calls gather_state_to_leader(); rank 0 then holds the whole state in the
  // ordinary layout, writes it, and calls drop_foreign_state(). After loading an (ordinary)
  // checkpoint, every rank calls drop_foreign_state() to keep only what it owns.
  void gather_state_to_leader();
  void drop_foreign_state();

  // Parameter elements this rank owns, and the largest share (the chunk of the collectives).
  int64_t owned_elements() const;
  int64_t chunk_elements() const;
  // Which rank owns each hidden matrix (in routing order), for tests.
  std::vector<int> matrix_owners() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace limuon::dist
