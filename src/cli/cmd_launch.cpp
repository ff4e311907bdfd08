// edgedistill launch: runs N local ranks of a data-parallel train or distill, the way torchrun
// would on one host: each child gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR
// and MASTER_PORT. Ctrl-C and SIGTERM are forwarded to every rank once; when a rank fails, the
// others get a grace period to stop on their own, then SIGTERM, then SIGKILL, and launch exits
// with the first failing rank's code.
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"

namespace edgedistill::cli {
namespace {

struct LaunchOptions {
  int nproc = 0;
  int master_port = 0;
  int timeout_s = 0;
  int grace_s = 10;
  std::vector<std::string> command;
};

std::atomic<int> g_forward_signal{0};

extern "C" void remember_signal(int signal_number) {
  g_forward_signal = signal_number;
}

// A TCP port on 127.0.0.1 that is free now (the kernel's pick).
int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw InputError(str("launch: cannot open a socket: ", std::strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  if (!ok) throw InputError("launch: found no free TCP port on 127.0.0.1; pass --master-port");
  return ntohs(address.sin_port);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return str("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return str("was killed by signal ", WTERMSIG(status), " (", ::strsignal(WTERMSIG(status)), ")");
  }
  return "stopped";
}

// The shell's exit code for a status: the code, or 128 + the signal.
int exit_code_of_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 3;
}

[[noreturn]] void exec_rank(const LaunchOptions& options, int rank, int port) {
  // The launcher forwards signals; a rank outlives neither the launcher nor its own group.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  ::setpgid(0, 0);
  ::setenv("RANK", std::to_string(rank).c_str(), 1);
  ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  ::setenv("WORLD_SIZE", std::to_string(options.nproc).c_str(), 1);
  ::setenv("LOCAL_WORLD_SIZE", std::to_string(options.nproc).c_str(), 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  if (options.timeout_s > 0) {
    ::setenv("EDGEDISTILL_DIST_TIMEOUT", std::to_string(options.timeout_s).c_str(), 1);
  }
  std::vector<std::string> args{"edgedistill"};
  args.insert(args.end(), options.command.begin(), options.command.end());
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", argv.data());
  std::fprintf(stderr, "edgedistill: error: launch: cannot run rank %d: %s\n", rank,
               std::strerror(errno));
  std::_Exit(3);
}

int run_launch(const LaunchOptions& options) {
  const auto& first = options.command.empty() ? std::string() : options.command.front();
  if (first != "train" && first != "distill" && first != "bench") {
    throw InputError(
        "launch runs 'train', 'distill' or 'bench --allreduce' on several ranks: edgedistill "
        "launch --nproc N -- train --config RECIPE --run-dir DIR");
  }
  const int port = options.master_port > 0 ? options.master_port : free_local_port();
  core::info("launch: ", options.nproc, " ranks of '", options.command.front(),
             "' on 127.0.0.1:", port);

  struct sigaction action {};
  action.sa_handler = remember_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);

  std::vector<pid_t> pids(static_cast<size_t>(options.nproc), -1);
  for (int rank = 0; rank < options.nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0)
      throw InputError(str("launch: cannot start rank ", rank, ": ", std::strerror(errno)));
    if (pid == 0) exec_rank(options, rank, port);
    pids[static_cast<size_t>(rank)] = pid;
  }

  using Clock = std::chrono::steady_clock;
  int running = options.nproc;
  int first_failure = -1, exit_code = 0;
  Clock::time_point failed_at;
  bool terminated = false, killed = false;
  while (running > 0) {
    if (const int signal_number = g_forward_signal.exchange(0)) {
      for (const pid_t pid : pids) {
        if (pid > 0) ::kill(pid, signal_number);
      }
    }
    // Reap every rank that ended since the last look. Of several failures seen at once, a rank
    // killed by a signal is the likelier cause (the others then lost contact with it).
    std::vector<std::pair<int, int>> failures;  // {rank, status}
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      int rank = 0;
      while (rank < options.nproc && pids[static_cast<size_t>(rank)] != pid) ++rank;
      if (rank == options.nproc) continue;
      pids[static_cast<size_t>(rank)] = -1;
      --running;
      if (exit_code_of_status(status) != 0) failures.emplace_back(rank, status);
    }
    std::stable_partition(failures.begin(), failures.end(),
                          [](const auto& failure) { return WIFSIGNALED(failure.second); });
    for (const auto& [rank, failed_status] : failures) {
      std::string line =
          str("edgedistill: launch: rank ", rank, " ", describe_status(failed_status));
      if (first_failure < 0) {
        first_failure = rank;
        exit_code = exit_code_of_status(failed_status);
        failed_at = Clock::now();
        if (running > 0) line += "; stopping the other ranks";
      }
      core::log_line(line);
    }
    if (pid < 0 && errno != EINTR && errno != ECHILD) break;
    if (first_failure >= 0 && running > 0) {
      const double waited = std::chrono::duration<double>(Clock::now() - failed_at).count();
      const int signal_number = !terminated && waited > options.grace_s      ? SIGTERM
                                : !killed && waited > options.grace_s + 10.0 ? SIGKILL
                                                                             : 0;
      if (signal_number != 0) {
        (signal_number == SIGTERM ? terminated : killed) = true;
        for (const pid_t other : pids) {
          if (other > 0) ::kill(other, signal_number);
        }
      }
    }
    if (running > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return exit_code;
}

}  // namespace

void add_launch_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<LaunchOptions>();
  auto* command = app.add_subcommand(
      "launch",
      "Run train or distill data-parallel on N local ranks (torchrun's environment; c10d Gloo)");
  command->add_option("-n,--nproc", options->nproc, "ranks (processes) to start on this host")
      ->required()
      ->check(CLI::Range(1, 4096));
  command
      ->add_option("--master-port", options->master_port,
                   "rank 0's rendezvous port on 127.0.0.1 (default: a free one)")
      ->check(CLI::Range(1, 65535));
  command
      ->add_option("--dist-timeout", options->timeout_s,
                   "seconds a collective waits for a stopped or hung rank before failing "
                   "(default: $EDGEDISTILL_DIST_TIMEOUT or 60)")
      ->check(CLI::Range(1, 24 * 3600));
  command
      ->add_option("--grace", options->grace_s,
                   "seconds the other ranks get to stop on their own after one fails, before "
                   "SIGTERM (then SIGKILL 10 s later)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  command
      ->add_option(
          "command", options->command,
          "the command each rank runs, after --: train ..., distill ... or bench --allreduce")
      ->required();
  command->footer(
      "Example: edgedistill launch --nproc 2 -- train --config configs/recipes/teacher-kjv.json "
      "--run-dir runs/ddp. Threads per rank default to the cores divided by the ranks. On several "
      "hosts, use torchrun-style launchers instead: every rank needs RANK, WORLD_SIZE, "
      "LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT (see README).");
  command->callback([options, &exit_code] { exit_code = run_launch(*options); });
}

}  // namespace edgedistill::cli
