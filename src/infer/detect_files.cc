#include "zerodet/infer/detect_files.h"

#include <utility>

#include "zerodet/codec/prefetch.h"

namespace zerodet {

void DetectFiles(Detector& detector, const std::vector<std::filesystem::path>& files,
                 const DetectFilesOptions& options,
                 const std::function<void(FileDetection&&)>& on_result) {
  ImagePrefetcher prefetcher(files, options.decode, options.prefetch_depth);
  const size_t capacity = detector.batch_capacity();
  struct Pending {
    std::filesystem::path path;
    double decode_ms = 0;
  };
  std::vector<Pending> batch;
  batch.reserve(capacity);

  auto run_batch = [&] {
    if (batch.empty()) return;
    auto results = detector.RunStaged(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      FileDetection out;
      out.path = std::move(batch[i].path);
      if (results.ok()) {
        DetectionResult& r = (*results)[i];
        r.timing.decode_ms = batch[i].decode_ms;
        out.result = std::move(r);
      } else {
        out.result = results.status().WithContext(out.path.string());
      }
      on_result(std::move(out));
    }
    batch.clear();
  };

  while (std::optional<ImagePrefetcher::Item> item = prefetcher.Next()) {
    if (!item->image.ok()) {
      on_result(FileDetection{std::move(item->path), item->image.status()});
      continue;
    }
    const DecodedImage& decoded = *item->image;
    const Status staged = detector.Stage(batch.size(), decoded.image.view(),
                                         ImageSize{decoded.source_width, decoded.source_height});
    if (!staged.ok()) {
      on_result(FileDetection{item->path, staged.WithContext(item->path.string())});
      continue;
    }
    batch.push_back(Pending{std::move(item->path), item->decode_ms});
    // The decoded pixels are freed here: the model input holds the letterboxed copy.
    if (batch.size() == capacity) run_batch();
  }
  run_batch();
}

}  // namespace zerodet
