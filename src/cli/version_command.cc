// `zerodet version`: versions of zerodet and of the libraries it runs on.
#include <cstdio>

#include "command_registry.h"

namespace zerodet::cli {
namespace {

const CommandRegistrar kRegistrar("version", [](CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print the zerodet version");
  SetRun(cmd, [] {
    std::printf("zerodet 0.1.0\n");
    return Status::Ok();
  });
});

}  // namespace
}  // namespace zerodet::cli
