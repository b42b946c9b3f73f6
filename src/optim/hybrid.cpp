// Parameter routing and the hybrid (Muon-family + AdamW) optimizer.
#include "limuon/optim/hybrid.h"

#include "limuon/optim/two_point.h"
#include "state_io.h"

#include <ATen/ATen.h>
#include <algorithm>
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

void HybridOptimizer::zero_grad(bool set_to_none) {
  // LiMuon's own zero_grad (Optimizer::zero_grad is not virtual) keeps gradients seeded for
  // accumulate_second_gradient between the two evaluations of a call.
  if (auto* l = dynamic_cast<LiMuon*>(matrix_.get())) l->zero_grad(set_to_none);
  else if (matrix_) matrix_->zero_grad(set_to_none);
  if (adamw_) adamw_->zero_grad(set_to_none);
}

void HybridOptimizer::adamw_step() {
  torch::optim::AdamW* adamw = adamw_.get();
  if (hooks_.adamw && adamw_) {  // sharded: this rank's slices, under the schedule's options
    adamw = hooks_.adamw;
    for (auto& g : adamw->param_groups()) g.set_options(adamw_->param_groups()[0].options().clone());
  }
  if (!adamw) return;
  std::vector<at::Tensor> grads;
  for (const auto& g : adamw->param_groups())
    for (const auto& p : g.params())
      if (p.grad().defined()) grads.push_back(p.grad());
  if (!all_finite(grads)) {
    // Same policy as the matrix optimizers: LibTorch's AdamW would write NaN into its moments.
    if (nonfinite_policy(options_) == NonFinitePolicy::raise)
      throw std::runtime_error("AdamW group: non-finite gradient (nonfinite=raise)");
    ++adamw_skips_;
    return;
  }
  adamw->step();
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
    if (hooks_.after_update) hooks_.after_update();
    return loss;
  }
  // AdamW steps between the two evaluations, on the first one's gradient; the weights move there.
  return two_point_step(*two, evaluate, [this] {
    adamw_step();
    if (hooks_.after_update) hooks_.after_update();
  });
}

namespace {

// Hybrid checkpoint format. 1: AdamW's state as LibTorch's own AdamW::save archive ("adamw"),
// whose state keys are parameter addresses as text (hex in 1.13, decimal in 2.x); LibTorch 2.x
// cannot read the 1.13 text and silently drops the state. 2: AdamW's state by (group, index)
// under "adamw_state", like the matrix optimizers'. Both are read; 2 is written.
constexpr int64_t kHybridFormat = 2;
constexpr int64_t kHybridFormatLegacy = 1;

using AdamWState = torch::optim::AdamWParamState;

std::string adamw_slot(size_t g, size_t i) { return "group/" + std::to_string(g) + "/param/" + std::to_string(i); }

void save_adamw_state(torch::serialize::OutputArchive& archive, const torch::optim::AdamW& adamw) {
  torch::serialize::OutputArchive out(archive.compilation_unit());
  const auto& groups = adamw.param_groups();
  io::put(out, "num_groups", static_cast<int64_t>(groups.size()));
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& params = groups[g].params();
    io::put(out, "group/" + std::to_string(g) + "/num_params", static_cast<int64_t>(params.size()));
    for (size_t i = 0; i < params.size(); ++i) {
      const auto it = adamw.state().find(state_key(params[i]));
      if (it == adamw.state().end()) continue;
      const auto& s = static_cast<const AdamWState&>(*it->second);
      torch::serialize::OutputArchive sa(archive.compilation_unit());
      io::put(sa, "step", s.step());
      io::put_tensor(sa, "exp_avg", s.exp_avg());
      io::put_tensor(sa, "exp_avg_sq", s.exp_avg_sq());
      io::put_tensor(sa, "max_exp_avg_sq", s.max_exp_avg_sq());
      out.write(adamw_slot(g, i), sa);
    }
  }
  archive.write("adamw_state", out);
}

// One parameter's AdamW state, checked against the parameter before anything is kept.
std::unique_ptr<AdamWState> checked_adamw_state(AdamWState s, const at::Tensor& p, size_t g, size_t i) {
  auto where = [&] { return "optimizer checkpoint: AdamW group " + std::to_string(g) + " parameter " + std::to_string(i); };
  if (s.step() < 0) throw std::runtime_error(where() + " has a negative step count");
  for (const auto* t : {&s.exp_avg(), &s.exp_avg_sq()})
    if (!t->defined() || !t->sizes().equals(p.sizes()))
      throw std::runtime_error(where() + ": moment shapes differ from the parameter's");
  if (s.max_exp_avg_sq().defined() && !s.max_exp_avg_sq().sizes().equals(p.sizes()))
    throw std::runtime_error(where() + ": max_exp_avg_sq shape differs from the parameter's");
  s.exp_avg(s.exp_avg().to(p.options()).contiguous());
  s.exp_avg_sq(s.exp_avg_sq().to(p.options()).contiguous());
  if (s.max_exp_avg_sq().defined()) s.max_exp_avg_sq(s.max_exp_avg_sq().to(p.options()).contiguous());
  return std::make_unique<AdamWState>(std::move(s));
}

using AdamWStates = std::vector<std::vector<std::unique_ptr<AdamWState>>>;

AdamWStates read_adamw_state(torch::serialize::InputArchive& archive, const torch::optim::AdamW& adamw) {
  torch::serialize::InputArchive in;
  if (!archive.try_read("adamw_state", in)) throw std::runtime_error("optimizer checkpoint: missing entry 'adamw_state'");
  const auto& groups = adamw.param_groups();
  if (io::get_int(in, "num_groups") != static_cast<int64_t>(groups.size()))
    throw std::runtime_error("optimizer checkpoint: AdamW group count differs");
  AdamWStates states(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& params = groups[g].params();
    if (io::get_int(in, "group/" + std::to_string(g) + "/num_params") != static_cast<int64_t>(params.size()))
      throw std::runtime_error("optimizer checkpoint: AdamW group " + std::to_string(g) + " has a different parameter count");
    for (size_t i = 0; i < params.size(); ++i) {
      torch::serialize::InputArchive sa;
      if (!in.try_read(adamw_slot(g, i), sa)) {
        states[g].push_back(nullptr);
        continue;
      }
      AdamWState s;
      s.step(io::get_int(sa, "step"));
      s.exp_avg(io::get_tensor_opt(sa, "exp_avg"));
      s.exp_avg_sq(io::get_tensor_opt(sa, "exp_avg_sq"));
      s.max_exp_avg_sq(io::get_tensor_opt(sa, "max_exp_avg_sq"));
      states[g].push_back(checked_adamw_state(std::move(s), params[i], g, i));
    }
  }
  return states;
}

// Format 1: LibTorch's AdamW archive. Its param_groups/<g>/params/<i> entries hold the same key text
// as its state/<key> entries, whatever LibTorch version wrote them, so matching the texts (not
// parsing them as numbers, as LibTorch 2.x does) recovers every parameter's state.
AdamWStates read_legacy_adamw_state(torch::serialize::InputArchive& archive, const torch::optim::AdamW& adamw) {
  torch::serialize::InputArchive a, state, pgs;
  if (!archive.try_read("adamw", a) || !a.try_read("state", state) || !a.try_read("param_groups", pgs))
    throw std::runtime_error("optimizer checkpoint: format 1 without a readable LibTorch AdamW archive ('adamw')");
  const auto& groups = adamw.param_groups();
  at::Tensor n;
  pgs.read("param_groups/size", n);
  if (n.numel() != 1 || n.item<int64_t>() != static_cast<int64_t>(groups.size()))
    throw std::runtime_error("optimizer checkpoint: AdamW group count differs");
  const auto keys = state.keys();
  AdamWStates states(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    torch::serialize::InputArchive pg;
    pgs.read("param_groups/" + std::to_string(g), pg);
    at::Tensor np;
    pg.read("params/size", np);
    const auto& params = groups[g].params();
    if (np.numel() != 1 || np.item<int64_t>() != static_cast<int64_t>(params.size()))
      throw std::runtime_error("optimizer checkpoint: AdamW group " + std::to_string(g) + " has a different parameter count");
    for (size_t i = 0; i < params.size(); ++i) {
      c10::IValue key;
      pg.read("params/" + std::to_string(i), key);
      if (!key.isString()) throw std::runtime_error("optimizer checkpoint: AdamW parameter key is not a string");
      if (std::find(keys.begin(), keys.end(), key.toStringRef()) == keys.end()) {
        states[g].push_back(nullptr);
        continue;
      }
      torch::serialize::InputArchive sa;
      state.read(key.toStringRef(), sa);
      AdamWState s;
      s.serialize(sa);
      states[g].push_back(checked_adamw_state(std::move(s), params[i], g, i));
    }
  }
  return states;
}

}  // namespace

void HybridOptimizer::save(torch::serialize::OutputArchive& archive) const {
  io::put(archive, "limuon_format", kHybridFormat);
  io::put(archive, "hybrid_method", to_string(options_.method));
  io::put(archive, "evaluations", evaluations_);
  io::put(archive, "adamw_skips", adamw_skips_);
  if (matrix_) {
    torch::serialize::OutputArchive m(archive.compilation_unit());
    matrix_->save(m);
    archive.write("matrix", m);
  }
  if (adamw_) {
    save_adamw_state(archive, *adamw_);
    // Group options, which LibTorch's own AdamW archive did not restore either.
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
  if (!archive.try_read("limuon_format", v) || !v.isInt())
    throw std::runtime_error("optimizer checkpoint: not a limuon hybrid optimizer state (no 'limuon_format' entry)");
  const int64_t format = v.toInt();
  if (format != kHybridFormat && format != kHybridFormatLegacy)
    throw std::runtime_error("optimizer checkpoint: hybrid optimizer state of format " + std::to_string(format) +
                             "; this build reads formats " + std::to_string(kHybridFormatLegacy) + " and " +
                             std::to_string(kHybridFormat));
  const std::string method = io::get_string(archive, "hybrid_method");
  if (method != to_string(options_.method))
    throw std::runtime_error("optimizer checkpoint: saved with optimizer '" + method + "', this run uses '" +
                             to_string(options_.method) + "'");
  torch::serialize::InputArchive sub;
  const bool has_matrix = archive.try_read("matrix", sub);
  if (has_matrix != static_cast<bool>(matrix_))
    throw std::runtime_error("optimizer checkpoint: matrix-optimizer presence differs from this routing");
  at::Tensor probe;
  const bool has_adamw = archive.try_read("adamw_lr", probe);
  if (has_adamw != static_cast<bool>(adamw_))
    throw std::runtime_error("optimizer checkpoint: AdamW-group presence differs from this routing");
  const int64_t evaluations = io::get_int(archive, "evaluations");
  const int64_t adamw_skips = io::get_int(archive, "adamw_skips");
  // AdamW's part is read and checked first; the matrix optimizer's load checks its own part before
  // it changes anything; only then does AdamW change. A bad checkpoint leaves the optimizer as it was.
  AdamWStates states;
  std::vector<torch::optim::AdamWOptions> options;
  if (adamw_) {
    states = format == kHybridFormat ? read_adamw_state(archive, *adamw_) : read_legacy_adamw_state(archive, *adamw_);
    at::Tensor lrs, wds, b1, b2, eps;
    archive.read("adamw_lr", lrs);
    archive.read("adamw_weight_decay", wds);
    archive.read("adamw_beta1", b1);
    archive.read("adamw_beta2", b2);
    archive.read("adamw_eps", eps);
    const auto n = static_cast<int64_t>(adamw_->param_groups().size());
    for (const auto* t : {&lrs, &wds, &b1, &b2, &eps})
      if (t->dim() != 1 || t->numel() != n || t->scalar_type() != at::kDouble)
        throw std::runtime_error("optimizer checkpoint: AdamW group options do not match its " + std::to_string(n) +
                                 " group(s)");
    for (int64_t k = 0; k < n; ++k) {
      auto o = static_cast<const torch::optim::AdamWOptions&>(adamw_->param_groups()[k].options());
      o.lr(lrs[k].item<double>());
      o.weight_decay(wds[k].item<double>());
      o.betas(std::make_tuple(b1[k].item<double>(), b2[k].item<double>()));
      o.eps(eps[k].item<double>());
      options.push_back(o);
    }
  }
  if (matrix_) matrix_->load(sub);
  if (adamw_) {
    auto& groups = adamw_->param_groups();
    for (size_t g = 0; g < groups.size(); ++g) {
      groups[g].set_options(std::make_unique<torch::optim::AdamWOptions>(options[g]));
      for (size_t i = 0; i < groups[g].params().size(); ++i) {
        const auto key = state_key(groups[g].params()[i]);
        if (states[g][i]) adamw_->state()[key] = std::move(states[g][i]);
        else adamw_->state().erase(key);
      }
    }
  }
  evaluations_ = evaluations;
  adamw_skips_ = adamw_skips;
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
  if (hooks_.adamw) total += adamw_state_bytes(*hooks_.adamw);
  if (matrix_) total += matrix_state_bytes(*matrix_);
  return total;
}

int64_t HybridOptimizer::nonfinite_skips() const {
  int64_t total = adamw_skips_;
  if (matrix_) total += matrix_nonfinite_skips(*matrix_);
  return total;
}

}  // namespace limuon
