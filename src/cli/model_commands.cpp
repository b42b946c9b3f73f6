// `limuon eval | generate | tokenize` and `limuon bench train-step`: using trained models.
#include "train.h"
#include "train_config.h"

#include "limuon/io/safetensors.h"
#include "limuon/train/checkpoint.h"
#include "limuon/data/images.h"
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
#include <chrono>

namespace fs = std::filesystem;

namespace limuon::cli {

namespace {
// The parameters of the newest checkpoint in `dir` (written by limuon train for `model_name`) into
// `model`; an error names the directory or the model the checkpoint was written for.
void load_weights_from_checkpoint(torch::nn::Module& model, const std::string& dir, const std::string& model_name) {
  auto all = train::list_checkpoints(dir);
  if (all.empty()) throw std::runtime_error("--checkpoint: no checkpoint in '" + dir + "'");
  torch::serialize::InputArchive a;
  a.load_from(all.back());
  c10::IValue sig;
  a.read("signature", sig);
  if (sig.toStringRef() != train::model_signature(model, model_name))
    throw std::runtime_error("--checkpoint: " + all.back() + " was not written for model '" + model_name + "'");
  torch::serialize::InputArchive m;
  a.read("model", m);
  torch::NoGradGuard ng;
  for (auto& p : model.named_parameters()) {
    at::Tensor t;
    m.read(p.key(), t);
    p.value().copy_(t);
  }
}

// A GPT-2 model from --weights FILE.safetensors (HF names) or --checkpoint DIR.
models::GPT2 load_gpt2(Args& args, const std::string& model_name) {
  const std::string weights = args.str("weights", ""), ckpt = args.str("checkpoint", "");
  if (weights.empty() == ckpt.empty()) throw UsageError("give exactly one of --weights FILE.safetensors or --checkpoint DIR");
  models::GPT2 model(models::gpt2_config(model_name));
  if (!weights.empty()) {
    auto st = io::read_safetensors(weights);
    models::gpt2_from_hf(*model, st.tensors);
  } else {
    load_weights_from_checkpoint(*model, ckpt, model_name);
  }
  model->eval();
  return model;
}
}  // namespace

namespace {
// eval --task image: loss and accuracy of a ViT on the test split, from --checkpoint DIR (written by
// limuon train) or --weights F.safetensors (Hugging Face ViTForImageClassification names, or the
// model.safetensors limuon train writes; see vit_from_hf). --export-hf F.safetensors writes the
// weights under HF names in --export-dtype f32|f16|bf16; --logits-out F.safetensors writes the
// test split's logits (F32 [N, classes]) and labels (I64 [N]).
int eval_image(Args& args) {
  const std::string model_name = args.str("model", "vit-test");
  const std::string ckpt = args.str("checkpoint", ""), weights = args.str("weights", "");
  const std::string data = args.str("data", "fashion-mnist");
  const std::string export_hf = args.str("export-hf", ""), export_dtype = args.str("export-dtype", "f32");
  const std::string logits_out = args.str("logits-out", "");
  const int64_t patch = args.integer("patch", 4, 1, 1024);
  const int64_t batch = args.integer("batch-size", 256, 1, 1 << 20);
  args.finish();
  if (ckpt.empty() == weights.empty())
    throw UsageError("give exactly one of --checkpoint DIR (written by limuon train) or --weights FILE.safetensors for --task image");
  const std::map<std::string, at::ScalarType> dtypes = {{"f32", at::kFloat}, {"f16", at::kHalf}, {"bf16", at::kBFloat16}};
  if (!dtypes.count(export_dtype)) throw UsageError("--export-dtype: '" + export_dtype + "' (valid: f32, f16, bf16)");
  data::ImageDataset test;
  if (data == "fashion-mnist") {
    const char* env = std::getenv("LIMUON_FASHION_MNIST_DIR");  // as limuon train
    test = data::load_fashion_mnist(env && *env ? env : "", "test");
  } else if (data.rfind("cifar10:", 0) == 0) {
    test = data::load_cifar10(data.substr(8), "test");
  } else {
    throw UsageError("--data: unknown image data '" + data + "' (valid: fashion-mnist, cifar10:DIR)");
  }
  models::ViT model(models::vit_config(model_name, test.images.size(2), test.images.size(1), test.num_classes, patch));
  if (!weights.empty()) {
    models::vit_from_hf(*model, io::read_safetensors(weights).tensors);
  } else {
    load_weights_from_checkpoint(*model, ckpt, model_name);
  }
  model->eval();
  if (!export_hf.empty()) {
    auto hf = models::vit_to_hf(*model);
    for (auto& p : hf) p.second = p.second.to(dtypes.at(export_dtype));
    io::write_safetensors(export_hf, hf, {{"format", "pt"}, {"limuon_model", model_name}});
  }
  torch::NoGradGuard ng;
  double total = 0;
  int64_t correct = 0, n = test.images.size(0);
  std::vector<at::Tensor> all_logits;
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t len = std::min(batch, n - i);
    at::Tensor x = data::normalize(test.images.narrow(0, i, len), test.mean, test.std);
    at::Tensor y = test.labels.narrow(0, i, len);
    at::Tensor logits = model->forward(x);
    total += torch::nn::functional::cross_entropy(logits, y).item<double>() * static_cast<double>(len);
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    if (!logits_out.empty()) all_logits.push_back(logits);
  }
  if (!logits_out.empty())
    io::write_safetensors(logits_out, {{"logits", at::cat(all_logits, 0)}, {"labels", test.labels}}, {{"limuon_model", model_name}});
  std::cout << json{{"val_loss", total / static_cast<double>(n)}, {"accuracy", static_cast<double>(correct) / static_cast<double>(n)},
                    {"images", n}, {"model", model_name}}
                   .dump()
            << std::endl;
  return 0;
}
}  // namespace

int cmd_eval(Args& args) {
  if (args.str("task", "lm") == "image") return eval_image(args);
  const std::string model_name = args.str("model", "gpt2-byte-small");
  const std::string text_file = args.str("text-file", "");
  const std::string tok_name = args.str("tokenizer", "auto");
  const int64_t block = args.integer("block-size", 0, 0, 1 << 20);
  const int64_t batch = args.integer("batch-size", 8, 1, 1 << 20);
  const int64_t max_batches = args.integer("max-batches", 1000000, 1, INT64_MAX);
  if (text_file.empty()) throw UsageError("--text-file: required");
  auto model = load_gpt2(args, model_name);
  args.finish();
  auto tok = tokenizer_for(tok_name, model->config.vocab_size);
  auto docs = data::read_text_documents({text_file});
  std::vector<uint16_t> tokens;
  for (int32_t id : tok->encode(docs[0])) tokens.push_back(static_cast<uint16_t>(id));
  const int64_t T = block > 0 ? block : std::min<int64_t>(model->config.n_ctx, 128);
  if (static_cast<int64_t>(tokens.size()) < T + 1)
    throw UsageError("--text-file: '" + text_file + "' has " + std::to_string(tokens.size()) + " tokens, fewer than block size + 1");
  torch::NoGradGuard ng;
  double total = 0;
  int64_t count = 0;
  for (auto& xy : data::sequential_batches(tokens, batch, T, max_batches)) {
    total += model->loss(xy.first, xy.second).item<double>() * static_cast<double>(xy.first.numel());
    count += xy.first.numel();
  }
  const double loss = total / static_cast<double>(count);
  std::cout << json{{"val_loss", loss}, {"ppl", std::exp(loss)}, {"tokens", count}, {"model", model_name}}.dump() << std::endl;
  return 0;
}

int cmd_generate(Args& args) {
  const std::string model_name = args.str("model", "gpt2-byte-small");
  const std::string prompt = args.str("prompt", "\n");
  const std::string tok_name = args.str("tokenizer", "auto");
  const int64_t n = args.integer("max-new-tokens", 100, 1, 1 << 20);
  const double temperature = args.real("temperature", 0.8, 1e-6, 100);
  const int64_t top_k = args.integer("top-k", 40, 0, 1 << 20);
  const int64_t seed = args.integer("seed", 0, 0, INT64_MAX);
  auto model = load_gpt2(args, model_name);
  args.finish();
  auto tok = tokenizer_for(tok_name, model->config.vocab_size);
  std::cout << generate_text(*model, *tok, prompt, n, temperature, top_k, static_cast<uint64_t>(seed)) << std::endl;
  return 0;
}

std::string generate_text(models::GPT2Impl& model, const data::Tokenizer& tok, const std::string& prompt, int64_t n,
                          double temperature, int64_t top_k, uint64_t seed) {
  torch::NoGradGuard ng;
  auto gen = at::detail::createCPUGenerator(seed);
  std::vector<int32_t> ids = tok.encode(prompt);
  if (ids.empty()) ids.push_back(tok.eot());
  const auto device = model.wte->weight.device();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(ids.size()) - model.config.n_ctx);
    std::vector<int64_t> window(ids.begin() + start, ids.end());
    at::Tensor x = at::tensor(window, at::kLong).unsqueeze(0).to(device);
    at::Tensor logits = model.forward(x).select(1, x.size(1) - 1).squeeze(0).to(at::kFloat).cpu() / temperature;
    if (top_k > 0 && top_k < logits.size(0)) {
      auto kth = std::get<0>(logits.topk(top_k)).min();
      logits = logits.masked_fill(logits < kth, -INFINITY);
    }
    at::Tensor probs = at::softmax(logits, -1);
    const int64_t next = at::multinomial(probs, 1, false, gen).item<int64_t>();
    if (next == tok.eot()) break;
    ids.push_back(static_cast<int32_t>(next));
  }
  return tok.decode(ids);
}

int cmd_tokenize(Args& args) {
  // --text-file F: the whole file's bytes instead of --text (token ids with --decode).
  const std::string text_file = args.str("text-file", "");
  if (!text_file.empty() && args.has("text")) throw UsageError("give one of --text or --text-file");
  const std::string text = text_file.empty() ? args.str("text", "") : data::read_text_documents({text_file})[0];
  const std::string tok_name = args.str("tokenizer", "gpt2");
  const bool decode = args.flag("decode");
  args.finish();
  auto tok = data::make_tokenizer(tok_name);
  if (decode) {
    std::vector<int32_t> ids;
    std::istringstream is(text);
    std::string w;
    while (is >> w) {
      try {
        ids.push_back(static_cast<int32_t>(std::stol(w)));
      } catch (const std::exception&) {
        throw UsageError("--text: with --decode, expected token ids separated by spaces, got '" + w + "'");
      }
    }
    std::cout << tok->decode(ids) << std::endl;
    return 0;
  }
  auto ids = tok->encode(text);
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
  std::cout << std::endl;
  return 0;
}

int bench_train_step(Args& args, bool json_out) {
  const std::string task = args.str("task", "lm");
  const std::string name = args.str("model", task == "lm" ? "gpt2-byte-small" : "vit-tiny");
  const int64_t batch = args.integer("batch-size", task == "lm" ? 8 : 64, 1, 1 << 20);
  const int64_t block = args.integer("block-size", 128, 1, 1 << 20);
  const int64_t warmup = args.integer("warmup", 2, 0, 1000);
  const int64_t repeats = args.integer("repeats", 5, 1, 100000);
  args.finish();
  torch::manual_seed(0);
  std::shared_ptr<torch::nn::Module> module;
  std::function<at::Tensor()> loss_fn;
  int64_t units = 0;
  at::Tensor x, y;
  if (task == "lm") {
    auto cfg = models::gpt2_config(name);
    cfg.dropout = 0.0;
    auto m = models::GPT2(cfg);
    module = m.ptr();
    x = torch::randint(0, cfg.vocab_size, {batch, block});
    y = torch::randint(0, cfg.vocab_size, {batch, block});
    loss_fn = [m, &x, &y]() mutable { return m->loss(x, y); };
    units = batch * block;
  } else if (task == "image") {
    auto m = models::ViT(models::vit_config(name, 28, 1, 10, 4));
    module = m.ptr();
    x = torch::randn({batch, 1, 28, 28});
    y = torch::randint(0, 10, {batch});
    loss_fn = [m, &x, &y]() mutable { return m->loss(x, y); };
    units = batch;
  } else {
    throw UsageError("--task: unknown value '" + task + "' (valid: lm, image)");
  }
  torch::optim::AdamW opt(module->parameters(), torch::optim::AdamWOptions(1e-4));
  auto step = [&] {
    opt.zero_grad(/*set_to_none=*/false);
    loss_fn().backward();
    opt.step();
  };
  for (int64_t i = 0; i < warmup; ++i) step();
  std::vector<double> t;
  for (int64_t i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  const double ms = t[t.size() / 2];
  if (json_out)
    std::cout << json{{"bench", "train_step"}, {"impl", "limuon"}, {"task", task}, {"model", name}, {"batch", batch},
                      {"block", task == "lm" ? block : 0}, {"median_ms", ms}, {"units_per_s", units / (ms / 1000.0)},
                      {"threads", at::get_num_threads()}}
                     .dump()
              << std::endl;
  else
    std::printf("%s %s batch %lld: median %.1f ms, %.0f %s/s\n", task.c_str(), name.c_str(), static_cast<long long>(batch), ms,
                units / (ms / 1000.0), task == "lm" ? "tok" : "img");
  return 0;
}

}  // namespace limuon::cli
