// Training-program commands of the CLI: train, eval, generate, tokenize.
#pragma once

#include "args.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace limuon::data {
class Tokenizer;
}
namespace limuon::models {
struct GPT2Impl;
}

namespace limuon::cli {

int cmd_train(Args& args);
// Throws UsageError (naming `origin`) unless `values` (flag name → value, as in a --config file)
// are options `limuon train` accepts; --out may be left out. Reads no data.
void check_train_options(const std::map<std::string, std::string>& values, const std::string& origin);
// Throws UsageError unless `argv` (a `train` command line) is one `limuon train` accepts: what
// `train --nproc N` checks once in the parent before it starts any rank. Reads no data.
void check_train_command(const std::vector<std::string>& argv);
int cmd_eval(Args& args);
int cmd_generate(Args& args);
int cmd_tokenize(Args& args);
// One training step (forward, backward, AdamW) of a model on random data: median ms, throughput.
int bench_train_step(Args& args, bool json);
// Samples n tokens after `prompt` (temperature, top-k; seeded), stopping at end-of-text.
std::string generate_text(models::GPT2Impl& model, const data::Tokenizer& tok, const std::string& prompt, int64_t n,
                          double temperature, int64_t top_k, uint64_t seed);

}  // namespace limuon::cli
