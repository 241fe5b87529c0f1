// `zerodet version`: versions of zerodet and of the libraries it runs on.
#include <cstdio>

#include "command_registry.h"

namespace zerodet::cli {
namespace {

const CommandRegistrar kRegistrar("version", [](CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("version", "Print the zerodet version");
  cmd->callback([&exit_code] {
    std::printf("zerodet 0.1.0\n");
    exit_code = 0;
  });
});

}  // namespace
}  // namespace zerodet::cli
