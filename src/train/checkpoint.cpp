// Checkpoint directory management (see checkpoint.h).
#include "limuon/train/checkpoint.h"

#include "limuon/io/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace fs = std::filesystem;

namespace limuon::train {

namespace {
bool parse_step(const std::string& name, int64_t& step) {
  // ckpt_00000042.pt
  if (name.size() != 16 || name.rfind("ckpt_", 0) != 0 || name.compare(13, 3, ".pt") != 0) return false;
  step = 0;
  for (size_t i = 5; i < 13; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    step = step * 10 + (name[i] - '0');
  }
  return true;
}
}  // namespace

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "ckpt_%08lld.pt", static_cast<long long>(step));
  return (fs::path(dir) / buf).string();
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    int64_t step = 0;
    if (e.is_regular_file() && parse_step(e.path().filename().string(), step)) found.emplace_back(step, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::string write_checkpoint(const std::string& dir, int64_t step, const std::string& bytes, int keep) {
  if (keep < 1) throw std::invalid_argument("--keep must be >= 1, got " + std::to_string(keep));
  const std::string path = checkpoint_path(dir, step);
  io::atomic_write_file(path, bytes);
  auto all = list_checkpoints(dir);
  // Remove the oldest only after the new file is durable, so a crash never leaves fewer than
  // `keep` good checkpoints behind.
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);
  }
  return path;
}

std::string load_latest_checkpoint(const std::string& dir, const std::function<void(const std::string&)>& load,
                                   const std::function<void(const std::string&)>& warn) {
  auto all = list_checkpoints(dir);
  std::string last_error;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      load(*it);
      return *it;
    } catch (const std::invalid_argument&) {
      throw;
    } catch (const std::exception& e) {
      last_error = std::string(e.what());
      warn("checkpoint " + *it + " could not be loaded (" + last_error.substr(0, 300) + "); trying the previous one");
    }
  }
  if (!all.empty()) throw std::runtime_error("no checkpoint in " + dir + " could be loaded; last error: " + last_error);
  return "";
}

}  // namespace limuon::train
