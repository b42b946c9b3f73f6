// libFuzzer target: the safetensors reader, from memory (parse_safetensors) and from a file
// (read_safetensors). The two share the header validation but read tensor data differently, so
// besides "no crash, no sanitizer report" the target checks that they agree on every input.
#include "limuon/io/safetensors.h"

#include "fuzz_stats.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace {

// One fixed file per process (several fuzzers may run side by side).
const std::string& scratch_path() {
  static const std::string p = "/dev/shm/limuon_fuzz_safetensors_" + std::to_string(::getpid()) + ".safetensors";
  return p;
}

using limuon_fuzz::write_file;

[[noreturn]] void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_safetensors: %s: %s\n", what, detail.c_str());
  std::abort();
}

// Same names, order, dtypes, shapes and bytes (compared as bytes: NaN payloads must survive too).
void check_same(const limuon::io::SafeTensors& a, const limuon::io::SafeTensors& b) {
  if (a.metadata != b.metadata) finding("readers disagree", "metadata");
  if (a.tensors.size() != b.tensors.size()) finding("readers disagree", "tensor count");
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& [na, ta] = a.tensors[i];
    const auto& [nb, tb] = b.tensors[i];
    if (na != nb || ta.scalar_type() != tb.scalar_type() || ta.sizes() != tb.sizes())
      finding("readers disagree", "tensor " + na + " vs " + nb);
    const size_t nbytes = static_cast<size_t>(ta.numel()) * ta.element_size();
    if (nbytes && std::memcmp(ta.data_ptr(), tb.data_ptr(), nbytes) != 0)
      finding("readers disagree", "bytes of tensor " + na);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  limuon::io::SafeTensors from_memory, from_file;
  std::string memory_error, file_error;
  bool memory_ok = false, file_ok = false;
  try {
    from_memory = limuon::io::parse_safetensors(data, size, "fuzz input");
    memory_ok = true;
  } catch (const std::runtime_error& e) {
    memory_error = e.what();
  }
  write_file(scratch_path(), data, size);
  try {
    from_file = limuon::io::read_safetensors(scratch_path());
    file_ok = true;
  } catch (const std::runtime_error& e) {
    file_error = e.what();
  }
  // Every rejection is documented to be a runtime_error with the "safetensors: <source>: " prefix.
  if (!memory_ok && memory_error.rfind("safetensors: fuzz input: ", 0) != 0)
    finding("unprefixed error", memory_error);
  if (!file_ok && file_error.rfind("safetensors: " + scratch_path() + ": ", 0) != 0)
    finding("unprefixed error", file_error);
  if (memory_ok != file_ok)
    finding("readers disagree", memory_ok ? "file reader failed: " + file_error : "memory reader failed: " + memory_error);
  memory_ok ? limuon_fuzz::accepted() : limuon_fuzz::rejected();
  if (memory_ok) {
    check_same(from_memory, from_file);
    // An accepted file holds no more tensor bytes than it has.
    size_t total = 0;
    for (const auto& [name, t] : from_memory.tensors) total += static_cast<size_t>(t.numel()) * t.element_size();
    if (total > size) finding("tensor bytes exceed the input", std::to_string(total));
  }
  return 0;
}
