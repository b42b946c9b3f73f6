// The training loop as a library (see limuon/train/trainer.h).
#include "limuon/train/trainer.h"

#include "limuon/dist/data_parallel.h"
#include "limuon/dist/sharding.h"
#include "limuon/io/safetensors.h"
#include "limuon/optim/family.h"
#include "limuon/optim/limuon.h"
#include "limuon/optim/muon.h"
#include "limuon/optim/rng.h"
#include "limuon/train/checkpoint.h"

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace limuon::train {

namespace {

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports KiB
}

// The newest checkpoint in `dir` that reads back as a complete limuon checkpoint (an archive
// whose records all parse), with its step; "" when there is none.
std::string newest_readable_checkpoint(const std::string& dir, int64_t& step) {
  auto all = train::list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      torch::serialize::InputArchive a;
      a.load_from(*it);
      c10::IValue v;
      if (!a.try_read("limuon_checkpoint", v) || !a.try_read("step", v)) continue;
      step = v.toInt();
      return *it;
    } catch (const std::exception&) {  // truncated or corrupt: try the previous one
    }
  }
  return "";
}

class Progress {
 public:
  Progress(const std::string& mode, int64_t total) : total_(total) {
    bar_ = mode == "bar" || (mode == "auto" && isatty(STDERR_FILENO));
    silent_ = mode == "none";
    every_ = std::max<int64_t>(1, total / 20);
  }
  void update(int64_t step, double loss, double lr, double rate, const char* unit, double eta_s) {
    if (silent_) return;
    char line[256];
    std::snprintf(line, sizeof(line), "loss %.4f  lr %.3g  %.0f %s/s  ETA %s", loss, lr, rate, unit, human_time(eta_s).c_str());
    if (bar_) {
      const int width = 24;
      const int filled = static_cast<int>(width * step / std::max<int64_t>(1, total_));
      std::string b(filled, '#');
      b.resize(width, '.');
      std::fprintf(stderr, "\r[%s] %lld/%lld  %s   ", b.c_str(), static_cast<long long>(step), static_cast<long long>(total_), line);
      if (step == total_) std::fprintf(stderr, "\n");
    } else if (step % every_ == 0 || step == total_) {
      std::fprintf(stderr, "step %lld/%lld  %s\n", static_cast<long long>(step), static_cast<long long>(total_), line);
    }
    std::fflush(stderr);
  }
  void message(const std::string& m) {
    if (silent_) return;
    if (bar_) std::fprintf(stderr, "\r%-100s\r", "");
    std::fprintf(stderr, "%s\n", m.c_str());
  }

 private:
  int64_t total_, every_;
  bool bar_ = false, silent_ = false;
};

}  // namespace

std::string human_time(double s) {
  char b[32];
  if (s < 60) std::snprintf(b, sizeof(b), "%.0fs", s);
  else if (s < 3600) std::snprintf(b, sizeof(b), "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  else std::snprintf(b, sizeof(b), "%dh%02dm", static_cast<int>(s / 3600), (static_cast<int>(s) % 3600) / 60);
  return b;
}


std::string model_signature(torch::nn::Module& m, const std::string& name) {
  std::ostringstream os;
  os << name;
  for (const auto& p : m.named_parameters()) os << ";" << p.key() << p.value().sizes();
  return os.str();
}

std::vector<std::pair<std::string, at::Tensor>> Task::weights() {
  std::vector<std::pair<std::string, at::Tensor>> w;
  for (const auto& p : module().named_parameters()) w.emplace_back(p.key(), p.value().detach().cpu());
  return w;
}

const char* Budget::spent(const Counters& c) const {
  if (max_samples > 0 && c.samples >= max_samples) return "samples";
  if (max_grad_evals > 0 && c.grad_evals >= max_grad_evals) return "grad_evals";
  if (max_seconds > 0 && c.wall_s >= max_seconds) return "seconds";
  return c.step >= steps ? "steps" : nullptr;
}

// A step evaluates the gradient of `per_step` samples once, or twice for a two-evaluation method
// (at the new and the previous weights; once on its first step): the run stops at the first step
// whose total reaches the budget, and the lr schedule ends there.
int64_t steps_for_budget(const Budget& b, int64_t per_step, bool two_evaluations) {
  if (per_step < 1) throw std::invalid_argument("steps_for_budget: per_step must be >= 1");
  int64_t steps = 0;
  auto take = [&](int64_t s) { steps = steps == 0 ? s : std::min(steps, s); };
  if (b.max_samples > 0) take((b.max_samples + per_step - 1) / per_step);
  if (b.max_grad_evals > 0) {
    const int64_t per_later_step = two_evaluations ? 2 : 1;
    const int64_t evaluations = (b.max_grad_evals + per_step - 1) / per_step;
    take(1 + (evaluations - 1 + per_later_step - 1) / per_later_step);
  }
  return steps;
}

const double* FaultPlan::at(int64_t step, bool loss) const {
  for (const auto& it : items)
    if (it.loss == loss && step >= it.first && step <= it.last) return &it.value;
  return nullptr;
}

FaultPlan FaultPlan::parse(const std::string& spec) {
  FaultPlan plan;
  const std::string expected =
      " (expected KIND:STEP or KIND:FIRST-LAST, steps from 1, KIND one of grad, grad-nan, grad-inf, loss, loss-nan, "
      "loss-inf; e.g. grad:5,loss-inf:7,grad:8-12)";
  std::vector<std::string> list;
  {
    std::istringstream is(spec);
    std::string cur;
    while (std::getline(is, cur, ','))
      if (!cur.empty()) list.push_back(cur);
  }
  for (const auto& item : list) {
    const auto colon = item.find(':');
    if (colon == std::string::npos) throw std::invalid_argument("--inject-nonfinite: bad item '" + item + "'" + expected);
    const std::string kind = item.substr(0, colon), range = item.substr(colon + 1);
    Item f{0, 0, NAN, false};
    if (kind == "grad" || kind == "grad-nan" || kind == "loss" || kind == "loss-nan") f.value = NAN;
    else if (kind == "grad-inf" || kind == "loss-inf") f.value = INFINITY;
    else throw std::invalid_argument("--inject-nonfinite: unknown kind '" + kind + "' in '" + item + "'" + expected);
    f.loss = kind.rfind("loss", 0) == 0;
    auto number = [&](const std::string& text) {
      if (text.empty() || text.size() > 12 || text.find_first_not_of("0123456789") != std::string::npos)
        throw std::invalid_argument("--inject-nonfinite: bad step '" + text + "' in '" + item + "'" + expected);
      const int64_t v = std::stoll(text);
      if (v < 1) throw std::invalid_argument("--inject-nonfinite: steps count from 1, got '" + text + "' in '" + item + "'");
      return v;
    };
    const auto dash = range.find('-');
    f.first = number(range.substr(0, dash));
    f.last = dash == std::string::npos ? f.first : number(range.substr(dash + 1));
    if (f.last < f.first) throw std::invalid_argument("--inject-nonfinite: empty range '" + range + "' in '" + item + "'");
    plan.items.push_back(f);
  }
  if (!spec.empty() && plan.items.empty()) throw std::invalid_argument("--inject-nonfinite: no item in '" + spec + "'" + expected);
  return plan;
}

// FNV-1a over the bytes of every parameter, in order (data parallelism: equal on every rank).
uint64_t weights_checksum(torch::nn::Module& m) {
  uint64_t h = 1469598103934665603ULL;
  for (const auto& p : m.parameters()) {
    const at::Tensor c = p.detach().contiguous().cpu();
    const auto* b = static_cast<const unsigned char*>(c.data_ptr());
    const size_t n = static_cast<size_t>(c.numel()) * c.element_size();
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ULL;
  }
  return h;
}

// The global L2 norm of every gradient of `m` (accumulated in float64), after which the gradients
// are scaled by min(1, max_norm / (norm + 1e-6)), the rule of torch.nn.utils.clip_grad_norm_.
// Returns the norm before clipping. A NaN norm leaves the gradients as they are (the optimizers'
// non-finite policy then skips the step).
double clip_grad_norm(torch::nn::Module& m, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> grads, norms;
  for (auto& p : m.parameters())
    if (p.grad().defined()) {
      grads.push_back(p.grad());
      norms.push_back(p.grad().norm(2).to(at::kDouble));
    }
  if (grads.empty()) return 0;
  const double total = at::stack(norms).norm(2).item<double>();
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0)
    for (auto& g : grads) g.mul_(coef);
  return total;
}

// The first parameter, buffer or optimizer-state tensor holding NaN/Inf, named, or "" when all are
// finite. A checkpoint is written only when this is "": under the `skip` policy nothing non-finite
// should ever reach the weights or the state, and a checkpoint that did hold it would poison every
// run resumed from it, and push the good ones out (--keep).
std::string first_nonfinite_tensor(torch::nn::Module& module, HybridOptimizer& opt) {
  std::vector<std::pair<std::string, at::Tensor>> all;
  std::map<StateKey, std::string> param_names;  // optimizer state key → parameter name
  for (const auto& p : module.named_parameters()) {
    all.emplace_back("parameter '" + p.key() + "'", p.value());
    param_names.emplace(state_key(p.value()), p.key());
  }
  for (const auto& b : module.named_buffers())
    if (b.value().is_floating_point()) all.emplace_back("buffer '" + b.key() + "'", b.value());
  for (auto* o : opt.optimizers()) {
    if (!o) continue;
    for (const auto& kv : o->state()) {
      const auto it = param_names.find(kv.first);
      const std::string of = " of parameter '" + (it == param_names.end() ? std::string("?") : it->second) + "'";
      auto add = [&](const char* what, const at::Tensor& t) {
        if (t.defined() && t.is_floating_point()) all.emplace_back(std::string("optimizer state ") + what + of, t);
      };
      if (auto* s = dynamic_cast<torch::optim::AdamWParamState*>(kv.second.get())) {
        add("AdamW exp_avg", s->exp_avg());
        add("AdamW exp_avg_sq", s->exp_avg_sq());
        add("AdamW max_exp_avg_sq", s->max_exp_avg_sq());
      } else if (auto* s = dynamic_cast<MuonParamState*>(kv.second.get())) {
        add("Muon momentum_buffer", s->momentum_buffer());
      } else if (auto* s = dynamic_cast<LiMuonParamState*>(kv.second.get())) {
        add("LiMuon momentum", s->momentum());
        add("LiMuon direction", s->direction());
        add("LiMuon factor_u", s->factor_u());
        add("LiMuon factor_s", s->factor_s());
        add("LiMuon factor_v", s->factor_v());
        add("LiMuon prev_grad", s->prev_grad());
      } else if (auto* s = dynamic_cast<FamilyParamState*>(kv.second.get())) {
        for (const auto& nt : s->tensors()) add(nt.first.c_str(), nt.second);
      }
    }
  }
  std::vector<at::Tensor> tensors;
  for (const auto& nt : all) tensors.push_back(nt.second);
  if (all_finite(tensors)) return "";  // one pass over everything in the common case
  for (const auto& nt : all)
    if (!all_finite({nt.second})) return nt.first;
  return "";
}

// What a failed run leaves for the user: where to continue from.
std::string resume_hint(const std::string& dir) {
  int64_t step = 0;
  const std::string good = newest_readable_checkpoint(dir, step);
  if (good.empty()) return "no checkpoint has been written to '" + dir + "' yet, so a new run starts from scratch";
  return "the last good checkpoint is " + good + " (step " + std::to_string(step) + "), intact; continue from it with --resume";
}

// An atomic write killed midway (crash, SIGKILL, power loss) leaves its hidden temporary file
// ".<name>.tmp.XXXXXX" behind. Nothing reads those, but they hold disk space (a checkpoint each),
// so a run that takes the directory over removes the ones its own files would have produced.
std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const auto tmp = name.find(".tmp.");
    if (name.size() < 2 || name[0] != '.' || tmp == std::string::npos || !e.is_regular_file(ec)) continue;
    const std::string target = name.substr(1, tmp - 1);
    // ckpt_<8 digits>.pt, the names train::checkpoint_path gives.
    const bool checkpoint = target.size() == 16 && target.rfind("ckpt_", 0) == 0 && target.compare(13, 3, ".pt") == 0 &&
                            target.find_first_not_of("0123456789", 5) == 13;
    const bool ours = checkpoint || target == "metrics.jsonl" || target == "summary.json" || target == "model.safetensors";
    if (!ours) continue;
    std::error_code rm;
    if (fs::remove(e.path(), rm)) removed.push_back(e.path().string());
  }
  return removed;
}

void prepare_output(const std::string& out, bool resume) {
  if (out.empty()) throw std::invalid_argument("Trainer: options.out (the run directory) is required");
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec || !fs::is_directory(out)) throw std::runtime_error("--out: cannot create directory '" + out + "': " + ec.message());
  // access() reports a read-only file system (EROFS) even to root.
  if (::access(out.c_str(), W_OK | X_OK) != 0)
    throw std::runtime_error("--out: cannot write to directory '" + out + "': " + std::strerror(errno));
  const auto existing = list_checkpoints(out);
  if (!existing.empty() && !resume)
    throw std::invalid_argument("--out: '" + out + "' already holds checkpoints (" + fs::path(existing.back()).filename().string() +
                                "); pass --resume to continue that run or choose another directory");
}

struct Trainer::Output {
  std::ofstream metrics;
  std::unique_ptr<Progress> progress;
};

Trainer::Trainer(Task& task, HybridOptimizer& opt, WarmupCosine& sched, TrainerOptions options)
    : task_(task), opt_(opt), sched_(sched), o_(std::move(options)), out_(std::make_unique<Output>()) {
  auto positive = [](int64_t v, const char* name) {
    if (v < 0) throw std::invalid_argument(std::string("TrainerOptions::") + name + " must be >= 0, got " + std::to_string(v));
  };
  if (o_.budget.steps < 1) throw std::invalid_argument("TrainerOptions::budget.steps must be >= 1");
  if (o_.grad_accum < 1) throw std::invalid_argument("TrainerOptions::grad_accum must be >= 1");
  if (o_.keep < 1) throw std::invalid_argument("TrainerOptions::keep must be >= 1");
  positive(o_.eval_interval, "eval_interval");
  positive(o_.checkpoint_interval, "checkpoint_interval");
  positive(o_.stop_after, "stop_after");
  positive(o_.max_nonfinite, "max_nonfinite");
  if (!(o_.grad_clip >= 0)) throw std::invalid_argument("TrainerOptions::grad_clip must be >= 0");
  if (o_.progress != "auto" && o_.progress != "bar" && o_.progress != "lines" && o_.progress != "none")
    throw std::invalid_argument("TrainerOptions::progress must be auto, bar, lines or none, got '" + o_.progress + "'");
  faults_ = FaultPlan::parse(o_.inject_nonfinite);
  if (o_.rank != 0) o_.progress = "none";
  prepare_output(o_.out, o_.resume);
  signature_ = model_signature(task_.module(), o_.model_name);
  metrics_path_ = (fs::path(o_.out) / "metrics.jsonl").string();
  out_->progress = std::make_unique<Progress>(o_.progress, o_.budget.steps);
}

Trainer::~Trainer() = default;

void Trainer::message(const std::string& m) {
  if (on_message) on_message(m);
  else out_->progress->message(m);
}

std::string Trainer::serialize_checkpoint() const {
  torch::serialize::OutputArchive a;
  a.write("limuon_checkpoint", c10::IValue(int64_t{1}));
  a.write("signature", c10::IValue(signature_));
  a.write("config", c10::IValue(o_.config_json));
  torch::serialize::OutputArchive m(a.compilation_unit());
  for (const auto& p : task_.module().named_parameters()) m.write(p.key(), p.value().detach().cpu());
  for (const auto& b : task_.module().named_buffers()) m.write(b.key(), b.value().detach().cpu(), true);
  a.write("model", m);
  torch::serialize::OutputArchive o(a.compilation_unit());
  opt_.save(o);
  a.write("optimizer", o);
  torch::serialize::OutputArchive s(a.compilation_unit());
  sched_.save(s);
  a.write("schedule", s);
  task_.save_position(a);
  {
    // Every default generator: the CPU one as "rng" (as checkpoints always had it), each CUDA
    // device's as "rng_cuda/<i>".
    const GeneratorStates g = capture_generators();
    a.write("rng", g.cpu);
    a.write("rng_cuda_devices", c10::IValue(static_cast<int64_t>(g.cuda.size())));
    for (size_t i = 0; i < g.cuda.size(); ++i) a.write("rng_cuda/" + std::to_string(i), g.cuda[i]);
  }
  const Counters& c = c_;
  for (auto [k, v] : {std::pair<const char*, int64_t>{"step", c.step}, {"samples", c.samples}, {"tokens", c.tokens},
                      {"grad_evals", c.grad_evals}, {"evaluations", c.evaluations}, {"nonfinite_steps", c.nonfinite_steps}})
    a.write(k, c10::IValue(v));
  a.write("wall_s", c10::IValue(c.wall_s));
  std::ostringstream os;
  a.save_to(os);
  return os.str();
}

void Trainer::load_checkpoint(const std::string& path) {
  torch::serialize::InputArchive a;
  a.load_from(path);
  c10::IValue v;
  if (!a.try_read("limuon_checkpoint", v)) throw std::runtime_error("not a limuon checkpoint");
  a.read("signature", v);
  if (v.toStringRef() != signature_) {
    const std::string saved = v.toStringRef().substr(0, v.toStringRef().find(';'));
    // std::invalid_argument: fatal, do not fall back to older checkpoints of the same wrong model.
    throw std::invalid_argument("checkpoint " + path + " was written for model '" + saved + "' with other shapes; this run uses '" +
                                o_.model_name + "'");
  }
  torch::serialize::InputArchive m;
  a.read("model", m);
  torch::NoGradGuard ng;
  for (auto& p : task_.module().named_parameters()) {
    at::Tensor t;
    m.read(p.key(), t);
    p.value().copy_(t);
  }
  for (auto& b : task_.module().named_buffers()) {
    at::Tensor t;
    m.read(b.key(), t, true);
    b.value().copy_(t);
  }
  torch::serialize::InputArchive o, s;
  a.read("optimizer", o);
  opt_.load(o);
  a.read("schedule", s);
  sched_.load(s);
  task_.load_position(a);
  {
    GeneratorStates g;
    a.read("rng", g.cpu);
    c10::IValue n;
    if (a.try_read("rng_cuda_devices", n)) {  // absent in checkpoints of earlier versions
      if (!n.isInt() || n.toInt() < 0 || n.toInt() > 4096) throw std::runtime_error("checkpoint: bad 'rng_cuda_devices'");
      g.cuda.resize(static_cast<size_t>(n.toInt()));
      for (size_t i = 0; i < g.cuda.size(); ++i) a.read("rng_cuda/" + std::to_string(i), g.cuda[i]);
    }
    restore_generators(g);
  }
  auto get = [&](const char* k) {
    a.read(k, v);
    return v.toInt();
  };
  Counters c;
  c.step = get("step");
  c.samples = get("samples");
  c.tokens = get("tokens");
  c.grad_evals = get("grad_evals");
  c.evaluations = get("evaluations");
  // Absent from checkpoints written before the counter existed.
  c.nonfinite_steps = a.try_read("nonfinite_steps", v) ? v.toInt() : 0;
  a.read("wall_s", v);
  c.wall_s = v.toDouble();
  c_ = c;
}

void Trainer::write_metrics(const std::string& line) {
  if (o_.rank != 0) return;
  out_->metrics << line << "\n";
  out_->metrics.flush();
  // A full disk shows here first (a line per step); errno still holds the failed write's cause.
  if (!out_->metrics)
    throw std::runtime_error("cannot append to " + metrics_path_ + ": " + std::strerror(errno) + "; " + resume_hint(o_.out));
}

void Trainer::evaluate_and_log(int64_t step) {
  if (o_.rank != 0) return;  // nothing of the training state depends on it
  last_eval_ = task_.evaluate(o_.eval_batches);
  best_val_ = std::min(best_val_, last_eval_.loss);
  json j{{"step", step}, {"samples", c_.samples}, {"grad_evals", c_.grad_evals}, {"val_loss", last_eval_.loss},
         {"val_ppl", std::exp(last_eval_.loss)}, {"wall_s", c_.wall_s}};
  if (last_eval_.accuracy >= 0) j["val_accuracy"] = last_eval_.accuracy;
  write_metrics(j.dump());
  std::ostringstream os;
  os << "step " << step << ": val_loss " << last_eval_.loss;
  if (!o_.classification) os << " (ppl " << std::exp(last_eval_.loss) << ")";
  else os << ", accuracy " << last_eval_.accuracy;
  message(os.str());
}

void Trainer::write_checkpoint() {
  // Sharded state: rank 0 holds everybody's state while it checks and writes it, then only its own
  // (also when anything below throws).
  struct DropAfterwards {
    dist::StateSharding* s;
    ~DropAfterwards() {
      if (s) s->drop_foreign_state();
    }
  } drop{o_.sharding};
  if (o_.sharding) o_.sharding->gather_state_to_leader();
  const std::string bad = first_nonfinite_tensor(task_.module(), opt_);
  if (!bad.empty())
    throw std::runtime_error("refusing to write the checkpoint of step " + std::to_string(c_.step) + ": " + bad +
                             " holds NaN/Inf; " + resume_hint(o_.out));
  if (o_.rank != 0) return;
  std::string path;
  try {
    path = train::write_checkpoint(o_.out, c_.step, serialize_checkpoint(), static_cast<int>(o_.keep));
  } catch (const std::exception& e) {
    // write_checkpoint has removed its temporary file and touched no older checkpoint.
    throw std::runtime_error("cannot write the checkpoint of step " + std::to_string(c_.step) + " to directory '" + o_.out +
                             "': " + e.what() + "; " + resume_hint(o_.out) + " once the directory is writable and has space again");
  }
  message("checkpoint " + path);
}

std::function<at::Tensor()> Trainer::closure() {
  return [this]() {
    auto fill_gradients = [&](double value) {
      torch::NoGradGuard ng;
      for (auto& p : task_.module().parameters())
        if (p.grad().defined()) p.mutable_grad().fill_(value);
    };
    opt_.zero_grad(/*set_to_none=*/false);
    if (o_.sharding) o_.sharding->note_seeds();
    ++evals_in_step_;
    double total = 0;
    for (int64_t a = 0; a < o_.grad_accum; ++a) {
      at::Tensor loss = task_.micro_loss(a) / static_cast<double>(o_.grad_accum);
      loss.backward();
      total += loss.item<double>();
    }
    const int64_t step = c_.step + 1;  // the step this evaluation belongs to, counted from 1
    if (o_.sharding) {
      // Sharded state: the faults and the non-finite-loss policy act on this rank's gradients
      // before the reduce-scatter, which carries them to the owners (see StateSharding).
      if (const double* v = faults_.at(step, /*loss=*/false)) fill_gradients(*v);
      if (const double* v = faults_.at(step, /*loss=*/true)) total = *v;
      if (!std::isfinite(total)) fill_gradients(NAN);
      total = o_.sharding->reduce_gradients(total);
      if (o_.grad_clip > 0) last_grad_norm_ = o_.sharding->clip_gradients(o_.grad_clip);
      return at::tensor(total);
    }
    if (o_.group) {  // both evaluations of a LiMuon exact step come through here
      std::vector<at::Tensor> grads;
      for (auto& p : task_.module().parameters())
        if (p.grad().defined()) grads.push_back(p.grad());
      o_.group->allreduce_mean(grads);
      total = o_.group->allreduce_sum(total) / o_.group->size();
    }
    // After the all-reduce, so that every rank clips the same averaged gradient by the same factor.
    if (o_.grad_clip > 0) last_grad_norm_ = clip_grad_norm(task_.module(), o_.grad_clip);
    if (const double* v = faults_.at(step, /*loss=*/false)) fill_gradients(*v);
    if (const double* v = faults_.at(step, /*loss=*/true)) total = *v;
    // Policy for a non-finite loss: the step is skipped for every parameter group and counted,
    // exactly as for a non-finite gradient. Its gradients may look finite, but they come from a
    // forward pass that overflowed somewhere, so they are not trusted: they are set to NaN, which
    // sends every group through its optimizer's `skip` path (no step, weights and state as they
    // were, nonfinite_skips counted) instead of a second, trainer-side skip mechanism.
    if (!std::isfinite(total)) fill_gradients(NAN);
    return at::tensor(total);
  };
}

Summary Trainer::run() {
  const bool leader = o_.rank == 0;
  const Budget& budget = o_.budget;
  if (leader)
    for (const auto& t : remove_stale_temporaries(o_.out)) message("removed " + t + ", left by an interrupted write");
  if (o_.resume) {
    resumed_from_ = load_latest_checkpoint(
        o_.out, [&](const std::string& p) { load_checkpoint(p); }, [&](const std::string& w) { message("warning: " + w); });
    if (o_.sharding) o_.sharding->drop_foreign_state();  // the checkpoint holds everybody's state
    if (resumed_from_.empty()) message("--resume: no checkpoint in " + o_.out + ", starting from scratch");
    else message("resumed from " + resumed_from_ + " at step " + std::to_string(c_.step));
  }
  best_val_ = INFINITY;
  if (leader) {
    // Keep only the metrics of steps the run resumes from (a crash may have logged later ones);
    // their evaluations count towards best_val_loss.
    std::ifstream old(metrics_path_);
    std::string line, kept;
    while (old && std::getline(old, line)) {
      try {
        const json row = json::parse(line);
        if (row.value("step", int64_t{0}) > c_.step) continue;
        kept += line + "\n";
        if (row.contains("val_loss") && row["val_loss"].is_number()) best_val_ = std::min(best_val_, row["val_loss"].get<double>());
      } catch (const json::exception&) {  // a line cut by a crash
      }
    }
    io::atomic_write_file(metrics_path_, kept);
    out_->metrics.open(metrics_path_, std::ios::app);
    if (!out_->metrics) throw std::runtime_error("cannot write " + metrics_path_);
  }
  auto fn = closure();
  Progress& progress = *out_->progress;
  Summary result;
  double ema_rate = 0;
  // Non-finite values: the optimizers skip (see closure) and count; a step whose count rose, or
  // whose loss is not finite, is a non-finite step (counted in nonfinite_steps). Such a step does
  // not trigger the periodic checkpoint: the state has not moved (or, for LiMuon exact with only
  // its second gradient bad, merely dropped its estimate), and writing it would only rotate older
  // checkpoints out (keep), which are the ones wanted if the fault persists. After max_nonfinite
  // of them in a row the run stops with an error. The streak is not saved in checkpoints:
  // resuming is a decision to try again, and gets the full allowance.
  int64_t streak = 0, last_finite_step = c_.step;
  while (!budget.spent(c_)) {
    auto t0 = std::chrono::steady_clock::now();
    // Ranks share the batch order but must not share dropout masks: the global generator (dropout
    // only, by now) gets a seed of (seed, rank, step), which a resumed run recomputes.
    if (o_.group && o_.group->size() > 1)
      torch::manual_seed(static_cast<uint64_t>(o_.seed) * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(o_.rank) * 1000003ULL +
                         static_cast<uint64_t>(c_.step));
    task_.sample_step();
    evals_in_step_ = 0;
    const double lr = opt_.optimizers()[opt_.matrix_optimizer() ? 0 : 1]->param_groups()[0].options().get_lr();
    const int64_t skips_before = opt_.nonfinite_skips();
    const double loss = opt_.step(fn).item<double>();
    sched_.step();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    // The ranks agree on elapsed time, so a max_seconds budget stops them all at the same step, and
    // on whether the step skipped (with sharded state, only the owners of a group count its skip).
    bool skipped = opt_.nonfinite_skips() > skips_before;
    if (o_.group) {
      const auto v = o_.group->allgather_doubles({ms, skipped ? 1.0 : 0.0});
      ms = 0;
      for (size_t r = 0; r < v.size(); r += 2) {
        ms += v[r] / o_.group->size();
        skipped = skipped || v[r + 1] > 0;
      }
    }
    ++c_.step;
    const bool nonfinite = skipped || !std::isfinite(loss);
    if (nonfinite) {
      ++c_.nonfinite_steps;
      ++streak;
    } else {
      streak = 0;
      last_finite_step = c_.step;
    }
    const int64_t per_step = task_.samples_per_micro() * o_.grad_accum;
    c_.samples += per_step;
    c_.tokens += task_.tokens_per_micro() * o_.grad_accum;
    c_.evaluations += evals_in_step_;
    c_.grad_evals += evals_in_step_ * per_step;
    c_.wall_s += ms / 1000.0;
    const double rate = task_.tokens_per_micro() * o_.grad_accum / (ms / 1000.0);
    ema_rate = ema_rate == 0 ? rate : 0.9 * ema_rate + 0.1 * rate;
    json step_metrics{{"step", c_.step}, {"samples", c_.samples}, {"tokens", c_.tokens}, {"grad_evals", c_.grad_evals},
                      {"evaluations", c_.evaluations}, {"loss", loss}, {"lr", lr}, {"ms_per_step", ms},
                      {std::string(task_.unit()) + "_per_s", rate}, {"optimizer_state_bytes", opt_.state_bytes()},
                      {"peak_rss_mb", peak_rss_mb()}, {"nonfinite_skips", opt_.nonfinite_skips()},
                      {"nonfinite_steps", c_.nonfinite_steps}};
    if (o_.grad_clip > 0) step_metrics["grad_norm"] = last_grad_norm_;
    write_metrics(step_metrics.dump());
    const double eta = (budget.steps - c_.step) * (task_.tokens_per_micro() * o_.grad_accum) / std::max(ema_rate, 1e-9);
    progress.update(c_.step, loss, lr, ema_rate, task_.unit(), eta);
    if (nonfinite) {
      message("warning: step " + std::to_string(c_.step) + " had a non-finite loss or gradient (NaN/Inf): skipped (" +
              std::to_string(streak) + " in a row" +
              (o_.max_nonfinite > 0 ? ", --max-nonfinite " + std::to_string(o_.max_nonfinite) : std::string()) + ")");
      if (o_.max_nonfinite > 0 && streak >= o_.max_nonfinite) {
        const std::string bad = first_nonfinite_tensor(task_.module(), opt_);
        throw std::runtime_error(
            "training stopped at step " + std::to_string(c_.step) + ": " + std::to_string(streak) + " consecutive steps (" +
            std::to_string(c_.step - streak + 1) + "-" + std::to_string(c_.step) +
            ") had non-finite (NaN/Inf) losses or gradients and were skipped (--max-nonfinite " +
            std::to_string(o_.max_nonfinite) + "); the last step without them was step " + std::to_string(last_finite_step) +
            (bad.empty() ? ", and the weights and optimizer state hold no NaN/Inf; " : ", and " + bad + " holds NaN/Inf; ") +
            resume_hint(o_.out) + " after fixing the cause (e.g. a lower --lr or the data), or raise --max-nonfinite");
      }
    }
    const bool last = budget.spent(c_) != nullptr;
    if ((o_.eval_interval > 0 && c_.step % o_.eval_interval == 0) || last) evaluate_and_log(c_.step);
    const bool stopping = o_.stop_after > 0 && c_.step == o_.stop_after && !last;
    if ((o_.checkpoint_interval > 0 && c_.step % o_.checkpoint_interval == 0 && !nonfinite) || last || stopping)
      write_checkpoint();
    if (stopping) {
      result.counters = c_;
      result.final_eval = last_eval_;
      result.best_val_loss = best_val_;
      result.stopped_by = "stop_after";
      return result;
    }
  }
  if (last_eval_.count == 0) evaluate_and_log(c_.step);
  result.counters = c_;
  result.final_eval = last_eval_;
  result.best_val_loss = best_val_;
  result.stopped_by = budget.spent(c_);
  // Per-rank figures, gathered on every rank (a collective): optimizer-state bytes, peak memory,
  // bytes written to the wire, and a checksum of the weights (equal on every rank, bit for bit).
  std::vector<double> per_rank;
  if (o_.group) {
    const auto& st = o_.group->stats();
    const uint64_t h = weights_checksum(task_.module());
    per_rank = o_.group->allgather_doubles({static_cast<double>(opt_.state_bytes()), peak_rss_mb(),
                                            static_cast<double>(st.wire_bytes_sent), static_cast<double>(h >> 32),
                                            static_cast<double>(h & 0xffffffffULL)});
  }
  if (!leader) return result;

  const std::string weights_path = (fs::path(o_.out) / "model.safetensors").string();
  io::write_safetensors(weights_path, task_.weights(), {{"limuon_model", o_.model_name}, {"format", "pt"}});
  json config = json::parse(o_.config_json, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) config = o_.config_json;
  const Counters& c = c_;
  json summary{{"final_val_loss", last_eval_.loss}, {"best_val_loss", best_val_}, {"steps", c.step}, {"samples", c.samples},
               {"tokens", c.tokens}, {"grad_evals", c.grad_evals}, {"evaluations", c.evaluations}, {"wall_s", c.wall_s},
               {"optimizer_state_bytes", opt_.state_bytes()}, {"peak_rss_mb", peak_rss_mb()},
               {"nonfinite_skips", opt_.nonfinite_skips()}, {"nonfinite_steps", c.nonfinite_steps}, {"weights", weights_path},
               {"config", config}, {"stopped_by", result.stopped_by}};
  if (config.is_object() && config.contains("optimizer")) summary["optimizer"] = config["optimizer"];
  if (o_.group) {
    const auto& st = o_.group->stats();
    summary["data_parallel"] = {{"world_size", o_.group->size()}, {"allreduce_bytes", st.allreduce_bytes},
                                {"allgather_bytes_received", st.allgather_bytes}, {"collectives", st.collectives},
                                {"orth_local_s", st.orth_local_s}, {"orth_local_matrices", st.orth_local_matrices},
                                {"orth_total_matrices", st.orth_total_matrices}, {"sharded_state", o_.sharding != nullptr},
                                {"reduce_scatter_bytes", st.reduce_scatter_bytes},
                                {"weights_allgather_bytes_received", st.param_allgather_bytes},
                                {"state_gather_bytes", st.state_gather_bytes},
                                {"wire_bytes_checkpoints_rank0", st.wire_bytes_checkpoints}};
    // All-reduce lower bound for one evaluation: a ring all-reduce of every gradient writes
    // 2·(N−1)/N of their bytes per rank (Patarasuk & Yuan 2009).
    int64_t param_bytes = 0;
    for (const auto& p : task_.module().parameters()) param_bytes += p.numel() * p.element_size();
    const int n = o_.group->size();
    summary["data_parallel"]["parameter_bytes"] = param_bytes;
    summary["data_parallel"]["allreduce_lower_bound_bytes_per_evaluation"] =
        static_cast<int64_t>(2.0 * (n - 1) / n * static_cast<double>(param_bytes));
    json ranks = json::array();
    for (int r = 0; r < n; ++r) {
      const double* v = per_rank.data() + 5 * r;
      char hex[20];
      std::snprintf(hex, sizeof hex, "%08llx%08llx", static_cast<unsigned long long>(v[3]), static_cast<unsigned long long>(v[4]));
      ranks.push_back({{"rank", r}, {"optimizer_state_bytes", static_cast<int64_t>(v[0])}, {"peak_rss_mb", v[1]},
                       {"wire_bytes_sent", static_cast<int64_t>(v[2])},
                       {"wire_bytes_sent_per_step", c.step > 0 ? v[2] / static_cast<double>(c.step) : 0.0},
                       {"weights_checksum", hex}});
    }
    summary["data_parallel"]["ranks"] = ranks;
  }
  if (!o_.classification) summary["final_val_ppl"] = std::exp(last_eval_.loss);
  else summary["final_val_accuracy"] = last_eval_.accuracy;
  result.summary_json = summary.dump(2) + "\n";
  io::atomic_write_file((fs::path(o_.out) / "summary.json").string(), result.summary_json);
  return result;
}

}  // namespace limuon::train
