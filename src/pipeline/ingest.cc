// The ingest process of one source: decode each frame once, straight into a ring slot, paced
// at the source's frame rate. It never waits for workers: a full ring overwrites or drops.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <thread>

#include "camera_frame.h"
#include "processes.h"
#include "zerodet/pipeline/source.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::pipeline::detail {
namespace {

volatile sig_atomic_t g_stop = 0;
void OnTerminate(int) {
  g_stop = 1;
}

int64_t NowNs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int Fail(int fd, const Status& status) {
  SendLine(fd, ErrorLine(status));
  return kExitFatal;
}

// Ends this ingest so that the supervisor starts another, which resumes the ring. Exits
// without running destructors: a RingWriter's destructor would close and unlink the ring, and
// the workers would take that for the end of the source.
[[noreturn]] void ExitForRestart() {
  std::fflush(stderr);
  ::_exit(kExitRestart);
}

// Sleeps until `deadline_ns` (CLOCK_MONOTONIC) or a stop request.
void SleepUntil(int64_t deadline_ns) {
  while (!g_stop) {
    const int64_t left = deadline_ns - NowNs();
    if (left <= 0) return;
    std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<int64_t>(left, 50'000'000)));
  }
}

}  // namespace

void SendLine(int fd, const std::string& line) {
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the supervisor is gone; nothing left to tell
    done += static_cast<size_t>(n);
  }
}

std::string ErrorLine(const Status& status) {
  std::string message = status.message();
  std::replace(message.begin(), message.end(), '\n', ' ');  // one line per message
  return "ERROR " + std::to_string(static_cast<int>(status.code())) + " " + message + "\n";
}

Status ParseErrorLine(std::string_view text) {
  int code = 0;
  const auto [rest, ec] = std::from_chars(text.data(), text.data() + text.size(), code);
  if (ec != std::errc() || code <= 0 || code > static_cast<int>(StatusCode::kInternal) ||
      rest == text.data() + text.size()) {
    return InternalError("malformed error from a child process: " + std::string(text));
  }
  return Status(static_cast<StatusCode>(code), std::string(rest + 1, text.data() + text.size()));
}

namespace {

Result<std::unique_ptr<FrameSource>> OpenSource(const SourceConfig& config) {
  switch (config.type) {
    case SourceType::kVideo:
      return OpenVideoSource(config.path, config.loop);
    case SourceType::kImageFolder:
      return OpenImageFolderSource(config.path, config.loop);
    case SourceType::kV4l2: {
      CameraOptions camera;
      camera.width = config.width;
      camera.height = config.height;
      camera.fps = config.fps;
      if (!config.pixel_format.empty()) {
        ZD_ASSIGN_OR_RETURN(camera.pixel_format, ParseFourCc(config.pixel_format));
      }
      return OpenV4l2Source(config.path, camera);
    }
  }
  return InternalError("unknown source type");
}

}  // namespace

int RunIngest(const IngestArgs& args) {
  struct sigaction action = {};
  action.sa_handler = OnTerminate;
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);

  const SourceConfig& config = args.source;
  auto source = OpenSource(config);
  if (!source.ok()) {
    // After a restart (a dropped stream), failing to reopen means "try again later".
    if (args.restarted) {
      std::fprintf(stderr, "zerodet pipeline: source %s: %s\n", config.name.c_str(),
                   source.status().ToString().c_str());
      ExitForRestart();
    }
    return Fail(args.fd, source.status().WithContext("source " + config.name));
  }
  ring::RingOptions options;
  options.name = args.ring_name;
  options.slot_count = config.ring_slots;
  options.slot_bytes = (*source)->max_frame_bytes();
  options.policy = config.overflow;
  auto writer = ring::RingWriter::Open(options);
  if (!writer.ok()) return Fail(args.fd, writer.status().WithContext("source " + config.name));
  SendLine(args.fd, "READY\n");

  const int64_t attach_deadline = NowNs() + int64_t{args.attach_timeout_ms} * 1'000'000;
  while (!g_stop && (*writer)->Stats().readers_attached < args.expected_readers &&
         NowNs() < attach_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  // A camera paces itself (its fps went to the device); files and folders are paced here.
  const double fps = config.type == SourceType::kV4l2 ? 0
                     : config.fps > 0                 ? config.fps
                                                      : (*source)->native_fps();
  const int64_t interval_ns = fps > 0 ? static_cast<int64_t>(1e9 / fps) : 0;
  const int64_t start = NowNs();
  int bad_frames_in_a_row = 0;
  const bool live =
      config.type == SourceType::kV4l2 || config.path.find("://") != std::string::npos;
  for (int64_t frame = 0; !g_stop; ++frame) {
    if (interval_ns > 0) SleepUntil(start + frame * interval_ns);
    if (g_stop) break;
    const int64_t captured = NowNs();
    auto more = (*source)->Advance();
    if (!more.ok()) {
      std::fprintf(stderr, "zerodet pipeline: source %s: %s\n", config.name.c_str(),
                   more.status().ToString().c_str());
      // A source that fails from the start is fatal (wrong path, not a video). Later, a bad
      // frame is skipped like a camera glitch, while a read error (a dropped stream) or a run
      // of bad frames ends this process: the supervisor restarts it after its backoff, which
      // reopens (reconnects) the source and resumes the ring.
      if (frame == 0 && !args.restarted) return Fail(args.fd, more.status());
      if (more.status().code() != StatusCode::kCorruptData || ++bad_frames_in_a_row > 100) {
        ExitForRestart();
      }
      continue;
    }
    bad_frames_in_a_row = 0;
    if (!*more) {
      // The end of a file ends the source; the end of a network stream (RTSP) means the
      // connection dropped: exit so that the supervisor reconnects after its backoff.
      if (live && !g_stop) {
        std::fprintf(stderr,
                     "zerodet pipeline: source %s: stream ended after %lld frames; reconnecting\n",
                     config.name.c_str(), static_cast<long long>(frame));
        ExitForRestart();
      }
      break;
    }
    auto slot = (*writer)->BeginFrame();
    if (!slot.ok()) continue;  // no free slot: dropped and counted by the ring
    const Status written = (*source)->WriteRgb(*slot);
    if (!written.ok()) {
      (*writer)->Abandon();
      std::fprintf(stderr, "zerodet pipeline: source %s: %s\n", config.name.c_str(),
                   written.ToString().c_str());
      continue;
    }
    ring::FrameInfo info;
    info.timestamp_ns = captured;
    info.width = (*source)->width();
    info.height = (*source)->height();
    info.stride = static_cast<uint32_t>(info.width * 3);
    info.pixel_format = PixelFormat::kRGB8;
    info.format = ring::FrameFormat::kRawPixels;
    (void)(*writer)->Publish(info);
  }
  const ring::RingStats stats = (*writer)->Stats();
  SendLine(args.fd, "STATS " + std::to_string(stats.frames_published) + " " +
                        std::to_string(stats.frames_dropped) + " " +
                        std::to_string(stats.frames_overwritten) + "\n");
  writer->reset();  // clean close: workers drain the ring and finish
  return 0;
}

}  // namespace zerodet::pipeline::detail
