// `limuon bench orth`, `limuon bench step` and `limuon bench memory`: warm-up, medians, and ratios
// measured in one run.
#include "bench.h"

#include "family_flags.h"

#include "limuon/optim/hybrid.h"
#include "limuon/optim/limuon.h"
#include "limuon/models/gpt2.h"
#include "limuon/optim/muon.h"
#include "limuon/kernels/orth.h"

#include <ATen/ATen.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <torch/cuda.h>
#include <torch/optim/adamw.h>

#include <nlohmann/json.hpp>

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
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

namespace {

// One row of `bench orth`: a label and the OrthSpec it runs.
struct OrthRow {
  std::string label;
  OrthSpec spec;
};

// --method: a name (svd, ns5, polar_express, rsvd, gram_ns), gram_ns:ns5 / gram_ns:polar_express
// (the Gram form with that coefficient schedule), a comma list of those, or all.
std::vector<OrthRow> orth_rows(const std::string& method_name, const OrthSpec& base) {
  const std::string all = "svd,ns5,polar_express,gram_ns:ns5,gram_ns:polar_express,rsvd";
  std::vector<OrthRow> rows;
  for (const auto& item : split_list(method_name == "all" ? all : method_name)) {
    OrthRow row{item, base};
    const auto colon = item.find(':');
    try {
      row.spec.method = parse_orthogonalizer(item.substr(0, colon));
      if (colon != std::string::npos) {
        if (row.spec.method != Orthogonalizer::gram_ns) throw std::invalid_argument("only gram_ns takes ':COEFFICIENTS'");
        row.spec.gram_coefficients = parse_gram_coefficients(item.substr(colon + 1));
      }
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--method: ") + e.what());
    }
    if (row.spec.method == Orthogonalizer::gram_ns) row.label = "gram_ns:" + to_string(row.spec.gram_coefficients);
    rows.push_back(row);
  }
  if (rows.empty()) throw UsageError("--method: empty list");
  return rows;
}

}  // namespace

// Columns: median_ms; x_ns5 = median_ms / ns5's median_ms in this run (ns5 is timed first, for
// each shape, as the reference); gflops = the method's own flop count (orth_flops; for gram_ns
// gram_ns_flops with the restarts it used) per second; ns5eq_gflops = ns5's flop count per second,
// i.e. the rate at which the ns5-equivalent work is done; mm_gflops = the same-run rate of X·Xᵀ
// (a×b·b×a) and sq_gflops of an a×a·a×a product, the two shapes of product the kernels are built
// from; accuracy against the exact polar factor (float64 SVD); loop_ms = the batch one matrix at a
// time (batch > 1).
int bench_orth(Args& args, bool json) {
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (const auto& s : split_list(args.str("shape", "768x3072"))) shapes.push_back(parse_shape(s));
  if (shapes.empty()) throw UsageError("--shape: expected MxN[,MxN...]");
  const int64_t batch = args.integer("batch", 1, 1, 4096);
  const std::string method_name = args.str("method", "ns5");
  const int64_t rank = args.integer("rank", 32, 1, 65536);
  const int64_t oversample = args.integer("oversample", 8, 0, 65536);
  const int64_t power_iters = args.integer("power-iters", 0, 0, 100);
  const std::string dtype_name = args.str("dtype", "float32");
  const std::string restarts_name = args.str("gram-restarts", "auto");
  const double min_aspect = args.real("gram-min-aspect", kGramNsMinAspect, 1.0, 1e9);
  const int64_t warmup = args.integer("warmup", 2, 0, 1000);
  const int64_t repeats = args.integer("repeats", 7, 1, 100000);
  const int64_t seed = args.integer("seed", 0, 0, INT64_MAX);
  args.finish();
  at::ScalarType dtype;
  if (dtype_name == "float32") dtype = at::kFloat;
  else if (dtype_name == "float64") dtype = at::kDouble;
  else if (dtype_name == "bfloat16") dtype = at::kBFloat16;
  else throw UsageError("--dtype: unknown value '" + dtype_name + "' (valid: float32, float64, bfloat16)");
  OrthSpec base;
  base.rank = rank;
  base.oversample = oversample;
  base.power_iters = power_iters;
  base.seed = static_cast<uint64_t>(seed);
  base.gram_min_aspect = min_aspect;
  if (restarts_name == "none") base.gram_restarts = std::vector<int64_t>{};
  else if (restarts_name != "auto") {
    std::vector<int64_t> r;
    for (const auto& v : split_list(restarts_name)) {
      try {
        size_t pos = 0;
        r.push_back(std::stoll(v, &pos));
        if (pos != v.size()) throw std::invalid_argument(v);
      } catch (const std::logic_error&) {
        throw UsageError("--gram-restarts: expected auto, none or a list of steps like 1,3, got '" + restarts_name + "'");
      }
    }
    base.gram_restarts = r;
  }
  auto rows = orth_rows(method_name, base);
  if (dtype == at::kBFloat16) {  // svd and rsvd need fp32/fp64
    rows.erase(std::remove_if(rows.begin(), rows.end(),
                              [](const OrthRow& r) {
                                return r.spec.method == Orthogonalizer::svd || r.spec.method == Orthogonalizer::rsvd;
                              }),
               rows.end());
    if (rows.empty()) throw UsageError("--dtype bfloat16: svd and rsvd need float32 or float64");
  }
  if (!json)
    std::printf("%-28s %-10s %5s %10s %6s %8s %8s %8s %8s %9s %9s %7s %10s\n", "method", "shape", "batch", "median_ms",
                "x_ns5", "gflops", "ns5eq_gf", "mm_gf", "sq_gf", "ortho_err", "polar_err", "sv_max", "loop_ms");
  for (const auto& [m, n] : shapes) {
    at::manual_seed(static_cast<uint64_t>(seed));
    // Drawn in float32 so that every dtype sees the same matrix.
    at::Tensor mat = (batch > 1 ? at::randn({batch, m, n}) : at::randn({m, n})).to(dtype);
    // Same-run matmul references: X·Xᵀ of one m×n matrix (2·a²·b flops, a = min(m, n)) and one
    // a×a·a×a product (2·a³).
    at::Tensor single = batch > 1 ? mat[0].contiguous() : mat;
    at::Tensor x = m <= n ? single : single.t().contiguous();
    const double a = static_cast<double>(std::min(m, n)), b = static_cast<double>(std::max(m, n));
    const double mm_gflops = 2 * a * a * b / (time_ms([&] { (void)at::mm(x, x.t()); }, warmup, repeats) * 1e6);
    at::Tensor sq = x.narrow(1, 0, std::min(m, n)).contiguous();
    const double sq_gflops = 2 * a * a * a / (time_ms([&] { (void)at::mm(sq, sq); }, warmup, repeats) * 1e6);
    auto run = [&](const OrthSpec& spec, at::Tensor* out) {
      return time_ms([&] { *out = orthogonalize(mat, spec); }, warmup, repeats);
    };
    at::Tensor ref_out;
    OrthSpec ns5_spec = base;
    ns5_spec.method = Orthogonalizer::ns5;
    // The reference is timed first, also when ns5 is a row: that row's x_ns5 then shows the
    // run-to-run noise of the machine.
    const double ns5_ms = run(ns5_spec, &ref_out);
    const double ns5_flops = static_cast<double>(batch) * orth_flops(Orthogonalizer::ns5, m, n);
    std::ostringstream shape_s;
    shape_s << m << "x" << n;
    for (const auto& row : rows) {
      const auto& spec = row.spec;
      at::Tensor out;
      const double ms = run(spec, &out);
      double loop_ms = NAN;
      if (batch > 1) {
        loop_ms = time_ms(
            [&] {
              for (int64_t i = 0; i < batch; ++i) (void)orthogonalize(mat[i], spec);
            },
            warmup, repeats);
      }
      double flops1 = orth_flops(spec.method, m, n, rank, oversample, power_iters);
      std::string restarts_s;
      if (spec.method == Orthogonalizer::gram_ns) {
        const auto r = spec.gram_restarts ? *spec.gram_restarts : gram_ns_default_restarts(mat);
        const int64_t steps = spec.gram_coefficients == GramCoefficients::ns5 ? spec.ns_steps : kPolarExpressSteps;
        flops1 = gram_ns_flops(m, n, steps, r, spec.gram_min_aspect);
        for (auto s : r) {
          if (!restarts_s.empty()) restarts_s += ',';
          restarts_s += std::to_string(s);
        }
        if (b < spec.gram_min_aspect * a) restarts_s = "plain";  // fell back to the plain loop
      }
      const double flops = static_cast<double>(batch) * flops1;
      const double gflops = flops / (ms * 1e6), ns5eq = ns5_flops / (ms * 1e6);
      const Accuracy acc = accuracy(mat, out);
      if (json) {
        std::cout << "{\"bench\":\"orth\",\"method\":\"" << to_string(spec.method) << "\",\"label\":\"" << row.label
                  << "\",\"shape\":\"" << shape_s.str() << "\",\"batch\":" << batch << ",\"dtype\":\"" << dtype_name
                  << "\",\"median_ms\":" << fmt(ms, 6) << ",\"ns5_median_ms\":" << fmt(ns5_ms, 6)
                  << ",\"time_vs_ns5\":" << fmt(ms / ns5_ms) << ",\"flops\":" << fmt(flops, 6)
                  << ",\"gflops\":" << fmt(gflops) << ",\"ns5_equiv_gflops\":" << fmt(ns5eq)
                  << ",\"matmul_gflops\":" << fmt(mm_gflops) << ",\"square_matmul_gflops\":" << fmt(sq_gflops)
                  << ",\"gflops_vs_matmul\":" << fmt(gflops / mm_gflops) << ",\"ortho_err\":" << fmt(acc.ortho_err)
                  << ",\"polar_rel_err\":" << fmt(acc.polar_rel_err) << ",\"sv_min\":" << fmt(acc.sv_min)
                  << ",\"sv_max\":" << fmt(acc.sv_max);
        if (spec.method == Orthogonalizer::rsvd) std::cout << ",\"rank\":" << rank << ",\"power_iters\":" << power_iters;
        if (spec.method == Orthogonalizer::gram_ns)
          std::cout << ",\"gram_restarts\":\"" << restarts_s << "\",\"gram_min_aspect\":" << fmt(spec.gram_min_aspect);
        if (batch > 1) std::cout << ",\"loop_median_ms\":" << fmt(loop_ms, 6) << ",\"batch_speedup\":" << fmt(loop_ms / ms);
        std::cout << ",\"threads\":" << at::get_num_threads() << "}" << std::endl;
      } else {
        std::string label = row.label;
        if (spec.method == Orthogonalizer::gram_ns) label += "[" + (restarts_s.empty() ? "-" : restarts_s) + "]";
        std::printf("%-28s %-10s %5lld %10.3f %6.3f %8.1f %8.1f %8.1f %8.1f %9.3g %9.3g %7.3f %10s\n", label.c_str(),
                    shape_s.str().c_str(), static_cast<long long>(batch), ms, ms / ns5_ms, gflops, ns5eq, mm_gflops,
                    sq_gflops, acc.ortho_err, acc.polar_rel_err, acc.sv_max, batch > 1 ? fmt(loop_ms, 5).c_str() : "-");
      }
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
    const std::string orth = args.str("orthogonalizer", "gram_ns");
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

namespace {

constexpr size_t kAggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);

// Counts the bytes of live CPU tensors: wraps the CPU allocator, so every at::empty on the CPU
// after install() passes through it. oneDNN/BLAS scratch buffers bypass it (they show in RSS).
class CountingAllocator final : public c10::Allocator {
 public:
  static CountingAllocator& install() {
    static CountingAllocator* self = [] {
      auto* a = new CountingAllocator(c10::GetCPUAllocator());  // lives as long as the process
      c10::SetCPUAllocator(a, /*priority=*/100);
      return a;
    }();
    return *self;
  }
  int64_t live() const { return live_.load(); }
  int64_t peak() const { return peak_.load(); }
  void reset_peak() { peak_.store(live_.load()); }

  c10::DataPtr allocate(size_t n) override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    const c10::Device device = inner.device();
    auto* ctx = new Block{std::move(inner), static_cast<int64_t>(n), this};
    const int64_t now = live_.fetch_add(ctx->bytes) + ctx->bytes;
    int64_t p = peak_.load();
    while (now > p && !peak_.compare_exchange_weak(p, now)) {
    }
    return {data, ctx, &CountingAllocator::release, device};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

 private:
  struct Block {
    c10::DataPtr inner;
    int64_t bytes;
    CountingAllocator* owner;
  };
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}
  static void release(void* ctx) {
    auto* b = static_cast<Block*>(ctx);
    b->owner->live_.fetch_sub(b->bytes);
    delete b;  // frees the block through the wrapped allocator's deleter
  }
  c10::Allocator* base_;
  std::atomic<int64_t> live_{0}, peak_{0};
};

// A /proc/self/status field in bytes (VmRSS, VmHWM), or -1.
int64_t proc_status_bytes(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::stoll(line.substr(n + 1)) * 1024;
  return -1;
}

// Resets the kernel's RSS high-water mark (VmHWM) to the current RSS.
bool reset_hwm() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

struct MemoryConfig {
  std::string name;  // adamw | muon | limuon:<lowrank_state>:<storm>[:acc]
  HybridOptions options;
};

MemoryConfig parse_memory_config(const std::string& spec, const HybridOptions& base) {
  MemoryConfig c{spec, base};
  std::vector<std::string> parts;
  std::stringstream ss(spec);
  for (std::string p; std::getline(ss, p, ':');) parts.push_back(p);
  auto bad = [&](const std::string& why) {
    return UsageError("--configs: '" + spec + "': " + why +
                      " (valid: adamw, muon, limuon:none|paper|light:exact|approx[:acc][:paper-preset])");
  };
  if (parts.empty()) throw bad("empty");
  if (parts[0] == "adamw" && parts.size() == 1) c.options.method = MatrixMethod::adamw;
  else if (parts[0] == "muon" && parts.size() == 1) c.options.method = MatrixMethod::muon;
  else if (parts[0] == "limuon" && parts.size() >= 3) {
    c.options.method = MatrixMethod::limuon;
    try {
      c.options.limuon.lowrank_state(parse_lowrank_state(parts[1])).storm(parse_storm(parts[2]));
    } catch (const std::invalid_argument& e) {
      throw bad(e.what());
    }
    for (size_t i = 3; i < parts.size(); ++i) {
      if (parts[i] == "acc") c.options.limuon.accumulate_second_gradient(true);
      else if (parts[i] == "paper-preset") {
        const auto& o = c.options.limuon;
        c.options.limuon = LiMuonOptions::paper(o.lr())
                               .beta(o.beta())
                               .rank(o.rank())
                               .oversample(o.oversample())
                               .lowrank_state(o.lowrank_state())
                               .storm(o.storm())
                               .accumulate_second_gradient(o.accumulate_second_gradient());
      } else throw bad("unknown modifier '" + parts[i] + "'");
    }
  } else throw bad("unknown configuration");
  return c;
}

struct MemoryResult {
  std::string config;
  int64_t state_bytes = 0, matrix_state_bytes = 0;
  int64_t alloc_before = 0, alloc_peak = 0;  // live tensor bytes before the step, and their peak during it
  int64_t rss_before = -1, rss_peak = -1;     // RSS after malloc_trim, and VmHWM during the step
  int64_t evaluations = 0;
  double ms = 0;
};

nlohmann::json to_json(const MemoryResult& r, const std::string& model, int64_t batch, int64_t block,
                       const std::string& device) {
  auto opt_bytes = [](int64_t v) { return v < 0 ? nlohmann::json(nullptr) : nlohmann::json(v); };
  return {{"bench", "memory"},
          {"config", r.config},
          {"model", model},
          {"batch", batch},
          {"block", block},
          {"device", device},
          {"state_bytes", r.state_bytes},
          {"matrix_state_bytes", r.matrix_state_bytes},
          {"alloc_before_bytes", r.alloc_before},
          {"alloc_peak_bytes", r.alloc_peak},
          {"alloc_step_bytes", r.alloc_peak - r.alloc_before},
          {"rss_before_bytes", opt_bytes(r.rss_before)},
          {"rss_peak_bytes", opt_bytes(r.rss_peak)},
          {"rss_step_bytes", r.rss_before < 0 || r.rss_peak < 0 ? nlohmann::json(nullptr)
                                                                : nlohmann::json(r.rss_peak - r.rss_before)},
          {"evaluations_per_step", r.evaluations},
          {"step_ms", r.ms},
          {"threads", at::get_num_threads()}};
}

MemoryResult measure_memory(const MemoryConfig& cfg, const std::string& model_name, int64_t batch, int64_t block,
                            double dropout, int64_t warmup, const std::string& device) {
  CountingAllocator& counter = CountingAllocator::install();
  const bool cuda = device == "cuda";
  auto mcfg = models::gpt2_config(model_name);
  if (dropout >= 0) mcfg.dropout = dropout;
  if (block > mcfg.n_ctx)
    throw UsageError("--block-size " + std::to_string(block) + " exceeds the model's context " + std::to_string(mcfg.n_ctx));
  torch::manual_seed(0);
  models::GPT2 model(mcfg);
  model->to(cuda ? at::kCUDA : at::kCPU);
  const auto dev = cuda ? at::TensorOptions().device(at::kCUDA) : at::TensorOptions();
  at::Tensor x = torch::randint(0, mcfg.vocab_size, {batch, block}, dev.dtype(at::kLong));
  at::Tensor y = torch::randint(0, mcfg.vocab_size, {batch, block}, dev.dtype(at::kLong));
  HybridOptimizer opt(route_module(*model), cfg.options);
  // As the trainer's closure: gradients cleared through the optimizer, forward, backward.
  auto closure = [&]() {
    opt.zero_grad(/*set_to_none=*/false);
    at::Tensor loss = model->loss(x, y);
    loss.backward();
    return loss.detach();
  };
  for (int64_t i = 0; i < warmup; ++i) opt.step(closure);  // LiMuon exact: the first call evaluates once
  MemoryResult r;
  r.config = cfg.name;
  const int64_t evals_before = opt.evaluations();
  malloc_trim(0);  // hand back what earlier steps freed, so that RSS growth during the step is real demand
  if (cuda) {
    torch::cuda::synchronize();
    at::getDeviceAllocator(c10::DeviceType::CUDA)->resetPeakStats(0);
  }
  const bool hwm_ok = reset_hwm();
  r.rss_before = proc_status_bytes("VmRSS");
  counter.reset_peak();
  const int64_t cuda_before =
      cuda ? at::getDeviceAllocator(c10::DeviceType::CUDA)->getDeviceStats(0).allocated_bytes[kAggregate].current : 0;
  r.alloc_before = cuda ? cuda_before : counter.live();
  const auto t0 = std::chrono::steady_clock::now();
  opt.step(closure);
  if (cuda) torch::cuda::synchronize();
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  r.alloc_peak = cuda ? at::getDeviceAllocator(c10::DeviceType::CUDA)->getDeviceStats(0).allocated_bytes[kAggregate].peak
                      : counter.peak();
  r.rss_peak = hwm_ok ? proc_status_bytes("VmHWM") : -1;
  if (!hwm_ok) r.rss_before = -1;
  r.evaluations = opt.evaluations() - evals_before;
  r.state_bytes = opt.state_bytes();
  r.matrix_state_bytes = opt.matrix_optimizer() ? matrix_state_bytes(*opt.matrix_optimizer()) : 0;
  return r;
}

std::string mib(int64_t bytes) {
  if (bytes < 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

int bench_memory(Args& args, bool json) {
  const std::string model = args.str("model", "distilgpt2");
  const int64_t batch = args.integer("batch-size", 2, 1, 1 << 20);
  const int64_t block = args.integer("block-size", 128, 1, 1 << 20);
  const double dropout = args.real("dropout", -1, -1, 1);  // -1: the model's own (the trainer's default)
  const int64_t warmup = args.integer("warmup", 2, 1, 1000);
  const std::string device = args.str("device", "cpu");
  const std::string json_out = args.str("json-out", "");
  const bool isolate = args.integer("isolate", 1, 0, 1) == 1;
  const std::string config_list =
      args.str("configs", "adamw,muon,limuon:none:exact,limuon:none:approx,limuon:paper:exact,limuon:paper:approx,"
                          "limuon:light:exact,limuon:light:approx,limuon:paper:exact:acc,limuon:light:exact:acc");
  HybridOptions base;
  try {
    const double lr = args.real("lr", 0.02, 0, 1e9);
    const std::string orth = args.str("orthogonalizer", "gram_ns");
    const int64_t rank = args.integer("rank", 32, 1, 65536);
    const int64_t oversample = args.integer("oversample", 8, 0, 65536);
    base.muon = MuonOptions(lr).orthogonalizer(parse_orthogonalizer(orth)).rank(rank).oversample(oversample);
    base.limuon = LiMuonOptions(lr).orthogonalizer(parse_orthogonalizer(orth)).rank(rank).oversample(oversample)
                      .beta(args.real("beta", 0.1, 0, 1));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  args.finish();
  {
    const auto names = models::gpt2_config_names();
    if (std::find(names.begin(), names.end(), model) == names.end())
      throw UsageError("--model: unknown value '" + model + "' (valid: gpt2-tiny, gpt2-byte-small, gpt2-mini, distilgpt2, gpt2)");
  }
  if (device != "cpu" && device != "cuda") throw UsageError("--device: unknown value '" + device + "' (valid: cpu, cuda)");
  if (device == "cuda" && !torch::cuda::is_available()) throw UsageError("--device cuda: CUDA is not available in this build");
  std::vector<MemoryConfig> configs;
  for (const auto& c : split_list(config_list)) configs.push_back(parse_memory_config(c, base));
  if (configs.empty()) throw UsageError("--configs: no configuration given");

  std::vector<nlohmann::json> rows;
  for (const auto& cfg : configs) {
    if (!isolate) {
      rows.push_back(to_json(measure_memory(cfg, model, batch, block, dropout, warmup, device), model, batch, block, device));
      continue;
    }
    // Each configuration in a fresh process: RSS and the heap start clean, nothing of the previous
    // configuration's model or state lingers.
    std::ostringstream cmd;
    cmd << "'/proc/" << getpid() << "/exe' bench memory --isolate 0 --json --threads " << at::get_num_threads()
        << " --model " << model << " --batch-size " << batch << " --block-size " << block << " --dropout " << dropout
        << " --warmup " << warmup << " --device " << device << " --configs " << cfg.name
        << " --lr " << base.limuon.lr() << " --beta " << base.limuon.beta() << " --rank " << base.limuon.rank()
        << " --oversample " << base.limuon.oversample() << " --orthogonalizer " << to_string(base.limuon.orthogonalizer());
    for (char ch : cfg.name)
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != ':' && ch != '_' && ch != '-')
        throw UsageError("--configs: bad character in '" + cfg.name + "'");
    std::fflush(stdout);
    FILE* pipe = popen(cmd.str().c_str(), "r");
    if (!pipe) throw std::runtime_error("bench memory: cannot start a child process");
    std::string out;
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
    const int rc = pclose(pipe);
    nlohmann::json row;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);)
      if (!line.empty() && line[0] == '{') row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (rc != 0 || !row.is_object())
      throw std::runtime_error("bench memory: the child process for '" + cfg.name + "' failed (status " +
                               std::to_string(rc) + "): " + out);
    rows.push_back(row);
  }

  if (json) {
    for (const auto& r : rows) std::cout << r.dump() << std::endl;
  } else {
    std::printf("bench memory: %s, batch %lld x %lld tokens, %s, float32, %d threads; one steady-state step after %lld\n",
                model.c_str(), static_cast<long long>(batch), static_cast<long long>(block), device.c_str(),
                at::get_num_threads(), static_cast<long long>(warmup));
    std::printf("%-28s %10s %10s %11s %11s %11s %11s %11s %6s %9s\n", "config", "state_MiB", "matrix_MiB",
                "alloc0_MiB", "allocpk_MiB", "allocst_MiB", "rss0_MiB", "rssstep_MiB", "evals", "step_ms");
    auto b = [](const nlohmann::json& v) { return v.is_null() ? int64_t{-1} : v.get<int64_t>(); };
    for (const auto& r : rows)
      std::printf("%-28s %10s %10s %11s %11s %11s %11s %11s %6lld %9.0f\n", r["config"].get<std::string>().c_str(),
                  mib(b(r["state_bytes"])).c_str(), mib(b(r["matrix_state_bytes"])).c_str(),
                  mib(b(r["alloc_before_bytes"])).c_str(), mib(b(r["alloc_peak_bytes"])).c_str(),
                  mib(b(r["alloc_step_bytes"])).c_str(), mib(b(r["rss_before_bytes"])).c_str(),
                  mib(b(r["rss_step_bytes"])).c_str(), static_cast<long long>(b(r["evaluations_per_step"])),
                  r["step_ms"].get<double>());
    std::printf("state: persistent optimizer state (hybrid total; matrix = the matrix optimizer's); alloc0/allocpk: live "
                "tensor bytes before the step / their peak during it (%s); allocst = allocpk - alloc0; rss0: RSS "
                "before the step after malloc_trim; rssstep: VmHWM during the step - rss0\n",
                device == "cuda" ? "CUDA caching allocator, device 0" : "counting CPU allocator");
  }
  if (!json_out.empty()) {
    std::ofstream f(json_out);
    f << nlohmann::json(rows).dump(2) << "\n";
    if (!f) throw std::runtime_error("bench memory: cannot write " + json_out);
  }
  return 0;
}

}  // namespace limuon::cli
