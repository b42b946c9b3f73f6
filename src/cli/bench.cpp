// `limuon bench orth` and `limuon bench step`: warm-up, medians, and ratios measured in one run.
#include "bench.h"

#include "family_flags.h"

#include "limuon/hybrid.h"
#include "limuon/limuon.h"
#include "limuon/muon.h"
#include "limuon/orth.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <sstream>

namespace limuon::cli {

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs fn `warmup` times untimed, then `repeats` times; returns the median in milliseconds.
double time_ms(const std::function<void()>& fn, int64_t warmup, int64_t repeats) {
  for (int64_t i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int64_t i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    auto t1 = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return median(t);
}

std::pair<int64_t, int64_t> parse_shape(const std::string& s) {
  const auto x = s.find('x');
  auto bad = [&]() { return UsageError("--shape: expected MxN with positive integers, got '" + s + "'"); };
  if (x == std::string::npos) throw bad();
  try {
    size_t p1 = 0, p2 = 0;
    const std::string a = s.substr(0, x), b = s.substr(x + 1);
    long long m = std::stoll(a, &p1), n = std::stoll(b, &p2);
    if (p1 != a.size() || p2 != b.size() || m < 1 || n < 1 || m > 65536 || n > 65536) throw bad();
    return {m, n};
  } catch (const std::logic_error&) {
    throw bad();
  }
}

std::string fmt(double v, int prec = 4) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream os;
  os.precision(prec);
  os << v;
  return os.str();
}

// Accuracy of o against the exact polar factor of m, both taken per matrix in float64; the
// worst matrix of a batch is reported.
struct Accuracy {
  double ortho_err = 0, polar_rel_err = 0, sv_min = 1e300, sv_max = 0;
};

Accuracy accuracy(const at::Tensor& m, const at::Tensor& o) {
  Accuracy acc;
  at::Tensor m64 = m.to(at::kDouble).cpu(), o64 = o.to(at::kDouble).cpu();
  if (m64.dim() == 2) {
    m64 = m64.unsqueeze(0);
    o64 = o64.unsqueeze(0);
  }
  for (int64_t i = 0; i < m64.size(0); ++i) {
    at::Tensor mi = m64[i], oi = o64[i];
    const bool tall = mi.size(0) > mi.size(1);
    at::Tensor os = tall ? oi.t() : oi;  // a×b with a ≤ b: rows should be orthonormal
    const int64_t a = os.size(0);
    at::Tensor gram = at::mm(os, os.t()) - at::eye(a, os.options());
    acc.ortho_err = std::max(acc.ortho_err, gram.norm().item<double>() / std::sqrt(static_cast<double>(a)));
    at::Tensor exact = orth_svd(mi);
    acc.polar_rel_err = std::max(acc.polar_rel_err, ((oi - exact).norm() / exact.norm()).item<double>());
    at::Tensor sv = at::linalg_svdvals(oi);
    acc.sv_min = std::min(acc.sv_min, sv.min().item<double>());
    acc.sv_max = std::max(acc.sv_max, sv.max().item<double>());
  }
  return acc;
}

// The 24 hidden weight matrices of DistilGPT2 (6 layers) or GPT-2 (12 layers), in nn::Linear
// [out, in] layout: attn.c_attn [3·d, d], attn.c_proj [d, d], mlp.c_fc [4·d, d], mlp.c_proj [d, 4·d].
std::vector<std::pair<int64_t, int64_t>> model_matrices(const std::string& model) {
  int64_t layers = 0, d = 0;
  if (model == "distilgpt2") layers = 6, d = 768;
  else if (model == "gpt2") layers = 12, d = 768;
  else if (model == "tiny") layers = 2, d = 64;
  else throw UsageError("--model: unknown value '" + model + "' (valid: distilgpt2, gpt2, tiny)");
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t l = 0; l < layers; ++l) {
    out.push_back({3 * d, d});
    out.push_back({d, d});
    out.push_back({4 * d, d});
    out.push_back({d, 4 * d});
  }
  return out;
}

}  // namespace

int bench_orth(Args& args, bool json) {
  const auto shape = parse_shape(args.str("shape", "768x3072"));
  const int64_t batch = args.integer("batch", 1, 1, 4096);
  const std::string method_name = args.str("method", "ns5");
  const int64_t rank = args.integer("rank", 32, 1, 65536);
  const int64_t oversample = args.integer("oversample", 8, 0, 65536);
  const int64_t power_iters = args.integer("power-iters", 0, 0, 100);
  const std::string dtype_name = args.str("dtype", "float32");
  const int64_t warmup = args.integer("warmup", 2, 0, 1000);
  const int64_t repeats = args.integer("repeats", 7, 1, 100000);
  const int64_t seed = args.integer("seed", 0, 0, INT64_MAX);
  args.finish();
  at::ScalarType dtype;
  if (dtype_name == "float32") dtype = at::kFloat;
  else if (dtype_name == "float64") dtype = at::kDouble;
  else throw UsageError("--dtype: unknown value '" + dtype_name + "' (valid: float32, float64)");
  std::vector<Orthogonalizer> methods;
  if (method_name == "all") methods = {Orthogonalizer::svd, Orthogonalizer::ns5, Orthogonalizer::polar_express, Orthogonalizer::rsvd};
  else {
    try {
      methods = {parse_orthogonalizer(method_name)};
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--method: ") + e.what());
    }
  }
  const auto [m, n] = shape;
  at::manual_seed(static_cast<uint64_t>(seed));
  at::Tensor mat = batch > 1 ? at::randn({batch, m, n}, at::TensorOptions().dtype(dtype))
                             : at::randn({m, n}, at::TensorOptions().dtype(dtype));
  // Same-run matmul reference: the product X·Xᵀ of one m×n matrix (2·a²·b flops, a = min(m, n)).
  at::Tensor single = batch > 1 ? mat[0].contiguous() : mat;
  at::Tensor x = m <= n ? single : single.t().contiguous();
  const double a = static_cast<double>(std::min(m, n)), b = static_cast<double>(std::max(m, n));
  const double mm_ms = time_ms([&] { (void)at::mm(x, x.t()); }, warmup, repeats);
  const double mm_gflops = 2 * a * a * b / (mm_ms * 1e6);
  if (!json)
    std::printf("%-14s %-11s %5s %10s %9s %9s %10s %10s %12s\n", "method", "shape", "batch", "median_ms", "gflops",
                "mm_gflops", "ortho_err", "polar_err", "loop_ms");
  for (auto method : methods) {
    OrthSpec spec;
    spec.method = method;
    spec.rank = rank;
    spec.oversample = oversample;
    spec.power_iters = power_iters;
    spec.seed = static_cast<uint64_t>(seed);
    at::Tensor out;
    const double ms = time_ms([&] { out = orthogonalize(mat, spec); }, warmup, repeats);
    double loop_ms = NAN;
    if (batch > 1) {
      loop_ms = time_ms(
          [&] {
            for (int64_t i = 0; i < batch; ++i) (void)orthogonalize(mat[i], spec);
          },
          warmup, repeats);
    }
    const double flops = static_cast<double>(batch) * orth_flops(method, m, n, rank, oversample, power_iters);
    const double gflops = flops / (ms * 1e6);
    const Accuracy acc = accuracy(mat, out);
    std::ostringstream shape_s;
    shape_s << m << "x" << n;
    if (json) {
      std::cout << "{\"bench\":\"orth\",\"method\":\"" << to_string(method) << "\",\"shape\":\"" << shape_s.str()
                << "\",\"batch\":" << batch << ",\"dtype\":\"" << dtype_name << "\",\"median_ms\":" << fmt(ms, 6)
                << ",\"gflops\":" << fmt(gflops) << ",\"matmul_gflops\":" << fmt(mm_gflops)
                << ",\"gflops_vs_matmul\":" << fmt(gflops / mm_gflops) << ",\"ortho_err\":" << fmt(acc.ortho_err)
                << ",\"polar_rel_err\":" << fmt(acc.polar_rel_err) << ",\"sv_min\":" << fmt(acc.sv_min)
                << ",\"sv_max\":" << fmt(acc.sv_max);
      if (method == Orthogonalizer::rsvd) std::cout << ",\"rank\":" << rank << ",\"power_iters\":" << power_iters;
      if (batch > 1) std::cout << ",\"loop_median_ms\":" << fmt(loop_ms, 6) << ",\"batch_speedup\":" << fmt(loop_ms / ms);
      std::cout << ",\"threads\":" << at::get_num_threads() << "}" << std::endl;
    } else {
      std::printf("%-14s %-11s %5lld %10.3f %9.1f %9.1f %10.3g %10.3g %12s\n", to_string(method).c_str(),
                  shape_s.str().c_str(), static_cast<long long>(batch), ms, gflops, mm_gflops, acc.ortho_err,
                  acc.polar_rel_err, batch > 1 ? fmt(loop_ms, 5).c_str() : "-");
    }
  }
  return 0;
}

int bench_step(Args& args, bool json) {
  const std::string opt_name = args.str("optimizer", "muon");
  const std::string model = args.str("model", "distilgpt2");
  const int64_t warmup = args.integer("warmup", 2, 0, 1000);
  const int64_t repeats = args.integer("repeats", 5, 1, 100000);
  MuonOptions mo(args.real("lr", 0.02, 0, 1e9));
  LiMuonOptions lo(mo.lr());
  try {
    const std::string orth = args.str("orthogonalizer", "ns5");
    mo.orthogonalizer(parse_orthogonalizer(orth));
    lo.orthogonalizer(parse_orthogonalizer(orth));
    const int64_t rank = args.integer("rank", 32, 1, 65536);
    const int64_t oversample = args.integer("oversample", 8, 0, 65536);
    const int64_t power_iters = args.integer("power-iters", 0, 0, 100);
    mo.rank(rank).oversample(oversample).power_iters(power_iters);
    lo.rank(rank).oversample(oversample).power_iters(power_iters);
    lo.lowrank_state(parse_lowrank_state(args.str("lowrank-state", "none")));
    lo.storm(parse_storm(args.str("storm", "exact")));
    lo.beta(args.real("beta", 0.1, 0, 1));
    lo.gamma(args.real("gamma", 0.025, 0, 1));
    mo.momentum(args.real("momentum", 0.95, 0, 1));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  // The rest of the family: the hybrid's options, filled from the same flags as `limuon train`.
  HybridOptions family;
  family.muon = mo;
  family.limuon = lo;
  FamilyFlags::parse(args).apply(family);
  MatrixMethod method;
  try {
    method = parse_matrix_method(opt_name);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--") + e.what());
  }
  family.method = method;
  args.finish();
  const auto shapes = model_matrices(model);
  at::manual_seed(0);
  std::vector<at::Tensor> params, grads_old, grads_new;
  for (const auto& [m, n] : shapes) {
    params.push_back(at::randn({m, n}) * 0.02);
    grads_old.push_back(at::randn({m, n}));
    grads_new.push_back(at::randn({m, n}));
  }
  // The closure installs pre-made gradients (no copy): alternating between two sets, so that
  // LiMuon's two evaluations per step see different gradients, as with a real model.
  int64_t evals = 0;
  auto closure = [&]() {
    auto& src = (evals++ % 2) ? grads_new : grads_old;
    for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = src[i];
    return at::zeros({});
  };
  std::unique_ptr<torch::optim::Optimizer> opt;
  std::function<int64_t()> state_bytes;
  double formula = 0;  // elements, ALGORITHMS.md §6
  std::string label = opt_name;
  for (const auto& [m, n] : shapes) {
    const double r = static_cast<double>(std::min<int64_t>(lo.rank(), std::min(m, n)));
    const double mn = static_cast<double>(m * n), lowrank = (m + n) * r + r;
    if (opt_name == "adamw") formula += 2 * mn;
    else if (opt_name == "muon") formula += mn;
    else if (opt_name == "limuon") {
      // paper keeps the pending direction (mn) only in exact mode, where the update lags a call.
      const bool approx = lo.storm() == Storm::approx;
      double e = lo.lowrank_state() == LowRankState::none ? mn
                 : lo.lowrank_state() == LowRankState::paper && !approx ? mn + lowrank : lowrank;
      if (approx) e += mn;  // g_{t−1}
      formula += e;
    } else if (method == MatrixMethod::sumo) {
      formula += (m + n) * static_cast<double>(std::min<int64_t>(family.sumo.rank(), std::min(m, n)));  // Q and M
    } else if (method == MatrixMethod::muon_mvr1 || (method == MatrixMethod::muon_mvr2 && family.mvr.nesterov())) {
      formula += 2 * mn;  // B and clip(g_{t−1}) (mvr1), or B and the pending U (mvr2)
    } else {
      formula += mn;  // B (muon_mvr2 without Nesterov, muoneq, lionmuon, mimuon, gluon)
    }
  }
  if (opt_name == "adamw") {
    auto* p = new torch::optim::AdamW(params, torch::optim::AdamWOptions(1e-3));
    opt.reset(p);
    state_bytes = [p] { return adamw_state_bytes(*p); };
  } else if (opt_name == "muon") {
    auto* p = new Muon(params, mo);
    opt.reset(p);
    state_bytes = [p] { return p->state_bytes(); };
    label += "/" + to_string(mo.orthogonalizer());
  } else if (opt_name == "limuon") {
    auto* p = new LiMuon(params, lo);
    opt.reset(p);
    state_bytes = [p] { return p->state_bytes(); };
    label += "/" + to_string(lo.lowrank_state()) + "/" + to_string(lo.storm()) + "/" + to_string(lo.orthogonalizer());
    if (lo.lowrank_state() != LowRankState::none) label += "/r" + std::to_string(lo.rank());
  } else {
    opt = make_matrix_optimizer(params, family);
    auto* p = opt.get();
    state_bytes = [p] { return matrix_state_bytes(*p); };
    switch (method) {
      case MatrixMethod::muon_mvr1:
      case MatrixMethod::muon_mvr2: label = opt_name + "/" + to_string(family.mvr.orthogonalizer()); break;
      case MatrixMethod::sumo:
        label = opt_name + "/" + to_string(family.sumo.orthogonalizer()) + "/r" + std::to_string(family.sumo.rank()) +
                "/K" + std::to_string(family.sumo.update_interval());
        break;
      case MatrixMethod::muoneq:
        label = opt_name + "/" + to_string(family.muoneq.equilibrate()) + "/" + to_string(family.muoneq.orthogonalizer());
        break;
      case MatrixMethod::lionmuon:
        label = opt_name + "/P" + std::to_string(family.lionmuon.period()) + "/" + to_string(family.lionmuon.orthogonalizer());
        break;
      case MatrixMethod::mimuon: label = opt_name + "/svd"; break;
      default: label = opt_name + "/" + to_string(family.gluon.orthogonalizer()); break;
    }
  }
  const bool needs_closure = opt_name != "adamw";
  auto one_step = [&] {
    if (needs_closure) opt->step(closure);
    else {
      closure();
      opt->step();
    }
  };
  for (int64_t i = 0; i < std::max<int64_t>(warmup, 1); ++i) one_step();  // the first LiMuon call only sets M_0
  const int64_t evals_before = evals;
  const double ms = time_ms(one_step, 0, repeats);
  const double evals_per_step = static_cast<double>(evals - evals_before) / static_cast<double>(repeats);
  const int64_t bytes = state_bytes();
  const int64_t formula_bytes = static_cast<int64_t>(formula) * 4;
  if (json) {
    std::cout << "{\"bench\":\"step\",\"optimizer\":\"" << opt_name << "\",\"config\":\"" << label << "\",\"model\":\""
              << model << "\",\"matrices\":" << shapes.size() << ",\"median_ms\":" << fmt(ms, 6)
              << ",\"state_bytes\":" << bytes << ",\"formula_state_bytes\":" << formula_bytes
              << ",\"grad_evals_per_step\":" << fmt(evals_per_step, 3) << ",\"threads\":" << at::get_num_threads()
              << "}" << std::endl;
  } else {
    std::printf("%-34s %-10s median %9.2f ms  state %12lld B  formula %12lld B  evals/step %.2f\n", label.c_str(),
                model.c_str(), ms, static_cast<long long>(bytes), static_cast<long long>(formula_bytes), evals_per_step);
  }
  return 0;
}

}  // namespace limuon::cli
