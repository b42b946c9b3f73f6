// limuon's safetensors reader on files written by the `safetensors` Python library itself
// (reference/safetensors_py/, from reference/make_safetensors_py.py): every tensor's dtype, shape
// and exact bits, and the metadata; then the same tensors through limuon's writer and back.
// The other direction (the library reading files limuon writes) is python/tests/test_interop_safetensors.py.
#include "limuon/io/safetensors.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace fs = std::filesystem;
using limuon::io::read_safetensors;
using limuon::io::write_safetensors;

namespace {

const std::string kDir = std::string(LIMUON_REFERENCE_DIR) + "/safetensors_py";

nlohmann::json expected() {
  std::ifstream in(kDir + "/expected.json");
  EXPECT_TRUE(in) << kDir << "/expected.json";
  return nlohmann::json::parse(in);
}

// The little-endian integer view of each element, as expected.json lists it.
std::vector<int64_t> bits(const at::Tensor& t) {
  at::Tensor flat = t.contiguous().reshape({-1});
  at::Tensor view;
  int64_t wrap = 0;
  switch (t.scalar_type()) {
    case at::kFloat: view = flat.view(at::kInt), wrap = int64_t{1} << 32; break;
    case at::kHalf:
    case at::kBFloat16: view = flat.view(at::kShort), wrap = int64_t{1} << 16; break;
    case at::kLong: view = flat; break;
    default: ADD_FAILURE() << "unexpected dtype " << t.scalar_type(); return {};
  }
  std::vector<int64_t> out;
  auto v = view.to(at::kLong);
  for (int64_t i = 0; i < v.numel(); ++i) {
    const int64_t x = v[i].item<int64_t>();
    out.push_back(x < 0 && wrap ? x + wrap : x);
  }
  return out;
}

void expect_matches(const limuon::io::SafeTensors& got, const nlohmann::json& want) {
  std::map<std::string, std::string> meta = want.at("metadata").get<std::map<std::string, std::string>>();
  EXPECT_EQ(got.metadata, meta);
  const std::map<std::string, at::ScalarType> dtypes = {
      {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16}, {"I64", at::kLong}};
  ASSERT_EQ(got.tensors.size(), want.at("tensors").size());
  for (const auto& [name, w] : want.at("tensors").items()) {
    SCOPED_TRACE(name);
    const at::Tensor& t = got.at(name);
    EXPECT_EQ(t.scalar_type(), dtypes.at(w.at("dtype").get<std::string>()));
    EXPECT_EQ(t.sizes().vec(), w.at("shape").get<std::vector<int64_t>>());
    EXPECT_EQ(bits(t), w.at("bits").get<std::vector<int64_t>>());
  }
}

}  // namespace

TEST(SafetensorsInterop, ReadsFilesTheSafetensorsLibraryWrote) {
  const auto want = expected();
  ASSERT_EQ(want.size(), 2u);
  for (const auto& [file, w] : want.items()) {
    SCOPED_TRACE(file);
    expect_matches(read_safetensors(kDir + "/" + file), w);
  }
}

TEST(SafetensorsInterop, LibraryFilesRoundTripThroughOurWriter) {
  const fs::path tmp = fs::temp_directory_path() / ("limuon_st_interop_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  const auto want = expected();
  for (const auto& [file, w] : want.items()) {
    SCOPED_TRACE(file);
    const auto original = read_safetensors(kDir + "/" + file);
    const std::string copy = (tmp / file).string();
    write_safetensors(copy, original.tensors, original.metadata);
    expect_matches(read_safetensors(copy), w);
  }
  fs::remove_all(tmp);
}
