#include "test_support.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "zerodet/core/child_process.h"

extern char** environ;

namespace zerodet::testing {
namespace {

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// Under AddressSanitizer, LeakSanitizer would list the suppressions it used (ONNX Runtime's own
// allocations) on a child's stderr at exit; tests read that stderr.
void QuietLeakSanitizer() {
  static const bool done = [] {
    const char* current = std::getenv("LSAN_OPTIONS");
    const std::string options =
        (current && *current ? std::string(current) + ":" : std::string()) + "print_suppressions=0";
    return ::setenv("LSAN_OPTIONS", options.c_str(), 1) == 0;
  }();
  (void)done;
}

// Starts argv[0] with the given standard descriptors, tied to this process: the child gets
// SIGKILL when the test binary dies (a crashed or killed test leaves no zerodet behind).
// Returns the pid, or -1 with errno set when fork fails. The argument and environment arrays
// are built before fork; the child calls only async-signal-safe functions.
pid_t SpawnTied(char* const* argv, char* const* envp, int stdin_fd, int stdout_fd, int stderr_fd) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  if (!TieToParent(parent, SIGKILL)) ::_exit(126);
  if (::dup2(stdin_fd, STDIN_FILENO) < 0 || ::dup2(stdout_fd, STDOUT_FILENO) < 0 ||
      ::dup2(stderr_fd, STDERR_FILENO) < 0) {
    ::_exit(126);
  }
  ::execve(argv[0], argv, envp);
  ::_exit(127);
}

}  // namespace

std::filesystem::path SharedDir() {
  return ZERODET_SHARED_DIR;
}
std::filesystem::path SharedImage(const std::string& name) {
  return SharedDir() / "images" / name;
}
std::filesystem::path SharedModel(const std::string& name) {
  return SharedDir() / "models" / name;
}
std::filesystem::path ZerodetBinary() {
  return std::filesystem::path(ZERODET_BINARY_DIR) / "zerodet";
}
std::filesystem::path SourceDir() {
  return ZERODET_SOURCE_DIR;
}

TempDir::TempDir(const std::string& what) {
  std::string pattern = (std::filesystem::temp_directory_path() / ("zerodet-" + what + "-XXXXXX"));
  if (::mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << pattern << ": " << std::strerror(errno);
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  // Tests may leave read-only files or directories behind; make them removable first.
  for (auto it = std::filesystem::recursive_directory_iterator(
           path_, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) {
      std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::add, ec);
    }
  }
  std::filesystem::remove_all(path_, ec);
}

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

pid_t ForkChild(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  return pid;
}

int WaitChild(pid_t pid) {
  int status = 0;
  pid_t got;
  do {
    got = ::waitpid(pid, &status, 0);
  } while (got < 0 && errno == EINTR);
  if (got != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

Pipe::Pipe() {
  if (::pipe2(fds_, O_CLOEXEC) != 0) fds_[0] = fds_[1] = -1;
}
Pipe::~Pipe() {
  CloseRead();
  CloseWrite();
}
void Pipe::CloseRead() {
  if (fds_[0] >= 0) ::close(fds_[0]);
  fds_[0] = -1;
}
void Pipe::CloseWrite() {
  if (fds_[1] >= 0) ::close(fds_[1]);
  fds_[1] = -1;
}
bool Pipe::Write(const void* data, size_t size) {
  return ::write(fds_[1], data, size) == static_cast<ssize_t>(size);
}
bool Pipe::Read(void* data, size_t size) {
  size_t got = 0;
  auto* out = static_cast<char*>(data);
  while (got < size) {
    const ssize_t n = ::read(fds_[0], out + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

std::vector<std::string> ProcessOutput::OutLines() const {
  return SplitLines(out);
}
std::vector<std::string> ProcessOutput::ErrLines() const {
  return SplitLines(err);
}
std::vector<nlohmann::json> ProcessOutput::JsonLines() const {
  std::vector<nlohmann::json> lines;
  for (const std::string& line : OutLines()) {
    if (line.empty() || line.front() != '{') continue;
    nlohmann::json parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      ADD_FAILURE() << "not JSON: " << line;
      continue;
    }
    lines.push_back(std::move(parsed));
  }
  return lines;
}

ProcessOutput RunProcess(const std::vector<std::string>& argv, const RunOptions& options) {
  QuietLeakSanitizer();
  ProcessOutput run;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0 ||
      ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return run;
  }
  std::vector<std::string> args = argv;
  std::vector<char*> c_args = CStrings(args);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  env.insert(env.end(), options.env.begin(), options.env.end());
  std::vector<char*> c_env = CStrings(env);
  const pid_t pid = SpawnTied(c_args.data(), c_env.data(), in_pipe[0], out_pipe[1], err_pipe[1]);
  const int fork_error = errno;
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (pid < 0) {
    ADD_FAILURE() << "cannot start " << args[0] << ": " << std::strerror(fork_error);
    for (int fd : {in_pipe[1], out_pipe[0], err_pipe[0]}) ::close(fd);
    return run;
  }
  // stdin is written whole before reading (inputs are small), then closed.
  signal(SIGPIPE, SIG_IGN);
  if (!options.stdin_text.empty()) {
    [[maybe_unused]] ssize_t n =
        ::write(in_pipe[1], options.stdin_text.data(), options.stdin_text.size());
  }
  ::close(in_pipe[1]);

  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&run.out, &run.err};
  int open_pipes = 2;
  while (open_pipes > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      run.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    const int ready = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buffer[65536];
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_pipes;
      }
    }
  }
  for (const pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  run.exit_code = WaitChild(pid);
  run.pid = pid;
  return run;
}

ProcessOutput RunZerodet(const std::vector<std::string>& args, const RunOptions& options) {
  std::vector<std::string> argv = {ZerodetBinary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProcess(argv, options);
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::string& log_path)
    : log_path_(log_path) {
  QuietLeakSanitizer();
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log < 0) {
    ADD_FAILURE() << "cannot create " << log_path << ": " << std::strerror(errno);
    return;
  }
  const int null_input = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::vector<std::string> args = argv;
  std::vector<char*> c_args = CStrings(args);
  const pid_t pid = SpawnTied(c_args.data(), environ, null_input, log, log);
  const int fork_error = errno;
  ::close(log);
  ::close(null_input);
  if (pid < 0) {
    ADD_FAILURE() << "cannot start " << args[0] << ": " << std::strerror(fork_error);
    return;
  }
  pid_ = pid;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && exit_code_ < 0) {
    ::kill(pid_, SIGKILL);
    Wait();
  }
}

bool ChildProcess::Signal(int signal) {
  return pid_ > 0 && exit_code_ < 0 && ::kill(pid_, signal) == 0;
}

int ChildProcess::Wait() {
  if (pid_ > 0 && exit_code_ < 0) exit_code_ = WaitChild(pid_);
  return exit_code_;
}

bool ChildProcess::Running() {
  if (pid_ <= 0 || exit_code_ >= 0) return false;
  int status = 0;
  const pid_t got = ::waitpid(pid_, &status, WNOHANG);
  if (got == 0) return true;
  if (got == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return false;
}

std::string ChildProcess::Log() const {
  return ReadText(log_path_);
}

std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

namespace {

// Fields 3 (state) and 4 (ppid) of /proc/<pid>/stat; false when the process is gone.
bool ReadProcStat(pid_t pid, char& state, pid_t& ppid) {
  const std::string stat = ReadText("/proc/" + std::to_string(pid) + "/stat");
  // "pid (comm) S ppid ...": comm may hold spaces and parentheses; parse after the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(stat.substr(close + 1));
  long parent = 0;
  if (!(fields >> state >> parent)) return false;
  ppid = static_cast<pid_t>(parent);
  return true;
}

}  // namespace

std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc", ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(name));
    char state = 0;
    pid_t ppid = 0;
    if (ReadProcStat(pid, state, ppid) && ppid == parent) children.push_back(pid);
  }
  return children;
}

bool ProcessAlive(pid_t pid) {
  char state = 0;
  pid_t ppid = 0;
  return ReadProcStat(pid, state, ppid) && state != 'Z' && state != 'X';
}

}  // namespace zerodet::testing

namespace zerodet::testing {

struct CapturedLog::State {
  std::shared_ptr<spdlog::logger> previous;
  std::ostringstream text;
};

CapturedLog::CapturedLog() : state_(std::make_unique<State>()) {
  state_->previous = spdlog::default_logger();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(state_->text);
  sink->set_pattern("[%l] %v");
  auto logger = std::make_shared<spdlog::logger>("captured", std::move(sink));
  logger->set_level(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

CapturedLog::~CapturedLog() {
  spdlog::set_default_logger(state_->previous);
}

std::string CapturedLog::Text() const {
  spdlog::default_logger()->flush();
  return state_->text.str();
}

}  // namespace zerodet::testing
