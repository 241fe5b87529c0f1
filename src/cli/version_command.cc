// `zerodet version`: versions of zerodet and of the libraries it runs on.
#include <cstdio>

#include "command_registry.h"
#include "zerodet/core/version.h"

namespace zerodet::cli {
namespace {

const CommandRegistrar kRegistrar("version", [](CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print the zerodet version");
  SetRun(cmd, [] {
    std::printf("zerodet %.*s\n", static_cast<int>(kVersion.size()), kVersion.data());
    return Status::Ok();
  });
});

}  // namespace
}  // namespace zerodet::cli
