// libFuzzer target: the IDX pair reader (parse_idx_pair) behind the Fashion-MNIST loader.
// Input: [flags][image part length, 2 bytes LE][image part][label part]. Flag bit 0 (1) gzips the
// image part and bit 1 the label part before writing, so that well-formed compressed streams reach
// the parser; unset, the bytes are written as they are (zlib then reads them plainly, or as gzip
// when they start with its magic, which lets the fuzzer corrupt compressed streams too).
#include "limuon/data/images.h"

#include "fuzz_stats.h"

#include <ATen/ATen.h>
#include <zlib.h>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace {

const std::string& scratch(const char* which) {
  static const std::string images = "/dev/shm/limuon_fuzz_idx_" + std::to_string(::getpid()) + "_images";
  static const std::string labels = "/dev/shm/limuon_fuzz_idx_" + std::to_string(::getpid()) + "_labels";
  return which[0] == 'i' ? images : labels;
}

void write_file(const std::string& path, const uint8_t* data, size_t size, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb1");
    if (!f) std::abort();
    if (size && gzwrite(f, data, static_cast<unsigned>(size)) != static_cast<int>(size)) std::abort();
    if (gzclose(f) != Z_OK) std::abort();
    return;
  }
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

[[noreturn]] void finding(const std::string& detail) { limuon_fuzz::report("fuzz_idx", detail); }

bool plain(const uint8_t* p, size_t n, bool gzipped_by_us) {
  return gzipped_by_us || n < 2 || !(p[0] == 0x1f && p[1] == 0x8b);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint8_t flags = data[0];
  size_t image_len = data[1] | (size_t{data[2]} << 8);
  data += 3;
  size -= 3;
  if (image_len > size) image_len = size;
  const uint8_t* images = data;
  const uint8_t* labels = data + image_len;
  const size_t label_len = size - image_len;
  write_file(scratch("images"), images, image_len, flags & 1);
  write_file(scratch("labels"), labels, label_len, flags & 2);

  limuon::data::ImageDataset ds;
  try {
    ds = limuon::data::parse_idx_pair(scratch("images"), scratch("labels"));
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    if (msg.rfind("idx: ", 0) != 0) finding("error without the idx: prefix: " + msg);
    limuon_fuzz::rejected();
    return 0;
  }
  limuon_fuzz::accepted();
  // Accepted: shapes, labels and (for plain data) every pixel must be what the bytes say.
  if (ds.images.dim() != 4 || ds.images.size(1) != 1 || ds.images.scalar_type() != at::kByte)
    finding("bad image tensor");
  const int64_t n = ds.images.size(0);
  if (ds.labels.dim() != 1 || ds.labels.size(0) != n) finding("label count differs from image count");
  if (ds.mean.size() != 1 || ds.std.size() != 1) finding("expected one channel of statistics");
  const auto* lab = ds.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    if (lab[i] < 0 || lab[i] >= 10) finding("label out of range accepted");
  const size_t pixels = static_cast<size_t>(ds.images.numel());
  if (plain(images, image_len, flags & 1)) {
    if (image_len != 16 + pixels) finding("accepted images with trailing or missing bytes");
    if (pixels && std::memcmp(ds.images.data_ptr<uint8_t>(), images + 16, pixels) != 0) finding("pixels misread");
  }
  if (plain(labels, label_len, flags & 2)) {
    if (label_len != 8 + static_cast<size_t>(n)) finding("accepted labels with trailing or missing bytes");
    for (int64_t i = 0; i < n; ++i)
      if (lab[i] != labels[8 + i]) finding("label misread");
  }
  return 0;
}
