// Image datasets from their distribution formats (gzipped IDX, CIFAR-10 binary records), treated
// as untrusted input; plus normalisation, seeded augmentation and the resumable batcher.
#include "limuon/data/images.h"

#include "limuon/optim/common.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <zlib.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace limuon::data {
namespace {

// Published normalisation constants.
// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): mean 0.2860, std 0.3530 of the training pixels in
// [0, 1] (the widely used values; recomputed by the tests from the real files).
const std::vector<double> kFashionMean = {0.2860};
const std::vector<double> kFashionStd = {0.3530};
// CIFAR-10 (Krizhevsky 2009) per-channel training-set statistics as used by the common
// torchvision recipes: mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616).
const std::vector<double> kCifarMean = {0.4914, 0.4822, 0.4465};
const std::vector<double> kCifarStd = {0.2470, 0.2435, 0.2616};

constexpr int64_t kNumClasses = 10;
// Upper bound on the pixel bytes an IDX header may claim (Fashion-MNIST train is 4.7e7), so a
// corrupt header cannot make us allocate gigabytes before the data turns out to be missing.
constexpr uint64_t kMaxIdxBytes = 100'000'000;
// CIFAR-10 binary records: 1 label byte + 3 planes of 32×32.
constexpr int64_t kCifarPixels = 3 * 32 * 32;
constexpr int64_t kCifarRecord = 1 + kCifarPixels;
constexpr uint64_t kMaxCifarFileBytes = 1'000'000'000;  // a real batch file is 30.7 MB

[[noreturn]] void idx_fail(const std::string& file, const std::string& msg) {
  throw std::runtime_error("idx: " + file + ": " + msg);
}
[[noreturn]] void cifar_fail(const std::string& file, const std::string& msg) {
  throw std::runtime_error("cifar10: " + file + ": " + msg);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Opens a file the way a user would want errors reported: "missing" before "not gzip". Returns
// the file's size.
uint64_t check_regular_file(const std::string& path, void (*fail)(const std::string&, const std::string&)) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

// deflate's largest possible expansion (zlib's FAQ: 1032:1, a stream of maximal-length matches).
constexpr uint64_t kMaxInflateRatio = 1032;

// Sequential reader of a gzip file (zlib also passes plain files through unchanged).
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    file_size_ = check_regular_file(path, idx_fail);
    errno = 0;
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) idx_fail(path, std::string("cannot open: ") + (errno ? std::strerror(errno) : "out of memory"));
    gzbuffer(f_, 1 << 17);
  }
  ~GzReader() {
    if (f_) gzclose(f_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads up to n bytes; fewer only at the end of the data. Corrupt compressed data throws.
  uint64_t read(void* dst, uint64_t n) {
    auto* p = static_cast<char*>(dst);
    uint64_t got = 0;
    while (got < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(n - got, 1u << 30));
      const int r = gzread(f_, p + got, chunk);
      if (r < 0) {
        int code = 0;
        const char* msg = gzerror(f_, &code);
        idx_fail(path_, std::string("corrupt gzip data: ") + (msg ? msg : "unknown zlib error"));
      }
      if (r == 0) break;
      got += static_cast<uint64_t>(r);
    }
    return got;
  }

  // Reads exactly n bytes or throws with `what` ("the header", "pixel data", ...) in the message.
  void read_exact(void* dst, uint64_t n, const std::string& what) {
    const uint64_t got = read(dst, n);
    if (got != n)
      idx_fail(path_, "truncated: " + what + " needs " + std::to_string(n) + " bytes, the file ends after " +
                          std::to_string(got) + gz_truncation_note());
  }

  // Before allocating for `claimed` more bytes (after the `consumed` header bytes already read):
  // throws unless the file can hold them. A plain file must have them; a gzip file cannot
  // decompress to more than kMaxInflateRatio times its size. So a corrupt or hostile header that
  // claims 100 MB fails here instead of allocating 100 MB for a file of a few bytes.
  void check_available(uint64_t claimed, uint64_t consumed, const std::string& what) {
    if (gzdirect(f_)) {
      const uint64_t left = file_size_ > consumed ? file_size_ - consumed : 0;
      if (claimed > left)
        idx_fail(path_, "truncated: " + what + " needs " + std::to_string(claimed) + " bytes, the file ends after " +
                            std::to_string(left) + " (checked before reading)");
    } else if (claimed / kMaxInflateRatio > file_size_) {
      idx_fail(path_, "corrupt header: " + what + " needs " + std::to_string(claimed) + " bytes, more than this " +
                          std::to_string(file_size_) + "-byte gzip file can decompress to (deflate expands at most " +
                          std::to_string(kMaxInflateRatio) + ":1)");
    }
  }

  // The data must end exactly where the header says; reading on also makes zlib verify the CRC.
  void expect_end(const std::string& what) {
    char c;
    if (read(&c, 1) != 0) idx_fail(path_, "trailing data after " + what);
  }

 private:
  std::string gz_truncation_note() {
    int code = Z_OK;
    gzerror(f_, &code);
    return code == Z_BUF_ERROR ? " (the gzip stream itself is cut short)" : "";
  }

  std::string path_;
  uint64_t file_size_ = 0;
  gzFile f_ = nullptr;
};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

ImageDataset parse_idx_pair(const std::string& images_gz, const std::string& labels_gz) {
  GzReader im(images_gz), lb(labels_gz);

  uint8_t ih[16];
  im.read_exact(ih, sizeof ih, "the 16-byte IDX image header");
  if (be32(ih) != 0x00000803)
    idx_fail(images_gz, "bad magic " + hex32(be32(ih)) + ", expected 0x00000803 (unsigned-byte images, 3 dims)");
  const uint64_t n = be32(ih + 4), rows = be32(ih + 8), cols = be32(ih + 12);
  if (rows == 0 || cols == 0)
    idx_fail(images_gz, "image size " + std::to_string(rows) + "x" + std::to_string(cols) + " is empty");
  const uint64_t per_image = rows * cols;  // < 2^64: both factors are < 2^32
  if (per_image > kMaxIdxBytes || n > kMaxIdxBytes / per_image)
    idx_fail(images_gz, "header claims " + std::to_string(n) + " images of " + std::to_string(rows) + "x" +
                            std::to_string(cols) + ", more than the limit of " + std::to_string(kMaxIdxBytes) +
                            " pixel bytes");

  uint8_t lh[8];
  lb.read_exact(lh, sizeof lh, "the 8-byte IDX label header");
  if (be32(lh) != 0x00000801)
    idx_fail(labels_gz, "bad magic " + hex32(be32(lh)) + ", expected 0x00000801 (unsigned-byte labels, 1 dim)");
  const uint64_t m = be32(lh + 4);
  if (m != n)
    idx_fail(labels_gz, "count mismatch: " + std::to_string(m) + " labels, but " + images_gz + " has " +
                            std::to_string(n) + " images");

  // All sizes are known and bounded now; the files must be able to hold them before anything of
  // that size is allocated.
  im.check_available(n * per_image, sizeof ih, "pixel data of " + std::to_string(n) + " images");
  lb.check_available(n, sizeof lh, "label data of " + std::to_string(n) + " labels");
  ImageDataset ds;
  const auto N = static_cast<int64_t>(n);
  ds.images = at::empty({N, 1, static_cast<int64_t>(rows), static_cast<int64_t>(cols)}, at::kByte);
  im.read_exact(ds.images.data_ptr<uint8_t>(), n * per_image, "pixel data of " + std::to_string(n) + " images");
  im.expect_end(std::to_string(n) + " images");

  std::vector<uint8_t> raw(n);
  lb.read_exact(raw.data(), n, "label data of " + std::to_string(n) + " labels");
  lb.expect_end(std::to_string(n) + " labels");
  ds.labels = at::empty({N}, at::kLong);
  auto* out = ds.labels.data_ptr<int64_t>();
  for (uint64_t i = 0; i < n; ++i) {
    if (raw[i] >= kNumClasses)
      idx_fail(labels_gz, "label " + std::to_string(raw[i]) + " at index " + std::to_string(i) + " is not in 0..9");
    out[i] = raw[i];
  }
  ds.num_classes = kNumClasses;
  ds.mean = kFashionMean;
  ds.std = kFashionStd;
  return ds;
}

ImageDataset load_fashion_mnist(const std::string& dir, const std::string& split) {
  std::string prefix;
  if (split == "train")
    prefix = "train";
  else if (split == "test")
    prefix = "t10k";
  else
    throw std::invalid_argument("load_fashion_mnist: split must be \"train\" or \"test\", got \"" + split + "\"");
  const std::string base = (dir.empty() ? std::string(kFashionMnistDir) : dir) + "/" + prefix;
  return parse_idx_pair(base + "-images-idx3-ubyte.gz", base + "-labels-idx1-ubyte.gz");
}

ImageDataset load_cifar10(const std::string& dir, const std::string& split) {
  std::vector<std::string> names;
  if (split == "train")
    names = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"};
  else if (split == "test")
    names = {"test_batch.bin"};
  else
    throw std::invalid_argument("load_cifar10: split must be \"train\" or \"test\", got \"" + split + "\"");

  // Accept the folder the archive extracts to, or its parent.
  std::string root = dir.empty() ? std::string(".") : dir;
  struct stat st {};
  if (::stat((root + "/" + names[0]).c_str(), &st) != 0 &&
      ::stat((root + "/cifar-10-batches-bin/" + names[0]).c_str(), &st) == 0)
    root += "/cifar-10-batches-bin";

  // Pass 1: validate every file's size, so nothing is allocated for a set that cannot load.
  std::vector<std::string> files;
  std::vector<int64_t> records;
  int64_t total = 0;
  for (const auto& name : names) {
    const std::string path = root + "/" + name;
    if (::stat(path.c_str(), &st) != 0) cifar_fail(path, std::string("cannot open: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) cifar_fail(path, "not a regular file");
    const auto size = static_cast<uint64_t>(st.st_size);
    if (size == 0) cifar_fail(path, "empty file");
    if (size > kMaxCifarFileBytes)
      cifar_fail(path, "size " + std::to_string(size) + " exceeds the limit of " + std::to_string(kMaxCifarFileBytes) +
                           " bytes");
    if (size % kCifarRecord != 0)
      cifar_fail(path, "size " + std::to_string(size) + " is not a multiple of the " + std::to_string(kCifarRecord) +
                           "-byte record (1 label byte + 3072 pixel bytes)");
    files.push_back(path);
    records.push_back(static_cast<int64_t>(size / kCifarRecord));
    total += records.back();
  }

  // Pass 2: read. The record's pixel bytes are already the [3, 32, 32] planes, so they copy as is.
  ImageDataset ds;
  ds.images = at::empty({total, 3, 32, 32}, at::kByte);
  ds.labels = at::empty({total}, at::kLong);
  auto* img = ds.images.data_ptr<uint8_t>();
  auto* lab = ds.labels.data_ptr<int64_t>();
  // Up to 1024 records per read, but no larger than the largest file needs: a small test file
  // should not cost a 3 MB buffer.
  const int64_t chunk = std::min<int64_t>(1024, *std::max_element(records.begin(), records.end()));
  std::vector<uint8_t> buf(static_cast<size_t>(kCifarRecord * chunk));
  int64_t at_record = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string& path = files[f];
    std::unique_ptr<std::FILE, FileCloser> fp(std::fopen(path.c_str(), "rb"));
    if (!fp) cifar_fail(path, std::string("cannot open: ") + std::strerror(errno));
    for (int64_t done = 0; done < records[f];) {
      const int64_t want = std::min<int64_t>(chunk, records[f] - done);
      const size_t got = std::fread(buf.data(), kCifarRecord, static_cast<size_t>(want), fp.get());
      if (static_cast<int64_t>(got) != want)
        cifar_fail(path, std::ferror(fp.get()) ? std::string("read error: ") + std::strerror(errno)
                                               : "truncated while reading (record " + std::to_string(done + got) + ")");
      for (int64_t r = 0; r < want; ++r) {
        const uint8_t* rec = buf.data() + r * kCifarRecord;
        if (rec[0] >= kNumClasses)
          cifar_fail(path, "record " + std::to_string(done + r) + " has label " + std::to_string(rec[0]) +
                               ", not in 0..9");
        lab[at_record] = rec[0];
        std::memcpy(img + at_record * kCifarPixels, rec + 1, kCifarPixels);
        ++at_record;
      }
      done += want;
    }
    // The file may have grown since the size check; a partial extra record would go unnoticed.
    if (std::fgetc(fp.get()) != EOF) cifar_fail(path, "trailing data (the file changed while reading)");
  }
  ds.num_classes = kNumClasses;
  ds.mean = kCifarMean;
  ds.std = kCifarStd;
  return ds;
}

at::Tensor normalize(const at::Tensor& uint8_images, const std::vector<double>& mean, const std::vector<double>& std) {
  const auto& x = uint8_images;
  if (!x.defined() || x.scalar_type() != at::kByte || x.dim() != 4)
    throw std::invalid_argument("normalize: expected uint8 images [N, C, H, W]");
  const int64_t C = x.size(1);
  if (static_cast<int64_t>(mean.size()) != C || static_cast<int64_t>(std.size()) != C)
    throw std::invalid_argument("normalize: " + std::to_string(C) + " channels but " + std::to_string(mean.size()) +
                                " means and " + std::to_string(std.size()) + " stds");
  for (double s : std)
    if (!(s > 0) || !std::isfinite(s)) throw std::invalid_argument("normalize: every std must be positive and finite");
  for (double m : mean)
    if (!std::isfinite(m)) throw std::invalid_argument("normalize: every mean must be finite");
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(x.device());
  const auto m = at::tensor(mean, at::TensorOptions().dtype(at::kDouble)).to(opts).view({1, C, 1, 1});
  const auto s = at::tensor(std, at::TensorOptions().dtype(at::kDouble)).to(opts).view({1, C, 1, 1});
  return x.to(at::kFloat).div_(255.0).sub_(m).div_(s);
}

namespace {

template <typename T>
void crop_flip(const T* src, T* dst, int64_t N, int64_t C, int64_t H, int64_t W, int64_t pad, bool flip,
               uint64_t seed) {
  const uint64_t base = splitmix64(seed);
  const auto span = static_cast<uint64_t>(2 * pad + 1);
  for (int64_t n = 0; n < N; ++n) {
    // Each image's choices depend only on (seed, n): batches of any size reproduce the same crops.
    const uint64_t r = splitmix64(base ^ static_cast<uint64_t>(n));
    const int64_t oy = static_cast<int64_t>(r % span) - pad;
    const int64_t ox = static_cast<int64_t>((r / span) % span) - pad;
    const bool f = flip && (splitmix64(r) & 1);
    for (int64_t c = 0; c < C; ++c) {
      const T* in = src + (n * C + c) * H * W;
      T* out = dst + (n * C + c) * H * W;
      for (int64_t y = 0; y < H; ++y) {
        T* orow = out + y * W;
        const int64_t sy = y + oy;
        if (sy < 0 || sy >= H) {
          std::fill(orow, orow + W, T(0));
          continue;
        }
        const T* irow = in + sy * W;
        // Crop first (shift by ox, zeros outside), then mirror the cropped row.
        for (int64_t x = 0; x < W; ++x) {
          const int64_t sx = (f ? W - 1 - x : x) + ox;
          orow[x] = (sx >= 0 && sx < W) ? irow[sx] : T(0);
        }
      }
    }
  }
}

}  // namespace

at::Tensor augment(const at::Tensor& float_images, int64_t pad, bool flip, uint64_t seed) {
  const auto& x = float_images;
  if (!x.defined() || x.dim() != 4 || !at::isFloatingType(x.scalar_type()) || !x.device().is_cpu())
    throw std::invalid_argument("augment: expected floating-point CPU images [N, C, H, W]");
  if (pad < 0 || pad > (1 << 20)) throw std::invalid_argument("augment: pad must be in [0, 2^20], got " + std::to_string(pad));
  const at::Tensor src = x.contiguous();
  at::Tensor out = at::empty_like(src, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "augment", [&] {
    crop_flip<scalar_t>(src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), src.size(0), src.size(1), src.size(2),
                        src.size(3), pad, flip, seed);
  });
  return out;
}

ImageBatcher::ImageBatcher(const ImageDataset* ds, int64_t batch, uint64_t seed, bool drop_last)
    : ds_(ds), batch_(batch), seed_(seed), drop_last_(drop_last) {
  if (!ds || !ds->images.defined() || !ds->labels.defined())
    throw std::invalid_argument("ImageBatcher: no dataset");
  if (ds->images.dim() < 1 || ds->images.size(0) != ds->labels.size(0))
    throw std::invalid_argument("ImageBatcher: images and labels differ in count");
  if (ds->size() == 0) throw std::invalid_argument("ImageBatcher: empty dataset");
  if (batch < 1) throw std::invalid_argument("ImageBatcher: batch must be >= 1, got " + std::to_string(batch));
  if (drop_last && batch > ds->size())
    throw std::invalid_argument("ImageBatcher: batch " + std::to_string(batch) + " is larger than the dataset (" +
                                std::to_string(ds->size()) + ") and drop_last leaves no batch");
}

int64_t ImageBatcher::limit() const {
  const int64_t n = ds_->size();
  return drop_last_ ? n - n % batch_ : n;
}

int64_t ImageBatcher::batches_per_epoch() const { return (limit() + batch_ - 1) / batch_; }

void ImageBatcher::normalise_position() {
  if (index_ >= limit()) {
    ++epoch_;
    index_ = 0;
  }
}

void ImageBatcher::set_position(int64_t epoch, int64_t index) {
  if (epoch < 0 || epoch == INT64_MAX || index < 0 || index > ds_->size())
    throw std::invalid_argument("ImageBatcher::set_position: position (" + std::to_string(epoch) + ", " +
                                std::to_string(index) + ") is out of range for " + std::to_string(ds_->size()) +
                                " samples");
  epoch_ = epoch;
  index_ = index;
  normalise_position();
}

at::Tensor ImageBatcher::permutation(int64_t epoch) const {
  // Fisher–Yates driven by a splitmix64 stream seeded from (seed, epoch): the same on every platform
  // and independent of LibTorch's global generator, which the training loop also draws from.
  const int64_t n = ds_->size();
  at::Tensor perm = at::arange(n, at::kLong);
  auto* p = perm.data_ptr<int64_t>();
  uint64_t state = splitmix64(splitmix64(seed_) ^ static_cast<uint64_t>(epoch));
  auto next = [&] {
    state += 0x9E3779B97F4A7C15ULL;
    return splitmix64(state);
  };
  for (int64_t i = n - 1; i > 0; --i) {
    // Unbiased draw from [0, i] (Lemire's multiply-and-reject).
    const uint64_t range = static_cast<uint64_t>(i) + 1;
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * range;
    if (static_cast<uint64_t>(m) < range) {
      const uint64_t threshold = (0 - range) % range;
      while (static_cast<uint64_t>(m) < threshold) m = static_cast<unsigned __int128>(next()) * range;
    }
    std::swap(p[i], p[static_cast<int64_t>(m >> 64)]);
  }
  return perm;
}

std::pair<at::Tensor, at::Tensor> ImageBatcher::next() {
  normalise_position();
  if (perm_epoch_ != epoch_) {
    perm_ = permutation(epoch_);
    perm_epoch_ = epoch_;
  }
  const int64_t take = std::min(batch_, limit() - index_);
  const at::Tensor idx = perm_.narrow(0, index_, take);
  auto batch = std::make_pair(ds_->images.index_select(0, idx), ds_->labels.index_select(0, idx));
  index_ += take;
  normalise_position();
  return batch;
}

}  // namespace limuon::data
