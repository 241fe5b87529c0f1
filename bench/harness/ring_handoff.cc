#include "ring_handoff.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>

#include "forked_child.h"
#include "zerodet/codec/decode.h"
#include "zerodet/core/clock.h"
#include "zerodet/core/file.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::bench {
namespace {

// The two pipes between the benchmark writer (this process) and its reader (a child).
struct Channel {
  BenchPipe to_child;
  BenchPipe to_parent;
  static Result<Channel> Open() {
    Channel channel;
    ZD_ASSIGN_OR_RETURN(channel.to_child, BenchPipe::Open());
    ZD_ASSIGN_OR_RETURN(channel.to_parent, BenchPipe::Open());
    return channel;
  }
};

// The child acknowledges each frame with one byte; the writer waits for it, then pauses.
bool AwaitAck(const Channel& channel) {
  char ack = 0;
  return ReadAll(channel.to_parent.read.get(), &ack, 1);
}
void SendAck(const Channel& channel) {
  const char ack = 1;
  WriteAll(channel.to_parent.write.get(), &ack, 1);
}

// The reader's per-frame work; false when make_consumer was given but failed.
bool MakeConsumer(const HandoffSettings& settings, FrameConsumer& consumer) {
  if (!settings.make_consumer) return true;
  consumer = settings.make_consumer();
  return static_cast<bool>(consumer);
}

// Runs `reader` (bool(std::vector<int64_t>& latencies)) in a forked child that sends back its
// latencies (count, then values) on the channel; `writer` (Status()) runs here.
template <typename Writer, typename Reader>
Result<std::vector<int64_t>> RunPair(Channel& channel, Writer&& writer, Reader&& reader) {
  ZD_ASSIGN_OR_RETURN(const pid_t pid, ForkTiedChild([&] {
                        channel.to_child.write.Reset();
                        channel.to_parent.read.Reset();
                        std::vector<int64_t> latencies;
                        const bool ok = reader(latencies);
                        const int fd = channel.to_parent.write.get();
                        const uint64_t count = ok ? latencies.size() : UINT64_MAX;
                        WriteAll(fd, &count, sizeof(count));
                        if (ok) WriteAll(fd, latencies.data(), latencies.size() * sizeof(int64_t));
                        return ok ? 0 : 1;
                      }));
  channel.to_child.read.Reset();
  channel.to_parent.write.Reset();
  Status status = writer();
  channel.to_child.write.Reset();  // tells a waiting reader that the run is over
  std::vector<int64_t> latencies;
  uint64_t count = 0;
  const int fd = channel.to_parent.read.get();
  if (!ReadAll(fd, &count, sizeof(count)) || count == UINT64_MAX) {
    if (status.ok()) status = InternalError("benchmark reader process failed");
  } else {
    latencies.resize(count);
    if (!ReadAll(fd, latencies.data(), count * sizeof(int64_t)) && status.ok()) {
      status = InternalError("benchmark reader process sent a short report");
    }
  }
  WaitForChild(pid);
  if (!status.ok()) return status;
  return latencies;
}

}  // namespace

Result<std::vector<int64_t>> MeasureRingHandoff(const Image& frame, const HandoffSettings& settings,
                                                const std::string& ring_name) {
  ring::RingOptions options;
  options.name = ring_name;
  options.slot_count = 4;
  options.slot_bytes = frame.size_bytes();
  ZD_ASSIGN_OR_RETURN(auto writer, ring::RingWriter::Open(options));
  ZD_ASSIGN_OR_RETURN(Channel channel, Channel::Open());
  auto reader = [&](std::vector<int64_t>& latencies) {
    ring::ReaderOptions reader_options;
    reader_options.ring_name = ring_name;
    reader_options.group = "bench";
    reader_options.spin = settings.spin;
    auto attached = ring::RingReader::Attach(reader_options);
    FrameConsumer consume;
    if (!attached.ok() || !MakeConsumer(settings, consume)) return false;
    SendAck(channel);
    for (int i = 0; i < settings.iterations; ++i) {
      auto lease = (*attached)->Read(std::chrono::milliseconds(5000));
      if (!lease.ok()) return false;
      if (consume && !consume(lease->image())) return false;
      latencies.push_back(MonotonicNowNs() - lease->info().timestamp_ns);
      lease->Release();
      SendAck(channel);
    }
    return true;
  };
  auto write = [&]() -> Status {
    if (!AwaitAck(channel)) return InternalError("ring reader did not attach");
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
      info.timestamp_ns = MonotonicNowNs();
      ZD_RETURN_IF_ERROR(writer->Publish(info).status());
      if (!AwaitAck(channel)) return InternalError("ring reader stopped");
    }
    return Status::Ok();
  };
  return RunPair(channel, write, reader);
}

Result<std::vector<int64_t>> MeasureUnixSocketHandoff(const Image& frame,
                                                      const HandoffSettings& settings) {
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    return ErrnoError("socketpair", errno);
  }
  UniqueFd sender(sockets[0]);
  UniqueFd receiver(sockets[1]);
  const int buffer = 4 << 20;  // as large as the default limits allow, to favour the socket
  ::setsockopt(sender.get(), SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  ::setsockopt(receiver.get(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  ZD_ASSIGN_OR_RETURN(Channel channel, Channel::Open());
  auto reader = [&](std::vector<int64_t>& latencies) {
    sender.Reset();
    Image received(frame.width(), frame.height(), frame.format());
    std::memset(received.data(), 0, received.size_bytes());
    SendAck(channel);
    for (int i = 0; i < settings.iterations; ++i) {
      int64_t sent_at = 0;
      if (!ReadAll(receiver.get(), &sent_at, sizeof(sent_at))) return false;
      if (!ReadAll(receiver.get(), received.data(), received.size_bytes())) return false;
      latencies.push_back(MonotonicNowNs() - sent_at);
      SendAck(channel);
    }
    return true;
  };
  auto write = [&]() -> Status {
    if (!AwaitAck(channel)) return InternalError("socket reader did not start");
    for (int i = 0; i < settings.iterations; ++i) {
      std::this_thread::sleep_for(settings.gap);
      const int64_t now = MonotonicNowNs();
      if (!WriteAll(sender.get(), &now, sizeof(now)) ||
          !WriteAll(sender.get(), frame.data(), frame.size_bytes())) {
        return ErrnoError("write to Unix socket", errno);
      }
      if (!AwaitAck(channel)) return InternalError("socket reader stopped");
    }
    return Status::Ok();
  };
  return RunPair(channel, write, reader);
}

Status WriteJpeg(const Image& frame, const std::filesystem::path& path) {
  std::unique_ptr<void, int (*)(tjhandle)> tj(tjInitCompress(), tjDestroy);
  if (!tj) return InternalError("tjInitCompress failed");
  unsigned char* jpeg = nullptr;
  unsigned long jpeg_size = 0;
  if (tjCompress2(tj.get(), frame.data(), frame.width(), static_cast<int>(frame.stride()),
                  frame.height(), TJPF_RGB, &jpeg, &jpeg_size, TJSAMP_420, 90, 0) != 0) {
    return InternalError(std::string("JPEG encode: ") + tjGetErrorStr2(tj.get()));
  }
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> jpeg_owner(jpeg, tjFree);
  const std::filesystem::path part = path.string() + ".part";
  // O_EXCL after removing a leftover: never follow a link someone placed under that name.
  ::unlink(part.c_str());
  UniqueFd fd(::open(part.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return PathError(part, "cannot create", errno);
  if (!WriteAll(fd.get(), jpeg, jpeg_size)) return PathError(part, "cannot write", errno);
  fd.Reset();
  if (::rename(part.c_str(), path.c_str()) != 0) return PathError(path, "cannot rename", errno);
  return Status::Ok();
}

Result<std::vector<int64_t>> MeasureTmpfsJpegHandoff(const Image& frame,
                                                     const HandoffSettings& settings,
                                                     const std::filesystem::path& jpeg_path) {
  ZD_ASSIGN_OR_RETURN(Channel channel, Channel::Open());
  auto reader = [&](std::vector<int64_t>& latencies) {
    FrameConsumer consume;
    if (!MakeConsumer(settings, consume)) return false;
    SendAck(channel);
    for (int i = 0; i < settings.iterations; ++i) {
      int64_t sent_at = 0;
      if (!ReadAll(channel.to_child.read.get(), &sent_at, sizeof(sent_at))) return false;
      auto bytes = ReadFileBytes(jpeg_path);
      if (!bytes.ok()) return false;
      auto decoded = DecodeImage(*bytes, jpeg_path.string());
      if (!decoded.ok() || decoded->image.width() != frame.width()) return false;
      if (consume && !consume(decoded->image.view())) return false;
      latencies.push_back(MonotonicNowNs() - sent_at);
      SendAck(channel);
    }
    return true;
  };
  auto write = [&]() -> Status {
    if (!AwaitAck(channel)) return InternalError("JPEG reader did not start");
    for (int i = 0; i < settings.iterations; ++i) {
      std::this_thread::sleep_for(settings.gap);
      const int64_t start = MonotonicNowNs();
      ZD_RETURN_IF_ERROR(WriteJpeg(frame, jpeg_path));
      if (!WriteAll(channel.to_child.write.get(), &start, sizeof(start))) {
        return InternalError("JPEG reader stopped");
      }
      if (!AwaitAck(channel)) return InternalError("JPEG reader stopped");
    }
    return Status::Ok();
  };
  auto result = RunPair(channel, write, reader);
  ::unlink(jpeg_path.c_str());
  return result;
}

}  // namespace zerodet::bench
