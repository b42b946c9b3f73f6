// safetensors reader/writer and the atomic file replacement helper. The reader treats the file
// as untrusted: the whole header is validated against the real data size before anything is allocated.
#include "limuon/io/safetensors.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>

// The format is little-endian and we copy tensor bytes verbatim.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace limuon::io {
namespace {

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  uint64_t itemsize;
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2}, {"BF16", at::kBFloat16, 2},
    {"I64", at::kLong, 8},   {"I32", at::kInt, 4},   {"I16", at::kShort, 2}, {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},    {"BOOL", at::kBool, 1},
};

const DtypeInfo* dtype_by_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeInfo* dtype_by_type(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return &d;
  return nullptr;
}

[[noreturn]] void fail(const std::string& what, const std::string& msg) {
  throw std::runtime_error("safetensors: " + what + ": " + msg);
}

// Names come from the file: quote them, and keep a hostile 50 MB key out of the message.
std::string quoted(const std::string& s) {
  constexpr size_t kMax = 120;
  return "'" + (s.size() <= kMax ? s : s.substr(0, kMax) + "...") + "'";
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

struct Entry {
  std::string name;
  const DtypeInfo* dtype = nullptr;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by data offset
  std::map<std::string, std::string> metadata;
};

uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Checks the length prefix against the total size; returns the header length.
uint64_t check_prefix(const uint8_t* prefix, uint64_t total, const std::string& what) {
  const uint64_t n = load_le64(prefix);
  // Compare against the real size first, so a claimed 2^63 fails here, before any allocation.
  if (n > total - 8)
    fail(what, "header length " + std::to_string(n) + " is larger than the file (" + std::to_string(total) +
                   " bytes, of which 8 are the length prefix)");
  if (n > kMaxSafetensorsHeader)
    fail(what, "header length " + std::to_string(n) + " exceeds the limit of " +
                   std::to_string(kMaxSafetensorsHeader) + " bytes");
  if (n < 2) fail(what, "header length " + std::to_string(n) + " is too small to hold a JSON object");
  return n;
}

// A JSON number that must be a non-negative integer (shape dims, offsets).
uint64_t non_negative(const nlohmann::json& v, const std::string& what, const std::string& field) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < 0) fail(what, field + " is negative (" + std::to_string(i) + ")");
    return static_cast<uint64_t>(i);
  }
  fail(what, field + " is not an integer (got " + v.dump() + ")");
}

Entry parse_entry(const std::string& name, const nlohmann::json& v, uint64_t data_size, const std::string& what) {
  const std::string who = "tensor " + quoted(name);
  if (name.empty()) fail(what, "a tensor has an empty name");
  if (!v.is_object()) fail(what, who + " is not a JSON object");
  Entry e;
  e.name = name;

  const auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) fail(what, who + " has no string \"dtype\"");
  e.dtype = dtype_by_name(dt->get<std::string>());
  if (!e.dtype)
    fail(what, who + " has unknown dtype " + quoted(dt->get<std::string>()) +
                   " (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");

  const auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) fail(what, who + " has no \"shape\" array");
  // numel must fit, and so must the product of the non-zero dims: LibTorch computes strides from
  // them even when another dim is 0.
  uint64_t numel = 1, stride_product = 1;
  for (size_t i = 0; i < sh->size(); ++i) {
    const uint64_t d = non_negative((*sh)[i], what, who + " shape[" + std::to_string(i) + "]");
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(stride_product, std::max<uint64_t>(d, 1), &stride_product) ||
        stride_product > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(what, who + " has a shape whose element count overflows");
    numel *= d;  // cannot overflow: bounded by stride_product
    e.shape.push_back(static_cast<int64_t>(d));
  }

  const auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2)
    fail(what, who + " has no \"data_offsets\" array of two integers");
  e.begin = non_negative((*off)[0], what, who + " data_offsets[0]");
  e.end = non_negative((*off)[1], what, who + " data_offsets[1]");
  const std::string range = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  if (e.begin > e.end) fail(what, who + " has data_offsets " + range + " with begin > end");
  if (e.end > data_size)
    fail(what, who + " has data_offsets " + range + " out of range: the data section holds " +
                   std::to_string(data_size) + " bytes");
  uint64_t nbytes = 0;
  const bool overflow = __builtin_mul_overflow(numel, e.dtype->itemsize, &nbytes);
  if (overflow || nbytes != e.end - e.begin)
    fail(what, who + ": shape " + shape_str(e.shape) + " with dtype " + e.dtype->name + " needs " +
                   (overflow ? std::string("more than 2^64") : std::to_string(nbytes)) + " bytes but data_offsets " +
                   range + " span " + std::to_string(e.end - e.begin) + " (size mismatch)");
  return e;
}

Header parse_header(const char* text, size_t n, uint64_t data_size, const std::string& what) {
  // nlohmann's lexer takes a NUL byte as the end of input and would silently ignore what follows;
  // valid JSON never holds a raw NUL, so reject it outright.
  if (std::memchr(text, '\0', n)) fail(what, "header is not valid JSON: it contains a NUL byte");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, text + n);
  } catch (const nlohmann::json::exception& ex) {
    // The parser quotes the offending token, which a hostile header can make megabytes long.
    std::string detail = ex.what();
    if (detail.size() > 300) detail = detail.substr(0, 300) + "...";
    fail(what, "header is not valid JSON: " + detail);
  }
  if (!j.is_object()) fail(what, std::string("header is not a JSON object (it is a JSON ") + j.type_name() + ")");

  Header h;
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(what, "\"__metadata__\" is not a JSON object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) fail(what, "metadata value for key " + quoted(k) + " is not a string");
        h.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(key, value, data_size, what));
  }

  // File order; names break ties between empty tensors sharing an offset (items() is name-sorted).
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Non-empty ranges must be disjoint: a tensor aliasing another's bytes is a corrupt (or crafted) file.
  const Entry* prev = nullptr;
  for (const auto& e : h.entries) {
    if (e.begin == e.end) continue;
    if (prev && e.begin < prev->end)
      fail(what, "tensors " + quoted(prev->name) + " [" + std::to_string(prev->begin) + ", " +
                     std::to_string(prev->end) + "] and " + quoted(e.name) + " [" + std::to_string(e.begin) +
                     ", " + std::to_string(e.end) + "] overlap");
    if (!prev || e.end > prev->end) prev = &e;
  }
  return h;
}

// BOOL bytes other than 0/1 would be undefined behaviour for LibTorch's bool kernels.
void check_bools(const at::Tensor& t, const Entry& e, const std::string& what) {
  if (e.dtype->type != at::kBool) return;
  const auto* p = static_cast<const uint8_t*>(t.data_ptr());
  for (int64_t i = 0; i < t.numel(); ++i)
    if (p[i] > 1)
      fail(what, "tensor " + quoted(e.name) + " holds the invalid BOOL byte " + std::to_string(p[i]) +
                     " at element " + std::to_string(i));
}

at::Tensor empty_for(const Entry& e) {
  return at::empty(e.shape, at::TensorOptions().dtype(e.dtype->type).device(at::kCPU));
}

// pread until n bytes arrive; false when the file ends first.
bool read_at(int fd, void* dst, uint64_t n, uint64_t offset) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1u << 30));
    const ssize_t r = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw std::system_error(errno, std::generic_category());
    if (r == 0) return false;
    p += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(int fd, const void* data, size_t size, const std::string& what) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(size, 1u << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw std::runtime_error(what + ": " + std::strerror(errno));
    p += w;
    size -= static_cast<size_t>(w);
  }
}

}  // namespace

const at::Tensor& SafeTensors::at(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  throw std::out_of_range("safetensors: no tensor named " + quoted(name));
}

SafeTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& what) {
  if (size < 8 || !data)
    fail(what, "truncated: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  const uint64_t n = check_prefix(data, size, what);
  const uint64_t data_size = size - 8 - n;
  Header h = parse_header(reinterpret_cast<const char*>(data + 8), n, data_size, what);
  SafeTensors out;
  out.metadata = std::move(h.metadata);
  const uint8_t* section = data + 8 + n;
  for (const auto& e : h.entries) {
    at::Tensor t = empty_for(e);
    if (e.end > e.begin) std::memcpy(t.data_ptr(), section + e.begin, e.end - e.begin);
    check_bools(t, e, what);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

SafeTensors read_safetensors(const std::string& path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  const auto size = static_cast<uint64_t>(st.st_size);
  try {
    uint8_t prefix[8];
    if (size < 8 || !read_at(f.fd, prefix, 8, 0))
      fail(path, "truncated: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
    const uint64_t n = check_prefix(prefix, size, path);
    std::string text(n, '\0');
    if (!read_at(f.fd, text.data(), n, 8)) fail(path, "file ended inside the header");
    Header h = parse_header(text.data(), text.size(), size - 8 - n, path);
    text = std::string();

    // Tensor data is read straight into each tensor: no second copy of a large checkpoint.
    SafeTensors out;
    out.metadata = std::move(h.metadata);
    for (const auto& e : h.entries) {
      at::Tensor t = empty_for(e);
      if (e.end > e.begin && !read_at(f.fd, t.data_ptr(), e.end - e.begin, 8 + n + e.begin))
        fail(path, "file ended inside tensor " + quoted(e.name) + " (was it truncated while reading?)");
      check_bools(t, e, path);
      out.tensors.emplace_back(e.name, std::move(t));
    }
    return out;
  } catch (const std::system_error& ex) {
    fail(path, std::string("read error: ") + ex.what());
  }
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<at::Tensor> payload;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const std::string who = "tensor " + quoted(name);
    if (name.empty() || name == "__metadata__") fail(path, "invalid tensor name " + quoted(name));
    if (!names.insert(name).second) fail(path, "duplicate " + who);
    if (!tensor.defined()) fail(path, who + " is undefined");
    const DtypeInfo* d = dtype_by_type(tensor.scalar_type());
    if (!d) fail(path, who + " has unsupported dtype " + std::string(c10::toString(tensor.scalar_type())));
    at::Tensor c = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * d->itemsize;
    header[name] = {{"dtype", d->name}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    payload.push_back(std::move(c));
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& ex) {  // e.g. a name that is not valid UTF-8
    fail(path, std::string("cannot encode the header: ") + ex.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // spaces are JSON whitespace: the header stays valid
  uint8_t prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  AtomicFileWriter out(path);
  out.write(prefix, 8);
  out.write(text.data(), text.size());
  for (const auto& t : payload)
    if (t.numel() > 0) out.write(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  out.commit();
}

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  const std::string what = "atomic write of '" + path + "'";
  const auto slash = path.rfind('/');
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") throw std::runtime_error(what + ": the path names no file");
  const std::string prefix = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  dir_ = prefix.empty() ? "." : prefix;
  // Hidden, in the same directory: rename() is atomic only within one file system.
  std::string tmpl = prefix + "." + base + ".tmp.XXXXXX";
  fd_ = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd_ < 0)
    throw std::runtime_error(what + ": cannot create a temporary file in directory '" + dir_ +
                             "': " + std::strerror(errno));
  temp_ = tmpl;
  // mkstemp creates 0600; keep an existing file's mode, otherwise the usual 0644.
  struct stat st {};
  const mode_t mode = ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
  if (::fchmod(fd_, mode) != 0) {
    const std::string msg = what + ": cannot set the mode of '" + temp_ + "': " + std::strerror(errno);
    ::close(fd_);  // the destructor does not run for a throwing constructor
    ::unlink(temp_.c_str());
    throw std::runtime_error(msg);
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t size) {
  if (fd_ < 0) throw std::runtime_error("atomic write of '" + path_ + "': write after commit");
  write_all(fd_, data, size, "atomic write of '" + path_ + "': writing '" + temp_ + "'");
}

void AtomicFileWriter::commit() {
  const std::string what = "atomic write of '" + path_ + "'";
  if (fd_ < 0) throw std::runtime_error(what + ": already committed");
  // The data must be on disk before the rename makes it visible, or a crash can leave an empty file.
  if (::fsync(fd_) != 0) throw std::runtime_error(what + ": fsync failed: " + std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw std::runtime_error(what + ": close failed: " + std::strerror(errno));
  if (::rename(temp_.c_str(), path_.c_str()) != 0)
    throw std::runtime_error(what + ": cannot rename '" + temp_ + "' over it: " + std::strerror(errno));
  committed_ = true;
  // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL): the file
  // is in place by now, so only real I/O errors are reported.
  Fd dir;
  dir.fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir.fd < 0) throw std::runtime_error(what + ": cannot open directory '" + dir_ + "': " + std::strerror(errno));
  if (::fsync(dir.fd) != 0 && errno != EINVAL && errno != EROFS)
    throw std::runtime_error(what + ": fsync of directory '" + dir_ + "' failed: " + std::strerror(errno));
}

void atomic_write_file(const std::string& path, const std::string& bytes) {
  AtomicFileWriter out(path);
  out.write(bytes.data(), bytes.size());
  out.commit();
}

}  // namespace limuon::io
