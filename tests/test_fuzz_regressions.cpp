// Regression tests for what fuzzing the readers found (scripts/fuzz.sh, fuzz/fuzz_*.cpp), and the
// guarantee the fuzzers enforce with their allocation limit: a header that claims a huge size fails
// with an error naming the problem before anything of that size is allocated. Each test asserts
// the exception type and the words of its message, so a reader that stops checking fails here
// rather than crashing (or allocating gigabytes) in the field.
#include "limuon/data/images.h"
#include "limuon/data/text.h"
#include "limuon/io/safetensors.h"
#include "limuon/optim/limuon.h"
#include "limuon/optim/muon.h"
#include "limuon/optim/schedule.h"

#include "args.h"

#include <gtest/gtest.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/torch.h>
#include <zlib.h>

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using torch::serialize::InputArchive;
using torch::serialize::OutputArchive;

namespace {

// ---- helpers --------------------------------------------------------------------------------

struct ScratchDir {
  fs::path path;
  ScratchDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() / ("limuon_fuzzreg_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!bytes.empty()) ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}
std::string le32(uint32_t v) { return le64(v).substr(0, 4); }
std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// Runs f, which must throw E whose message contains every needle.
template <class E = std::runtime_error>
void expect_throw_with(const std::function<void()>& f, const std::vector<std::string>& needles, const std::string& label = "") {
  try {
    f();
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << label << ": '" << n << "' not in: " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << label << ": threw another exception type: " << e.what();
    return;
  }
  ADD_FAILURE() << label << ": did not throw";
}

// A safetensors file: the given header text behind its length prefix, then the data section.
std::string safetensors_file(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

// ---- archives -------------------------------------------------------------------------------

// Copies `in` into `out`, except the entries whose path (nested keys joined by '/') `replace`
// handles: it writes its own value there (or nothing, to drop the entry) and returns true.
using Replace = std::function<bool(const std::string& path, const std::string& key, OutputArchive& out)>;

void copy_archive(InputArchive& in, OutputArchive& out, const Replace& replace, const std::string& prefix = "") {
  for (const std::string& key : in.keys()) {
    const std::string path = prefix + key;
    if (replace(path, key, out)) continue;
    InputArchive sub;
    at::Tensor t;
    c10::IValue v;
    if (in.try_read(key, sub)) {
      OutputArchive o(out.compilation_unit());
      copy_archive(sub, o, replace, path + "/");
      out.write(key, o);
    } else if (in.try_read(key, t) || in.try_read(key, t, /*is_buffer=*/true)) {
      out.write(key, t);
    } else if (in.try_read(key, v)) {
      out.write(key, v);
    } else {
      FAIL() << "cannot copy archive entry " << path;
    }
  }
}

std::string archive_bytes(OutputArchive& a) {
  std::ostringstream os;
  a.save_to(os);
  return os.str();
}

// Saves with `save`, rewrites through `replace`, and hands the result to `load`.
void round_trip(const std::function<void(OutputArchive&)>& save, const Replace& replace,
                const std::function<void(InputArchive&)>& load) {
  OutputArchive original;
  save(original);
  const std::string bytes = archive_bytes(original);
  InputArchive in;
  in.load_from(bytes.data(), bytes.size());
  OutputArchive rewritten;
  copy_archive(in, rewritten, replace);
  const std::string out = archive_bytes(rewritten);
  InputArchive again;
  again.load_from(out.data(), out.size());
  load(again);
}

Replace replace_tensor(const std::string& target, const at::Tensor& value) {
  return [=](const std::string& path, const std::string& key, OutputArchive& out) {
    if (path != target) return false;
    out.write(key, value);
    return true;
  };
}

Replace replace_value(const std::string& target, const c10::IValue& value) {
  return [=](const std::string& path, const std::string& key, OutputArchive& out) {
    if (path != target) return false;
    out.write(key, value);
    return true;
  };
}

// A Muon with one 4×6 matrix that has taken a step (so it has state to save).
struct MuonFixture {
  at::Tensor w = torch::randn({4, 6}).set_requires_grad(true);
  limuon::Muon opt{std::vector<at::Tensor>{w}, limuon::MuonOptions(0.02)};
  MuonFixture() {
    torch::manual_seed(0);
    w.mutable_grad() = torch::randn({4, 6});
    opt.step();
  }
  void save(OutputArchive& a) const { opt.save(a); }
  // Loads an optimizer checkpoint into a fresh fixture's optimizer.
  static void load_fresh(InputArchive& a) {
    MuonFixture g;
    g.opt.load(a);
  }
};

}  // namespace

// ================================================================ safetensors

TEST(FuzzRegressionSafetensors, HugeHeaderLengthFailsBeforeAllocating) {
  ScratchDir dir;
  const std::string path = dir / "huge.safetensors";
  for (uint64_t claimed : {uint64_t{1} << 63, ~uint64_t{0}, uint64_t{99'999'999}}) {
    const std::string bytes = le64(claimed) + "{}";
    const std::string label = "header length " + std::to_string(claimed);
    expect_throw_with([&] {
      limuon::io::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem");
    }, {"safetensors: mem: ", "header length " + std::to_string(claimed), "larger than the file"}, label);
    write_file(path, bytes);
    expect_throw_with([&] { limuon::io::read_safetensors(path); },
                      {"safetensors: " + path + ": ", "header length " + std::to_string(claimed), "larger than the file"},
                      label);
  }
}

TEST(FuzzRegressionSafetensors, HugeShapeOrOffsetsFailBeforeAllocating) {
  ScratchDir dir;
  const std::string path = dir / "t.safetensors";
  struct Case {
    std::string name, header, needle;
  };
  const std::vector<Case> cases = {
      // 2^62 floats claimed, 8 bytes present.
      {"huge shape", R"({"w":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,8]}})", "size mismatch"},
      {"element count overflows", R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})",
       "overflows"},
      {"offsets past the data", R"({"w":{"dtype":"U8","shape":[1152921504606846976],"data_offsets":[0,1152921504606846976]}})",
       "out of range"},
  };
  for (const auto& c : cases) {
    const std::string bytes = safetensors_file(c.header, std::string(8, '\0'));
    expect_throw_with([&] {
      limuon::io::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem");
    }, {"tensor 'w'", c.needle}, c.name);
    write_file(path, bytes);
    expect_throw_with([&] { limuon::io::read_safetensors(path); }, {path, "tensor 'w'", c.needle}, c.name);
  }
}

// ================================================================ token shards

TEST(FuzzRegressionShard, HugeTokenCountFailsBeforeAllocating) {
  ScratchDir dir;
  const std::string path = dir / "shard.bin";
  auto header = [](int32_t count) {
    std::string h = le32(static_cast<uint32_t>(limuon::data::kShardMagic)) +
                    le32(static_cast<uint32_t>(limuon::data::kShardVersion)) + le32(static_cast<uint32_t>(count));
    h.resize(limuon::data::kShardHeaderBytes, '\0');
    return h;
  };
  // INT32_MAX tokens (4 GiB) claimed, two present.
  write_file(path, header(std::numeric_limits<int32_t>::max()) + std::string("\x01\x00\x02\x00", 4));
  expect_throw_with([&] { limuon::data::read_shard(path); }, {path, "truncated: 1028 bytes", "2147483647 tokens need 4294968318"});
  write_file(path, header(-5) + std::string("\x01\x00", 2));
  expect_throw_with([&] { limuon::data::read_shard(path); }, {path, "negative token count -5"});
  write_file(path, header(1) + std::string("\x01\x00\x02\x00", 4));
  expect_throw_with([&] { limuon::data::read_shard(path); }, {path, "oversized: 1028 bytes", "1 tokens need 1026"});
}

// ================================================================ IDX (Fashion-MNIST)

namespace {
std::string idx_images(uint32_t n, uint32_t rows, uint32_t cols, const std::string& pixels = "") {
  return be32(0x803) + be32(n) + be32(rows) + be32(cols) + pixels;
}
std::string idx_labels(uint32_t n, const std::string& labels = "") { return be32(0x801) + be32(n) + labels; }
}  // namespace

TEST(FuzzRegressionIdx, HugeClaimFailsBeforeAllocating) {
  ScratchDir dir;
  const std::string img = dir / "img", lab = dir / "lab";
  // 100 images of 1000×1000: exactly the 1e8-byte limit, so only the file size can refuse it.
  const uint32_t n = 100;
  // Plain files must hold every byte the header claims.
  write_file(img, idx_images(n, 1000, 1000, "abc"));
  write_file(lab, idx_labels(n, std::string(n, '\1')));
  expect_throw_with([&] { limuon::data::parse_idx_pair(img, lab); },
                    {"idx: " + img, "truncated", "pixel data of 100 images needs 100000000 bytes", "checked before reading"},
                    "plain images");
  // A gzip file can decompress to at most 1032 times its size; this one is a few dozen bytes.
  write_gzip(img, idx_images(n, 1000, 1000, "abc"));
  expect_throw_with([&] { limuon::data::parse_idx_pair(img, lab); },
                    {"idx: " + img, "corrupt header", "100000000 bytes", "can decompress to"}, "gzip images");
  // The label file is checked the same way.
  write_file(img, idx_images(3, 2, 2, std::string(12, '\0')));
  write_file(lab, idx_labels(3, "\1"));
  expect_throw_with([&] { limuon::data::parse_idx_pair(img, lab); },
                    {"idx: " + lab, "truncated", "label data of 3 labels needs 3 bytes", "checked before reading"},
                    "plain labels");
  // Past the fixed limit the header alone is refused.
  write_file(img, idx_images(0xFFFFFFFFu, 0xFFFFFFFFu, 2));
  expect_throw_with([&] { limuon::data::parse_idx_pair(img, lab); }, {"idx: " + img, "more than the limit"}, "limit");
  // A real (gzip) pair of the same shape still loads.
  write_gzip(img, idx_images(3, 2, 2, std::string(12, '\7')));
  write_gzip(lab, idx_labels(3, std::string("\1\2\3", 3)));
  EXPECT_EQ(limuon::data::parse_idx_pair(img, lab).images.sizes(), torch::IntArrayRef({3, 1, 2, 2}));
}

// ================================================================ CIFAR-10

TEST(FuzzRegressionCifar, HugeFileFailsBeforeAllocating) {
  ScratchDir dir;
  const std::string path = dir / "test_batch.bin";
  // A sparse file of whole records just past the 1 GB limit: its size alone must refuse it.
  constexpr off_t kRecord = 3073;
  const off_t huge = (1'000'000'000 / kRecord + 1) * kRecord;
  write_file(path, "");
  ASSERT_EQ(::truncate(path.c_str(), huge), 0);
  expect_throw_with([&] { limuon::data::load_cifar10(dir.path.string(), "test"); },
                    {"cifar10: " + path, "size " + std::to_string(huge), "exceeds the limit"});
  write_file(path, std::string(kRecord + 1, '\1'));
  expect_throw_with([&] { limuon::data::load_cifar10(dir.path.string(), "test"); },
                    {"cifar10: " + path, "not a multiple of the 3073-byte record"});
}

// ================================================================ optimizer checkpoints

// The 'shape/<i>' entry of an optimizer checkpoint is read as int64 values. Found by fuzz_checkpoint:
// an expanded tensor (stride 0) made the reader copy numel() elements from a one-element storage
// (heap overflow), and a float tensor threw a c10::Error rather than a checkpoint error.
TEST(FuzzRegressionCheckpoint, ShapeEntryMustBeOneDimensionalInt64) {
  const MuonFixture f;
  auto save = [&](OutputArchive& a) { f.save(a); };
  const auto load = &MuonFixture::load_fresh;
  const std::string entry = "group/0/shape/0";
  expect_throw_with([&] { round_trip(save, replace_tensor(entry, torch::tensor({4.0, 6.0})), load); },
                    {"optimizer checkpoint", "'shape/0'", "not a 1-D int64 tensor"}, "float");
  expect_throw_with([&] { round_trip(save, replace_tensor(entry, torch::tensor({{4, 6}}, torch::kLong)), load); },
                    {"optimizer checkpoint", "'shape/0'", "not a 1-D int64 tensor"}, "2-D");
  // Expanded: two elements over a storage of one; the values [4, 4] are not the shape [4, 6].
  expect_throw_with(
      [&] { round_trip(save, replace_tensor(entry, torch::tensor({4}, torch::kLong).expand({2})), load); },
      {"optimizer checkpoint", "has shape [4, 4] in the checkpoint but [4, 6]"}, "expanded");
  // Strided but correct: [4, 6] taken every other element from [4, 0, 6, 0] loads.
  EXPECT_NO_THROW(round_trip(save, replace_tensor(entry, torch::tensor({4, 0, 6, 0}, torch::kLong).slice(0, 0, 4, 2)), load));
}

// Found by fuzz_checkpoint: option values from a checkpoint were not validated. power_iters =
// 0x7ffff7991b14 made LiMuon's next step run power iterations for days (a timeout), and rank or
// oversample near 2^63 overflow rank + oversample.
TEST(FuzzRegressionCheckpoint, OptionsFromCheckpointAreValidated) {
  const MuonFixture f;
  auto save = [&](OutputArchive& a) { f.save(a); };
  const auto load = &MuonFixture::load_fresh;
  struct Case {
    std::string key;
    c10::IValue value;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"power_iters", c10::IValue(int64_t{0x7ffff7991b14}), "power_iters must be <= 100"},
      {"rank", c10::IValue(std::numeric_limits<int64_t>::max()), "rank must be <= 1048576"},
      {"oversample", c10::IValue(int64_t{-1}), "oversample must be >= 0"},
      {"lr", c10::IValue(std::numeric_limits<double>::quiet_NaN()), "lr must be in"},
  };
  for (const auto& c : cases)
    expect_throw_with([&] { round_trip(save, replace_value("group/0/options/" + c.key, c.value), load); },
                      {"optimizer checkpoint: group 0 has invalid options", c.needle}, c.key);
  // The constructors share the bounds.
  const std::vector<at::Tensor> params = {torch::zeros({4, 6}, torch::requires_grad())};
  expect_throw_with<std::invalid_argument>([&] { limuon::LiMuon(params, limuon::LiMuonOptions(0.02).power_iters(101)); },
                                           {"LiMuon: power_iters must be <= 100, got 101"});
  EXPECT_NO_THROW(limuon::LiMuon(params, limuon::LiMuonOptions(0.02).power_iters(100)));
}

// ================================================================ schedule checkpoints

TEST(FuzzRegressionSchedule, BaseLrsAndCountersAreChecked) {
  MuonFixture f;
  auto save = [&](OutputArchive& a) {
    limuon::WarmupCosine s({&f.opt}, 2, 10);
    s.step();
    s.save(a);
  };
  auto load = [&](InputArchive& a) {
    MuonFixture g;
    limuon::WarmupCosine s({&g.opt}, 2, 10);
    s.load(a);
  };
  // The same reader bug as 'shape/<i>': dtype, dimensions and strides of 'base_lrs'.
  expect_throw_with([&] { round_trip(save, replace_tensor("base_lrs", torch::tensor({0.02f})), load); },
                    {"WarmupCosine", "'base_lrs' is not a 1-D float64 tensor"}, "float32");
  expect_throw_with([&] { round_trip(save, replace_tensor("base_lrs", torch::tensor({{0.02}}, torch::kDouble)), load); },
                    {"WarmupCosine", "'base_lrs' is not a 1-D float64 tensor"}, "2-D");
  expect_throw_with(
      [&] { round_trip(save, replace_tensor("base_lrs", torch::tensor({0.02}, torch::kDouble).expand({3})), load); },
      {"WarmupCosine", "checkpoint has 3 parameter groups, schedule drives 1"}, "expanded");
  EXPECT_NO_THROW(round_trip(
      save, replace_tensor("base_lrs", torch::tensor({0.02, 9.0}, torch::kDouble).slice(0, 0, 1, 2)), load));
  expect_throw_with(
      [&] { round_trip(save, replace_tensor("base_lrs", torch::tensor({-1.0}, torch::kDouble)), load); },
      {"WarmupCosine", "'base_lrs' holds -1", "not a finite learning rate"}, "negative lr");
  // Counters that would overflow factor()'s arithmetic, or break the constructor's rules.
  const std::vector<std::pair<std::string, c10::IValue>> bad = {
      {"t", c10::IValue(std::numeric_limits<int64_t>::min())},
      {"t", c10::IValue(std::numeric_limits<int64_t>::max())},
      {"warmup", c10::IValue(int64_t{-1})},
      {"total", c10::IValue(int64_t{0})},
      {"min_ratio", c10::IValue(std::numeric_limits<double>::quiet_NaN())},
  };
  for (const auto& [key, value] : bad)
    expect_throw_with([&] { round_trip(save, replace_value(key, value), load); },
                      {"WarmupCosine: checkpoint entry '" + key + "'"}, key);
}

// ================================================================ config files

// Found by fuzz_config: an integer above INT64_MAX became its wrapped negative value, and a string
// value with an embedded NUL was read as the number before the NUL.
TEST(FuzzRegressionConfig, NumbersArriveExactlyAndNulIsRefused) {
  using limuon::cli::UsageError;
  const auto values = limuon::cli::parse_config_json(R"({"steps": 18446744073709551615, "seed": -9223372036854775808})", "c.json");
  EXPECT_EQ(values.at("steps"), "18446744073709551615");
  EXPECT_EQ(values.at("seed"), "-9223372036854775808");
  limuon::cli::Args args({}, {});
  args.add_defaults(values, "c.json");
  expect_throw_with<UsageError>([&] { args.integer("steps", 0, 0, std::numeric_limits<int64_t>::max()); },
                                {"'steps' in c.json", "expected an integer, got '18446744073709551615'"});
  EXPECT_EQ(args.integer("seed", 0, std::numeric_limits<int64_t>::min(), 0), std::numeric_limits<int64_t>::min());

  expect_throw_with<UsageError>([&] { limuon::cli::parse_config_json(R"({"steps": "12\u0000"})", "c.json"); },
                                {"'steps'", "'c.json'", "contains a NUL byte"});
  // The getters themselves read the whole value, whatever its origin.
  limuon::cli::Args direct({}, {});
  direct.add_defaults({{"steps", std::string("12\0", 3)}, {"lr", std::string("0.5\0x", 5)}}, "c.json");
  expect_throw_with<UsageError>([&] { direct.integer("steps", 0, 0, 100); }, {"expected an integer"});
  expect_throw_with<UsageError>([&] { direct.real("lr", 0, 0, 1); }, {"expected a finite number"});
}
