// Test media for the pipeline suites: a video made at test time with the ffmpeg CLI from the
// photos in ../shared/images (one photo per frame, in name order, letterboxed to 640x480).
// Temporary folders, child processes and WaitFor come from tests/support/test_support.h.
#pragma once

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

}  // namespace zerodet::pipeline::testing
