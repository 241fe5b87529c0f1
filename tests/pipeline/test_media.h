// Test media for the pipeline suites: a video made at test time with the ffmpeg CLI from the
// photos in ../shared/images (one photo per frame, in name order, letterboxed to 640x480).
// And a silent network peer. Temporary folders, child processes and WaitFor come from
// tests/support/test_support.h.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace zerodet::pipeline::testing {

inline std::vector<std::filesystem::path> SharedPhotos() {
  std::vector<std::filesystem::path> photos;
  for (const auto& entry : std::filesystem::directory_iterator(ZERODET_SHARED_DIR "/images")) {
    if (entry.path().extension() == ".jpg") photos.push_back(entry.path());
  }
  std::sort(photos.begin(), photos.end());
  return photos;
}

// Writes dir/clip.mp4 (MPEG-4 Part 2, 640x480, 2 fps, one frame per shared photo) and returns
// its path, or an empty path when ffmpeg failed.
inline std::filesystem::path MakeClip(const std::filesystem::path& dir) {
  const auto frames = dir / "frames";
  std::filesystem::create_directories(frames);
  int i = 0;
  for (const auto& photo : SharedPhotos()) {
    char name[32];
    std::snprintf(name, sizeof(name), "%02d.jpg", ++i);
    std::filesystem::create_symlink(photo, frames / name);
  }
  const auto clip = dir / "clip.mp4";
  const std::string command =
      "ffmpeg -nostdin -y -loglevel error -framerate 2 -i '" + (frames / "%02d.jpg").string() +
      "' -vf 'scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2'"
      " -c:v mpeg4 -q:v 3 -pix_fmt yuv420p '" +
      clip.string() + "'";
  if (std::system(command.c_str()) != 0 || !std::filesystem::exists(clip)) return {};
  return clip;
}

// A TCP listener on 127.0.0.1 that takes connections (the kernel completes them) and never says
// a word: a camera that hangs.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        ::listen(fd_, 8) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      return;
    }
    port_ = ntohs(address.sin_port);
  }
  ~SilentServer() {
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace zerodet::pipeline::testing
