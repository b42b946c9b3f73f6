// Command-line parsing for the limuon CLI: `--key value` and `--flag`, typed getters whose
// errors name the flag, and a check that rejects unknown flags.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace limuon::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A config file: a JSON object whose keys are flag names (kebab- or snake-case) and whose values
// are strings, numbers or bools. Throws UsageError naming `origin` and the problem.
std::map<std::string, std::string> parse_config_json(const std::string& text, const std::string& origin);

// The non-empty items of a `sep`-separated list ("a,,b" → {"a", "b"}).
std::vector<std::string> split_list(const std::string& s, char sep = ',');

// Every flag of every command (`known_flags`), and those that take no value (`boolean_flags`).
// Parsing rejects any other `--name` at once, so an unknown flag can never swallow the next
// argument as its value. tests/cli_contract.py checks the lists against the flags the commands read.
const std::set<std::string>& known_flags();
const std::set<std::string>& boolean_flags();
// The known flag closest to `name` by edit distance (at most 1 + |name|/4 edits), or "" if none is.
std::string closest_flag(const std::string& name);

class Args {
 public:
  // Flags named in `boolean` take no value. Throws UsageError for a flag not in known_flags(),
  // naming it and the closest known one.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& boolean = boolean_flags());

  bool has(const std::string& key) const;
  std::string str(const std::string& key, const std::string& def);
  int64_t integer(const std::string& key, int64_t def, int64_t lo, int64_t hi);
  double real(const std::string& key, double def, double lo, double hi);
  bool flag(const std::string& key);
  // Values from a config file: used for keys not given on the command line. `origin` names the
  // file in error messages.
  void add_defaults(const std::map<std::string, std::string>& values, const std::string& origin);
  // Throws UsageError naming a flag (or config-file key) that was given but never read: one that
  // this command does not take.
  void finish() const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::string origin(const std::string& key) const;
  std::map<std::string, std::string> values_;
  std::map<std::string, std::string> origins_;
  std::vector<std::string> positional_;
  mutable std::set<std::string> used_;
};

}  // namespace limuon::cli
