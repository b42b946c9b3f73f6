// limuon command-line entry point: dispatches subcommands, maps errors to clear messages and
// non-zero exit codes (2 for usage errors, 1 for failures).
#include "args.h"
#include "bench.h"
#include "train.h"

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

  train        train a model (see docs below); writes OUT/metrics.jsonl, OUT/summary.json,
               OUT/ckpt_*.pt (atomic, last --keep K), OUT/model.safetensors
               --task lm|image --model gpt2-tiny|gpt2-byte-small|gpt2-mini|distilgpt2|gpt2|vit-test|vit-tiny|...
               --data default|FILE[,FILE..]|TRAIN.bin,VAL.bin|fashion-mnist|cifar10:DIR --out DIR
               --optimizer adamw|muon|limuon (+ --lr --adamw-lr --beta --momentum --lowrank-state --rank
               --storm --gamma --orthogonalizer --adjust-lr --weight-decay --adamw-weight-decay)
               --steps N | --epochs E, --batch-size B --grad-accum A --block-size T --warmup W --min-lr-ratio R
               --eval-interval N --eval-batches N --checkpoint-interval N --keep K --resume --seed S
               --tokenizer auto|gpt2|byte --dropout P --patch P --augment --device cpu|cuda
               --progress auto|bar|lines|none --config FILE.json (flags override the file)
               --init-weights F.safetensors (fine-tune from Hugging Face GPT-2 weights, e.g. distilgpt2)
               --max-nonfinite N (10): a step whose loss or gradient is NaN/Inf is skipped (no update, counted
               as nonfinite_steps); after N such steps in a row the run stops with exit 1, naming the last
               good checkpoint (0: never stop). Checkpoints are never written with NaN/Inf in them.
               --inject-nonfinite SPEC (testing aid): poison chosen steps, SPEC a comma list of KIND:STEP or
               KIND:FIRST-LAST with KIND grad|grad-inf|loss|loss-inf (NaN, or Inf, into all gradients or
               into the loss value), e.g. grad:5,loss-inf:7,grad:8-12
  eval         --model NAME (--weights F.safetensors | --checkpoint DIR) --text-file F → JSON val_loss, ppl, tokens
               --task image --model NAME --checkpoint DIR [--data fashion-mnist|cifar10:DIR] → JSON val_loss, accuracy
  generate     --model NAME (--weights F | --checkpoint DIR) --prompt STR --max-new-tokens N --temperature T --top-k K --seed S
  tokenize     --text STR [--tokenizer gpt2|byte] [--decode] → token ids separated by spaces
  bench train-step  --task lm|image --model NAME --batch-size B --block-size T: one training step (forward,
               backward, AdamW) median ms and throughput

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
    Args args(argv_s, {"json", "help", "resume", "augment", "no-nesterov", "decode"});
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
    if (pos.size() == 2 && pos[0] == "bench" && pos[1] == "train-step") return limuon::cli::bench_train_step(args, json);
    if (pos.size() == 1 && pos[0] == "train") return limuon::cli::cmd_train(args);
    if (pos.size() == 1 && pos[0] == "eval") return limuon::cli::cmd_eval(args);
    if (pos.size() == 1 && pos[0] == "generate") return limuon::cli::cmd_generate(args);
    if (pos.size() == 1 && pos[0] == "tokenize") return limuon::cli::cmd_tokenize(args);
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
