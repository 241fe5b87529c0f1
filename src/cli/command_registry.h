// Subcommand registry of the `zerodet` executable.
//
// Each subcommand lives in its own <name>_command.cc, which defines a static CommandRegistrar;
// main() adds every registered command to the CLI11 app. Components add commands without
// editing a central list. Registration happens during static initialization of the executable
// (single-threaded); the registry is read-only afterwards.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace zerodet::cli {

// Adds the subcommand to `app`. The callback installed on the subcommand sets the process exit
// code through `exit_code`: 0 on success, non-zero after printing a one-line error to stderr.
using CommandSetup = std::function<void(CLI::App& app, int& exit_code)>;

struct RegisteredCommand {
  std::string name;  // for ordering only; the setup function names the subcommand itself
  CommandSetup setup;
};

// All registered commands, in registration order.
std::vector<RegisteredCommand>& CommandRegistry();

struct CommandRegistrar {
  CommandRegistrar(std::string name, CommandSetup setup) {
    CommandRegistry().push_back({std::move(name), std::move(setup)});
  }
};

// The `bench` group: returns `app`'s "bench" subcommand, creating it on first use, so each
// component adds `zerodet bench <what>` from its own file (bench_<what>_command.cc).
inline CLI::App* BenchGroup(CLI::App& app) {
  // A lookup that does not throw (CLI11 2.1, Debian 12, has no get_subcommand_no_throw).
  for (CLI::App* existing :
       app.get_subcommands([](CLI::App* sub) { return sub->get_name() == "bench"; })) {
    return existing;
  }
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks; each prints one JSON object");
  bench->require_subcommand(1);
  return bench;
}

}  // namespace zerodet::cli
