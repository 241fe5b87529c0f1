// zerodet: YOLO object detection at the speed of the hardware.
#include <algorithm>
#include <cstdio>

#include "command_registry.h"
#include "zerodet/core/logging.h"

namespace zerodet::cli {

std::vector<RegisteredCommand>& CommandRegistry() {
  static std::vector<RegisteredCommand> commands;
  return commands;
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

  int exit_code = 0;
  auto& commands = CommandRegistry();
  std::stable_sort(commands.begin(), commands.end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& command : commands) command.setup(app, exit_code);

  // Logging must be set up before any subcommand callback runs, and after parsing.
  app.parse_complete_callback([&] {
    if (auto status = zerodet::SetupLogging(log_level); !status.ok()) {
      std::fprintf(stderr, "zerodet: %s\n", status.message().c_str());
      std::exit(2);
    }
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}
