// Strict flag parsing for the CLI (see args.h).
#include "args.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace limuon::cli {

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep))
    if (!cur.empty()) out.push_back(cur);
  return out;
}

std::map<std::string, std::string> parse_config_json(const std::string& text, const std::string& origin) {
  using json = nlohmann::json;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw UsageError("--config: '" + origin + "' is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw UsageError("--config: '" + origin + "' must hold a JSON object of flag: value");
  std::map<std::string, std::string> values;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& v = it.value();
    if (v.is_string()) {
      // A command-line value cannot hold a NUL byte, and the getters read C strings: "12\u0000x"
      // would silently become 12.
      if (v.get_ref<const std::string&>().find('\0') != std::string::npos)
        throw UsageError("--config: the value of key '" + it.key() + "' in '" + origin + "' contains a NUL byte");
      values[it.key()] = v.get<std::string>();
    } else if (v.is_boolean()) {
      values[it.key()] = v.get<bool>() ? "true" : "false";
    } else if (v.is_number_integer()) {
      // The number as written: get<int64_t>() would wrap an unsigned value above 2^63 - 1 into a
      // negative one; as text, integer() rejects it as out of range instead.
      values[it.key()] = v.dump();
    } else if (v.is_number()) {
      std::ostringstream os;
      os.precision(17);
      os << v.get<double>();
      values[it.key()] = os.str();
    } else {
      throw UsageError("--config: key '" + it.key() + "' in '" + origin + "' must be a string, number or bool");
    }
  }
  return values;
}

const std::set<std::string>& boolean_flags() {
  static const std::set<std::string> flags{
    "json", "help", "resume", "augment", "no-nesterov", "nesterov", "mvr-clip-inputs", "sumo-no-outer",
    "gluon-constant-momentum", "gluon-no-decay", "accumulate-second-gradient", "decode", "report-only",
    "dry-run", "live", "shard-state", "no-shard-state"};
  return flags;
}

const std::set<std::string>& known_flags() {
  static const std::set<std::string> flags = [] {
    std::set<std::string> f{
    "adamw-lr", "adamw-weight-decay", "adjust-lr", "alpha", "attention", "batch", "batch-size", "beta",
    "beta1", "beta2", "block-size", "budget", "checkpoint", "checkpoint-interval", "config", "configs",
    "data", "device", "dist-timeout", "dropout", "dtype", "epochs", "eq-eps", "eq-exponent", "eq-phase",
    "equilibrate", "eval-batches", "eval-interval", "export-dtype", "export-hf", "gamma", "gluon-mode",
    "grad-accum", "grad-clip", "gram-min-aspect", "gram-restarts", "init-weights", "inject-nonfinite",
    "isolate", "json-out", "keep", "l0", "l1", "logits-out", "lowrank-state", "lr", "max-batches",
    "max-grad-evals", "max-new-tokens", "max-nonfinite", "max-norm", "max-samples", "max-seconds", "method",
    "min-lr-ratio", "model", "momentum", "mvr-first-step", "nproc", "optimizer", "orthogonalizer", "out",
    "oversample", "pad", "patch", "period", "power-iters", "preset", "progress", "prompt", "rank", "repeats",
    "seed", "seeds", "shape", "sign-lr-ratio", "spec", "steps", "stop-after", "stop-after-runs",
    "stop-after-steps", "storm", "sumo-limiter", "task", "tau", "temperature", "text", "text-file",
    "threads", "tokenizer", "top-k", "update-interval", "val-fraction", "warmup", "weight-decay", "weights"};
    f.insert(boolean_flags().begin(), boolean_flags().end());
    return f;
  }();
  return flags;
}

namespace {
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string unknown_flag_message(const std::string& name) {
  const std::string near = closest_flag(name);
  return "unknown flag --" + name + (near.empty() ? " (see limuon --help)" : " (did you mean --" + near + "?)");
}
}  // namespace

std::string closest_flag(const std::string& name) {
  std::string best;
  size_t best_d = 1 + name.size() / 4 + 1;
  for (const auto& f : known_flags()) {
    const size_t d = edit_distance(name, f);
    if (d < best_d) best_d = d, best = f;
  }
  return best;
}

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& boolean) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2) {
      positional_.push_back(a);
      continue;
    }
    std::string key = a.substr(2), value;
    const auto eq = key.find('=');
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (!known_flags().count(key)) {
      throw UsageError(unknown_flag_message(key));
    } else if (boolean.count(key)) {
      value = "true";
    } else {
      if (i + 1 >= argv.size()) throw UsageError("--" + key + ": missing value");
      value = argv[++i];
    }
    if (!known_flags().count(key)) throw UsageError(unknown_flag_message(key));
    if (values_.count(key)) throw UsageError("--" + key + ": given more than once");
    values_[key] = value;
  }
}

void Args::add_defaults(const std::map<std::string, std::string>& values, const std::string& origin) {
  for (const auto& kv : values) {
    std::string key = kv.first;
    for (auto& ch : key)
      if (ch == '_') ch = '-';
    if (values_.count(key)) continue;
    values_[key] = kv.second;
    origins_[key] = origin;
  }
}

std::string Args::origin(const std::string& key) const {
  auto it = origins_.find(key);
  return it == origins_.end() ? "--" + key : "'" + key + "' in " + it->second;
}

bool Args::has(const std::string& key) const { return values_.count(key) > 0; }

std::string Args::str(const std::string& key, const std::string& def) {
  used_.insert(key);
  auto it = values_.find(key);
  return it == values_.end() ? def : it->second;
}

int64_t Args::integer(const std::string& key, int64_t def, int64_t lo, int64_t hi) {
  used_.insert(key);
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  const std::string& s = it->second;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  // end must reach the string's real end: an embedded NUL would otherwise end the number early.
  if (s.empty() || end != s.c_str() + s.size() || errno == ERANGE)
    throw UsageError(origin(key) + ": expected an integer, got '" + s + "'");
  if (v < lo || v > hi)
    throw UsageError(origin(key) + ": must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + s);
  return v;
}

double Args::real(const std::string& key, double def, double lo, double hi) {
  used_.insert(key);
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  const std::string& s = it->second;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v))
    throw UsageError(origin(key) + ": expected a finite number, got '" + s + "'");
  if (v < lo || v > hi)
    throw UsageError(origin(key) + ": must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + s);
  return v;
}

bool Args::flag(const std::string& key) {
  used_.insert(key);
  auto it = values_.find(key);
  if (it == values_.end()) return false;
  if (it->second == "true" || it->second == "1") return true;
  if (it->second == "false" || it->second == "0") return false;
  throw UsageError(origin(key) + ": expected true or false, got '" + it->second + "'");
}

void Args::finish() const {
  for (const auto& kv : values_)
    if (!used_.count(kv.first)) {
      const std::string near = closest_flag(kv.first);
      const std::string hint = near.empty() || near == kv.first ? "" : " (did you mean '" + near + "'?)";
      throw UsageError(origins_.count(kv.first) ? "unknown option " + origin(kv.first) + hint
                                                : "--" + kv.first + ": not an option of this command (see limuon --help)");
    }
}

}  // namespace limuon::cli
