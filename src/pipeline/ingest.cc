// The ingest process of one source: decode each frame once, straight into a ring slot, paced
// at the source's frame rate. It never waits for workers: a full ring overwrites or drops.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>

#include "camera_frame.h"
#include "processes.h"
#include "protocol.h"
#include "zerodet/core/clock.h"
#include "zerodet/pipeline/source.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::pipeline::detail {
namespace {

volatile sig_atomic_t g_stop = 0;
void OnTerminate(int) {
  g_stop = 1;
}

int Fail(int fd, const Status& status) {
  SendMessage(fd, ErrorMessage{status});
  return kExitFatal;
}

// Ends this ingest so that the supervisor starts another, which resumes the ring. Exits
// without running destructors: a RingWriter's destructor would close and unlink the ring, and
// the workers would take that for the end of the source.
// The ring's counters (cumulative over every writer of the ring) go to the supervisor first,
// so that its summary stays right when the last ingest of a source ends this way.
[[noreturn]] void ExitForRestart(int fd, const ring::RingWriter* writer) {
  if (writer != nullptr) {
    const ring::RingStats stats = writer->Stats();
    SendMessage(
        fd, StatsMessage{stats.frames_published, stats.frames_dropped, stats.frames_overwritten});
  }
  std::fflush(stderr);
  ::_exit(kExitRestart);
}

// Sleeps until `deadline_ns` (CLOCK_MONOTONIC) or a stop request.
void SleepUntil(int64_t deadline_ns) {
  while (!g_stop) {
    const int64_t left = deadline_ns - MonotonicNowNs();
    if (left <= 0) return;
    std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<int64_t>(left, 50'000'000)));
  }
}

Result<std::unique_ptr<FrameSource>> OpenSource(const SourceConfig& config) {
  switch (config.type) {
    case SourceType::kVideo: {
      VideoOptions video;
      video.loop = config.loop;
      // A stop request ends a blocking open or read (a stream that does not answer).
      video.interrupted = [] { return g_stop != 0; };
      return OpenVideoSource(config.path, video);
    }
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
  // SIGTERM (from the supervisor, or when it dies: see Spawn in pipeline.cc) and SIGINT
  // (Ctrl-C reaches the whole process group) end the source cleanly: the ring is closed and
  // unlinked, and workers drain it. No SA_RESTART: a blocking call returns EINTR and sees the
  // flag.
  struct sigaction action = {};
  action.sa_handler = OnTerminate;
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);

  const SourceConfig& config = args.source;
  auto source = OpenSource(config);
  if (!source.ok()) {
    if (g_stop) return 0;  // asked to stop while opening: nothing to report
    // After a restart (a dropped stream), failing to reopen means "try again later".
    if (args.restarted) {
      spdlog::warn("zerodet pipeline: source {}: {}", config.name, source.status().ToString());
      ExitForRestart(args.fd, nullptr);
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
  SendMessage(args.fd, ReadyMessage{});

  const Deadline attach_deadline = Deadline::FromTimeoutMs(std::max(args.attach_timeout_ms, 0));
  while (!g_stop && (*writer)->Stats().readers_attached < args.expected_readers &&
         !attach_deadline.expired()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  // A camera paces itself (its fps went to the device); files and folders are paced here.
  const double fps = config.type == SourceType::kV4l2 ? 0
                     : config.fps > 0                 ? config.fps
                                                      : (*source)->native_fps();
  const int64_t interval_ns = fps > 0 ? static_cast<int64_t>(1e9 / fps) : 0;
  const int64_t start = MonotonicNowNs();
  int bad_frames_in_a_row = 0;
  const bool live =
      config.type == SourceType::kV4l2 || config.path.find("://") != std::string::npos;
  // The ring's counters go to the supervisor while frames come (its live metrics): after a
  // frame is published or dropped, when the last report is kStatsIntervalMs old.
  int64_t stats_sent_ns = start;
  const auto report_if_due = [&] {
    if (MonotonicNowNs() - stats_sent_ns < kStatsIntervalMs * 1'000'000) return;
    const ring::RingStats stats = (*writer)->Stats();
    SendMessage(args.fd, StatsMessage{stats.frames_published, stats.frames_dropped,
                                      stats.frames_overwritten});
    stats_sent_ns = MonotonicNowNs();
  };
  for (int64_t frame = 0; !g_stop; ++frame) {
    if (interval_ns > 0) SleepUntil(start + frame * interval_ns);
    if (g_stop) break;
    const int64_t captured = MonotonicNowNs();
    auto more = (*source)->Advance();
    if (!more.ok()) {
      if (g_stop) break;  // a read the stop request interrupted
      // A source that fails from the start is fatal (wrong path, not a video): the supervisor
      // reports it. Later, a bad frame is skipped like a camera glitch, while a read error (a
      // dropped stream) or a run of bad frames ends this process: the supervisor restarts it
      // after its backoff, which reopens (reconnects) the source and resumes the ring.
      if (frame == 0 && !args.restarted) return Fail(args.fd, more.status());
      spdlog::warn("zerodet pipeline: source {}: {}", config.name, more.status().ToString());
      if (more.status().code() != StatusCode::kCorruptData || ++bad_frames_in_a_row > 100) {
        ExitForRestart(args.fd, writer->get());
      }
      continue;
    }
    bad_frames_in_a_row = 0;
    if (!*more) {
      // The end of a file ends the source; the end of a network stream (RTSP) means the
      // connection dropped: exit so that the supervisor reconnects after its backoff.
      if (live && !g_stop) {
        spdlog::warn("zerodet pipeline: source {}: stream ended after {} frames; reconnecting",
                     config.name, frame);
        ExitForRestart(args.fd, writer->get());
      }
      break;
    }
    auto slot = (*writer)->BeginFrame();
    if (!slot.ok()) {  // no free slot: dropped and counted by the ring
      report_if_due();
      continue;
    }
    const Status written = (*source)->WriteRgb(*slot);
    if (!written.ok()) {
      (*writer)->Abandon();
      spdlog::warn("zerodet pipeline: source {}: {}", config.name, written.ToString());
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
    report_if_due();
  }
  const ring::RingStats stats = (*writer)->Stats();
  SendMessage(args.fd,
              StatsMessage{stats.frames_published, stats.frames_dropped, stats.frames_overwritten});
  writer->reset();  // clean close: workers drain the ring and finish
  return 0;
}

}  // namespace zerodet::pipeline::detail
