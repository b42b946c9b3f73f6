// Training a model of your own with limuon::train (limuon/train/trainer.h): write a Task (the model
// and its data), build the hybrid optimizer over its parameters, and let the Trainer run budgets,
// LiMuon's two evaluations per step, checkpoints, metrics.jsonl, summary.json and progress.
//   build/limuon_train_custom [DIR]   (DIR: the run directory, resumed if it holds a run)
#include <limuon/optim/hybrid.h>
#include <limuon/optim/schedule.h>
#include <limuon/train/trainer.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <string>
#include <unistd.h>

namespace F = torch::nn::functional;

// Not one of limuon's models: a small MLP that learns the XOR of two coordinates' signs.
struct Net : torch::nn::Module {
  torch::nn::Linear l1{register_module("l1", torch::nn::Linear(2, 64))};
  torch::nn::Linear l2{register_module("l2", torch::nn::Linear(64, 64))};  // → LiMuon (a hidden matrix)
  torch::nn::Linear l3{register_module("l3", torch::nn::Linear(64, 2))};
  torch::Tensor forward(const torch::Tensor& x) { return l3(torch::relu(l2(torch::relu(l1(x))))); }
};

struct XorTask : limuon::train::Task {
  Net net;
  torch::Tensor xs = torch::randn({4096, 2}), ys = (xs.select(1, 0) * xs.select(1, 1) > 0).to(torch::kLong);
  torch::Tensor val_x = torch::randn({1024, 2}), val_y = (val_x.select(1, 0) * val_x.select(1, 1) > 0).to(torch::kLong);
  torch::Tensor x, y;
  int64_t next = 0, batch = 64;
  torch::nn::Module& module() override { return net; }
  void sample_step() override {  // the next batch in order; the position is saved with checkpoints
    x = xs.narrow(0, next, batch), y = ys.narrow(0, next, batch);
    next = (next + batch) % xs.size(0);
  }
  at::Tensor micro_loss(int64_t) override { return F::cross_entropy(net.forward(x), y); }  // called twice per LiMuon step
  limuon::train::EvalResult evaluate(int64_t) override {
    torch::NoGradGuard no_grad;
    auto logits = net.forward(val_x);
    return {F::cross_entropy(logits, val_y).item<double>(), logits.argmax(1).eq(val_y).to(torch::kDouble).mean().item<double>(),
            val_x.size(0)};
  }
  int64_t samples_per_micro() const override { return batch; }
  void save_position(torch::serialize::OutputArchive& a) const override { a.write("next", c10::IValue(next)); }
  void load_position(torch::serialize::InputArchive& a) override {
    c10::IValue v;
    a.read("next", v);
    next = v.toInt();
  }
};

int main(int argc, char** argv) {
  torch::manual_seed(0);
  const bool own_dir = argc < 2;
  const std::string dir = own_dir ? (std::filesystem::temp_directory_path() / ("limuon-train-custom-" + std::to_string(getpid()))).string()
                                  : argv[1];
  XorTask task;
  const double before = task.evaluate(0).loss;
  limuon::HybridOptions opts;  // hidden matrices → LiMuon (storm exact: two evaluations per step), the rest → AdamW
  opts.limuon = limuon::LiMuonOptions(0.02);
  opts.adamw = torch::optim::AdamWOptions(3e-3);
  limuon::HybridOptimizer opt(limuon::route_module(task.module()), opts);
  limuon::WarmupCosine schedule(opt.optimizers(), /*warmup_steps=*/10, /*total_steps=*/200);
  limuon::train::TrainerOptions o;
  o.out = dir, o.budget.steps = 200, o.eval_interval = 50, o.checkpoint_interval = 100, o.resume = !own_dir;
  o.progress = "lines", o.classification = true, o.model_name = "xor-mlp";
  const limuon::train::Summary s = limuon::train::Trainer(task, opt, schedule, o).run();
  std::cout << "val loss " << before << " -> " << s.final_eval.loss << ", accuracy " << s.final_eval.accuracy << " after "
            << s.counters.step << " steps, " << s.counters.evaluations << " gradient evaluations; run in " << dir << "\n";
  if (own_dir) std::filesystem::remove_all(dir);
  return s.final_eval.loss < 0.5 * before && s.final_eval.accuracy > 0.9 ? 0 : 1;  // CTest: it must learn
}
