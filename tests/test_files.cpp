// File formats and image data: safetensors round trips, the hand-written reference file and corrupt
// inputs; atomic writes; IDX/CIFAR loaders on synthetic and real files; augmentation and batching.
#include "limuon/data/images.h"
#include "limuon/io/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

namespace fs = std::filesystem;
using limuon::data::ImageBatcher;
using limuon::data::ImageDataset;
using namespace limuon::io;

namespace {

// A fresh directory per test, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("limuon_files_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

// Runs fn, expects a std::runtime_error whose message contains every one of `needles`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles,
                  const std::string& context = "") {
  try {
    fn();
    ADD_FAILURE() << context << ": no exception";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << context << ": \"" << msg << "\" lacks \"" << n << "\"";
  } catch (const std::exception& e) {
    ADD_FAILURE() << context << ": not a runtime_error: " << e.what();
  }
}

// ---------------------------------------------------------------- safetensors helpers

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A file from a literal JSON header and data section.
std::string st_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

limuon::io::SafeTensors parse(const std::string& bytes, const std::string& what = "case") {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), what);
}

// The same bits, as an integer tensor of the same element size (bit-exact comparison, NaN payloads too).
torch::Tensor bits(const torch::Tensor& t) {
  switch (t.element_size()) {
    case 8: return t.contiguous().view(torch::kLong);
    case 4: return t.contiguous().view(torch::kInt);
    case 2: return t.contiguous().view(torch::kShort);
    default: return t.contiguous().view(torch::kByte);
  }
}

void expect_bit_equal(const torch::Tensor& a, const torch::Tensor& b, const std::string& name) {
  ASSERT_EQ(a.scalar_type(), b.scalar_type()) << name;
  ASSERT_EQ(a.sizes(), b.sizes()) << name;
  EXPECT_TRUE(torch::equal(bits(a), bits(b))) << name;
}

// Random bit patterns of every supported dtype (NaNs, infinities and subnormals included).
std::vector<std::pair<std::string, torch::Tensor>> every_dtype(int64_t seed) {
  torch::manual_seed(seed);
  auto raw = [](torch::ScalarType int_type, std::vector<int64_t> shape) {
    return torch::randint(-(int64_t{1} << 62), int64_t{1} << 62, shape, torch::kLong).to(int_type);
  };
  std::vector<std::pair<std::string, torch::Tensor>> t;
  t.emplace_back("f64", raw(torch::kLong, {3, 4}).view(torch::kDouble));
  t.emplace_back("f32", raw(torch::kInt, {5, 2, 3}).view(torch::kFloat));
  t.emplace_back("f16", raw(torch::kShort, {7}).view(torch::kHalf));
  t.emplace_back("bf16", raw(torch::kShort, {2, 9}).view(torch::kBFloat16));
  t.emplace_back("i64", raw(torch::kLong, {4}));
  t.emplace_back("i32", raw(torch::kInt, {2, 2}));
  t.emplace_back("i16", raw(torch::kShort, {3, 1, 2}));
  t.emplace_back("i8", raw(torch::kChar, {11}));
  t.emplace_back("u8", raw(torch::kByte, {4, 4}));
  t.emplace_back("bool", torch::randint(0, 2, {13}, torch::kLong).to(torch::kBool));
  t.emplace_back("scalar", torch::tensor(3.25, torch::kFloat).reshape({}));
  t.emplace_back("zero_elems", torch::empty({0, 5}, torch::kHalf));
  t.emplace_back("transposed", torch::arange(12, torch::kInt).reshape({3, 4}).t());  // non-contiguous
  return t;
}

}  // namespace

// ================================================================ safetensors

TEST(Safetensors, RoundTripIsBitExactForEveryDtype) {
  TempDir dir;
  const auto path = dir / "all.safetensors";
  const auto tensors = every_dtype(7);
  write_safetensors(path, tensors);
  const auto back = read_safetensors(path);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(back.tensors[i].first, tensors[i].first);  // file order = the order written
    expect_bit_equal(back.tensors[i].second, tensors[i].second.contiguous(), tensors[i].first);
    EXPECT_TRUE(back.tensors[i].second.is_contiguous());
  }
  EXPECT_TRUE(back.metadata.empty());
  // The in-memory parser gives the same result.
  const auto bytes = read_bytes(path);
  const auto mem = parse(bytes);
  ASSERT_EQ(mem.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) expect_bit_equal(mem.tensors[i].second, back.tensors[i].second, tensors[i].first);
  EXPECT_NO_THROW(back.at("bf16"));
  EXPECT_THROW(back.at("nope"), std::out_of_range);
}

TEST(Safetensors, MetadataRoundTrip) {
  TempDir dir;
  const auto path = dir / "meta.safetensors";
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"empty", ""}, {"unicode", "µ-ŝtep ✓"}, {"quotes", "a \"b\" \\ c\n"}};
  write_safetensors(path, {{"w", torch::ones({2})}}, meta);
  const auto back = read_safetensors(path);
  EXPECT_EQ(back.metadata, meta);
  // No metadata → no "__metadata__" key; and a file with tensors only round-trips too.
  write_safetensors(path, {}, {{"only", "metadata"}});
  const auto only = read_safetensors(path);
  EXPECT_TRUE(only.tensors.empty());
  EXPECT_EQ(only.metadata.at("only"), "metadata");
  write_safetensors(path, {{"w", torch::ones({2})}});
  EXPECT_EQ(read_bytes(path).find("__metadata__"), std::string::npos);
}

TEST(Safetensors, HeaderIsPaddedToEightBytes) {
  TempDir dir;
  for (int len = 1; len <= 9; ++len) {
    const auto path = dir / "pad.safetensors";
    write_safetensors(path, {{std::string(len, 'x'), torch::arange(3, torch::kByte)}});
    const auto bytes = read_bytes(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
    EXPECT_EQ(n % 8, 0u) << len;
    EXPECT_EQ(bytes.size(), 8 + n + 3) << len;
    EXPECT_EQ(bytes[8], '{');
    EXPECT_EQ(bytes.substr(8 + n), std::string("\x00\x01\x02", 3));
  }
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir;
  const auto path = dir / "bad.safetensors";
  expect_error([&] { write_safetensors(path, {{"a", torch::ones({1})}, {"a", torch::ones({1})}}); }, {path, "duplicate"});
  expect_error([&] { write_safetensors(path, {{"__metadata__", torch::ones({1})}}); }, {path, "invalid tensor name"});
  expect_error([&] { write_safetensors(path, {{"", torch::ones({1})}}); }, {path, "invalid tensor name"});
  expect_error([&] { write_safetensors(path, {{"c", torch::ones({2}, torch::kComplexFloat)}}); }, {path, "unsupported dtype"});
  expect_error([&] { write_safetensors(path, {{"u", torch::Tensor()}}); }, {path, "undefined"});
  expect_error([&] { write_safetensors(path, {{std::string("\xff\xfe"), torch::ones({1})}}); }, {path, "encode"});
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir.path));  // no temporary files left behind
}

namespace {

struct Expected {
  std::map<std::string, std::string> metadata;
  struct T {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::vector<std::string> values;
  };
  std::vector<T> tensors;
};

Expected load_expected(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("missing " + path + " (run tests/reference/make_safetensors_reference.py)");
  Expected e;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    std::string kind;
    is >> kind;
    if (kind == "metadata") {
      std::string key, value;
      is >> key;
      std::getline(is >> std::ws, value);
      e.metadata[key] = value;
    } else if (kind == "tensor") {
      Expected::T t;
      size_t ndim = 0;
      is >> t.name >> t.dtype >> ndim;
      t.shape.resize(ndim);
      for (auto& d : t.shape) is >> d;
      for (std::string v; is >> v;) t.values.push_back(v);
      e.tensors.push_back(t);
    } else {
      throw std::runtime_error("bad line in " + path + ": " + line);
    }
  }
  return e;
}

}  // namespace

TEST(Safetensors, ReadsTheHandWrittenReferenceFile) {
  const std::string ref = LIMUON_REFERENCE_DIR;
  const auto expected = load_expected(ref + "/sample_safetensors_expected.txt");
  const auto got = read_safetensors(ref + "/sample.safetensors");
  EXPECT_EQ(got.metadata, expected.metadata);
  const std::map<std::string, torch::ScalarType> dtypes = {
      {"F64", torch::kDouble}, {"F32", torch::kFloat}, {"F16", torch::kHalf}, {"BF16", torch::kBFloat16},
      {"I64", torch::kLong},   {"I32", torch::kInt},   {"I16", torch::kShort}, {"I8", torch::kChar},
      {"U8", torch::kByte},    {"BOOL", torch::kBool}};
  ASSERT_EQ(got.tensors.size(), expected.tensors.size());
  for (size_t i = 0; i < expected.tensors.size(); ++i) {
    const auto& want = expected.tensors[i];
    const auto& [name, t] = got.tensors[i];
    SCOPED_TRACE(want.name);
    EXPECT_EQ(name, want.name);  // ordered by data offset, not by the JSON key order
    EXPECT_EQ(t.scalar_type(), dtypes.at(want.dtype));
    EXPECT_EQ(t.sizes().vec(), want.shape);
    ASSERT_EQ(t.numel(), static_cast<int64_t>(want.values.size()));
    const bool is_float = want.dtype[0] == 'F' || want.dtype == "BF16";
    const auto flat = t.reshape({-1}).to(is_float ? torch::kDouble : torch::kLong);
    for (int64_t k = 0; k < t.numel(); ++k) {
      const std::string& v = want.values[k];
      if (is_float) {
        // Every value in the file converts to double exactly, so equality is bit equality.
        const double w = std::strtod(v.c_str(), nullptr);
        const double a = flat[k].item<double>();
        if (std::isnan(w)) {
          EXPECT_TRUE(std::isnan(a)) << k;
        } else {
          EXPECT_EQ(std::memcmp(&a, &w, sizeof a), 0) << k << ": " << a << " vs " << v;
        }
      } else {
        EXPECT_EQ(flat[k].item<int64_t>(), std::stoll(v)) << k;
      }
    }
  }
}

TEST(Safetensors, RejectsCorruptInputs) {
  const std::string f4 = std::string(16, '\0');  // room for 4 F32
  const auto one = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return "{\"t\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape + ", \"data_offsets\": " + offsets + "}}";
  };
  const std::string valid = st_file(one("F32", "[2, 2]", "[0, 16]"), f4);
  ASSERT_NO_THROW(parse(valid));

  struct Case {
    std::string name, bytes, needle;
  };
  const std::vector<Case> cases = {
      {"empty input", "", "truncated"},
      {"shorter than the length prefix", valid.substr(0, 5), "truncated"},
      {"truncated in the header", valid.substr(0, 20), "larger than the file"},
      {"truncated in the data", valid.substr(0, valid.size() - 1), "out of range"},
      {"header length larger than file", le64(1000) + "{}", "larger than the file"},
      {"header length 2^63", le64(uint64_t{1} << 63) + "{}", "header length 9223372036854775808"},
      {"header length 2^64-1", le64(~uint64_t{0}) + "{}", "larger than the file"},
      {"header length 0", le64(0), "too small"},
      {"invalid JSON", st_file("{\"t\": {\"dtype\": ", ""), "not valid JSON"},
      {"JSON with NUL padding", st_file(std::string("{}\0\0\0\0\0\0", 8), ""), "NUL byte"},
      {"JSON not an object", st_file("[1, 2, 3]", ""), "not a JSON object"},
      {"entry not an object", st_file("{\"t\": 5}", ""), "not a JSON object"},
      {"unknown dtype", st_file(one("F8_E4M3", "[4]", "[0, 4]"), f4.substr(0, 4)), "unknown dtype 'F8_E4M3'"},
      {"dtype not a string", st_file("{\"t\": {\"dtype\": 4, \"shape\": [], \"data_offsets\": [0, 4]}}", f4), "dtype"},
      {"missing shape", st_file("{\"t\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", f4), "shape"},
      {"negative shape", st_file(one("F32", "[-1, 4]", "[0, 16]"), f4), "negative"},
      {"fractional shape", st_file(one("F32", "[2.5]", "[0, 16]"), f4), "not an integer"},
      {"shape overflows", st_file(one("U8", "[4611686018427387904, 4611686018427387904]", "[0, 16]"), f4),
       "overflows"},
      {"zero dim with huge others", st_file(one("U8", "[0, 9223372036854775807, 4]", "[0, 0]"), ""), "overflows"},
      {"offsets out of range", st_file(one("F32", "[4]", "[0, 20]"), f4), "out of range"},
      {"offsets beyond 2^63", st_file(one("U8", "[1]", "[18446744073709551615, 18446744073709551615]"), f4),
       "out of range"},
      {"offsets reversed", st_file(one("F32", "[0]", "[8, 4]"), f4), "begin > end"},
      {"offsets negative", st_file(one("F32", "[1]", "[-4, 0]"), f4), "negative"},
      {"offsets not a pair", st_file(one("F32", "[1]", "[0, 4, 8]"), f4), "data_offsets"},
      {"shape/size mismatch", st_file(one("F32", "[3]", "[0, 16]"), f4), "size mismatch"},
      {"overlapping offsets",
       st_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
               " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
               f4),
       "overlap"},
      {"aliased offsets",
       st_file("{\"a\": {\"dtype\": \"I32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
               " \"b\": {\"dtype\": \"I16\", \"shape\": [2], \"data_offsets\": [4, 8]}}",
               f4),
       "overlap"},
      {"metadata not an object", st_file("{\"__metadata__\": [1]}", ""), "__metadata__"},
      {"metadata value not a string", st_file("{\"__metadata__\": {\"k\": 1}}", ""), "metadata value"},
      {"empty tensor name", st_file("{\"\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [0, 0]}}", ""),
       "empty name"},
      {"bool byte 2", st_file(one("BOOL", "[2]", "[0, 2]"), std::string("\x01\x02", 2)), "invalid BOOL byte 2"},
  };
  for (const auto& c : cases) expect_error([&] { parse(c.bytes, "fuzz-input"); }, {"fuzz-input", c.needle}, c.name);

  // A header length over the 100 MB limit fails before the header is touched (the buffer is small;
  // the claimed size lets the length pass the file-size check).
  const std::string big = le64(200'000'000) + "{}";
  expect_error([&] { parse_safetensors(reinterpret_cast<const uint8_t*>(big.data()), 300'000'000, "huge"); },
               {"huge", "exceeds the limit"}, "header over 100 MB");

  // Gaps between tensors and zero-sized tensors inside another's range are not errors.
  EXPECT_NO_THROW(parse(st_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]},"
                                " \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [10, 10]}}",
                                f4)));
}

TEST(Safetensors, FileErrorsNameTheFile) {
  TempDir dir;
  const auto missing = dir / "missing.safetensors";
  expect_error([&] { read_safetensors(missing); }, {missing, "cannot open"});
  expect_error([&] { read_safetensors(dir.path.string()); }, {dir.path.string(), "not a regular file"});

  const auto path = dir / "cut.safetensors";
  write_safetensors(path, {{"w", torch::randn({8, 8})}});
  const auto full = read_bytes(path);
  write_bytes(path, full.substr(0, full.size() - 10));
  expect_error([&] { read_safetensors(path); }, {path, "out of range"});
  write_bytes(path, full.substr(0, 6));
  expect_error([&] { read_safetensors(path); }, {path, "truncated"});
  write_bytes(path, le64(uint64_t{1} << 63) + "{}");
  expect_error([&] { read_safetensors(path); }, {path, "larger than the file"});
}

TEST(Safetensors, RandomCorruptionNeverCrashes) {
  // Mutated and truncated copies of a valid file either load or throw std::runtime_error.
  const auto src = every_dtype(3);
  TempDir dir;
  write_safetensors(dir / "src.safetensors", src);
  const auto valid = read_bytes(dir / "src.safetensors");
  std::mt19937_64 rng(12345);
  int loaded = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string b = valid;
    const int kind = iter % 3;
    if (kind == 0) {
      b.resize(rng() % b.size());
    } else {
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) {
        // Mostly hit the length prefix and the header, where the interesting parsing is.
        const size_t limit = (rng() % 4 == 0) ? b.size() : std::min<size_t>(b.size(), 8 + 600);
        b[rng() % limit] = kind == 1 ? static_cast<char>(rng()) : "0123456789-.,:[]{}\" e"[rng() % 21];
      }
    }
    try {
      parse(b, "mutant");
      ++loaded;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("mutant"), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(loaded, 0);
}

TEST(Safetensors, AtomicWriteKeepsTheOldFileOnFailure) {
  TempDir dir;
  const auto path = dir / "ckpt.safetensors";
  write_safetensors(path, {{"w", torch::arange(6, torch::kFloat)}}, {{"step", "1"}});
  const auto before = read_bytes(path);

  // A failure before any byte is written (unsupported dtype): the old file is untouched.
  EXPECT_THROW(write_safetensors(path, {{"w", torch::ones({2}, torch::kComplexDouble)}}), std::runtime_error);
  EXPECT_EQ(read_bytes(path), before);

  // A directory that does not exist: the error names the path and the directory.
  const auto nowhere = dir / "no_such_dir/ckpt.safetensors";
  expect_error([&] { write_safetensors(nowhere, {{"w", torch::ones({1})}}); },
               {nowhere, "no_such_dir", "No such file or directory"});
  expect_error([&] { atomic_write_file(nowhere, "x"); }, {nowhere, "temporary file"});

  // The rename itself fails (the target is a non-empty directory): the temp file is cleaned up.
  const auto target = dir / "occupied";
  fs::create_directories(target + "/inside");
  expect_error([&] { atomic_write_file(target, "new bytes"); }, {target, "rename"});
  EXPECT_TRUE(fs::is_directory(target + "/inside"));

  // Nothing but the original file and the directory is left in `dir`.
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path)) names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"ckpt.safetensors", "occupied"}));
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(read_safetensors(path).metadata.at("step"), "1");
}

TEST(Safetensors, AtomicWriteReplacesAndKeepsTheMode) {
  TempDir dir;
  const auto path = dir / "file.bin";
  atomic_write_file(path, "first");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  atomic_write_file(path, std::string("second\0with nul", 15));
  EXPECT_EQ(read_bytes(path), std::string("second\0with nul", 15));
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  // A relative path (no directory part) works too.
  const auto cwd = fs::current_path();
  fs::current_path(dir.path);
  atomic_write_file("relative.bin", "r");
  fs::current_path(cwd);
  EXPECT_EQ(read_bytes(dir / "relative.bin"), "r");
  expect_error([&] { atomic_write_file(dir.path.string() + "/", "x"); }, {"names no file"});
}

// ================================================================ IDX (Fashion-MNIST format)

namespace {

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!bytes.empty()) ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string idx_images(uint32_t n, uint32_t rows, uint32_t cols, const std::string& pixels) {
  return be32(0x803) + be32(n) + be32(rows) + be32(cols) + pixels;
}
std::string idx_labels(uint32_t n, const std::string& labels) { return be32(0x801) + be32(n) + labels; }

std::string pixel_ramp(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7) % 256);
  return s;
}

}  // namespace

TEST(Idx, LoadsSyntheticFiles) {
  TempDir dir;
  const auto img = dir / "img.gz", lab = dir / "lab.gz";
  write_gz(img, idx_images(5, 3, 4, pixel_ramp(60)));
  write_gz(lab, idx_labels(5, std::string("\x09\x00\x03\x01\x09", 5)));
  const auto ds = limuon::data::parse_idx_pair(img, lab);
  EXPECT_EQ(ds.images.sizes(), torch::IntArrayRef({5, 1, 3, 4}));
  EXPECT_EQ(ds.images.scalar_type(), torch::kByte);
  EXPECT_EQ(ds.labels.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(ds.labels, torch::tensor({9, 0, 3, 1, 9}, torch::kLong)));
  const auto flat = ds.images.reshape({-1});
  for (int64_t i = 0; i < 60; ++i) ASSERT_EQ(flat[i].item<int64_t>(), (i * 7) % 256) << i;
  EXPECT_EQ(ds.num_classes, 10);
  EXPECT_EQ(ds.mean, std::vector<double>{0.2860});
  EXPECT_EQ(ds.std, std::vector<double>{0.3530});
  EXPECT_EQ(ds.size(), 5);

  // Uncompressed IDX files load too (zlib passes them through).
  write_bytes(img, idx_images(2, 1, 1, "\x05\x06"));
  write_bytes(lab, idx_labels(2, std::string("\x00\x01", 2)));
  EXPECT_EQ(limuon::data::parse_idx_pair(img, lab).images.sizes(), torch::IntArrayRef({2, 1, 1, 1}));
}

TEST(Idx, RejectsCorruptFiles) {
  TempDir dir;
  const auto img = dir / "img.gz", lab = dir / "lab.gz";
  const std::string good_img = idx_images(4, 2, 2, pixel_ramp(16)), good_lab = idx_labels(4, std::string("\1\2\3\4", 4));
  auto load = [&] { limuon::data::parse_idx_pair(img, lab); };
  struct Case {
    std::string name, images, labels, bad_file, needle;
  };
  const std::vector<Case> cases = {
      {"bad image magic", be32(0x801) + good_img.substr(4), good_lab, img, "bad magic 0x00000801"},
      {"bad label magic", good_img, be32(0x803) + good_lab.substr(4), lab, "bad magic 0x00000803"},
      {"image header truncated", good_img.substr(0, 10), good_lab, img, "truncated"},
      {"label header truncated", good_img, good_lab.substr(0, 6), lab, "truncated"},
      {"pixels truncated", good_img.substr(0, good_img.size() - 1), good_lab, img, "truncated"},
      {"labels truncated", good_img, good_lab.substr(0, good_lab.size() - 1), lab, "truncated"},
      {"count mismatch", good_img, idx_labels(3, "\1\2\3"), lab, "count mismatch"},
      {"image trailing data", good_img + "x", good_lab, img, "trailing data"},
      {"label trailing data", good_img, good_lab + "x", lab, "trailing data"},
      {"label out of range", good_img, idx_labels(4, std::string("\1\2\x0a\4", 4)), lab, "label 10 at index 2"},
      {"huge count", idx_images(0xFFFFFFFFu, 28, 28, ""), good_lab, img, "limit"},
      {"huge image", idx_images(1, 0x10000, 0x10000, ""), good_lab, img, "limit"},
      {"zero rows", idx_images(4, 0, 2, ""), good_lab, img, "empty"},
      {"empty file", "", good_lab, img, "truncated"},
  };
  for (const auto& c : cases) {
    write_gz(img, c.images);
    write_gz(lab, c.labels);
    expect_error(load, {c.bad_file, c.needle}, c.name);
  }

  // Damaged gzip streams: cut short, and a flipped byte in the compressed data (CRC/inflate error).
  write_gz(img, idx_images(50, 8, 8, pixel_ramp(3200)));
  write_gz(lab, idx_labels(50, std::string(50, '\1')));
  ASSERT_NO_THROW(load());
  const auto gz = read_bytes(img);
  write_bytes(img, gz.substr(0, gz.size() / 2));
  expect_error(load, {img, "truncated"}, "gzip cut short");
  for (size_t pos : {gz.size() / 2, gz.size() - 6}) {
    std::string bad = gz;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x55);
    write_bytes(img, bad);
    expect_error(load, {img}, "gzip byte flipped at " + std::to_string(pos));
  }

  expect_error([&] { limuon::data::parse_idx_pair(dir / "none.gz", lab); }, {dir / "none.gz", "cannot open"});
  EXPECT_THROW(limuon::data::load_fashion_mnist(dir.path.string(), "validation"), std::invalid_argument);
  expect_error([&] { limuon::data::load_fashion_mnist(dir.path.string(), "train"); },
               {dir / "train-images-idx3-ubyte.gz", "cannot open"});
}

TEST(Idx, LoadsRealFashionMnist) {
  const std::string dir = limuon::data::kFashionMnistDir;
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz")) GTEST_SKIP() << "Fashion-MNIST not installed in " << dir;
  const auto train = limuon::data::load_fashion_mnist(dir, "train");
  EXPECT_EQ(train.images.sizes(), torch::IntArrayRef({60000, 1, 28, 28}));
  EXPECT_EQ(train.labels.sizes(), torch::IntArrayRef({60000}));
  EXPECT_EQ(train.labels.min().item<int64_t>(), 0);
  EXPECT_EQ(train.labels.max().item<int64_t>(), 9);
  EXPECT_EQ(train.labels[0].item<int64_t>(), 9);  // the first training image is an ankle boot
  EXPECT_TRUE(torch::equal(torch::bincount(train.labels), torch::full({10}, 6000, torch::kLong)));
  // Exact pixel sum (computed independently with Python's gzip + numpy), and the published mean/std.
  EXPECT_EQ(train.images.sum(torch::kLong).item<int64_t>(), 3431114169LL);
  const auto x = train.images.to(torch::kDouble).div(255.0);
  EXPECT_NEAR(x.mean().item<double>(), 0.2860, 5e-4);
  EXPECT_NEAR(x.std(/*unbiased=*/false).item<double>(), 0.3530, 5e-4);
  EXPECT_NEAR(train.images.to(torch::kDouble).mean().item<double>(), 0.2860 * 255, 0.2);

  const auto test = limuon::data::load_fashion_mnist("", "test");  // "" = the default directory
  EXPECT_EQ(test.images.sizes(), torch::IntArrayRef({10000, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(torch::bincount(test.labels), torch::full({10}, 1000, torch::kLong)));
  EXPECT_EQ(test.images.sum(torch::kLong).item<int64_t>(), 573469082LL);
}

// ================================================================ CIFAR-10 (binary version)

namespace {

// Record r of file f: label (f + r) % 10, pixel k = (f * 31 + r * 17 + k) % 256.
std::string cifar_records(int f, int n, int label_override = -1) {
  std::string s;
  for (int r = 0; r < n; ++r) {
    s.push_back(static_cast<char>(label_override >= 0 ? label_override : (f + r) % 10));
    for (int k = 0; k < 3072; ++k) s.push_back(static_cast<char>((f * 31 + r * 17 + k) % 256));
  }
  return s;
}

const char* kCifarTrain[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                             "data_batch_5.bin"};

}  // namespace

TEST(Cifar, LoadsSyntheticBatches) {
  TempDir dir;
  const std::string root = dir / "cifar-10-batches-bin";
  fs::create_directories(root);
  const int counts[] = {2, 3, 1, 2, 2};
  for (int f = 0; f < 5; ++f) write_bytes(root + "/" + kCifarTrain[f], cifar_records(f, counts[f]));
  write_bytes(root + "/test_batch.bin", cifar_records(7, 4));

  // Both the batches folder and its parent work.
  for (const std::string& d : {root, dir.path.string()}) {
    const auto train = limuon::data::load_cifar10(d, "train");
    ASSERT_EQ(train.images.sizes(), torch::IntArrayRef({10, 3, 32, 32}));
    int64_t i = 0;
    for (int f = 0; f < 5; ++f)
      for (int r = 0; r < counts[f]; ++r, ++i) {
        EXPECT_EQ(train.labels[i].item<int64_t>(), (f + r) % 10);
        // Channel c, row y, column x is pixel byte c*1024 + y*32 + x of the record.
        for (auto [c, y, x] : {std::array<int, 3>{0, 0, 0}, {0, 5, 7}, {1, 31, 0}, {2, 17, 30}, {2, 31, 31}})
          EXPECT_EQ(train.images[i][c][y][x].item<int64_t>(), (f * 31 + r * 17 + c * 1024 + y * 32 + x) % 256);
      }
    EXPECT_EQ(train.mean, (std::vector<double>{0.4914, 0.4822, 0.4465}));
    EXPECT_EQ(train.std, (std::vector<double>{0.2470, 0.2435, 0.2616}));
  }
  const auto test = limuon::data::load_cifar10(root, "test");
  EXPECT_EQ(test.images.size(0), 4);
  EXPECT_EQ(test.labels[3].item<int64_t>(), (7 + 3) % 10);
  EXPECT_THROW(limuon::data::load_cifar10(root, "valid"), std::invalid_argument);
}

TEST(Cifar, RejectsCorruptFiles) {
  TempDir dir;
  const std::string root = dir.path.string();
  const auto test = dir / "test_batch.bin";
  auto load = [&] { limuon::data::load_cifar10(root, "test"); };
  expect_error(load, {test, "cannot open"}, "missing");
  write_bytes(test, "");
  expect_error(load, {test, "empty"}, "empty");
  write_bytes(test, cifar_records(0, 2).substr(0, 3073 * 2 - 1));
  expect_error(load, {test, "not a multiple of the 3073-byte record"}, "size");
  write_bytes(test, cifar_records(0, 2) + "x");
  expect_error(load, {test, "not a multiple"}, "trailing byte");
  write_bytes(test, cifar_records(0, 1) + cifar_records(0, 1, 10));
  expect_error(load, {test, "record 1 has label 10"}, "label");
  write_bytes(test, cifar_records(0, 1, 255));
  expect_error(load, {test, "label 255"}, "label 255");

  // One missing training batch is named.
  for (int f = 0; f < 5; ++f)
    if (f != 2) write_bytes(dir / kCifarTrain[f], cifar_records(f, 1));
  expect_error([&] { limuon::data::load_cifar10(root, "train"); }, {"data_batch_3.bin", "cannot open"}, "missing batch");
}

// ================================================================ normalisation

TEST(Images, NormalizeUsesPerChannelStatistics) {
  auto x = torch::randint(0, 256, {4, 3, 5, 6}, torch::kLong).to(torch::kByte);
  const std::vector<double> mean = {0.4914, 0.4822, 0.4465}, std = {0.2470, 0.2435, 0.2616};
  const auto y = limuon::data::normalize(x, mean, std);
  EXPECT_EQ(y.scalar_type(), torch::kFloat);
  EXPECT_EQ(y.sizes(), x.sizes());
  for (int c = 0; c < 3; ++c) {
    const auto want = (x.select(1, c).to(torch::kDouble) / 255.0 - mean[c]) / std[c];
    EXPECT_TRUE(torch::allclose(y.select(1, c).to(torch::kDouble), want, 1e-5, 1e-5)) << c;
  }
  EXPECT_THROW(limuon::data::normalize(x, {0.5}, {0.5}), std::invalid_argument);
  EXPECT_THROW(limuon::data::normalize(x.to(torch::kFloat), mean, std), std::invalid_argument);
  EXPECT_THROW(limuon::data::normalize(x, mean, {0.2, 0.0, 0.3}), std::invalid_argument);
  EXPECT_THROW(limuon::data::normalize(x[0], mean, std), std::invalid_argument);
}

// ================================================================ augmentation

namespace {

// Image shifted by (oy, ox) with zero fill: out[y][x] = in[y + oy][x + ox].
torch::Tensor shifted(const torch::Tensor& img, int64_t oy, int64_t ox) {
  const int64_t H = img.size(-2), W = img.size(-1);
  auto out = torch::zeros_like(img);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const int64_t sy = y + oy, sx = x + ox;
      if (sy >= 0 && sy < H && sx >= 0 && sx < W) out.select(-2, y).select(-1, x).copy_(img.select(-2, sy).select(-1, sx));
    }
  return out;
}

}  // namespace

TEST(Augment, IsDeterministicGivenTheSeed) {
  torch::manual_seed(1);
  const auto x = torch::randn({16, 3, 8, 8});
  const auto x_copy = x.clone();
  const auto a = limuon::data::augment(x, 2, true, 42);
  const auto b = limuon::data::augment(x, 2, true, 42);
  const auto c = limuon::data::augment(x, 2, true, 43);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_TRUE(torch::equal(x, x_copy));  // the input is not modified
  // Image n's augmentation depends on (seed, n) only, not on the batch size or LibTorch's RNG.
  torch::manual_seed(999);
  EXPECT_TRUE(torch::equal(limuon::data::augment(x.narrow(0, 0, 5), 2, true, 42), a.narrow(0, 0, 5)));
  // Identity when neither crop nor flip is asked for; dtype is kept.
  EXPECT_TRUE(torch::equal(limuon::data::augment(x, 0, false, 5), x));
  const auto d = limuon::data::augment(x.to(torch::kDouble), 2, true, 42);
  EXPECT_EQ(d.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::equal(d.to(torch::kFloat), a));
  EXPECT_THROW(limuon::data::augment(x, -1, true, 0), std::invalid_argument);
  EXPECT_THROW(limuon::data::augment(x.to(torch::kByte), 1, true, 0), std::invalid_argument);
  EXPECT_THROW(limuon::data::augment(x[0], 1, true, 0), std::invalid_argument);
}

TEST(Augment, FlipReallyFlips) {
  const auto x = torch::arange(64 * 2 * 3 * 5, torch::kFloat).reshape({64, 2, 3, 5});
  const auto y = limuon::data::augment(x, 0, true, 7);
  int flipped = 0, kept = 0;
  for (int64_t n = 0; n < 64; ++n) {
    if (torch::equal(y[n], x[n])) {
      ++kept;
    } else {
      ASSERT_TRUE(torch::equal(y[n], x[n].flip({-1}))) << n;  // every channel flipped together
      ++flipped;
    }
  }
  EXPECT_GT(flipped, 16);
  EXPECT_GT(kept, 16);
}

TEST(Augment, CropShiftsWithZeroPadding) {
  const int64_t pad = 2;
  const auto x = torch::arange(200 * 1 * 6 * 7, torch::kFloat).reshape({200, 1, 6, 7}) + 1;  // no zeros inside
  const auto y = limuon::data::augment(x, pad, false, 11);
  std::set<std::pair<int64_t, int64_t>> seen;
  for (int64_t n = 0; n < 200; ++n) {
    bool found = false;
    for (int64_t oy = -pad; oy <= pad && !found; ++oy)
      for (int64_t ox = -pad; ox <= pad && !found; ++ox)
        if (torch::equal(y[n], shifted(x[n], oy, ox))) {
          found = true;
          seen.insert({oy, ox});
        }
    ASSERT_TRUE(found) << "image " << n << " is not a padded crop of its input";
  }
  EXPECT_EQ(seen.size(), 25u);  // every shift in [-2, 2]² occurs in 200 draws
  // Crop + flip: each output is a shifted copy of the mirrored image.
  const auto z = limuon::data::augment(x, pad, true, 11);
  for (int64_t n = 0; n < 20; ++n) {
    bool found = false;
    for (int64_t oy = -pad; oy <= pad; ++oy)
      for (int64_t ox = -pad; ox <= pad; ++ox)
        found = found || torch::equal(z[n], shifted(x[n], oy, ox)) || torch::equal(z[n], shifted(x[n], oy, ox).flip({-1}));
    EXPECT_TRUE(found) << n;
  }
}

// ================================================================ batching

namespace {

// Sample i: every pixel = i % 256, label = i (labels are not range-checked by the batcher).
ImageDataset numbered(int64_t n) {
  ImageDataset ds;
  ds.labels = torch::arange(n, torch::kLong);
  ds.images = (ds.labels % 256).to(torch::kByte).view({n, 1, 1, 1}).expand({n, 1, 2, 2}).contiguous();
  return ds;
}

std::vector<int64_t> ids(const torch::Tensor& labels) {
  const auto c = labels.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

TEST(Batcher, EverySampleOncePerEpoch) {
  const auto ds = numbered(23);
  ImageBatcher keep(&ds, 5, 3, /*drop_last=*/false);
  EXPECT_EQ(keep.batches_per_epoch(), 5);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> all;
    for (int b = 0; b < 5; ++b) {
      EXPECT_EQ(keep.epoch(), epoch);
      auto [img, lab] = keep.next();
      EXPECT_EQ(lab.size(0), b < 4 ? 5 : 3);
      EXPECT_EQ(img.sizes(), torch::IntArrayRef({lab.size(0), 1, 2, 2}));
      EXPECT_EQ(img.scalar_type(), torch::kByte);
      EXPECT_TRUE(torch::equal(img.select(3, 1).select(2, 0).select(1, 0).to(torch::kLong), lab % 256));  // aligned
      const auto v = ids(lab);
      all.insert(all.end(), v.begin(), v.end());
    }
    std::sort(all.begin(), all.end());
    std::vector<int64_t> want(23);
    std::iota(want.begin(), want.end(), 0);
    EXPECT_EQ(all, want) << "epoch " << epoch;
  }

  ImageBatcher drop(&ds, 5, 3, /*drop_last=*/true);
  EXPECT_EQ(drop.batches_per_epoch(), 4);
  std::set<int64_t> distinct;
  std::vector<int64_t> first_epoch;
  for (int b = 0; b < 4; ++b) {
    const auto v = ids(drop.next().second);
    EXPECT_EQ(v.size(), 5u);
    distinct.insert(v.begin(), v.end());
    first_epoch.insert(first_epoch.end(), v.begin(), v.end());
  }
  EXPECT_EQ(distinct.size(), 20u);
  EXPECT_EQ(drop.epoch(), 1);  // moves on as soon as an epoch is used up
  EXPECT_EQ(drop.index(), 0);
  // Each epoch has its own order; the same seed gives the same order as the other batcher.
  EXPECT_FALSE(torch::equal(drop.permutation(0), drop.permutation(1)));
  EXPECT_TRUE(torch::equal(drop.permutation(2), keep.permutation(2)));
  EXPECT_EQ(first_epoch, ids(drop.permutation(0).narrow(0, 0, 20)));
}

TEST(Batcher, IsDeterministicAndRestoresItsPosition) {
  const auto ds = numbered(50);
  ImageBatcher a(&ds, 8, 99), b(&ds, 8, 99), other(&ds, 8, 100);
  std::vector<std::vector<int64_t>> seq;
  std::vector<int64_t> epochs;
  bool differs = false;
  for (int i = 0; i < 20; ++i) {
    seq.push_back(ids(a.next().second));
    epochs.push_back(a.epoch());
    EXPECT_EQ(ids(b.next().second), seq.back());
    differs = differs || ids(other.next().second) != seq.back();
  }
  EXPECT_TRUE(differs);

  // Checkpoint after 9 batches (epoch 1, sample 24 with 6 batches per epoch), resume in a new batcher.
  ImageBatcher run(&ds, 8, 99);
  for (int i = 0; i < 9; ++i) run.next();
  EXPECT_EQ(run.epoch(), 1);
  EXPECT_EQ(run.index(), 24);
  ImageBatcher resumed(&ds, 8, 99);
  resumed.set_position(run.epoch(), run.index());
  for (int i = 9; i < 20; ++i) {
    EXPECT_EQ(ids(resumed.next().second), seq[i]) << i;
    EXPECT_EQ(resumed.epoch(), epochs[i]);
  }
  // A position at the end of an epoch's usable samples is the start of the next epoch.
  resumed.set_position(2, 49);
  EXPECT_EQ(resumed.epoch(), 3);
  EXPECT_EQ(resumed.index(), 0);

  EXPECT_THROW(resumed.set_position(-1, 0), std::invalid_argument);
  EXPECT_THROW(resumed.set_position(0, 51), std::invalid_argument);
  EXPECT_THROW(ImageBatcher(&ds, 0, 1), std::invalid_argument);
  EXPECT_THROW(ImageBatcher(&ds, 51, 1, true), std::invalid_argument);
  EXPECT_NO_THROW(ImageBatcher(&ds, 51, 1, false));
  EXPECT_THROW(ImageBatcher(nullptr, 4, 1), std::invalid_argument);
}
