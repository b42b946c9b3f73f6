// Shared test helpers: the committed float64 reference data and the small deterministic problem
// it was generated on (see reference/make_reference.py).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace limuon::test {

struct RefConfig {
  std::string name, kind;
  std::map<std::string, std::string> opts;
};

struct Reference {
  int calls = 0;
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, double> losses;  // "<config>/<call>"
  std::vector<RefConfig> configs;
  const torch::Tensor& at(const std::string& key) const;
};

// Reads a reference file: "calls N", "config NAME KIND key=value...", "loss NAME CALL VALUE" and
// "tensor KEY ..." records (throws when missing or malformed).
Reference read_reference(const std::string& path);
// reference/trajectories.txt, read once.
const Reference& reference();

// The problem: W1 [5, 3] (tall), W2 [4, 5] (wide), W3 [3, 2, 2] (flattened to [3, 4]);
// loss = mean((tanh(x W1ᵀ) W2ᵀ − y)²) + mean((z W3ᵀ − u)²) on batch t.
struct Problem {
  std::vector<torch::Tensor> params;  // W1, W2, W3 as leaf tensors requiring grad
  int batch = 0;                       // which batch the closure uses
  int evaluations = 0;
  torch::Tensor loss();
  // zero grads, forward on the current batch, backward, return the loss
  std::function<torch::Tensor()> closure();
};

Problem make_problem(torch::ScalarType dtype = torch::kDouble);

// Every "tensor <key> <ndim> <dims...> <values...>" line of a reference file (float64).
std::map<std::string, torch::Tensor> read_tensor_file(const std::string& path);

// max |a − b| / (1 + max |b|)
double rel_diff(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace limuon::test
