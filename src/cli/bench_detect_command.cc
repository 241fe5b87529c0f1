// `zerodet bench detect`: how much the detection path adds around the model run, as one JSON
// object (bench/harness/detect_bench.h measures):
//   "single": the bare Run vs the full detect path on IMAGE, alternated, with the stage
//     breakdown and the overhead ratio;
//   "folder" (with --folder DIR): images per second over the folder for the bare Run, detect
//     with decode in line and detect with decode overlapped with inference.
#include <memory>
#include <string>
#include <vector>

#include "command_registry.h"
#include "detect_bench.h"
#include "detect_common.h"
#include "zerodet/core/file.h"

namespace zerodet::cli {
namespace {

struct BenchDetectArgs {
  DetectorFlags detector;
  std::string image;
  std::string folder;
  int iterations = 30;
  int warmup = 3;
  int rounds = 3;
};

Result<std::vector<std::filesystem::path>> FolderImages(const std::string& folder) {
  ZD_ASSIGN_OR_RETURN(std::vector<DirectoryEntry> entries, ListDirectory(folder));
  std::vector<std::filesystem::path> files;
  for (const DirectoryEntry& entry : entries) {
    if (entry.kind == DirectoryEntry::Kind::kRegular && HasImageFileExtension(entry.path)) {
      files.push_back(entry.path);
    }
  }
  if (files.empty()) return NotFoundError(folder + ": no image files");
  return files;
}

Status RunBenchDetect(const BenchDetectArgs& args) {
  ZD_ASSIGN_OR_RETURN(CommandDetector detector, args.detector.Open());
  const DecodeOptions decode = args.detector.DecodeOptionsFor(*detector);
  nlohmann::ordered_json out = {{"model", args.detector.model},
                                {"provider", args.detector.provider},
                                {"threads", args.detector.threads}};
  ZD_ASSIGN_OR_RETURN(out["single"],
                      bench::MeasureDetectOverhead(detector.get(), args.image, decode,
                                                   args.iterations, args.warmup));
  if (!args.folder.empty()) {
    ZD_ASSIGN_OR_RETURN(std::vector<std::filesystem::path> files, FolderImages(args.folder));
    ZD_ASSIGN_OR_RETURN(out["folder"],
                        bench::MeasureFolderThroughput(detector.get(), files, decode, args.rounds));
    out["folder"]["folder"] = args.folder;
  }
  PrintJsonLine(out);
  return Status::Ok();
}

const CommandRegistrar kRegistrar("bench detect", [](CLI::App& app) {
  auto args = std::make_shared<BenchDetectArgs>();
  auto* cmd = BenchGroup(app)->add_subcommand(
      "detect", "Bare model Run vs. the full detect path; decode overlapped vs in line");
  args->detector.AddTo(cmd);
  cmd->add_option("image", args->image, "Image file for the single-image comparison")->required();
  cmd->add_option("--folder", args->folder,
                  "Also measure images/s over this folder's images (bare Run, decode in line, "
                  "decode overlapped)");
  cmd->add_option("--iterations", args->iterations, "Timed iterations of each loop")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--warmup", args->warmup, "Untimed iterations first")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--rounds", args->rounds, "Passes over --folder per mode")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  SetRun(cmd, [args] { return RunBenchDetect(*args); });
});

}  // namespace
}  // namespace zerodet::cli
