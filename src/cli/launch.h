// `limuon train --nproc N`: runs N local ranks of the same command, torchrun style.
#pragma once

#include <string>
#include <vector>

namespace limuon::cli {

// Starts `nproc` copies of this program with `argv` (the command line without --nproc) and the
// environment of a local job (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT: the
// caller's, or a free port), each with its share of the cores unless --threads is given. Waits for
// them all; if one fails, the others are stopped after `grace_s` seconds. Returns the exit status
// of the first rank that failed (0 when all succeeded).
int launch_local(int nproc, const std::vector<std::string>& argv, int grace_s);

}  // namespace limuon::cli
