// `limuon compare --spec FILE.json --out DIR`: runs several optimizer configurations on one task
// with the same model initialisation, data order and budget, over seeds and an optional
// learning-rate sweep, then writes DIR/report.md, DIR/report.json and DIR/plots/*.png.
//
// Each run (configuration, lr, seed) is a `limuon train` subprocess of this same binary writing to
// DIR/runs/<config>/lr<lr>/seed<seed>, with its options in run.json there (passed as --config) and
// its output in train.log. A crash of one run cannot touch another, and an interrupted comparison
// continues where it stopped: a run with summary.json is done and skipped, any other is started
// with --resume (from its newest checkpoint, or from scratch when it has none).
//
// Every number in the report is read back from the runs' metrics.jsonl and summary.json.
#include "compare.h"

#include "train.h"

#include "limuon/io/safetensors.h"
#include "limuon/train/checkpoint.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace limuon::cli {

namespace {

// ---------------------------------------------------------------------------------------------
// The comparison spec.

const char* kSpecHelp =
    "a JSON object: {\"train\": {common train flags}, \"budget\": {\"steps\"|\"samples\"|\"grad_evals\"|\"seconds\": N}, "
    "\"seeds\": [0, 1] or a count, \"configs\": [{\"name\": \"muon\", \"optimizer\": \"muon\", \"lr\": [0.01, 0.02]}, ...]} "
    "(optional: \"description\", \"select\": \"final\"|\"best\", \"sweep_seeds\": N, \"keep_checkpoints\": false, "
    "\"compress_metrics\": false, \"reference\": \"NAME\"; per config \"tune\": {\"beta\": [0.03, 0.3]} and \"tune_extend\": {\"beta\": [0.01, 0.6]}); "
    "see docs/compare.md";

// Flags that compare sets itself for every run, so neither "train" nor a config may.
const std::set<std::string> kReserved = {"out",           "resume",     "seed",    "config", "stop-after", "progress",
                                         "max-samples", "max-grad-evals", "max-seconds", "epochs", "threads",    "json",
                                         "help"};

// Tuned flags that change a number in the update but not its arithmetic, so a variant's step costs
// its base's (measured: beta variants within 1-3 % of their base in docs/results/study_lm/timing.json).
const std::set<std::string> kCostNeutral = {"beta",   "beta1",     "beta2",        "momentum",          "weight-decay",
                                            "warmup", "adamw-lr", "min-lr-ratio", "adamw-weight-decay"};

struct ConfigSpec {
  std::string name;
  // The spec's lrs first (`grid` of them), then, with "extend_lrs": K, the candidates that extend
  // the grid geometrically, K below and K above, which run only while the best lr tried sits at
  // an end of what was tried.
  std::vector<double> lrs;
  size_t grid = 0;
  json flags = json::object();  // train flags (kebab-case keys) besides lr
  // Tuning groups ("tune": {"beta": [0.03, 0.3]}): each extra value of a tuned flag is a variant,
  // a config of its own named BASE-FLAGVALUE that shares the base's lr grid. `group` is the index
  // of the base in Spec::configs (its own index for a base); `tuned` names the flag a variant
  // changes ("" for a base).
  // `extra`: a "tune_extend" candidate, run only while its flag's best value at the base's chosen lr
  // is the nearest value tried on its side.
  size_t group = 0;
  std::string tuned;
  bool extra = false;
  bool is_variant() const { return !tuned.empty(); }
};

struct Spec {
  std::string path, description;
  json train = json::object();  // common train flags (kebab-case keys)
  std::string budget_kind;      // steps | samples | grad_evals | seconds
  double budget = 0;
  std::vector<int64_t> seeds;
  std::vector<ConfigSpec> configs;
  std::string select = "final";
  int64_t sweep_seeds = 0;  // lrs are compared on the first N seeds (0: all); the rest run at the chosen lr only
  int64_t extend_lrs = 0;   // up to this many lrs added below and above a grid whose best is at an end
  bool keep_checkpoints = false;
  // gzip each finished run's metrics.jsonl to metrics.jsonl.gz (studies whose results are committed:
  // a 2,000-step run's metrics are ~575 KB, ~110 KB compressed); the report reads either.
  bool compress_metrics = false;
  // "reference": a config (a base) every other group is compared with, paired by seed.
  std::string reference;
  std::string task = "lm";
  // OUT/timing.json (optional): each config's ms per training step measured on a quiet machine
  // (bench/study_timing.py). When present, seconds are steps × that figure for every config (a
  // config it lacks has no seconds), not the runs' own clocks, which a busy machine distorts.
  std::map<std::string, double> quiet_ms;
  std::string quiet_source;
  // Variants timing.json lacks whose tuned flag leaves the step's computation unchanged (beta,
  // momentum, weight decay, warm-up: kCostNeutral) take their base config's ms/step: variant → base.
  std::map<std::string, std::string> quiet_borrowed;
};

struct Run {
  const ConfigSpec* config = nullptr;
  double lr = 0;
  int64_t seed = 0;
  fs::path dir;
  json options;  // the train --config file: every flag of the run
};

std::string kebab(std::string k) {
  for (auto& ch : k)
    if (ch == '_') ch = '-';
  return k;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof(b), f, v);
  return b;
}

std::string lr_text(double lr) { return fmt("%g", lr); }

// A flag's value for config `c`: its own, else the spec's "train" one, else null.
json config_flag(const Spec& s, const ConfigSpec& c, const std::string& key) {
  if (c.flags.contains(key)) return c.flags.at(key);
  return s.train.contains(key) ? s.train.at(key) : json();
}

// The steps a config's run takes under a steps or samples budget (samples / (batch × accumulation),
// rounded up as train does); NaN for other budgets, whose steps depend on the run.
double budget_steps(const Spec& spec, const ConfigSpec& c) {
  if (spec.budget_kind == "steps") return spec.budget;
  if (spec.budget_kind != "samples") return NAN;
  auto flag = [&](const char* key, double dflt) {
    const json v = config_flag(spec, c, key);
    return v.is_number() ? v.get<double>() : dflt;
  };
  const double per_step = flag("batch-size", NAN) * flag("grad-accum", 1.0);
  return per_step > 0 ? std::ceil(spec.budget / per_step) : NAN;
}

// The report's words for the variants whose ms/step is their base's (Spec::quiet_borrowed).
std::string borrowed_text(const std::map<std::string, std::string>& borrowed) {
  if (borrowed.empty()) return "";
  std::string t = "; a variant it lacks whose tuned flag does not change the step's arithmetic takes its base config's figure (";
  for (auto it = borrowed.begin(); it != borrowed.end(); ++it)
    t += (it == borrowed.begin() ? "" : ", ") + it->first + " from " + it->second;
  return t + ")";
}

// Train flags from a JSON object: kebab-case keys, scalar values, none that compare owns.
json train_flags(const json& obj, const std::string& where, const std::set<std::string>& skip) {
  if (!obj.is_object()) throw UsageError(where + ": expected a JSON object of train flags");
  json out = json::object();
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (skip.count(it.key())) continue;
    const std::string key = kebab(it.key());
    if (kReserved.count(key))
      throw UsageError(where + ": '" + it.key() + "' is set by limuon compare for each run" +
                       (key == "epochs" ? " (give the budget in \"budget\" instead)" : key == "seed" ? " (use \"seeds\")" : ""));
    const auto& v = it.value();
    if (!v.is_string() && !v.is_number() && !v.is_boolean())
      throw UsageError(where + ": '" + it.key() + "' must be a string, number or bool");
    out[key] = v;
  }
  return out;
}

std::vector<double> parse_lrs(const json& v, const std::string& where) {
  std::vector<double> lrs;
  auto one = [&](const json& x) {
    if (!x.is_number() || !(x.get<double>() > 0) || !std::isfinite(x.get<double>()))
      throw UsageError(where + ": 'lr' must be a positive number or a non-empty list of them, got " + x.dump());
    const double lr = x.get<double>();
    if (std::find(lrs.begin(), lrs.end(), lr) != lrs.end()) throw UsageError(where + ": lr " + lr_text(lr) + " listed twice");
    lrs.push_back(lr);
  };
  if (v.is_array()) {
    if (v.empty()) throw UsageError(where + ": 'lr' is an empty list");
    for (const auto& x : v) one(x);
  } else {
    one(v);
  }
  return lrs;
}

void parse_budget_text(const std::string& text, Spec& s, const std::string& where) {
  const auto colon = text.find(':');
  if (colon == std::string::npos) throw UsageError(where + ": expected KIND:N, got '" + text + "'");
  const std::string kind = kebab(text.substr(0, colon));
  const std::string num = text.substr(colon + 1);
  char* end = nullptr;
  const double v = std::strtod(num.c_str(), &end);
  if (num.empty() || *end != '\0') throw UsageError(where + ": '" + num + "' is not a number");
  s.budget_kind = kind == "grad-evals" ? "grad_evals" : kind;
  s.budget = v;
}

void check_budget(const Spec& s, const std::string& where) {
  const std::set<std::string> kinds = {"steps", "samples", "grad_evals", "seconds"};
  if (!kinds.count(s.budget_kind))
    throw UsageError(where + ": unknown budget kind '" + s.budget_kind + "' (valid: steps, samples, grad_evals, seconds)");
  if (!(s.budget > 0) || !std::isfinite(s.budget)) throw UsageError(where + ": the budget must be positive");
  if (s.budget_kind != "seconds" && (s.budget != std::floor(s.budget) || s.budget > 1e15))
    throw UsageError(where + ": a " + s.budget_kind + " budget must be a whole number");
  if (s.budget_kind == "seconds" && !s.train.contains("steps"))
    throw UsageError(where + ": a seconds budget needs \"steps\" in \"train\": the lr schedule's length and an upper "
                             "bound on the steps (choose about what fits in the time)");
  if (s.budget_kind != "seconds" && s.train.contains("steps"))
    throw UsageError(where + ": give the length of the runs in \"budget\" only (\"steps\" in \"train\" is for seconds budgets)");
}

std::vector<int64_t> parse_seeds(const json& v, const std::string& where) {
  std::vector<int64_t> seeds;
  if (v.is_number_integer()) {
    if (v.get<int64_t>() < 1 || v.get<int64_t>() > 1000) throw UsageError(where + ": a seed count must be in [1, 1000]");
    for (int64_t i = 0; i < v.get<int64_t>(); ++i) seeds.push_back(i);
    return seeds;
  }
  if (!v.is_array() || v.empty()) throw UsageError(where + ": expected a list of seeds or a count, got " + v.dump());
  for (const auto& x : v) {
    if (!x.is_number_integer() || x.get<int64_t>() < 0) throw UsageError(where + ": seeds must be non-negative integers, got " + x.dump());
    if (std::find(seeds.begin(), seeds.end(), x.get<int64_t>()) != seeds.end())
      throw UsageError(where + ": seed " + x.dump() + " listed twice");
    seeds.push_back(x.get<int64_t>());
  }
  return seeds;
}

std::vector<int64_t> parse_seed_list(const std::string& text) {
  json arr = json::array();
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0') throw UsageError("--seeds: expected integers separated by commas, got '" + text + "'");
    arr.push_back(v);
  }
  return parse_seeds(arr, "--seeds");
}

// With "extend_lrs": K, a grid of 2+ lrs gets K candidates below its lowest and K above its
// highest, continuing its end ratios (0.005, 0.01, 0.02 → 0.0025, 0.00125, ... and 0.04, 0.08,
// ...), each rounded to 6 significant digits like the directory names.
void extend_grid(ConfigSpec& c, int64_t k) {
  if (c.lrs.size() < 2 || k <= 0) return;
  std::vector<double> g = c.lrs;
  std::sort(g.begin(), g.end());
  const double down = g[1] / g[0], up = g[g.size() - 1] / g[g.size() - 2];
  double lo = g.front(), hi = g.back();
  for (int64_t i = 0; i < k; ++i) {
    lo = std::stod(lr_text(lo / down));
    hi = std::stod(lr_text(hi * up));
    for (double lr : {lo, hi})
      if (lr > 0 && std::isfinite(lr) && std::find(c.lrs.begin(), c.lrs.end(), lr) == c.lrs.end()) c.lrs.push_back(lr);
  }
}

// The variant of config `base` with FLAG `key` set to `v` (`text`: v as written in its name).
void push_variant(Spec& s, size_t base, const std::string& key, const json& v, const std::string& text, bool extra,
                  std::set<std::string>& names, const std::string& cw) {
  ConfigSpec cs = s.configs[base];
  cs.name += "-" + key + text;
  cs.tuned = key;
  cs.group = base;
  cs.extra = extra;
  cs.flags[key] = v;
  if (cs.name.size() > 64 || cs.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") !=
                                 std::string::npos)
    throw UsageError(cw + ": the variant name '" + cs.name + "' is not 1-64 of A-Z a-z 0-9 . _ + - (it names a directory)");
  if (!names.insert(cs.name).second)
    throw UsageError(cw + ": its '" + std::string(extra ? "tune_extend" : "tune") + "' variant '" + cs.name + "' has the name of another config");
  s.configs.push_back(std::move(cs));
}

// A config's "tune": {"FLAG": [values]}: one variant per value, each changing only that flag
// (several flags are tuned one at a time, not crossed), named BASE-FLAGVALUE (lr-style numbers:
// "beta": 0.3 → BASE-beta0.3).
void add_variants(Spec& s, size_t base, const json& tune, std::set<std::string>& names) {
  const std::string cw = "spec '" + s.path + "' config '" + s.configs[base].name + "'";
  if (!tune.is_object() || tune.empty())
    throw UsageError(cw + ": 'tune' must be an object of FLAG: [values], e.g. {\"beta\": [0.03, 0.3]}, got " + tune.dump());
  for (auto it = tune.begin(); it != tune.end(); ++it) {
    const std::string key = kebab(it.key());
    if (key == "lr" || key == "name" || key == "tune")
      throw UsageError(cw + ": 'tune' cannot vary '" + it.key() + "'" + (key == "lr" ? " (the lr list is swept already)" : ""));
    if (kReserved.count(key) || key == "task" || key == "steps")
      throw UsageError(cw + ": 'tune' cannot vary '" + it.key() + "' (compare sets it, or every config shares it)");
    if (!it.value().is_array() || it.value().empty())
      throw UsageError(cw + ": 'tune' '" + it.key() + "' must be a non-empty list of values, got " + it.value().dump());
    std::set<std::string> seen;
    for (const auto& v : it.value()) {
      if (!v.is_string() && !v.is_number() && !v.is_boolean())
        throw UsageError(cw + ": 'tune' '" + it.key() + "' values must be strings, numbers or bools, got " + v.dump());
      const std::string text = v.is_string() ? v.get<std::string>() : v.is_number() ? lr_text(v.get<double>()) : v.dump();
      if (!seen.insert(text).second) throw UsageError(cw + ": 'tune' '" + it.key() + "' lists " + text + " twice");
      const json own = config_flag(s, s.configs[base], key);
      if (!own.is_null() && (own == v || (own.is_number() && v.is_number() && own.get<double>() == v.get<double>())))
        throw UsageError(cw + ": 'tune' '" + it.key() + "' lists " + text + ", the config's own value (the base run is that one)");
      if (own.is_null())
        throw UsageError(cw + ": 'tune' '" + it.key() + "' needs the config's own value of '" + it.key() +
                         "' given (here or in \"train\"): the base run is compared at it");
      push_variant(s, base, key, v, text, false, names, cw);
    }
  }
}

// A config's "tune_extend": {"FLAG": [values]} (FLAG tuned numerically in its "tune"): values
// beyond the ends of the tuned ones, tried at the base's chosen lr nearest first, one at a time,
// while the best value there is the highest (lowest) tried — the issue's "more if the best sits at
// an edge" for flags, like "extend_lrs", such as beta, whose range is not geometric.
void add_extensions(Spec& s, size_t base, const json& tune, const json& ext, std::set<std::string>& names) {
  const std::string cw = "spec '" + s.path + "' config '" + s.configs[base].name + "'";
  if (!ext.is_object() || ext.empty())
    throw UsageError(cw + ": 'tune_extend' must be an object of FLAG: [values], e.g. {\"beta\": [0.01, 0.6]}, got " + ext.dump());
  for (auto it = ext.begin(); it != ext.end(); ++it) {
    const std::string key = kebab(it.key());
    const json* listed = nullptr;
    for (auto t = tune.begin(); t != tune.end(); ++t)
      if (kebab(t.key()) == key) listed = &t.value();
    if (listed == nullptr)
      throw UsageError(cw + ": 'tune_extend' '" + it.key() + "' is not tuned: list its values in \"tune\" first");
    const json own = config_flag(s, s.configs[base], key);
    double lo = own.is_number() ? own.get<double>() : NAN, hi = lo;
    for (const auto& v : *listed) {
      if (!v.is_number() || !own.is_number())
        throw UsageError(cw + ": 'tune_extend' '" + it.key() + "' needs numeric values, and its \"tune\" values and own value are not all numbers");
      lo = std::min(lo, v.get<double>());
      hi = std::max(hi, v.get<double>());
    }
    if (!it.value().is_array() || it.value().empty())
      throw UsageError(cw + ": 'tune_extend' '" + it.key() + "' must be a non-empty list of numbers, got " + it.value().dump());
    std::set<double> seen;
    for (const auto& v : it.value()) {
      if (!v.is_number() || !std::isfinite(v.get<double>()))
        throw UsageError(cw + ": 'tune_extend' '" + it.key() + "' values must be finite numbers, got " + v.dump());
      const double x = v.get<double>();
      if (!seen.insert(x).second) throw UsageError(cw + ": 'tune_extend' '" + it.key() + "' lists " + lr_text(x) + " twice");
      if (x >= lo && x <= hi)
        throw UsageError(cw + ": 'tune_extend' '" + it.key() + "' value " + lr_text(x) + " is not beyond the tuned range [" +
                         lr_text(lo) + ", " + lr_text(hi) + "] (list it in \"tune\")");
      push_variant(s, base, key, v, lr_text(x), true, names, cw);
    }
  }
}

Spec load_spec(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("--spec: cannot read '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::exception& e) {
    throw UsageError("--spec: '" + path + "' is not valid JSON: " + e.what());
  }
  const std::string where = "spec '" + path + "'";
  if (!j.is_object()) throw UsageError(where + ": expected " + std::string(kSpecHelp));
  Spec s;
  s.path = path;
  const std::set<std::string> known = {"description", "train",       "budget",           "seeds",            "configs",
                                       "select",      "sweep_seeds", "keep_checkpoints", "compress_metrics", "reference",
                                       "extend_lrs"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key()))
      throw UsageError(where + ": unknown key '" + it.key() +
                       "' (valid: description, train, budget, seeds, configs, select, sweep_seeds, keep_checkpoints, compress_metrics, "
                       "reference, extend_lrs; "
                       "train flags go in "
                       "\"train\")");
  if (j.contains("description")) {
    if (!j["description"].is_string()) throw UsageError(where + ": 'description' must be a string");
    s.description = j["description"].get<std::string>();
  }
  if (j.contains("train")) s.train = train_flags(j["train"], where + " \"train\"", {});
  if (s.train.contains("task")) {
    if (!s.train["task"].is_string()) throw UsageError(where + ": \"train\" 'task' must be a string");
    s.task = s.train["task"].get<std::string>();
  }
  if (j.contains("budget")) {
    const auto& b = j["budget"];
    if (b.is_string()) {
      parse_budget_text(b.get<std::string>(), s, where + " 'budget'");
    } else if (b.is_object() && b.size() == 1 && b.begin().value().is_number()) {
      s.budget_kind = kebab(b.begin().key()) == "grad-evals" ? "grad_evals" : kebab(b.begin().key());
      s.budget = b.begin().value().get<double>();
    } else {
      throw UsageError(where + ": 'budget' must be one of {\"steps\": N}, {\"samples\": N}, {\"grad_evals\": N}, {\"seconds\": S} "
                               "or \"KIND:N\", got " + b.dump());
    }
  }
  if (j.contains("seeds")) s.seeds = parse_seeds(j["seeds"], where + " 'seeds'");
  if (j.contains("select")) {
    if (!j["select"].is_string() || (j["select"] != "final" && j["select"] != "best"))
      throw UsageError(where + ": 'select' must be \"final\" or \"best\" (the validation loss that picks each config's lr)");
    s.select = j["select"].get<std::string>();
  }
  if (j.contains("sweep_seeds")) {
    if (!j["sweep_seeds"].is_number_integer() || j["sweep_seeds"].get<int64_t>() < 1)
      throw UsageError(where + ": 'sweep_seeds' must be a positive integer (how many of the seeds compare the lrs)");
    s.sweep_seeds = j["sweep_seeds"].get<int64_t>();
  }
  if (j.contains("extend_lrs")) {
    if (!j["extend_lrs"].is_number_integer() || j["extend_lrs"].get<int64_t>() < 0 || j["extend_lrs"].get<int64_t>() > 10)
      throw UsageError(where + ": 'extend_lrs' must be an integer in [0, 10] (lrs added on each side of a grid whose best is at an end)");
    s.extend_lrs = j["extend_lrs"].get<int64_t>();
  }
  if (j.contains("keep_checkpoints")) {
    if (!j["keep_checkpoints"].is_boolean()) throw UsageError(where + ": 'keep_checkpoints' must be true or false");
    s.keep_checkpoints = j["keep_checkpoints"].get<bool>();
  }
  if (j.contains("compress_metrics")) {
    if (!j["compress_metrics"].is_boolean()) throw UsageError(where + ": 'compress_metrics' must be true or false");
    s.compress_metrics = j["compress_metrics"].get<bool>();
  }
  if (!j.contains("configs") || !j["configs"].is_array() || j["configs"].empty())
    throw UsageError(where + ": 'configs' must be a non-empty list of {\"name\": ..., train flags..., \"lr\": ...}");
  std::set<std::string> names;
  std::vector<std::pair<size_t, json>> tunes;
  for (const auto& c : j["configs"]) {
    if (!c.is_object() || !c.contains("name") || !c["name"].is_string())
      throw UsageError(where + ": every entry of 'configs' must be an object with a \"name\", got " + c.dump());
    ConfigSpec cs;
    cs.name = c["name"].get<std::string>();
    const std::string cw = where + " config '" + cs.name + "'";
    if (cs.name.empty() || cs.name.size() > 64 || cs.name[0] == '.' ||
        cs.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") != std::string::npos)
      throw UsageError(cw + ": a name is 1-64 of the characters A-Z a-z 0-9 . _ + - (it names a directory)");
    if (!names.insert(cs.name).second) throw UsageError(cw + ": two configs are named '" + cs.name + "'");
    cs.flags = train_flags(c, cw, {"name", "lr", "tune", "tune_extend"});
    if (cs.flags.contains("task")) throw UsageError(cw + ": 'task' belongs in \"train\" (all configs share the task)");
    if (cs.flags.contains("steps")) throw UsageError(cw + ": 'steps' belongs in \"train\" (all configs share the budget)");
    if (c.contains("lr")) cs.lrs = parse_lrs(c["lr"], cw);
    else if (s.train.contains("lr")) cs.lrs = parse_lrs(s.train["lr"], cw + " (lr from \"train\")");
    else throw UsageError(cw + ": no learning rate: give \"lr\" (a number or a list to sweep) here or in \"train\"");
    cs.group = s.configs.size();
    cs.grid = cs.lrs.size();
    extend_grid(cs, s.extend_lrs);
    s.configs.push_back(std::move(cs));
    if (c.contains("tune_extend") && !c.contains("tune"))
      throw UsageError(cw + ": 'tune_extend' extends a \"tune\" list, and the config has none");
    if (c.contains("tune")) tunes.emplace_back(s.configs.size() - 1, c);
  }
  // Variants after every base config: the bases' sweeps run first.
  for (const auto& [base, c] : tunes) {
    add_variants(s, base, c["tune"], names);
    if (c.contains("tune_extend")) add_extensions(s, base, c["tune"], c["tune_extend"], names);
  }
  if (j.contains("reference")) {
    if (!j["reference"].is_string()) throw UsageError(where + ": 'reference' must be the name of a config");
    s.reference = j["reference"].get<std::string>();
    const auto it = std::find_if(s.configs.begin(), s.configs.end(), [&](const ConfigSpec& c) { return c.name == s.reference; });
    if (it == s.configs.end()) throw UsageError(where + ": 'reference' names no config: '" + s.reference + "'");
    if (it->is_variant())
      throw UsageError(where + ": 'reference' must name a base config, not the 'tune' variant '" + s.reference + "'");
  }
  s.train.erase("lr");
  return s;
}

std::vector<Run> plan_runs(const Spec& s, const fs::path& out) {
  std::vector<Run> runs;
  for (const auto& c : s.configs)
    for (double lr : c.lrs) {
      json o = s.train;
      for (auto it = c.flags.begin(); it != c.flags.end(); ++it) o[it.key()] = it.value();
      o["lr"] = lr;
      if (s.budget_kind == "steps") o["steps"] = static_cast<int64_t>(s.budget);
      else if (s.budget_kind == "samples") o["max-samples"] = static_cast<int64_t>(s.budget);
      else if (s.budget_kind == "grad_evals") o["max-grad-evals"] = static_cast<int64_t>(s.budget);
      else o["max-seconds"] = s.budget;
      if (!o.contains("keep") && !s.keep_checkpoints) o["keep"] = 1;
      o["progress"] = "lines";
      // Validate what the run will get now, not after hours of other runs.
      std::map<std::string, std::string> values;
      for (auto it = o.begin(); it != o.end(); ++it)
        values[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
      values["seed"] = "0";
      check_train_options(values, "spec '" + s.path + "' config '" + c.name + "' (lr " + lr_text(lr) + ")");
      for (int64_t seed : s.seeds) {
        Run r;
        r.config = &c;
        r.lr = lr;
        r.seed = seed;
        r.dir = out / "runs" / c.name / ("lr" + lr_text(lr)) / ("seed" + std::to_string(seed));
        r.options = o;
        r.options["seed"] = seed;
        runs.push_back(std::move(r));
      }
    }
  return runs;
}

// ---------------------------------------------------------------------------------------------
// Subprocesses.

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail_lines(const fs::path& p, int n) {
  const std::string t = read_file(p);
  size_t pos = t.size();
  if (pos > 0 && t[pos - 1] == '\n') --pos;
  for (int i = 0; i < n && pos != std::string::npos && pos > 0; ++i) pos = t.rfind('\n', pos - 1);
  return t.substr(pos == std::string::npos ? 0 : pos + (pos > 0 || t[0] == '\n' ? 1 : 0));
}

// Runs argv (argv[0] found on PATH unless it contains '/') in `cwd` with stdout and stderr
// appended to `log` (with `echo`, its progress lines, those that start with "step ", are also
// copied to this process's stdout, indented);
// returns the exit status as text ("" on success). The child is killed if this process dies (so a
// killed comparison leaves no run going on behind it).
std::string run_process(const std::vector<std::string>& argv, const fs::path& cwd, const fs::path& log,
                        bool echo = false) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  const pid_t parent = getpid();
  std::cout << std::flush;
  int pipe_fds[2] = {-1, -1};
  if (echo && pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe failed: ") + std::strerror(errno));
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    const int fd = echo ? pipe_fds[1] : open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    if (argv[0].find('/') != std::string::npos) execv(cargv[0], cargv.data());
    else execvp(cargv[0], cargv.data());
    std::fprintf(stderr, "cannot run %s: %s\n", argv[0].c_str(), std::strerror(errno));
    _exit(127);
  }
  if (echo) {  // copy the child's output to the log, and its progress lines to stdout
    close(pipe_fds[1]);
    std::ofstream out_log(log, std::ios::app | std::ios::binary);
    std::string pending;
    char buf[4096];
    for (;;) {
      const ssize_t n = read(pipe_fds[0], buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      out_log.write(buf, n);
      out_log.flush();
      pending.append(buf, static_cast<size_t>(n));
      for (size_t nl; (nl = pending.find_first_of("\n\r")) != std::string::npos; pending.erase(0, nl + 1))
        if (pending.compare(0, 5, "step ") == 0) std::cout << "    " << pending.substr(0, nl) << "\n" << std::flush;
    }
    close(pipe_fds[0]);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error(std::string("waitpid failed: ") + std::strerror(errno));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status) == 0 ? "" : "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "ended abnormally";
}

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    const fs::path p = fs::path(dir) / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

// gzip (Debian's essential package), found on PATH or in /bin, /usr/bin.
std::string gzip_binary() {
  std::string g = find_on_path("gzip");
  for (const char* p : {"/bin/gzip", "/usr/bin/gzip"})
    if (g.empty() && ::access(p, X_OK) == 0) g = p;
  if (g.empty()) throw std::runtime_error("gzip not found (on PATH, /bin or /usr/bin): needed for compressed metrics");
  return g;
}

// A finished run's metrics.jsonl → metrics.jsonl.gz (gzip -n: no name or time inside, so the same
// metrics give the same bytes). gzip removes the plain file only once the compressed one is whole.
void compress_metrics(const fs::path& run_dir) {
  if (!fs::exists(run_dir / "metrics.jsonl")) return;
  fs::remove(run_dir / "metrics.jsonl.gz");  // left by an earlier, interrupted compression
  const std::string err = run_process({gzip_binary(), "-n", "-9", "metrics.jsonl"}, run_dir, "/dev/null");
  if (!err.empty())
    std::cout << "warning: gzip " << (run_dir / "metrics.jsonl").string() << " failed (" << err << "); kept it uncompressed"
              << std::endl;
}

// A run's metrics: metrics.jsonl, or else metrics.jsonl.gz ("" when neither).
std::string read_metrics(const fs::path& run_dir) {
  if (fs::exists(run_dir / "metrics.jsonl")) return read_file(run_dir / "metrics.jsonl");
  const fs::path gz = run_dir / "metrics.jsonl.gz";
  if (!fs::exists(gz)) return "";
  char tmpl[] = "/tmp/limuon-metrics-XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd < 0) throw std::runtime_error(std::string("cannot create a temporary file: ") + std::strerror(errno));
  close(fd);
  const std::string err = run_process({gzip_binary(), "-dc", gz.string()}, "", tmpl);
  std::string text = read_file(tmpl);
  fs::remove(tmpl);
  if (!err.empty()) throw std::runtime_error(gz.string() + ": cannot decompress (gzip -dc: " + err + ")");
  return text;
}

// ---------------------------------------------------------------------------------------------
// Reading runs back.

double num(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return NAN;
  return j[key].get<double>();
}

struct EvalPoint {
  int64_t step = 0;
  double samples = NAN, grad_evals = NAN, seconds = NAN, loss = NAN, accuracy = NAN;
};

struct RunResult {
  std::string status = "missing";  // done | incomplete | failed | missing
  std::string note;
  std::map<std::string, double> m;  // the run's numbers (report keys)
  std::vector<EvalPoint> evals;     // by step, one per step
  std::string stopped_by;
};

double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

RunResult read_run(const Run& r, const Spec& spec) {
  const std::string& task = spec.task;
  const bool quiet = !spec.quiet_ms.empty();
  const auto q = spec.quiet_ms.find(r.config->name);
  const double quiet_ms = q == spec.quiet_ms.end() ? NAN : q->second;
  RunResult res;
  const fs::path summary_path = r.dir / "summary.json";
  if (!fs::exists(r.dir / "run.json")) return res;
  std::vector<double> ms, rate;
  double peak = NAN;
  std::map<int64_t, EvalPoint> evals;
  std::istringstream in(read_metrics(r.dir));
  std::string line;
  while (std::getline(in, line)) {
    json row;
    try {
      row = json::parse(line);
    } catch (const json::exception&) {
      continue;  // a line cut by a crash
    }
    if (row.contains("val_loss")) {
      EvalPoint e;
      e.step = row.value("step", int64_t{0});
      e.samples = num(row, "samples");
      e.grad_evals = num(row, "grad_evals");
      e.seconds = quiet ? static_cast<double>(e.step) * quiet_ms / 1000.0 : num(row, "wall_s");
      e.loss = num(row, "val_loss");  // null (NaN written by a diverged run) reads as NaN
      e.accuracy = num(row, "val_accuracy");
      evals[e.step] = e;  // a run resumed at its end evaluates its last step again: same numbers
    } else if (row.contains("loss")) {
      ms.push_back(num(row, "ms_per_step"));
      for (auto it = row.begin(); it != row.end(); ++it)
        if (it.key().size() > 6 && it.key().compare(it.key().size() - 6, 6, "_per_s") == 0 && it.value().is_number())
          rate.push_back(it.value().get<double>());
      const double p = num(row, "peak_rss_mb");
      if (std::isfinite(p)) peak = std::isfinite(peak) ? std::max(peak, p) : p;
    }
  }
  for (auto& kv : evals) res.evals.push_back(kv.second);
  res.m["ms_per_step"] = quiet ? quiet_ms : median(ms);
  res.m["throughput"] = quiet ? NAN : median(rate);  // with timing.json: from the quiet ms/step, below
  double best = NAN, best_acc = NAN;
  for (const auto& e : res.evals) {
    if (!std::isnan(e.loss) && !(e.loss >= best)) best = e.loss;
    if (!std::isnan(e.accuracy) && !(e.accuracy <= best_acc)) best_acc = e.accuracy;
  }
  res.m["best_val_loss"] = best;
  if (task == "image") res.m["best_val_accuracy"] = best_acc;
  if (!fs::exists(summary_path)) {
    res.status = fs::exists(r.dir / "failed") ? "failed" : "incomplete";
    if (res.status == "failed") res.note = read_file(r.dir / "failed");
    return res;
  }
  json s;
  try {
    s = json::parse(read_file(summary_path));
  } catch (const json::exception& e) {
    res.status = "failed";
    res.note = "unreadable summary.json: " + std::string(e.what());
    return res;
  }
  res.status = "done";
  for (const char* k : {"final_val_loss", "steps", "samples", "grad_evals", "wall_s", "optimizer_state_bytes"}) res.m[k] = num(s, k);
  res.m["clock_s"] = res.m["wall_s"];  // the run's own clock, whatever timing.json says (the study's cost)
  if (quiet) {
    res.m["wall_s"] = res.m["steps"] * quiet_ms / 1000.0;
    const double units = num(s, task == "lm" ? "tokens" : "samples");
    res.m["throughput"] = units / res.m["wall_s"];
  }
  if (task == "lm") res.m["final_val_ppl"] = num(s, "final_val_ppl");
  else res.m["final_val_accuracy"] = num(s, "final_val_accuracy");
  const double sp = num(s, "peak_rss_mb");
  res.m["peak_rss_mb"] = std::isfinite(peak) && std::isfinite(sp) ? std::max(peak, sp) : std::isfinite(sp) ? sp : peak;
  res.stopped_by = s.value("stopped_by", "");
  if (!std::isfinite(res.m["final_val_loss"])) res.note = "diverged (final validation loss is not finite)";
  return res;
}

// A run's state for planning: read_run without the metrics (which only "select": "best" needs).
RunResult peek_run(const Run& r, const Spec& spec) {
  if (spec.select == "best") return read_run(r, spec);
  RunResult res;
  if (!fs::exists(r.dir / "run.json")) return res;
  if (!fs::exists(r.dir / "summary.json")) {
    res.status = fs::exists(r.dir / "failed") ? "failed" : "incomplete";
    return res;
  }
  try {
    res.m["final_val_loss"] = num(json::parse(read_file(r.dir / "summary.json")), "final_val_loss");
    res.status = "done";
  } catch (const json::exception&) {
    res.status = "failed";
  }
  return res;
}

struct Stat {
  double mean = NAN, std = NAN;
  double ci95 = NAN;  // half-width of the 95 % confidence interval of the mean (Student t), n >= 2
  int64_t n = 0;
};

// Two-sided 95 % quantiles of Student's t distribution, t(0.975; df) for df = 1..30 (standard
// tables); above 30 degrees of freedom the normal 1.96 is within 2 % of it.
double t975(int64_t df) {
  static const double t[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                             2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                             2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  return df < 1 ? NAN : df <= 30 ? t[df - 1] : 1.96;
}

// Mean and sample standard deviation (n − 1; 0 for one value) of the finite values, in order.
Stat stat(const std::vector<double>& v) {
  Stat s;
  double sum = 0;
  for (double x : v)
    if (std::isfinite(x)) {
      sum += x;
      ++s.n;
    }
  if (s.n == 0) return s;
  s.mean = sum / static_cast<double>(s.n);
  double ss = 0;
  for (double x : v)
    if (std::isfinite(x)) ss += (x - s.mean) * (x - s.mean);
  s.std = s.n > 1 ? std::sqrt(ss / static_cast<double>(s.n - 1)) : 0.0;
  if (s.n > 1) s.ci95 = t975(s.n - 1) * s.std / std::sqrt(static_cast<double>(s.n));
  return s;
}

json stat_json(const Stat& s) {
  json j{{"mean", s.mean}, {"std", s.std}, {"n", s.n}};
  if (std::isfinite(s.ci95)) j["ci95"] = s.ci95;
  return j;
}

// ---------------------------------------------------------------------------------------------
// The report.

struct Column {
  std::string key, title, format;
  double scale = 1;
};

// The validation loss a run had when its `axis` (gradient evaluations, seconds) reached `at`,
// interpolated linearly between its two evaluations around that point (exact at an evaluation);
// NaN outside its evaluations.
double loss_at(const std::vector<EvalPoint>& evals, double EvalPoint::*axis, double at) {
  if (!std::isfinite(at)) return NAN;
  for (size_t i = 0; i < evals.size(); ++i) {
    const double x = evals[i].*axis;
    if (x == at) return evals[i].loss;
    if (i > 0 && evals[i - 1].*axis < at && at < x) {
      const double w = (at - evals[i - 1].*axis) / (x - evals[i - 1].*axis);
      return evals[i - 1].loss + w * (evals[i].loss - evals[i - 1].loss);
    }
  }
  return NAN;
}

std::vector<Column> columns(const std::string& task, double equal_grad_evals, double equal_seconds) {
  std::vector<Column> c = {{"final_val_loss", "final val loss", "%.4f"}, {"best_val_loss", "best val loss", "%.4f"}};
  if (std::isfinite(equal_grad_evals))
    c.push_back({"val_loss_at_equal_grad_evals", "val loss at " + fmt("%.0f", equal_grad_evals) + " grad evals", "%.4f"});
  if (std::isfinite(equal_seconds))
    c.push_back({"val_loss_at_equal_seconds", "val loss at " + fmt("%.1f", equal_seconds) + " s", "%.4f"});
  if (task == "lm") c.push_back({"final_val_ppl", "final val ppl", "%.2f"});
  else {
    c.push_back({"final_val_accuracy", "final val acc", "%.4f"});
    c.push_back({"best_val_accuracy", "best val acc", "%.4f"});
  }
  c.push_back({"steps", "steps", "%.0f"});
  c.push_back({"samples", "samples", "%.0f"});
  c.push_back({"grad_evals", "grad evals", "%.0f"});
  c.push_back({"wall_s", "train s", "%.1f"});
  c.push_back({"ms_per_step", "ms/step (median)", "%.1f"});
  c.push_back({"throughput", task == "lm" ? "tok/s (median)" : "img/s (median)", "%.0f"});
  c.push_back({"optimizer_state_bytes", "optimizer state MiB", "%.3f", 1.0 / (1024.0 * 1024.0)});
  c.push_back({"peak_rss_mb", "peak RSS MiB", "%.0f"});
  return c;
}

// "m ± s" with the column's format (± left out for one seed); "–" when nothing is finite.
std::string cell(const Stat& s, const Column& c) {
  if (s.n == 0) return "–";
  std::string t = fmt(c.format.c_str(), s.mean * c.scale);
  if (s.n > 1) t += " ± " + fmt(c.format.c_str(), s.std * c.scale);
  return t;
}

std::string gp_quote(const std::string& s) {
  std::string o = "'";
  for (char ch : s) o += ch == '\'' ? std::string("''") : std::string(1, ch);
  return o + "'";
}

// A config's line style, the same in every plot. The colour is its group's (base and tuned
// variants alike, so "limuon-exact-beta0.3" reads as limuon-exact's), the dash pattern and point
// type tell a group's configs apart (the base solid with circles). gnuplot's default cycle repeats
// after 8 colours, and a study plots more configs than that: issue 19's ViT lr sweep drew Muon and
// a LiMuon variant in the same purple. Twelve colours (the ten "tab10" values, black, navy); past
// twelve groups the colours come round again with the next pattern.
std::string config_style(const Spec& spec, const std::string& name) {
  static const char* const kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                         "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#000080"};
  static const int kPoints[] = {7, 5, 9, 11, 13, 15};  // filled circle, square, triangles up/down, diamond, pentagon
  constexpr size_t kColourN = std::size(kColours), kPointN = std::size(kPoints), kDashN = 5;  // gnuplot's dt 1-5
  size_t i = 0;
  while (i < spec.configs.size() && spec.configs[i].name != name) ++i;
  const size_t group = i < spec.configs.size() ? spec.configs[i].group : i;
  size_t variant = 0;  // its place in its group: 0 for the base, then the variants in the spec's order
  for (size_t j = 0; j < i; ++j) variant += spec.configs[j].group == group;
  const size_t pattern = variant + group / kColourN;
  return std::string("lc rgb '") + kColours[group % kColourN] + "' pt " + std::to_string(kPoints[pattern % kPointN]) +
         " dt " + std::to_string(pattern % kDashN + 1);
}

// One point of a tuned flag: a group's base or variant at the base's chosen lr.
struct TuneRow {
  const ConfigSpec* base;
  const ConfigSpec* member;
  std::string flag;
  json value;
  double lr;
  Stat loss;  // over the sweep seeds (the selecting loss)
};

struct Selected {
  const ConfigSpec* config;
  double lr;
  std::vector<const Run*> runs;
  std::vector<const RunResult*> results;
};

// A group's difference from the reference in one metric, paired by seed.
struct Paired {
  const Selected* sel;
  std::string key, title;
  Stat diff;  // this group's run minus the reference's, per seed both finished
  // "lower"/"higher" when the 95 % CI excludes 0, else "not distinguishable"
  std::string verdict() const {
    if (diff.n < 2 || !std::isfinite(diff.ci95)) return diff.n == 0 ? "no paired seeds" : "1 seed: no interval";
    if (diff.mean - diff.ci95 > 0) return "higher";
    if (diff.mean + diff.ci95 < 0) return "lower";
    return "not distinguishable";
  }
};

// Mean curve over the seeds of one config at one lr: steps evaluated in every finished seed.
struct CurvePoint {
  int64_t step;
  Stat samples, grad_evals, seconds, loss, accuracy;
};

std::vector<CurvePoint> mean_curve(const Selected& sel) {
  std::vector<const RunResult*> done;
  for (auto* r : sel.results)
    if (r->status == "done") done.push_back(r);
  std::vector<CurvePoint> out;
  if (done.empty()) return out;
  for (const auto& e : done[0]->evals) {
    std::vector<double> sa, ge, se, lo, ac;
    bool everywhere = true;
    for (auto* r : done) {
      auto it = std::find_if(r->evals.begin(), r->evals.end(), [&](const EvalPoint& p) { return p.step == e.step; });
      if (it == r->evals.end()) {
        everywhere = false;
        break;
      }
      sa.push_back(it->samples);
      ge.push_back(it->grad_evals);
      se.push_back(it->seconds);
      lo.push_back(it->loss);
      ac.push_back(it->accuracy);
    }
    if (!everywhere) continue;
    out.push_back({e.step, stat(sa), stat(ge), stat(se), stat(lo), stat(ac)});
  }
  return out;
}

size_t sweep_count(const Spec& s);
size_t seed_index(const Spec& s, int64_t seed);

// The reference group's selection (its chosen config and lr), or null without a "reference".
const Selected* reference_of(const Spec& spec, const std::vector<Selected>& selected) {
  const Selected* ref = nullptr;
  for (const auto& s : selected)
    if (!spec.reference.empty() && spec.configs[s.config->group].name == spec.reference) ref = &s;
  return ref;
}

// Writes plots/*.dat, plots/plots.gp and runs gnuplot; returns the PNGs written, or sets `skipped`.
std::vector<std::string> draw_plots(const fs::path& out, const Spec& spec, const std::vector<Selected>& selected,
                                    const std::map<std::string, std::map<double, Stat>>& sweep,
                                    const std::vector<TuneRow>& tuned, std::string& skipped) {
  const fs::path dir = out / "plots";
  fs::create_directories(dir);
  const std::string gnuplot = find_on_path("gnuplot");
  std::ostringstream curves, memory, lrs, gp;
  struct Series {
    std::string title, config;
    int index;  // in curves.dat
  };
  std::vector<Series> series;
  int index = 0, nmem = 0;
  for (const auto& sel : selected) {
    auto curve = mean_curve(sel);
    if (!curve.empty()) {
      curves << "# " << sel.config->name << " lr " << lr_text(sel.lr)
             << "\n# step samples grad_evals seconds val_loss val_loss_std val_accuracy val_accuracy_std\n";
      for (const auto& p : curve) {
        curves << p.step << ' ' << fmt("%.17g", p.samples.mean) << ' ' << fmt("%.17g", p.grad_evals.mean) << ' '
               << fmt("%.17g", p.seconds.mean) << ' ' << fmt("%.17g", p.loss.mean) << ' ' << fmt("%.17g", p.loss.std) << ' '
               << fmt("%.17g", p.accuracy.mean) << ' ' << fmt("%.17g", p.accuracy.std) << '\n';
      }
      curves << "\n\n";
      series.push_back({sel.config->name + " (lr " + lr_text(sel.lr) + ")", sel.config->name, index++});
    }
    std::vector<double> st, rss;
    for (auto* r : sel.results)
      if (r->status == "done") {
        st.push_back(r->m.at("optimizer_state_bytes") / (1024.0 * 1024.0));
        rss.push_back(r->m.at("peak_rss_mb"));
      }
    if (!st.empty()) {
      memory << nmem << " \"" << sel.config->name << "\" " << fmt("%.17g", stat(st).mean) << ' ' << fmt("%.17g", stat(rss).mean)
             << '\n';
      ++nmem;
    }
  }
  int nsweep = 0;
  std::vector<std::string> swept;  // configs with 2+ lrs that finished, in lr_sweep.dat's order
  for (const auto& c : spec.configs) {
    auto it = sweep.find(c.name);
    if (it == sweep.end() ||
        std::count_if(it->second.begin(), it->second.end(), [](const auto& kv) { return kv.second.n > 0; }) < 2)
      continue;
    swept.push_back(c.name);
    lrs << "# " << c.name << "\n# lr final_val_loss std\n";
    for (const auto& kv : it->second)
      if (kv.second.n > 0) lrs << fmt("%.17g", kv.first) << ' ' << fmt("%.17g", kv.second.mean) << ' ' << fmt("%.17g", kv.second.std) << '\n';
    lrs << "\n\n";
    ++nsweep;
  }
  std::ofstream(dir / "curves.dat") << curves.str();
  std::ofstream(dir / "memory.dat") << memory.str();
  std::ofstream(dir / "lr_sweep.dat") << lrs.str();

  // The seeds actually finished behind the plotted curves (a study in progress has fewer than planned).
  size_t lo = SIZE_MAX, hi = 0;
  for (const auto& sel : selected) {
    const size_t n = static_cast<size_t>(
        std::count_if(sel.results.begin(), sel.results.end(), [](const RunResult* r) { return r->status == "done"; }));
    if (n == 0) continue;
    lo = std::min(lo, n), hi = std::max(hi, n);
  }
  const std::string over = hi <= 1 ? std::string("1 seed")
                           : lo == hi ? "mean ± std over " + std::to_string(hi) + " seeds"
                                      : "mean ± std over " + std::to_string(lo) + "-" + std::to_string(hi) + " seeds";
  // The comparison's name, not its path: a committed plots.gp regenerated by --report-only in another
  // clone is then byte-identical to the one in git.
  // The key sits outside the axes: a study plots a dozen configs, and a key inside covered the middle
  // of a curve (issue 19's LM loss-vs-samples hid light r8's between 5,000 and 11,000 samples). The
  // canvas is wider by about the key's width, so the axes keep their size.
  const char* key_outside = "set key outside right top Left reverse box width 2\n";
  gp << "# limuon compare: plots of " << out.filename().string() << " (run: gnuplot plots.gp in this directory)\n"
     << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n  set terminal pngcairo size 1300,640 font 'Sans,11' noenhanced\n"
     << "} else {\n  set terminal png size 1300,640 noenhanced\n}\n"
     << "set grid\n" << key_outside << "set ylabel 'validation loss'\nset yrange [*:*]\n";
  std::vector<std::string> pngs;
  auto line_plot = [&](const std::string& file, const std::string& xlabel, int xcol, int ycol, const std::string& ylabel,
                       const std::string& title) {
    if (series.empty()) return;
    gp << "\nset output '" << file << "'\nset title " << gp_quote(title) << "\nset xlabel " << gp_quote(xlabel)
       << "\nset ylabel " << gp_quote(ylabel) << "\nplot ";
    for (size_t i = 0; i < series.size(); ++i)
      gp << (i ? ", \\\n     " : "") << "'curves.dat' index " << series[i].index << " using " << xcol << ':' << ycol << ':'
         << ycol + 1 << " with yerrorlines lw 2 " << config_style(spec, series[i].config) << " ps 0.8 title "
         << gp_quote(series[i].title);
    gp << "\nunset output\n";
    pngs.push_back(file);
  };
  const std::string budget = "budget " + fmt("%g", spec.budget) + " " + spec.budget_kind;
  line_plot("val_loss_vs_samples.png", "training samples", 2, 5, "validation loss",
            "Validation loss vs samples (" + over + ", each config at its best lr; " + budget + ")");
  line_plot("val_loss_vs_grad_evals.png", "gradient evaluations (samples × evaluations per step)", 3, 5, "validation loss",
            "Validation loss vs gradient evaluations (" + over + "; LiMuon storm=exact spends 2 per step)");
  const std::string seconds_axis = spec.quiet_ms.empty() ? "training time, s (steps only, evaluation excluded)"
                                                          : "training time, s (steps × ms/step measured on a quiet machine)";
  line_plot("val_loss_vs_seconds.png", seconds_axis, 4, 5, "validation loss",
            "Validation loss vs wall-clock time (" + over + ")");
  // The three views side by side in one figure (the one `scripts/demo.sh` points to).
  if (!series.empty()) {
    auto terminal = [&](const char* size, const char* font) {
      gp << "\nif (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n  set terminal pngcairo size " << size << " font '" << font
         << "' noenhanced\n} else {\n  set terminal png size " << size << " noenhanced\n}\n";
    };
    // The three panels share the left four fifths; one key, the last panel's, stands to their right.
    terminal("2100,600", "Sans,10");
    gp << "set output 'val_loss_overview.png'\nset multiplot layout 1,3 margins 0.04,0.81,0.14,0.89 spacing 0.045,0 title "
       << gp_quote("Validation loss, one line per optimizer (" + over + ", each config at its best lr; " + budget + ")")
       << "\nset ylabel 'validation loss (nats per token)'\n";
    const std::pair<int, const char*> panels[] = {{2, "training samples (sequences)"},
                                                  {3, "gradient evaluations (samples × evaluations per step)"},
                                                  {4, seconds_axis.c_str()}};
    for (const auto& panel : panels) {
      gp << (panel.first == 4 ? "set key at screen 0.82,0.89 left top Left reverse box width 2\n" : "set key off\n");
      gp << "set title ''\nset xlabel " << gp_quote(panel.second) << "\nplot ";
      for (size_t i = 0; i < series.size(); ++i)
        gp << (i ? ", \\\n     " : "") << "'curves.dat' index " << series[i].index << " using " << panel.first
           << ":5:6 with yerrorlines lw 2 " << config_style(spec, series[i].config) << " ps 0.6 title "
           << gp_quote(series[i].title);
      gp << "\n";
    }
    gp << "unset multiplot\nunset output\nset ylabel 'validation loss'\n" << key_outside;
    terminal("1300,640", "Sans,11");
    pngs.push_back("val_loss_overview.png");
  }
  if (spec.task == "image")
    line_plot("val_accuracy_vs_samples.png", "training samples", 2, 7, "validation accuracy",
              "Validation accuracy vs samples (" + over + ")");
  if (nmem > 0) {
    gp << "\nset output 'memory.png'\nset multiplot layout 1,2 title 'Memory per optimizer (each config at its best lr, mean over "
          "seeds)'\n"
       << "set style fill solid 0.6 border -1\nset boxwidth 0.6\nset xrange [-0.6:" << nmem - 0.4 << "]\nset yrange [0:*]\n"
       << "set xtics rotate by -30 nomirror\nset key off\nunset xlabel\n"
       << "set title 'persistent optimizer state'\nset ylabel 'MiB'\n"
       << "plot 'memory.dat' using 1:3:xtic(2) with boxes lc rgb '#4a7fb0', '' using 1:3:(sprintf('%.3g', $3)) with labels "
          "offset 0,0.7\n"
       << "set title 'peak resident memory of the training process'\nset ylabel 'MiB'\n"
       << "plot 'memory.dat' using 1:4:xtic(2) with boxes lc rgb '#c0504d', '' using 1:4:(sprintf('%.0f', $4)) with labels "
          "offset 0,0.7\n"
       << "unset multiplot\nunset output\nset xtics norotate mirror\nset autoscale x\n" << key_outside;
    pngs.push_back("memory.png");
  }
  if (nsweep > 0) {
    const size_t sweep_n =
        spec.sweep_seeds > 0 ? std::min(static_cast<size_t>(spec.sweep_seeds), spec.seeds.size()) : spec.seeds.size();
    const std::string sweep_over = sweep_n > 1 ? "mean ± std over " + std::to_string(sweep_n) + " seeds" : "1 seed";
    gp << "\nset output 'lr_sweep.png'\nset title "
       << gp_quote("Learning-rate sweep: " + std::string(spec.select == "best" ? "best" : "final") + " validation loss (" +
                   sweep_over + ")")
       << "\nset logscale x\nset xlabel 'learning rate'\nset ylabel 'validation loss'\nset yrange [*:*]\nset xrange [*:*]\n"
       << "set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05\n" << key_outside << "plot ";
    for (size_t i = 0; i < swept.size(); ++i)
      gp << (i ? ", \\\n     " : "") << "'lr_sweep.dat' index " << i << " using 1:2:3 with yerrorlines lw 2 "
         << config_style(spec, swept[i]) << " title " << gp_quote(swept[i]);
    gp << "\nunset output\nunset logscale x\n";
    pngs.push_back("lr_sweep.png");
  }
  // Tuned flags: per flag, one line per group, the selecting loss against the flag's value at the
  // base's chosen lr (numeric flags; log x when every value is positive).
  std::vector<std::string> flags;
  for (const auto& t : tuned)
    if (t.value.is_number() && std::find(flags.begin(), flags.end(), t.flag) == flags.end()) flags.push_back(t.flag);
  // The reference at its chosen lr over the same sweep seeds, as a dashed level on every tuning
  // plot: what a tuned value has to reach.
  const size_t sweep_n = sweep_count(spec);
  std::string reference_level;
  if (const Selected* ref = reference_of(spec, selected); ref != nullptr && !flags.empty()) {
    std::vector<double> v;
    for (size_t i = 0; i < ref->runs.size(); ++i)
      if (seed_index(spec, ref->runs[i]->seed) < sweep_n && ref->results[i]->status == "done")
        v.push_back(ref->results[i]->m.at(spec.select == "best" ? "best_val_loss" : "final_val_loss"));
    if (!v.empty())
      reference_level = ", \\\n     " + fmt("%.17g", stat(v).mean) + " with lines dt 2 lw 2 lc rgb 'gray30' title " +
                        gp_quote(ref->config->name + " at lr " + lr_text(ref->lr) + " (reference, same seeds)");
  }
  for (const auto& flag : flags) {
    std::ostringstream dat;
    std::vector<std::string> titles, styled;  // legend title, config whose style the line takes (the base)
    std::set<const ConfigSpec*> bases;
    bool positive = true;
    for (const auto& t : tuned) {
      if (t.flag != flag || !bases.insert(t.base).second) continue;
      std::vector<std::pair<double, Stat>> pts;
      for (const auto& u : tuned)
        if (u.flag == flag && u.base == t.base && u.value.is_number() && u.loss.n > 0) pts.emplace_back(u.value.get<double>(), u.loss);
      if (pts.size() < 2) continue;
      std::sort(pts.begin(), pts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      dat << "# " << t.base->name << " at lr " << lr_text(t.lr) << "\n# " << flag << " loss std\n";
      for (const auto& [x, st] : pts) {
        positive = positive && x > 0;
        dat << fmt("%.17g", x) << ' ' << fmt("%.17g", st.mean) << ' ' << fmt("%.17g", st.std) << '\n';
      }
      dat << "\n\n";
      titles.push_back(t.base->name + " (lr " + lr_text(t.lr) + ")");
      styled.push_back(t.base->name);
    }
    if (titles.empty()) continue;
    const std::string name = "tune_" + flag;
    std::ofstream(dir / (name + ".dat")) << dat.str();
    gp << "\nset output '" << name << ".png'\nset title "
       << gp_quote("Tuning " + flag + " at each config's chosen lr: " + std::string(spec.select == "best" ? "best" : "final") +
                   " validation loss (" + (sweep_n > 1 ? "mean ± std over " + std::to_string(sweep_n) + " seeds" : "1 seed") + ")")
       << (positive ? "\nset logscale x" : "") << "\nset xlabel " << gp_quote(flag)
       << "\nset ylabel 'validation loss'\nset yrange [*:*]\nset xrange [*:*]\n"
       << "set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05\n" << key_outside << "plot ";
    for (size_t i = 0; i < titles.size(); ++i)
      gp << (i ? ", \\\n     " : "") << "'" << name << ".dat' index " << i << " using 1:2:3 with yerrorlines lw 2 "
         << config_style(spec, styled[i]) << " title " << gp_quote(titles[i]);
    gp << reference_level << "\nunset output\nunset logscale x\n";
    pngs.push_back(name + ".png");
  }
  std::ofstream(dir / "plots.gp") << gp.str();
  if (pngs.empty()) {
    skipped = "no finished run to plot";
    return {};
  }
  if (gnuplot.empty()) {
    skipped = "gnuplot is not installed (not on PATH); install it (Debian: apt-get install gnuplot-nox, as scripts/setup.sh does) "
              "and rerun with --report-only";
    return {};
  }
  for (const auto& p : pngs) fs::remove(dir / p);
  const fs::path log = dir / "gnuplot.log";
  fs::remove(log);
  const std::string err = run_process({gnuplot, "plots.gp"}, dir, log);
  std::vector<std::string> made;
  for (const auto& p : pngs)
    if (fs::exists(dir / p) && fs::file_size(dir / p) > 0) made.push_back(p);
  if (!err.empty() || made.size() != pngs.size())
    skipped = "gnuplot failed (" + (err.empty() ? std::string("some plots missing") : err) + "): " + tail_lines(log, 5);
  return made;
}

std::string budget_text(const Spec& s) {
  const std::string n = fmt("%g", s.budget);
  if (s.budget_kind == "steps") return n + " optimizer steps per run";
  if (s.budget_kind == "samples") return n + " training samples per run (sequences for lm, images for image)";
  if (s.budget_kind == "grad_evals")
    return n + " gradient evaluations per run, counted in samples (a step of B samples costs B, or 2B for LiMuon "
               "storm=exact, which evaluates the gradient at the new and the previous weights)";
  return n + " seconds of training steps per run (wall clock; NOT reproducible: depends on the machine and its load)";
}

size_t seed_index(const Spec& s, int64_t seed) {
  return static_cast<size_t>(std::find(s.seeds.begin(), s.seeds.end(), seed) - s.seeds.begin());
}

// Whether an lr is one of the spec's for the config (not an "extend_lrs" candidate).
bool in_grid(const ConfigSpec& c, double lr) {
  const auto it = std::find(c.lrs.begin(), c.lrs.end(), lr);
  return static_cast<size_t>(it - c.lrs.begin()) < c.grid;
}

size_t sweep_count(const Spec& s) {
  return s.sweep_seeds > 0 ? std::min(static_cast<size_t>(s.sweep_seeds), s.seeds.size()) : s.seeds.size();
}

// Whether a config's group has anything to tune: an lr list, or variants.
bool group_tuned(const Spec& s, const ConfigSpec& c) {
  if (s.configs[c.group].lrs.size() > 1) return true;
  return std::any_of(s.configs.begin(), s.configs.end(), [&](const ConfigSpec& x) { return x.is_variant() && x.group == c.group; });
}

// Whether a run takes part in its group's tuning: every run of a group with nothing to tune, else
// those of the first sweep_seeds seeds.
bool in_sweep(const Spec& s, const Run& r) {
  return !group_tuned(s, *r.config) || s.sweep_seeds == 0 || seed_index(s, r.seed) < static_cast<size_t>(s.sweep_seeds);
}

struct Choice {
  const ConfigSpec* config = nullptr;
  double lr = NAN;       // NaN: no sweep run finished
  double loss = INFINITY;
  bool complete = false;  // every planned sweep run at that lr finished with a finite loss
};

// Whether `a` beats `b`: complete lrs (all their sweep runs finished with a finite loss) first,
// then the lower mean loss.
bool better(const Choice& a, const Choice& b) {
  if (std::isnan(a.lr)) return false;
  if (std::isnan(b.lr)) return true;
  return (a.complete && !b.complete) || (a.complete == b.complete && a.loss < b.loss);
}

// The members of a variant's group that tuning may try next to it, besides it: the base and the
// variants of the same flag that `ran` (at the base's chosen lr); for a numeric flag the nearest
// value below and above the variant's, for any other flag every other value.
std::vector<const ConfigSpec*> flag_neighbours(const Spec& spec, const ConfigSpec& v,
                                               const std::function<bool(const ConfigSpec*)>& ran) {
  const ConfigSpec& base = spec.configs[v.group];
  auto value = [&](const ConfigSpec& m) { return config_flag(spec, m, v.tuned); };
  const json own = value(v);
  std::vector<const ConfigSpec*> members, out;
  for (const auto& m : spec.configs)
    if (&m != &v && (&m == &base || (m.group == v.group && m.tuned == v.tuned)) && ran(&m)) members.push_back(&m);
  if (!own.is_number()) return members;
  const ConfigSpec *below = nullptr, *above = nullptr;
  for (const ConfigSpec* m : members) {
    const json x = value(*m);
    if (!x.is_number()) return members;
    const double d = x.get<double>(), o = own.get<double>();
    if (d < o && (below == nullptr || d > value(*below).get<double>())) below = m;
    if (d > o && (above == nullptr || d < value(*above).get<double>())) above = m;
  }
  for (const ConfigSpec* m : {below, above})
    if (m != nullptr) out.push_back(m);
  return out;
}

// The state of a comparison: which runs it makes (in order), each config's lr, each group's choice.
struct Plan {
  std::vector<size_t> wanted;                     // the runs to make, in order: bases' sweeps, variants, other seeds
  std::vector<char> want;                         // by run index
  std::map<const ConfigSpec*, Choice> per_config;  // each config's best lr over its sweep runs
  std::map<size_t, Choice> per_group;             // each group's (base index) best config and lr
  std::map<std::string, std::map<double, Stat>> sweep;  // per config and lr: the statistics picking them
};

// What a comparison runs, given the runs' states (`attempted`: runs tried in this invocation, which
// count as settled even when they failed), group by group in the spec's order:
//  1. every base config's sweep runs (each lr, sweep seeds);
//  2. once a base's sweep is settled, its variants at the base's chosen lr; where a variant then
//     leads the group, it also runs at the neighbouring lrs of the grid around its best, until its
//     best lr has both neighbours run (or is at the end of the grid); then, if that lr is not the
//     base's, the values of the variant's flag next to its own (tried at the base's lr) run at
//     it too, and a value that takes the lead there walks the lr grid in turn;
//  3. once a group's tuning is settled, the other seeds at its choice (config and lr).
// The choice picks the lowest mean validation loss (final, or best with "select": "best") over the
// sweep seeds, preferring lrs whose sweep runs all finished with a finite loss. A run an earlier
// invocation started and did not finish steers none of these steps: the search wants it again when
// it reaches it, and it resumes from its checkpoint.
Plan plan_state(const Spec& spec, const std::vector<Run>& runs, const std::vector<RunResult>& results,
                const std::set<size_t>& attempted = {}) {
  const std::string key = spec.select == "best" ? "best_val_loss" : "final_val_loss";
  Plan p;
  p.want.assign(runs.size(), 0);
  auto add = [&](size_t i) {
    if (p.want[i]) return false;
    p.want[i] = 1;
    p.wanted.push_back(i);
    return true;
  };
  auto pending = [&](size_t i) { return p.want[i] && results[i].status != "done" && !attempted.count(i); };
  auto sweep_runs = [&](const ConfigSpec* c, double lr, auto&& f) {
    for (size_t i = 0; i < runs.size(); ++i)
      if (runs[i].config == c && runs[i].lr == lr && in_sweep(spec, runs[i])) f(i);
  };
  // Whether config c's sweep at lr is part of the comparison: planned, or run in an earlier plan.
  auto considered = [&](const ConfigSpec* c, double lr) {
    bool k = false;
    sweep_runs(c, lr, [&](size_t i) { k = k || p.want[i] || results[i].status != "missing"; });
    return k;
  };
  // Whether the tuning has tried config c at lr: planned now, or finished. A run an earlier
  // invocation started but did not finish (interrupted, or failed) is not a point of the search:
  // counting it would end an lr walk or a flag's extension at a value with no result, and the
  // comparison would drop that run and tune on without it; left out, the search reaches it again
  // and it resumes (or reruns) like any pending run.
  auto tried_at = [&](const ConfigSpec* c, double lr) {
    bool k = false;
    sweep_runs(c, lr, [&](size_t i) { k = k || p.want[i] || results[i].status == "done"; });
    return k;
  };
  auto choose = [&](const ConfigSpec& c, std::map<double, Stat>* stats) {
    Choice best;
    best.config = &c;
    for (double lr : c.lrs) {
      if (!considered(&c, lr)) continue;  // a variant's lr it never ran at
      std::vector<double> v;
      size_t planned = 0, done = 0;
      sweep_runs(&c, lr, [&](size_t i) {
        ++planned;
        if (results[i].status != "done") return;
        ++done;
        auto it = results[i].m.find(key);
        v.push_back(it == results[i].m.end() ? NAN : it->second);
      });
      const Stat st = stat(v);
      if (stats) (*stats)[lr] = st;
      if (st.n == 0) continue;
      Choice here{&c, lr, st.mean, done == planned && static_cast<size_t>(st.n) == done};
      if (better(here, best)) best = here;
    }
    return best;
  };
  auto group_choice = [&](size_t g) {
    Choice best = choose(spec.configs[g], nullptr);
    for (const auto& c : spec.configs)
      if (c.is_variant() && c.group == g) {
        const Choice v = choose(c, nullptr);
        if (better(v, best)) best = v;
      }
    return best;
  };
  auto settled = [&](size_t g, bool variants_too) {
    for (size_t i = 0; i < runs.size(); ++i)
      if (runs[i].config->group == g && (variants_too || !runs[i].config->is_variant()) && pending(i)) return false;
    return true;
  };
  for (size_t i = 0; i < runs.size(); ++i)
    if (!runs[i].config->is_variant() && in_sweep(spec, runs[i]) && in_grid(*runs[i].config, runs[i].lr)) add(i);
  for (size_t g = 0; g < spec.configs.size(); ++g) {
    if (spec.configs[g].is_variant() || !settled(g, false)) continue;
    // "extend_lrs": while the base's best lr is the lowest (highest) it tried, try the next
    // candidate below (above), one at a time.
    bool waiting = false;
    for (;;) {
      const ConfigSpec& b = spec.configs[g];
      const Choice best = choose(b, nullptr);
      if (std::isnan(best.lr)) break;
      std::vector<double> tried, below, above;
      for (double lr : b.lrs)
        if (tried_at(&b, lr)) tried.push_back(lr);
      const double lo = *std::min_element(tried.begin(), tried.end()), hi = *std::max_element(tried.begin(), tried.end());
      double next = NAN;
      for (size_t k = b.grid; k < b.lrs.size(); ++k) {
        const double lr = b.lrs[k];
        if (best.lr == lo && lr < lo && !(lr <= next)) next = lr;  // the nearest below
        if (best.lr == hi && lr > hi && !(lr >= next)) next = lr;  // the nearest above
      }
      if (std::isnan(next) || tried.size() < 2) break;
      bool added = false;
      sweep_runs(&b, next, [&](size_t i) {
        added = add(i) || added;
        waiting = waiting || pending(i);
      });
      if (!added || waiting) break;
    }
    if (waiting) continue;
    const Choice base = choose(spec.configs[g], nullptr);
    if (std::isnan(base.lr)) continue;
    for (const auto& c : spec.configs)
      if (c.is_variant() && !c.extra && c.group == g) sweep_runs(&c, base.lr, add);
    // "tune_extend": per flag, while the best value at the base's lr is the highest (lowest) of the
    // values tried there, try the nearest candidate beyond it, one at a time.
    bool extending = false;
    std::set<std::string> flags_done;
    for (const auto& x : spec.configs) {
      if (!x.extra || x.group != g || !flags_done.insert(x.tuned).second) continue;
      const std::string& flag = x.tuned;
      for (;;) {
        struct Point {
          double value, loss;
          const ConfigSpec* c;
        };
        std::vector<Point> tried, beyond;
        bool busy = false;
        for (const auto& m : spec.configs) {
          if (m.group != g || !(&m == &spec.configs[g] || m.tuned == flag)) continue;
          const json v = config_flag(spec, m, flag);
          if (&m != &spec.configs[g] && !tried_at(&m, base.lr)) {
            if (m.extra) beyond.push_back({v.get<double>(), NAN, &m});
            continue;
          }
          std::map<double, Stat> at;
          choose(m, &at);
          sweep_runs(&m, base.lr, [&](size_t i) { busy = busy || pending(i); });
          const double loss = at.count(base.lr) && at.at(base.lr).n > 0 ? at.at(base.lr).mean : NAN;
          tried.push_back({v.get<double>(), std::isnan(loss) ? INFINITY : loss, &m});
        }
        if (busy) {
          extending = true;
          break;
        }
        if (tried.size() < 2) break;
        const auto best = std::min_element(tried.begin(), tried.end(), [](const Point& a, const Point& b) { return a.loss < b.loss; });
        if (!std::isfinite(best->loss)) break;
        const auto by_value = [](const Point& a, const Point& b) { return a.value < b.value; };
        const double lo = std::min_element(tried.begin(), tried.end(), by_value)->value;
        const double hi = std::max_element(tried.begin(), tried.end(), by_value)->value;
        const ConfigSpec* next = nullptr;
        double gap = INFINITY;
        for (const auto& b : beyond)
          if ((best->value == lo && b.value < lo && lo - b.value < gap) || (best->value == hi && b.value > hi && b.value - hi < gap)) {
            gap = std::abs(b.value - best->value);
            next = b.c;
          }
        if (next == nullptr) break;
        sweep_runs(next, base.lr, add);
      }
    }
    if (extending) continue;
    // Local search around a leading variant: its lr walk, then its flag's neighbouring values at
    // the lr the walk settled on (a second round of the coordinate-wise tuning), and so on while
    // either axis moves the lead. Each (config, lr) runs once, so the search ends.
    for (;;) {
      const Choice lead = group_choice(g);
      if (lead.config == nullptr || !lead.config->is_variant() || std::isnan(lead.lr)) break;
      bool added = false, waiting = false;
      auto want = [&](const ConfigSpec* c, double lr) {
        sweep_runs(c, lr, [&](size_t i) {
          added = add(i) || added;
          waiting = waiting || pending(i);
        });
      };
      std::vector<double> grid = lead.config->lrs;
      std::sort(grid.begin(), grid.end());
      const size_t at = static_cast<size_t>(std::find(grid.begin(), grid.end(), lead.lr) - grid.begin());
      for (size_t nb : {at - 1, at + 1})
        if (nb < grid.size()) want(lead.config, grid[nb]);
      if (waiting) break;
      if (!added && lead.lr != base.lr)
        for (const ConfigSpec* c : flag_neighbours(spec, *lead.config, [&](const ConfigSpec* m) { return tried_at(m, base.lr); }))
          want(c, lead.lr);
      if (!added || waiting) break;
    }
  }
  for (size_t g = 0; g < spec.configs.size(); ++g) {
    if (spec.configs[g].is_variant() || !group_tuned(spec, spec.configs[g]) || !settled(g, true)) continue;
    const Choice c = group_choice(g);
    if (std::isnan(c.lr)) continue;
    for (size_t i = 0; i < runs.size(); ++i)
      if (runs[i].config == c.config && runs[i].lr == c.lr && !in_sweep(spec, runs[i])) add(i);
  }
  // Group by group in the spec's order (each one's sweep, variants, other seeds): a study stopped
  // part-way holds whole groups rather than many half-tuned ones.
  std::stable_sort(p.wanted.begin(), p.wanted.end(), [&](size_t a, size_t b) { return runs[a].config->group < runs[b].config->group; });
  for (const auto& c : spec.configs) p.per_config[&c] = choose(c, &p.sweep[c.name]);
  for (size_t g = 0; g < spec.configs.size(); ++g)
    if (!spec.configs[g].is_variant()) p.per_group[g] = group_choice(g);
  return p;
}

// What one report pass wrote, for the lines that announce it.
struct ReportDrawn {
  size_t done = 0, runs = 0, pngs = 0;
  std::string plots_skipped;
};

void announce_report(const fs::path& out, const ReportDrawn& d) {
  std::cout << "report: " << (out / "report.md").string() << " (" << d.done << "/" << d.runs << " runs done)\n";
  if (d.pngs > 0) std::cout << "plots: " << (out / "plots").string() << " (" << d.pngs << " PNG)\n";
  if (!d.plots_skipped.empty()) std::cout << "plots skipped: " << d.plots_skipped << "\n";
}

ReportDrawn write_report(const fs::path& out, const Spec& spec, const std::vector<Run>& all_runs) {
  // The runs the comparison makes or has started; variants' lrs and seeds it never ran are left out.
  std::vector<RunResult> all_results;
  for (const auto& r : all_runs) all_results.push_back(read_run(r, spec));
  const Plan plan = plan_state(spec, all_runs, all_results);
  std::vector<Run> runs;
  std::vector<RunResult> results;
  for (size_t i = 0; i < all_runs.size(); ++i)
    if (plan.want[i] || all_results[i].status != "missing") {
      runs.push_back(all_runs[i]);
      results.push_back(all_results[i]);
    }
  // The borrowed timings of the variants that ran (a study's unrun candidates are not named).
  std::map<std::string, std::string> borrowed;
  for (size_t i = 0; i < runs.size(); ++i)
    if (results[i].status != "missing" && spec.quiet_borrowed.count(runs[i].config->name))
      borrowed[runs[i].config->name] = spec.quiet_borrowed.at(runs[i].config->name);
  json jr = json::object();
  jr["spec"] = json{{"path", spec.path},         {"description", spec.description}, {"train", spec.train},
                    {"budget", {{spec.budget_kind, spec.budget}}}, {"seeds", spec.seeds}, {"select", spec.select},
                    {"sweep_seeds", spec.sweep_seeds == 0 ? static_cast<int64_t>(spec.seeds.size()) : spec.sweep_seeds}};
  jr["task"] = spec.task;
  jr["runs"] = json::array();
  for (size_t i = 0; i < runs.size(); ++i) {
    json j{{"config", runs[i].config->name}, {"lr", runs[i].lr}, {"seed", runs[i].seed},
           {"dir", fs::relative(runs[i].dir, out).string()}, {"status", results[i].status}};
    for (const auto& kv : results[i].m) j[kv.first] = kv.second;
    if (!results[i].stopped_by.empty()) j["stopped_by"] = results[i].stopped_by;
    if (!results[i].note.empty()) j["note"] = results[i].note;
    jr["runs"].push_back(j);
  }

  // Per (config, lr): the sweep's statistics (over the sweep seeds); the group's choice is selected.
  std::vector<Selected> selected;
  std::map<const ConfigSpec*, std::vector<double>> tried;  // per config, the lrs its sweep ran or plans, ascending
  jr["sweep"] = json::array();
  for (const auto& c : spec.configs) {
    const Choice& g = plan.per_group.at(c.group);
    std::vector<double> lrs = c.lrs;
    std::sort(lrs.begin(), lrs.end());
    const size_t first = jr["sweep"].size();
    for (double lr : lrs) {
      json j{{"config", c.name}, {"group", spec.configs[c.group].name}, {"lr", lr}, {"selected", g.config == &c && lr == g.lr}};
      size_t done = 0, planned = 0;
      for (const char* k : {"final_val_loss", "best_val_loss"}) {
        std::vector<double> v;
        done = planned = 0;
        for (size_t i = 0; i < runs.size(); ++i)
          if (runs[i].config == &c && runs[i].lr == lr && in_sweep(spec, runs[i])) {
            ++planned;
            if (results[i].status != "done") continue;
            v.push_back(results[i].m[k]);
            ++done;
          }
        j[k] = stat_json(stat(v));
      }
      if (planned == 0) continue;  // a variant's lr it never ran at, an "extend_lrs" candidate not needed
      j["seeds_done"] = done;
      j["seeds_planned"] = planned;
      jr["sweep"].push_back(j);
      tried[&c].push_back(lr);
    }
    // A choice at the lowest or highest lr tried may not be the best: say so.
    for (size_t k = first; k < jr["sweep"].size(); ++k) {
      auto& j = jr["sweep"][k];
      const double lr = j["lr"].get<double>();
      j["at_edge"] = j["selected"].get<bool>() && tried[&c].size() >= 2 && (lr == tried[&c].front() || lr == tried[&c].back());
    }
  }
  auto tried_lrs = [&](const ConfigSpec& c) { return tried.count(&c) ? json(tried.at(&c)) : json::array(); };
  for (size_t g = 0; g < spec.configs.size(); ++g) {
    if (spec.configs[g].is_variant()) continue;
    const Choice& ch = plan.per_group.at(g);
    Selected s{ch.config, std::isnan(ch.lr) ? spec.configs[g].lrs[0] : ch.lr, {}, {}};
    if (std::isnan(ch.lr)) s.config = &spec.configs[g];
    for (size_t i = 0; i < runs.size(); ++i)
      if (runs[i].config == s.config && runs[i].lr == s.lr) {
        s.runs.push_back(&runs[i]);
        s.results.push_back(&results[i]);
      }
    selected.push_back(s);
  }

  // Tuned flags: each group's base and variants at the base's chosen lr.
  std::vector<TuneRow> tune_rows;
  for (size_t g = 0; g < spec.configs.size(); ++g) {
    const ConfigSpec& base = spec.configs[g];
    if (base.is_variant()) continue;
    const double lr = plan.per_config.at(&base).lr;
    for (const auto& c : spec.configs) {
      if (!c.is_variant() || c.group != g) continue;
      if (c.extra && plan.sweep.at(c.name).empty()) continue;  // a "tune_extend" candidate not needed
      for (const ConfigSpec* member : {&base, &c}) {
        TuneRow t{&base, member, c.tuned, config_flag(spec, *member, c.tuned), lr, {}};
        const auto it = plan.sweep.find(member->name);
        if (!std::isnan(lr) && it != plan.sweep.end() && it->second.count(lr)) t.loss = it->second.at(lr);
        const bool seen = std::any_of(tune_rows.begin(), tune_rows.end(), [&](const TuneRow& x) {
          return x.member == member && x.flag == t.flag;
        });
        if (!seen) tune_rows.push_back(t);
      }
    }
  }
  jr["tuned"] = json::array();
  for (const auto& t : tune_rows)
    jr["tuned"].push_back(json{{"group", t.base->name}, {"config", t.member->name}, {"flag", t.flag}, {"value", t.value},
                               {"lr", std::isnan(t.lr) ? json() : json(t.lr)},
                               {spec.select == "best" ? "best_val_loss" : "final_val_loss", stat_json(t.loss)}});

  // Equal gradient evaluations: the smallest total any selected run spent (a samples budget gives
  // LiMuon storm=exact about twice the others'); every run's validation loss is read there,
  // interpolated linearly in gradient evaluations between its evaluations.
  double equal_evals = NAN;
  for (const auto& s : selected)
    for (const auto* r : s.results) {
      const auto it = r->m.find("grad_evals");
      if (r->status == "done" && it != r->m.end() && std::isfinite(it->second))
        equal_evals = std::isfinite(equal_evals) ? std::min(equal_evals, it->second) : it->second;
    }
  // Equal seconds, likewise: the shortest training time of any selected run (its last evaluation),
  // each run's loss read there, interpolated in seconds.
  double equal_seconds = NAN;
  for (const auto& s : selected)
    for (const auto* r : s.results)
      if (r->status == "done" && !r->evals.empty() && std::isfinite(r->evals.back().seconds))
        equal_seconds = std::isfinite(equal_seconds) ? std::min(equal_seconds, r->evals.back().seconds) : r->evals.back().seconds;
  for (auto& r : results) {
    r.m["val_loss_at_equal_grad_evals"] = loss_at(r.evals, &EvalPoint::grad_evals, equal_evals);
    r.m["val_loss_at_equal_seconds"] = loss_at(r.evals, &EvalPoint::seconds, equal_seconds);
  }
  jr["equal_grad_evals"] = equal_evals;
  jr["equal_seconds"] = equal_seconds;
  if (!spec.quiet_ms.empty()) {
    json measured = json::object();  // timing.json's own figures
    for (const auto& kv : spec.quiet_ms)
      if (!spec.quiet_borrowed.count(kv.first)) measured[kv.first] = kv.second;
    jr["timing"] = json{{"source", spec.quiet_source}, {"ms_per_step", measured}, {"from_base", borrowed}};
  }
  const auto cols = columns(spec.task, equal_evals, equal_seconds);

  jr["configs"] = json::array();
  std::map<std::string, std::map<std::string, Stat>> table;
  for (const auto& s : selected) {
    json j{{"config", s.config->name}, {"group", spec.configs[s.config->group].name}, {"lr", s.lr}, {"lrs_tried", tried_lrs(*s.config)}};
    size_t done = 0;
    for (auto* r : s.results) done += r->status == "done";
    j["seeds_done"] = done;
    json m = json::object();
    for (const auto& col : cols) {
      std::vector<double> v;
      for (auto* r : s.results)
        if (r->status == "done") v.push_back(r->m.count(col.key) ? r->m.at(col.key) : NAN);
      table[s.config->name][col.key] = stat(v);
      m[col.key] = stat_json(table[s.config->name][col.key]);
    }
    j["metrics"] = m;
    jr["configs"].push_back(j);
  }

  // Against the reference, paired by seed (a seed fixes the initialisation and the data order for
  // every config, so the difference of two runs with one seed holds less noise than either run):
  // per group and metric, the mean difference over the seeds both finished, with its 95 % CI.
  std::vector<Paired> paired;
  const Selected* ref = reference_of(spec, selected);
  jr["paired"] = json::array();
  if (ref != nullptr) {
    std::vector<std::pair<std::string, std::string>> keys;  // key, title
    for (const auto& c : cols)
      if (c.key == "final_val_loss" || c.key == "val_loss_at_equal_grad_evals" || c.key == "val_loss_at_equal_seconds" ||
          c.key == "final_val_accuracy")
        keys.emplace_back(c.key, c.title);
    for (const auto& s : selected) {
      if (&s == ref) continue;
      for (const auto& [key, title] : keys) {
        std::vector<double> d;
        for (size_t i = 0; i < s.runs.size(); ++i)
          for (size_t k = 0; k < ref->runs.size(); ++k)
            if (s.runs[i]->seed == ref->runs[k]->seed && s.results[i]->status == "done" && ref->results[k]->status == "done")
              d.push_back(s.results[i]->m.at(key) - ref->results[k]->m.at(key));
        Paired p{&s, key, title, stat(d)};
        paired.push_back(p);
        json j{{"config", s.config->name}, {"reference", ref->config->name}, {"metric", key}, {"difference", stat_json(p.diff)},
               {"verdict", p.verdict()}};
        jr["paired"].push_back(j);
      }
    }
  }

  std::string skipped;
  std::vector<std::string> pngs;
  try {
    pngs = draw_plots(out, spec, selected, plan.sweep, tune_rows, skipped);
  } catch (const std::exception& e) {
    skipped = std::string("plotting failed: ") + e.what();
  }
  jr["plots"] = json::array();
  for (const auto& p : pngs) jr["plots"].push_back("plots/" + p);
  if (!skipped.empty()) jr["plots_skipped"] = skipped;

  // report.md
  std::ostringstream md;
  md << "# Optimizer comparison\n\n";
  if (!spec.description.empty()) md << spec.description << "\n\n";
  md << "- Spec: `" << spec.path << "`\n- Task: `" << spec.task << "`; common train flags:";
  for (auto it = spec.train.begin(); it != spec.train.end(); ++it)
    md << " `--" << it.key() << " " << (it.value().is_string() ? it.value().get<std::string>() : it.value().dump()) << "`";
  md << "\n- Budget: " << budget_text(spec) << "\n- Seeds: ";
  for (size_t i = 0; i < spec.seeds.size(); ++i) md << (i ? ", " : "") << spec.seeds[i];
  md << " (a seed fixes the model initialisation and the order of the training data, the same for every config)\n"
     << "- Each config is shown at the learning rate with the lowest mean " << (spec.select == "best" ? "best" : "final")
     << " validation loss over "
     << (spec.sweep_seeds > 0 && static_cast<size_t>(spec.sweep_seeds) < spec.seeds.size()
             ? "the first " + std::to_string(spec.sweep_seeds) + " seed(s); the other seeds run at that lr only"
             : std::string("the seeds"))
     << " (see the sweep below)" << (tune_rows.empty() ? "" : "; a config with tuned flags is shown as its best variant (a row per group: the base config and its variants, see \"Tuned flags\")") << ".\n\n";
  // The study's cost: what the finished runs took by their own clocks, and an estimate of what the
  // rest of the plan takes at the quiet ms/step (each left run as long as its config's finished
  // runs, less the steps an unfinished one has evaluated).
  {
    double clock = 0, left = 0;
    size_t done = 0, unknown = 0;
    std::map<const ConfigSpec*, std::vector<double>> steps_of;
    for (size_t i = 0; i < runs.size(); ++i)
      if (results[i].status == "done") {
        ++done;
        clock += results[i].m.at("clock_s");
        steps_of[runs[i].config].push_back(results[i].m.at("steps"));
      }
    for (size_t i = 0; i < runs.size(); ++i) {
      if (results[i].status == "done") continue;
      const auto q = spec.quiet_ms.find(runs[i].config->name);
      const auto st = steps_of.find(runs[i].config);
      const double steps = st != steps_of.end() ? median(st->second) : budget_steps(spec, *runs[i].config);
      if (q == spec.quiet_ms.end() || !std::isfinite(steps)) {
        ++unknown;
        continue;
      }
      const double at = results[i].evals.empty() ? 0.0 : static_cast<double>(results[i].evals.back().step);
      left += std::max(0.0, steps - at) * q->second / 1000.0;
    }
    jr["cost"] = json{{"runs_done", done}, {"runs_left", runs.size() - done}, {"clock_s_done", clock},
                      {"quiet_s_left", left}, {"runs_left_unestimated", unknown}};
    md << "- Cost: " << done << " of the " << runs.size() << " runs planned so far are done; their own clocks sum to "
       << fmt("%.1f", clock / 3600.0) << " h (each run's training, evaluations included, on the threads it was given)";
    if (done < runs.size())
      md << "; the " << runs.size() - done << " left take about " << fmt("%.1f", left / 3600.0)
         << " h more at timing.json's ms/step and the steps of their config's finished runs (or the budget's)"
         << (unknown > 0 ? " (" + std::to_string(unknown) + " of them not estimated: no timing, or a budget not in steps or samples)" : std::string());
    md << "\n\n";
  }
  md << "## Results (mean ± std over seeds; the final loss also with its 95 % confidence interval)\n\n"
        "| config | flags | lr | seeds |";
  for (const auto& c : cols) {
    md << ' ' << c.title << " |";
    if (c.key == "final_val_loss") md << " final val loss, 95 % CI |";
  }
  md << "\n|---|---|---|---|";
  for (size_t i = 0; i <= cols.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& s : selected) {
    size_t done = 0;
    for (auto* r : s.results) done += r->status == "done";
    std::string flags;
    for (auto it = s.config->flags.begin(); it != s.config->flags.end(); ++it)
      flags += (flags.empty() ? "" : " ") + it.key() + "=" + (it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
    md << "| " << s.config->name << " | " << (flags.empty() ? "–" : flags) << " | " << lr_text(s.lr) << " | " << done << "/"
       << spec.seeds.size() << " |";
    for (const auto& c : cols) {
      const Stat& st = table[s.config->name][c.key];
      md << ' ' << cell(st, c) << " |";
      if (c.key == "final_val_loss")
        md << ' ' << (std::isfinite(st.ci95) ? "[" + fmt(c.format.c_str(), st.mean - st.ci95) + ", " +
                                                   fmt(c.format.c_str(), st.mean + st.ci95) + "]"
                                             : std::string("–"))
           << " |";
    }
    md << "\n";
  }
  md << "\nLosses are cross-entropy on the validation split"
     << (spec.task == "lm" ? " (perplexity = exp(final loss) per run, then averaged)" : " (accuracy on the test split)")
     << (spec.quiet_ms.empty()
             ? std::string(". `train s` sums the time of the training steps (evaluations excluded); ms/step and throughput are "
                           "medians over a run's steps, averaged over seeds")
             : ". `train s`, ms/step, throughput and every seconds axis come from `timing.json`, not from the runs' own "
               "clocks: each config's ms per training step measured on a quiet machine (" + spec.quiet_source +
               "), times its steps; a config it lacks shows no seconds" + borrowed_text(borrowed))
     << "; optimizer state is the persistent state the optimizers keep between steps "
        "(AdamW moments for the parameters routed to AdamW included); peak RSS is the training process's peak resident "
        "memory.\n";
  if (ref != nullptr) {
    md << "\n## Against " << ref->config->name << " (lr " << lr_text(ref->lr)
       << "), paired by seed\n\nEach group's run minus " << ref->config->name
       << "'s run with the same seed (the same initialisation and data order), averaged over the seeds both finished, with "
          "the 95 % confidence interval of that mean (Student t). Negative is a lower value than "
       << ref->config->name << "'s (for losses: better). \"not distinguishable\": the interval holds 0.\n\n"
       << "| config | metric | difference | 95 % CI | seeds | reading |\n|---|---|---|---|---|---|\n";
    for (const auto& p : paired) {
      const std::string f = "%+.4f";
      md << "| " << p.sel->config->name << " | " << p.title << " | " << (p.diff.n > 0 ? fmt(f.c_str(), p.diff.mean) : "–") << " | "
         << (std::isfinite(p.diff.ci95)
                 ? "[" + fmt(f.c_str(), p.diff.mean - p.diff.ci95) + ", " + fmt(f.c_str(), p.diff.mean + p.diff.ci95) + "]"
                 : std::string("–"))
         << " | " << p.diff.n << " | " << p.verdict() << " |\n";
    }
  }
  md << "\n## Learning-rate sweep (" << (spec.select == "best" ? "best" : "final") << " validation loss picks the lr)\n\n"
     << "| config | lr | seeds done | final val loss | best val loss | selected |\n|---|---|---|---|---|---|\n";
  for (const auto& j : jr["sweep"]) {
    const Column loss_col{"", "", "%.4f"};
    auto st = [&](const char* k) {
      Stat s;
      s.mean = num(j[k], "mean");
      s.std = num(j[k], "std");
      s.n = j[k]["n"].get<int64_t>();
      return s;
    };
    md << "| " << j["config"].get<std::string>() << " | " << lr_text(j["lr"].get<double>()) << " | "
       << j["seeds_done"].get<size_t>() << "/" << j["seeds_planned"].get<size_t>() << " | " << cell(st("final_val_loss"), loss_col) << " | "
       << cell(st("best_val_loss"), loss_col) << " | "
       << (j["selected"].get<bool>() ? (j["at_edge"].get<bool>() ? "✔ (at an end of the lrs tried)" : "✔") : "") << " |\n";
  }
  if (!tune_rows.empty()) {
    md << "\n## Tuned flags (each variant at its base config's chosen lr; a variant leading its group also runs at the "
          "neighbouring lrs, in the sweep above)\n\n| group | config | flag | value | lr | seeds done | "
       << (spec.select == "best" ? "best" : "final") << " val loss | chosen |\n|---|---|---|---|---|---|---|---|\n";
    for (const auto& t : tune_rows) {
      const Choice& g = plan.per_group.at(t.base->group);
      md << "| " << t.base->name << " | " << t.member->name << " | " << t.flag << " | "
         << (t.value.is_string() ? t.value.get<std::string>() : t.value.is_number() ? lr_text(t.value.get<double>()) : t.value.dump())
         << " | " << (std::isnan(t.lr) ? std::string("–") : lr_text(t.lr)) << " | " << t.loss.n << "/" << sweep_count(spec) << " | "
         << cell(t.loss, Column{"", "", "%.4f"}) << " | " << (g.config == t.member && !std::isnan(g.lr) ? "✔ (lr " + lr_text(g.lr) + ")" : "") << " |\n";
    }
  }
  md << "\n## Plots\n\n";
  for (const auto& p : pngs) md << "![" << p << "](plots/" << p << ")\n\n";
  if (!skipped.empty()) md << "Plots skipped: " << skipped << "\n\n";
  md << "## Runs\n\n| config | lr | seed | status | stopped by | final val loss | best val loss | steps | grad evals | train s | "
        "directory |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
  size_t not_done = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = results[i];
    not_done += r.status != "done";
    auto v = [&](const char* k, const char* f) {
      auto it = r.m.find(k);
      return it == r.m.end() || std::isnan(it->second) ? std::string("–") : fmt(f, it->second);
    };
    md << "| " << runs[i].config->name << " | " << lr_text(runs[i].lr) << " | " << runs[i].seed << " | " << r.status
       << (r.note.empty() ? "" : " (" + r.note.substr(0, r.note.find('\n')) + ")") << " | "
       << (r.stopped_by.empty() ? "–" : r.stopped_by) << " | " << v("final_val_loss", "%.4f") << " | "
       << v("best_val_loss", "%.4f") << " | " << v("steps", "%.0f") << " | " << v("grad_evals", "%.0f") << " | "
       << v("wall_s", "%.1f") << " | `" << fs::relative(runs[i].dir, out).string() << "` |\n";
  }
  md << "\nPer-run metrics: `<directory>/metrics.jsonl` (a line per step and per evaluation) and `<directory>/summary.json`; "
        "machine-readable aggregate: `report.json`.\n";
  io::atomic_write_file((out / "report.md").string(), md.str());
  io::atomic_write_file((out / "report.json").string(), jr.dump(2) + "\n");
  return ReportDrawn{runs.size() - not_done, runs.size(), pngs.size(), skipped};
}

// Steps of the newest checkpoint in `dir` (from its file name), -1 if none.
int64_t checkpoint_step(const fs::path& dir) {
  auto all = train::list_checkpoints(dir.string());
  if (all.empty()) return -1;
  const std::string name = fs::path(all.back()).filename().string();  // ckpt_00000012.pt
  try {
    return std::stoll(name.substr(5, name.size() - 8));
  } catch (const std::exception&) {
    return 0;
  }
}

// OUT/timing.json: {"ms_per_step": {"config": ms, ...}, "source": "how and where it was measured"}.
void load_quiet_timing(const fs::path& file, Spec& spec) {
  if (!fs::exists(file)) return;
  const std::string where = file.string();
  json j;
  try {
    j = json::parse(read_file(file));
  } catch (const json::exception& e) {
    throw std::runtime_error(where + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!j.is_object() || !j.contains("ms_per_step") || !j["ms_per_step"].is_object() || !j.contains("source") ||
      !j["source"].is_string())
    throw std::runtime_error(where + ": expected {\"ms_per_step\": {config: ms, ...}, \"source\": \"...\"}");
  for (auto it = j["ms_per_step"].begin(); it != j["ms_per_step"].end(); ++it) {
    const bool known = std::any_of(spec.configs.begin(), spec.configs.end(), [&](const ConfigSpec& c) { return c.name == it.key(); });
    if (!known) throw std::runtime_error(where + ": config '" + it.key() + "' is not in the spec");
    if (!it.value().is_number() || !std::isfinite(it.value().get<double>()) || it.value().get<double>() <= 0)
      throw std::runtime_error(where + ": ms_per_step of '" + it.key() + "' must be a positive number");
    spec.quiet_ms[it.key()] = it.value().get<double>();
  }
  if (spec.quiet_ms.empty()) throw std::runtime_error(where + ": ms_per_step is empty");
  spec.quiet_source = j["source"].get<std::string>();
  // A "tune_extend" candidate that ran after the quiet timing was taken would otherwise have no
  // seconds; where its flag is a scalar of the same arithmetic (beta = 1 still evaluates and
  // combines both gradients), its base's figure is its own, and the report says so.
  for (const ConfigSpec& c : spec.configs) {
    if (!c.is_variant() || spec.quiet_ms.count(c.name) || !kCostNeutral.count(c.tuned)) continue;
    const auto b = spec.quiet_ms.find(spec.configs[c.group].name);
    if (b == spec.quiet_ms.end()) continue;
    spec.quiet_ms[c.name] = b->second;
    spec.quiet_borrowed[c.name] = b->first;
  }
}

}  // namespace

int cmd_compare(Args& args) {
  const std::string spec_path = args.str("spec", "");
  const std::string out_s = args.str("out", "");
  const std::string budget = args.str("budget", "");
  const std::string seeds = args.str("seeds", "");
  const int64_t stop_after_runs = args.integer("stop-after-runs", 0, 0, 1000000);
  // Testing aid: the next run after --stop-after-runs N (0: the first run to execute) stops after
  // this many steps with a checkpoint (train --stop-after), as an interrupted one would, and so
  // does the comparison.
  const int64_t stop_after_steps = args.integer("stop-after-steps", 0, 0, 100000000);
  const bool report_only = args.flag("report-only");
  const bool dry_run = args.flag("dry-run");
  // --live: each run's progress lines (step, loss, throughput, ETA; validation) as it trains.
  const bool live = args.flag("live");
  const int64_t threads = args.integer("threads", 0, 0, 4096);
  args.finish();
  if (spec_path.empty()) throw UsageError("--spec: required (a comparison spec, " + std::string(kSpecHelp) + ")");
  if (out_s.empty()) throw UsageError("--out: required (the comparison's directory)");
  Spec spec = load_spec(spec_path);
  if (!budget.empty()) parse_budget_text(budget, spec, "--budget");
  if (!seeds.empty()) spec.seeds = parse_seed_list(seeds);
  if (spec.budget_kind.empty())
    throw UsageError("spec '" + spec_path + "': no budget: give \"budget\": {\"steps\"|\"samples\"|\"grad_evals\"|\"seconds\": N} or --budget KIND:N");
  check_budget(spec, budget.empty() ? "spec '" + spec_path + "' 'budget'" : std::string("--budget"));
  if (spec.seeds.empty()) spec.seeds = {0};
  const fs::path out = fs::absolute(out_s);
  if (spec.sweep_seeds > static_cast<int64_t>(spec.seeds.size()))
    throw UsageError("spec '" + spec_path + "': 'sweep_seeds' (" + std::to_string(spec.sweep_seeds) + ") exceeds the " +
                     std::to_string(spec.seeds.size()) + " seeds");
  const std::vector<Run> runs = plan_runs(spec, out);
  load_quiet_timing(out / "timing.json", spec);
  // What the tuning will run at least: the bases' sweeps, each variant at one lr, each tuned
  // group's other seeds at its choice (a variant leading its group adds neighbouring lrs).
  const size_t sweep_n = sweep_count(spec);
  size_t planned = 0;
  for (const auto& r : runs)
    if (!r.config->is_variant() && in_sweep(spec, r) && in_grid(*r.config, r.lr)) ++planned;
  for (const auto& c : spec.configs) {
    if (c.extra) continue;  // a "tune_extend" candidate runs only if needed
    if (c.is_variant()) planned += sweep_n;
    else if (group_tuned(spec, c)) planned += spec.seeds.size() - sweep_n;
  }

  if (dry_run) {
    std::cout << "limuon compare: " << planned << " runs (" << spec.configs.size() << " configs, " << spec.seeds.size()
              << " seeds); budget: " << budget_text(spec) << "\n";
    std::set<const ConfigSpec*> shown;
    for (const Run& r : runs) {
      const bool sweep = in_sweep(spec, r);
      if (r.config->is_variant() ? !sweep || !shown.insert(r.config).second
                                 : !in_grid(*r.config, r.lr) || (!sweep && r.lr != r.config->lrs[0]))
        continue;
      std::cout << "  "
                << (r.config->extra        ? "(at " + spec.configs[r.config->group].name + "'s chosen lr, if its best " +
                                                 r.config->tuned + " is at that end) "
                    : r.config->is_variant() ? "(at " + spec.configs[r.config->group].name + "'s chosen lr) "
                    : sweep                ? std::string()
                                           : std::string("(at the chosen lr) "))
                << r.dir.string() << ": limuon train";
      for (auto it = r.options.begin(); it != r.options.end(); ++it)
        std::cout << " --" << it.key() << ' ' << (it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
      std::cout << "\n";
    }
    return 0;
  }

  std::error_code ec;
  fs::create_directories(out / "runs", ec);
  if (ec) throw std::runtime_error("--out: cannot create directory '" + out.string() + "': " + ec.message());
  // One comparison at a time per directory (the lock goes with the process, however it ends).
  // --report-only reads the runs and writes only the report, so it may redraw a study whose
  // comparison is still running (a study spans sessions; stopping it to look would lose steps).
  if (!report_only) {
    const int lock = open((out / ".compare.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) != 0)
      throw std::runtime_error("--out: another limuon compare is working in '" + out.string() + "'");
  }

  // Refuse to mix runs of different settings in one directory before running anything.
  for (const auto& r : runs) {
    const fs::path rj = r.dir / "run.json";
    if (!fs::exists(rj)) continue;
    json old;
    try {
      old = json::parse(read_file(rj));
    } catch (const json::exception&) {
      continue;  // rewritten below
    }
    if (old != r.options) {
      std::string diff;
      for (auto it = r.options.begin(); it != r.options.end(); ++it)
        if (!old.contains(it.key()) || old[it.key()] != it.value())
          diff += " '" + it.key() + "' " + (old.contains(it.key()) ? old[it.key()].dump() : "unset") + " → " + it.value().dump() + ";";
      for (auto it = old.begin(); it != old.end(); ++it)
        if (!r.options.contains(it.key())) diff += " '" + it.key() + "' " + it.value().dump() + " → unset;";
      throw UsageError("--out: " + r.dir.string() + " holds a run with other settings (" + diff.substr(1) +
                       " ); use another --out, or delete that directory to redo the run");
    }
  }

  {
    json saved{{"spec", json::parse(read_file(spec_path))}, {"budget", {{spec.budget_kind, spec.budget}}}, {"seeds", spec.seeds}};
    io::atomic_write_file((out / "spec.json").string(), saved.dump(2) + "\n");
  }

  int failed = 0;
  // The last report pass while it still shows every run's state (empty once a run changes): the end
  // of the comparison then announces it rather than drawing the same report again.
  std::optional<ReportDrawn> drawn;
  if (!report_only) {
    const std::string self = fs::read_symlink("/proc/self/exe").string();
    int64_t executed = 0, skipped = 0;
    std::cout << "limuon compare: " << planned << " runs (" << spec.configs.size() << " configs × lrs × " << spec.seeds.size()
              << " seeds) in " << out.string() << "\nbudget: " << budget_text(spec) << std::endl;
    std::set<size_t> attempted, announced;
    std::set<size_t> groups_chosen;
    size_t k = 0;
    for (;;) {
      // The next run: the first the plan wants that is neither done nor tried in this invocation
      // (the plan grows as the tuning's results come in).
      std::vector<RunResult> states;
      for (const auto& x : runs) states.push_back(peek_run(x, spec));
      const Plan plan = plan_state(spec, runs, states, attempted);
      // Runs announced so far plus those the plan still wants: the plan can drop a run it wanted
      // before (the tuning's lead moved), so its size alone can fall behind the counter.
      planned = std::max(planned, announced.size() + static_cast<size_t>(std::count_if(plan.wanted.begin(), plan.wanted.end(),
                                                                                       [&](size_t i) { return !announced.count(i); })));
      size_t idx = SIZE_MAX;
      for (size_t i : plan.wanted) {
        const Run& r = runs[i];
        if (!in_sweep(spec, r) && groups_chosen.insert(r.config->group).second) {
          const Choice& g = plan.per_group.at(r.config->group);
          std::cout << spec.configs[r.config->group].name << ": " << g.config->name << " at lr " << lr_text(g.lr)
                    << " chosen for the remaining seeds" << std::endl;
        }
        if (states[i].status == "done") {
          if (!announced.insert(i).second) continue;
          ++skipped;
          if (spec.compress_metrics) compress_metrics(r.dir);
          std::cout << "[" << ++k << "/" << planned << "] " << r.config->name << " lr " << lr_text(r.lr) << " seed " << r.seed
                    << ": done already, skipped" << std::endl;
          continue;
        }
        if (!attempted.count(i)) {
          idx = i;
          break;
        }
      }
      if (idx == SIZE_MAX) break;
      attempted.insert(idx);
      announced.insert(idx);
      const Run& r = runs[idx];
      std::ostringstream head;
      head << "[" << ++k << "/" << planned << "] " << r.config->name << " lr " << lr_text(r.lr) << " seed " << r.seed << ": ";
      const bool interrupt = stop_after_steps > 0 && executed == stop_after_runs;
      if (stop_after_runs > 0 && executed >= stop_after_runs && !interrupt) {
        std::cout << "stopped after " << executed << " runs (--stop-after-runs); run the same command again to continue"
                  << std::endl;
        break;
      }
      drawn.reset();  // this run's state changes from here on
      fs::create_directories(r.dir);
      io::atomic_write_file((r.dir / "run.json").string(), r.options.dump(2) + "\n");
      fs::remove(r.dir / "failed");
      const int64_t from = checkpoint_step(r.dir);
      std::cout << head.str() << (from >= 0 ? "resuming from step " + std::to_string(from) : std::string("running")) << std::flush;
      std::vector<std::string> argv = {self, "train", "--config", (r.dir / "run.json").string(), "--out", r.dir.string(), "--resume"};
      if (threads > 0) {
        argv.push_back("--threads");
        argv.push_back(std::to_string(threads));
      }
      if (interrupt) {
        argv.push_back("--stop-after");
        argv.push_back(std::to_string(stop_after_steps));
      }
      const auto t0 = std::chrono::steady_clock::now();
      if (live) std::cout << std::endl;
      const std::string err = run_process(argv, "", r.dir / "train.log", live);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++executed;
      if (interrupt && err.empty() && !fs::exists(r.dir / "summary.json")) {
        std::cout << " … stopped after step " << stop_after_steps
                  << " (--stop-after-steps); run the same command again to continue" << std::endl;
        break;
      }
      if (!err.empty() || !fs::exists(r.dir / "summary.json")) {
        ++failed;
        const std::string why = (err.empty() ? std::string("no summary.json") : err) + "; " + tail_lines(r.dir / "train.log", 3);
        io::atomic_write_file((r.dir / "failed").string(), why + "\n");
        std::cout << " … FAILED after " << fmt("%.1f", secs) << " s (" << (err.empty() ? "no summary.json" : err) << "); see "
                  << (r.dir / "train.log").string() << ":\n" << tail_lines(r.dir / "train.log", 3) << std::endl;
        continue;
      }
      if (!spec.keep_checkpoints)
        for (const auto& c : train::list_checkpoints(r.dir.string())) fs::remove(c);
      if (spec.compress_metrics) compress_metrics(r.dir);
      json s = json::parse(read_file(r.dir / "summary.json"));
      std::cout << " … done in " << fmt("%.1f", secs) << " s: final val_loss " << fmt("%.4f", num(s, "final_val_loss")) << std::endl;
      // The report follows every finished run, not only the end of the comparison: a study spans
      // sessions and the process running it may be killed mid-run (a session ends), and then the
      // committed report should still show each run that finished. Silent (one pass takes about
      // 4 s on issue 19's studies, against runs of 10-40 minutes); the end announces the last pass.
      try {
        drawn = write_report(out, spec, runs);
      } catch (const std::exception& e) {
        std::cout << "warning: report not redrawn after this run (" << e.what() << "); the next run or --report-only redraws it"
                  << std::endl;
      }
    }
    std::cout << executed << " runs executed, " << skipped << " already done" << std::endl;
  }
  if (!drawn) drawn = write_report(out, spec, runs);
  announce_report(out, *drawn);
  if (failed > 0) {
    std::cerr << "limuon compare: " << failed << " run(s) failed (see the report's Runs table and their train.log); "
              << "the same command retries them\n";
    return 1;
  }
  return 0;
}

}  // namespace limuon::cli
