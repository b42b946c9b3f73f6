// Reference-data reader and the deterministic test problem.
#include "test_support.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace limuon::test {

const torch::Tensor& Reference::at(const std::string& key) const {
  auto it = tensors.find(key);
  if (it == tensors.end()) throw std::runtime_error("reference: no tensor '" + key + "'");
  return it->second;
}

namespace {
torch::Tensor parse_tensor_line(std::istringstream& ls, std::string& key) {
  int ndim = 0;
  ls >> key >> ndim;
  std::vector<int64_t> dims(ndim);
  int64_t numel = 1;
  for (auto& d : dims) {
    ls >> d;
    numel *= d;
  }
  std::vector<double> vals(numel);
  for (auto& v : vals)
    if (!(ls >> v)) throw std::runtime_error("reference: short tensor " + key);
  return torch::tensor(vals, torch::kDouble).reshape(dims);
}
}  // namespace

std::map<std::string, torch::Tensor> read_tensor_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::map<std::string, torch::Tensor> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string kind, key;
    ls >> kind;
    if (kind != "tensor") continue;
    auto t = parse_tensor_line(ls, key);
    out[key] = t;
  }
  return out;
}

Reference read_reference(const std::string& path) {
  Reference r;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string kind;
    ls >> kind;
    if (kind == "calls") {
      ls >> r.calls;
    } else if (kind == "tensor") {
      std::string key;
      auto t = parse_tensor_line(ls, key);
      r.tensors[key] = t;
    } else if (kind == "loss") {
      std::string name;
      int call = 0;
      double v = 0;
      ls >> name >> call >> v;
      r.losses[name + "/" + std::to_string(call)] = v;
    } else if (kind == "config") {
      RefConfig c;
      ls >> c.name >> c.kind;
      std::string kv;
      while (ls >> kv) {
        auto eq = kv.find('=');
        c.opts[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
      r.configs.push_back(c);
    } else {
      throw std::runtime_error("reference: unknown record '" + kind + "' in " + path);
    }
  }
  if (r.calls <= 0 || r.configs.empty()) throw std::runtime_error("reference: empty file " + path);
  return r;
}

const Reference& reference() {
  static const Reference ref = read_reference(std::string(LIMUON_REFERENCE_DIR) + "/trajectories.txt");
  return ref;
}

torch::Tensor Problem::loss() {
  const auto& ref = reference();
  const std::string b = "batch/" + std::to_string(batch) + "/";
  auto dt = params[0].scalar_type();
  auto x = ref.at(b + "x").to(dt), y = ref.at(b + "y").to(dt), z = ref.at(b + "z").to(dt), u = ref.at(b + "u").to(dt);
  auto h = torch::tanh(x.mm(params[0].t()));
  auto pred = h.mm(params[1].t());
  auto side = z.mm(params[2].reshape({3, 4}).t());
  return (pred - y).pow(2).mean() + (side - u).pow(2).mean();
}

std::function<torch::Tensor()> Problem::closure() {
  return [this]() {
    for (auto& p : params)
      if (p.grad().defined()) p.grad().zero_();
    ++evaluations;
    auto l = loss();
    l.backward();
    return l.detach();
  };
}

Problem make_problem(torch::ScalarType dtype) {
  const auto& ref = reference();
  Problem p;
  for (const char* k : {"W1", "W2", "W3"})
    p.params.push_back(ref.at(std::string("init/") + k).to(dtype).clone().set_requires_grad(true));
  return p;
}

double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  auto a64 = a.detach().to(torch::kDouble), b64 = b.detach().to(torch::kDouble);
  return (a64 - b64).abs().max().item<double>() / (1.0 + b64.abs().max().item<double>());
}

}  // namespace limuon::test
