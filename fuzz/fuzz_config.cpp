// libFuzzer target: config files (--config): parse_config_json, then the values through Args's
// typed getters as the CLI would read them. Beyond "only UsageError escapes", it checks that a
// value reaches the getters unchanged: an integer keeps its exact value, a float survives the
// text round trip, and a getter never accepts a value that it read only part of.
#include "args.h"

#include "fuzz_stats.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

namespace {

[[noreturn]] void finding(const std::string& detail) { limuon_fuzz::report("fuzz_config", detail); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using limuon::cli::UsageError;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> values;
  try {
    values = limuon::cli::parse_config_json(text, "fuzz.json");
  } catch (const UsageError& e) {
    if (std::string(e.what()).find("'fuzz.json'") == std::string::npos) finding("error does not name the file");
    limuon_fuzz::rejected();
    return 0;
  }
  limuon_fuzz::accepted();

  // Accepted: the same text parses as a JSON object, and every value must come through intact.
  const auto j = nlohmann::json::parse(text);
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& v = it.value();
    const std::string& s = values.at(it.key());
    if (v.is_number_integer() && s != v.dump()) finding("integer " + v.dump() + " became '" + s + "'");
    if (v.is_number_float()) {
      const double back = std::strtod(s.c_str(), nullptr);
      if (!(back == v.get<double>())) finding("float " + v.dump() + " became '" + s + "'");
    }
  }

  limuon::cli::Args args({}, {});
  args.add_defaults(values, "fuzz.json");
  for (const auto& kv : values) {
    std::string key = kv.first;
    for (auto& ch : key)
      if (ch == '_') ch = '-';
    const std::string& s = args.str(key, "");
    const bool has_nul = s.find('\0') != std::string::npos;
    try {
      const int64_t i = args.integer(key, 0, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      if (has_nul) finding("integer() accepted a value with a NUL byte: " + std::to_string(i));
    } catch (const UsageError&) {
    }
    try {
      const double d = args.real(key, 0, -std::numeric_limits<double>::max(), std::numeric_limits<double>::max());
      if (!std::isfinite(d)) finding("real() returned a non-finite value");
      if (has_nul) finding("real() accepted a value with a NUL byte");
    } catch (const UsageError&) {
    }
    try {
      args.flag(key);
    } catch (const UsageError&) {
    }
    try {
      args.integer(key, 0, 0, 10);
    } catch (const UsageError&) {
    }
  }
  args.finish();  // every key was read: must not throw
  return 0;
}
