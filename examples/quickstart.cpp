// limuon quick start: route a model's parameters (hidden matrices → LiMuon, the rest → AdamW),
// train with a closure and a warm-up + cosine schedule, save and resume. Built and run by CTest
// (exit status 0 only when the loss went down and the resumed run continues bit-identically).
#include <limuon/optim/hybrid.h>
#include <limuon/optim/schedule.h>
#include <limuon/threads.h>

#include <torch/torch.h>

#include <iostream>
#include <sstream>

// A small next-token model: embedding → two hidden layers → tied output head.
struct TinyNet : torch::nn::Module {
  TinyNet() {
    embed = register_module("embed", torch::nn::Embedding(32, 48));
    fc1 = register_module("fc1", torch::nn::Linear(48, 192));
    fc2 = register_module("fc2", torch::nn::Linear(192, 48));
    torch::NoGradGuard no_grad;
    embed->weight.mul_(0.1);  // small embeddings: the tied head starts near uniform logits
  }
  torch::Tensor forward(const torch::Tensor& tokens) {
    auto h = embed->forward(tokens);
    h = h + fc2->forward(torch::gelu(fc1->forward(h)));
    return torch::matmul(h, embed->weight.t());  // logits, head tied to the embedding
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

int main() {
  limuon::configure_threads();  // all cores (LibTorch starts with one)
  torch::manual_seed(0);
  TinyNet model;
  // Data: learn "next token = (token * 7 + 3) mod 32".
  auto x = torch::randint(0, 32, {256});
  auto y = (x * 7 + 3).remainder(32);

  auto routing = limuon::route_module(model);  // embeddings, biases → AdamW
  std::cout << limuon::format_routing(routing);
  limuon::HybridOptions opts;
  opts.method = limuon::MatrixMethod::limuon;
  opts.limuon = limuon::LiMuonOptions(0.05).beta(0.1).lowrank_state(limuon::LowRankState::light).rank(16);
  opts.adamw = torch::optim::AdamWOptions(3e-3).weight_decay(0.0);
  limuon::HybridOptimizer opt(routing, opts);
  limuon::WarmupCosine schedule(opt.optimizers(), /*warmup_steps=*/5, /*total_steps=*/60);

  // LiMuon (storm = exact) calls the closure twice per step, on the same batch.
  torch::Tensor batch_x, batch_y;
  auto closure = [&] {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model.forward(batch_x), batch_y);
    loss.backward();
    return loss;
  };
  auto train_step = [&](int step) {
    auto idx = torch::arange(step * 32, step * 32 + 32).remainder(256);
    batch_x = x.index_select(0, idx);
    batch_y = y.index_select(0, idx);
    auto loss = opt.step(closure).item<double>();
    schedule.step();
    return loss;
  };
  double first = train_step(0), last = first;
  for (int step = 1; step < 40; ++step) last = train_step(step);
  std::cout << "loss " << first << " -> " << last << " (" << opt.evaluations() << " gradient evaluations, "
            << opt.state_bytes() << " bytes of optimizer state)\n";

  // Checkpoint: optimizer (with lrs and step counts) and schedule; model weights via torch::save.
  std::stringstream ckpt;
  {
    torch::serialize::OutputArchive archive;
    opt.save(archive);
    torch::serialize::OutputArchive sched;
    schedule.save(sched);
    archive.write("schedule", sched);
    archive.save_to(ckpt);
  }
  TinyNet resumed;
  {
    torch::NoGradGuard no_grad;
    auto src = model.parameters(), dst = resumed.parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  }
  limuon::HybridOptimizer opt2(limuon::route_module(resumed), opts);
  limuon::WarmupCosine schedule2(opt2.optimizers(), 5, 60);
  torch::serialize::InputArchive in;
  in.load_from(ckpt);
  opt2.load(in);
  torch::serialize::InputArchive sched_in;
  in.read("schedule", sched_in);
  schedule2.load(sched_in);

  // One more step on both: identical to the last bit.
  auto idx = torch::arange(0, 32);
  batch_x = x.index_select(0, idx);
  batch_y = y.index_select(0, idx);
  opt.step(closure);
  auto closure2 = [&] {
    opt2.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(resumed.forward(batch_x), batch_y);
    loss.backward();
    return loss;
  };
  opt2.step(closure2);
  bool same = true;
  auto a = model.parameters(), b = resumed.parameters();
  for (size_t i = 0; i < a.size(); ++i) same = same && torch::equal(a[i], b[i]);
  std::cout << "resumed run identical: " << (same ? "yes" : "no") << "\n";
  return (last < 0.5 * first && same) ? 0 : 1;
}
