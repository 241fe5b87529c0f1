// `zerodet bench ring`: writer -> reader handoff latency of a decoded RGB frame between two
// processes, through a frame ring, through a Unix socket (the frame copied through the kernel)
// and through a JPEG file on tmpfs (encode, write, read, decode: the traditional path), for
// 640x480, 1920x1080 and 3840x2160 frames. One run; prints one JSON object.
//
// What each handoff measures, from the moment the writer has the decoded frame to the moment
// the reader can use its pixels:
//   ring:        Publish() -> Read() returns the lease (the producer decodes into the slot, so
//                the pixels are already in shared memory; the reader waits on the futex, or
//                spins first with --spin-us)
//   unix_socket: write() of the frame -> the reader has all bytes in its own buffer
//   tmpfs_jpeg:  JPEG encode + write to /dev/shm -> the reader has read and decoded the file
// The writer waits for the reader's acknowledgement and a short gap before the next frame, so
// latencies do not include queueing behind earlier frames. The frame is a real photo
// tiled to each size (JPEG cost depends on content).
//
// Then end to end (--e2e-iterations): a 1080p frame to yolov8n detections in the reader
// process, through the JPEG file (read + decode + detect) and through the ring (detect on the
// slot), and their ratio. Last (--memory-workers), the memory of N yolov8n workers when
// frames are decoded once into a ring vs when every worker decodes for itself.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "command_registry.h"
#include "latency_summary.h"
#include "zerodet/codec/decode.h"
#include "zerodet/core/file.h"
#include "zerodet/core/image.h"
#include "zerodet/infer/detector.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::cli {
namespace {

using bench::LatencySummary;
using bench::SummarizeNs;
using bench::ToJson;

int64_t NowNs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

bool WriteAll(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t size) {
  auto* p = static_cast<uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Two pipes between the benchmark writer (parent) and its reader (forked child).
struct Channel {
  int to_child[2] = {-1, -1};
  int to_parent[2] = {-1, -1};
  bool Open() { return ::pipe(to_child) == 0 && ::pipe(to_parent) == 0; }
  void Close() {
    for (int* fds : {to_child, to_parent}) {
      for (int i = 0; i < 2; ++i) {
        if (fds[i] >= 0) ::close(fds[i]);
        fds[i] = -1;
      }
    }
  }
};

// Runs `reader` in a forked child that sends back its latencies (count, then values) on the
// channel; `writer` runs here. Returns the latencies or an error.
template <typename Writer, typename Reader>
Result<std::vector<int64_t>> RunPair(Channel& channel, Writer&& writer, Reader&& reader) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork", errno);
  if (pid == 0) {
    ::close(channel.to_child[1]);
    ::close(channel.to_parent[0]);
    std::vector<int64_t> latencies;
    const bool ok = reader(latencies);
    const uint64_t count = ok ? latencies.size() : UINT64_MAX;
    WriteAll(channel.to_parent[1], &count, sizeof(count));
    if (ok) WriteAll(channel.to_parent[1], latencies.data(), latencies.size() * sizeof(int64_t));
    ::_exit(ok ? 0 : 1);
  }
  ::close(channel.to_child[0]);
  channel.to_child[0] = -1;
  ::close(channel.to_parent[1]);
  channel.to_parent[1] = -1;
  Status status = writer();
  ::close(channel.to_child[1]);  // tells a waiting reader that the run is over
  channel.to_child[1] = -1;
  std::vector<int64_t> latencies;
  uint64_t count = 0;
  if (!ReadAll(channel.to_parent[0], &count, sizeof(count)) || count == UINT64_MAX) {
    if (status.ok()) status = InternalError("benchmark reader process failed");
  } else {
    latencies.resize(count);
    if (!ReadAll(channel.to_parent[0], latencies.data(), count * sizeof(int64_t)) && status.ok()) {
      status = InternalError("benchmark reader process sent a short report");
    }
  }
  int wait_status = 0;
  ::waitpid(pid, &wait_status, 0);
  channel.Close();
  if (!status.ok()) return status;
  return latencies;
}

// The child acknowledges each frame with one byte; the writer waits for it, then pauses.
bool AwaitAck(int fd) {
  char ack = 0;
  return ReadAll(fd, &ack, 1);
}
void SendAck(int fd) {
  const char ack = 1;
  WriteAll(fd, &ack, 1);
}

// Work the reader does on each frame it received (e.g. run a detector), inside the timing.
using Consumer = std::function<bool(const ImageView&)>;

struct BenchSettings {
  int iterations = 0;
  std::chrono::microseconds gap{200};
  std::chrono::microseconds spin{0};
  // Called once in the reader process before the first frame (not timed); null: no work.
  std::function<Consumer()> make_consumer;
};

// The reader's per-frame work; false when make_consumer was given but failed.
bool MakeConsumer(const BenchSettings& settings, Consumer& consumer) {
  if (!settings.make_consumer) return true;
  consumer = settings.make_consumer();
  return static_cast<bool>(consumer);
}

Result<std::vector<int64_t>> BenchRing(const Image& frame, const BenchSettings& settings,
                                       const std::string& ring_name) {
  ring::RingOptions options;
  options.name = ring_name;
  options.slot_count = 4;
  options.slot_bytes = frame.size_bytes();
  ZD_ASSIGN_OR_RETURN(auto writer, ring::RingWriter::Open(options));
  Channel channel;
  if (!channel.Open()) return ErrnoError("pipe", errno);
  auto reader = [&](std::vector<int64_t>& latencies) {
    ring::ReaderOptions reader_options;
    reader_options.ring_name = ring_name;
    reader_options.group = "bench";
    reader_options.spin = settings.spin;
    auto attached = ring::RingReader::Attach(reader_options);
    Consumer consume;
    if (!attached.ok() || !MakeConsumer(settings, consume)) return false;
    SendAck(channel.to_parent[1]);
    for (int i = 0; i < settings.iterations; ++i) {
      auto lease = (*attached)->Read(std::chrono::milliseconds(5000));
      if (!lease.ok()) return false;
      if (consume && !consume(lease->image())) return false;
      const int64_t got = NowNs();
      latencies.push_back(got - lease->info().timestamp_ns);
      lease->Release();
      SendAck(channel.to_parent[1]);
    }
    return true;
  };
  auto write = [&]() -> Status {
    if (!AwaitAck(channel.to_parent[0])) return InternalError("ring reader did not attach");
    // The producer decodes into each slot once; afterwards the slots already hold pixels, as
    // they would after a decode into shared memory, and only the handoff is timed.
    int filled = 0;
    for (int i = 0; i < settings.iterations; ++i) {
      std::this_thread::sleep_for(settings.gap);
      ZD_ASSIGN_OR_RETURN(std::span<uint8_t> slot, writer->BeginFrame());
      if (filled < options.slot_count) {
        std::memcpy(slot.data(), frame.data(), frame.size_bytes());
        ++filled;
      }
      ring::FrameInfo info;
      info.width = frame.width();
      info.height = frame.height();
      info.stride = static_cast<uint32_t>(frame.stride());
      info.pixel_format = frame.format();
      info.timestamp_ns = NowNs();
      ZD_RETURN_IF_ERROR(writer->Publish(info).status());
      if (!AwaitAck(channel.to_parent[0])) return InternalError("ring reader stopped");
    }
    return Status::Ok();
  };
  return RunPair(channel, write, reader);
}

Result<std::vector<int64_t>> BenchUnixSocket(const Image& frame, const BenchSettings& settings) {
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    return ErrnoError("socketpair", errno);
  }
  const int buffer = 4 << 20;  // as large as the default limits allow, to favour the socket
  ::setsockopt(sockets[0], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  ::setsockopt(sockets[1], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  Channel channel;
  if (!channel.Open()) return ErrnoError("pipe", errno);
  auto reader = [&](std::vector<int64_t>& latencies) {
    ::close(sockets[0]);
    Image received(frame.width(), frame.height(), frame.format());
    std::memset(received.data(), 0, received.size_bytes());
    SendAck(channel.to_parent[1]);
    for (int i = 0; i < settings.iterations; ++i) {
      int64_t sent_at = 0;
      if (!ReadAll(sockets[1], &sent_at, sizeof(sent_at))) return false;
      if (!ReadAll(sockets[1], received.data(), received.size_bytes())) return false;
      latencies.push_back(NowNs() - sent_at);
      SendAck(channel.to_parent[1]);
    }
    return true;
  };
  auto write = [&]() -> Status {
    if (!AwaitAck(channel.to_parent[0])) return InternalError("socket reader did not start");
    for (int i = 0; i < settings.iterations; ++i) {
      std::this_thread::sleep_for(settings.gap);
      const int64_t now = NowNs();
      if (!WriteAll(sockets[0], &now, sizeof(now)) ||
          !WriteAll(sockets[0], frame.data(), frame.size_bytes())) {
        return ErrnoError("write to Unix socket", errno);
      }
      if (!AwaitAck(channel.to_parent[0])) return InternalError("socket reader stopped");
    }
    return Status::Ok();
  };
  auto result = RunPair(channel, write, reader);
  ::close(sockets[0]);
  ::close(sockets[1]);
  return result;
}

Result<std::vector<int64_t>> BenchTmpfsJpeg(const Image& frame, const BenchSettings& settings,
                                            const std::string& path) {
  Channel channel;
  if (!channel.Open()) return ErrnoError("pipe", errno);
  auto reader = [&](std::vector<int64_t>& latencies) {
    Consumer consume;
    if (!MakeConsumer(settings, consume)) return false;
    SendAck(channel.to_parent[1]);
    for (int i = 0; i < settings.iterations; ++i) {
      int64_t sent_at = 0;
      if (!ReadAll(channel.to_child[0], &sent_at, sizeof(sent_at))) return false;
      auto bytes = ReadFileBytes(path);
      if (!bytes.ok()) return false;
      auto decoded = DecodeImage(*bytes, path);
      if (!decoded.ok() || decoded->image.width() != frame.width()) return false;
      if (consume && !consume(decoded->image.view())) return false;
      latencies.push_back(NowNs() - sent_at);
      SendAck(channel.to_parent[1]);
    }
    return true;
  };
  auto write = [&]() -> Status {
    if (!AwaitAck(channel.to_parent[0])) return InternalError("JPEG reader did not start");
    tjhandle tj = tjInitCompress();
    if (tj == nullptr) return InternalError("tjInitCompress failed");
    std::unique_ptr<void, int (*)(tjhandle)> tj_owner(tj, tjDestroy);
    for (int i = 0; i < settings.iterations; ++i) {
      std::this_thread::sleep_for(settings.gap);
      const int64_t start = NowNs();
      unsigned char* jpeg = nullptr;
      unsigned long jpeg_size = 0;
      if (tjCompress2(tj, frame.data(), frame.width(), static_cast<int>(frame.stride()),
                      frame.height(), TJPF_RGB, &jpeg, &jpeg_size, TJSAMP_420, 90, 0) != 0) {
        return InternalError(std::string("JPEG encode: ") + tjGetErrorStr2(tj));
      }
      std::unique_ptr<unsigned char, void (*)(unsigned char*)> jpeg_owner(jpeg, tjFree);
      const std::string tmp = path + ".part";
      const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) return ErrnoError("create " + tmp, errno);
      const bool written = WriteAll(fd, jpeg, jpeg_size);
      ::close(fd);
      // Renamed into place so the reader never sees a half-written file.
      if (!written || ::rename(tmp.c_str(), path.c_str()) != 0) {
        return ErrnoError("write " + path, errno);
      }
      if (!WriteAll(channel.to_child[1], &start, sizeof(start))) {
        return InternalError("JPEG reader stopped");
      }
      if (!AwaitAck(channel.to_parent[0])) return InternalError("JPEG reader stopped");
    }
    return Status::Ok();
  };
  auto result = RunPair(channel, write, reader);
  ::unlink(path.c_str());
  return result;
}

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

struct BenchArgs {
  std::string image = "../shared/images/bus.jpg";
  std::string model = "../shared/models/yolov8n.onnx";
  int ring_iterations = 2000;
  int socket_iterations = 300;
  int jpeg_iterations = 40;
  int e2e_iterations = 10;
  int spin_us = 1000;
  int threads = 2;
  int memory_workers = 4;
};

// 1080p frame -> detections in the reader process: read + decode a JPEG file on tmpfs and
// detect (the file-based path), against detecting straight on the ring slot. Same model, same
// frame, same process layout.
Status RunEndToEnd(const Image& frame, const BenchArgs& args, const std::string& tag,
                   nlohmann::json& out) {
  BenchSettings settings;
  settings.iterations = args.e2e_iterations;
  settings.gap = std::chrono::microseconds(1000);
  const std::string model = args.model;
  const int threads = args.threads;
  settings.make_consumer = [model, threads]() -> Consumer {
    DetectorOptions options;
    options.backend.intra_op_threads = threads;
    auto created = Detector::Create(model, options);
    if (!created.ok()) {
      std::fprintf(stderr, "zerodet bench ring: %s\n", created.status().ToString().c_str());
      return nullptr;
    }
    std::shared_ptr<Detector> detector = std::move(created).value();
    return [detector](const ImageView& image) { return detector->Detect(image).ok(); };
  };
  ZD_ASSIGN_OR_RETURN(
      auto file, BenchTmpfsJpeg(frame, settings, "/dev/shm/zerodet-bench-e2e-" + tag + ".jpg"));
  ZD_ASSIGN_OR_RETURN(auto ring, BenchRing(frame, settings, "bench-" + tag + "-e2e"));
  const LatencySummary file_p = SummarizeNs(std::move(file));
  const LatencySummary ring_p = SummarizeNs(std::move(ring));
  out["model"] = args.model;
  out["frame"] = std::to_string(frame.width()) + "x" + std::to_string(frame.height());
  out["intra_op_threads"] = args.threads;
  out["file_tmpfs_jpeg_ms"] = {
      {"p50", file_p.p50_us / 1000}, {"p99", file_p.p99_us / 1000}, {"samples", file_p.samples}};
  out["ring_ms"] = {
      {"p50", ring_p.p50_us / 1000}, {"p99", ring_p.p99_us / 1000}, {"samples", ring_p.samples}};
  out["speedup_p50"] = ring_p.p50_us > 0 ? file_p.p50_us / ring_p.p50_us : 0;
  return Status::Ok();
}

// Memory of one process: peak resident set (VmHWM) and proportional set size (Pss: shared
// pages, such as ring slots, divided among the processes that map them), in MiB.
struct ProcessMemory {
  double peak_rss_mib = 0;
  double pss_mib = 0;
};

ProcessMemory ReadOwnMemory() {
  ProcessMemory m;
  auto field_kib = [](const char* path, const char* key) -> double {
    FILE* f = std::fopen(path, "r");
    if (f == nullptr) return 0;
    char line[256];
    double value = 0;
    const size_t key_len = std::strlen(key);
    while (std::fgets(line, sizeof(line), f) != nullptr) {
      if (std::strncmp(line, key, key_len) == 0) {
        value = std::strtod(line + key_len, nullptr);
        break;
      }
    }
    std::fclose(f);
    return value;
  };
  m.peak_rss_mib = field_kib("/proc/self/status", "VmHWM:") / 1024.0;
  m.pss_mib = field_kib("/proc/self/smaps_rollup", "Pss:") / 1024.0;
  return m;
}

// N detector workers on `frames` 1080p frames (a JPEG on tmpfs stands for the camera stream):
//   decode_once: this process decodes each frame once into a ring; the workers share it as a
//                work group and detect on the slots.
//   each_decodes: every worker reads and decodes each frame itself, then detects.
// Reports the workers' summed peak RSS and PSS.
Status RunMemory(const Image& frame, const BenchArgs& args, const std::string& tag,
                 nlohmann::json& out) {
  const int workers = args.memory_workers;
  const int frames = workers * 2;
  const std::string jpeg_path = "/dev/shm/zerodet-bench-mem-" + tag + ".jpg";
  {
    tjhandle tj = tjInitCompress();
    unsigned char* jpeg = nullptr;
    unsigned long jpeg_size = 0;
    const int rc = tjCompress2(tj, frame.data(), frame.width(), static_cast<int>(frame.stride()),
                               frame.height(), TJPF_RGB, &jpeg, &jpeg_size, TJSAMP_420, 90, 0);
    tjDestroy(tj);
    if (rc != 0) return InternalError("JPEG encode failed");
    const int fd = ::open(jpeg_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const bool ok = fd >= 0 && WriteAll(fd, jpeg, jpeg_size);
    if (fd >= 0) ::close(fd);
    tjFree(jpeg);
    if (!ok) return ErrnoError("write " + jpeg_path, errno);
  }
  auto load = [&]() -> std::unique_ptr<Detector> {
    DetectorOptions options;
    options.backend.intra_op_threads = 1;
    auto created = Detector::Create(args.model, options);
    return created.ok() ? std::move(created).value() : nullptr;
  };
  // Runs `body` in `workers` children; each reports its memory on a shared pipe.
  auto run_workers = [&](const std::function<bool(int)>& body,
                         const std::function<Status()>& parent) -> Result<nlohmann::json> {
    int fds[2];
    if (::pipe(fds) != 0) return ErrnoError("pipe", errno);
    std::fflush(nullptr);
    std::vector<pid_t> pids;
    for (int w = 0; w < workers; ++w) {
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::close(fds[0]);
        const bool ok = body(w);
        const ProcessMemory m = ReadOwnMemory();
        WriteAll(fds[1], &m, sizeof(m));
        ::_exit(ok ? 0 : 1);
      }
      pids.push_back(pid);
    }
    ::close(fds[1]);
    const Status parent_status = parent();
    double rss = 0, pss = 0;
    for (int w = 0; w < workers; ++w) {
      ProcessMemory m;
      if (ReadAll(fds[0], &m, sizeof(m))) {
        rss += m.peak_rss_mib;
        pss += m.pss_mib;
      }
    }
    ::close(fds[0]);
    bool all_ok = true;
    for (pid_t pid : pids) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      all_ok = all_ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    ZD_RETURN_IF_ERROR(parent_status);
    if (!all_ok) return InternalError("a memory benchmark worker failed");
    return nlohmann::json{{"workers_peak_rss_mib", rss}, {"workers_pss_mib", pss}};
  };

  // Decode once, into the ring.
  const std::string ring_name = "bench-" + tag + "-mem";
  ring::RingOptions options;
  options.name = ring_name;
  options.slot_count = workers + 2;
  options.slot_bytes = frame.size_bytes();
  options.policy = ring::OverflowPolicy::kDropNewest;
  ZD_ASSIGN_OR_RETURN(auto writer, ring::RingWriter::Open(options));
  auto ring_worker = [&](int) {
    auto detector = load();
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
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
    auto timed_out = [&] { return std::chrono::steady_clock::now() > deadline; };
    while (writer->Stats().readers_attached < workers) {
      if (timed_out()) return DeadlineExceededError("memory benchmark workers did not start");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (int i = 0; i < frames; ++i) {
      ZD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileBytes(jpeg_path));
      ZD_ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImage(bytes, jpeg_path));
      // kDropNewest: when every slot waits for a worker, try again shortly (no frame is lost,
      // so both variants detect the same frames).
      for (;;) {
        auto written = writer->WriteImage(decoded.image.view(), NowNs());
        if (written.ok()) break;
        if (written.status().code() != StatusCode::kResourceExhausted) return written.status();
        if (timed_out()) return DeadlineExceededError("memory benchmark workers stopped reading");
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
  ZD_ASSIGN_OR_RETURN(nlohmann::json once, run_workers(ring_worker, ring_ingest));
  once["ring_mib"] = static_cast<double>(options.slot_bytes * options.slot_count) / (1 << 20);

  // Every worker decodes every frame it handles itself.
  auto decoding_worker = [&](int) {
    auto detector = load();
    if (!detector) return false;
    for (int i = 0; i < frames / workers; ++i) {
      auto bytes = ReadFileBytes(jpeg_path);
      if (!bytes.ok()) return false;
      auto decoded = DecodeImage(*bytes, jpeg_path);
      if (!decoded.ok() || !detector->Detect(decoded->image.view()).ok()) return false;
    }
    return true;
  };
  ZD_ASSIGN_OR_RETURN(nlohmann::json each,
                      run_workers(decoding_worker, [] { return Status::Ok(); }));
  ::unlink(jpeg_path.c_str());
  out["workers"] = workers;
  out["frames"] = frames;
  out["frame"] = std::to_string(frame.width()) + "x" + std::to_string(frame.height());
  out["decode_once"] = std::move(once);
  out["each_worker_decodes"] = std::move(each);
  return Status::Ok();
}

Status RunBench(const BenchArgs& args, nlohmann::json& out) {
  ZD_ASSIGN_OR_RETURN(DecodedImage photo, DecodeImageFile(args.image));
  const std::string tag = std::to_string(::getpid());
  struct Size {
    const char* name;
    int width;
    int height;
  };
  const Size sizes[] = {
      {"640x480", 640, 480}, {"1920x1080", 1920, 1080}, {"3840x2160", 3840, 2160}};
  out["image"] = args.image;
  out["gap_us_between_frames"] = 200;
  nlohmann::json results = nlohmann::json::array();
  for (const Size& size : sizes) {
    Image frame = TilePhoto(photo.image, size.width, size.height);
    nlohmann::json entry;
    entry["frame"] = size.name;
    entry["frame_bytes"] = frame.size_bytes();
    BenchSettings settings;
    settings.iterations = args.ring_iterations;
    ZD_ASSIGN_OR_RETURN(auto ring_futex,
                        BenchRing(frame, settings, "bench-" + tag + "-" + size.name));
    entry["ring_futex"] = ToJson(SummarizeNs(std::move(ring_futex)));
    if (args.spin_us > 0) {
      settings.spin = std::chrono::microseconds(args.spin_us);
      ZD_ASSIGN_OR_RETURN(auto ring_spin,
                          BenchRing(frame, settings, "bench-" + tag + "-spin-" + size.name));
      entry["ring_spin"] = ToJson(SummarizeNs(std::move(ring_spin)));
      settings.spin = std::chrono::microseconds(0);
    }
    settings.iterations = args.socket_iterations;
    ZD_ASSIGN_OR_RETURN(auto socket, BenchUnixSocket(frame, settings));
    entry["unix_socket"] = ToJson(SummarizeNs(std::move(socket)));
    settings.iterations = args.jpeg_iterations;
    ZD_ASSIGN_OR_RETURN(auto jpeg,
                        BenchTmpfsJpeg(frame, settings, "/dev/shm/zerodet-bench-" + tag + ".jpg"));
    entry["tmpfs_jpeg"] = ToJson(SummarizeNs(std::move(jpeg)));
    results.push_back(std::move(entry));
  }
  out["handoff"] = std::move(results);
  if (args.e2e_iterations > 0) {
    Image frame = TilePhoto(photo.image, 1920, 1080);
    ZD_RETURN_IF_ERROR(RunEndToEnd(frame, args, tag, out["end_to_end"]));
  }
  if (args.memory_workers > 0) {
    Image frame = TilePhoto(photo.image, 1920, 1080);
    ZD_RETURN_IF_ERROR(RunMemory(frame, args, tag, out["memory"]));
  }
  return Status::Ok();
}

const CommandRegistrar kRegistrar("bench-ring", [](CLI::App& app) {
  CLI::App* cmd = BenchGroup(app)->add_subcommand(
      "ring", "Frame handoff latency between processes: ring vs Unix socket vs JPEG on tmpfs");
  auto args = std::make_shared<BenchArgs>();
  cmd->add_option("--image", args->image, "Photo tiled to each frame size")
      ->check(CLI::ExistingFile);
  cmd->add_option("--model", args->model, "Model for the end-to-end 1080p comparison")
      ->check(CLI::ExistingFile);
  cmd->add_option("--ring-iterations", args->ring_iterations, "Frames per size through the ring")
      ->check(CLI::Range(10, 1000000));
  cmd->add_option("--socket-iterations", args->socket_iterations,
                  "Frames per size through the Unix socket")
      ->check(CLI::Range(10, 1000000));
  cmd->add_option("--jpeg-iterations", args->jpeg_iterations,
                  "Frames per size through JPEG files on tmpfs")
      ->check(CLI::Range(10, 1000000));
  cmd->add_option("--e2e-iterations", args->e2e_iterations,
                  "Frames per path for the end-to-end comparison (0: skip it)")
      ->check(CLI::Range(0, 10000));
  cmd->add_option("--memory-workers", args->memory_workers,
                  "Workers for the decode-once vs each-decodes memory comparison (0: skip it)")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--threads", args->threads, "ONNX Runtime intra-op threads (end-to-end)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--spin-us", args->spin_us,
                  "Also run the ring with readers spinning this long before sleeping (0: skip)")
      ->check(CLI::Range(0, 1000000));
  SetRun(cmd, [args] {
    nlohmann::json out;
    ZD_RETURN_IF_ERROR(RunBench(*args, out));
    std::printf("%s\n", out.dump(2).c_str());
    return Status::Ok();
  });
});

}  // namespace
}  // namespace zerodet::cli
