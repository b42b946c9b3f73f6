// Which kernel computes softmax(q·kᵀ/√d)·v in the models (GPT-2, ViT): LibTorch's fused
// at::scaled_dot_product_attention or the explicit matmul–softmax–matmul written out in the model.
#pragma once

#include <stdexcept>
#include <string>

namespace limuon::models {

// sdpa: at::scaled_dot_product_attention (PyTorch 2.x), which picks a fused kernel for the device
//       and dtype (on CPU, a blocked flash-attention kernel when it applies). Attention dropout,
//       when training with p > 0, is drawn inside that kernel, so it consumes the generator
//       differently from `math`: runs with attention dropout are reproducible per path only.
// math: scores, causal mask, softmax, Dropout module, weighted sum, written out: the path limuon
//       had before sdpa, kept to reproduce runs recorded with it.
// Without dropout (eval mode, or p = 0) both give the same values to float rounding
// (tests/test_models.cpp: 1e-5 in fp32, 1e-12 in fp64, logits and gradients).
enum class Attention { sdpa, math };

inline const char* attention_name(Attention a) { return a == Attention::sdpa ? "sdpa" : "math"; }

inline Attention attention_from_name(const std::string& name) {
  if (name == "sdpa") return Attention::sdpa;
  if (name == "math") return Attention::math;
  throw std::invalid_argument("attention: unknown implementation '" + name + "' (valid: sdpa, math)");
}

}  // namespace limuon::models
