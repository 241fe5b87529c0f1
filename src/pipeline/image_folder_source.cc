// Image-folder replay: the JPEG/PNG/BMP files of a folder in name order, decoded with the codec
// module (same pixels as the rest of zerodet).
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>

#include "zerodet/codec/decode.h"
#include "zerodet/core/file.h"
#include "zerodet/pipeline/source.h"

namespace zerodet::pipeline {
namespace {

namespace fs = std::filesystem;

class ImageFolderSource final : public FrameSource {
 public:
  ImageFolderSource(std::vector<fs::path> files, size_t max_frame_bytes, bool loop)
      : files_(std::move(files)), max_frame_bytes_(max_frame_bytes), loop_(loop) {}

  size_t max_frame_bytes() const override { return max_frame_bytes_; }
  double native_fps() const override { return 0; }
  int width() const override { return current_.image.width(); }
  int height() const override { return current_.image.height(); }

  Result<bool> Advance() override {
    if (next_ == files_.size()) {
      if (!loop_) return false;
      next_ = 0;
    }
    ZD_ASSIGN_OR_RETURN(current_, DecodeImageFile(files_[next_++]));
    if (current_.image.size_bytes() > max_frame_bytes_) {
      return CorruptDataError(files_[next_ - 1].string() +
                              " changed size since the folder was "
                              "scanned (now " +
                              std::to_string(current_.image.width()) + "x" +
                              std::to_string(current_.image.height()) + ")");
    }
    return true;
  }

  Status WriteRgb(std::span<uint8_t> dst) override {
    const size_t row = static_cast<size_t>(current_.image.width()) * 3;
    const size_t needed = row * static_cast<size_t>(current_.image.height());
    if (dst.size() < needed) {
      return InvalidArgumentError("image of " + std::to_string(needed) + " bytes does not fit " +
                                  std::to_string(dst.size()) + " bytes");
    }
    for (int y = 0; y < current_.image.height(); ++y) {
      std::memcpy(dst.data() + static_cast<size_t>(y) * row,
                  current_.image.data() + static_cast<size_t>(y) * current_.image.stride(), row);
    }
    return Status::Ok();
  }

 private:
  std::vector<fs::path> files_;
  size_t max_frame_bytes_;
  bool loop_;
  size_t next_ = 0;
  DecodedImage current_;
};

}  // namespace

Result<std::unique_ptr<FrameSource>> OpenImageFolderSource(const std::string& folder, bool loop) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return NotFoundError("no image folder " + folder);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (!entry.is_regular_file()) continue;
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp") {
      files.push_back(entry.path());
    }
  }
  if (ec) return IoError("cannot list " + folder + ": " + ec.message());
  if (files.empty()) {
    return InvalidArgumentError("image folder " + folder + " has no .jpg, .png or .bmp files");
  }
  std::sort(files.begin(), files.end());
  // EXIF orientation may swap width and height when decoding; the byte count stays the same.
  size_t max_frame_bytes = 0;
  for (const fs::path& file : files) {
    ZD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileBytes(file));
    ZD_ASSIGN_OR_RETURN(ImageInfo info, ReadImageInfo(bytes, file.string()));
    max_frame_bytes = std::max(
        max_frame_bytes, static_cast<size_t>(info.width) * static_cast<size_t>(info.height) * 3);
  }
  return std::unique_ptr<FrameSource>(
      new ImageFolderSource(std::move(files), max_frame_bytes, loop));
}

}  // namespace zerodet::pipeline
