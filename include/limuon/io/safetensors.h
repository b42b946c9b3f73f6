// Reading and writing the safetensors format (https://github.com/huggingface/safetensors), and
// the crash-safe file replacement (temp file + fsync + rename) that every writer here shares.
#pragma once

#include <ATen/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace limuon::io {

// Layout: 8-byte little-endian header size N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"k": "v"}}
// then the data section; offsets are relative to its start, data is little-endian and row-major.
// Supported dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL.
struct SafeTensors {
  std::vector<std::pair<std::string, at::Tensor>> tensors;  // in file order (sorted by data offset)
  std::map<std::string, std::string> metadata;

  // The tensor called `name`; throws std::out_of_range when there is none.
  const at::Tensor& at(const std::string& name) const;
};

// The largest JSON header accepted (the reference implementation uses the same bound).
constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

// Everything in the header is validated before any tensor is allocated; every problem is a
// std::runtime_error whose message starts with "safetensors: <file>: ".
SafeTensors read_safetensors(const std::string& path);
// Same, from memory; `what` names the source in error messages (a file name, "fuzz input", ...).
SafeTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& what);

// Writes atomically (see AtomicFileWriter). Tensors are copied to contiguous CPU memory; the
// header is padded with spaces to a multiple of 8 so the data section starts 8-byte aligned.
// Names must be unique, non-empty and not "__metadata__".
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Replaces `path` so that a reader (or a crash) sees either the old file or the complete new one:
// the bytes go to a temporary file in the same directory (so rename cannot cross file systems),
// which is fsync'ed, renamed over `path`, and the directory is fsync'ed so the rename is durable.
// If anything fails, the temporary file is removed and `path` is left as it was.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);  // creates the temporary file
  ~AtomicFileWriter();                                 // removes it unless commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t size);
  void commit();
  const std::string& temp_path() const { return temp_; }

 private:
  std::string path_, dir_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

void atomic_write_file(const std::string& path, const std::string& bytes);

}  // namespace limuon::io
