// Token shards in llm.c's binary format (atomic writes, size-validated reads) and the samplers
// that cut training windows and evaluation batches out of a token stream.
#include "limuon/data/text.h"
#include "limuon/optim/common.h"

#include <ATen/ATen.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace limuon::data {
namespace {

// The host's byte order decides whether shard words need swapping (the format is little-endian).
bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

std::string errno_text() { return std::strerror(errno); }

// Closes a descriptor on every exit path.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

void write_all(int fd, const unsigned char* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("write_shard '" + path + "': write failed (" + errno_text() + ")");
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void read_all(int fd, unsigned char* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("read_shard '" + path + "': read failed (" + errno_text() + ")");
    }
    if (r == 0) throw std::runtime_error("read_shard '" + path + "': file shrank while being read");
    p += r;
    n -= static_cast<size_t>(r);
  }
}

void put_le32(unsigned char* p, int32_t v) {
  const auto u = static_cast<uint32_t>(v);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(u >> (8 * i));
}

int32_t get_le32(const unsigned char* p) {
  uint32_t u = 0;
  for (int i = 0; i < 4; ++i) u |= static_cast<uint32_t>(p[i]) << (8 * i);
  return static_cast<int32_t>(u);
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

void write_shard(const std::string& path, const std::vector<uint16_t>& tokens) {
  if (tokens.size() > static_cast<size_t>(INT32_MAX))
    throw std::invalid_argument("write_shard '" + path + "': " + std::to_string(tokens.size()) +
                                " tokens do not fit the header's int32 count");
  // A temporary in the same directory makes the final rename atomic: readers see the old file or
  // the complete new one, never a partial shard (a crash leaves at most a stray *.tmp.* file).
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) throw std::runtime_error("write_shard '" + path + "': cannot create a temporary file (" + errno_text() + ")");
  try {
    Fd guard(fd);
    ::fchmod(fd, 0644);  // mkstemp's 0600 would hide shared caches from other users
    unsigned char header[kShardHeaderBytes] = {};
    put_le32(header + 0, kShardMagic);
    put_le32(header + 4, kShardVersion);
    put_le32(header + 8, static_cast<int32_t>(tokens.size()));
    write_all(fd, header, sizeof header, path);
    if (host_is_little_endian()) {
      write_all(fd, reinterpret_cast<const unsigned char*>(tokens.data()), tokens.size() * 2, path);
    } else {
      std::vector<unsigned char> buf(tokens.size() * 2);
      for (size_t i = 0; i < tokens.size(); ++i) {
        buf[2 * i] = static_cast<unsigned char>(tokens[i] & 0xFF);
        buf[2 * i + 1] = static_cast<unsigned char>(tokens[i] >> 8);
      }
      write_all(fd, buf.data(), buf.size(), path);
    }
    if (::fsync(fd) != 0) throw std::runtime_error("write_shard '" + path + "': fsync failed (" + errno_text() + ")");
    guard.fd = -1;
    if (::close(fd) != 0) throw std::runtime_error("write_shard '" + path + "': close failed (" + errno_text() + ")");
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      throw std::runtime_error("write_shard '" + path + "': rename from '" + tmp + "' failed (" + errno_text() + ")");
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // Persist the rename itself; best effort, since some filesystems refuse fsync on directories.
  const int dfd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::vector<uint16_t> read_shard(const std::string& path) {
  Fd f(::open(path.c_str(), O_RDONLY));
  if (f.fd < 0) throw std::runtime_error("read_shard '" + path + "': cannot open (" + errno_text() + ")");
  struct stat st;
  if (::fstat(f.fd, &st) != 0) throw std::runtime_error("read_shard '" + path + "': cannot stat (" + errno_text() + ")");
  if (!S_ISREG(st.st_mode)) throw std::runtime_error("read_shard '" + path + "': not a regular file");
  const int64_t size = static_cast<int64_t>(st.st_size);
  if (size < kShardHeaderBytes)
    throw std::runtime_error("read_shard '" + path + "': truncated: " + std::to_string(size) +
                             " bytes, shorter than the " + std::to_string(kShardHeaderBytes) + "-byte header");
  unsigned char header[kShardHeaderBytes];
  read_all(f.fd, header, sizeof header, path);
  const int32_t magic = get_le32(header), version = get_le32(header + 4), count = get_le32(header + 8);
  if (magic != kShardMagic)
    throw std::runtime_error("read_shard '" + path + "': bad magic " + std::to_string(magic) + " (expected " +
                             std::to_string(kShardMagic) + "; not an llm.c token shard)");
  if (version != kShardVersion)
    throw std::runtime_error("read_shard '" + path + "': unsupported version " + std::to_string(version) +
                             " (expected " + std::to_string(kShardVersion) + ": uint16 GPT-2 tokens)");
  if (count < 0) throw std::runtime_error("read_shard '" + path + "': negative token count " + std::to_string(count));
  // The count is validated against the file size before anything of that size is allocated.
  const int64_t expected = kShardHeaderBytes + 2 * static_cast<int64_t>(count);
  if (size != expected)
    throw std::runtime_error("read_shard '" + path + "': " + (size < expected ? "truncated" : "oversized") + ": " +
                             std::to_string(size) + " bytes, but the header's " + std::to_string(count) +
                             " tokens need " + std::to_string(expected));
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  read_all(f.fd, reinterpret_cast<unsigned char*>(tokens.data()), tokens.size() * 2, path);
  if (!host_is_little_endian())
    for (auto& t : tokens) t = static_cast<uint16_t>((t >> 8) | (t << 8));
  return tokens;
}

void check_token_range(const std::vector<uint16_t>& tokens, int64_t vocab_size, const std::string& what) {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (static_cast<int64_t>(tokens[i]) >= vocab_size)
      throw std::runtime_error(what + ": token id " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                               " is outside the vocabulary (size " + std::to_string(vocab_size) + ")");
}

WindowSampler::WindowSampler(const std::vector<uint16_t>* tokens, int64_t batch, int64_t block, uint64_t seed)
    : tokens_(tokens), batch_(batch), block_(block), seed_(seed) {
  if (!tokens_) throw std::invalid_argument("WindowSampler: tokens is null");
  if (batch < 1 || block < 1)
    throw std::invalid_argument("WindowSampler: batch and block must be >= 1, got batch=" + std::to_string(batch) +
                                " block=" + std::to_string(block));
  if (static_cast<int64_t>(tokens_->size()) < block + 1)
    throw std::invalid_argument("WindowSampler: the token stream has " + std::to_string(tokens_->size()) +
                                " tokens, fewer than block + 1 = " + std::to_string(block + 1));
}

std::pair<at::Tensor, at::Tensor> WindowSampler::next() {
  const int64_t starts = static_cast<int64_t>(tokens_->size()) - block_;  // valid starts: [0, starts)
  auto x = at::empty({batch_, block_}, at::kLong);
  auto y = at::empty({batch_, block_}, at::kLong);
  int64_t* px = x.data_ptr<int64_t>();
  int64_t* py = y.data_ptr<int64_t>();
  const uint16_t* t = tokens_->data();
  for (int64_t r = 0; r < batch_; ++r) {
    // Counter-based, so any step can be regenerated from (seed, step) alone: no RNG state to save.
    const uint64_t h = splitmix64(splitmix64(splitmix64(seed_) ^ static_cast<uint64_t>(step_)) ^ static_cast<uint64_t>(r));
    const int64_t start = static_cast<int64_t>(h % static_cast<uint64_t>(starts));
    for (int64_t j = 0; j < block_; ++j) {
      px[r * block_ + j] = t[start + j];
      py[r * block_ + j] = t[start + j + 1];
    }
  }
  ++step_;
  return {x, y};
}

void WindowSampler::set_step(int64_t s) {
  if (s < 0) throw std::invalid_argument("WindowSampler::set_step: step must be >= 0, got " + std::to_string(s));
  step_ = s;
}

std::vector<std::pair<at::Tensor, at::Tensor>> sequential_batches(const std::vector<uint16_t>& tokens, int64_t batch,
                                                                  int64_t block, int64_t max_batches) {
  if (batch < 1 || block < 1)
    throw std::invalid_argument("sequential_batches: batch and block must be >= 1, got batch=" + std::to_string(batch) +
                                " block=" + std::to_string(block));
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < block + 1)
    throw std::invalid_argument("sequential_batches: the token stream has " + std::to_string(n) +
                                " tokens, fewer than block + 1 = " + std::to_string(block + 1));
  const int64_t windows = (n - 1) / block;
  int64_t n_batches = (windows + batch - 1) / batch;
  if (max_batches >= 0) n_batches = std::min(n_batches, max_batches);
  std::vector<std::pair<at::Tensor, at::Tensor>> out;
  out.reserve(static_cast<size_t>(n_batches));
  for (int64_t b = 0; b < n_batches; ++b) {
    const int64_t rows = std::min(batch, windows - b * batch);
    auto x = at::empty({rows, block}, at::kLong);
    auto y = at::empty({rows, block}, at::kLong);
    int64_t* px = x.data_ptr<int64_t>();
    int64_t* py = y.data_ptr<int64_t>();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t start = (b * batch + r) * block;
      for (int64_t j = 0; j < block; ++j) {
        px[r * block + j] = tokens[start + j];
        py[r * block + j] = tokens[start + j + 1];
      }
    }
    out.emplace_back(std::move(x), std::move(y));
  }
  return out;
}

}  // namespace limuon::data
