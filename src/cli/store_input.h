// `--store PATH --dataset NAME` for commands that run a detector (detect, eval): model inputs
// come letterboxed from a dataset that `zerodet preload --as letterbox:SIZE` put into a store,
// instead of being read, decoded and letterboxed from files. The tensors are exactly what the
// detector's own preprocessing computes from a full decode, so results are identical to reading
// the files (without --fast-jpeg, which the preloader does not use).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "command_registry.h"
#include "detect_common.h"
#include "zerodet/core/stopwatch.h"
#include "zerodet/dataset/dataset.h"
#include "zerodet/infer/detector.h"
#include "zerodet/store/client.h"

namespace zerodet::cli {

struct StoreInputFlags {
  std::string socket;
  std::string dataset;

  void AddTo(CLI::App* cmd) {
    CLI::Option* store = cmd->add_option("--store", socket,
                                         "Read preprocessed inputs from the store at this socket");
    CLI::Option* name = cmd->add_option("--dataset", dataset,
                                        "Dataset in --store (zerodet preload --as letterbox:SIZE)");
    store->needs(name);
    name->needs(store);
  }
  bool enabled() const { return !socket.empty(); }

  // Connects, opens the dataset and checks that its samples are the detector's input.
  Result<std::unique_ptr<dataset::DatasetReader>> Open(const Detector& detector) const {
    if (dataset.empty()) return InvalidArgumentError("--store needs --dataset NAME");
    // Readers connect read-only: they cannot change anyone's objects.
    ZD_ASSIGN_OR_RETURN(
        std::unique_ptr<store::StoreClient> client,
        store::StoreClient::Connect(socket, {.access = store::StoreAccess::kReadOnly}));
    ZD_ASSIGN_OR_RETURN(std::unique_ptr<dataset::DatasetReader> reader,
                        dataset::DatasetReader::Open(std::move(client), dataset));
    const ModelSpec& spec = detector.spec();
    ZD_RETURN_IF_ERROR(
        reader->CheckModelInput(spec.input_width, spec.input_height, spec.letterbox));
    return reader;
  }
};

// Detects on sample `i`; boxes in the source image's pixels. timing.decode_ms is the get.
inline Result<DetectionResult> DetectStoredSample(Detector& detector,
                                                  const dataset::DatasetReader& reader, size_t i) {
  Stopwatch watch;
  ZD_ASSIGN_OR_RETURN(dataset::Sample sample, reader.Get(i));
  const double get_ms = watch.ElapsedMs();
  const dataset::SampleInfo& info = sample.info();
  auto result = detector.DetectPreprocessed(sample.floats().data(), info.geometry,
                                            info.source_width, info.source_height);
  if (result.ok()) result->timing.decode_ms = get_ms;
  return result;
}

// `detect` over every sample of the dataset, printing the JSON lines `zerodet detect` prints for
// files ("image" is the sample's source file). A sample that fails is reported and the others go
// on; the status then says how many failed.
inline Status DetectDataset(Detector& detector, const StoreInputFlags& flags,
                            std::string_view command) {
  ZD_ASSIGN_OR_RETURN(std::unique_ptr<dataset::DatasetReader> reader, flags.Open(detector));
  const std::vector<std::string>& names = detector.spec().class_names;
  for (size_t i = 0; i < reader->size(); ++i) {
    const dataset::SampleInfo& info = reader->info(i);
    auto result = DetectStoredSample(detector, *reader, i);
    if (!result.ok()) {
      ReportError(command, result.status().WithContext(info.name));
      continue;
    }
    PrintJsonLine(ImageResultJson(info.path.string(), *result, names));
  }
  return Status::Ok();  // each failed sample was reported on its own line
}

}  // namespace zerodet::cli
