// Subcommand registry of the `zerodet` executable.
//
// Each subcommand lives in its own <name>_command.cc, which defines a static CommandRegistrar;
// main() adds every registered command to the CLI11 app. Components add commands without
// editing a central list. Registration happens during static initialization of the executable
// (single-threaded); the registry is read-only afterwards.
//
// A command is flag wiring around one body: a function returning Status. main() prints a failed
// body's status as one line, "zerodet <command>: <message>", and exits with 1 (2 for usage
// errors, which CLI11 reports). Errors about single items that do not stop the command (one
// unreadable image among many) are printed with ReportError as they happen, one line each, and
// make the exit code 1 as well.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/core/status.h"

namespace zerodet::cli {

// Adds the subcommand to `app` and installs its body with SetRun.
using CommandSetup = std::function<void(CLI::App& app)>;

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

// Installs `body` as what `cmd` runs once its flags are parsed. A non-OK status (or an
// exception escaping the body, reported as kInternal) becomes the process's one-line error
// and exit code 1.
void SetRun(CLI::App* cmd, std::function<Status()> body);

// "detect", "bench detect": the command path of `cmd` below the root app.
std::string CommandPath(const CLI::App* cmd);

// Prints "zerodet <command>: <status>" as one line on stderr (line breaks in the message, as
// ONNX Runtime writes some, become spaces), for an error about one item (an image among many)
// that does not stop the command. The process then exits 1 even when the body returns OK.
void ReportError(std::string_view command, const Status& status);

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
