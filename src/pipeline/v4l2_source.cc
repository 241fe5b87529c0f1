// V4L2 capture devices (USB/CSI cameras, capture cards) with memory-mapped driver buffers: the
// driver fills buffers that this process maps once (VIDIOC_REQBUFS / QUERYBUF + mmap), and each
// frame is converted from the mapped buffer straight into the caller's memory (a ring slot):
// no read() copy and no intermediate frame. The buffer goes back to the driver at the next
// Advance(), so a slow consumer costs the camera at most one of its buffers.
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <vector>

#include "camera_frame.h"
#include "zerodet/core/unique_fd.h"
#include "zerodet/pipeline/source.h"

namespace zerodet::pipeline {
namespace {

using detail::CameraFrameLayout;
using detail::FourCcName;

int Ioctl(int fd, unsigned long request, void* arg) {
  int rc;
  do {
    rc = ::ioctl(fd, request, arg);
  } while (rc == -1 && errno == EINTR);
  return rc;
}

Status ErrnoError(const std::string& what, int err) {
  std::string message = what + ": " + std::strerror(err);
  if (err == ENOENT || err == ENODEV) return NotFoundError(std::move(message));
  if (err == EACCES || err == EPERM) return PermissionDeniedError(std::move(message));
  if (err == EBUSY) return UnavailableError(std::move(message) + " (in use by another process?)");
  return IoError(std::move(message));
}

// The character-device major number of video4linux nodes (/dev/video*, Documentation/
// admin-guide/devices.txt).
constexpr unsigned kVideo4LinuxMajor = 81;

Status CheckVideoDevice(const std::string& device, const struct stat& st) {
  if (!S_ISCHR(st.st_mode)) {
    return InvalidArgumentError("camera " + device + " is not a character device");
  }
  if (major(st.st_rdev) != kVideo4LinuxMajor) {
    return InvalidArgumentError("camera " + device + " is not a V4L2 device (device " +
                                std::to_string(major(st.st_rdev)) + ":" +
                                std::to_string(minor(st.st_rdev)) + "; V4L2 devices are " +
                                std::to_string(kVideo4LinuxMajor) + ":N)");
  }
  return Status::Ok();
}

// Formats in the order DefaultFormatOrder prefers them.
constexpr uint32_t kPreferred[] = {detail::kFourCcRgb24, detail::kFourCcBgr24, detail::kFourCcYuyv,
                                   detail::kFourCcUyvy,  detail::kFourCcMjpeg, detail::kFourCcJpeg,
                                   detail::kFourCcGrey};

class V4l2Source final : public FrameSource {
 public:
  static Result<std::unique_ptr<FrameSource>> Open(const std::string& device,
                                                   const CameraOptions& options) {
    // Opening a device node can act on the device (opening /dev/watchdog arms it, and closing
    // it without the magic word reboots the machine): only video4linux nodes are opened, as
    // their device number says. The check is repeated on the open descriptor, in case the path
    // was replaced in between.
    struct stat st {};
    if (::stat(device.c_str(), &st) != 0) return ErrnoError("camera " + device, errno);
    ZD_RETURN_IF_ERROR(CheckVideoDevice(device, st));
    // O_NONBLOCK: opening never waits, and VIDIOC_DQBUF does not block either (Advance polls).
    // O_NOCTTY: never becomes a controlling terminal.
    UniqueFd fd(::open(device.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) return ErrnoError("camera " + device, errno);
    if (::fstat(fd.get(), &st) != 0) return ErrnoError("camera " + device + ": fstat", errno);
    ZD_RETURN_IF_ERROR(CheckVideoDevice(device, st));
    auto source = std::unique_ptr<V4l2Source>(new V4l2Source(device, fd.Release(), options));
    ZD_RETURN_IF_ERROR(source->Negotiate());
    ZD_RETURN_IF_ERROR(source->StartStreaming());
    return std::unique_ptr<FrameSource>(std::move(source));
  }

  ~V4l2Source() override {
    if (streaming_) {
      v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
      Ioctl(fd_, VIDIOC_STREAMOFF, &type);
    }
    for (const Mapping& m : buffers_) ::munmap(m.data, m.length);
    ::close(fd_);
  }

  size_t max_frame_bytes() const override {
    return static_cast<size_t>(layout_.width) * static_cast<size_t>(layout_.height) * 3;
  }
  // The device paces itself: Advance() blocks until its next frame.
  double native_fps() const override { return 0; }
  int width() const override { return layout_.width; }
  int height() const override { return layout_.height; }

  Result<bool> Advance() override {
    ZD_RETURN_IF_ERROR(Requeue());
    for (;;) {
      pollfd pfd{fd_, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, options_.timeout_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return ErrnoError("camera " + device_ + ": poll", errno);
      if (ready == 0) {
        return UnavailableError("camera " + device_ + ": no frame in " +
                                std::to_string(options_.timeout_ms) + " ms");
      }
      if ((pfd.revents & (POLLERR | POLLHUP)) != 0 && (pfd.revents & POLLIN) == 0) {
        return IoError("camera " + device_ + ": device error (unplugged?)");
      }
      v4l2_buffer buf{};
      buf.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
      buf.memory = V4L2_MEMORY_MMAP;
      if (Ioctl(fd_, VIDIOC_DQBUF, &buf) != 0) {
        if (errno == EAGAIN) continue;
        return ErrnoError("camera " + device_ + ": VIDIOC_DQBUF", errno);
      }
      if (buf.index >= buffers_.size()) {
        return InternalError("camera " + device_ + ": driver returned buffer " +
                             std::to_string(buf.index) + " of " + std::to_string(buffers_.size()));
      }
      held_ = static_cast<int>(buf.index);
      bytes_used_ = std::min<size_t>(buf.bytesused, buffers_[buf.index].length);
      ++frame_;
      if ((buf.flags & V4L2_BUF_FLAG_ERROR) != 0) {
        return CorruptDataError("camera " + device_ + ": frame " + std::to_string(frame_) +
                                " flagged corrupt by the driver");
      }
      return true;
    }
  }

  Status WriteRgb(std::span<uint8_t> dst) override {
    if (held_ < 0) return FailedPreconditionError("camera " + device_ + ": no frame held");
    const Mapping& m = buffers_[static_cast<size_t>(held_)];
    return detail::ConvertCameraFrame(
        layout_, std::span<const uint8_t>(static_cast<const uint8_t*>(m.data), bytes_used_), dst,
        "camera " + device_ + " frame " + std::to_string(frame_));
  }

 private:
  struct Mapping {
    void* data = nullptr;
    size_t length = 0;
  };

  V4l2Source(std::string device, int fd, CameraOptions options)
      : device_(std::move(device)), fd_(fd), options_(std::move(options)) {}

  Status Negotiate() {
    v4l2_capability cap{};
    if (Ioctl(fd_, VIDIOC_QUERYCAP, &cap) != 0) {
      if (errno == ENOTTY || errno == EINVAL) {
        return InvalidArgumentError("camera " + device_ + " is not a V4L2 device");
      }
      return ErrnoError("camera " + device_ + ": VIDIOC_QUERYCAP", errno);
    }
    const uint32_t caps =
        (cap.capabilities & V4L2_CAP_DEVICE_CAPS) != 0 ? cap.device_caps : cap.capabilities;
    if ((caps & V4L2_CAP_VIDEO_CAPTURE) == 0) {
      return InvalidArgumentError("camera " + device_ + " (" +
                                  reinterpret_cast<const char*>(cap.card) +
                                  ") is not a single-planar video capture device");
    }
    if ((caps & V4L2_CAP_STREAMING) == 0) {
      return InvalidArgumentError("camera " + device_ +
                                  " does not support streaming I/O (memory-mapped buffers)");
    }

    std::vector<uint32_t> offered;
    for (uint32_t i = 0;; ++i) {
      v4l2_fmtdesc desc{};
      desc.index = i;
      desc.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
      if (Ioctl(fd_, VIDIOC_ENUM_FMT, &desc) != 0) break;
      offered.push_back(desc.pixelformat);
    }
    uint32_t wanted = options_.pixel_format;
    std::string offered_names;
    for (uint32_t f : offered) offered_names += (offered_names.empty() ? "" : ", ") + FourCcName(f);
    if (wanted == 0) {
      for (uint32_t f : kPreferred) {
        if (std::find(offered.begin(), offered.end(), f) != offered.end()) {
          wanted = f;
          break;
        }
      }
      if (wanted == 0) {
        return InvalidArgumentError(
            "camera " + device_ + " offers no pixel format zerodet reads (" + offered_names + ")");
      }
    } else if (!offered.empty() &&
               std::find(offered.begin(), offered.end(), wanted) == offered.end()) {
      return InvalidArgumentError("camera " + device_ + " does not offer " + FourCcName(wanted) +
                                  " (it offers " + offered_names + ")");
    }

    v4l2_format fmt{};
    fmt.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (Ioctl(fd_, VIDIOC_G_FMT, &fmt) != 0) {
      return ErrnoError("camera " + device_ + ": VIDIOC_G_FMT", errno);
    }
    if (options_.width > 0) fmt.fmt.pix.width = static_cast<uint32_t>(options_.width);
    if (options_.height > 0) fmt.fmt.pix.height = static_cast<uint32_t>(options_.height);
    fmt.fmt.pix.pixelformat = wanted;
    fmt.fmt.pix.field = V4L2_FIELD_NONE;
    fmt.fmt.pix.bytesperline = 0;  // let the driver choose its row padding
    if (Ioctl(fd_, VIDIOC_S_FMT, &fmt) != 0) {
      return ErrnoError("camera " + device_ + ": VIDIOC_S_FMT " + FourCcName(wanted), errno);
    }
    if (fmt.fmt.pix.pixelformat != wanted) {
      return InvalidArgumentError("camera " + device_ + " delivers " +
                                  FourCcName(fmt.fmt.pix.pixelformat) + " instead of " +
                                  FourCcName(wanted));
    }
    // Drivers round the size to what the sensor offers; the ring is sized from what we got.
    layout_.fourcc = fmt.fmt.pix.pixelformat;
    layout_.width = static_cast<int>(fmt.fmt.pix.width);
    layout_.height = static_cast<int>(fmt.fmt.pix.height);
    layout_.bytes_per_line = fmt.fmt.pix.bytesperline;
    ZD_RETURN_IF_ERROR(CheckFrameSize(layout_.width, layout_.height, "camera " + device_));

    if (options_.fps > 0) {
      v4l2_streamparm parm{};
      parm.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
      if (Ioctl(fd_, VIDIOC_G_PARM, &parm) == 0 &&
          (parm.parm.capture.capability & V4L2_CAP_TIMEPERFRAME) != 0) {
        parm.parm.capture.timeperframe.numerator = 1000;
        parm.parm.capture.timeperframe.denominator =
            static_cast<uint32_t>(std::lround(options_.fps * 1000));
        // Best effort: the driver picks its nearest rate; frames pace themselves either way.
        Ioctl(fd_, VIDIOC_S_PARM, &parm);
      }
    }
    return Status::Ok();
  }

  Status StartStreaming() {
    v4l2_requestbuffers req{};
    req.count = static_cast<uint32_t>(options_.buffers);
    req.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    req.memory = V4L2_MEMORY_MMAP;
    if (Ioctl(fd_, VIDIOC_REQBUFS, &req) != 0) {
      if (errno == EINVAL) {
        return InvalidArgumentError("camera " + device_ + " does not support mmap buffers");
      }
      return ErrnoError("camera " + device_ + ": VIDIOC_REQBUFS", errno);
    }
    if (req.count < 2) {
      return ResourceExhaustedError("camera " + device_ + " granted " + std::to_string(req.count) +
                                    " buffers; at least 2 needed");
    }
    for (uint32_t i = 0; i < req.count; ++i) {
      v4l2_buffer buf{};
      buf.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
      buf.memory = V4L2_MEMORY_MMAP;
      buf.index = i;
      if (Ioctl(fd_, VIDIOC_QUERYBUF, &buf) != 0) {
        return ErrnoError("camera " + device_ + ": VIDIOC_QUERYBUF", errno);
      }
      void* data = ::mmap(nullptr, buf.length, PROT_READ | PROT_WRITE, MAP_SHARED, fd_,
                          static_cast<off_t>(buf.m.offset));
      if (data == MAP_FAILED) return ErrnoError("camera " + device_ + ": mmap", errno);
      buffers_.push_back(Mapping{data, buf.length});
      if (Ioctl(fd_, VIDIOC_QBUF, &buf) != 0) {
        return ErrnoError("camera " + device_ + ": VIDIOC_QBUF", errno);
      }
    }
    v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (Ioctl(fd_, VIDIOC_STREAMON, &type) != 0) {
      return ErrnoError("camera " + device_ + ": VIDIOC_STREAMON", errno);
    }
    streaming_ = true;
    return Status::Ok();
  }

  // Gives the held buffer back to the driver.
  Status Requeue() {
    if (held_ < 0) return Status::Ok();
    v4l2_buffer buf{};
    buf.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    buf.memory = V4L2_MEMORY_MMAP;
    buf.index = static_cast<uint32_t>(held_);
    held_ = -1;
    if (Ioctl(fd_, VIDIOC_QBUF, &buf) != 0) {
      return ErrnoError("camera " + device_ + ": VIDIOC_QBUF", errno);
    }
    return Status::Ok();
  }

  std::string device_;
  int fd_;
  CameraOptions options_;
  CameraFrameLayout layout_;
  std::vector<Mapping> buffers_;
  bool streaming_ = false;
  int held_ = -1;  // index of the buffer this process holds, -1 for none
  size_t bytes_used_ = 0;
  int64_t frame_ = 0;
};

}  // namespace

Result<std::unique_ptr<FrameSource>> OpenV4l2Source(const std::string& device,
                                                    const CameraOptions& options) {
  if (options.buffers < 2 || options.buffers > 32) {
    return InvalidArgumentError("camera buffers " + std::to_string(options.buffers) +
                                " is outside 2..32");
  }
  if (options.pixel_format != 0 && !detail::IsSupportedCameraFormat(options.pixel_format)) {
    return InvalidArgumentError("unsupported camera pixel format " +
                                FourCcName(options.pixel_format));
  }
  return V4l2Source::Open(device, options);
}

}  // namespace zerodet::pipeline
