// Video sources through FFmpeg: libavformat demuxes, libavcodec decodes, libswscale converts
// the decoder's frame to RGB24 directly into the caller's memory (a ring slot).
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include <spdlog/spdlog.h>

#include <cstdarg>
#include <mutex>
#include <string>

#include "zerodet/codec/decode.h"
#include "zerodet/core/clock.h"
#include "zerodet/core/file.h"
#include "zerodet/pipeline/config.h"
#include "zerodet/pipeline/source.h"

namespace zerodet::pipeline {
namespace {

// FFmpeg's own messages go through zerodet's logger instead of straight to stderr, so that a
// failure is one line there (zerodet's error, which names the source) and FFmpeg's detail shows
// with --log-level. Its levels map two steps down: an FFmpeg error ("moov atom not found") is
// the detail of an error zerodet reports itself, so it is info; a warning is debug; anything
// chattier is trace.
spdlog::level::level_enum LevelOfFfmpeg(int av_level) {
  if (av_level <= AV_LOG_ERROR) return spdlog::level::info;
  if (av_level <= AV_LOG_WARNING) return spdlog::level::debug;
  return spdlog::level::trace;
}

void LogFromFfmpeg(void* context, int av_level, const char* format, va_list args) {
  const spdlog::level::level_enum level = LevelOfFfmpeg(av_level);
  if (!spdlog::default_logger_raw()->should_log(level)) return;
  // FFmpeg may build one line from several calls; collect it per thread.
  thread_local std::string line;
  thread_local int print_prefix = 1;
  char part[1024];
  av_log_format_line2(context, av_level, format, args, part, sizeof(part), &print_prefix);
  line += part;
  if (line.empty() || line.back() != '\n') return;
  line.pop_back();
  spdlog::log(level, "ffmpeg: {}", line);
  line.clear();
}

std::string AvError(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, buf, sizeof(buf));
  return buf;
}

struct FormatCloser {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
struct CodecCloser {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameFree {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketFree {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsFree {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};

// Bounds FFmpeg's blocking calls. libavformat polls the callback while it waits for the network
// (or any protocol); a non-zero answer makes the call fail with AVERROR_EXIT. Without it, a
// camera that accepts the connection and then says nothing blocks an ingest forever, deaf to
// the pipeline's stop request.
class Interrupter {
 public:
  explicit Interrupter(std::function<bool()> interrupted) : interrupted_(std::move(interrupted)) {}

  // Starts a blocking call that may take `timeout_ms` (0: no limit).
  void Arm(int timeout_ms) {
    deadline_ = timeout_ms > 0 ? Deadline::FromTimeoutMs(timeout_ms) : Deadline::Never();
    timeout_ms_ = timeout_ms;
    timed_out_ = false;
    stopped_ = false;
  }

  static int Callback(void* self) {
    auto* interrupter = static_cast<Interrupter*>(self);
    if (interrupter->interrupted_ && interrupter->interrupted_()) {
      interrupter->stopped_ = true;
      return 1;
    }
    if (interrupter->deadline_.expired()) {
      interrupter->timed_out_ = true;
      return 1;
    }
    return 0;
  }

  // The error of a call that failed with `rc`: kUnavailable when this interrupter ended it
  // (demuxers do not always pass AVERROR_EXIT on: RTSP reports invalid data instead).
  Status Error(const std::string& what, int rc, StatusCode otherwise) const {
    if (stopped_) return UnavailableError(what + ": interrupted");
    if (timed_out_) {
      return UnavailableError(what + ": no answer within " + std::to_string(timeout_ms_) + " ms");
    }
    return Status(otherwise, what + ": " + AvError(rc));
  }

 private:
  std::function<bool()> interrupted_;
  Deadline deadline_ = Deadline::Never();
  int timeout_ms_ = 0;
  bool timed_out_ = false;
  bool stopped_ = false;
};

class VideoSource final : public FrameSource {
 public:
  static Result<std::unique_ptr<FrameSource>> Open(const std::string& path,
                                                   const VideoOptions& options) {
    if (path.find("://") == std::string::npos) {
      // libavformat would open() the path for reading: on a FIFO that waits for a writer
      // forever. Check the type on a descriptor opened without blocking first.
      auto regular = OpenRegularFile(path);
      if (!regular.ok()) return regular.status().WithContext("video");
    }
    auto source = std::unique_ptr<VideoSource>(new VideoSource(path, options));
    ZD_RETURN_IF_ERROR(source->OpenStreams());
    return std::unique_ptr<FrameSource>(std::move(source));
  }

  size_t max_frame_bytes() const override {
    return static_cast<size_t>(codec_->width) * static_cast<size_t>(codec_->height) * 3;
  }
  double native_fps() const override { return fps_; }
  int width() const override { return frame_->width; }
  int height() const override { return frame_->height; }

  Result<bool> Advance() override {
    for (;;) {
      int rc = avcodec_receive_frame(codec_.get(), frame_.get());
      if (rc == 0) {
        ++frames_decoded_;
        return true;
      }
      if (rc == AVERROR_EOF) {
        if (!options_.loop || frames_decoded_ == 0) return false;
        ZD_RETURN_IF_ERROR(Rewind());
        continue;
      }
      if (rc != AVERROR(EAGAIN)) {
        return CorruptDataError(path_ + ": decoding frame " + std::to_string(frames_decoded_ + 1) +
                                ": " + AvError(rc));
      }
      if (draining_) return false;
      interrupter_.Arm(options_.read_timeout_ms);
      rc = av_read_frame(format_.get(), packet_.get());
      if (rc == AVERROR_EOF) {
        draining_ = true;
        avcodec_send_packet(codec_.get(), nullptr);  // flush the decoder's delayed frames
        continue;
      }
      if (rc < 0) return interrupter_.Error(path_ + ": reading", rc, StatusCode::kIoError);
      if (packet_->stream_index == stream_index_) {
        rc = avcodec_send_packet(codec_.get(), packet_.get());
        av_packet_unref(packet_.get());
        if (rc < 0 && rc != AVERROR(EAGAIN)) {
          return CorruptDataError(path_ + ": bad packet near frame " +
                                  std::to_string(frames_decoded_ + 1) + ": " + AvError(rc));
        }
      } else {
        av_packet_unref(packet_.get());
      }
    }
  }

  Status WriteRgb(std::span<uint8_t> dst) override {
    const int w = frame_->width;
    const int h = frame_->height;
    const size_t needed = static_cast<size_t>(w) * static_cast<size_t>(h) * 3;
    // A stream may change resolution; frames larger than the first do not fit the slots.
    if (dst.size() < needed) {
      return InvalidArgumentError(path_ + ": frame of " + std::to_string(w) + "x" +
                                  std::to_string(h) + " needs " + std::to_string(needed) +
                                  " bytes, got " + std::to_string(dst.size()));
    }
    // Cached per geometry: frame size or pixel format can change mid-stream.
    sws_.reset(sws_getCachedContext(sws_.release(), w, h,
                                    static_cast<AVPixelFormat>(frame_->format), w, h,
                                    AV_PIX_FMT_RGB24, SWS_BILINEAR, nullptr, nullptr, nullptr));
    if (!sws_) return InternalError(path_ + ": no conversion to RGB24 from this pixel format");
    uint8_t* planes[4] = {dst.data(), nullptr, nullptr, nullptr};
    int strides[4] = {w * 3, 0, 0, 0};
    sws_scale(sws_.get(), frame_->data, frame_->linesize, 0, h, planes, strides);
    return Status::Ok();
  }

 private:
  VideoSource(std::string path, const VideoOptions& options)
      : path_(std::move(path)), options_(options), interrupter_(options.interrupted) {}

  Status OpenStreams() {
    AVFormatContext* raw = avformat_alloc_context();
    if (raw == nullptr) return ResourceExhaustedError("avformat_alloc_context failed");
    raw->interrupt_callback.callback = &Interrupter::Callback;
    raw->interrupt_callback.opaque = &interrupter_;
    AVDictionary* opts = nullptr;
    // RTSP over TCP avoids UDP loss; harmless for files.
    av_dict_set(&opts, "rtsp_transport", "tcp", 0);
    interrupter_.Arm(options_.open_timeout_ms);
    // On failure avformat_open_input frees the context.
    int rc = avformat_open_input(&raw, path_.c_str(), nullptr, &opts);
    av_dict_free(&opts);
    if (rc < 0) {
      return interrupter_.Error("cannot open video " + path_, rc, StatusCode::kIoError);
    }
    format_.reset(raw);
    rc = avformat_find_stream_info(format_.get(), nullptr);
    if (rc < 0) {
      return interrupter_.Error(path_ + ": cannot read stream info", rc, StatusCode::kCorruptData);
    }
    const AVCodec* decoder = nullptr;
    stream_index_ = av_find_best_stream(format_.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0);
    if (stream_index_ < 0 || decoder == nullptr) {
      return InvalidArgumentError(path_ + " has no decodable video stream");
    }
    AVStream* stream = format_->streams[stream_index_];
    codec_.reset(avcodec_alloc_context3(decoder));
    if (!codec_) return InternalError("avcodec_alloc_context3 failed");
    rc = avcodec_parameters_to_context(codec_.get(), stream->codecpar);
    if (rc < 0) return CorruptDataError(path_ + ": bad codec parameters: " + AvError(rc));
    codec_->thread_count = 1;  // the pipeline runs one ingest per source; workers need the cores
    rc = avcodec_open2(codec_.get(), decoder, nullptr);
    if (rc < 0) return CorruptDataError(path_ + ": cannot open decoder: " + AvError(rc));
    ZD_RETURN_IF_ERROR(CheckFrameSize(codec_->width, codec_->height, path_));
    const AVRational rate =
        stream->avg_frame_rate.num > 0 ? stream->avg_frame_rate : stream->r_frame_rate;
    fps_ = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
    // A rate no camera has (a file may claim anything) would stall or flood the pacing: treat
    // it as unknown.
    if (!(fps_ >= kMinFps && fps_ <= kMaxFps)) fps_ = 0;
    frame_.reset(av_frame_alloc());
    packet_.reset(av_packet_alloc());
    if (!frame_ || !packet_) return InternalError("FFmpeg frame allocation failed");
    return Status::Ok();
  }

  Status Rewind() {
    interrupter_.Arm(options_.read_timeout_ms);
    const int rc = av_seek_frame(format_.get(), stream_index_, 0, AVSEEK_FLAG_BACKWARD);
    if (rc < 0) {
      return interrupter_.Error(path_ + ": cannot loop (seek to start)", rc, StatusCode::kIoError);
    }
    avcodec_flush_buffers(codec_.get());
    draining_ = false;
    return Status::Ok();
  }

  std::string path_;
  VideoOptions options_;
  Interrupter interrupter_;
  double fps_ = 0;
  int stream_index_ = -1;
  bool draining_ = false;
  uint64_t frames_decoded_ = 0;
  std::unique_ptr<AVFormatContext, FormatCloser> format_;
  std::unique_ptr<AVCodecContext, CodecCloser> codec_;
  std::unique_ptr<AVFrame, FrameFree> frame_;
  std::unique_ptr<AVPacket, PacketFree> packet_;
  std::unique_ptr<SwsContext, SwsFree> sws_;
};

}  // namespace

Status CheckFrameSize(int width, int height, const std::string& source) {
  if (width <= 0 || height <= 0) {
    return CorruptDataError(source + ": frame size " + std::to_string(width) + "x" +
                            std::to_string(height) + " is not a frame size");
  }
  const uint64_t pixels = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  const uint64_t limit = DecodeOptions().max_pixels;
  if (pixels > limit) {
    return ResourceExhaustedError(source + ": frames of " + std::to_string(width) + "x" +
                                  std::to_string(height) + " exceed the limit of " +
                                  std::to_string(limit) + " pixels");
  }
  return Status::Ok();
}

Result<std::unique_ptr<FrameSource>> OpenVideoSource(const std::string& path,
                                                     const VideoOptions& options) {
  static std::once_flag logging;
  std::call_once(logging, [] { av_log_set_callback(&LogFromFfmpeg); });
  return VideoSource::Open(path, options);
}

}  // namespace zerodet::pipeline
