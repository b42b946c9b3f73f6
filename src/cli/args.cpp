// Strict flag parsing for the CLI (see args.h).
#include "args.h"

#include <nlohmann/json.hpp>

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
    } else if (boolean.count(key)) {
      value = "true";
    } else {
      if (i + 1 >= argv.size()) throw UsageError("--" + key + ": missing value");
      value = argv[++i];
    }
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
    if (!used_.count(kv.first))
      throw UsageError(origins_.count(kv.first) ? "unknown option " + origin(kv.first) : "unknown flag --" + kv.first);
}

}  // namespace limuon::cli
