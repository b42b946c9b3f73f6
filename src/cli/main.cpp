// limuon command-line entry point: dispatches subcommands, maps errors to clear messages and
// non-zero exit codes (2 for usage errors, 1 for failures).
#include "args.h"
#include "bench.h"
#include "compare.h"
#include "launch.h"
#include "train.h"

#include "limuon/threads.h"

#include <c10/util/Exception.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

namespace {

const char* kUsage = R"(usage: limuon <command> [flags]

commands:
  bench orth   time an orthogonalization kernel and check it against exact SVD
               --shape MxN[,MxN..] (768x3072) --batch K (1) --method svd|ns5|polar_express|rsvd|
               gram_ns[:ns5|:polar_express]|all, or a comma list (ns5); every row also shows its time
               relative to an ns5 run and the same-run matmul rate; --gram-restarts auto|none|1,3 (auto:
               none for fp32/fp64, 1,3 for half precision) --gram-min-aspect A (1.5: below, the plain loop)
               --rank R (32) --oversample S (8) --power-iters Q (0) --dtype float32|float64|bfloat16
               --warmup W (2) --repeats N (7) --seed S (0)
  bench step   time one optimizer step over a model's hidden weight matrices (random gradients)
               --optimizer adamw|muon|limuon|muon_mvr1|muon_mvr2|sumo|muoneq|lionmuon|mimuon|gluon (muon)
               --model distilgpt2|gpt2|tiny (distilgpt2)
               --orthogonalizer NAME (gram_ns) --lowrank-state none|paper|light (none)
               --storm exact|approx (exact) --rank R (32) --oversample S (8) --power-iters Q (0)
               --beta B (0.1) --gamma G (0.025) --momentum M (0.95) --warmup W (2) --repeats N (5)
               and the family flags of `train`

  train        train a model (see docs below); writes OUT/metrics.jsonl, OUT/summary.json,
               OUT/ckpt_*.pt (atomic, last --keep K), OUT/model.safetensors
               --task lm|image --model gpt2-tiny|gpt2-byte-small|gpt2-mini|distilgpt2|gpt2|vit-test|vit-tiny|...
               --data default|FILE[,FILE..]|TRAIN.bin,VAL.bin|fashion-mnist|cifar10:DIR --out DIR
               --optimizer adamw|muon|limuon (+ --lr --adamw-lr --beta --momentum --lowrank-state --rank
               --storm --gamma --orthogonalizer --adjust-lr --weight-decay --adamw-weight-decay)
               --preset practical|paper (practical): paper = LiMuon as its paper states it: --orthogonalizer
               svd --adjust-lr none --warmup 0 --min-lr-ratio 1 (constant lr and beta); flags override it
               --grad-clip C (0 = off): clip the global gradient norm to C in every evaluation (both of a
               two-evaluation step alike); metrics then log grad_norm (before clipping)
               --accumulate-second-gradient[=false] (on unless --grad-clip): LiMuon paper/light with storm
               exact lets the second backward add into −(1 − beta)·(first gradient) instead of keeping a copy
               or the rest of the family (README "The Muon family"; each keeps its published defaults
               for --lr, --momentum, --nesterov/--no-nesterov, --adjust-lr, --orthogonalizer unless given):
               muon_mvr1|muon_mvr2 (--max-norm C (1: cap on the corrected gradient; 0 = none) --mvr-clip-inputs
               --mvr-first-step zero-prev|plain (zero-prev)), sumo (--update-interval K (200) --alpha A (1)
               --sumo-no-outer --sumo-limiter G (0 = off; the paper's 1.1)), muoneq (--equilibrate
               none|rows|cols|both (rows) --eq-exponent E (-0.5) --eq-eps (1e-12) --eq-phase S (0 = never)),
               lionmuon (--beta1 (0.9) --beta2 (0.99) --period P (2) --sign-lr-ratio R (0.05)), mimuon
               (--tau T (1e-6)), gluon (--gluon-mode stochastic|deterministic --gluon-constant-momentum
               --gluon-no-decay --l0 (0) --l1 (70))
               --steps N | --epochs E, --batch-size B --grad-accum A --block-size T --warmup W --min-lr-ratio R
               --eval-interval N --eval-batches N --checkpoint-interval N --keep K --resume --seed S
               --tokenizer auto|gpt2|byte --dropout P --attention sdpa|math (sdpa) --patch P --augment --device cpu|cuda
               --progress auto|bar|lines|none --config FILE.json (flags override the file)
               --init-weights F.safetensors (fine-tune from Hugging Face GPT-2 weights, e.g. distilgpt2)
               --max-samples N, --max-grad-evals N (gradient evaluations of one sample; LiMuon storm=exact
               spends two per sample from its second step), --max-seconds S (time in training steps; not
               reproducible): stop when spent, with a final evaluation and checkpoint; without --steps, the
               first two also set the step count (the lr schedule's length)
               --nproc N: data-parallel on N local ranks (c10d/Gloo; --batch-size is the global batch, split
               between ranks); or run under torchrun-style RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT;
               --dist-timeout S (300): seconds to wait for the other ranks before failing with an error
               --shard-state / --no-shard-state: each rank keeps the optimizer state of its share of the
               parameters only (ZeRO-1: gradients reduce-scattered to their owners, new weights all-gathered),
               or the whole state (replicated). Default: sharded with 2+ ranks where the configuration allows it
               (else replicated, with a note); --shard-state makes that an error instead
               --max-nonfinite N (10): a step whose loss or gradient is NaN/Inf is skipped (no update, counted
               as nonfinite_steps); after N such steps in a row the run stops with exit 1, naming the last
               good checkpoint (0: never stop). Checkpoints are never written with NaN/Inf in them.
               --inject-nonfinite SPEC (testing aid): poison chosen steps, SPEC a comma list of KIND:STEP or
               KIND:FIRST-LAST with KIND grad|grad-inf|loss|loss-inf (NaN, or Inf, into all gradients or
               into the loss value), e.g. grad:5,loss-inf:7,grad:8-12
  compare      --spec FILE.json --out DIR: run optimizer configs on one task (same init, data order and
               budget) over seeds and an optional lr sweep, each run a `limuon train` in DIR/runs/CONFIG/lrLR/seedS;
               writes DIR/report.md, DIR/report.json, DIR/plots/*.png (gnuplot); rerun to resume (finished runs
               are skipped, interrupted ones resumed). Spec format: docs/compare.md.
               --budget steps:N|samples:N|grad_evals:N|seconds:S and --seeds 0,1,.. override the spec;
               --stop-after-runs N, --report-only (rebuild the report from the runs), --dry-run (list the runs),
               --stop-after-steps S (testing aid: interrupt the next run after S steps, then stop),
               --live (show each run's progress lines as it trains)
  eval         --model NAME (--weights F.safetensors | --checkpoint DIR) --text-file F → JSON val_loss, ppl, tokens
               --task image --model NAME (--checkpoint DIR | --weights F.safetensors, Hugging Face ViT names or ours)
               [--data fashion-mnist|cifar10:DIR] → JSON val_loss, accuracy; --export-hf F.safetensors writes the
               weights under Hugging Face names (--export-dtype f32|f16|bf16), --logits-out F.safetensors the logits
  generate     --model NAME (--weights F | --checkpoint DIR) --prompt STR --max-new-tokens N --temperature T --top-k K --seed S
  tokenize     (--text STR | --text-file F) [--tokenizer gpt2|byte] [--decode] → token ids separated by spaces
  bench memory peak memory of one steady-state training step through the hybrid optimizer (each config in a
               fresh process): persistent state, peak live tensor bytes (counting CPU allocator, or the CUDA
               caching allocator's stats), peak RSS (VmHWM) above the pre-step RSS
               --model gpt2-tiny|gpt2-mini|distilgpt2|gpt2 (distilgpt2) --batch-size B (2) --block-size T (128)
               --configs adamw,muon,limuon:none|paper|light:exact|approx[:acc][:paper-preset],.. (all)
               --dropout P (model's) --warmup W (2) --device cpu|cuda --rank R (32) --orthogonalizer NAME (gram_ns)
               --json-out FILE (the rows as a JSON array)
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
  limuon::configure_reproducible_blas();  // before anything initialises MKL
  std::vector<std::string> argv_s(argv + 1, argv + argc);
  try {
    if (argv_s.empty() || argv_s[0] == "--help" || argv_s[0] == "-h" || argv_s[0] == "help") {
      std::cout << kUsage;
      return argv_s.empty() ? 2 : 0;
    }
    Args args(argv_s);
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
    if (pos.size() == 2 && pos[0] == "bench" && pos[1] == "memory") return limuon::cli::bench_memory(args, json);
    if (pos.size() == 2 && pos[0] == "bench" && pos[1] == "train-step") return limuon::cli::bench_train_step(args, json);
    if (pos.size() == 1 && pos[0] == "train" && args.has("nproc")) {
      const int nproc = static_cast<int>(args.integer("nproc", 1, 1, 256));
      if (std::getenv("RANK") || std::getenv("WORLD_SIZE"))
        throw UsageError("--nproc starts its own local ranks: run it without RANK/WORLD_SIZE in the environment, or drop "
                         "--nproc to join the job they describe");
      std::vector<std::string> rest;  // the same command, minus --nproc, for every rank
      for (size_t i = 0; i < argv_s.size(); ++i) {
        if (argv_s[i] == "--nproc") ++i;
        else if (argv_s[i].rfind("--nproc=", 0) != 0) rest.push_back(argv_s[i]);
      }
      limuon::cli::check_train_command(rest);  // once here, not once per rank
      return limuon::cli::launch_local(nproc, rest, 30);
    }
    if (pos.size() == 1 && pos[0] == "train") return limuon::cli::cmd_train(args);
    if (pos.size() == 1 && pos[0] == "compare") return limuon::cli::cmd_compare(args);
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
