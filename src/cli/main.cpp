// limuon command-line entry point: dispatches subcommands, maps errors to clear messages and
// non-zero exit codes (2 for usage errors, 1 for failures).
#include "args.h"
#include "bench.h"

#include "limuon/threads.h"

#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

namespace {

const char* kUsage = R"(usage: limuon <command> [flags]

commands:
  bench orth   time an orthogonalization kernel and check it against exact SVD
               --shape MxN (768x3072) --batch K (1) --method svd|ns5|polar_express|rsvd|all (ns5)
               --rank R (32) --oversample S (8) --power-iters Q (0) --dtype float32|float64
               --warmup W (2) --repeats N (7) --seed S (0)
  bench step   time one optimizer step over a model's hidden weight matrices (random gradients)
               --optimizer adamw|muon|limuon (muon) --model distilgpt2|gpt2|tiny (distilgpt2)
               --orthogonalizer NAME (ns5) --lowrank-state none|paper|light (none)
               --storm exact|approx (exact) --rank R (32) --oversample S (8) --power-iters Q (0)
               --beta B (0.1) --gamma G (0.025) --momentum M (0.95) --warmup W (2) --repeats N (5)

global flags:
  --json        one JSON object per result line
  --threads N   intra-op threads (default: all cores, or LIMUON_THREADS)
)";

}  // namespace

int main(int argc, char** argv) {
  using limuon::cli::Args;
  using limuon::cli::UsageError;
  std::vector<std::string> argv_s(argv + 1, argv + argc);
  try {
    if (argv_s.empty() || argv_s[0] == "--help" || argv_s[0] == "-h" || argv_s[0] == "help") {
      std::cout << kUsage;
      return argv_s.empty() ? 2 : 0;
    }
    Args args(argv_s, {"json", "help"});
    if (args.flag("help")) {
      std::cout << kUsage;
      return 0;
    }
    const bool json = args.flag("json");
    limuon::configure_threads(static_cast<int>(args.integer("threads", 0, 0, 4096)));
    limuon::configure_allocator();
    const auto& pos = args.positional();
    if (pos.size() == 2 && pos[0] == "bench" && pos[1] == "orth") return limuon::cli::bench_orth(args, json);
    if (pos.size() == 2 && pos[0] == "bench" && pos[1] == "step") return limuon::cli::bench_step(args, json);
    std::string cmd;
    for (const auto& p : pos) cmd += (cmd.empty() ? "" : " ") + p;
    throw UsageError("unknown command '" + cmd + "' (try: limuon --help)");
  } catch (const UsageError& e) {
    std::cerr << "limuon: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "limuon: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "limuon: " << e.what() << "\n";
    return 1;
  }
}
