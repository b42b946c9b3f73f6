// Image classification data: Fashion-MNIST (gzipped IDX) and CIFAR-10 (binary version) loaders,
// normalisation, seeded crop/flip augmentation, and a resumable epoch-shuffled batcher.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace limuon::data {

struct ImageDataset {
  at::Tensor images;  // uint8 [N, C, H, W]
  at::Tensor labels;  // int64 [N]
  int64_t num_classes = 10;
  std::vector<double> mean, std;  // per channel, in [0, 1] pixel units, for normalize()

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

// Where scripts/setup.sh puts Fashion-MNIST; an empty `dir` means this.
constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Every loader throws std::runtime_error naming the file and the problem (missing, bad magic,
// inconsistent counts, truncated, trailing data, label ≥ 10, ...). Sizes are validated before allocating.

// split "train" (60000 images) | "test" (10000): {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz.
ImageDataset load_fashion_mnist(const std::string& dir, const std::string& split);
// CIFAR-10 binary version: data_batch_1..5.bin (train) or test_batch.bin (test), each a sequence of
// 3073-byte records (1 label byte, then the R, G and B planes of a 32×32 image). `dir` may also be
// the parent of the archive's cifar-10-batches-bin/ folder.
ImageDataset load_cifar10(const std::string& dir, const std::string& split);
// An IDX pair (gzipped or plain): images magic 0x00000803 [N, rows, cols], labels 0x00000801 [N],
// big-endian dims. Labels must be < 10. Gives C = 1 and Fashion-MNIST's mean/std.
ImageDataset parse_idx_pair(const std::string& images_gz, const std::string& labels_gz);

// uint8 [N, C, H, W] → float [N, C, H, W]: (x / 255 − mean[c]) / std[c].
at::Tensor normalize(const at::Tensor& uint8_images, const std::vector<double>& mean, const std::vector<double>& std);

// Per image: a random crop of the `pad`-zero-padded image back to H×W (shift of −pad..pad in each
// direction), then, if `flip`, a horizontal flip with probability ½. Deterministic given `seed`
// (and independent of LibTorch's generators): image n's choices come from splitmix64(seed, n).
// Floating [N, C, H, W] in, same shape and dtype out.
at::Tensor augment(const at::Tensor& float_images, int64_t pad, bool flip, uint64_t seed);

// Shuffled batches, one permutation per epoch drawn from (seed, epoch) alone, so a run resumed
// with set_position(epoch, index) sees exactly the batches an uninterrupted run would have.
// index() counts samples (not batches) consumed in the current epoch. With drop_last, the last
// N mod batch samples of each epoch's permutation are skipped; otherwise the last batch is short.
// When an epoch is used up, the position moves to (epoch + 1, 0) at once.
class ImageBatcher {
 public:
  ImageBatcher(const ImageDataset* ds, int64_t batch, uint64_t seed, bool drop_last = true);

  std::pair<at::Tensor, at::Tensor> next();  // (uint8 images [B, C, H, W], int64 labels [B])

  int64_t epoch() const { return epoch_; }
  int64_t index() const { return index_; }
  int64_t batches_per_epoch() const;
  // Throws std::invalid_argument for a negative epoch or an index outside [0, N].
  void set_position(int64_t epoch, int64_t index);

  // The order of epoch `epoch` (int64 [N]); exposed for tests and tools.
  at::Tensor permutation(int64_t epoch) const;

 private:
  int64_t limit() const;  // samples served per epoch
  void normalise_position();

  const ImageDataset* ds_;
  int64_t batch_;
  uint64_t seed_;
  bool drop_last_;
  int64_t epoch_ = 0, index_ = 0;
  int64_t perm_epoch_ = -1;  // which epoch perm_ holds
  at::Tensor perm_;
};

}  // namespace limuon::data
