// Versioned save/load helpers shared by limuon's optimizers (see state_io.h for the layout).
#include "state_io.h"


namespace limuon::io {

using torch::serialize::InputArchive;
using torch::serialize::OutputArchive;

void put(OutputArchive& a, const std::string& k, double v) { a.write(k, c10::IValue(v)); }
void put(OutputArchive& a, const std::string& k, int64_t v) { a.write(k, c10::IValue(v)); }
void put(OutputArchive& a, const std::string& k, bool v) { a.write(k, c10::IValue(v)); }
void put(OutputArchive& a, const std::string& k, const std::string& v) { a.write(k, c10::IValue(v)); }
void put_tensor(OutputArchive& a, const std::string& k, const at::Tensor& t) {
  if (t.defined()) a.write(k, t);
}

namespace {
c10::IValue get(InputArchive& a, const std::string& k) {
  c10::IValue v;
  if (!a.try_read(k, v)) throw std::runtime_error("optimizer checkpoint: missing entry '" + k + "'");
  return v;
}
[[noreturn]] void bad_type(const std::string& k, const char* want) {
  throw std::runtime_error("optimizer checkpoint: entry '" + k + "' is not " + want);
}
}  // namespace

double get_double(InputArchive& a, const std::string& k) {
  auto v = get(a, k);
  if (!v.isDouble()) bad_type(k, "a float");
  return v.toDouble();
}
int64_t get_int(InputArchive& a, const std::string& k) {
  auto v = get(a, k);
  if (!v.isInt()) bad_type(k, "an integer");
  return v.toInt();
}
bool get_bool(InputArchive& a, const std::string& k) {
  auto v = get(a, k);
  if (!v.isBool()) bad_type(k, "a bool");
  return v.toBool();
}
std::string get_string(InputArchive& a, const std::string& k) {
  auto v = get(a, k);
  if (!v.isString()) bad_type(k, "a string");
  return v.toStringRef();
}
double get_double_or(InputArchive& a, const std::string& k, double fallback) {
  c10::IValue probe;
  return a.try_read(k, probe) ? get_double(a, k) : fallback;
}
int64_t get_int_or(InputArchive& a, const std::string& k, int64_t fallback) {
  c10::IValue probe;
  return a.try_read(k, probe) ? get_int(a, k) : fallback;
}
bool get_bool_or(InputArchive& a, const std::string& k, bool fallback) {
  c10::IValue probe;
  return a.try_read(k, probe) ? get_bool(a, k) : fallback;
}
at::Tensor get_tensor_opt(InputArchive& a, const std::string& k) {
  at::Tensor t;
  if (!a.try_read(k, t)) return at::Tensor();
  return t;
}

void save_optimizer(OutputArchive& archive, const torch::optim::Optimizer& opt, const std::string& kind,
                    const Counters& counters) {
  put(archive, "limuon_format", kFormatVersion);
  put(archive, "optimizer", kind);
  put(archive, "calls", counters.calls);
  put(archive, "nonfinite_skips", counters.nonfinite_skips);
  const auto& groups = opt.param_groups();
  put(archive, "num_groups", static_cast<int64_t>(groups.size()));
  for (size_t g = 0; g < groups.size(); ++g) {
    OutputArchive ga(archive.compilation_unit());
    OutputArchive oa(archive.compilation_unit());
    groups[g].options().serialize(oa);
    ga.write("options", oa);
    const auto& params = groups[g].params();
    put(ga, "num_params", static_cast<int64_t>(params.size()));
    for (size_t i = 0; i < params.size(); ++i) {
      ga.write("shape/" + std::to_string(i),
               at::tensor(params[i].sizes().vec(), at::TensorOptions().dtype(at::kLong)));
      auto it = opt.state().find(state_key(params[i]));
      if (it != opt.state().end()) {
        OutputArchive sa(archive.compilation_unit());
        it->second->serialize(sa);
        ga.write("state/" + std::to_string(i), sa);
      }
    }
    archive.write("group/" + std::to_string(g), ga);
  }
}

Counters check_layout(InputArchive& archive, const torch::optim::Optimizer& opt, const std::string& kind,
                      std::vector<InputArchive>& groups) {
  c10::IValue v;
  if (!archive.try_read("limuon_format", v))
    throw std::runtime_error("optimizer checkpoint: not a limuon optimizer state (no 'limuon_format' entry)");
  if (!v.isInt() || v.toInt() != kFormatVersion)
    throw std::runtime_error("optimizer checkpoint: unsupported limuon_format " +
                             (v.isInt() ? std::to_string(v.toInt()) : std::string("?")) + " (this build reads " +
                             std::to_string(kFormatVersion) + ")");
  const std::string saved_kind = get_string(archive, "optimizer");
  if (saved_kind != kind)
    throw std::runtime_error("optimizer checkpoint: holds state of optimizer '" + saved_kind +
                             "', cannot load it into '" + kind + "'");
  Counters c;
  c.calls = get_int(archive, "calls");
  c.nonfinite_skips = get_int(archive, "nonfinite_skips");
  const int64_t ng = get_int(archive, "num_groups");
  const auto& pg = opt.param_groups();
  if (ng != static_cast<int64_t>(pg.size()))
    throw std::runtime_error("optimizer checkpoint: has " + std::to_string(ng) + " parameter groups, optimizer has " +
                             std::to_string(pg.size()));
  groups.clear();
  for (int64_t g = 0; g < ng; ++g) {
    InputArchive ga;
    archive.read("group/" + std::to_string(g), ga);
    const int64_t np = get_int(ga, "num_params");
    if (np != static_cast<int64_t>(pg[g].params().size()))
      throw std::runtime_error("optimizer checkpoint: group " + std::to_string(g) + " has " + std::to_string(np) +
                               " parameters, optimizer has " + std::to_string(pg[g].params().size()));
    for (int64_t i = 0; i < np; ++i) {
      at::Tensor shape;
      ga.read("shape/" + std::to_string(i), shape);
      const auto want = pg[g].params()[i].sizes().vec();
      if (shape.scalar_type() != at::kLong || shape.dim() != 1)
        throw std::runtime_error("optimizer checkpoint: group " + std::to_string(g) + " entry 'shape/" +
                                 std::to_string(i) + "' is not a 1-D int64 tensor");
      // The archive keeps strides: an expanded or strided tensor's numel elements are not
      // contiguous behind data_ptr().
      shape = shape.contiguous();
      std::vector<int64_t> got(shape.data_ptr<int64_t>(), shape.data_ptr<int64_t>() + shape.numel());
      if (got != want) {
        std::ostringstream os;
        os << "optimizer checkpoint: group " << g << " parameter " << i << " has shape " << c10::IntArrayRef(got)
           << " in the checkpoint but " << c10::IntArrayRef(want) << " in the optimizer";
        throw std::runtime_error(os.str());
      }
    }
    groups.push_back(std::move(ga));
  }
  return c;
}

}  // namespace limuon::io
