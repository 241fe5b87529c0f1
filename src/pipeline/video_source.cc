// Video sources through FFmpeg: libavformat demuxes, libavcodec decodes, libswscale converts
// the decoder's frame to RGB24 directly into the caller's memory (a ring slot).
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include <sys/stat.h>

#include "zerodet/pipeline/source.h"

namespace zerodet::pipeline {
namespace {

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

class VideoSource final : public FrameSource {
 public:
  static Result<std::unique_ptr<FrameSource>> Open(const std::string& path, bool loop) {
    if (path.find("://") == std::string::npos) {
      struct stat st;
      if (::stat(path.c_str(), &st) != 0) return NotFoundError("no video file " + path);
    }
    auto source = std::unique_ptr<VideoSource>(new VideoSource(path, loop));
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
        if (!loop_ || frames_decoded_ == 0) return false;
        ZD_RETURN_IF_ERROR(Rewind());
        continue;
      }
      if (rc != AVERROR(EAGAIN)) {
        return CorruptDataError(path_ + ": decoding frame " + std::to_string(frames_decoded_ + 1) +
                                ": " + AvError(rc));
      }
      if (draining_) return false;
      rc = av_read_frame(format_.get(), packet_.get());
      if (rc == AVERROR_EOF) {
        draining_ = true;
        avcodec_send_packet(codec_.get(), nullptr);  // flush the decoder's delayed frames
        continue;
      }
      if (rc < 0) return IoError(path_ + ": reading: " + AvError(rc));
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
  VideoSource(std::string path, bool loop) : path_(std::move(path)), loop_(loop) {}

  Status OpenStreams() {
    AVFormatContext* raw = nullptr;
    AVDictionary* opts = nullptr;
    // RTSP over TCP avoids UDP loss; harmless for files.
    av_dict_set(&opts, "rtsp_transport", "tcp", 0);
    int rc = avformat_open_input(&raw, path_.c_str(), nullptr, &opts);
    av_dict_free(&opts);
    if (rc < 0) return IoError("cannot open video " + path_ + ": " + AvError(rc));
    format_.reset(raw);
    rc = avformat_find_stream_info(format_.get(), nullptr);
    if (rc < 0) return CorruptDataError(path_ + ": cannot read stream info: " + AvError(rc));
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
    if (codec_->width <= 0 || codec_->height <= 0) {
      return CorruptDataError(path_ + ": video stream has no frame size");
    }
    const AVRational rate =
        stream->avg_frame_rate.num > 0 ? stream->avg_frame_rate : stream->r_frame_rate;
    fps_ = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
    frame_.reset(av_frame_alloc());
    packet_.reset(av_packet_alloc());
    if (!frame_ || !packet_) return InternalError("FFmpeg frame allocation failed");
    return Status::Ok();
  }

  Status Rewind() {
    const int rc = av_seek_frame(format_.get(), stream_index_, 0, AVSEEK_FLAG_BACKWARD);
    if (rc < 0) return IoError(path_ + ": cannot loop (seek to start): " + AvError(rc));
    avcodec_flush_buffers(codec_.get());
    draining_ = false;
    return Status::Ok();
  }

  std::string path_;
  bool loop_;
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

Result<std::unique_ptr<FrameSource>> OpenVideoSource(const std::string& path, bool loop) {
  return VideoSource::Open(path, loop);
}

}  // namespace zerodet::pipeline
