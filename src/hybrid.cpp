// Parameter routing and the hybrid (Muon-family + AdamW) optimizer.
#include "limuon/hybrid.h"

#include "state_io.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/serialize/archive.h>

#include <fnmatch.h>

#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace limuon {

namespace {
bool matches(const std::vector<std::string>& patterns, const std::string& name, std::string* which = nullptr) {
  for (const auto& p : patterns)
    if (fnmatch(p.c_str(), name.c_str(), 0) == 0) {
      if (which) *which = p;
      return true;
    }
  return false;
}

int64_t non_unit_dims(const at::Tensor& t) {
  int64_t n = 0;
  for (auto s : t.sizes()) n += s != 1;
  return n;
}
}  // namespace

std::vector<RoutedParam> route_parameters(const std::vector<NamedParam>& params, const RoutingRules& rules) {
  // Group tied tensors: the first name owns the parameter; any alias that looks like an
  // embedding/head makes the whole tensor an embedding.
  std::unordered_map<const void*, size_t> first;
  std::vector<std::vector<const NamedParam*>> aliases;
  std::vector<const NamedParam*> owners;
  for (const auto& np : params) {
    if (!np.param.defined()) throw std::invalid_argument("route_parameters: parameter '" + np.name + "' is undefined");
    const void* key = np.param.unsafeGetTensorImpl();
    auto it = first.find(key);
    if (it == first.end()) {
      first.emplace(key, owners.size());
      owners.push_back(&np);
      aliases.push_back({&np});
    } else {
      aliases[it->second].push_back(&np);
    }
  }
  std::vector<RoutedParam> out;
  for (size_t i = 0; i < owners.size(); ++i) {
    const NamedParam& np = *owners[i];
    RoutedParam r{np.name, np.param, Route::adamw, ""};
    std::string pat;
    std::string tied;
    for (size_t k = 1; k < aliases[i].size(); ++k) tied += (tied.empty() ? "" : ", ") + aliases[i][k]->name;
    bool embedding = false;
    std::string emb_reason;
    for (const auto* a : aliases[i]) {
      if (a->is_embedding) {
        embedding = true;
        emb_reason = "embedding module";
      } else if (matches(rules.adamw_patterns, a->name, &pat)) {
        embedding = true;
        emb_reason = "embedding/head name (" + pat + ")";
      }
    }
    if (matches(rules.force_adamw, np.name, &pat)) {
      r.route = Route::adamw;
      r.reason = "override --adamw " + pat;
    } else if (matches(rules.force_matrix, np.name, &pat)) {
      if (np.param.dim() < 2)
        throw std::invalid_argument("route_parameters: pattern '" + pat + "' sends '" + np.name +
                                    "' to the matrix optimizer, but it has fewer than 2 dimensions");
      r.route = Route::matrix;
      r.reason = "override --matrix " + pat;
    } else if (non_unit_dims(np.param) < 2) {
      r.reason = "fewer than 2 non-unit dims";
    } else if (embedding) {
      r.reason = emb_reason;
    } else {
      r.route = Route::matrix;
      r.reason = np.param.dim() > 2 ? "hidden weight (flattened to matrix)" : "hidden weight matrix";
    }
    if (!tied.empty()) r.reason += "; tied with " + tied;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<RoutedParam> route_module(const torch::nn::Module& module, const RoutingRules& rules) {
  std::vector<NamedParam> params;
  std::unordered_map<const void*, bool> embedding_weights;
  auto mark = [&](const torch::nn::Module& m) {
    if (dynamic_cast<const torch::nn::EmbeddingImpl*>(&m))
      for (const auto& p : m.parameters(/*recurse=*/false)) embedding_weights[p.unsafeGetTensorImpl()] = true;
  };
  mark(module);  // the root may live on the stack: not reachable through named_modules(include_self)
  for (const auto& item : module.named_modules("", /*include_self=*/false)) mark(*item.value());
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    params.push_back({item.key(), item.value(), embedding_weights.count(item.value().unsafeGetTensorImpl()) > 0});
  return route_parameters(params, rules);
}

std::string format_routing(const std::vector<RoutedParam>& routing) {
  std::ostringstream os;
  size_t width = 4;
  for (const auto& r : routing) width = std::max(width, r.name.size());
  int64_t n_matrix = 0, n_adamw = 0, c_matrix = 0, c_adamw = 0;
  os << std::left << std::setw(static_cast<int>(width)) << "name" << "  " << std::setw(16) << "shape"
     << "  " << std::setw(7) << "route" << "  reason\n";
  for (const auto& r : routing) {
    std::ostringstream shape;
    shape << r.param.sizes();
    const bool m = r.route == Route::matrix;
    os << std::left << std::setw(static_cast<int>(width)) << r.name << "  " << std::setw(16) << shape.str() << "  "
       << std::setw(7) << (m ? "matrix" : "adamw") << "  " << r.reason << "\n";
    (m ? n_matrix : n_adamw) += 1;
    (m ? c_matrix : c_adamw) += r.param.numel();
  }
  os << "routing: " << n_matrix << " tensors (" << c_matrix << " params) to the matrix optimizer, " << n_adamw
     << " tensors (" << c_adamw << " params) to AdamW\n";
  return os.str();
}

std::string to_string(MatrixMethod m) {
  switch (m) {
    case MatrixMethod::muon: return "muon";
    case MatrixMethod::limuon: return "limuon";
    case MatrixMethod::adamw: return "adamw";
    case MatrixMethod::muon_mvr1: return "muon_mvr1";
    case MatrixMethod::muon_mvr2: return "muon_mvr2";
    case MatrixMethod::sumo: return "sumo";
    case MatrixMethod::muoneq: return "muoneq";
    case MatrixMethod::lionmuon: return "lionmuon";
    case MatrixMethod::mimuon: return "mimuon";
    case MatrixMethod::gluon: return "gluon";
  }
  return "?";
}

const std::vector<MatrixMethod>& all_matrix_methods() {
  static const std::vector<MatrixMethod> all = {
      MatrixMethod::adamw,   MatrixMethod::muon,     MatrixMethod::limuon, MatrixMethod::muon_mvr1,
      MatrixMethod::muon_mvr2, MatrixMethod::sumo,   MatrixMethod::muoneq, MatrixMethod::lionmuon,
      MatrixMethod::mimuon,  MatrixMethod::gluon};
  return all;
}

MatrixMethod parse_matrix_method(const std::string& name) {
  std::string valid;
  for (auto m : all_matrix_methods()) {
    if (name == to_string(m)) return m;
    valid += (valid.empty() ? "" : ", ") + to_string(m);
  }
  throw std::invalid_argument("optimizer: unknown value '" + name + "' (valid: " + valid + ")");
}

std::unique_ptr<torch::optim::Optimizer> make_matrix_optimizer(const std::vector<at::Tensor>& params,
                                                               const HybridOptions& o) {
  switch (o.method) {
    case MatrixMethod::adamw: return nullptr;
    case MatrixMethod::muon: return std::make_unique<Muon>(params, o.muon);
    case MatrixMethod::limuon: return std::make_unique<LiMuon>(params, o.limuon);
    case MatrixMethod::muon_mvr1: return std::make_unique<MuonMVR>(params, MuonMVROptions(o.mvr).variant(MvrVariant::mvr1));
    case MatrixMethod::muon_mvr2: return std::make_unique<MuonMVR>(params, MuonMVROptions(o.mvr).variant(MvrVariant::mvr2));
    case MatrixMethod::sumo: return std::make_unique<Sumo>(params, o.sumo);
    case MatrixMethod::muoneq: return std::make_unique<MuonEq>(params, o.muoneq);
    case MatrixMethod::lionmuon: return std::make_unique<LionMuon>(params, o.lionmuon);
    case MatrixMethod::mimuon: return std::make_unique<MiMuon>(params, o.mimuon);
    case MatrixMethod::gluon: return std::make_unique<Gluon>(params, o.gluon);
  }
  return nullptr;
}

int64_t matrix_state_bytes(const torch::optim::Optimizer& opt) {
  if (auto* m = dynamic_cast<const Muon*>(&opt)) return m->state_bytes();
  if (auto* l = dynamic_cast<const LiMuon*>(&opt)) return l->state_bytes();
  if (auto* f = dynamic_cast<const MuonFamily*>(&opt)) return f->state_bytes();
  return 0;
}

int64_t matrix_nonfinite_skips(const torch::optim::Optimizer& opt) {
  if (auto* m = dynamic_cast<const Muon*>(&opt)) return m->nonfinite_skips();
  if (auto* l = dynamic_cast<const LiMuon*>(&opt)) return l->nonfinite_skips();
  if (auto* f = dynamic_cast<const MuonFamily*>(&opt)) return f->nonfinite_skips();
  return 0;
}

NonFinitePolicy nonfinite_policy(const HybridOptions& o) {
  switch (o.method) {
    case MatrixMethod::muon: return o.muon.nonfinite();
    case MatrixMethod::adamw:
    case MatrixMethod::limuon: return o.limuon.nonfinite();
    case MatrixMethod::muon_mvr1:
    case MatrixMethod::muon_mvr2: return o.mvr.nonfinite();
    case MatrixMethod::sumo: return o.sumo.nonfinite();
    case MatrixMethod::muoneq: return o.muoneq.nonfinite();
    case MatrixMethod::lionmuon: return o.lionmuon.nonfinite();
    case MatrixMethod::mimuon: return o.mimuon.nonfinite();
    case MatrixMethod::gluon: return o.gluon.nonfinite();
  }
  return NonFinitePolicy::skip;
}

HybridOptimizer::HybridOptimizer(const std::vector<RoutedParam>& routing, HybridOptions options)
    : options_(std::move(options)) {
  std::vector<at::Tensor> matrices, rest;
  for (const auto& r : routing) {
    if (r.route == Route::matrix && options_.method != MatrixMethod::adamw) matrices.push_back(r.param);
    else rest.push_back(r.param);
  }
  if (!matrices.empty()) matrix_ = make_matrix_optimizer(matrices, options_);
  if (!rest.empty()) adamw_ = std::make_unique<torch::optim::AdamW>(rest, options_.adamw);
}

std::vector<torch::optim::Optimizer*> HybridOptimizer::optimizers() {
  return {matrix_.get(), adamw_.get()};
}

void HybridOptimizer::zero_grad() {
  if (matrix_) matrix_->zero_grad();
  if (adamw_) adamw_->zero_grad();
}

void HybridOptimizer::adamw_step() {
  if (!adamw_) return;
  std::vector<at::Tensor> grads;
  for (const auto& g : adamw_->param_groups())
    for (const auto& p : g.params())
      if (p.grad().defined()) grads.push_back(p.grad());
  if (!all_finite(grads)) {
    // Same policy as the matrix optimizers: LibTorch's AdamW would write NaN into its moments.
    if (nonfinite_policy(options_) == NonFinitePolicy::raise)
      throw std::runtime_error("AdamW group: non-finite gradient (nonfinite=raise)");
    ++adamw_skips_;
    return;
  }
  adamw_->step();
}

at::Tensor HybridOptimizer::step(const std::function<at::Tensor()>& closure) {
  if (!closure) throw std::invalid_argument("HybridOptimizer::step: a closure is required");
  auto evaluate = [&]() {
    at::AutoGradMode enable(true);
    ++evaluations_;
    return closure();
  };
  auto* two = dynamic_cast<TwoPointStepper*>(matrix_.get());
  if (!two || !two->evaluates_twice()) {
    // One evaluation per call (Muon, LiMuon approx, Muon-MVR1, ...): both step on it.
    at::Tensor loss = evaluate();
    if (matrix_) matrix_->step();
    adamw_step();
    return loss;
  }
  at::Tensor loss;
  if (two->needs_old_point_gradient()) {
    loss = evaluate();
    two->after_old_point_gradient();
    adamw_step();
    loss = evaluate();
    two->after_new_point_gradient();
  } else {
    loss = evaluate();  // first call: the estimate only, nothing moves
    two->after_new_point_gradient();
  }
  return loss;
}

void HybridOptimizer::save(torch::serialize::OutputArchive& archive) const {
  io::put(archive, "limuon_format", io::kFormatVersion);
  io::put(archive, "hybrid_method", to_string(options_.method));
  io::put(archive, "evaluations", evaluations_);
  io::put(archive, "adamw_skips", adamw_skips_);
  if (matrix_) {
    torch::serialize::OutputArchive m(archive.compilation_unit());
    matrix_->save(m);
    archive.write("matrix", m);
  }
  if (adamw_) {
    torch::serialize::OutputArchive a(archive.compilation_unit());
    adamw_->save(a);
    archive.write("adamw", a);
    // LibTorch's AdamW load() does not restore param-group options: keep them ourselves.
    std::vector<double> lrs, wds, b1, b2, eps;
    for (const auto& g : adamw_->param_groups()) {
      const auto& o = static_cast<const torch::optim::AdamWOptions&>(g.options());
      lrs.push_back(o.lr());
      wds.push_back(o.weight_decay());
      b1.push_back(std::get<0>(o.betas()));
      b2.push_back(std::get<1>(o.betas()));
      eps.push_back(o.eps());
    }
    auto dbl = at::TensorOptions().dtype(at::kDouble);
    archive.write("adamw_lr", at::tensor(lrs, dbl));
    archive.write("adamw_weight_decay", at::tensor(wds, dbl));
    archive.write("adamw_beta1", at::tensor(b1, dbl));
    archive.write("adamw_beta2", at::tensor(b2, dbl));
    archive.write("adamw_eps", at::tensor(eps, dbl));
  }
}

void HybridOptimizer::load(torch::serialize::InputArchive& archive) {
  c10::IValue v;
  if (!archive.try_read("limuon_format", v) || !v.isInt() || v.toInt() != io::kFormatVersion)
    throw std::runtime_error("optimizer checkpoint: not a limuon hybrid optimizer state of format " +
                             std::to_string(io::kFormatVersion));
  const std::string method = io::get_string(archive, "hybrid_method");
  if (method != to_string(options_.method))
    throw std::runtime_error("optimizer checkpoint: saved with optimizer '" + method + "', this run uses '" +
                             to_string(options_.method) + "'");
  torch::serialize::InputArchive sub;
  const bool has_matrix = archive.try_read("matrix", sub);
  if (has_matrix != static_cast<bool>(matrix_))
    throw std::runtime_error("optimizer checkpoint: matrix-optimizer presence differs from this routing");
  if (matrix_) matrix_->load(sub);
  torch::serialize::InputArchive a;
  const bool has_adamw = archive.try_read("adamw", a);
  if (has_adamw != static_cast<bool>(adamw_))
    throw std::runtime_error("optimizer checkpoint: AdamW-group presence differs from this routing");
  if (adamw_) {
    adamw_->load(a);
    at::Tensor lrs, wds, b1, b2, eps;
    archive.read("adamw_lr", lrs);
    archive.read("adamw_weight_decay", wds);
    archive.read("adamw_beta1", b1);
    archive.read("adamw_beta2", b2);
    archive.read("adamw_eps", eps);
    auto& groups = adamw_->param_groups();
    if (lrs.numel() != static_cast<int64_t>(groups.size()))
      throw std::runtime_error("optimizer checkpoint: AdamW group count differs");
    for (size_t i = 0; i < groups.size(); ++i) {
      auto& o = static_cast<torch::optim::AdamWOptions&>(groups[i].options());
      const auto k = static_cast<int64_t>(i);
      o.lr(lrs[k].item<double>());
      o.weight_decay(wds[k].item<double>());
      o.betas(std::make_tuple(b1[k].item<double>(), b2[k].item<double>()));
      o.eps(eps[k].item<double>());
    }
  }
  evaluations_ = io::get_int(archive, "evaluations");
  adamw_skips_ = io::get_int(archive, "adamw_skips");
}

int64_t adamw_state_bytes(const torch::optim::AdamW& adamw) {
  int64_t total = 0;
  for (const auto& kv : adamw.state()) {
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*kv.second);
    for (const auto* t : {&s.exp_avg(), &s.exp_avg_sq(), &s.max_exp_avg_sq()})
      if (t->defined()) total += t->numel() * t->element_size();
  }
  return total;
}

int64_t HybridOptimizer::state_bytes() const {
  int64_t total = adamw_ ? adamw_state_bytes(*adamw_) : 0;
  if (matrix_) total += matrix_state_bytes(*matrix_);
  return total;
}

int64_t HybridOptimizer::nonfinite_skips() const {
  int64_t total = adamw_skips_;
  if (matrix_) total += matrix_nonfinite_skips(*matrix_);
  return total;
}

}  // namespace limuon
