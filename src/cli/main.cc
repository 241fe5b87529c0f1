// zerodet: YOLO object detection at the speed of the hardware.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>

#include "command_registry.h"
#include "zerodet/core/logging.h"

namespace zerodet::cli {
namespace {

struct CommandFailure {
  std::string command;
  Status status;
  int reported_errors = 0;  // ReportError calls
};

CommandFailure& Failure() {
  static CommandFailure failure;
  return failure;
}

}  // namespace

std::vector<RegisteredCommand>& CommandRegistry() {
  static std::vector<RegisteredCommand> commands;
  return commands;
}

std::string CommandPath(const CLI::App* cmd) {
  std::string path;
  for (const CLI::App* app = cmd; app != nullptr && app->get_parent() != nullptr;
       app = app->get_parent()) {
    path = path.empty() ? app->get_name() : app->get_name() + " " + path;
  }
  return path;
}

void SetRun(CLI::App* cmd, std::function<Status()> body) {
  cmd->callback([cmd, body = std::move(body)] {
    Status status;
    // The last net under every command: module boundaries return Status, so an exception here
    // is a bug, reported as one line instead of std::terminate's abort.
    try {
      status = body();
    } catch (const std::bad_alloc&) {
      status = ResourceExhaustedError("out of memory");
    } catch (const std::exception& e) {
      status = InternalError(std::string("unexpected exception: ") + e.what());
    }
    if (!status.ok()) {
      Failure().command = CommandPath(cmd);
      Failure().status = status;
    }
  });
}

void ReportError(std::string_view command, const Status& status) {
  ++Failure().reported_errors;
  std::string line = status.ToString();
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::replace(line.begin(), line.end(), '\r', ' ');
  std::fprintf(stderr, "zerodet %.*s: %s\n", static_cast<int>(command.size()), command.data(),
               line.c_str());
}

}  // namespace zerodet::cli

int main(int argc, char** argv) {
  using zerodet::cli::CommandRegistry;
  CLI::App app{"zerodet: YOLO object detection at the speed of the hardware", "zerodet"};
  app.set_version_flag("--version", "zerodet 0.1.0");
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();

  auto& commands = CommandRegistry();
  std::stable_sort(commands.begin(), commands.end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& command : commands) command.setup(app);

  // Logging must be set up before any subcommand callback runs, and after parsing.
  app.parse_complete_callback([&] {
    if (auto status = zerodet::SetupLogging(log_level); !status.ok()) {
      std::fprintf(stderr, "zerodet: %s\n", status.message().c_str());
      std::exit(2);
    }
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A usage error: one line, exit code 2 (CLI11 would print two and exit with its own codes).
    std::string line = e.what();
    std::replace(line.begin(), line.end(), '\n', ' ');
    std::fprintf(stderr, "zerodet: %s (see zerodet --help)\n", line.c_str());
    return 2;
  }
  const auto& failure = zerodet::cli::Failure();
  if (failure.status.ok()) return failure.reported_errors > 0 ? 1 : 0;
  zerodet::cli::ReportError(failure.command, failure.status);
  return 1;
}
