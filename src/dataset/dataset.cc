#include "zerodet/dataset/dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "zerodet/codec/decode.h"
#include "zerodet/core/file.h"
#include "zerodet/core/image.h"

namespace zerodet::dataset {

using store::ObjectBuffer;
using store::StoreStats;

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Per-sample object metadata: lets a later preload describe a sample it finds already stored
// without decoding it again.
struct SampleHeader {
  int32_t source_width;
  int32_t source_height;
  int32_t decoded_width;
  int32_t decoded_height;
};

// How long a reader waits for a sample that another process is restoring right now.
constexpr auto kRestoreWait = 10000ms;
// How long a create waits for unsealed objects to be sealed when the store is full of them.
constexpr int kFullRetries = 200;
constexpr auto kFullRetryInterval = 10ms;

const char* LayoutName(SampleLayout layout) {
  return layout == SampleLayout::kRgb8 ? "rgb" : "letterbox";
}

ObjectId SampleId(const std::string& dataset, SampleLayout layout, int size,
                  const std::string& name) {
  const std::string layout_key =
      layout == SampleLayout::kRgb8 ? "rgb" : fmt::format("letterbox{}", size);
  return ObjectId::FromName(fmt::format("zerodet-dataset:{}:{}:{}", dataset, layout_key, name));
}

// Fills the layout-dependent parts of `info` for an image of the given sizes.
void DescribeSample(SampleLayout layout, int letterbox_size, LetterboxStyle style,
                    const SampleHeader& header, SampleInfo* info) {
  info->source_width = header.source_width;
  info->source_height = header.source_height;
  if (layout == SampleLayout::kRgb8) {
    info->dtype = DType::kUInt8;
    info->shape = {header.decoded_height, header.decoded_width, 3};
    info->geometry = LetterboxGeometry{};
  } else {
    info->dtype = DType::kFloat32;
    info->shape = {3, letterbox_size, letterbox_size};
    info->geometry = ComputeLetterbox(header.decoded_width, header.decoded_height, letterbox_size,
                                      letterbox_size, style);
  }
}

// Decodes `path` and writes the sample into the memory `allocate(size)` returns.
template <typename Allocate>
Status DecodeSampleInto(const fs::path& path, SampleLayout layout, int letterbox_size,
                        LetterboxStyle style, Letterboxer& letterboxer, SampleInfo* info,
                        SampleHeader* header, Allocate&& allocate) {
  ZD_ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImageFile(path));
  const Image& image = decoded.image;
  *header =
      SampleHeader{decoded.source_width, decoded.source_height, image.width(), image.height()};
  DescribeSample(layout, letterbox_size, style, *header, info);
  ZD_ASSIGN_OR_RETURN(uint8_t * dst, allocate(info->size_bytes()));
  if (layout == SampleLayout::kRgb8) {
    const size_t row = static_cast<size_t>(image.width()) * 3;
    const auto stride = static_cast<size_t>(image.stride());
    for (size_t y = 0; y < static_cast<size_t>(image.height()); ++y) {
      std::memcpy(dst + y * row, image.data() + y * stride, row);
    }
    return Status::Ok();
  }
  ZD_ASSIGN_OR_RETURN(info->geometry, letterboxer.Run(image.view(), style, letterbox_size,
                                                      letterbox_size, reinterpret_cast<float*>(dst),
                                                      info->size_bytes() / sizeof(float)));
  return Status::Ok();
}

std::span<const uint8_t> HeaderBytes(const SampleHeader& header) {
  return {reinterpret_cast<const uint8_t*>(&header), sizeof(header)};
}

Result<SampleHeader> ReadHeader(const ObjectView& view) {
  SampleHeader header{};
  if (view.metadata().size() != sizeof(header)) {
    return CorruptDataError(
        fmt::format("store object {} is not a dataset sample (metadata of {} bytes)",
                    view.id().ToHex(), view.metadata().size()));
  }
  std::memcpy(&header, view.metadata().data(), sizeof(header));
  return header;
}

// Create(), waiting while the store is full only because of objects still being written (by
// the other preloading threads, say): those become evictable once sealed. Objects that cannot
// fit even then fail at once.
Result<ObjectBuffer> CreateWhenRoom(StoreClient& client, const ObjectId& id, uint64_t size,
                                    std::span<const uint8_t> metadata) {
  for (int attempt = 0;; ++attempt) {
    Result<ObjectBuffer> buffer = client.Create(id, size, metadata);
    if (buffer.ok() || buffer.status().code() != StatusCode::kResourceExhausted ||
        attempt >= kFullRetries) {
      return buffer;
    }
    ZD_ASSIGN_OR_RETURN(StoreStats stats, client.Stats());
    if (stats.unsealed_objects == 0 || size + metadata.size() > stats.capacity) return buffer;
    std::this_thread::sleep_for(kFullRetryInterval);
  }
}

// Stores one sample: decodes straight into a new store object, and returns a view of it (the
// reference keeps it in the store while the caller needs it). Sets *already_stored when the
// object was there (from an earlier preload or a concurrent one).
Result<ObjectView> PreloadOne(StoreClient& client, const fs::path& path, SampleLayout layout,
                              int letterbox_size, LetterboxStyle style, Letterboxer& letterboxer,
                              SampleInfo* info, bool* already_stored) {
  *already_stored = false;
  bool stored_by_us = false;
  for (int attempt = 0; attempt < 3; ++attempt) {
    Result<ObjectView> existing =
        client.Get(info->id, {.timeout = attempt == 0 || stored_by_us ? 0ms : kRestoreWait});
    if (existing.ok()) {
      ZD_ASSIGN_OR_RETURN(SampleHeader header, ReadHeader(*existing));
      DescribeSample(layout, letterbox_size, style, header, info);
      if (existing->data().size() != info->size_bytes()) {
        return CorruptDataError(fmt::format("stored sample {} has {} bytes, expected {}",
                                            info->name, existing->data().size(),
                                            info->size_bytes()));
      }
      *already_stored = !stored_by_us;
      return std::move(*existing);
    }
    if (existing.status().code() != StatusCode::kNotFound &&
        existing.status().code() != StatusCode::kDeadlineExceeded) {
      return existing.status();
    }
    ObjectBuffer buffer;
    SampleHeader header{};
    Status decoded = DecodeSampleInto(
        path, layout, letterbox_size, style, letterboxer, info, &header,
        [&](uint64_t size) -> Result<uint8_t*> {
          // The header is filled before allocate() is called.
          ZD_ASSIGN_OR_RETURN(buffer, CreateWhenRoom(client, info->id, size, HeaderBytes(header)));
          return buffer.data().data();
        });
    if (decoded.code() == StatusCode::kAlreadyExists) continue;  // someone else is storing it
    ZD_RETURN_IF_ERROR(decoded.WithContext(info->name));
    ZD_RETURN_IF_ERROR(client.Seal(std::move(buffer)));
    // Sealed objects can be evicted before we get them back; then it is stored again.
    stored_by_us = true;
  }
  return DeadlineExceededError(
      fmt::format("sample {} ({}) could not be kept in the store: it is being stored by another "
                  "process that never finished, or evicted as soon as it is stored",
                  info->name, info->id.ToHex()));
}

// The store bytes a sample of `image` takes in `layout` (its header only: nothing is decoded).
Result<uint64_t> SampleFootprint(const fs::path& path, SampleLayout layout, int letterbox_size) {
  uint64_t bytes = 0;
  if (layout == SampleLayout::kLetterbox) {
    bytes = uint64_t{3} * static_cast<uint64_t>(letterbox_size) *
            static_cast<uint64_t>(letterbox_size) * sizeof(float);
  } else {
    ZD_ASSIGN_OR_RETURN(std::vector<uint8_t> file, ReadFileBytes(path));
    ZD_ASSIGN_OR_RETURN(ImageInfo image, ReadImageInfo(file, path.string()));
    bytes = uint64_t{3} * static_cast<uint64_t>(image.width) * static_cast<uint64_t>(image.height);
  }
  return store::ObjectFootprint(bytes, sizeof(SampleHeader));
}

std::string MiB(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / 1048576.0);
}

// What a manifest says about its dataset, for messages.
std::string DescribeManifest(std::span<const uint8_t> bytes) {
  nlohmann::json manifest = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
  if (manifest.is_discarded() || !manifest.is_object()) return "an unreadable manifest";
  const std::string layout = manifest.value("layout", std::string("?"));
  const std::string size =
      layout == "rgb" ? std::string() : fmt::format(":{}", manifest.value("letterbox_size", 0));
  const size_t samples = manifest.contains("samples") && manifest["samples"].is_array()
                             ? manifest["samples"].size()
                             : 0;
  return fmt::format("{}{} of {} samples from {}", layout, size, samples,
                     manifest.value("source", std::string("?")));
}

// Writes the dataset's pinned manifest, or accepts an identical one already there (written by
// an earlier or a concurrent preload of the same dataset). Sets *existed in that case.
Status WriteManifest(StoreClient& client, const PreloadOptions& options, const ObjectId& id,
                     const std::string& manifest, bool* existed) {
  *existed = false;
  const std::span<const uint8_t> ours(reinterpret_cast<const uint8_t*>(manifest.data()),
                                      manifest.size());
  for (int attempt = 0; attempt < 5; ++attempt) {
    Result<ObjectBuffer> buffer = client.Create(id, manifest.size(), {}, {.pinned = true});
    if (buffer.ok()) {
      std::memcpy(buffer->data().data(), manifest.data(), manifest.size());
      return client.Seal(std::move(*buffer));
    }
    if (buffer.status().code() != StatusCode::kAlreadyExists) return buffer.status();
    // Another preload may be writing it right now: wait for its seal.
    Result<ObjectView> stored = client.Get(id, {.timeout = kRestoreWait});
    if (!stored.ok()) {
      if (stored.status().code() == StatusCode::kNotFound ||
          stored.status().code() == StatusCode::kDeadlineExceeded) {
        continue;  // deleted (or aborted) meanwhile: try again
      }
      return stored.status();
    }
    if (std::equal(stored->data().begin(), stored->data().end(), ours.begin(), ours.end())) {
      *existed = true;
      return Status::Ok();
    }
    if (!options.replace) {
      return AlreadyExistsError(fmt::format(
          "store {} already holds a different dataset '{}' ({}); this preload is {}: choose "
          "another name, or replace it (zerodet preload --replace)",
          client.socket_path(), options.dataset, DescribeManifest(stored->data()),
          DescribeManifest(ours)));
    }
    stored->Release();
    Status deleted = client.Delete(id);
    if (!deleted.ok() && deleted.code() != StatusCode::kNotFound) return deleted;
  }
  return UnavailableError(fmt::format(
      "the manifest of dataset '{}' kept changing under this preload (other preloads replacing "
      "it?)",
      options.dataset));
}

nlohmann::json ManifestJson(const PreloadOptions& options, const fs::path& source,
                            const std::vector<SampleInfo>& samples) {
  nlohmann::json manifest;
  manifest["format"] = "zerodet-dataset-1";
  manifest["dataset"] = options.dataset;
  manifest["source"] = fs::absolute(source).string();
  manifest["layout"] = LayoutName(options.layout);
  manifest["letterbox_size"] = options.letterbox_size;
  manifest["letterbox_style"] =
      options.letterbox_style == LetterboxStyle::kUltralytics ? "ultralytics" : "yolox";
  nlohmann::json list = nlohmann::json::array();
  for (const SampleInfo& s : samples) {
    list.push_back({{"name", s.name},
                    {"path", s.path.string()},
                    {"id", s.id.ToHex()},
                    {"dtype", std::string(DTypeName(s.dtype))},
                    {"shape", s.shape},
                    {"source_width", s.source_width},
                    {"source_height", s.source_height},
                    {"scale", s.geometry.scale},
                    {"pad_x", s.geometry.pad_x},
                    {"pad_y", s.geometry.pad_y},
                    {"resized_width", s.geometry.resized_width},
                    {"resized_height", s.geometry.resized_height}});
  }
  manifest["samples"] = std::move(list);
  return manifest;
}

}  // namespace

uint64_t SampleInfo::size_bytes() const {
  uint64_t n = DTypeSize(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(std::max<int64_t>(d, 0));
  return n;
}

ObjectId ManifestId(const std::string& dataset) {
  return ObjectId::FromName("zerodet-dataset:" + dataset);
}

Status ParseSampleLayout(std::string_view text, SampleLayout* layout, int* letterbox_size,
                         LetterboxStyle* style) {
  if (text == "rgb") {
    *layout = SampleLayout::kRgb8;
    return Status::Ok();
  }
  constexpr std::string_view kPrefix = "letterbox:";
  constexpr std::string_view kYoloxPrefix = "letterbox-yolox:";
  const bool yolox = text.starts_with(kYoloxPrefix);
  if (yolox || text.starts_with(kPrefix)) {
    const std::string digits(text.substr(yolox ? kYoloxPrefix.size() : kPrefix.size()));
    int size = 0;
    size_t used = 0;
    try {
      size = std::stoi(digits, &used);
    } catch (...) {
      used = 0;
    }
    if (used == digits.size() && used > 0 && size >= 32 && size <= 8192 && size % 32 == 0) {
      *layout = SampleLayout::kLetterbox;
      *letterbox_size = size;
      if (style != nullptr) *style = yolox ? LetterboxStyle::kYolox : LetterboxStyle::kUltralytics;
      return Status::Ok();
    }
  }
  return InvalidArgumentError(fmt::format(
      "sample layout '{}' not understood: use 'rgb', 'letterbox:SIZE' (Ultralytics YOLO) or "
      "'letterbox-yolox:SIZE' with SIZE a multiple of 32 in 32..8192 (e.g. letterbox:640)",
      text));
}

Result<std::vector<DatasetImage>> ListDatasetImages(const fs::path& source) {
  std::error_code ec;
  if (!fs::exists(source, ec)) {
    return NotFoundError(fmt::format("dataset source {} does not exist", source.string()));
  }
  std::vector<DatasetImage> images;
  if (fs::is_directory(source, ec)) {
    for (fs::recursive_directory_iterator it(source, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_regular_file(ec) && HasImageFileExtension(it->path())) {
        images.push_back({it->path(), it->path().lexically_relative(source).generic_string()});
      }
    }
    if (ec) return IoError(fmt::format("cannot list {}: {}", source.string(), ec.message()));
    std::sort(images.begin(), images.end(),
              [](const DatasetImage& a, const DatasetImage& b) { return a.path < b.path; });
  } else {
    ZD_ASSIGN_OR_RETURN(std::string text, ReadFileText(source));
    nlohmann::json coco = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (coco.is_discarded() || !coco.is_object() || !coco.contains("images") ||
        !coco["images"].is_array()) {
      return CorruptDataError(fmt::format(
          "{} is neither a directory nor a COCO annotation file with an \"images\" array",
          source.string()));
    }
    const fs::path dir = source.parent_path();
    for (const auto& entry : coco["images"]) {
      if (!entry.is_object() || !entry.contains("file_name") || !entry["file_name"].is_string()) {
        return CorruptDataError(
            fmt::format("{}: an images[] entry has no file_name string", source.string()));
      }
      const std::string name = entry["file_name"].get<std::string>();
      fs::path found;
      for (const fs::path& candidate : {dir / name, dir / "images" / name}) {
        if (fs::is_regular_file(candidate, ec)) {
          found = candidate;
          break;
        }
      }
      if (found.empty()) {
        return NotFoundError(fmt::format("{} lists image {}, found neither in {} nor in {}",
                                         source.string(), name, dir.string(),
                                         (dir / "images").string()));
      }
      images.push_back({found, name});
    }
  }
  if (images.empty()) {
    return InvalidArgumentError(
        fmt::format("no images (.jpg, .jpeg, .png, .bmp) in {}", source.string()));
  }
  return images;
}

Result<std::vector<uint8_t>> DecodeSample(const fs::path& path, SampleLayout layout,
                                          int letterbox_size, LetterboxStyle style,
                                          SampleInfo* info) {
  Letterboxer letterboxer;
  SampleHeader header{};
  std::vector<uint8_t> bytes;
  ZD_RETURN_IF_ERROR(DecodeSampleInto(path, layout, letterbox_size, style, letterboxer, info,
                                      &header, [&](uint64_t size) -> Result<uint8_t*> {
                                        bytes.resize(size);
                                        return bytes.data();
                                      }));
  return bytes;
}

Result<PreloadReport> PreloadDataset(StoreClient& client, const fs::path& source,
                                     const PreloadOptions& options) {
  if (options.dataset.empty()) return InvalidArgumentError("preload: empty dataset name");
  if (options.layout == SampleLayout::kLetterbox &&
      (options.letterbox_size < 32 || options.letterbox_size > 8192)) {
    return InvalidArgumentError(
        fmt::format("preload: letterbox size {} out of range 32..8192", options.letterbox_size));
  }
  if (client.access() != store::StoreAccess::kReadWrite) {
    return PermissionDeniedError("preload: the store client is read-only; connect read-write");
  }
  ZD_ASSIGN_OR_RETURN(std::vector<DatasetImage> images, ListDatasetImages(source));

  std::vector<SampleInfo> samples(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    SampleInfo& s = samples[i];
    s.path = fs::absolute(images[i].path);
    s.name = images[i].name;
    s.id = SampleId(options.dataset, options.layout, options.letterbox_size, s.name);
  }

  // References to every sample of the dataset, held until the manifest is written, so that
  // none of them can be evicted before the dataset is complete.
  std::vector<ObjectView> held(samples.size());
  PreloadReport report;
  for (size_t i = 0; i < samples.size(); ++i) {
    if (Result<ObjectView> stored = client.Get(samples[i].id); stored.ok()) {
      held[i] = std::move(*stored);
      continue;
    }
    ZD_ASSIGN_OR_RETURN(const uint64_t footprint,
                        SampleFootprint(samples[i].path, options.layout, options.letterbox_size));
    report.bytes_needed += footprint;
  }
  ZD_ASSIGN_OR_RETURN(const StoreStats stats, client.Stats());
  const uint64_t unavailable =
      stats.pinned_bytes + stats.unsealed_bytes + stats.pending_delete_bytes;
  const uint64_t room = stats.capacity > unavailable ? stats.capacity - unavailable : 0;
  if (report.bytes_needed > room) {
    return ResourceExhaustedError(fmt::format(
        "dataset '{}' needs {} for {} samples, but store {} can make at most {} available "
        "(capacity {}; {} pinned, {} being written, {} deleted but still read): start the store "
        "with a larger --capacity, preload fewer images or a smaller layout",
        options.dataset, MiB(report.bytes_needed), samples.size(), client.socket_path(), MiB(room),
        MiB(stats.capacity), MiB(stats.pinned_bytes), MiB(stats.unsealed_bytes),
        MiB(stats.pending_delete_bytes)));
  }
  const uint64_t free_bytes = stats.capacity - stats.bytes_allocated;
  if (report.bytes_needed > free_bytes && options.warning) {
    options.warning(fmt::format(
        "dataset '{}' needs {} and store {} has {} free: the least recently used objects not in "
        "use (about {}, possibly other datasets' samples) will be evicted",
        options.dataset, MiB(report.bytes_needed), client.socket_path(), MiB(free_bytes),
        MiB(report.bytes_needed - free_bytes)));
  }

  int jobs =
      options.jobs > 0 ? options.jobs : static_cast<int>(std::thread::hardware_concurrency());
  jobs = std::clamp<int>(jobs, 1, static_cast<int>(images.size()));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;  // guards the fields below
  Status first_error;
  std::vector<ObjectId> created;
  size_t done = 0;
  auto worker = [&] {
    Letterboxer letterboxer;
    for (;;) {
      const size_t i = next.fetch_add(1);
      if (i >= samples.size() || failed.load()) return;
      SampleInfo& info = samples[i];
      bool already = held[i].valid();
      Status status;
      if (already) {
        Result<SampleHeader> header = ReadHeader(held[i]);
        status = header.status();
        if (header.ok()) {
          DescribeSample(options.layout, options.letterbox_size, options.letterbox_style, *header,
                         &info);
          if (held[i].data().size() != info.size_bytes()) {
            status =
                CorruptDataError(fmt::format("stored sample {} has {} bytes, expected {}",
                                             info.name, held[i].data().size(), info.size_bytes()));
          }
        }
      } else {
        Result<ObjectView> view =
            PreloadOne(client, info.path, options.layout, options.letterbox_size,
                       options.letterbox_style, letterboxer, &info, &already);
        status = view.status();
        if (view.ok()) held[i] = std::move(*view);
      }
      std::lock_guard lock(mutex);
      if (!status.ok()) {
        if (first_error.ok()) first_error = status;
        failed.store(true);
        return;
      }
      (already ? report.already_stored : report.decoded)++;
      if (!already) created.push_back(info.id);
      report.bytes += info.size_bytes();
      ++done;
      if (options.progress) options.progress(done, samples.size());
    }
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < jobs; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  auto undo = [&](const Status& error) {
    held.clear();
    (void)client.Delete(created);
    return error.WithContext(fmt::format("preloading dataset '{}'", options.dataset));
  };
  if (!first_error.ok()) return undo(first_error);

  const std::string manifest = ManifestJson(options, source, samples).dump();
  report.manifest_id = ManifestId(options.dataset);
  report.samples = samples.size();
  Status written =
      WriteManifest(client, options, report.manifest_id, manifest, &report.manifest_existed);
  if (!written.ok()) return undo(written);
  return report;
}

// ---- Sample / DatasetReader ----

std::span<const uint8_t> Sample::bytes() const {
  if (view_.valid()) return view_.data();
  return owned_;
}

std::span<const float> Sample::floats() const {
  const std::span<const uint8_t> raw = bytes();
  // Store objects are 64-byte aligned and owned copies come from operator new: both suit float.
  return {reinterpret_cast<const float*>(raw.data()), raw.size() / sizeof(float)};
}

Result<std::unique_ptr<DatasetReader>> DatasetReader::Open(std::shared_ptr<StoreClient> client,
                                                           const std::string& dataset) {
  if (client == nullptr) return InvalidArgumentError("DatasetReader::Open: null store client");
  Result<ObjectView> view = client->Get(ManifestId(dataset));
  if (!view.ok()) {
    if (view.status().code() == StatusCode::kNotFound) {
      return NotFoundError(fmt::format(
          "no dataset '{}' in store {} (preload it: zerodet preload --socket {} --name {} DIR)",
          dataset, client->socket_path(), client->socket_path(), dataset));
    }
    return view.status();
  }
  const auto* text = reinterpret_cast<const char*>(view->data().data());
  nlohmann::json manifest =
      nlohmann::json::parse(text, text + view->data().size(), nullptr, /*allow_exceptions=*/false);
  auto corrupt = [&](const std::string& what) {
    return CorruptDataError(fmt::format("manifest of dataset '{}' in store {}: {}", dataset,
                                        client->socket_path(), what));
  };
  if (manifest.is_discarded() || !manifest.is_object() ||
      manifest.value("format", "") != "zerodet-dataset-1") {
    return corrupt("not a zerodet dataset manifest");
  }
  auto reader = std::unique_ptr<DatasetReader>(new DatasetReader());
  auto samples = std::make_shared<std::vector<SampleInfo>>();
  reader->client_ = std::move(client);
  reader->dataset_ = dataset;
  try {
    const std::string layout = manifest.at("layout").get<std::string>();
    if (layout != "rgb" && layout != "letterbox") return corrupt("unknown layout " + layout);
    reader->layout_ = layout == "rgb" ? SampleLayout::kRgb8 : SampleLayout::kLetterbox;
    reader->letterbox_size_ = manifest.at("letterbox_size").get<int>();
    reader->style_ = manifest.at("letterbox_style").get<std::string>() == "yolox"
                         ? LetterboxStyle::kYolox
                         : LetterboxStyle::kUltralytics;
    for (const auto& entry : manifest.at("samples")) {
      SampleInfo s;
      s.name = entry.at("name").get<std::string>();
      s.path = entry.at("path").get<std::string>();
      ZD_ASSIGN_OR_RETURN(s.id, ObjectId::FromHex(entry.at("id").get<std::string>()));
      s.dtype = reader->layout_ == SampleLayout::kRgb8 ? DType::kUInt8 : DType::kFloat32;
      s.shape = entry.at("shape").get<std::vector<int64_t>>();
      s.source_width = entry.at("source_width").get<int>();
      s.source_height = entry.at("source_height").get<int>();
      s.geometry.scale = entry.at("scale").get<float>();
      s.geometry.pad_x = entry.at("pad_x").get<float>();
      s.geometry.pad_y = entry.at("pad_y").get<float>();
      s.geometry.resized_width = entry.at("resized_width").get<int>();
      s.geometry.resized_height = entry.at("resized_height").get<int>();
      if (s.shape.size() != 3 ||
          std::any_of(s.shape.begin(), s.shape.end(), [](int64_t d) { return d <= 0; })) {
        return corrupt("sample " + s.name + " has a bad shape");
      }
      reader->by_name_.emplace(s.name, samples->size());
      samples->push_back(std::move(s));
    }
  } catch (const nlohmann::json::exception& e) {
    return corrupt(e.what());
  }
  reader->samples_ = std::move(samples);
  return reader;
}

Status DatasetReader::CheckModelInput(int width, int height, LetterboxStyle style) const {
  const bool yolox = style == LetterboxStyle::kYolox;
  if (layout_ == SampleLayout::kLetterbox && width == height && width == letterbox_size_ &&
      style == style_) {
    return Status::Ok();
  }
  const std::string have =
      layout_ == SampleLayout::kRgb8
          ? std::string("rgb")
          : fmt::format("{}:{}", style_ == LetterboxStyle::kYolox ? "letterbox-yolox" : "letterbox",
                        letterbox_size_);
  if (width != height) {
    return FailedPreconditionError(fmt::format(
        "dataset '{}' holds {} samples; the model takes non-square {}x{} inputs, which datasets "
        "cannot hold: read the images from files instead",
        dataset_, have, width, height));
  }
  return FailedPreconditionError(fmt::format(
      "dataset '{}' holds {} samples; the model needs {}:{}: preload it with --as {}:{}", dataset_,
      have, yolox ? "letterbox-yolox" : "letterbox", width, yolox ? "letterbox-yolox" : "letterbox",
      width));
}

size_t DatasetReader::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? samples_->size() : it->second;
}

Result<Sample> DatasetReader::Get(size_t i) const {
  if (i >= samples_->size()) {
    return InvalidArgumentError(fmt::format("dataset '{}' has {} samples, asked for sample {}",
                                            dataset_, samples_->size(), i));
  }
  const SampleInfo& info = (*samples_)[i];
  Sample sample;
  sample.info_ = std::shared_ptr<const SampleInfo>(samples_, &info);
  Result<ObjectView> view = client_->Get(info.id);
  if (view.ok()) {
    if (view->data().size() != info.size_bytes()) {
      return CorruptDataError(fmt::format("store object of sample {} has {} bytes, expected {}",
                                          info.name, view->data().size(), info.size_bytes()));
    }
    sample.view_ = std::move(*view);
    return sample;
  }
  if (view.status().code() != StatusCode::kNotFound) return view.status();

  // Miss (evicted): decode again and, with a read-write client, put it back for everyone else.
  SampleInfo decoded_info = info;
  if (client_->access() == store::StoreAccess::kReadWrite) {
    Letterboxer letterboxer;
    bool already = false;
    Result<ObjectView> stored = PreloadOne(*client_, info.path, layout_, letterbox_size_, style_,
                                           letterboxer, &decoded_info, &already);
    if (stored.ok() && stored->data().size() == info.size_bytes()) {
      sample.view_ = std::move(*stored);
      return sample;
    }
    // The store cannot keep it (full of referenced objects, or it evicts it at once): serve a
    // copy; other errors are errors.
    if (!stored.ok() && stored.status().code() != StatusCode::kResourceExhausted &&
        stored.status().code() != StatusCode::kDeadlineExceeded) {
      return stored.status();
    }
  }
  ZD_ASSIGN_OR_RETURN(sample.owned_,
                      DecodeSample(info.path, layout_, letterbox_size_, style_, &decoded_info));
  return sample;
}

}  // namespace zerodet::dataset
