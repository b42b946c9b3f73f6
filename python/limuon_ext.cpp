// limuon._C: the pybind11 extension behind the `limuon` Python package. It wraps the C++
// optimizer objects (built on the very tensors Python passes in, so the C++ side reads the
// Python .grad and updates the Python parameters in place), the orthogonalization kernels and
// the parameter router. The user-facing torch.optim.Optimizer classes live in limuon/optim.py and
// limuon/family.py.
#include <torch/extension.h>

#include "limuon/optim/common.h"
#include "limuon/optim/gluon.h"
#include "limuon/optim/hybrid.h"
#include "limuon/optim/limuon.h"
#include "limuon/optim/lionmuon.h"
#include "limuon/optim/mimuon.h"
#include "limuon/optim/muon.h"
#include "limuon/optim/muon_mvr.h"
#include "limuon/optim/muoneq.h"
#include "limuon/kernels/orth.h"
#include "limuon/optim/sumo.h"
#include "limuon/threads.h"

#include <pybind11/stl.h>
#include <torch/serialize/archive.h>

#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

// ---------------------------------------------------------------- options <-> dict
// The Python layer normalises types (float/int/bool/str) and names the option in its own
// errors; here a missing key keeps the current value, so the same code builds options and
// applies later changes (learning-rate schedules, momentum warm-up).
template <class T>
bool take(const py::dict& d, const char* key, T& out) {
  if (!d.contains(key)) return false;
  try {
    out = d[key].cast<T>();
  } catch (const py::cast_error&) {
    throw std::invalid_argument(std::string("option ") + key + ": wrong type " +
                                std::string(py::str(py::type::of(d[key]))));
  }
  return true;
}

template <class Options>
void apply_shared(Options& o, const py::dict& d) {
  double f = 0;
  int64_t i = 0;
  std::string s;
  if (take(d, "lr", f)) o.lr(f);
  if (take(d, "weight_decay", f)) o.weight_decay(f);
  if (take(d, "adjust_lr", s)) o.adjust_lr(limuon::parse_adjust_lr(s));
  if (take(d, "orthogonalizer", s)) o.orthogonalizer(limuon::parse_orthogonalizer(s));
  if (take(d, "rank", i)) o.rank(i);
  if (take(d, "oversample", i)) o.oversample(i);
  if (take(d, "power_iters", i)) o.power_iters(i);
  if (take(d, "seed", i)) {
    if (i < 0) throw std::invalid_argument("seed must be >= 0, got " + std::to_string(i));
    o.seed(static_cast<uint64_t>(i));
  }
  if (take(d, "nonfinite", s)) o.nonfinite(limuon::parse_nonfinite_policy(s));
}

// Muon's momentum options, which most of the family keeps.
template <class Options>
void apply_momentum(Options& o, const py::dict& d) {
  double f = 0;
  bool b = false;
  if (take(d, "momentum", f)) o.momentum(f);
  if (take(d, "nesterov", b)) o.nesterov(b);
}

void apply(limuon::MuonOptions& o, const py::dict& d) {
  apply_shared(o, d);
  apply_momentum(o, d);
  limuon::NsCoefficients c{};
  double f = 0;
  int64_t i = 0;
  if (take(d, "ns_coefficients", c)) o.ns_coefficients(c);
  if (take(d, "ns_steps", i)) o.ns_steps(i);
  if (take(d, "eps", f)) o.eps(f);
}

void apply(limuon::LiMuonOptions& o, const py::dict& d) {
  apply_shared(o, d);
  double f = 0;
  std::string s;
  if (take(d, "beta", f)) o.beta(f);
  if (take(d, "gamma", f)) o.gamma(f);
  if (take(d, "lowrank_state", s)) o.lowrank_state(limuon::parse_lowrank_state(s));
  if (take(d, "storm", s)) o.storm(limuon::parse_storm(s));
  bool b = false;
  if (take(d, "accumulate_second_gradient", b)) o.accumulate_second_gradient(b);
}

template <class Options>
py::dict shared_dict(const Options& o) {
  py::dict d;
  d["lr"] = o.lr();
  d["weight_decay"] = o.weight_decay();
  d["adjust_lr"] = limuon::to_string(o.adjust_lr());
  d["orthogonalizer"] = limuon::to_string(o.orthogonalizer());
  d["rank"] = o.rank();
  d["oversample"] = o.oversample();
  d["power_iters"] = o.power_iters();
  d["seed"] = static_cast<int64_t>(o.seed());
  d["nonfinite"] = limuon::to_string(o.nonfinite());
  return d;
}

template <class Options>
py::dict momentum_dict(const Options& o) {
  py::dict d = shared_dict(o);
  d["momentum"] = o.momentum();
  d["nesterov"] = o.nesterov();
  return d;
}

py::dict to_dict(const limuon::MuonOptions& o) {
  py::dict d = momentum_dict(o);
  const auto& c = o.ns_coefficients();
  d["ns_coefficients"] = py::make_tuple(c[0], c[1], c[2]);  // a tuple, as torch.optim.Muon keeps it
  d["ns_steps"] = o.ns_steps();
  d["eps"] = o.eps();
  return d;
}

py::dict to_dict(const limuon::LiMuonOptions& o) {
  py::dict d = shared_dict(o);
  d["beta"] = o.beta();
  d["gamma"] = o.gamma();
  d["lowrank_state"] = limuon::to_string(o.lowrank_state());
  d["storm"] = limuon::to_string(o.storm());
  d["accumulate_second_gradient"] = o.accumulate_second_gradient();
  return d;
}

// ---- the rest of the family (ALGORITHMS.md §4)
void apply(limuon::MuonMVROptions& o, const py::dict& d) {
  apply_shared(o, d);
  apply_momentum(o, d);
  double f = 0;
  std::string s;
  if (take(d, "gamma", f)) o.gamma(f);
  if (take(d, "max_norm", f)) o.max_norm(f);
  bool b = false;
  if (take(d, "clip_inputs", b)) o.clip_inputs(b);
  if (take(d, "zero_prev_init", b)) o.zero_prev_init(b);
  if (take(d, "variant", s)) o.variant(limuon::parse_mvr_variant(s));
}

py::dict to_dict(const limuon::MuonMVROptions& o) {
  py::dict d = momentum_dict(o);
  d["gamma"] = o.gamma();
  d["max_norm"] = o.max_norm();
  d["clip_inputs"] = o.clip_inputs();
  d["zero_prev_init"] = o.zero_prev_init();
  d["variant"] = limuon::to_string(o.variant());
  return d;
}

void apply(limuon::SumoOptions& o, const py::dict& d) {
  apply_shared(o, d);
  double f = 0;
  int64_t i = 0;
  if (take(d, "momentum", f)) o.momentum(f);
  if (take(d, "update_interval", i)) o.update_interval(i);
  if (take(d, "alpha", f)) o.alpha(f);
  bool b = false;
  if (take(d, "outer", b)) o.outer(b);
  if (take(d, "growth_limit", f)) o.growth_limit(f);
}

py::dict to_dict(const limuon::SumoOptions& o) {
  py::dict d = shared_dict(o);
  d["momentum"] = o.momentum();
  d["update_interval"] = o.update_interval();
  d["alpha"] = o.alpha();
  d["outer"] = o.outer();
  d["growth_limit"] = o.growth_limit();
  return d;
}

void apply(limuon::MuonEqOptions& o, const py::dict& d) {
  apply_shared(o, d);
  apply_momentum(o, d);
  std::string s;
  if (take(d, "equilibrate", s)) o.equilibrate(limuon::parse_equilibrate(s));
  double f = 0;
  int64_t i = 0;
  if (take(d, "exponent", f)) o.exponent(f);
  if (take(d, "eps", f)) o.eps(f);
  if (take(d, "phase", i)) o.phase(i);
}

py::dict to_dict(const limuon::MuonEqOptions& o) {
  py::dict d = momentum_dict(o);
  d["equilibrate"] = limuon::to_string(o.equilibrate());
  d["exponent"] = o.exponent();
  d["eps"] = o.eps();
  d["phase"] = o.phase();
  return d;
}

void apply(limuon::LionMuonOptions& o, const py::dict& d) {
  apply_shared(o, d);
  double f = 0;
  int64_t i = 0;
  if (take(d, "beta1", f)) o.beta1(f);
  if (take(d, "beta2", f)) o.beta2(f);
  if (take(d, "period", i)) o.period(i);
  if (take(d, "sign_lr_ratio", f)) o.sign_lr_ratio(f);
}

py::dict to_dict(const limuon::LionMuonOptions& o) {
  py::dict d = shared_dict(o);
  d["beta1"] = o.beta1();
  d["beta2"] = o.beta2();
  d["period"] = o.period();
  d["sign_lr_ratio"] = o.sign_lr_ratio();
  return d;
}

void apply(limuon::MiMuonOptions& o, const py::dict& d) {
  apply_shared(o, d);
  apply_momentum(o, d);
  double f = 0;
  if (take(d, "tau", f)) o.tau(f);
}

py::dict to_dict(const limuon::MiMuonOptions& o) {
  py::dict d = momentum_dict(o);
  d["tau"] = o.tau();
  return d;
}

void apply(limuon::GluonOptions& o, const py::dict& d) {
  apply_shared(o, d);
  apply_momentum(o, d);
  double f = 0;
  if (take(d, "l0", f)) o.l0(f);
  if (take(d, "l1", f)) o.l1(f);
  std::string s;
  bool b = false;
  if (take(d, "mode", s)) o.mode(limuon::parse_gluon_mode(s));
  if (take(d, "beta_schedule", b)) o.beta_schedule(b);
  if (take(d, "step_decay", b)) o.step_decay(b);
}

py::dict to_dict(const limuon::GluonOptions& o) {
  py::dict d = momentum_dict(o);
  d["mode"] = limuon::to_string(o.mode());
  d["beta_schedule"] = o.beta_schedule();
  d["step_decay"] = o.step_decay();
  d["l0"] = o.l0();
  d["l1"] = o.l1();
  return d;
}

// ---------------------------------------------------------------- optimizer wrapper
using Group = std::pair<std::vector<at::Tensor>, py::dict>;

template <class Opt, class Options>
std::unique_ptr<Opt> make_optimizer(const std::vector<Group>& groups) {
  if (groups.empty()) throw std::invalid_argument("optimizer got an empty parameter list");
  std::vector<torch::optim::OptimizerParamGroup> pgs;
  Options defaults;
  for (const auto& g : groups) {
    Options o;
    apply(o, g.second);
    pgs.emplace_back(g.first, std::make_unique<Options>(o));
    if (pgs.size() == 1) defaults = o;
  }
  // The C++ constructor validates every group's options and every parameter's shape.
  return std::make_unique<Opt>(std::move(pgs), defaults);
}

// A Python closure as a LossClosure. step() runs with the GIL released (the heavy work is
// pure ATen), so the closure takes the GIL back for its own duration. It holds a borrowed
// handle, not a py::object: LibTorch copies the std::function while the GIL is released, and
// copying a py::object would touch the reference count without the GIL. The caller keeps the
// closure alive for the whole step.
torch::optim::Optimizer::LossClosure wrap_closure(py::handle closure) {
  if (closure.is_none()) return nullptr;
  return [closure]() -> at::Tensor {
    py::gil_scoped_acquire gil;
    py::object r = closure();
    if (THPVariable_Check(r.ptr())) return THPVariable_Unpack(r.ptr());
    // A float or None from the closure: the Python layer returns it itself.
    return at::Tensor();
  };
}

template <class Opt, class Options>
class PyOptimizer {
 public:
  explicit PyOptimizer(const std::vector<Group>& groups) : opt_(make_optimizer<Opt, Options>(groups)) {}

  at::Tensor step(py::object closure) {
    auto c = wrap_closure(closure);
    py::gil_scoped_release nogil;
    return opt_->step(c);
  }

  size_t num_groups() const { return opt_->param_groups().size(); }

  Options& options(size_t g) {
    if (g >= num_groups()) throw std::out_of_range("parameter group " + std::to_string(g) + " does not exist");
    return static_cast<Options&>(opt_->param_groups()[g].options());
  }

  void set_lr(size_t g, double lr) {
    Options o = options(g);
    o.lr(lr);
    o.validate();
    options(g) = o;
  }

  // Applies the given keys to group g's options; all-or-nothing (validated before assignment).
  void set_options(size_t g, const py::dict& d) {
    Options o = options(g);
    apply(o, d);
    o.validate();
    options(g) = o;
  }

  py::dict get_options(size_t g) { return to_dict(options(g)); }

  void add_param_group(const std::vector<at::Tensor>& params, const py::dict& d) {
    Options o;
    apply(o, d);
    o.validate();
    for (const auto& p : params) limuon::matrix_shape(p, Opt::kName);
    limuon::add_param_group(*opt_, torch::optim::OptimizerParamGroup(params, std::make_unique<Options>(o)));
  }

  py::bytes save() const {
    torch::serialize::OutputArchive a;
    opt_->save(a);
    std::ostringstream os;
    a.save_to(os);
    return py::bytes(os.str());
  }

  void load(const py::bytes& data) {
    std::istringstream is(std::string(data), std::ios::binary);
    torch::serialize::InputArchive a;
    a.load_from(is);
    opt_->load(a);
  }

  Opt& get() { return *opt_; }

 private:
  std::unique_ptr<Opt> opt_;
};

// Opt::kName is used in error messages; the C++ classes do not carry one, so adapt.
struct MuonT : limuon::Muon {
  using limuon::Muon::Muon;
  static constexpr const char* kName = "Muon";
};
struct LiMuonT : limuon::LiMuon {
  using limuon::LiMuon::LiMuon;
  static constexpr const char* kName = "LiMuon";
};
using PyMuon = PyOptimizer<MuonT, limuon::MuonOptions>;
using PyLiMuon = PyOptimizer<LiMuonT, limuon::LiMuonOptions>;

#define LIMUON_FAMILY_T(Cpp, Name)                     \
  struct Cpp##T : limuon::Cpp {                        \
    using limuon::Cpp::Cpp;                            \
    static constexpr const char* kName = Name;         \
  };                                                   \
  using Py##Cpp = PyOptimizer<Cpp##T, limuon::Cpp##Options>;
LIMUON_FAMILY_T(MuonMVR, "MuonMVR")
LIMUON_FAMILY_T(Sumo, "SUMO")
LIMUON_FAMILY_T(MuonEq, "MuonEq")
LIMUON_FAMILY_T(LionMuon, "LionMuon")
LIMUON_FAMILY_T(MiMuon, "MiMuon")
LIMUON_FAMILY_T(Gluon, "Gluon")
#undef LIMUON_FAMILY_T

// The stage methods of an optimizer that may evaluate its closure twice per call (LiMuon exact,
// Muon-MVR2), for hybrid set-ups that step AdamW between the two evaluations.
template <class Py>
void bind_two_point(py::class_<Py>& c) {
  c.def("evaluates_twice", [](Py& self) { return self.get().evaluates_twice(); })
      .def("needs_old_point_gradient", [](Py& self) { return self.get().needs_old_point_gradient(); })
      .def("after_old_point_gradient",
           [](Py& self) {
             py::gil_scoped_release nogil;
             self.get().after_old_point_gradient();
           })
      .def("after_new_point_gradient", [](Py& self) {
        py::gil_scoped_release nogil;
        self.get().after_new_point_gradient();
      });
}

template <class Py>
py::class_<Py> bind_family(py::module_& m, const char* name) {
  py::class_<Py> c(m, name);
  bind_common(c);
  c.def("evaluations", [](Py& self) { return self.get().evaluations(); });
  return c;
}

template <class Py>
void bind_common(py::class_<Py>& c) {
  c.def(py::init<const std::vector<Group>&>(), py::arg("groups"),
        "groups: list of (list of tensors, options dict); the tensors are shared, not copied")
      .def("step", &Py::step, py::arg("closure") = py::none())
      .def("num_groups", &Py::num_groups)
      .def("set_lr", &Py::set_lr, py::arg("group"), py::arg("lr"))
      .def("set_options", &Py::set_options, py::arg("group"), py::arg("options"))
      .def("options", &Py::get_options, py::arg("group"))
      .def("add_param_group", &Py::add_param_group, py::arg("params"), py::arg("options"))
      .def("save", &Py::save, "the optimizer state as a LibTorch archive (bytes)")
      .def("load", &Py::load, py::arg("data"))
      .def("state_bytes", [](Py& self) { return self.get().state_bytes(); })
      .def("nonfinite_skips", [](Py& self) { return self.get().nonfinite_skips(); });
}

// ---------------------------------------------------------------- kernels
template <class F>
auto no_gil(F&& f) {
  py::gil_scoped_release nogil;
  return f();
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "limuon C++ core: Muon, LiMuon and the rest of the family, and orthogonalization kernels on LibTorch";

  // LibTorch errors carry a C++ backtrace in what(); Python users get the message alone.
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });

  py::class_<PyMuon> muon(m, "Muon");
  bind_common(muon);

  py::class_<PyLiMuon> li(m, "LiMuon");
  bind_common(li);
  li.def("evaluations", [](PyLiMuon& self) { return self.get().evaluations(); });
  bind_two_point(li);
  // LiMuon's zero_grad keeps the gradients seeded for accumulate_second_gradient between the two
  // evaluations of a call; abandon_call forgets a call interrupted by an exception.
  li.def("zero_grad", [](PyLiMuon& self, bool set_to_none) { self.get().zero_grad(set_to_none); },
         py::arg("set_to_none") = true)
      .def("abandon_call", [](PyLiMuon& self) { self.get().abandon_call(); });
  m.def(
      "limuon_preset",
      [](const std::string& name, double lr) { return to_dict(limuon::LiMuonOptions::preset(name, lr)); },
      py::arg("name"), py::arg("lr") = 0.02, "LiMuon's options of a named preset (practical, paper) as a dict");
  m.attr("limuon_preset_names") = limuon::LiMuonOptions::preset_names();

  auto mvr = bind_family<PyMuonMVR>(m, "MuonMVR");
  bind_two_point(mvr);
  bind_family<PySumo>(m, "Sumo");
  bind_family<PyMuonEq>(m, "MuonEq");
  bind_family<PyLionMuon>(m, "LionMuon");
  bind_family<PyMiMuon>(m, "MiMuon").def("branch_counts", [](PyMiMuon& self) {
    return py::make_tuple(self.get().muon_steps(), self.get().momentum_steps());
  });
  bind_family<PyGluon>(m, "Gluon");

  m.def(
      "ns5",
      [](const at::Tensor& t, int64_t steps, const limuon::NsCoefficients& coefficients, double eps) {
        return no_gil([&] { return limuon::orth_ns5(t, coefficients, steps, eps); });
      },
      py::arg("m"), py::arg("steps") = limuon::kNs5Steps, py::arg("coefficients") = limuon::kNs5Coefficients,
      py::arg("eps") = limuon::kNs5Eps,
      "quintic Newton-Schulz approximation of the polar factor of a matrix or batch [k, m, n]: "
      "X <- a X + (b A + c A A) X with A = X X^T, from X = M / (||M||_F + eps)");
  m.def(
      "polar_express", [](const at::Tensor& t) { return no_gil([&] { return limuon::orth_polar_express(t); }); },
      py::arg("m"), "Polar Express approximation of the polar factor");
  m.def(
      "gram_ns",
      [](const at::Tensor& t, const std::string& coefficients, std::optional<std::vector<int64_t>> restarts,
         double min_aspect, int64_t steps, const limuon::NsCoefficients& ns_coefficients, double eps) {
        limuon::GramNsOptions o;
        o.coefficients = limuon::parse_gram_coefficients(coefficients);
        o.restarts = std::move(restarts);
        o.min_aspect = min_aspect;
        o.ns_steps = steps;
        o.ns_coefficients = ns_coefficients;
        o.ns_eps = eps;
        return no_gil([&] { return limuon::orth_gram_ns(t, o); });
      },
      py::arg("m"), py::arg("coefficients") = "ns5", py::arg("restarts") = py::none(),
      py::arg("min_aspect") = limuon::kGramNsMinAspect, py::arg("steps") = limuon::kNs5Steps,
      py::arg("ns_coefficients") = limuon::kNs5Coefficients, py::arg("eps") = limuon::kNs5Eps,
      "Gram Newton-Schulz: the ns5 or Polar Express iteration carried out on R = X X^T, the m x m factor "
      "applied to X once at the end; restarts=None picks by dtype ([] for fp32/fp64, [1, 3] for bf16/fp16)");
  m.def("gram_ns_default_restarts", &limuon::gram_ns_default_restarts, py::arg("m"),
        "the restart steps gram_ns uses for a tensor like m when restarts=None");
  m.def(
      "svd_polar", [](const at::Tensor& t) { return no_gil([&] { return limuon::orth_svd(t); }); }, py::arg("m"),
      "exact polar factor U V^T from the thin SVD");
  m.def(
      "rsvd",
      [](const at::Tensor& t, int64_t rank, int64_t oversample, int64_t power_iters, int64_t seed) {
        if (seed < 0) throw std::invalid_argument("rsvd: seed must be >= 0, got " + std::to_string(seed));
        if (rank < 1) throw std::invalid_argument("rsvd: rank must be >= 1, got " + std::to_string(rank));
        if (oversample < 0)
          throw std::invalid_argument("rsvd: oversample must be >= 0, got " + std::to_string(oversample));
        if (power_iters < 0)
          throw std::invalid_argument("rsvd: power_iters must be >= 0, got " + std::to_string(power_iters));
        auto f = no_gil([&] { return limuon::rsvd(t, rank, oversample, power_iters, static_cast<uint64_t>(seed)); });
        return py::make_tuple(f.U, f.S, f.V);
      },
      py::arg("m"), py::arg("rank"), py::arg("oversample") = 8, py::arg("power_iters") = 0, py::arg("seed") = 0,
      "randomized SVD: (U [.., m, r], S [.., r], V [.., n, r]) with m ~ U diag(S) V^T");
  m.def(
      "orthogonalize",
      [](const at::Tensor& t, const std::string& method, int64_t rank, int64_t oversample, int64_t power_iters,
         int64_t seed) {
        limuon::OrthSpec s;
        s.method = limuon::parse_orthogonalizer(method);
        s.rank = rank;
        s.oversample = oversample;
        s.power_iters = power_iters;
        if (seed < 0) throw std::invalid_argument("orthogonalize: seed must be >= 0");
        s.seed = static_cast<uint64_t>(seed);
        return no_gil([&] { return limuon::orthogonalize(t, s); });
      },
      py::arg("m"), py::arg("method") = "ns5", py::arg("rank") = 32, py::arg("oversample") = 8,
      py::arg("power_iters") = 0, py::arg("seed") = 0, "dispatch on the orthogonalizer name (svd, ns5, polar_express, rsvd, gram_ns)");
  m.def("symmetric_blas_available", &limuon::symmetric_blas_available);
  m.def("configure_allocator", &limuon::configure_allocator,
        "Raises glibc malloc's mmap/trim thresholds for this process (as the limuon CLI does at start-up), "
        "so the optimizers' large temporaries are reused instead of mapped and unmapped every step. "
        "Returns False where the C library does not support it.");

  // Routing uses the C++ rules so Python and the C++ CLI place every parameter the same way.
  m.def(
      "route_parameters",
      [](const std::vector<std::tuple<std::string, at::Tensor, bool>>& named,
         const std::vector<std::string>& force_adamw, const std::vector<std::string>& force_matrix) {
        std::vector<limuon::NamedParam> params;
        for (const auto& n : named) params.push_back({std::get<0>(n), std::get<1>(n), std::get<2>(n)});
        limuon::RoutingRules rules;
        rules.force_adamw = force_adamw;
        rules.force_matrix = force_matrix;
        auto routed = limuon::route_parameters(params, rules);
        std::vector<std::tuple<std::string, std::string, std::string>> out;
        for (const auto& r : routed)
          out.emplace_back(r.name, r.route == limuon::Route::matrix ? "matrix" : "adamw", r.reason);
        return py::make_tuple(out, limuon::format_routing(routed));
      },
      py::arg("named"), py::arg("force_adamw") = std::vector<std::string>{},
      py::arg("force_matrix") = std::vector<std::string>{},
      "named: list of (name, tensor, is_embedding). Returns ([(name, 'matrix'|'adamw', reason)], table)");
}
