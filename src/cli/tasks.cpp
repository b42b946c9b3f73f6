// Our models on our data as limuon::train tasks (see train_config.h): GPT-2 family language models
// on text (LmTask) and ViTs on Fashion-MNIST / CIFAR-10 (ImageTask).
#include "train_config.h"

#include "limuon/data/images.h"
#include "limuon/io/safetensors.h"
#include "limuon/data/text.h"
#include "limuon/models/gpt2.h"
#include "limuon/models/vit.h"
#include "limuon/optim/hybrid.h"
#include "limuon/train/trainer.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace limuon::cli {

using train::EvalResult;
using train::Task;

std::unique_ptr<data::Tokenizer> tokenizer_for(const std::string& name, int64_t vocab) {
  std::string n = name;
  if (n == "auto") n = vocab <= 257 ? "byte" : "gpt2";
  auto tok = data::make_tokenizer(n);
  if (tok->vocab_size() > vocab)
    throw UsageError("--tokenizer: '" + n + "' has " + std::to_string(tok->vocab_size()) + " tokens but the model's vocabulary is " +
                     std::to_string(vocab));
  return tok;
}

namespace {

struct LmTask : Task {
  models::GPT2 model{nullptr};
  std::unique_ptr<data::Tokenizer> tok;
  data::TokenSplits splits;
  std::unique_ptr<data::WindowSampler> sampler;
  std::vector<std::pair<at::Tensor, at::Tensor>> batches;
  int64_t B, T, A;
  torch::Device device;
  std::string source;

  LmTask(const Config& c, torch::Device dev) : B(c.batch), A(c.accum), device(dev) {
    auto cfg = models::gpt2_config(c.model);
    if (c.dropout >= 0) cfg.dropout = c.dropout;
    cfg.attention = models::attention_from_name(c.attention);
    T = c.block > 0 ? c.block : std::min<int64_t>(cfg.n_ctx, 128);
    if (T > cfg.n_ctx) throw UsageError("--block-size: " + std::to_string(T) + " exceeds the model context " + std::to_string(cfg.n_ctx));
    tok = tokenizer_for(c.tokenizer, cfg.vocab_size);
    auto parts = split_list(c.data);
    if (parts.size() == 2 && parts[0].size() > 4 && parts[0].substr(parts[0].size() - 4) == ".bin") {
      splits = data::load_token_splits(parts[0], parts[1]);
      source = "shards " + parts[0] + ", " + parts[1];
    } else {
      auto docs = c.data == "default" ? data::default_corpus_documents() : data::read_text_documents(parts);
      source = c.data == "default" ? "default corpus (" + std::to_string(docs.size()) + " documents)" : c.data;
      splits = data::build_token_splits(docs, *tok, data::data_dir() + "/cache", c.val_fraction);
    }
    data::check_token_range(splits.train, cfg.vocab_size, splits.train_path.empty() ? "training tokens" : splits.train_path);
    data::check_token_range(splits.val, cfg.vocab_size, splits.val_path.empty() ? "validation tokens" : splits.val_path);
    if (static_cast<int64_t>(splits.val.size()) < T + 1)
      throw UsageError("--data: the validation split has " + std::to_string(splits.val.size()) + " tokens, fewer than --block-size + 1");
    sampler = std::make_unique<data::WindowSampler>(&splits.train, B, T, static_cast<uint64_t>(c.seed));
    model = models::GPT2(cfg);
    if (!c.init_weights.empty()) {
      // Fine-tuning: e.g. a Hugging Face distilgpt2 model.safetensors with --model distilgpt2.
      models::gpt2_from_hf(*model, io::read_safetensors(c.init_weights).tensors);
      source += "; initial weights " + c.init_weights;
    }
    model->to(device);
  }
  torch::nn::Module& module() override { return *model; }
  void sample_step() override {
    batches.clear();
    for (int64_t a = 0; a < A; ++a) {
      auto xy = sampler->next();
      batches.emplace_back(xy.first.to(device), xy.second.to(device));
    }
  }
  at::Tensor micro_loss(int64_t a) override { return model->loss(shard(batches[a].first), shard(batches[a].second)); }
  EvalResult evaluate(int64_t max_batches) override {
    torch::NoGradGuard ng;
    model->eval();
    EvalResult r;
    double total = 0;
    for (auto& xy : data::sequential_batches(splits.val, B, T, max_batches)) {
      const int64_t n = xy.first.numel();
      total += model->loss(xy.first.to(device), xy.second.to(device)).item<double>() * static_cast<double>(n);
      r.count += n;
    }
    model->train();
    r.loss = r.count ? total / static_cast<double>(r.count) : NAN;
    return r;
  }
  int64_t samples_per_micro() const override { return B; }
  int64_t tokens_per_micro() const override { return B * T; }
  int64_t train_samples() const override { return static_cast<int64_t>(splits.train.size()) / T; }
  const char* unit() const override { return "tok"; }
  void save_position(torch::serialize::OutputArchive& a) const override {
    a.write("sampler_step", c10::IValue(sampler->step()));
  }
  void load_position(torch::serialize::InputArchive& a) override {
    c10::IValue v;
    a.read("sampler_step", v);
    sampler->set_step(v.toInt());
  }
  std::vector<std::pair<std::string, at::Tensor>> weights() override {
    auto w = models::gpt2_to_hf(*model);
    for (auto& p : w) p.second = p.second.cpu();
    return w;
  }
  std::string describe() const override {
    std::ostringstream os;
    os << "task lm: " << model->config.name << " (" << model->num_parameters() << " parameters, " << model->config.n_layer << " layers, width "
       << model->config.n_embd << ", " << model->config.n_head << " heads, vocab " << model->config.vocab_size << "), context " << T
       << ", tokenizer " << tok->name() << "; data: " << source << ", " << splits.train.size() << " train / " << splits.val.size()
       << " validation tokens";
    return os.str();
  }
};

struct ImageTask : Task {
  models::ViT model{nullptr};
  data::ImageDataset train, test;
  std::unique_ptr<data::ImageBatcher> batcher;
  std::vector<std::pair<at::Tensor, at::Tensor>> batches;
  int64_t B, A, pad, step_seed = 0;
  bool augment;
  uint64_t seed;
  torch::Device device;
  std::string source;

  ImageTask(const Config& c, torch::Device dev)
      : B(c.batch), A(c.accum), pad(c.pad), augment(c.augment), seed(static_cast<uint64_t>(c.seed)), device(dev) {
    if (c.data == "fashion-mnist") {
      const char* env = std::getenv("LIMUON_FASHION_MNIST_DIR");
      const std::string dir = env && *env ? env : "/usr/share/datasets/fashion-mnist";
      train = data::load_fashion_mnist(dir, "train");
      test = data::load_fashion_mnist(dir, "test");
      source = "Fashion-MNIST (" + dir + ")";
    } else if (c.data.rfind("cifar10:", 0) == 0) {
      const std::string dir = c.data.substr(8);
      train = data::load_cifar10(dir, "train");
      test = data::load_cifar10(dir, "test");
      source = "CIFAR-10 (" + dir + ")";
    } else {
      throw UsageError("--data: unknown image data '" + c.data + "' (valid: fashion-mnist, cifar10:DIR)");
    }
    if (!c.init_weights.empty()) throw UsageError("--init-weights: only supported for --task lm (GPT-2 weights)");
    auto cfg = models::vit_config(c.model, train.images.size(2), train.images.size(1), train.num_classes, c.patch);
    if (c.dropout >= 0) cfg.dropout = c.dropout;
    cfg.attention = models::attention_from_name(c.attention);
    model = models::ViT(cfg);
    model->to(device);
    batcher = std::make_unique<data::ImageBatcher>(&train, B, seed);
  }
  torch::nn::Module& module() override { return *model; }
  at::Tensor prepare(const at::Tensor& u8, bool train_mode) {
    at::Tensor x = data::normalize(u8, train.mean, train.std);
    if (train_mode && augment) x = data::augment(x, pad, true, seed ^ static_cast<uint64_t>(0x9E3779B97F4A7C15ULL * ++step_seed));
    return x.to(device);
  }
  void sample_step() override {
    batches.clear();
    for (int64_t a = 0; a < A; ++a) {
      auto xy = batcher->next();
      batches.emplace_back(prepare(xy.first, true), xy.second.to(device));
    }
  }
  at::Tensor micro_loss(int64_t a) override { return model->loss(shard(batches[a].first), shard(batches[a].second)); }
  EvalResult evaluate(int64_t max_batches) override {
    torch::NoGradGuard ng;
    model->eval();
    EvalResult r;
    double total = 0;
    int64_t correct = 0;
    const int64_t n = test.images.size(0);
    for (int64_t i = 0, b = 0; i < n && b < max_batches; i += B, ++b) {
      const int64_t len = std::min(B, n - i);
      at::Tensor x = prepare(test.images.narrow(0, i, len), false);
      at::Tensor y = test.labels.narrow(0, i, len).to(device);
      at::Tensor logits = model->forward(x);
      total += torch::nn::functional::cross_entropy(logits, y).item<double>() * static_cast<double>(len);
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      r.count += len;
    }
    model->train();
    r.loss = r.count ? total / static_cast<double>(r.count) : NAN;
    r.accuracy = r.count ? static_cast<double>(correct) / static_cast<double>(r.count) : NAN;
    return r;
  }
  int64_t samples_per_micro() const override { return B; }
  int64_t tokens_per_micro() const override { return B; }
  int64_t train_samples() const override { return train.images.size(0); }
  const char* unit() const override { return "img"; }
  void save_position(torch::serialize::OutputArchive& a) const override {
    a.write("batcher_epoch", c10::IValue(batcher->epoch()));
    a.write("batcher_index", c10::IValue(batcher->index()));
    a.write("augment_step", c10::IValue(step_seed));
  }
  void load_position(torch::serialize::InputArchive& a) override {
    c10::IValue e, i, s;
    a.read("batcher_epoch", e);
    a.read("batcher_index", i);
    a.read("augment_step", s);
    batcher->set_position(e.toInt(), i.toInt());
    step_seed = s.toInt();
  }
  std::vector<std::pair<std::string, at::Tensor>> weights() override {
    std::vector<std::pair<std::string, at::Tensor>> w;
    for (const auto& p : model->named_parameters()) w.emplace_back(p.key(), p.value().detach().cpu().contiguous());
    return w;
  }
  std::string describe() const override {
    std::ostringstream os;
    int64_t n = 0;
    for (const auto& p : model->parameters()) n += p.numel();
    os << "task image: " << model->config.name << " (" << n << " parameters, depth " << model->config.depth << ", width "
       << model->config.dim << ", patch " << model->config.patch << "); data: " << source << ", " << train.images.size(0)
       << " train / " << test.images.size(0) << " test images" << (augment ? ", augmented" : "");
    return os.str();
  }
};

// Shapes of every parameter, to refuse a checkpoint written for another model.
}  // namespace

std::unique_ptr<Task> make_task(const Config& c, torch::Device device) {
  if (c.task == "lm") return std::make_unique<LmTask>(c, device);
  return std::make_unique<ImageTask>(c, device);
}

}  // namespace limuon::cli
