// Data-parallel training on LibTorch's own distributed engine (c10d process groups: Gloo on CPU).
// One process per rank, torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT), gradients averaged by bucketed all-reduce, and the optimizers' orthogonalizations
// shared out between ranks (each orthogonalizes its share, results are all-gathered).
#pragma once

#include "limuon/kernels/orth.h"

#include <ATen/Tensor.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace limuon::dist {

// Where this process sits in a job, from the environment.
struct Env {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool distributed() const { return world_size > 1; }
};

// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. None set: a single process
// (world_size 1). Throws std::invalid_argument naming the variable for anything missing,
// malformed or inconsistent (RANK without WORLD_SIZE, RANK >= WORLD_SIZE, a port out of range...).
Env env_from_environment();

// True when this build has c10d with Gloo (LIMUON_HAVE_DIST).
bool available();

// Traffic and time counters of one process group, cumulative.
struct Stats {
  int64_t allreduce_bytes = 0;   // payload handed to all-reduce (gradients, losses)
  int64_t allgather_bytes = 0;   // payload this rank received through all-gather (others' results)
  int64_t collectives = 0;
  double orth_local_s = 0;       // time spent orthogonalizing this rank's share
  int64_t orth_local_matrices = 0, orth_total_matrices = 0;
  // Sharded state (limuon/dist/sharding.h): payload this rank sent in the gradients' reduce-scatter,
  // payload it received through the weights' all-gather, and bytes of optimizer state it sent to
  // rank 0 for checkpoints.
  int64_t reduce_scatter_bytes = 0, param_allgather_bytes = 0, state_gather_bytes = 0;
  // Bytes this process wrote to its sockets during the collectives (the growth of `wchar` in
  // /proc/self/io across each one): what actually went on the wire, headers included; -1 where
  // /proc/self/io cannot be read.
  int64_t wire_bytes_sent = 0;
  int64_t wire_bytes_checkpoints = 0;  // the same, for gathering the state of checkpoints (not counted above)
};

// Owners for items of the given costs over `ranks` ranks: largest cost first, each to the currently
// least-loaded rank (ties: the lowest rank), which is within 4/3 of the best balance and the same on
// every rank. Shared by the orthogonalization sharing (Group::assign) and the sharded state.
std::vector<int> balance_by_cost(const std::vector<double>& cost, int ranks);

// A process group over all ranks of the job. Collectives throw std::runtime_error naming the
// operation when a peer dies or does not answer within `timeout` (never hang).
class Group {
 public:
  Group(const Env& env, std::chrono::milliseconds timeout);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const Stats& stats() const { return stats_; }

  // Replaces each tensor by the mean of its value over the ranks. Tensors of one dtype and device
  // are packed into buckets of at most `bucket_bytes` so that a model with hundreds of parameters
  // costs a handful of collectives.
  void allreduce_mean(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes = 25 << 20);
  // Sum over the ranks of one number (losses: a NaN on any rank reaches every rank).
  double allreduce_sum(double value);
  // Every rank gets root's values, in place.
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  void barrier();

  // Sharded-state collectives (limuon/dist/sharding.h), rings on point-to-point send/recv (Patarasuk
  // & Yuan 2009) that write (N−1)/N of the data per rank, the lower bound, and hold only two chunks
  // in flight: the chunks are never laid out side by side.
  // Reduce-scatter: `pack(k, dst)` writes this rank's contribution to chunk k (out.numel() elements,
  // of out's dtype) into dst; `out` becomes the mean over the ranks of chunk rank().
  using ChunkFn = std::function<void(int chunk, const at::Tensor& data)>;
  void reduce_scatter_mean(const ChunkFn& pack, const at::Tensor& out);
  // All-gather: every other rank's `mine` (equal sizes) is handed to `unpack(rank, data)` as it arrives.
  void allgather_ring(const at::Tensor& mine, const ChunkFn& unpack);
  // Rank 0 receives every other rank's bytes, one rank at a time (it holds one rank's at a time),
  // and hands them to take(rank, bytes); the other ranks send `mine`. Traffic counted apart
  // (Stats::wire_bytes_checkpoints): it serves checkpoints, not training.
  using BytesFn = std::function<void(int rank, const at::Tensor& bytes)>;
  void gather_to_leader(const std::string& mine, const BytesFn& take);
  // Every rank's values, in rank order, on every rank; all ranks pass the same count.
  std::vector<double> allgather_doubles(const std::vector<double>& mine);

  // orthogonalize_many for all ranks: matrices are assigned to ranks by estimated cost (largest
  // first to the least loaded rank), each rank orthogonalizes its share locally and the results
  // are all-gathered, so every rank returns every result, bit-identical across ranks. Every rank
  // must call it with the same shapes in the same order, as data-parallel optimizers do.
  std::vector<at::Tensor> orthogonalize_sharded(const std::vector<at::Tensor>& mats, const OrthSpec& spec,
                                                const std::vector<uint64_t>& seeds);
  // Which rank orthogonalizes each matrix (exposed for tests and benchmarks).
  std::vector<int> assign(const std::vector<at::Tensor>& mats, const OrthSpec& spec) const;
  // orthogonalize_many_local, timed and counted in stats() as this rank's share.
  std::vector<at::Tensor> orthogonalize_timed(const std::vector<at::Tensor>& mats, const OrthSpec& spec,
                                              const std::vector<uint64_t>& seeds);

 private:
  // orthogonalize_many_local, timed into stats() as this rank's share (not counted in the total).
  std::vector<at::Tensor> orthogonalize_local(const std::vector<at::Tensor>& mats, const OrthSpec& spec,
                                              const std::vector<uint64_t>& seeds);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1;
  Stats stats_;
};

// While alive, routes every orthogonalize_many call of this process to group.orthogonalize_sharded;
// with share = false (sharded optimizer state, where each owner orthogonalizes its own matrices)
// it only times the local orthogonalizations into group.stats().
class ShardedOrthogonalization {
 public:
  explicit ShardedOrthogonalization(Group& group, bool share = true);
  ~ShardedOrthogonalization();
  ShardedOrthogonalization(const ShardedOrthogonalization&) = delete;
  ShardedOrthogonalization& operator=(const ShardedOrthogonalization&) = delete;

 private:
  OrthExecutor previous_;
};

}  // namespace limuon::dist
