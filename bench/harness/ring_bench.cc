#include "ring_bench.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "forked_child.h"
#include "latency_summary.h"
#include "process_memory.h"
#include "ring_handoff.h"
#include "zerodet/codec/decode.h"
#include "zerodet/core/clock.h"
#include "zerodet/core/file.h"
#include "zerodet/core/image.h"
#include "zerodet/infer/detector.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::bench {
namespace {

namespace fs = std::filesystem;

// A directory only this user can enter, on tmpfs, removed with its files on destruction.
// /dev/shm is shared by every user: a fixed file name there could be taken (or be a link
// planted) by someone else.
class ScratchDir {
 public:
  static Result<ScratchDir> Create() {
    std::string pattern = "/dev/shm/zerodet-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      return PathError(pattern, "cannot create a scratch directory", errno);
    }
    return ScratchDir(pattern);
  }
  ScratchDir(ScratchDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  ScratchDir& operator=(ScratchDir&&) = delete;
  ScratchDir(const ScratchDir&) = delete;
  ~ScratchDir() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path File(const std::string& name) const { return path_ / name; }

 private:
  explicit ScratchDir(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

// A width x height frame tiled with the photo (real image content for the JPEG path).
Image TilePhoto(const Image& photo, int width, int height) {
  Image frame(width, height, PixelFormat::kRGB8);
  const size_t photo_row = static_cast<size_t>(photo.width()) * 3;
  const size_t frame_row = static_cast<size_t>(width) * 3;
  for (int y = 0; y < height; ++y) {
    const uint8_t* src = photo.data() + static_cast<size_t>(y % photo.height()) * photo.stride();
    uint8_t* dst = frame.data() + static_cast<size_t>(y) * frame.stride();
    for (size_t x = 0; x < frame_row; x += photo_row) {
      std::memcpy(dst + x, src, std::min(photo_row, frame_row - x));
    }
  }
  return frame;
}

// In a benchmark child: the detector, or null after logging why (the parent only learns that
// the child failed).
std::unique_ptr<Detector> LoadDetector(const std::string& model, int threads) {
  DetectorOptions options;
  options.backend.intra_op_threads = threads;
  auto created = Detector::Create(model, options);
  if (!created.ok()) {
    spdlog::error("zerodet bench ring: {}", created.status().ToString());
    return nullptr;
  }
  return std::move(created).value();
}

// The common mistake (no such model file) as an error of this process, before any child loads
// the model. The model is not loaded here: ONNX Runtime's threads must not exist at fork().
Status CheckModelFile(const std::string& model) {
  return OpenRegularFile(model).status().WithContext("model");
}

// 1080p frame -> detections in the reader process: read + decode a JPEG file on tmpfs and
// detect (the file-based path), against detecting straight on the ring slot. Same model, same
// frame, same process layout.
Result<nlohmann::json> RunEndToEnd(const Image& frame, const RingBenchOptions& options,
                                   const std::string& tag, const ScratchDir& scratch) {
  ZD_RETURN_IF_ERROR(CheckModelFile(options.model));
  HandoffSettings settings;
  settings.iterations = options.e2e_iterations;
  settings.gap = std::chrono::microseconds(1000);
  const std::string model = options.model;
  const int threads = options.threads;
  settings.make_consumer = [model, threads]() -> FrameConsumer {
    std::shared_ptr<Detector> detector = LoadDetector(model, threads);
    if (!detector) return nullptr;
    return [detector](const ImageView& image) { return detector->Detect(image).ok(); };
  };
  ZD_ASSIGN_OR_RETURN(auto file, MeasureTmpfsJpegHandoff(frame, settings, scratch.File("e2e.jpg")));
  ZD_ASSIGN_OR_RETURN(auto ring, MeasureRingHandoff(frame, settings, "bench-" + tag + "-e2e"));
  const LatencySummary file_p = SummarizeNs(file);
  const LatencySummary ring_p = SummarizeNs(ring);
  nlohmann::json out;
  out["model"] = options.model;
  out["frame"] = std::to_string(frame.width()) + "x" + std::to_string(frame.height());
  out["intra_op_threads"] = options.threads;
  out["file_tmpfs_jpeg_ms"] = {
      {"p50", file_p.p50_us / 1000}, {"p99", file_p.p99_us / 1000}, {"samples", file_p.samples}};
  out["ring_ms"] = {
      {"p50", ring_p.p50_us / 1000}, {"p99", ring_p.p99_us / 1000}, {"samples", ring_p.samples}};
  out["speedup_p50"] = ring_p.p50_us > 0 ? file_p.p50_us / ring_p.p50_us : 0;
  return out;
}

// What a memory-benchmark worker reports when it is done.
struct WorkerReport {
  int ok = 0;
  ProcessMemory memory;
};

// Runs `body(worker)` in `workers` children while `feed` runs here; each child reports its
// memory. Returns the workers' summed peak RSS and PSS.
Result<nlohmann::json> RunWorkers(int workers, const std::function<bool(int)>& body,
                                  const std::function<Status()>& feed) {
  ZD_ASSIGN_OR_RETURN(BenchPipe reports, BenchPipe::Open());
  std::vector<pid_t> pids;
  Status forked;
  for (int w = 0; w < workers && forked.ok(); ++w) {
    auto pid = ForkTiedChild([&, w] {
      reports.read.Reset();
      WorkerReport report;
      report.ok = body(w) ? 1 : 0;
      auto memory = ReadProcessMemory();
      if (memory.ok()) {
        report.memory = *memory;
      } else {
        report.ok = 0;
      }
      WriteAll(reports.write.get(), &report, sizeof(report));
      return report.ok ? 0 : 1;
    });
    if (pid.ok()) {
      pids.push_back(*pid);
    } else {
      forked = pid.status();
    }
  }
  reports.write.Reset();
  if (!forked.ok()) {
    for (pid_t pid : pids) ::kill(pid, SIGKILL);
    for (pid_t pid : pids) WaitForChild(pid);
    return forked;
  }
  const Status fed = feed();
  double rss = 0, pss = 0;
  bool all_ok = true;
  for (size_t w = 0; w < pids.size(); ++w) {
    WorkerReport report;
    if (!ReadAll(reports.read.get(), &report, sizeof(report)) || report.ok == 0) {
      all_ok = false;
      continue;
    }
    rss += report.memory.peak_rss_mib;
    pss += report.memory.pss_mib;
  }
  for (pid_t pid : pids) all_ok = WaitForChild(pid) == 0 && all_ok;
  ZD_RETURN_IF_ERROR(fed);
  if (!all_ok) return InternalError("a memory benchmark worker failed");
  return nlohmann::json{{"workers_peak_rss_mib", rss}, {"workers_pss_mib", pss}};
}

// N detector workers on 2N 1080p frames (a JPEG on tmpfs stands for the camera stream):
//   decode_once:  this process decodes each frame once into a ring; the workers share it as a
//                 work group and detect on the slots.
//   each_decodes: every worker reads and decodes each frame it handles itself, then detects.
Result<nlohmann::json> RunMemory(const Image& frame, const RingBenchOptions& options,
                                 const std::string& tag, const ScratchDir& scratch) {
  ZD_RETURN_IF_ERROR(CheckModelFile(options.model));
  const int workers = options.memory_workers;
  const int frames = workers * 2;
  const fs::path jpeg_path = scratch.File("memory.jpg");
  ZD_RETURN_IF_ERROR(WriteJpeg(frame, jpeg_path));

  // Decode once, into the ring.
  const std::string ring_name = "bench-" + tag + "-mem";
  ring::RingOptions ring_options;
  ring_options.name = ring_name;
  ring_options.slot_count = workers + 2;
  ring_options.slot_bytes = frame.size_bytes();
  ring_options.policy = ring::OverflowPolicy::kDropNewest;
  ZD_ASSIGN_OR_RETURN(auto writer, ring::RingWriter::Open(ring_options));
  auto ring_worker = [&](int) {
    auto detector = LoadDetector(options.model, 1);
    ring::ReaderOptions reader_options;
    reader_options.ring_name = ring_name;
    reader_options.group = "workers";
    auto reader = ring::RingReader::Attach(reader_options);
    if (!detector || !reader.ok()) return false;
    for (;;) {
      auto lease = (*reader)->Read(std::chrono::milliseconds(60000));
      if (!lease.ok()) return lease.status().code() == StatusCode::kUnavailable;
      if (!detector->Detect(lease->image()).ok()) return false;
    }
  };
  auto feed_ring = [&]() -> Status {
    // Bounded waits: a worker that failed (e.g. could not load the model) never attaches.
    const Deadline deadline = Deadline::After(std::chrono::minutes(2));
    while (writer->Stats().readers_attached < workers) {
      if (deadline.expired())
        return DeadlineExceededError("memory benchmark workers did not start");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (int i = 0; i < frames; ++i) {
      ZD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileBytes(jpeg_path));
      ZD_ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImage(bytes, jpeg_path.string()));
      // kDropNewest: when every slot waits for a worker, try again shortly (no frame is lost,
      // so both variants detect the same frames).
      for (;;) {
        auto written = writer->WriteImage(decoded.image.view(), MonotonicNowNs());
        if (written.ok()) break;
        if (written.status().code() != StatusCode::kResourceExhausted) return written.status();
        if (deadline.expired()) {
          return DeadlineExceededError("memory benchmark workers stopped reading");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    return Status::Ok();
  };
  auto ring_ingest = [&]() -> Status {
    const Status status = feed_ring();
    writer.reset();  // clean close, also after an error: workers finish and exit
    return status;
  };
  ZD_ASSIGN_OR_RETURN(nlohmann::json once, RunWorkers(workers, ring_worker, ring_ingest));
  once["ring_mib"] = static_cast<double>(ring_options.slot_bytes) *
                     static_cast<double>(ring_options.slot_count) / (1 << 20);

  // Every worker decodes every frame it handles itself.
  auto decoding_worker = [&](int) {
    auto detector = LoadDetector(options.model, 1);
    if (!detector) return false;
    for (int i = 0; i < frames / workers; ++i) {
      auto bytes = ReadFileBytes(jpeg_path);
      if (!bytes.ok()) return false;
      auto decoded = DecodeImage(*bytes, jpeg_path.string());
      if (!decoded.ok() || !detector->Detect(decoded->image.view()).ok()) return false;
    }
    return true;
  };
  ZD_ASSIGN_OR_RETURN(nlohmann::json each,
                      RunWorkers(workers, decoding_worker, [] { return Status::Ok(); }));
  nlohmann::json out;
  out["workers"] = workers;
  out["frames"] = frames;
  out["frame"] = std::to_string(frame.width()) + "x" + std::to_string(frame.height());
  out["decode_once"] = std::move(once);
  out["each_worker_decodes"] = std::move(each);
  return out;
}

}  // namespace

Result<nlohmann::json> RunRingBench(const RingBenchOptions& options) {
  ZD_ASSIGN_OR_RETURN(DecodedImage photo, DecodeImageFile(options.image));
  ZD_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Create());
  const std::string tag = std::to_string(::getpid());
  struct Size {
    const char* name;
    int width;
    int height;
  };
  const Size sizes[] = {
      {"640x480", 640, 480}, {"1920x1080", 1920, 1080}, {"3840x2160", 3840, 2160}};
  nlohmann::json out;
  out["image"] = options.image;
  out["gap_us_between_frames"] = 200;
  nlohmann::json results = nlohmann::json::array();
  for (const Size& size : sizes) {
    Image frame = TilePhoto(photo.image, size.width, size.height);
    nlohmann::json entry;
    entry["frame"] = size.name;
    entry["frame_bytes"] = frame.size_bytes();
    HandoffSettings settings;
    settings.iterations = options.ring_iterations;
    ZD_ASSIGN_OR_RETURN(auto ring_futex,
                        MeasureRingHandoff(frame, settings, "bench-" + tag + "-" + size.name));
    entry["ring_futex"] = ToJson(SummarizeNs(ring_futex));
    if (options.spin_us > 0) {
      settings.spin = std::chrono::microseconds(options.spin_us);
      ZD_ASSIGN_OR_RETURN(
          auto ring_spin,
          MeasureRingHandoff(frame, settings, "bench-" + tag + "-spin-" + size.name));
      entry["ring_spin"] = ToJson(SummarizeNs(ring_spin));
      settings.spin = std::chrono::microseconds(0);
    }
    settings.iterations = options.socket_iterations;
    ZD_ASSIGN_OR_RETURN(auto socket, MeasureUnixSocketHandoff(frame, settings));
    entry["unix_socket"] = ToJson(SummarizeNs(socket));
    settings.iterations = options.jpeg_iterations;
    ZD_ASSIGN_OR_RETURN(auto jpeg,
                        MeasureTmpfsJpegHandoff(frame, settings, scratch.File("handoff.jpg")));
    entry["tmpfs_jpeg"] = ToJson(SummarizeNs(jpeg));
    results.push_back(std::move(entry));
  }
  out["handoff"] = std::move(results);
  if (options.e2e_iterations > 0) {
    const Image frame = TilePhoto(photo.image, 1920, 1080);
    ZD_ASSIGN_OR_RETURN(out["end_to_end"], RunEndToEnd(frame, options, tag, scratch));
  }
  if (options.memory_workers > 0) {
    const Image frame = TilePhoto(photo.image, 1920, 1080);
    ZD_ASSIGN_OR_RETURN(out["memory"], RunMemory(frame, options, tag, scratch));
  }
  return out;
}

}  // namespace zerodet::bench
