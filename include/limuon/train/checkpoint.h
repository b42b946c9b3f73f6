// Checkpoint directories: numbered files written atomically (temp file, fsync, rename), the last
// K kept, and loading that falls back past a corrupt newest file to the previous good one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace limuon::train {

// <dir>/ckpt_<step, 8 digits>.pt, sorted by step, newest last.
std::vector<std::string> list_checkpoints(const std::string& dir);
std::string checkpoint_path(const std::string& dir, int64_t step);

// Writes bytes as <dir>/ckpt_<step>.pt atomically, then removes all but the newest `keep`.
// Throws std::runtime_error naming the path when the directory is missing or unwritable (the
// previous checkpoints are untouched then).
std::string write_checkpoint(const std::string& dir, int64_t step, const std::string& bytes, int keep);

// Tries the newest checkpoint first; when `load` throws (corrupt or truncated file), reports it
// through `warn` and tries the previous one. Returns the path loaded, or "" when there is none.
// Throws the last error when every checkpoint fails, and rethrows at once errors marked fatal
// (std::invalid_argument: e.g. a checkpoint from a different model).
std::string load_latest_checkpoint(const std::string& dir, const std::function<void(const std::string& path)>& load,
                                   const std::function<void(const std::string&)>& warn);

}  // namespace limuon::train
