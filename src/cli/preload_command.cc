// `zerodet preload`: decodes a dataset once into a running store (see
// include/zerodet/dataset/dataset.h), so workers read samples with DatasetReader.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "command_registry.h"
#include "zerodet/core/stopwatch.h"
#include "zerodet/dataset/dataset.h"
#include "zerodet/store/client.h"

namespace zerodet::cli {
namespace {

struct PreloadArgs {
  std::string socket;
  std::string name;
  std::string as = "rgb";
  int jobs = 0;
  bool replace = false;
  std::string source;
};

void PrintProgress(size_t done, size_t total) {
  constexpr int kWidth = 40;
  const int filled = static_cast<int>(kWidth * done / total);
  std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu", filled, "########################################",
               kWidth - filled, "", done, total);
  if (done == total) std::fputc('\n', stderr);
  std::fflush(stderr);
}

Status RunPreload(const PreloadArgs& args) {
  dataset::PreloadOptions options;
  options.dataset = args.name;
  options.jobs = args.jobs;
  options.replace = args.replace;
  ZD_RETURN_IF_ERROR(dataset::ParseSampleLayout(args.as, &options.layout, &options.letterbox_size,
                                                &options.letterbox_style)
                         .WithContext("--as"));
  if (::isatty(STDERR_FILENO)) options.progress = PrintProgress;
  options.warning = [](const std::string& warning) {
    std::fprintf(stderr, "zerodet preload: warning: %s\n", warning.c_str());
  };
  ZD_ASSIGN_OR_RETURN(std::unique_ptr<store::StoreClient> client,
                      store::StoreClient::Connect(args.socket));
  Stopwatch watch;
  ZD_ASSIGN_OR_RETURN(dataset::PreloadReport report,
                      dataset::PreloadDataset(*client, args.source, options));
  std::printf(
      "dataset '%s': %zu samples (%zu decoded, %zu already stored%s), %.1f MiB as %s, in %.2f "
      "s; manifest %s\n",
      args.name.c_str(), report.samples, report.decoded, report.already_stored,
      report.manifest_existed ? ", manifest already there" : "",
      static_cast<double>(report.bytes) / 1048576.0, args.as.c_str(), watch.ElapsedMs() / 1000.0,
      report.manifest_id.ToHex().c_str());
  return Status::Ok();
}

const CommandRegistrar kRegistrar("preload", [](CLI::App& app) {
  auto args = std::make_shared<PreloadArgs>();
  auto* cmd = app.add_subcommand(
      "preload", "Decode a dataset once into a running store (zerodet store) for fast readers");
  cmd->add_option("--socket", args->socket, "Socket of the store")->required();
  cmd->add_option("--name", args->name, "Dataset name readers open")->required();
  cmd->add_option("--as", args->as,
                  "Sample layout: rgb, letterbox:SIZE (YOLOv5/v8/11, e.g. letterbox:640) or "
                  "letterbox-yolox:SIZE");
  cmd->add_option("--jobs", args->jobs, "Decoding threads (0: one per CPU)")
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("--replace", args->replace,
                "Replace a different dataset already stored under --name (default: refuse)");
  cmd->add_option("source", args->source, "Image directory or COCO annotation .json")->required();
  SetRun(cmd, [args] { return RunPreload(*args); });
});

}  // namespace
}  // namespace zerodet::cli
