// libFuzzer target: llm.c token shards (read_shard) and the vocabulary check applied to them.
// The input is written as the shard file; an accepted shard must be exactly what the bytes say.
#include "limuon/data/text.h"

#include "fuzz_stats.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace {

const std::string& scratch_path() {
  static const std::string p = "/dev/shm/limuon_fuzz_shard_" + std::to_string(::getpid()) + ".bin";
  return p;
}

using limuon_fuzz::write_file;

[[noreturn]] void finding(const std::string& detail) { limuon_fuzz::report("fuzz_shard", detail); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_file(scratch_path(), data, size);
  std::vector<uint16_t> tokens;
  try {
    tokens = limuon::data::read_shard(scratch_path());
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).find(scratch_path()) == std::string::npos) finding("error does not name the file");
    limuon_fuzz::rejected();
    return 0;
  }
  limuon_fuzz::accepted();
  // Accepted: header of 1024 bytes then exactly n_tokens little-endian uint16.
  if (size != static_cast<size_t>(limuon::data::kShardHeaderBytes) + 2 * tokens.size())
    finding("accepted a shard whose size does not match its token count");
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto* p = data + limuon::data::kShardHeaderBytes + 2 * i;
    if (tokens[i] != static_cast<uint16_t>(p[0] | (p[1] << 8))) finding("token " + std::to_string(i) + " misread");
  }
  // The range check must find the first out-of-vocabulary id, whatever the vocabulary.
  for (int64_t vocab : {int64_t{0}, int64_t{1}, int64_t{257}, int64_t{50257}, int64_t{65536}}) {
    size_t first_bad = tokens.size();
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] >= vocab) {
        first_bad = i;
        break;
      }
    try {
      limuon::data::check_token_range(tokens, vocab, "fuzz shard");
      if (first_bad != tokens.size()) finding("check_token_range missed an id >= " + std::to_string(vocab));
    } catch (const std::runtime_error& e) {
      if (first_bad == tokens.size()) finding("check_token_range rejected a valid stream");
      if (std::string(e.what()).find("position " + std::to_string(first_bad) + " ") == std::string::npos)
        finding(std::string("check_token_range named the wrong position: ") + e.what());
    }
  }
  return 0;
}
