// limuon::train in-process (limuon/train/trainer.h): budgets stop at the right step, the closure
// evaluates twice on the same random state for two-evaluation methods, checkpoints rotate and a
// resumed run is bit-identical, metrics and summary are written, a used directory is refused.
#include "limuon/optim/hybrid.h"
#include "limuon/optim/schedule.h"
#include "limuon/train/checkpoint.h"
#include "limuon/train/trainer.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using limuon::train::Budget;
using limuon::train::Counters;
using limuon::train::Trainer;
using limuon::train::TrainerOptions;

namespace {

struct Mlp : torch::nn::Module {
  torch::nn::Linear a{register_module("a", torch::nn::Linear(8, 16))};
  torch::nn::Linear b{register_module("b", torch::nn::Linear(16, 4))};
  torch::Tensor forward(const torch::Tensor& x) { return b(torch::tanh(a(x))); }
};

// Regression on fixed data; batches in order (the position is checkpointed). With `noisy`, the
// loss adds a term drawn from the global generator and records every draw.
struct TinyTask : limuon::train::Task {
  Mlp net;
  torch::Tensor xs, ys, x, y;
  int64_t next = 0, batch = 4;
  bool noisy = false;
  std::vector<torch::Tensor> draws;
  TinyTask() {
    auto g = at::make_generator<at::CPUGeneratorImpl>(7);
    xs = torch::randn({64, 8}, g);
    ys = torch::randn({64, 4}, g);
  }
  torch::nn::Module& module() override { return net; }
  void sample_step() override {
    x = xs.narrow(0, next, batch), y = ys.narrow(0, next, batch);
    next = (next + batch) % xs.size(0);
  }
  at::Tensor micro_loss(int64_t) override {
    auto loss = (net.forward(x) - y).pow(2).mean();
    if (noisy) {
      auto r = torch::rand({3});
      draws.push_back(r);
      loss = loss + 1e-3 * (net.forward(x) * r.sum()).mean();
    }
    return loss;
  }
  limuon::train::EvalResult evaluate(int64_t) override {
    torch::NoGradGuard ng;
    return {(net.forward(xs) - ys).pow(2).mean().item<double>(), -1, xs.size(0)};
  }
  int64_t samples_per_micro() const override { return batch; }
  void save_position(torch::serialize::OutputArchive& a) const override { a.write("next", c10::IValue(next)); }
  void load_position(torch::serialize::InputArchive& a) override {
    c10::IValue v;
    a.read("next", v);
    next = v.toInt();
  }
};

// A task, its optimizer and schedule, built the same way every time (same seed → same weights).
struct Rig {
  std::unique_ptr<TinyTask> task;
  std::unique_ptr<limuon::HybridOptimizer> opt;
  std::unique_ptr<limuon::WarmupCosine> sched;
  Rig(limuon::MatrixMethod method, int64_t steps) {
    torch::manual_seed(3);
    task = std::make_unique<TinyTask>();
    limuon::HybridOptions o;
    o.method = method;
    o.limuon = limuon::LiMuonOptions(0.02);
    o.muon = limuon::MuonOptions(0.02);
    o.adamw = torch::optim::AdamWOptions(3e-3);
    opt = std::make_unique<limuon::HybridOptimizer>(limuon::route_module(task->module()), o);
    sched = std::make_unique<limuon::WarmupCosine>(opt->optimizers(), 1, steps, 0.1);
  }
};

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("limuon-trainer-test-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(counter()++));
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

TrainerOptions options(const fs::path& out, int64_t steps) {
  TrainerOptions o;
  o.out = out.string();
  o.budget.steps = steps;
  o.progress = "none";
  o.eval_interval = 0;
  o.checkpoint_interval = 0;
  return o;
}

std::vector<nlohmann::json> read_lines(const fs::path& p) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

}  // namespace

TEST(TrainerBudget, SpentNamesTheFirstBudgetReached) {
  Budget b;
  b.steps = 10;
  b.max_samples = 20;
  Counters c;
  EXPECT_EQ(b.spent(c), nullptr);
  c.step = 5, c.samples = 20;
  EXPECT_STREQ(b.spent(c), "samples");
  c.samples = 0, c.step = 10;
  EXPECT_STREQ(b.spent(c), "steps");
  b.max_seconds = 1.0;
  c.step = 1, c.wall_s = 2.0;
  EXPECT_STREQ(b.spent(c), "seconds");
}

TEST(TrainerBudget, StepsForBudgetCountsTwoEvaluationsFromTheSecondStep) {
  Budget b;
  b.max_samples = 10;
  EXPECT_EQ(limuon::train::steps_for_budget(b, 4, false), 3);  // 4, 8, 12 samples
  b.max_samples = 0;
  b.max_grad_evals = 20;
  EXPECT_EQ(limuon::train::steps_for_budget(b, 4, false), 5);
  // two evaluations: 4, then 8 per step → 4, 12, 20
  EXPECT_EQ(limuon::train::steps_for_budget(b, 4, true), 3);
  EXPECT_THROW(limuon::train::steps_for_budget(b, 0, true), std::invalid_argument);
}

TEST(Trainer, StopsWhenSamplesAreSpent) {
  TempDir d;
  Rig s(limuon::MatrixMethod::muon, 100);
  auto o = options(d.path, 100);
  o.budget.max_samples = 10;
  auto r = Trainer(*s.task, *s.opt, *s.sched, o).run();
  EXPECT_EQ(r.counters.step, 3);
  EXPECT_EQ(r.counters.samples, 12);
  EXPECT_EQ(r.stopped_by, "samples");
}

TEST(Trainer, StopsWhenGradientEvaluationsAreSpentTwoPerLiMuonStep) {
  TempDir d;
  Rig s(limuon::MatrixMethod::limuon, 100);
  auto o = options(d.path, 100);
  o.budget.max_grad_evals = 20;
  auto r = Trainer(*s.task, *s.opt, *s.sched, o).run();
  EXPECT_EQ(r.counters.step, limuon::train::steps_for_budget(o.budget, 4, true));
  EXPECT_EQ(r.counters.step, 3);
  EXPECT_EQ(r.counters.evaluations, 5);
  EXPECT_EQ(r.counters.grad_evals, 20);
  EXPECT_EQ(r.stopped_by, "grad_evals");
}

TEST(Trainer, StopsWhenSecondsAreSpent) {
  TempDir d;
  Rig s(limuon::MatrixMethod::muon, 100);
  auto o = options(d.path, 100);
  o.budget.max_seconds = 1e-9;
  auto r = Trainer(*s.task, *s.opt, *s.sched, o).run();
  EXPECT_EQ(r.counters.step, 1);
  EXPECT_EQ(r.stopped_by, "seconds");
}

TEST(Trainer, TwoEvaluationsOfAStepDrawTheSameRandomNumbers) {
  TempDir d;
  Rig s(limuon::MatrixMethod::limuon, 3);
  s.task->noisy = true;
  auto r = Trainer(*s.task, *s.opt, *s.sched, options(d.path, 3)).run();
  EXPECT_EQ(r.counters.evaluations, 1 + 2 * 2);
  ASSERT_EQ(s.task->draws.size(), 5u);
  EXPECT_TRUE(torch::equal(s.task->draws[1], s.task->draws[2]));  // step 2: old and new point
  EXPECT_TRUE(torch::equal(s.task->draws[3], s.task->draws[4]));  // step 3
  EXPECT_FALSE(torch::equal(s.task->draws[2], s.task->draws[3]));  // a new step, new numbers
}

TEST(Trainer, OneEvaluationPerStepForMuon) {
  TempDir d;
  Rig s(limuon::MatrixMethod::muon, 4);
  auto r = Trainer(*s.task, *s.opt, *s.sched, options(d.path, 4)).run();
  EXPECT_EQ(r.counters.evaluations, 4);
  EXPECT_EQ(r.counters.grad_evals, 16);
}

TEST(Trainer, CheckpointsRotate) {
  TempDir d;
  Rig s(limuon::MatrixMethod::limuon, 5);
  auto o = options(d.path, 5);
  o.checkpoint_interval = 1;
  o.keep = 2;
  Trainer(*s.task, *s.opt, *s.sched, o).run();
  std::vector<std::string> names;
  for (const auto& p : limuon::train::list_checkpoints(d.path.string())) names.push_back(fs::path(p).filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"ckpt_00000004.pt", "ckpt_00000005.pt"}));
}

TEST(Trainer, ResumedRunIsBitIdenticalToAnUninterruptedOne) {
  const int threads = at::get_num_threads();
  at::set_num_threads(1);  // bit-identity across runs is guaranteed single-threaded (README)
  TempDir full, part;
  Rig a(limuon::MatrixMethod::limuon, 5);
  Trainer(*a.task, *a.opt, *a.sched, options(full.path, 5)).run();
  {
    Rig b(limuon::MatrixMethod::limuon, 5);
    auto o = options(part.path, 5);
    o.stop_after = 3;
    EXPECT_EQ(Trainer(*b.task, *b.opt, *b.sched, o).run().stopped_by, "stop_after");
  }
  Rig c(limuon::MatrixMethod::limuon, 5);
  auto o = options(part.path, 5);
  o.resume = true;
  Trainer t(*c.task, *c.opt, *c.sched, o);
  auto r = t.run();
  at::set_num_threads(threads);
  EXPECT_EQ(fs::path(t.resumed_from()).filename().string(), "ckpt_00000003.pt");
  EXPECT_EQ(r.counters.step, 5);
  EXPECT_EQ(r.counters.evaluations, 9);
  auto pa = a.task->net.parameters(), pc = c.task->net.parameters();
  ASSERT_EQ(pa.size(), pc.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pc[i])) << "parameter " << i;
}

TEST(Trainer, WritesOneMetricsLinePerStepAndTheSummary) {
  TempDir d;
  Rig s(limuon::MatrixMethod::limuon, 6);
  auto o = options(d.path, 6);
  o.eval_interval = 3;
  auto r = Trainer(*s.task, *s.opt, *s.sched, o).run();
  auto rows = read_lines(d.path / "metrics.jsonl");
  std::vector<int64_t> steps, evals;
  for (const auto& row : rows) {
    if (row.contains("loss")) {
      steps.push_back(row["step"].get<int64_t>());
      for (const char* k : {"samples", "grad_evals", "lr", "ms_per_step", "samples_per_s", "optimizer_state_bytes"})
        EXPECT_TRUE(row.contains(k)) << k;
    }
    if (row.contains("val_loss")) evals.push_back(row["step"].get<int64_t>());
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(evals, (std::vector<int64_t>{3, 6}));
  std::ifstream in(d.path / "summary.json");
  const auto summary = nlohmann::json::parse(in);
  EXPECT_EQ(summary["steps"].get<int64_t>(), 6);
  EXPECT_DOUBLE_EQ(summary["final_val_loss"].get<double>(), r.final_eval.loss);
  EXPECT_TRUE(fs::exists(d.path / "model.safetensors"));
  EXPECT_EQ(r.summary_json.empty(), false);
}

TEST(Trainer, RefusesADirectoryHoldingCheckpointsUnlessResuming) {
  TempDir d;
  {
    Rig s(limuon::MatrixMethod::muon, 2);
    Trainer(*s.task, *s.opt, *s.sched, options(d.path, 2)).run();
  }
  const auto before = fs::last_write_time(d.path / "ckpt_00000002.pt");
  Rig s(limuon::MatrixMethod::muon, 2);
  EXPECT_THROW(Trainer(*s.task, *s.opt, *s.sched, options(d.path, 2)), std::invalid_argument);
  EXPECT_EQ(fs::last_write_time(d.path / "ckpt_00000002.pt"), before);
  auto o = options(d.path, 2);
  o.resume = true;
  EXPECT_EQ(Trainer(*s.task, *s.opt, *s.sched, o).run().counters.step, 2);  // already done: nothing to train
}

TEST(Trainer, RejectsBadOptionsByName) {
  TempDir d;
  Rig s(limuon::MatrixMethod::muon, 2);
  auto o = options(d.path, 0);
  try {
    Trainer(*s.task, *s.opt, *s.sched, o);
    FAIL() << "steps 0 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("budget.steps"), std::string::npos) << e.what();
  }
  o = options(d.path, 2);
  o.progress = "fancy";
  EXPECT_THROW(Trainer(*s.task, *s.opt, *s.sched, o), std::invalid_argument);
  o = options(d.path, 2);
  o.inject_nonfinite = "grad:0";
  EXPECT_THROW(Trainer(*s.task, *s.opt, *s.sched, o), std::invalid_argument);
}

TEST(TrainerParts, ClipGradNormReturnsTheNormBeforeAndClipsToTheBound) {
  Mlp net;
  for (auto& p : net.parameters()) p.mutable_grad() = torch::full_like(p, 2.0);
  double expected = 0;
  for (auto& p : net.parameters()) expected += 4.0 * p.numel();
  expected = std::sqrt(expected);
  EXPECT_NEAR(limuon::train::clip_grad_norm(net, 1.0), expected, 1e-6 * expected);  // float32 norms
  double after = 0;
  for (auto& p : net.parameters()) after += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(after), 1.0, 1e-5);
  std::vector<torch::Tensor> kept;
  for (auto& p : net.parameters()) kept.push_back(p.grad().clone());
  EXPECT_NEAR(limuon::train::clip_grad_norm(net, 10.0), std::sqrt(after), 1e-6);
  auto ps = net.parameters();
  for (size_t i = 0; i < ps.size(); ++i) EXPECT_TRUE(torch::equal(ps[i].grad(), kept[i]));  // a loose bound changes nothing
}

TEST(TrainerParts, FaultPlanParsesRangesAndRejectsBadItems) {
  auto plan = limuon::train::FaultPlan::parse("grad:2,loss-inf:3-4");
  ASSERT_EQ(plan.items.size(), 2u);
  EXPECT_NE(plan.at(2, false), nullptr);
  EXPECT_EQ(plan.at(2, true), nullptr);
  ASSERT_NE(plan.at(4, true), nullptr);
  EXPECT_TRUE(std::isinf(*plan.at(4, true)));
  EXPECT_EQ(plan.at(5, true), nullptr);
  for (const char* bad : {"grad", "grad:x", "fire:2", "loss:4-3", "grad:0", ","})
    EXPECT_THROW(limuon::train::FaultPlan::parse(bad), std::invalid_argument) << bad;
}
