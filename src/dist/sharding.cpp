// Sharded optimizer state (see limuon/dist/sharding.h).
#include "limuon/dist/sharding.h"

#include "limuon/dist/data_parallel.h"
#include "limuon/libtorch_compat.h"
#include "limuon/optim/common.h"
#include "limuon/optim/limuon.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

namespace limuon::dist {

namespace {

using AdamWState = torch::optim::AdamWParamState;

// A hidden matrix: owned whole by one rank.
struct Matrix {
  at::Tensor param;
  int owner = 0;
  int64_t at = 0;  // offset in its owner's chunk
};

// A contiguous run of one AdamW-routed parameter's elements, owned by one rank.
struct Piece {
  size_t tensor = 0;  // index into Impl::adamw_params
  int owner = 0;
  int64_t offset = 0, length = 0;  // within the parameter, flattened
  int64_t at = 0;                  // offset in its owner's chunk
  at::Tensor view;                 // owner only: the parameter's elements, updated in place by AdamW
};

at::Tensor flat(const at::Tensor& p) { return p.detach().view({-1}); }

std::string piece_key(size_t j, const char* what) { return "piece/" + std::to_string(j) + "/" + what; }

}  // namespace

struct StateSharding::Impl {
  Group& group;
  HybridOptimizer& opt;
  int rank = 0, size = 1;
  std::vector<Matrix> matrices;
  std::vector<at::Tensor> adamw_params;
  std::vector<Piece> pieces;
  std::vector<int64_t> share;  // elements owned by each rank
  int64_t chunk = 0;
  at::Tensor grads;     // chunk: this rank's reduced gradients (the pieces' gradients are views of it)
  at::Tensor weights;   // chunk: this rank's weights, sent by the all-gather
  std::unique_ptr<torch::optim::AdamW> adamw;  // over the owned pieces' views
  std::vector<at::Tensor> seeds;  // per matrix: the seed its .grad held before backward, or undefined

  Impl(Group& g, HybridOptimizer& o) : group(g), opt(o), rank(g.rank()), size(g.size()) {}

  // Gradients of the parameters this rank owns, as the optimizers see them after the reduce.
  std::vector<at::Tensor> owned_gradients() const {
    std::vector<at::Tensor> out;
    for (const auto& m : matrices)
      if (m.owner == rank && m.param.grad().defined()) out.push_back(m.param.grad());
    for (const auto& p : pieces)
      if (p.owner == rank) out.push_back(p.view.grad());
    return out;
  }
};

StateSharding::StateSharding(Group& group, HybridOptimizer& opt, const std::vector<RoutedParam>& routing)
    : impl_(std::make_unique<Impl>(group, opt)) {
  auto& s = *impl_;
  const bool has_matrix_method = opt.options().method != MatrixMethod::adamw;
  at::ScalarType dtype = at::kFloat;
  bool first = true;
  for (const auto& r : routing) {
    if (first) dtype = r.param.scalar_type();
    first = false;
    if (r.param.scalar_type() != dtype || !r.param.device().is_cpu() || !r.param.is_contiguous())
      throw std::invalid_argument("--shard-state needs every parameter contiguous, on the CPU and of one dtype; '" + r.name +
                                  "' is not");
    if (r.route == Route::matrix && has_matrix_method) s.matrices.push_back({r.param});
    else s.adamw_params.push_back(r.param);
  }
  const int n = s.size;
  s.share.assign(static_cast<size_t>(n), 0);
  // Matrices balanced by orthogonalization cost (m·n·min(m, n)), as Group::assign balances them.
  std::vector<double> cost;
  for (const auto& m : s.matrices) {
    const double rows = static_cast<double>(m.param.size(0)), cols = static_cast<double>(m.param.numel()) / rows;
    cost.push_back(rows * cols * std::min(rows, cols));
  }
  const auto owners = balance_by_cost(cost, n);
  for (size_t i = 0; i < s.matrices.size(); ++i) s.matrices[i].owner = owners[i];
  for (auto& m : s.matrices) {
    m.at = s.share[static_cast<size_t>(m.owner)];
    s.share[static_cast<size_t>(m.owner)] += m.param.numel();
  }
  auto* two = dynamic_cast<TwoPointStepper*>(opt.matrix_optimizer());
  if (two && two->evaluates_twice() && static_cast<int>(s.matrices.size()) < n)
    throw std::invalid_argument("--shard-state with " + std::to_string(n) + " ranks and a two-evaluation method needs at least " +
                                std::to_string(n) + " hidden matrices (this model has " +
                                std::to_string(s.matrices.size()) + "); use fewer ranks or leave the state unsharded");
  // AdamW's elements, end to end, fill each rank up to an equal share of all parameters.
  int64_t total = 0, adamw_total = 0;
  for (const auto& p : s.adamw_params) adamw_total += p.numel();
  for (auto v : s.share) total += v;
  total += adamw_total;
  const int64_t target = (total + n - 1) / n;
  std::vector<int64_t> room(static_cast<size_t>(n));
  int64_t room_total = 0;
  for (int r = 0; r < n; ++r) room_total += room[static_cast<size_t>(r)] = std::max<int64_t>(0, target - s.share[static_cast<size_t>(r)]);
  if (room_total < adamw_total) room.back() += adamw_total - room_total;  // cannot happen with target = ceil(total/n)
  size_t t = 0;
  int64_t used_in_t = 0;
  for (int r = 0; r < n && t < s.adamw_params.size(); ++r) {
    int64_t left = room[static_cast<size_t>(r)];
    while (left > 0 && t < s.adamw_params.size()) {
      const int64_t take = std::min(left, s.adamw_params[t].numel() - used_in_t);
      if (take > 0) {
        Piece p;
        p.tensor = t;
        p.owner = r;
        p.offset = used_in_t;
        p.length = take;
        p.at = s.share[static_cast<size_t>(r)];
        s.share[static_cast<size_t>(r)] += take;
        s.pieces.push_back(p);
      }
      used_in_t += take;
      left -= take;
      if (used_in_t == s.adamw_params[t].numel()) {
        ++t;
        used_in_t = 0;
      }
    }
  }
  s.chunk = std::max<int64_t>(1, *std::max_element(s.share.begin(), s.share.end()));
  const auto opts = at::TensorOptions().dtype(dtype);
  s.grads = at::zeros({s.chunk}, opts);
  s.weights = at::zeros({s.chunk}, opts);
  std::vector<at::Tensor> views;
  for (auto& p : s.pieces) {
    if (p.owner != s.rank) continue;
    p.view = flat(s.adamw_params[p.tensor]).narrow(0, p.offset, p.length);
    p.view.mutable_grad() = s.grads.narrow(0, p.at, p.length);
    views.push_back(p.view);
  }
  if (!views.empty() && opt.adamw()) s.adamw = std::make_unique<torch::optim::AdamW>(views, opt.options().adamw);
  HybridOptimizer::ShardHooks hooks;
  hooks.adamw = s.adamw.get();
  hooks.after_update = [this] { gather_weights(); };
  opt.set_shard_hooks(std::move(hooks));
  drop_foreign_state();  // an optimizer that already holds state (a loaded one) keeps only its own
}

StateSharding::~StateSharding() { impl_->opt.set_shard_hooks({}); }

int64_t StateSharding::owned_elements() const { return impl_->share[static_cast<size_t>(impl_->rank)]; }
int64_t StateSharding::chunk_elements() const { return impl_->chunk; }

std::vector<int> StateSharding::matrix_owners() const {
  std::vector<int> out;
  for (const auto& m : impl_->matrices) out.push_back(m.owner);
  return out;
}

void StateSharding::note_seeds() {
  auto& s = *impl_;
  s.seeds.assign(s.matrices.size(), at::Tensor());
  const auto* limuon = dynamic_cast<const LiMuon*>(s.opt.matrix_optimizer());
  if (!limuon) return;
  for (size_t i = 0; i < s.matrices.size(); ++i)
    if (s.matrices[i].owner == s.rank && limuon->holds_seed(s.matrices[i].param))
      s.seeds[i] = s.matrices[i].param.grad().detach().clone();
}

double StateSharding::reduce_gradients(double local_loss) {
  auto& s = *impl_;
  at::NoGradGuard no_grad;
  if (s.seeds.size() != s.matrices.size()) s.seeds.assign(s.matrices.size(), at::Tensor());
  // Agree first on the loss and on non-finite gradients (cheap), so that every owner of a group
  // sees NaN when any rank's gradients of that group are not finite.
  std::vector<at::Tensor> mg, ag;
  for (const auto& m : s.matrices)
    if (m.param.grad().defined()) mg.push_back(m.param.grad());
  for (const auto& p : s.adamw_params)
    if (p.grad().defined()) ag.push_back(p.grad());
  const auto v = s.group.allgather_doubles({local_loss, all_finite(mg) ? 0.0 : 1.0, all_finite(ag) ? 0.0 : 1.0});
  double loss = 0, matrix_bad = 0, adamw_bad = 0;
  for (int r = 0; r < s.size; ++r) {
    loss += v[static_cast<size_t>(3 * r)];
    matrix_bad += v[static_cast<size_t>(3 * r + 1)];
    adamw_bad += v[static_cast<size_t>(3 * r + 2)];
  }
  // One reduce-scatter; the ring asks for this rank's gradients of one owner's chunk at a time.
  s.group.reduce_scatter_mean(
      [&](int owner, const at::Tensor& dst) {
        dst.zero_();  // the chunk's padding, and gradients that do not exist
        for (size_t i = 0; i < s.matrices.size(); ++i) {
          const auto& m = s.matrices[i];
          if (m.owner != owner) continue;
          auto d = dst.narrow(0, m.at, m.param.numel());
          if (m.param.grad().defined()) d.copy_(m.param.grad().reshape({-1}));
          if (s.seeds[i].defined()) d.sub_(s.seeds[i].reshape({-1}));  // this rank's gradient only
        }
        for (const auto& p : s.pieces) {
          if (p.owner != owner) continue;
          const auto& g = s.adamw_params[p.tensor].grad();
          if (g.defined()) dst.narrow(0, p.at, p.length).copy_(g.reshape({-1}).narrow(0, p.offset, p.length));
        }
      },
      s.grads);
  for (size_t i = 0; i < s.matrices.size(); ++i) {
    auto& m = s.matrices[i];
    auto& g = m.param.mutable_grad();
    if (m.owner != s.rank) {
      g.reset();  // not ours: no state, no step
      continue;
    }
    const auto mine = s.grads.narrow(0, m.at, m.param.numel()).view(m.param.sizes());
    // In place where the gradient exists: LiMuon's accumulate_second_gradient checks its seeds survive.
    if (g.defined()) g.copy_(mine);
    else g = mine.clone();
    if (s.seeds[i].defined()) g.add_(s.seeds[i]);  // the seed once, as one process has it
    if (matrix_bad > 0) g.fill_(NAN);
  }
  s.seeds.assign(s.matrices.size(), at::Tensor());
  for (auto& p : s.adamw_params) p.mutable_grad().reset();  // the owners' pieces carry them
  if (adamw_bad > 0)
    for (auto& p : s.pieces)
      if (p.owner == s.rank) p.view.mutable_grad().fill_(NAN);
  return loss / s.size;
}

double StateSharding::clip_gradients(double max_norm) {
  auto& s = *impl_;
  at::NoGradGuard no_grad;
  const auto grads = s.owned_gradients();
  double local = 0;
  for (const auto& g : grads) local += g.to(at::kDouble).pow(2).sum().item<double>();
  double total = 0;
  for (double x : s.group.allgather_doubles({local})) total += x;
  const double norm = std::sqrt(total);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0)
    for (at::Tensor g : grads) g.mul_(coef);  // a handle on the same gradient
  return norm;
}

void StateSharding::gather_weights() {
  auto& s = *impl_;
  at::NoGradGuard no_grad;
  for (const auto& m : s.matrices)
    if (m.owner == s.rank) s.weights.narrow(0, m.at, m.param.numel()).copy_(m.param.detach().reshape({-1}));
  for (const auto& p : s.pieces)
    if (p.owner == s.rank) s.weights.narrow(0, p.at, p.length).copy_(p.view);
  s.group.allgather_ring(s.weights, [&](int owner, const at::Tensor& data) {
    for (auto& m : s.matrices)
      if (m.owner == owner) flat(m.param).copy_(data.narrow(0, m.at, m.param.numel()));
    for (auto& p : s.pieces)
      if (p.owner == owner) flat(s.adamw_params[p.tensor]).narrow(0, p.offset, p.length).copy_(data.narrow(0, p.at, p.length));
  });
}

void StateSharding::gather_state_to_leader() {
  auto& s = *impl_;
  torch::serialize::OutputArchive out;
  if (auto* m = s.opt.matrix_optimizer()) {
    torch::serialize::OutputArchive ma(out.compilation_unit());
    m->save(ma);
    out.write("matrix", ma);
  }
  if (s.adamw)
    for (size_t j = 0; j < s.pieces.size(); ++j) {
      const auto& p = s.pieces[j];
      if (p.owner != s.rank) continue;
      const auto it = s.adamw->state().find(state_key(p.view));
      if (it == s.adamw->state().end()) continue;
      const auto& st = static_cast<const AdamWState&>(*it->second);
      out.write(piece_key(j, "step"), c10::IValue(st.step()));
      out.write(piece_key(j, "exp_avg"), st.exp_avg());
      out.write(piece_key(j, "exp_avg_sq"), st.exp_avg_sq());
      if (st.max_exp_avg_sq().defined()) out.write(piece_key(j, "max_exp_avg_sq"), st.max_exp_avg_sq());
    }
  std::ostringstream bytes;
  out.save_to(bytes);
  if (s.rank != 0) {
    s.group.gather_to_leader(bytes.str(), {});
    return;
  }
  // Matrices: each owner's state moves into rank 0's matrix optimizer (same parameters, same keys).
  std::vector<at::Tensor> matrix_params;
  for (const auto& m : s.matrices) matrix_params.push_back(m.param);
  // AdamW: each parameter's moments reassembled from its pieces.
  std::vector<std::unique_ptr<AdamWState>> full(s.adamw_params.size());
  auto add_piece = [&](size_t j, int64_t step, const at::Tensor& avg, const at::Tensor& sq, const at::Tensor& mx) {
    const auto& p = s.pieces[j];
    auto& f = full[p.tensor];
    const auto& param = s.adamw_params[p.tensor];
    if (!f) {
      f = std::make_unique<AdamWState>();
      f->exp_avg(at::zeros_like(param));
      f->exp_avg_sq(at::zeros_like(param));
      if (mx.defined()) f->max_exp_avg_sq(at::zeros_like(param));
    }
    f->step(std::max(f->step(), step));
    flat(f->exp_avg()).narrow(0, p.offset, p.length).copy_(avg.reshape({-1}));
    flat(f->exp_avg_sq()).narrow(0, p.offset, p.length).copy_(sq.reshape({-1}));
    if (mx.defined() && f->max_exp_avg_sq().defined()) flat(f->max_exp_avg_sq()).narrow(0, p.offset, p.length).copy_(mx.reshape({-1}));
  };
  if (s.adamw)
    for (size_t j = 0; j < s.pieces.size(); ++j) {
      const auto& p = s.pieces[j];
      if (p.owner != 0) continue;
      const auto it = s.adamw->state().find(state_key(p.view));
      if (it == s.adamw->state().end()) continue;
      const auto& st = static_cast<const AdamWState&>(*it->second);
      add_piece(j, st.step(), st.exp_avg(), st.exp_avg_sq(), st.max_exp_avg_sq());
      // Held once, in the whole-parameter state; drop_foreign_state() cuts the slice out again.
      s.adamw->state().erase(it);
    }
  s.group.gather_to_leader({}, [&](int r, const at::Tensor& bytes) {
    if (bytes.numel() == 0) return;
    torch::serialize::InputArchive in;
    in.load_from(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
    torch::serialize::InputArchive ma;
    if (s.opt.matrix_optimizer() && in.try_read("matrix", ma)) {
      auto temp = make_matrix_optimizer(matrix_params, s.opt.options());
      temp->load(ma);
      auto& mine = s.opt.matrix_optimizer()->state();
      for (const auto& m : s.matrices) {
        if (m.owner != r) continue;
        auto it = temp->state().find(state_key(m.param));
        if (it != temp->state().end()) mine[state_key(m.param)] = std::move(it->second);
      }
    }
    for (size_t j = 0; j < s.pieces.size(); ++j) {
      if (s.pieces[j].owner != r) continue;
      c10::IValue step;
      if (!in.try_read(piece_key(j, "step"), step)) continue;
      at::Tensor avg, sq, mx;
      in.read(piece_key(j, "exp_avg"), avg);
      in.read(piece_key(j, "exp_avg_sq"), sq);
      in.try_read(piece_key(j, "max_exp_avg_sq"), mx);
      add_piece(j, step.toInt(), avg, sq, mx);
    }
  });
  if (auto* a = s.opt.adamw())
    for (size_t t = 0; t < full.size(); ++t)
      if (full[t]) a->state()[state_key(s.adamw_params[t])] = std::move(full[t]);
}

void StateSharding::drop_foreign_state() {
  auto& s = *impl_;
  if (auto* m = s.opt.matrix_optimizer())
    for (const auto& mat : s.matrices)
      if (mat.owner != s.rank) m->state().erase(state_key(mat.param));
  auto* a = s.opt.adamw();
  // Nothing loaded or gathered into the whole-parameter AdamW: the slices keep what they hold.
  if (!a || a->state().empty()) return;
  if (s.adamw)
    for (const auto& p : s.pieces) {
      if (p.owner != s.rank) continue;
      const auto it = a->state().find(state_key(s.adamw_params[p.tensor]));
      if (it == a->state().end()) {
        s.adamw->state().erase(state_key(p.view));
        continue;
      }
      const auto& f = static_cast<const AdamWState&>(*it->second);
      auto st = std::make_unique<AdamWState>();
      st->step(f.step());
      st->exp_avg(flat(f.exp_avg()).narrow(0, p.offset, p.length).clone());
      st->exp_avg_sq(flat(f.exp_avg_sq()).narrow(0, p.offset, p.length).clone());
      if (f.max_exp_avg_sq().defined()) st->max_exp_avg_sq(flat(f.max_exp_avg_sq()).narrow(0, p.offset, p.length).clone());
      s.adamw->state()[state_key(p.view)] = std::move(st);
    }
  a->state().clear();
}

}  // namespace limuon::dist
