// libFuzzer target: the GPT-2 vocabulary readers (encoder.json + vocab.bpe). The input is split
// at its first NUL byte (raw NUL cannot occur in valid JSON): before it is encoder.json, after it
// vocab.bpe. An accepted vocabulary must then tokenize losslessly: decode(encode(s)) == s with
// every id inside the vocabulary, on fixed probes (short words, long runs that take the O(n log n)
// merge path, invalid UTF-8) and on the input itself.
#include "limuon/data/text.h"

#include "fuzz_stats.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

const std::string& scratch(bool encoder) {
  static const std::string e = "/dev/shm/limuon_fuzz_bpe_" + std::to_string(::getpid()) + "_encoder.json";
  static const std::string v = "/dev/shm/limuon_fuzz_bpe_" + std::to_string(::getpid()) + "_vocab.bpe";
  return encoder ? e : v;
}

using limuon_fuzz::write_file;

[[noreturn]] void finding(const std::string& detail) { limuon_fuzz::report("fuzz_bpe_files", detail); }

void check_roundtrip(const limuon::data::Tokenizer& tok, std::string_view text) {
  const auto ids = tok.encode(text);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) finding("encode produced id " + std::to_string(id) + " outside the vocabulary");
  if (tok.decode(ids) != text) finding("decode(encode(s)) != s");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  const size_t enc_len = nul ? static_cast<size_t>(nul - data) : size;
  write_file(scratch(true), data, enc_len);
  write_file(scratch(false), nul ? nul + 1 : data, nul ? size - enc_len - 1 : 0);

  std::unique_ptr<limuon::data::Tokenizer> tok;
  try {
    tok = limuon::data::make_gpt2_tokenizer(scratch(true), scratch(false));
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    // The documented contract: the message names the file at fault.
    if (msg.find(scratch(true)) == std::string::npos && msg.find(scratch(false)) == std::string::npos)
      finding("error names neither file: " + msg);
    limuon_fuzz::rejected();
    return 0;
  }
  limuon_fuzz::accepted();
  if (tok->vocab_size() < 257) finding("accepted a vocabulary without all 256 bytes and <|endoftext|>");
  if (tok->eot() < 0 || tok->eot() >= tok->vocab_size()) finding("eot outside the vocabulary");
  if (tok->decode({tok->eot()}) != "<|endoftext|>") finding("eot does not decode to <|endoftext|>");

  static const std::string probes[] = {
      "Hello world, it's 2024!",
      "  \n\n\t  x",
      "\xff\xfe\xc3(\xe2\x82 ok \xf0\x9f\x98\x80",
      std::string(100, ' '),
      std::string(70, 'a') + std::string(70, 'b'),
      "ababababababababababababababababababababababababababababababababab",
      "<|endoftext|>",
  };
  for (const auto& p : probes) check_roundtrip(*tok, p);
  check_roundtrip(*tok, std::string_view(reinterpret_cast<const char*>(data), std::min<size_t>(size, 4096)));
  return 0;
}
