// Datasets in the store: decode every image once, then read samples from shared memory.
//
// Concept. PreloadDataset() decodes the images of a directory or of a COCO annotation file once,
// in parallel, and stores each as one object (an RGB image or a letterboxed model input), plus
// one manifest object that maps the dataset name to every sample: its object id, tensor shape,
// dtype, original image size, letterbox geometry and source file. Any number of worker
// processes then DatasetReader::Open() the dataset by name and Get(i) a sample as a read-only
// tensor view straight into the store's arena, without a socket round trip. This module sits
// above the store (which knows no images) and the codec.
//
// Sample layouts:
//   kRgb8:      H x W x 3 uint8, RGB, the image as decoded (identical to cv::imread + BGR2RGB).
//   kLetterbox: 3 x S x S float32 CHW, exactly what Letterboxer::Run(style, S, S) writes: the
//               input Detector::DetectPreprocessed takes.
//
// Capacity and eviction. A dataset exists as long as its manifest does: manifests are created
// pinned, so the store never evicts them (only a Delete, or a preload with `replace`, removes
// one). Samples are ordinary objects: when another dataset needs the room, the store evicts
// them (least recently used first) and readers decode them again on a miss (below). A preload
// first computes the bytes it needs; it fails, before decoding anything, when they exceed what
// the store can ever make available (capacity minus pinned, unsealed and deleted-but-referenced
// objects), and warns through PreloadOptions::warning when it will have to evict other
// objects. While it runs it holds a reference to each of its samples, so none of them can be
// evicted before its manifest is written: a preload that succeeds leaves the whole dataset in
// the store; one that runs out of room (others' referenced objects) fails and removes what it
// created.
//
// Same name, concurrent preloads. Preloading a dataset that is already there with the same
// content (same layout and images) is a no-op that succeeds, also when several preloads of it
// run at once; a different dataset under an existing name is refused (kAlreadyExists) unless
// PreloadOptions::replace is set.
//
// Misses. Get(i) of an evicted sample decodes it again from its source file; a reader whose
// client is read-write puts it back into the store (when another process restored it first,
// that copy is used), a read-only reader keeps the decoded copy to itself.
//
// Object ids are derived from names (ObjectId::FromName): the manifest of dataset D is
// "zerodet-dataset:D", sample objects "zerodet-dataset:D:<layout>:<file name>", so independent
// processes agree on them.
//
// Thread safety: PreloadDataset may be called from any thread. A DatasetReader may be used from
// any number of threads at once (Get is const and the client is thread-safe). A Sample is a
// value owned by one thread at a time; it keeps its object referenced until destroyed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "zerodet/codec/letterbox.h"
#include "zerodet/core/status.h"
#include "zerodet/core/tensor.h"
#include "zerodet/store/client.h"
#include "zerodet/store/object_id.h"

namespace zerodet::dataset {

using store::ObjectId;
using store::ObjectView;
using store::StoreClient;

enum class SampleLayout { kRgb8, kLetterbox };

// Parses "rgb", "letterbox:SIZE" (Ultralytics YOLO inputs, e.g. "letterbox:640") or
// "letterbox-yolox:SIZE" (YOLOX inputs). `style` may be null. Errors: kInvalidArgument naming
// the accepted forms.
Status ParseSampleLayout(std::string_view text, SampleLayout* layout, int* letterbox_size,
                         LetterboxStyle* style = nullptr);

struct SampleInfo {
  std::string name;             // see ListDatasetImages: relative path or COCO file_name
  std::filesystem::path path;   // source file, re-decoded on a miss
  ObjectId id;                  // the sample's object
  DType dtype = DType::kUInt8;  // kUInt8 (kRgb8) or kFloat32 (kLetterbox)
  std::vector<int64_t> shape;   // {H, W, 3} or {3, S, S}
  int source_width = 0;         // the original image
  int source_height = 0;
  LetterboxGeometry geometry;  // kLetterbox: maps model boxes back to the source
  uint64_t size_bytes() const;
};

struct PreloadOptions {
  std::string dataset;  // the name workers open; non-empty
  SampleLayout layout = SampleLayout::kRgb8;
  int letterbox_size = 640;  // kLetterbox: S
  LetterboxStyle letterbox_style = LetterboxStyle::kUltralytics;
  int jobs = 0;  // decoding threads; 0: one per CPU
  // Replace a different dataset stored under the same name (its manifest is deleted; its
  // samples become ordinary evictable objects) instead of failing.
  bool replace = false;
  // Called after each image (from the preloading threads, one call at a time).
  std::function<void(size_t done, size_t total)> progress;
  // Called (once, from the calling thread, before decoding) with a one-line warning when the
  // preload will evict other objects to make room.
  std::function<void(const std::string& warning)> warning;
};

struct PreloadReport {
  size_t samples = 0;
  size_t decoded = 0;             // images decoded by this call
  size_t already_stored = 0;      // samples found in the store from an earlier preload
  uint64_t bytes = 0;             // sample bytes the dataset occupies
  uint64_t bytes_needed = 0;      // store bytes the samples not yet stored needed (with metadata)
  bool manifest_existed = false;  // an identical manifest was there already
  ObjectId manifest_id;
};

struct DatasetImage {
  std::filesystem::path path;  // the file
  std::string name;            // the sample's name (see ListDatasetImages)
};

// The image files of a dataset source: every .jpg/.jpeg/.png/.bmp file under a directory
// (recursively, sorted by path; named by their path relative to the directory), or the
// images[].file_name entries of a COCO annotation file (looked up next to the file and in its
// images/ folder; named by file_name, so evaluators find them). Errors: kNotFound for a missing
// source or image, kCorruptData for an unreadable annotation file, kInvalidArgument for an
// empty source.
Result<std::vector<DatasetImage>> ListDatasetImages(const std::filesystem::path& source);

// Decodes every image of `source` (see ListDatasetImages) once, stores each as an object and
// writes the dataset's pinned manifest (see "Capacity and eviction" and "Same name" above).
// Samples already in the store are kept. REQUIRES: a read-write client.
// Errors: the image that failed; kResourceExhausted naming the bytes needed and available when
// the dataset cannot fit (up front) or room runs out (objects of this call are then deleted
// again); kAlreadyExists for a different dataset under the name; kPermissionDenied for a
// read-only client.
Result<PreloadReport> PreloadDataset(StoreClient& client, const std::filesystem::path& source,
                                     const PreloadOptions& options);

// Decodes one image into the sample layout, into freshly allocated memory (the miss path; also
// what file-based readers compute, so tests and benchmarks compare against it).
Result<std::vector<uint8_t>> DecodeSample(const std::filesystem::path& path, SampleLayout layout,
                                          int letterbox_size, LetterboxStyle style,
                                          SampleInfo* info);

// One sample: a read-only view into the store, or (after a miss the store could not take back)
// memory of its own. Move-only; keeps its store object referenced while it exists.
//
// Lifetime: a Sample is independent of the DatasetReader that returned it; it shares the
// reader's sample table and the store client's mappings, so it stays valid (and its bytes
// unchanged) after the reader, the client or the store itself are gone.
class Sample {
 public:
  Sample() = default;
  // REQUIRES: the sample came from DatasetReader::Get.
  const SampleInfo& info() const { return *info_; }
  // The sample's bytes (info().size_bytes() of them), laid out as info().dtype and shape.
  std::span<const uint8_t> bytes() const;
  // bytes() as float32 values. REQUIRES: info().dtype == DType::kFloat32 (kLetterbox).
  std::span<const float> floats() const;
  bool from_store() const { return view_.valid(); }

 private:
  friend class DatasetReader;
  std::shared_ptr<const SampleInfo> info_;
  ObjectView view_;
  std::vector<uint8_t> owned_;
};

class DatasetReader {
 public:
  // Reads the manifest of `dataset`. The reader shares `client`; a read-only client (the usual
  // choice for readers) serves misses from private copies instead of restoring them.
  // Errors: kNotFound when no such dataset is in the store (preload it), kCorruptData for a
  // manifest that does not parse.
  static Result<std::unique_ptr<DatasetReader>> Open(std::shared_ptr<StoreClient> client,
                                                     const std::string& dataset);

  size_t size() const { return samples_->size(); }
  SampleLayout layout() const { return layout_; }
  int letterbox_size() const { return letterbox_size_; }
  LetterboxStyle letterbox_style() const { return style_; }
  // REQUIRES: i < size().
  const SampleInfo& info(size_t i) const { return (*samples_)[i]; }
  // OK when the samples are exactly the input of a model taking `width` x `height` inputs
  // letterboxed in `style`; else kFailedPrecondition saying how to preload the dataset instead.
  Status CheckModelInput(int width, int height, LetterboxStyle style) const;
  // Index of the sample named `name`, or size() if none.
  size_t Find(const std::string& name) const;

  // Sample i from the store; on a miss decodes it from its source file (and stores it again
  // when the client is read-write). Errors: kInvalidArgument for i >= size(), decoding errors
  // naming the file, kUnavailable when the store is gone.
  Result<Sample> Get(size_t i) const;

 private:
  DatasetReader() = default;
  std::shared_ptr<StoreClient> client_;
  std::string dataset_;
  SampleLayout layout_ = SampleLayout::kRgb8;
  int letterbox_size_ = 0;
  LetterboxStyle style_ = LetterboxStyle::kUltralytics;
  // Shared with every Sample handed out (see Sample, "Lifetime").
  std::shared_ptr<const std::vector<SampleInfo>> samples_;
  std::unordered_map<std::string, size_t> by_name_;
};

// The manifest's object id for dataset `name`.
ObjectId ManifestId(const std::string& dataset);

}  // namespace zerodet::dataset
