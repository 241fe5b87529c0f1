// Frame sources of the pipeline's ingest processes: a video file or stream (FFmpeg's
// libavformat/libavcodec), a V4L2 camera, and a folder of images replayed in name order.
//
// A source decodes one frame at a time (Advance) and then writes it as RGB8 straight into
// memory the caller gives (WriteRgb): in the pipeline, a claimed ring slot, so the frame is
// converted once into shared memory and never copied again. Not thread-safe: one thread per
// source.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "zerodet/core/status.h"

namespace zerodet::pipeline {

// kOk when a width x height frame is one a source may deliver: positive sides, and at most the
// image decoder's pixel limit (DecodeOptions::max_pixels, 64 Mpx: 192 MB of RGB8 per ring
// slot), whatever a file's header or a camera driver claims. Errors: kResourceExhausted (too
// large) or kCorruptData (not positive), naming `source`.
Status CheckFrameSize(int width, int height, const std::string& source);

class FrameSource {
 public:
  virtual ~FrameSource() = default;

  // Bytes of the largest RGB8 frame this source produces (ring slots are sized for it).
  virtual size_t max_frame_bytes() const = 0;
  // The source's own frame rate, 0 when it has none (image folders).
  virtual double native_fps() const = 0;

  // Decodes the next frame. Returns false at the end of the source (after the last frame, or
  // never when looping). Errors: kCorruptData naming the source and frame on undecodable data,
  // kIoError on read errors.
  virtual Result<bool> Advance() = 0;

  // Size of the frame Advance() decoded. REQUIRES: the last Advance() returned true.
  virtual int width() const = 0;
  virtual int height() const = 0;

  // Writes that frame as tightly packed RGB8 (stride width() * 3) into `dst`.
  // Errors: kInvalidArgument when dst is smaller than width() * height() * 3.
  // REQUIRES: the last Advance() returned true.
  virtual Status WriteRgb(std::span<uint8_t> dst) = 0;
};

struct VideoOptions {
  bool loop = false;  // start over at the end of a file
  // Longest that opening the source (connecting, probing the stream) may block, and longest a
  // single read may wait for data (a network stream that stalls). Then the call fails with
  // kUnavailable (a stalled stream is reconnected by the pipeline). 0: no limit.
  int open_timeout_ms = 30'000;
  int read_timeout_ms = 10'000;
  // Polled while FFmpeg blocks (opening, reading); true aborts the call with kUnavailable
  // ("interrupted"). The pipeline's ingest passes its stop flag. Empty: never.
  std::function<bool()> interrupted;
};

// Opens a video file or a URL (anything with "://", e.g. rtsp://) with libavformat and its best
// video stream's decoder. FFmpeg's own messages go to spdlog (its errors at info, its warnings
// at debug, the rest at trace), not to stderr. A local path must be a regular file: a FIFO, device
// or directory is refused without opening it for reading (which could block forever). Errors:
// kNotFound (no such file), kPermissionDenied, kInvalidArgument (not a regular file, no video
// stream), kUnavailable (timed out or interrupted), kIoError / kCorruptData with FFmpeg's message
// and the path.
Result<std::unique_ptr<FrameSource>> OpenVideoSource(const std::string& path,
                                                     const VideoOptions& options = {});

struct CameraOptions {
  int width = 0;              // requested frame size; 0 keeps the device's current one. The
  int height = 0;             // driver may round it: the source reports what it delivers.
  double fps = 0;             // requested rate (VIDIOC_S_PARM, best effort); 0: the device's
  uint32_t pixel_format = 0;  // a V4L2 fourcc (see src/pipeline/camera_frame.h); 0: the first
                              // of RGB3, BGR3, YUYV, UYVY, MJPG, JPEG, GREY the device offers
  int buffers = 4;            // driver buffers mapped into this process, 2..32
  int timeout_ms = 2000;      // Advance() fails with kUnavailable after this long without a frame
};

// Opens a V4L2 capture device (e.g. /dev/video0) with memory-mapped driver buffers; each frame
// is converted from the driver's buffer straight into WriteRgb's memory. The path is opened
// without blocking and checked to be a character device on the open descriptor. Advance()
// blocks until the device delivers the next frame. Errors: kNotFound (no such device),
// kPermissionDenied, kInvalidArgument (not a V4L2 capture device, no supported pixel format, bad
// options), kUnavailable (busy), kIoError; in Advance, kUnavailable on timeout and kIoError when
// the device goes away (unplugged).
Result<std::unique_ptr<FrameSource>> OpenV4l2Source(const std::string& device,
                                                    const CameraOptions& options);

// Replays the JPEG/PNG/BMP files of `folder` (codec::HasImageFileExtension) in name order.
// Headers are read up front to size the slots. An image that cannot be used (unreadable, a
// symlink loop, not a regular file, a header or later its pixels that do not decode) is
// reported as a spdlog warning naming it and skipped, at the scan and at every pass; Advance
// fails only when a whole pass decodes no image. Errors: as ListDirectory for the folder
// (kNotFound, kPermissionDenied, kInvalidArgument for a file), kInvalidArgument (no image
// file in it), or the first skipped image's error when none is readable (names the file).
Result<std::unique_ptr<FrameSource>> OpenImageFolderSource(const std::string& folder, bool loop);

}  // namespace zerodet::pipeline
