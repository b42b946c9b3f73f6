// Local launcher for data-parallel training: fork/exec one process per rank, wait, and make sure
// a failure of one rank ends the job (no rank left waiting on a collective that will never come).
#include "launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace limuon::cli {

namespace {

// A port the kernel considers free right now (bound to 127.0.0.1:0 and released). Another program
// could take it before rank 0 binds it; rank 0 then fails with a clear "port in use" error.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("--nproc: socket(): ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("--nproc: cannot find a free port on 127.0.0.1: " + err);
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "ended with wait status " + std::to_string(status);
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 1;
}

volatile sig_atomic_t g_forward_signal = 0;
void remember_signal(int sig) { g_forward_signal = sig; }

}  // namespace

int launch_local(int nproc, const std::vector<std::string>& argv, int grace_s) {
  const char* port_env = std::getenv("MASTER_PORT");
  const std::string port = port_env && *port_env ? port_env : std::to_string(free_port());
  std::vector<std::string> args = argv;
  if (std::find(args.begin(), args.end(), "--threads") == args.end()) {
    // Ranks share the machine's cores instead of each starting one thread per core.
    const long cores = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
    args.push_back("--threads");
    args.push_back(std::to_string(std::max(1L, cores / nproc)));
  }
  std::vector<char*> cargv;
  std::string self = "/proc/self/exe";
  cargv.push_back(self.data());
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  std::cerr << "launching " << nproc << " ranks on 127.0.0.1:" << port << "\n";
  std::vector<pid_t> pids(static_cast<size_t>(nproc), -1);
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("--nproc: fork(): ") + std::strerror(errno));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      ::execv("/proc/self/exe", cargv.data());
      std::cerr << "limuon: rank " << r << ": exec failed: " << std::strerror(errno) << "\n";
      ::_exit(127);
    }
    pids[static_cast<size_t>(r)] = pid;
  }
  // Ctrl-C / TERM reach the ranks (same process group for a terminal's Ctrl-C; forwarded for TERM).
  struct sigaction sa {};
  sa.sa_handler = remember_signal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  int first_failure = 0;
  int running = nproc;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    if (g_forward_signal) {
      for (pid_t p : pids)
        if (p > 0) ::kill(p, SIGTERM);
      g_forward_signal = 0;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      const auto it = std::find(pids.begin(), pids.end(), pid);
      if (it == pids.end()) continue;
      const int r = static_cast<int>(it - pids.begin());
      *it = -1;
      --running;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok) {
        std::cerr << "limuon: rank " << r << " " << describe(status) << "\n";
        if (!first_failure) {
          first_failure = std::max(1, exit_code(status));
          // The others notice the lost peer in their next collective and exit; any still
          // running after the grace period are stopped.
          deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_s);
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    if (std::chrono::steady_clock::now() > deadline) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (pids[r] > 0) {
          std::cerr << "limuon: stopping rank " << r << " (another rank failed " << grace_s << " s ago)\n";
          ::kill(pids[r], SIGKILL);
        }
      deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return first_failure;
}

}  // namespace limuon::cli
