// The one test-support library of zerodet's suites: paths of the shared data, temporary
// directories, child processes (forked functions and executables, with their output), and
// WaitFor instead of hand-rolled polling loops or sleeps.
//
// Every test executable made by zerodet_add_test links it. Helpers report problems with
// ADD_FAILURE and return something empty instead of aborting the test binary.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace zerodet::testing {

// ../shared beside the repository (models, images, COCO subsets), as configured at build time.
std::filesystem::path SharedDir();
std::filesystem::path SharedImage(const std::string& name);  // SharedDir()/images/<name>
std::filesystem::path SharedModel(const std::string& name);  // SharedDir()/models/<name>
// The built `zerodet` executable.
std::filesystem::path ZerodetBinary();
// The project's source tree (for files tests check, such as deploy/).
std::filesystem::path SourceDir();

// A fresh directory under $TMPDIR (default /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& what = "test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // path()/name as a string.
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Polls `done` every `interval` until it returns true (then true) or `timeout` passes (then
// false). For conditions another process or thread makes true; never a fixed sleep.
bool WaitFor(const std::function<bool()>& done,
             std::chrono::milliseconds timeout = std::chrono::seconds(30),
             std::chrono::milliseconds interval = std::chrono::milliseconds(5));

// Runs `body` in a forked child that exits with its return value (never returns in the child).
pid_t ForkChild(const std::function<int()>& body);
// Waits for `pid`; returns its exit code, 128 + signal when a signal ended it, -1 on error.
int WaitChild(pid_t pid);

// A pipe for small fixed-size messages between a parent and a forked child.
class Pipe {
 public:
  Pipe();
  ~Pipe();
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  template <typename T>
  bool Send(const T& value) {
    return Write(&value, sizeof(T));
  }
  template <typename T>
  bool Receive(T& value) {
    return Read(&value, sizeof(T));
  }
  void CloseRead();
  void CloseWrite();

 private:
  bool Write(const void* data, size_t size);
  bool Read(void* data, size_t size);
  int fds_[2] = {-1, -1};
};

// What a finished child process left.
struct ProcessOutput {
  int exit_code = -1;  // 128 + signal when a signal ended it; -1 when it could not start
  std::string out;     // stdout
  std::string err;     // stderr
  bool timed_out = false;
  pid_t pid = -1;  // the child's process id (it is gone by now)

  std::vector<std::string> OutLines() const;
  std::vector<std::string> ErrLines() const;
  // The lines of stdout that are JSON objects, parsed (others are skipped).
  std::vector<nlohmann::json> JsonLines() const;
};

struct RunOptions {
  std::string stdin_text;  // written to the child's stdin, which is then closed
  // The child is killed (SIGKILL) after this long; timed_out tells.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  // Extra environment entries ("NAME=value"), added to this process's environment.
  std::vector<std::string> env;
};

// Children started here (RunProcess, ChildProcess) get SIGKILL when the test process dies, so a
// crashed or killed test leaves no zerodet process behind.
// Runs argv[0] (a path) with its arguments to completion, collecting stdout and stderr (read
// together, so neither pipe can fill up and stall the child).
ProcessOutput RunProcess(const std::vector<std::string>& argv, const RunOptions& options = {});
// RunProcess of the zerodet executable with `args`.
ProcessOutput RunZerodet(const std::vector<std::string>& args, const RunOptions& options = {});

// A long-running child (a store, a server, a pipeline) whose stdout and stderr go to a log file.
// The destructor kills it (SIGKILL) if it still runs and reaps it.
class ChildProcess {
 public:
  // Starts argv; ok() tells whether it started.
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool ok() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Sends `signal`; false when the child is gone.
  bool Signal(int signal);
  // Waits for the child to end; returns its exit code as WaitChild. Idempotent.
  int Wait();
  // Whether the child has not ended yet (reaps it if it has).
  bool Running();
  // Everything the child wrote so far.
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string log_path_;
};

// The whole file as text ("" when it cannot be read).
std::string ReadText(const std::filesystem::path& path);

// The processes whose parent is `parent` now (from /proc), e.g. a supervisor's children.
std::vector<pid_t> ChildrenOf(pid_t parent);
// True while process `pid` exists and has not exited (a zombie counts as gone).
bool ProcessAlive(pid_t pid);

}  // namespace zerodet::testing

namespace spdlog {
class logger;
}  // namespace spdlog

namespace zerodet::testing {

// Captures what is logged through spdlog's default logger (every level) while it lives, then
// restores the previous default logger. For checking that a skipped item is reported. Use from
// the test's thread; do not nest.
class CapturedLog {
 public:
  CapturedLog();
  ~CapturedLog();
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  // Everything logged so far, one line per message ("[level] message").
  std::string Text() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace zerodet::testing
