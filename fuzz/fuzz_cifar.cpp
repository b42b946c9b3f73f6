// libFuzzer target: the CIFAR-10 binary loader (load_cifar10) over a scratch directory.
// Input: [flags][for the train split: 4 LE16 lengths of data_batch_1..4][file bytes...]; the last
// file takes the rest. Flags: bit 0 train split (5 files) instead of test (test_batch.bin); bit 1
// put the files in a cifar-10-batches-bin/ subfolder (the archive's layout); bit 2 make the first
// file a directory; bit 3 leave the last file out.
#include "limuon/data/images.h"

#include "fuzz_stats.h"

#include <ATen/ATen.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr size_t kRecord = 3073;
const char* const kTrain[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                              "data_batch_5.bin"};
const char* const kTest[] = {"test_batch.bin"};

const std::string& root() {
  static const std::string r = "/dev/shm/limuon_fuzz_cifar_" + std::to_string(::getpid());
  return r;
}

using limuon_fuzz::write_file;

// Leaves root() (and its subfolder) empty of everything an earlier input may have created.
void clean() {
  for (const std::string& dir : {root(), root() + "/cifar-10-batches-bin"}) {
    for (const char* name : kTrain) {
      ::unlink((dir + "/" + name).c_str());
      ::rmdir((dir + "/" + name).c_str());
    }
    ::unlink((dir + "/" + kTest[0]).c_str());
    ::rmdir((dir + "/" + kTest[0]).c_str());
  }
  ::rmdir((root() + "/cifar-10-batches-bin").c_str());
  ::mkdir(root().c_str(), 0755);
}

[[noreturn]] void finding(const std::string& detail) { limuon_fuzz::report("fuzz_cifar", detail); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  ++data, --size;
  const bool train = flags & 1;
  const size_t files = train ? 5 : 1;
  std::vector<size_t> lens(files, 0);
  if (train) {
    if (size < 8) return 0;
    for (size_t i = 0; i < 4; ++i) lens[i] = data[2 * i] | (size_t{data[2 * i + 1]} << 8);
    data += 8, size -= 8;
  }
  std::vector<std::pair<const uint8_t*, size_t>> parts;
  size_t used = 0;
  for (size_t i = 0; i < files; ++i) {
    size_t n = i + 1 == files ? size - used : std::min(lens[i], size - used);
    parts.emplace_back(data + used, n);
    used += n;
  }

  clean();
  std::string dir = root();
  if (flags & 2) {
    dir += "/cifar-10-batches-bin";
    ::mkdir(dir.c_str(), 0755);
  }
  for (size_t i = 0; i < files; ++i) {
    const std::string path = dir + "/" + (train ? kTrain[i] : kTest[i]);
    if (i == 0 && (flags & 4)) {
      ::mkdir(path.c_str(), 0755);
      continue;
    }
    if (i + 1 == files && (flags & 8)) continue;
    write_file(path, parts[i].first, parts[i].second);
  }

  limuon::data::ImageDataset ds;
  try {
    ds = limuon::data::load_cifar10(root(), train ? "train" : "test");
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    if (msg.rfind("cifar10: ", 0) != 0) finding("error without the cifar10: prefix: " + msg);
    limuon_fuzz::rejected();
    return 0;
  }
  limuon_fuzz::accepted();
  // Accepted: every file is whole records, and each record landed where it belongs.
  int64_t at = 0;
  if (ds.images.dim() != 4 || ds.images.size(1) != 3 || ds.images.size(2) != 32 || ds.images.size(3) != 32)
    finding("bad image shape");
  const auto* img = ds.images.data_ptr<uint8_t>();
  const auto* lab = ds.labels.data_ptr<int64_t>();
  for (const auto& [p, n] : parts) {
    if (n == 0 || n % kRecord != 0) finding("accepted a file that is not whole records");
    for (size_t r = 0; r < n / kRecord; ++r, ++at) {
      if (at >= ds.size()) finding("fewer records than the files hold");
      if (lab[at] != p[r * kRecord] || lab[at] >= 10) finding("label misread");
      if (std::memcmp(img + at * 3072, p + r * kRecord + 1, 3072) != 0) finding("pixels misread");
    }
  }
  if (at != ds.size()) finding("more records than the files hold");
  return 0;
}
